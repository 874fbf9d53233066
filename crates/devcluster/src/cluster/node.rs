//! A node of a dev cluster: its containerd and agent processes in the node's network
//! namespace, starting them (after clearing what a crashed node left, as a reboot
//! would), and killing every process of the node.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{log_tail, mkdir, wait_until};
use crate::error::{Error, Result};
use crate::host::{self, netns_path, running_pid};
use crate::net;
use crate::spec::{self, ClusterSpec, ECS_CLUSTER, FARGATE_POOL, NodeKind, REGION};

fn containerd_config_file(spec: &ClusterSpec, i: u8) -> PathBuf {
    spec.containerd_dir(i).join("config.toml")
}
fn containerd_pid_file(spec: &ClusterSpec, i: u8) -> PathBuf {
    spec.containerd_dir(i).join("containerd.pid")
}
pub(super) fn containerd_pid(spec: &ClusterSpec, i: u8) -> Option<u32> {
    running_pid(
        &containerd_pid_file(spec, i),
        &containerd_config_file(spec, i).to_string_lossy(),
    )
}
fn agent_pid_file(spec: &ClusterSpec, i: u8) -> PathBuf {
    spec.node_dir(i).join("agent.pid")
}
/// The agent's log; on a host-layer node, the init loop's (the host layer's output; the
/// agent's own log is `host/run/logs/agent.log`).
pub(super) fn agent_log(spec: &ClusterSpec, i: u8) -> PathBuf {
    spec.node_dir(i).join("agent.log")
}
/// The agent's pid; on a host-layer node, the init loop's.
pub(super) fn agent_pid(spec: &ClusterSpec, i: u8) -> Option<u32> {
    let marker = if spec.os.is_some() {
        spec.host_root(i)
    } else {
        spec.agent_dir(i)
    };
    running_pid(&agent_pid_file(spec, i), &marker.to_string_lossy())
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
pub(super) fn clear_node_run_state(spec: &ClusterSpec, i: u8) -> Result<()> {
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
pub(super) fn kill_node(spec: &ClusterSpec, i: u8) -> Result<()> {
    host::kill_until_gone(&format!("node {i}"), Duration::from_secs(15), || {
        node_pids(spec, i)
    })
}

/// `task_dns`: the agent's `--task-dns` (the server's Cloud Map DNS), when it serves one.
pub(super) fn ensure_node(
    spec: &ClusterSpec,
    i: u8,
    bin: &Path,
    task_dns: Option<IpAddr>,
) -> Result<String> {
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
    if let Some(os) = &spec.os
        && agent_pid(spec, i).is_none()
    {
        let msg = super::host_node::start(
            spec,
            i,
            bin,
            task_dns,
            os,
            &agent_log(spec, i),
            &agent_pid_file(spec, i),
        )?;
        started.push(msg);
    } else if agent_pid(spec, i).is_none() {
        mkdir(&spec.agent_dir(i))?;
        mkdir(&spec.runc_root(i))?;
        // What the node joins: the cluster, or the Fargate pool (spot or not), whose
        // tasks get addresses the other nodes route to.
        let joins: Vec<String> = match spec.node_kind(i) {
            NodeKind::Ec2 => vec!["--cluster".into(), ECS_CLUSTER.into()],
            kind => {
                let mut args = vec!["--fargate-pool".into(), FARGATE_POOL.into()];
                if kind == NodeKind::FargateSpot {
                    args.push("--fargate-spot".into());
                }
                args.extend(
                    spec.task_cidr(i)
                        .into_iter()
                        .flat_map(|c| ["--bridge-cidr".to_owned(), c]),
                );
                args
            }
        };
        let args: Vec<String> = [
            "agent",
            "--endpoint",
            &spec.endpoints(),
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
                "ecs.availability-zone={},flotilla.dev-node={i}{}",
                ClusterSpec::zone(i),
                spec.node_group(i)
                    .map(|g| format!(",flotilla.node-group={g}"))
                    .unwrap_or_default()
            ),
            "--runc-root",
            &spec.runc_root(i).to_string_lossy(),
            "--cgroup-parent",
            &spec.cgroup_parent(i),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(joins)
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

/// The container instance ARN the agent of node `i` registered as, from its state file
/// (`agent-state.json`): how a Fargate pool node, which no ListContainerInstances shows,
/// is seen to have joined.
pub(super) fn registered_arn(spec: &ClusterSpec, i: u8) -> Option<String> {
    let path = spec.agent_dir(i).join("agent-state.json");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(state["container_instance_arn"].as_str()?.to_owned())
}
