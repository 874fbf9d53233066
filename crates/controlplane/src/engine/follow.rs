//! The writer on a store several servers share: following their commits.
//!
//! See the parent module's "Several servers on one store": the follower thread that
//! queues what the store's watch delivers, and how the writer applies it.

use std::collections::HashMap;

use store::{Followed, Mutation, Store};
use tokio::sync::mpsc;

use super::recovery::{records_of, same_record};
use super::{CATCH_UP_WAIT, FOLLOWED_QUEUE, Inner, Job, Writer, publish};
use crate::error::EcsError;
use crate::state::{Change, Record, State};

/// On a shared store, starts following the other servers' commits after `revision`: the
/// store's follower feeds a thread that queues them for the writer and wakes it. `None`
/// for a store only this process writes.
pub(super) fn follow(
    store: &dyn Store,
    revision: u64,
    jobs: mpsc::Sender<Job>,
) -> Result<Option<std::sync::mpsc::Receiver<Followed>>, EcsError> {
    let (sink, mut source) = mpsc::channel(FOLLOWED_QUEUE);
    if !store.follow(revision, sink) {
        return Ok(None);
    }
    let (queue, followed) = std::sync::mpsc::sync_channel(FOLLOWED_QUEUE);
    std::thread::Builder::new()
        .name("flotilla-follower".into())
        .spawn(move || {
            while let Some(f) = source.blocking_recv() {
                if queue.send(f).is_err() {
                    return;
                }
                // A full queue means the writer is busy and will look anyway.
                if let Err(mpsc::error::TrySendError::Closed(_)) = jobs.try_send(Job::Followed) {
                    return;
                }
            }
        })
        .map_err(|e| EcsError::Server(format!("cannot start the follower thread: {e}")))?;
    Ok(Some(followed))
}

impl Writer {
    /// Applies the commits the follower delivered, without waiting.
    pub(super) fn apply_followed(&mut self, inner: &Inner) {
        let Some(followed) = &self.followed else {
            return;
        };
        let waiting: Vec<Followed> = followed.try_iter().collect();
        for f in waiting {
            self.apply_one(inner, f);
        }
    }

    /// Waits until the state holds the commit at `revision` (another server's, which
    /// overtook this one), applying what the follower delivers; other jobs wait.
    pub(super) fn catch_up(&mut self, inner: &Inner, revision: u64) -> Result<(), EcsError> {
        let deadline = std::time::Instant::now() + CATCH_UP_WAIT;
        while self.applied < revision {
            let Some(followed) = &self.followed else {
                return Err(EcsError::Server(
                    "the store reports another writer, but this one does not follow it".into(),
                ));
            };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match followed.recv_timeout(left) {
                Ok(f) => self.apply_one(inner, f),
                Err(_) => {
                    return Err(EcsError::Server(format!(
                        "this server is behind the store (at revision {}, the store at {revision}) \
                         and did not catch up within {CATCH_UP_WAIT:?}; retry",
                        self.applied
                    )));
                }
            }
        }
        Ok(())
    }

    /// Applies one delivered commit (or snapshot) to both states and publishes it.
    fn apply_one(&mut self, inner: &Inner, followed: Followed) {
        let (revision, changes) = match followed {
            // Already held: this server's own commit, or one it has applied. A snapshot
            // that old would roll back this server's later commits (which the watch then
            // skips as held), and the state at `applied` includes all it holds anyway: a
            // commit is fenced on the state of the one before it.
            Followed::Batch { revision, .. } | Followed::Snapshot { revision, .. }
                if revision <= self.applied =>
            {
                return;
            }
            Followed::Batch {
                revision,
                mutations,
                deleted,
            } => (
                revision,
                followed_changes(&self.working, mutations, deleted),
            ),
            Followed::Snapshot { revision, records } => {
                (revision, snapshot_changes(&self.working, records))
            }
        };
        for c in &changes {
            self.working.apply(c);
        }
        self.applied = self.applied.max(revision);
        self.store.caught_up(self.applied);
        publish(inner, &self.working, changes);
    }
}

/// Decodes a stored record; a record this version cannot read is reported and skipped.
fn decode(key: &str, bytes: &[u8]) -> Option<Record> {
    match serde_json::from_slice::<Record>(bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(key, error = %e, "another server stored a record this one cannot read; skipped");
            None
        }
    }
}

/// The changes another server's commit made, as records.
fn followed_changes(
    working: &State,
    mutations: Vec<Mutation>,
    deleted: Vec<(String, Vec<u8>)>,
) -> Vec<Change> {
    let mut previous: HashMap<String, Vec<u8>> = deleted.into_iter().collect();
    let mut by_key: Option<HashMap<String, Record>> = None;
    let mut out = Vec::with_capacity(mutations.len());
    for m in mutations {
        match m {
            Mutation::Put { key, value } => out.extend(decode(&key, &value).map(Change::Put)),
            Mutation::Delete { key } => {
                let record = match previous.remove(&key) {
                    Some(bytes) => decode(&key, &bytes),
                    // etcd did not say what was there: find it (every record once per batch).
                    None => by_key
                        .get_or_insert_with(|| {
                            records_of(working)
                                .into_iter()
                                .map(|r| (r.store_key(), r))
                                .collect()
                        })
                        .remove(&key),
                };
                out.extend(record.map(Change::Delete));
            }
        }
    }
    out
}

/// The changes that turn `working` into `records` (after a compaction: a re-list).
fn snapshot_changes(working: &State, records: Vec<(String, Vec<u8>)>) -> Vec<Change> {
    let mut now: std::collections::BTreeMap<String, Vec<u8>> = records.into_iter().collect();
    let mut out = Vec::new();
    for record in records_of(working) {
        match now.remove(&record.store_key()) {
            None => out.push(Change::Delete(record)),
            Some(bytes) if same_record(&bytes, &record) => {}
            Some(bytes) => out.extend(decode(&record.store_key(), &bytes).map(Change::Put)),
        }
    }
    for (key, bytes) in now {
        out.extend(decode(&key, &bytes).map(Change::Put));
    }
    out
}
