//! `flotilla server`: the control plane — the ECS API on the embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use std::time::Duration;

use controlplane::ControlPlane;
use controlplane::liveness::{LivenessConfig, spawn_liveness};
use ecs_api::ApiConfig;
use ecs_api::auth::Credentials;

/// Arguments of `flotilla server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address the ECS API listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding the embedded store (`state.redb`); created if missing.
    #[arg(long, default_value = "/var/lib/flotilla/server")]
    pub data_dir: PathBuf,
    /// Where the state lives: `redb:PATH` (the embedded store in one file) or
    /// `etcd://HOST:PORT[,HOST:PORT…]` (an etcd v3 cluster, started with the flags in
    /// `store::etcd_store`'s docs). Default: `redb:<data-dir>/state.redb`.
    #[arg(long)]
    pub store: Option<store::StoreLocation>,
    /// AWS account id that appears in every ARN.
    #[arg(long, default_value = "000000000000")]
    pub account_id: String,
    /// Enable `POST /admin/reset`, which wipes all state (tests and local development only).
    #[arg(long)]
    pub allow_reset: bool,
    /// TOML file of access keys (`[keys.<ID>] secret = "…" account = "…"`); when given,
    /// every request must carry a valid SigV4 signature from one of them. Without it any
    /// signature is accepted.
    #[arg(long)]
    pub credentials: Option<PathBuf>,
    /// Seconds without a poll from an instance's agent before it shows
    /// `agentConnected: false` (and receives no new tasks).
    #[arg(long, default_value_t = 30)]
    pub agent_timeout: u64,
    /// Seconds without a poll after which an instance's tasks are considered lost:
    /// they are marked STOPPED, and services replace them on other instances.
    #[arg(long, default_value_t = 60)]
    pub instance_lost_after: u64,
    /// Seconds a STOPPED task stays visible (DescribeTasks, ListTasks) before it is
    /// deleted (ECS keeps stopped tasks at least an hour). At least 60.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..))]
    pub stopped_task_retention: u64,
    /// Seconds a deleted (INACTIVE) cluster, service or container instance, and a task
    /// definition in DELETE_IN_PROGRESS, stays before it is deleted. At least 60.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..))]
    pub inactive_retention: u64,
    /// Most connections open at once (lowered to fit the open-files limit). At the
    /// limit, the connection waiting longest without a request in progress is closed
    /// to make room; when all are busy, newcomers get 503 ThrottlingException.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a connection has to send a complete request head (from its start, or
    /// from the first byte of its next request); slower ones are closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a keep-alive connection may stay without a request before it is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Serve Cloud Map's private DNS namespaces over DNS (UDP and TCP) on this address,
    /// e.g. `127.0.0.1:5353`; off unless given.
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// Where the DNS server forwards names outside every namespace (repeatable); without
    /// one it answers them REFUSED.
    #[arg(long, requires = "dns_listen")]
    pub dns_upstream: Vec<SocketAddr>,
    /// The IP address the ELBv2 load balancers' listeners listen on (each at its
    /// listener's port), or `off` for no data plane. Target health flows back to
    /// DescribeTargetHealth; `instance` targets are reached at their container instance's
    /// private IP.
    #[arg(long, default_value = "127.0.0.1", value_parser = crate::cmd::load_balancers::parse_lb_listen)]
    pub lb_listen: crate::cmd::load_balancers::LbListen,
    /// Seconds between two publishes of the load balancers' CloudWatch metrics
    /// (`AWS/ApplicationELB`; docs/load-balancers.md). ELB publishes every 60 s, the
    /// default; shorter is for tests (the datapoints still fall into one-minute buckets).
    #[arg(
        long,
        default_value_t = crate::cmd::load_balancers::metrics::PUBLISH_EVERY.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=60)
    )]
    pub lb_metrics_interval: u64,
    /// The command managed scaling runs to grow or shrink a capacity provider's node
    /// group (split on whitespace): `CMD grow GROUP COUNT` adds COUNT instances,
    /// `CMD remove GROUP INSTANCE_ID` removes one (docs/capacity.md has the contract:
    /// environment, exit status, 60 s timeout, retries). Without it, providers with
    /// managed scaling ENABLED only log their decisions.
    #[arg(long)]
    pub scaling_hook: Option<crate::cmd::capacity_scaling::ScalingHook>,
}

