//! `EtcdStore` against a real etcd: the contract, the fence, following, the turn.
use super::*;
use crate::contract::put;
use crate::etcd_process::EtcdProcess;

fn etcd() -> EtcdProcess {
    EtcdProcess::start().unwrap_or_else(|e| panic!("cannot start etcd for the test: {e}"))
}

fn open(etcd: &EtcdProcess) -> EtcdStore {
    EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).unwrap()
}

#[test]
fn etcd_store_honours_the_contract() {
    let etcd = etcd();
    crate::contract::check(&open(&etcd));
}

#[test]
fn prefix_end_is_the_first_key_past_the_prefix() {
    assert_eq!(prefix_end(b"/a/"), b"/a0");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"\xff"), vec![0]);
}

#[test]
fn records_survive_a_new_handle_and_load_pages_through_a_big_store() {
    let etcd = etcd();
    let n = 2_500; // three pages of LOAD_PAGE
    {
        let s = open(&etcd);
        let batch: Vec<Mutation> = (0..n)
            .map(|i| put(&format!("task/{i:05}"), &format!("v{i}")))
            .collect();
        s.commit(&batch).unwrap();
    }
    let s = open(&etcd);
    let all = s.load().unwrap();
    assert_eq!(all.len(), n);
    assert_eq!(all[0], ("task/00000".to_owned(), b"v0".to_vec()));
    assert_eq!(
        all[n - 1],
        (
            format!("task/{:05}", n - 1),
            format!("v{}", n - 1).into_bytes()
        )
    );
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(s.revision().unwrap() > 0);
}

