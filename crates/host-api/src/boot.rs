//! The boot step (`flotilla host boot`), run by the node's init at every start.
//!
//! Bottlerocket spreads this over GRUB, `migrator`, `storewolf`, `early-boot-config`,
//! `sundog`, `settings-applier`, `bootstrap-containers` and `mark-successful-boot`. Here it is
//! one sequence:
//!
//! 1. clear `run/` (volatile state);
//! 2. pick the slot by the A/B flags and consume one try (written before anything else, so a
//!    crash during boot counts as a failed try);
//! 3. verify the slot's files against its `SHA256SUMS`;
//! 4. migrate the datastore to the slot's version (on a copy; on failure the boot stops and
//!    the datastore is untouched);
//! 5. first boot only: parse and validate user-data *completely*, then commit it in one
//!    transaction (bad user-data stops the boot with nothing applied);
//! 6. start the API server, render every service's configuration and write sysctls (a stored
//!    value this version refuses is dropped from the settings in effect and logged, never
//!    fatal: [`crate::settings::load`]);
//! 7. run bootstrap containers to completion, in name order (`essential` failures stop the boot;
//!    `once` ones are switched `off`);
//! 8. start host containers and the agent (from the slot's `image.toml`);
//! 9. poll the image's health probe; healthy → mark the slot successful. Never healthy → exit
//!    non-zero without marking: the next boot falls back to the other slot by itself.
//!
//! Afterwards the process supervises its children and serves the API until SIGTERM/SIGINT or
//! `POST /actions/reboot`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use updater::image::ImageMeta;
use updater::migration::Direction;
use updater::node::Node;
use updater::partition::Slot;

use crate::containers::engine::Engine;
use crate::containers::{ContainerdOptions, Desired, Layout};
use crate::datastore::Datastore;
use crate::error::{Error, Result};
use crate::server::{self, HostConfig, HostState, LAUNCH_TX};
use crate::services::{CommandRestarter, Paths, Restarter, Service};
use crate::settings::Settings;

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The node.
    pub node: Node,
    /// API socket path.
    pub socket: PathBuf,
    /// User-data file read at first boot (ignored if missing).
    pub user_data: Option<PathBuf>,
    /// Rendered config and sysctl roots.
    pub paths: Paths,
    /// Shell restart commands for services the boot step does not supervise itself.
    pub restart_commands: BTreeMap<String, String>,
    /// Stop everything and return right after the boot is marked successful (or failed).
    /// Host containers run through containerd are never stopped by the host layer.
    pub exit_after_boot: bool,
    /// containerd for host and bootstrap containers (unless the image names a runner).
    pub containerd: ContainerdOptions,
}

/// How a boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootOutcome {
    /// Booted and healthy; later stopped by a signal or `--exit-after-boot`.
    Stopped {
        /// Slot that ran.
        slot: Slot,
        /// Its version.
        version: String,
    },
    /// `POST /actions/reboot`: the init should run `host boot` again.
    Reboot {
        /// Slot that ran.
        slot: Slot,
    },
}

/// The agent attribute naming the running slot's version (ECS `--attributes`).
pub const OS_VERSION_ATTRIBUTE: &str = "flotilla.os-version";

fn expand(args: &[String], vars: &BTreeMap<&str, String>) -> Vec<String> {
    args.iter()
        .map(|a| {
            let mut a = a.clone();
            for (k, v) in vars {
                a = a.replace(&format!("{{{k}}}"), v);
            }
            a
        })
        .collect()
}

/// Processes the boot step supervises: the agent and the host containers. Until
/// [`Supervisor::start`] is called, restarts are no-ops (configuration is rendered first,
/// bootstrap containers run, then services start).
pub struct Supervisor {
    meta: ImageMeta,
    vars: BTreeMap<&'static str, String>,
    fallback: CommandRestarter,
    children: Mutex<BTreeMap<String, Managed>>,
    started: std::sync::atomic::AtomicBool,
    logs: PathBuf,
    containers: Containers,
}

/// Who runs host and bootstrap containers.
#[derive(Debug)]
pub enum Containers {
    /// The image's runner command (`[containers] command`): child processes.
    Runner(Vec<String>),
    /// containerd, through the runtime crate ([`crate::containers`]).
    Containerd(Engine),
}

