//! `status`: what runs of a dev cluster and what the control plane knows of its nodes.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::node::{agent_log, agent_pid, containerd_pid, registered_arn};
use super::resolve_dir;
use super::server::{etcd_log, etcd_pid, server_dns, server_log, server_pid};
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

/// One server of the control plane.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    /// Server number (1-based).
    pub index: u8,
    /// Its URL.
    pub endpoint: String,
    /// Its process.
    pub process: ProcessStatus,
    /// What its `/healthz` says (`ok`, `ok: leader`, `ok: follower of …`); `None` when
    /// it does not answer.
    pub health: Option<String>,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node number (1-based).
    pub index: u8,
    /// `EC2`, `FARGATE` or `FARGATE_SPOT` (a node of the Fargate pool, which no cluster
    /// lists: its instance and task counts come from its agent's state, or are `None`).
    pub kind: crate::spec::NodeKind,
    /// The node group of a node `dev cluster scale` added.
    pub group: Option<String>,
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
    /// The servers' store: `embedded` or `etcd`.
    pub store: String,
    /// Server 1.
    pub server: ProcessStatus,
    /// Whether server 1 answers `/healthz`.
    pub server_healthy: bool,
    /// Every server (one on the embedded store).
    pub servers: Vec<ServerStatus>,
    /// The etcd members of a `--store etcd` cluster.
    pub etcd: Vec<ProcessStatus>,
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
    let servers = spec
        .server_numbers()
        .map(|k| {
            let pid = server_pid(&spec, k);
            let health = match pid {
                Some(_) => EcsClient::new(&spec.server_endpoint(k))?.health(),
                None => None,
            };
            Ok(ServerStatus {
                index: k,
                endpoint: spec.server_endpoint(k),
                process: ProcessStatus {
                    pid,
                    running: pid.is_some(),
                    log: server_log(&spec, k),
                },
                health,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // The control plane's view of the nodes comes from any server that answers.
    let answering = servers
        .iter()
        .find(|s| s.health.is_some())
        .map(|s| s.endpoint.clone());
    let api = EcsClient::new(answering.as_deref().unwrap_or(&spec.endpoint()))?;
    let server_pid = servers[0].process.pid;
    let healthy = servers[0].health.is_some();
    let instances: Vec<Instance> = if answering.is_some() {
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
            let pool_arn = match spec.node_kind(i) {
                crate::spec::NodeKind::Ec2 => None,
                _ => registered_arn(&spec, i),
            };
            NodeStatus {
                index: i,
                kind: spec.node_kind(i),
                group: spec.node_group(i).map(str::to_owned),
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
                container_instance_arn: ci.map(|c| c.arn.clone()).or(pool_arn),
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
        store: format!("{:?}", spec.control.store).to_lowercase(),
        server: servers[0].process.clone(),
        server_healthy: healthy,
        etcd: spec
            .etcd_members()
            .map(|m| {
                let pid = etcd_pid(&spec, m);
                ProcessStatus {
                    pid,
                    running: pid.is_some(),
                    log: etcd_log(&spec, m),
                }
            })
            .collect(),
        servers,
        dns: server_pid.and_then(server_dns).map(|a| a.to_string()),
        nodes,
    }))
}
