//! `flotilla bench agent`: how fast a node starts tasks, against raw containerd.
//!
//! (a) `ctr run -d` of the image (cached) — the raw baseline — and (b) RunTask until
//! DescribeTasks shows RUNNING through a real server and agent on the same containerd,
//! each `--tasks` times one after the other, p50/p95 side by side; then `--tasks` tasks
//! started at once (RunTask calls of 10 in parallel) for throughput; then the agent's
//! RSS and CPU use while those tasks run and nothing changes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::Table;
use indicatif::ProgressBar;
use model::lifecycle::TaskStatus;
use serde_json::json;

use super::bench::{Client, percentile, spawn_server};

/// Arguments of `flotilla bench agent`.
#[derive(Debug, clap::Args)]
pub struct AgentBenchArgs {
    /// containerd socket both the baseline and the agent use.
    #[arg(long, default_value = "/run/containerd/containerd.sock")]
    pub containerd_socket: PathBuf,
    /// Image to run (must be in a local registry; `scripts/build-test-images.sh`).
    #[arg(long, default_value = "127.0.0.1:5000/busybox:latest")]
    pub image: String,
    /// Tasks per measurement (≥ 50 for the published figures).
    #[arg(long, default_value_t = 50)]
    pub tasks: usize,
    /// Seconds over which idle CPU is measured.
    #[arg(long, default_value_t = 10)]
    pub idle_seconds: u64,
    /// The tasks' `networkMode`. `none` (a namespace with loopback only) matches what
    /// `ctr run` gives a container; `bridge` adds a veth on the node's bridge and an
    /// address per task.
    #[arg(long, default_value = "none", value_parser = ["none", "bridge", "awsvpc", "host"])]
    pub network_mode: String,
}

