//! The controllers' runner: the only part of [`controllers`](super) that does IO.
//!
//! ```text
//!   cp.subscribe() ──changed──┐
//!                             ├─► dry run (cp.read): services_needing_work(state, now)
//!   timer (1 s) ──tick────────┘            │ keys whose reconcile would change something
//!                                          ▼
//!                    for each key not backing off: cp.write(scope, reconcile_service)
//!                       ok  → clear its backoff      err → log, retry after 1 s, 2 s, … 60 s
//! ```
//!
//! A panicking reconcile (a bug) is caught and treated as an error, so it neither kills
//! the writer thread nor the runner.
//!
//! The runner holds no state of its own worth keeping: every decision is re-derived from
//! the durable state, so a restart (or a missed wake-up) costs nothing but a pass. The
//! dry run happens against the published state under the read lock; the real pass runs
//! in the writer against its working copy, so what it decides is always current. The
//! timer covers decisions that depend on time alone (protection expiring, the 6-hour
//! steady-state event, retrying a placement that failed for lack of resources).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use tokio::time::Instant;

use super::service::{reconcile_service, services_needing_work};
use crate::engine::{Clock, ControlPlane, system_clock};
use crate::error::EcsError;
use crate::state::MemberKey;

/// How the runner paces itself.
#[derive(Clone)]
pub struct RunnerConfig {
    /// Passes run at least this often, changes or not.
    pub tick: Duration,
    /// First wait before retrying a service whose reconcile failed; doubles per failure.
    pub backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Where "now" comes from for the dry run (the writer uses its own clock).
    pub clock: Clock,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            tick: Duration::from_secs(1),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("tick", &self.tick)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .finish_non_exhaustive()
    }
}

/// Starts the controllers with the default pacing; they run until the task is aborted
/// or the runtime stops.
pub fn spawn_controllers(cp: ControlPlane) -> tokio::task::JoinHandle<()> {
    spawn_controllers_with(cp, RunnerConfig::default())
}

/// [`spawn_controllers`] with explicit pacing and clock.
pub fn spawn_controllers_with(
    cp: ControlPlane,
    config: RunnerConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(cp, config))
}

/// A service whose last reconcile failed: when to try again and how long to wait after
/// the next failure.
struct Backoff {
    retry_at: Instant,
    next: Duration,
}

async fn run(cp: ControlPlane, config: RunnerConfig) {
    let mut changes = cp.subscribe();
    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing: HashMap<MemberKey, Backoff> = HashMap::new();
    loop {
        // Mark the current version seen before reading, so a change published while
        // this pass runs wakes the next one.
        changes.borrow_and_update();
        let now = (config.clock)();
        let due = cp
            .read(|state| catch_unwind(AssertUnwindSafe(|| services_needing_work(state, now))))
            .unwrap_or_else(|_| {
                tracing::error!("the services' dry run panicked; retrying on the next tick");
                Vec::new()
            });
        for key in due {
            if failing
                .get(&key)
                .is_some_and(|b| b.retry_at > Instant::now())
            {
                continue;
            }
            let k = key.clone();
            let result = cp
                .write(key.0.clone(), move |state, ctx| {
                    // A bug must not take the writer thread down with it.
                    catch_unwind(AssertUnwindSafe(|| reconcile_service(state, ctx, &k)))
                        .unwrap_or_else(|_| {
                            Err(EcsError::Server(format!(
                                "reconciling service {} panicked",
                                k.2
                            )))
                        })
                })
                .await;
            match result {
                Ok(outcome) => {
                    failing.remove(&key);
                    if !outcome.is_empty() {
                        tracing::info!(
                            cluster = %key.1,
                            service = %key.2,
                            started = outcome.started.len(),
                            stopped = outcome.stopped.len(),
                            events = ?outcome.events,
                            "service reconciled"
                        );
                    }
                }
                Err(e) => {
                    let wait = failing.get(&key).map_or(config.backoff, |b| b.next);
                    tracing::warn!(
                        cluster = %key.1,
                        service = %key.2,
                        error = %e,
                        retry_in = ?wait,
                        "service reconcile failed; retrying"
                    );
                    failing.insert(
                        key,
                        Backoff {
                            retry_at: Instant::now() + wait,
                            next: (wait * 2).min(config.max_backoff),
                        },
                    );
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
        }
    }
}
