//! `flotilla updater run|status|resume`: the rolling OS updater of a cluster's nodes
//! (docs/updater.md). Every decision is made by the pure `rollout` crate; this module
//! only observes the cluster (`observe`), carries out decisions (`execute`), keeps the
//! state and event files (`files`), and prints (`status`, `run`).

mod ecs;
mod execute;
mod files;
mod observe;
mod run;
mod status;

use std::path::PathBuf;

use anyhow::Context;

pub use run::RunArgs;
pub use status::StatusArgs;

/// The subcommands of `flotilla updater`.
#[derive(Debug, clap::Subcommand)]
pub enum UpdaterCommand {
    /// Update the cluster's nodes one at a time (or `--max-unavailable`), until stopped
    /// (or, with `--once`, until every node with an update is updated or skipped).
    Run(Box<RunArgs>),
    /// Print every node with its OS version, update and phase, the halt and the last
    /// events.
    Status(StatusArgs),
    /// Clear a halt so that the next `run` goes on (and remove the halted node's
    /// `flotilla.os-update.halted` attribute).
    Resume(ResumeArgs),
}

/// Where the control plane is and which cluster to update.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    #[command(flatten)]
    pub api: super::logs::ControlPlaneArgs,
    /// The cluster.
    #[arg(long)]
    pub cluster: String,
    /// Where the updater keeps its state for this cluster (default
    /// `$XDG_STATE_HOME/flotilla/updater/<cluster>`, or `~/.local/state/…`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

impl Target {
    /// The state directory for this cluster.
    fn state_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(
                std::env::var_os("HOME")
                    .context("neither XDG_STATE_HOME nor HOME is set; pass --state-dir")?,
            )
            .join(".local/state"),
        };
        Ok(base.join("flotilla/updater").join(&self.cluster))
    }

    /// A client of the control plane.
    fn client(&self) -> anyhow::Result<ecs::Ecs> {
        let client = self
            .api
            .client()
            .context("cannot create the control plane client")?;
        Ok(ecs::Ecs::new(client, &self.cluster))
    }
}

/// Arguments of `flotilla updater resume`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    target: Target,
}

/// Runs `flotilla updater …`.
pub fn run(command: UpdaterCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        UpdaterCommand::Run(args) => runtime.block_on(run::run(*args)),
        UpdaterCommand::Status(args) => runtime.block_on(status::status(args)),
        UpdaterCommand::Resume(args) => runtime.block_on(resume(args)),
    }
}

/// Clears the halt, removes the node's halted attribute, records the event.
async fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let files = files::StateFiles::open(&args.target.state_dir()?)?;
    let mut state = files.load()?;
    let Some(halt) = state.resume() else {
        println!("cluster {} is not halted", args.target.cluster);
        return Ok(());
    };
    let ecs = args.target.client()?;
    ecs.delete_halted_attribute(&halt.node).await?;
    files.save(&state)?;
    files.append(&rollout::Event {
        at: jiff::Timestamp::now(),
        node: Some(halt.instance_id.clone()),
        what: "resume".into(),
        why: format!("halt cleared (was: {})", halt.reason),
    })?;
    println!(
        "resumed: node {} will be tried again by the next run (halt was: {})",
        halt.instance_id, halt.reason
    );
    Ok(())
}
