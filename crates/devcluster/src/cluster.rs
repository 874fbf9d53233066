//! `up`, `down` and `status` of a dev cluster: the orchestration over [`crate::net`],
//! [`crate::host`] and [`crate::ecs`]. `up` starts whatever is not running (so it also
//! restarts a killed server or brings a "crashed" node back as if it had rebooted);
//! `down` removes everything and is safe to repeat.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ecs::{EcsClient, Instance};
use crate::error::{Error, Result};
use crate::host::{self, netns_path, running_pid};
use crate::net;
use crate::spec::{self, ClusterSpec, ECS_CLUSTER, MAX_NODES, REGION};

/// The agents long-poll for this long; shorter liveness timeouts would mark idle,
/// healthy nodes disconnected or lost.
pub const AGENT_POLL_SECONDS: u64 = 20;

/// Receives progress: the CLI shows it as spinners, tests ignore it.
pub trait Reporter {
    /// A step begins.
    fn step(&self, message: &str);
    /// The current step ended; `message` says how.
    fn done(&self, message: &str);
}

/// A [`Reporter`] that says nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn step(&self, _: &str) {}
    fn done(&self, _: &str) {}
}

/// What `up` is asked for; `None` keeps what an existing cluster has (or the default).
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Cluster name.
    pub name: String,
    /// Cluster directory (default [`spec::default_dir`]).
    pub dir: Option<PathBuf>,
    /// Node count (default 3).
    pub nodes: Option<u8>,
    /// Control plane port on the host side of the bridge (default 8080).
    pub port: Option<u16>,
    /// `flotilla server --agent-timeout`, seconds.
    pub agent_timeout: Option<u64>,
    /// `flotilla server --instance-lost-after`, seconds.
    pub instance_lost_after: Option<u64>,
    /// The `flotilla` binary to run (server and agents); `flotilla-runtime-logger` must
    /// sit beside it.
    pub flotilla_bin: PathBuf,
}

/// The directory of cluster `name`: `dir` when given, else the one `up` noted, else
/// the default.
#[must_use]
pub fn resolve_dir(name: &str, dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_owned();
    }
    std::fs::read_to_string(spec::pointer_file(name))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| spec::default_dir(name))
}

fn preflight(bin: &Path) -> Result<()> {
    if !host::is_root() {
        return Err(Error::NotRoot);
    }
    host::require_programs(&[
        ("ip", "apt-get install -y iproute2"),
        ("nft", "apt-get install -y nftables"),
        ("nsenter", "apt-get install -y util-linux"),
        ("containerd", "apt-get install -y containerd"),
        ("ctr", "apt-get install -y containerd"),
        ("containerd-shim-runc-v2", "apt-get install -y containerd"),
        ("runc", "apt-get install -y runc"),
    ])?;
    if !bin.exists() {
        return Err(Error::Invalid(format!(
            "the flotilla binary {} is missing",
            bin.display()
        )));
    }
    let logger = bin.with_file_name("flotilla-runtime-logger");
    if !logger.exists() {
        return Err(Error::Invalid(format!(
            "{} is missing (build it with `cargo build -p runtime`); the agents need it beside flotilla",
            logger.display()
        )));
    }
    Ok(())
}

fn check_timeouts(opts: &UpOptions) -> Result<()> {
    for (flag, value) in [
        ("--agent-timeout", opts.agent_timeout),
        ("--instance-lost-after", opts.instance_lost_after),
    ] {
        if let Some(v) = value
            && v <= AGENT_POLL_SECONDS
        {
            return Err(Error::Invalid(format!(
                "{flag} {v}s is too short: agents long-poll for {AGENT_POLL_SECONDS} s, so idle healthy nodes would be marked lost; use at least {}s",
                AGENT_POLL_SECONDS + 5
            )));
        }
    }
    Ok(())
}

