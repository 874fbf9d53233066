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
//!
//! ## Several servers on one store (etcd)
//! Each server runs this writer against the shared store. Its commits are fenced on the
//! last commit its state holds ([`Store::commit`] answers `Conflict` when another server
//! committed since). The store's follower delivers every commit; the writer applies the
//! other servers' ones to both states and publishes them on the same change feed (so long
//! polls and controllers here wake for them), skipping its own. A batch that was overtaken
//! waits until the follower has delivered the commit that overtook it, then runs its ops
//! again on the caught-up state (ops are `FnMut` and pure, so a re-run decides afresh: a
//! revision number or a placement is never decided on a stale state, and nothing is
//! written twice). After two misses in a row it takes the store's turn
//! ([`Store::take_turn`]), which holds every other writer off until it has committed. A
//! failed call on a shared store does not start the recovery above (it would make the
//! store equal this server's state, undoing the others' commits): its batch gets
//! `ServerException` (the outcome is unknown, as after any 500), and the follower brings
//! whatever did land.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use model::arn::ResourceType;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use store::{Followed, Mutation, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

mod follow;
mod recovery;

use follow::follow;
use recovery::{Recovery, guarded, unwritable};

use crate::error::EcsError;
use crate::state::{Change, MemberKey, MetaRecord, Record, Scope, State};

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

/// What a write operation returns: its answer and the changes it decided; `E` is the
/// error type of the operation's API (ECS's unless given).
pub type Written<T, E = EcsError> = Result<(T, Vec<Change>), E>;

/// A queued write: run (again, after a conflict with another server) against the
/// working state, then answered once with the commit's outcome.
trait PendingWrite: Send {
    /// Runs the operation; remembers its answer and returns its changes.
    fn run(&mut self, state: &State, ctx: &mut Ctx) -> Vec<Change>;
    /// Sends the answer of the last run, or the commit's error.
    fn reply(self: Box<Self>, committed: Result<(), EcsError>);
}

/// The one [`PendingWrite`]: an operation, its last answer, and where to send it.
struct TypedWrite<T, F> {
    op: F,
    answer: Option<Result<T, EcsError>>,
    tx: oneshot::Sender<Result<T, EcsError>>,
}

impl<T, F> PendingWrite for TypedWrite<T, F>
where
    T: Send,
    F: FnMut(&State, &mut Ctx) -> Written<T> + Send,
{
    fn run(&mut self, state: &State, ctx: &mut Ctx) -> Vec<Change> {
        match (self.op)(state, ctx) {
            Ok((out, changes)) => {
                self.answer = Some(Ok(out));
                changes
            }
            Err(e) => {
                self.answer = Some(Err(e));
                Vec::new()
            }
        }
    }

    fn reply(self: Box<Self>, committed: Result<(), EcsError>) {
        let answer = match self.answer {
            // An op that failed changed nothing: its own error, whatever the commit did.
            Some(Err(e)) => Err(e),
            Some(Ok(out)) => committed.map(|()| out),
            None => Err(EcsError::Server("the write operation did not run".into())),
        };
        let _ = self.tx.send(answer);
    }
}

/// A write with the scope it runs in.
struct Pending {
    scope: Scope,
    write: Box<dyn PendingWrite>,
}

