//! `flotilla dev`: tools for developing and demonstrating flotilla on one machine.

pub mod cluster;

/// Subcommands of `flotilla dev`.
#[derive(Debug, clap::Subcommand)]
pub enum DevCommand {
    /// A multi-node cluster on this machine: each node a network namespace with its own
    /// containerd and agent, plus one control plane (needs root).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

/// Runs a `flotilla dev` subcommand.
pub fn run(command: DevCommand) -> anyhow::Result<()> {
    match command {
        DevCommand::Cluster(c) => cluster::run(c),
    }
}