/// The spec to bring up: the stored one (checked against `opts`) or a new one.
fn resolve_spec(opts: &UpOptions) -> Result<ClusterSpec> {
    spec::validate_name(&opts.name)?;
    check_timeouts(opts)?;
    if let Some(n) = opts.nodes
        && !(1..=MAX_NODES).contains(&n)
    {
        return Err(Error::Invalid(format!(
            "--nodes must be 1 to {MAX_NODES}, not {n}"
        )));
    }
    if opts.port == Some(0) {
        return Err(Error::Invalid("--port must not be 0".into()));
    }
    let dir = resolve_dir(&opts.name, opts.dir.as_deref());
    if !dir.is_absolute() {
        return Err(Error::Invalid(format!(
            "--dir must be an absolute path, not {}",
            dir.display()
        )));
    }
    if let Some(existing) = ClusterSpec::load(&dir)? {
        if existing.name != opts.name {
            return Err(Error::Invalid(format!(
                "{} holds cluster {:?}, not {:?}",
                dir.display(),
                existing.name,
                opts.name
            )));
        }
        let differs = |what: &str, asked: Option<String>, has: String| match asked {
            Some(a) if a != has => Err(Error::Invalid(format!(
                "cluster {} exists with {what} {has}, not {a}; run `flotilla dev cluster down --name {}` first to change it",
                existing.name, existing.name
            ))),
            _ => Ok(()),
        };
        differs(
            "--nodes",
            opts.nodes.map(|n| n.to_string()),
            existing.nodes.to_string(),
        )?;
        differs(
            "--port",
            opts.port.map(|n| n.to_string()),
            existing.port.to_string(),
        )?;
        let secs = |v: Option<u64>| v.map_or_else(|| "default".to_owned(), |v| v.to_string());
        differs(
            "--agent-timeout",
            opts.agent_timeout.map(|v| v.to_string()),
            secs(existing.agent_timeout),
        )?;
        differs(
            "--instance-lost-after",
            opts.instance_lost_after.map(|v| v.to_string()),
            secs(existing.instance_lost_after),
        )?;
        return Ok(existing);
    }
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Invalid(format!(
            "{} exists and is not a dev cluster's directory (no {}); choose another --dir",
            dir.display(),
            spec::SPEC_FILE
        )));
    }
    let mut taken: BTreeSet<u8> = net::subnets_in_use().into_iter().collect();
    if let Ok(entries) =
        std::fs::read_dir(spec::pointer_file("x").parent().unwrap_or(Path::new("/")))
    {
        for e in entries.flatten() {
            let other = resolve_dir(&e.file_name().to_string_lossy(), None);
            if let Ok(Some(s)) = ClusterSpec::load(&other) {
                taken.insert(s.subnet);
            }
        }
    }
    let subnet = (0..=u8::MAX)
        .find(|s| !taken.contains(s))
        .ok_or_else(|| Error::Invalid("every 10.213.X.0/24 subnet is in use".into()))?;
    Ok(ClusterSpec {
        name: opts.name.clone(),
        dir,
        nodes: opts.nodes.unwrap_or(3),
        subnet,
        port: opts.port.unwrap_or(8080),
        agent_timeout: opts.agent_timeout,
        instance_lost_after: opts.instance_lost_after,
    })
}

fn wait_until<T>(
    what: impl Fn() -> String,
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(what()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(Error::io("cannot create", path))
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

fn server_data(spec: &ClusterSpec) -> PathBuf {
    spec.server_dir().join("data")
}
fn server_pid_file(spec: &ClusterSpec) -> PathBuf {
    spec.server_dir().join("server.pid")
}
fn server_log(spec: &ClusterSpec) -> PathBuf {
    spec.server_dir().join("server.log")
}
fn server_pid(spec: &ClusterSpec) -> Option<u32> {
    running_pid(&server_pid_file(spec), &server_data(spec).to_string_lossy())
}

/// The port of the server's Cloud Map DNS, on the host side of the bridge.
pub const DNS_PORT: u16 = 53;

/// The `--dns-listen` address in a process's NUL-separated command line.
fn dns_listen_arg(cmdline: &[u8]) -> Option<SocketAddr> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .find(|w| w[0] == b"--dns-listen")
        .and_then(|w| std::str::from_utf8(w[1]).ok()?.parse().ok())
}

/// Where the running server (`pid`) serves Cloud Map DNS, from its command line.
fn server_dns(pid: u32) -> Option<SocketAddr> {
    dns_listen_arg(&std::fs::read(format!("/proc/{pid}/cmdline")).ok()?)
}

/// The name servers of a `resolv.conf` (at most the three a resolver uses) as the
/// server's `--dns-upstream`s: names outside Cloud Map go where the host's would.
/// `own` (the server's own DNS address) is left out, so that nothing loops.
fn upstreams(resolv_conf: &str, own: Ipv4Addr) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            words.next()?.parse::<IpAddr>().ok()
        })
        .filter(|ip| *ip != IpAddr::V4(own))
        .take(3)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Whether UDP and TCP `addr` can be bound (nothing else serves DNS there).
