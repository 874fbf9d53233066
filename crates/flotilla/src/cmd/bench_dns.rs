//! `flotilla bench dns`: the service-discovery DNS server (crate `dns`) against NSD.
//!
//! One zone (`bench.local`, `--services` services × `--instances` healthy instances, A + SRV)
//! is served by flotilla's `dns` in this process and by NSD (Debian `nsd`, one server
//! process, rate limiting off) from an equivalent zone file, each on its own loopback port.
//! First flotilla's answers are checked (every service's A set and SRV ports, NXDOMAIN for an
//! unknown name); then each server is measured:
//!
//! * **throughput**: `dnsperf` (Debian `dnsperf`, 100 queries in flight, no EDNS) for
//!   `--seconds`, over a query file cycling `s<i>.bench.local A`, `s<i>.bench.local SRV` and
//!   `t0.s<i>.bench.local A`; queries/s and average latency are parsed from its output;
//! * **latency**: dnsperf prints no percentiles, so p50/p99 come from a built-in closed-loop
//!   UDP client (one socket, `--latency-window` queries in flight, the same query mix) that
//!   times every query, for `--latency-seconds`.
//!
//! With `--rounds N` both servers are measured N times, alternating which goes first, and
//! every figure is the median over the rounds (`lost` is the sum): the development machine is
//! shared, and a burst of someone else's work should not decide the comparison.
//!
//! Without `dnsperf` the throughput column comes from the built-in client too (64 in flight);
//! without `nsd` (or with `--no-nsd`) the NSD row is skipped. The last line is
//! `dns_qps=… nsd_qps=… ratio=… p99_ms=…` (`na` where NSD was not measured; `p99_ms` is
//! flotilla's). Clients and servers share the machine.

use std::collections::BTreeSet;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use comfy_table::Table;
use dns::{DnsServer, Instance, Namespace, RecordType, Service, Snapshot};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use indicatif::{ProgressBar, ProgressStyle};

/// The benchmark's namespace.
const NAMESPACE: &str = "bench.local";
/// The TTL of every record in the benchmark zone.
const TTL: u32 = 60;

/// Arguments of `flotilla bench dns`.
#[derive(Debug, clap::Args)]
pub struct DnsBenchArgs {
    /// Seconds each throughput run (dnsperf) lasts.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seconds each latency run (built-in client) lasts.
    #[arg(long, default_value_t = 3.0)]
    pub latency_seconds: f64,
    /// Queries the built-in latency client keeps in flight.
    #[arg(long, default_value_t = 8)]
    pub latency_window: usize,
    /// Services in the zone.
    #[arg(long, default_value_t = 100)]
    pub services: usize,
    /// Instances per service.
    #[arg(long, default_value_t = 10)]
    pub instances: usize,
    /// Measurement rounds; servers alternate within each, figures are medians.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// NSD server processes (`server-count`; NSD's default is 1, flotilla's `dns` serves UDP
    /// with `dns::server::UDP_THREADS` threads).
    #[arg(long, default_value_t = 1)]
    pub nsd_servers: usize,
    /// Do not measure NSD even when it is installed.
    #[arg(long)]
    pub no_nsd: bool,
}

