//! What `up` is asked for ([`UpOptions`]), the host's preflight, and the
//! [`ClusterSpec`] those options resolve to: the stored one, checked against them, or a
//! new one on a free subnet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::resolve_dir;
use crate::error::{Error, Result};
use crate::host;
use crate::net;
use crate::spec::{self, ClusterSpec, ControlSpec, MAX_NODES, MAX_SERVERS, OsSpec, StoreKind};

/// The agents long-poll for this long; shorter liveness timeouts would mark idle,
/// healthy nodes disconnected or lost.
pub const AGENT_POLL_SECONDS: u64 = 20;

/// What `up` is asked for; `None` keeps what an existing cluster has (or the default).
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Cluster name.
    pub name: String,
    /// Cluster directory (default [`spec::default_dir`]).
    pub dir: Option<PathBuf>,
    /// EC2 node count (default 3).
    pub nodes: Option<u8>,
    /// Fargate pool nodes (default 0).
    pub fargate_nodes: Option<u8>,
    /// Fargate pool spot nodes (default 0).
    pub fargate_spot_nodes: Option<u8>,
    /// Control plane port on the host side of the bridge (default 8080).
    pub port: Option<u16>,
    /// `flotilla server --agent-timeout`, seconds.
    pub agent_timeout: Option<u64>,
    /// `flotilla server --instance-lost-after`, seconds.
    pub instance_lost_after: Option<u64>,
    /// The `flotilla` binary to run (server and agents); `flotilla-runtime-logger` must
    /// sit beside it.
    pub flotilla_bin: PathBuf,
    /// Boot every node through the host layer, updated from this TUF repository
    /// (`flotilla os publish --repo`).
    pub os_repo: Option<PathBuf>,
    /// The node image installed in slot A (default: the newest the repository lists).
    pub os_image: Option<PathBuf>,
    /// Number of servers (default 1; more need `store` etcd).
    pub servers: Option<u8>,
    /// The servers' store (default: the embedded one).
    pub store: Option<StoreKind>,
}

/// The control plane `opts` ask for, checked: 1 to [`MAX_SERVERS`] servers, several only
/// on etcd, their ports inside the port range.
fn resolve_control(opts: &UpOptions) -> Result<ControlSpec> {
    let servers = opts.servers.unwrap_or(1);
    let store = opts.store.unwrap_or_default();
    if !(1..=MAX_SERVERS).contains(&servers) {
        return Err(Error::Invalid(format!(
            "--servers must be 1 to {MAX_SERVERS}, not {servers}"
        )));
    }
    if servers > 1 && store == StoreKind::Embedded {
        return Err(Error::Invalid(format!(
            "--servers {servers} needs --store etcd: servers share state only through etcd"
        )));
    }
    let port = opts.port.unwrap_or(8080);
    if u16::MAX - port < u16::from(servers) {
        return Err(Error::Invalid(format!(
            "--port {port} leaves no room for {servers} servers on the ports above it"
        )));
    }
    Ok(ControlSpec { servers, store })
}

