//! `flotilla server` as a child process, for the tests of the binary
//! (`env!("CARGO_BIN_EXE_flotilla")` is only known to those tests, so they pass it in).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{http, wait};

/// A `flotilla server` child process on a loopback port; killed (SIGKILL) and reaped on
/// drop, whatever the test did.
#[derive(Debug)]
pub struct ServerProcess {
    /// The process; tests kill it (`kill -9`) or read its stderr.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl ServerProcess {
    /// Starts `bin server --listen 127.0.0.1:<free port> --data-dir <data_dir>` with
    /// `FLOTILLA_LOG=warn`, its stdout discarded and its stderr going to `stderr`. Does
    /// not wait for it: see [`ServerProcess::wait_healthy`].
    pub fn spawn(bin: &Path, data_dir: &Path, stderr: Stdio) -> ServerProcess {
        ServerProcess::spawn_with(bin, data_dir, stderr, &[])
    }

    /// [`ServerProcess::spawn`] with more arguments after `--data-dir`.
    pub fn spawn_with(bin: &Path, data_dir: &Path, stderr: Stdio, args: &[&str]) -> ServerProcess {
        let port = http::free_port();
        let child = Command::new(bin)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("FLOTILLA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start flotilla server");
        ServerProcess {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until `GET /healthz` answers 200.
    ///
    /// # Panics
    /// When it does not within `within`.
    pub fn wait_healthy(&self, within: Duration) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        wait::until(
            "the server to become healthy",
            within,
            Duration::from_millis(20),
            || match http::healthz(&http, &self.endpoint) {
                (200, _) => Ok(()),
                (0, _) => Err("no answer".to_owned()),
                (status, body) => Err(format!("{status} {body}")),
            },
        );
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
