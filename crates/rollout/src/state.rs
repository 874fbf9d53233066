//! What the updater persists between steps and runs (in the control plane, with the
//! cluster: docs/updater.md): each node in progress and its phase, the nodes skipped and
//! updated, and the halt. Also the event record kept beside it. [`State::record`] is the one place where an
//! executed [`Action`] changes the state.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::decide::Action;

/// Format version of the stored state.
pub const STATE_FORMAT: u32 = 1;

/// The updater's persisted state for one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_FORMAT`].
    #[serde(default)]
    pub format: u32,
    /// Nodes being updated, by container instance ARN.
    #[serde(default)]
    pub in_progress: BTreeMap<String, NodeProgress>,
    /// Nodes left for later, by container instance ARN.
    #[serde(default)]
    pub skipped: BTreeMap<String, Skipped>,
    /// Nodes this updater updated, by container instance ARN (the latest update each).
    #[serde(default)]
    pub updated: BTreeMap<String, Updated>,
    /// Set when the rollout stopped on a problem; nothing starts until it is resumed.
    #[serde(default)]
    pub halt: Option<Halt>,
}

/// A node being updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProgress {
    /// The node's instance id, for messages once it is gone from ECS.
    pub instance_id: String,
    /// Its zone when it started.
    pub zone: String,
    /// The OS version it ran when it started (`None` if unknown).
    pub from_version: Option<String>,
    /// The version it is being updated to.
    pub target_version: String,
    /// Where it is.
    pub phase: Phase,
}

/// Where a node in progress is. Each phase knows when it began, for its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Set DRAINING; waiting for its tasks to leave.
    Draining {
        /// When it was set DRAINING.
        since: Timestamp,
    },
    /// Empty; the update is being prepared and activated on the node.
    Applying {
        /// When applying began.
        since: Timestamp,
    },
    /// Told to reboot; waiting for it to come back.
    Rebooting {
        /// When the reboot was asked.
        since: Timestamp,
    },
    /// Back on the new version and set ACTIVE; waiting for ECS to show it ACTIVE.
    Returning {
        /// When it was set ACTIVE.
        since: Timestamp,
    },
}

impl Phase {
    /// The phase's name, as stored.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Draining { .. } => "draining",
            Phase::Applying { .. } => "applying",
            Phase::Rebooting { .. } => "rebooting",
            Phase::Returning { .. } => "returning",
        }
    }

    /// When the phase began.
    #[must_use]
    pub fn since(&self) -> Timestamp {
        match *self {
            Phase::Draining { since }
            | Phase::Applying { since }
            | Phase::Rebooting { since }
            | Phase::Returning { since } => since,
        }
    }
}

/// A node left for later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Its instance id.
    pub instance_id: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// A node this updater updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updated {
    /// Its instance id.
    pub instance_id: String,
    /// The version it ran before (`None` if unknown).
    pub from_version: Option<String>,
    /// The version it runs now.
    pub to_version: String,
    /// When it was back in service.
    pub at: Timestamp,
}

/// Why the rollout stopped. It stays until `flotilla updater resume`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The node's container instance ARN.
    pub node: String,
    /// Its instance id.
    pub instance_id: String,
    /// The version it was being updated to.
    pub target_version: String,
    /// What went wrong, in a sentence.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// One stored event: a step the updater took or a change in why it waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// The node's instance id, when the event is about one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What happened (`drain`, `apply`, `reboot`, `activate`, `updated`, `skip`,
    /// `halt`, `wait`, `resume`, `done`, `error`).
    pub what: String,
    /// Why, in a sentence.
    pub why: String,
}

impl State {
    /// A fresh state.
    #[must_use]
    pub fn new() -> State {
        State {
            format: STATE_FORMAT,
            ..State::default()
        }
    }

    /// Starts a new run: nodes skipped by an earlier run are candidates again.
    pub fn start_run(&mut self) {
        self.skipped.clear();
    }

    /// Records that `action` was carried out at `now`. Halts are recorded by
    /// [`Action::Halt`] too, so a failure the IO layer meets while executing an action
    /// becomes an `Action::Halt` recorded here.
    pub fn record(&mut self, action: &Action, now: Timestamp) {
        match action {
            Action::Drain {
                node,
                instance_id,
                zone,
                from_version,
                target_version,
            } => {
                self.skipped.remove(node);
                self.in_progress.insert(
                    node.clone(),
                    NodeProgress {
                        instance_id: instance_id.clone(),
                        zone: zone.clone(),
                        from_version: from_version.clone(),
                        target_version: target_version.clone(),
                        phase: Phase::Draining { since: now },
                    },
                );
            }
            Action::Apply { node, .. } => self.set_phase(node, Phase::Applying { since: now }),
            Action::Reboot { node, .. } => self.set_phase(node, Phase::Rebooting { since: now }),
            Action::Activate { node, .. } => {
                self.set_phase(node, Phase::Returning { since: now });
            }
            Action::Complete { node, .. } => {
                if let Some(p) = self.in_progress.remove(node) {
                    self.updated.insert(
                        node.clone(),
                        Updated {
                            instance_id: p.instance_id,
                            from_version: p.from_version,
                            to_version: p.target_version,
                            at: now,
                        },
                    );
                }
            }
            Action::Skip {
                node,
                instance_id,
                reason,
            }
            | Action::GiveBack {
                node,
                instance_id,
                reason,
            } => {
                self.in_progress.remove(node);
                self.skipped.insert(
                    node.clone(),
                    Skipped {
                        instance_id: instance_id.clone(),
                        reason: reason.clone(),
                        at: now,
                    },
                );
            }
            Action::Halt {
                node,
                instance_id,
                target_version,
                reason,
            } => {
                self.in_progress.remove(node);
                self.halt = Some(Halt {
                    node: node.clone(),
                    instance_id: instance_id.clone(),
                    target_version: target_version.clone(),
                    reason: reason.clone(),
                    at: now,
                });
            }
        }
    }

    /// Clears the halt (`flotilla updater resume`) and returns it. The halted node is a
    /// candidate again if it still has an update.
    pub fn resume(&mut self) -> Option<Halt> {
        self.halt.take()
    }

    fn set_phase(&mut self, node: &str, phase: Phase) {
        if let Some(p) = self.in_progress.get_mut(node) {
            p.phase = phase;
        }
    }
}
