//! [`ContainerdRuntime`]: the real [`ContainerRuntime`], speaking containerd's gRPC API
//! (containerd-client 0.9) on a socket, in one namespace.
//!
//! * **Pull** is client-side (containerd 1.6 has no Transfer service), the way `ctr image
//!   pull` does it: registry manifest/config/layers are streamed into the Content service
//!   under a lease, with `containerd.io/gc.ref.*` labels so containerd's GC keeps what the
//!   image references; layers are unpacked with Snapshots Prepare → Diff Apply → Commit
//!   under their chain IDs; the image record is created last.
//! * **Containers** get a writable overlayfs snapshot keyed by the container id, an OCI
//!   spec from [`crate::spec`], labels (ours under `flotilla.runtime/`, the caller's as
//!   given) and a runc task whose stdio goes to the `binary://` logger ([`crate::logs`]).
//! * **Exit and OOM**: `Tasks.Wait` gives the exit code; OOM is read from the container's
//!   memory cgroup (`memory.oom_control` `oom_kill` on v1, `memory.events` on v2) before
//!   the task is deleted, so it is also right for exits that happened while the agent was
//!   down.
//!
//! # Layout
//! This module owns the connection: [`ContainerdConfig`], [`ContainerdRuntime::connect`],
//! the namespace and lease metadata every request carries, the runtime's labels, and the
//! [`ContainerRuntime`] impl, which routes each call to the module owning that step:
//! * `storage` — leases and snapshots, the primitives pulls and creates share;
//! * `remap` — image snapshots shifted into a user namespace's ids;
//! * `images` — image records: read back, list, remove, last-used label;
//! * `pull` — pull policies, registry → content store, layer unpacking, image record;
//! * `containers` — container and task lifecycle (create, start, wait, stop, inspect,
//!   list, remove), exit status and OOM;
//! * `exec` — processes run inside a container (health checks), output through a FIFO;
//! * `gc` — carrying out a [`crate::gc::plan`], plus stale snapshots.

mod containers;
mod exec;
mod gc;
mod images;
mod pull;
mod remap;
mod storage;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient,
    images_client::ImagesClient, tasks_client::TasksClient, version_client::VersionClient,
};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::api::ContainerRuntime;
use crate::error::{Error, Result};
use crate::logs::{self, LogChunk, LogFollower, LogRead, RotationPolicy};
use crate::registry::RegistryClient;
use crate::types::{
    ContainerId, ContainerInfo, ContainerSpec, ExecResult, ExecSpec, ExitStatus, GcPolicy,
    GcReport, ImageInfo, ImageRef, LogLine, PullPolicy, RegistryAuth,
};

pub use containers::{parse_oom_kills, runc_options};

/// Label prefix reserved for the runtime's own labels.
pub const LABEL_PREFIX: &str = "flotilla.runtime/";
/// Marks containers and images managed by this runtime.
pub const LABEL_MANAGED: &str = "flotilla.runtime/managed";
/// Container label: stop signal number.
pub const LABEL_STOP_SIGNAL: &str = "flotilla.runtime/stop-signal";
/// Container label: cgroup path (for OOM detection).
pub const LABEL_CGROUP: &str = "flotilla.runtime/cgroup";
/// Image label: unix seconds of the last pull by this runtime.
pub const LABEL_PULLED_AT: &str = "flotilla.runtime/pulled-at";
/// Image label: unix seconds of the last container creation from it.
pub const LABEL_LAST_USED: &str = "flotilla.runtime/last-used";

