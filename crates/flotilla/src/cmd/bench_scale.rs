//! `flotilla bench scale`: the control plane at the size ECS promises.
//!
//! Starts `flotilla server` on a fresh data directory (or uses `--endpoint`), then drives
//! it with `--instances` **simulated agents**, all in this process on one tokio runtime.
//! Each registers as the real agent does (RegisterContainerInstance with CPU, MEMORY,
//! PORTS and PORTS_UDP, an identity document and `ecs.availability-zone` spread over
//! three zones), long-polls `FlotillaAgentV1.PollTasks` with the real request shape and
//! wait, reports every task it is given as RUNNING (SubmitTaskStateChange with its
//! containers, as the real agent's supervisor does) and as STOPPED once its desired
//! status is STOPPED. It then creates `--services` services whose desired counts add up
//! to `--tasks`, waits until every task runs, and measures:
//!
//! - `rss_mb`: the server's resident memory (VmRSS) with everything in place;
//! - `agent_cpu_pct`: the server's CPU (utime + stime) over a quiet window in which
//!   only the agents poll, as a percentage of one core;
//! - `reconcile_p99_ms`: from an UpdateService (desiredCount + 1 on a random service)
//!   to the new task appearing (a simulated agent is handed it, or DescribeServices
//!   counts it, whichever comes first), p99;
//! - `list_tasks_p99_ms`: ListTasks page latency (100 a page, walking the listing).
//!
//! **Connections.** The server speaks HTTP/1.1, so each open long poll holds one
//! connection. The agents share one keep-alive pool of at most `--connections`
//! connections (default 4000, under the server's default `--max-connections` of 4096;
//! a server this bench starts gets `--max-connections` of `--connections` + 256): one
//! semaphore bounds the polls in flight, a second, small one bounds the reports and
//! registrations, so reports never wait behind 20-second polls. With more instances than
//! poll slots the agents take turns: each poll then asks for a proportionally shorter
//! wait (`20 s × slots / instances`, at least 1 s), so every agent still polls about
//! every 20 s and the server answers as many polls per second as with one connection
//! per agent. `--connections` above `--instances` gives every agent its own connection,
//! as real nodes have.
//!
//! Requests carry a fixed, unsigned `Authorization` header (the server started here
//! accepts any signature); the real agent signs with SigV4, which costs the bench's CPU,
//! not the server's.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use model::agent::{
    AGENT_TARGET_PREFIX, ContainerHealth, MAX_WAIT_SECONDS, PollTasksRequest, ReportHealthRequest,
};
use model::lifecycle::TaskStatus;
use model::wire;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::cmd::bench::percentile;

/// Arguments of `flotilla bench scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleBenchArgs {
    /// Measure a running server instead of starting one (it must accept unsigned
    /// requests, i.e. run without `--credentials`).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// With `--endpoint`: the server's process id, for its RSS and CPU (same machine).
    #[arg(long, requires = "endpoint")]
    pub server_pid: Option<u32>,
    /// Simulated container instances (agents).
    #[arg(long, default_value_t = 10_000)]
    pub instances: usize,
    /// Tasks in all, spread over the services.
    #[arg(long, default_value_t = 100_000)]
    pub tasks: usize,
    /// Services; their desired counts add up to `--tasks`.
    #[arg(long, default_value_t = 1_000)]
    pub services: usize,
    /// Most HTTP connections the simulated agents open (one keep-alive pool).
    #[arg(long, default_value_t = 4_000)]
    pub connections: usize,
    /// Seconds to let the server settle after every task runs (deployments complete
    /// 40 s after their tasks start) before memory and CPU are read.
    #[arg(long, default_value_t = 45.0)]
    pub settle_seconds: f64,
    /// After `--settle-seconds`, keep waiting (at most this many more seconds) until the
    /// server's writer thread — the service controller's passes and every write — uses
    /// under 5 % of a core over 5 s, so the quiet window measures the agents' polling.
    #[arg(long, default_value_t = 180.0)]
    pub settle_max_extra_seconds: f64,
    /// Seconds of the quiet window over which the server's CPU is measured.
    #[arg(long, default_value_t = 20.0)]
    pub quiet_seconds: f64,
    /// UpdateService calls (desiredCount + 1) for the reconcile latency.
    #[arg(long, default_value_t = 50)]
    pub updates: usize,
    /// Most ListTasks pages (of 100) walked for the listing latency.
    #[arg(long, default_value_t = 1_000)]
    pub list_pages: usize,
    /// Give the task definition a container health check; agents then report HEALTHY
    /// (FlotillaAgentV1.ReportHealth) after RUNNING, as the real agent does.
    #[arg(long)]
    pub health_check: bool,
    /// Give up when a phase makes no progress for this many seconds.
    #[arg(long, default_value_t = 300)]
    pub stall_seconds: u64,
    /// Give up when the whole run takes longer than this many seconds.
    #[arg(long, default_value_t = 7_200)]
    pub timeout: u64,
}

