//! # network — the node's task networking
//!
//! ## Background
//! ECS on EC2 gives a task one of four network modes. flotilla's agent does the same on
//! its node: `bridge` (ECS's default on Linux), `awsvpc`, `none` and `host`. This crate
//! owns everything but `host` (which is simply the node's own namespace): network
//! namespaces, the node's bridge, veth pairs, addresses (a small IPAM persisted on disk)
//! and publishing host ports.
//!
//! ## Design
//! - **bridge**: a namespace per task, joined to the node's Linux bridge (`flotilla0`,
//!   default subnet `172.31.0.0/16`, gateway `.1`) through a veth pair, with an address
//!   from [`ipam::Ipam`] and a default route via the bridge. Each port mapping is published
//!   with an iptables DNAT rule in flotilla's own chain ([`rules`]): traffic to *any*
//!   node address at `hostPort` — 127.0.0.1 from the node itself included
//!   (`route_localnet` on the bridge + masquerading) — reaches `taskIP:containerPort`,
//!   tcp and udp. Before publishing, the host ports are bound by the agent ([`ports`]):
//!   a port in use fails the task with `host port P/tcp is already in use on this
//!   instance`, and a published port cannot be taken later.
//! - **awsvpc**: the same namespace, veth and address, no published ports: the task is
//!   reached at its own address (ECS: its ENI's private IP), reported by the agent.
//! - **none**: a namespace with only `lo` up.
//! - **Everything is relative to the caller's network namespace**: the bridge, the rules,
//!   the sysctls and the host-port sockets live wherever the agent runs (an agent started
//!   with `ip netns exec node1 …` has its own bridge and rules). Namespace handles are
//!   files under the agent's data directory (`<dir>/netns/<task-id>`), and per-task rules
//!   carry a tag derived from that directory, so several agents on one host never collide.
//! - **Restarts**: every task's address, veth and ports are persisted
//!   (`<dir>/network-state.json`, atomically) *before* anything is created.
//!   [`TaskNetworks::adopt`] re-checks a running task's networking without recreating it
//!   (rules are added only when missing); [`TaskNetworks::cleanup_except`] removes what
//!   belongs to tasks that are gone (rules, veths, namespaces, leases).
//!
//! Why iptables DNAT and not a userspace proxy: the kernel forwards at full speed with no
//! process per port, the task sees the real client address for outside traffic, UDP works
//! the same as TCP, and published ports keep working while the agent is restarting
//! (a proxy inside the agent would drop every connection on a `kill -9`).
//!
//! ## Layout
//! - [`ipam`]: subnets and leases (pure).
//! - [`rules`]: which iptables rules the node and each task need (pure).
//! - [`ports`]: host-port reservations.
//! - [`netns`]: creating, entering and removing namespace handles.
//! - [`links`]: bridge, veth, addresses and routes over rtnetlink.
//! - [`iptables`]: applying rules.
//!
//! ## Current limitations
//! - IPv4 only; published ports bind `0.0.0.0` (no `hostIp`-specific bindings).
//! - Stale conntrack entries of a removed UDP mapping are left to expire.
//! - Two agents in the *same* network namespace must use different `--bridge-cidr`s and
//!   would share the bridge name; one agent per namespace is the supported layout.

pub mod address;
pub mod error;
pub mod ipam;
pub mod iptables;
pub mod links;
pub mod netns;
pub mod ports;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use error::NetworkError;
pub use ipam::{Ipam, Ipv4Cidr};
pub use rules::{PortMapping, Protocol};

use ports::HeldPort;

/// The default bridge name.
pub const DEFAULT_BRIDGE: &str = "flotilla0";
/// The default task subnet.
pub const DEFAULT_CIDR: &str = "172.31.0.0/16";

/// How the node's task networking is set up.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Where namespace handles and the persisted state go (the agent's data directory).
    pub data_dir: PathBuf,
    /// The bridge's name.
    pub bridge: String,
    /// The task subnet; the bridge holds its first address.
    pub subnet: Ipv4Cidr,
}

impl NetworkConfig {
    /// The defaults (`flotilla0`, `172.31.0.0/16`) under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> NetworkConfig {
        NetworkConfig {
            data_dir: data_dir.into(),
            bridge: DEFAULT_BRIDGE.to_owned(),
            subnet: DEFAULT_CIDR.parse().unwrap_or_else(|_| unreachable!()),
        }
    }
}

/// A task's network mode (ECS `networkMode`, `host` excepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Own namespace on the node's bridge, ports published on the node.
    Bridge,
    /// Own namespace and address on the bridge, reached at that address.
    Awsvpc,
    /// Own namespace with loopback only.
    None,
}

