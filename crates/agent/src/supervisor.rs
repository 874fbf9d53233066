//! Running one task: pull, create, start (in `dependsOn` order), report RUNNING, wait for
//! an exit or a stop request, stop the rest, report STOPPED. Every failure becomes a
//! reason on the task, in ECS's words; nothing here can crash the agent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model::agent::TaskAssignment;
use model::wire;
use runtime::ContainerRuntime;
use runtime::types::{
    BindMount, ContainerId, ContainerSpec, ContainerState, ExitStatus, ImageRef, PullPolicy,
    RegistryAuth, Resources, Ulimit,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::dependencies::{self, Observed, Verdict};
use crate::error::AgentError;
use crate::health::{CheckSettings, Tracker, run_checks};
use crate::local_state::{LocalState, LocalTask};

/// Label carrying the task ARN on every container the agent creates.
pub const TASK_LABEL: &str = "flotilla.task-arn";
/// Label carrying the container's name in its task definition.
pub const NAME_LABEL: &str = "flotilla.container-name";

/// What every supervisor shares.
pub struct Shared {
    /// The control plane.
    pub client: Client,
    /// The container runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Cluster name.
    pub cluster: String,
    /// The agent's data directory (state file, task volumes).
    pub data_dir: PathBuf,
    /// The persisted state; saved after every change.
    pub state: Mutex<LocalState>,
    /// Stop timeout for containers that set none (ECS: 30 s).
    pub default_stop_timeout: Duration,
    /// Pull behaviour (ECS_IMAGE_PULL_BEHAVIOR).
    pub pull_policy: PullPolicy,
    /// One lock per image: two tasks of the same image starting together must not
    /// unpack it into the same snapshots at the same time (different images pull in
    /// parallel).
    pub pull_locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The node's task networking (bridge/awsvpc/none); `None` leaves non-host tasks in
    /// a loopback-only namespace.
    pub network: Option<Arc<network::TaskNetworks>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn update_state(&self, f: impl FnOnce(&mut LocalState)) -> Result<(), AgentError> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s);
        s.save(&self.data_dir)
    }

    fn local_task(&self, arn: &str) -> Option<LocalTask> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tasks
            .get(arn)
            .cloned()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The task's containers with their overrides applied, in start order (`dependsOn` first).
pub fn containers_in_start_order(a: &TaskAssignment) -> Vec<wire::ContainerDefinition> {
    let mut defs: Vec<wire::ContainerDefinition> = a
        .task_definition
        .container_definitions
        .clone()
        .unwrap_or_default();
    let overrides = a
        .task
        .overrides
        .as_ref()
        .and_then(|o| o.container_overrides.clone())
        .unwrap_or_default();
    for o in overrides {
        if let Some(c) = defs.iter_mut().find(|c| c.name == o.name) {
            if o.command.is_some() {
                c.command = o.command;
            }
            for kv in o.environment.unwrap_or_default() {
                let env = c.environment.get_or_insert_with(Vec::new);
                env.retain(|e| e.name != kv.name);
                env.push(kv);
            }
            if o.memory.is_some() {
                c.memory = o.memory;
            }
            if o.memory_reservation.is_some() {
                c.memory_reservation = o.memory_reservation;
            }
            if o.cpu.is_some() {
                c.cpu = o.cpu;
            }
        }
    }
    // Topological order by dependsOn (definitions were validated acyclic-free of self
    // references; a cycle falls back to definition order for the rest).
    let mut ordered: Vec<wire::ContainerDefinition> = Vec::new();
    let mut left = defs;
    while !left.is_empty() {
        let ready = left.iter().position(|c| {
            c.depends_on
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .all(|d| ordered.iter().any(|o| o.name == d.container_name))
        });
        ordered.push(left.remove(ready.unwrap_or(0)));
    }
    ordered
}

/// The runtime container id of a task's container.
pub fn container_id(task_id: &str, index: usize) -> Result<ContainerId, runtime::Error> {
    ContainerId::new(format!("{task_id}-{index}"))
}

