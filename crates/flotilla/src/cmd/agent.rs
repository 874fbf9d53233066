//! `flotilla agent`: turns this machine into a container instance of a cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::AgentConfig;
use anyhow::Context;
use runtime::types::{GcPolicy, PullPolicy};
use runtime::{ContainerdConfig, ContainerdRuntime};

/// Arguments of `flotilla agent`. The flags that differ per node on one host
/// (`--containerd-socket`, `--runc-root`, `--cgroup-parent`, `--task-dns`) can also come
/// from `FLOTILLA_AGENT_*` environment variables, so that an agent started by
/// `flotilla host boot` (which passes its environment on) gets them.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Control plane URL (the agent opens every connection; no inbound port). Servers
    /// sharing one etcd store: their URLs separated by commas; the agent moves to the
    /// next when the one it calls cannot be reached (at most 16).
    #[arg(long, value_name = "URL[,URL…]")]
    pub endpoint: String,
    /// Cluster to join.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Join the Fargate pool NAME instead of a cluster: the node runs FARGATE tasks of
    /// every cluster of its account and region and is never listed as a container
    /// instance (see docs/fargate.md). NAME: 1-255 letters, digits, `-` and `_`.
    #[arg(long, value_name = "NAME", conflicts_with = "cluster")]
    pub fargate_pool: Option<String>,
    /// With `--fargate-pool`: the node is spot capacity. Only FARGATE_SPOT tasks run on
    /// it, and draining it (UpdateContainerInstancesState) interrupts them
    /// (`stopCode: SpotInterruption`) as AWS reclaims spot capacity.
    #[arg(long, requires = "fargate_pool")]
    pub fargate_spot: bool,
    /// Where the agent keeps its state, task volumes and container logs.
    #[arg(long, default_value = "/var/lib/flotilla/agent")]
    pub data_dir: PathBuf,
    /// containerd's socket.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_socket: PathBuf,
    /// Custom attributes, `k=v,k2=v2`.
    #[arg(long, value_delimiter = ',')]
    pub attributes: Vec<String>,
    /// Region to register in. Requests are SigV4-signed with `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY` when set (needed for servers started with `--credentials`).
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Memory (MiB) kept for the host and not offered to tasks.
    #[arg(long, default_value_t = 256)]
    pub reserved_memory: i64,
    /// Overrides the node's id (from /etc/machine-id); needed for several agents on one host.
    #[arg(long)]
    pub instance_id: Option<String>,
    /// Image pull behaviour: default, always, once or prefer-cached.
    #[arg(long, default_value = "default")]
    pub pull_behavior: String,
    /// Registries reached over plain HTTP (loopback registries always are).
    #[arg(long, value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// Stopped containers and unused images are removed after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub gc_after: u64,
    /// The log-shipper binary containerd's shim runs for each container (default: next to
    /// this binary).
    #[arg(long, env = "FLOTILLA_AGENT_LOGGER")]
    pub logger: Option<PathBuf>,
    /// runc's state directory (`runc --root`) for this agent's containers. Default: the
    /// shim's `/run/containerd/runc/<namespace>`, which every containerd on the host
    /// shares; give each node its own when several run on one host (`flotilla dev cluster`).
    #[arg(long, env = "FLOTILLA_AGENT_RUNC_ROOT")]
    pub runc_root: Option<PathBuf>,
    /// Parent cgroup of this agent's containers (each gets `<parent>/flotilla/<id>`); give
    /// each node its own when several run on one host.
    #[arg(
        long,
        env = "FLOTILLA_AGENT_CGROUP_PARENT",
        default_value = ContainerdConfig::DEFAULT_CGROUP_PARENT
    )]
    pub cgroup_parent: String,
    /// Subnet of the node's task bridge (`flotilla0`): bridge and awsvpc tasks get their
    /// addresses here, the bridge the first one. Pick one that no network of the node uses.
    #[arg(long, default_value = "172.31.0.0/16")]
    pub bridge_cidr: String,
    /// The address this node is reached at, sent as its identity document's `privateIp`
    /// (load balancers send `instance` targets' traffic there). Default: the local
    /// address of the route to the control plane.
    #[arg(long)]
    pub advertise_ip: Option<std::net::IpAddr>,
    /// Name servers written into the `/etc/resolv.conf` of task containers that set no
    /// `dnsServers` (`IP[,IP]`), e.g. the server's `--dns-listen` address so that tasks
    /// resolve Cloud Map names. Without it they keep their image's file.
    #[arg(long, env = "FLOTILLA_AGENT_TASK_DNS", value_delimiter = ',')]
    pub task_dns: Vec<std::net::IpAddr>,
    /// Address range of ECS Service Connect client aliases on this node: each alias
    /// (`web` of `http://web:8080`) gets one address from it, added to the node's `lo`,
    /// where the agent's proxy listens. Pick one that no network of the node uses
    /// (`127.x.0.0/16` works without adding addresses).
    #[arg(long, default_value = agent::service_connect::DEFAULT_CIDR)]
    pub service_connect_cidr: agent::service_connect::Ipv4Cidr,
    /// The node's host API socket (`flotilla host boot` passes it): the control plane's
    /// host calls (`FlotillaV1.CallHostApi`: OS version, updates, settings, reboot) are
    /// made there. Without it they are answered with an error.
    #[arg(long)]
    pub host_api_socket: Option<PathBuf>,
    /// ECS Anywhere: join as an EXTERNAL instance with this SSM activation id (from
    /// `aws ssm create-activation`), with `--activation-code`. The node gets its own
    /// credentials (kept 0600 in `--data-dir`, rotated every 12 h) and signs with them;
    /// once they are saved, the activation flags are no longer needed.
    #[arg(long, requires = "activation_code", conflicts_with = "fargate_pool")]
    pub activation_id: Option<String>,
    /// The activation's code (`ActivationCode`); also `FLOTILLA_ACTIVATION_CODE`, which
    /// keeps it out of the process list.
    #[arg(
        long,
        env = "FLOTILLA_ACTIVATION_CODE",
        requires = "activation_id",
        hide_env_values = true
    )]
    pub activation_code: Option<String>,
}

