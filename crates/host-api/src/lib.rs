//! # host-api
//!
//! The flotilla host layer's settings API, modelled on Bottlerocket's `apiserver`.
//!
//! ## Background
//! Nodes are not managed over SSH: their configuration is a typed settings tree changed through
//! an HTTP API on a Unix socket (mode 0660, access control = file permissions), first filled
//! from TOML user-data at first boot.
//!
//! ## Design
//! * [`settings`] — the typed tree; deserialising *is* validating; errors name the full key.
//!   Stored settings are loaded tolerantly ([`settings::load`]): a stored value this version
//!   refuses is dropped from the settings in effect and reported, never fatal.
//! * [`datastore`] — live settings + named pending transactions; commit is one atomic rename.
//! * [`services`] — key → affected service, pure rendering, apply (files, sysctls, restarts).
//! * [`server`] — `HostAction` parsed from each request and one routing `match` ([`server::dispatch`]);
//!   [`server::run`] takes a listener and a shutdown future so tests run it in-process.
//! * [`userdata`] — TOML user-data parsing.
//! * [`boot`] — the boot step: slot selection, migrations, user-data, bootstrap containers,
//!   services, health, mark-successful.
//! * [`containers`] — host and bootstrap containers through containerd (the `runtime`
//!   crate), in their own namespace, adopted across host-layer restarts.
//! * [`client`] — the client side used by `flotilla apiclient`.
//! * [`limits`] — every size and count limit (request bodies, transactions, field values).
//!
//! ## Layout
//! One error enum ([`error::Error`]) with one exhaustive status mapping.
//!
//! ## Current limitations
//! Host containers keep running while the host layer is down; `/run/api.sock` inside an
//! adopted container is stale after a host-layer restart (`FLOTILLA_API_SOCKET`, in a
//! mounted directory, is not).

pub mod boot;
pub mod client;
pub mod containers;
pub mod datastore;
pub mod error;
pub mod limits;
pub mod server;
pub mod services;
pub mod settings;
pub mod userdata;

pub use error::{Error, Result};