/// What a task asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRequest {
    /// The task id (last part of its ARN).
    pub task: String,
    /// Its mode.
    pub mode: Mode,
    /// Ports to publish (bridge mode; ignored otherwise).
    pub ports: Vec<PortMapping>,
}

/// What a task got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    /// The namespace handle: containers join it (`runtime::types::NetworkMode::Join`).
    pub netns: PathBuf,
    /// The task's address (bridge, awsvpc).
    pub ipv4: Option<Ipv4Addr>,
    /// `eth0`'s MAC address (bridge, awsvpc).
    pub mac: Option<String>,
    /// The default gateway (the bridge's address).
    pub gateway: Option<Ipv4Addr>,
    /// The subnet the address belongs to.
    pub subnet: Option<String>,
}

/// What is persisted about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TaskRecord {
    mode: Mode,
    veth: Option<String>,
    ports: Vec<PortMapping>,
    attachment: NetworkAttachment,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Persisted {
    ipam: Ipam,
    tasks: BTreeMap<String, TaskRecord>,
}

#[derive(Debug)]
struct Inner {
    persisted: Persisted,
    held: BTreeMap<String, Vec<HeldPort>>,
    node_ready: bool,
}

/// The node's task networking. Methods block (netlink threads, `iptables` runs): call
/// them from a blocking context (`tokio::task::spawn_blocking`) in async code. Every
/// call works in the caller's network namespace.
#[derive(Debug)]
pub struct TaskNetworks {
    cfg: NetworkConfig,
    node_tag: String,
    inner: Mutex<Inner>,
}

