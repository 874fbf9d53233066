//! The bench's HTTP calls to the server, and the server as a child process: starting it
//! on a fresh data directory, sampling its memory and CPU from `/proc`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use runtime::error_chain;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::cmd::bench::server_command;

#[derive(Debug)]
pub(super) enum CallError {
    /// No answer (connection refused or reset, timeout, unreadable answer).
    Transport(String),
    /// An error answer.
    Api { code: String, message: String },
}

impl CallError {
    /// An answer that retrying cannot change (the real agent gives up on these).
    pub(super) fn is_final(&self) -> bool {
        matches!(self, CallError::Api { code, .. }
            if code == "InvalidParameterException" || code == "ClusterNotFoundException")
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transport(m) => write!(f, "{m}"),
            CallError::Api { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

pub(super) async fn call<T: DeserializeOwned>(
    http: &reqwest::Client,
    endpoint: &str,
    target: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<T, CallError> {
    let resp = http
        .post(endpoint)
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", AUTH)
        .timeout(timeout)
        .body(body)
        .send()
        .await
        .map_err(|e| CallError::Transport(error_chain(&e)))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| CallError::Transport(error_chain(&e)))?;
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(CallError::Api {
            code: v["__type"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), str::to_owned),
            message: v["message"].as_str().unwrap_or_default().to_owned(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| CallError::Transport(format!("bad answer: {e}")))
}

// ----- the server ------------------------------------------------------------------------

/// The server under test: one this bench started, or one at `--endpoint`.
pub(super) struct Server {
    pub(super) endpoint: String,
    pub(super) pid: Option<u32>,
    pub(super) child: Mutex<Option<Child>>,
    pub(super) log: Option<PathBuf>,
    pub(super) dir: Option<tempfile::TempDir>,
}

impl Server {
    pub(super) fn start(args: &ScaleBenchArgs) -> anyhow::Result<Server> {
        if let Some(endpoint) = &args.endpoint {
            return Ok(Server {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                pid: args.server_pid,
                child: Mutex::new(None),
                log: None,
                dir: None,
            });
        }
        let dir = tempfile::tempdir()?;
        let (mut command, port) = server_command(&dir.path().join("data"))?;
        let log = dir.path().join("server.log");
        let child = command
            // Room for every agent connection plus the bench's own clients.
            .arg("--max-connections")
            .arg((args.connections + 256).max(4096).to_string())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start flotilla server")?;
        Ok(Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            pid: Some(child.id()),
            child: Mutex::new(Some(child)),
            log: Some(log),
            dir: Some(dir),
        })
    }

    /// Bytes the server's data directory holds (only for a server this bench started).
    pub(super) fn store_bytes(&self) -> Option<u64> {
        let dir = self.dir.as_ref()?.path().join("data");
        let entries = std::fs::read_dir(dir).ok()?;
        Some(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum(),
        )
    }

    /// Fails with a one-line reason when the server has died.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                let last = self
                    .log
                    .as_ref()
                    .and_then(|p| std::fs::File::open(p).ok())
                    .and_then(|f| {
                        std::io::BufReader::new(f)
                            .lines()
                            .map_while(Result::ok)
                            .filter(|l| !l.trim().is_empty())
                            .last()
                    })
                    .unwrap_or_else(|| "(nothing logged)".into());
                bail!("the server died ({status}); its last log line: {last}");
            }
        } else if let Some(pid) = self.pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            bail!("the server (pid {pid}) is gone");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The server's CPU ticks (utime + stime) and memory, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ProcSample {
    pub(super) cpu_ticks: u64,
    pub(super) rss_kb: u64,
    pub(super) anon_kb: u64,
    pub(super) file_kb: u64,
    pub(super) hwm_kb: u64,
}

pub(super) fn proc_sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_ticks,
        rss_kb: field("VmRSS:"),
        anon_kb: field("RssAnon:"),
        file_kb: field("RssFile:"),
        hwm_kb: field("VmHWM:"),
    })
}

/// CPU ticks of the server's writer thread (`flotilla-writer`: every write, and the
/// service controller's passes, run there), from `/proc/<pid>/task`; the API threads
/// (request handling, the agents' polls) are the process's ticks less these.
pub(super) fn thread_ticks(pid: &str) -> Option<u64> {
    let mut writer = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(stat) = std::fs::read_to_string(entry.ok()?.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        if head.ends_with("(flotilla-writer") {
            writer += ticks;
        }
    }
    Some(writer)
}

/// Raises the soft limit on open files to the hard one; fails when even that is below
/// what the agents' connections need (the server, our child, inherits the limit).
pub(super) fn raise_nofile(need: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    if hard < need {
        bail!(
            "the open-files limit ({hard}) is below the {need} the agents' connections need: lower --connections or raise `ulimit -Hn`"
        );
    }
    Ok(())
}