struct Agent {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctr(socket: &PathBuf, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(args)
        .output()
        .context("cannot run ctr")?;
    if !out.status.success() {
        bail!(
            "ctr {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cleanup_namespace(socket: &PathBuf, ns: &str) {
    if let Ok(list) = ctr(socket, &["-n", ns, "tasks", "ls", "-q"]) {
        for t in list.split_whitespace() {
            let _ = ctr(socket, &["-n", ns, "tasks", "kill", "-s", "SIGKILL", t]);
        }
        for t in list.split_whitespace() {
            for _ in 0..100 {
                if ctr(socket, &["-n", ns, "tasks", "rm", "-f", t]).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    if let Ok(list) = ctr(socket, &["-n", ns, "containers", "ls", "-q"]) {
        for c in list.split_whitespace() {
            let _ = ctr(socket, &["-n", ns, "containers", "rm", c]);
        }
    }
}

fn baseline(args: &AgentBenchArgs, bar: &ProgressBar) -> anyhow::Result<Baseline> {
    let ns = "flotilla-bench-raw";
    let plain_http = if args.image.starts_with("127.0.0.1") || args.image.starts_with("localhost") {
        "--plain-http"
    } else {
        ""
    };
    let mut pull = vec!["-n", ns, "images", "pull"];
    if !plain_http.is_empty() {
        pull.push(plain_http);
    }
    pull.push(&args.image);
    ctr(&args.containerd_socket, &pull)?;
    let mut lat = Vec::new();
    for i in 0..args.tasks {
        let id = format!("raw-{i}");
        let t = Instant::now();
        ctr(
            &args.containerd_socket,
            &["-n", ns, "run", "-d", &args.image, &id, "sleep", "1000"],
        )?;
        lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        bar.inc(1);
    }
    cleanup_namespace(&args.containerd_socket, ns);
    lat.sort_unstable();
    // Throughput: the same number of `ctr run -d`, 10 at a time (as the agent bench
    // sends RunTask in calls of 10).
    let t = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..10)
            .map(|w| {
                scope.spawn(move || -> anyhow::Result<()> {
                    for i in (w..args.tasks).step_by(10) {
                        let id = format!("raw-burst-{i}");
                        ctr(
                            &args.containerd_socket,
                            &["-n", ns, "run", "-d", &args.image, &id, "sleep", "1000"],
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("a ctr worker panicked"))?
        })
    })?;
    let burst_secs = t.elapsed().as_secs_f64();
    bar.inc(u64::try_from(args.tasks).unwrap_or(0));
    cleanup_namespace(&args.containerd_socket, ns);
    Ok(Baseline {
        latencies: lat,
        burst_secs,
    })
}

/// What raw containerd achieved.
struct Baseline {
    /// `ctr run -d` latencies, one after the other, sorted (µs).
    latencies: Vec<u64>,
    /// Seconds to start `--tasks` containers 10 at a time.
    burst_secs: f64,
}

/// A process's resident memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
struct Rss {
    total_kb: u64,
    /// Heap, stacks: what the process allocated.
    anon_kb: u64,
    /// Pages of the binary and libraries in use (shared with other processes).
    file_kb: u64,
}

fn proc_stat(pid: u32) -> Option<(u64, Rss)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((
        cpu_ticks,
        Rss {
            total_kb: field("VmRSS:")?,
            anon_kb: field("RssAnon:").unwrap_or(0),
            file_kb: field("RssFile:").unwrap_or(0),
        },
    ))
}

async fn wait_running(client: &Client, arns: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    for chunk in arns.chunks(100) {
        loop {
            let v = client
                .call(
                    "DescribeTasks",
                    json!({"cluster": "bench", "tasks": chunk}).to_string(),
                )
                .await?;
            let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
            if let Some(stopped) = tasks
                .iter()
                .find(|t| t["lastStatus"] == TaskStatus::Stopped.as_str())
            {
                bail!("a task stopped: {}", stopped["stoppedReason"]);
            }
            if tasks.len() == chunk.len()
                && tasks
                    .iter()
                    .all(|t| t["lastStatus"] == TaskStatus::Running.as_str())
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("tasks did not reach RUNNING within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}

async fn stop_all(client: &Client, arns: &[String]) -> anyhow::Result<()> {
    for a in arns {
        client
            .call(
                "StopTask",
                json!({"cluster": "bench", "task": a}).to_string(),
            )
            .await?;
    }
    Ok(())
}

/// Runs the benchmark and prints the table.
pub fn run(args: AgentBenchArgs) -> anyhow::Result<()> {
    let bar = ProgressBar::new(u64::try_from(args.tasks * 4).unwrap_or(0));
    bar.set_message("ctr run (baseline)");
    let Baseline {
        latencies: raw,
        burst_secs: raw_burst_secs,
    } = baseline(&args, &bar)?;
    let (server, endpoint) = spawn_server()?;
    let rt = tokio::runtime::Runtime::new()?;
    let client = Client {
        http: reqwest::Client::new(),
        endpoint: endpoint.clone(),
    };
    rt.block_on(async {
        client.wait_healthy().await?;
        client
            .call("CreateCluster", json!({"clusterName": "bench"}).to_string())
            .await?;
        anyhow::Ok(())
    })?;
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(&exe)
        .args([
            "agent",
            "--endpoint",
            &endpoint,
            "--cluster",
            "bench",
            "--instance-id",
            "i-bench",
            "--pull-behavior",
            "prefer-cached",
            "--data-dir",
        ])
        .arg(dir.path())
        .arg("--containerd-socket")
        .arg(&args.containerd_socket)
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the agent")?;
    let agent = Agent { child, _dir: dir };
    let rt = tokio::runtime::Runtime::new()?;
    let client = Client {
        http: reqwest::Client::new(),
        endpoint,
    };
    let result = rt.block_on(async {
        client.wait_healthy().await?;
        client.call("CreateCluster", json!({"clusterName": "bench"}).to_string()).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.call("ListContainerInstances", json!({"cluster": "bench"}).to_string()).await?["containerInstanceArns"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            if Instant::now() > deadline {
                bail!("the agent did not register");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let def = json!({"family": "bench", "networkMode": args.network_mode, "containerDefinitions": [{"name": "main", "image": args.image, "memory": 16, "cpu": 1,
                          "command": ["sleep", "1000"], "stopTimeout": 1}]});
        client.call("RegisterTaskDefinition", def.to_string()).await?;
        // Warm-up: the image is pulled once and cached.
        let warm = client.call("RunTask", json!({"cluster": "bench", "taskDefinition": "bench"}).to_string()).await?;
        let warm_arn = vec![warm["tasks"][0]["taskArn"].as_str().unwrap_or_default().to_owned()];
        wait_running(&client, &warm_arn).await?;
        stop_all(&client, &warm_arn).await?;

        bar.set_message("RunTask → RUNNING, one at a time");
        let mut seq = Vec::new();
        let mut seq_arns = Vec::new();
        for _ in 0..args.tasks {
            let t = Instant::now();
            let r = client.call("RunTask", json!({"cluster": "bench", "taskDefinition": "bench"}).to_string()).await?;
            let arn = vec![r["tasks"][0]["taskArn"].as_str().unwrap_or_default().to_owned()];
            wait_running(&client, &arn).await?;
            seq.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            seq_arns.extend(arn);
            bar.inc(1);
        }
        seq.sort_unstable();
        stop_all(&client, &seq_arns).await?;

        bar.set_message("RunTask, all at once");
        let t = Instant::now();
        let mut calls = Vec::new();
        for chunk in 0..args.tasks.div_ceil(10) {
            let count = (args.tasks - chunk * 10).min(10);
            let c = client.clone();
            calls.push(tokio::spawn(async move {
                c.call("RunTask", json!({"cluster": "bench", "taskDefinition": "bench", "count": count}).to_string()).await
            }));
        }
        let mut burst = Vec::new();
        for c in calls {
            let r = c.await??;
            for task in r["tasks"].as_array().cloned().unwrap_or_default() {
                burst.push(task["taskArn"].as_str().unwrap_or_default().to_owned());
            }
        }
        wait_running(&client, &burst).await?;
        let burst_secs = t.elapsed().as_secs_f64();
        bar.inc(u64::try_from(args.tasks).unwrap_or(0));
        bar.finish_and_clear();

        // Idle: the tasks run, nothing changes.
        let pid = agent.child.id();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (c0, _) = proc_stat(pid).context("cannot read the agent's /proc")?;
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
        let (c1, rss_kb) = proc_stat(pid).context("cannot read the agent's /proc")?;
        #[allow(clippy::cast_precision_loss)]
        let cpu_pct = (c1 - c0) as f64 / 100.0 / t0.elapsed().as_secs_f64() * 100.0;
        let running = burst.len();
        stop_all(&client, &burst).await?;
        anyhow::Ok((seq, burst_secs, running, rss_kb, cpu_pct))
    });
    drop(agent);
    drop(server);
    let (seq, burst_secs, running, rss_kb, cpu_pct) = result?;
    let ms = |v: &[u64], p| percentile(v, p);
    let mut table = Table::new();
    table.set_header(["measurement", "p50 ms", "p95 ms", "ratio to raw (p50)"]);
    table.add_row([
        "ctr run -d (raw containerd)".to_owned(),
        format!("{:.1}", ms(&raw, 0.5)),
        format!("{:.1}", ms(&raw, 0.95)),
        "1.00".to_owned(),
    ]);
    table.add_row([
        format!(
            "RunTask → RUNNING (flotilla, networkMode {})",
            args.network_mode
        ),
        format!("{:.1}", ms(&seq, 0.5)),
        format!("{:.1}", ms(&seq, 0.95)),
        format!("{:.2}", ms(&seq, 0.5) / ms(&raw, 0.5).max(0.001)),
    ]);
    println!(
        "flotilla bench agent — {} tasks each, image {} (cached)",
        args.tasks, args.image
    );
    println!("{table}");
    #[allow(clippy::cast_precision_loss)]
    let rate = running as f64 / burst_secs;
    #[allow(clippy::cast_precision_loss)]
    let raw_rate = args.tasks as f64 / raw_burst_secs;
    println!(
        "burst: {running} tasks RUNNING in {burst_secs:.2} s = {rate:.1} tasks/s; raw `ctr run -d` 10 at a time: {raw_rate:.1} containers/s (flotilla at {:.2}x raw)",
        rate / raw_rate.max(0.001)
    );
    #[allow(clippy::cast_precision_loss)]
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "agent while {running} tasks run idle: RSS {:.1} MB ({:.1} MB heap/stacks, {:.1} MB binary pages), CPU {cpu_pct:.2} % of one core over {} s",
        mb(rss_kb.total_kb),
        mb(rss_kb.anon_kb),
        mb(rss_kb.file_kb),
        args.idle_seconds
    );
    println!("goals: overhead <= 1.2x raw, >= 20 tasks/s, idle RSS < 15 MB, idle CPU < 1 %");
    Ok(())
}