/// Translates a container definition into the runtime's spec.
pub fn container_spec(
    shared: &Shared,
    a: &TaskAssignment,
    task_id: &str,
    index: usize,
    c: &wire::ContainerDefinition,
) -> Result<ContainerSpec, String> {
    let image = ImageRef::parse(c.image.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
    let id = container_id(task_id, index).map_err(|e| e.to_string())?;
    let mut spec = ContainerSpec::new(id, image);
    spec.entry_point.clone_from(&c.entry_point);
    spec.command.clone_from(&c.command);
    spec.environment = c
        .environment
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|kv| Some((kv.name.clone()?, kv.value.clone().unwrap_or_default())))
        .collect();
    spec.working_directory.clone_from(&c.working_directory);
    spec.user.clone_from(&c.user);
    spec.hostname.clone_from(&c.hostname);
    spec.read_only_root = c.readonly_root_filesystem.unwrap_or(false);
    spec.resources = Resources {
        cpu_units: c.cpu.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0),
        memory_hard_mib: c.memory.and_then(|v| u64::try_from(v).ok()),
        memory_soft_mib: c.memory_reservation.and_then(|v| u64::try_from(v).ok()),
    };
    spec.ulimits = c
        .ulimits
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|u| {
            Some(Ulimit {
                name: u.name?.as_str().to_owned(),
                soft: u64::try_from(u.soft_limit?).ok()?,
                hard: u64::try_from(u.hard_limit?).ok()?,
            })
        })
        .collect();
    let volumes = a.task_definition.volumes.as_deref().unwrap_or(&[]);
    for mp in c.mount_points.as_deref().unwrap_or(&[]) {
        let name = mp.source_volume.clone().unwrap_or_default();
        let host_path = volumes
            .iter()
            .find(|v| v.name.as_deref() == Some(name.as_str()))
            .and_then(|v| v.host.as_ref()?.source_path.clone())
            .map_or_else(
                || shared.data_dir.join("volumes").join(task_id).join(&name),
                PathBuf::from,
            );
        std::fs::create_dir_all(&host_path)
            .map_err(|e| format!("volume {name}: {}: {e}", host_path.display()))?;
        spec.mounts.push(BindMount {
            host_path,
            container_path: mp.container_path.clone().unwrap_or_default(),
            read_only: mp.read_only.unwrap_or(false),
        });
    }
    spec.network = crate::task_network::container_network(shared, a, task_id);
    spec.labels = BTreeMap::from([
        (
            TASK_LABEL.to_owned(),
            a.task.task_arn.clone().unwrap_or_default(),
        ),
        (NAME_LABEL.to_owned(), c.name.clone().unwrap_or_default()),
    ]);
    Ok(spec)
}

/// How a container ended, for the report.
#[derive(Debug, Clone, Default)]
struct Ended {
    exit_code: Option<i32>,
    reason: Option<String>,
}

fn ended(status: &ExitStatus) -> Ended {
    Ended {
        exit_code: Some(status.code),
        reason: status
            .oom_killed
            .then(|| "OutOfMemoryError: Container killed due to memory usage".to_owned()),
    }
}

struct Running {
    /// name → (id, essential, stop timeout)
    containers: Vec<(String, ContainerId, bool, Duration)>,
    /// When pulling started and ended (not known for adopted tasks).
    pulled: Option<(f64, f64)>,
    /// The task's networking (none for `host` mode).
    network: Option<network::NetworkAttachment>,
}

/// A task's id: the last part of its ARN (what names its containers, namespace and
/// network records on the node).
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or_default()
}

