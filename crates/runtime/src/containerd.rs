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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, ListSnapshotsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
    StatSnapshotRequest,
};
use containerd_client::services::v1::{
    ApplyRequest, Container, CreateContainerRequest, CreateImageRequest, CreateRequest,
    CreateTaskRequest, DeleteContainerRequest, DeleteImageRequest, DeleteProcessRequest,
    DeleteRequest, DeleteTaskRequest, ExecProcessRequest, GetContainerRequest, GetImageRequest,
    GetRequest, Image, Info as ContentInfo, InfoRequest, KillRequest, ListContainersRequest,
    ListImagesRequest, ListTasksRequest, ReadContentRequest, StartRequest, UpdateImageRequest,
    UpdateRequest, WaitRequest, WriteAction, WriteContentRequest,
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    images_client::ImagesClient, leases_client::LeasesClient, tasks_client::TasksClient,
    version_client::VersionClient,
};
use containerd_client::types::v1::{Process, Status as TaskStatus};
use containerd_client::types::{Descriptor as CdDescriptor, Mount};
use futures_util::StreamExt as _;
use prost_types::{Any, FieldMask};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::api::ContainerRuntime;
use crate::error::{Error, Result};
use crate::gc::{self, GcImage};
use crate::image::{self, ConfigBlob, Descriptor, ImageConfig, Index, Manifest};
use crate::logs::{self, LogChunk, LogFollower, LogPosition, RotationPolicy};
use crate::registry::{RegistryClient, Session};
use crate::spec;
use crate::types::{
    ContainerId, ContainerInfo, ContainerSpec, ContainerState, ExecResult, ExecSpec, ExitStatus,
    GcPolicy, GcReport, ImageInfo, ImageRef, LogLine, PullPolicy, RegistryAuth,
};

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

const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const CHUNK: usize = 1024 * 1024;
const EXEC_OUTPUT_MAX: usize = 4096;

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
    /// Scratch directory (exec output files).
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
            cgroup_parent: "/flotilla".to_owned(),
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

