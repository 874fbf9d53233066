//! `flotilla bench …`: reproducible measurements, printed as tables.
//!
//! `flotilla bench api` starts a server on a fresh data directory (or uses
//! `--endpoint`) and measures throughput and p50/p99 latency of DescribeClusters
//! (a read), RegisterTaskDefinition and RunTask (durable writes) at several numbers of
//! concurrent clients. Clients and server share the machine, so on a small machine the
//! figures are a lower bound for the server alone.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};

#[path = "bench_lb.rs"]
mod bench_lb;
#[path = "bench_scale/mod.rs"]
mod bench_scale;

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// ECS API throughput and p50/p99 latency at 1/8/32 concurrent clients.
    Api(ApiBenchArgs),
    /// Task start latency through flotilla vs raw `ctr run`, start throughput, and the
    /// agent's idle RSS and CPU (needs root, containerd and the local test registry).
    Agent(super::bench_agent::AgentBenchArgs),
    /// The control plane at scale: thousands of simulated agents long-polling, services
    /// adding up to 100k tasks; server RSS, polling CPU, reconcile and ListTasks latency.
    Scale(bench_scale::ScaleBenchArgs),
    /// The load balancer data plane (`crates/lb`) against HAProxy and direct: req/s,
    /// p50/p99 and errors through each, with a built-in closed-loop load generator.
    Lb(bench_lb::LbBenchArgs),
    /// The service-discovery DNS server against NSD: queries/s with dnsperf, p50/p99 with a
    /// built-in UDP client (needs `dnsperf` and `nsd` for the comparison).
    Dns(super::bench_dns::DnsBenchArgs),
}

/// Arguments of `flotilla bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiBenchArgs {
    /// Measure a running server instead of starting one.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Numbers of concurrent clients to measure with.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub clients: Vec<usize>,
    /// Seconds each read measurement lasts.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Requests each write measurement sends.
    #[arg(long, default_value_t = 3000)]
    pub writes: usize,
}

/// Runs a benchmark.
pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Api(args) => api(args),
        BenchCommand::Agent(args) => super::bench_agent::run(args),
        BenchCommand::Scale(args) => bench_scale::run(args),
        BenchCommand::Lb(args) => bench_lb::run(args),
        BenchCommand::Dns(args) => super::bench_dns::run(args),
    }
}

pub(crate) struct SpawnedServer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free local port, and the command that runs `flotilla server` (this executable) on
/// it with its data in `data_dir`: quiet (`FLOTILLA_LOG=warn`), stdout discarded.
pub(crate) fn server_command(data_dir: &Path) -> anyhow::Result<(Command, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::null());
    Ok((command, port))
}

pub(crate) fn spawn_server() -> anyhow::Result<(SpawnedServer, String)> {
    let dir = tempfile::tempdir()?;
    let (mut command, port) = server_command(dir.path())?;
    let child = command.spawn().context("cannot start flotilla server")?;
    Ok((
        SpawnedServer { child, _dir: dir },
        format!("http://127.0.0.1:{port}"),
    ))
}

#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) endpoint: String,
}

