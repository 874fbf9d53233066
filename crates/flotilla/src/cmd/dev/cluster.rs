//! `flotilla dev cluster up|down|status`: CLI glue over the `devcluster` crate
//! (arguments, progress spinners, tables, JSON).

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use comfy_table::Table;
use devcluster::{ClusterStatus, DownOutcome, Reporter, UpOptions};
use indicatif::{ProgressBar, ProgressStyle};

/// `flotilla dev cluster` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Start the cluster, or whatever of it is not running (a killed server or node).
    Up(UpArgs),
    /// Remove everything of the cluster: processes, containers, mounts, namespaces,
    /// veths, bridge, NAT rules, cgroups, files. Safe to run twice.
    Down(Target),
    /// Show the server and every node: processes, addresses, container instances.
    Status(StatusArgs),
    /// Add nodes to a node group or remove one: the servers' `--scaling-hook` (capacity
    /// providers' managed scaling, docs/capacity.md), also usable by hand.
    Scale(ScaleArgs),
}

/// Arguments of `flotilla dev cluster scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    target: Target,
    // `grow` or `remove`: their help is the docs of `devcluster::ScaleAction`.
    #[command(subcommand)]
    action: devcluster::ScaleAction,
}

/// Which cluster.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Cluster name (1-8 lowercase letters or digits).
    #[arg(long, default_value = "dev")]
    pub name: String,
    /// Cluster directory (default: /var/lib/flotilla-dev/clusters/<name>, or where `up`
    /// put it).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Arguments of `flotilla dev cluster up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    target: Target,
    /// Number of EC2 nodes (default 3; an existing cluster keeps its count).
    #[arg(long)]
    nodes: Option<u8>,
    /// Nodes of the Fargate pool "dev" (default 0): they run FARGATE tasks of every
    /// cluster and are never listed as container instances; their awsvpc tasks get
    /// addresses every node and the host route to (see docs/fargate.md).
    #[arg(long)]
    fargate_nodes: Option<u8>,
    /// Spot nodes of that pool (default 0): FARGATE_SPOT tasks only, interrupted with a
    /// two-minute warning when the node is drained.
    #[arg(long)]
    fargate_spot_nodes: Option<u8>,
    /// Port of the control plane on the host side of the cluster bridge (default 8080).
    #[arg(long)]
    port: Option<u16>,
    /// The server's --agent-timeout (e.g. 25s; must exceed the agents' 20 s long poll).
    #[arg(long, value_parser = parse_seconds)]
    agent_timeout: Option<u64>,
    /// The server's --instance-lost-after (e.g. 25s): how soon a silent node's tasks are
    /// declared lost and replaced elsewhere.
    #[arg(long, value_parser = parse_seconds)]
    instance_lost_after: Option<u64>,
    /// Boot every node through the host layer (`flotilla host boot`) from a node image
    /// installed in slot A, updated from this TUF repository (`flotilla os publish
    /// --repo`); see docs/updater.md.
    #[arg(long)]
    os_repo: Option<PathBuf>,
    /// The node image for slot A (default: the newest one the repository lists).
    #[arg(long, requires = "os_repo")]
    os_image: Option<PathBuf>,
    /// Number of control plane servers (default 1; up to 5, more than one needs
    /// `--store etcd`). Server k listens on port + k - 1; every agent is given all of
    /// them and moves on when the one it calls is down.
    #[arg(long)]
    servers: Option<u8>,
    /// The servers' store: `embedded` (default: one server's own file) or `etcd` (a
    /// local 3-member etcd cluster the servers share; needs Debian's etcd-server).
    #[arg(long)]
    store: Option<devcluster::StoreKind>,
}

/// Arguments of `flotilla dev cluster status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// Print JSON (for scripts and tests) instead of tables.
    #[arg(long)]
    json: bool,
}