fn pull_policy(s: &str) -> anyhow::Result<PullPolicy> {
    Ok(match s {
        "default" => PullPolicy::Default,
        "always" => PullPolicy::Always,
        "once" => PullPolicy::Once,
        "prefer-cached" => PullPolicy::PreferCached,
        other => anyhow::bail!(
            "--pull-behavior must be default, always, once or prefer-cached, not {other:?}"
        ),
    })
}

/// The pseudo-cluster a `--fargate-pool NAME` node registers into (the control plane's
/// `controlplane::fargate::pool_cluster`; the agent links no control plane code).
fn fargate_pool_cluster(name: &str) -> anyhow::Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    anyhow::ensure!(
        valid,
        "--fargate-pool must be 1-255 letters, digits, hyphens and underscores, not {name:?}"
    );
    Ok(format!("fargate-pool.{name}"))
}

/// The slim binary that runs the agent (built beside `flotilla`).
pub const SLIM_BINARY: &str = "flotilla-agent";

/// `flotilla agent` hands over to the slim `flotilla-agent` binary beside it, when there
/// is one: the same process (same pid) with the same command line, but a binary without
/// the server, host layer and benches, so a node's agent keeps less code in memory
/// (see `docs/performance.md`). Returns only when there is no slim binary to run, or
/// when this already is it; `FLOTILLA_AGENT_IN_PROCESS=1` keeps the agent in `flotilla`.
fn hand_over_to_slim_binary() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let slim = exe.with_file_name(SLIM_BINARY);
    if exe.file_name() == slim.file_name()
        || !slim.exists()
        || std::env::var_os("FLOTILLA_AGENT_IN_PROCESS").is_some_and(|v| v == "1")
    {
        return Ok(());
    }
    let mut argv = std::env::args_os();
    let arg0 = argv.next().unwrap_or_else(|| exe.clone().into_os_string());
    let mut slim_cmd = std::process::Command::new(&slim);
    slim_cmd.arg0(arg0).args(argv);
    // glibc gives every thread that allocates its own arena and keeps what was freed in
    // it; the agent's allocations are small and mostly on one thread (plus the blocking
    // pool's short jobs), so two arenas are plenty and keep idle memory down.
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        slim_cmd.env("MALLOC_ARENA_MAX", "2");
    }
    let err = slim_cmd.exec();
    Err(anyhow::anyhow!("cannot run {}: {err}", slim.display()))
}

