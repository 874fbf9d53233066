//! The next step of a rollout: [`decide`] reads the snapshot, the persisted state, the
//! policy and `now`, and answers one [`Decision`]. Also the rollout order
//! ([`rollout_order`]: round-robin over zones) and the cluster-wide [`health_gate`].
//!
//! Per node: `drain → (tasks gone) → apply → (Ready) → reboot → (back on the target
//! version) → activate → (ACTIVE) → complete`. Nodes in progress are finished first;
//! a new node starts only when fewer than `max_unavailable` are in progress, the
//! maintenance window is open and the health gate passes.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::policy::{Policy, StandalonePolicy, WindowStatus};
use crate::snapshot::{Node, NodeStatus, Snapshot, UpdateView, short_name};
use crate::state::{Halt, NodeProgress, Phase, State};

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Carry out this action, record it ([`State::record`]) and ask again at once.
    Act(Action),
    /// Nothing to do until the cluster changes; ask again shortly.
    Wait {
        /// Why, in a sentence (the first thing being waited for).
        reason: String,
    },
    /// Nothing in progress and the maintenance window is closed.
    OutsideWindow {
        /// When it opens next (`None`: never).
        opens_at: Option<Timestamp>,
    },
    /// The rollout is halted; nothing happens until it is resumed.
    Halted(Halt),
    /// Nothing in progress and no node left to start: every node with an update was
    /// updated or skipped (see the state).
    Done,
}

/// One step the IO layer carries out. `node` is always the container instance ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set the node DRAINING (`UpdateContainerInstancesState`); it enters the rollout.
    Drain {
        /// Container instance ARN.
        node: String,
        /// Instance id.
        instance_id: String,
        /// Its zone.
        zone: String,
        /// The version it runs now.
        from_version: Option<String>,
        /// The version it will be updated to.
        target_version: String,
    },
    /// Prepare (when Available) and activate (when Staged) the update on the node.
    Apply {
        /// Container instance ARN.
        node: String,
        /// Instance id.
        instance_id: String,
        /// The version expected to be staged.
        version: String,
    },
    /// Ask the node to reboot into the new slot.
    Reboot {
        /// Container instance ARN.
        node: String,
        /// Instance id.
        instance_id: String,
    },
    /// The node is back on the target version: set it ACTIVE.
    Activate {
        /// Container instance ARN.
        node: String,
        /// Instance id.
        instance_id: String,
    },
    /// The node shows ACTIVE on the new version: it is done (nothing to call).
    Complete {
        /// Container instance ARN.
        node: String,
        /// Instance id.
        instance_id: String,
        /// The version it runs now.
        version: String,
    },
    /// Leave a node that has not started for later (nothing to call).
    Skip {
        /// Container instance ARN.
        node: String,
        /// Instance id.
        instance_id: String,
        /// Why.
        reason: String,
    },
    /// Give a node in progress back to service untouched: set it ACTIVE and leave it for
    /// later (its drain took too long, its update was withdrawn).
    GiveBack {
        /// Container instance ARN.
        node: String,
        /// Instance id.
        instance_id: String,
        /// Why.
        reason: String,
    },
    /// Stop the rollout: set the node ACTIVE again (it runs a version that booted), mark
    /// it with the attribute `flotilla.os-update.halted`, and start nothing until resumed.
    Halt {
        /// Container instance ARN.
        node: String,
        /// Instance id.
        instance_id: String,
        /// The version it was being updated to.
        target_version: String,
        /// What went wrong.
        reason: String,
    },
}

impl Action {
    /// The node's container instance ARN.
    #[must_use]
    pub fn node(&self) -> &str {
        match self {
            Action::Drain { node, .. }
            | Action::Apply { node, .. }
            | Action::Reboot { node, .. }
            | Action::Activate { node, .. }
            | Action::Complete { node, .. }
            | Action::Skip { node, .. }
            | Action::GiveBack { node, .. }
            | Action::Halt { node, .. } => node,
        }
    }

    /// The node's instance id.
    #[must_use]
    pub fn instance_id(&self) -> &str {
        match self {
            Action::Drain { instance_id, .. }
            | Action::Apply { instance_id, .. }
            | Action::Reboot { instance_id, .. }
            | Action::Activate { instance_id, .. }
            | Action::Complete { instance_id, .. }
            | Action::Skip { instance_id, .. }
            | Action::GiveBack { instance_id, .. }
            | Action::Halt { instance_id, .. } => instance_id,
        }
    }

