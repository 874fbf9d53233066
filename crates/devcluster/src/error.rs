//! The crate's one error type: each variant names the step that failed.

use std::path::PathBuf;

/// What went wrong while bringing a dev cluster up, down or asking its status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command needs root (network namespaces, containerd, cgroups).
    #[error("flotilla dev cluster needs root (network namespaces, containerd, cgroups)")]
    NotRoot,
    /// A program the cluster needs is not installed.
    #[error("{program} is not installed ({hint})")]
    MissingProgram {
        /// The program looked for on `PATH`.
        program: String,
        /// How to get it.
        hint: String,
    },
    /// A bad argument (name, node count, directory, …); the message says which and why.
    #[error("{0}")]
    Invalid(String),
    /// An external command (`ip`, `nft`, …) failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr (or its exit status).
        stderr: String,
    },
    /// Reading or writing a file or directory failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done (`cannot write`, …).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A component did not become ready in time; the message names its log.
    #[error("{0}")]
    Timeout(String),
    /// The control plane answered an error or could not be reached.
    #[error("control plane: {0}")]
    Api(String),
    /// Something was still left after teardown (a mount, a process) and the directory
    /// was kept rather than deleted through it.
    #[error("teardown incomplete: {0}")]
    Leftover(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { what, path, source }
    }
}