fn port_free(addr: SocketAddr) -> bool {
    std::net::UdpSocket::bind(addr).is_ok() && std::net::TcpListener::bind(addr).is_ok()
}

/// Makes sure the server runs; returns what happened and where it serves Cloud Map DNS.
/// A new server serves it on the host side of the bridge, port [`DNS_PORT`] (forwarding
/// other names to the host's name servers), unless that port is taken: then it starts
/// without DNS and the message says so (tasks keep their images' resolv.conf).
fn ensure_server(
    spec: &ClusterSpec,
    bin: &Path,
    api: &EcsClient,
) -> Result<(String, Option<SocketAddr>)> {
    if let Some(pid) = server_pid(spec) {
        wait_until(
            || {
                format!(
                    "the server (pid {pid}) does not answer; see {}",
                    server_log(spec).display()
                )
            },
            Duration::from_secs(15),
            || api.healthy().then_some(()),
        )?;
        return Ok((
            format!("server already running (pid {pid})"),
            server_dns(pid),
        ));
    }
    if api.healthy() {
        return Err(Error::Invalid(format!(
            "something else answers on {}; choose another --port",
            spec.endpoint()
        )));
    }
    mkdir(&server_data(spec))?;
    let mut args = vec![
        "server".to_owned(),
        "--listen".into(),
        format!("{}:{}", spec.host_ip(), spec.port),
        "--data-dir".into(),
        server_data(spec).to_string_lossy().into_owned(),
        "--allow-reset".into(),
    ];
    if let Some(t) = spec.agent_timeout {
        args.extend(["--agent-timeout".into(), t.to_string()]);
    }
    if let Some(t) = spec.instance_lost_after {
        args.extend(["--instance-lost-after".into(), t.to_string()]);
    }
    let dns_addr = SocketAddr::from((spec.host_ip(), DNS_PORT));
    let dns = port_free(dns_addr).then_some(dns_addr);
    if let Some(addr) = dns {
        args.extend(["--dns-listen".into(), addr.to_string()]);
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for upstream in upstreams(&resolv, spec.host_ip()) {
            args.extend(["--dns-upstream".into(), upstream.to_string()]);
        }
    }
    let dns_note = match dns {
        Some(addr) => format!("Cloud Map DNS on {addr}"),
        None => format!("no Cloud Map DNS: {dns_addr} is in use"),
    };
    let log = server_log(spec);
    let pid = host::spawn_daemon(None, bin, &args, &log, &server_pid_file(spec))?;
    wait_until(
        || {
            format!(
                "the server did not answer on {} within 15 s; see {}:\n{}",
                spec.endpoint(),
                log.display(),
                log_tail(&log)
            )
        },
        Duration::from_secs(15),
        || {
            if !host::process_alive(pid) {
                return Some(false);
            }
            api.healthy().then_some(true)
        },
    )
    .and_then(|ok| {
        if ok {
            Ok((format!("server started (pid {pid}); {dns_note}"), dns))
        } else {
            Err(Error::Timeout(format!(
                "the server exited; see {}:\n{}",
                log.display(),
                log_tail(&log)
            )))
        }
    })
}

// ---------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------

