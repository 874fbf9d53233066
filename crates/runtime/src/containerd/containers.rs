//! Container and task lifecycle: create (writable snapshot, OCI spec, labels, runc task
//! with the logger as stdio), start, wait, stop (stop signal, timeout, SIGKILL), inspect,
//! list and remove; how a containerd task's status becomes a [`ContainerState`], and the
//! OOM counter read from the container's memory cgroup.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetContainerRequest, GetRequest, Image, KillRequest, ListContainersRequest,
    ListTasksRequest, StartRequest, WaitRequest,
};
use containerd_client::types::Mount;
use containerd_client::types::v1::{Process, Status as TaskStatus};
use prost_types::Any;
use tonic::Code;

use super::{
    ContainerdRuntime, LABEL_CGROUP, LABEL_MANAGED, LABEL_PREFIX, LABEL_STOP_SIGNAL, found, lookup,
    query, ts,
};
use crate::error::{Error, Result};
use crate::image::ImageConfig;
use crate::logs;
use crate::spec;
use crate::types::{ContainerId, ContainerInfo, ContainerSpec, ContainerState, ExitStatus};

const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

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

/// Recognises runc's "program not found" failures (task creation, exec start).
pub(super) fn is_missing_entrypoint(msg: &str) -> bool {
    msg.contains("exec:")
        && (msg.contains("no such file or directory")
            || msg.contains("executable file not found")
            || msg.contains("not a directory"))
}

/// The values `create` computes (and validates) before creating anything.
struct Prepared {
    /// The program runc will look for (not the init in front of it).
    args: Vec<String>,
    /// The image's top chain ID, the parent of the container's snapshot.
    parent: String,
    oci: serde_json::Value,
    stop_signal: u32,
    cgroup: String,
}

impl ContainerdRuntime {
    async fn get_container(&self, id: &ContainerId) -> Result<Option<Container>> {
        let r = self
            .containers()
            .get(self.req(GetContainerRequest { id: id.to_string() }))
            .await;
        Ok(lookup(r, || format!("container {id}"))?.and_then(|r| r.container))
    }

    /// The container's record, or [`Error::ContainerNotFound`].
    pub(super) async fn require_container(&self, id: &ContainerId) -> Result<Container> {
        self.get_container(id)
            .await?
            .ok_or_else(|| Error::ContainerNotFound { id: id.to_string() })
    }