    /// The event name (`what` of its stored event).
    #[must_use]
    pub fn what(&self) -> &'static str {
        match self {
            Action::Drain { .. } => "drain",
            Action::Apply { .. } => "apply",
            Action::Reboot { .. } => "reboot",
            Action::Activate { .. } => "activate",
            Action::Complete { .. } => "updated",
            Action::Skip { .. } => "skip",
            Action::GiveBack { .. } => "give-back",
            Action::Halt { .. } => "halt",
        }
    }

    /// Why, in a sentence (`why` of its stored event).
    #[must_use]
    pub fn why(&self) -> String {
        match self {
            Action::Drain {
                from_version,
                target_version,
                ..
            } => format!(
                "update {} → {target_version}: draining its tasks",
                from_version.as_deref().unwrap_or("?")
            ),
            Action::Apply { version, .. } => format!("node is empty: staging {version}"),
            Action::Reboot { .. } => "update is Ready: rebooting into the new slot".into(),
            Action::Activate { .. } => "back on the target version: setting ACTIVE".into(),
            Action::Complete { version, .. } => format!("back in service on {version}"),
            Action::Skip { reason, .. }
            | Action::GiveBack { reason, .. }
            | Action::Halt { reason, .. } => reason.clone(),
        }
    }
}

/// The next step. See the module documentation for the rules.
#[must_use]
pub fn decide(snapshot: &Snapshot, state: &State, policy: &Policy, now: Timestamp) -> Decision {
    if let Some(halt) = &state.halt {
        return Decision::Halted(halt.clone());
    }
    let order = rollout_order(&snapshot.nodes);
    let mut waiting = Vec::new();
    for (arn, progress) in in_progress_in_order(state, &order) {
        match step_in_progress(arn, snapshot.node(arn), progress, policy, now) {
            Step::Act(action) => return Decision::Act(action),
            Step::Wait(reason) => waiting.push(reason),
        }
    }
    let wait = |mut waiting: Vec<String>, extra: Option<String>| {
        waiting.extend(extra);
        Decision::Wait {
            reason: waiting.join("; "),
        }
    };
    if state.in_progress.len() >= policy.max_unavailable.max(1) {
        return wait(waiting, None);
    }
    let Some((node, target)) = next_candidate(&order, state, policy, now) else {
        return if state.in_progress.is_empty() {
            Decision::Done
        } else {
            wait(waiting, None)
        };
    };
    if let Some(window) = &policy.window
        && let WindowStatus::Closed { opens_at } = window.status(now)
    {
        return if state.in_progress.is_empty() {
            Decision::OutsideWindow { opens_at }
        } else {
            wait(waiting, Some("the maintenance window is closed".into()))
        };
    }
    let standalone = node.standalone_tasks().count();
    if standalone > 0 && policy.standalone_tasks == StandalonePolicy::Skip {
        return Decision::Act(Action::Skip {
            node: node.arn.clone(),
            instance_id: node.name().to_owned(),
            reason: format!("runs {standalone} standalone task(s) (--standalone-tasks skip)"),
        });
    }
    if let Err(reason) = health_gate(snapshot, state) {
        return wait(
            waiting,
            Some(format!("before starting {}: {reason}", node.name())),
        );
    }
    Decision::Act(Action::Drain {
        node: node.arn.clone(),
        instance_id: node.name().to_owned(),
        zone: node.zone.clone(),
        from_version: node.os_version.clone(),
        target_version: target.to_owned(),
    })
}

/// The order nodes are updated in: round-robin over zones (zones by name), by instance
/// id within a zone. Computed over every node, updated or not, so that finishing a node
/// in zone `a` makes the next one come from zone `b`.
#[must_use]
pub fn rollout_order(nodes: &[Node]) -> Vec<&Node> {
    let mut zones: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for node in nodes {
        zones.entry(node.zone.as_str()).or_default().push(node);
    }
    for members in zones.values_mut() {
        members.sort_by(|a, b| (a.name(), &a.arn).cmp(&(b.name(), &b.arn)));
    }
    let rounds = zones.values().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|i| {
            zones
                .values()
                .filter_map(move |members| members.get(i).copied())
        })
        .collect()
}