fn containerd_config_file(spec: &ClusterSpec, i: u8) -> PathBuf {
    spec.containerd_dir(i).join("config.toml")
}
fn containerd_pid_file(spec: &ClusterSpec, i: u8) -> PathBuf {
    spec.containerd_dir(i).join("containerd.pid")
}
fn containerd_pid(spec: &ClusterSpec, i: u8) -> Option<u32> {
    running_pid(
        &containerd_pid_file(spec, i),
        &containerd_config_file(spec, i).to_string_lossy(),
    )
}
fn agent_pid_file(spec: &ClusterSpec, i: u8) -> PathBuf {
    spec.node_dir(i).join("agent.pid")
}
fn agent_log(spec: &ClusterSpec, i: u8) -> PathBuf {
    spec.node_dir(i).join("agent.log")
}
fn agent_pid(spec: &ClusterSpec, i: u8) -> Option<u32> {
    running_pid(
        &agent_pid_file(spec, i),
        &spec.agent_dir(i).to_string_lossy(),
    )
}

fn containerd_answers(spec: &ClusterSpec, i: u8) -> bool {
    let sock = spec.containerd_socket(i);
    sock.exists()
        && host::run(
            "ctr",
            &["--address", &sock.to_string_lossy(), "version"],
            None,
        )
        .is_ok()
}

/// Every process of node `i`: all in its network namespace (containerd, agent, shims,
/// loggers, host-mode containers), all in its cgroups (containers in their own
/// namespaces), and the pid files' processes.
fn node_pids(spec: &ClusterSpec, i: u8) -> BTreeSet<u32> {
    let mut pids = host::pids_in_netns(&netns_path(&spec.netns(i)));
    pids.extend(host::pids_in_cgroup(&spec.cgroup_parent(i)));
    pids.extend(containerd_pid(spec, i));
    pids.extend(agent_pid(spec, i));
    pids
}

/// What a crashed node leaves on the host beyond its processes: shim sockets in
/// `/run/containerd/s` (named in each task bundle's `address` file), mounts under its
/// directory, runc and containerd run state. Removed as a reboot would.
fn clear_node_run_state(spec: &ClusterSpec, i: u8) -> Result<()> {
    let state = spec.containerd_dir(i).join("state");
    let tasks = state.join("io.containerd.runtime.v2.task");
    for ns in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
        for bundle in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            if let Ok(address) = std::fs::read_to_string(bundle.path().join("address"))
                && let Some(path) = address.trim().strip_prefix("unix://")
                && path.starts_with("/run/containerd/s/")
            {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    host::unmount_all_under(&spec.node_dir(i))?;
    for dir in [state, spec.runc_root(i)] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(Error::io("cannot remove", &dir))?;
        }
    }
    Ok(())
}

/// Kills every process of node `i` (a power cut, as far as the node is concerned).
fn kill_node(spec: &ClusterSpec, i: u8) -> Result<()> {
    host::kill_until_gone(&format!("node {i}"), Duration::from_secs(15), || {
        node_pids(spec, i)
    })
}