impl Client {
    pub(crate) async fn call(&self, op: &str, body: String) -> anyhow::Result<serde_json::Value> {
        let resp = self
            .http
            .post(&self.endpoint)
            .header("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{op}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("{op} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub(crate) async fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let health = self
                .http
                .get(format!("{}/healthz", self.endpoint))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "server at {} did not become healthy within 20 s",
                    self.endpoint
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Workload {
    DescribeClusters,
    RegisterTaskDefinition,
    RunTask,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::DescribeClusters => "DescribeClusters",
            Workload::RegisterTaskDefinition => "RegisterTaskDefinition",
            Workload::RunTask => "RunTask",
        }
    }

    fn body(self, worker: usize) -> String {
        match self {
            Workload::DescribeClusters => {
                r#"{"clusters":["bench"],"include":["STATISTICS"]}"#.to_owned()
            }
            Workload::RegisterTaskDefinition => format!(
                r#"{{"family":"bench-{worker}","containerDefinitions":[{{"name":"app","image":"127.0.0.1:5000/busybox:latest","memory":16,"command":["sleep","3600"],"portMappings":[{{"containerPort":80}}]}}]}}"#
            ),
            Workload::RunTask => {
                r#"{"cluster":"bench","taskDefinition":"bench-run","startedBy":"bench"}"#.to_owned()
            }
        }
    }
}

struct Measurement {
    workload: Workload,
    clients: usize,
    latencies_us: Vec<u64>,
    errors: usize,
    elapsed: Duration,
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    #[allow(clippy::cast_precision_loss)]
    let ms = sorted[idx] as f64 / 1000.0;
    ms
}

async fn measure(
    client: &Client,
    workload: Workload,
    clients: usize,
    seconds: f64,
    writes: usize,
) -> Measurement {
    let budget = Arc::new(AtomicUsize::new(writes));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let reads = matches!(workload, Workload::DescribeClusters);
    let start = Instant::now();
    let mut handles = Vec::new();
    for worker in 0..clients {
        let client = client.clone();
        let budget = budget.clone();
        handles.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            loop {
                if reads {
                    if Instant::now() >= deadline {
                        break;
                    }
                } else if budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let t = Instant::now();
                match client.call(workload.name(), workload.body(worker)).await {
                    Ok(_) => lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for h in handles {
        if let Ok((lat, e)) = h.await {
            latencies_us.extend(lat);
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    latencies_us.sort_unstable();
    Measurement {
        workload,
        clients,
        latencies_us,
        errors,
        elapsed,
    }
}

async fn setup(client: &Client) -> anyhow::Result<()> {
    client
        .call("CreateCluster", r#"{"clusterName":"bench"}"#.into())
        .await?;
    client
        .call(
            "RegisterTaskDefinition",
            r#"{"family":"bench-run","containerDefinitions":[{"name":"app","image":"127.0.0.1:5000/busybox:latest","memory":8,"cpu":1}]}"#.into(),
        )
        .await?;
    // A 50-node cluster with room for every task the benchmark starts.
    for node in 0..50 {
        let doc = format!(
            r#"{{\"instanceId\":\"i-bench-{node}\",\"availabilityZone\":\"local-1{}\"}}"#,
            ["a", "b", "c"][node % 3]
        );
        let body = format!(
            r#"{{"cluster":"bench","instanceIdentityDocument":"{doc}","totalResources":[{{"name":"CPU","type":"INTEGER","integerValue":1000000}},{{"name":"MEMORY","type":"INTEGER","integerValue":1000000}}]}}"#
        );
        client.call("RegisterContainerInstance", body).await?;
    }
    Ok(())
}

fn api(args: ApiBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let (server, endpoint) = match &args.endpoint {
        Some(e) => (None, e.clone()),
        None => {
            let (s, e) = spawn_server()?;
            (Some(s), e)
        }
    };
    let client = Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?,
        endpoint: endpoint.clone(),
    };
    let workloads = [
        Workload::DescribeClusters,
        Workload::RegisterTaskDefinition,
        Workload::RunTask,
    ];
    let results = runtime.block_on(async {
        client.wait_healthy().await?;
        setup(&client).await?;
        let bar =
            ProgressBar::new(u64::try_from(workloads.len() * args.clients.len()).unwrap_or(0));
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut results = Vec::new();
        for w in workloads {
            for &c in &args.clients {
                bar.set_message(format!("{} × {c} clients", w.name()));
                results.push(measure(&client, w, c, args.seconds, args.writes).await);
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        anyhow::Ok(results)
    })?;
    drop(server);
    let mut table = Table::new();
    table.set_header([
        "operation",
        "clients",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
    ]);
    for m in &results {
        #[allow(clippy::cast_precision_loss)]
        let rate = m.latencies_us.len() as f64 / m.elapsed.as_secs_f64();
        table.add_row([
            m.workload.name().to_owned(),
            m.clients.to_string(),
            m.latencies_us.len().to_string(),
            format!("{rate:.0}"),
            format!("{:.2}", percentile(&m.latencies_us, 0.50)),
            format!("{:.2}", percentile(&m.latencies_us, 0.99)),
            m.errors.to_string(),
        ]);
    }
    println!(
        "flotilla bench api — {endpoint}, durable (fsync'd) writes, {} cores",
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    println!("{table}");
    println!("goals at 32 clients: reads >= 10000 req/s, writes >= 2000 req/s, p99 < 10 ms");
    if results.iter().any(|m| m.errors > 0) {
        bail!("some requests failed (see the errors column)");
    }
    Ok(())
}
