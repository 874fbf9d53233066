//! What a dev cluster is: its name, directory, node count and addresses, persisted as
//! `<dir>/cluster.json`, and every name derived from them (network namespaces,
//! interfaces, nftables tables, cgroups, paths). Pure: no IO except [`ClusterSpec::load`]
//! and [`ClusterSpec::save`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most nodes one cluster may have (addresses `.11` … `.109` of its /24).
pub const MAX_NODES: u8 = 99;
/// The region every node registers in, and the one the printed examples use.
pub const REGION: &str = "us-east-1";
/// The ECS cluster the nodes join (so `aws ecs` commands need no `--cluster`).
pub const ECS_CLUSTER: &str = "default";
/// Loopback registry ports that nodes reach on the host (`scripts/build-test-images.sh`).
pub const REGISTRY_PORTS: [u16; 2] = [5000, 5001];
/// The Fargate pool a dev cluster's pool nodes join (`flotilla agent --fargate-pool`).
pub const FARGATE_POOL: &str = "dev";
/// The most servers one cluster may run (ports `port` … `port + 4`).
pub const MAX_SERVERS: u8 = 5;
/// Members of the etcd cluster a dev cluster on `--store etcd` runs.
pub const ETCD_MEMBERS: u8 = 3;
/// Client port of the first etcd member on the host side of the bridge; member `m`
/// listens for clients on `ETCD_BASE_PORT + 2(m-1)` and for peers on the port above.
/// Away from etcd's own 2379/2380, which a system etcd may hold.
pub const ETCD_BASE_PORT: u16 = 12379;
/// The spec file inside the cluster directory; its presence marks a directory as a
/// dev cluster's (nothing else is ever deleted).
pub const SPEC_FILE: &str = "cluster.json";

/// A dev cluster, as `up` recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Short name (lowercase letters and digits, at most 8): part of every host-level name.
    pub name: String,
    /// Where everything of the cluster lives (server store, nodes' containerd and agents,
    /// logs, pid files).
    pub dir: PathBuf,
    /// Number of EC2 nodes (container instances of [`ECS_CLUSTER`]), numbered 1..=nodes.
    pub nodes: u8,
    /// Fargate pool nodes (of pool [`FARGATE_POOL`]), numbered after the EC2 nodes.
    #[serde(default)]
    pub fargate_nodes: u8,
    /// Fargate pool nodes that are spot capacity (`--fargate-spot`), numbered after the
    /// pool's regular nodes.
    #[serde(default)]
    pub fargate_spot_nodes: u8,
    /// EC2 nodes of node groups (capacity providers' groups), added and removed by
    /// `flotilla dev cluster scale` (the server's scaling hook): node number → group.
    /// Numbered after every other node; a removed node's number is not reused while a
    /// higher one exists.
    #[serde(default)]
    pub group_nodes: std::collections::BTreeMap<u8, String>,
    /// Third octet of the cluster's subnet `10.213.<subnet>.0/24`.
    pub subnet: u8,
    /// Port of the control plane on the host side of the bridge.
    pub port: u16,
    /// `flotilla server --agent-timeout` (seconds), when set.
    #[serde(default)]
    pub agent_timeout: Option<u64>,
    /// `flotilla server --instance-lost-after` (seconds), when set.
    #[serde(default)]
    pub instance_lost_after: Option<u64>,
    /// The host layer the nodes boot through (`up --os-repo`); `None`: a bare agent.
    #[serde(default)]
    pub os: Option<OsSpec>,
    /// The control plane: how many servers, on which store.
    #[serde(default)]
    pub control: ControlSpec,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeKind {
    /// A container instance of [`ECS_CLUSTER`].
    Ec2,
    /// A node of the Fargate pool [`FARGATE_POOL`].
    Fargate,
    /// A spot node of that pool: FARGATE_SPOT tasks only, interrupted when drained.
    FargateSpot,
}

