//! # model — the vocabulary every other flotilla crate speaks
//!
//! ## Background
//! flotilla speaks the Amazon ECS JSON 1.1 API. Its shapes are fixed by botocore's
//! `ecs/2014-11-13/service-2.json`; [`wire`] is generated from that file by
//! `tools/gen_model.py` and checked in, so the build needs no Python.
//!
//! ## Design
//! No IO, no async runtime, no clock: everything here is plain data and pure functions,
//! so the scheduler and the control plane's decisions can be tested without a cluster.
//!
//! ## Layout
//! - [`wire`]: the generated request/response shapes, enums and the [`wire::Operation`] list.
//! - [`wire_sd`]: the same, generated from Cloud Map's (`servicediscovery`) model.
//! - [`wire_ssm`]: the SSM activation shapes (ECS Anywhere), hand-written.
//! - [`wire_acm`]: the ACM certificate shapes (HTTPS listeners), hand-written.
//! - [`wire_cw`]: the CloudWatch metric alarm and metric data shapes, hand-written.
//! - [`agent`]: the flotilla agent protocol (`PollTasks`), beside the ECS operations.
//! - [`logs`]: task logs through the control plane (`FlotillaV1.GetTaskLogs`, the agent's
//!   `PutLogs`).
//! - [`host`]: a node's host API through the control plane (`FlotillaV1.CallHostApi`, the
//!   agent's `PutHostAnswer`).
//! - [`updater_state`]: the OS updater's state kept with its cluster
//!   (`FlotillaV1.GetUpdaterState`, `PutUpdaterState`: revisions and a lease).
//! - [`enum_error`]: ECS's "… should be one of [A,B]" for a value outside an enum.
//! - [`arn`]: building and parsing ARNs (`arn:aws:ecs:<region>:<account>:<type>/<id>`).
//! - [`lifecycle`]: the task state machine (PROVISIONING … STOPPED).
//! - [`status`]: the other records' typed statuses (cluster, container instance, service,
//!   deployment) and typed getters and setters for every status string of the wire shapes.
//! - [`overrides`]: RunTask's `overrides` applied to a task definition (one set of rules
//!   for the control plane and the agent).
//! - [`shared_str`]: [`shared_str::SharedStr`], one shared copy of a text that many tasks
//!   hold (cluster, instance and definition ARNs, group, image, statuses).
//! - [`size`]: task and container CPU/memory strings ("1 vCPU", "2 GB") and the Fargate table.
//! - [`resolv`]: which `dnsServers` and `dnsSearchDomains` values a container may have.

pub mod agent;
pub mod arn;
pub mod enum_error;
pub mod host;
pub mod lifecycle;
pub mod logs;
pub mod overrides;
pub mod resolv;
pub mod shared_str;
pub mod size;
pub mod status;
pub mod updater_state;
pub mod wire;
pub mod wire_acm;
pub mod wire_cw;
pub mod wire_sd;
pub mod wire_ssm;
