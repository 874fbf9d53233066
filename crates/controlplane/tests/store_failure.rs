//! The writer when its store fails: writes are refused and `store_health` says why while
//! the store cannot write; once it can, the store is recovered by itself and its records
//! are made equal to what was acknowledged — including when a commit that reported an
//! error had reached the disk after all, which a real disk cannot be made to do on
//! demand (`crates/flotilla/tests/disk_full.rs` fills a real one).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use controlplane::ControlPlane;
use controlplane::ops::clusters;
use serde_json::json;
use store::{MemStore, Mutation, Store, StoreError};
use testkit::ecs::{req, submit};
use testkit::wait;

/// A [`MemStore`] that fails like redb on a full disk: a failed commit leaves it refusing
/// every commit until [`Store::recover`] succeeds, which it does once `full` is cleared.
#[derive(Default)]
struct FillingStore {
    disk: MemStore,
    /// The disk is full: commits and recoveries fail.
    full: AtomicBool,
    /// A failing commit reaches the disk anyway (its error comes after the write).
    fail_after_writing: AtomicBool,
    /// A commit failed and no recovery has succeeded since.
    poisoned: AtomicBool,
    recoveries: AtomicUsize,
}

fn enospc() -> StoreError {
    StoreError::Transaction("I/O error: No space left on device (os error 28)".into())
}

impl Store for FillingStore {
    fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.disk.load()
    }

    fn commit(&self, batch: &[Mutation]) -> Result<u64, StoreError> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(StoreError::Transaction(
                "Previous I/O error occurred. Please close and re-open the database.".into(),
            ));
        }
        if self.full.load(Ordering::SeqCst) {
            if self.fail_after_writing.load(Ordering::SeqCst) {
                self.disk.commit(batch)?;
            }
            self.poisoned.store(true, Ordering::SeqCst);
            return Err(enospc());
        }
        self.disk.commit(batch)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.disk.revision()
    }

    fn wipe(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::SeqCst) || self.full.load(Ordering::SeqCst) {
            return Err(enospc());
        }
        self.disk.wipe()
    }

    fn recover(&self) -> Result<(), StoreError> {
        self.recoveries.fetch_add(1, Ordering::SeqCst);
        if self.full.load(Ordering::SeqCst) {
            return Err(enospc());
        }
        self.poisoned.store(false, Ordering::SeqCst);
        Ok(())
    }
}

async fn create(cp: &ControlPlane, name: &str) -> Result<(), controlplane::EcsError> {
    submit(
        cp,
        clusters::create_cluster,
        req(json!({ "clusterName": name })),
    )
    .await
    .map(|_| ())
}

/// The cluster names the store holds.
fn on_disk(store: &FillingStore) -> Vec<String> {
    store
        .disk
        .load()
        .unwrap()
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix("cluster|").map(str::to_owned))
        .map(|k| k.rsplit('|').next().unwrap().to_owned())
        .collect()
}

fn published(cp: &ControlPlane) -> Vec<String> {
    cp.read(|s| s.clusters.keys().map(|k| k.name.clone()).collect())
}

/// Polls `store_health` until it is `Ok` (the recovery backoff is short at first).
async fn wait_healthy(cp: &ControlPlane) {
    wait::until_async(
        "the store to recover",
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || cp.store_health().await,
    )
    .await;
}

#[tokio::test]
async fn refused_writes_until_the_disk_has_room_then_recovered_by_a_health_probe() {
    let store = Arc::new(FillingStore::default());
    let cp = ControlPlane::open(store.clone()).unwrap();
    create(&cp, "acked").await.unwrap();
    assert_eq!(cp.store_health().await, Ok(()));

    store.full.store(true, Ordering::SeqCst);
    let err = create(&cp, "refused-1").await.unwrap_err();
    assert_eq!(err.code(), "ServerException");
    let reason = cp.store_health().await.unwrap_err();
    assert!(reason.contains("No space left"), "{reason}");
    assert!(create(&cp, "refused-2").await.is_err());
    // Reads go on from the published state.
    assert_eq!(published(&cp), ["acked"]);

    store.full.store(false, Ordering::SeqCst);
    wait_healthy(&cp).await;
    assert!(store.recoveries.load(Ordering::SeqCst) >= 1);
    create(&cp, "after").await.unwrap();
    assert_eq!(published(&cp), ["acked", "after"]);
    assert_eq!(on_disk(&store), ["acked", "after"]);
}

