//! What the driver works with: its own API client, the deadlines and progress display of
//! a run ([`Run`]), stall detection, the figures it fills in, and a seeded random source.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::ProgressBar;
use serde_json::Value;

use super::*;

/// The bench's own client of the ECS API (a small pool of its own).
#[derive(Clone)]
pub(super) struct Api {
    pub(super) http: reqwest::Client,
    pub(super) endpoint: String,
}

impl Api {
    pub(super) async fn call(&self, op: &str, body: &Value) -> anyhow::Result<Value> {
        call(
            &self.http,
            &self.endpoint,
            &ecs(op),
            serde_json::to_vec(body)?,
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{op}: {e}"))
    }
}

/// Deadlines, the server's health and the progress display, checked by every wait.
pub(super) struct Run<'a> {
    pub(super) server: &'a Server,
    pub(super) deadline: Instant,
    pub(super) started: Instant,
    pub(super) bar: ProgressBar,
    pub(super) stall: Duration,
}

impl Run<'_> {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        self.server.check()?;
        if Instant::now() > self.deadline {
            bail!(
                "the run took longer than --timeout ({} s)",
                (self.deadline - self.started).as_secs()
            );
        }
        Ok(())
    }

    /// A failed call: the server's death explains it best (a server on its way out
    /// closes its listener before it exits, so give it a moment).
    pub(super) async fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        for _ in 0..30 {
            if let Err(dead) = self.server.check() {
                return dead;
            }
            if self.server.pid.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        e
    }

    /// An API call whose failure is explained by the server's death when it died.
    pub(super) async fn call(&self, api: &Api, op: &str, body: &Value) -> anyhow::Result<Value> {
        match api.call(op, body).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.explain(e).await),
        }
    }

    pub(super) fn phase(&self, msg: &str, len: u64) {
        self.bar.set_length(len.max(1));
        self.bar.set_position(0);
        self.bar.set_message(msg.to_owned());
        self.bar.reset_elapsed();
    }

    pub(super) fn log(&self, line: &str) {
        let t = self.started.elapsed().as_secs_f64();
        if std::io::stderr().is_terminal() {
            self.bar.suspend(|| eprintln!("[{t:7.1} s] {line}"));
        } else {
            eprintln!("[{t:7.1} s] {line}");
        }
    }

    pub(super) async fn sleep(&self, d: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.check()?;
            tokio::time::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(500)),
            )
            .await;
        }
        Ok(())
    }
}

/// Notices a phase that stopped moving.
pub(super) struct Stall {
    pub(super) best: i64,
    pub(super) since: Instant,
}

impl Stall {
    pub(super) fn new() -> Stall {
        Stall {
            best: i64::MIN,
            since: Instant::now(),
        }
    }

    pub(super) fn stuck(&mut self, value: i64, limit: Duration) -> bool {
        if value > self.best {
            self.best = value;
            self.since = Instant::now();
        }
        self.since.elapsed() > limit
    }
}

/// Everything measured, for the table and the last line.
#[derive(Default)]
pub(super) struct Figures {
    pub(super) register_secs: f64,
    pub(super) create_secs: f64,
    pub(super) running_secs: f64,
    pub(super) wait_seconds: u32,
    pub(super) poll_slots: usize,
    pub(super) rss: ProcSample,
    /// Bytes in the data directory of a server this bench started.
    pub(super) store_bytes: Option<u64>,
    pub(super) cpu_pct: f64,
    /// Of `cpu_pct`: the writer thread (writes, the controller's passes) and the rest.
    pub(super) writer_cpu_pct: f64,
    pub(super) api_cpu_pct: f64,
    /// Seconds waited after every task ran before the quiet window.
    pub(super) settle_secs: f64,
    pub(super) bench_cpu_pct: f64,
    pub(super) quiet_secs: f64,
    pub(super) quiet_polls: u64,
    pub(super) quiet_changed: u64,
    /// Sorted latencies (µs).
    pub(super) appeared: Vec<u64>,
    pub(super) seen: Vec<u64>,
    pub(super) running: Vec<u64>,
    pub(super) update_answer: Vec<u64>,
    pub(super) timeouts: usize,
    pub(super) list: Vec<u64>,
    pub(super) describe: Vec<u64>,
    pub(super) listed: usize,
    pub(super) stopped_reports: u64,
    pub(super) poll_errors: u64,
    pub(super) report_retries: u64,
    pub(super) report_errors: u64,
}

pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub(super) fn int_of(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Tiny deterministic generator (xorshift64*): which service each update touches.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

pub(super) fn service_name(i: usize) -> String {
    format!("svc-{i:05}")
}