const REGION: &str = "us-east-1";
const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const AUTH: &str = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00";
/// What one task reserves; instances are sized in multiples of it.
const TASK_CPU: i64 = 128;
const TASK_MEMORY: i64 = 256;
/// How long one update may take to show its new task before it counts as timed out.
const UPDATE_DEADLINE: Duration = Duration::from_secs(30);

fn ecs(op: &str) -> String {
    format!("{}.{op}", wire::TARGET_PREFIX)
}

// ----- HTTP ------------------------------------------------------------------------------

#[derive(Debug)]
enum CallError {
    /// No answer (connection refused or reset, timeout, unreadable answer).
    Transport(String),
    /// An error answer.
    Api { code: String, message: String },
}

impl CallError {
    /// An answer that retrying cannot change (the real agent gives up on these).
    fn is_final(&self) -> bool {
        matches!(self, CallError::Api { code, .. }
            if code == "InvalidParameterException" || code == "ClusterNotFoundException")
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(m) => write!(f, "{m}"),
            CallError::Api { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

async fn call<T: DeserializeOwned>(
    http: &reqwest::Client,
    endpoint: &str,
    target: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<T, CallError> {
    let resp = http
        .post(endpoint)
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", AUTH)
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| CallError::Transport(chain(&e)))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| CallError::Transport(chain(&e)))?;
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(CallError::Api {
            code: v["__type"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), str::to_owned),
            message: v["message"].as_str().unwrap_or_default().to_owned(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| CallError::Transport(format!("bad answer: {e}")))
}

// ----- the server ------------------------------------------------------------------------

/// The server under test: one this bench started, or one at `--endpoint`.
struct Server {
    endpoint: String,
    pid: Option<u32>,
    child: Mutex<Option<Child>>,
    log: Option<PathBuf>,
    dir: Option<tempfile::TempDir>,
}

impl Server {
    fn start(args: &ScaleBenchArgs) -> anyhow::Result<Server> {
        if let Some(endpoint) = &args.endpoint {
            return Ok(Server {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                pid: args.server_pid,
                child: Mutex::new(None),
                log: None,
                dir: None,
            });
        }
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = dir.path().join("server.log");
        let child = Command::new(std::env::current_exe()?)
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            // Room for every agent connection plus the bench's own clients.
            .arg("--max-connections")
            .arg((args.connections + 256).max(4096).to_string())
            .env("FLOTILLA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start flotilla server")?;
        Ok(Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            pid: Some(child.id()),
            child: Mutex::new(Some(child)),
            log: Some(log),
            dir: Some(dir),
        })
    }

    /// Bytes the server's data directory holds (only for a server this bench started).
    fn store_bytes(&self) -> Option<u64> {
        let dir = self.dir.as_ref()?.path().join("data");
        let entries = std::fs::read_dir(dir).ok()?;
        Some(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum(),
        )
    }

    /// Fails with a one-line reason when the server has died.
    fn check(&self) -> anyhow::Result<()> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let last = self
                    .log
                    .as_ref()
                    .and_then(|p| std::fs::File::open(p).ok())
                    .and_then(|f| {
                        std::io::BufReader::new(f)
                            .lines()
                            .map_while(Result::ok)
                            .filter(|l| !l.trim().is_empty())
                            .last()
                    })
                    .unwrap_or_else(|| "(nothing logged)".into());
                bail!("the server died ({status}); its last log line: {last}");
            }
        } else if let Some(pid) = self.pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            bail!("the server (pid {pid}) is gone");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The server's CPU ticks (utime + stime) and memory, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct ProcSample {
    cpu_ticks: u64,
    rss_kb: u64,
    anon_kb: u64,
    file_kb: u64,
    hwm_kb: u64,
}

fn proc_sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_ticks,
        rss_kb: field("VmRSS:"),
        anon_kb: field("RssAnon:"),
        file_kb: field("RssFile:"),
        hwm_kb: field("VmHWM:"),
    })
}

/// CPU ticks of the server's writer thread (`flotilla-writer`: every write, and the
/// service controller's passes, run there), from `/proc/<pid>/task`; the API threads
/// (request handling, the agents' polls) are the process's ticks less these.
fn thread_ticks(pid: &str) -> Option<u64> {
    let mut writer = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(stat) = std::fs::read_to_string(entry.ok()?.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if head.ends_with("(flotilla-writer") {
            writer += ticks;
        }
    }
    Some(writer)
}

/// Raises the soft limit on open files to the hard one; fails when even that is below
/// what the agents' connections need (the server, our child, inherits the limit).
fn raise_nofile(need: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    if hard < need {
        bail!(
            "the open-files limit ({hard}) is below the {need} the agents' connections need: lower --connections or raise `ulimit -Hn`"
        );
    }
    Ok(())
}

// ----- simulated agents ------------------------------------------------------------------

