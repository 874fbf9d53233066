//! Typed inputs and outputs of [`crate::ContainerRuntime`]: image references, pull policy,
//! container specs, exit statuses, exec results, GC policy. Pure data plus parsing and
//! validation; no IO.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// Registry used for references without a host part (Docker Hub semantics).
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed, normalised image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Registry host\[:port\], e.g. `127.0.0.1:5000` or `docker.io`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// Pinned manifest digest (`sha256:...`), if given.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `name[:tag][@digest]` the way Docker does: a first path component with a `.`
    /// or `:` (or `localhost`) is a registry host, otherwise the image is on Docker Hub and
    /// single-component names get `library/`.
    ///
    /// # Errors
    /// [`Error::InvalidImageRef`] for empty names, upper-case repositories, bad digests.
    pub fn parse(reference: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidImageRef {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        let reference_trimmed = reference.trim();
        if reference_trimmed.is_empty() {
            return Err(bad("empty reference"));
        }
        let (name_tag, digest) = match reference_trimmed.split_once('@') {
            Some((n, d)) => {
                let Some(hex) = d.strip_prefix("sha256:") else {
                    return Err(bad("digest must be sha256:<64 hex>"));
                };
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("digest must be sha256:<64 hex>"));
                }
                (n, Some(d.to_owned()))
            }
            None => (reference_trimmed, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(name_tag[last_slash + i + 1..].to_owned()),
            ),
            None => (name_tag, None),
        };
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
        {
            return Err(bad("tag must match [A-Za-z0-9_.-]{1,128}"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ if name.contains('/') => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
            _ => (DEFAULT_REGISTRY.to_owned(), format!("library/{name}")),
        };
        if repository.is_empty()
            || repository.split('/').any(str::is_empty)
            || !repository.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'.' | b'-' | b'/')
            })
        {
            return Err(bad(
                "repository must be lower-case [a-z0-9._-] components separated by '/'",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The tag or digest to ask the registry for (digest wins).
    #[must_use]
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The registry host actually contacted (`docker.io` means `registry-1.docker.io`).
    #[must_use]
    pub fn registry_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// True when the registry is on a loopback address (pulled over plain HTTP).
    #[must_use]
    pub fn is_loopback_registry(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(self.registry.as_str(), |(h, _)| h);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// When to contact the registry (the ECS agent's `ECS_IMAGE_PULL_BEHAVIOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Always pull; if the pull fails and a cached copy exists, use it (with a warning).
    #[default]
    Default,
    /// Always pull; a failed pull is an error even when a cached copy exists.
    Always,
    /// Pull only if this agent has never pulled the image (cached copies it pulled are
    /// reused, images that appeared by other means are pulled once).
    Once,
    /// Use any cached copy; pull only when there is none.
    PreferCached,
}

/// Registry credentials (ECS `repositoryCredentials`, resolved by the agent).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An image present on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Normalised name (`registry/repo:tag`).
    pub name: String,
    /// Manifest digest.
    pub digest: String,
    /// Sum of the (compressed) layer sizes plus config, in bytes.
    pub size: u64,
    /// True when this call served the image from the cache without pulling.
    pub from_cache: bool,
    /// Labels stored on the image record.
    pub labels: BTreeMap<String, String>,
}

/// A container id: what containerd and runc accept (`[A-Za-z0-9][A-Za-z0-9_.-]{0,75}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// Validates and wraps an id.
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] if the id is empty, too long or has other characters.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 76
            && id.as_bytes()[0].is_ascii_alphanumeric()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Self(id))
        } else {
            Err(Error::InvalidSpec {
                container: id,
                reason: "id must match [A-Za-z0-9][A-Za-z0-9_.-]{0,75}".to_owned(),
            })
        }
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One resource limit (`ulimits` in the task definition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// Name as ECS spells it (`nofile`, `nproc`, `core`, ...) or as OCI (`RLIMIT_NOFILE`).
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// A host path bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Path on the host (must exist).
    pub host_path: PathBuf,
    /// Path in the container.
    pub container_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// A user namespace mapping: uids (and gids) `0..size` in the container are
/// `host_base..host_base + size` on the node, so root in the container is an unprivileged
/// uid on the node. The image's files are shifted into the range once per image and
/// mapping (a committed "remapped" snapshot the containers of that image share), as
/// containerd's `WithRemappedSnapshot` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdMapping {
    /// First node uid/gid of the range (container uid 0).
    pub host_base: u32,
    /// How many ids the range holds (1..=[`IdMapping::MAX_SIZE`]).
    pub size: u32,
}