/// The cluster-wide check before a new node starts: every service has all its desired
/// tasks running and a single, settled deployment; no node the updater is not working on
/// is DRAINING or disconnected. `Err` says what blocks.
///
/// # Errors
/// The first thing found unhealthy, in a sentence.
pub fn health_gate(snapshot: &Snapshot, state: &State) -> Result<(), String> {
    for service in &snapshot.services {
        if service.running_count < service.desired_count {
            return Err(format!(
                "service {} runs {} of {} desired task(s)",
                service.name, service.running_count, service.desired_count
            ));
        }
        if service.deployments > 1 || service.rollout_in_progress {
            return Err(format!(
                "service {} has a deployment in progress",
                service.name
            ));
        }
    }
    for node in &snapshot.nodes {
        if state.in_progress.contains_key(&node.arn) {
            continue;
        }
        if node.status == NodeStatus::Draining {
            return Err(format!("node {} is DRAINING", node.name()));
        }
        if !node.agent_connected {
            return Err(format!("node {}'s agent is disconnected", node.name()));
        }
    }
    Ok(())
}

/// Whether `node` is a candidate to start now, and the version it would get.
pub(crate) fn candidate_version<'n>(
    node: &'n Node,
    state: &State,
    policy: &Policy,
    now: Timestamp,
) -> Option<&'n str> {
    if state.in_progress.contains_key(&node.arn) {
        return None;
    }
    if let Some(skipped) = state.skipped.get(&node.arn) {
        let retry_at = policy
            .retry_skipped_after
            .and_then(|after| skipped.at.checked_add(after).ok());
        if retry_at.is_none_or(|at| now < at) {
            return None;
        }
    }
    node.update.pending_version()
}

fn next_candidate<'n>(
    order: &[&'n Node],
    state: &State,
    policy: &Policy,
    now: Timestamp,
) -> Option<(&'n Node, &'n str)> {
    order
        .iter()
        .find_map(|node| candidate_version(node, state, policy, now).map(|v| (*node, v)))
}

/// The nodes in progress, those still in the snapshot in rollout order, then the ones
/// that left it.
fn in_progress_in_order<'s>(
    state: &'s State,
    order: &[&Node],
) -> Vec<(&'s String, &'s NodeProgress)> {
    let mut out: Vec<_> = state.in_progress.iter().collect();
    out.sort_by_key(|(arn, _)| {
        order
            .iter()
            .position(|n| &n.arn == *arn)
            .unwrap_or(usize::MAX)
    });
    out
}

enum Step {
    Act(Action),
    Wait(String),
}

