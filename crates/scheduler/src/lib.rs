//! Pure ECS task placement for flotilla.
//!
//! # Background
//!
//! ECS places tasks on container instances for `RunTask`, `CreateService`
//! and the service scheduler. Placement honours CPU, memory and host ports
//! (static and dynamic), *constraints* (`distinctInstance`, and `memberOf`
//! with a cluster query language expression) and *strategies* (`binpack`,
//! `spread`, `random`, chained in order). Services use the REPLICA or the
//! DAEMON scheduling strategy, and scale in by stopping tasks that keep the
//! remaining ones balanced. The same query language filters
//! `ListContainerInstances`.
//!
//! # Design
//!
//! Modelled on Nomad's `scheduler/`: this crate never reads state, never
//! performs IO and never looks at a clock or a global RNG. The caller builds
//! an immutable [`ClusterSnapshot`], passes the [`TaskRequest`]s, a validated
//! [`PlacementSpec`] and a `seed`, and gets back a [`Plan`]. The same inputs
//! give the same plan, so any placement can be replayed from a log. Applying
//! the plan (and re-checking it against newer state) is the control plane's
//! job; `testing::Harness` does a small version of that for tests.
//!
//! Placement is a pipeline, per request (see `README.md` for the diagram):
//!
//! 1. **feasibility filters**, in the order whose failure ECS reports:
//!    ACTIVE status, agent connected (`AGENT`), required attributes
//!    (`ATTRIBUTE`), `memberOf`, `distinctInstance`, CPU, memory, TCP ports,
//!    UDP ports;
//! 2. **rankers**: each strategy contributes one component of a
//!    lexicographic key (spread: tasks of the group in the instance's
//!    bucket; binpack: remaining CPU or memory; random: a seeded hash),
//!    followed by a seeded per-instance tie-break;
//! 3. **select**: the feasible instance with the smallest key; its resources
//!    are then reserved in the call's working state so later requests of
//!    the same call see them.
//!
//! Without a `random` strategy, selection does not scan every instance:
//! instances are grouped into *cells* sharing every attribute-spread value,
//! each cell keeps its instances sorted by the per-instance part of the key,
//! and the first feasible instance of the best cell wins. That is
//! O(cells × log instances) per placement instead of O(instances); a
//! property test checks it picks exactly what the full scan
//! ([`place::place_reference`]) picks.
//!
//! # Layout
//!
//! - [`query`]: the cluster query language (lexer, parser, AST, evaluation,
//!   dates).
//! - [`spec`]: validated placement strategies and constraints, with ECS limits.
//! - [`snapshot`]: the input types (cluster snapshot, task requests).
//! - [`place`](mod@place): replica placement (the engine's working state,
//!   feasibility, ranking, the selection index, selection), the plan and
//!   failure reasons.
//! - [`daemon`]: the DAEMON scheduling strategy.
//! - [`scale_in`]: which tasks to stop when a service shrinks.
//! - `testing` (feature `testing`): a Nomad-style harness and mock builders.
//!
//! # Limitations
//!
//! - Every call rebuilds its working state from the snapshot, 0.2–0.6 µs
//!   per instance (mostly reading attribute maps; 2.6 ms warm for 10k
//!   instances), so callers should place all tasks of one service or
//!   `RunTask` in one call.
//! - Chains where `random` follows a binpack or an `instanceId` spread use
//!   the O(instances) scan per placement (attribute spreads then `random`
//!   are sampled instead).
//! - When the requests of a call differ in size, instances that are too
//!   small but rank first are re-checked on every placement of the call.
//! - Resources are CPU, memory and ports; GPUs, ENIs (awsvpc trunking) and
//!   custom resources are not modelled. Capacity providers are the caller's
//!   concern.
//! - `spread` and `distinctInstance` count tasks of the request's *group*
//!   (`service:<name>` for services), which is how ECS scopes them.
//! - Scale-in does not know task sizes, so `binpack` scale-in ranks
//!   instances by their remaining resources before any task is stopped.
pub mod daemon;
pub mod place;
pub mod query;
pub mod scale_in;
pub mod snapshot;
pub mod spec;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use daemon::{DaemonPlan, InstanceFailure, daemon_placements};
pub use place::{FailureReason, Outcome, Placement, PlacementFailure, Plan, place};
pub use query::{Query, QueryError, QueryTarget};
pub use scale_in::choose_tasks_to_stop;
pub use snapshot::{
    ClusterSnapshot, HostPort, InstanceStatus, InstanceView, TaskRequest, TaskView,
};
pub use spec::{PlacementSpec, SpecError};
