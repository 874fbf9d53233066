//! `scale`: adds nodes to a node group or removes one — the dev cluster's side of
//! `flotilla server --scaling-hook` (docs/capacity.md), which runs
//! `flotilla dev cluster scale --name N --dir D grow GROUP COUNT` and
//! `… remove GROUP INSTANCE_ID` when a capacity provider with managed scaling wants its
//! group larger or smaller. A group's node is an EC2 node like the others (its own
//! network namespace, containerd and agent) whose agent carries the attribute
//! `flotilla.node-group=GROUP`, numbered after every other node.

use std::time::Duration;

use super::node::{clear_node_run_state, ensure_node, kill_node};
use super::server::{server_dns, server_pid};
use super::{Reporter, resolve_dir, wait_until};
use crate::ecs::EcsClient;
use crate::error::{Error, Result};
use crate::spec::{self, ClusterSpec};
use crate::{host, net};

/// The most nodes one `grow` adds.
pub const MAX_GROW: u8 = 20;

/// What `scale` is asked to do. With the `clap` feature, the subcommands of
/// `flotilla dev cluster scale`: the variants' and fields' docs are their help.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Subcommand))]
pub enum ScaleAction {
    /// Add COUNT nodes (1-20) whose agents carry `flotilla.node-group=GROUP`.
    Grow {
        /// The node group (a capacity provider's `autoScalingGroupArn` names it).
        group: String,
        /// How many nodes.
        count: u8,
    },
    /// Remove the group's node with this instance id (done already is fine).
    Remove {
        /// The node group.
        group: String,
        // `i-flotilla-<cluster>-node<i>` (not in the doc line: that is the CLI's help).
        /// The node's `ec2InstanceId`.
        instance_id: String,
    },
}

/// A node group's name as the hook passes it: 1–255 printable ASCII characters, no
/// spaces or commas (it goes into `--attributes`), not starting with `-`.
fn check_group(group: &str) -> Result<()> {
    let ok = !group.is_empty()
        && group.len() <= 255
        && !group.starts_with('-')
        && group.bytes().all(|b| b.is_ascii_graphic() && b != b',');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "node group {group:?} must be 1-255 printable characters without spaces or commas"
        )))
    }
}

/// Carries out `action` on cluster `name`; returns what happened.
pub fn scale(
    name: &str,
    dir: Option<&std::path::Path>,
    bin: &std::path::Path,
    action: &ScaleAction,
    report: &dyn Reporter,
) -> Result<String> {
    spec::validate_name(name)?;
    if !host::is_root() {
        return Err(Error::NotRoot);
    }
    let dir = resolve_dir(name, dir);
    let Some(mut spec) = ClusterSpec::load(&dir)? else {
        return Err(Error::Invalid(format!(
            "no dev cluster {name:?} in {}",
            dir.display()
        )));
    };
    match action {
        ScaleAction::Grow { group, count } => grow(&mut spec, bin, group, *count, report),
        ScaleAction::Remove { group, instance_id } => remove(&mut spec, group, instance_id, report),
    }
}

fn grow(
    spec: &mut ClusterSpec,
    bin: &std::path::Path,
    group: &str,
    count: u8,
    report: &dyn Reporter,
) -> Result<String> {
    check_group(group)?;
    if !(1..=MAX_GROW).contains(&count) {
        return Err(Error::Invalid(format!(
            "grow adds 1 to {MAX_GROW} nodes at a time, not {count}"
        )));
    }
    if spec.os.is_some() {
        return Err(Error::Invalid(
            "node groups are not available on a cluster of host-layer nodes (--os-repo)".into(),
        ));
    }
    let dns = server_pid(spec, 1).and_then(server_dns).map(|a| a.ip());
    let mut added = Vec::new();
    for _ in 0..count {
        let i = spec.next_node_number().ok_or_else(|| {
            Error::Invalid(format!(
                "the cluster has no node number left (at most {})",
                spec::MAX_NODES
            ))
        })?;
        // Noted first, so that `down` removes a node whose start failed half way.
        spec.group_nodes.insert(i, group.to_owned());
        spec.save()?;
        report.step(&format!("node {i} of group {group}"));
        let msg = ensure_node(spec, i, bin, dns)?;
        report.done(&msg);
        added.push(i);
    }
    report.step(&format!("waiting for {count} agents to register"));
    let wanted: Vec<String> = added.iter().map(|i| spec.instance_id(*i)).collect();
    let endpoints: Vec<String> = spec
        .server_numbers()
        .map(|k| spec.server_endpoint(k))
        .collect();
    wait_until(
        || format!("the agents of nodes {added:?} did not connect within 60 s"),
        Duration::from_secs(60),
        || {
            let connected = endpoints.iter().find_map(|e| {
                let api = EcsClient::new(e).ok()?;
                api.healthy().then(|| api.instances().ok())?
            })?;
            wanted
                .iter()
                .all(|id| {
                    connected
                        .iter()
                        .any(|ci| &ci.instance_id == id && ci.agent_connected)
                })
                .then_some(())
        },
    )?;
    report.done("connected");
    Ok(format!(
        "group {group}: added node(s) {}",
        added
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn remove(
    spec: &mut ClusterSpec,
    group: &str,
    instance_id: &str,
    report: &dyn Reporter,
) -> Result<String> {
    check_group(group)?;
    let found = spec
        .group_nodes
        .iter()
        .find(|(i, _)| spec.instance_id(**i) == instance_id)
        .map(|(i, g)| (*i, g.clone()));
    let Some((i, of)) = found else {
        return Ok(format!(
            "{instance_id} is not a node of this cluster: nothing to remove"
        ));
    };
    if of != group {
        return Err(Error::Invalid(format!(
            "{instance_id} is a node of group {of:?}, not {group:?}"
        )));
    }
    report.step(&format!("removing node {i} of group {group}"));
    kill_node(spec, i)?;
    clear_node_run_state(spec, i)?;
    host::remove_cgroup_tree(&spec.cgroup_parent(i))?;
    net::remove_node(spec, i)?;
    host::unmount_all_under(&spec.node_dir(i))?;
    let node_dir = spec.node_dir(i);
    if node_dir.exists() {
        std::fs::remove_dir_all(&node_dir).map_err(Error::io("cannot remove", &node_dir))?;
    }
    spec.group_nodes.remove(&i);
    spec.save()?;
    report.done(&format!("node {i} removed"));
    Ok(format!("group {group}: removed node {i} ({instance_id})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_adds_1_to_20_nodes_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = ClusterSpec {
            port: 8080,
            ..ClusterSpec::bare("t", dir.path().to_owned(), 1)
        };
        let bin = std::path::Path::new("/nonexistent");
        for count in [0, MAX_GROW + 1] {
            let err = grow(&mut spec, bin, "blue", count, &super::super::Quiet)
                .unwrap_err()
                .to_string();
            assert!(err.contains("1 to 20 nodes"), "{count}: {err}");
        }
        assert!(spec.group_nodes.is_empty(), "nothing was noted");
    }

    #[test]
    fn group_names_are_checked() {
        for ok in ["blue", "arn-like:name/x", "g_1"] {
            assert!(check_group(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a,b", &"x".repeat(256)] {
            assert!(check_group(bad).is_err(), "{bad}");
        }
    }
}
