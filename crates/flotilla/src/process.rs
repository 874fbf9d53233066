//! What every flotilla process sets up, shared by `flotilla` and the slim
//! `flotilla-agent` binary: the command line, logging (tracing to stderr, filter from
//! `FLOTILLA_LOG`) and the shutdown signal.

/// The command line of both binaries, `flotilla COMMAND …`: `C` is the subcommands a
/// binary runs (all of them, or only `agent`).
#[derive(Debug, clap::Parser)]
#[command(name = "flotilla", version, about)]
pub struct Cli<C: clap::Subcommand> {
    #[command(subcommand)]
    pub command: C,
}

/// Logs to stderr through tracing; `FLOTILLA_LOG` filters (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// A binary's body after its arguments are parsed: sets up tracing ([`init_tracing`]),
/// runs `main` and maps its outcome to the exit code, printing a failure's error chain
/// as `flotilla: …`.
pub fn run(main: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    init_tracing();
    match main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flotilla: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
