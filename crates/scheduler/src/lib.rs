//! Pure ECS task placement for flotilla.
//!
//! # Background
//!
//! ECS places tasks on container instances from `RunTask`, `CreateService`
//! and the service scheduler. Placement honours CPU, memory and host ports,
//! *constraints* (`distinctInstance`, `memberOf` with a cluster query
//! expression) and *strategies* (`binpack`, `spread`, `random`, chained in
//! order). The same cluster query language filters `ListContainerInstances`.
//!
//! # Design
//!
//! Following Nomad's scheduler, this crate never reads state or performs IO:
//! the caller builds an immutable snapshot of the cluster, passes the
//! requests, the placement specification and a seed, and gets back a plan.
//! Time and randomness are inputs, so any placement can be replayed.
//!
//! # Layout
//!
//! - [`query`]: the cluster query language (parser, AST, evaluation).
//! - [`spec`]: validated placement strategies and constraints.
//! - [`snapshot`]: the input types (cluster snapshot, task requests).
//! - [`place`](mod@place): replica placement, the plan and failure reasons.
//! - [`daemon`]: the DAEMON scheduling strategy.
//! - [`scale_in`]: which tasks to stop when a service shrinks.
//! - `testing` (feature `testing`): a [Nomad-style] harness and builders.
//!
//! [Nomad-style]: https://github.com/hashicorp/nomad/blob/main/scheduler/testing.go
//!
//! # Limitations
//!
//! - Placement is in progress; see the crate README.
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
