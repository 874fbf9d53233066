//! Running one task: pull, create, start (in `dependsOn` order), report RUNNING, wait for
//! an exit or a stop request, stop the rest, report STOPPED. Every way a task ends is a
//! [`TaskEnd`] (a failure to start, a [`TaskError`]), every abnormal container end a
//! [`ContainerError`]; [`crate::error`] turns them into ECS's words. Nothing here can
//! crash the agent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model::agent::TaskAssignment;
use model::lifecycle::TaskStatus;
use model::wire;
use runtime::ContainerRuntime;
use runtime::types::{ContainerId, ContainerState, ExitStatus, ImageRef, PullPolicy, RegistryAuth};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::definition::{container_spec, containers_in_start_order};
use crate::dependencies::{self, Observed, Verdict};
use crate::error::{AgentError, ApiCode, ContainerError, TaskEnd, TaskError};
use crate::health::{CheckSettings, Tracker, run_checks};
use crate::local_state::{LocalState, LocalTask};

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
    /// Held while a change to `state` is being saved, so that saves reach the disk in
    /// the order the changes were made.
    pub save_order: tokio::sync::Mutex<()>,
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
    /// The name servers of tasks whose containers set no `dnsServers` (`--task-dns`;
    /// empty: their image's `/etc/resolv.conf`). See [`crate::task_dns`].
    pub task_dns: Vec<std::net::IpAddr>,
    /// The node's Service Connect (routes, alias addresses, proxy, hosts files).
    pub service_connect: Arc<crate::service_connect::ServiceConnect>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Changes the persisted state and saves it. The disk write (an fsync) runs off the
    /// executor; saves run one at a time in the order of their changes, so the file never
    /// goes back to an older state.
    pub async fn update_state(&self, f: impl FnOnce(&mut LocalState)) -> Result<(), AgentError> {
        let _order = self.save_order.lock().await;
        let snapshot = {
            let mut s = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut s);
            s.clone()
        };
        let dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || snapshot.save(&dir))
            .await
            .unwrap_or_else(|e| {
                Err(AgentError::State {
                    path: self.data_dir.display().to_string(),
                    message: format!("the save was cancelled: {e}"),
                })
            })
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
            .then(|| ContainerError::OutOfMemory.reason()),
    }
}