/// One server's figures.
struct Figures {
    server: &'static str,
    qps: f64,
    qps_tool: &'static str,
    avg_ms: Option<f64>,
    lost: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `flotilla bench dns`.
pub fn run(args: DnsBenchArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=1000).contains(&args.services) && (1..=250).contains(&args.instances),
        "--services must be 1..=1000 and --instances 1..=250"
    );
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(
        (1..=256).contains(&args.latency_window),
        "--latency-window must be 1..=256"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let snapshot = bench_snapshot(args.services, args.instances);
    let server = runtime.block_on(DnsServer::start(
        "127.0.0.1:0".parse()?,
        &snapshot,
        Vec::new(),
    ))?;
    let dir = tempfile::tempdir()?;
    let query_file = dir.path().join("queries.txt");
    std::fs::write(&query_file, query_lines(args.services).join("\n") + "\n")?;
    let queries: Vec<Vec<u8>> = query_lines(args.services)
        .iter()
        .map(|line| {
            let (name, qtype) = line.split_once(' ').unwrap_or((line, "A"));
            encode_query(0, name, if qtype == "SRV" { 33 } else { 1 })
        })
        .collect();

    let dnsperf = find_tool("dnsperf");
    let nsd = if args.no_nsd { None } else { find_tool("nsd") };
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {prefix} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(120));

    progress.set_message("checking flotilla's answers");
    check_answers(server.local_addr(), &snapshot)?;

    let running_nsd = match &nsd {
        Some(nsd) => {
            progress.set_message("starting nsd");
            // The port is free when picked but may be taken before NSD binds it: try again.
            let mut attempt = 0;
            let running = loop {
                attempt += 1;
                match Nsd::start(nsd, dir.path(), &snapshot, args.nsd_servers) {
                    Ok(running) => break running,
                    Err(e) if attempt < 3 && format!("{e:#}").contains("in use") => continue,
                    Err(e) => return Err(e),
                }
            };
            check_a(running.addr, "s0", &snapshot.namespaces[0].services[0])
                .context("nsd's answer differs from the zone")?;
            Some(running)
        }
        None => None,
    };
    let mut targets = vec![("flotilla dns", server.local_addr())];
    targets.extend(running_nsd.as_ref().map(|n| ("NSD", n.addr)));
    // Rounds alternate which server goes first, so that a machine busy with something else
    // for a while does not favour one of them; each figure is the median over the rounds.
    let mut runs: Vec<Vec<Figures>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        for k in 0..targets.len() {
            let i = (k + round) % targets.len();
            let (name, addr) = targets[i];
            progress.set_prefix(format!("round {}/{}", round + 1, args.rounds));
            runs[i].push(measure(
                name,
                addr,
                &args,
                dnsperf.as_deref(),
                &query_file,
                &queries,
                &progress,
            )?);
        }
    }
    drop(running_nsd);
    drop(server);
    progress.finish_and_clear();
    if dnsperf.is_none() {
        println!("dnsperf not found: throughput measured with the built-in client");
    }
    if nsd.is_none() && !args.no_nsd {
        println!("nsd not found: NSD not measured (apt-get install nsd dnsperf)");
    }
    let rows: Vec<Figures> = runs.into_iter().map(median).collect();

    let mut table = Table::new();
    table.set_header([
        "server",
        "queries/s",
        "measured by",
        "avg ms",
        "lost",
        "p50 ms",
        "p99 ms",
    ]);
    for r in &rows {
        table.add_row([
            r.server.to_owned(),
            format!("{:.0}", r.qps),
            r.qps_tool.to_owned(),
            r.avg_ms.map_or("-".to_owned(), |ms| format!("{ms:.3}")),
            r.lost.to_string(),
            format!("{:.3}", r.p50_ms),
            format!("{:.3}", r.p99_ms),
        ]);
    }
    println!(
        "zone {NAMESPACE}: {} services × {} instances; per server and round: throughput {} s, \
         latency (p50/p99, built-in client, {} in flight) {} s; medians of {} round(s)",
        args.services,
        args.instances,
        args.seconds,
        args.latency_window,
        args.latency_seconds,
        args.rounds
    );
    println!("{table}");
    if !args.no_nsd && nsd.is_some() {
        println!(
            "NSD: {} server process(es), rate limiting off; flotilla dns: {} UDP threads",
            args.nsd_servers,
            dns::server::UDP_THREADS
        );
    }
    let dns = &rows[0];
    let (nsd_qps, ratio) = match rows.get(1) {
        Some(nsd) if nsd.qps > 0.0 => (
            format!("{:.0}", nsd.qps),
            format!("{:.2}", dns.qps / nsd.qps),
        ),
        _ => ("na".to_owned(), "na".to_owned()),
    };
    println!(
        "dns_qps={:.0} nsd_qps={nsd_qps} ratio={ratio} p99_ms={:.3}",
        dns.qps, dns.p99_ms
    );
    Ok(())
}

