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

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use model::agent::{AGENT_TARGET_PREFIX, MAX_WAIT_SECONDS};
use model::wire;
use serde_json::json;
use tokio::sync::Semaphore;

mod agents;
mod measure;
mod report;
mod run;
mod server;

use agents::*;
use measure::measure;
use run::*;
use server::*;

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

// ----- the driver ------------------------------------------------------------------------

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
pub fn run(args: ScaleBenchArgs) -> anyhow::Result<()> {
    validate(&args)?;
    raise_nofile(args.connections as u64 + 512)?;
    let server = Server::start(&args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(drive(&args, &server));
    runtime.shutdown_timeout(Duration::from_secs(2));
    let fig = result?;
    drop(server);

    report::print(&args, &fig);
    Ok(())
}
