//! `flotilla`: the one binary. Each subcommand lives in its own module under `cmd/`;
//! this file only parses arguments, sets up tracing and maps errors to an exit code.

mod cmd;
mod process;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use process::Cli;

/// jemalloc, with its background threads returning freed pages to the OS within about
/// 10 s (its `dirty_decay_ms`): under glibc's malloc the control plane kept the peaks
/// of its write batches resident (docs/performance.md, "Control plane at scale").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Every subcommand of the binary; one routing `match` in [`main_inner`].
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: the ECS JSON 1.1 API on an embedded store.
    Server(cmd::server::ServerArgs),
    /// Run the node agent: register this machine and run its tasks through containerd.
    /// (Boxed: its many flags would make every other variant as large.)
    Agent(Box<cmd::agent::AgentArgs>),
    /// Print a task's container output (through the control plane); `--follow` to stream.
    Logs(cmd::logs::LogsArgs),
    /// Node host layer: settings API server, boot step, install, rollback.
    Host(cmd::host::HostArgs),
    /// Client of the host settings API (Bottlerocket-style apiclient).
    Apiclient(cmd::apiclient::ApiclientArgs),
    /// Build node images and publish them in a TUF update repository.
    Os(cmd::os::OsArgs),
    /// Development tools: `flotilla dev cluster up|down|status` (N nodes on this machine).
    #[command(subcommand)]
    Dev(cmd::dev::DevCommand),
    /// Measure flotilla (API throughput and latency, …) and print the figures.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// The state store: `flotilla store copy --from redb:PATH --to etcd://HOST:PORT`.
    #[command(subcommand)]
    Store(cmd::store::StoreCommand),
    /// Rolling OS update of a cluster's nodes: `flotilla updater run|status|resume`.
    #[command(subcommand)]
    Updater(cmd::updater::UpdaterCommand),
}

fn main() -> ExitCode {
    let command = Cli::<Command>::parse().command;
    process::run(|| main_inner(command))
}

fn main_inner(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Server(args) => cmd::server::run(args),
        Command::Agent(args) => cmd::agent::run(*args),
        Command::Bench(bench) => cmd::bench::run(bench),
        Command::Dev(dev) => cmd::dev::run(dev),
        Command::Host(args) => cmd::host::run(args),
        Command::Logs(args) => cmd::logs::run(args),
        Command::Apiclient(args) => cmd::apiclient::run(args),
        Command::Os(args) => cmd::os::run(args),
        Command::Store(store) => cmd::store::run(store),
        Command::Updater(updater) => cmd::updater::run(updater),
    }
}
