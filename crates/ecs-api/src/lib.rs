//! # ecs-api — the ECS JSON 1.1 wire protocol in front of the control plane
//!
//! ## Background
//! AWS clients (the CLI, boto3, the SDKs) talk to ECS with `POST /`, the operation in
//! `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`, a camelCase JSON
//! body, a SigV4 `Authorization` header, and expect errors as HTTP 400
//! `{"__type": "<Code>", "message": …}`. With `--endpoint-url` they talk to flotilla
//! the same way. The same endpoint serves the other AWS APIs flotilla speaks: every
//! `POST /` is routed by its SigV4 credential scope's service
//! ([`AwsService`](service::AwsService): `ecs`, `elasticloadbalancing` with the query
//! protocol and XML ([`elbv2`]), `servicediscovery`), in one `match` in [`server`].
//!
//! ## Design
//! This crate holds no state (the node broker that waiting `GetTaskLogs` and
//! `CallHostApi` requests use lives in the control plane). A request goes: [`auth`] (region and account from the
//! SigV4 credential scope; signature checked when credentials are configured) →
//! [`dispatch`] (the target names an [`Operation`](model::wire::Operation); one `match`
//! sends each operation to its function in `controlplane::ops`) → JSON. Every failure
//! is an [`ApiError`], mapped to status and `__type` in one exhaustive `match`.
//!
//! ## Layout
//! - [`server`]: the axum router, `/healthz`, `/admin/reset`, [`server::serve`].
//! - [`agent`]: the flotilla agent protocol (long-poll for assigned tasks, log answers).
//! - [`logs`]: flotilla's own user operations (`FlotillaV1.GetTaskLogs`, routing
//!   `CallHostApi` to [`host_calls`]).
//! - [`host_calls`]: `FlotillaV1.CallHostApi`, a node's host API through its agent.
//! - [`relay`]: a node request for an agent that polls another server (several servers
//!   on one store), sent on to that server whole.
//! - [`auth`]: SigV4 parsing and verification, the credentials file.
//! - [`dispatch`]: operation routing.
//! - [`error`]: [`ApiError`] and its wire mapping.
//! - [`service`]: [`AwsService`](service::AwsService), which API a `POST /` is for (the
//!   SigV4 credential scope's service): the one routing `match` is in [`server`].
//! - [`elbv2`]: the ELBv2 API (query protocol, XML), `controlplane::ops::elbv2` behind it.
//! - [`servicediscovery`]: the Cloud Map API (`Route53AutoNaming_v20170314.*`).
//! - [`acm`]: ACM's imported certificates (`CertificateManager.*`), for HTTPS listeners.
//! - [`cloudwatch`]: CloudWatch's metric alarms and metric data (Smithy RPC v2 CBOR).

pub mod acm;
pub mod agent;
pub mod anywhere;
pub mod auth;
pub mod cloudwatch;
pub mod dispatch;
pub mod elbv2;
pub mod error;
pub mod host_calls;
pub mod logs;
pub mod relay;
pub mod server;
pub mod service;
pub mod servicediscovery;
pub mod ssm;

pub use error::ApiError;
pub use server::{ApiConfig, router, serve};
