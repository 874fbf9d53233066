//! A task's containers' `/etc/resolv.conf`: which name servers, search domains and
//! options a container sees, written by the agent and bind-mounted read-only over the
//! image's file.
//!
//! The rules are Docker's for `--dns` / `--dns-search` (what ECS's `dnsServers` and
//! `dnsSearchDomains` map to), with the node's `--task-dns` as the default name servers:
//! - `nameserver`: the container's `dnsServers`; else the agent's `--task-dns` (for
//!   `bridge`, `awsvpc` and `host` tasks: `none` has no network to reach it over); else
//!   the node's own (`/etc/resolv.conf`). Outside the node's network namespace a loopback
//!   server cannot answer, so `bridge`/`awsvpc`/`none` containers do not get the node's
//!   loopback servers; when those are all it has (systemd-resolved's stub at
//!   127.0.0.53), the servers systemd-resolved itself uses
//!   (`/run/systemd/resolve/resolv.conf`), as Docker does.
//! - `search`: the container's `dnsSearchDomains`, else the node's.
//! - `options`: the node's (ECS has no field for them).
//!
//! When neither the container nor the agent sets anything, no file is written or
//! mounted: the container keeps its image's `/etc/resolv.conf`, as before.
//!
//! The files live in `<data-dir>/resolv/<task-id>/<container-index>.conf` and are
//! removed with the task's networking ([`crate::task_network::teardown`]).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use model::wire;
use network::Mode;

