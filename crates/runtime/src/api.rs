//! The [`ContainerRuntime`] trait: everything the node agent asks of a container engine.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::error::Result;
use crate::logs::{LogChunk, LogFollower, LogRead};
use crate::types::{
    ContainerId, ContainerInfo, ContainerSpec, ExecResult, ExecSpec, ExitStatus, GcPolicy,
    GcReport, ImageInfo, ImageRef, LogLine, PullPolicy, RegistryAuth,
};

/// A container engine as the node agent sees it.
///
/// All state lives in the engine (for containerd: container labels, tasks, image records),
/// none in the implementing object, so a new object created after an agent restart sees
/// and can wait on everything the old one started ([`ContainerRuntime::list_containers`] +
/// [`ContainerRuntime::wait_container`] is the re-adoption path).
///
/// Lifecycle: [`pull_image`](ContainerRuntime::pull_image) →
/// [`create_container`](ContainerRuntime::create_container) →
/// [`start_container`](ContainerRuntime::start_container) →
/// [`wait_container`](ContainerRuntime::wait_container) /
/// [`stop_container`](ContainerRuntime::stop_container) →
/// [`remove_container`](ContainerRuntime::remove_container) (or
/// [`garbage_collect`](ContainerRuntime::garbage_collect) later).
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Makes `image` available locally according to `policy`, pulling it with `auth` if
    /// needed (plain HTTP for loopback/insecure registries).
    async fn pull_image(
        &self,
        image: &ImageRef,
        policy: PullPolicy,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo>;

    /// Images present on the node that this runtime pulled.
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;

    /// Removes an image; fails with [`crate::Error::ImageInUse`] while a container uses it.
    /// Removing an absent image succeeds.
    async fn remove_image(&self, image: &ImageRef) -> Result<()>;

    /// Creates a container (and its not-yet-started process) from a pulled image. Fails
    /// with [`crate::Error::EntrypointNotFound`] when the program does not exist in the
    /// image; nothing is left behind on failure.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerInfo>;

    /// Starts a created container; returns the host pid of its main process.
    async fn start_container(&self, id: &ContainerId) -> Result<u32>;

    /// Waits until the container's main process exits (returns at once if it already
    /// has). Safe to call from several tasks and again after an agent restart.
    async fn wait_container(&self, id: &ContainerId) -> Result<ExitStatus>;

    /// Sends the container's stop signal, waits up to `timeout`, then SIGKILLs every
    /// process in it; returns the exit status. Stopping a stopped container returns its
    /// status.
    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<ExitStatus>;

    /// Runs a command inside a running container (health checks) and returns its exit code
    /// and output; a process still running after `exec.timeout` is killed and reported with
    /// `exit_code: None`.
    async fn exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<ExecResult>;

    /// One container's state.
    async fn inspect_container(&self, id: &ContainerId) -> Result<ContainerInfo>;

    /// Every container this runtime manages (in its namespace), running or not.
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>>;

    /// Deletes a non-running container, its writable layer and its logs. Removing an
    /// absent container succeeds.
    async fn remove_container(&self, id: &ContainerId) -> Result<()>;

    /// Removes containers stopped longer than the policy allows, then images no container
    /// uses that have been unused long enough, then leftover snapshots. Never touches a
    /// running container or an image in use.
    async fn garbage_collect(&self, policy: &GcPolicy, now: SystemTime) -> Result<GcReport>;

    /// The container's log records (stdout and stderr interleaved), the last `tail` only
    /// if given.
    async fn read_logs(&self, id: &ContainerId, tail: Option<usize>) -> Result<Vec<LogLine>>;

    /// Follows the container's log: the last `tail` records, then new ones as they are
    /// written, until the follower is dropped.
    async fn follow_logs(&self, id: &ContainerId, tail: Option<usize>) -> Result<LogFollower>;

    /// The container's records that `read` asks for, with where to resume (see
    /// [`crate::logs::read_from`]). A container without output yet reads as empty.
    async fn read_logs_from(&self, id: &ContainerId, read: LogRead) -> Result<LogChunk>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trait_is_object_safe() {
        // The agent holds the runtime as `Arc<dyn ContainerRuntime>`.
        let rt: std::sync::Arc<dyn ContainerRuntime> =
            std::sync::Arc::new(crate::FakeRuntime::new());
        drop(rt);
    }
}
