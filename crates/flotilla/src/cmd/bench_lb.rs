//! `flotilla bench lb`: the load balancer data plane (`crates/lb`) against HAProxy.
//!
//! Starts `--backends` loopback hyper backends (HTTP/1.1 keep-alive, a 26-byte body), then
//! drives, one after the other, with the same built-in load generator (`--connections`
//! keep-alive HTTP/1.1 connections sending `GET /`, `--warmup` seconds unmeasured then
//! `--seconds` measured):
//!
//! - **direct**: the backends themselves, connection *i* to backend *i mod N*: the baseline;
//! - **haproxy**: Debian's `haproxy` (skipped if not on `PATH`), `mode http`, keep-alive,
//!   `http-reuse always`, `option forwardfor`, round robin, `nbthread` = `--workers`, an
//!   HTTP health check (`GET /`) of every backend each second;
//! - **flotilla**: the `lb` crate in a child process (this binary, `bench lb --serve`, on a
//!   Tokio runtime of `--workers` threads, access log off as HAProxy's is), round robin, a
//!   health check (`GET /`) of every backend each second.
//!
//! The load runs in one of two modes:
//!
//! - **closed loop** (the default): each connection sends its next request as soon as the
//!   previous answer is read, so the target runs at saturation and the latencies are mostly
//!   queueing (on a small machine, for the cores the load, the backends and the proxy share);
//! - **open loop** (`--rate R`): R requests a second in all, spread evenly over the
//!   connections (connection *i* sends at `i / R + k * connections / R` seconds, so the
//!   connections take turns rather than fire together), paced by a thread of its own (Tokio's
//!   timers tick by the millisecond, too coarse for this). Each latency counts from the
//!   request's *scheduled* send time, not from when it went out: a connection still waiting
//!   for its previous answer sends as soon as it has it (none are skipped), and the time it
//!   fell behind counts, so a stalled target cannot hide its delay ("coordinated omission",
//!   as wrk2 avoids it). Below saturation this measures the latency a proxy adds. The table
//!   then also shows the rate each target was actually sent, with a warning when it falls
//!   below 95 % of R: the target could not keep up, and its figures measure saturation.
//!
//! Both proxies run as their own processes, so neither shares a runtime with the load
//! generator or the backends (which share this process). Everything runs on one machine:
//! on a small one the proxies compete with the load for the same cores, so the figures
//! compare the two proxies rather than measure either alone. Besides req/s and latency the
//! table shows each proxy's CPU time (user + system, from `/proc`, Linux only) per request
//! over the measured seconds: the figure other work on the machine disturbs least.
//! `--rounds N` measures HAProxy and flotilla alternately N times and reports the medians.
//!
//! Prints a table (req/s, p50, p99, proxy CPU µs per request, errors), the load average
//! before and after, and, last, the line `lb_rps=… haproxy_rps=… ratio=… added_p99_ms=…
//! lb_cpu_us=… haproxy_cpu_us=… haproxy_added_p99_ms=…` (`added_p99_ms` is flotilla's p99
//! minus the direct p99, `haproxy_added_p99_ms` HAProxy's; `haproxy_*` and `ratio` are `-`
//! without HAProxy, `*_cpu_us` `-` without `/proc`). The line before it holds every error
//! count: `direct_errors=… haproxy_errors=… lb_errors=…`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use comfy_table::Table;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cmd::bench::percentile;

/// The body every backend answers.
const BODY: &[u8] = b"hello from a bench backend";

/// The highest `--rate`: each scheduled send time waits in its connection's queue until
/// the connection is free, so the rate bounds what a stalled target can make the bench hold
/// (at most this many times the run's seconds).
const MAX_RATE: f64 = 1_000_000.0;

/// Arguments of `flotilla bench lb`.
#[derive(Debug, clap::Args)]
pub struct LbBenchArgs {
    /// Loopback backends behind the proxies.
    #[arg(long, default_value_t = 4)]
    pub backends: usize,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds measured per target.
    #[arg(long, default_value_t = 6.0)]
    pub seconds: f64,
    /// Unmeasured seconds before each measurement.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Worker threads of each proxy (HAProxy `nbthread`, flotilla's Tokio workers); default:
    /// the number of CPUs.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Measure HAProxy and flotilla alternately this many times; the table shows medians.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Open loop: send this many requests per second in all (spread evenly over the
    /// connections, latency counted from each request's scheduled time) instead of each
    /// connection sending its next request as soon as it has the previous answer.
    #[arg(long, value_name = "REQ_PER_SEC")]
    pub rate: Option<f64>,
    /// Skip HAProxy even if it is installed.
    #[arg(long)]
    pub no_haproxy: bool,
    /// Internal: run an `lb` from this JSON `LbConfig` until killed (the flotilla side).
    #[arg(long, hide = true)]
    pub serve: Option<PathBuf>,
}

