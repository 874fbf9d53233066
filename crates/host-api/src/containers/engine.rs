//! The containerd backend of host and bootstrap containers: [`Engine`] keeps containerd's
//! host namespace in line with the settings and runs bootstrap containers to completion.
//!
//! State lives in containerd (labels), not here: after a host-layer restart a new engine
//! lists the namespace, **adopts** every running container whose [`LABEL_DIGEST`] matches
//! the settings, and replaces the others. Host containers are never stopped when the host
//! layer stops. Calls block (the supervisor is synchronous and runs on tokio's blocking
//! pool); each drives its async runtime call with the current runtime's handle.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::{
    ContainerId, ContainerRuntime, ContainerSpec, ContainerState, ContainerdConfig,
    ContainerdRuntime, PullPolicy,
};

use super::{
    ContainerdOptions, Desired, LABEL_DIGEST, Layout, container_spec, desired_host_containers,
    prepare_storage,
};
use crate::error::{Error, Result};
use crate::settings::Settings;

/// How long a container gets between its stop signal and SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A host container the engine keeps running.
struct Tracked {
    desired: Desired,
    spec: ContainerSpec,
    started_at: Instant,
    restarts: u32,
}

/// Connected to containerd: one runtime per namespace.
struct Client {
    host: ContainerdRuntime,
    bootstrap: ContainerdRuntime,
}

/// The containerd backend (see the module documentation). Connects lazily, on first use.
pub struct Engine {
    opts: ContainerdOptions,
    layout: Layout,
    /// Scratch directory for the runtime (exec FIFOs): `run/containerd-host`.
    state_dir: std::path::PathBuf,
    client: Mutex<Option<Arc<Client>>>,
    tracked: Mutex<BTreeMap<String, Tracked>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("opts", &self.opts)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| Error::Boot(format!("no async runtime for containerd calls: {e}")))?;
    Ok(handle.block_on(f))
}

fn rt_err(name: &str) -> impl FnOnce(runtime::Error) -> Error + '_ {
    move |source| Error::Container {
        name: name.to_owned(),
        source,
    }
}

fn is_running(state: &ContainerState) -> bool {
    matches!(state, ContainerState::Running { .. })
}

impl Engine {
    /// An engine for `opts`; `run` is the node's volatile directory.
    #[must_use]
    pub fn new(opts: ContainerdOptions, layout: Layout, run: &Path) -> Self {
        Self {
            opts,
            layout,
            state_dir: run.join("containerd-host"),
            client: Mutex::new(None),
            tracked: Mutex::new(BTreeMap::new()),
        }
    }