/// The median of each figure over the rounds (the upper median for an even count).
fn median(mut rounds: Vec<Figures>) -> Figures {
    fn mid(values: impl Iterator<Item = f64>) -> f64 {
        let mut v: Vec<f64> = values.collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    let qps = mid(rounds.iter().map(|f| f.qps));
    let avg_ms = rounds
        .iter()
        .map(|f| f.avg_ms)
        .collect::<Option<Vec<f64>>>()
        .map(|v| mid(v.into_iter()));
    let p50_ms = mid(rounds.iter().map(|f| f.p50_ms));
    let p99_ms = mid(rounds.iter().map(|f| f.p99_ms));
    let lost = rounds.iter().map(|f| f.lost).sum();
    let first = rounds.swap_remove(0);
    Figures {
        qps,
        avg_ms,
        lost,
        p50_ms,
        p99_ms,
        ..first
    }
}

fn measure(
    server: &'static str,
    addr: SocketAddr,
    args: &DnsBenchArgs,
    dnsperf: Option<&Path>,
    query_file: &Path,
    queries: &[Vec<u8>],
    progress: &ProgressBar,
) -> anyhow::Result<Figures> {
    let seconds = Duration::from_secs_f64(args.seconds);
    let (qps, qps_tool, avg_ms, lost) = match dnsperf {
        Some(dnsperf) => {
            progress.set_message(format!("{server}: dnsperf for {}s", args.seconds));
            let out = run_dnsperf(dnsperf, addr, query_file, args.seconds)?;
            (out.qps, "dnsperf", Some(out.avg_ms), out.lost)
        }
        None => {
            progress.set_message(format!("{server}: built-in client for {}s", args.seconds));
            let out = load(addr, queries, 64, seconds)?;
            (out.qps(), "built-in", None, out.lost)
        }
    };
    progress.set_message(format!("{server}: latency for {}s", args.latency_seconds));
    let latency = load(
        addr,
        queries,
        args.latency_window,
        Duration::from_secs_f64(args.latency_seconds),
    )?;
    ensure!(
        latency.errors == 0,
        "{server}: {} answers were not NOERROR",
        latency.errors
    );
    let mut sorted = latency.latencies_us;
    sorted.sort_unstable();
    Ok(Figures {
        server,
        qps,
        qps_tool,
        avg_ms,
        lost,
        p50_ms: super::bench::percentile(&sorted, 0.50),
        p99_ms: super::bench::percentile(&sorted, 0.99),
    })
}

/// The benchmark zone: `s<i>.bench.local` with instances `t<j>` at `10.x.y.z`, all healthy.
pub fn bench_snapshot(services: usize, instances: usize) -> Snapshot {
    let services = (0..services)
        .map(|i| Service {
            name: format!("s{i}"),
            ttl: TTL,
            record_types: vec![RecordType::A, RecordType::Srv],
            instances: (0..instances)
                .map(|j| Instance {
                    id: format!("t{j}"),
                    ipv4: Ipv4Addr::from(0x0a00_0000 + u32::try_from(i * 256 + j + 1).unwrap_or(0)),
                    port: Some(8000 + u16::try_from(j).unwrap_or(0)),
                    healthy: true,
                })
                .collect(),
        })
        .collect();
    Snapshot {
        namespaces: vec![Namespace {
            name: NAMESPACE.to_owned(),
            services,
        }],
    }
}

fn query_lines(services: usize) -> Vec<String> {
    (0..services)
        .flat_map(|i| {
            [
                format!("s{i}.{NAMESPACE} A"),
                format!("s{i}.{NAMESPACE} SRV"),
                format!("t0.s{i}.{NAMESPACE} A"),
            ]
        })
        .collect()
}

/// The same zone in master-file format, for NSD.
fn zone_file(snapshot: &Snapshot) -> String {
    let mut out = format!(
        "$ORIGIN {NAMESPACE}.\n@ {ttl} IN SOA ns.{NAMESPACE}. hostmaster.{NAMESPACE}. 1 7200 900 1209600 {ttl}\n",
        ttl = dns::zone::NEGATIVE_TTL
    );
    for service in &snapshot.namespaces[0].services {
        for instance in &service.instances {
            let port = instance.port.unwrap_or_default();
            out += &format!(
                "{s} {TTL} IN A {ip}\n{s} {TTL} IN SRV 1 1 {port} {i}.{s}.{NAMESPACE}.\n{i}.{s} {TTL} IN A {ip}\n",
                s = service.name,
                i = instance.id,
                ip = instance.ipv4,
            );
        }
    }
    out
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A foreground NSD on a loopback port, from a temporary directory; killed on drop.
struct Nsd {
    child: Child,
    addr: SocketAddr,
}

impl Nsd {
    fn start(nsd: &Path, dir: &Path, snapshot: &Snapshot, servers: usize) -> anyhow::Result<Nsd> {
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let d = dir.display();
        std::fs::write(dir.join("bench.local.zone"), zone_file(snapshot))?;
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  server-count: {servers}\n  username: \"\"\n  \
             chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  \
             xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  zonelistfile: \"{d}/zone.list\"\n  \
             logfile: \"{d}/nsd.log\"\n  verbosity: 0\n  hide-version: yes\n  \
             rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n\
             remote-control:\n  control-enable: no\n\
             zone:\n  name: {NAMESPACE}\n  zonefile: \"{d}/bench.local.zone\"\n"
        );
        let conf_path = dir.join("nsd.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(nsd)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", nsd.display()))?;
        let mut nsd = Nsd { child, addr };
        // Ready when it answers; a query every 100 ms for up to 10 s.
        let probe = encode_query(1, &format!("s0.{NAMESPACE}"), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ask(addr, &probe, Duration::from_millis(100)).is_ok() {
                return Ok(nsd);
            }
            // Refused at once while NSD is not listening yet.
            std::thread::sleep(Duration::from_millis(100));
            if let Some(status) = nsd.child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("nsd.log")).unwrap_or_default();
                bail!("nsd exited with {status}: {log}");
            }
        }
        bail!("nsd did not answer on {addr} within 10 s")
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGTERM so that NSD stops its server processes too; SIGKILL if it lingers.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> io::Result<u16> {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        ErrorKind::AddrInUse,
        "no free loopback port",
    ))
}

