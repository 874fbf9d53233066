//! The node agent's container runtime layer.
//!
//! # Background
//! flotilla's node agent runs ECS tasks as real containers. containerd's gRPC API
//! (through `containerd-client`) is low-level: images are content blobs plus snapshots,
//! a "container" is metadata, a "task" is the running process, stdio is wired by URI. This
//! crate wraps it in one typed [`ContainerRuntime`] trait that speaks the agent's
//! language (pull policy, ECS cpu units and MiB, stop timeout, OOM, health-check exec,
//! logs, GC), with [`ContainerdRuntime`] for real nodes and [`FakeRuntime`] for the
//! agent's unit tests.
//!
//! # Design
//! * **Stateless wrapper, state in containerd.** Every container carries labels (ours
//!   under `flotilla.runtime/`, the agent's as given: task ARN, container name). After an
//!   agent crash or `kill -9`, a fresh runtime object lists containers by label and calls
//!   [`ContainerRuntime::wait_container`] again: runc shims keep the processes running and
//!   containerd still has the exit status of those that ended meanwhile. Nothing is
//!   restarted, nothing is lost.
//! * **Client-side pulls.** containerd 1.6 has no Transfer service, so
//!   [`ContainerdRuntime`] does what `ctr image pull` does: fetch manifest/config/layers
//!   with a small registry client (plain HTTP for loopback and configured insecure
//!   registries, Basic or Bearer auth from `repositoryCredentials`), stream them into the
//!   Content service under a lease with GC reference labels, unpack layers with Snapshots
//!   Prepare + Diff Apply + Commit (chain IDs), then create the image record. Pull
//!   policies follow the ECS agent's `ECS_IMAGE_PULL_BEHAVIOR`.
//! * **Pure decisions, IO at the edges.** The OCI runtime spec ([`spec`]), resource math,
//!   image metadata and chain IDs ([`image`]), log rotation ([`logs`]) and GC planning
//!   ([`gc`]) are pure functions with unit tests; [`containerd`] only performs calls.
//! * **Logs outside the agent.** The shim runs our `flotilla-runtime-logger` binary
//!   (`binary://` stdio URI) which writes CRI-format lines to `<log_dir>/<id>.log` and
//!   rotates by size, so output never passes through (or blocks on) the agent. See
//!   [`logs`] for why not `file://`.
//! * **Stop** = stop signal (spec, image `StopSignal`, or SIGTERM), wait up to the
//!   timeout, then SIGKILL to every process of the container. **OOM** is read from the
//!   container's memory cgroup before its task is deleted.
//! * **One error enum** ([`Error`]), variants named for the failed step; user errors
//!   (bad image, unreachable registry, missing entrypoint, too-small memory) are
//!   distinguishable with [`Error::is_user_error`]. No panics on bad input.
//!
//! # Layout
//! * [`api`] — the [`ContainerRuntime`] trait.
//! * [`types`] — typed inputs/outputs ([`ContainerSpec`], [`ImageRef`], [`PullPolicy`],
//!   [`ExitStatus`], ...).
//! * [`error`] — [`Error`].
//! * [`spec`] — spec → OCI runtime spec, cgroup values, signals, users, ulimits.
//! * [`image`] — manifest/index/config shapes, chain IDs.
//! * `registry` — registry v2 client (crate-private).
//! * [`logs`] — log format, rotation, tail/follow, the logger process.
//! * [`gc`] — GC planning.
//! * [`containerd`] — [`ContainerdRuntime`], one module per step: the connection and the
//!   trait impl (`containerd/mod.rs`), `storage` (leases, snapshots), `images`, `pull`,
//!   `containers` (create/start/wait/stop/inspect/list/remove, OOM), `exec` (health-check
//!   execs through a FIFO), `gc`.
//! * [`fake`] — [`FakeRuntime`].
//! * `src/bin/flotilla-runtime-logger.rs` — the logger binary the shim runs.
//!
//! # Limitations
//! * linux/amd64 images only; `user` must be numeric `uid[:gid]` or `root` (names would
//!   need the image's `/etc/passwd`).
//! * Memory limits use cgroup v1 (this project's machines) or v2 through runc; OOM
//!   detection reads `memory.oom_control`/`memory.events` and so needs the agent on the
//!   host (not in a container without `/sys/fs/cgroup`).
//! * Networking (namespaces, ports, veths) is the agent's job; the runtime only places
//!   the container in a network namespace ([`NetworkMode`]).
//! * Log followers poll (default 250 ms) rather than use inotify. stdout and stderr are
//!   separate pipes, so their relative order in the log is arrival order at the logger.
//!   The logger process lives until the task is deleted ([`ContainerRuntime::remove_container`]).
//! * Without [`ContainerSpec::init_process`] the program is PID 1 and gets no default
//!   signal actions: one that does not handle SIGTERM is only stopped by the SIGKILL after
//!   the stop timeout (as with Docker/ECS).
//! * If containerd itself restarts, running tasks survive (shims keep them), but the exit
//!   status of tasks that ended while containerd was down may be lost:
//!   [`ContainerState::Unknown`].

pub mod api;
pub mod containerd;
pub mod error;
pub mod fake;
pub mod gc;
pub mod image;
pub mod logs;
mod registry;
pub mod spec;
pub mod types;

pub use api::ContainerRuntime;
pub use containerd::{ContainerdConfig, ContainerdRuntime};
pub use error::{Error, Result, error_chain};
pub use fake::{FakeOp, FakeRuntime};
pub use logs::{LogFollower, RotationPolicy};
pub use types::{
    BindMount, ContainerId, ContainerInfo, ContainerSpec, ContainerState, ExecResult, ExecSpec,
    ExitStatus, GcPolicy, GcReport, HealthCheckCommand, IdMapping, ImageInfo, ImageRef, LogLine,
    LogStream, NetworkMode, PullPolicy, RegistryAuth, Resources, Ulimit,
};
