//! A task's networking as the supervisor sees it: what its network mode and port
//! bindings ask of the node's [`network::TaskNetworks`], which namespace its containers
//! join, and reporting an `awsvpc` task's address to the control plane. The networking
//! calls block (netlink threads, `iptables`), so they run on the blocking pool.

use std::sync::Arc;

use model::agent::{ReportNetworkRequest, TaskAssignment};
use model::wire;
use network::{Mode, NetworkAttachment, PortMapping, Protocol, TaskNetworks, TaskRequest};
use runtime::types::NetworkMode;

use crate::supervisor::Shared;

/// The task's mode in the node's terms; `None` for `host` (the node's own namespace).
/// ECS's default on Linux, when `networkMode` is unset, is `bridge`.
pub fn mode(a: &TaskAssignment) -> Option<Mode> {
    match a.task_definition.network_mode {
        Some(wire::NetworkMode::Host) => None,
        Some(wire::NetworkMode::Awsvpc) => Some(Mode::Awsvpc),
        Some(wire::NetworkMode::None) => Some(Mode::None),
        Some(wire::NetworkMode::Bridge) | None => Some(Mode::Bridge),
    }
}

/// The host ports the control plane placed for the task (static or dynamic), from its
/// containers' `networkBindings`.
pub fn port_mappings(a: &TaskAssignment) -> Vec<PortMapping> {
    a.task
        .containers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .flat_map(|c| c.network_bindings.as_deref().unwrap_or(&[]))
        .filter_map(|b| {
            Some(PortMapping {
                host_port: u16::try_from(b.host_port?).ok().filter(|p| *p > 0)?,
                container_port: u16::try_from(b.container_port?).ok()?,
                protocol: match b.protocol {
                    Some(wire::TransportProtocol::Udp) => Protocol::Udp,
                    _ => Protocol::Tcp,
                },
            })
        })
        .collect()
}

fn request(a: &TaskAssignment, task_id: &str, mode: Mode) -> TaskRequest {
    TaskRequest {
        task: task_id.to_owned(),
        mode,
        ports: port_mappings(a),
    }
}

/// The namespace the task's containers join.
pub fn container_network(shared: &Shared, a: &TaskAssignment, task_id: &str) -> NetworkMode {
    match (mode(a), &shared.network) {
        (None, _) => NetworkMode::Host,
        (Some(_), Some(n)) => NetworkMode::Join(n.netns_path(task_id)),
        // No task networking configured (tests with the fake runtime): loopback only.
        (Some(_), None) => NetworkMode::Isolated,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, network::NetworkError> + Send + 'static,
) -> Result<T, network::NetworkError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(network::NetworkError::Netlink(format!(
            "the network worker failed: {e}"
        )))
    })
}

fn networks(shared: &Shared, a: &TaskAssignment) -> Option<(Arc<TaskNetworks>, Mode)> {
    Some((shared.network.clone()?, mode(a)?))
}

/// Sets up a starting task's networking (its failure is the task's
/// [`crate::error::TaskError::Network`]).
pub async fn setup(
    shared: &Shared,
    a: &TaskAssignment,
    task_id: &str,
) -> Result<Option<NetworkAttachment>, network::NetworkError> {
    let Some((n, mode)) = networks(shared, a) else {
        return Ok(None);
    };
    let req = request(a, task_id, mode);
    blocking(move || n.setup(&req)).await.map(Some)
}

/// After an agent restart: checks an adopted task's networking without recreating it.
pub async fn adopt(
    shared: &Shared,
    a: &TaskAssignment,
    task_id: &str,
) -> Option<NetworkAttachment> {
    let (n, mode) = networks(shared, a)?;
    let req = request(a, task_id, mode);
    match blocking(move || n.adopt(&req)).await {
        Ok(attachment) => attachment,
        Err(e) => {
            tracing::warn!(task = task_id, error = %e, "could not restore the task's networking");
            None
        }
    }
}

/// Removes a stopped task's networking, its containers' resolv.conf files and its
/// Service Connect hosts file (the namespace's aliases too when it was their last task)
/// (idempotent; a task without any is a no-op).
pub async fn teardown(shared: &Shared, task_id: &str) {
    crate::task_dns::remove(&shared.data_dir, task_id);
    shared.service_connect.release_task(task_id).await;
    let Some(n) = shared.network.clone() else {
        return;
    };
    let task = task_id.to_owned();
    if let Err(e) = blocking(move || n.teardown(&task)).await {
        tracing::warn!(task = task_id, error = %e, "could not remove the task's networking");
    }
}

/// Removes the networking of tasks the node no longer holds (after a restart).
pub async fn cleanup_except(n: Arc<TaskNetworks>, live: Vec<String>) {
    let live = live.into_iter().collect();
    match blocking(move || n.cleanup_except(&live)).await {
        Ok(cleaned) if !cleaned.is_empty() => {
            tracing::info!(tasks = ?cleaned, "removed the networking of tasks that are gone");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not clean up old task networking"),
    }
}

/// The `FlotillaAgentV1.ReportNetwork` request for an `awsvpc` task (ECS shows such a
/// task's address as its ENI attachment); `None` for the other modes.
pub fn report(
    shared: &Shared,
    a: &TaskAssignment,
    attachment: Option<&NetworkAttachment>,
) -> Option<ReportNetworkRequest> {
    if mode(a) != Some(Mode::Awsvpc) {
        return None;
    }
    let attachment = attachment?;
    Some(ReportNetworkRequest {
        cluster: Some(shared.cluster.clone()),
        task: a.task.task_arn.as_deref().map(str::to_owned),
        private_ipv4_address: attachment.ipv4?.to_string(),
        mac_address: attachment.mac.clone(),
        subnet: attachment.subnet.clone(),
        gateway: attachment.gateway.map(|g| g.to_string()),
    })
}