impl IdMapping {
    /// The largest range one container gets: 65,536 ids, as `/etc/subuid` ranges do.
    pub const MAX_SIZE: u32 = 65_536;

    /// The node id of container id `id`, or `None` when `id` lies outside the range.
    #[must_use]
    pub fn host_id(&self, id: u32) -> Option<u32> {
        (id < self.size)
            .then(|| self.host_base.checked_add(id))
            .flatten()
    }
}

/// Which network namespace the container gets. Ports and interfaces are the agent's
/// business; the runtime only places the container in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// A fresh namespace with only loopback (ECS `none`, or a namespace the agent wires).
    #[default]
    Isolated,
    /// The host's namespace (ECS `host`).
    Host,
    /// Join an existing namespace, e.g. `/var/run/netns/task-…` (ECS `bridge`/`awsvpc`
    /// where the agent created and wired the namespace).
    Join(PathBuf),
}

/// CPU and memory limits, in ECS units.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// ECS container `cpu` units (1024 = one vCPU), mapped to cgroup cpu shares.
    pub cpu_units: Option<u32>,
    /// ECS `memory`: hard limit in MiB; exceeding it gets the container OOM-killed.
    pub memory_hard_mib: Option<u64>,
    /// ECS `memoryReservation`: soft limit in MiB (cgroup soft limit / `memory.low`).
    pub memory_soft_mib: Option<u64>,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Container id (unique on the node; the agent derives it from task + container name).
    pub id: ContainerId,
    /// Image; must have been pulled with [`crate::ContainerRuntime::pull_image`].
    pub image: ImageRef,
    /// ECS `entryPoint`; `None` keeps the image's.
    pub entry_point: Option<Vec<String>>,
    /// ECS `command`; `None` keeps the image's `Cmd` (unless `entry_point` is set, which
    /// clears it, as Docker does).
    pub command: Option<Vec<String>>,
    /// ECS `environment`, applied over the image's `Env`.
    pub environment: BTreeMap<String, String>,
    /// ECS `workingDirectory`; `None` keeps the image's (or `/`).
    pub working_directory: Option<String>,
    /// ECS `user`: `uid`, `uid:gid` or `root`; `None` keeps the image's (or root).
    pub user: Option<String>,
    /// CPU shares and memory limits.
    pub resources: Resources,
    /// ECS `ulimits`.
    pub ulimits: Vec<Ulimit>,
    /// Bind-mounted volumes.
    pub mounts: Vec<BindMount>,
    /// Network namespace.
    pub network: NetworkMode,
    /// Hostname inside the container (defaults to the id, truncated to 63 chars).
    pub hostname: Option<String>,
    /// Stop signal (`SIGTERM`, `TERM`, `15`); `None` keeps the image's or `SIGTERM`.
    pub stop_signal: Option<String>,
    /// Caller's labels, stored on the container and returned by list/inspect (the agent
    /// keeps task ARN and container name here to re-adopt after a restart).
    pub labels: BTreeMap<String, String>,
    /// ECS `readonlyRootFilesystem`.
    pub read_only_root: bool,
    /// ECS `linuxParameters.initProcessEnabled`: run a small init (tini) as PID 1 that
    /// forwards signals and reaps zombies. Without it the program is PID 1, and PID 1 gets
    /// no default signal actions: a plain `sleep` ignores SIGTERM and is only stopped by
    /// the SIGKILL after the stop timeout.
    pub init_process: bool,
    /// Privileged (Bottlerocket's `superpowered`, Docker's `--privileged`): every
    /// capability, access to all devices, no masked or read-only `/proc` paths, writable
    /// `/sys`. Host paths (`/dev`, the root file system) are the caller's [`BindMount`]s.
    pub privileged: bool,
    /// Share the host's PID namespace (Docker's `--pid=host`).
    pub host_pid: bool,
    /// Run the container in its own user namespace with this mapping (Fargate tasks);
    /// `None`: the node's own ids (root in the container is root on the node).
    pub user_namespace: Option<IdMapping>,
}

