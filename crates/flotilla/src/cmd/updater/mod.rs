//! `flotilla updater run|status|resume`: the rolling OS updater of a cluster's nodes
//! (docs/updater.md). Every decision is made by the pure `rollout` crate; this module
//! only observes the cluster (`observe`), carries out decisions (`execute`), keeps its
//! state and events in the control plane under a lease (`store`), and prints (`status`,
//! `run`). Where it runs does not matter: a CLI, or an ECS service in the cluster.

mod ecs;
mod execute;
mod observe;
mod run;
mod status;
mod store;

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
}

impl Target {
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

/// Clears the halt (an edit of the stored state: a running updater keeps its lease and
/// reads the cleared halt), removes the node's halted attribute, records the event.
async fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let ecs = args.target.client()?;
    let Some(halt) = store::read(&ecs).await?.doc.state.halt else {
        println!("cluster {} is not halted", args.target.cluster);
        return Ok(());
    };
    let event = rollout::Event {
        at: jiff::Timestamp::now(),
        node: Some(halt.instance_id.clone()),
        what: "resume".into(),
        why: format!("halt cleared (was: {})", halt.reason),
    };
    store::edit(&ecs, &|d| {
        if d.state.resume().is_some() {
            d.push(event.clone());
        }
    })
    .await?;
    ecs.delete_halted_attribute(&halt.node).await?;
    println!(
        "resumed: node {} will be tried again by the next run (halt was: {})",
        halt.instance_id, halt.reason
    );
    Ok(())
}
