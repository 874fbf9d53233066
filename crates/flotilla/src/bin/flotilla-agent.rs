//! `flotilla-agent`: the node agent alone, in a binary without the server, host layer and
//! benches. `flotilla agent …` execs it (same pid, same command line) when it lies beside
//! `flotilla`, so it parses the same `flotilla agent [ARGS]` command line; see
//! `cmd/agent.rs`.

#[path = "../cmd/agent.rs"]
mod agent;
#[path = "../process.rs"]
mod process;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use process::Cli;

/// The one subcommand this binary runs: the flotilla node agent (the `agent` subcommand
/// of `flotilla`).
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node agent: register this machine and run its tasks through containerd.
    Agent(agent::AgentArgs),
}

fn main() -> ExitCode {
    let Command::Agent(args) = Cli::<Command>::parse().command;
    process::run(|| agent::run(args))
}
