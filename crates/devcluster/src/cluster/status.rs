//! `status`: what runs of a dev cluster and what the control plane knows of its nodes.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::node::{agent_log, agent_pid, containerd_pid};
use super::resolve_dir;
use super::server::{server_dns, server_log, server_pid};
use crate::ecs::{EcsClient, Instance};
use crate::error::Result;
use crate::net;
use crate::spec::{self, ClusterSpec, ECS_CLUSTER, REGION};

/// A daemon of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// Its pid, when running.
    pub pid: Option<u32>,
    /// Whether it is running.
    pub running: bool,
    /// Its log file.
    pub log: PathBuf,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node number (1-based).
    pub index: u8,
    /// Its network namespace.
    pub netns: String,
    /// Whether the namespace exists.
    pub netns_exists: bool,
    /// Its address.
    pub ip: String,
    /// Its availability zone attribute.
    pub zone: String,
    /// Its `ec2InstanceId`.
    pub instance_id: String,
    /// Its parent cgroup.
    pub cgroup_parent: String,
    /// containerd's socket.
    pub containerd_socket: PathBuf,
    /// containerd.
    pub containerd: ProcessStatus,
    /// The agent.
    pub agent: ProcessStatus,
    /// Its container instance, when the control plane knows it.
    pub container_instance_arn: Option<String>,
    /// The instance's status (`ACTIVE`, `DRAINING`).
    pub instance_status: Option<String>,
    /// Whether the control plane hears from the agent.
    pub agent_connected: Option<bool>,
    /// Running tasks on it.
    pub running_tasks: Option<i64>,
}

/// The whole cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The control plane's URL.
    pub endpoint: String,
    /// Region to use with the AWS CLI.
    pub region: String,
    /// ECS cluster the nodes joined.
    pub ecs_cluster: String,
    /// Host bridge.
    pub bridge: String,
    /// The server.
    pub server: ProcessStatus,
    /// Whether the server answers `/healthz`.
    pub server_healthy: bool,
    /// Where the server serves Cloud Map's private DNS namespaces (the nodes' agents
    /// give it to tasks as their name server); `None` when it does not.
    pub dns: Option<String>,
    /// The nodes.
    pub nodes: Vec<NodeStatus>,
}

/// The cluster's state, or `None` when there is no cluster `name`.
pub fn status(name: &str, dir: Option<&Path>) -> Result<Option<ClusterStatus>> {
    spec::validate_name(name)?;
    let dir = resolve_dir(name, dir);
    let Some(spec) = ClusterSpec::load(&dir)? else {
        return Ok(None);
    };
    let api = EcsClient::new(&spec.endpoint())?;
    let server_pid = server_pid(&spec);
    let healthy = server_pid.is_some() && api.healthy();
    let instances: Vec<Instance> = if healthy {
        api.instances().unwrap_or_default()
    } else {
        Vec::new()
    };
    let nodes = spec
        .node_numbers()
        .map(|i| {
            let ci = instances
                .iter()
                .find(|ci| ci.instance_id == spec.instance_id(i));
            let cpid = containerd_pid(&spec, i);
            let apid = agent_pid(&spec, i);
            NodeStatus {
                index: i,
                netns: spec.netns(i),
                netns_exists: net::netns_exists(&spec.netns(i)),
                ip: spec.node_ip(i).to_string(),
                zone: ClusterSpec::zone(i),
                instance_id: spec.instance_id(i),
                cgroup_parent: spec.cgroup_parent(i),
                containerd_socket: spec.containerd_socket(i),
                containerd: ProcessStatus {
                    pid: cpid,
                    running: cpid.is_some(),
                    log: spec.containerd_dir(i).join("containerd.log"),
                },
                agent: ProcessStatus {
                    pid: apid,
                    running: apid.is_some(),
                    log: agent_log(&spec, i),
                },
                container_instance_arn: ci.map(|c| c.arn.clone()),
                instance_status: ci.map(|c| c.status.clone()),
                agent_connected: ci.map(|c| c.agent_connected),
                running_tasks: ci.map(|c| c.running_tasks),
            }
        })
        .collect();
    Ok(Some(ClusterStatus {
        name: spec.name.clone(),
        dir: spec.dir.clone(),
        endpoint: spec.endpoint(),
        region: REGION.to_owned(),
        ecs_cluster: ECS_CLUSTER.to_owned(),
        bridge: spec.bridge(),
        server: ProcessStatus {
            pid: server_pid,
            running: server_pid.is_some(),
            log: server_log(&spec),
        },
        server_healthy: healthy,
        dns: server_pid.and_then(server_dns).map(|a| a.to_string()),
        nodes,
    }))
}
