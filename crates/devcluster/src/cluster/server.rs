//! The control plane servers of a dev cluster: their files, starting them (server 1 with
//! Cloud Map DNS on the host side of the bridge when the port is free), finding where a
//! running one serves DNS, and — on `--store etcd` — the local etcd members they share.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{log_tail, mkdir, wait_until};
use crate::ecs::EcsClient;
use crate::error::{Error, Result};
use crate::host::{self, running_pid};
use crate::spec::{ClusterSpec, MAX_SERVERS, StoreKind};

/// A daemon of the cluster (a server, an etcd member) and where it keeps its files:
/// `<dir>/data`, `<dir>/<name>.pid`, `<dir>/<name>.log`.
struct Daemon {
    dir: PathBuf,
    name: &'static str,
}

impl Daemon {
    /// Server `k`.
    fn server(spec: &ClusterSpec, k: u8) -> Daemon {
        Daemon {
            dir: spec.server_dir_of(k),
            name: "server",
        }
    }

    /// etcd member `m`.
    fn etcd(spec: &ClusterSpec, m: u8) -> Daemon {
        Daemon {
            dir: spec.etcd_dir(m),
            name: "etcd",
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join(format!("{}.pid", self.name))
    }

    fn log(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    /// Its pid, when it runs (its data directory marks its command line).
    fn pid(&self) -> Option<u32> {
        running_pid(&self.pid_file(), &self.data().to_string_lossy())
    }
}

pub(super) fn server_log(spec: &ClusterSpec, k: u8) -> PathBuf {
    Daemon::server(spec, k).log()
}
/// Server `k`'s pid, when it runs.
pub(super) fn server_pid(spec: &ClusterSpec, k: u8) -> Option<u32> {
    Daemon::server(spec, k).pid()
}
/// The pids of every server that runs (also of numbers a half-made cluster's spec
/// does not list).
pub(super) fn all_server_pids(spec: &ClusterSpec) -> std::collections::BTreeSet<u32> {
    (1..=MAX_SERVERS)
        .filter_map(|k| server_pid(spec, k))
        .collect()
}

/// etcd member `m`'s log.
pub(super) fn etcd_log(spec: &ClusterSpec, m: u8) -> PathBuf {
    Daemon::etcd(spec, m).log()
}
/// etcd member `m`'s pid, when it runs.
pub(super) fn etcd_pid(spec: &ClusterSpec, m: u8) -> Option<u32> {
    Daemon::etcd(spec, m).pid()
}
/// The pids of every etcd member that runs.
pub(super) fn all_etcd_pids(spec: &ClusterSpec) -> std::collections::BTreeSet<u32> {
    (1..=crate::spec::ETCD_MEMBERS)
        .filter_map(|m| etcd_pid(spec, m))
        .collect()
}

/// Makes sure every etcd member of a `--store etcd` cluster runs (on the host side of
/// the bridge, with the limits flotilla's etcd store needs), and waits until the
/// cluster has a leader. Returns what happened.
pub(super) fn ensure_etcd(spec: &ClusterSpec) -> Result<String> {
    let mut started = Vec::new();
    for m in spec.etcd_members() {
        let etcd = Daemon::etcd(spec, m);
        if etcd.pid().is_some() {
            continue;
        }
        mkdir(&spec.etcd_dir(m))?;
        let (client, peer) = ClusterSpec::etcd_ports(m);
        let host = spec.host_ip();
        let args: Vec<String> = [
            "--name".to_owned(),
            spec.etcd_name(m),
            "--data-dir".into(),
            etcd.data().to_string_lossy().into_owned(),
            "--listen-client-urls".into(),
            format!("http://{host}:{client}"),
            "--advertise-client-urls".into(),
            format!("http://{host}:{client}"),
            "--listen-peer-urls".into(),
            format!("http://{host}:{peer}"),
            "--initial-advertise-peer-urls".into(),
            format!("http://{host}:{peer}"),
            "--initial-cluster".into(),
            spec.etcd_initial_cluster(),
            "--initial-cluster-state".into(),
            "new".into(),
            "--max-txn-ops".into(),
            "16384".into(),
            "--max-request-bytes".into(),
            "33554432".into(),
        ]
        .into();
        let pid = host::spawn_daemon(
            None,
            Path::new("etcd"),
            &args,
            &etcd.log(),
            &etcd.pid_file(),
        )?;
        started.push(format!("{} (pid {pid})", spec.etcd_name(m)));
    }
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .map_err(|e| Error::Api(e.to_string()))?;
    let health = |m: u8| {
        let url = format!(
            "http://{}:{}/health",
            spec.host_ip(),
            ClusterSpec::etcd_ports(m).0
        );
        http.get(url)
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .is_some_and(|v| v["health"] == "true")
    };
    wait_until(
        || {
            let logs: Vec<String> = spec
                .etcd_members()
                .map(|m| etcd_log(spec, m).display().to_string())
                .collect();
            format!(
                "etcd has no healthy member within 30 s; see {}",
                logs.join(", ")
            )
        },
        Duration::from_secs(30),
        || spec.etcd_members().any(health).then_some(()),
    )?;
    Ok(if started.is_empty() {
        format!(
            "etcd already running ({} members)",
            spec.etcd_members().count()
        )
    } else {
        format!("etcd started: {}", started.join(", "))
    })
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
pub(super) fn server_dns(pid: u32) -> Option<SocketAddr> {
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

/// Makes sure server `k` runs; returns what happened and where it serves Cloud Map DNS.
/// A new server 1 serves it on the host side of the bridge, port [`DNS_PORT`]
/// (forwarding other names to the host's name servers), unless that port is taken: then
/// it starts without DNS and the message says so (tasks keep their images' resolv.conf).
/// The other servers serve neither DNS nor load balancer listeners (their ports are
/// server 1's).
pub(super) fn ensure_server(
    spec: &ClusterSpec,
    k: u8,
    bin: &Path,
    api: &EcsClient,
) -> Result<(String, Option<SocketAddr>)> {
    let server = Daemon::server(spec, k);
    let log = server.log();
    if let Some(pid) = server.pid() {
        wait_until(
            || {
                format!(
                    "server {k} (pid {pid}) does not answer; see {}",
                    log.display()
                )
            },
            Duration::from_secs(15),
            || api.healthy().then_some(()),
        )?;
        return Ok((
            format!("server {k} already running (pid {pid})"),
            server_dns(pid),
        ));
    }
    if api.healthy() {
        return Err(Error::Invalid(format!(
            "something else answers on {}; choose another --port",
            spec.server_endpoint(k)
        )));
    }
    mkdir(&server.data())?;
    let mut args = vec![
        "server".to_owned(),
        "--listen".into(),
        format!(
            "{}:{}",
            spec.host_ip(),
            spec.port + u16::from(k.saturating_sub(1))
        ),
        "--data-dir".into(),
        server.data().to_string_lossy().into_owned(),
        "--allow-reset".into(),
    ];
    if spec.control.store == StoreKind::Etcd {
        args.extend(["--store".into(), spec.etcd_store_arg()]);
    }
    if k > 1 {
        args.extend(["--lb-listen".into(), "off".into()]);
    }
    // Capacity providers' managed scaling grows and shrinks node groups through
    // `flotilla dev cluster scale` (split on whitespace by the server: no spaces in
    // these paths).
    let hook = format!(
        "{} dev cluster scale --name {} --dir {}",
        bin.display(),
        spec.name,
        spec.dir.display()
    );
    let splits_cleanly = [bin.display().to_string(), spec.dir.display().to_string()]
        .iter()
        .all(|p| !p.contains(char::is_whitespace));
    if splits_cleanly {
        args.extend(["--scaling-hook".into(), hook]);
    }
    if let Some(t) = spec.agent_timeout {
        args.extend(["--agent-timeout".into(), t.to_string()]);
    }
    if let Some(t) = spec.instance_lost_after {
        args.extend(["--instance-lost-after".into(), t.to_string()]);
    }
    let dns_addr = SocketAddr::from((spec.host_ip(), DNS_PORT));
    let dns = (k == 1 && port_free(dns_addr)).then_some(dns_addr);
    if let Some(addr) = dns {
        args.extend(["--dns-listen".into(), addr.to_string()]);
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for upstream in upstreams(&resolv, spec.host_ip()) {
            args.extend(["--dns-upstream".into(), upstream.to_string()]);
        }
    }
    let dns_note = match dns {
        Some(addr) => format!("Cloud Map DNS on {addr}"),
        None if k > 1 => "DNS and load balancers on server 1".to_owned(),
        None => format!("no Cloud Map DNS: {dns_addr} is in use"),
    };
    let pid = host::spawn_daemon(None, bin, &args, &log, &server.pid_file())?;
    wait_until(
        || {
            format!(
                "server {k} did not answer on {} within 15 s; see {}:\n{}",
                spec.server_endpoint(k),
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
            Ok((format!("server {k} started (pid {pid}); {dns_note}"), dns))
        } else {
            Err(Error::Timeout(format!(
                "the server exited; see {}:\n{}",
                log.display(),
                log_tail(&log)
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
