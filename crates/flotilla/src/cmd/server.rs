//! `flotilla server`: the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Arguments of `flotilla server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address the ECS API listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding the embedded store.
    #[arg(long, default_value = "/var/lib/flotilla/server")]
    pub data_dir: PathBuf,
    /// AWS account id that appears in every ARN.
    #[arg(long, default_value = "000000000000")]
    pub account_id: String,
    /// Enable `POST /admin/reset` (wipes all state; tests and local development only).
    #[arg(long)]
    pub allow_reset: bool,
}

/// Runs the control plane until interrupted.
pub fn run(_args: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
