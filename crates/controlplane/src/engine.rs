//! The [`ControlPlane`] handle and its single writer thread.
//!
//! ```text
//!  API tasks ──write(op)──► mpsc ──► writer thread ─┬─ run op on working State → Changes
//!                                                   ├─ …more queued ops (same batch)…
//!                                                   ├─ store.commit(all changes)   (1 fsync)
//!                                                   ├─ apply changes to published State
//!                                                   └─ answer every op of the batch
//!  API tasks ──read(f)───► RwLock<published State> (never waits for disk)
//! ```
//!
//! The published state shares every task record with the working one (`Arc`s: see
//! [`State::apply_shared`]), so the two hold each task once, and publishing a change
//! copies only the changed record; each keeps its own derived indexes.
//!
//! An op that fails adds no changes and its error is delivered with the batch. If the
//! commit fails, every op of the batch gets a `ServerException` and the working copy is
//! rebuilt from the published one, so memory never holds what disk does not.
//!
//! A failed commit also marks the store failed (a full disk: redb then refuses every write
//! until it is reopened). From then on every batch, and every
//! [`ControlPlane::store_health`] probe, first tries to recover it, at most once per
//! backoff period: reopen the store, prove it can write, read every record back and make
//! the disk equal the published state — deleting what a refused commit left there after
//! all, restoring anything acknowledged that is missing. Until that succeeds writes are
//! refused with `ServerException` and `store_health` reports why; reads go on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use model::arn::ResourceType;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use store::{Mutation, Store};
use tokio::sync::{mpsc, oneshot};

use crate::error::EcsError;
use crate::state::{Change, MemberKey, MetaRecord, Record, Scope, State, TaskRecord};

/// What a write operation gets besides the state: who asks, the time, and randomness.
#[derive(Debug)]
pub struct Ctx {
    /// Account and region of the request.
    pub scope: Scope,
    /// Epoch seconds at which the writer runs the operation.
    pub now: f64,
    rng: StdRng,
}

impl Ctx {
    /// A context with a seeded RNG (tests pass a fixed seed).
    pub fn new(scope: Scope, now: f64, seed: u64) -> Ctx {
        Ctx {
            scope,
            now,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// `now` in epoch milliseconds (what ELBv2 target records keep).
    pub fn now_ms(&self) -> u64 {
        (self.now.max(0.0) * 1000.0) as u64
    }

    /// A new 32-hex-digit id, the form ECS uses for tasks and container instances.
    pub fn new_id(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    /// A new UUID-shaped id (containers, deployments).
    pub fn new_uuid(&mut self) -> String {
        let h = self.new_id();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    /// The ARN of a resource in the request's scope.
    pub fn arn(&self, kind: ResourceType, resource: impl Into<String>) -> String {
        self.scope.arn(kind, resource)
    }

    /// A random number (placement tie-breaks, jitter).
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }
}

/// What a write operation returns: its answer and the changes it decided.
pub type Written<T> = Result<(T, Vec<Change>), EcsError>;

type Reply = Box<dyn FnOnce(Result<(), EcsError>) + Send>;
type Op = Box<dyn FnOnce(&State, &mut Ctx) -> (Vec<Change>, Reply) + Send>;

enum Job {
    Op { scope: Scope, op: Op },
    Reset(oneshot::Sender<Result<(), EcsError>>),
    // Try to recover a failed store now (`ControlPlane::store_health`).
    Probe(oneshot::Sender<Result<(), String>>),
}

/// Source of "now" in epoch seconds; tests substitute a fixed clock.
pub type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    })
}

struct Inner {
    published: RwLock<State>,
    jobs: mpsc::Sender<Job>,
    /// Counts published batches; watchers wake on every change.
    changes: tokio::sync::watch::Sender<u64>,
    /// Every published batch's changes, for controllers that act on what changed.
    changed: tokio::sync::broadcast::Sender<Arc<Vec<Change>>>,
    /// When each instance's agent was last heard from (epoch seconds). Kept in memory
    /// only: after a restart every instance counts as heard from at start.
    heartbeats: std::sync::Mutex<HashMap<MemberKey, f64>>,
    /// Log requests on their way to agents and back (in memory only).
    node_broker: crate::node_broker::NodeBroker,
    /// Why the store cannot write, while it cannot (set and cleared by the writer).
    store_failure: std::sync::Mutex<Option<String>>,
    clock: Clock,
}

/// A cheap, cloneable handle to the control plane.
#[derive(Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").finish_non_exhaustive()
    }
}

/// Most ops one commit carries.
const MAX_BATCH: usize = 1024;
/// Batches the change feed ([`ControlPlane::watch_changes`]) holds for a slow receiver.
pub const CHANGE_FEED_BATCHES: usize = 4096;

fn server_error(e: impl std::fmt::Display) -> EcsError {
    EcsError::Server(format!("the state store failed: {e}"))
}

fn to_mutation(change: &Change) -> Result<Mutation, EcsError> {
    Ok(match change {
        Change::Put(r) => Mutation::Put {
            key: r.store_key(),
            value: serde_json::to_vec(r).map_err(server_error)?,
        },
        Change::Delete(r) => Mutation::Delete { key: r.store_key() },
    })
}