/// Where the control plane keeps its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One server on its embedded store (`--data-dir`), the default.
    #[default]
    Embedded,
    /// A local [`ETCD_MEMBERS`]-member etcd cluster, shared by every server.
    Etcd,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "embedded" => Ok(StoreKind::Embedded),
            "etcd" => Ok(StoreKind::Etcd),
            other => Err(format!("--store is `embedded` or `etcd`, not {other:?}")),
        }
    }
}

/// The control plane of a dev cluster: `servers` servers (numbered 1..=servers, server
/// `k` on port `port + k - 1`) on one store. Server 1 also serves Cloud Map DNS and the
/// load balancers' listeners (one process may hold those ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlSpec {
    /// Number of servers (more than one needs [`StoreKind::Etcd`]).
    pub servers: u8,
    /// Their store.
    pub store: StoreKind,
}

impl Default for ControlSpec {
    fn default() -> ControlSpec {
        ControlSpec {
            servers: 1,
            store: StoreKind::Embedded,
        }
    }
}

/// Nodes booted by the host layer: `flotilla host boot` from a node image installed in
/// slot A, updated from a TUF repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsSpec {
    /// The TUF repository (`flotilla os publish --repo`): the nodes' update source.
    pub repo: PathBuf,
    /// The node image installed in slot A of every new node.
    pub image: PathBuf,
}

/// Checks a cluster name: 1–8 characters, lowercase ASCII letters and digits, starting
/// with a letter (interface names are limited to 15 characters).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 8
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "cluster name {name:?} must be 1-8 lowercase letters or digits, starting with a letter"
        )))
    }
}

/// The default directory of cluster `name`.
#[must_use]
pub fn default_dir(name: &str) -> PathBuf {
    PathBuf::from("/var/lib/flotilla-dev/clusters").join(name)
}

/// Where `up` notes the directory of cluster `name`, so `down --name` finds a cluster
/// started with `--dir`. Under `/run`: gone after a reboot, like the cluster's processes.
#[must_use]
pub fn pointer_file(name: &str) -> PathBuf {
    PathBuf::from("/run/flotilla-dev-clusters").join(name)
}

impl ClusterSpec {
    /// A cluster `name` in `dir` of `nodes` EC2 nodes and nothing else: no Fargate or
    /// node group nodes, subnet and port 0, the servers' defaults and one server on its
    /// own store, no host layer. What `down` tears down when no spec was saved; callers
    /// set the fields they need with `..ClusterSpec::bare(…)`.
    #[must_use]
    pub fn bare(name: &str, dir: PathBuf, nodes: u8) -> ClusterSpec {
        ClusterSpec {
            name: name.to_owned(),
            dir,
            nodes,
            fargate_nodes: 0,
            fargate_spot_nodes: 0,
            group_nodes: Default::default(),
            subnet: 0,
            port: 0,
            agent_timeout: None,
            instance_lost_after: None,
            os: None,
            control: ControlSpec::default(),
        }
    }