/// What one target measured.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    /// Requests answered 200 per second of the measured window.
    rps: f64,
    /// The achieved rate: requests sent per second of the measured window (in the open loop,
    /// below `--rate` when the target could not keep up).
    sent_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// The proxy's CPU time per request (µs), when known.
    cpu_us: Option<f64>,
}

impl Figures {
    /// The per-field medians of `runs` (errors: the sum).
    fn median(runs: &[Figures]) -> Figures {
        let med = |f: fn(&Figures) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        let cpu = runs.iter().all(|r| r.cpu_us.is_some());
        Figures {
            rps: med(|r| r.rps),
            sent_rps: med(|r| r.sent_rps),
            p50_ms: med(|r| r.p50_ms),
            p99_ms: med(|r| r.p99_ms),
            errors: runs.iter().map(|r| r.errors).sum(),
            cpu_us: cpu.then(|| med(|r| r.cpu_us.unwrap_or(0.0))),
        }
    }
}

/// Runs the benchmark (or, with `--serve`, the flotilla load balancer it measures).
pub fn run(args: LbBenchArgs) -> anyhow::Result<()> {
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(std::num::NonZero::get)
            .unwrap_or(2)
    });
    if let Some(path) = &args.serve {
        return serve(path, workers);
    }
    if args.backends == 0 || args.connections == 0 || args.seconds <= 0.0 || args.rounds == 0 {
        bail!("--backends, --connections, --seconds and --rounds must be positive");
    }
    if let Some(rate) = args.rate
        && !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE)
    {
        bail!("--rate must be a number of requests per second above 0 and at most {MAX_RATE}");
    }
    let haproxy = if args.no_haproxy {
        None
    } else {
        which("haproxy")
    };

    let proxies = if haproxy.is_some() { 2 } else { 1 };
    let bar = ProgressBar::new(1 + (proxies * args.rounds) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:20}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));

    // Backends and the load generator share this runtime; the proxies are child processes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let backends: Vec<SocketAddr> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..args.backends {
            v.push(start_backend().await?);
        }
        anyhow::Ok(v)
    })?;
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let measure = Duration::from_secs_f64(args.seconds);
    let load_before = load_average();

    bar.set_message("direct");
    let direct = rt.block_on(load(
        |i| backends[i % backends.len()],
        args.connections,
        args.rate,
        warmup,
        measure,
    ))?;
    bar.inc(1);

    let mut haproxy_runs = Vec::new();
    let mut lb_runs = Vec::new();
    for round in 1..=args.rounds {
        let of = if args.rounds > 1 {
            format!(" (round {round}/{})", args.rounds)
        } else {
            String::new()
        };
        if let Some(bin) = &haproxy {
            bar.set_message(format!("haproxy{of}"));
            let port = free_port()?;
            let child = spawn_haproxy(bin, dir.path(), port, &backends, workers)?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            rt.block_on(wait_ready(addr)).with_context(|| {
                let log =
                    std::fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default();
                format!("haproxy did not answer; its output:\n{log}")
            })?;
            haproxy_runs.push(measure_proxy(&rt, &child, addr, &args, warmup, measure)?);
            bar.inc(1);
        }

        bar.set_message(format!("flotilla lb{of}"));
        let port = free_port()?;
        let child = spawn_flotilla_lb(dir.path(), port, &backends, workers)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        rt.block_on(wait_ready(addr))
            .context("the flotilla lb did not answer")?;
        lb_runs.push(measure_proxy(&rt, &child, addr, &args, warmup, measure)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let load_after = load_average();
    let haproxy_figures = (!haproxy_runs.is_empty()).then(|| Figures::median(&haproxy_runs));
    let lb = Figures::median(&lb_runs);

    // The open loop adds the rate each target was actually sent, after req/s.
    let open = args.rate.is_some();
    let mut table = Table::new();
    let mut header = vec!["target", "req/s"];
    if open {
        header.push("sent/s");
    }
    header.extend(["p50 ms", "p99 ms", "cpu µs/req", "errors"]);
    table.set_header(header);
    let row = |name: &str, f: &Figures| {
        let mut cells = vec![name.to_string(), format!("{:.0}", f.rps)];
        if open {
            cells.push(format!("{:.0}", f.sent_rps));
        }
        cells.extend([
            format!("{:.3}", f.p50_ms),
            format!("{:.3}", f.p99_ms),
            f.cpu_us
                .map_or_else(|| "-".to_string(), |c| format!("{c:.1}")),
            f.errors.to_string(),
        ]);
        cells
    };
    table.add_row(row("direct", &direct));
    match &haproxy_figures {
        Some(h) => table.add_row(row("haproxy", h)),
        None => {
            let mut cells = vec!["haproxy".to_string(), "not run".into()];
            cells.resize(if open { 7 } else { 6 }, "-".into());
            table.add_row(cells)
        }
    };
    table.add_row(row("flotilla lb", &lb));
    let mode = args.rate.map_or_else(
        || "closed loop".to_string(),
        |r| format!("open loop at {r} req/s"),
    );
    println!(
        "{} backends, {} connections, {mode}, {:.1} s measured after {:.1} s warm-up, {} proxy workers, {} CPUs{}",
        args.backends,
        args.connections,
        args.seconds,
        args.warmup,
        workers,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        if args.rounds > 1 {
            format!(", medians of {} rounds", args.rounds)
        } else {
            String::new()
        },
    );
    println!("{table}");
    if let Some(rate) = args.rate {
        let targets = [
            ("direct", Some(direct)),
            ("haproxy", haproxy_figures),
            ("flotilla lb", Some(lb)),
        ];
        for (name, f) in targets {
            if let Some(f) = f
                && f.sent_rps < 0.95 * rate
            {
                println!(
                    "warning: {name} could not keep up with {rate} req/s (sent {:.0} req/s): \
                     its figures measure saturation, not added latency",
                    f.sent_rps
                );
            }
        }
    }
    if args.rounds > 1 && !haproxy_runs.is_empty() {
        let ratios: Vec<String> = lb_runs
            .iter()
            .zip(&haproxy_runs)
            .map(|(l, h)| format!("{:.3}", l.rps / h.rps.max(1e-9)))
            .collect();
        println!("ratio per round: {}", ratios.join(" "));
    }
    let dash = || "-".to_string();
    println!(
        "load average (1 min): {} before, {} after",
        load_before.as_deref().unwrap_or("-"),
        load_after.as_deref().unwrap_or("-")
    );
    println!(
        "direct_errors={} haproxy_errors={} lb_errors={}",
        direct.errors,
        haproxy_figures.map_or_else(dash, |h| h.errors.to_string()),
        lb.errors
    );
    let cpu = |f: &Figures| f.cpu_us.map_or_else(dash, |c| format!("{c:.1}"));
    println!(
        "lb_rps={:.0} haproxy_rps={} ratio={} added_p99_ms={:.3} lb_cpu_us={} haproxy_cpu_us={} \
         haproxy_added_p99_ms={}",
        lb.rps,
        haproxy_figures.map_or_else(dash, |h| format!("{:.0}", h.rps)),
        haproxy_figures.map_or_else(dash, |h| format!("{:.3}", lb.rps / h.rps.max(1e-9))),
        lb.p99_ms - direct.p99_ms,
        cpu(&lb),
        haproxy_figures.as_ref().map_or_else(dash, cpu),
        haproxy_figures.map_or_else(dash, |h| format!("{:.3}", h.p99_ms - direct.p99_ms)),
    );
    Ok(())
}

/// Drives the proxy `child` listening on `addr`, and measures the CPU time it spends meanwhile.
fn measure_proxy(
    rt: &tokio::runtime::Runtime,
    child: &ChildGuard,
    addr: SocketAddr,
    args: &LbBenchArgs,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Figures> {
    let pid = child.0.id();
    // Sampled on a thread of its own at the edges of the measured window.
    let sampler = std::thread::spawn(move || {
        std::thread::sleep(warmup);
        let before = cpu_seconds(pid);
        std::thread::sleep(measure);
        Some(cpu_seconds(pid)? - before?)
    });
    let mut f = rt.block_on(load(|_| addr, args.connections, args.rate, warmup, measure))?;
    let requests = f.rps * measure.as_secs_f64();
    f.cpu_us = sampler
        .join()
        .ok()
        .flatten()
        .filter(|_| requests > 0.0)
        .map(|s| s * 1e6 / requests);
    Ok(f)
}

/// User plus system CPU seconds of process `pid` so far (Linux: `/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: f64 = rest.next()?.parse().ok()?;
    let stime: f64 = rest.next()?.parse().ok()?;
    // Clock ticks: 100 a second on every Linux this runs on (`getconf CLK_TCK`).
    Some((utime + stime) / 100.0)
}

/// The 1-minute load average (Linux: `/proc/loadavg`).
fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next().map(str::to_string)
}