/// A container whose exit could not be observed.
fn unobserved(e: &ContainerError) -> Ended {
    Ended {
        exit_code: None,
        reason: Some(e.reason()),
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
    let arn = a.task.task_arn.as_deref().unwrap_or_default().to_owned();
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
                // Its namespace's routes again, the proxy's listeners back, its hosts
                // file rewritten in place; a failure leaves the task running on its
                // current names while the refresh loop keeps trying.
                if let Some(sc) = &a.service_connect
                    && let Err(e) = shared
                        .service_connect
                        .ensure_task(&task_id, &sc.namespace)
                        .await
                {
                    tracing::warn!(task = %arn, error = %e, "could not restore the task's Service Connect aliases");
                }
                r
            }
            None => {
                report_stopped(&shared, &a, &TaskEnd::ContainersLost, &BTreeMap::new()).await;
                return;
            }
        }
    } else {
        if *stop.borrow() {
            report_stopped(&shared, &a, &TaskEnd::StoppedBeforeStart, &BTreeMap::new()).await;
            return;
        }
        match start(&shared, &a, &task_id, &defs, &stop_timeout, &stop).await {
            Ok(r) => r,
            Err(e) => {
                report_stopped(&shared, &a, &e.into(), &BTreeMap::new()).await;
                return;
            }
        }
    };
    if shared.local_task(&arn).and_then(|t| t.reported()) != Some(TaskStatus::Running) {
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
    let end = loop {
        tokio::select! {
            next = waits.join_next() => {
                let Some(Ok((name, result))) = next else { break TaskEnd::AllContainersExited };
                let e = match result { Ok(st) => ended(&st), Err(err) => unobserved(&ContainerError::Wait(err)) };
                let essential = running.containers.iter().any(|(n, _, ess, _)| *n == name && *ess);
                exits.insert(name.clone(), e.clone());
                if essential {
                    break TaskEnd::EssentialContainerExited { container: name };
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
                    break TaskEnd::StopRequested { reason: a.task.stopped_reason.clone() };
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
                        unobserved(&ContainerError::Stop(err))
                    }
                },
                Err(_) => unobserved(&ContainerError::Stop(err)),
            },
        };
        exits.insert(name.clone(), e);
    }
    waits.abort_all();
    checks.abort_all();
    report_stopped(&shared, &a, &end, &exits).await;
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
) -> Result<Running, TaskError> {
    let arn = a.task.task_arn.as_deref().unwrap_or_default().to_owned();
    // Pull every image first.
    let pull_started = now();
    for c in defs {
        let container = c.name.clone().unwrap_or_default();
        let image = match ImageRef::parse(c.image.as_deref().unwrap_or("")) {
            Ok(image) => image,
            Err(source) => return Err(TaskError::InvalidImage { container, source }),
        };
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
            .map_err(|source| TaskError::Pull { container, source })?;
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
        .await
        .map_err(|e| TaskError::RecordContainers(Box::new(e)))?;
    let network = crate::task_network::setup(shared, a, task_id)
        .await
        .map_err(TaskError::Network)?;
    // Service Connect: the names before the containers (their /etc/hosts mount needs the
    // file). On failure the task's networking goes with the STOPPED report.
    if let Some(sc) = &a.service_connect {
        shared
            .service_connect
            .ensure_task(task_id, &sc.namespace)
            .await
            .map_err(TaskError::ServiceConnect)?;
    }
    let mut containers = Vec::new();
    for (i, c) in defs.iter().enumerate() {
        let spec = container_spec(shared, a, task_id, i, c)?;
        if let Err(source) = shared.runtime.create_container(&spec).await {
            cleanup(shared, &containers).await;
            return Err(TaskError::Create {
                container: c.name.clone().unwrap_or_default(),
                source,
            });
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
                .map_err(|source| TaskError::Start {
                    container: name.clone(),
                    source,
                }),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            for (_, started, _, timeout) in started {
                let _ = shared.runtime.stop_container(started, *timeout).await;
            }
            cleanup(shared, &containers).await;
            return Err(e);
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
) -> Result<(), TaskError> {
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
                .ok_or_else(|| TaskError::NoHealthCheck {
                    container: name.to_owned(),
                    dependency: dep.clone(),
                })?;
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
                return Err(TaskError::DependencyFailed {
                    container: name.to_owned(),
                    why,
                });
            }
            Verdict::Wait => {}
        }
        if *stop.borrow() {
            return Err(TaskError::StoppedWhileWaiting {
                container: name.to_owned(),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TaskError::DependencyTimeout {
                container: name.to_owned(),
                timeout,
            });
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
            Err(AgentError::Api {
                code: code @ (ApiCode::InvalidParameter | ApiCode::ClusterNotFound),
                message,
            }) => {
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
        task: a.task.task_arn.as_deref().map(str::to_owned),
        ..Default::default()
    }
}

async fn report_running(shared: &Shared, a: &TaskAssignment, running: &Running) {
    let mut req = base_request(shared, a);
    req.status = Some(TaskStatus::Running.into());
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
                status: Some(TaskStatus::Running.into()),
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
    let arn = a.task.task_arn.as_deref().unwrap_or_default().to_owned();
    if let Err(e) = shared
        .update_state(|s| {
            if let Some(t) = s.tasks.get_mut(&arn) {
                t.reported = Some(TaskStatus::Running.into());
            }
        })
        .await
    {
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
        task: a.task.task_arn.as_deref().map(str::to_owned),
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
        task: a.task.task_arn.as_deref().map(str::to_owned),
        container_name: Some(name.to_owned()),
        status: Some(TaskStatus::Stopped.into()),
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
    end: &TaskEnd,
    exits: &BTreeMap<String, Ended>,
) {
    let reason = end.reason();
    crate::task_network::teardown(
        shared,
        task_id(a.task.task_arn.as_deref().unwrap_or_default()),
    )
    .await;
    let mut req = base_request(shared, a);
    req.status = Some(TaskStatus::Stopped.into());
    req.reason = Some(reason.clone());
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
                    status: Some(TaskStatus::Stopped.into()),
                    exit_code: e.exit_code,
                    reason: e
                        .reason
                        .or_else(|| (exits.is_empty()).then(|| reason.clone())),
                    ..Default::default()
                }
            })
            .collect(),
    );
    let client = shared.client.clone();
    deliver("STOPPED report", || client.submit_task_state_change(&req)).await;
    let arn = a.task.task_arn.as_deref().unwrap_or_default().to_owned();
    if let Err(e) = shared
        .update_state(|s| {
            s.tasks.remove(&arn);
        })
        .await
    {
        tracing::warn!(error = %e, "could not drop the task's record");
    }
    let (stop_code, _) = end.ecs();
    tracing::info!(task = %arn, %reason, ?stop_code, "task stopped");
}