/// Settings for [`ContainerdRuntime`].
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// containerd namespace holding all of this runtime's objects (e.g. `flotilla`).
    pub namespace: String,
    /// Snapshotter (`overlayfs`).
    pub snapshotter: String,
    /// Runtime shim (`io.containerd.runc.v2`).
    pub runtime: String,
    /// Directory for container log files (`<id>.log`, rotated `<id>.log.N`).
    pub log_dir: PathBuf,
    /// Path of the `flotilla-runtime-logger` binary the shim runs for container stdio.
    pub logger_binary: PathBuf,
    /// Log rotation.
    pub log_rotation: RotationPolicy,
    /// Scratch directory (exec output FIFOs).
    pub state_dir: PathBuf,
    /// Parent cgroup for containers; each gets `<parent>/<namespace>/<id>`.
    pub cgroup_parent: String,
    /// Where cgroup filesystems are mounted (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Registries (host\[:port\]) pulled over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Interval at which log followers poll files.
    pub log_poll: Duration,
    /// runc's state directory (`runc --root`). `None` keeps the shim default
    /// (`/run/containerd/runc/<namespace>`), which is shared by every containerd on the
    /// host: set it when several containerd instances share a host and namespace names
    /// (the multi-node dev cluster), together with a distinct `cgroup_parent`.
    pub runc_root: Option<PathBuf>,
    /// Static init binary for containers with `init_process` (default
    /// `/usr/bin/tini-static` from Debian's `tini` package, when present).
    pub init_binary: Option<PathBuf>,
}

impl ContainerdConfig {
    /// The default [`cgroup_parent`](Self::cgroup_parent).
    pub const DEFAULT_CGROUP_PARENT: &'static str = "/flotilla";

    /// Defaults for everything but the socket, namespace and directories.
    #[must_use]
    pub fn new(
        socket: impl Into<PathBuf>,
        namespace: impl Into<String>,
        log_dir: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        logger_binary: impl Into<PathBuf>,
    ) -> Self {
        Self {
            socket: socket.into(),
            namespace: namespace.into(),
            snapshotter: "overlayfs".to_owned(),
            runtime: "io.containerd.runc.v2".to_owned(),
            log_dir: log_dir.into(),
            logger_binary: logger_binary.into(),
            log_rotation: RotationPolicy::default(),
            state_dir: state_dir.into(),
            cgroup_parent: Self::DEFAULT_CGROUP_PARENT.to_owned(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            insecure_registries: Vec::new(),
            log_poll: Duration::from_millis(250),
            runc_root: None,
            init_binary: Some(PathBuf::from("/usr/bin/tini-static")).filter(|p| p.exists()),
        }
    }
}

/// The containerd-backed [`ContainerRuntime`]. Cheap to clone (one shared channel); holds
/// no container state of its own.
#[derive(Debug, Clone)]
pub struct ContainerdRuntime {
    cfg: ContainerdConfig,
    channel: Channel,
    ns: AsciiMetadataValue,
    registry: RegistryClient,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A name no other call (in this process or another) uses: ingest refs, lease ids,
/// extraction snapshot keys, exec ids.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

fn unix_secs(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string()
}

fn parse_unix_secs(s: Option<&String>) -> Option<SystemTime> {
    s.and_then(|v| v.parse::<u64>().ok())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
}

fn ts(t: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    t.cloned()
        .and_then(|t| SystemTime::try_from(t).ok())
        .filter(|t| *t > UNIX_EPOCH)
}

/// A containerd answer where "not found" means "nothing there": `Ok(None)`.
fn found<T>(r: std::result::Result<T, Status>) -> std::result::Result<Option<T>, Status> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s),
    }
}

/// A lookup's answer: `Ok(None)` when containerd has no such object, [`Error::Query`]
/// naming `what` when the call failed.
fn lookup<T>(
    r: std::result::Result<tonic::Response<T>, Status>,
    what: impl FnOnce() -> String,
) -> Result<Option<T>> {
    match found(r) {
        Ok(r) => Ok(r.map(tonic::Response::into_inner)),
        Err(source) => Err(Error::Query {
            what: what(),
            source,
        }),
    }
}

/// For `map_err` on a failed read: [`Error::Query`] naming `what`.
fn query(what: &str) -> impl FnOnce(Status) -> Error {
    let what = what.to_owned();
    move |source| Error::Query { what, source }
}