pub(super) fn preflight(bin: &Path, store: Option<StoreKind>) -> Result<()> {
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
    if store == Some(StoreKind::Etcd) {
        host::require_programs(&[("etcd", "apt-get install -y etcd-server")])?;
    }
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
pub(super) fn resolve_spec(opts: &UpOptions) -> Result<ClusterSpec> {
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
    let control = resolve_control(opts)?;
    let total = u16::from(opts.nodes.unwrap_or(3))
        + u16::from(opts.fargate_nodes.unwrap_or(0))
        + u16::from(opts.fargate_spot_nodes.unwrap_or(0));
    if opts.os_repo.is_some() && total > u16::from(opts.nodes.unwrap_or(3)) {
        return Err(Error::Invalid(
            "--os-repo boots EC2 nodes only; leave out --fargate-nodes and --fargate-spot-nodes"
                .into(),
        ));
    }
    if total > u16::from(MAX_NODES) {
        return Err(Error::Invalid(format!(
            "--nodes, --fargate-nodes and --fargate-spot-nodes add up to {total}; at most {MAX_NODES}"
        )));
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
        differs(
            "--fargate-nodes",
            opts.fargate_nodes.map(|n| n.to_string()),
            existing.fargate_nodes.to_string(),
        )?;
        differs(
            "--fargate-spot-nodes",
            opts.fargate_spot_nodes.map(|n| n.to_string()),
            existing.fargate_spot_nodes.to_string(),
        )?;
        differs(
            "--servers",
            opts.servers.map(|n| n.to_string()),
            existing.control.servers.to_string(),
        )?;
        differs(
            "--store",
            opts.store.map(|s| format!("{s:?}").to_lowercase()),
            format!("{:?}", existing.control.store).to_lowercase(),
        )?;
        let asked_os = match &opts.os_repo {
            Some(_) => Some(resolve_os(opts)?.repo.display().to_string()),
            None => None,
        };
        differs(
            "--os-repo",
            asked_os,
            existing.os.as_ref().map_or_else(
                || "none (bare agents)".to_owned(),
                |o| o.repo.display().to_string(),
            ),
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
        fargate_nodes: opts.fargate_nodes.unwrap_or(0),
        fargate_spot_nodes: opts.fargate_spot_nodes.unwrap_or(0),
        group_nodes: Default::default(),
        subnet,
        port: opts.port.unwrap_or(8080),
        agent_timeout: opts.agent_timeout,
        instance_lost_after: opts.instance_lost_after,
        os: opts
            .os_repo
            .as_ref()
            .map(|_| resolve_os(opts))
            .transpose()?,
        control,
    })
}

/// `--os-repo` and `--os-image`, checked: absolute paths to a repository with metadata
/// and an image file; without `--os-image`, the image of the newest version the
/// repository's manifest lists (`staging/manifest.json`, the publisher's copy).
fn resolve_os(opts: &UpOptions) -> Result<OsSpec> {
    let Some(repo) = &opts.os_repo else {
        return Err(Error::Invalid("--os-image needs --os-repo".into()));
    };
    let repo = std::fs::canonicalize(repo).map_err(Error::io("cannot find --os-repo", repo))?;
    if !repo.join("metadata").is_dir() {
        return Err(Error::Invalid(format!(
            "--os-repo {} is not a TUF repository (no metadata/); make one with `flotilla os publish`",
            repo.display()
        )));
    }
    let image = match &opts.os_image {
        Some(image) => image.clone(),
        None => newest_image(&repo)?,
    };
    let image =
        std::fs::canonicalize(&image).map_err(Error::io("cannot find the node image", &image))?;
    Ok(OsSpec { repo, image })
}

/// The image file of the newest version in `repo/staging/manifest.json`.
fn newest_image(repo: &Path) -> Result<PathBuf> {
    let path = repo.join("staging").join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io("cannot read", &path))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{} is not JSON: {e}", path.display())))?;
    let newest = manifest["updates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| {
            let version = semver::Version::parse(u["version"].as_str()?).ok()?;
            Some((version, u["images"]["root"].as_str()?.to_owned()))
        })
        .max_by(|a, b| a.0.cmp(&b.0));
    let (version, file) = newest.ok_or_else(|| {
        Error::Invalid(format!(
            "{} lists no image; publish one with `flotilla os publish --image`",
            path.display()
        ))
    })?;
    if file.contains('/') || file.starts_with('.') {
        return Err(Error::Invalid(format!(
            "{}: image name {file:?} of {version} is not a plain file name",
            path.display()
        )));
    }
    Ok(repo.join("staging").join(file))
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
            os_repo: None,
            os_image: None,
            servers: None,
            store: None,
            fargate_nodes: None,
            fargate_spot_nodes: None,
        }
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
        o.nodes = Some(90);
        o.fargate_nodes = Some(5);
        o.fargate_spot_nodes = Some(5);
        let err = resolve_spec(&o).unwrap_err().to_string();
        assert!(err.contains("add up to 100; at most 99"), "{err}");
        o.fargate_nodes = None;
        o.fargate_spot_nodes = None;
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
    fn several_servers_need_etcd_and_room_for_their_ports() {
        let mut o = opts();
        assert_eq!(resolve_control(&o).unwrap(), ControlSpec::default());
        o.servers = Some(3);
        let err = resolve_control(&o).unwrap_err().to_string();
        assert!(err.contains("--servers 3 needs --store etcd"), "{err}");
        o.store = Some(StoreKind::Etcd);
        assert_eq!(
            resolve_control(&o).unwrap(),
            ControlSpec {
                servers: 3,
                store: StoreKind::Etcd
            }
        );
        o.servers = Some(0);
        assert!(
            resolve_control(&o)
                .unwrap_err()
                .to_string()
                .contains("1 to 5")
        );
        o.servers = Some(6);
        assert!(resolve_control(&o).is_err());
        o.servers = Some(3);
        o.port = Some(65534);
        assert!(
            resolve_control(&o)
                .unwrap_err()
                .to_string()
                .contains("no room")
        );
        // One server on etcd is allowed (a store shared with other machines' servers).
        o.servers = Some(1);
        o.port = None;
        assert!(resolve_control(&o).is_ok());
    }

    #[test]
    fn an_existing_cluster_keeps_its_shape() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ClusterSpec {
            subnet: 7,
            port: 9000,
            instance_lost_after: Some(25),
            ..ClusterSpec::bare("t", dir.path().to_owned(), 3)
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
        o.servers = Some(3);
        o.store = Some(StoreKind::Etcd);
        let err = resolve_spec(&o).unwrap_err().to_string();
        assert!(err.contains("exists with --servers 1, not 3"), "{err}");
        o.servers = None;
        o.store = None;
        o.name = "u".into();
        assert!(
            resolve_spec(&o)
                .unwrap_err()
                .to_string()
                .contains("holds cluster")
        );
    }
}
