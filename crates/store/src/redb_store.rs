//! The embedded default backend: one redb file, one table of records, fsync per commit.
//!
//! After an I/O error (a full disk) redb refuses every later write transaction with
//! "Previous I/O error occurred" until the database is closed and opened again;
//! [`Store::recover`] does that, letting redb repair the file on open, and then proves
//! with a scratch write of [`PROBE_BYTES`] that the disk takes writes again.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{Mutation, Store, StoreError};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Holds the recovery probe's scratch value between its two commits, never longer.
const PROBE: TableDefinition<&str, &[u8]> = TableDefinition::new("probe");
const REVISION: &str = "revision";
/// Size of the scratch value [`Store::recover`] writes (and removes) to prove the disk takes
/// writes again: larger than a typical batch, so that one that fits means the next commit
/// of records is likely to fit too.
pub const PROBE_BYTES: usize = 64 * 1024;

/// A [`Store`] in a single redb file. Commits are durable (fsync) before they return.
pub struct RedbStore {
    path: PathBuf,
    /// The open database; `None` while a [`Store::recover`] has closed it and not yet
    /// managed to open it again.
    db: RwLock<Option<Database>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn tx_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Transaction(e.to_string())
}

/// redb's page cache (its default is 1 GiB). The control plane holds every record in
/// memory and reads the file only when it starts or recovers, so the cache serves writes
/// alone: the B-tree pages a commit walks. Unbounded, it grew with the file (a 100k-task
/// store is over 500 MB) and was most of the server's RSS at scale. 8 MiB, not 32: a
/// page the cache lacks is read from the OS's page cache, and at 5,000 instances /
/// 50,000 tasks the smaller cache took 35 MB off the RSS without slowing the tasks'
/// creation beyond the run-to-run noise (docs/performance.md, "Control plane at scale").
pub const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Opens (or creates) the file and makes sure both tables exist, so that read transactions
/// never see them missing.
fn open_db(path: &Path) -> Result<Database, StoreError> {
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            cause: Box::new(e),
        })?;
    write(&db, |_, _| Ok(()))?;
    Ok(db)
}

fn write(
    db: &Database,
    f: impl FnOnce(&mut redb::Table<&str, &[u8]>, &mut redb::Table<&str, u64>) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    let mut txn = db.begin_write().map_err(tx_err)?;
    txn.set_durability(Durability::Immediate).map_err(tx_err)?;
    let revision = {
        let mut records = txn.open_table(RECORDS).map_err(tx_err)?;
        let mut meta = txn.open_table(META).map_err(tx_err)?;
        f(&mut records, &mut meta)?;
        meta.get(REVISION).map_err(tx_err)?.map_or(0, |v| v.value())
    };
    txn.commit().map_err(tx_err)?;
    Ok(revision)
}

/// Two durable commits: one writes [`PROBE_BYTES`] of scratch, the next removes them again
/// (so the space is left free in the file for the records that follow).
fn probe(db: &Database) -> Result<(), StoreError> {
    let scratch = vec![0u8; PROBE_BYTES];
    let mut txn = db.begin_write().map_err(tx_err)?;
    txn.set_durability(Durability::Immediate).map_err(tx_err)?;
    txn.open_table(PROBE)
        .map_err(tx_err)?
        .insert("probe", scratch.as_slice())
        .map_err(tx_err)?;
    txn.commit().map_err(tx_err)?;
    let mut txn = db.begin_write().map_err(tx_err)?;
    txn.set_durability(Durability::Immediate).map_err(tx_err)?;
    txn.delete_table(PROBE).map_err(tx_err)?;
    txn.commit().map_err(tx_err)?;
    Ok(())
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = open_db(path).map_err(|e| match e {
            StoreError::Transaction(msg) => StoreError::Transaction(format!(
                "cannot prepare the store at {}: {msg}",
                path.display()
            )),
            e => e,
        })?;
        Ok(RedbStore {
            path: path.to_owned(),
            db: RwLock::new(Some(db)),
        })
    }

    /// Runs `f` on the open database ([`StoreError::Closed`] while there is none).
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        f(guard.as_ref().ok_or(StoreError::Closed)?)
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(tx_err)?;
            let table = txn.open_table(RECORDS).map_err(tx_err)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(tx_err)? {
                let (k, v) = item.map_err(tx_err)?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    fn commit(&self, batch: &[Mutation]) -> Result<u64, StoreError> {
        self.with_db(|db| {
            write(db, |records, meta| {
                for m in batch {
                    match m {
                        Mutation::Put { key, value } => {
                            records
                                .insert(key.as_str(), value.as_slice())
                                .map_err(tx_err)?;
                        }
                        Mutation::Delete { key } => {
                            records.remove(key.as_str()).map_err(tx_err)?;
                        }
                    }
                }
                let next = meta.get(REVISION).map_err(tx_err)?.map_or(0, |v| v.value()) + 1;
                meta.insert(REVISION, next).map_err(tx_err)?;
                Ok(())
            })
        })
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.with_db(|db| {
            let txn = db.begin_read().map_err(tx_err)?;
            let meta = txn.open_table(META).map_err(tx_err)?;
            Ok(meta.get(REVISION).map_err(tx_err)?.map_or(0, |v| v.value()))
        })
    }

    fn wipe(&self) -> Result<(), StoreError> {
        self.with_db(|db| {
            write(db, |records, _| {
                records.retain(|_, _| false).map_err(tx_err)?;
                Ok(())
            })
            .map(|_| ())
        })
    }

    fn recover(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // Close the failed handle first: it holds the file's lock, and its close reports the
        // I/O error again (that is expected; the open below recovers the file).
        if let Some(failed) = slot.take() {
            let _ = failed.close();
        }
        let db = open_db(&self.path)?;
        probe(&db)?;
        *slot = Some(db);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_store_honours_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        crate::contract::check(&RedbStore::open(&dir.path().join("state.redb")).unwrap());
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            s.commit(&[crate::contract::put("k", "v")]).unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), vec![("k".to_owned(), b"v".to_vec())]);
        assert_eq!(s.revision().unwrap(), 1);
    }
}
