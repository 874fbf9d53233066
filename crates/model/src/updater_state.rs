//! The OS updater's state kept in the control plane: `FlotillaV1.GetUpdaterState` and
//! `FlotillaV1.PutUpdaterState`.
//!
//! `flotilla updater` keeps what it has done (nodes in progress, skipped, updated, the
//! halt, its events) as one JSON document per cluster, stored with the cluster, so that
//! any copy of it (a CLI on a laptop, or the updater running as an ECS service in the
//! cluster, as Bottlerocket's updater does) carries on where the last one stopped.
//!
//! Two rules keep two copies from acting at once:
//! - **Revisions.** Every put names the revision it read (`expectedRevision`, 0 when
//!   there is no document yet); a put against another revision is refused with
//!   `ConflictException`, and the writer reads again.
//! - **A lease.** A put with `holder` also takes (or renews) the lease for
//!   `leaseSeconds`; while another holder's lease runs, such a put is refused with
//!   `ConflictException`. `leaseSeconds` 0 gives the lease up (an updater stopping).
//!   A put without `holder` edits the document and leaves the lease as it is: that is how
//!   `flotilla updater resume` clears a halt while an updater runs (the runner's next put
//!   then fails on the revision, and it reads the cleared halt).

use serde::{Deserialize, Serialize};

/// Largest document `PutUpdaterState` stores (bytes of its JSON text).
pub const MAX_UPDATER_DOCUMENT_BYTES: usize = 256 * 1024;

/// Longest lease one put may take.
pub const MAX_LEASE_SECONDS: u32 = 300;

/// Longest `holder` name.
pub const MAX_HOLDER_CHARS: usize = 256;

/// `GetUpdaterState` input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetUpdaterStateRequest {
    /// Cluster name or ARN (`default` when absent).
    pub cluster: Option<String>,
}

/// The stored document and its lease (`GetUpdaterState` output; `PutUpdaterState`
/// answers the same after its write).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdaterStateResponse {
    /// The document (JSON text); absent when none was ever put.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// Its revision: 0 when there is none, then 1, 2, … with every put.
    pub revision: u64,
    /// Who holds the lease, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// When the holder's lease ends (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<f64>,
}

/// `PutUpdaterState` input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutUpdaterStateRequest {
    /// Cluster name or ARN (`default` when absent).
    pub cluster: Option<String>,
    /// The new document (JSON text, at most [`MAX_UPDATER_DOCUMENT_BYTES`]).
    pub document: String,
    /// The revision the writer read (0: there was none).
    pub expected_revision: u64,
    /// Who writes: takes or renews the lease. Absent: an edit that leaves the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// With `holder`: how long the lease runs from now (0 gives it up; at most
    /// [`MAX_LEASE_SECONDS`]).
    #[serde(default)]
    pub lease_seconds: u32,
}
