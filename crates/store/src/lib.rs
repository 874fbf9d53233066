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
//! Backends: [`RedbStore`] (the embedded default, one file, ACID with fsync on commit)
//! and [`MemStore`] (tests). An etcd backend for an HA control plane would implement the
//! same trait.
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

mod mem;
mod redb_store;

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
}

/// A durable key/value record store with atomic batches.
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
        assert!(store.commit(&[put("d", "5")]).unwrap() > r2);
        store.wipe().unwrap();
        assert!(store.load().unwrap().is_empty());
    }
}
