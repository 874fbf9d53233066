//! Controllers: level-triggered loops that make the state converge on what was asked.
//!
//! A controller is a pure `reconcile(&State, &mut Ctx, key) -> Written<Outcome>` (kube-runtime
//! style): it reads the durable state, the time and a seeded RNG from [`Ctx`](crate::Ctx),
//! and returns the changes that move the object one step closer to its desired state.
//! Running it twice on the same state yields no further changes, so a restart, a lost
//! wake-up or a retry is always safe: the next run starts from the durable state again.
//!
//! - [`service`]: the service controller (replica and daemon scheduling, rolling
//!   deployments, circuit breaker, draining instances, scale-in, events).
//! - [`runner`]: the only IO part: a work queue of the services whose records changed
//!   (fed by [`ControlPlane::watch_changes`](crate::ControlPlane::watch_changes)) or
//!   that asked to be woken (`requeue_after`), fed to the single writer together, with a
//!   retry/backoff error policy.

pub mod runner;
pub mod service;

pub use runner::{
    RunnerConfig, WorkQueue, services_touched, spawn_controllers, spawn_controllers_with,
};
pub use service::{ServiceOutcome, reconcile_service, services_needing_work};