enum Job {
    Op(Pending),
    Reset(oneshot::Sender<Result<(), EcsError>>),
    // Try to recover a failed store now (`ControlPlane::store_health`).
    Probe(oneshot::Sender<Result<(), String>>),
    // Commits of other servers are waiting in the follower's channel (shared stores).
    Followed,
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
    /// This server's part among several (`leader`, `follower of …`); `None` alone.
    role: std::sync::Mutex<Option<String>>,
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
        // Two servers opening one new shared store at once may race to write the paging
        // secret: the loser reads again.
        let mut attempt = 0;
        let (revision, state) = loop {
            let revision = store.revision().map_err(server_error)?;
            let mut state = load_state(store.as_ref())?;
            store.caught_up(revision);
            if !state.meta.paging_secret.is_empty() {
                break (revision, state);
            }
            let change = Change::Put(Record::Meta(fresh_meta()));
            match store.commit(&[to_mutation(&change)?]) {
                Ok(revision) => {
                    state.apply(&change);
                    break (revision, state);
                }
                Err(StoreError::Conflict { .. }) if attempt < 3 => attempt += 1,
                Err(e) => return Err(server_error(e)),
            }
        };
        let (tx, rx) = mpsc::channel(8192);
        let followed = follow(store.as_ref(), revision, tx.clone())?;
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
            role: std::sync::Mutex::new(None),
            clock: clock.clone(),
        });
        let weak = Arc::downgrade(&inner);
        let writer = Writer {
            store,
            rx,
            deferred: std::collections::VecDeque::new(),
            followed,
            applied: revision,
            working: state,
            clock,
            seeds: StdRng::from_os_rng(),
            recovery: Recovery::new(),
        };
        std::thread::Builder::new()
            .name("flotilla-writer".into())
            .spawn(move || writer_loop(writer, weak))
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

    /// Merges what other servers heard from agents (their presence records): an
    /// instance counts as heard from at the latest time any server heard it.
    pub fn merge_heard(&self, heard: impl IntoIterator<Item = (MemberKey, f64)>) {
        let mut heartbeats = self
            .inner
            .heartbeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, at) in heard {
            let seen = heartbeats.entry(key).or_insert(at);
            *seen = seen.max(at);
        }
    }

    /// Sets this server's role among several servers, shown by `GET /healthz`.
    pub fn set_role(&self, role: Option<String>) {
        *self
            .inner
            .role
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = role;
    }

    /// This server's role among several servers (`None` when it is the only one).
    pub fn role(&self) -> Option<String> {
        self.inner
            .role
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
    ///
    /// `op` may run more than once: on a store shared by several servers, a commit that
    /// another server's commit overtook is run again against the state that includes it
    /// (so `op` must be a function of its inputs, as every operation is).
    pub async fn write<T: Send + 'static>(
        &self,
        scope: Scope,
        op: impl FnMut(&State, &mut Ctx) -> Written<T> + Send + 'static,
    ) -> Result<T, EcsError> {
        let (tx, rx) = oneshot::channel::<Result<T, EcsError>>();
        let write = Box::new(TypedWrite {
            op,
            answer: None,
            tx,
        });
        self.inner
            .jobs
            .send(Job::Op(Pending { scope, write }))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// [`write`](Self::write) for an operation with its own error type `E` (Cloud Map's,
    /// CloudWatch's, ELBv2's, SSM's): `op`'s refusal travels inside the writer's answer
    /// with no changes (nothing is committed for it), and an engine failure becomes an `E`.
    pub async fn write_as<T, E>(
        &self,
        scope: Scope,
        mut op: impl FnMut(&State, &mut Ctx) -> Written<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<EcsError> + Send + 'static,
    {
        self.write(scope, move |state, ctx| match op(state, ctx) {
            Ok((resp, changes)) => Ok((Ok(resp), changes)),
            Err(e) => Ok((Err(e), Vec::new())),
        })
        .await
        .map_err(E::from)?
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

/// How long a batch that other servers' commits keep overtaking is tried before its
/// writes are refused (with the turn it is overtaken at most while another holds it).
const OVERTAKEN_FOR: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a writer waits for the follower to deliver the commits that overtook it.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// Commits of other servers waiting to be applied (bounded: the follower waits).
const FOLLOWED_QUEUE: usize = 1024;

/// The writer thread's own state.
struct Writer {
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Job>,
    /// Jobs taken from `rx` while catching up, run next.
    deferred: std::collections::VecDeque<Job>,
    /// Other servers' commits (shared stores only).
    followed: Option<std::sync::mpsc::Receiver<Followed>>,
    /// The revision of the last commit `working` holds.
    applied: u64,
    working: State,
    clock: Clock,
    seeds: StdRng,
    recovery: Recovery,
}

fn writer_loop(mut w: Writer, inner: std::sync::Weak<Inner>) {
    loop {
        let first = match w.deferred.pop_front() {
            Some(job) => job,
            None => match w.rx.blocking_recv() {
                Some(job) => job,
                None => return,
            },
        };
        let Some(inner) = inner.upgrade() else { return };
        // Other servers' commits come first: they happened before anything queued here.
        w.apply_followed(&inner);
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match w.deferred.pop_front().or_else(|| w.rx.try_recv().ok()) {
                Some(job) => jobs.push(job),
                None => break,
            }
        }
        let mut ops: Vec<Pending> = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Op(op) => ops.push(op),
                Job::Followed => w.apply_followed(&inner),
                Job::Reset(done) => {
                    // Commit what came before, then wipe.
                    w.run_and_commit(&inner, std::mem::take(&mut ops));
                    let wiped = wipe(&*w.store, &inner, &mut w.working, &mut w.recovery);
                    let _ = done.send(wiped);
                }
                Job::Probe(done) => {
                    let _ = done.send(w.recovery.ready(&*w.store, &inner));
                }
            }
        }
        w.run_and_commit(&inner, ops);
    }
}

