//! `up`, `down` and `status` of a dev cluster: the orchestration over [`crate::net`],
//! [`crate::host`] and [`crate::ecs`]. `up` starts whatever is not running (so it also
//! restarts a killed server or brings a "crashed" node back as if it had rebooted);
//! `down` removes everything and is safe to repeat.
//!
//! - `options`: what `up` is asked for, the host's preflight and the spec it resolves to.
//! - `server`: the control plane server process and its Cloud Map DNS.
//! - `node`: a node's containerd and agent processes, and killing a node.
//! - `host_node`: a node booted by the host layer instead (`up --os-repo`).
//! - `up`, `down`, `status`: the three operations.
//! - `scale`: a node group's nodes added or removed (the server's scaling hook).

mod down;
mod host_node;
mod node;
mod options;
mod scale;
mod server;
mod status;
mod up;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::spec;

pub use down::{DownOutcome, down};
pub use options::{AGENT_POLL_SECONDS, UpOptions};
pub use scale::{MAX_GROW, ScaleAction, scale};
pub use server::DNS_PORT;
pub use status::{ClusterStatus, NodeStatus, ProcessStatus, ServerStatus, status};
pub use up::up;

/// Receives progress: the CLI shows it as spinners, tests ignore it.
pub trait Reporter {
    /// A step begins.
    fn step(&self, message: &str);
    /// The current step ended; `message` says how.
    fn done(&self, message: &str);
}

/// A [`Reporter`] that says nothing.
#[derive(Debug, Default)]
pub struct Quiet;

impl Reporter for Quiet {
    fn step(&self, _: &str) {}
    fn done(&self, _: &str) {}
}

/// The directory of cluster `name`: `dir` when given, else the one `up` noted, else
/// the default.
#[must_use]
pub fn resolve_dir(name: &str, dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_owned();
    }
    std::fs::read_to_string(spec::pointer_file(name))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| spec::default_dir(name))
}

fn wait_until<T>(
    what: impl Fn() -> String,
    limit: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(what()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(Error::io("cannot create", path))
}
