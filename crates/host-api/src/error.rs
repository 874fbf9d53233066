//! The one error type of the host API, and its single mapping to HTTP status codes.

use std::path::PathBuf;

use axum::http::StatusCode;

/// Everything the host API (server, datastore, apply, client) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A settings document has an unknown key, a wrong type or an invalid value. The key is
    /// the full dotted name; fix the document and retry.
    #[error("{key}: {message}")]
    InvalidSettings {
        /// Full dotted key, e.g. `settings.ecs.cluster`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// `key=value` input that does not split on `=`, or a malformed dotted key.
    #[error("invalid key/value pair {0:?}")]
    InvalidKeyPair(String),
    /// Malformed request (bad JSON body, bad query, bad transaction name).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// User-data that is not valid TOML or lacks a `[settings]` table.
    #[error("user-data {source_name}: {message}")]
    UserData {
        /// Where it came from (file name or `stdin`).
        source_name: String,
        /// The parser's message with line/column.
        message: String,
    },
    /// No such route.
    #[error("no such endpoint: {method} {path}")]
    NoRoute {
        /// HTTP method.
        method: String,
        /// Path.
        path: String,
    },
    /// Requested data does not exist (e.g. no settings at all yet).
    #[error("not found: {0}")]
    MissingData(String),
    /// Opening one more transaction would exceed the limit on pending transactions
    /// ([`crate::limits::MAX_PENDING_TX`]); commit or delete some first.
    #[error(
        "too many pending transactions (limit {limit}); commit or DELETE /tx?tx=NAME some of \
         them (GET /tx/list lists them)"
    )]
    TooManyTransactions {
        /// The limit.
        limit: usize,
    },
    /// A transaction or the live settings would grow beyond a size limit
    /// ([`crate::limits`]); the message says which and by how much.
    #[error("too large: {0}")]
    TooLarge(String),
    /// `commit_and_apply` committed the transaction but could not apply all of it.
    /// `rejected`: sysctl keys of this transaction that the kernel refused; each was put back
    /// to its previous value (or removed), so it is neither committed nor applied.
    /// `not_applied`: committed keys whose service failed to apply; they are live in the
    /// datastore but not in effect until an apply succeeds (`POST /tx/apply`).
    #[error("{message}")]
    PartiallyApplied {
        /// Full dotted keys rolled back.
        rejected: Vec<String>,
        /// Full dotted keys committed but not applied.
        not_applied: Vec<String>,
        /// What happened, naming every key.
        message: String,
    },
    /// `commit` with nothing pending in that transaction.
    #[error("transaction {tx:?} has no pending changes to commit")]
    NothingPending {
        /// Transaction name.
        tx: String,
    },
    /// This server was started without a node (`--node-root`), so update actions are
    /// unavailable.
    #[error("update actions need a node; start the server with --node-root")]
    NoNode,
    /// Reading or writing the datastore failed.
    #[error("datastore {}: {message}", path.display())]
    Datastore {
        /// The file or directory.
        path: PathBuf,
        /// The IO or parse error.
        message: String,
    },
    /// Rendering a service's configuration, writing a sysctl or restarting a service failed
    /// during `POST /tx/apply` (or at boot); the settings were committed earlier, re-run apply
    /// after fixing the cause.
    #[error("applying settings to service {service}: {message}")]
    Apply {
        /// Service name.
        service: String,
        /// What failed.
        message: String,
    },
    /// An update or partition operation was refused or failed.
    #[error(transparent)]
    Update(#[from] updater::Error),
    /// A host or bootstrap container could not be created, started, stopped or removed
    /// through containerd (or its name or image reference was refused).
    #[error("container {name}: {source}")]
    Container {
        /// The container's settings name (or the containerd namespace).
        name: String,
        /// What the runtime reported.
        source: runtime::Error,
    },
    /// The boot step failed (bad user-data, migration, essential bootstrap container, health).
    #[error("boot failed: {0}")]
    Boot(String),
    /// Client side: cannot reach the API socket.
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// IO error.
        source: std::io::Error,
    },
    /// Client side: HTTP-level failure talking to the server.
    #[error("talking to the host API: {0}")]
    Http(String),
    /// Client side: the server answered with an error status; `body` is its message.
    #[error("{body} (HTTP {status})")]
    Status {
        /// HTTP status code.
        status: u16,
        /// Server's message.
        body: String,
    },
}

