//! A failed store: the writer's health and recovery (see the parent module's docs).

use store::{Mutation, Store};
use tokio::sync::{mpsc, oneshot};

use super::{ControlPlane, Inner, Job, to_mutation};
use crate::error::EcsError;
use crate::state::{Change, MetaRecord, Record, State, TaskRecord};

// ---- A failed store: health and recovery -------------------------------------------------

/// How long to wait before trying to recover a failed store again: at first, and at most
/// (doubling in between). A full disk then costs a reopen now and then, not one per write.
const RECOVERY_BACKOFF: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(100),
    std::time::Duration::from_secs(5),
);

/// How long [`ControlPlane::store_health`] waits for the writer's recovery attempt.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl ControlPlane {
    /// Whether the control plane can write: `Ok` while its store takes commits and its
    /// writer runs, otherwise why not (for `GET /healthz`). While the store is failed this
    /// asks the writer to try recovering it now (at most once per backoff period), so the
    /// answer turns `Ok` once the cause is gone, without waiting for a client's write.
    pub async fn store_health(&self) -> Result<(), String> {
        let last_failure = || {
            self.inner
                .store_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        };
        let writer_stopped = || "the control plane's writer has stopped".to_owned();
        if self.inner.jobs.is_closed() {
            return Err(writer_stopped());
        }
        let Some(failure) = last_failure() else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        match self.inner.jobs.try_send(Job::Probe(tx)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(failure),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(writer_stopped()),
        }
        match tokio::time::timeout(PROBE_WAIT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(writer_stopped()),
            Err(_) => Err(last_failure().unwrap_or(failure)),
        }
    }
}

/// The refusal of a write while the store cannot take it.
pub(super) fn unwritable(reason: String) -> EcsError {
    EcsError::Server(format!("the state store cannot write: {reason}"))
}

/// Runs a store call; a panic in it (a backend bug on a damaged file) counts as a failed
/// call instead of ending the writer thread.
pub(super) fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the store panicked".to_owned()))
}

/// The writer's knowledge of a failed store (see the module docs).
pub(super) struct Recovery {
    /// Why the store cannot write; `None` while it can.
    failure: Option<String>,
    /// No recovery attempt before this.
    not_before: std::time::Instant,
    /// The wait after the next failed attempt.
    backoff: std::time::Duration,
}

impl Recovery {
    pub(super) fn new() -> Recovery {
        Recovery {
            failure: None,
            not_before: std::time::Instant::now(),
            backoff: RECOVERY_BACKOFF.0,
        }
    }

    /// Notes a failed store call: writes are refused until a recovery succeeds.
    pub(super) fn failed(&mut self, inner: &Inner, reason: &str) {
        if self.failure.is_none() {
            tracing::error!(
                error = reason,
                "the state store failed; writes are refused until it recovers"
            );
            self.backoff = RECOVERY_BACKOFF.0;
        }
        self.failure = Some(reason.to_owned());
        self.not_before = std::time::Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(RECOVERY_BACKOFF.1);
        *inner
            .store_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.to_owned());
    }

    /// `Ok` when the store takes writes: it has not failed, or it recovers now. Refuses
    /// without touching the store while the backoff lasts.
    pub(super) fn ready(&mut self, store: &dyn Store, inner: &Inner) -> Result<(), String> {
        let Some(failure) = &self.failure else {
            return Ok(());
        };
        if std::time::Instant::now() < self.not_before {
            return Err(failure.clone());
        }
        match guarded(|| recover(store, inner)) {
            Ok(()) => {
                tracing::warn!("the state store recovered; writes are accepted again");
                self.failure = None;
                self.backoff = RECOVERY_BACKOFF.0;
                *inner
                    .store_failure
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                Ok(())
            }
            Err(e) => {
                self.failed(inner, &e);
                Err(e)
            }
        }
    }
}

