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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use model::agent::{AGENT_TARGET_PREFIX, MAX_WAIT_SECONDS};
use model::wire;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::cmd::bench::percentile;

mod agents;
mod run;
mod server;

use agents::*;
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