struct DnsperfOutput {
    qps: f64,
    avg_ms: f64,
    lost: u64,
}

fn run_dnsperf(
    dnsperf: &Path,
    addr: SocketAddr,
    query_file: &Path,
    seconds: f64,
) -> anyhow::Result<DnsperfOutput> {
    let out = Command::new(dnsperf)
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(query_file)
        .args(["-l", &seconds.to_string(), "-q", "100", "-t", "2"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run dnsperf")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "dnsperf failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_dnsperf(&stdout).with_context(|| format!("cannot parse dnsperf's output:\n{stdout}"))
}

fn parse_dnsperf(text: &str) -> Option<DnsperfOutput> {
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
    };
    Some(DnsperfOutput {
        qps: field("Queries per second:")?.parse().ok()?,
        avg_ms: field("Average Latency (s):")?.parse::<f64>().ok()? * 1000.0,
        lost: field("Queries lost:")?.parse().ok()?,
    })
}

/// A query in wire format: id, RD clear, one question of class IN, no EDNS.
fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

/// Sends one query and returns the parsed answer.
fn ask(addr: SocketAddr, query: &[u8], timeout: Duration) -> anyhow::Result<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(query)?;
    let mut buf = [0u8; 4096];
    loop {
        let len = socket.recv(&mut buf)?;
        if len >= 2 && buf[..2] == query[..2] {
            return Ok(Message::from_vec(&buf[..len])?);
        }
    }
}

fn check_a(addr: SocketAddr, name: &str, service: &Service) -> anyhow::Result<()> {
    let query = encode_query(7, &format!("{name}.{NAMESPACE}"), 1);
    let answer = ask(addr, &query, Duration::from_secs(2))?;
    let got: BTreeSet<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
    let want: BTreeSet<String> = service
        .instances
        .iter()
        .filter(|i| i.healthy)
        .map(|i| i.ipv4.to_string())
        .collect();
    ensure!(
        got == want && answer.answers.iter().all(|r| r.ttl == service.ttl),
        "{name}: A answer {got:?} (ttl {:?}), expected {want:?} (ttl {})",
        answer.answers.first().map(|r| r.ttl),
        service.ttl
    );
    Ok(())
}