/// A supervised child and how to start it again.
struct Managed {
    child: Child,
    argv: Vec<String>,
    env: Vec<(&'static str, String)>,
    started_at: Instant,
    restarts: u32,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    fn spawn(
        &self,
        name: &str,
        argv: &[String],
        env: &[(&str, String)],
    ) -> std::result::Result<Child, String> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| format!("{name}: empty command"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(prog);
        cmd.args(args).stdin(Stdio::null()).stdout(log).stderr(log2);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn()
            .map_err(|e| format!("starting {name} ({prog}): {e}"))
    }

    fn stop(&self, name: &str) {
        let managed = self.children.lock().ok().and_then(|mut c| c.remove(name));
        if let Some(mut m) = managed {
            stop_child(&mut m.child);
        }
    }

    fn launch(
        &self,
        name: &str,
        argv: Vec<String>,
        env: Vec<(&'static str, String)>,
    ) -> std::result::Result<(), String> {
        let child = self.spawn(name, &argv, &env)?;
        self.children.lock().map_err(|e| e.to_string())?.insert(
            name.to_owned(),
            Managed {
                child,
                argv,
                env,
                started_at: Instant::now(),
                restarts: 0,
            },
        );
        Ok(())
    }

    /// Starts again every supervised child that exited (like systemd's `Restart=always`),
    /// waiting `restarts + 1` seconds (at most 30) after its last start. Returns the names
    /// restarted.
    pub fn respawn_exited(&self) -> Vec<String> {
        let mut restarted = match &self.containers {
            Containers::Containerd(engine) => engine.respawn_exited(),
            Containers::Runner(_) => Vec::new(),
        };
        let Ok(mut children) = self.children.lock() else {
            return restarted;
        };
        for (name, m) in children.iter_mut() {
            let exited = matches!(m.child.try_wait(), Ok(Some(_)));
            let backoff = Duration::from_secs(u64::from(m.restarts.min(29)) + 1);
            if !exited || m.started_at.elapsed() < backoff {
                continue;
            }
            match self.spawn(name, &m.argv, &m.env) {
                Ok(child) => {
                    tracing::warn!(%name, restarts = m.restarts + 1, "supervised process exited; restarted");
                    m.child = child;
                    m.started_at = Instant::now();
                    m.restarts += 1;
                    restarted.push(name.clone());
                }
                Err(e) => {
                    tracing::error!(%name, error = %e, "restarting supervised process failed")
                }
            }
        }
        restarted
    }

    fn agent_argv(&self, s: &Settings) -> Option<Vec<String>> {
        let spec = self.meta.agent.as_ref()?;
        let mut argv = expand(&spec.command, &self.vars);
        let ecs = s.ecs.clone().unwrap_or_default();
        if let Some(e) = ecs.endpoint {
            argv.extend(["--endpoint".into(), e.to_string()]);
        }
        argv.extend([
            "--cluster".into(),
            ecs.cluster
                .map_or_else(|| "default".to_owned(), |c| c.to_string()),
            "--data-dir".into(),
            format!("{}/agent", self.vars["data"]),
        ]);
        argv.extend(["--attributes".into(), self.agent_attributes(s)]);
        argv.extend(["--instance-id".into(), self.vars["node-id"].clone()]);
        if let Some(mib) = ecs.reserved_memory {
            argv.extend(["--reserved-memory".into(), mib.to_string()]);
        }
        if let Some(p) = ecs.image_pull_behavior
            && let Some(v) = serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        {
            argv.extend(["--pull-behavior".into(), v]);
        }
        argv.extend(["--host-api-socket".into(), self.vars["socket"].clone()]);
        Some(argv)
    }

    /// The user's `settings.ecs.instance-attributes` (sorted), then
    /// `flotilla.os-version=<running slot's version>`, which the user cannot override.
    fn agent_attributes(&self, s: &Settings) -> String {
        let mut attrs: Vec<String> = s
            .ecs
            .as_ref()
            .and_then(|e| e.instance_attributes.as_ref())
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.to_string() != OS_VERSION_ATTRIBUTE)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        // An attribute value allows [a-zA-Z0-9.@:_/\- ]; semver build metadata's `+` is not.
        let version: String = self
            .meta
            .version
            .chars()
            .map(|c| if c == '+' { '_' } else { c })
            .collect();
        attrs.push(format!("{OS_VERSION_ATTRIBUTE}={version}"));
        attrs.join(",")
    }

    /// Runs `d` through the runner command (`runner TYPE NAME SOURCE`) as child `key`.
    fn runner_command(
        &self,
        runner: &[String],
        d: &Desired,
    ) -> (Vec<String>, Vec<(&'static str, String)>) {
        let mut argv = runner.to_vec();
        argv.extend([d.kind.as_str().to_owned(), d.name.clone(), d.source.clone()]);
        let mut env = crate::containers::container_env(d, &self.vars["socket"]);
        env.push(("FLOTILLA_RUN", self.vars["run"].clone()));
        (argv, env)
    }

    fn restart_agent(&self, s: &Settings) -> std::result::Result<(), String> {
        self.stop("agent");
        if let Some(argv) = self.agent_argv(s) {
            self.launch("agent", argv, Vec::new())?;
        }
        Ok(())
    }

    fn restart_host_containers(&self, s: &Settings) -> std::result::Result<(), String> {
        let runner = match &self.containers {
            Containers::Runner(r) => r,
            Containers::Containerd(engine) => {
                return engine.reconcile(s).map_err(|e| e.to_string());
            }
        };
        let running: Vec<String> = self
            .children
            .lock()
            .map_err(|e| e.to_string())?
            .keys()
            .filter(|k| k.starts_with("host-container-"))
            .cloned()
            .collect();
        for k in running {
            self.stop(&k);
        }
        for d in crate::containers::desired_host_containers(s) {
            let (argv, env) = self.runner_command(runner, &d);
            self.launch(&format!("host-container-{}", d.name), argv, env)?;
        }
        Ok(())
    }

    /// Starts the supervised services for the first time.
    ///
    /// # Errors
    /// A service that cannot be started.
    pub fn start(&self, s: &Settings) -> std::result::Result<(), String> {
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        match &self.containers {
            Containers::Runner(_) => self.restart_host_containers(s)?,
            // As in Bottlerocket, a host container that cannot start (registry down, bad
            // image) does not stop the boot: it is logged and retried with back-off.
            Containers::Containerd(engine) => {
                if let Err(e) = engine.reconcile(s) {
                    tracing::error!(error = %e, "host containers not all started; retrying");
                }
            }
        }
        self.restart_agent(s)
    }

    /// Stops every child process. Host containers run through containerd keep running
    /// (the next start of the host layer adopts them).
    pub fn stop_all(&self) {
        let names: Vec<String> = self
            .children
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        for n in names {
            self.stop(&n);
        }
    }

    /// Names of running children and host containers (for tests and logs).
    #[must_use]
    pub fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .children
            .lock()
            .map(|mut c| {
                c.iter_mut()
                    .filter_map(|(k, m)| matches!(m.child.try_wait(), Ok(None)).then(|| k.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if let Containers::Containerd(engine) = &self.containers {
            names.extend(
                engine
                    .running()
                    .into_iter()
                    .map(|n| format!("host-container-{n}")),
            );
        }
        names
    }
}

fn stop_child(child: &mut Child) {
    // SIGTERM first (through kill(1): this crate forbids unsafe code), SIGKILL after 5 s.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Restarter for Supervisor {
    fn restart(&self, service: Service, settings: &Settings) -> std::result::Result<(), String> {
        let started = self.started.load(std::sync::atomic::Ordering::SeqCst);
        match service {
            Service::Agent if started => self.restart_agent(settings),
            Service::HostContainers if started => self.restart_host_containers(settings),
            Service::Agent | Service::HostContainers => Ok(()),
            Service::Sysctl
            | Service::Containerd
            | Service::Dns
            | Service::Ntp
            | Service::Updates
            | Service::BootstrapContainers
            | Service::Motd => self.fallback.restart(service, settings),
        }
    }
}

fn boot_err(e: impl std::fmt::Display) -> Error {
    Error::Boot(e.to_string())
}

/// Steps 1–5: everything before any service starts. Returns the slot, its metadata and the
/// opened datastore.
///
/// # Errors
/// Bad slot, failed migration, bad user-data.
pub fn prepare_boot(opts: &BootOptions) -> Result<(Slot, ImageMeta)> {
    let node = &opts.node;
    let run = node.run_dir();
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(&run).map_err(boot_err)?;

    let mut part = node.partition()?;
    let slot = part.select_boot()?;
    part.write(&node.partition_path())?;
    tracing::info!(%slot, flags = ?part.flags(slot), "selected boot slot");

    let meta = updater::image::verify_slot(&node.slot_dir(slot))
        .map_err(|e| Error::Boot(format!("slot {slot} is damaged: {e}")))?;
    let version = semver::Version::parse(&meta.version).map_err(boot_err)?;

    let data = node.data_dir();
    let first_boot = !data.join("datastore").exists();
    let ds = Datastore::open(&data, &version)?;
    let from = ds.version()?;
    if from != version {
        let migrations = updater::node::cached_migrations(node, &from, &version)
            .map_err(|e| Error::Boot(format!("migrating datastore {from} -> {version}: {e}")))?;
        let dir = if from < version {
            Direction::Forward
        } else {
            Direction::Backward
        };
        ds.migrate(&version, &migrations, dir)
            .map_err(|e| Error::Boot(format!("migrating datastore {from} -> {version}: {e}")))?;
        tracing::info!(%from, to = %version, count = migrations.len(), "datastore migrated");
    }
    ds.discard_pending()?;

    let marker = data.join("user-data-applied");
    if !marker.exists() {
        if let Some(ud) = opts.user_data.as_ref().filter(|p| p.exists()) {
            let text = read_user_data(ud).inspect_err(|_| {
                if first_boot {
                    let _ = std::fs::remove_dir_all(data.join("datastore"));
                }
            })?;
            let doc =
                crate::userdata::parse(&ud.display().to_string(), &text).inspect_err(|_| {
                    if first_boot {
                        // Leave no trace of a boot that never applied anything.
                        let _ = std::fs::remove_dir_all(data.join("datastore"));
                    }
                })?;
            ds.patch(LAUNCH_TX, &doc)?;
            ds.commit(LAUNCH_TX)?;
            tracing::info!(file = %ud.display(), "user-data applied");
        }
        std::fs::write(&marker, b"").map_err(boot_err)?;
    }
    node_id(&data)?;
    Ok((slot, meta))
}

/// Reads a user-data file of at most [`crate::limits::MAX_USER_DATA_BYTES`].
fn read_user_data(path: &Path) -> Result<String> {
    use std::io::Read;
    let err = |message: String| Error::UserData {
        source_name: path.display().to_string(),
        message,
    };
    let max = crate::limits::MAX_USER_DATA_BYTES;
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut text = String::new();
    f.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > max {
        return Err(err(format!("larger than {max} bytes")));
    }
    Ok(text)
}

/// The node's stable identity (`data/node-id`, created at first boot): passed to the agent as
/// `--instance-id` and to commands as `{node-id}`, so a health probe can find this node in the
/// control plane's container instances.
///
/// # Errors
/// IO failures.
pub fn node_id(data: &Path) -> Result<String> {
    let path = data.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_owned());
    }
    let id = format!("fl-{:016x}", rand::random::<u64>());
    updater::fsutil::write_atomic(&path, id.as_bytes()).map_err(boot_err)?;
    Ok(id)
}

/// Step 6's apply. A sysctl the kernel refuses does not stop the boot (as Bottlerocket's
/// `corndog` only logs it): a refused value must not keep the node from booting, where the API
/// that could fix it would never come up. Every other failure does.
fn apply_at_boot(st: &HostState) -> Result<()> {
    let report = st.apply_report(None)?;
    for (key, why) in &report.rejected_sysctls {
        tracing::warn!(%key, reason = %why, "sysctl not applied at boot; the boot continues");
    }
    let fatal: Vec<_> = report
        .failed
        .into_iter()
        .filter(|f| f.service != Service::Sysctl || report.rejected_sysctls.is_empty())
        .collect();
    if fatal.is_empty() {
        Ok(())
    } else {
        Err(crate::services::apply_error(&fatal))
    }
}

fn healthy(
    meta: &ImageMeta,
    vars: &BTreeMap<&str, String>,
    logs: &Path,
    deadline_override: Option<Duration>,
) -> Result<()> {
    let Some(h) = &meta.health else {
        return Ok(());
    };
    let argv = expand(&h.command, vars);
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Error::Boot("empty health command".into()))?;
    let timeout =
        deadline_override.unwrap_or_else(|| Duration::from_secs(h.timeout_secs.unwrap_or(60)));
    let deadline = Instant::now() + timeout;
    loop {
        let log = std::fs::File::create(logs.join("health.log")).map_err(boot_err)?;
        let ok = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(boot_err)?)
            .stderr(log)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Boot(format!(
                "health probe {argv:?} did not succeed within {}s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Boots the node (all steps) and then runs until stopped.
///
/// # Errors
/// Any failed step; the slot is then not marked successful.
pub async fn boot(
    opts: BootOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<BootOutcome> {
    let o2 = opts.clone();
    let (slot, meta) = tokio::task::spawn_blocking(move || prepare_boot(&o2))
        .await
        .map_err(boot_err)??;
    let node = opts.node.clone();
    let logs = node.run_dir().join("logs");
    std::fs::create_dir_all(&logs).map_err(boot_err)?;
    let node_id = node_id(&node.data_dir())?;
    let vars: BTreeMap<&'static str, String> = [
        ("node-id", PathBuf::from(&node_id)),
        ("slot", node.slot_dir(slot)),
        ("data", node.data_dir()),
        ("node", node.root.clone()),
        ("run", node.run_dir()),
        ("etc", opts.paths.etc.clone()),
        ("socket", opts.socket.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.display().to_string()))
    .collect();
    let layout = Layout {
        api_socket: opts.socket.clone(),
        api_dir: node.data_dir().join("host-api"),
        data: node.data_dir(),
    };
    let runner = meta
        .containers
        .clone()
        .unwrap_or_default()
        .runner()
        .map(|r| expand(r, &vars));
    let containers = match runner {
        Some(r) => Containers::Runner(r),
        None => Containers::Containerd(Engine::new(
            opts.containerd.clone(),
            layout.clone(),
            &node.run_dir(),
        )),
    };
    let sup = Arc::new(Supervisor {
        meta: meta.clone(),
        vars: vars.clone(),
        fallback: CommandRestarter {
            commands: opts.restart_commands.clone(),
            etc: opts.paths.etc.clone(),
        },
        children: Mutex::new(BTreeMap::new()),
        started: std::sync::atomic::AtomicBool::new(false),
        logs: logs.clone(),
        containers,
    });
    let cfg = HostConfig {
        data_dir: node.data_dir(),
        paths: opts.paths.clone(),
        node: Some(node.clone()),
    };
    let state = HostState::new(cfg, sup.clone())?;
    let mut listeners = vec![server::bind(&opts.socket).map_err(boot_err)?];
    if matches!(sup.containers, Containers::Containerd(_)) {
        // The listener containers reach through a directory mount, so that containers
        // adopted after a host-layer restart reach this process too (crate::containers).
        let stable = layout.stable_api_socket();
        listeners.push(
            server::bind(&stable).map_err(|e| boot_err(format!("{}: {e}", stable.display())))?,
        );
    }
    let (server_stop_tx, server_stop_rx) = tokio::sync::watch::channel(false);
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|listener| {
            let mut rx = server_stop_rx.clone();
            tokio::spawn(server::run(listener, state.clone(), async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }))
        })
        .collect();

    let st = state.clone();
    let sup2 = sup.clone();
    let health_vars = vars.clone();
    let meta2 = meta.clone();
    let logs2 = logs.clone();
    let booted = tokio::task::spawn_blocking(move || -> Result<()> {
        apply_at_boot(&st)?;
        bootstrap::run_bootstrap_containers(&st, &sup2)?;
        let s = st.settings()?;
        sup2.start(&s).map_err(Error::Boot)?;
        healthy(&meta2, &health_vars, &logs2, None)
    })
    .await
    .map_err(boot_err)?;

    let finish = |sup: Arc<Supervisor>| async move {
        let _ = server_stop_tx.send(true);
        for server in servers {
            let _ = server.await;
        }
        let _ = tokio::task::spawn_blocking(move || sup.stop_all()).await;
    };

    if let Err(e) = booted {
        tracing::error!(%slot, version = %meta.version, error = %e, "boot failed; slot not marked successful");
        finish(sup).await;
        return Err(e);
    }
    let mut part = node.partition()?;
    part.mark_successful_boot();
    part.write(&node.partition_path())?;
    tracing::info!(%slot, version = %meta.version, "boot successful");
    std::fs::write(
        node.run_dir().join("boot-successful"),
        format!("{slot} {}\n", meta.version),
    )
    .map_err(boot_err)?;

    if opts.exit_after_boot {
        finish(sup).await;
        return Ok(BootOutcome::Stopped {
            slot,
            version: meta.version,
        });
    }
    let reboot = state.reboot_requested();
    let watch_sup = sup.clone();
    let watchdog = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let s = watch_sup.clone();
            let _ = tokio::task::spawn_blocking(move || s.respawn_exited()).await;
        }
    });
    let outcome = tokio::select! {
        () = reboot => BootOutcome::Reboot { slot },
        () = stop => BootOutcome::Stopped { slot, version: meta.version.clone() },
    };
    watchdog.abort();
    finish(sup).await;
    Ok(outcome)
}

mod bootstrap;
#[cfg(test)]
mod tests;
