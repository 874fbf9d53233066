//! # controlplane — the single source of truth of a flotilla cluster
//!
//! ## Background
//! Every ECS operation reads or changes the state of clusters, task definitions,
//! container instances, tasks, services and account settings. This crate owns that state
//! and the rules that govern it; the `ecs-api` crate only translates HTTP to calls here.
//!
//! ## Design
//! - **Pure operations.** Each ECS operation is a function in [`ops`]. A read is
//!   `fn(&State, &Scope, Request) -> Result<Response, EcsError>`; a write is
//!   `fn(&State, &mut Ctx, Request) -> Result<(Response, Vec<Change>), EcsError>`: it
//!   *decides* what changes, given the state, the time and a seeded RNG in [`Ctx`],
//!   and touches nothing. Unit tests call them on a hand-built [`State`].
//! - **One writer.** [`ControlPlane::write`] queues the operation to a dedicated
//!   writer thread. The writer runs the queued operations one after the other against its
//!   working copy of the state, persists all their changes in one store commit (one
//!   fsync: group commit), then publishes them to the copy readers see, and only then
//!   answers. An answer therefore always means "durable".
//! - **Readers never wait for disk.** [`ControlPlane::read`] runs against the published
//!   copy under a read lock.
//!
//! ## Layout
//! - [`state`]: records, typed keys, [`State`] and [`Change`].
//! - [`engine`]: the [`ControlPlane`] handle and the writer thread.
//! - [`ops`]: the operations, one module per area: validation and answers, calling the
//!   domain modules below for what the controllers share.
//! - [`task`]: building a task, stop requests, task groups (`service:<name>`) and status
//!   questions.
//! - [`capacity`]: capacity provider strategies: which one a task launches with, the
//!   base/weight split, node groups.
//! - [`managed_scaling`]: capacity providers' managed scaling, termination protection
//!   and draining as a pure decision (instances needed, CapacityProviderReservation,
//!   grow / drain / remove) and its writes; `flotilla server` runs the scaling hook.
//! - [`fargate`]: the Fargate pool (pool nodes, never listed as container instances)
//!   and the FARGATE launch type's rules and task shape.
//! - [`placement`]: the state as the scheduler sees it (snapshots, task requests,
//!   reservations, placement specs).
//! - [`controllers`]: level-triggered reconcilers (the service controller) and their runner.
//! - [`paging`]: signed `nextToken`s.
//! - [`node_broker`]: users' log reads and host API calls carried to agents over their
//!   polls, answers back.
//! - [`load_balancing`]: which target groups a service's tasks join and at which address.
//! - [`registries`]: the Cloud Map instance a service's task is (`serviceRegistries`).
//! - [`service_connect`]: `serviceConnectConfiguration`, its Cloud Map services and the
//!   routes nodes proxy.
//! - [`service_deployments`]: service deployments and revisions (the deployment
//!   history), kept in step with the service controller's deployments.
//! - [`liveness`]: the timer that marks silent agents disconnected and their tasks lost.
//! - [`error`]: [`EcsError`], one variant per ECS error code.
//! - [`limits`]: the documented bounds on what one call or record may ask for.
//!
//! ## Current limitations
//! The whole state lives in memory (twice: working and published copy); a cluster of
//! some hundred thousand tasks is the design point, not millions.

pub mod capacity;
pub mod controllers;
pub mod engine;
pub mod error;
pub mod fargate;
pub mod limits;
pub mod liveness;
pub mod load_balancing;
pub mod managed_scaling;
pub mod node_broker;
pub mod ops;
pub mod paging;
pub mod placement;
pub mod registries;
pub mod retention;
pub mod service_connect;
pub mod service_deployments;
pub mod state;
pub mod task;

pub use engine::{ControlPlane, Ctx};
pub use error::EcsError;
pub use state::{Change, Scope, State};
