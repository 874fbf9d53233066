//! The one error type of the `updater` crate.

use std::path::PathBuf;

/// Everything that can go wrong while checking for, downloading, staging or booting an update.
///
/// Variants are named for the step that failed; the host API maps each one to an HTTP status in
/// a single exhaustive `match` (`host_api::error`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read. Usually a missing or unreadable node file.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file could not be written (disk full, permissions).
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A JSON or TOML file on the node does not parse.
    #[error("parsing {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// `manifest.json` is malformed or inconsistent (bad versions, waves out of order).
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// A URL from the settings is not usable.
    #[error("invalid URL {url:?}: {message}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        message: String,
    },
    /// The TUF repository's metadata was refused: expired, rolled back, wrongly signed, below
    /// threshold, too large, or inconsistent. The node keeps its current state.
    #[error("TUF repository refused: {source}")]
    TufMetadata {
        /// tough's error, which names the role and the check that failed.
        source: Box<tough::error::Error>,
    },
    /// A TUF target failed verification while downloading (hash or length mismatch, expired).
    #[error("TUF target {name} refused: {source}")]
    TufTarget {
        /// The target name.
        name: String,
        /// tough's error.
        source: Box<tough::error::Error>,
    },
    /// The signed targets metadata does not list a file the manifest refers to.
    #[error("target {0} is not listed in the signed targets metadata")]
    TargetMissing(String),
    /// Creating keys, signing or writing a repository failed (publish side).
    #[error("publishing repository: {0}")]
    Publish(String),
    /// The A/B partition flags do not allow the requested operation.
    #[error("partition flags do not allow {op}: {reason}")]
    Partition {
        /// The operation (e.g. `upgrade-to-inactive`).
        op: &'static str,
        /// Why not.
        reason: String,
    },
    /// The update state machine does not allow this command in the current state.
    #[error("command {cmd} is not allowed in update state {state}")]
    Disallowed {
        /// The command (refresh, prepare, activate, deactivate).
        cmd: String,
        /// The current state.
        state: String,
    },
    /// `prepare` was requested but no update has been chosen (run `update check` first).
    #[error("no update is available to prepare")]
    NoChosenUpdate,
    /// `activate` was requested but no image is staged.
    #[error("no staged image to activate")]
    NoStagedImage,
    /// Another update command holds the lock; retry later.
    #[error("another update command is running")]
    Locked,
    /// `GET /updates/status` before any update command ran.
    #[error("update status is not initialized: no update command has run yet")]
    StatusUninitialized,
    /// The manifest has no chain of migrations between two versions.
    #[error("no migration path from {from} to {to}")]
    MissingMigration {
        /// Datastore version.
        from: String,
        /// Target version.
        to: String,
    },
    /// A datastore migration failed; the original datastore is untouched.
    #[error("migration {name} failed: {reason}")]
    Migration {
        /// The migration name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A node image is malformed (missing files, wrong version, unsafe paths).
    #[error("node image: {0}")]
    Image(String),
    /// The node directory is not set up (no slot installed, no partition flags).
    #[error("node: {0}")]
    Node(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