/// Supervises one task until it is STOPPED and reported.
pub async fn supervise(
    shared: Arc<Shared>,
    a: TaskAssignment,
    adopt: bool,
    mut stop: watch::Receiver<bool>,
) {
    let arn = a.task.task_arn.clone().unwrap_or_default();
    let task_id = task_id(&arn).to_owned();
    let defs = containers_in_start_order(&a);
    let stop_timeout = |c: &wire::ContainerDefinition| {
        c.stop_timeout
            .and_then(|t| u64::try_from(t).ok())
            .map_or(shared.default_stop_timeout, Duration::from_secs)
    };
    let running = if adopt {
        match adopt_containers(&shared, &arn, &defs, &stop_timeout).await {
            Some(mut r) => {
                r.network = crate::task_network::adopt(&shared, &a, &task_id).await;
                r
            }
            None => {
                report_stopped(&shared, &a, "Task stopped: its containers were not found on the node after an agent restart.", &BTreeMap::new()).await;
                return;
            }
        }
    } else {
        if *stop.borrow() {
            report_stopped(
                &shared,
                &a,
                "Task stopped before it started.",
                &BTreeMap::new(),
            )
            .await;
            return;
        }
        match start(&shared, &a, &task_id, &defs, &stop_timeout, &stop).await {
            Ok(r) => r,
            Err(reason) => {
                report_stopped(&shared, &a, &reason, &BTreeMap::new()).await;
                return;
            }
        }
    };
    if shared.local_task(&arn).and_then(|t| t.reported).as_deref() != Some("RUNNING") {
        report_running(&shared, &a, &running).await;
    }

    // Health checks run inside the containers; their changes are reported as they come.
    let (health_tx, mut health_rx) = tokio::sync::mpsc::channel(16);
    let mut checks = JoinSet::new();
    for (name, id, _, _) in &running.containers {
        let settings = defs
            .iter()
            .find(|c| c.name.as_deref() == Some(name.as_str()))
            .and_then(|c| c.health_check.as_ref())
            .and_then(CheckSettings::from_ecs);
        if let Some(settings) = settings {
            checks.spawn(run_checks(
                shared.runtime.clone(),
                id.clone(),
                name.clone(),
                settings,
                health_tx.clone(),
            ));
        }
    }
    drop(health_tx);

    // Wait for an exit or a stop request.
    let mut waits = JoinSet::new();
    for (name, id, _, _) in &running.containers {
        let (rt, name, id) = (shared.runtime.clone(), name.clone(), id.clone());
        waits.spawn(async move { (name, rt.wait_container(&id).await) });
    }
    let mut exits: BTreeMap<String, Ended> = BTreeMap::new();
    let reason = loop {
        tokio::select! {
            next = waits.join_next() => {
                let Some(Ok((name, result))) = next else { break "All containers of the task exited.".to_owned() };
                let e = match &result { Ok(st) => ended(st), Err(err) => Ended { exit_code: None, reason: Some(err.to_string()) } };
                let essential = running.containers.iter().any(|(n, _, ess, _)| *n == name && *ess);
                exits.insert(name.clone(), e.clone());
                if essential {
                    break format!("Essential container in task exited: {name}");
                }
                report_container(&shared, &a, &name, &e).await;
            }
            Some((name, status)) = health_rx.recv() => {
                report_health(&shared, &a, &name, status).await;
            }
            changed = stop.changed() => {
                if changed.is_err() {
                    // The agent is shutting down: leave the containers running; the next
                    // agent adopts them.
                    waits.abort_all();
                    checks.abort_all();
                    return;
                }
                if *stop.borrow() {
                    break a.task.stopped_reason.clone().unwrap_or_else(|| "Task stopped by the control plane.".to_owned());
                }
            }
        }
    };
    // Stop whatever still runs, last-started first.
    for (name, id, _, timeout) in running.containers.iter().rev() {
        if exits.contains_key(name) {
            continue;
        }
        let e = match shared.runtime.stop_container(id, *timeout).await {
            Ok(st) => ended(&st),
            // It may have exited on its own at the same moment: its status is still known.
            Err(err) => match shared.runtime.inspect_container(id).await {
                Ok(info) => match info.state {
                    ContainerState::Stopped(st) => ended(&st),
                    _ => {
                        tracing::warn!(container = %id, error = %err, "could not stop a container");
                        Ended {
                            exit_code: None,
                            reason: Some(err.to_string()),
                        }
                    }
                },
                Err(_) => Ended {
                    exit_code: None,
                    reason: Some(err.to_string()),
                },
            },
        };
        exits.insert(name.clone(), e);
    }
    waits.abort_all();
    checks.abort_all();
    report_stopped(&shared, &a, &reason, &exits).await;
}

async fn adopt_containers(
    shared: &Shared,
    arn: &str,
    defs: &[wire::ContainerDefinition],
    stop_timeout: &(dyn Fn(&wire::ContainerDefinition) -> Duration + Sync),
) -> Option<Running> {
    let local = shared.local_task(arn)?;
    let mut containers = Vec::new();
    for c in defs {
        let name = c.name.clone().unwrap_or_default();
        let id = ContainerId::new(local.containers.get(&name)?.clone()).ok()?;
        match shared.runtime.inspect_container(&id).await {
            Ok(info) if !matches!(info.state, ContainerState::Unknown) => {}
            _ => return None,
        }
        containers.push((name, id, c.essential.unwrap_or(true), stop_timeout(c)));
    }
    tracing::info!(task = arn, "adopted running containers");
    Some(Running {
        containers,
        pulled: None,
        network: None,
    })
}

