//! # updater
//!
//! Image-based node updates for flotilla, modelled on Bottlerocket's `updog`, `signpost`,
//! `thar-be-updates` and `migrator`.
//!
//! ## Background
//! A node runs one of two slots (A/B). An update is downloaded through TUF into the inactive
//! slot, the slot is marked to boot once, and the node "reboots" (`flotilla host boot`). If the
//! new slot never becomes healthy it is not marked successful and the next boot falls back to the
//! old slot with no network or API involvement.
//!
//! ## Design
//! Decisions are pure and IO is at the edges:
//! * [`partition::PartitionState`] — the A/B flag machine; `load()`/`write()` only.
//! * [`status::UpdateStatus`] — `Idle → Available → Staged → Ready` transitions.
//! * [`manifest`] — waves, version choice and migration chains as functions of
//!   `(manifest, seed, now)`.
//! * [`migration`] — declarative datastore migrations on JSON values.
//! * [`repo`] — the only code that talks TUF (tough), both publisher and client.
//! * [`node`] — the node directory and the four update commands, gluing the above.
//!
//! ## Layout
//! `error` (one error enum), `fsutil` (atomic writes), `image` (node image archives).
//!
//! ## Current limitations
//! Only `file://` repository URLs are supported (tough is built without its `http` feature);
//! serve the repository on a shared filesystem or sync it locally.

pub mod error;
pub mod fsutil;
pub mod image;
pub mod manifest;
pub mod migration;
pub mod node;
pub mod partition;
pub mod repo;
pub mod status;

pub use error::{Error, Result};
