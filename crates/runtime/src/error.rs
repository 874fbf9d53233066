//! The crate's one error enum. Each variant names the step that failed and carries the
//! object it failed on, so the agent can map it to an ECS `stoppedReason` without parsing
//! strings.

use std::path::PathBuf;
use std::time::Duration;

/// An error and its sources, outermost first, joined by `": "` (reqwest's and hyper's
/// errors say little at the top: "builder error", "error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the runtime layer.
///
/// Variants are named for the step that failed, and each step belongs to one
/// [`crate::ContainerRuntime`] call, so the call and the variant together say what
/// happened without parsing messages:
/// * `pull_image`: [`Error::InvalidImageRef`], [`Error::RegistryUnreachable`],
///   [`Error::ImageNotFound`], [`Error::RegistryAuth`], [`Error::RegistryProtocol`],
///   [`Error::ImageNotPresent`] (policy forbids pulling), [`Error::WriteContent`],
///   [`Error::UnpackLayer`], [`Error::RegisterImage`];
/// * `create_container`: [`Error::ImageNotPresent`] (never pulled), [`Error::InvalidSpec`],
///   [`Error::ContainerExists`], [`Error::CreateContainer`], [`Error::EntrypointNotFound`],
///   [`Error::CreateTask`];
/// * `start_container`: [`Error::WrongState`], [`Error::StartTask`];
/// * both of those: [`Error::ReadImage`] (the stored image read back);
/// * any call: [`Error::Query`], [`Error::Io`], [`Error::ContainerNotFound`].
///
/// The agent keeps the error as the source of its own variant for the call that failed
/// (`agent::error::TaskError::Pull`, `Create`, `Start`) and maps those to ECS's
/// `CannotPullContainerError`, `CannotCreateContainerError`, `CannotStartContainerError`.
/// "Bad input" variants ([`Error::is_user_error`]) are the user's fault; the others are
/// node problems.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image reference could not be parsed. Fix the task definition.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidImageRef {
        /// The reference as given.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A container spec was rejected before anything was created (bad id, memory below the
    /// 6 MiB minimum, soft limit above hard limit, unknown signal, no command, ...).
    #[error("invalid container spec for {container:?}: {reason}")]
    InvalidSpec {
        /// Container id (or name) the spec was for.
        container: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Connecting to the containerd socket failed: containerd is not running or the path
    /// is wrong.
    #[error("connect to containerd at {socket}: {source}")]
    Connect {
        /// Socket path.
        socket: PathBuf,
        /// Transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The registry could not be reached at all (DNS, connection refused, timeout, TLS).
    #[error("registry {registry} unreachable while pulling {image}: {detail}")]
    RegistryUnreachable {
        /// Registry host\[:port\].
        registry: String,
        /// Image being pulled.
        image: String,
        /// Transport error text (with its causes).
        detail: String,
    },
    /// The registry answered but does not have the repository or tag.
    #[error("image {image} not found in its registry: {detail}")]
    ImageNotFound {
        /// Image being pulled.
        image: String,
        /// Registry answer.
        detail: String,
    },
    /// The registry refused our credentials (or we had none and it wants some).
    #[error("registry denied access to {image}: {detail}")]
    RegistryAuth {
        /// Image being pulled.
        image: String,
        /// Registry answer.
        detail: String,
    },
    /// The registry answered something we cannot use (unexpected status, bad JSON,
    /// unsupported manifest type, no linux/amd64 manifest, digest mismatch).
    #[error("registry protocol error pulling {image}: {detail}")]
    RegistryProtocol {
        /// Image being pulled.
        image: String,
        /// What was wrong.
        detail: String,
    },
    /// The pull policy forbids pulling and the image is not in the local cache, or the
    /// image is needed (create) but was never pulled.
    #[error("image {image} is not present on this node")]
    ImageNotPresent {
        /// Image name.
        image: String,
    },
    /// Writing a blob into containerd's content store failed.
    #[error("write content {digest} of {image}: {source}")]
    WriteContent {
        /// Image being pulled.
        image: String,
        /// Blob digest.
        digest: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// Unpacking a layer (snapshot prepare, diff apply, commit) failed.
    #[error("unpack layer {layer} of {image}: {source}")]
    UnpackLayer {
        /// Image being unpacked.
        image: String,
        /// Layer digest.
        layer: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// Creating or updating the image record failed.
    #[error("register image {image}: {source}")]
    RegisterImage {
        /// Image name.
        image: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// Reading image metadata (record, manifest, config) back from containerd failed.
    #[error("read image {image}: {detail}")]
    ReadImage {
        /// Image name.
        image: String,
        /// What failed.
        detail: String,
    },
    /// Removing an image failed.
    #[error("remove image {image}: {source}")]
    RemoveImage {
        /// Image name.
        image: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// An image cannot be removed because a container still uses it.
    #[error("image {image} is in use by container {container}")]
    ImageInUse {
        /// Image name.
        image: String,
        /// One container using it.
        container: String,
    },
    /// A container with this id already exists.
    #[error("container {id} already exists")]
    ContainerExists {
        /// Container id.
        id: String,
    },
    /// No container with this id is known.
    #[error("container {id} not found")]
    ContainerNotFound {
        /// Container id.
        id: String,
    },
    /// Preparing the container's writable snapshot or creating its record failed.
    #[error("create container {id}: {source}")]
    CreateContainer {
        /// Container id.
        id: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// The image's (or spec's) entrypoint does not exist in the container's root
    /// filesystem. Reported by runc at task creation. Fix the image or `entryPoint`.
    #[error("container {id}: entrypoint {entrypoint:?} not found in the image: {detail}")]
    EntrypointNotFound {
        /// Container id.
        id: String,
        /// The program that was to be executed.
        entrypoint: String,
        /// runc's message.
        detail: String,
    },
    /// Creating the task (runc create: namespaces, cgroups, mounts) failed.
    #[error("create task for container {id}: {source}")]
    CreateTask {
        /// Container id.
        id: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// Starting the task failed.
    #[error("start container {id}: {source}")]
    StartTask {
        /// Container id.
        id: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// Sending a signal failed.
    #[error("signal {signal} to container {id}: {source}")]
    Signal {
        /// Container id.
        id: String,
        /// Signal number.
        signal: u32,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// Waiting for the task to exit failed (not: the task exited non-zero).
    #[error("wait for container {id}: {source}")]
    Wait {
        /// Container id.
        id: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// The container is not in a state that allows the operation (start twice, exec in a
    /// stopped container, remove a running one).
    #[error("container {id} is {state}: cannot {operation}")]
    WrongState {
        /// Container id.
        id: String,
        /// State it is in.
        state: String,
        /// What was attempted.
        operation: &'static str,
    },
    /// Starting or waiting for an exec process (health check) failed.
    #[error("exec in container {id}: {source}")]
    Exec {
        /// Container id.
        id: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// Deleting a task, container or snapshot failed.
    #[error("remove container {id}: {source}")]
    RemoveContainer {
        /// Container id.
        id: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// Listing or reading containerd objects failed.
    #[error("query containerd for {what}: {source}")]
    Query {
        /// What was being read.
        what: String,
        /// containerd status.
        #[source]
        source: tonic::Status,
    },
    /// A file operation (log files, exec output) failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// File involved.
        path: PathBuf,
        /// IO error.
        #[source]
        source: std::io::Error,
    },
    /// An operation did not finish in time (stop after SIGKILL, exec wait).
    #[error("{operation} of container {id} did not finish within {timeout:?}")]
    Timeout {
        /// Container id.
        id: String,
        /// What timed out.
        operation: &'static str,
        /// The limit.
        timeout: Duration,
    },
}

impl Error {
    /// True for errors caused by the task definition or image (the user's input), as
    /// opposed to a broken node.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidImageRef { .. }
                | Self::InvalidSpec { .. }
                | Self::ImageNotFound { .. }
                | Self::RegistryAuth { .. }
                | Self::RegistryUnreachable { .. }
                | Self::EntrypointNotFound { .. }
                | Self::ImageNotPresent { .. }
        )
    }

    pub(crate) fn io(step: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            step,
            path: path.into(),
            source,
        }
    }
}
