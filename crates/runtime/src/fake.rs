//! [`FakeRuntime`]: an in-memory, scriptable [`ContainerRuntime`] for the agent's unit
//! tests. No processes, no containerd: containers "run" until the test makes them exit
//! ([`FakeRuntime::exit`]) or they are stopped; any operation can be made to fail once
//! ([`FakeRuntime::fail_next`]). Time-dependent behaviour (stop timeouts) uses
//! `tokio::time`, so tests can run under `tokio::time::pause()`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::api::ContainerRuntime;
use crate::error::{Error, Result};
use crate::gc::{self, GcImage};
use crate::logs::{LogChunk, LogFollower, LogPosition, LogRead};
use crate::types::{
    ContainerId, ContainerInfo, ContainerSpec, ContainerState, ExecResult, ExecSpec, ExitStatus,
    GcPolicy, GcReport, ImageInfo, ImageRef, LogLine, LogStream, PullPolicy, RegistryAuth,
};

/// The operations a failure can be scripted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeOp {
    /// `pull_image` (fails before touching the cache, like a registry error).
    Pull,
    /// `create_container`.
    Create,
    /// `start_container`.
    Start,
    /// `stop_container`.
    Stop,
    /// `exec`.
    Exec,
    /// `remove_container`.
    Remove,
}

#[derive(Debug)]
struct FakeContainer {
    spec: ContainerSpec,
    state: ContainerState,
    created_at: SystemTime,
    ignores_stop_signal: bool,
    exit_tx: watch::Sender<Option<ExitStatus>>,
    logs: Vec<LogLine>,
    log_tx: Vec<mpsc::Sender<LogLine>>,
}

#[derive(Debug, Default)]
struct State {
    registry: BTreeMap<String, String>,
    cache: BTreeMap<String, (ImageInfo, SystemTime)>,
    containers: BTreeMap<ContainerId, FakeContainer>,
    failures: HashMap<FakeOp, VecDeque<Error>>,
    exec_results: VecDeque<ExecResult>,
    remote_pulls: Vec<String>,
    next_pid: u32,
}

/// In-memory [`ContainerRuntime`]. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
}

fn digest_for(name: &str) -> String {
    crate::image::sha256_digest(name.as_bytes())
}

impl FakeRuntime {
    /// An empty runtime: no images in the fake registry or cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take_failure(&self, op: FakeOp) -> Result<()> {
        match self
            .lock()
            .failures
            .get_mut(&op)
            .and_then(VecDeque::pop_front)
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Makes `image` pullable from the fake registry.
    pub fn add_registry_image(&self, image: &ImageRef) {
        let name = image.to_string();
        let digest = digest_for(&name);
        self.lock().registry.insert(name, digest);
    }

    /// Puts `image` straight into the local cache (as if pulled earlier).
    pub fn add_cached_image(&self, image: &ImageRef) {
        let name = image.to_string();
        let info = ImageInfo {
            digest: digest_for(&name),
            name: name.clone(),
            size: 1024,
            from_cache: true,
            labels: BTreeMap::new(),
        };
        self.lock().cache.insert(name, (info, SystemTime::now()));
    }

    /// The next call of `op` fails with `error` (queue several for several calls).
    pub fn fail_next(&self, op: FakeOp, error: Error) {
        self.lock().failures.entry(op).or_default().push_back(error);
    }

    /// The next exec returns `result` (default: exit 0, no output).
    pub fn push_exec_result(&self, result: ExecResult) {
        self.lock().exec_results.push_back(result);
    }

