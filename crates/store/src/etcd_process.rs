//! A throwaway one-member etcd for tests and benches: [`EtcdProcess::start`] runs
//! `/usr/bin/etcd` (Debian's `etcd-server`, installed by `scripts/setup.sh`) in a temporary
//! data directory on free loopback ports, waits until it answers, and kills it on drop.
//!
//! It is started with the limits [`EtcdStore`](crate::EtcdStore) needs
//! ([`REQUIRED_FLAGS`](crate::etcd_store::REQUIRED_FLAGS)), so that tests exercise the
//! same configuration a deployment must use.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::etcd_store::{EtcdOptions, EtcdStore, REQUIRED_FLAGS};

/// The etcd binary: `$FLOTILLA_ETCD` if set, else Debian's.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("FLOTILLA_ETCD").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from)
}

/// A running etcd member, killed (and its data removed) on drop.
#[derive(Debug)]
pub struct EtcdProcess {
    /// `None` between [`EtcdProcess::kill`] and [`EtcdProcess::restart`].
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
}

/// How long [`EtcdProcess::start`] waits for etcd to answer.
const READY_WITHIN: Duration = Duration::from_secs(30);

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdProcess {
    /// Starts etcd, and returns once a linearizable read through [`EtcdStore`] succeeds.
    /// A missing binary is an error that says to run `scripts/setup.sh`.
    pub fn start() -> Result<EtcdProcess, String> {
        let binary = etcd_binary();
        if !binary.exists() {
            return Err(format!(
                "{} not found: run scripts/setup.sh (it installs Debian's etcd-server), \
                 or set FLOTILLA_ETCD to an etcd 3.4+ binary",
                binary.display()
            ));
        }
        // Ports are picked free and then released, so another process may take one before
        // etcd binds it: try again with fresh ports then.
        let mut last = String::new();
        for _ in 0..3 {
            match EtcdProcess::try_start(&binary) {
                Ok(etcd) => return Ok(etcd),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(binary: &Path) -> Result<EtcdProcess, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let mut etcd = EtcdProcess {
            child: None,
            client_port: free_port().map_err(|e| e.to_string())?,
            peer_port: free_port().map_err(|e| e.to_string())?,
            binary: binary.to_owned(),
            dir,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// Starts the member on its ports and data directory and waits until it answers.
    fn spawn(&mut self) -> Result<(), String> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .map_err(|e| format!("cannot open etcd.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .args(["--name", "flotilla-test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("flotilla-test={peer}")])
            .args(REQUIRED_FLAGS)
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Kills the member (`SIGKILL`), keeping its data for [`EtcdProcess::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed member again on the same ports and data, and waits until it
    /// answers.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    /// Polls until a read succeeds, etcd exits, or [`READY_WITHIN`] passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let options = EtcdOptions {
            timeout: Duration::from_millis(500),
            ..EtcdOptions::default()
        };
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("etcd exited with {status}: {}", self.log_tail()));
            }
            match EtcdStore::connect(&[self.endpoint()], options.clone()) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(format!(
                        "etcd did not answer within {READY_WITHIN:?} ({e}): {}",
                        self.log_tail()
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The client endpoint, `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The last lines etcd logged (for a failure's message).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
