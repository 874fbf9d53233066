//! The task lifecycle as ECS documents it, as a pure state machine:
//! PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING → STOPPING →
//! DEPROVISIONING → STOPPED. A task only moves forward; any state may jump ahead
//! (e.g. PENDING → STOPPED when it fails to start).

use std::fmt;
use std::str::FromStr;

/// A task's `lastStatus` (or `desiredStatus`, which is RUNNING or STOPPED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskStatus {
    /// Network resources (awsvpc) are being set up.
    Provisioning,
    /// Waiting for the agent: images pulling, containers being created.
    Pending,
    /// Registering with load balancers / service discovery.
    Activating,
    /// All essential containers run.
    Running,
    /// Deregistering from load balancers / service discovery.
    Deactivating,
    /// Containers are being stopped.
    Stopping,
    /// Network resources are being released.
    Deprovisioning,
    /// Everything stopped; terminal.
    Stopped,
}

impl TaskStatus {
    /// Every status in lifecycle order.
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Provisioning,
        TaskStatus::Pending,
        TaskStatus::Activating,
        TaskStatus::Running,
        TaskStatus::Deactivating,
        TaskStatus::Stopping,
        TaskStatus::Deprovisioning,
        TaskStatus::Stopped,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }

    /// Whether a task in `self` may move to `next` (strictly forward).
    pub fn can_move_to(self, next: TaskStatus) -> bool {
        next > self
    }

    /// Counted as "pending" by DescribeClusters and DescribeServices.
    pub fn is_pending(self) -> bool {
        self < TaskStatus::Running
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<TaskStatus> for crate::shared_str::SharedStr {
    fn from(s: TaskStatus) -> crate::shared_str::SharedStr {
        s.as_str().into()
    }
}

impl From<TaskStatus> for String {
    fn from(s: TaskStatus) -> String {
        s.as_str().to_owned()
    }
}

impl FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<TaskStatus, String> {
        TaskStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a task status (expected one of PROVISIONING, PENDING, ACTIVATING, RUNNING, DEACTIVATING, STOPPING, DEPROVISIONING, STOPPED)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_moves_are_allowed() {
        assert!(TaskStatus::Pending.can_move_to(TaskStatus::Running));
        assert!(TaskStatus::Pending.can_move_to(TaskStatus::Stopped));
        assert!(!TaskStatus::Running.can_move_to(TaskStatus::Pending));
        assert!(!TaskStatus::Stopped.can_move_to(TaskStatus::Stopped));
    }

    #[test]
    fn parses_every_status() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
        }
        assert!("RUNNIN".parse::<TaskStatus>().is_err());
    }
}