fn load_state(store: &dyn Store) -> Result<State, EcsError> {
    let mut state = State::default();
    for (key, bytes) in store.load().map_err(server_error)? {
        match serde_json::from_slice::<Record>(&bytes) {
            Ok(record) => state.apply(&Change::Put(record)),
            Err(e) => {
                return Err(EcsError::Server(format!(
                    "stored record {key} is unreadable: {e}"
                )));
            }
        }
    }
    Ok(state)
}

fn fresh_meta() -> MetaRecord {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    MetaRecord {
        paging_secret: hex::encode(secret),
    }
}

impl ControlPlane {
    /// Loads the state from `store` and starts the writer thread.
    pub fn open(store: Arc<dyn Store>) -> Result<ControlPlane, EcsError> {
        ControlPlane::open_with_clock(store, system_clock())
    }

    /// [`ControlPlane::open`] with an explicit clock.
    pub fn open_with_clock(store: Arc<dyn Store>, clock: Clock) -> Result<ControlPlane, EcsError> {
        let mut state = load_state(store.as_ref())?;
        if state.meta.paging_secret.is_empty() {
            let change = Change::Put(Record::Meta(fresh_meta()));
            store
                .commit(&[to_mutation(&change)?])
                .map_err(server_error)?;
            state.apply(&change);
        }
        let (tx, rx) = mpsc::channel(8192);
        let (changes, _) = tokio::sync::watch::channel(0);
        let (changed, _) = tokio::sync::broadcast::channel(CHANGE_FEED_BATCHES);
        let started = clock();
        let heartbeats = state
            .instances
            .keys()
            .map(|k| (k.clone(), started))
            .collect();
        let inner = Arc::new(Inner {
            published: RwLock::new(state.clone()),
            jobs: tx,
            changes,
            changed,
            heartbeats: std::sync::Mutex::new(heartbeats),
            node_broker: crate::node_broker::NodeBroker::default(),
            store_failure: std::sync::Mutex::new(None),
            clock: clock.clone(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("flotilla-writer".into())
            .spawn(move || writer_loop(store, weak, rx, state, clock))
            .map_err(|e| EcsError::Server(format!("cannot start the writer thread: {e}")))?;
        Ok(ControlPlane { inner })
    }

    /// Runs a read-only function against the published (durable) state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let guard = self
            .inner
            .published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&guard)
    }

    /// Records that an instance's agent was heard from now.
    pub fn heartbeat(&self, key: MemberKey) {
        let now = (self.inner.clock)();
        self.inner
            .heartbeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, now);
    }

    /// When each instance's agent was last heard from (epoch seconds).
    pub fn last_seen(&self) -> HashMap<MemberKey, f64> {
        self.inner
            .heartbeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The broker that carries log reads and host API calls to agents over their polls.
    pub fn node_broker(&self) -> &crate::node_broker::NodeBroker {
        &self.inner.node_broker
    }

    /// The control plane's clock (epoch seconds).
    pub fn now(&self) -> f64 {
        (self.inner.clock)()
    }

    /// A receiver that is notified after every published change (a counter of
    /// published batches). Controllers and long-polls wait on it instead of polling.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// A feed of every published batch's changes, in commit order. A receiver that falls
    /// more than [`CHANGE_FEED_BATCHES`] batches behind gets `Lagged` and must re-read
    /// the state (controllers then requeue everything).
    pub fn watch_changes(&self) -> tokio::sync::broadcast::Receiver<Arc<Vec<Change>>> {
        self.inner.changed.subscribe()
    }

    /// Queues a write operation; resolves once its changes are durable and published.
    pub async fn write<T: Send + 'static>(
        &self,
        scope: Scope,
        op: impl FnOnce(&State, &mut Ctx) -> Written<T> + Send + 'static,
    ) -> Result<T, EcsError> {
        let (tx, rx) = oneshot::channel::<Result<T, EcsError>>();
        let op: Op = Box::new(move |state, ctx| match op(state, ctx) {
            Ok((out, changes)) => (
                changes,
                Box::new(move |committed: Result<(), EcsError>| {
                    let _ = tx.send(committed.map(|()| out));
                }),
            ),
            Err(e) => (
                Vec::new(),
                Box::new(move |_| {
                    let _ = tx.send(Err(e));
                }),
            ),
        });
        self.inner
            .jobs
            .send(Job::Op { scope, op })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Wipes every record (for `POST /admin/reset`); keeps the paging secret.
    pub async fn reset(&self) -> Result<(), EcsError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .jobs
            .send(Job::Reset(tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

fn stopped() -> EcsError {
    EcsError::Server("the control plane's writer has stopped".into())
}

fn writer_loop(
    store: Arc<dyn Store>,
    inner: std::sync::Weak<Inner>,
    mut rx: mpsc::Receiver<Job>,
    mut working: State,
    clock: Clock,
) {
    let mut seeds = StdRng::from_os_rng();
    let mut recovery = Recovery::new();
    while let Some(first) = rx.blocking_recv() {
        let Some(inner) = inner.upgrade() else { return };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let now = clock();
        let mut changes: Vec<Change> = Vec::new();
        let mut replies: Vec<Reply> = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Op { scope, op } => {
                    let mut ctx = Ctx::new(scope, now, seeds.next_u64());
                    // An op that panics (a bug) loses its own answer (its caller gets an
                    // error), not the writer: ops only read the working copy.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        op(&working, &mut ctx)
                    }));
                    let Ok((op_changes, reply)) = ran else {
                        tracing::error!("a write operation panicked; it was refused");
                        continue;
                    };
                    for c in &op_changes {
                        working.apply(c);
                    }
                    changes.extend(op_changes);
                    replies.push(reply);
                }
                Job::Reset(done) => {
                    // Commit what came before, then wipe.
                    let result = commit(
                        &*store,
                        &inner,
                        &mut working,
                        std::mem::take(&mut changes),
                        &mut recovery,
                    );
                    for r in replies.drain(..) {
                        r(result.clone());
                    }
                    let wiped = wipe(&*store, &inner, &mut working, &mut recovery);
                    let _ = done.send(wiped);
                }
                Job::Probe(done) => {
                    let _ = done.send(recovery.ready(&*store, &inner));
                }
            }
        }
        let result = commit(&*store, &inner, &mut working, changes, &mut recovery);
        if let Err(e) = &result {
            tracing::error!(error = %e, "commit failed; the batch was refused");
        }
        for r in replies {
            r(result.clone());
        }
    }
}

