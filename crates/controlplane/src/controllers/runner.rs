//! The controllers' runner: the only part of [`controllers`](super) that does IO, shaped
//! like kube-runtime's controller — a work queue of keys, a reconcile per key, and
//! `requeue_after` for decisions that depend on time alone.
//!
//! ```text
//!   cp.watch_changes() ── each published batch ──► services_touched(change) ──┐
//!   reconcile's requeue_after (a task turns healthy by time, a grace period    │
//!     ends, protection lapses, a placement to retry) ─────────────────────────┤
//!   resync: at start, every `resync`, and after the change feed lagged ───────┤
//!   error policy: retry after 1 s, 2 s, … 60 s ─────────────────────────────┘
//!                                                                             ▼
//!                               WorkQueue (one entry per service, earliest due time wins)
//!                                                                             │ due keys
//!                                                                             ▼
//!        every due key's reconcile_service queued to the writer at once: they run one
//!        after the other in the writer and share its batch, so due services commit
//!        together (one fsync), each pass seeing the ones before it
//! ```
//!
//! Only services whose records changed (the service itself, one of its tasks, an
//! instance or the cluster they run in) are reconciled, so an idle cluster costs nothing
//! however many services it has, and a change is acted on as soon as the writer has
//! room. A panicking reconcile (a bug) is caught and treated as an error, so it neither
//! kills the writer thread nor the runner. The runner holds nothing worth keeping: every
//! decision is re-derived from the durable state, so a restart (or a missed wake-up,
//! which the resync covers) costs nothing but a pass.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use model::status::ServiceStatus;
use tokio::sync::broadcast::error::RecvError;

use super::service::{ServiceOutcome, reconcile_service};
use crate::engine::{Clock, ControlPlane, system_clock};
use crate::error::EcsError;
use crate::ops::cloudwatch::deployment::names_alarm;
use crate::state::{Change, CwRecord, DiscoveryRecord, Record, ServiceKey, ServiceRecord, State};

/// How the runner paces itself.
#[derive(Clone)]
pub struct RunnerConfig {
    /// Every ACTIVE and DRAINING service is queued this often, changes or not (a safety
    /// net for anything time-driven a reconcile did not ask to be woken for, such as the
    /// 6-hour steady-state event).
    pub resync: Duration,
    /// First wait before retrying a service whose reconcile failed; doubles per failure.
    pub backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// Most reconciles queued to the writer at once (the rest wait for the next round).
    pub max_in_flight: usize,
    /// The queue's due times are checked at least this often (an idle check reads no
    /// state).
    pub tick: Duration,
    /// Where "now" comes from for due times: the control plane's clock, so that a
    /// `requeue_after` computed by a pass means the same time here.
    pub clock: Clock,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            resync: Duration::from_secs(300),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_in_flight: 512,
            tick: Duration::from_secs(1),
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("resync", &self.resync)
            .field("backoff", &self.backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_in_flight", &self.max_in_flight)
            .field("tick", &self.tick)
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

/// A point in the control plane's time: epoch milliseconds.
pub type Millis = i64;

fn millis(epoch_secs: f64) -> Millis {
    (epoch_secs * 1000.0) as Millis
}

/// Keys waiting for a reconcile, each with the earliest time it is due; a key is in the
/// queue at most once (asking again for a later time changes nothing, for an earlier one
/// moves it up).
#[derive(Debug)]
pub struct WorkQueue<K> {
    due: HashMap<K, (Millis, u64)>,
    order: BTreeSet<(Millis, u64)>,
    by_order: HashMap<u64, K>,
    seq: u64,
}

impl<K> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            due: HashMap::new(),
            order: BTreeSet::new(),
            by_order: HashMap::new(),
            seq: 0,
        }
    }
}

impl<K: Clone + Eq + Hash> WorkQueue<K> {
    /// Queues `key` for `at`, unless it is already queued for that time or earlier.
    pub fn schedule(&mut self, key: K, at: Millis) {
        if let Some(&(when, seq)) = self.due.get(&key) {
            if when <= at {
                return;
            }
            self.order.remove(&(when, seq));
            self.by_order.remove(&seq);
        }
        self.seq += 1;
        self.order.insert((at, self.seq));
        self.by_order.insert(self.seq, key.clone());
        self.due.insert(key, (at, self.seq));
    }