    fn client(&self) -> Result<Arc<Client>> {
        let mut slot = self.client.lock().map_err(|e| Error::Boot(e.to_string()))?;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let cfg = |namespace: String| {
            ContainerdConfig::new(
                self.opts.socket.clone(),
                namespace,
                self.layout.data.join("host-container-logs"),
                self.state_dir.clone(),
                self.opts.logger.clone(),
            )
        };
        let ns = self.opts.namespace.clone();
        let boot_ns = format!("{ns}-bootstrap");
        let (host, bootstrap) = block_on(async {
            let host = ContainerdRuntime::connect(cfg(ns.clone()))
                .await
                .map_err(rt_err(&ns))?;
            let bootstrap = ContainerdRuntime::connect(cfg(boot_ns.clone()))
                .await
                .map_err(rt_err(&boot_ns))?;
            Ok::<_, Error>((host, bootstrap))
        })??;
        let c = Arc::new(Client { host, bootstrap });
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Stops (if running) and deletes container `id`; absent is fine.
    fn remove(rt: &ContainerdRuntime, id: &ContainerId) -> Result<()> {
        block_on(async {
            let _ = rt.stop_container(id, STOP_TIMEOUT).await;
            rt.remove_container(id).await
        })?
        .map_err(rt_err(id.as_str()))
    }

    /// Pulls (a cached image is used as is), creates and starts; returns the pid.
    fn create_and_start(
        &self,
        rt: &ContainerdRuntime,
        d: &Desired,
        spec: &ContainerSpec,
    ) -> Result<u32> {
        prepare_storage(d, &self.layout)?;
        Self::remove(rt, &spec.id)?;
        block_on(async {
            rt.pull_image(&spec.image, PullPolicy::PreferCached, None)
                .await?;
            rt.create_container(spec).await?;
            rt.start_container(&spec.id).await
        })?
        .map_err(rt_err(&d.name))
    }

    /// Makes the host namespace match the settings: containers no longer enabled (or no
    /// longer set) are stopped and deleted; a running container with the wanted config
    /// digest is kept (adopted after a host-layer restart); any other is replaced. A
    /// container that fails to start is retried by [`Engine::respawn_exited`].
    ///
    /// # Errors
    /// Every container that could not be started or removed, in one message.
    pub fn reconcile(&self, s: &Settings) -> Result<()> {
        let desired = desired_host_containers(s);
        let client = match self.client() {
            Ok(c) => c,
            // Nothing to run: containerd need not be there.
            Err(e) if desired.is_empty() => {
                tracing::debug!(error = %e, "no host containers; containerd not reached");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let rt = &client.host;
        let mut tracked = self
            .tracked
            .lock()
            .map_err(|e| Error::Boot(e.to_string()))?;
        let existing = block_on(rt.list_containers())?.map_err(rt_err(&self.opts.namespace))?;
        let mut wanted = BTreeMap::new();
        let mut errors = Vec::new();
        for d in desired {
            match container_spec(&d, &self.layout) {
                Ok(spec) => {
                    wanted.insert(d.name.clone(), (d, spec));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        for c in &existing {
            if !wanted.contains_key(c.id.as_str()) {
                tracing::info!(name = %c.id, "host container disabled or removed; stopping it");
                if let Err(e) = Self::remove(rt, &c.id) {
                    errors.push(e.to_string());
                }
            }
        }
        tracked.retain(|name, _| wanted.contains_key(name));
        for (name, (d, spec)) in wanted {
            let current = existing.iter().find(|c| c.id.as_str() == name);
            let adopt = current.is_some_and(|c| {
                is_running(&c.state) && c.labels.get(LABEL_DIGEST) == spec.labels.get(LABEL_DIGEST)
            });
            if adopt {
                if !tracked.contains_key(&name) {
                    tracing::info!(%name, "host container already running with this config; adopted");
                }
                tracked.entry(name.clone()).or_insert_with(|| Tracked {
                    desired: d,
                    spec,
                    started_at: Instant::now(),
                    restarts: 0,
                });
                continue;
            }
            let started = self.create_and_start(rt, &d, &spec);
            match &started {
                Ok(pid) => {
                    tracing::info!(%name, pid, superpowered = d.superpowered, "host container started")
                }
                Err(e) => errors.push(e.to_string()),
            }
            tracked.insert(
                name,
                Tracked {
                    desired: d,
                    spec,
                    started_at: Instant::now(),
                    restarts: 0,
                },
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Boot(errors.join("; ")))
        }
    }

    /// Starts again every tracked host container that is not running, `restarts + 1`
    /// seconds (at most 30) after its last start. Returns the names restarted.
    pub fn respawn_exited(&self) -> Vec<String> {
        let Some(client) = self.client.lock().ok().and_then(|c| c.clone()) else {
            return Vec::new();
        };
        let Ok(mut tracked) = self.tracked.lock() else {
            return Vec::new();
        };
        let mut restarted = Vec::new();
        for (name, t) in tracked.iter_mut() {
            let backoff = Duration::from_secs(u64::from(t.restarts.min(29)) + 1);
            if t.started_at.elapsed() < backoff {
                continue;
            }
            let running = block_on(client.host.inspect_container(&t.spec.id))
                .ok()
                .and_then(std::result::Result::ok)
                .is_some_and(|i| is_running(&i.state));
            if running {
                continue;
            }
            t.restarts += 1;
            t.started_at = Instant::now();
            match self.create_and_start(&client.host, &t.desired, &t.spec) {
                Ok(pid) => {
                    tracing::warn!(%name, pid, restarts = t.restarts, "host container exited; restarted");
                    restarted.push(name.clone());
                }
                Err(e) => tracing::error!(%name, error = %e, "restarting host container failed"),
            }
        }
        restarted
    }

    /// Names of the tracked host containers that are running.
    #[must_use]
    pub fn running(&self) -> Vec<String> {
        let Some(client) = self.client.lock().ok().and_then(|c| c.clone()) else {
            return Vec::new();
        };
        let ids: Vec<ContainerId> = self
            .tracked
            .lock()
            .map(|t| t.values().map(|t| t.spec.id.clone()).collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter(|id| {
                block_on(client.host.inspect_container(id))
                    .ok()
                    .and_then(std::result::Result::ok)
                    .is_some_and(|i| is_running(&i.state))
            })
            .map(|id| id.as_str().to_owned())
            .collect()
    }

    /// Runs a bootstrap container to completion in the bootstrap namespace, copies its
    /// output to `log` and deletes it. Returns its exit code.
    ///
    /// # Errors
    /// containerd failures (pull, create, start, wait).
    pub fn run_to_completion(&self, d: &Desired, log: &Path) -> Result<i32> {
        let client = self.client()?;
        let rt = &client.bootstrap;
        let spec = container_spec(d, &self.layout)?;
        self.create_and_start(rt, d, &spec)?;
        let status = block_on(rt.wait_container(&spec.id))?.map_err(rt_err(&d.name))?;
        if let Ok(Ok(lines)) = block_on(rt.read_logs(&spec.id, None)) {
            let text: String = lines
                .iter()
                .map(|l| format!("{} {}\n", l.stream.as_str(), l.message))
                .collect();
            let _ = std::fs::write(log, text);
        }
        Self::remove(rt, &spec.id)?;
        Ok(status.code)
    }
}
