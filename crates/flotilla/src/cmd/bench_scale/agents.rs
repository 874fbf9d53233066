//! The simulated agents: each registers like the real agent, long-polls
//! `FlotillaAgentV1.PollTasks`, and reports its tasks RUNNING and STOPPED.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use model::agent::{AGENT_TARGET_PREFIX, ContainerHealth, PollTasksRequest, ReportHealthRequest};
use model::lifecycle::TaskStatus;
use model::wire;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use tokio::sync::Semaphore;

use super::*;

/// What PollTasks answers, as far as an agent that runs nothing needs it.
#[derive(Deserialize)]
pub(super) struct PollAnswer {
    pub(super) digest: String,
    #[serde(default)]
    pub(super) tasks: Vec<AssignmentLite>,
    /// The brief answer to `omitUnchanged`: `tasks` left out, nothing changed.
    #[serde(default)]
    pub(super) unchanged: bool,
}

#[derive(Deserialize)]
pub(super) struct AssignmentLite {
    pub(super) task: TaskLite,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TaskLite {
    pub(super) task_arn: Option<String>,
    pub(super) desired_status: Option<String>,
    pub(super) last_status: Option<String>,
    pub(super) group: Option<String>,
    pub(super) containers: Option<Vec<ContainerLite>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ContainerLite {
    pub(super) name: Option<String>,
    pub(super) network_bindings: Option<Vec<wire::NetworkBinding>>,
}

/// The service whose new task the reconcile measurement waits for.
pub(super) struct Track {
    pub(super) group: String,
    pub(super) seen: Option<Instant>,
    pub(super) running: Option<Instant>,
}

/// State shared by every simulated agent.
pub(super) struct Sim {
    pub(super) http: reqwest::Client,
    pub(super) endpoint: String,
    pub(super) cluster: String,
    pub(super) poll_target: String,
    pub(super) polls_in_flight: Semaphore,
    pub(super) reports_in_flight: Semaphore,
    pub(super) wait_seconds: u32,
    pub(super) instance_cpu: i64,
    pub(super) instance_memory: i64,
    pub(super) health_check: bool,
    pub(super) stopping: AtomicBool,
    pub(super) registered: AtomicU64,
    /// Tasks reported RUNNING and not since reported STOPPED.
    pub(super) running: AtomicI64,
    /// Distinct tasks handed to agents.
    pub(super) seen: AtomicU64,
    /// STOPPED reports delivered.
    pub(super) stopped: AtomicU64,
    /// Poll answers, and those whose digest differed from the one sent.
    pub(super) polls: AtomicU64,
    pub(super) changed: AtomicU64,
    pub(super) poll_errors: AtomicU64,
    /// Reports that failed and were sent again, and reports given up on.
    pub(super) report_retries: AtomicU64,
    pub(super) report_errors: AtomicU64,
    pub(super) first_error: Mutex<Option<String>>,
    pub(super) track: Mutex<Option<Track>>,
}

impl Sim {
    pub(super) fn note_error(&self, e: String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(e);
        }
    }

    pub(super) fn first_error(&self) -> String {
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map_or_else(String::new, |e| format!("; first agent error: {e}"))
    }

    pub(super) fn note(&self, group: Option<&str>, running: bool) {
        let Some(group) = group else { return };
        let mut track = self.track.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = track.as_mut().filter(|t| t.group == group) {
            let at = if running { &mut t.running } else { &mut t.seen };
            at.get_or_insert_with(Instant::now);
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Sends a report as the real agent's `deliver` does: retried (backing off up to
    /// 10 s) until it is answered, unless the answer says it can never succeed
    /// (InvalidParameterException, ClusterNotFoundException) or the bench stops.
    pub(super) async fn deliver(&self, op: &str, target: &str, body: Vec<u8>) -> bool {
        let mut backoff = Duration::from_millis(200);
        loop {
            if self.stopping() {
                return false;
            }
            let result: Result<IgnoredAny, CallError> = {
                let Ok(_slot) = self.reports_in_flight.acquire().await else {
                    return false;
                };
                call(
                    &self.http,
                    &self.endpoint,
                    target,
                    body.clone(),
                    Duration::from_secs(60),
                )
                .await
            };
            match result {
                Ok(_) => return true,
                Err(e @ CallError::Api { .. }) if e.is_final() => {
                    self.report_errors.fetch_add(1, Ordering::Relaxed);
                    self.note_error(format!("{op}: {e}"));
                    return false;
                }
                Err(e) => {
                    self.report_retries.fetch_add(1, Ordering::Relaxed);
                    self.note_error(format!("{op} (retried): {e}"));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

pub(super) fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// RegisterContainerInstance as the real agent sends it; the instance's ARN.
pub(super) async fn register(sim: &Sim, n: usize) -> Option<String> {
    let zone = ZONES[n % ZONES.len()];
    let int = |name: &str, v: i64| wire::Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(i32::try_from(v).unwrap_or(i32::MAX)),
        ..Default::default()
    };
    let ports = |name: &str, p: &[&str]| wire::Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(p.iter().map(|s| (*s).to_owned()).collect()),
        ..Default::default()
    };
    let attr = |name: &str, value: Option<&str>| wire::Attribute {
        name: Some(name.into()),
        value: value.map(str::to_owned),
        ..Default::default()
    };
    let req = wire::RegisterContainerInstanceRequest {
        cluster: Some(sim.cluster.clone()),
        instance_identity_document: Some(
            json!({
                "instanceId": format!("i-scale{n:010}"),
                "availabilityZone": zone,
                "instanceType": "flotilla-node",
                "region": REGION,
            })
            .to_string(),
        ),
        total_resources: Some(vec![
            int("CPU", sim.instance_cpu),
            int("MEMORY", sim.instance_memory),
            ports("PORTS", &["22"]),
            ports("PORTS_UDP", &[]),
        ]),
        version_info: Some(wire::VersionInfo {
            agent_version: Some(format!("{}-bench-scale", env!("CARGO_PKG_VERSION"))),
            agent_hash: None,
            docker_version: Some("containerd".into()),
        }),
        attributes: Some(vec![
            attr("ecs.availability-zone", Some(zone)),
            attr("flotilla.dynamic-port-range", Some("49153-65535")),
            attr("ecs.capability.container-health-check", None),
        ]),
        ..Default::default()
    };
    let body = serde_json::to_vec(&req).ok()?;
    let target = ecs("RegisterContainerInstance");
    let mut backoff = Duration::from_millis(200);
    while !sim.stopping() {
        let result: Result<wire::RegisterContainerInstanceResponse, CallError> = {
            let _slot = sim.reports_in_flight.acquire().await.ok()?;
            call(
                &sim.http,
                &sim.endpoint,
                &target,
                body.clone(),
                Duration::from_secs(60),
            )
            .await
        };
        match result {
            Ok(r) => {
                return r
                    .container_instance
                    .and_then(|c| c.container_instance_arn)
                    .or_else(|| {
                        sim.note_error("RegisterContainerInstance: no ARN in the answer".into());
                        None
                    });
            }
            Err(e @ CallError::Api { .. }) if e.is_final() => {
                sim.note_error(format!("RegisterContainerInstance: {e}"));
                return None;
            }
            Err(e) => {
                sim.note_error(format!("RegisterContainerInstance (retried): {e}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    None
}

/// One task as its agent knows it.
#[derive(Default)]
pub(super) struct Local {
    pub(super) run_sent: bool,
    pub(super) stop_sent: bool,
    /// Whether its RUNNING report was delivered (and no STOPPED one yet); both reports
    /// of a task take this lock, so they count in order.
    pub(super) reported: Arc<tokio::sync::Mutex<bool>>,
}

pub(super) async fn report_running(
    sim: Arc<Sim>,
    arn: String,
    group: Option<String>,
    containers: Vec<ContainerLite>,
    reported: Arc<tokio::sync::Mutex<bool>>,
) {
    let mut reported = reported.lock().await;
    let id = arn.rsplit('/').next().unwrap_or_default().to_owned();
    let now = now_secs();
    let names: Vec<String> = containers.iter().filter_map(|c| c.name.clone()).collect();
    let req = wire::SubmitTaskStateChangeRequest {
        cluster: Some(sim.cluster.clone()),
        task: Some(arn.clone()),
        status: Some(TaskStatus::Running.into()),
        pull_started_at: Some(now),
        pull_stopped_at: Some(now),
        containers: Some(
            containers
                .into_iter()
                .map(|c| wire::ContainerStateChange {
                    runtime_id: Some(format!("{id}-{}", c.name.as_deref().unwrap_or_default())),
                    container_name: c.name,
                    status: Some(TaskStatus::Running.into()),
                    network_bindings: c.network_bindings,
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };
    let Ok(body) = serde_json::to_vec(&req) else {
        return;
    };
    if !sim
        .deliver(
            "SubmitTaskStateChange RUNNING",
            &ecs("SubmitTaskStateChange"),
            body,
        )
        .await
    {
        return;
    }
    *reported = true;
    sim.running.fetch_add(1, Ordering::Relaxed);
    sim.note(group.as_deref(), true);
    if sim.health_check {
        let req = ReportHealthRequest {
            cluster: Some(sim.cluster.clone()),
            task: Some(arn),
            containers: names
                .into_iter()
                .map(|n| ContainerHealth {
                    container_name: n,
                    health_status: wire::HealthStatus::Healthy,
                })
                .collect(),
        };
        if let Ok(body) = serde_json::to_vec(&req) {
            sim.deliver(
                "ReportHealth",
                &format!("{AGENT_TARGET_PREFIX}.ReportHealth"),
                body,
            )
            .await;
        }
    }
}

pub(super) async fn report_stopped(
    sim: Arc<Sim>,
    arn: String,
    names: Vec<String>,
    reported: Arc<tokio::sync::Mutex<bool>>,
) {
    let mut reported = reported.lock().await;
    let now = now_secs();
    let req = wire::SubmitTaskStateChangeRequest {
        cluster: Some(sim.cluster.clone()),
        task: Some(arn),
        status: Some(TaskStatus::Stopped.into()),
        reason: Some("Task stopped as asked (flotilla bench scale)".into()),
        execution_stopped_at: Some(now),
        containers: Some(
            names
                .into_iter()
                .map(|n| wire::ContainerStateChange {
                    container_name: Some(n),
                    status: Some(TaskStatus::Stopped.into()),
                    exit_code: Some(0),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };
    let Ok(body) = serde_json::to_vec(&req) else {
        return;
    };
    if sim
        .deliver(
            "SubmitTaskStateChange STOPPED",
            &ecs("SubmitTaskStateChange"),
            body,
        )
        .await
    {
        sim.stopped.fetch_add(1, Ordering::Relaxed);
        if std::mem::replace(&mut *reported, false) {
            sim.running.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Acts on one assignment: starts (reports RUNNING) what is new and meant to run, stops
/// (reports STOPPED) what is meant to stop, forgets what is no longer assigned.
pub(super) fn reconcile(
    sim: &Arc<Sim>,
    local: &mut HashMap<String, Local>,
    tasks: Vec<AssignmentLite>,
) {
    let mut old = std::mem::take(local);
    for AssignmentLite { task: t } in tasks {
        let Some(arn) = t.task_arn else { continue };
        let mut l = old.remove(&arn).unwrap_or_else(|| {
            sim.seen.fetch_add(1, Ordering::Relaxed);
            sim.note(t.group.as_deref(), false);
            Local::default()
        });
        let wants_run = t.desired_status.as_deref() == Some(TaskStatus::Running.as_str());
        let names: Vec<String> = t
            .containers
            .iter()
            .flatten()
            .filter_map(|c| c.name.clone())
            .collect();
        if wants_run && !l.run_sent {
            l.run_sent = true;
            if t.last_status.as_deref() == Some(TaskStatus::Running.as_str()) {
                // Already running (an agent that restarted adopts it).
            } else {
                tokio::spawn(report_running(
                    sim.clone(),
                    arn.clone(),
                    t.group,
                    t.containers.unwrap_or_default(),
                    l.reported.clone(),
                ));
            }
        } else if !wants_run && !l.stop_sent {
            l.stop_sent = true;
            tokio::spawn(report_stopped(
                sim.clone(),
                arn.clone(),
                names,
                l.reported.clone(),
            ));
        }
        local.insert(arn, l);
    }
}

/// One simulated agent: register, then long-poll and act until the bench stops.
pub(super) async fn agent(sim: Arc<Sim>, n: usize) {
    let Some(arn) = register(&sim, n).await else {
        return;
    };
    sim.registered.fetch_add(1, Ordering::Relaxed);
    let mut digest: Option<String> = None;
    let mut local: HashMap<String, Local> = HashMap::new();
    let mut backoff = Duration::from_millis(200);
    let poll_timeout = Duration::from_secs(u64::from(sim.wait_seconds) + 30);
    while !sim.stopping() {
        let req = PollTasksRequest {
            cluster: Some(sim.cluster.clone()),
            container_instance: Some(arn.clone()),
            known_digest: digest.clone(),
            wait_seconds: Some(sim.wait_seconds),
            // As the real agent asks.
            omit_unchanged: Some(true),
        };
        let Ok(body) = serde_json::to_vec(&req) else {
            return;
        };
        let answer: Result<PollAnswer, CallError> = {
            let Ok(_slot) = sim.polls_in_flight.acquire().await else {
                return;
            };
            call(
                &sim.http,
                &sim.endpoint,
                &sim.poll_target,
                body,
                poll_timeout,
            )
            .await
        };
        match answer {
            Ok(a) => {
                backoff = Duration::from_millis(200);
                sim.polls.fetch_add(1, Ordering::Relaxed);
                if digest.as_ref().is_some_and(|d| *d != a.digest) {
                    sim.changed.fetch_add(1, Ordering::Relaxed);
                }
                digest = Some(a.digest);
                if !a.unchanged {
                    reconcile(&sim, &mut local, a.tasks);
                }
            }
            Err(e) => {
                if sim.stopping() {
                    return;
                }
                sim.poll_errors.fetch_add(1, Ordering::Relaxed);
                sim.note_error(format!("PollTasks: {e}"));
                digest = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
