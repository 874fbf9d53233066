//! # store — where the control plane's state lives on disk
//!
//! ## Background
//! The control plane keeps its whole state in memory (it is small: records of clusters,
//! task definitions, instances, tasks, services) and needs a durable log of changes so
//! that a `kill -9` at any moment loses nothing it acknowledged.
//!
//! ## Design
//! A deliberately small [`Store`] trait: load every record at start, commit a batch of
//! [`Mutation`]s atomically (all or nothing, fsync'd before returning), wipe everything.
//! Records are opaque bytes under string keys; the control plane owns their encoding.
//! One writer calls [`Store::commit`], so a batch can carry the changes of many API
//! requests (group commit) and still cost a single fsync.
//!
//! Backends: [`RedbStore`] (the embedded default, one file, ACID with fsync on commit),
//! [`EtcdStore`] (an etcd v3 cluster, the first step towards several servers sharing one
//! state: `flotilla server --store etcd://…`) and [`MemStore`] (tests). What every backend
//! must guarantee is the contract on [`Store`]; the `contract` test module checks it
//! against each one. [`StoreLocation`] names a backend on a command line.
//!
//! ## Failures
//! A failed [`Store::commit`] may leave the backend unusable: redb refuses every later
//! write transaction after an I/O error (a full disk, say) until the database is closed and
//! opened again. [`Store::recover`] does that and proves that a write works again; the
//! caller then checks the records against what it acknowledged, because a commit that
//! reported an error may still have reached the disk (redb's `WriteTransaction::commit`
//! documents this), and must be undone if its writer was told it failed.
//!
//! ## Limitations
//! Loading reads every record; that is fine for the tens of thousands of records one
//! control plane holds, not for millions.

mod etcd_follow;
pub mod etcd_process;
mod etcd_store;
mod location;
mod mem;
mod redb_store;

pub use etcd_follow::{Election, Leadership};
pub use etcd_store::{EtcdOptions, EtcdStore};
pub use location::StoreLocation;
pub use mem::MemStore;
pub use redb_store::RedbStore;

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Insert or overwrite the record at `key`.
    Put {
        /// Record key.
        key: String,
        /// Encoded record.
        value: Vec<u8>,
    },
    /// Remove the record at `key` (no error if absent).
    Delete {
        /// Record key.
        key: String,
    },
}

/// What a follower of a shared store ([`Store::follow`]) is told, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// One commit (any writer's, this process's own included): its revision and the
    /// changes it made, as the batch [`Store::commit`] applied (later change of a key
    /// wins; a `wipe` shows as a delete of every record).
    Batch {
        /// The commit's revision (what [`Store::commit`] returned to its writer).
        revision: u64,
        /// Its changes to the records.
        mutations: Vec<Mutation>,
        /// What each deleted record held before, where the backend knows it (so that the
        /// follower need not search its state for the record a key names).
        deleted: Vec<(String, Vec<u8>)>,
    },
    /// The history since the follower's last revision is gone (etcd compacted it): every
    /// record as of the commit at `revision`, to replace what the follower holds.
    Snapshot {
        /// The revision of the last commit the records include.
        revision: u64,
        /// Every record, in key order.
        records: Vec<(String, Vec<u8>)>,
    },
}

/// Errors from a store backend. Every variant means the operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the store at {path}: {cause}")]
    Open {
        /// File path.
        path: String,
        /// Cause (in the message, so not also the error's `source()`: printed with its
        /// chain, the cause would appear twice).
        cause: Box<redb::DatabaseError>,
    },
    /// A read or write transaction failed; nothing was changed (but see
    /// [`Store::commit`] on a failed commit).
    #[error("store transaction failed: {0}")]
    Transaction(String),
    /// The store is closed after a failure that [`Store::recover`] could not repair yet.
    #[error("the store is closed after a failure and has not recovered yet")]
    Closed,
    /// The etcd cluster could not be reached when the store was opened.
    #[error("cannot connect to etcd at {endpoints}: {cause}")]
    Connect {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// Why not.
        cause: String,
    },
    /// Another writer committed to the shared store since this one last wrote (or opened
    /// it): this writer's view of the records is stale, so its batch was refused whole.
    /// Nothing was changed; the store refuses every later write of this handle too, since
    /// its caller's in-memory state no longer matches the store (open it again and reload).
    #[error(
        "another writer committed to the store (its last commit is at revision {found}, this \
         writer expected {expected}); the batch was refused: reload the state from the store"
    )]
    Conflict {
        /// The revision of the last commit this writer knew of.
        expected: u64,
        /// The revision of the last commit in the store.
        found: u64,
    },
    /// The batch exceeds what one transaction of the backend may hold; it was not sent
    /// (splitting it would break its atomicity).
    #[error(
        "the batch is too large for one store transaction: {ops} operations and about \
         {bytes} bytes, the limits are {max_ops} operations and {max_bytes} bytes"
    )]
    BatchTooLarge {
        /// Operations the batch needs (after merging changes to the same key).
        ops: usize,
        /// Estimated size of the request.
        bytes: usize,
        /// The backend's limit on operations.
        max_ops: usize,
        /// The backend's limit on request bytes.
        max_bytes: usize,
    },
}