/// Reopens the store and makes what it holds equal the published state: every write that
/// was acknowledged is there, and none that was refused (a failed commit may have reached
/// the disk after all).
fn recover(store: &dyn Store, inner: &Inner) -> Result<(), String> {
    store
        .recover()
        .map_err(|e| format!("cannot reopen the store: {e}"))?;
    let repair = differences(store, inner)?;
    if repair.batch.is_empty() {
        return Ok(());
    }
    if repair.missing + repair.changed > 0 {
        tracing::error!(
            missing = repair.missing,
            changed = repair.changed,
            "acknowledged records were missing or different on disk; rewriting them"
        );
    }
    if repair.extra > 0 {
        tracing::warn!(
            records = repair.extra,
            "a refused commit had reached the disk; removing its records"
        );
    }
    store
        .commit(&repair.batch)
        .map_err(|e| format!("cannot repair the store: {e}"))?;
    if !differences(store, inner)?.batch.is_empty() {
        return Err("the store differs from the acknowledged state even after a repair".into());
    }
    Ok(())
}

/// What makes the store's records equal the published state.
#[derive(Debug, Default)]
struct Repair {
    batch: Vec<Mutation>,
    /// Records on disk that the published state does not have.
    extra: usize,
    /// Published records the disk does not have.
    missing: usize,
    /// Records that differ.
    changed: usize,
}

fn differences(store: &dyn Store, inner: &Inner) -> Result<Repair, String> {
    let disk = store
        .load()
        .map_err(|e| format!("cannot read the store back: {e}"))?;
    let mut expected: std::collections::BTreeMap<String, Record> = {
        let published = inner
            .published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        records_of(&published)
            .into_iter()
            .map(|r| (r.store_key(), r))
            .collect()
    };
    let mut repair = Repair::default();
    for (key, bytes) in disk {
        match expected.remove(&key) {
            None => {
                repair.extra += 1;
                repair.batch.push(Mutation::Delete { key });
            }
            Some(record) if same_record(&bytes, &record) => {}
            Some(record) => {
                repair.changed += 1;
                repair
                    .batch
                    .push(to_mutation(&Change::Put(record)).map_err(|e| e.to_string())?);
            }
        }
    }
    for record in expected.into_values() {
        repair.missing += 1;
        repair
            .batch
            .push(to_mutation(&Change::Put(record)).map_err(|e| e.to_string())?);
    }
    Ok(repair)
}

/// Whether stored bytes hold `record`: the same encoding (written by this process), or
/// decoding to it (loaded at start, when a float's text may not re-encode identically).
pub(super) fn same_record(bytes: &[u8], record: &Record) -> bool {
    serde_json::to_vec(record).is_ok_and(|b| b == bytes)
        || serde_json::from_slice::<Record>(bytes).is_ok_and(|r| r == *record)
}

/// Every record of `state`, as the store holds them. The destructuring has no `..` on
/// purpose: a new kind of record (a new field of [`State`]) must be added here, or recovery
/// would delete its records from disk as if they had been refused.
pub(super) fn records_of(state: &State) -> Vec<Record> {
    let State {
        clusters,
        task_definitions,
        instances,
        tasks,
        services,
        settings,
        meta,
        discovery,
        elb,
        capacity_providers,
        service_history,
        derived: _,
    } = state;
    let mut out: Vec<Record> = Vec::new();
    out.extend(clusters.values().cloned().map(Record::Cluster));
    out.extend(
        task_definitions
            .values()
            .cloned()
            .map(Record::TaskDefinition),
    );
    out.extend(instances.values().cloned().map(Record::Instance));
    out.extend(tasks.values().map(|t| Record::Task(TaskRecord::clone(t))));
    out.extend(services.values().cloned().map(Record::Service));
    out.extend(settings.values().cloned().map(Record::Setting));
    out.extend(discovery.records().map(Record::Discovery));
    out.extend(
        elb.load_balancers
            .values()
            .cloned()
            .map(Record::LoadBalancer),
    );
    out.extend(elb.target_groups.values().cloned().map(Record::TargetGroup));
    out.extend(elb.listeners.values().cloned().map(Record::Listener));
    out.extend(elb.rules.values().cloned().map(Record::ListenerRule));
    out.extend(
        capacity_providers
            .values()
            .cloned()
            .map(Record::CapacityProvider),
    );
    out.extend(
        service_history
            .deployments
            .values()
            .cloned()
            .map(Record::ServiceDeployment),
    );
    out.extend(
        service_history
            .revisions
            .values()
            .cloned()
            .map(Record::ServiceRevision),
    );
    if *meta != MetaRecord::default() {
        out.push(Record::Meta(meta.clone()));
    }
    out
}