/// `25`, `25s` or `2m` → seconds.
fn parse_seconds(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a duration like 25, 25s or 2m");
    let (digits, scale) = match s.strip_suffix('s') {
        Some(d) => (d, 1),
        None => match s.strip_suffix('m') {
            Some(d) => (d, 60),
            None => (s, 1),
        },
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(bad)
}

/// Spinners on a terminal, one plain line per finished step otherwise.
struct Progress {
    bar: RefCell<Option<ProgressBar>>,
    tty: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            bar: RefCell::new(None),
            tty: std::io::stderr().is_terminal(),
        }
    }
}

impl Reporter for Progress {
    fn step(&self, message: &str) {
        if !self.tty {
            return;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        *self.bar.borrow_mut() = Some(bar);
    }

    fn done(&self, message: &str) {
        match self.bar.borrow_mut().take() {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("✓ {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.finish_with_message(message.to_owned());
            }
            None => eprintln!("{message}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.abandon();
        }
    }
}

/// Runs one `flotilla dev cluster` subcommand.
pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Up(args) => up(args),
        ClusterCommand::Down(target) => down(&target),
        ClusterCommand::Status(args) => status(&args),
        ClusterCommand::Scale(args) => scale(args),
    }
}

fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let bin = std::env::current_exe().context("cannot find the flotilla binary")?;
    let done = {
        let progress = Progress::new();
        devcluster::scale(
            &args.target.name,
            args.target.dir.as_deref(),
            &bin,
            &args.action,
            &progress,
        )?
    };
    println!("{done}");
    Ok(())
}