/// Runs the agent until SIGINT/SIGTERM; running tasks are left running for the next start.
pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    hand_over_to_slim_binary()?;
    let mut attributes = BTreeMap::new();
    for kv in &args.attributes {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--attributes: {kv:?} is not k=v"))?;
        attributes.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    if args.fargate_spot {
        // controlplane::fargate::SPOT_ATTRIBUTE (the agent links no control plane code).
        attributes.insert("flotilla.fargate-spot".to_owned(), "true".to_owned());
    }
    let logger = match args.logger.clone() {
        Some(l) => l,
        None => std::env::current_exe()?.with_file_name("flotilla-runtime-logger"),
    };
    if !logger.exists() {
        anyhow::bail!(
            "the container log shipper {} is missing (build it with `cargo build -p runtime`, or pass --logger)",
            logger.display()
        );
    }
    let gc_after = Duration::from_secs(args.gc_after);
    let cfg = AgentConfig {
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        credentials: agent::client::Credentials::from_env(),
        cluster: match &args.fargate_pool {
            Some(pool) => fargate_pool_cluster(pool)?,
            None => args.cluster.clone(),
        },
        data_dir: args.data_dir.clone(),
        attributes,
        reserved_memory_mib: args.reserved_memory,
        instance_id: args.instance_id.clone(),
        default_stop_timeout: Duration::from_secs(30),
        pull_policy: pull_policy(&args.pull_behavior)?,
        gc: GcPolicy {
            stopped_container_age: gc_after,
            unused_image_age: gc_after,
        },
        bridge_cidr: Some(args.bridge_cidr.clone()),
        advertise_ip: args.advertise_ip,
        task_dns: args.task_dns.clone(),
        service_connect_cidr: args.service_connect_cidr,
        host_api_socket: args.host_api_socket,
        activation: match (&args.activation_id, &args.activation_code) {
            (Some(id), Some(code)) => Some(agent::anywhere::Activation {
                id: id.clone(),
                code: code.clone(),
            }),
            _ => None,
        },
    };
    let mut containerd = ContainerdConfig::new(
        &args.containerd_socket,
        "flotilla",
        args.data_dir.join("logs"),
        args.data_dir.join("runtime"),
        logger,
    );
    containerd.insecure_registries = args.insecure_registries.clone();
    if !args.cgroup_parent.starts_with('/') || args.cgroup_parent.contains("..") {
        anyhow::bail!(
            "--cgroup-parent must be an absolute cgroup path like /flotilla, not {:?}",
            args.cgroup_parent
        );
    }
    containerd.cgroup_parent = args.cgroup_parent.clone();
    if let Some(root) = &args.runc_root {
        if !root.is_absolute() {
            anyhow::bail!(
                "--runc-root must be an absolute path, not {}",
                root.display()
            );
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create --runc-root {}", root.display()))?;
    }
    containerd.runc_root = args.runc_root.clone();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    // The agent only waits on IO (containerd, the control plane): one thread is enough
    // and keeps its memory small.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let runtime = ContainerdRuntime::connect(containerd)
            .await
            .with_context(|| {
                format!(
                    "cannot reach containerd at {}",
                    args.containerd_socket.display()
                )
            })?;
        agent::run(cfg, Arc::new(runtime), crate::process::shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod fargate_pool_tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    #[test]
    fn a_pool_name_becomes_the_pool_pseudo_cluster() {
        assert_eq!(fargate_pool_cluster("main").unwrap(), "fargate-pool.main");
        assert!(fargate_pool_cluster("").is_err());
        assert!(fargate_pool_cluster("a.b").is_err());
        assert!(fargate_pool_cluster(&"x".repeat(256)).is_err());
    }

    #[test]
    fn fargate_flags_exclude_a_cluster_and_spot_needs_a_pool() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                ["agent", "--endpoint", "http://cp"]
                    .iter()
                    .chain(args)
                    .copied(),
            )
        };
        let ok = parse(&["--fargate-pool", "main", "--fargate-spot"]).expect("parses");
        assert_eq!(ok.agent.fargate_pool.as_deref(), Some("main"));
        assert!(ok.agent.fargate_spot);
        assert!(parse(&["--fargate-pool", "main", "--cluster", "c"]).is_err());
        assert!(parse(&["--fargate-spot"]).is_err());
    }
}