impl ContainerSpec {
    /// A spec with only id and image set and everything else defaulted.
    #[must_use]
    pub fn new(id: ContainerId, image: ImageRef) -> Self {
        Self {
            id,
            image,
            entry_point: None,
            command: None,
            environment: BTreeMap::new(),
            working_directory: None,
            user: None,
            resources: Resources::default(),
            ulimits: Vec::new(),
            mounts: Vec::new(),
            network: NetworkMode::default(),
            hostname: None,
            stop_signal: None,
            labels: BTreeMap::new(),
            read_only_root: false,
            init_process: false,
            privileged: false,
            host_pid: false,
            user_namespace: None,
        }
    }
}

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code; `128 + n` when killed by signal `n` (as containerd reports it).
    pub code: i32,
    /// The kernel OOM killer killed a process of the container (report
    /// `OutOfMemoryError`).
    pub oom_killed: bool,
    /// When it exited, if known.
    pub exited_at: Option<SystemTime>,
}

impl ExitStatus {
    /// The signal that killed the process, if the code says it was one.
    #[must_use]
    pub fn signal(&self) -> Option<i32> {
        (self.code > 128 && self.code < 128 + 65).then(|| self.code - 128)
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created (task exists), not started.
    Created,
    /// Running with this host pid.
    Running {
        /// Host pid of the main process.
        pid: u32,
    },
    /// Exited.
    Stopped(ExitStatus),
    /// The container record exists but has no task (containerd restarted, or a create
    /// failed half-way). Treat as stopped with an unknown exit code.
    Unknown,
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created => f.write_str("created"),
            Self::Running { .. } => f.write_str("running"),
            Self::Stopped(_) => f.write_str("stopped"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// A container as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Id.
    pub id: ContainerId,
    /// Image name it was created from.
    pub image: String,
    /// State.
    pub state: ContainerState,
    /// The caller's labels (internal `flotilla.runtime/*` labels removed).
    pub labels: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: Option<SystemTime>,
}

/// A command run inside a running container (health checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// argv.
    pub args: Vec<String>,
    /// Extra environment over the container's.
    pub environment: BTreeMap<String, String>,
    /// Kill the process and report a timeout after this long.
    pub timeout: Duration,
}

/// ECS container health check command (`healthCheck.command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckCommand {
    /// `["CMD", argv...]`: exec argv directly.
    Cmd(Vec<String>),
    /// `["CMD-SHELL", "script"]`: run with `/bin/sh -c`.
    CmdShell(String),
}

impl HealthCheckCommand {
    /// Parses the ECS form (`["CMD-SHELL", "curl -f http://localhost/ || exit 1"]`).
    ///
    /// # Errors
    /// [`Error::InvalidSpec`] when the first element is neither `CMD` nor `CMD-SHELL` or
    /// nothing follows it.
    pub fn from_ecs(command: &[String]) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidSpec {
            container: "healthCheck".to_owned(),
            reason: reason.to_owned(),
        };
        match command.split_first() {
            Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Ok(Self::Cmd(rest.to_vec())),
            Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
                Ok(Self::CmdShell(rest.join(" ")))
            }
            _ => Err(bad(
                "healthCheck.command must be [\"CMD\", argv...] or [\"CMD-SHELL\", script]",
            )),
        }
    }

    /// The argv to exec.
    #[must_use]
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Cmd(argv) => argv.clone(),
            Self::CmdShell(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
        }
    }

    /// An [`ExecSpec`] for this check with the given timeout.
    #[must_use]
    pub fn to_exec(&self, timeout: Duration) -> ExecSpec {
        ExecSpec {
            args: self.argv(),
            environment: BTreeMap::new(),
            timeout,
        }
    }
}

