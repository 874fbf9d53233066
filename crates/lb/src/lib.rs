//! `lb`: the load balancer's data plane, an ALB-like HTTP reverse proxy.
//!
//! # Background
//!
//! ELBv2 records (load balancers, listeners, rules, target groups, targets) live in the
//! control plane; this crate is what actually moves the bytes. Its input is a plain
//! [`LbConfig`] value, so it depends on neither `controlplane` nor `ecs-api`: `flotilla
//! server --lb-listen` (`crates/flotilla/src/cmd/load_balancers/`) turns the control
//! plane's records into an `LbConfig` per load balancer, calls [`Lb::update`] after every
//! change, and writes what [`Lb::target_health`] observes back to the records.
//!
//! # Design
//!
//! - Pure decisions, I/O at the edge: [`rules`] (which action a request gets, weighted group
//!   choice given a random number) and [`balance`] (round robin / least outstanding, slow
//!   start, sticky cookie) are pure and unit-tested; [`health`] holds the threshold state
//!   machine plus the checker tasks; [`outlier`] the passive ejection decisions (Envoy's
//!   outlier detection, for the agent's Service Connect proxy); [`proxy`] is the only
//!   module with sockets.
//! - Hot swap: request handling reads an immutable snapshot through `arc-swap`, so an update
//!   never touches established connections; per-target state (health, in-flight count,
//!   metrics) is keyed by (group, address) and outlives updates, and so do each target
//!   group's traffic counts ([`Lb::traffic`]: requests, status classes of the targets' and
//!   the load balancer's own answers, target response times), which `flotilla server`
//!   publishes to CloudWatch.
//! - Client side: HTTP/1.1 keep-alive and HTTP/2 with prior knowledge (h2c) on the same port
//!   (`hyper_util::server::conn::auto`); on an HTTPS listener the same after a rustls
//!   handshake, HTTP/2 chosen by ALPN. Upstream, by the group's [`ProtocolVersion`]:
//!   HTTP/1.1 keep-alive connections (`hyper::client::conn::http1`) in a pool of idle ones
//!   per target (`Http1`, the default), or one multiplexed h2c connection per target
//!   (`hyper::client::conn::http2`) shared by all its requests (`Http2`, and `Grpc`, whose
//!   health checks are gRPC calls). Whatever either side speaks, response bodies stream
//!   with their trailers (gRPC's status is in them) to HTTP/2 clients.
//! - Runtime: everything runs on the caller's Tokio runtime; a multi-threaded one lets idle
//!   threads steal the work of a thread the OS has descheduled. (Thread-per-core, one
//!   current-thread runtime and pool per worker thread, measured no faster and with a worse
//!   p99 on a busy machine: `docs/performance.md`, "Load balancer data plane".)
//!
//! Why hyper and not Pingora: Pingora is a whole proxy framework with its own server, runtime
//! and process model (daemonisation, graceful upgrade by fd passing), and a large dependency
//! tree (its own HTTP stack, `nix`, `openssl`/`boringssl` feature sets …) that we would build
//! on every CI run to use a fraction of it. hyper 1.x (with `hyper-util`) is already in our
//! dependency graph under axum and reqwest, runs on the Tokio runtime everything else here
//! uses, and gives us exactly the pieces we need (server connections with h1/h2 auto-detect,
//! a pooled client); the proxy logic on top is a few hundred lines we own and test.
//!
//! # Limitations
//!
//! - HTTP, HTTPS (TLS ends at the listener: [`tls`]) and TCP listeners; no HTTPS targets
//!   (targets speak plain HTTP or h2c, so no gRPC over TLS to them), no
//!   WebSocket/upgrade pass-through, no request/idle timeouts beyond the 5 s upstream connect
//!   timeout (and, on HTTP/2 upstream connections with requests in flight, a ping every 30 s
//!   that must be answered within 10 s).
//! - HTTP/2 targets: one connection per target, so the target's
//!   `SETTINGS_MAX_CONCURRENT_STREAMS` bounds its requests in flight (more wait). HTTP/1.1
//!   clients of an HTTP/2 group get no trailers (hyper sends HTTP/1.1 trailers only for
//!   fields a `Trailer` header declared); gRPC clients speak HTTP/2 anyway.
//! - Stickiness is `lb_cookie` only; the cookie is not encrypted (see [`balance::encode_sticky`]).
//! - A group with no healthy target answers 503 (ALB would fail open to all targets).
//! - A request is retried at most once (idempotent, body buffered), on another target.
//! - Health checks run for every registered, active target, also those of groups no listener
//!   uses (reported `unused`).
//!
//! # Layout
//!
//! - [`config`]: the input value, its limits and validation.
//! - [`rules`]: listener rules and weighted forward.
//! - [`balance`]: target choice inside a group.
//! - [`health`]: health states and active checks.
//! - [`outlier`]: passive health (outlier detection and ejection), for groups that ask.
//! - [`proxy`]: [`Lb`], the server, and the HTTP request path.
//! - `select`: which routable target a request or connection goes to.
//! - `upstream`: the pool of idle upstream HTTP/1.1 connections.
//! - `upstream_h2`: one shared upstream HTTP/2 connection per target, for `Http2` and `Grpc`
//!   groups.
//! - `tcp`: TCP listeners (network load balancers): connections spliced to a target.
//! - [`tls`]: HTTPS listeners' rustls configuration, SNI certificate choice, handshake bound.
//! - `metrics`: per-target Prometheus metrics, and the traffic counts behind [`Lb::traffic`].

pub mod balance;
pub mod config;
mod headers;
pub mod health;
mod metrics;
pub mod outlier;
pub mod proxy;
pub mod rules;
mod select;
mod tcp;
pub mod tls;
mod upstream;
mod upstream_h2;

pub use config::{
    Action, Algorithm, Condition, ConfigError, HealthCheckConfig, HealthCheckProtocol, LbConfig,
    ListenerConfig, ListenerProtocol, ListenerTls, OutlierDetection, ProtocolVersion, RuleConfig,
    Stickiness, TargetConfig, TargetGroupConfig, TargetState, TlsCertificate, TlsVersion,
    WeightedTargetGroup,
};
pub use health::{HealthState, TargetHealth};
pub use metrics::{STATUS_CLASSES, TrafficCounts, TrafficSnapshot, status_class};
pub use proxy::{Ejection, Lb, LbError};