/// `task_dns`: the agent's `--task-dns` (the server's Cloud Map DNS), when it serves one.
fn ensure_node(spec: &ClusterSpec, i: u8, bin: &Path, task_dns: Option<IpAddr>) -> Result<String> {
    net::ensure_node(spec, i)?;
    let ns = spec.netns(i);
    let mut started = Vec::new();
    let cdir = spec.containerd_dir(i);
    let containerd_running = containerd_pid(spec, i).is_some();
    if !containerd_running {
        // A node whose containerd is gone is a machine that went down: clear what it left
        // (processes, mounts, run state) and boot it again. Images and containers'
        // metadata (containerd's root) and the agent's state survive, as on disk.
        kill_node(spec, i)?;
        clear_node_run_state(spec, i)?;
        mkdir(&cdir.join("root"))?;
        mkdir(&cdir.join("state"))?;
        let cfg = containerd_config_file(spec, i);
        std::fs::write(&cfg, spec::containerd_config(&cdir))
            .map_err(Error::io("cannot write", &cfg))?;
        for stale in ["containerd.sock", "containerd.sock.ttrpc", "debug.sock"] {
            let _ = std::fs::remove_file(cdir.join(stale));
        }
        let log = cdir.join("containerd.log");
        let pid = host::spawn_daemon(
            Some(&ns),
            Path::new("containerd"),
            &["--config".to_owned(), cfg.to_string_lossy().into_owned()],
            &log,
            &containerd_pid_file(spec, i),
        )?;
        started.push(format!("containerd {pid}"));
    }
    wait_until(
        || {
            format!(
                "node {i}: containerd does not answer; see {}:\n{}",
                cdir.join("containerd.log").display(),
                log_tail(&cdir.join("containerd.log"))
            )
        },
        Duration::from_secs(20),
        || containerd_answers(spec, i).then_some(()),
    )?;
    if agent_pid(spec, i).is_none() {
        mkdir(&spec.agent_dir(i))?;
        mkdir(&spec.runc_root(i))?;
        let args: Vec<String> = [
            "agent",
            "--endpoint",
            &spec.endpoint(),
            "--cluster",
            ECS_CLUSTER,
            "--region",
            REGION,
            "--data-dir",
            &spec.agent_dir(i).to_string_lossy(),
            "--containerd-socket",
            &spec.containerd_socket(i).to_string_lossy(),
            "--instance-id",
            &spec.instance_id(i),
            "--attributes",
            &format!(
                "ecs.availability-zone={},flotilla.dev-node={i}",
                ClusterSpec::zone(i)
            ),
            "--runc-root",
            &spec.runc_root(i).to_string_lossy(),
            "--cgroup-parent",
            &spec.cgroup_parent(i),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(
            task_dns
                .into_iter()
                .flat_map(|ip| ["--task-dns".to_owned(), ip.to_string()]),
        )
        .collect();
        let pid = host::spawn_daemon(
            Some(&ns),
            bin,
            &args,
            &agent_log(spec, i),
            &agent_pid_file(spec, i),
        )?;
        started.push(format!("agent {pid}"));
    }
    Ok(if started.is_empty() {
        format!("node {i} ({}) already running", spec.node_ip(i))
    } else {
        format!(
            "node {i} ({}): started {}",
            spec.node_ip(i),
            started.join(", ")
        )
    })
}

/// Brings the cluster up (or completes it) and waits until every node's agent is
/// registered and connected.
pub fn up(opts: &UpOptions, report: &dyn Reporter) -> Result<ClusterSpec> {
    preflight(&opts.flotilla_bin)?;
    let spec = resolve_spec(opts)?;
    spec.save()?;
    let pointer = spec::pointer_file(&spec.name);
    if let Some(parent) = pointer.parent() {
        mkdir(parent)?;
    }
    std::fs::write(&pointer, spec.dir.to_string_lossy().as_bytes())
        .map_err(Error::io("cannot write", &pointer))?;

    report.step(&format!(
        "host bridge {} ({}/24)",
        spec.bridge(),
        spec.host_ip()
    ));
    net::ensure_host(&spec)?;
    report.done(&format!(
        "host bridge {} ({}/24)",
        spec.bridge(),
        spec.host_ip()
    ));

    report.step(&format!("control plane on {}", spec.endpoint()));
    let api = EcsClient::new(&spec.endpoint())?;
    let (msg, dns) = ensure_server(&spec, &opts.flotilla_bin, &api)?;
    api.create_cluster()?;
    report.done(&msg);

    for i in spec.node_numbers() {
        report.step(&format!(
            "node {i}: netns {}, containerd, agent",
            spec.netns(i)
        ));
        let msg = ensure_node(&spec, i, &opts.flotilla_bin, dns.map(|a| a.ip()))?;
        report.done(&msg);
    }

    report.step(&format!("waiting for {} agents to register", spec.nodes));
    let ids: BTreeSet<String> = spec.node_numbers().map(|i| spec.instance_id(i)).collect();
    wait_until(
        || {
            let missing: Vec<String> = spec
                .node_numbers()
                .filter(|i| {
                    !api.instances()
                        .unwrap_or_default()
                        .iter()
                        .any(|ci| ci.instance_id == spec.instance_id(*i) && ci.agent_connected)
                })
                .map(|i| format!("node {i} (log {})", agent_log(&spec, i).display()))
                .collect();
            format!("agents not connected within 60 s: {}", missing.join(", "))
        },
        Duration::from_secs(60),
        || {
            let connected = api
                .instances()
                .ok()?
                .into_iter()
                .filter(|ci| ids.contains(&ci.instance_id) && ci.agent_connected)
                .count();
            (connected == ids.len()).then_some(())
        },
    )?;
    report.done(&format!(
        "{} agents connected to cluster {ECS_CLUSTER:?}",
        spec.nodes
    ));
    Ok(spec)
}

/// What `down` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownOutcome {
    /// There was no such cluster; nothing was touched.
    NothingThere,
    /// The cluster was removed.
    Removed,
}