fn commit(
    store: &dyn Store,
    inner: &Inner,
    working: &mut State,
    changes: Vec<Change>,
    recovery: &mut Recovery,
) -> Result<(), EcsError> {
    if changes.is_empty() {
        return Ok(());
    }
    let durable = changes
        .iter()
        .map(to_mutation)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|batch| {
            recovery.ready(store, inner).map_err(unwritable)?;
            guarded(|| store.commit(&batch).map_err(|e| e.to_string())).map_err(|e| {
                recovery.failed(inner, &e);
                server_error(e)
            })
        });
    let mut published = inner
        .published
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match durable {
        Ok(_) => {
            // Shares what the working state holds: one copy of each record between them.
            for c in &changes {
                published.apply_shared(c, working);
            }
            drop(published);
            inner.changes.send_modify(|n| *n += 1);
            // Nobody listening is fine (no controller in unit tests).
            let _ = inner.changed.send(Arc::new(changes));
            Ok(())
        }
        Err(e) => {
            *working = published.clone();
            Err(e)
        }
    }
}

fn wipe(
    store: &dyn Store,
    inner: &Inner,
    working: &mut State,
    recovery: &mut Recovery,
) -> Result<(), EcsError> {
    recovery.ready(store, inner).map_err(unwritable)?;
    let meta = working.meta.clone();
    let meta_put = to_mutation(&Change::Put(Record::Meta(meta.clone())))?;
    // Two store calls: if the second fails the disk holds neither the old state nor the
    // new one, so the store counts as failed and its recovery restores the published state.
    let wiped = guarded(|| {
        store.wipe().map_err(|e| e.to_string())?;
        store.commit(&[meta_put]).map_err(|e| e.to_string())
    });
    if let Err(e) = wiped {
        recovery.failed(inner, &e);
        return Err(server_error(e));
    }
    *working = State {
        meta,
        ..State::default()
    };
    let mut published = inner
        .published
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *published = working.clone();
    drop(published);
    inner.changes.send_modify(|n| *n += 1);
    Ok(())
}

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
fn unwritable(reason: String) -> EcsError {
    EcsError::Server(format!("the state store cannot write: {reason}"))
}

/// Runs a store call; a panic in it (a backend bug on a damaged file) counts as a failed
/// call instead of ending the writer thread.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the store panicked".to_owned()))
}

/// The writer's knowledge of a failed store (see the module docs).
struct Recovery {
    /// Why the store cannot write; `None` while it can.
    failure: Option<String>,
    /// No recovery attempt before this.
    not_before: std::time::Instant,
    /// The wait after the next failed attempt.
    backoff: std::time::Duration,
}

impl Recovery {
    fn new() -> Recovery {
        Recovery {
            failure: None,
            not_before: std::time::Instant::now(),
            backoff: RECOVERY_BACKOFF.0,
        }
    }

    /// Notes a failed store call: writes are refused until a recovery succeeds.
    fn failed(&mut self, inner: &Inner, reason: &str) {
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
    fn ready(&mut self, store: &dyn Store, inner: &Inner) -> Result<(), String> {
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
fn same_record(bytes: &[u8], record: &Record) -> bool {
    serde_json::to_vec(record).is_ok_and(|b| b == bytes)
        || serde_json::from_slice::<Record>(bytes).is_ok_and(|r| r == *record)
}

/// Every record of `state`, as the store holds them. The destructuring has no `..` on
/// purpose: a new kind of record (a new field of [`State`]) must be added here, or recovery
/// would delete its records from disk as if they had been refused.
fn records_of(state: &State) -> Vec<Record> {
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
    if *meta != MetaRecord::default() {
        out.push(Record::Meta(meta.clone()));
    }
    out
}
