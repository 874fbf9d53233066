//! `up`: brings a dev cluster up, or completes it, and waits for its agents.

use std::collections::BTreeSet;
use std::time::Duration;

use super::node::{agent_log, ensure_node, registered_arn};
use super::options::{UpOptions, preflight, resolve_spec};
use super::server::{ensure_etcd, ensure_server};
use super::{Reporter, mkdir, wait_until};
use crate::ecs::EcsClient;
use crate::error::{Error, Result};
use crate::net;
use crate::spec::{self, ClusterSpec, ECS_CLUSTER, FARGATE_POOL, NodeKind};

/// Brings the cluster up (or completes it) and waits until every node's agent is
/// registered and connected.
pub fn up(opts: &UpOptions, report: &dyn Reporter) -> Result<ClusterSpec> {
    preflight(&opts.flotilla_bin, opts.store)?;
    let spec = resolve_spec(opts)?;
    spec.save()?;
    let pointer = spec::pointer_file(&spec.name);
    if let Some(parent) = pointer.parent() {
        mkdir(parent)?;
    }
    std::fs::write(&pointer, spec.dir.to_string_lossy().as_bytes())
        .map_err(Error::io("cannot write", &pointer))?;

    report.step(&format!(
        "host bridge {} ({}/24)",
        spec.bridge(),
        spec.host_ip()
    ));
    net::ensure_host(&spec)?;
    report.done(&format!(
        "host bridge {} ({}/24)",
        spec.bridge(),
        spec.host_ip()
    ));

    if spec.etcd_members().next().is_some() {
        report.step(&format!("etcd: {} members", spec.etcd_members().count()));
        let msg = ensure_etcd(&spec)?;
        report.done(&msg);
    }
    let api = EcsClient::new(&spec.endpoint())?;
    let mut dns = None;
    for k in spec.server_numbers() {
        report.step(&format!("control plane on {}", spec.server_endpoint(k)));
        let (msg, served) = ensure_server(
            &spec,
            k,
            &opts.flotilla_bin,
            &EcsClient::new(&spec.server_endpoint(k))?,
        )?;
        dns = dns.or(served);
        report.done(&msg);
    }
    api.create_cluster()?;

    for i in spec.node_numbers() {
        report.step(&format!(
            "node {i}: netns {}, containerd, agent",
            spec.netns(i)
        ));
        let msg = ensure_node(&spec, i, &opts.flotilla_bin, dns.map(|a| a.ip()))?;
        report.done(&msg);
    }

    report.step(&format!(
        "waiting for {} agents to register",
        spec.total_nodes()
    ));
    let ec2 = |i: &u8| spec.node_kind(*i) == NodeKind::Ec2;
    let ids: BTreeSet<String> = spec
        .node_numbers()
        .filter(ec2)
        .map(|i| spec.instance_id(i))
        .collect();
    // EC2 nodes: connected container instances of the cluster; pool nodes, which no
    // cluster lists: registered (their agents' state names their container instance).
    let waiting = || -> Vec<u8> {
        let connected: BTreeSet<String> = api
            .instances()
            .unwrap_or_default()
            .into_iter()
            .filter(|ci| ids.contains(&ci.instance_id) && ci.agent_connected)
            .map(|ci| ci.instance_id)
            .collect();
        spec.node_numbers()
            .filter(|i| match spec.node_kind(*i) {
                NodeKind::Ec2 => !connected.contains(&spec.instance_id(*i)),
                _ => registered_arn(&spec, *i).is_none(),
            })
            .collect()
    };
    wait_until(
        || {
            let missing: Vec<String> = waiting()
                .into_iter()
                .map(|i| format!("node {i} (log {})", agent_log(&spec, i).display()))
                .collect();
            format!("agents not connected within 60 s: {}", missing.join(", "))
        },
        Duration::from_secs(60),
        || waiting().is_empty().then_some(()),
    )?;
    let pool = spec.total_nodes() - spec.nodes;
    report.done(&if pool == 0 {
        format!("{} agents connected to cluster {ECS_CLUSTER:?}", spec.nodes)
    } else {
        format!(
            "{} agents connected to cluster {ECS_CLUSTER:?}, {pool} to Fargate pool {FARGATE_POOL:?}",
            spec.nodes
        )
    });
    Ok(spec)
}