async fn start(
    shared: &Shared,
    a: &TaskAssignment,
    task_id: &str,
    defs: &[wire::ContainerDefinition],
    stop_timeout: &(dyn Fn(&wire::ContainerDefinition) -> Duration + Sync),
    stop: &watch::Receiver<bool>,
) -> Result<Running, String> {
    let arn = a.task.task_arn.clone().unwrap_or_default();
    // Pull every image first.
    let pull_started = now();
    for c in defs {
        let image = ImageRef::parse(c.image.as_deref().unwrap_or(""))
            .map_err(|e| format!("CannotPullContainerError: {e}"))?;
        let auth = c
            .repository_credentials
            .as_ref()
            .and_then(|r| r.credentials_parameter.as_deref())
            .and_then(|p| p.split_once(':'))
            .map(|(u, p)| RegistryAuth {
                username: u.to_owned(),
                password: p.to_owned(),
            });
        let lock = shared
            .pull_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(image.to_string())
            .or_default()
            .clone();
        let _one_pull_per_image = lock.lock().await;
        shared
            .runtime
            .pull_image(&image, shared.pull_policy, auth.as_ref())
            .await
            .map_err(|e| format!("CannotPullContainerError: {e}"))?;
    }
    let pull_stopped = now();
    // Record the container ids before creating anything: a restart must find them.
    let ids: BTreeMap<String, String> = defs
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone().unwrap_or_default(), format!("{task_id}-{i}")))
        .collect();
    shared
        .update_state(|s| {
            s.tasks.insert(
                arn.clone(),
                LocalTask {
                    containers: ids,
                    reported: None,
                },
            );
        })
        .map_err(|e| format!("CannotCreateContainerError: {e}"))?;
    let network = crate::task_network::setup(shared, a, task_id).await?;
    let mut containers = Vec::new();
    for (i, c) in defs.iter().enumerate() {
        let spec = container_spec(shared, a, task_id, i, c)
            .map_err(|e| format!("CannotCreateContainerError: {e}"))?;
        if let Err(e) = shared.runtime.create_container(&spec).await {
            cleanup(shared, &containers).await;
            return Err(format!("CannotCreateContainerError: {e}"));
        }
        containers.push((
            c.name.clone().unwrap_or_default(),
            spec.id.clone(),
            c.essential.unwrap_or(true),
            stop_timeout(c),
        ));
    }
    for (i, (name, id, _, _)) in containers.iter().enumerate() {
        let started = &containers[..i];
        let result = match await_dependencies(shared, &defs[i], started, defs, stop).await {
            Ok(()) => shared
                .runtime
                .start_container(id)
                .await
                .map_err(|e| format!("CannotStartContainerError: {name}: {e}")),
            Err(e) => Err(e),
        };
        if let Err(reason) = result {
            for (_, started, _, timeout) in started {
                let _ = shared.runtime.stop_container(started, *timeout).await;
            }
            cleanup(shared, &containers).await;
            return Err(reason);
        }
    }
    Ok(Running {
        containers,
        pulled: Some((pull_started, pull_stopped)),
        network,
    })
}

/// How long a container waits for its `dependsOn` conditions when it sets no
/// `startTimeout` (the ECS agent's `ECS_CONTAINER_START_TIMEOUT` default).
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);
/// How often dependencies are looked at while a container waits for them.
const DEPENDENCY_POLL: Duration = Duration::from_millis(100);

