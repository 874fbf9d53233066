//! # testkit — what flotilla's Rust tests share
//!
//! ## Background
//! The integration tests of `controlplane`, `ecs-api` and `flotilla` each grew the same
//! small helpers: a test scope, a JSON-to-request shortcut, "run this operation the way the
//! writer does and apply its changes", an ECS call over HTTP, a port to listen on, a loop
//! that polls until a deadline. This crate holds one copy of each.
//!
//! ## Design
//! - **A dev-dependency only.** No crate lists `testkit` under `[dependencies]`
//!   (`crates/flotilla/tests/dependencies.rs` checks it); it depends on `model`, `store`
//!   and `controlplane`, never on the crates whose tests use it over HTTP (`ecs-api`,
//!   `flotilla`), so it cannot start their servers in-process: [`server`] runs the
//!   binary instead.
//! - **Helpers, not a framework.** Plain functions and one small struct ([`ecs::World`]);
//!   a test that wants something else builds it from the same pieces.
//! - **Failures say what was awaited.** Every wait in [`wait`] names what it waits for and
//!   reports the last reason it was not ready yet.
//!
//! ## Layout
//! - [`cw`]: CloudWatch request bodies: an alarm on one metric, a datapoint of it.
//! - [`ecs`]: the test scope, request bodies, operations run against a [`controlplane::State`]
//!   (free functions and [`ecs::World`]) or submitted to a [`controlplane::ControlPlane`].
//! - [`elb`]: ELBv2 request bodies, ELBv2 operations on a [`ecs::World`], a data plane
//!   that finds every target healthy, the group a rule forwards to.
//! - [`fs`]: a tmpfs to fill up for real, and the filler.
//! - [`http`]: ECS calls to a running server over HTTP (awsJson 1.1, unsigned), async and
//!   blocking; `/healthz`; a free loopback port.
//! - [`server`]: `flotilla server` as a child process, killed on drop.
//! - [`service`]: ECS services on a [`ecs::World`]: nodes with addresses, a task
//!   definition publishing port 80, a controller pass, DescribeServices, a Cloud Map
//!   registry.
//! - [`wait`]: polling with a deadline (blocking, async, or on the control plane's change
//!   feed).
//!
//! ## Current limitations
//! - `controlplane`'s own unit tests (in `src/`) cannot use it, but for the helpers that
//!   build only `model` shapes ([`cw`]): a dev-dependency on a crate that depends back on
//!   `controlplane` builds `controlplane` twice, and the two `State` types are not the
//!   same type.
//! - Calls are unsigned: the servers under test accept any signature unless started with
//!   `--credentials`; the agent signs its own requests (`crates/agent/tests/signing.rs`).

pub mod cw;
pub mod ecs;
pub mod elb;
pub mod fs;
pub mod http;
pub mod server;
pub mod service;
pub mod wait;