/// Node numbers that have a namespace on the host for cluster `name`.
fn netns_nodes(name: &str) -> Vec<u8> {
    let prefix = format!("flotilla-{name}-");
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect()
}

/// Removes everything of cluster `name`: processes (server, agents, containerds, shims,
/// containers), mounts, shim sockets, namespaces, veths, the bridge, nftables table,
/// cgroups, then its directory and pointer file. Safe to run twice.
pub fn down(name: &str, dir: Option<&Path>, report: &dyn Reporter) -> Result<DownOutcome> {
    spec::validate_name(name)?;
    if !host::is_root() {
        return Err(Error::NotRoot);
    }
    let dir = resolve_dir(name, dir);
    let stored = ClusterSpec::load(&dir)?;
    let leftover_nodes = netns_nodes(name);
    let bridge_left = net::link_exists(&format!("fld-{name}"));
    let spec = match stored {
        Some(s) => s,
        None if leftover_nodes.is_empty() && !bridge_left => {
            let _ = std::fs::remove_file(spec::pointer_file(name));
            return Ok(DownOutcome::NothingThere);
        }
        // A half-made cluster (no spec): tear down what the names say.
        None => ClusterSpec {
            name: name.to_owned(),
            dir: dir.clone(),
            nodes: leftover_nodes.iter().copied().max().unwrap_or(0),
            subnet: 0,
            port: 0,
            agent_timeout: None,
            instance_lost_after: None,
        },
    };
    let nodes: BTreeSet<u8> = spec.node_numbers().chain(leftover_nodes).collect();

    report.step("stopping the server");
    host::kill_until_gone("server", Duration::from_secs(10), || {
        server_pid(&spec).into_iter().collect()
    })?;
    report.done("server stopped");
    for &i in &nodes {
        report.step(&format!(
            "node {i}: killing agent, containerd, shims and containers"
        ));
        kill_node(&spec, i)?;
        clear_node_run_state(&spec, i)?;
        host::remove_cgroup_tree(&spec.cgroup_parent(i))?;
        net::remove_node(&spec, i)?;
        report.done(&format!("node {i} removed"));
    }
    report.step("removing the bridge, NAT rules and files");
    net::remove_host(&spec)?;
    host::unmount_all_under(&spec.dir)?;
    if spec.dir.join(spec::SPEC_FILE).exists() {
        std::fs::remove_dir_all(&spec.dir).map_err(Error::io("cannot remove", &spec.dir))?;
    }
    let _ = std::fs::remove_file(spec::pointer_file(name));
    report.done(&format!("cluster {name} removed"));
    Ok(DownOutcome::Removed)
}

