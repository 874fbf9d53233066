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
//! An op that fails adds no changes and its error is delivered with the batch. If the
//! commit fails, every op of the batch gets a `ServerException` and the working copy is
//! rebuilt from the published one, so memory never holds what disk does not.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use model::arn::ResourceType;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use store::{Mutation, Store};
use tokio::sync::{mpsc, oneshot};

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
    /// When each instance's agent was last heard from (epoch seconds). Kept in memory
    /// only: after a restart every instance counts as heard from at start.
    heartbeats: std::sync::Mutex<HashMap<MemberKey, f64>>,
    /// Log requests on their way to agents and back (in memory only).
    log_broker: crate::log_broker::LogBroker,
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
            heartbeats: std::sync::Mutex::new(heartbeats),
            log_broker: crate::log_broker::LogBroker::default(),
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

    /// The broker that carries log requests to agents over their polls.
    pub fn log_broker(&self) -> &crate::log_broker::LogBroker {
        &self.inner.log_broker
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
                    let (op_changes, reply) = op(&working, &mut ctx);
                    for c in &op_changes {
                        working.apply(c);
                    }
                    changes.extend(op_changes);
                    replies.push(reply);
                }
                Job::Reset(done) => {
                    // Commit what came before, then wipe.
                    let result =
                        commit(&*store, &inner, &mut working, std::mem::take(&mut changes));
                    for r in replies.drain(..) {
                        r(result.clone());
                    }
                    let wiped = wipe(&*store, &inner, &mut working);
                    let _ = done.send(wiped);
                }
            }
        }
        let result = commit(&*store, &inner, &mut working, changes);
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
) -> Result<(), EcsError> {
    if changes.is_empty() {
        return Ok(());
    }
    let durable = changes
        .iter()
        .map(to_mutation)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|batch| store.commit(&batch).map_err(server_error));
    let mut published = inner
        .published
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match durable {
        Ok(_) => {
            for c in &changes {
                published.apply(c);
            }
            drop(published);
            inner.changes.send_modify(|n| *n += 1);
            Ok(())
        }
        Err(e) => {
            *working = published.clone();
            Err(e)
        }
    }
}

fn wipe(store: &dyn Store, inner: &Inner, working: &mut State) -> Result<(), EcsError> {
    store.wipe().map_err(server_error)?;
    let meta = working.meta.clone();
    *working = State {
        meta: meta.clone(),
        ..State::default()
    };
    store
        .commit(&[to_mutation(&Change::Put(Record::Meta(meta)))?])
        .map_err(server_error)?;
    let mut published = inner
        .published
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *published = working.clone();
    drop(published);
    inner.changes.send_modify(|n| *n += 1);
    Ok(())
}
