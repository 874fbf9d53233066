//! The dry run: what a rollout would do with every node, in order, without doing it.

use jiff::Timestamp;

use crate::decide::{candidate_version, health_gate, rollout_order};
use crate::policy::{Policy, StandalonePolicy, WindowStatus};
use crate::snapshot::{NodeStatus, Snapshot, UpdateView};
use crate::state::{Halt, State};

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every node, in rollout order.
    pub entries: Vec<PlanEntry>,
    /// The health gate now (`Err`: what blocks starting a node).
    pub gate: Result<(), String>,
    /// The maintenance window now (`None`: no window).
    pub window: Option<WindowStatus>,
    /// The halt, if the rollout is halted.
    pub halt: Option<Halt>,
    /// Things worth knowing before starting (services that may run below their desired
    /// count while a node drains).
    pub notes: Vec<String>,
}

/// One node in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEntry {
    /// Container instance ARN.
    pub node: String,
    /// Instance id.
    pub instance_id: String,
    /// Zone.
    pub zone: String,
    /// Running OS version.
    pub os_version: Option<String>,
    /// The version it would be updated to.
    pub target_version: Option<String>,
    /// What happens to it.
    pub disposition: Disposition,
}

/// What the rollout does with a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Being updated (phase name).
    InProgress(&'static str),
    /// Updated in turn `position` (1-based, among the nodes to update).
    Update {
        /// 1-based turn.
        position: usize,
        /// A condition on the way (standalone tasks to wait for), if any.
        note: Option<String>,
    },
    /// Not updated in this run.
    Skip(String),
    /// No update offered (up to date, or its wave has not come).
    NoUpdate,
    /// Its update status could not be read.
    Unknown,
}

impl Disposition {
    /// A short text for tables.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Disposition::InProgress(phase) => format!("in progress ({phase})"),
            Disposition::Update { position, note } => match note {
                Some(note) => format!("update #{position} ({note})"),
                None => format!("update #{position}"),
            },
            Disposition::Skip(reason) => format!("skip: {reason}"),
            Disposition::NoUpdate => "no update".into(),
            Disposition::Unknown => "unknown: agent disconnected or host API unreachable".into(),
        }
    }
}

/// The plan for `snapshot` at `now`: every node in rollout order with what would happen
/// to it.
#[must_use]
pub fn plan(snapshot: &Snapshot, state: &State, policy: &Policy, now: Timestamp) -> Plan {
    let mut position = 0;
    let entries = rollout_order(&snapshot.nodes)
        .into_iter()
        .map(|node| {
            let target = node.update.pending_version().map(str::to_owned);
            let standalone = node.standalone_tasks().count();
            let disposition = if let Some(p) = state.in_progress.get(&node.arn) {
                Disposition::InProgress(p.phase.name())
            } else if node.update == UpdateView::Unknown {
                Disposition::Unknown
            } else if target.is_none() {
                Disposition::NoUpdate
            } else if candidate_version(node, state, policy, now).is_none() {
                let reason = state
                    .skipped
                    .get(&node.arn)
                    .map_or_else(|| "left for later".to_owned(), |s| s.reason.clone());
                Disposition::Skip(reason)
            } else if node.status != NodeStatus::Active {
                Disposition::Skip(format!("node is {}", node.status.as_str()))
            } else if standalone > 0 && policy.standalone_tasks == StandalonePolicy::Skip {
                Disposition::Skip(format!("runs {standalone} standalone task(s)"))
            } else {
                position += 1;
                Disposition::Update {
                    position,
                    note: (standalone > 0)
                        .then(|| format!("waits for {standalone} standalone task(s) to stop")),
                }
            };
            PlanEntry {
                node: node.arn.clone(),
                instance_id: node.name().to_owned(),
                zone: node.zone.clone(),
                os_version: node.os_version.clone(),
                target_version: target,
                disposition,
            }
        })
        .collect();
    let notes = snapshot
        .services
        .iter()
        .filter(|s| s.minimum_healthy_percent.is_some_and(|p| p < 100))
        .map(|s| {
            format!(
                "service {} allows {}% healthy: it may run below its desired count while a node drains",
                s.name,
                s.minimum_healthy_percent.unwrap_or(100)
            )
        })
        .collect();
    Plan {
        entries,
        gate: health_gate(snapshot, state),
        window: policy.window.as_ref().map(|w| w.status(now)),
        halt: state.halt.clone(),
        notes,
    }
}