impl Writer {
    /// Runs `ops` against the working state and commits their changes as one batch;
    /// when another server's commit overtook it, catches up and runs them again.
    fn run_and_commit(&mut self, inner: &Inner, mut ops: Vec<Pending>) {
        if ops.is_empty() {
            return;
        }
        let give_up = std::time::Instant::now() + OVERTAKEN_FOR;
        let mut overtaken = 0;
        let mut turn = false;
        let outcome = loop {
            let now = (self.clock)();
            let mut changes: Vec<Change> = Vec::new();
            let mut ran: Vec<Pending> = Vec::with_capacity(ops.len());
            for mut op in ops {
                let mut ctx = Ctx::new(op.scope.clone(), now, self.seeds.next_u64());
                // An op that panics (a bug) loses its own answer (its caller gets an
                // error), not the writer: ops only read the working copy.
                let working = &self.working;
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    op.write.run(working, &mut ctx)
                }));
                let Ok(op_changes) = result else {
                    tracing::error!("a write operation panicked; it was refused");
                    op.write
                        .reply(Err(EcsError::Server("the write operation failed".into())));
                    continue;
                };
                for c in &op_changes {
                    self.working.apply(c);
                }
                changes.extend(op_changes);
                ran.push(op);
            }
            ops = ran;
            let shared = self.followed.is_some();
            match commit(
                &*self.store,
                inner,
                &mut self.working,
                changes,
                &mut self.recovery,
                shared,
            ) {
                Ok(revision) => {
                    self.applied = self.applied.max(revision);
                    break Ok(());
                }
                Err(Committed::Failed(e)) => {
                    tracing::error!(error = %e, "commit failed; the batch was refused");
                    break Err(e);
                }
                Err(Committed::Overtaken { found }) => {
                    overtaken += 1;
                    if let Err(e) = self.catch_up(inner, found) {
                        break Err(e);
                    }
                    if std::time::Instant::now() > give_up {
                        break Err(EcsError::Server(format!(
                            "other servers' writes overtook this one for {OVERTAKEN_FOR:?}; retry"
                        )));
                    }
                    // Overtaken again and again (the others are busy too): take the turn,
                    // which holds every other writer off until this batch is in.
                    if overtaken >= 2 && !turn {
                        match self.store.take_turn() {
                            Ok(Some(revision)) => {
                                turn = true;
                                if let Err(e) = self.catch_up(inner, revision) {
                                    break Err(e);
                                }
                            }
                            // Another writer has it: let it finish.
                            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(
                                1 + self.seeds.next_u64() % 4,
                            )),
                            Err(e) => break Err(server_error(e)),
                        }
                    }
                }
            }
        };
        if turn {
            self.store.release_turn();
        }
        reply_all(ops, outcome);
    }
}

fn reply_all(ops: Vec<Pending>, result: Result<(), EcsError>) {
    for op in ops {
        op.write.reply(result.clone());
    }
}

/// Makes `changes` (already applied to `working`) visible: the published state, the
/// counter and the change feed.
fn publish(inner: &Inner, working: &State, changes: Vec<Change>) {
    if changes.is_empty() {
        return;
    }
    let mut published = inner
        .published
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Shares what the working state holds: one copy of each record between them.
    for c in &changes {
        published.apply_shared(c, working);
    }
    drop(published);
    inner.changes.send_modify(|n| *n += 1);
    // Nobody listening is fine (no controller in unit tests).
    let _ = inner.changed.send(Arc::new(changes));
}

/// Why a batch was not committed.
enum Committed {
    /// Another server committed first (shared stores): catch up to `found`, run again.
    Overtaken { found: u64 },
    /// The batch is refused with this error.
    Failed(EcsError),
}

/// Commits `changes` (already applied to `working`) and publishes them; on an error,
/// rebuilds `working` from the published state. On a `shared` store (several servers) a
/// failed call does not mark the store failed: its recovery would make the store equal to
/// this server's state, undoing the others' commits; the follower brings whatever landed.
fn commit(
    store: &dyn Store,
    inner: &Inner,
    working: &mut State,
    changes: Vec<Change>,
    recovery: &mut Recovery,
    shared: bool,
) -> Result<u64, Committed> {
    if changes.is_empty() {
        return Ok(0);
    }
    let durable = changes
        .iter()
        .map(to_mutation)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Committed::Failed)
        .and_then(|batch| {
            recovery
                .ready(store, inner)
                .map_err(|e| Committed::Failed(unwritable(e)))?;
            let failed = |recovery: &mut Recovery, e: String| {
                if !shared {
                    recovery.failed(inner, &e);
                }
                Committed::Failed(server_error(e))
            };
            match guarded(|| Ok(store.commit(&batch))) {
                Ok(Ok(revision)) => Ok(revision),
                Ok(Err(StoreError::Conflict { found, .. })) if shared => {
                    Err(Committed::Overtaken { found })
                }
                Ok(Err(e)) => Err(failed(recovery, e.to_string())),
                Err(e) => Err(failed(recovery, e)),
            }
        });
    match durable {
        Ok(revision) => {
            publish(inner, working, changes);
            Ok(revision)
        }
        Err(e) => {
            *working = inner
                .published
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
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

#[cfg(test)]
mod record_codec_tests {
    /// Timestamps are f64 seconds; a restart reloads them from their stored JSON, and an
    /// answer must not change by a last digit across it (serde_json's `float_roundtrip`).
    #[test]
    fn timestamps_survive_the_stored_json_exactly() {
        let mut at = 1_796_502_723.723_243_7_f64;
        for _ in 0..20_000 {
            let bytes = serde_json::to_vec(&at).unwrap();
            let back: f64 = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back.to_bits(), at.to_bits(), "{at} came back as {back}");
            at += 0.000_123_457;
        }
    }
}
