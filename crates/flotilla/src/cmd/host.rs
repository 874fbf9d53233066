//! `flotilla host …`: the node side of the host layer.
//!
//! * `serve` — the settings API on a Unix socket (no boot sequence; for tests and tooling).
//! * `boot` — what a node's init runs at every start (see `host_api::boot`).
//! * `install` — factory-install an image into slot A of an empty node directory.
//! * `rollback` — offline manual rollback: boot the other slot next.
//! * `flags` — print the A/B flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use host_api::services::{CommandRestarter, Paths};
use updater::node::Node;

/// Arguments of `flotilla host`.
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    #[command(subcommand)]
    command: HostCommand,
}

#[derive(Debug, clap::Subcommand)]
enum HostCommand {
    /// Serve the host settings API on a Unix socket.
    Serve(ServeArgs),
    /// Boot the node: pick the A/B slot, migrate, apply user-data, start services, check health.
    Boot(BootArgs),
    /// Install a node image into slot A of an empty node directory.
    Install {
        /// Node root directory.
        #[arg(long)]
        node_root: PathBuf,
        /// Node image archive (from `flotilla os build-image`).
        #[arg(long)]
        image: PathBuf,
    },
    /// Make the other slot boot next (manual rollback; takes effect at the next boot).
    Rollback {
        /// Node root directory.
        #[arg(long)]
        node_root: PathBuf,
    },
    /// The boot health check of a host-layer node: exits 0 once this node is registered,
    /// its agent connected, on this slot's version (see `host_probe`).
    ProbeRegistered(super::host_probe::ProbeArgs),
    /// Print the A/B partition flags as JSON.
    Flags {
        /// Node root directory.
        #[arg(long)]
        node_root: PathBuf,
    },
}

/// Options shared by `serve` and `boot`.
#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// Where rendered configuration files go (a node's /etc).
    #[arg(long)]
    etc_dir: Option<PathBuf>,
    /// Root of the sysctl tree.
    #[arg(long, default_value = "/proc/sys")]
    proc_sys: PathBuf,
    /// TOML file with `[restart-commands]` (service name = shell command).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// API socket path (created with mode 0660).
    #[arg(long, default_value = "/run/flotilla/api.sock")]
    socket: PathBuf,
    /// Persistent data directory (the datastore lives in DIR/datastore).
    #[arg(long)]
    data_dir: PathBuf,
    /// Node root, for `/os` and update actions.
    #[arg(long)]
    node_root: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, clap::Args)]
struct BootArgs {
    /// Node root directory.
    #[arg(long)]
    node_root: PathBuf,
    /// API socket path [default: NODE/run/api.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// User-data read at first boot [default: NODE/user-data.toml].
    #[arg(long)]
    user_data: Option<PathBuf>,
    /// Stop everything and exit once the boot is marked successful (host containers run
    /// through containerd keep running).
    #[arg(long)]
    exit_after_boot: bool,
    /// containerd socket for host and bootstrap containers (used unless the image's
    /// `[containers]` names a runner command).
    #[arg(long, default_value = host_api::containers::DEFAULT_SOCKET)]
    containerd_socket: PathBuf,
    /// containerd namespace of host containers (bootstrap containers: NAMESPACE-bootstrap);
    /// never the agent's task namespace.
    #[arg(long, default_value = host_api::containers::DEFAULT_NAMESPACE)]
    containerd_namespace: String,
    /// The `flotilla-runtime-logger` binary for container output [default: next to this
    /// binary].
    #[arg(long)]
    containerd_logger: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigFile {
    #[serde(default)]
    restart_commands: BTreeMap<String, String>,
}

fn load_config(path: Option<&Path>) -> anyhow::Result<ConfigFile> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// Runs `flotilla host`.
///
/// # Errors
/// Any failure, with context.
pub fn run(args: HostArgs) -> anyhow::Result<()> {
    match args.command {
        HostCommand::Serve(a) => serve(a),
        HostCommand::Boot(a) => boot(a),
        HostCommand::ProbeRegistered(a) => super::host_probe::run(a),
        HostCommand::Install { node_root, image } => {
            let meta = Node::new(&node_root).install(&image)?;
            println!(
                "installed {} {} into slot a of {}",
                meta.variant,
                meta.version,
                node_root.display()
            );
            Ok(())
        }
        HostCommand::Rollback { node_root } => {
            updater::node::rollback(&Node::new(&node_root))?;
            println!("the other slot boots next; run the boot step (reboot) to switch");
            Ok(())
        }
        HostCommand::Flags { node_root } => {
            let p = Node::new(&node_root).partition()?;
            println!("{}", serde_json::to_string_pretty(&p)?);
            Ok(())
        }
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let cfg_file = load_config(a.common.config.as_deref())?;
    let etc = a
        .common
        .etc_dir
        .clone()
        .unwrap_or_else(|| a.data_dir.join("etc"));
    let restarter = Arc::new(CommandRestarter {
        commands: cfg_file.restart_commands,
        etc: etc.clone(),
    });
    let cfg = host_api::server::HostConfig {
        data_dir: a.data_dir.clone(),
        paths: Paths {
            etc,
            proc_sys: a.common.proc_sys.clone(),
        },
        node: a.node_root.as_ref().map(Node::new),
    };
    runtime()?.block_on(async move {
        let state = host_api::server::HostState::new(cfg, restarter)?;
        let listener = host_api::server::bind(&a.socket)
            .with_context(|| format!("binding {}", a.socket.display()))?;
        tracing::info!(socket = %a.socket.display(), "host API listening");
        let reboot = state.reboot_requested();
        host_api::server::run(listener, state, async move {
            tokio::select! {
                () = stop_signal() => {}
                () = reboot => tracing::info!("reboot requested"),
            }
        })
        .await
        .context("serving")?;
        Ok(())
    })
}

fn boot(a: BootArgs) -> anyhow::Result<()> {
    let cfg_file = load_config(a.common.config.as_deref())?;
    let node = Node::new(&a.node_root);
    let opts = host_api::boot::BootOptions {
        socket: a.socket.unwrap_or_else(|| node.run_dir().join("api.sock")),
        user_data: Some(
            a.user_data
                .unwrap_or_else(|| a.node_root.join("user-data.toml")),
        ),
        paths: Paths {
            etc: a.common.etc_dir.unwrap_or_else(|| a.node_root.join("etc")),
            proc_sys: a.common.proc_sys,
        },
        restart_commands: cfg_file.restart_commands,
        exit_after_boot: a.exit_after_boot,
        containerd: {
            let mut c = host_api::containers::ContainerdOptions::new();
            c.socket = a.containerd_socket;
            c.namespace = a.containerd_namespace;
            if let Some(l) = a.containerd_logger {
                c.logger = l;
            }
            c
        },
        node,
    };
    let outcome = runtime()?.block_on(host_api::boot::boot(opts, stop_signal()))?;
    match outcome {
        host_api::boot::BootOutcome::Stopped { slot, version } => {
            println!("stopped: slot {slot} version {version}");
        }
        host_api::boot::BootOutcome::Reboot { slot } => {
            println!("reboot requested (was running slot {slot}); run the boot step again");
        }
    }
    Ok(())
}
