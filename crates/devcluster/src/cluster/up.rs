//! `up`: brings a dev cluster up, or completes it, and waits for its agents.

use std::collections::BTreeSet;
use std::time::Duration;

use super::node::{agent_log, ensure_node};
use super::options::{UpOptions, preflight, resolve_spec};
use super::server::ensure_server;
use super::{Reporter, mkdir, wait_until};
use crate::ecs::EcsClient;
use crate::error::{Error, Result};
use crate::net;
use crate::spec::{self, ClusterSpec, ECS_CLUSTER};

/// Brings the cluster up (or completes it) and waits until every node's agent is
/// registered and connected.
pub fn up(opts: &UpOptions, report: &dyn Reporter) -> Result<ClusterSpec> {
    preflight(&opts.flotilla_bin)?;
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

    report.step(&format!("control plane on {}", spec.endpoint()));
    let api = EcsClient::new(&spec.endpoint())?;
    let (msg, dns) = ensure_server(&spec, &opts.flotilla_bin, &api)?;
    api.create_cluster()?;
    report.done(&msg);

    for i in spec.node_numbers() {
        report.step(&format!(
            "node {i}: netns {}, containerd, agent",
            spec.netns(i)
        ));
        let msg = ensure_node(&spec, i, &opts.flotilla_bin, dns.map(|a| a.ip()))?;
        report.done(&msg);
    }

    report.step(&format!("waiting for {} agents to register", spec.nodes));
    let ids: BTreeSet<String> = spec.node_numbers().map(|i| spec.instance_id(i)).collect();
    wait_until(
        || {
            let missing: Vec<String> = spec
                .node_numbers()
                .filter(|i| {
                    !api.instances()
                        .unwrap_or_default()
                        .iter()
                        .any(|ci| ci.instance_id == spec.instance_id(*i) && ci.agent_connected)
                })
                .map(|i| format!("node {i} (log {})", agent_log(&spec, i).display()))
                .collect();
            format!("agents not connected within 60 s: {}", missing.join(", "))
        },
        Duration::from_secs(60),
        || {
            let connected = api
                .instances()
                .ok()?
                .into_iter()
                .filter(|ci| ids.contains(&ci.instance_id) && ci.agent_connected)
                .count();
            (connected == ids.len()).then_some(())
        },
    )?;
    report.done(&format!(
        "{} agents connected to cluster {ECS_CLUSTER:?}",
        spec.nodes
    ));
    Ok(spec)
}