/// A daemon of the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessStatus {
    /// Its pid, when running.
    pub pid: Option<u32>,
    /// Whether it is running.
    pub running: bool,
    /// Its log file.
    pub log: PathBuf,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node number (1-based).
    pub index: u8,
    /// Its network namespace.
    pub netns: String,
    /// Whether the namespace exists.
    pub netns_exists: bool,
    /// Its address.
    pub ip: String,
    /// Its availability zone attribute.
    pub zone: String,
    /// Its `ec2InstanceId`.
    pub instance_id: String,
    /// Its parent cgroup.
    pub cgroup_parent: String,
    /// containerd's socket.
    pub containerd_socket: PathBuf,
    /// containerd.
    pub containerd: ProcessStatus,
    /// The agent.
    pub agent: ProcessStatus,
    /// Its container instance, when the control plane knows it.
    pub container_instance_arn: Option<String>,
    /// The instance's status (`ACTIVE`, `DRAINING`).
    pub instance_status: Option<String>,
    /// Whether the control plane hears from the agent.
    pub agent_connected: Option<bool>,
    /// Running tasks on it.
    pub running_tasks: Option<i64>,
}

/// The whole cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// Cluster name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The control plane's URL.
    pub endpoint: String,
    /// Region to use with the AWS CLI.
    pub region: String,
    /// ECS cluster the nodes joined.
    pub ecs_cluster: String,
    /// Host bridge.
    pub bridge: String,
    /// The server.
    pub server: ProcessStatus,
    /// Whether the server answers `/healthz`.
    pub server_healthy: bool,
    /// Where the server serves Cloud Map's private DNS namespaces (the nodes' agents
    /// give it to tasks as their name server); `None` when it does not.
    pub dns: Option<String>,
    /// The nodes.
    pub nodes: Vec<NodeStatus>,
}