/// The step of one node in progress.
fn step_in_progress(
    arn: &str,
    node: Option<&Node>,
    progress: &NodeProgress,
    policy: &Policy,
    now: Timestamp,
) -> Step {
    let name = node.map_or_else(|| progress.instance_id.as_str(), Node::name);
    let name = if name.is_empty() {
        short_name(arn)
    } else {
        name
    };
    let target = progress.target_version.as_str();
    let elapsed = now.duration_since(progress.phase.since());
    let halt = |reason: String| {
        Step::Act(Action::Halt {
            node: arn.to_owned(),
            instance_id: name.to_owned(),
            target_version: target.to_owned(),
            reason,
        })
    };
    let give_back = |reason: String| {
        Step::Act(Action::GiveBack {
            node: arn.to_owned(),
            instance_id: name.to_owned(),
            reason,
        })
    };
    // A node that loses contact mid-update may come back; past the node timeout, halt.
    let lost_contact = |doing: &str| {
        if elapsed >= policy.node_timeout {
            halt(format!(
                "node {name} lost contact while {doing} and was not back within {:#}",
                policy.node_timeout
            ))
        } else {
            Step::Wait(format!("node {name} lost contact while {doing}"))
        }
    };
    match progress.phase {
        Phase::Draining { .. } => {
            let Some(node) = node else {
                return halt(format!("node {name} left the cluster while draining"));
            };
            if node.status == NodeStatus::Active {
                return give_back(format!(
                    "node {name} was set ACTIVE by someone else while draining"
                ));
            }
            if !node.agent_connected {
                return lost_contact("draining");
            }
            let services = node.service_tasks().count();
            if services > 0 {
                if elapsed >= policy.drain_timeout {
                    return give_back(format!(
                        "{services} service task(s) still on node {name} after {:#} of draining",
                        policy.drain_timeout
                    ));
                }
                return Step::Wait(format!(
                    "draining node {name}: {services} service task(s) left"
                ));
            }
            let standalone = node.standalone_tasks().count();
            if standalone > 0 {
                return match policy.standalone_tasks {
                    StandalonePolicy::Wait => Step::Wait(format!(
                        "draining node {name}: waiting for {standalone} standalone task(s) to stop"
                    )),
                    StandalonePolicy::Skip => give_back(format!(
                        "a standalone task started on node {name} as it began draining"
                    )),
                };
            }
            apply_or_give_back(arn, name, node, target)
        }
        Phase::Applying { .. } => {
            let Some(node) = node else {
                return halt(format!("node {name} left the cluster while applying"));
            };
            match &node.update {
                UpdateView::Ready { version } if version == target => Step::Act(Action::Reboot {
                    node: arn.to_owned(),
                    instance_id: name.to_owned(),
                }),
                UpdateView::Unknown if !node.agent_connected => lost_contact("applying"),
                UpdateView::Unknown => Step::Wait(format!(
                    "node {name}: waiting for its update status while applying"
                )),
                _ => apply_or_give_back(arn, name, node, target),
            }
        }
        Phase::Rebooting { .. } => {
            if let Some(node) = node.filter(|n| n.agent_connected) {
                // The host API answered "no update command since boot": this is a new
                // boot, not the old one still going down, nor a node not heard from.
                let booted_again = matches!(&node.update, UpdateView::NoUpdate);
                match node.os_version.as_deref() {
                    Some(v) if v == target => {
                        return Step::Act(Action::Activate {
                            node: arn.to_owned(),
                            instance_id: name.to_owned(),
                        });
                    }
                    Some(old) if booted_again => {
                        return halt(format!(
                            "node {name} came back on {old} instead of {target}: the new slot \
                             failed its boot health check and the node fell back to {old}"
                        ));
                    }
                    _ => {}
                }
            }
            if elapsed >= policy.node_timeout {
                return halt(format!(
                    "node {name} did not come back on {target} within {:#} of its reboot",
                    policy.node_timeout
                ));
            }
            Step::Wait(format!(
                "waiting for node {name} to come back on {target} ({:#} since reboot)",
                round_to_seconds(elapsed)
            ))
        }
        Phase::Returning { .. } => {
            if let Some(node) = node
                && node.status == NodeStatus::Active
                && node.agent_connected
            {
                return Step::Act(Action::Complete {
                    node: arn.to_owned(),
                    instance_id: name.to_owned(),
                    version: target.to_owned(),
                });
            }
            if elapsed >= policy.node_timeout {
                return halt(format!(
                    "node {name} did not show ACTIVE and connected within {:#} of its activation",
                    policy.node_timeout
                ));
            }
            Step::Wait(format!("waiting for node {name} to show ACTIVE"))
        }
    }
}

/// An empty (or applying) node: apply the update if the node still offers the target,
/// else give it back.
fn apply_or_give_back(arn: &str, name: &str, node: &Node, target: &str) -> Step {
    let back = |reason: String| {
        Step::Act(Action::GiveBack {
            node: arn.to_owned(),
            instance_id: name.to_owned(),
            reason,
        })
    };
    match node.update.pending_version() {
        Some(v) if v == target => Step::Act(Action::Apply {
            node: arn.to_owned(),
            instance_id: name.to_owned(),
            version: target.to_owned(),
        }),
        Some(other) => back(format!(
            "node {name} now offers {other} instead of {target}; left for the next pass"
        )),
        None if node.update == UpdateView::Unknown => {
            Step::Wait(format!("node {name}: waiting for its update status"))
        }
        None => back(format!("{target} is no longer offered to node {name}")),
    }
}

fn round_to_seconds(d: SignedDuration) -> SignedDuration {
    SignedDuration::from_secs(d.as_secs())
}