/// The `--serve` side: an `lb` on `workers` Tokio threads until killed.
fn serve(path: &Path, workers: usize) -> anyhow::Result<()> {
    let config: lb::LbConfig = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let _lb = lb::Lb::start(config)?;
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })
}

/// A child process killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn_haproxy(
    bin: &Path,
    dir: &Path,
    port: u16,
    backends: &[SocketAddr],
    workers: usize,
) -> anyhow::Result<ChildGuard> {
    let mut cfg = format!(
        "global\n    nbthread {workers}\n    maxconn 4096\n\n\
         defaults\n    mode http\n    option http-keep-alive\n    option forwardfor\n    \
         timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\n\
         frontend bench\n    bind 127.0.0.1:{port}\n    default_backend pool\n\n\
         backend pool\n    balance roundrobin\n    http-reuse always\n    \
         option httpchk GET /\n"
    );
    // The same health checks as flotilla's: every second, healthy after 1, unhealthy after 2.
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "    server s{i} {b} check inter 1s rise 1 fall 2\n"
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::File::create(&path)?.write_all(cfg.as_bytes())?;
    let child = Command::new(bin)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log"))?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(ChildGuard(child))
}

fn spawn_flotilla_lb(
    dir: &Path,
    port: u16,
    backends: &[SocketAddr],
    workers: usize,
) -> anyhow::Result<ChildGuard> {
    let mut group = lb::TargetGroupConfig::new(backends.iter().copied());
    group.health_check = lb::HealthCheckConfig {
        enabled: true,
        protocol: lb::HealthCheckProtocol::Http,
        path: "/".into(),
        interval_ms: 1000,
        timeout_ms: 500,
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        matcher: "200".into(),
    };
    let config = lb::LbConfig {
        listeners: vec![lb::ListenerConfig {
            tls: None,
            bind: SocketAddr::from(([127, 0, 0, 1], port)),
            protocol: lb::ListenerProtocol::Http,
            rules: vec![],
            default_action: lb::Action::forward("pool"),
        }],
        target_groups: BTreeMap::from([("pool".to_string(), group)]),
    };
    config.validate()?;
    let path = dir.join("lb.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    let child = Command::new(std::env::current_exe()?)
        .args(["bench", "lb", "--workers", &workers.to_string(), "--serve"])
        .arg(&path)
        .env("FLOTILLA_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting the flotilla lb")?;
    Ok(ChildGuard(child))
}

/// A hyper HTTP/1.1 backend answering [`BODY`] to everything.
async fn start_backend() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// One `GET /`: `Ok(true)` for a 200 with the whole body read.
async fn request(send: &mut Sender) -> anyhow::Result<bool> {
    send.ready().await?;
    let req = hyper::Request::get("/")
        .header(hyper::header::HOST, "bench")
        .body(Empty::new())?;
    let resp = send.send_request(req).await?;
    let ok = resp.status() == 200;
    resp.into_body().collect().await?;
    Ok(ok)
}

/// Polls `addr` until it answers 200 (the proxy is up and its targets healthy).
async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = connect(addr).await
            && let Ok(true) = request(&mut s).await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not answer 200 within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Drives `connections` keep-alive connections (connection `i` to `target(i)`) for
/// `warmup + measure` and measures the `measure` part: in a closed loop without `rate` (each
/// connection sends its next request once it has the previous answer), in an open loop at
/// `rate` requests a second with it (see [`open_loop`]).
async fn load(
    target: impl Fn(usize) -> SocketAddr,
    connections: usize,
    rate: Option<f64>,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Figures> {
    let start = Instant::now();
    let from = start + warmup;
    let until = from + measure;
    let conns = (0..connections).map(|i| LoadConn::new(target(i), from, until));
    let tasks: Vec<_> = match rate {
        None => conns.map(|conn| tokio::spawn(closed_loop(conn))).collect(),
        Some(rate) => open_loop(conns.collect(), start, until, rate),
    };
    let mut all = Vec::new();
    let mut errors = 0;
    let mut sent = 0;
    for t in tasks {
        let conn = t.await?;
        all.extend(conn.lat);
        errors += conn.errors;
        sent += conn.sent;
    }
    all.sort_unstable();
    #[allow(clippy::cast_precision_loss)]
    let per_second = |n: usize| n as f64 / measure.as_secs_f64();
    Ok(Figures {
        rps: per_second(all.len()),
        sent_rps: per_second(sent),
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        errors,
        cpu_us: None,
    })
}

/// The closed loop of one connection: the next request as soon as the previous one is
/// answered (or its connection failed), each latency counted from when it was sent.
async fn closed_loop(mut conn: LoadConn) -> LoadConn {
    loop {
        let now = Instant::now();
        if now >= conn.until {
            return conn;
        }
        conn.send(now).await;
    }
}

/// Starts the open loop at `rate` requests a second from `start` to `until`: a task per
/// connection sending at the times it is handed, and the pacer, a blocking thread handing
/// connection `k mod n` (of `n`) the `k`-th send time, `start + k / rate`, when it comes. So
/// each connection has a send time every `n / rate` seconds, connection `i` from `i / rate`
/// on. A connection still waiting for an answer finds its next times queued and sends at once
/// (none skipped); every latency counts from the scheduled time.
///
/// The pacer sleeps on the OS clock (`std::thread::sleep`, tens of µs late) rather than on
/// Tokio's timer, whose millisecond ticks would add up to 2 ms to every latency.
fn open_loop(
    conns: Vec<LoadConn>,
    start: Instant,
    until: Instant,
    rate: f64,
) -> Vec<tokio::task::JoinHandle<LoadConn>> {
    let (schedules, tasks): (Vec<_>, Vec<_>) = conns
        .into_iter()
        .map(|mut conn| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
            let task = tokio::spawn(async move {
                while let Some(scheduled) = rx.recv().await {
                    if Instant::now() >= conn.until {
                        break;
                    }
                    conn.send(scheduled).await;
                }
                conn
            });
            (tx, task)
        })
        .unzip();
    tokio::task::spawn_blocking(move || {
        for (k, schedule) in (0u64..).zip(schedules.iter().cycle()) {
            #[allow(clippy::cast_precision_loss)]
            let at = start + Duration::from_secs_f64(k as f64 / rate);
            if at >= until {
                break;
            }
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // A connection that has ended (past `until`) no longer listens.
            let _ = schedule.send(at);
        }
        // Dropping the schedules ends the connections' loops.
    });
    tasks
}

/// One load connection and what it tallied: it connects on demand (again after an error) and
/// keeps the latencies and errors of the requests sent within the measured window
/// `[from, until)`, the same way in both loops.
struct LoadConn {
    addr: SocketAddr,
    conn: Option<Sender>,
    /// Start of the measured window (the end of the warm-up).
    from: Instant,
    /// End of the measured window, and of the load.
    until: Instant,
    /// Latencies (µs) of the requests answered 200 within the window.
    lat: Vec<u64>,
    /// Failed connects, failed requests and answers other than 200 within the window.
    errors: u64,
    /// Requests sent (or connections tried for one) within the window.
    sent: usize,
}

impl LoadConn {
    fn new(addr: SocketAddr, from: Instant, until: Instant) -> Self {
        LoadConn {
            addr,
            conn: None,
            from,
            until,
            lat: Vec::with_capacity(64 * 1024),
            errors: 0,
            sent: 0,
        }
    }

    /// Sends one `GET /` now (connecting first if there is no connection) and tallies it,
    /// its latency counted from `origin` (now in the closed loop, the scheduled time in the
    /// open loop). It counts if sent within the window and answered before the window closes
    /// (so a backlog from the warm-up counts, with its delay, when it goes out in the window);
    /// a failed connect counts as an error if tried within the window, and waits 10 ms.
    async fn send(&mut self, origin: Instant) {
        let now = Instant::now();
        let measured = now >= self.from && now < self.until;
        if measured {
            self.sent += 1;
        }
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => match connect(self.addr).await {
                Ok(c) => self.conn.insert(c),
                Err(_) => {
                    if measured {
                        self.errors += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return;
                }
            },
        };
        let answer = request(conn).await;
        let done = Instant::now();
        if answer.is_err() {
            self.conn = None;
        }
        if !measured || done > self.until {
            return;
        }
        match answer {
            #[allow(clippy::cast_possible_truncation)]
            Ok(true) => self
                .lat
                .push(done.duration_since(origin).as_micros() as u64),
            Ok(false) | Err(_) => self.errors += 1,
        }
    }
}