    async fn get_task(&self, id: &ContainerId) -> Result<Option<Process>> {
        let r = self
            .tasks()
            .get(self.req(GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        Ok(lookup(r, || format!("task {id}"))?.and_then(|r| r.process))
    }

    /// The container's record and its current state.
    pub(super) async fn container_state(
        &self,
        id: &ContainerId,
    ) -> Result<(Container, ContainerState)> {
        let c = self.require_container(id).await?;
        let task = self.get_task(id).await?;
        let state = self.state_of(&c, task.as_ref());
        Ok((c, state))
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

    /// Signals the container's task (`exec_id` empty) or one of its exec processes; one
    /// that is already gone is not an error (the wait that follows reports its exit).
    pub(super) async fn kill(
        &self,
        id: &ContainerId,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<()> {
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
            Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
            Err(s) if s.message().contains("process already finished") => Ok(()),
            Err(source) => Err(Error::Signal {
                id: id.to_string(),
                signal,
                source,
            }),
        }
    }

    /// Waits for the container's task (`exec_id` empty) or an exec process to exit: its
    /// exit status and time.
    pub(super) async fn wait_exec(
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

    /// Deletes the container's task, its record and its writable snapshot, in that order;
    /// what is already gone is not an error. `remove` and the clean-up after a failed
    /// create both end here.
    async fn delete_task_and_container(&self, id: &ContainerId) -> Result<()> {
        let rerr = |source| Error::RemoveContainer {
            id: id.to_string(),
            source,
        };
        let task = self
            .tasks()
            .delete(self.req(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await;
        found(task).map_err(rerr)?;
        let container = self
            .containers()
            .delete(self.req(DeleteContainerRequest { id: id.to_string() }))
            .await;
        found(container).map_err(rerr)?;
        self.remove_snapshot_quiet(id.as_str()).await;
        Ok(())
    }

    /// Creates the container (snapshot, record, runc task) from its pulled image.
    pub(super) async fn create(&self, spec: &ContainerSpec) -> Result<ContainerInfo> {
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
        let prepared = self.prepare_create(spec, &img).await?;
        // Until the container record references the snapshot, only a lease keeps
        // containerd's GC (run after any deletion, in any namespace) off it.
        let lease = self.create_lease("flotilla-create").await?;
        let result = self.create_with_lease(spec, &img, &lease, prepared).await;
        self.delete_lease(&lease).await;
        result?;
        tracing::info!(id = %spec.id, image = %img.name, "container created");
        self.inspect(&spec.id).await
    }

    /// Computes and checks everything `create_with_lease` needs, creating nothing.
    async fn prepare_create(&self, s: &ContainerSpec, img: &Image) -> Result<Prepared> {
        let id = s.id.as_str();
        let (_, config, chains) = self.image_meta(img).await?;
        let image_cfg = config.config.clone().unwrap_or_else(ImageConfig::default);
        let cgroup = format!("{}/{}/{}", self.cfg.cgroup_parent, self.cfg.namespace, id);
        let oci = spec::build_oci_spec(s, &image_cfg, &cgroup, self.cfg.init_binary.as_deref())?;
        let stop_signal = spec::stop_signal(s, &image_cfg)?;
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
        Ok(Prepared {
            args,
            parent: chains.last().cloned().unwrap_or_default(),
            oci,
            stop_signal,
            cgroup,
        })
    }

    /// The containerd calls of a create, in order: snapshot, container record, task.
    async fn create_with_lease(
        &self,
        s: &ContainerSpec,
        img: &Image,
        lease: &str,
        p: Prepared,
    ) -> Result<()> {
        let id = s.id.as_str();
        let cerr = |source| Error::CreateContainer {
            id: id.to_owned(),
            source,
        };
        let parent = match s.user_namespace {
            Some(map) => self.remapped_parent(id, &p.parent, map, lease).await?,
            None => p.parent.clone(),
        };
        let mounts: Vec<Mount> = match self.prepare_snapshot(id, &parent, lease).await {
            Ok(m) => m,
            Err(s) if s.code() == Code::AlreadyExists => {
                // Left over from a create that died half-way (no container record exists).
                self.remove_snapshot_quiet(id).await;
                self.prepare_snapshot(id, &parent, lease)
                    .await
                    .map_err(cerr)?
            }
            Err(s) => return Err(cerr(s)),
        };
        let mut labels: HashMap<String, String> = s.labels.clone().into_iter().collect();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        labels.insert(LABEL_STOP_SIGNAL.into(), p.stop_signal.to_string());
        labels.insert(LABEL_CGROUP.into(), p.cgroup);
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
                value: serde_json::to_vec(&p.oci).map_err(|e| Error::InvalidSpec {
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
            if let Err(cleanup) = self.delete_task_and_container(&s.id).await {
                tracing::warn!(%id, error = %cleanup, "clean up after a failed create");
            }
            let msg = e.message().to_owned();
            return Err(if is_missing_entrypoint(&msg) {
                Error::EntrypointNotFound {
                    id: id.to_owned(),
                    entrypoint: p.args.first().cloned().unwrap_or_default(),
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

    /// Starts a created container's task; its pid.
    pub(super) async fn start(&self, id: &ContainerId) -> Result<u32> {
        let info = self.inspect(id).await?;
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

    /// Waits for the container's task to exit (or returns the status it exited with).
    pub(super) async fn wait(&self, id: &ContainerId) -> Result<ExitStatus> {
        let c = self.require_container(id).await?;
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

    /// Stop signal, up to `timeout` for the exit, then SIGKILL to every process.
    pub(super) async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<ExitStatus> {
        let (c, state) = self.container_state(id).await?;
        match state {
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
        let mut waiter = tokio::spawn(async move { this.wait(&wid).await });
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

    pub(super) async fn inspect(&self, id: &ContainerId) -> Result<ContainerInfo> {
        let c = self.require_container(id).await?;
        let task = self.get_task(id).await?;
        self.info_of(&c, task.as_ref())
    }

    /// The container records matching a containerd filter (`image==…`, `labels.…`).
    pub(super) async fn container_records(&self, filter: String) -> Result<Vec<Container>> {
        Ok(self
            .containers()
            .list(self.req(ListContainersRequest {
                filters: vec![filter],
            }))
            .await
            .map_err(query("containers"))?
            .into_inner()
            .containers)
    }

    /// Every container this runtime manages, with its state.
    pub(super) async fn list(&self) -> Result<Vec<ContainerInfo>> {
        let containers = self
            .container_records(format!("labels.\"{LABEL_MANAGED}\"==true"))
            .await?;
        let tasks: HashMap<String, Process> = self
            .tasks()
            .list(self.req(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(query("tasks"))?
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

    /// Removes a container that is not running: task, record, snapshot, log files.
    pub(super) async fn remove(&self, id: &ContainerId) -> Result<()> {
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
        self.delete_task_and_container(id).await?;
        let live = logs::log_path(&self.cfg.log_dir, id.as_str());
        for f in logs::log_files(&live) {
            let _ = std::fs::remove_file(f);
        }
        tracing::info!(%id, "container removed");
        Ok(())
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