    /// Removes and returns up to `max` keys due at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Millis, max: usize) -> Vec<K> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(&(at, seq)) = self.order.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.order.pop_first();
            if let Some(key) = self.by_order.remove(&seq) {
                self.due.remove(&key);
                out.push(key);
            }
        }
        out
    }

    /// When the earliest key is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.order.first().map(|&(at, _)| at)
    }

    /// How many keys are queued.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// The services a change can give work to: a service's own record, the service a task
/// belongs to (its group `service:<name>`), and every service of the cluster whose
/// cluster or container instance changed (capacity, draining, an agent lost).
pub fn services_touched(state: &State, change: &Change) -> Vec<ServiceKey> {
    let record = match change {
        Change::Put(r) | Change::Delete(r) => r,
    };
    let cluster_services = |scope: &crate::state::Scope, cluster: &str| {
        state
            .services_in(scope, cluster)
            .filter(|s| is_managed(s))
            .map(ServiceRecord::key)
            .collect()
    };
    match record {
        Record::Service(s) => vec![s.key()],
        Record::Task(t) => t
            .task
            .group
            .as_deref()
            .and_then(crate::task::group_service)
            .map(|name| vec![ServiceKey::new(&t.scope, &t.cluster, name)])
            .unwrap_or_default(),
        Record::Instance(i) => cluster_services(&i.scope, &i.cluster),
        Record::Cluster(c) => cluster_services(&c.scope, &c.name),
        // A target group changes when its targets' health does: the services whose
        // tasks are its targets decide again.
        Record::TargetGroup(g) => {
            let arn = g.arn();
            state
                .services
                .values()
                .filter(|s| s.scope == g.scope && is_managed(s))
                .filter(|s| {
                    s.service
                        .load_balancers
                        .as_deref()
                        .unwrap_or(&[])
                        .iter()
                        .any(|lb| lb.target_group_arn.as_deref() == Some(arn.as_str()))
                })
                .map(ServiceRecord::key)
                .collect()
        }
        // StopServiceDeployment asks for a rollback the service's next pass carries out.
        Record::ServiceDeployment(d) => {
            vec![ServiceKey::new(&d.scope, &d.cluster, &d.service)]
        }
        // A CloudWatch alarm's state changed: the services whose deployments watch it.
        Record::Discovery(DiscoveryRecord::CloudWatch(CwRecord::Alarm(a))) => state
            .services
            .values()
            .filter(|s| s.scope == a.scope && is_managed(s))
            .filter(|s| names_alarm(s.service.deployment_configuration.as_ref(), &a.name))
            .map(ServiceRecord::key)
            .collect(),
        Record::TaskDefinition(_)
        | Record::ServiceRevision(_)
        | Record::Setting(_)
        | Record::Meta(_)
        | Record::Discovery(_)
        | Record::LoadBalancer(_)
        | Record::Listener(_)
        | Record::ListenerRule(_)
        | Record::CapacityProvider(_) => Vec::new(),
    }
}

fn is_managed(s: &crate::state::ServiceRecord) -> bool {
    matches!(
        s.service.status(),
        Some(ServiceStatus::Active | ServiceStatus::Draining)
    )
}

fn all_services(state: &State) -> Vec<ServiceKey> {
    state
        .services
        .iter()
        .filter(|(_, s)| is_managed(s))
        .map(|(k, _)| k.clone())
        .collect()
}