impl Error {
    /// The HTTP status for this error: one exhaustive match, no catch-all.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        use updater::Error as U;
        match self {
            Error::InvalidSettings { .. }
            | Error::InvalidKeyPair(_)
            | Error::BadRequest(_)
            | Error::UserData { .. } => StatusCode::BAD_REQUEST,
            Error::NoRoute { .. } | Error::MissingData(_) | Error::NoNode => StatusCode::NOT_FOUND,
            Error::NothingPending { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooManyTransactions { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            // Only refused values, all rolled back: the request's fault, like a bad value.
            Error::PartiallyApplied { not_applied, .. } if not_applied.is_empty() => {
                StatusCode::BAD_REQUEST
            }
            // Committed but not in effect: the kernel or a restart command (upstream of the
            // API) failed. Distinct from 500, where nothing was committed by the request.
            Error::PartiallyApplied { .. } => StatusCode::BAD_GATEWAY,
            Error::Datastore { .. } | Error::Apply { .. } | Error::Boot(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::Connect { .. } | Error::Http(_) => StatusCode::BAD_GATEWAY,
            // A bad image reference or name is the settings' fault; anything else is
            // containerd's (upstream of the API).
            Error::Container { source, .. } if source.is_user_error() => StatusCode::BAD_REQUEST,
            Error::Container { .. } => StatusCode::BAD_GATEWAY,
            Error::Status { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Error::Update(u) => match u {
                U::Disallowed { .. } | U::Partition { .. } => StatusCode::CONFLICT,
                U::NoChosenUpdate | U::NoStagedImage | U::StatusUninitialized => {
                    StatusCode::NOT_FOUND
                }
                U::Locked => StatusCode::LOCKED,
                U::Url { .. } | U::Manifest(_) => StatusCode::BAD_REQUEST,
                U::Read { .. }
                | U::Write { .. }
                | U::Parse { .. }
                | U::TufMetadata { .. }
                | U::TufTarget { .. }
                | U::TargetMissing(_)
                | U::Publish(_)
                | U::MissingMigration { .. }
                | U::Migration { .. }
                | U::Image(_)
                | U::Node(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        (self.status(), self.to_string()).into_response()
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cases: Vec<(Error, u16)> = vec![
            (
                Error::InvalidSettings {
                    key: "settings.x".into(),
                    message: "m".into(),
                },
                400,
            ),
            (Error::NothingPending { tx: "t".into() }, 422),
            (Error::TooManyTransactions { limit: 1 }, 429),
            (Error::TooLarge("x".into()), 413),
            (
                Error::PartiallyApplied {
                    rejected: vec!["k".into()],
                    not_applied: vec![],
                    message: "m".into(),
                },
                400,
            ),
            (
                Error::PartiallyApplied {
                    rejected: vec![],
                    not_applied: vec!["k".into()],
                    message: "m".into(),
                },
                502,
            ),
            (Error::MissingData("x".into()), 404),
            (
                Error::Container {
                    name: "admin".into(),
                    source: runtime::Error::InvalidImageRef {
                        reference: "".into(),
                        reason: "empty".into(),
                    },
                },
                400,
            ),
            (Error::Update(updater::Error::Locked), 423),
            (
                Error::Update(updater::Error::Disallowed {
                    cmd: "c".into(),
                    state: "s".into(),
                }),
                409,
            ),
            (Error::Update(updater::Error::NoStagedImage), 404),
            (Error::Update(updater::Error::StatusUninitialized), 404),
            (
                Error::Apply {
                    service: "s".into(),
                    message: "m".into(),
                },
                500,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(e.status().as_u16(), code, "{e}");
        }
    }
}