/// The cluster's state, or `None` when there is no cluster `name`.
pub fn status(name: &str, dir: Option<&Path>) -> Result<Option<ClusterStatus>> {
    spec::validate_name(name)?;
    let dir = resolve_dir(name, dir);
    let Some(spec) = ClusterSpec::load(&dir)? else {
        return Ok(None);
    };
    let api = EcsClient::new(&spec.endpoint())?;
    let server_pid = server_pid(&spec);
    let healthy = server_pid.is_some() && api.healthy();
    let instances: Vec<Instance> = if healthy {
        api.instances().unwrap_or_default()
    } else {
        Vec::new()
    };
    let nodes = spec
        .node_numbers()
        .map(|i| {
            let ci = instances
                .iter()
                .find(|ci| ci.instance_id == spec.instance_id(i));
            let cpid = containerd_pid(&spec, i);
            let apid = agent_pid(&spec, i);
            NodeStatus {
                index: i,
                netns: spec.netns(i),
                netns_exists: net::netns_exists(&spec.netns(i)),
                ip: spec.node_ip(i).to_string(),
                zone: ClusterSpec::zone(i),
                instance_id: spec.instance_id(i),
                cgroup_parent: spec.cgroup_parent(i),
                containerd_socket: spec.containerd_socket(i),
                containerd: ProcessStatus {
                    pid: cpid,
                    running: cpid.is_some(),
                    log: spec.containerd_dir(i).join("containerd.log"),
                },
                agent: ProcessStatus {
                    pid: apid,
                    running: apid.is_some(),
                    log: agent_log(&spec, i),
                },
                container_instance_arn: ci.map(|c| c.arn.clone()),
                instance_status: ci.map(|c| c.status.clone()),
                agent_connected: ci.map(|c| c.agent_connected),
                running_tasks: ci.map(|c| c.running_tasks),
            }
        })
        .collect();
    Ok(Some(ClusterStatus {
        name: spec.name.clone(),
        dir: spec.dir.clone(),
        endpoint: spec.endpoint(),
        region: REGION.to_owned(),
        ecs_cluster: ECS_CLUSTER.to_owned(),
        bridge: spec.bridge(),
        server: ProcessStatus {
            pid: server_pid,
            running: server_pid.is_some(),
            log: server_log(&spec),
        },
        server_healthy: healthy,
        dns: server_pid.and_then(server_dns).map(|a| a.to_string()),
        nodes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> UpOptions {
        UpOptions {
            name: "t".into(),
            dir: None,
            nodes: None,
            port: None,
            agent_timeout: None,
            instance_lost_after: None,
            flotilla_bin: PathBuf::from("/nonexistent"),
        }
    }

    #[test]
    fn the_servers_dns_comes_from_its_command_line() {
        let cmdline = [
            "flotilla",
            "server",
            "--listen",
            "10.213.0.1:8080",
            "--dns-listen",
            "10.213.0.1:53",
            "--dns-upstream",
            "127.0.0.53:53",
            "",
        ]
        .join("\0");
        assert_eq!(
            dns_listen_arg(cmdline.as_bytes()),
            Some("10.213.0.1:53".parse().unwrap())
        );
        assert_eq!(dns_listen_arg(b"flotilla\0server\0--listen\0x\0"), None);
        assert_eq!(dns_listen_arg(b"flotilla\0server\0--dns-listen"), None);
    }

    #[test]
    fn upstreams_are_the_hosts_name_servers() {
        let own = Ipv4Addr::new(10, 213, 0, 1);
        let conf = "# systemd-resolved\nnameserver 127.0.0.53\nnameserver 10.213.0.1\nnameserver fd00::1\nsearch lan\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nnameserver bad\n";
        assert_eq!(
            upstreams(conf, own),
            [
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fd00::1]:53".parse().unwrap(),
                "1.1.1.1:53".parse().unwrap(),
            ],
            "in order, without the server's own address, three at most"
        );
        assert!(upstreams("", own).is_empty());
    }

    #[test]
    fn a_taken_port_is_seen() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(!port_free(taken.local_addr().unwrap()));
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!port_free(tcp.local_addr().unwrap()));
    }

    #[test]
    fn short_liveness_timeouts_are_refused() {
        let mut o = opts();
        o.instance_lost_after = Some(10);
        let err = check_timeouts(&o).unwrap_err().to_string();
        assert!(
            err.contains("--instance-lost-after 10s is too short"),
            "{err}"
        );
        o.instance_lost_after = Some(25);
        o.agent_timeout = Some(20);
        assert!(check_timeouts(&o).is_err());
        o.agent_timeout = Some(25);
        assert!(check_timeouts(&o).is_ok());
    }

    #[test]
    fn bad_options_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts();
        o.dir = Some(dir.path().join("c"));
        o.nodes = Some(0);
        assert!(
            resolve_spec(&o)
                .unwrap_err()
                .to_string()
                .contains("--nodes must be 1 to 99")
        );
        o.nodes = Some(100);
        assert!(resolve_spec(&o).is_err());
        o.nodes = Some(2);
        o.name = "Bad-Name".into();
        assert!(
            resolve_spec(&o)
                .unwrap_err()
                .to_string()
                .contains("cluster name")
        );
        o.name = "t".into();
        o.dir = Some("relative".into());
        assert!(
            resolve_spec(&o)
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
        // A directory with someone else's files is never taken over.
        std::fs::write(dir.path().join("precious"), "x").unwrap();
        o.dir = Some(dir.path().to_owned());
        assert!(
            resolve_spec(&o)
                .unwrap_err()
                .to_string()
                .contains("not a dev cluster's directory")
        );
    }

    #[test]
    fn an_existing_cluster_keeps_its_shape() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ClusterSpec {
            name: "t".into(),
            dir: dir.path().to_owned(),
            nodes: 3,
            subnet: 7,
            port: 9000,
            agent_timeout: None,
            instance_lost_after: Some(25),
        };
        spec.save().unwrap();
        let mut o = opts();
        o.dir = Some(dir.path().to_owned());
        assert_eq!(resolve_spec(&o).unwrap(), spec);
        o.nodes = Some(3);
        o.instance_lost_after = Some(25);
        assert_eq!(resolve_spec(&o).unwrap(), spec);
        o.nodes = Some(4);
        let err = resolve_spec(&o).unwrap_err().to_string();
        assert!(err.contains("exists with --nodes 3, not 4"), "{err}");
        o.nodes = None;
        o.name = "u".into();
        assert!(
            resolve_spec(&o)
                .unwrap_err()
                .to_string()
                .contains("holds cluster")
        );
    }
}