/// A `resolv.conf`'s content, one entry per value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<IpAddr>,
    /// The `search` line's domains.
    pub search: Vec<String>,
    /// The `options` line's options.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Reads a `resolv.conf` (unknown lines, comments and name servers that are not plain
    /// IP addresses, like a scoped `fe80::1%eth0`, are left out; the last `search` line
    /// wins, as in glibc).
    #[must_use]
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search" | "domain") => conf.search = words.map(str::to_owned).collect(),
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    /// The file's text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Written by the flotilla agent (dnsServers, dnsSearchDomains, --task-dns).\n",
        );
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.search.is_empty() {
            out.push_str(&format!("search {}\n", self.search.join(" ")));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// The `resolv.conf` container `c` of a task in `mode` (`None`: `host`) gets, or `None`
/// when nothing asks for one (it keeps its image's). `node` reads the node's own; it is
/// only called when something is set. The rules are in the module doc.
///
/// # Errors
/// A `dnsServers` or `dnsSearchDomains` value that is not valid ([`model::resolv`]).
pub fn resolv_conf(
    c: &wire::ContainerDefinition,
    mode: Option<Mode>,
    task_dns: &[IpAddr],
    node: impl FnOnce() -> ResolvConf,
) -> Result<Option<ResolvConf>, String> {
    let servers = match c.dns_servers.as_deref().unwrap_or(&[]) {
        [] if mode != Some(Mode::None) && !task_dns.is_empty() => Some(task_dns.to_vec()),
        [] => None,
        given => Some(
            given
                .iter()
                .map(|s| model::resolv::dns_server(s))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let search = match c.dns_search_domains.as_deref().unwrap_or(&[]) {
        [] => None,
        given => {
            for d in given {
                model::resolv::search_domain(d)?;
            }
            Some(given.to_vec())
        }
    };
    if servers.is_none() && search.is_none() {
        return Ok(None);
    }
    let node = node();
    let own_namespace = mode.is_none();
    Ok(Some(ResolvConf {
        nameservers: servers.unwrap_or_else(|| {
            node.nameservers
                .iter()
                .copied()
                .filter(|ip| own_namespace || !ip.is_loopback())
                .collect()
        }),
        search: search.unwrap_or(node.search),
        options: node.options,
    }))
}

fn read(path: &Path) -> ResolvConf {
    std::fs::read_to_string(path)
        .map(|t| ResolvConf::parse(&t))
        .unwrap_or_default()
}

/// The node's own `/etc/resolv.conf`; for a task outside the node's namespace
/// (`own_namespace` false) whose node only lists loopback servers, with
/// systemd-resolved's upstream servers instead (when it has any).
#[must_use]
pub fn node_resolv_conf(own_namespace: bool) -> ResolvConf {
    let etc = read(Path::new("/etc/resolv.conf"));
    if own_namespace
        || etc.nameservers.is_empty()
        || !etc.nameservers.iter().all(IpAddr::is_loopback)
    {
        return etc;
    }
    let resolved = read(Path::new("/run/systemd/resolve/resolv.conf"));
    if resolved.nameservers.is_empty() {
        return etc;
    }
    ResolvConf {
        nameservers: resolved.nameservers,
        ..etc
    }
}

fn task_dir(data_dir: &Path, task_id: &str) -> PathBuf {
    data_dir.join("resolv").join(task_id)
}

/// Writes container `index`'s file of task `task_id` and returns its path.
///
/// # Errors
/// The write failed.
pub fn write(
    data_dir: &Path,
    task_id: &str,
    index: usize,
    conf: &ResolvConf,
) -> std::io::Result<PathBuf> {
    let path = task_dir(data_dir, task_id).join(format!("{index}.conf"));
    durable::write(&path, conf.render().as_bytes(), durable::PUBLIC_FILE_MODE)?;
    Ok(path)
}

/// Removes a task's files (none is fine).
pub fn remove(data_dir: &Path, task_id: &str) {
    let dir = task_dir(data_dir, task_id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(task = task_id, path = %dir.display(), error = %e, "could not remove the task's resolv.conf files");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn container(servers: &[&str], search: &[&str]) -> wire::ContainerDefinition {
        let list =
            |v: &[&str]| (!v.is_empty()).then(|| v.iter().map(|s| (*s).to_owned()).collect());
        wire::ContainerDefinition {
            name: Some("web".into()),
            dns_servers: list(servers),
            dns_search_domains: list(search),
            ..Default::default()
        }
    }

    /// A node behind systemd-resolved's stub, with a search domain and options.
    fn node() -> ResolvConf {
        ResolvConf::parse(
            "# comment\nnameserver 127.0.0.53\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\nsearch lan\noptions edns0 trust-ad\nsortlist 1.2.3.4\n",
        )
    }

    fn unused() -> ResolvConf {
        panic!("the node's resolv.conf is not needed")
    }

    #[test]
    fn parses_what_the_resolver_reads() {
        let n = node();
        assert_eq!(n.nameservers, [ip("127.0.0.53"), ip("192.168.1.1")]);
        assert_eq!(n.search, ["lan"]);
        assert_eq!(n.options, ["edns0", "trust-ad"]);
        assert_eq!(
            ResolvConf::parse("search a b\ndomain c\n").search,
            ["c"],
            "the last one wins"
        );
    }

    #[test]
    fn nothing_set_keeps_the_images_file() {
        for mode in [
            None,
            Some(Mode::Bridge),
            Some(Mode::Awsvpc),
            Some(Mode::None),
        ] {
            assert_eq!(
                resolv_conf(&container(&[], &[]), mode, &[], unused),
                Ok(None)
            );
        }
        // --task-dns does not reach a task without a network.
        assert_eq!(
            resolv_conf(
                &container(&[], &[]),
                Some(Mode::None),
                &[ip("10.213.0.1")],
                unused
            ),
            Ok(None)
        );
    }

    #[test]
    fn task_dns_is_the_default_name_server_with_the_nodes_search_and_options() {
        for mode in [None, Some(Mode::Bridge), Some(Mode::Awsvpc)] {
            let conf = resolv_conf(&container(&[], &[]), mode, &[ip("10.213.0.1")], node)
                .unwrap()
                .unwrap();
            assert_eq!(
                conf.render(),
                "# Written by the flotilla agent (dnsServers, dnsSearchDomains, --task-dns).\n\
                 nameserver 10.213.0.1\nsearch lan\noptions edns0 trust-ad\n",
                "{mode:?}"
            );
        }
    }

    #[test]
    fn the_containers_settings_win_over_task_dns_and_the_node() {
        let conf = resolv_conf(
            &container(&["10.0.0.2", "fd00::53"], &["flotilla.test", "corp.local"]),
            Some(Mode::Bridge),
            &[ip("10.213.0.1")],
            ResolvConf::default,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            conf.render(),
            "# Written by the flotilla agent (dnsServers, dnsSearchDomains, --task-dns).\n\
             nameserver 10.0.0.2\nnameserver fd00::53\nsearch flotilla.test corp.local\n"
        );
        // dnsServers are honoured even without a network (Docker writes them too).
        let conf = resolv_conf(&container(&["10.0.0.2"], &[]), Some(Mode::None), &[], node)
            .unwrap()
            .unwrap();
        assert_eq!(conf.nameservers, [ip("10.0.0.2")]);
        assert_eq!(conf.search, ["lan"]);
    }

    #[test]
    fn search_domains_alone_keep_the_nodes_reachable_servers() {
        let c = container(&[], &["flotilla.test"]);
        let bridge = resolv_conf(&c, Some(Mode::Bridge), &[], node)
            .unwrap()
            .unwrap();
        assert_eq!(
            bridge.nameservers,
            [ip("192.168.1.1")],
            "the stub on the node's loopback is out of reach"
        );
        assert_eq!(bridge.search, ["flotilla.test"]);
        let host = resolv_conf(&c, None, &[], node).unwrap().unwrap();
        assert_eq!(host.nameservers, [ip("127.0.0.53"), ip("192.168.1.1")]);
    }

    #[test]
    fn invalid_values_are_refused_not_written() {
        let e = resolv_conf(
            &container(&["10.0.0.2\nnameserver 6.6.6.6"], &[]),
            Some(Mode::Bridge),
            &[],
            unused,
        )
        .unwrap_err();
        assert!(e.contains("is not an IP address"), "{e}");
        let e = resolv_conf(&container(&[], &["a\nb"]), None, &[], unused).unwrap_err();
        assert!(e.contains("is not a domain name"), "{e}");
    }

    #[test]
    fn files_are_written_per_container_and_removed_per_task() {
        let dir = tempfile::tempdir().unwrap();
        let conf = ResolvConf {
            nameservers: vec![ip("10.213.0.1")],
            ..Default::default()
        };
        let a = write(dir.path(), "t1", 0, &conf).unwrap();
        let b = write(dir.path(), "t1", 1, &conf).unwrap();
        let other = write(dir.path(), "t2", 0, &conf).unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), conf.render());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o644,
            "readable by a container's non-root user"
        );
        remove(dir.path(), "t1");
        assert!(!a.exists() && !b.exists() && other.exists());
        remove(dir.path(), "t1");
        remove(dir.path(), "never-ran");
    }
}
