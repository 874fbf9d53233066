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
//!
//! # Limitations
//!
//! - Placement is in progress; see the crate README.
pub mod query;