/// Checks every service's A and SRV answers and an NXDOMAIN.
fn check_answers(addr: SocketAddr, snapshot: &Snapshot) -> anyhow::Result<()> {
    for service in &snapshot.namespaces[0].services {
        check_a(addr, &service.name, service)?;
        // With EDNS (4096 bytes), so that every target's A record fits in the additional
        // section too.
        let mut query = encode_query(8, &format!("{}.{NAMESPACE}", service.name), 33);
        query[11] = 1;
        query.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        let answer = ask(addr, &query, Duration::from_secs(2))?;
        let mut ports: Vec<u16> = answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::SRV(srv) => Some(srv.port),
                _ => None,
            })
            .collect();
        ports.sort_unstable();
        let mut want: Vec<u16> = service.instances.iter().filter_map(|i| i.port).collect();
        want.sort_unstable();
        ensure!(
            ports == want && answer.additionals.len() == want.len(),
            "{}: SRV ports {ports:?} with {} additional records, expected {want:?}",
            service.name,
            answer.additionals.len()
        );
    }
    let answer = ask(
        addr,
        &encode_query(9, &format!("nope.{NAMESPACE}"), 1),
        Duration::from_secs(2),
    )?;
    ensure!(
        answer.metadata.response_code == ResponseCode::NXDomain && answer.authorities.len() == 1,
        "unknown name: {:?} with {} authority records, expected NXDOMAIN + SOA",
        answer.metadata.response_code,
        answer.authorities.len()
    );
    Ok(())
}

/// What the built-in client measured.
struct LoadOutput {
    answered: u64,
    errors: u64,
    lost: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl LoadOutput {
    fn qps(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let answered = self.answered as f64;
        answered / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A closed-loop UDP client: keeps `window` queries in flight for `duration`, timing each
/// answer; after 1 s without any answer the queries in flight count as lost and are resent.
fn load(
    addr: SocketAddr,
    queries: &[Vec<u8>],
    window: usize,
    duration: Duration,
) -> io::Result<LoadOutput> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut sent_at: Vec<Option<Instant>> = vec![None; 1 << 16];
    let mut next_id: u16 = 0;
    let mut next_query = 0usize;
    let mut in_flight = 0usize;
    let mut out = LoadOutput {
        answered: 0,
        errors: 0,
        lost: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    let mut send_one = |socket: &UdpSocket, sent_at: &mut Vec<Option<Instant>>| {
        let mut packet = queries[next_query % queries.len()].clone();
        next_query += 1;
        packet[..2].copy_from_slice(&next_id.to_be_bytes());
        sent_at[usize::from(next_id)] = Some(Instant::now());
        next_id = next_id.wrapping_add(1);
        socket.send(&packet).map(|_| ())
    };
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < duration {
        while in_flight < window {
            send_one(&socket, &mut sent_at)?;
            in_flight += 1;
        }
        match socket.recv(&mut buf) {
            Ok(len) if len >= 12 => {
                let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if let Some(sent) = sent_at[id].take() {
                    in_flight -= 1;
                    out.answered += 1;
                    if buf[3] & 0x0f != 0 {
                        out.errors += 1;
                    }
                    let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    out.latencies_us.push(us);
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                out.lost += in_flight as u64;
                in_flight = 0;
                sent_at.iter_mut().for_each(|s| *s = None);
            }
            Err(e) => return Err(e),
        }
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dnsperf_statistics() {
        let text = "Statistics:\n\n  Queries sent:         753231\n  Queries completed:    753231 (100.00%)\n  Queries lost:         3 (0.00%)\n\n  Run time (s):         3.000175\n  Queries per second:   251062.354696\n\n  Average Latency (s):  0.000317 (min 0.000006, max 0.007020)\n";
        let out = parse_dnsperf(text).expect("parses");
        assert_eq!(out.lost, 3);
        assert!((out.qps - 251_062.35).abs() < 0.01);
        assert!((out.avg_ms - 0.317).abs() < 1e-9);
    }

    #[test]
    fn zone_file_mirrors_the_snapshot() {
        let zone = zone_file(&bench_snapshot(2, 2));
        assert!(zone.contains("s1 60 IN SRV 1 1 8001 t1.s1.bench.local.\n"));
        assert!(zone.contains("t0.s0 60 IN A 10.0.0.1\n"));
        assert_eq!(zone.lines().count(), 2 + 2 * 2 * 3);
    }
}