/// A durable key/value record store with atomic batches.
///
/// # The storage contract
/// What every backend guarantees; the control plane's writer (`controlplane::engine`)
/// relies on each point, and the `contract` tests check them against every backend.
///
/// - **Records.** A record is opaque bytes under a UTF-8 string key. Keys are compared
///   as bytes; [`Store::load`] returns them in that order, each once.
/// - **Atomic batches.** [`Store::commit`] applies its whole batch or none of it, as if its
///   mutations ran one after another in order: a later mutation of a key in the same batch
///   wins over an earlier one. No reader (this process or another) ever sees part of a
///   batch.
/// - **Durable before `Ok`.** When `commit` (or `wipe`) returns `Ok`, the change survives
///   a `kill -9` of this process and a power cut of the machine (redb: fsync'd; etcd:
///   committed by a quorum of the cluster, each member having fsync'd its log).
/// - **Revisions.** Each successful `commit` returns a revision strictly greater than
///   every revision returned before on this store; [`Store::revision`] returns the last
///   one (0 for a store never committed to). Revisions are not consecutive in general
///   (etcd's count every change in the cluster); compare them, do not count with them.
///   `wipe` does not lower the revision.
/// - **Load.** [`Store::load`] returns exactly the records of the last successful commit
///   (or wipe) that completed before it was called, as one consistent snapshot; never a
///   mix of two commits.
/// - **Fenced writers.** A backend shared by several processes (etcd) must refuse a
///   commit from a writer whose view is stale — another writer committed since the last
///   revision this handle committed, was opened at, or was told it caught up to
///   ([`Store::caught_up`]) — with [`StoreError::Conflict`], applying nothing. Commits are
///   therefore linearizable: each was made against the state of the one before it.
/// - **Following.** A shared backend delivers every commit to [`Store::follow`]'s sink,
///   whole and in revision order (or, when the history was compacted, a snapshot), so
///   that each process keeps its in-memory copy current; a single-process backend answers
///   `false` and its one writer is the only source of change.
/// - **Limits.** A backend may refuse a batch larger than one of its transactions can
///   hold with [`StoreError::BatchTooLarge`], applying nothing; it never splits a batch.
/// - **Errors.** An error from `load` or `revision` changed nothing. An error from
///   `commit` or `wipe` other than `Conflict` and `BatchTooLarge` leaves the outcome
///   unknown: the batch was applied fully or not at all, but which one is not known (it
///   may have reached the disk, or etcd may have committed it after the call timed out).
///   Every call is bounded in time: a backend that cannot answer (etcd without quorum)
///   returns an error rather than blocking the writer for ever. After an error the store
///   may refuse every later write until [`Store::recover`] succeeds; the caller then
///   reads the records back and makes them equal to what it acknowledged.
pub trait Store: Send + Sync + 'static {
    /// Every record, in key order.
    fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Applies `batch` atomically and durably; returns the new revision (one per commit).
    ///
    /// On an error the batch is applied either fully or not at all, but which one is not
    /// known: it may have reached the disk. The store may refuse every later write until
    /// [`Store::recover`] succeeds.
    fn commit(&self, batch: &[Mutation]) -> Result<u64, StoreError>;
    /// The revision of the last commit (0 for a new store).
    fn revision(&self) -> Result<u64, StoreError>;
    /// Removes every record (used by `POST /admin/reset`).
    fn wipe(&self) -> Result<(), StoreError>;
    /// After a failure: closes and reopens the backend (repairing what a failed commit left
    /// behind) and proves with a durable scratch write, outside the records, that it can
    /// write again. An error means it still cannot; call again later. The records are
    /// whatever the disk holds: the caller compares them with what it acknowledged.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Shared backends: starts delivering every commit after revision `after` to `sink`,
    /// in revision order, for as long as `sink` is open (reconnecting and resuming after
    /// errors, sending a [`Followed::Snapshot`] when the history is compacted). Returns
    /// `false`, and does nothing, for a backend that only this process writes.
    fn follow(&self, after: u64, sink: tokio::sync::mpsc::Sender<Followed>) -> bool {
        let _ = (after, sink);
        false
    }
    /// Shared backends, for a writer that other writers keep overtaking: takes the turn,
    /// so that until [`Store::release_turn`] every other writer's commit is refused with
    /// `Conflict`. `Ok(Some(revision))`: taken; the caller catches up to the commit at
    /// `revision` and then commits without being overtaken. `Ok(None)`: another writer
    /// holds it (try again shortly). A backend with one writer never needs it.
    fn take_turn(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// Gives the turn back (no-op when not held).
    fn release_turn(&self) {}
    /// The caller's in-memory state now holds every commit up to `revision` (it applied
    /// what [`Store::follow`] delivered), so its next commit is fenced on that revision.
    fn caught_up(&self, revision: u64) {
        let _ = revision;
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every backend must have, run against each one.
    use super::{Mutation, Store};

    pub fn put(k: &str, v: &str) -> Mutation {
        Mutation::Put {
            key: k.to_owned(),
            value: v.as_bytes().to_vec(),
        }
    }

    pub fn check(store: &dyn Store) {
        assert_eq!(store.revision().unwrap(), 0);
        assert!(store.load().unwrap().is_empty());
        let r1 = store.commit(&[put("b", "2"), put("a", "1")]).unwrap();
        let r2 = store
            .commit(&[
                put("a", "3"),
                Mutation::Delete { key: "b".into() },
                put("c", "4"),
            ])
            .unwrap();
        assert!(r2 > r1);
        assert_eq!(store.revision().unwrap(), r2);
        let all = store.load().unwrap();
        assert_eq!(
            all,
            vec![
                ("a".to_owned(), b"3".to_vec()),
                ("c".to_owned(), b"4".to_vec())
            ]
        );
        // Recovering a healthy store changes nothing, and it still commits.
        store.recover().unwrap();
        assert_eq!(store.load().unwrap(), all);
        assert_eq!(store.revision().unwrap(), r2);
        let r3 = store.commit(&[put("d", "5")]).unwrap();
        assert!(r3 > r2);
        // Within a batch, a later change of a key wins over an earlier one; deleting an
        // absent key is no error.
        let r4 = store
            .commit(&[
                put("e", "old"),
                put("e", "new"),
                put("d", "gone"),
                Mutation::Delete { key: "d".into() },
                Mutation::Delete {
                    key: "never".into(),
                },
                Mutation::Delete { key: "f".into() },
                put("f", "back"),
            ])
            .unwrap();
        assert!(r4 > r3);
        assert_eq!(
            store.load().unwrap(),
            vec![
                ("a".to_owned(), b"3".to_vec()),
                ("c".to_owned(), b"4".to_vec()),
                ("e".to_owned(), b"new".to_vec()),
                ("f".to_owned(), b"back".to_vec()),
            ]
        );
        // Keys come back in byte order, values byte for byte.
        let binary: Vec<u8> = (0..=255).collect();
        store
            .commit(&[
                Mutation::Put {
                    key: "k/é".into(),
                    value: binary.clone(),
                },
                put("k0", ""),
                put("k/a", "x"),
            ])
            .unwrap();
        let keys: Vec<String> = store.load().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "c", "e", "f", "k/a", "k/é", "k0"]);
        let loaded = store.load().unwrap();
        assert_eq!(loaded[5].1, binary);
        assert!(loaded[6].1.is_empty());
        let before_wipe = store.revision().unwrap();
        store.wipe().unwrap();
        assert!(store.load().unwrap().is_empty());
        assert!(store.revision().unwrap() >= before_wipe);
        let after = store.commit(&[put("z", "1")]).unwrap();
        assert!(after > before_wipe);
        assert_eq!(store.load().unwrap(), vec![("z".to_owned(), b"1".to_vec())]);
    }
}
