//! The control plane server of a dev cluster: its files, starting it (with Cloud Map DNS
//! on the host side of the bridge when the port is free), and finding where a running
//! one serves DNS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{log_tail, mkdir, wait_until};
use crate::ecs::EcsClient;
use crate::error::{Error, Result};
use crate::host::{self, running_pid};
use crate::spec::ClusterSpec;

fn server_data(spec: &ClusterSpec) -> PathBuf {
    spec.server_dir().join("data")
}
fn server_pid_file(spec: &ClusterSpec) -> PathBuf {
    spec.server_dir().join("server.pid")
}
pub(super) fn server_log(spec: &ClusterSpec) -> PathBuf {
    spec.server_dir().join("server.log")
}
pub(super) fn server_pid(spec: &ClusterSpec) -> Option<u32> {
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

/// Makes sure the server runs; returns what happened and where it serves Cloud Map DNS.
/// A new server serves it on the host side of the bridge, port [`DNS_PORT`] (forwarding
/// other names to the host's name servers), unless that port is taken: then it starts
/// without DNS and the message says so (tasks keep their images' resolv.conf).
pub(super) fn ensure_server(
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