/// Waits until every `dependsOn` condition of `c` holds ([`dependencies::verdict`]),
/// observing the already-started containers: exits through the runtime, health by
/// running the dependency's health check (at its interval) as the check loop would.
/// Fails when a condition can no longer hold, after `startTimeout`, or on a stop request.
async fn await_dependencies(
    shared: &Shared,
    c: &wire::ContainerDefinition,
    started: &[(String, ContainerId, bool, Duration)],
    defs: &[wire::ContainerDefinition],
    stop: &watch::Receiver<bool>,
) -> Result<(), String> {
    let name = c.name.as_deref().unwrap_or_default();
    let conditions: Vec<(String, wire::ContainerCondition)> = c
        .depends_on
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|d| Some((d.container_name.clone()?, d.condition?)))
        .filter(|(_, cond)| *cond != wire::ContainerCondition::Start)
        .collect();
    if conditions.is_empty() {
        return Ok(());
    }
    let timeout = c
        .start_timeout
        .and_then(|t| u64::try_from(t).ok())
        .map_or(DEFAULT_START_TIMEOUT, Duration::from_secs);
    let deadline = tokio::time::Instant::now() + timeout;
    // One health tracker per HEALTHY dependency, checked at its own interval.
    let mut health: BTreeMap<String, (CheckSettings, Tracker, tokio::time::Instant)> =
        BTreeMap::new();
    let began = tokio::time::Instant::now();
    for (dep, cond) in &conditions {
        if *cond == wire::ContainerCondition::Healthy {
            let settings = defs
                .iter()
                .find(|d| d.name.as_deref() == Some(dep.as_str()))
                .and_then(|d| d.health_check.as_ref())
                .and_then(CheckSettings::from_ecs)
                .ok_or_else(|| format!("CannotStartContainerError: {name}: dependsOn {dep} HEALTHY, but {dep} has no health check"))?;
            let tracker = Tracker::new(settings.retries, settings.start_period);
            health.insert(dep.clone(), (settings, tracker, began));
        }
    }
    let mut status: BTreeMap<String, wire::HealthStatus> = BTreeMap::new();
    loop {
        let mut verdicts = Vec::new();
        for (dep, cond) in &conditions {
            let Some((_, id, _, _)) = started.iter().find(|(n, ..)| n == dep) else {
                verdicts.push(Verdict::Failed(format!("dependency {dep} was not started")));
                continue;
            };
            let observed = match shared.runtime.inspect_container(id).await.map(|i| i.state) {
                Ok(ContainerState::Stopped(st)) => Observed::Exited(st.code),
                Ok(ContainerState::Unknown) | Err(_) => Observed::Exited(-1),
                Ok(ContainerState::Running { .. } | ContainerState::Created) => {
                    if let Some((settings, tracker, next)) = health.get_mut(dep)
                        && tokio::time::Instant::now() >= *next
                    {
                        let exec = settings.command.to_exec(settings.timeout);
                        let passed = shared
                            .runtime
                            .exec(id, &exec)
                            .await
                            .is_ok_and(|r| r.success());
                        if let Some(s) = tracker.observe(passed, began.elapsed()) {
                            status.insert(dep.clone(), s);
                        }
                        *next = tokio::time::Instant::now() + settings.interval;
                    }
                    Observed::Running(
                        status
                            .get(dep)
                            .copied()
                            .unwrap_or(wire::HealthStatus::Unknown),
                    )
                }
            };
            verdicts.push(dependencies::verdict(dep, *cond, observed));
        }
        match dependencies::all(verdicts) {
            Verdict::Met => return Ok(()),
            Verdict::Failed(why) => {
                return Err(format!("CannotStartContainerError: {name}: {why}"));
            }
            Verdict::Wait => {}
        }
        if *stop.borrow() {
            return Err(format!(
                "Task stopped while {name} waited for its dependencies."
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "CannotStartContainerError: {name}: dependsOn conditions not met within startTimeout ({}s)",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(DEPENDENCY_POLL).await;
    }
}

async fn cleanup(shared: &Shared, containers: &[(String, ContainerId, bool, Duration)]) {
    for (_, id, _, _) in containers {
        let _ = shared.runtime.remove_container(id).await;
    }
}

/// Retries a report until the control plane acknowledges it (or says the task is gone).
async fn deliver<F, Fut>(what: &str, mut send: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), AgentError>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match send().await {
            Ok(()) => return,
            Err(AgentError::Api { code, message })
                if code == "InvalidParameterException" || code == "ClusterNotFoundException" =>
            {
                tracing::warn!(%code, %message, "{what} refused; giving up on it");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "{what} failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn base_request(shared: &Shared, a: &TaskAssignment) -> wire::SubmitTaskStateChangeRequest {
    wire::SubmitTaskStateChangeRequest {
        cluster: Some(shared.cluster.clone()),
        task: a.task.task_arn.clone(),
        ..Default::default()
    }
}

async fn report_running(shared: &Shared, a: &TaskAssignment, running: &Running) {
    let mut req = base_request(shared, a);
    req.status = Some("RUNNING".into());
    if let Some((started, stopped)) = running.pulled {
        req.pull_started_at = Some(started);
        req.pull_stopped_at = Some(stopped);
    }
    let placed = a.task.containers.clone().unwrap_or_default();
    req.containers = Some(
        running
            .containers
            .iter()
            .map(|(name, id, _, _)| wire::ContainerStateChange {
                container_name: Some(name.clone()),
                runtime_id: Some(id.to_string()),
                status: Some("RUNNING".into()),
                network_bindings: placed
                    .iter()
                    .find(|p| p.name.as_deref() == Some(name))
                    .and_then(|p| p.network_bindings.clone()),
                ..Default::default()
            })
            .collect(),
    );
    let client = shared.client.clone();
    if let Some(report) = crate::task_network::report(shared, a, running.network.as_ref()) {
        deliver("network report", || client.report_network(&report)).await;
    }
    deliver("RUNNING report", || client.submit_task_state_change(&req)).await;
    let arn = a.task.task_arn.clone().unwrap_or_default();
    if let Err(e) = shared.update_state(|s| {
        if let Some(t) = s.tasks.get_mut(&arn) {
            t.reported = Some("RUNNING".into());
        }
    }) {
        tracing::warn!(error = %e, "could not record the RUNNING report");
    }
}

async fn report_health(
    shared: &Shared,
    a: &TaskAssignment,
    name: &str,
    status: wire::HealthStatus,
) {
    let req = model::agent::ReportHealthRequest {
        cluster: Some(shared.cluster.clone()),
        task: a.task.task_arn.clone(),
        containers: vec![model::agent::ContainerHealth {
            container_name: name.to_owned(),
            health_status: status,
        }],
    };
    let client = shared.client.clone();
    deliver("health report", || client.report_health(&req)).await;
    tracing::info!(task = a.task.task_arn.as_deref().unwrap_or(""), container = name, %status, "health changed");
}

async fn report_container(shared: &Shared, a: &TaskAssignment, name: &str, e: &Ended) {
    let req = wire::SubmitContainerStateChangeRequest {
        cluster: Some(shared.cluster.clone()),
        task: a.task.task_arn.clone(),
        container_name: Some(name.to_owned()),
        status: Some("STOPPED".into()),
        exit_code: e.exit_code,
        reason: e.reason.clone(),
        ..Default::default()
    };
    let client = shared.client.clone();
    deliver("container report", || {
        client.submit_container_state_change(&req)
    })
    .await;
}

async fn report_stopped(
    shared: &Shared,
    a: &TaskAssignment,
    reason: &str,
    exits: &BTreeMap<String, Ended>,
) {
    crate::task_network::teardown(
        shared,
        task_id(a.task.task_arn.as_deref().unwrap_or_default()),
    )
    .await;
    let mut req = base_request(shared, a);
    req.status = Some("STOPPED".into());
    req.reason = Some(reason.to_owned());
    req.execution_stopped_at = Some(now());
    req.containers = Some(
        a.task_definition
            .container_definitions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|c| {
                let name = c.name.clone().unwrap_or_default();
                let e = exits.get(&name).cloned().unwrap_or_default();
                wire::ContainerStateChange {
                    container_name: Some(name),
                    status: Some("STOPPED".into()),
                    exit_code: e.exit_code,
                    reason: e
                        .reason
                        .or_else(|| (exits.is_empty()).then(|| reason.to_owned())),
                    ..Default::default()
                }
            })
            .collect(),
    );
    let client = shared.client.clone();
    deliver("STOPPED report", || client.submit_task_state_change(&req)).await;
    let arn = a.task.task_arn.clone().unwrap_or_default();
    if let Err(e) = shared.update_state(|s| {
        s.tasks.remove(&arn);
    }) {
        tracing::warn!(error = %e, "could not drop the task's record");
    }
    tracing::info!(task = %arn, %reason, "task stopped");
}