    /// Makes the container ignore its stop signal: `stop_container` then takes the whole
    /// timeout and reports SIGKILL (137).
    pub fn set_ignores_stop_signal(&self, id: &ContainerId, ignores: bool) {
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.ignores_stop_signal = ignores;
        }
    }

    /// Makes a running (or created) container exit now.
    ///
    /// # Errors
    /// [`Error::ContainerNotFound`] for unknown ids.
    pub fn exit(&self, id: &ContainerId, code: i32, oom_killed: bool) -> Result<()> {
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| Error::ContainerNotFound { id: id.to_string() })?;
        Self::finish(c, code, oom_killed);
        Ok(())
    }

    fn finish(c: &mut FakeContainer, code: i32, oom_killed: bool) -> ExitStatus {
        if let ContainerState::Stopped(e) = c.state {
            return e;
        }
        let exit = ExitStatus {
            code,
            oom_killed,
            exited_at: Some(SystemTime::now()),
        };
        c.state = ContainerState::Stopped(exit);
        c.exit_tx.send_replace(Some(exit));
        exit
    }

    /// Appends a log line to a container's output.
    pub fn push_log(&self, id: &ContainerId, stream: LogStream, message: &str) {
        if let Some(c) = self.lock().containers.get_mut(id) {
            let line = LogLine {
                timestamp: format!("{:?}", SystemTime::now()),
                stream,
                partial: false,
                message: message.to_owned(),
            };
            c.log_tx.retain(|tx| tx.try_send(line.clone()).is_ok());
            c.logs.push(line);
        }
    }

    /// Names of images fetched from the fake registry, in order (cache hits excluded).
    #[must_use]
    pub fn remote_pulls(&self) -> Vec<String> {
        self.lock().remote_pulls.clone()
    }

    /// The spec a container was created with.
    #[must_use]
    pub fn spec_of(&self, id: &ContainerId) -> Option<ContainerSpec> {
        self.lock().containers.get(id).map(|c| c.spec.clone())
    }

    fn info(id: &ContainerId, c: &FakeContainer) -> ContainerInfo {
        ContainerInfo {
            id: id.clone(),
            image: c.spec.image.to_string(),
            state: c.state,
            labels: c.spec.labels.clone(),
            created_at: Some(c.created_at),
        }
    }

    fn not_found(id: &ContainerId) -> Error {
        Error::ContainerNotFound { id: id.to_string() }
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn pull_image(
        &self,
        image: &ImageRef,
        policy: PullPolicy,
        _auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo> {
        let name = image.to_string();
        let cached = self.lock().cache.get(&name).map(|(i, _)| i.clone());
        if let (Some(c), PullPolicy::PreferCached | PullPolicy::Once) = (&cached, policy) {
            return Ok(c.clone());
        }
        let remote = self.take_failure(FakeOp::Pull).and_then(|()| {
            self.lock()
                .registry
                .get(&name)
                .cloned()
                .ok_or_else(|| Error::ImageNotFound {
                    image: name.clone(),
                    detail: "not in the fake registry".into(),
                })
        });
        match (remote, cached) {
            (Ok(digest), _) => {
                let info = ImageInfo {
                    name: name.clone(),
                    digest,
                    size: 1024,
                    from_cache: false,
                    labels: BTreeMap::new(),
                };
                let mut st = self.lock();
                st.remote_pulls.push(name.clone());
                st.cache.insert(name, (info.clone(), SystemTime::now()));
                Ok(info)
            }
            (Err(_), Some(c)) if policy == PullPolicy::Default => Ok(c),
            (Err(e), _) => Err(e),
        }
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.lock().cache.values().map(|(i, _)| i.clone()).collect())
    }

    async fn remove_image(&self, image: &ImageRef) -> Result<()> {
        let name = image.to_string();
        let mut st = self.lock();
        if let Some((id, _)) = st
            .containers
            .iter()
            .find(|(_, c)| c.spec.image.to_string() == name)
        {
            return Err(Error::ImageInUse {
                image: name,
                container: id.to_string(),
            });
        }
        st.cache.remove(&name);
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerInfo> {
        self.take_failure(FakeOp::Create)?;
        // Same validation as the real runtime (memory minimum, signals, users, ...).
        crate::spec::build_oci_spec(
            spec,
            &crate::image::ImageConfig {
                cmd: Some(vec!["sh".into()]),
                ..Default::default()
            },
            "/fake",
            Some(std::path::Path::new("/fake-init")),
        )?;
        let mut st = self.lock();
        let name = spec.image.to_string();
        let Some(entry) = st.cache.get_mut(&name) else {
            return Err(Error::ImageNotPresent { image: name });
        };
        entry.1 = SystemTime::now();
        if st.containers.contains_key(&spec.id) {
            return Err(Error::ContainerExists {
                id: spec.id.to_string(),
            });
        }
        let (exit_tx, _) = watch::channel(None);
        let c = FakeContainer {
            spec: spec.clone(),
            state: ContainerState::Created,
            created_at: SystemTime::now(),
            ignores_stop_signal: false,
            exit_tx,
            logs: Vec::new(),
            log_tx: Vec::new(),
        };
        let info = Self::info(&spec.id, &c);
        st.containers.insert(spec.id.clone(), c);
        Ok(info)
    }

    async fn start_container(&self, id: &ContainerId) -> Result<u32> {
        self.take_failure(FakeOp::Start)?;
        let mut st = self.lock();
        st.next_pid += 1;
        let pid = 1000 + st.next_pid;
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| Self::not_found(id))?;
        if c.state != ContainerState::Created {
            return Err(Error::WrongState {
                id: id.to_string(),
                state: c.state.to_string(),
                operation: "start",
            });
        }
        c.state = ContainerState::Running { pid };
        Ok(pid)
    }

    async fn wait_container(&self, id: &ContainerId) -> Result<ExitStatus> {
        let mut rx = {
            let st = self.lock();
            let c = st.containers.get(id).ok_or_else(|| Self::not_found(id))?;
            c.exit_tx.subscribe()
        };
        loop {
            if let Some(e) = *rx.borrow_and_update() {
                return Ok(e);
            }
            if rx.changed().await.is_err() {
                return Err(Self::not_found(id));
            }
        }
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<ExitStatus> {
        self.take_failure(FakeOp::Stop)?;
        let (ignores, signal) = {
            let st = self.lock();
            let c = st.containers.get(id).ok_or_else(|| Self::not_found(id))?;
            if let ContainerState::Stopped(e) = c.state {
                return Ok(e);
            }
            let signal = c
                .spec
                .stop_signal
                .as_deref()
                .map_or(Ok(15), |s| crate::spec::parse_signal(id.as_str(), s))?;
            (c.ignores_stop_signal, signal)
        };
        if ignores {
            tokio::select! {
                r = self.wait_container(id) => return r,
                () = tokio::time::sleep(timeout) => {}
            }
        }
        let code = if ignores {
            137
        } else {
            128 + i32::try_from(signal).unwrap_or(15)
        };
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| Self::not_found(id))?;
        Ok(Self::finish(c, code, false))
    }

    async fn exec(&self, id: &ContainerId, exec: &ExecSpec) -> Result<ExecResult> {
        self.take_failure(FakeOp::Exec)?;
        let mut st = self.lock();
        let c = st.containers.get(id).ok_or_else(|| Self::not_found(id))?;
        if !matches!(c.state, ContainerState::Running { .. }) {
            return Err(Error::WrongState {
                id: id.to_string(),
                state: c.state.to_string(),
                operation: "exec",
            });
        }
        let _ = exec;
        Ok(st.exec_results.pop_front().unwrap_or(ExecResult {
            exit_code: Some(0),
            output: String::new(),
        }))
    }

    async fn inspect_container(&self, id: &ContainerId) -> Result<ContainerInfo> {
        let st = self.lock();
        let c = st.containers.get(id).ok_or_else(|| Self::not_found(id))?;
        Ok(Self::info(id, c))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        let st = self.lock();
        Ok(st
            .containers
            .iter()
            .map(|(id, c)| Self::info(id, c))
            .collect())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.take_failure(FakeOp::Remove)?;
        let mut st = self.lock();
        if let Some(c) = st.containers.get(id)
            && matches!(c.state, ContainerState::Running { .. })
        {
            return Err(Error::WrongState {
                id: id.to_string(),
                state: c.state.to_string(),
                operation: "remove",
            });
        }
        st.containers.remove(id);
        Ok(())
    }

    async fn garbage_collect(&self, policy: &GcPolicy, now: SystemTime) -> Result<GcReport> {
        let containers = self.list_containers().await?;
        let images: Vec<GcImage> = self
            .lock()
            .cache
            .iter()
            .map(|(n, (_, used))| GcImage {
                name: n.clone(),
                last_used: Some(*used),
            })
            .collect();
        let plan = gc::plan(&containers, &images, policy, now);
        let mut st = self.lock();
        for id in &plan.containers {
            st.containers.remove(id);
        }
        for name in &plan.images {
            st.cache.remove(name);
        }
        Ok(GcReport {
            containers: plan.containers,
            images: plan.images,
            snapshots: Vec::new(),
        })
    }

    async fn read_logs(&self, id: &ContainerId, tail: Option<usize>) -> Result<Vec<LogLine>> {
        let st = self.lock();
        let c = st.containers.get(id).ok_or_else(|| Self::not_found(id))?;
        let skip = tail.map_or(0, |t| c.logs.len().saturating_sub(t));
        Ok(c.logs[skip..].to_vec())
    }

    /// Positions in the fake are record indexes (`file` is always 0).
    async fn read_logs_from(&self, id: &ContainerId, read: LogRead) -> Result<LogChunk> {
        let st = self.lock();
        let c = st.containers.get(id).ok_or_else(|| Self::not_found(id))?;
        let len = c.logs.len();
        let start = match (read.from, read.tail) {
            (Some(p), _) => usize::try_from(p.offset).unwrap_or(len).min(len),
            (None, Some(t)) => len.saturating_sub(t),
            (None, None) => 0,
        };
        let mut end = start;
        let mut used = 0;
        while end < len {
            let cost = crate::logs::record_cost(&c.logs[end]);
            if end > start && used + cost > read.max_bytes {
                break;
            }
            used += cost;
            end += 1;
        }
        Ok(LogChunk {
            lines: c.logs[start..end].to_vec(),
            next: Some(LogPosition {
                file: 0,
                head: 0,
                offset: end as u64,
            }),
            more: end < len,
        })
    }

    async fn follow_logs(&self, id: &ContainerId, tail: Option<usize>) -> Result<LogFollower> {
        let (tx, rx) = mpsc::channel(1024);
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| Self::not_found(id))?;
        let skip = tail.map_or(0, |t| c.logs.len().saturating_sub(t));
        for l in &c.logs[skip..] {
            let _ = tx.try_send(l.clone());
        }
        c.log_tx.push(tx);
        Ok(LogFollower::from_receiver(rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ContainerId {
        ContainerId::new(s).unwrap()
    }

    #[tokio::test]
    async fn lifecycle_and_scripting() {
        let rt = FakeRuntime::new();
        let img = ImageRef::parse("127.0.0.1:5000/busybox").unwrap();
        assert!(matches!(
            rt.pull_image(&img, PullPolicy::Default, None).await,
            Err(Error::ImageNotFound { .. })
        ));
        rt.add_registry_image(&img);
        let i = rt
            .pull_image(&img, PullPolicy::Default, None)
            .await
            .unwrap();
        assert!(!i.from_cache);
        rt.pull_image(&img, PullPolicy::PreferCached, None)
            .await
            .unwrap();
        assert_eq!(rt.remote_pulls().len(), 1);
        let unreachable = || Error::RegistryUnreachable {
            registry: "x".into(),
            image: "y".into(),
            detail: "down".into(),
        };
        rt.fail_next(FakeOp::Pull, unreachable());
        // default policy falls back to the cache, always does not
        rt.pull_image(&img, PullPolicy::Default, None)
            .await
            .unwrap();
        rt.fail_next(FakeOp::Pull, unreachable());
        assert!(rt.pull_image(&img, PullPolicy::Always, None).await.is_err());

        let spec = ContainerSpec::new(id("c1"), img.clone());
        rt.create_container(&spec).await.unwrap();
        assert!(matches!(
            rt.create_container(&spec).await,
            Err(Error::ContainerExists { .. })
        ));
        rt.start_container(&id("c1")).await.unwrap();
        assert!(matches!(
            rt.remove_image(&img).await,
            Err(Error::ImageInUse { .. })
        ));
        rt.push_log(&id("c1"), LogStream::Stdout, "hello");
        assert_eq!(
            rt.read_logs(&id("c1"), None).await.unwrap()[0].message,
            "hello"
        );
        let waiter = {
            let rt = rt.clone();
            tokio::spawn(async move { rt.wait_container(&id("c1")).await })
        };
        rt.exit(&id("c1"), 3, false).unwrap();
        assert_eq!(waiter.await.unwrap().unwrap().code, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_escalates_after_timeout() {
        let rt = FakeRuntime::new();
        let img = ImageRef::parse("busybox").unwrap();
        rt.add_cached_image(&img);
        rt.create_container(&ContainerSpec::new(id("a"), img.clone()))
            .await
            .unwrap();
        rt.create_container(&ContainerSpec::new(id("b"), img))
            .await
            .unwrap();
        rt.start_container(&id("a")).await.unwrap();
        rt.start_container(&id("b")).await.unwrap();
        rt.set_ignores_stop_signal(&id("b"), true);
        let t = Duration::from_secs(30);
        assert_eq!(rt.stop_container(&id("a"), t).await.unwrap().code, 143);
        let start = tokio::time::Instant::now();
        assert_eq!(rt.stop_container(&id("b"), t).await.unwrap().code, 137);
        assert!(start.elapsed() >= t);
        let report = rt
            .garbage_collect(
                &GcPolicy {
                    stopped_container_age: Duration::ZERO,
                    unused_image_age: Duration::ZERO,
                },
                SystemTime::now() + Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(report.containers.len(), 2);
        assert_eq!(report.images.len(), 1);
    }
}
