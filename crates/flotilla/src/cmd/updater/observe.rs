//! Builds the `rollout::Snapshot` the decisions read: instances, their tasks and
//! services from ECS; each connected node's update status from its host API
//! (`GetUpdateStatus`, after `RefreshUpdates` when asked to look for updates or when
//! the node has no status yet). A node whose host API cannot be reached is reported
//! with an unknown update status, not as an error: the decisions wait for it.

use std::time::Duration;

use model::host::HostCall;
use model::wire;
use rollout::{Node, NodeStatus, ServiceHealth, Snapshot, State, TaskOnNode, UpdateView};
use updater::status::{UpdateCommand, UpdateState, UpdateStatus};

use super::ecs::Ecs;

/// The attribute a node's agent registers with its OS version.
const OS_VERSION_ATTRIBUTE: &str = "flotilla.os-version";
/// The attribute that names a node's zone.
const ZONE_ATTRIBUTE: &str = "ecs.availability-zone";
/// How long to wait for a refresh the updater asked for to finish.
const REFRESH_WAIT: Duration = Duration::from_secs(30);

/// Whether to ask nodes to look for updates while observing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// `RefreshUpdates` on every node not in progress (at the start of each pass).
    Nodes,
    /// Only where a node has no update status yet (404).
    WhenMissing,
}

/// Observes the cluster. `state` says which nodes are in progress: those are never
/// asked to refresh (a node that just rebooted reports 404, which is what the
/// decisions expect to see).
pub async fn snapshot(ecs: &Ecs, state: &State, refresh: Refresh) -> anyhow::Result<Snapshot> {
    let mut nodes = Vec::new();
    for instance in ecs.instances().await? {
        let arn = instance.container_instance_arn.clone().unwrap_or_default();
        let in_progress = state.in_progress.contains_key(&arn);
        let connected = instance.agent_connected.unwrap_or(false);
        let tasks = ecs
            .tasks_on(&arn)
            .await?
            .into_iter()
            .map(|t| TaskOnNode {
                last_status: t.last(),
                arn: t.task_arn.map(String::from).unwrap_or_default(),
                group: t.group.map(String::from).unwrap_or_default(),
            })
            .filter(|t| !t.is_stopped())
            .collect();
        let status = if connected {
            let refresh = match refresh {
                _ if in_progress => RefreshMode::Never,
                Refresh::Nodes => RefreshMode::Always,
                Refresh::WhenMissing => RefreshMode::WhenMissing,
            };
            update_status(ecs, &arn, refresh).await
        } else {
            Observed::Unreachable
        };
        let attribute = |name: &str| {
            instance
                .attributes
                .iter()
                .flatten()
                .find(|a| a.name.as_deref() == Some(name))
                .and_then(|a| a.value.clone())
        };
        // The host API knows the running slot first-hand; the attribute is what the
        // agent last registered with, stale until a rebooted node's new agent registers
        // again — so a node in progress never goes by it.
        let mut os_version = status.running_version();
        if os_version.is_none() && connected {
            os_version = running_os(ecs, &arn).await;
        }
        if os_version.is_none() && !in_progress {
            os_version = attribute(OS_VERSION_ATTRIBUTE);
        }
        nodes.push(Node {
            instance_id: instance.ec2_instance_id.clone().unwrap_or_default(),
            zone: attribute(ZONE_ATTRIBUTE).unwrap_or_default(),
            status: NodeStatus::from_status(instance.status()),
            agent_connected: connected,
            os_version,
            update: status.view(),
            tasks,
            arn,
        });
    }
    let services = ecs
        .services()
        .await?
        .into_iter()
        .filter(|s| s.status() == Some(model::status::ServiceStatus::Active))
        .map(service_health)
        .collect();
    Ok(Snapshot { nodes, services })
}