/// Parses the OOM-kill counter from cgroup v1 `memory.oom_control` or v2 `memory.events`.
#[must_use]
pub fn parse_oom_kills(contents: &str) -> u64 {
    contents
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Encodes `containerd.runc.v1.Options { root }` (field 7, a string) by hand: the message
/// is not among containerd-client's generated types.
#[must_use]
pub fn runc_options(root: &Path) -> Any {
    let root = root.to_string_lossy();
    let mut value = vec![(7 << 3) | 2];
    let mut len = root.len();
    loop {
        let byte = u8::try_from(len & 0x7f).unwrap_or(0);
        len >>= 7;
        if len == 0 {
            value.push(byte);
            break;
        }
        value.push(byte | 0x80);
    }
    value.extend_from_slice(root.as_bytes());
    Any {
        type_url: "containerd.runc.v1.Options".to_owned(),
        value,
    }
}

/// Recognises runc's "program not found" failures at task creation.
fn is_missing_entrypoint(msg: &str) -> bool {
    msg.contains("exec:")
        && (msg.contains("no such file or directory")
            || msg.contains("executable file not found")
            || msg.contains("not a directory"))
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
            .map_err(|source| Error::Query {
                what: "version".into(),
                source,
            })?
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

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("containerd-namespace", self.ns.clone());
        r
    }

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

    // ---------------------------------------------------------------- images

    async fn get_image(&self, name: &str) -> Result<Option<Image>> {
        match self
            .images()
            .get(self.req(GetImageRequest {
                name: name.to_owned(),
            }))
            .await
        {
            Ok(r) => Ok(r.into_inner().image),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(source) => Err(Error::Query {
                what: format!("image {name}"),
                source,
            }),
        }
    }

    async fn read_blob(&self, image: &str, digest: &str) -> Result<Vec<u8>> {
        let mut stream = self
            .content()
            .read(self.req(ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|e| Error::ReadImage {
                image: image.to_owned(),
                detail: format!("read {digest}: {}", e.message()),
            })?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(|e| Error::ReadImage {
            image: image.to_owned(),
            detail: format!("read {digest}: {}", e.message()),
        })? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Manifest, config and chain IDs of a stored image.
    async fn image_meta(&self, img: &Image) -> Result<(Manifest, ConfigBlob, Vec<String>)> {
        let name = img.name.as_str();
        let target = img.target.as_ref().ok_or_else(|| Error::ReadImage {
            image: name.to_owned(),
            detail: "image record has no target".into(),
        })?;
        let json_err = |what: &str, e: serde_json::Error| Error::ReadImage {
            image: name.to_owned(),
            detail: format!("parse {what}: {e}"),
        };
        let mut bytes = self.read_blob(name, &target.digest).await?;
        if image::is_index(&target.media_type) {
            let idx: Index = serde_json::from_slice(&bytes).map_err(|e| json_err("index", e))?;
            let d = idx
                .select("linux", "amd64")
                .ok_or_else(|| Error::ReadImage {
                    image: name.to_owned(),
                    detail: "no linux/amd64 manifest".into(),
                })?;
            bytes = self.read_blob(name, &d.digest).await?;
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| json_err("manifest", e))?;
        let cfg_bytes = self.read_blob(name, &manifest.config.digest).await?;
        let config: ConfigBlob =
            serde_json::from_slice(&cfg_bytes).map_err(|e| json_err("config", e))?;
        let chains = image::chain_ids(&config.rootfs.diff_ids);
        Ok((manifest, config, chains))
    }

    fn image_info(img: &Image, manifest: Option<&Manifest>, from_cache: bool) -> ImageInfo {
        let target = img.target.clone().unwrap_or_default();
        let layers: i64 = manifest.map_or(0, |m| {
            m.config.size + m.layers.iter().map(|l| l.size).sum::<i64>()
        });
        ImageInfo {
            name: img.name.clone(),
            digest: target.digest,
            size: u64::try_from(target.size + layers).unwrap_or(0),
            from_cache,
            labels: img.labels.clone().into_iter().collect(),
        }
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool> {
        match self
            .snapshots()
            .stat(self.req(StatSnapshotRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(source) => Err(Error::Query {
                what: format!("snapshot {key}"),
                source,
            }),
        }
    }

    async fn cached(&self, img: &Image) -> Result<ImageInfo> {
        let (manifest, config, chains) = self.image_meta(img).await?;
        // A cached record whose layers were garbage-collected is not usable.
        if let Some(top) = chains.last()
            && !self.snapshot_exists(top).await?
        {
            return Err(Error::ImageNotPresent {
                image: format!("{} (layers not unpacked)", img.name),
            });
        }
        let _ = config;
        Ok(Self::image_info(img, Some(&manifest), true))
    }

    async fn content_exists(&self, digest: &str) -> Result<bool> {
        match self
            .content()
            .info(self.req(InfoRequest {
                digest: digest.to_owned(),
            }))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(source) => Err(Error::Query {
                what: format!("content {digest}"),
                source,
            }),
        }
    }

    async fn set_content_labels(
        &self,
        image: &str,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.content()
            .update(self.req(UpdateRequest {
                info: Some(ContentInfo {
                    digest: digest.to_owned(),
                    labels: labels.clone(),
                    ..ContentInfo::default()
                }),
                update_mask: Some(FieldMask { paths }),
            }))
            .await
            .map_err(|source| Error::WriteContent {
                image: image.to_owned(),
                digest: digest.to_owned(),
                source,
            })?;
        Ok(())
    }

    /// Streams a blob into the content store (lock-step: one response per request).
    async fn write_content<S>(
        &self,
        lease: &str,
        image: &str,
        desc: &Descriptor,
        labels: HashMap<String, String>,
        mut body: S,
    ) -> Result<()>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes>> + Unpin,
    {
        let werr = |source: Status| Error::WriteContent {
            image: image.to_owned(),
            digest: desc.digest.clone(),
            source,
        };
        let (tx, rx) = mpsc::channel::<WriteContentRequest>(2);
        let reference = unique("flotilla-ingest");
        let base = WriteContentRequest {
            action: WriteAction::Write.into(),
            r#ref: reference,
            total: desc.size,
            expected: desc.digest.clone(),
            offset: 0,
            data: Vec::new(),
            labels: HashMap::new(),
        };
        // The first message must be queued before the call: the server reads it before it
        // sends response headers.
        let _ = tx
            .send(WriteContentRequest {
                action: WriteAction::Stat.into(),
                ..base.clone()
            })
            .await;
        let call = self
            .content()
            .write(self.req_lease(ReceiverStream::new(rx), lease))
            .await;
        let mut responses = match call {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(werr(s)),
        };
        let next = |r: std::result::Result<Option<_>, Status>| -> Result<bool> {
            match r {
                Ok(Some(_)) => Ok(true),
                Ok(None) => Ok(false),
                Err(s) if s.code() == Code::AlreadyExists => Ok(false),
                Err(s) => Err(werr(s)),
            }
        };
        if !next(responses.message().await)? {
            return Ok(()); // already exists
        }
        let mut offset: i64 = 0;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        loop {
            let chunk = body.next().await.transpose()?;
            let done = chunk.is_none();
            if let Some(c) = chunk {
                buf.extend_from_slice(&c);
            }
            while buf.len() >= CHUNK || (done && !buf.is_empty()) {
                let take = buf.len().min(CHUNK);
                let data: Vec<u8> = buf.drain(..take).collect();
                let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                if tx
                    .send(WriteContentRequest {
                        offset,
                        data,
                        ..base.clone()
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                offset += len;
                if !next(responses.message().await)? {
                    return Ok(());
                }
            }
            if done {
                break;
            }
        }
        let _ = tx
            .send(WriteContentRequest {
                action: WriteAction::Commit.into(),
                offset,
                labels,
                ..base.clone()
            })
            .await;
        next(responses.message().await)?;
        drop(tx);
        Ok(())
    }

    async fn ensure_blob(
        &self,
        session: &mut Session,
        lease: &str,
        image: &str,
        desc: &Descriptor,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if self.content_exists(&desc.digest).await? {
            return self.set_content_labels(image, &desc.digest, &labels).await;
        }
        let resp = self.registry.blob(session, &desc.digest).await?;
        let stream = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| RegistryClient::stream_error(session, &e)));
        // `session` is borrowed by the closure; collect errors lazily.
        let stream = Box::pin(stream);
        self.write_content(lease, image, desc, labels, stream)
            .await?;
        if !self.content_exists(&desc.digest).await? {
            return Err(Error::RegistryProtocol {
                image: image.to_owned(),
                detail: format!("blob {} was not stored", desc.digest),
            });
        }
        Ok(())
    }

    async fn write_small(
        &self,
        lease: &str,
        image: &str,
        desc: &Descriptor,
        bytes: Vec<u8>,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if self.content_exists(&desc.digest).await? {
            return self.set_content_labels(image, &desc.digest, &labels).await;
        }
        let body = futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))]);
        self.write_content(lease, image, desc, labels, body).await
    }

    async fn unpack(
        &self,
        lease: &str,
        image: &str,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<()> {
        let chains = image::chain_ids(diff_ids);
        let mut parent = String::new();
        for ((layer, diff_id), chain) in layers.iter().zip(diff_ids).zip(&chains) {
            if self.snapshot_exists(chain).await? {
                parent.clone_from(chain);
                continue;
            }
            let uerr = |source: Status| Error::UnpackLayer {
                image: image.to_owned(),
                layer: layer.digest.clone(),
                source,
            };
            let key = unique("flotilla-extract");
            let mounts = self
                .snapshots()
                .prepare(self.req_lease(
                    PrepareSnapshotRequest {
                        snapshotter: self.cfg.snapshotter.clone(),
                        key: key.clone(),
                        parent: parent.clone(),
                        labels: HashMap::new(),
                    },
                    lease,
                ))
                .await
                .map_err(uerr)?
                .into_inner()
                .mounts;
            let applied = DiffClient::new(self.channel.clone())
                .apply(self.req_lease(
                    ApplyRequest {
                        diff: Some(CdDescriptor {
                            media_type: layer.media_type.clone(),
                            digest: layer.digest.clone(),
                            size: layer.size,
                            annotations: HashMap::new(),
                        }),
                        mounts,
                        payloads: HashMap::new(),
                        sync_fs: false,
                    },
                    lease,
                ))
                .await;
            let applied = match applied {
                Ok(a) => a.into_inner().applied.map(|d| d.digest).unwrap_or_default(),
                Err(s) => {
                    self.remove_snapshot_quiet(&key).await;
                    return Err(uerr(s));
                }
            };
            if applied != *diff_id {
                self.remove_snapshot_quiet(&key).await;
                return Err(Error::RegistryProtocol {
                    image: image.to_owned(),
                    detail: format!(
                        "layer {} unpacked to {applied}, config says {diff_id}",
                        layer.digest
                    ),
                });
            }
            match self
                .snapshots()
                .commit(self.req_lease(
                    CommitSnapshotRequest {
                        snapshotter: self.cfg.snapshotter.clone(),
                        name: chain.clone(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    },
                    lease,
                ))
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == Code::AlreadyExists => {
                    self.remove_snapshot_quiet(&key).await;
                }
                Err(s) => {
                    self.remove_snapshot_quiet(&key).await;
                    return Err(uerr(s));
                }
            }
            tracing::debug!(image, layer = %layer.digest, chain = %chain, "layer unpacked");
            parent.clone_from(chain);
        }
        Ok(())
    }

    /// A lease protecting what is created under it from containerd's GC until deleted
    /// (or for an hour, should we die first).
    async fn create_lease(&self, prefix: &str) -> Result<String> {
        let lease = unique(prefix);
        let expire = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let expire = expire
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        LeasesClient::new(self.channel.clone())
            .create(self.req(CreateRequest {
                id: lease.clone(),
                labels: HashMap::from([("containerd.io/gc.expire".to_owned(), expire)]),
            }))
            .await
            .map_err(|source| Error::Query {
                what: "create lease".into(),
                source,
            })?;
        Ok(lease)
    }

    async fn delete_lease(&self, lease: &str) {
        if let Err(e) = LeasesClient::new(self.channel.clone())
            .delete(self.req(DeleteRequest {
                id: lease.to_owned(),
                sync: false,
            }))
            .await
        {
            tracing::warn!(lease, error = %e.message(), "delete lease");
        }
    }

    async fn prepare_snapshot(
        &self,
        key: &str,
        parent: &str,
        lease: &str,
    ) -> Result<Vec<Mount>, Status> {
        Ok(self
            .snapshots()
            .prepare(self.req_lease(
                PrepareSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    key: key.to_owned(),
                    parent: parent.to_owned(),
                    labels: HashMap::new(),
                },
                lease,
            ))
            .await?
            .into_inner()
            .mounts)
    }

    async fn remove_snapshot_quiet(&self, key: &str) {
        if let Err(e) = self
            .snapshots()
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
            && e.code() != Code::NotFound
        {
            tracing::warn!(key, error = %e.message(), "remove snapshot");
        }
    }

    async fn pull_remote(
        &self,
        image: &ImageRef,
        auth: Option<&RegistryAuth>,
        existing: Option<&Image>,
    ) -> Result<ImageInfo> {
        let name = image.to_string();
        let proto = |detail: String| Error::RegistryProtocol {
            image: name.clone(),
            detail,
        };
        let mut session = self.registry.session(image, auth);
        let mut fetched = self
            .registry
            .manifest(&mut session, image.reference())
            .await?;
        if image::is_index(&fetched.media_type) {
            let idx: Index = serde_json::from_slice(&fetched.bytes)
                .map_err(|e| proto(format!("parse index: {e}")))?;
            let d = idx
                .select("linux", "amd64")
                .ok_or_else(|| proto("the image has no linux/amd64 manifest".into()))?;
            fetched = self.registry.manifest(&mut session, &d.digest).await?;
        }
        if !image::is_manifest(&fetched.media_type) {
            return Err(proto(format!(
                "unsupported manifest media type {}",
                fetched.media_type
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| proto(format!("parse manifest: {e}")))?;

        let lease = self.create_lease("flotilla-pull").await?;
        let result = self
            .pull_with_lease(&lease, &name, &mut session, &manifest, &fetched, existing)
            .await;
        self.delete_lease(&lease).await;
        result
    }

    async fn pull_with_lease(
        &self,
        lease: &str,
        name: &str,
        session: &mut Session,
        manifest: &Manifest,
        fetched: &crate::registry::FetchedManifest,
        existing: Option<&Image>,
    ) -> Result<ImageInfo> {
        let proto = |detail: String| Error::RegistryProtocol {
            image: name.to_owned(),
            detail,
        };
        // Config: small, fetched whole to learn the diff IDs.
        let resp = self.registry.blob(session, &manifest.config.digest).await?;
        let cfg_bytes = resp
            .bytes()
            .await
            .map_err(|e| RegistryClient::stream_error(session, &e))?
            .to_vec();
        if image::sha256_digest(&cfg_bytes) != manifest.config.digest {
            return Err(proto("config blob digest mismatch".into()));
        }
        let config: ConfigBlob =
            serde_json::from_slice(&cfg_bytes).map_err(|e| proto(format!("parse config: {e}")))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(proto(format!(
                "{} layers but {} diff ids",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let chains = image::chain_ids(diff_ids);
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let labels =
                HashMap::from([("containerd.io/uncompressed".to_owned(), diff_id.clone())]);
            self.ensure_blob(session, lease, name, layer, labels)
                .await?;
        }
        let mut cfg_labels = HashMap::new();
        if let Some(top) = chains.last() {
            cfg_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{}", self.cfg.snapshotter),
                top.clone(),
            );
        }
        self.write_small(lease, name, &manifest.config, cfg_bytes, cfg_labels)
            .await?;
        let mut m_labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_owned(),
            manifest.config.digest.clone(),
        )]);
        for (i, l) in manifest.layers.iter().enumerate() {
            m_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            );
        }
        let target = Descriptor {
            media_type: fetched.media_type.clone(),
            digest: fetched.digest.clone(),
            size: i64::try_from(fetched.bytes.len()).unwrap_or(i64::MAX),
            platform: None,
        };
        self.write_small(lease, name, &target, fetched.bytes.clone(), m_labels)
            .await?;
        self.unpack(lease, name, &manifest.layers, diff_ids).await?;

        let mut labels: HashMap<String, String> =
            existing.map(|i| i.labels.clone()).unwrap_or_default();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        let now = unix_secs(SystemTime::now());
        labels.insert(LABEL_PULLED_AT.into(), now.clone());
        labels.entry(LABEL_LAST_USED.into()).or_insert(now);
        let record = Image {
            name: name.to_owned(),
            labels,
            target: Some(CdDescriptor {
                media_type: target.media_type.clone(),
                digest: target.digest.clone(),
                size: target.size,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let rerr = |source| Error::RegisterImage {
            image: name.to_owned(),
            source,
        };
        let stored = if existing.is_some() {
            self.images()
                .update(self.req(UpdateImageRequest {
                    image: Some(record),
                    update_mask: None,
                    source_date_epoch: None,
                }))
                .await
                .map_err(rerr)?
                .into_inner()
                .image
        } else {
            match self
                .images()
                .create(self.req(CreateImageRequest {
                    image: Some(record.clone()),
                    source_date_epoch: None,
                }))
                .await
            {
                Ok(r) => r.into_inner().image,
                // Another pull of the same name won the race: update instead.
                Err(s) if s.code() == Code::AlreadyExists => {
                    self.images()
                        .update(self.req(UpdateImageRequest {
                            image: Some(record),
                            update_mask: None,
                            source_date_epoch: None,
                        }))
                        .await
                        .map_err(rerr)?
                        .into_inner()
                        .image
                }
                Err(s) => return Err(rerr(s)),
            }
        };
        let stored = stored.ok_or_else(|| Error::ReadImage {
            image: name.to_owned(),
            detail: "containerd returned no image record".into(),
        })?;
        tracing::info!(image = name, digest = %target.digest, "image pulled");
        Ok(Self::image_info(&stored, Some(manifest), false))
    }

    async fn touch_image(&self, name: &str) {
        let labels = HashMap::from([(LABEL_LAST_USED.to_owned(), unix_secs(SystemTime::now()))]);
        if let Err(e) = self
            .images()
            .update(self.req(UpdateImageRequest {
                image: Some(Image {
                    name: name.to_owned(),
                    labels,
                    ..Image::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec![format!("labels.{LABEL_LAST_USED}")],
                }),
                source_date_epoch: None,
            }))
            .await
        {
            tracing::warn!(image = name, error = %e.message(), "update image last-used label");
        }
    }

    // ------------------------------------------------------------ containers

    async fn get_container(&self, id: &ContainerId) -> Result<Option<Container>> {
        match self
            .containers()
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(r) => Ok(r.into_inner().container),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(source) => Err(Error::Query {
                what: format!("container {id}"),
                source,
            }),
        }
    }

    async fn get_task(&self, id: &ContainerId) -> Result<Option<Process>> {
        match self
            .tasks()
            .get(self.req(GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
        {
            Ok(r) => Ok(r.into_inner().process),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(source) => Err(Error::Query {
                what: format!("task {id}"),
                source,
            }),
        }
    }

    fn oom_killed(&self, c: &Container) -> bool {
        let Some(cg) = c.labels.get(LABEL_CGROUP) else {
            return false;
        };
        let root = &self.cfg.cgroup_root;
        let rel = cg.trim_start_matches('/');
        let path = if root.join("cgroup.controllers").exists() {
            root.join(rel).join("memory.events")
        } else {
            root.join("memory").join(rel).join("memory.oom_control")
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => parse_oom_kills(&s) > 0,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot read OOM counter");
                false
            }
        }
    }

    fn state_of(&self, c: &Container, task: Option<&Process>) -> ContainerState {
        let Some(p) = task else {
            return ContainerState::Unknown;
        };
        match TaskStatus::try_from(p.status) {
            Ok(TaskStatus::Created) => ContainerState::Created,
            Ok(TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing) => {
                ContainerState::Running { pid: p.pid }
            }
            Ok(TaskStatus::Stopped) => ContainerState::Stopped(ExitStatus {
                code: i32::try_from(p.exit_status).unwrap_or(i32::MAX),
                oom_killed: self.oom_killed(c),
                exited_at: ts(p.exited_at.as_ref()),
            }),
            _ => ContainerState::Unknown,
        }
    }

    fn info_of(&self, c: &Container, task: Option<&Process>) -> Result<ContainerInfo> {
        Ok(ContainerInfo {
            id: ContainerId::new(c.id.clone())?,
            image: c.image.clone(),
            state: self.state_of(c, task),
            labels: c
                .labels
                .iter()
                .filter(|(k, _)| !k.starts_with(LABEL_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            created_at: ts(c.created_at.as_ref()),
        })
    }

    async fn kill(&self, id: &ContainerId, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        match self
            .tasks()
            .kill(self.req(KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_owned(),
                signal,
                all,
            }))
            .await
        {
            Ok(_) => Ok(()),
            // Already gone / already exited: the wait that follows reports it.
            Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
            Err(s) if s.message().contains("process already finished") => Ok(()),
            Err(source) => Err(Error::Signal {
                id: id.to_string(),
                signal,
                source,
            }),
        }
    }

    async fn wait_exec(
        &self,
        id: &ContainerId,
        exec_id: &str,
    ) -> Result<(u32, Option<SystemTime>)> {
        let r = self
            .tasks()
            .wait(self.req(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_owned(),
            }))
            .await
            .map_err(|source| Error::Wait {
                id: id.to_string(),
                source,
            })?
            .into_inner();
        Ok((r.exit_status, ts(r.exited_at.as_ref())))
    }

    async fn cleanup_failed_create(&self, id: &ContainerId) {
        let _ = self
            .tasks()
            .delete(self.req(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await;
        let _ = self
            .containers()
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }))
            .await;
        self.remove_snapshot_quiet(id.as_str()).await;
    }

    async fn create_inner(&self, s: &ContainerSpec, img: &Image) -> Result<()> {
        let id = s.id.as_str();
        let (_, config, chains) = self.image_meta(img).await?;
        let image_cfg = config.config.clone().unwrap_or_else(ImageConfig::default);
        let cgroup = format!("{}/{}/{}", self.cfg.cgroup_parent, self.cfg.namespace, id);
        let oci = spec::build_oci_spec(s, &image_cfg, &cgroup, self.cfg.init_binary.as_deref())?;
        let stop_signal = spec::stop_signal(s, &image_cfg)?;
        // The program runc will look for (not the init in front of it).
        let args = spec::process_args(s, &image_cfg)?;
        for k in s.labels.keys() {
            if k.starts_with(LABEL_PREFIX) {
                return Err(Error::InvalidSpec {
                    container: id.to_owned(),
                    reason: format!("label {k:?} uses the reserved prefix {LABEL_PREFIX}"),
                });
            }
        }
        for m in &s.mounts {
            if !m.host_path.exists() {
                return Err(Error::InvalidSpec {
                    container: id.to_owned(),
                    reason: format!("volume source {} does not exist", m.host_path.display()),
                });
            }
        }

        let parent = chains.last().cloned().unwrap_or_default();
        // Until the container record references the snapshot, only a lease keeps
        // containerd's GC (run after any deletion, in any namespace) off it.
        let lease = self.create_lease("flotilla-create").await?;
        let result = self
            .create_with_lease(s, img, &lease, &args, &parent, oci, stop_signal, cgroup)
            .await;
        self.delete_lease(&lease).await;
        result
    }

    // The values are computed (and validated) by `create_inner` before anything is created;
    // passing them one by one keeps this function a plain sequence of containerd calls.
    #[allow(clippy::too_many_arguments)]
    async fn create_with_lease(
        &self,
        s: &ContainerSpec,
        img: &Image,
        lease: &str,
        args: &[String],
        parent: &str,
        oci: serde_json::Value,
        stop_signal: u32,
        cgroup: String,
    ) -> Result<()> {
        let id = s.id.as_str();
        let cerr = |source| Error::CreateContainer {
            id: id.to_owned(),
            source,
        };
        let mounts: Vec<Mount> = match self.prepare_snapshot(id, parent, lease).await {
            Ok(m) => m,
            Err(s) if s.code() == Code::AlreadyExists => {
                // Left over from a create that died half-way (no container record exists).
                self.remove_snapshot_quiet(id).await;
                self.prepare_snapshot(id, parent, lease)
                    .await
                    .map_err(cerr)?
            }
            Err(s) => return Err(cerr(s)),
        };
        let mut labels: HashMap<String, String> = s.labels.clone().into_iter().collect();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        labels.insert(LABEL_STOP_SIGNAL.into(), stop_signal.to_string());
        labels.insert(LABEL_CGROUP.into(), cgroup);
        let container = Container {
            id: id.to_owned(),
            labels,
            image: img.name.clone(),
            runtime: Some(Runtime {
                name: self.cfg.runtime.clone(),
                options: self.cfg.runc_root.as_deref().map(runc_options),
            }),
            spec: Some(Any {
                type_url: SPEC_TYPE_URL.to_owned(),
                value: serde_json::to_vec(&oci).map_err(|e| Error::InvalidSpec {
                    container: id.to_owned(),
                    reason: format!("serialise OCI spec: {e}"),
                })?,
            }),
            snapshotter: self.cfg.snapshotter.clone(),
            snapshot_key: id.to_owned(),
            ..Container::default()
        };
        if let Err(e) = self
            .containers()
            .create(self.req(CreateContainerRequest {
                container: Some(container),
            }))
            .await
        {
            self.remove_snapshot_quiet(id).await;
            return Err(if e.code() == Code::AlreadyExists {
                Error::ContainerExists { id: id.to_owned() }
            } else {
                cerr(e)
            });
        }
        std::fs::create_dir_all(&self.cfg.log_dir)
            .map_err(|e| Error::io("create log dir", &self.cfg.log_dir, e))?;
        let stdio = logs::logger_uri(
            &self.cfg.logger_binary,
            &self.cfg.log_dir,
            self.cfg.log_rotation,
        );
        let created = self
            .tasks()
            .create(self.req(CreateTaskRequest {
                container_id: id.to_owned(),
                rootfs: mounts,
                stdin: String::new(),
                stdout: stdio.clone(),
                stderr: stdio,
                terminal: false,
                checkpoint: None,
                options: self.cfg.runc_root.as_deref().map(runc_options),
                runtime_path: String::new(),
            }))
            .await;
        if let Err(e) = created {
            self.cleanup_failed_create(&s.id).await;
            let msg = e.message().to_owned();
            return Err(if is_missing_entrypoint(&msg) {
                Error::EntrypointNotFound {
                    id: id.to_owned(),
                    entrypoint: args.first().cloned().unwrap_or_default(),
                    detail: msg,
                }
            } else {
                Error::CreateTask {
                    id: id.to_owned(),
                    source: e,
                }
            });
        }
        self.touch_image(&img.name).await;
        Ok(())
    }
}

#[async_trait]
impl ContainerRuntime for ContainerdRuntime {
    async fn pull_image(
        &self,
        image: &ImageRef,
        policy: PullPolicy,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo> {
        let name = image.to_string();
        let existing = self.get_image(&name).await?;
        let pulled_by_us = existing
            .as_ref()
            .is_some_and(|i| i.labels.contains_key(LABEL_PULLED_AT));
        let use_cache = match policy {
            PullPolicy::PreferCached => existing.is_some(),
            PullPolicy::Once => pulled_by_us,
            PullPolicy::Default | PullPolicy::Always => false,
        };
        if use_cache && let Some(img) = &existing {
            match self.cached(img).await {
                Ok(info) => {
                    tracing::debug!(image = %name, ?policy, "image served from cache");
                    return Ok(info);
                }
                Err(e) => {
                    tracing::info!(image = %name, error = %e, "cached image unusable, pulling")
                }
            }
        }
        match self.pull_remote(image, auth, existing.as_ref()).await {
            Ok(info) => Ok(info),
            Err(e) if policy == PullPolicy::Default && existing.is_some() => {
                let Some(img) = existing.as_ref() else {
                    return Err(e);
                };
                match self.cached(img).await {
                    Ok(info) => {
                        tracing::warn!(image = %name, error = %e, "pull failed, using cached image");
                        Ok(info)
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let images = self
            .images()
            .list(self.req(ListImagesRequest {
                filters: vec![format!("labels.\"{LABEL_MANAGED}\"==true")],
            }))
            .await
            .map_err(|source| Error::Query {
                what: "images".into(),
                source,
            })?
            .into_inner()
            .images;
        let mut out = Vec::with_capacity(images.len());
        for img in &images {
            let manifest = self.image_meta(img).await.ok().map(|(m, _, _)| m);
            out.push(Self::image_info(img, manifest.as_ref(), true));
        }
        Ok(out)
    }

    async fn remove_image(&self, image: &ImageRef) -> Result<()> {
        let name = image.to_string();
        let users = self
            .containers()
            .list(self.req(ListContainersRequest {
                filters: vec![format!("image=={name}")],
            }))
            .await
            .map_err(|source| Error::Query {
                what: "containers".into(),
                source,
            })?
            .into_inner()
            .containers;
        if let Some(c) = users.into_iter().find(|c| c.image == name) {
            return Err(Error::ImageInUse {
                image: name,
                container: c.id,
            });
        }
        match self
            .images()
            .delete(self.req(DeleteImageRequest {
                name: name.clone(),
                sync: true,
                target: None,
            }))
            .await
        {
            Ok(_) => {
                tracing::info!(image = %name, "image removed");
                Ok(())
            }
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(source) => Err(Error::RemoveImage {
                image: name,
                source,
            }),
        }
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerInfo> {
        let name = spec.image.to_string();
        let img = self
            .get_image(&name)
            .await?
            .ok_or(Error::ImageNotPresent { image: name })?;
        if self.get_container(&spec.id).await?.is_some() {
            return Err(Error::ContainerExists {
                id: spec.id.to_string(),
            });
        }
        self.create_inner(spec, &img).await?;
        tracing::info!(id = %spec.id, image = %img.name, "container created");
        self.inspect_container(&spec.id).await
    }

    async fn start_container(&self, id: &ContainerId) -> Result<u32> {
        let info = self.inspect_container(id).await?;
        if info.state != ContainerState::Created {
            return Err(Error::WrongState {
                id: id.to_string(),
                state: info.state.to_string(),
                operation: "start",
            });
        }
        let pid = self
            .tasks()
            .start(self.req(StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .map_err(|source| Error::StartTask {
                id: id.to_string(),
                source,
            })?
            .into_inner()
            .pid;
        tracing::info!(%id, pid, "container started");
        Ok(pid)
    }

    async fn wait_container(&self, id: &ContainerId) -> Result<ExitStatus> {
        let c = self
            .get_container(id)
            .await?
            .ok_or_else(|| Error::ContainerNotFound { id: id.to_string() })?;
        let (code, exited_at) = match self.wait_exec(id, "").await {
            Ok(r) => r,
            Err(Error::Wait { source, .. }) if source.code() == Code::NotFound => {
                return Err(Error::WrongState {
                    id: id.to_string(),
                    state: "without a task".into(),
                    operation: "wait",
                });
            }
            Err(e) => return Err(e),
        };
        let status = ExitStatus {
            code: i32::try_from(code).unwrap_or(i32::MAX),
            oom_killed: self.oom_killed(&c),
            exited_at,
        };
        tracing::info!(%id, code = status.code, oom = status.oom_killed, "container exited");
        Ok(status)
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<ExitStatus> {
        let c = self
            .get_container(id)
            .await?
            .ok_or_else(|| Error::ContainerNotFound { id: id.to_string() })?;
        let task = self.get_task(id).await?;
        match self.state_of(&c, task.as_ref()) {
            ContainerState::Stopped(exit) => return Ok(exit),
            ContainerState::Unknown => {
                return Err(Error::WrongState {
                    id: id.to_string(),
                    state: "without a task".into(),
                    operation: "stop",
                });
            }
            ContainerState::Created | ContainerState::Running { .. } => {}
        }
        let signal = c
            .labels
            .get(LABEL_STOP_SIGNAL)
            .and_then(|s| s.parse().ok())
            .unwrap_or(15);
        let this = self.clone();
        let wid = id.clone();
        let mut waiter = tokio::spawn(async move { this.wait_container(&wid).await });
        self.kill(id, "", signal, false).await?;
        tracing::info!(%id, signal, ?timeout, "stop signal sent");
        if let Ok(joined) = tokio::time::timeout(timeout, &mut waiter).await {
            return joined.unwrap_or_else(|_| {
                Err(Error::Timeout {
                    id: id.to_string(),
                    operation: "stop",
                    timeout,
                })
            });
        }
        tracing::info!(%id, "stop timeout elapsed, sending SIGKILL");
        self.kill(id, "", 9, true).await?;
        let grace = Duration::from_secs(30);
        match tokio::time::timeout(grace, waiter).await {
            Ok(Ok(r)) => r,
            _ => Err(Error::Timeout {
                id: id.to_string(),
                operation: "stop (after SIGKILL)",
                timeout: grace,
            }),
        }
    }

    async fn exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<ExecResult> {
        let c = self
            .get_container(id)
            .await?
            .ok_or_else(|| Error::ContainerNotFound { id: id.to_string() })?;
        let task = self.get_task(id).await?;
        let state = self.state_of(&c, task.as_ref());
        if !matches!(state, ContainerState::Running { .. }) {
            return Err(Error::WrongState {
                id: id.to_string(),
                state: state.to_string(),
                operation: "exec",
            });
        }
        if exec.args.is_empty() {
            return Err(Error::InvalidSpec {
                container: id.to_string(),
                reason: "exec needs a command".into(),
            });
        }
        let spec: serde_json::Value = c
            .spec
            .as_ref()
            .and_then(|a| serde_json::from_slice(&a.value).ok())
            .unwrap_or_default();
        let mut process = spec.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(exec.args);
        process["terminal"] = serde_json::json!(false);
        if !exec.environment.is_empty() {
            let mut env: Vec<String> = process["env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            env.retain(|kv| {
                let k = kv.split('=').next().unwrap_or_default();
                !exec.environment.contains_key(k)
            });
            env.extend(exec.environment.iter().map(|(k, v)| format!("{k}={v}")));
            process["env"] = serde_json::json!(env);
        }
        let exec_id = unique("exec");
        let dir = self.cfg.state_dir.join("exec");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create exec dir", &dir, e))?;
        // Output goes through a FIFO we read ourselves: EOF tells us the shim has copied
        // everything (with `file://` the shim may still be copying after the exit is
        // reported, and under load output was lost).
        let out = dir.join(format!("{id}-{exec_id}.fifo"));
        let mk = tokio::process::Command::new("mkfifo")
            .arg("-m")
            .arg("600")
            .arg(&out)
            .status()
            .await
            .map_err(|e| Error::io("mkfifo", &out, e))?;
        if !mk.success() {
            return Err(Error::io(
                "mkfifo",
                &out,
                std::io::Error::other(format!("mkfifo exited with {mk}")),
            ));
        }
        let receiver = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(&out)
            .map_err(|e| Error::io("open exec output", &out, e));
        let receiver = match receiver {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&out);
                return Err(e);
            }
        };
        let uri = out.to_string_lossy().into_owned();
        let eerr = |source| Error::Exec {
            id: id.to_string(),
            source,
        };
        self.tasks()
            .exec(self.req(ExecProcessRequest {
                container_id: id.to_string(),
                stdin: String::new(),
                stdout: uri.clone(),
                stderr: uri,
                terminal: false,
                spec: Some(Any {
                    type_url: PROCESS_TYPE_URL.to_owned(),
                    value: serde_json::to_vec(&process).unwrap_or_default(),
                }),
                exec_id: exec_id.clone(),
            }))
            .await
            .map_err(|e| {
                let _ = std::fs::remove_file(&out);
                eerr(e)
            })?;
        let delete = || async {
            let _ = self
                .tasks()
                .delete_process(self.req(DeleteProcessRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                }))
                .await;
        };
        let this = self.clone();
        let (wid, weid) = (id.clone(), exec_id.clone());
        let mut waiter = tokio::spawn(async move { this.wait_exec(&wid, &weid).await });
        if let Err(e) = self
            .tasks()
            .start(self.req(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.clone(),
            }))
            .await
        {
            waiter.abort();
            delete().await;
            let _ = std::fs::remove_file(&out);
            // A missing program is the check's failure, not the node's: report it as a
            // shell would (127).
            if is_missing_entrypoint(e.message()) {
                return Ok(ExecResult {
                    exit_code: Some(127),
                    output: e.message().to_owned(),
                });
            }
            return Err(eerr(e));
        }
        // The shim opened the FIFO's write ends during Start; read until it closes them.
        let mut reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut receiver = receiver;
            let mut kept: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = receiver.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * EXEC_OUTPUT_MAX {
                    kept.drain(..kept.len() - EXEC_OUTPUT_MAX);
                }
            }
            kept
        });
        let exit_code: Result<Option<i32>> =
            if let Ok(joined) = tokio::time::timeout(exec.timeout, &mut waiter).await {
                match joined {
                    Ok(Ok((code, _))) => Ok(Some(i32::try_from(code).unwrap_or(i32::MAX))),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::Timeout {
                        id: id.to_string(),
                        operation: "exec",
                        timeout: exec.timeout,
                    }),
                }
            } else {
                match self.kill(id, &exec_id, 9, false).await {
                    Ok(()) => {
                        let _ = tokio::time::timeout(Duration::from_secs(10), waiter).await;
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            };
        // EOF comes once the shim has copied everything; bounded in case a process the
        // check started in the background keeps the pipe open.
        let bytes = match tokio::time::timeout(Duration::from_secs(2), &mut reader).await {
            Ok(Ok(b)) => b,
            _ => {
                reader.abort();
                Vec::new()
            }
        };
        delete().await;
        let _ = std::fs::remove_file(&out);
        let exit_code = exit_code?;
        let start = bytes.len().saturating_sub(EXEC_OUTPUT_MAX);
        Ok(ExecResult {
            exit_code,
            output: String::from_utf8_lossy(&bytes[start..]).into_owned(),
        })
    }

    async fn inspect_container(&self, id: &ContainerId) -> Result<ContainerInfo> {
        let c = self
            .get_container(id)
            .await?
            .ok_or_else(|| Error::ContainerNotFound { id: id.to_string() })?;
        let task = self.get_task(id).await?;
        self.info_of(&c, task.as_ref())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        let containers = self
            .containers()
            .list(self.req(ListContainersRequest {
                filters: vec![format!("labels.\"{LABEL_MANAGED}\"==true")],
            }))
            .await
            .map_err(|source| Error::Query {
                what: "containers".into(),
                source,
            })?
            .into_inner()
            .containers;
        let tasks: HashMap<String, Process> = self
            .tasks()
            .list(self.req(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(|source| Error::Query {
                what: "tasks".into(),
                source,
            })?
            .into_inner()
            .tasks
            .into_iter()
            .map(|p| (p.id.clone(), p))
            .collect();
        containers
            .iter()
            .map(|c| self.info_of(c, tasks.get(&c.id)))
            .collect()
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        let Some(c) = self.get_container(id).await? else {
            return Ok(());
        };
        let task = self.get_task(id).await?;
        let state = self.state_of(&c, task.as_ref());
        if matches!(state, ContainerState::Running { .. }) {
            return Err(Error::WrongState {
                id: id.to_string(),
                state: state.to_string(),
                operation: "remove",
            });
        }
        let rerr = |source| Error::RemoveContainer {
            id: id.to_string(),
            source,
        };
        if task.is_some() {
            match self
                .tasks()
                .delete(self.req(DeleteTaskRequest {
                    container_id: id.to_string(),
                }))
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(rerr(s)),
            }
        }
        match self
            .containers()
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(rerr(s)),
        }
        self.remove_snapshot_quiet(id.as_str()).await;
        let live = logs::log_path(&self.cfg.log_dir, id.as_str());
        for f in logs::log_files(&live) {
            let _ = std::fs::remove_file(f);
        }
        tracing::info!(%id, "container removed");
        Ok(())
    }

    async fn garbage_collect(&self, policy: &GcPolicy, now: SystemTime) -> Result<GcReport> {
        let containers = self.list_containers().await?;
        let images = self
            .images()
            .list(self.req(ListImagesRequest {
                filters: vec![format!("labels.\"{LABEL_MANAGED}\"==true")],
            }))
            .await
            .map_err(|source| Error::Query {
                what: "images".into(),
                source,
            })?
            .into_inner()
            .images;
        let gc_images: Vec<GcImage> = images
            .iter()
            .map(|i| GcImage {
                name: i.name.clone(),
                last_used: parse_unix_secs(i.labels.get(LABEL_LAST_USED))
                    .or_else(|| parse_unix_secs(i.labels.get(LABEL_PULLED_AT))),
            })
            .collect();
        let plan = gc::plan(&containers, &gc_images, policy, now);
        let mut report = GcReport::default();
        for id in plan.containers {
            match self.remove_container(&id).await {
                Ok(()) => report.containers.push(id),
                Err(e) => tracing::warn!(%id, error = %e, "gc: remove container"),
            }
        }
        for name in plan.images {
            let Ok(r) = ImageRef::parse(&name) else {
                continue;
            };
            // remove_image re-checks use, so a container created meanwhile keeps it.
            match self.remove_image(&r).await {
                Ok(()) => report.images.push(name),
                Err(e) => tracing::info!(image = %name, error = %e, "gc: keep image"),
            }
        }
        // Active snapshots with no container: leftovers of creates or extractions that
        // died half-way. Only ones older than the container age, so in-flight work is safe.
        let known: std::collections::HashSet<String> = self
            .list_containers()
            .await?
            .into_iter()
            .map(|c| c.id.to_string())
            .collect();
        let mut stream = self
            .snapshots()
            .list(self.req(ListSnapshotsRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                filters: Vec::new(),
            }))
            .await
            .map_err(|source| Error::Query {
                what: "snapshots".into(),
                source,
            })?
            .into_inner();
        let mut orphans = Vec::new();
        while let Some(batch) = stream.message().await.map_err(|source| Error::Query {
            what: "snapshots".into(),
            source,
        })? {
            for s in batch.info {
                let active =
                    s.kind == containerd_client::services::v1::snapshots::Kind::Active as i32;
                let old = ts(s.created_at.as_ref())
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|d| d >= policy.stopped_container_age);
                if active && old && !known.contains(&s.name) {
                    orphans.push(s.name);
                }
            }
        }
        for key in orphans {
            self.remove_snapshot_quiet(&key).await;
            report.snapshots.push(key);
        }
        tracing::info!(
            containers = report.containers.len(),
            images = report.images.len(),
            snapshots = report.snapshots.len(),
            "garbage collection done"
        );
        Ok(report)
    }

    async fn read_logs(&self, id: &ContainerId, tail: Option<usize>) -> Result<Vec<LogLine>> {
        let live = logs::log_path(&self.cfg.log_dir, id.as_str());
        tokio::task::spawn_blocking(move || logs::read_tail(&live, tail))
            .await
            .map_err(|e| Error::io("read logs", PathBuf::new(), std::io::Error::other(e)))?
    }

    async fn read_logs_from(
        &self,
        id: &ContainerId,
        from: Option<LogPosition>,
        tail: Option<usize>,
        max_bytes: usize,
    ) -> Result<LogChunk> {
        let live = logs::log_path(&self.cfg.log_dir, id.as_str());
        tokio::task::spawn_blocking(move || logs::read_from(&live, from, tail, max_bytes))
            .await
            .map_err(|e| Error::io("read logs", PathBuf::new(), std::io::Error::other(e)))?
    }

    async fn follow_logs(&self, id: &ContainerId, tail: Option<usize>) -> Result<LogFollower> {
        if self.get_container(id).await?.is_none() {
            return Err(Error::ContainerNotFound { id: id.to_string() });
        }
        Ok(logs::follow(
            logs::log_path(&self.cfg.log_dir, id.as_str()),
            tail,
            self.cfg.log_poll,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_oom_counters() {
        assert_eq!(
            parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            2
        );
        assert_eq!(
            parse_oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            1
        );
        assert_eq!(parse_oom_kills(""), 0);
    }

    #[test]
    fn encodes_runc_root_option() {
        let a = runc_options(Path::new("/r"));
        assert_eq!(a.type_url, "containerd.runc.v1.Options");
        assert_eq!(a.value, vec![0x3a, 2, b'/', b'r']);
        let long = "x".repeat(200);
        let a = runc_options(Path::new(&long));
        assert_eq!(&a.value[..3], &[0x3a, 0xc8, 0x01]);
        assert_eq!(a.value.len(), 203);
    }

    #[test]
    fn recognises_missing_entrypoint() {
        assert!(is_missing_entrypoint(
            "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/no/such\": stat /no/such: no such file or directory: unknown"
        ));
        assert!(is_missing_entrypoint(
            "exec: \"nope\": executable file not found in $PATH: unknown"
        ));
        assert!(!is_missing_entrypoint("cgroup: no space left on device"));
    }
}
