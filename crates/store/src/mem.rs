//! An in-memory [`Store`] for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Mutation, Store, StoreError};

/// The revision and the records.
type Contents = (u64, BTreeMap<String, Vec<u8>>);

/// A [`Store`] that keeps everything in memory (lost on exit).
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<Contents>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Contents>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Transaction("memory store lock poisoned".into()))
    }
}

impl Store for MemStore {
    fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()?
            .1
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batch: &[Mutation]) -> Result<u64, StoreError> {
        let mut guard = self.lock()?;
        for m in batch {
            match m {
                Mutation::Put { key, value } => {
                    guard.1.insert(key.clone(), value.clone());
                }
                Mutation::Delete { key } => {
                    guard.1.remove(key);
                }
            }
        }
        guard.0 += 1;
        Ok(guard.0)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.0)
    }

    fn wipe(&self) -> Result<(), StoreError> {
        self.lock()?.1.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_store_honours_the_contract() {
        crate::contract::check(&super::MemStore::new());
    }
}