fn service_health(s: wire::Service) -> ServiceHealth {
    let deployments = s.deployments.unwrap_or_default();
    ServiceHealth {
        name: s.service_name.unwrap_or_default(),
        desired_count: s.desired_count.unwrap_or(0),
        running_count: s.running_count.unwrap_or(0),
        minimum_healthy_percent: s
            .deployment_configuration
            .and_then(|c| c.minimum_healthy_percent),
        rollout_in_progress: deployments
            .iter()
            .any(|d| d.rollout_state == Some(wire::DeploymentRolloutState::InProgress)),
        deployments: deployments.len(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefreshMode {
    Always,
    WhenMissing,
    Never,
}

/// What a node's host API said.
#[derive(Debug)]
pub enum Observed {
    /// `GET /updates/status` answered.
    Status(Box<UpdateStatus>),
    /// 404: no update command since boot.
    NoStatusYet,
    /// The agent is disconnected or the call failed (logged).
    Unreachable,
}

impl Observed {
    fn view(&self) -> UpdateView {
        match self {
            Observed::Unreachable => UpdateView::Unknown,
            Observed::NoStatusYet => UpdateView::NoUpdate,
            Observed::Status(status) => {
                let Some(version) = status.chosen_update.as_ref().map(|u| u.version.to_string())
                else {
                    return UpdateView::NoUpdate;
                };
                match status.update_state {
                    UpdateState::Idle => UpdateView::NoUpdate,
                    UpdateState::Available => UpdateView::Available { version },
                    UpdateState::Staged => UpdateView::Staged { version },
                    UpdateState::Ready => UpdateView::Ready { version },
                }
            }
        }
    }

    fn running_version(&self) -> Option<String> {
        match self {
            Observed::Status(status) => status
                .active_partition
                .as_ref()
                .map(|p| p.image.version.to_string()),
            Observed::NoStatusYet | Observed::Unreachable => None,
        }
    }
}

/// Reads a node's update status, refreshing first as `mode` says.
async fn update_status(ecs: &Ecs, arn: &str, mode: RefreshMode) -> Observed {
    let before = read_status(ecs, arn).await;
    let refresh = match (&before, mode) {
        (Observed::Unreachable, _) | (_, RefreshMode::Never) => false,
        (Observed::NoStatusYet, _) | (_, RefreshMode::Always) => true,
        (Observed::Status(_), RefreshMode::WhenMissing) => false,
    };
    if !refresh {
        return before;
    }
    let previous = match &before {
        Observed::Status(s) => s.most_recent_command.clone(),
        _ => None,
    };
    match ecs.host(arn, HostCall::RefreshUpdates).await {
        // 423: another command is running; read what there is.
        Ok(answer) if answer.status == 204 || answer.status == 423 => {}
        Ok(answer) => {
            tracing::warn!(node = arn, status = answer.status, body = %answer.body, "RefreshUpdates refused");
            return before;
        }
        Err(e) => {
            tracing::warn!(node = arn, "{e:#}");
            return before;
        }
    }
    let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
    loop {
        let now = read_status(ecs, arn).await;
        if let Observed::Status(s) = &now
            && let Some(cmd) = &s.most_recent_command
            && cmd.cmd_type == UpdateCommand::Refresh
            && s.most_recent_command != previous
        {
            return now;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(node = arn, "refresh did not finish within {REFRESH_WAIT:?}");
            return now;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `GetOs`'s `version_id` (a node that just booted has no update status yet).
async fn running_os(ecs: &Ecs, arn: &str) -> Option<String> {
    match ecs.host(arn, HostCall::GetOs).await {
        Ok(answer) if answer.status == 200 => answer.body["version_id"].as_str().map(str::to_owned),
        Ok(answer) => {
            tracing::warn!(node = arn, status = answer.status, body = %answer.body, "GetOs failed");
            None
        }
        Err(e) => {
            tracing::warn!(node = arn, "{e:#}");
            None
        }
    }
}

/// `GetUpdateStatus`, answered or not.
pub async fn read_status(ecs: &Ecs, arn: &str) -> Observed {
    match ecs.host(arn, HostCall::GetUpdateStatus).await {
        Ok(answer) if answer.status == 200 => {
            match serde_json::from_value::<UpdateStatus>(answer.body) {
                Ok(status) => Observed::Status(Box::new(status)),
                Err(e) => {
                    tracing::warn!(node = arn, "GetUpdateStatus: unexpected document: {e}");
                    Observed::Unreachable
                }
            }
        }
        Ok(answer) if answer.status == 404 => Observed::NoStatusYet,
        Ok(answer) => {
            tracing::warn!(node = arn, status = answer.status, body = %answer.body, "GetUpdateStatus failed");
            Observed::Unreachable
        }
        Err(e) => {
            tracing::warn!(node = arn, "{e:#}");
            Observed::Unreachable
        }
    }
}
