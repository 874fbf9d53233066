//! `down`: removes everything of a dev cluster, also a half-made one; safe to repeat.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::node::{clear_node_run_state, kill_node};
use super::server::{all_etcd_pids, all_server_pids};
use super::{Reporter, resolve_dir};
use crate::error::{Error, Result};
use crate::host;
use crate::net;
use crate::spec::{self, ClusterSpec};

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

/// Removes everything of cluster `name`: processes (servers, etcd members, agents,
/// containerds, shims, containers), mounts, shim sockets, namespaces, veths, the bridge, nftables table,
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
        None => ClusterSpec::bare(
            name,
            dir.clone(),
            leftover_nodes.iter().copied().max().unwrap_or(0),
        ),
    };
    let nodes: BTreeSet<u8> = spec.node_numbers().chain(leftover_nodes).collect();

    report.step("stopping the servers");
    host::kill_until_gone("server", Duration::from_secs(10), || all_server_pids(&spec))?;
    host::kill_until_gone("etcd member", Duration::from_secs(10), || {
        all_etcd_pids(&spec)
    })?;
    report.done("servers stopped");
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