fn up(args: UpArgs) -> anyhow::Result<()> {
    let opts = UpOptions {
        name: args.target.name.clone(),
        dir: args.target.dir.clone(),
        nodes: args.nodes,
        fargate_nodes: args.fargate_nodes,
        fargate_spot_nodes: args.fargate_spot_nodes,
        port: args.port,
        agent_timeout: args.agent_timeout,
        instance_lost_after: args.instance_lost_after,
        flotilla_bin: std::env::current_exe().context("cannot find the flotilla binary")?,
        os_repo: args.os_repo,
        os_image: args.os_image,
        servers: args.servers,
        store: args.store,
    };
    let spec = {
        let progress = Progress::new();
        devcluster::up(&opts, &progress)?
    };
    let status = devcluster::status(&spec.name, Some(&spec.dir))?
        .context("the cluster vanished right after `up`")?;
    print_status(&status);
    let e = &status.endpoint;
    let servers_note = if status.servers.len() > 1 {
        format!(
            "\nEvery server answers any call: {}. Controllers run on the one whose /healthz says `ok: leader`.",
            status
                .servers
                .iter()
                .map(|s| s.endpoint.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        String::new()
    };
    println!(
        "\nUse it with the AWS CLI (any credentials):
  export AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_DEFAULT_REGION={region} AWS_ENDPOINT_URL_ECS={e}
  aws ecs list-container-instances --cluster {cluster}
  aws ecs register-task-definition --family hello --container-definitions \\
      '[{{\"name\":\"hello\",\"image\":\"127.0.0.1:5000/busybox:latest\",\"memory\":32,\"command\":[\"sleep\",\"3600\"]}}]'
  aws ecs create-service --service-name hello --task-definition hello --desired-count 6
  aws ecs wait services-stable --services hello
Images: 127.0.0.1:5000/... (scripts/build-test-images.sh) works on every node.
Service discovery: Cloud Map private DNS namespaces (AWS_ENDPOINT_URL_SERVICEDISCOVERY={e})
  resolve inside tasks, e.g. web.corp.local (the agents' --task-dns names the server's DNS).
Logs: {dir}/server/server.log, {dir}/nodes/<i>/agent.log{host}{servers_note}
Stop it with: flotilla dev cluster down --name {name}",
        region = status.region,
        cluster = status.ecs_cluster,
        dir = status.dir.display(),
        name = status.name,
        host = if spec.os.is_some() {
            format!(
                "\nHost layer: flotilla apiclient -s {dir}/nodes/<i>/api.sock -u /os; \
                 agent log {dir}/nodes/<i>/host/run/logs/agent.log",
                dir = status.dir.display()
            )
        } else {
            String::new()
        },
    );
    Ok(())
}

fn down(target: &Target) -> anyhow::Result<()> {
    let outcome = {
        let progress = Progress::new();
        devcluster::down(&target.name, target.dir.as_deref(), &progress)?
    };
    match outcome {
        DownOutcome::NothingThere => {
            println!("no dev cluster named {:?}: nothing to do", target.name)
        }
        DownOutcome::Removed => println!("dev cluster {:?} removed", target.name),
    }
    Ok(())
}

fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let Some(status) = devcluster::status(&args.target.name, args.target.dir.as_deref())? else {
        anyhow::bail!(
            "no dev cluster named {:?} (start one with `flotilla dev cluster up`)",
            args.target.name
        );
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(())
}

fn running(p: &devcluster::ProcessStatus) -> String {
    p.pid
        .map_or_else(|| "not running".to_owned(), |pid| format!("pid {pid}"))
}

fn print_status(s: &ClusterStatus) {
    println!(
        "dev cluster {:?} in {}: server {} on {} ({}), bridge {}",
        s.name,
        s.dir.display(),
        running(&s.server),
        s.endpoint,
        if s.server_healthy {
            "healthy"
        } else {
            "not answering"
        },
        s.bridge,
    );
    match &s.dns {
        Some(addr) => println!("Cloud Map DNS on {addr}: the tasks' name server"),
        None => println!("no Cloud Map DNS: tasks keep their images' /etc/resolv.conf"),
    }
    if s.servers.len() > 1 || !s.etcd.is_empty() {
        let mut table = Table::new();
        table.set_header(["server", "endpoint", "process", "/healthz"]);
        for server in &s.servers {
            table.add_row([
                server.index.to_string(),
                server.endpoint.clone(),
                running(&server.process),
                server
                    .health
                    .clone()
                    .unwrap_or_else(|| "not answering".to_owned()),
            ]);
        }
        println!("{table}");
        let members: Vec<String> = s
            .etcd
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{}: {}", i + 1, running(m)))
            .collect();
        println!("store {}: etcd members {}", s.store, members.join(", "));
    }
    let mut table = Table::new();
    table.set_header([
        "node",
        "kind",
        "ip",
        "zone",
        "netns",
        "containerd",
        "agent",
        "instance",
        "connected",
        "running tasks",
    ]);
    for n in &s.nodes {
        table.add_row([
            n.index.to_string(),
            match (n.kind, &n.group) {
                (devcluster::NodeKind::Ec2, Some(group)) => format!("EC2, group {group}"),
                (devcluster::NodeKind::Ec2, None) => "EC2".to_owned(),
                (devcluster::NodeKind::Fargate, _) => "FARGATE pool".to_owned(),
                (devcluster::NodeKind::FargateSpot, _) => "FARGATE_SPOT pool".to_owned(),
            },
            n.ip.clone(),
            n.zone.clone(),
            if n.netns_exists {
                n.netns.clone()
            } else {
                format!("{} (missing)", n.netns)
            },
            running(&n.containerd),
            running(&n.agent),
            n.container_instance_arn
                .as_deref()
                .and_then(|a| a.rsplit('/').next())
                .map_or_else(
                    || "-".to_owned(),
                    |id| format!("{id} {}", n.instance_status.as_deref().unwrap_or("")),
                ),
            n.agent_connected
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            n.running_tasks
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        ]);
    }
    println!("{table}");
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn durations() {
        assert_eq!(parse_seconds("25"), Ok(25));
        assert_eq!(parse_seconds("25s"), Ok(25));
        assert_eq!(parse_seconds("2m"), Ok(120));
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("-1s").is_err());
    }
}