impl ContainerdRuntime {
    /// Connects to containerd and checks it answers.
    ///
    /// # Errors
    /// [`Error::Connect`] when the socket cannot be reached, [`Error::Query`] when
    /// containerd does not answer the version call, [`Error::InvalidSpec`] for a bad
    /// namespace name.
    pub async fn connect(cfg: ContainerdConfig) -> Result<Self> {
        let ns = AsciiMetadataValue::try_from(cfg.namespace.as_str())
            .ok()
            .filter(|_| {
                !cfg.namespace.is_empty()
                    && cfg.namespace.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'-' | b'_' | b'.')
                    })
            })
            .ok_or_else(|| Error::InvalidSpec {
                container: String::new(),
                reason: format!("bad containerd namespace {:?}", cfg.namespace),
            })?;
        let channel = containerd_client::connect(&cfg.socket)
            .await
            .map_err(|source| Error::Connect {
                socket: cfg.socket.clone(),
                source,
            })?;
        let version = VersionClient::new(channel.clone())
            .version(Request::new(()))
            .await
            .map_err(query("version"))?
            .into_inner();
        tracing::info!(socket = %cfg.socket.display(), namespace = %cfg.namespace, version = %version.version, "connected to containerd");
        let registry = RegistryClient::new(cfg.insecure_registries.clone());
        Ok(Self {
            cfg,
            channel,
            ns,
            registry,
        })
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &ContainerdConfig {
        &self.cfg
    }

    /// A request in this runtime's namespace.
    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("containerd-namespace", self.ns.clone());
        r
    }

    /// A request whose new objects `lease` protects from containerd's GC.
    fn req_lease<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = AsciiMetadataValue::try_from(lease) {
            r.metadata_mut().insert("containerd-lease", v);
        }
        r
    }

    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
    fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    fn content(&self) -> ContentClient<Channel> {
        // Config and manifests are small, but allow big reads anyway.
        ContentClient::new(self.channel.clone()).max_decoding_message_size(64 * 1024 * 1024)
    }
    fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
}

/// Each call is carried out by the module owning its step (see the module docs).
#[async_trait]
impl ContainerRuntime for ContainerdRuntime {
    async fn pull_image(
        &self,
        image: &ImageRef,
        policy: PullPolicy,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo> {
        self.pull(image, policy, auth).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.managed_images().await
    }

    async fn remove_image(&self, image: &ImageRef) -> Result<()> {
        self.delete_image(image).await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerInfo> {
        self.create(spec).await
    }

    async fn start_container(&self, id: &ContainerId) -> Result<u32> {
        self.start(id).await
    }

    async fn wait_container(&self, id: &ContainerId) -> Result<ExitStatus> {
        self.wait(id).await
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<ExitStatus> {
        self.stop(id, timeout).await
    }

    async fn exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<ExecResult> {
        self.exec_in(id, exec).await
    }

    async fn inspect_container(&self, id: &ContainerId) -> Result<ContainerInfo> {
        self.inspect(id).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        self.list().await
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.remove(id).await
    }

    async fn garbage_collect(&self, policy: &GcPolicy, now: SystemTime) -> Result<GcReport> {
        self.collect_garbage(policy, now).await
    }

    // Logs are files the logger writes; reading them needs no containerd call.

    async fn read_logs(&self, id: &ContainerId, tail: Option<usize>) -> Result<Vec<LogLine>> {
        let live = logs::log_path(&self.cfg.log_dir, id.as_str());
        tokio::task::spawn_blocking(move || logs::read_tail(&live, tail))
            .await
            .map_err(|e| Error::io("read logs", PathBuf::new(), std::io::Error::other(e)))?
    }

    async fn read_logs_from(&self, id: &ContainerId, read: LogRead) -> Result<LogChunk> {
        let live = logs::log_path(&self.cfg.log_dir, id.as_str());
        tokio::task::spawn_blocking(move || {
            logs::read_from(&live, read.from, read.tail, read.max_bytes)
        })
        .await
        .map_err(|e| Error::io("read logs", PathBuf::new(), std::io::Error::other(e)))?
    }

    async fn follow_logs(&self, id: &ContainerId, tail: Option<usize>) -> Result<LogFollower> {
        self.require_container(id).await?;
        Ok(logs::follow(
            logs::log_path(&self.cfg.log_dir, id.as_str()),
            tail,
            self.cfg.log_poll,
        ))
    }
}