/// Outcome of an exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Exit code; `None` when the process was killed for exceeding the timeout.
    pub exit_code: Option<i32>,
    /// The last few KiB of stdout and stderr combined.
    pub output: String,
}

impl ExecResult {
    /// Healthy: exited 0 within the timeout.
    #[must_use]
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// When garbage collection may remove things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcPolicy {
    /// Stopped containers are removed once they have been stopped this long
    /// (ECS `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`, default 3 h).
    pub stopped_container_age: Duration,
    /// Images no container uses are removed once unused for this long
    /// (ECS `ECS_IMAGE_MINIMUM_CLEANUP_AGE`, default 1 h).
    pub unused_image_age: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            stopped_container_age: Duration::from_secs(3 * 3600),
            unused_image_age: Duration::from_secs(3600),
        }
    }
}

/// What a GC pass removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Removed containers.
    pub containers: Vec<ContainerId>,
    /// Removed images (names).
    pub images: Vec<String>,
    /// Removed orphan snapshots (keys).
    pub snapshots: Vec<String>,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

impl LogStream {
    /// `stdout` / `stderr`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// One line of container output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// RFC 3339 timestamp (UTC, nanoseconds) at which the logger read the line.
    pub timestamp: String,
    /// Source stream.
    pub stream: LogStream,
    /// True when the line was longer than the logger's buffer and was split; the next
    /// line continues it.
    pub partial: bool,
    /// The text, without the trailing newline.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_short_names() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.registry_host(), "registry-1.docker.io");
        let r = ImageRef::parse("amazon/aws-cli:2.0").unwrap();
        assert_eq!(r.repository, "amazon/aws-cli");
        assert_eq!(r.tag.as_deref(), Some("2.0"));
    }

    #[test]
    fn parses_registry_port_tag_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/x/y:v1@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "x/y");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.reference(), d);
        assert!(r.is_loopback_registry());
        let r = ImageRef::parse("localhost:5000/busybox").unwrap();
        assert!(r.is_loopback_registry());
        assert_eq!(r.reference(), "latest");
        assert!(
            !ImageRef::parse("ghcr.io/a/b")
                .unwrap()
                .is_loopback_registry()
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "Busybox", "a//b", "x:", "a@sha256:12", "a:b c"] {
            assert!(
                matches!(ImageRef::parse(bad), Err(Error::InvalidImageRef { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn container_ids_are_validated() {
        assert!(ContainerId::new("task-1_web.0").is_ok());
        assert!(ContainerId::new("").is_err());
        assert!(ContainerId::new("-x").is_err());
        assert!(ContainerId::new("a/b").is_err());
        assert!(ContainerId::new("a".repeat(77)).is_err());
    }

    #[test]
    fn health_check_commands() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let c = HealthCheckCommand::from_ecs(&s(&["CMD-SHELL", "exit 3"])).unwrap();
        assert_eq!(c.argv(), s(&["/bin/sh", "-c", "exit 3"]));
        let c = HealthCheckCommand::from_ecs(&s(&["CMD", "true", "x"])).unwrap();
        assert_eq!(c.argv(), s(&["true", "x"]));
        assert!(HealthCheckCommand::from_ecs(&s(&["CMD"])).is_err());
        assert!(HealthCheckCommand::from_ecs(&s(&["exit 0"])).is_err());
    }

    #[test]
    fn exit_signal() {
        let e = |code| ExitStatus {
            code,
            oom_killed: false,
            exited_at: None,
        };
        assert_eq!(e(137).signal(), Some(9));
        assert_eq!(e(3).signal(), None);
    }
}