/// What PollTasks answers, as far as an agent that runs nothing needs it.
#[derive(Deserialize)]
struct PollAnswer {
    digest: String,
    #[serde(default)]
    tasks: Vec<AssignmentLite>,
    /// The brief answer to `omitUnchanged`: `tasks` left out, nothing changed.
    #[serde(default)]
    unchanged: bool,
}

#[derive(Deserialize)]
struct AssignmentLite {
    task: TaskLite,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskLite {
    task_arn: Option<String>,
    desired_status: Option<String>,
    last_status: Option<String>,
    group: Option<String>,
    containers: Option<Vec<ContainerLite>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerLite {
    name: Option<String>,
    network_bindings: Option<Vec<wire::NetworkBinding>>,
}

/// The service whose new task the reconcile measurement waits for.
struct Track {
    group: String,
    seen: Option<Instant>,
    running: Option<Instant>,
}

/// State shared by every simulated agent.
struct Sim {
    http: reqwest::Client,
    endpoint: String,
    cluster: String,
    poll_target: String,
    polls_in_flight: Semaphore,
    reports_in_flight: Semaphore,
    wait_seconds: u32,
    instance_cpu: i64,
    instance_memory: i64,
    health_check: bool,
    stopping: AtomicBool,
    registered: AtomicU64,
    /// Tasks reported RUNNING and not since reported STOPPED.
    running: AtomicI64,
    /// Distinct tasks handed to agents.
    seen: AtomicU64,
    /// STOPPED reports delivered.
    stopped: AtomicU64,
    /// Poll answers, and those whose digest differed from the one sent.
    polls: AtomicU64,
    changed: AtomicU64,
    poll_errors: AtomicU64,
    /// Reports that failed and were sent again, and reports given up on.
    report_retries: AtomicU64,
    report_errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    track: Mutex<Option<Track>>,
}

impl Sim {
    fn note_error(&self, e: String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            *first = Some(e);
        }
    }

    fn first_error(&self) -> String {
        self.first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map_or_else(String::new, |e| format!("; first agent error: {e}"))
    }

    fn note(&self, group: Option<&str>, running: bool) {
        let Some(group) = group else { return };
        let mut track = self.track.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = track.as_mut().filter(|t| t.group == group) {
            let at = if running { &mut t.running } else { &mut t.seen };
            at.get_or_insert_with(Instant::now);
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Sends a report as the real agent's `deliver` does: retried (backing off up to
    /// 10 s) until it is answered, unless the answer says it can never succeed
    /// (InvalidParameterException, ClusterNotFoundException) or the bench stops.
    async fn deliver(&self, op: &str, target: &str, body: Vec<u8>) -> bool {
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

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// RegisterContainerInstance as the real agent sends it; the instance's ARN.
async fn register(sim: &Sim, n: usize) -> Option<String> {
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
struct Local {
    run_sent: bool,
    stop_sent: bool,
    /// Whether its RUNNING report was delivered (and no STOPPED one yet); both reports
    /// of a task take this lock, so they count in order.
    reported: Arc<tokio::sync::Mutex<bool>>,
}

async fn report_running(
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

async fn report_stopped(
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
fn reconcile(sim: &Arc<Sim>, local: &mut HashMap<String, Local>, tasks: Vec<AssignmentLite>) {
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
async fn agent(sim: Arc<Sim>, n: usize) {
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

// ----- the driver ------------------------------------------------------------------------

/// The bench's own client of the ECS API (a small pool of its own).
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    endpoint: String,
}

impl Api {
    async fn call(&self, op: &str, body: &Value) -> anyhow::Result<Value> {
        call(
            &self.http,
            &self.endpoint,
            &ecs(op),
            serde_json::to_vec(body)?,
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{op}: {e}"))
    }
}

/// Deadlines, the server's health and the progress display, checked by every wait.
struct Run<'a> {
    server: &'a Server,
    deadline: Instant,
    started: Instant,
    bar: ProgressBar,
    stall: Duration,
}

impl Run<'_> {
    fn check(&self) -> anyhow::Result<()> {
        self.server.check()?;
        if Instant::now() > self.deadline {
            bail!(
                "the run took longer than --timeout ({} s)",
                (self.deadline - self.started).as_secs()
            );
        }
        Ok(())
    }

    /// A failed call: the server's death explains it best (a server on its way out
    /// closes its listener before it exits, so give it a moment).
    async fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        for _ in 0..30 {
            if let Err(dead) = self.server.check() {
                return dead;
            }
            if self.server.pid.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        e
    }

    /// An API call whose failure is explained by the server's death when it died.
    async fn call(&self, api: &Api, op: &str, body: &Value) -> anyhow::Result<Value> {
        match api.call(op, body).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.explain(e).await),
        }
    }

    fn phase(&self, msg: &str, len: u64) {
        self.bar.set_length(len.max(1));
        self.bar.set_position(0);
        self.bar.set_message(msg.to_owned());
        self.bar.reset_elapsed();
    }

    fn log(&self, line: &str) {
        let t = self.started.elapsed().as_secs_f64();
        if std::io::stderr().is_terminal() {
            self.bar.suspend(|| eprintln!("[{t:7.1} s] {line}"));
        } else {
            eprintln!("[{t:7.1} s] {line}");
        }
    }

    async fn sleep(&self, d: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.check()?;
            tokio::time::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(500)),
            )
            .await;
        }
        Ok(())
    }
}

/// Notices a phase that stopped moving.
struct Stall {
    best: i64,
    since: Instant,
}

impl Stall {
    fn new() -> Stall {
        Stall {
            best: i64::MIN,
            since: Instant::now(),
        }
    }

    fn stuck(&mut self, value: i64, limit: Duration) -> bool {
        if value > self.best {
            self.best = value;
            self.since = Instant::now();
        }
        self.since.elapsed() > limit
    }
}

/// Everything measured, for the table and the last line.
#[derive(Default)]
struct Figures {
    register_secs: f64,
    create_secs: f64,
    running_secs: f64,
    wait_seconds: u32,
    poll_slots: usize,
    rss: ProcSample,
    /// Bytes in the data directory of a server this bench started.
    store_bytes: Option<u64>,
    cpu_pct: f64,
    /// Of `cpu_pct`: the writer thread (writes, the controller's passes) and the rest.
    writer_cpu_pct: f64,
    api_cpu_pct: f64,
    /// Seconds waited after every task ran before the quiet window.
    settle_secs: f64,
    bench_cpu_pct: f64,
    quiet_secs: f64,
    quiet_polls: u64,
    quiet_changed: u64,
    /// Sorted latencies (µs).
    appeared: Vec<u64>,
    seen: Vec<u64>,
    running: Vec<u64>,
    update_answer: Vec<u64>,
    timeouts: usize,
    list: Vec<u64>,
    describe: Vec<u64>,
    listed: usize,
    stopped_reports: u64,
    poll_errors: u64,
    report_retries: u64,
    report_errors: u64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn int_of(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Tiny deterministic generator (xorshift64*): which service each update touches.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn service_name(i: usize) -> String {
    format!("svc-{i:05}")
}

#[allow(clippy::too_many_lines)]
async fn drive(args: &ScaleBenchArgs, server: &Server) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let run = Run {
        server,
        deadline: started + Duration::from_secs(args.timeout),
        started,
        bar,
        stall: Duration::from_secs(args.stall_seconds),
    };
    let mut fig = Figures::default();
    let api = Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?,
        endpoint: server.endpoint.clone(),
    };

    // The server answers.
    run.phase("starting the server", 1);
    let up = Instant::now() + Duration::from_secs(30);
    loop {
        run.check()?;
        let ok = api
            .http
            .get(format!("{}/healthz", server.endpoint))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        if Instant::now() > up {
            bail!(
                "the server at {} did not answer /healthz within 30 s",
                server.endpoint
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cluster = if args.endpoint.is_some() {
        format!("scale-{}", now_secs() as u64)
    } else {
        "scale".to_owned()
    };
    run.call(&api, "CreateCluster", &json!({"clusterName": cluster}))
        .await?;
    let mut container = json!({
        "name": "app", "image": "127.0.0.1:5000/busybox:latest", "essential": true,
        "cpu": TASK_CPU, "memory": TASK_MEMORY, "command": ["sleep", "86400"],
    });
    if args.health_check {
        container["healthCheck"] =
            json!({"command": ["CMD-SHELL", "true"], "interval": 30, "timeout": 5, "retries": 3});
    }
    run.call(
        &api,
        "RegisterTaskDefinition",
        &json!({"family": "scale", "containerDefinitions": [container]}),
    )
    .await?;

    // The agents.
    let reports = (args.connections / 16).clamp(8, 256);
    let poll_slots = args.connections - reports;
    let wait_seconds = if args.instances <= poll_slots {
        MAX_WAIT_SECONDS
    } else {
        let w = u64::from(MAX_WAIT_SECONDS) * poll_slots as u64 / args.instances as u64;
        u32::try_from(w.max(1)).unwrap_or(1)
    };
    fig.wait_seconds = wait_seconds;
    fig.poll_slots = poll_slots;
    // Room for twice the average number of tasks (at least 16) on every instance.
    let per_instance = (2 * args.tasks.div_ceil(args.instances)).max(16) as i64;
    let sim = Arc::new(Sim {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.connections)
            // Below the server's idle timeout (60 s), so the pool drops an idle
            // connection before the server closes it under a request being sent.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?,
        endpoint: server.endpoint.clone(),
        cluster: cluster.clone(),
        poll_target: format!("{AGENT_TARGET_PREFIX}.PollTasks"),
        polls_in_flight: Semaphore::new(poll_slots),
        reports_in_flight: Semaphore::new(reports),
        wait_seconds,
        instance_cpu: per_instance * TASK_CPU,
        instance_memory: per_instance * TASK_MEMORY,
        health_check: args.health_check,
        stopping: AtomicBool::new(false),
        registered: AtomicU64::new(0),
        running: AtomicI64::new(0),
        seen: AtomicU64::new(0),
        stopped: AtomicU64::new(0),
        polls: AtomicU64::new(0),
        changed: AtomicU64::new(0),
        poll_errors: AtomicU64::new(0),
        report_retries: AtomicU64::new(0),
        report_errors: AtomicU64::new(0),
        first_error: Mutex::new(None),
        track: Mutex::new(None),
    });
    let mut agents = tokio::task::JoinSet::new();
    let result = measure(args, &run, &api, &sim, &cluster, &mut agents, &mut fig).await;
    sim.stopping.store(true, Ordering::Relaxed);
    sim.polls_in_flight.close();
    sim.reports_in_flight.close();
    agents.abort_all();
    run.bar.finish_and_clear();
    fig.stopped_reports = sim.stopped.load(Ordering::Relaxed);
    fig.poll_errors = sim.poll_errors.load(Ordering::Relaxed);
    fig.report_errors = sim.report_errors.load(Ordering::Relaxed);
    fig.report_retries = sim.report_retries.load(Ordering::Relaxed);
    result.map(|()| fig)
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
async fn measure(
    args: &ScaleBenchArgs,
    run: &Run<'_>,
    api: &Api,
    sim: &Arc<Sim>,
    cluster: &str,
    agents: &mut tokio::task::JoinSet<()>,
    fig: &mut Figures,
) -> anyhow::Result<()> {
    // 1. Every agent registers and starts polling.
    let t = Instant::now();
    run.phase("registering instances", args.instances as u64);
    for n in 0..args.instances {
        agents.spawn(agent(sim.clone(), n));
    }
    let mut stall = Stall::new();
    loop {
        run.check()?;
        let n = sim.registered.load(Ordering::Relaxed);
        run.bar.set_position(n);
        if n as usize >= args.instances {
            break;
        }
        if stall.stuck(n as i64, run.stall) {
            bail!(
                "registration stalled at {n}/{} instances for {} s{}",
                args.instances,
                run.stall.as_secs(),
                sim.first_error()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fig.register_secs = t.elapsed().as_secs_f64();
    run.log(&format!(
        "{} instances registered in {:.1} s ({:.0}/s); polls of {} s over {} connections",
        args.instances,
        fig.register_secs,
        args.instances as f64 / fig.register_secs.max(1e-9),
        fig.wait_seconds,
        fig.poll_slots
    ));

    // 2. The services.
    let t = Instant::now();
    run.phase("creating services", args.services as u64);
    let counts: Vec<usize> = (0..args.services)
        .map(|i| args.tasks / args.services + usize::from(i < args.tasks % args.services))
        .collect();
    let mut creates = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counts = Arc::new(counts);
    for _ in 0..8 {
        let (api, next, counts, cluster) = (
            api.clone(),
            next.clone(),
            counts.clone(),
            cluster.to_owned(),
        );
        creates.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&desired) = counts.get(i) else {
                    return anyhow::Ok(());
                };
                api.call(
                    "CreateService",
                    &json!({
                        "cluster": cluster, "serviceName": service_name(i),
                        "taskDefinition": "scale", "desiredCount": desired, "launchType": "EC2",
                        "placementStrategy": [
                            {"type": "spread", "field": "attribute:ecs.availability-zone"},
                            {"type": "spread", "field": "instanceId"}
                        ],
                        "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100}
                    }),
                )
                .await?;
            }
        });
    }
    loop {
        run.check()?;
        run.bar
            .set_position((next.load(Ordering::Relaxed) as u64).min(args.services as u64));
        if creates.is_empty() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(200), creates.join_next()).await {
            Ok(Some(Ok(Ok(())))) | Err(_) => {}
            Ok(Some(Ok(Err(e)))) => return Err(run.explain(e).await),
            Ok(Some(Err(e))) => bail!("a CreateService worker failed: {e}"),
            Ok(None) => break,
        }
    }
    fig.create_secs = t.elapsed().as_secs_f64();
    run.log(&format!(
        "{} services created in {:.1} s",
        args.services, fig.create_secs
    ));

    // 3. Every task runs.
    run.phase("tasks RUNNING", args.tasks as u64);
    let mut stall = Stall::new();
    let target = args.tasks as i64;
    loop {
        run.check()?;
        let v = run
            .call(api, "DescribeClusters", &json!({"clusters": [cluster]}))
            .await?;
        let c = &v["clusters"][0];
        let (running, pending) = (
            int_of(&c["runningTasksCount"]),
            int_of(&c["pendingTasksCount"]),
        );
        let reported = sim.running.load(Ordering::Relaxed);
        run.bar
            .set_position(u64::try_from(running.max(0)).unwrap_or(0));
        if running == target && pending == 0 && reported == target {
            break;
        }
        if stall.stuck(running.max(reported), run.stall) {
            bail!(
                "tasks stalled at {running}/{target} RUNNING ({pending} pending, {reported} reported by agents, {} handed to agents) for {} s{}",
                sim.seen.load(Ordering::Relaxed),
                run.stall.as_secs(),
                sim.first_error()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    fig.running_secs = t.elapsed().as_secs_f64();
    run.log(&format!(
        "{} tasks RUNNING {:.1} s after the first CreateService ({:.0}/s)",
        args.tasks,
        fig.running_secs,
        args.tasks as f64 / fig.running_secs.max(1e-9)
    ));

    // 4. Memory, and CPU while only the agents poll.
    let pid = run.server.pid.map(|p| p.to_string());
    let t = Instant::now();
    if args.settle_seconds > 0.0 {
        run.phase("settling", 1);
        run.sleep(Duration::from_secs_f64(args.settle_seconds))
            .await?;
    }
    if let Some(pid) = pid
        .as_deref()
        .filter(|_| args.settle_max_extra_seconds > 0.0)
    {
        // The controller may still be finishing time-driven work (rollouts complete 40 s
        // after their tasks start): wait for its thread to go quiet, within bounds.
        run.phase("waiting for the server's writer thread to go quiet", 1);
        let until = Instant::now() + Duration::from_secs_f64(args.settle_max_extra_seconds);
        loop {
            let a = thread_ticks(pid);
            run.sleep(Duration::from_secs(5)).await?;
            let busy = match (a, thread_ticks(pid)) {
                (Some(w0), Some(w1)) => w1.saturating_sub(w0) as f64 / 100.0 / 5.0 * 100.0,
                _ => 0.0,
            };
            if busy < 5.0 {
                break;
            }
            if Instant::now() >= until {
                run.log(&format!(
                    "the writer thread still used {busy:.0} % of a core after the extra settle time; measuring anyway"
                ));
                break;
            }
        }
    }
    fig.settle_secs = t.elapsed().as_secs_f64();
    run.phase("quiet window: only the agents poll", 1);
    let sample = |pid: &Option<String>| pid.as_deref().and_then(proc_sample);
    let threads0 = pid.as_deref().and_then(thread_ticks);
    let before = sample(&pid);
    let me0 = proc_sample("self");
    let (polls0, changed0) = (
        sim.polls.load(Ordering::Relaxed),
        sim.changed.load(Ordering::Relaxed),
    );
    let t = Instant::now();
    run.sleep(Duration::from_secs_f64(args.quiet_seconds))
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let after = sample(&pid);
    let threads1 = pid.as_deref().and_then(thread_ticks);
    let me1 = proc_sample("self");
    fig.quiet_secs = secs;
    fig.quiet_polls = sim.polls.load(Ordering::Relaxed) - polls0;
    fig.quiet_changed = sim.changed.load(Ordering::Relaxed) - changed0;
    let pct = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
        (Some(a), Some(b)) => (b.cpu_ticks - a.cpu_ticks) as f64 / 100.0 / secs * 100.0,
        _ => f64::NAN,
    };
    fig.cpu_pct = pct(before, after);
    if let (Some(w0), Some(w1)) = (threads0, threads1) {
        // The rest is the process's CPU less the writer's: a thread that exited within
        // the window (tokio's idle blocking threads do) is gone from /proc/<pid>/task,
        // but its ticks still count in the process's.
        fig.writer_cpu_pct = w1.saturating_sub(w0) as f64 / 100.0 / secs * 100.0;
        fig.api_cpu_pct = (fig.cpu_pct - fig.writer_cpu_pct).max(0.0);
    }
    fig.bench_cpu_pct = pct(me0, me1);
    fig.rss = after.unwrap_or_default();
    fig.store_bytes = run.server.store_bytes();
    run.log(&format!(
        "server RSS {:.1} MB; CPU {:.2} % of a core over {secs:.1} s (writer thread {:.2} %, API threads {:.2} %; {} polls answered, {} with a change)",
        fig.rss.rss_kb as f64 / 1024.0,
        fig.cpu_pct,
        fig.writer_cpu_pct,
        fig.api_cpu_pct,
        fig.quiet_polls,
        fig.quiet_changed
    ));

    // 5. A change to a service, acted on.
    run.phase("UpdateService → new task", args.updates as u64);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut desired: Vec<usize> = (0..args.services)
        .map(|i| args.tasks / args.services + usize::from(i < args.tasks % args.services))
        .collect();
    let mut expected_running = target;
    let mut consecutive_timeouts = 0;
    for u in 0..args.updates {
        run.check()?;
        if consecutive_timeouts >= 3 {
            run.log(&format!(
                "3 updates in a row timed out: {} of {} updates measured",
                fig.appeared.len(),
                args.updates
            ));
            break;
        }
        let s = usize::try_from(rng.next() % args.services as u64).unwrap_or(0);
        let name = service_name(s);
        *sim.track.lock().unwrap_or_else(PoisonError::into_inner) = Some(Track {
            group: controlplane::task::service_group(&name),
            seen: None,
            running: None,
        });
        let want = desired[s] + 1;
        let t0 = Instant::now();
        run.call(
            api,
            "UpdateService",
            &json!({"cluster": cluster, "service": name, "desiredCount": want}),
        )
        .await?;
        fig.update_answer.push(micros(t0.elapsed()));
        desired[s] = want;
        expected_running += 1;
        let mut appeared: Option<Duration> = None;
        // DescribeServices counts a service's tasks by scanning the cluster's: probe
        // often at first, then less, so the bench's own probing stays a small load.
        let mut probe_every = Duration::from_millis(20);
        let mut next_probe = Instant::now();
        loop {
            run.check()?;
            let (seen, running) = {
                let track = sim.track.lock().unwrap_or_else(PoisonError::into_inner);
                track.as_ref().map_or((None, None), |t| (t.seen, t.running))
            };
            if appeared.is_none() {
                if let Some(at) = seen {
                    appeared = Some(at.saturating_duration_since(t0));
                } else if Instant::now() >= next_probe {
                    probe_every = (probe_every * 5 / 4).min(Duration::from_millis(250));
                    next_probe = Instant::now() + probe_every;
                    let v = run
                        .call(
                            api,
                            "DescribeServices",
                            &json!({"cluster": cluster, "services": [name]}),
                        )
                        .await?;
                    let svc = &v["services"][0];
                    if int_of(&svc["runningCount"]) + int_of(&svc["pendingCount"]) >= want as i64 {
                        appeared = Some(t0.elapsed());
                    }
                }
            }
            if let (Some(_), Some(seen), Some(running)) = (appeared, seen, running) {
                fig.seen.push(micros(seen.saturating_duration_since(t0)));
                fig.running
                    .push(micros(running.saturating_duration_since(t0)));
                consecutive_timeouts = 0;
                break;
            }
            if t0.elapsed() > UPDATE_DEADLINE {
                fig.timeouts += 1;
                consecutive_timeouts += 1;
                run.log(&format!(
                    "update {u}: service {name} showed no new RUNNING task within {} s",
                    UPDATE_DEADLINE.as_secs()
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fig.appeared
            .push(micros(appeared.unwrap_or(UPDATE_DEADLINE)));
        run.bar.set_position(u as u64 + 1);
    }
    *sim.track.lock().unwrap_or_else(PoisonError::into_inner) = None;
    for v in [
        &mut fig.appeared,
        &mut fig.seen,
        &mut fig.running,
        &mut fig.update_answer,
    ] {
        v.sort_unstable();
    }
    run.log(&format!(
        "{} updates: new task appeared p50 {:.1} ms, p99 {:.1} ms ({} timed out)",
        args.updates,
        percentile(&fig.appeared, 0.5),
        percentile(&fig.appeared, 0.99),
        fig.timeouts
    ));

    // 6. Listing a cluster with many tasks.
    let pages = expected_running.max(0).unsigned_abs().div_ceil(100);
    run.phase(
        "ListTasks pages + DescribeTasks",
        pages.min(args.list_pages as u64),
    );
    let mut token: Option<String> = None;
    for page in 0..args.list_pages {
        run.check()?;
        let mut body = json!({"cluster": cluster, "maxResults": 100});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let t = Instant::now();
        let v = run.call(api, "ListTasks", &body).await?;
        fig.list.push(micros(t.elapsed()));
        let arns: Vec<Value> = v["taskArns"].as_array().cloned().unwrap_or_default();
        fig.listed += arns.len();
        if !arns.is_empty() {
            let t = Instant::now();
            let d = run
                .call(
                    api,
                    "DescribeTasks",
                    &json!({"cluster": cluster, "tasks": arns}),
                )
                .await?;
            fig.describe.push(micros(t.elapsed()));
            let described = d["tasks"].as_array().map_or(0, Vec::len);
            if described != arns.len() {
                bail!(
                    "DescribeTasks returned {described} of the {} tasks ListTasks listed",
                    arns.len()
                );
            }
        }
        run.bar.set_position(page as u64 + 1);
        token = v["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    fig.list.sort_unstable();
    fig.describe.sort_unstable();
    run.log(&format!(
        "{} ListTasks pages ({} tasks): p50 {:.2} ms, p99 {:.2} ms",
        fig.list.len(),
        fig.listed,
        percentile(&fig.list, 0.5),
        percentile(&fig.list, 0.99)
    ));
    Ok(())
}

fn validate(args: &ScaleBenchArgs) -> anyhow::Result<()> {
    if args.instances == 0 || args.services == 0 {
        bail!("--instances and --services must be at least 1");
    }
    if args.tasks < args.services {
        bail!("--tasks must be at least --services (every service runs a task)");
    }
    if args.connections < 16 {
        bail!("--connections must be at least 16");
    }
    if args.updates == 0 || args.list_pages == 0 {
        bail!("--updates and --list-pages must be at least 1");
    }
    if args.quiet_seconds <= 0.0 || args.settle_seconds < 0.0 || args.settle_max_extra_seconds < 0.0
    {
        bail!(
            "--quiet-seconds must be positive; --settle-seconds and --settle-max-extra-seconds not negative"
        );
    }
    Ok(())
}

/// Runs the benchmark; prints the table, then the figures as the last line.
#[allow(clippy::cast_precision_loss)]
pub fn run(args: ScaleBenchArgs) -> anyhow::Result<()> {
    validate(&args)?;
    raise_nofile(args.connections as u64 + 512)?;
    let server = Server::start(&args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(drive(&args, &server));
    runtime.shutdown_timeout(Duration::from_secs(2));
    let fig = result?;
    drop(server);

    let ms = |v: &[u64], p| percentile(v, p);
    let p50_p99 = |v: &[u64]| {
        if v.is_empty() {
            "n/a".to_owned()
        } else {
            format!("p50 {:.1} ms, p99 {:.1} ms", ms(v, 0.5), ms(v, 0.99))
        }
    };
    let mb = |kb: u64| kb as f64 / 1024.0;
    let mut table = Table::new();
    table.set_header(["measurement", "figure", "goal"]);
    let mut row = |a: String, b: String, c: &str| {
        table.add_row([a, b, c.to_owned()]);
    };
    row(
        "instances registered".into(),
        format!(
            "{} in {:.1} s ({:.0}/s)",
            args.instances,
            fig.register_secs,
            args.instances as f64 / fig.register_secs.max(1e-9)
        ),
        "",
    );
    row(
        "services created".into(),
        format!("{} in {:.1} s", args.services, fig.create_secs),
        "",
    );
    row(
        "all tasks RUNNING".into(),
        format!(
            "{} in {:.1} s ({:.0}/s)",
            args.tasks,
            fig.running_secs,
            args.tasks as f64 / fig.running_secs.max(1e-9)
        ),
        "",
    );
    row(
        "server RSS (VmRSS)".into(),
        format!(
            "{:.1} MB ({:.1} MB heap/stacks, {:.1} MB file pages; peak {:.1} MB)",
            mb(fig.rss.rss_kb),
            mb(fig.rss.anon_kb),
            mb(fig.rss.file_kb),
            mb(fig.rss.hwm_kb)
        ),
        "< 512 MB",
    );
    if let Some(bytes) = fig.store_bytes {
        row(
            "store file (state.redb)".into(),
            format!("{:.1} MB", bytes as f64 / 1e6),
            "",
        );
    }
    row(
        format!("server CPU, quiet window of {:.0} s", fig.quiet_secs),
        format!(
            "{:.2} % of one core: writer thread {:.2} %, API threads (polls) {:.2} % ({:.0} polls/s answered, {} with a change; after {:.0} s of settling; bench itself {:.1} %)",
            fig.cpu_pct,
            fig.writer_cpu_pct,
            fig.api_cpu_pct,
            fig.quiet_polls as f64 / fig.quiet_secs.max(1e-9),
            fig.quiet_changed,
            fig.settle_secs,
            fig.bench_cpu_pct
        ),
        "< 10 %",
    );
    row(
        "UpdateService → new task appears".into(),
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} updates, {} timed out)",
            ms(&fig.appeared, 0.5),
            ms(&fig.appeared, 0.99),
            ms(&fig.appeared, 1.0),
            fig.appeared.len(),
            fig.timeouts
        ),
        "p99 < 1000 ms",
    );
    row(
        "  … handed to its agent by PollTasks".into(),
        p50_p99(&fig.seen),
        "",
    );
    row("  … reported RUNNING".into(), p50_p99(&fig.running), "");
    row(
        "  UpdateService answered".into(),
        p50_p99(&fig.update_answer),
        "",
    );
    row(
        "ListTasks page of 100".into(),
        format!(
            "p50 {:.2} ms, p99 {:.2} ms ({} pages, {} tasks)",
            ms(&fig.list, 0.5),
            ms(&fig.list, 0.99),
            fig.list.len(),
            fig.listed
        ),
        "",
    );
    row(
        "DescribeTasks of 100".into(),
        format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            ms(&fig.describe, 0.5),
            ms(&fig.describe, 0.99)
        ),
        "",
    );
    row(
        "agents' polls".into(),
        format!(
            "wait {} s, {} in flight at most; {} poll errors, {} reports retried, {} refused; {} STOPPED reports",
            fig.wait_seconds,
            fig.poll_slots.min(args.instances),
            fig.poll_errors,
            fig.report_retries,
            fig.report_errors,
            fig.stopped_reports
        ),
        "",
    );
    println!(
        "flotilla bench scale — {} instances, {} tasks, {} services, {} cores",
        args.instances,
        args.tasks,
        args.services,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    println!("{table}");
    println!(
        "rss_mb={:.1} agent_cpu_pct={:.2} reconcile_p99_ms={:.1} list_tasks_p99_ms={:.2}",
        mb(fig.rss.rss_kb),
        fig.cpu_pct,
        ms(&fig.appeared, 0.99),
        ms(&fig.list, 0.99)
    );
    Ok(())
}