#[test]
fn a_second_writer_is_fenced_off_until_it_reopens() {
    let etcd = etcd();
    let a = open(&etcd);
    let b = open(&etcd);
    let ra = a.commit(&[put("k", "from a")]).unwrap();
    // b connected before a's commit: its view is stale, so its batch is refused whole.
    match b.commit(&[put("k", "from b"), put("other", "b")]) {
        Err(StoreError::Conflict { expected, found }) => {
            assert_eq!((expected, found), (0, ra));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(b.wipe(), Err(StoreError::Conflict { .. })));
    // Recovering does not let a stale writer through either.
    assert!(matches!(b.recover(), Err(StoreError::Conflict { .. })));
    assert_eq!(
        a.load().unwrap(),
        vec![("k".to_owned(), b"from a".to_vec())]
    );
    // a, the current writer, goes on; a fresh handle (a restarted server) may write.
    let ra2 = a.commit(&[put("k", "a again")]).unwrap();
    let c = open(&etcd);
    assert!(c.commit(&[put("k", "from c")]).unwrap() > ra2);
    assert!(matches!(
        a.commit(&[put("k", "late")]),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        c.load().unwrap(),
        vec![("k".to_owned(), b"from c".to_vec())]
    );
}

#[test]
fn recover_adopts_this_writers_own_commit_whose_answer_was_lost() {
    let etcd = etcd();
    let s = open(&etcd);
    s.commit(&[put("a", "1")]).unwrap();
    // Simulate a lost answer: the commit landed but the fence did not move.
    let before = s.fence().expected;
    let landed = s.commit(&[put("a", "2")]).unwrap();
    s.fence().expected = before;
    assert!(matches!(
        s.commit(&[put("a", "3")]),
        Err(StoreError::Conflict { .. })
    ));
    s.recover().unwrap();
    assert_eq!(s.revision().unwrap(), landed);
    assert!(s.commit(&[put("a", "3")]).unwrap() > landed);
    assert_eq!(s.load().unwrap(), vec![("a".to_owned(), b"3".to_vec())]);
}

#[test]
fn a_batch_over_the_limits_is_refused_whole_before_it_is_sent() {
    let etcd = etcd();
    let s = EtcdStore::connect(
        &[etcd.endpoint()],
        EtcdOptions {
            max_txn_ops: 4,
            max_request_bytes: 4096,
            ..EtcdOptions::default()
        },
    )
    .unwrap();
    // Three puts + the writer key = 4 operations: allowed. Changes to one key merge.
    s.commit(&[put("a", "1"), put("b", "1"), put("c", "1"), put("c", "2")])
        .unwrap();
    let too_many = [put("a", "2"), put("b", "2"), put("c", "3"), put("d", "1")];
    match s.commit(&too_many) {
        Err(
            e @ StoreError::BatchTooLarge {
                ops: 5, max_ops: 4, ..
            },
        ) => {
            assert!(e.to_string().contains("5 operations"), "{e}");
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    let big = "x".repeat(5000);
    assert!(matches!(
        s.commit(&[put("a", &big)]),
        Err(StoreError::BatchTooLarge { .. })
    ));
    // Nothing of either batch was applied.
    assert_eq!(
        s.load().unwrap(),
        vec![
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"1".to_vec()),
            ("c".to_owned(), b"2".to_vec()),
        ]
    );
}

#[test]
fn etcd_started_with_the_required_flags_takes_a_batch_of_the_default_limit() {
    let etcd = etcd();
    let s = open(&etcd);
    // 5,000 records: far over etcd's default of 128 operations a transaction.
    let batch: Vec<Mutation> = (0..5_000).map(|i| put(&format!("r{i}"), "v")).collect();
    s.commit(&batch).unwrap();
    assert_eq!(s.load().unwrap().len(), 5_000);
}

#[test]
fn an_unreachable_cluster_is_a_connect_error_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let err = EtcdStore::connect(
        &[format!("127.0.0.1:{port}")],
        EtcdOptions {
            timeout: Duration::from_millis(300),
            ..EtcdOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_store_whose_etcd_died_errors_in_time_and_recovers_when_it_is_back() {
    let mut etcd = etcd();
    let s = EtcdStore::connect(
        &[etcd.endpoint()],
        EtcdOptions {
            timeout: Duration::from_millis(500),
            ..EtcdOptions::default()
        },
    )
    .unwrap();
    let r1 = s.commit(&[put("a", "1")]).unwrap();
    etcd.kill();
    let started = std::time::Instant::now();
    assert!(s.commit(&[put("a", "2")]).is_err());
    assert!(s.recover().is_err());
    assert!(s.load().is_err());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    etcd.restart().unwrap();
    // Poll: the client may need a moment to reconnect to the restarted member.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = s.recover() {
        assert!(std::time::Instant::now() < deadline, "no recovery: {e}");
    }
    // The acknowledged commit survived etcd's kill -9, and the store writes again.
    assert_eq!(s.load().unwrap(), vec![("a".to_owned(), b"1".to_vec())]);
    assert!(s.commit(&[put("a", "3")]).unwrap() > r1);
}

/// The next thing the follower delivers, within 10 s.
fn next(rx: &mut tokio::sync::mpsc::Receiver<crate::Followed>) -> crate::Followed {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match rx.try_recv() {
            Ok(f) => return f,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "nothing followed in 10 s"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("the follower stopped: {e}"),
        }
    }
}

#[test]
fn a_follower_gets_each_commit_whole_in_order_and_a_snapshot_after_a_compaction() {
    use crate::Followed;
    let etcd = etcd();
    let writer = open(&etcd);
    let follower = open(&etcd);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    assert!(follower.follow(0, tx));
    let r1 = writer.commit(&[put("y", "2"), put("x", "1")]).unwrap();
    // A probe outside the records changes no record: nothing is delivered for it.
    writer.recover().unwrap();
    let r2 = writer
        .commit(&[Mutation::Delete { key: "x".into() }])
        .unwrap();
    assert_eq!(
        next(&mut rx),
        Followed::Batch {
            revision: r1,
            mutations: vec![put("x", "1"), put("y", "2")],
            deleted: vec![],
        }
    );
    assert_eq!(
        next(&mut rx),
        Followed::Batch {
            revision: r2,
            mutations: vec![Mutation::Delete { key: "x".into() }],
            deleted: vec![("x".to_owned(), b"1".to_vec())],
        }
    );
    // After a compaction the history from revision 0 is gone: a new follower starting
    // there gets the whole store instead.
    let client = writer.client();
    writer
        .driver
        .run(async move {
            bounded(Duration::from_secs(5), "compact", {
                let mut kv = kv_client(&client);
                async move { kv.compact(i64::try_from(r2).unwrap(), None).await }
            })
            .await
            .map(|_| ())
        })
        .unwrap();
    let late = open(&etcd);
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    assert!(late.follow(1, tx));
    assert_eq!(
        next(&mut rx),
        Followed::Snapshot {
            revision: r2,
            records: vec![("y".to_owned(), b"2".to_vec())],
        }
    );
    // …and then the commits after it.
    let r3 = writer.commit(&[put("z", "3")]).unwrap();
    assert_eq!(
        next(&mut rx),
        Followed::Batch {
            revision: r3,
            mutations: vec![put("z", "3")],
            deleted: vec![],
        }
    );
}

#[test]
fn the_turn_holds_every_other_writer_off_until_it_is_given_back() {
    let etcd = etcd();
    let a = open(&etcd);
    let b = open(&etcd);
    let r1 = a.commit(&[put("k", "a")]).unwrap();
    // b is behind; it takes the turn and learns what to catch up to.
    assert_eq!(b.take_turn().unwrap(), Some(r1));
    assert!(matches!(
        a.commit(&[put("k", "a again")]),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(a.take_turn().unwrap(), None, "one holder at a time");
    b.caught_up(r1);
    let r2 = b.commit(&[put("k", "b")]).unwrap();
    b.release_turn();
    a.caught_up(r2);
    assert!(a.commit(&[put("k", "a last")]).unwrap() > r2);
    assert_eq!(
        a.load().unwrap(),
        vec![("k".to_owned(), b"a last".to_vec())]
    );
}