    /// Reads `<dir>/cluster.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<ClusterSpec>> {
        let path = dir.join(SPEC_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Invalid(format!("{} is not a dev cluster spec: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read", path)(e)),
        }
    }

    /// Writes `<dir>/cluster.json` (atomically).
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join(SPEC_FILE);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::io("cannot serialize", &path)(std::io::Error::other(e)))?;
        durable::write(&path, &json, durable::PUBLIC_FILE_MODE)
            .map_err(Error::io("cannot write", &path))
    }

    /// Every node's number: EC2 nodes, then Fargate pool nodes, then spot ones, then
    /// node groups' nodes.
    pub fn node_numbers(&self) -> impl Iterator<Item = u8> + use<> {
        let groups: Vec<u8> = self.group_nodes.keys().copied().collect();
        (1..=self.fixed_nodes()).chain(groups)
    }

    /// How many nodes of every kind.
    #[must_use]
    pub fn total_nodes(&self) -> u8 {
        let groups = u8::try_from(self.group_nodes.len()).unwrap_or(u8::MAX);
        self.fixed_nodes().saturating_add(groups)
    }

    /// The nodes `up` starts: EC2 and Fargate pool nodes (not the node groups').
    #[must_use]
    pub fn fixed_nodes(&self) -> u8 {
        self.nodes
            .saturating_add(self.fargate_nodes)
            .saturating_add(self.fargate_spot_nodes)
    }

    /// The number a new node of a group gets: the one after the highest in use, `None`
    /// when that would pass [`MAX_NODES`].
    #[must_use]
    pub fn next_node_number(&self) -> Option<u8> {
        let highest = self
            .group_nodes
            .keys()
            .copied()
            .max()
            .unwrap_or(0)
            .max(self.fixed_nodes());
        highest.checked_add(1).filter(|n| *n <= MAX_NODES)
    }

    /// The node group of node `i`, when it belongs to one.
    #[must_use]
    pub fn node_group(&self, i: u8) -> Option<&str> {
        self.group_nodes.get(&i).map(String::as_str)
    }

    /// What node `i` is.
    #[must_use]
    pub fn node_kind(&self, i: u8) -> NodeKind {
        if i <= self.nodes || self.group_nodes.contains_key(&i) {
            NodeKind::Ec2
        } else if i <= self.nodes.saturating_add(self.fargate_nodes) {
            NodeKind::Fargate
        } else {
            NodeKind::FargateSpot
        }
    }

    /// The subnet of node `i`'s task bridge (`flotilla agent --bridge-cidr`): on Fargate
    /// pool nodes a /24 of its own, `10.<100 + subnet % 100>.<i>.0/24`, which the host and
    /// every node route to it, so that an `awsvpc` task's address (its ENI's private IP)
    /// is reachable from the host and from any task of the cluster, as in a VPC; on EC2
    /// nodes the agent's default (not routed).
    #[must_use]
    pub fn task_cidr(&self, i: u8) -> Option<String> {
        (self.node_kind(i) != NodeKind::Ec2)
            .then(|| format!("10.{}.{i}.0/24", 100 + self.subnet % 100))
    }

    /// The routed task subnets of the cluster's nodes: `(node, subnet)`.
    pub fn task_routes(&self) -> impl Iterator<Item = (u8, String)> + '_ {
        self.node_numbers()
            .filter_map(|i| Some((i, self.task_cidr(i)?)))
    }

    /// The host's address on the cluster bridge (the nodes' default gateway).
    #[must_use]
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    /// Node `i`'s address.
    #[must_use]
    pub fn node_ip(&self, i: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 10 + i)
    }

    /// The control plane's URL (server 1's), reachable from the host and from every
    /// node.
    #[must_use]
    pub fn endpoint(&self) -> String {
        self.server_endpoint(1)
    }

    /// Server numbers, 1..=servers.
    pub fn server_numbers(&self) -> impl Iterator<Item = u8> + use<> {
        1..=self.control.servers.max(1)
    }

    /// Server `k`'s URL.
    #[must_use]
    pub fn server_endpoint(&self, k: u8) -> String {
        format!(
            "http://{}:{}",
            self.host_ip(),
            self.port + u16::from(k.saturating_sub(1))
        )
    }

    /// Every server's URL, comma-separated: the agents' `--endpoint` (an agent moves on
    /// to the next server when the one it calls is down).
    #[must_use]
    pub fn endpoints(&self) -> String {
        self.server_numbers()
            .map(|k| self.server_endpoint(k))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcd member numbers, 1..=[`ETCD_MEMBERS`] (none on the embedded store).
    pub fn etcd_members(&self) -> impl Iterator<Item = u8> + use<> {
        let members = match self.control.store {
            StoreKind::Embedded => 0,
            StoreKind::Etcd => ETCD_MEMBERS,
        };
        1..=members
    }

    /// etcd member `m`'s client and peer ports.
    #[must_use]
    pub fn etcd_ports(m: u8) -> (u16, u16) {
        let client = ETCD_BASE_PORT + 2 * u16::from(m.saturating_sub(1));
        (client, client + 1)
    }

    /// etcd member `m`'s name (`--name`).
    #[must_use]
    pub fn etcd_name(&self, m: u8) -> String {
        format!("{}-etcd{m}", self.name)
    }

    /// The members of the etcd cluster, as etcd's `--initial-cluster` names them.
    #[must_use]
    pub fn etcd_initial_cluster(&self) -> String {
        self.etcd_members()
            .map(|m| {
                format!(
                    "{}=http://{}:{}",
                    self.etcd_name(m),
                    self.host_ip(),
                    Self::etcd_ports(m).1
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The servers' `--store` on etcd: `etcd://` and every member's client address.
    #[must_use]
    pub fn etcd_store_arg(&self) -> String {
        let members: Vec<String> = self
            .etcd_members()
            .map(|m| format!("{}:{}", self.host_ip(), Self::etcd_ports(m).0))
            .collect();
        format!("etcd://{}", members.join(","))
    }

    /// etcd member `m`'s directory (data, log, pid file).
    #[must_use]
    pub fn etcd_dir(&self, m: u8) -> PathBuf {
        self.dir.join("etcd").join(m.to_string())
    }

    /// The host bridge every node's veth is attached to.
    #[must_use]
    pub fn bridge(&self) -> String {
        format!("fld-{}", self.name)
    }

    /// Host end of node `i`'s veth pair (the node end is `eth0` inside its namespace).
    #[must_use]
    pub fn host_veth(&self, i: u8) -> String {
        format!("fld-{}-{i}", self.name)
    }

    /// Node `i`'s network namespace (`/run/netns/<name>`).
    #[must_use]
    pub fn netns(&self, i: u8) -> String {
        format!("flotilla-{}-{i}", self.name)
    }

    /// The host nftables table (DNAT of the registry ports to the host's loopback).
    #[must_use]
    pub fn host_nft_table(&self) -> String {
        format!("flotilla_dev_{}", self.name)
    }

    /// Node `i`'s availability zone (`ecs.availability-zone`).
    #[must_use]
    pub fn zone(i: u8) -> String {
        format!("dev-{i}")
    }

    /// Node `i`'s instance id (`ec2InstanceId` of its container instance).
    #[must_use]
    pub fn instance_id(&self, i: u8) -> String {
        format!("i-flotilla-{}-node{i}", self.name)
    }

    /// Parent cgroup of node `i`'s containers.
    #[must_use]
    pub fn cgroup_parent(&self, i: u8) -> String {
        format!("/flotilla-dev-{}-{i}", self.name)
    }

    /// Server 1's directory (store, log, pid file).
    #[must_use]
    pub fn server_dir(&self) -> PathBuf {
        self.server_dir_of(1)
    }

    /// Server `k`'s directory: `server` for the first, `server-<k>` for the others.
    #[must_use]
    pub fn server_dir_of(&self, k: u8) -> PathBuf {
        match k {
            0 | 1 => self.dir.join("server"),
            k => self.dir.join(format!("server-{k}")),
        }
    }

    /// Node `i`'s directory.
    #[must_use]
    pub fn node_dir(&self, i: u8) -> PathBuf {
        self.dir.join("nodes").join(i.to_string())
    }

    /// Node `i`'s containerd directory (config, root, state, socket, log).
    #[must_use]
    pub fn containerd_dir(&self, i: u8) -> PathBuf {
        self.node_dir(i).join("containerd")
    }

    /// Node `i`'s containerd socket.
    #[must_use]
    pub fn containerd_socket(&self, i: u8) -> PathBuf {
        self.containerd_dir(i).join("containerd.sock")
    }

    /// Node `i`'s runc state directory.
    #[must_use]
    pub fn runc_root(&self, i: u8) -> PathBuf {
        self.node_dir(i).join("runc")
    }

    /// Node `i`'s host-layer node directory (`flotilla host boot --node-root`: slots,
    /// flags, datastore, `run/`).
    #[must_use]
    pub fn host_root(&self, i: u8) -> PathBuf {
        self.node_dir(i).join("host")
    }

    /// Node `i`'s host API socket (`flotilla apiclient --socket`).
    #[must_use]
    pub fn host_socket(&self, i: u8) -> PathBuf {
        self.node_dir(i).join("api.sock")
    }

    /// Node `i`'s agent data directory.
    #[must_use]
    pub fn agent_dir(&self, i: u8) -> PathBuf {
        self.node_dir(i).join("agent")
    }
}

/// The containerd configuration of one node: the same as `scripts/start-containerd.sh`
/// writes (own root, state, sockets; CRI off; isolated content), under `base`.
#[must_use]
pub fn containerd_config(base: &Path) -> String {
    let b = base.display();
    format!(
        r#"version = 2
root = "{b}/root"
state = "{b}/state"
# CRI is Kubernetes' business, not ours; it also wants CNI config we do not have.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{b}/containerd.sock"

[ttrpc]
  address = "{b}/containerd.sock.ttrpc"

[debug]
  address = "{b}/debug.sock"
  level = "info"

[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
"#
    )
}

/// nftables script for the host: packets from the nodes to the host's bridge address on
/// the registry ports go to the registries on 127.0.0.1 (the bridge has
/// `route_localnet`). Replaces the table if it exists.
#[must_use]
pub fn host_nft_script(spec: &ClusterSpec) -> String {
    let ports = registry_ports();
    format!(
        "table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n  chain prerouting {{\n    type nat hook prerouting priority -100; policy accept;\n    iifname \"{br}\" ip daddr {host} tcp dport {{ {ports} }} dnat to 127.0.0.1\n  }}\n}}\n",
        t = spec.host_nft_table(),
        br = spec.bridge(),
        host = spec.host_ip(),
    )
}

/// nftables script for a node's namespace: `127.0.0.1:5000/5001` (the image names of
/// `scripts/build-test-images.sh`) lead to the host, so the same task definitions work
/// on the single-node setup and on every node.
#[must_use]
pub fn node_nft_script(spec: &ClusterSpec) -> String {
    let ports = registry_ports();
    format!(
        "table ip flotilla_dev_node {{}}\ndelete table ip flotilla_dev_node\ntable ip flotilla_dev_node {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    ip daddr 127.0.0.1 tcp dport {{ {ports} }} dnat to {host}\n  }}\n  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    oifname \"eth0\" ip saddr 127.0.0.0/8 masquerade\n  }}\n}}\n",
        host = spec.host_ip(),
    )
}

fn registry_ports() -> String {
    REGISTRY_PORTS
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        ClusterSpec {
            port: 8080,
            instance_lost_after: Some(25),
            ..ClusterSpec::bare("dev", "/tmp/c".into(), 3)
        }
    }

    #[test]
    fn several_servers_share_a_local_etcd() {
        let mut s = spec();
        assert_eq!(s.endpoints(), "http://10.213.0.1:8080");
        assert_eq!(s.etcd_members().count(), 0);
        s.control = ControlSpec {
            servers: 3,
            store: StoreKind::Etcd,
        };
        assert_eq!(
            s.endpoints(),
            "http://10.213.0.1:8080,http://10.213.0.1:8081,http://10.213.0.1:8082"
        );
        assert_eq!(s.server_dir_of(1), PathBuf::from("/tmp/c/server"));
        assert_eq!(s.server_dir_of(3), PathBuf::from("/tmp/c/server-3"));
        assert_eq!(
            s.etcd_store_arg(),
            "etcd://10.213.0.1:12379,10.213.0.1:12381,10.213.0.1:12383"
        );
        assert_eq!(
            s.etcd_initial_cluster(),
            "dev-etcd1=http://10.213.0.1:12380,dev-etcd2=http://10.213.0.1:12382,dev-etcd3=http://10.213.0.1:12384"
        );
        // A spec written before the control plane had a shape reads as one embedded server.
        let old = r#"{"name":"dev","dir":"/tmp/c","nodes":3,"subnet":0,"port":8080}"#;
        let read: ClusterSpec = serde_json::from_str(old).unwrap();
        assert_eq!(read.control, ControlSpec::default());
        assert_eq!("etcd".parse::<StoreKind>(), Ok(StoreKind::Etcd));
        assert!(
            "redb"
                .parse::<StoreKind>()
                .unwrap_err()
                .contains("`embedded` or `etcd`")
        );
    }

    #[test]
    fn fargate_pool_nodes_follow_the_ec2_nodes() {
        let mut s = spec();
        s.fargate_nodes = 2;
        s.fargate_spot_nodes = 1;
        assert_eq!(s.node_numbers().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
        let kinds: Vec<NodeKind> = s.node_numbers().map(|i| s.node_kind(i)).collect();
        use NodeKind::*;
        assert_eq!(kinds, [Ec2, Ec2, Ec2, Fargate, Fargate, FargateSpot]);
        assert_eq!(s.task_cidr(1), None);
        // Node groups' nodes come after, EC2, numbered past the highest in use.
        assert_eq!(s.next_node_number(), Some(7));
        s.group_nodes.insert(7, "blue".into());
        s.group_nodes.insert(9, "blue".into());
        assert_eq!(s.next_node_number(), Some(10));
        assert_eq!(
            s.node_numbers().collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7, 9]
        );
        assert_eq!(s.node_kind(9), Ec2);
        assert_eq!(s.node_group(9), Some("blue"));
        assert_eq!(s.task_cidr(9), None);
        s.group_nodes.insert(MAX_NODES, "blue".into());
        assert_eq!(s.next_node_number(), None);
        s.group_nodes.clear();
        assert_eq!(s.task_cidr(5).as_deref(), Some("10.100.5.0/24"));
        s.subnet = 7;
        assert_eq!(
            s.task_routes().collect::<Vec<_>>(),
            [
                (4, "10.107.4.0/24".to_owned()),
                (5, "10.107.5.0/24".to_owned()),
                (6, "10.107.6.0/24".to_owned())
            ]
        );
    }

    #[test]
    fn names_fit_linux_limits() {
        let mut s = spec();
        s.name = "abcdefgh".into();
        s.nodes = MAX_NODES;
        assert!(s.bridge().len() <= 15);
        assert!(
            s.host_veth(MAX_NODES).len() <= 15,
            "{}",
            s.host_veth(MAX_NODES)
        );
    }

    #[test]
    fn addresses() {
        let s = spec();
        assert_eq!(s.host_ip().to_string(), "10.213.0.1");
        assert_eq!(s.node_ip(1).to_string(), "10.213.0.11");
        assert_eq!(s.node_ip(MAX_NODES).to_string(), "10.213.0.109");
        assert_eq!(s.endpoint(), "http://10.213.0.1:8080");
        assert_eq!(s.netns(2), "flotilla-dev-2");
        assert_eq!(s.cgroup_parent(3), "/flotilla-dev-dev-3");
        assert_eq!(
            s.containerd_socket(1),
            PathBuf::from("/tmp/c/nodes/1/containerd/containerd.sock")
        );
    }

    #[test]
    fn names_are_checked() {
        for ok in ["dev", "a", "ci42", "abcdefgh"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Dev", "1dev", "dev-1", "abcdefghi", "a b", "../x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec();
        s.dir = dir.path().to_owned();
        assert_eq!(ClusterSpec::load(dir.path()).unwrap(), None);
        s.save().unwrap();
        assert_eq!(ClusterSpec::load(dir.path()).unwrap(), Some(s));
    }

    #[test]
    fn nft_scripts_name_the_bridge_and_host() {
        let s = spec();
        let host = host_nft_script(&s);
        assert!(
            host.contains(
                "iifname \"fld-dev\" ip daddr 10.213.0.1 tcp dport { 5000, 5001 } dnat to 127.0.0.1"
            ),
            "{host}"
        );
        assert!(host.contains("delete table ip flotilla_dev_dev"));
        let node = node_nft_script(&s);
        assert!(
            node.contains("ip daddr 127.0.0.1 tcp dport { 5000, 5001 } dnat to 10.213.0.1"),
            "{node}"
        );
        assert!(node.contains("masquerade"));
    }

    #[test]
    fn containerd_config_keeps_everything_under_its_dir() {
        let cfg = containerd_config(Path::new("/c/n1"));
        for line in [
            "root = \"/c/n1/root\"",
            "state = \"/c/n1/state\"",
            "address = \"/c/n1/containerd.sock\"",
        ] {
            assert!(cfg.contains(line), "{line}");
        }
    }
}
