//! Service discovery over DNS: the subset of AWS Cloud Map's DNS behaviour that ECS service
//! discovery relies on, served from a plain [`Snapshot`] value.
//!
//! # Background
//!
//! An ECS service with a service registry gets a name `<service>.<namespace>` whose A and/or
//! SRV records list its healthy tasks. flotilla serves those names itself; whoever owns the
//! records (the control plane, from its Cloud Map state) builds a [`Snapshot`] and hands it to
//! [`DnsServer::update`] whenever it changes. This crate depends on no other flotilla crate.
//!
//! # Layout
//!
//! * [`zone`]: the snapshot shape, its validation and limits, and the pure question → answer
//!   rules (documented there, with the Cloud Map behaviour they follow).
//! * [`server`]: UDP + TCP listeners, precomputed answers, hot swap, forwarding of foreign
//!   names to upstream resolvers.
//!
//! # Limitations
//!
//! IPv4 (A) and SRV only: no AAAA, CNAME or WEIGHTED routing; no DNSSEC, zone transfers or
//! dynamic updates; every selected instance is returned (Cloud Map picks at most 8 at random).

pub mod server;
pub mod zone;

pub use server::{DnsServer, StartError};
pub use zone::{
    Answer, Instance, Namespace, RecordType, Reply, Service, Snapshot, Zone, ZoneError,
};
