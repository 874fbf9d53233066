//! The cluster as the updater observed it at one moment: the input of every decision.
//! Built by the IO layer from ECS (`DescribeContainerInstances`, `DescribeTasks`,
//! `DescribeServices`) and from each node's host API (`GET /updates/status`).

use model::lifecycle::TaskStatus;
use model::status::InstanceStatus;

/// Everything a decision looks at, besides the persisted [`State`](crate::State).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Every container instance of the cluster, in any order.
    pub nodes: Vec<Node>,
    /// Every ACTIVE service of the cluster.
    pub services: Vec<ServiceHealth>,
}

impl Snapshot {
    /// The node with container instance ARN `arn`.
    #[must_use]
    pub fn node(&self, arn: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.arn == arn)
    }
}

/// One container instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Container instance ARN: the key of the node everywhere.
    pub arn: String,
    /// `ec2InstanceId` (the node's id), for people.
    pub instance_id: String,
    /// Attribute `ecs.availability-zone` (empty when absent).
    pub zone: String,
    /// ECS status.
    pub status: NodeStatus,
    /// `agentConnected`.
    pub agent_connected: bool,
    /// The running OS version (attribute `flotilla.os-version`, else the host API's
    /// active slot); `None` when unknown.
    pub os_version: Option<String>,
    /// The update status as the node reports it.
    pub update: UpdateView,
    /// Tasks placed on the node that are not known to be STOPPED.
    pub tasks: Vec<TaskOnNode>,
}

impl Node {
    /// A short name for messages: the instance id, else the ARN's last segment.
    #[must_use]
    pub fn name(&self) -> &str {
        if self.instance_id.is_empty() {
            short_name(&self.arn)
        } else {
            &self.instance_id
        }
    }

    /// Service tasks (group `service:NAME`) not yet STOPPED.
    pub fn service_tasks(&self) -> impl Iterator<Item = &TaskOnNode> {
        self.tasks
            .iter()
            .filter(|t| t.is_service_task() && !t.is_stopped())
    }

    /// Standalone tasks (any other group) not yet STOPPED.
    pub fn standalone_tasks(&self) -> impl Iterator<Item = &TaskOnNode> {
        self.tasks
            .iter()
            .filter(|t| !t.is_service_task() && !t.is_stopped())
    }
}

/// The last segment of an ARN (`…/container-instance/prod/abc` → `abc`).
#[must_use]
pub fn short_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// A container instance's ECS status, as far as the updater cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    /// `ACTIVE`: takes new tasks.
    Active,
    /// `DRAINING`: takes no new tasks; services move theirs elsewhere.
    Draining,
    /// Anything else (`REGISTERING`, `DEREGISTERING`, …), as sent.
    Other(String),
}

impl NodeStatus {
    /// The status the control plane shows (`None`: it showed none).
    #[must_use]
    pub fn from_status(status: Option<InstanceStatus>) -> NodeStatus {
        match status {
            Some(InstanceStatus::Active) => NodeStatus::Active,
            Some(InstanceStatus::Draining) => NodeStatus::Draining,
            Some(other) => NodeStatus::Other(other.as_str().to_owned()),
            None => NodeStatus::Other("UNKNOWN".to_owned()),
        }
    }

    /// The wire spelling.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            NodeStatus::Active => InstanceStatus::Active.as_str(),
            NodeStatus::Draining => InstanceStatus::Draining.as_str(),
            NodeStatus::Other(s) => s,
        }
    }
}

/// What the node's host API says about updates (`update_state` + `chosen_update`).
/// The node decides itself whether an update is visible to it (its wave), so a node in
/// a later wave reports [`UpdateView::NoUpdate`] and is not a candidate yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateView {
    /// The node could not be asked (agent disconnected, host API unreachable).
    Unknown,
    /// `Idle`, or no status yet: nothing to install.
    NoUpdate,
    /// `Available`: `version` is chosen and may be prepared.
    Available {
        /// `chosen_update.version`.
        version: String,
    },
    /// `Staged`: `version` is written to the inactive slot.
    Staged {
        /// `chosen_update.version`.
        version: String,
    },
    /// `Ready`: `version` boots next.
    Ready {
        /// `chosen_update.version`.
        version: String,
    },
}

impl UpdateView {
    /// The version to install, when there is one.
    #[must_use]
    pub fn pending_version(&self) -> Option<&str> {
        match self {
            UpdateView::Available { version }
            | UpdateView::Staged { version }
            | UpdateView::Ready { version } => Some(version),
            UpdateView::Unknown | UpdateView::NoUpdate => None,
        }
    }

    /// A short text for tables: `Available 1.1.0`, `none`, `unknown`.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            UpdateView::Unknown => "unknown".into(),
            UpdateView::NoUpdate => "none".into(),
            UpdateView::Available { version } => format!("Available {version}"),
            UpdateView::Staged { version } => format!("Staged {version}"),
            UpdateView::Ready { version } => format!("Ready {version}"),
        }
    }
}

/// A task on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOnNode {
    /// Task ARN.
    pub arn: String,
    /// `group`: `service:NAME` for a service's task, `family:NAME` or anything else for
    /// a standalone task.
    pub group: String,
    /// `lastStatus` (`None` when the control plane showed none).
    pub last_status: Option<TaskStatus>,
}

impl TaskOnNode {
    /// Whether a service started it (ECS replaces it elsewhere when the node drains).
    #[must_use]
    pub fn is_service_task(&self) -> bool {
        self.group.starts_with("service:")
    }

    /// Whether it has stopped. A task that is stopping still counts as running: it may be
    /// in its stop timeout, and rebooting would cut that short.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.last_status == Some(TaskStatus::Stopped)
    }
}

/// One service's health, as the gate reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    /// Service name.
    pub name: String,
    /// `desiredCount`.
    pub desired_count: i32,
    /// `runningCount`.
    pub running_count: i32,
    /// `deploymentConfiguration.minimumHealthyPercent` (ECS's default is 100).
    pub minimum_healthy_percent: Option<i32>,
    /// How many deployments the service has (1 when steady).
    pub deployments: usize,
    /// Whether a deployment's `rolloutState` is `IN_PROGRESS`.
    pub rollout_in_progress: bool,
}
