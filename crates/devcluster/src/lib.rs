//! `flotilla dev cluster`: N flotilla nodes on one machine, like kind does for
//! Kubernetes.
//!
//! # Design
//!
//! A node is a network namespace (`flotilla-<name>-<i>`) joined to a host bridge
//! (`fld-<name>`, host side `10.213.<subnet>.1`) by a veth pair; inside it run the node's
//! own containerd (own config, root, state and socket under the cluster directory) and
//! its own `flotilla agent` (own data dir, `--runc-root` and `--cgroup-parent`, so two
//! containerds never share runc state or cgroups, and `ecs.availability-zone=dev-<i>`).
//! One `flotilla server` listens on the host side of the bridge, reachable from the nodes
//! and from the AWS CLI on the host. Processes enter a namespace with `nsenter --net`
//! only, so their mounts and cgroups are the host's and teardown can see them.
//!
//! The local registries of `scripts/build-test-images.sh` listen on `127.0.0.1:5000/5001`;
//! each node DNATs those addresses to the host side of the bridge, and the host DNATs them
//! back to its loopback (`route_localnet`), so `127.0.0.1:5000/httpd:latest` means the
//! same image on every node and on the single-node setup.
//!
//! The server also serves Cloud Map's private DNS namespaces on the host side of the
//! bridge, port 53 (`--dns-listen`; other names are forwarded to the host's own name
//! servers from `/etc/resolv.conf`), and every agent gets `--task-dns <that address>`, so
//! a task resolves `web.corp.local` like an ECS task in a VPC does. When that port is
//! taken on the bridge address, the cluster comes up without DNS (`up` and `status` say
//! so) and tasks keep their images' `/etc/resolv.conf`.
//!
//! `up` is idempotent: it starts whatever is not running; a node whose containerd died is
//! treated as a machine that went down and is "rebooted" (leftover processes killed, run
//! state and mounts cleared, containerd and agent started again). `down` kills every
//! process of the cluster (found by namespace and cgroup, not by name), unmounts, removes
//! shim sockets, namespaces, veths, bridge, nftables table, cgroups and the directory.
//!
//! # Layout
//!
//! * [`spec`]: the persisted cluster description and every name derived from it (pure).
//! * [`host`]: commands, daemons, processes, mounts, cgroups.
//! * [`net`]: bridge, namespaces, veths, NAT.
//! * [`ecs`]: the few control plane calls the tool makes.
//! * [`cluster`]: `up`, `down`, `status`.
//!
//! # Limitations
//!
//! Linux only, as root; IPv4 only; at most 99 nodes and 256 clusters per host (one
//! `10.213.X.0/24` each). Nodes share the host's kernel, CPU and memory: each registers
//! the whole machine's resources.

pub mod cluster;
pub mod ecs;
pub mod error;
pub mod host;
pub mod net;
pub mod spec;

pub use cluster::{
    ClusterStatus, DownOutcome, NodeStatus, ProcessStatus, Quiet, Reporter, ScaleAction,
    ServerStatus, UpOptions, down, scale, status, up,
};
pub use error::{Error, Result};
pub use spec::{ClusterSpec, NodeKind, StoreKind};
