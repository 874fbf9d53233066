//! The rolling OS updater's decisions, with no IO: given a snapshot of a cluster (its
//! nodes, their tasks and update status, its services), the progress the updater
//! persisted, a [`Policy`] and `now`, [`decide`] answers the one next step to take.
//!
//! # Background
//!
//! Bottlerocket's ECS updater updates a cluster's instances one at a time: it drains an
//! instance, applies the update, reboots, and re-activates it. It does not check that the
//! cluster's services are healthy before moving on, gives up on an instance silently when
//! something goes wrong, and cannot tell that an instance came back on its old version
//! until a later verification. This crate decides the same rolling update, more
//! carefully: a cluster-wide health gate before each node, a halt (kept until resumed)
//! as soon as a node falls back or does not come back, zone-spread ordering, and a
//! maintenance window (`docs/updater.md`).
//!
//! # Design
//!
//! Level-triggered, like a controller's `reconcile`: [`decide`] reads the whole state
//! each time and returns one [`Decision`]; the caller (`flotilla updater run`) executes
//! the action, records it with [`State::record`] and asks again. Time is an argument, so
//! tests step through a whole rollout with a controlled clock
//! (`src/tests/harness.rs`). [`plan`] gives the full ordered plan for a dry run.
//!
//! # Layout
//!
//! * [`snapshot`]: the cluster as observed (input).
//! * [`state`]: what the updater persists: per-node progress, skips, the halt, events.
//! * [`policy`]: the operator's choices, maintenance windows included.
//! * [`decide`](mod@decide): the next step, the zone-spread order, the health gate.
//! * [`plan`](mod@plan): the dry-run plan.
//!
//! # Current limitations
//!
//! * One decision at a time: with `max_unavailable > 1` the nodes progress in turns of
//!   one action each (each action is short; waiting is where the time goes).
//! * The health gate reads ECS counts only (running vs desired, one deployment); it does
//!   not read load balancer target health.

pub mod decide;
pub mod error;
pub mod plan;
pub mod policy;
pub mod snapshot;
pub mod state;

#[cfg(test)]
mod tests;

pub use decide::{Action, Decision, decide, health_gate, rollout_order};
pub use error::Error;
pub use plan::{Disposition, Plan, PlanEntry, plan};
pub use policy::{Policy, StandalonePolicy, Window, WindowStatus};
pub use snapshot::{Node, NodeStatus, ServiceHealth, Snapshot, TaskOnNode, UpdateView};
pub use state::{Event, Halt, NodeProgress, Phase, Skipped, State, Updated};
