//! [`RedbStore`] on a real file system that fills up: a small tmpfs mounted for the test
//! (needs root: `cargo test -p store -- --include-ignored`). After `ENOSPC` redb refuses
//! every write until the database is reopened; [`Store::recover`] reopens it once there is
//! space again, and nothing committed before is lost.

use std::path::PathBuf;

use store::{Mutation, RedbStore, Store};
use testkit::fs::{Tmpfs, fill};

fn put(k: &str, len: usize) -> Mutation {
    Mutation::Put {
        key: k.to_owned(),
        value: vec![b'x'; len],
    }
}

#[test]
#[ignore = "needs root"]
fn redb_store_recovers_after_the_disk_was_full() {
    let fs = Tmpfs::mount("4m");
    let db_path: PathBuf = fs.path().join("state.redb");
    let store = RedbStore::open(&db_path).unwrap();
    store.commit(&[put("before", 100)]).unwrap();

    let filler = fs.path().join("filler");
    assert!(fill(&filler) > 0);
    // Commit until the disk refuses (the file may still have free pages of its own).
    let mut acked = vec!["before".to_owned()];
    let mut refused = None;
    for i in 0..10_000 {
        let key = format!("k{i:05}");
        match store.commit(&[put(&key, 3000)]) {
            Ok(_) => acked.push(key),
            Err(e) => {
                refused = Some((key, e.to_string()));
                break;
            }
        }
    }
    let (refused, error) = refused.expect("the full disk refused a commit");
    assert!(error.contains("No space left"), "{error}");
    // redb now refuses everything until it is reopened, and a reopen cannot write yet.
    assert!(store.commit(&[put("small", 1)]).is_err());
    assert!(store.recover().is_err(), "recovered on a full disk");

    std::fs::remove_file(&filler).unwrap();
    store.recover().expect("recover once there is space");
    let keys: Vec<String> = store.load().unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys, acked,
        "exactly the acknowledged records, not {refused}"
    );
    store.commit(&[put("after", 100)]).unwrap();
    drop(store);

    let store = RedbStore::open(&db_path).unwrap();
    let keys: Vec<String> = store.load().unwrap().into_iter().map(|(k, _)| k).collect();
    acked.push("after".to_owned());
    acked.sort();
    assert_eq!(keys, acked);
}