/// FNV-1a, 64 bit: short stable names from longer strings (no dependency needed).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> NetworkError {
    NetworkError::State {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn write_sysctl(path: &str, value: &str) -> Result<(), NetworkError> {
    std::fs::write(path, value).map_err(|e| NetworkError::Sysctl {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

impl TaskNetworks {
    /// Opens the node's task networking: loads the persisted leases (an agent restarted
    /// with another subnet tears down the leases the new subnet does not cover). Nothing
    /// on the node changes until a task is set up or cleaned.
    pub fn open(cfg: NetworkConfig) -> Result<TaskNetworks, NetworkError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| state_error(&cfg.data_dir, e))?;
        let canonical = cfg
            .data_dir
            .canonicalize()
            .map_err(|e| state_error(&cfg.data_dir, e))?;
        let node_tag = format!("{:08x}", fnv(&canonical.to_string_lossy()) >> 32);
        let path = Self::state_path_of(&cfg.data_dir);
        let persisted = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| state_error(&path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted {
                ipam: Ipam::new(cfg.subnet),
                tasks: BTreeMap::new(),
            },
            Err(e) => return Err(state_error(&path, e)),
        };
        let networks = TaskNetworks {
            cfg,
            node_tag,
            inner: Mutex::new(Inner {
                persisted,
                held: BTreeMap::new(),
                node_ready: false,
            }),
        };
        let moved = {
            let mut inner = networks.lock();
            if inner.persisted.ipam.subnet() == networks.cfg.subnet {
                Vec::new()
            } else {
                inner.persisted.ipam.resubnet(networks.cfg.subnet)
            }
        };
        for task in moved {
            tracing::warn!(%task, "the task subnet changed; removing the task's old networking");
            networks.teardown(&task)?;
        }
        Ok(networks)
    }

    fn state_path_of(dir: &Path) -> PathBuf {
        dir.join("network-state.json")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self, persisted: &Persisted) -> Result<(), NetworkError> {
        let path = Self::state_path_of(&self.cfg.data_dir);
        let bytes = serde_json::to_vec_pretty(persisted).map_err(|e| state_error(&path, e))?;
        durable::write(&path, &bytes, durable::PUBLIC_FILE_MODE).map_err(|e| state_error(&path, e))
    }

    /// The tag that marks this node's rules (derived from the data directory).
    pub fn node_tag(&self) -> &str {
        &self.node_tag
    }

    /// The configuration.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// Where a task's namespace handle lives.
    pub fn netns_path(&self, task: &str) -> PathBuf {
        self.cfg.data_dir.join("netns").join(task)
    }

    /// The host-side veth name of a task (15 characters at most, unique per node+task).
    pub fn veth_name(&self, task: &str) -> String {
        format!("fl{:012x}", fnv(&format!("{}:{task}", self.node_tag)) >> 16)
    }

    fn peer_name(&self, task: &str) -> String {
        format!("fp{:012x}", fnv(&format!("{}:{task}", self.node_tag)) >> 16)
    }

    /// The task's persisted attachment, if it has networking here.
    pub fn attachment(&self, task: &str) -> Option<NetworkAttachment> {
        self.lock()
            .persisted
            .tasks
            .get(task)
            .map(|r| r.attachment.clone())
    }

    /// Tasks with networking on this node.
    pub fn tasks(&self) -> BTreeSet<String> {
        self.lock().persisted.tasks.keys().cloned().collect()
    }

    /// The bridge, the sysctls, flotilla's chains and the node-wide rules (idempotent).
    fn ensure_node(&self, inner: &mut Inner) -> Result<(), NetworkError> {
        if inner.node_ready {
            return Ok(());
        }
        links::ensure_bridge(&self.cfg.bridge, self.cfg.subnet)?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", self.cfg.bridge),
            "1",
        )?;
        for (table, chain) in rules::OWN_CHAINS {
            iptables::ensure_chain(table, chain)?;
        }
        for rule in rules::base_rules(&self.cfg.bridge, self.cfg.subnet) {
            iptables::ensure_rule(&rule)?;
        }
        inner.node_ready = true;
        Ok(())
    }

    /// Sets up a new task's networking and returns what containers must join. On any
    /// failure (a host port in use, a full subnet, …) everything created for the task is
    /// removed again and the error says why.
    pub fn setup(&self, req: &TaskRequest) -> Result<NetworkAttachment, NetworkError> {
        let mut inner = self.lock();
        if inner.persisted.tasks.contains_key(&req.task) {
            // Set up before (a retried start): keep what is there when it is whole.
            if let Some(attachment) = self.adopt_locked(&mut inner, req)? {
                return Ok(attachment);
            }
            self.teardown_locked(&mut inner, &req.task)?;
        }
        let result = self.setup_locked(&mut inner, req);
        if result.is_err()
            && let Err(e) = self.teardown_locked(&mut inner, &req.task)
        {
            tracing::warn!(task = %req.task, error = %e, "could not undo a failed network setup");
        }
        result
    }

    fn setup_locked(
        &self,
        inner: &mut Inner,
        req: &TaskRequest,
    ) -> Result<NetworkAttachment, NetworkError> {
        let ports = if req.mode == Mode::Bridge {
            req.ports.clone()
        } else {
            Vec::new()
        };
        // Ports first: a port in use fails the task before anything is created.
        let held = ports::hold(&ports)?;
        // The node now holds these ports, so a recorded task with a rule for one of them
        // is gone (stopped while no agent ran): its rules would shadow the new ones.
        let host_ports: BTreeSet<(u16, Protocol)> =
            ports.iter().map(|p| (p.host_port, p.protocol)).collect();
        let stale: Vec<String> = inner
            .persisted
            .tasks
            .iter()
            .filter(|(task, r)| {
                **task != req.task
                    && r.ports
                        .iter()
                        .any(|p| host_ports.contains(&(p.host_port, p.protocol)))
            })
            .map(|(task, _)| task.clone())
            .collect();
        for task in stale {
            tracing::warn!(%task, "removing the networking of a gone task that held a port given to a new one");
            self.teardown_locked(inner, &task)?;
        }
        // Rules of other nodes on these ports are leftovers too: an agent holds the ports
        // of its tasks, so no live task of any node has them.
        if !host_ports.is_empty() {
            let listing = iptables::list(rules::Table::Nat, rules::PORTS_CHAIN)?;
            let own = rules::task_comment(&self.node_tag, &req.task);
            for (owner, rule) in rules::rules_on_ports(&listing, &host_ports, &own) {
                tracing::warn!(%owner, "removing a leftover rule on a host port given to a new task");
                iptables::delete_rule(&rule)?;
            }
        }
        let netns_path = self.netns_path(&req.task);
        let wired = req.mode != Mode::None;
        if wired {
            self.ensure_node(inner)?;
        }
        let ip = if wired {
            Some(inner.persisted.ipam.allocate(&req.task).ok_or_else(|| {
                NetworkError::SubnetFull {
                    subnet: self.cfg.subnet.to_string(),
                }
            })?)
        } else {
            None
        };
        let veth = wired.then(|| self.veth_name(&req.task));
        let mut record = TaskRecord {
            mode: req.mode,
            veth: veth.clone(),
            ports: ports.clone(),
            attachment: NetworkAttachment {
                netns: netns_path.clone(),
                ipv4: ip,
                mac: None,
                gateway: wired.then(|| self.cfg.subnet.gateway()),
                subnet: wired.then(|| self.cfg.subnet.to_string()),
            },
        };
        // Recorded before anything is created: a crash in between leaves a record that
        // cleanup finds.
        inner
            .persisted
            .tasks
            .insert(req.task.clone(), record.clone());
        self.save(&inner.persisted)?;
        inner.held.insert(req.task.clone(), held);

        netns::create(&netns_path)?;
        let peer = self.peer_name(&req.task);
        if let Some(veth) = &veth {
            links::create_veth(veth, &peer, &self.cfg.bridge, &netns_path)?;
        }
        let mac = links::configure_inside(
            &netns_path,
            links::Inside {
                peer: wired.then_some(peer),
                ip: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                subnet: self.cfg.subnet,
            },
        )?;
        if let Some(ip) = ip {
            for rule in rules::task_rules(&self.node_tag, &req.task, ip, &ports) {
                iptables::ensure_rule(&rule)?;
            }
        }
        record.attachment.mac = mac;
        inner
            .persisted
            .tasks
            .insert(req.task.clone(), record.clone());
        self.save(&inner.persisted)?;
        tracing::info!(task = %req.task, mode = ?req.mode, ip = ?ip, ports = ports.len(), "task network set up");
        Ok(record.attachment)
    }

    /// After an agent restart: checks a running task's networking and restores what is
    /// missing of the node's part (bridge, rules, port reservations) without recreating
    /// the task's namespace or veth. `None` when the task has no networking here (or its
    /// namespace is gone).
    pub fn adopt(&self, req: &TaskRequest) -> Result<Option<NetworkAttachment>, NetworkError> {
        let mut inner = self.lock();
        self.adopt_locked(&mut inner, req)
    }

    fn adopt_locked(
        &self,
        inner: &mut Inner,
        req: &TaskRequest,
    ) -> Result<Option<NetworkAttachment>, NetworkError> {
        let Some(record) = inner.persisted.tasks.get(&req.task).cloned() else {
            return Ok(None);
        };
        if !netns::exists(&record.attachment.netns) {
            return Ok(None);
        }
        if record.mode != Mode::None {
            self.ensure_node(inner)?;
        }
        if let Some(ip) = record.attachment.ipv4 {
            for rule in rules::task_rules(&self.node_tag, &req.task, ip, &record.ports) {
                iptables::ensure_rule(&rule)?;
            }
        }
        if !inner.held.contains_key(&req.task) {
            match ports::hold(&record.ports) {
                Ok(held) => {
                    inner.held.insert(req.task.clone(), held);
                }
                Err(e) => {
                    tracing::warn!(task = %req.task, error = %e, "could not reserve a published port again; the task keeps running");
                }
            }
        }
        Ok(Some(record.attachment))
    }

    /// Removes a task's networking: its rules, port reservations, veth, namespace handle
    /// and address. Idempotent.
    pub fn teardown(&self, task: &str) -> Result<(), NetworkError> {
        let mut inner = self.lock();
        self.teardown_locked(&mut inner, task)
    }

    fn teardown_locked(&self, inner: &mut Inner, task: &str) -> Result<(), NetworkError> {
        let record = inner.persisted.tasks.get(task).cloned();
        if let Some(ip) = record.as_ref().and_then(|r| r.attachment.ipv4) {
            for rule in rules::task_rules(
                &self.node_tag,
                task,
                ip,
                &record.as_ref().map(|r| r.ports.clone()).unwrap_or_default(),
            ) {
                iptables::delete_rule(&rule)?;
            }
        }
        // Rules of this task the record does not know (e.g. written before a crash).
        let listing = iptables::list(rules::Table::Nat, rules::PORTS_CHAIN)?;
        for (owner, rule) in rules::owned_task_rules(&listing, &self.node_tag) {
            if owner == task {
                iptables::delete_rule(&rule)?;
            }
        }
        inner.held.remove(task);
        links::delete_link(&self.veth_name(task))?;
        links::delete_link(&self.peer_name(task))?;
        netns::remove(&self.netns_path(task))?;
        let released = inner.persisted.ipam.release(task);
        let removed = inner.persisted.tasks.remove(task);
        if released.is_some() || removed.is_some() {
            self.save(&inner.persisted)?;
            tracing::info!(%task, "task network removed");
        }
        Ok(())
    }

    /// Removes the networking of every task not in `live` (tasks that are gone while the
    /// agent was down): records, leases, rules tagged with this node, namespace handles.
    /// Returns the tasks cleaned.
    pub fn cleanup_except(&self, live: &BTreeSet<String>) -> Result<Vec<String>, NetworkError> {
        let mut inner = self.lock();
        let mut gone: BTreeSet<String> = inner
            .persisted
            .tasks
            .keys()
            .chain(
                inner
                    .persisted
                    .ipam
                    .tasks()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .filter(|t| !live.contains(*t))
            .cloned()
            .collect();
        let listing = iptables::list(rules::Table::Nat, rules::PORTS_CHAIN)?;
        for (owner, _) in rules::owned_task_rules(&listing, &self.node_tag) {
            if !live.contains(&owner) {
                gone.insert(owner);
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.cfg.data_dir.join("netns")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !live.contains(&name) {
                    gone.insert(name);
                }
            }
        }
        for task in &gone {
            self.teardown_locked(&mut inner, task)?;
        }
        Ok(gone.into_iter().collect())
    }
}