async fn run(cp: ControlPlane, config: RunnerConfig) {
    let mut feed = cp.watch_changes();
    let mut queue: WorkQueue<ServiceKey> = WorkQueue::default();
    let mut failing: HashMap<ServiceKey, Duration> = HashMap::new();
    let resync_ms = i64::try_from(config.resync.as_millis()).unwrap_or(i64::MAX);
    let mut next_resync = millis((config.clock)());
    loop {
        let now = millis((config.clock)());
        if now >= next_resync {
            for key in cp.read(all_services) {
                queue.schedule(key, now);
            }
            next_resync = now.saturating_add(resync_ms);
        }
        let due = queue.pop_due(now, config.max_in_flight.max(1));
        if !due.is_empty() {
            reconcile_all(&cp, &config, &mut queue, &mut failing, due).await;
            // Take in what the passes themselves changed before sleeping.
            continue;
        }
        let until = queue.next_due().unwrap_or(next_resync).min(next_resync);
        let wait = Duration::from_millis(u64::try_from(until - now).unwrap_or(0)).min(config.tick);
        tokio::select! {
            batch = feed.recv() => match batch {
                Ok(changes) => enqueue_changes(&cp, &mut queue, &changes, now),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "controllers fell behind the change feed; requeueing every service");
                    next_resync = now;
                }
                Err(RecvError::Closed) => return,
            },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Queues, due now, the services touched by one published batch.
fn enqueue_changes(
    cp: &ControlPlane,
    queue: &mut WorkQueue<ServiceKey>,
    changes: &[Change],
    now: Millis,
) {
    cp.read(|state| {
        for change in changes {
            for key in services_touched(state, change) {
                queue.schedule(key, now);
            }
        }
    });
}

/// Queues one reconcile per key to the writer at once (they share the writer's batches),
/// then handles each result: success requeues after the pass's `requeue_after`, failure
/// backs off.
async fn reconcile_all(
    cp: &ControlPlane,
    config: &RunnerConfig,
    queue: &mut WorkQueue<ServiceKey>,
    failing: &mut HashMap<ServiceKey, Duration>,
    keys: Vec<ServiceKey>,
) {
    let mut passes = tokio::task::JoinSet::new();
    for key in keys {
        let cp = cp.clone();
        passes.spawn(async move {
            let k = key.clone();
            let result = cp
                .write(key.scope.clone(), move |state, ctx| {
                    // A bug must not take the writer thread down with it.
                    catch_unwind(AssertUnwindSafe(|| reconcile_service(state, ctx, &k)))
                        .unwrap_or_else(|_| {
                            Err(EcsError::Server(format!(
                                "reconciling service {} panicked",
                                k.name
                            )))
                        })
                })
                .await;
            (key, result)
        });
    }
    while let Some(joined) = passes.join_next().await {
        let Ok((key, result)) = joined else { continue };
        let now = millis((config.clock)());
        match result {
            Ok(outcome) => {
                failing.remove(&key);
                log_outcome(&key, &outcome);
                if let Some(after) = outcome.requeue_after {
                    queue.schedule(key, now + millis(after.clamp(0.0, 86_400.0)));
                }
            }
            Err(e) => {
                let wait = failing.get(&key).copied().unwrap_or(config.backoff);
                tracing::warn!(
                    cluster = %key.cluster,
                    service = %key.name,
                    error = %e,
                    retry_in = ?wait,
                    "service reconcile failed; retrying"
                );
                let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                queue.schedule(key.clone(), now.saturating_add(wait_ms));
                failing.insert(key, (wait * 2).min(config.max_backoff));
            }
        }
    }
}

fn log_outcome(key: &ServiceKey, outcome: &ServiceOutcome) {
    if !outcome.is_empty() {
        tracing::info!(
            cluster = %key.cluster,
            service = %key.name,
            started = outcome.started.len(),
            stopped = outcome.stopped.len(),
            events = ?outcome.events,
            "service reconciled"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_queued_once_at_its_earliest_time() {
        let t0: Millis = 1_000_000;
        let mut q = WorkQueue::default();
        q.schedule("a", t0 + 5000);
        q.schedule("b", t0 + 1000);
        q.schedule("a", t0 + 9000); // later: ignored
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_due(), Some(t0 + 1000));
        q.schedule("a", t0); // earlier: moves up
        assert_eq!(q.pop_due(t0, 10), vec!["a"]);
        assert!(q.pop_due(t0, 10).is_empty(), "b is not due yet");
        assert_eq!(q.pop_due(t0 + 1000, 10), vec!["b"]);
        assert!(q.is_empty());
    }

    #[test]
    fn pop_due_takes_at_most_max_earliest_first() {
        let t0: Millis = 1_000_000;
        let mut q = WorkQueue::default();
        for i in 0..10u64 {
            q.schedule(i, t0 + 10 - i as Millis);
        }
        let later = t0 + 1000;
        assert_eq!(q.pop_due(later, 3), vec![9, 8, 7]);
        assert_eq!(q.len(), 7);
    }
}