#[tokio::test]
async fn the_next_write_recovers_the_store_by_itself() {
    let store = Arc::new(FillingStore::default());
    let cp = ControlPlane::open(store.clone()).unwrap();
    store.full.store(true, Ordering::SeqCst);
    assert!(create(&cp, "refused").await.is_err());
    store.full.store(false, Ordering::SeqCst);
    // No health probe: writes themselves retry recovery (once the short backoff passed).
    wait::until_async(
        "writes to come back",
        Duration::from_secs(20),
        Duration::from_millis(20),
        async || create(&cp, "after").await,
    )
    .await;
    assert_eq!(cp.store_health().await, Ok(()));
    assert_eq!(on_disk(&store), ["after"]);
}

#[tokio::test]
async fn a_refused_commit_that_reached_the_disk_is_undone() {
    let store = Arc::new(FillingStore::default());
    let cp = ControlPlane::open(store.clone()).unwrap();
    create(&cp, "acked").await.unwrap();
    store.full.store(true, Ordering::SeqCst);
    store.fail_after_writing.store(true, Ordering::SeqCst);
    assert!(create(&cp, "refused").await.is_err());
    assert_eq!(
        on_disk(&store),
        ["acked", "refused"],
        "the failure wrote it"
    );
    assert_eq!(published(&cp), ["acked"]);

    store.full.store(false, Ordering::SeqCst);
    wait_healthy(&cp).await;
    assert_eq!(
        on_disk(&store),
        ["acked"],
        "recovery removed the refused write"
    );
    // And a fresh control plane on the same records sees the same.
    let again = ControlPlane::open(store.clone()).unwrap();
    assert_eq!(published(&again), ["acked"]);
}

#[tokio::test]
async fn acknowledged_records_missing_from_disk_are_written_back() {
    let store = Arc::new(FillingStore::default());
    let cp = ControlPlane::open(store.clone()).unwrap();
    create(&cp, "a").await.unwrap();
    create(&cp, "b").await.unwrap();
    store.full.store(true, Ordering::SeqCst);
    assert!(create(&cp, "refused").await.is_err());
    // Something lost an acknowledged record behind the store's back.
    let key = store
        .disk
        .load()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| k.ends_with("|b"))
        .unwrap();
    store.disk.commit(&[Mutation::Delete { key }]).unwrap();
    store.full.store(false, Ordering::SeqCst);
    wait_healthy(&cp).await;
    assert_eq!(on_disk(&store), ["a", "b"]);
}

#[tokio::test]
async fn a_full_disk_is_not_retried_on_every_probe() {
    let store = Arc::new(FillingStore::default());
    let cp = ControlPlane::open(store.clone()).unwrap();
    store.full.store(true, Ordering::SeqCst);
    assert!(create(&cp, "refused").await.is_err());
    for _ in 0..200 {
        assert!(cp.store_health().await.is_err());
    }
    // 200 probes in well under a second: the backoff (100 ms, doubling) allows a few.
    let tries = store.recoveries.load(Ordering::SeqCst);
    assert!(tries < 20, "{tries} recovery attempts");
}

#[tokio::test]
async fn a_reset_that_fails_half_way_leaves_the_acknowledged_state() {
    let store = Arc::new(FillingStore::default());
    let cp = ControlPlane::open(store.clone()).unwrap();
    create(&cp, "kept").await.unwrap();
    // The wipe reaches the disk, the commit after it fails.
    store.disk.wipe().unwrap();
    store.full.store(true, Ordering::SeqCst);
    assert!(cp.reset().await.is_err());
    assert_eq!(published(&cp), ["kept"]);
    store.full.store(false, Ordering::SeqCst);
    wait_healthy(&cp).await;
    assert_eq!(
        on_disk(&store),
        ["kept"],
        "recovery restored what the reset removed"
    );
    assert!(store.disk.load().unwrap().iter().any(|(k, _)| k == "meta"));
}