/// Starts what only one server of a store may run (the leader; the only server of an
/// embedded store): agent liveness, retention, the service controllers, CloudWatch's
/// alarm evaluation timer, the lifecycle hooks' runner and managed scaling's runner.
/// Aborting the handles stops them.
fn start_controllers(
    cp: &ControlPlane,
    liveness: LivenessConfig,
    retention: controlplane::retention::RetentionConfig,
    scaling_hook: Option<crate::cmd::capacity_scaling::ScalingHook>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut running = vec![
        spawn_liveness(cp.clone(), liveness),
        controlplane::retention::spawn_retention(cp.clone(), retention),
        controlplane::controllers::spawn_controllers(cp.clone()),
        controlplane::ops::cloudwatch::runner::spawn_alarm_evaluator(
            cp.clone(),
            controlplane::ops::cloudwatch::runner::EVALUATION_TICK,
        ),
        crate::cmd::capacity_scaling::serve(cp.clone(), scaling_hook),
    ];
    running.extend(crate::cmd::lifecycle_hooks::serve(cp.clone()));
    running
}

/// Runs the control plane until SIGINT/SIGTERM.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("--account-id must be 12 digits, got {:?}", args.account_id);
    }
    let credentials = args
        .credentials
        .as_deref()
        .map(Credentials::load)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let (store, election) = args
        .store
        .clone()
        .unwrap_or_else(|| store::StoreLocation::Redb(args.data_dir.join("state.redb")))
        .open_for_server(&args.listen.to_string())?;
    let cp =
        ControlPlane::open(store).map_err(|e| anyhow::anyhow!("cannot load the state: {e}"))?;
    let auth_mode = if credentials.is_some() {
        "SigV4 verified"
    } else {
        "any signature accepted"
    };
    let config = ApiConfig {
        account_id: args.account_id,
        allow_reset: args.allow_reset,
        credentials,
    };
    let limits = ecs_api::server::ServeLimits {
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        ..ecs_api::server::ServeLimits::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let liveness = LivenessConfig {
            disconnect_after: Duration::from_secs(args.agent_timeout),
            lost_after: Duration::from_secs(args.instance_lost_after.max(args.agent_timeout)),
            ..LivenessConfig::default()
        };
        let retention = controlplane::retention::RetentionConfig {
            stopped_task: Duration::from_secs(args.stopped_task_retention),
            inactive: Duration::from_secs(args.inactive_retention),
            ..Default::default()
        };
        let controllers = {
            let cp = cp.clone();
            let hook = args.scaling_hook.clone();
            move || start_controllers(&cp, liveness, retention.clone(), hook.clone())
        };
        match election {
            None => drop(controllers()),
            Some(election) => {
                tokio::spawn(crate::cmd::server_election::lead_when_elected(cp.clone(), election, controllers));
            }
        }
        if let Some(bind) = args.dns_listen {
            crate::cmd::discovery_dns::serve(cp.clone(), bind, args.dns_upstream).await?;
        }
        if let Some(listen) = args.lb_listen.0 {
            crate::cmd::load_balancers::serve(cp.clone(), listen, Duration::from_secs(args.lb_metrics_interval));
        }
        tracing::info!(%addr, data_dir = %args.data_dir.display(), auth = auth_mode, "flotilla server listening");
        ecs_api::server::serve_with(
            listener,
            ecs_api::router(cp, config),
            limits,
            crate::process::shutdown_signal(),
        )
        .await?;
        tracing::info!("flotilla server stopped");
        Ok(())
    })
}
