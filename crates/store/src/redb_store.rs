//! The embedded default backend: one redb file, one table of records, fsync per commit.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{Mutation, Store, StoreError};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// A [`Store`] in a single redb file. Commits are durable (fsync) before they return.
pub struct RedbStore {
    db: Database,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn tx_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Transaction(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        })?;
        let store = RedbStore { db };
        // Create the tables so that read transactions never see them missing.
        store.write(|_, _| Ok(()))?;
        Ok(store)
    }

    fn write(
        &self,
        f: impl FnOnce(
            &mut redb::Table<&str, &[u8]>,
            &mut redb::Table<&str, u64>,
        ) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut txn = self.db.begin_write().map_err(tx_err)?;
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
}

impl Store for RedbStore {
    fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(tx_err)?;
        let table = txn.open_table(RECORDS).map_err(tx_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(tx_err)? {
            let (k, v) = item.map_err(tx_err)?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, batch: &[Mutation]) -> Result<u64, StoreError> {
        self.write(|records, meta| {
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
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(tx_err)?;
        let meta = txn.open_table(META).map_err(tx_err)?;
        Ok(meta.get(REVISION).map_err(tx_err)?.map_or(0, |v| v.value()))
    }

    fn wipe(&self) -> Result<(), StoreError> {
        self.write(|records, _| {
            records.retain(|_, _| false).map_err(tx_err)?;
            Ok(())
        })
        .map(|_| ())
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
