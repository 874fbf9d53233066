//! Several control planes (servers) on one etcd: each one's writer commits through etcd,
//! fenced on the last commit it holds, and follows the others' commits. Writers on
//! different servers must never lose or duplicate a write, and every server must come to
//! hold every acknowledged write, deletes included. Needs `/usr/bin/etcd`
//! (Debian `etcd-server`; `scripts/test.sh` installs it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::ControlPlane;
use controlplane::ops::{clusters, task_definitions};
use controlplane::state::{Change, Record};
use serde_json::json;
use store::etcd_process::EtcdProcess;
use store::{EtcdOptions, EtcdStore, Followed, MemStore, Mutation, Store, StoreError};
use testkit::ecs::{req, scope, submit, task_definition};

fn server(etcd: &EtcdProcess) -> ControlPlane {
    let store = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).expect("connect");
    ControlPlane::open(Arc::new(store)).expect("open a control plane on etcd")
}

/// Polls `check` every 20 ms until it holds, for at most 20 s.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The revisions of `family` a server holds, in order.
fn revisions(cp: &ControlPlane, family: &str) -> Vec<i32> {
    cp.read(|s| {
        s.task_definitions
            .keys()
            .filter(|k| k.1 == family)
            .map(|k| k.2)
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_on_three_servers_get_one_gapless_sequence_that_every_server_holds() {
    let etcd = EtcdProcess::start().expect("start etcd");
    let servers: Vec<ControlPlane> = (0..3).map(|_| server(&etcd)).collect();
    const WRITERS: usize = 12;
    const EACH: usize = 15;
    // Every writer registers revisions of one shared family and of its own: a revision
    // number is decided from the state, so a write run against a stale state, or run
    // twice, would show as a duplicate or a gap.
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let cp = servers[w % servers.len()].clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for _ in 0..EACH {
                for family in ["shared".to_owned(), format!("own-{w}")] {
                    let out = submit(
                        &cp,
                        task_definitions::register,
                        req(task_definition(&family, 64)),
                    )
                    .await
                    .expect("every write is acknowledged");
                    let def = out.task_definition.expect("a task definition");
                    acked.push((family, def.revision.expect("a revision")));
                }
            }
            acked
        }));
    }
    let mut shared_acked = Vec::new();
    for (w, writer) in writers.into_iter().enumerate() {
        for (family, revision) in writer.await.expect("writer") {
            if family == "shared" {
                shared_acked.push(revision);
            } else {
                assert_eq!(family, format!("own-{w}"));
            }
        }
    }
    shared_acked.sort_unstable();
    let all: Vec<i32> = (1..=i32::try_from(WRITERS * EACH).unwrap()).collect();
    assert_eq!(
        shared_acked, all,
        "each acknowledged revision once, no gaps"
    );
    for (i, cp) in servers.iter().enumerate() {
        eventually(&format!("server {i} holds every write"), || {
            revisions(cp, "shared") == all
                && (0..WRITERS).all(|w| {
                    revisions(cp, &format!("own-{w}"))
                        == (1..=i32::try_from(EACH).unwrap()).collect::<Vec<_>>()
                })
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_and_a_new_server_follow_the_others() {
    let etcd = EtcdProcess::start().expect("start etcd");
    let a = server(&etcd);
    let b = server(&etcd);
    submit(
        &a,
        clusters::create_cluster,
        req(json!({"clusterName": "gone"})),
    )
    .await
    .expect("create on a");
    submit(
        &b,
        clusters::create_cluster,
        req(json!({"clusterName": "kept"})),
    )
    .await
    .expect("create on b");
    let names = |cp: &ControlPlane| -> Vec<String> {
        cp.read(|s| s.clusters.values().map(|c| c.name.clone()).collect())
    };
    eventually("both servers hold both clusters", || {
        names(&a) == ["gone", "kept"] && names(&b) == ["gone", "kept"]
    })
    .await;
    // A record deleted through b (as retention deletes) leaves a as well.
    let record = b.read(|s| {
        s.clusters
            .values()
            .find(|c| c.name == "gone")
            .cloned()
            .expect("the cluster")
    });
    b.write(scope(), move |_, _| {
        Ok(((), vec![Change::Delete(Record::Cluster(record.clone()))]))
    })
    .await
    .expect("delete on b");
    eventually("a follows the delete", || names(&a) == ["kept"]).await;
    // A server started later loads the state and then writes after the others.
    let c = server(&etcd);
    assert_eq!(names(&c), ["kept"]);
    submit(
        &c,
        clusters::create_cluster,
        req(json!({"clusterName": "third"})),
    )
    .await
    .expect("create on c");
    eventually("a and b follow c", || {
        names(&a) == ["kept", "third"] && names(&b) == ["kept", "third"]
    })
    .await;
}

/// A store that says it is shared and lets the test deliver what "etcd" followed.
struct Scripted {
    inner: MemStore,
    sink: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<Followed>>>,
}

impl Store for Scripted {
    fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.load()
    }
    fn commit(&self, batch: &[Mutation]) -> Result<u64, StoreError> {
        self.inner.commit(batch)
    }
    fn revision(&self) -> Result<u64, StoreError> {
        self.inner.revision()
    }
    fn wipe(&self) -> Result<(), StoreError> {
        self.inner.wipe()
    }
    fn follow(&self, _after: u64, sink: tokio::sync::mpsc::Sender<Followed>) -> bool {
        *self.sink.lock().unwrap() = Some(sink);
        true
    }
}

#[tokio::test]
async fn a_snapshot_older_than_the_servers_state_is_ignored_a_newer_one_replaces_it() {
    let store = Arc::new(Scripted {
        inner: MemStore::new(),
        sink: std::sync::Mutex::new(None),
    });
    let cp = ControlPlane::open(store.clone()).expect("open");
    let sink = store.sink.lock().unwrap().clone().expect("followed");
    submit(
        &cp,
        clusters::create_cluster,
        req(json!({"clusterName": "mine"})),
    )
    .await
    .expect("create");
    let held = store.revision().unwrap();
    let names =
        || -> Vec<String> { cp.read(|s| s.clusters.values().map(|c| c.name.clone()).collect()) };
    let record = cp.read(|s| s.clusters.values().next().cloned().expect("cluster"));
    let other = {
        let mut r = record.clone();
        r.name = "other".into();
        Record::Cluster(r)
    };
    // A re-list taken before this server's own commit: it must not undo it.
    sink.send(Followed::Snapshot {
        revision: held - 1,
        records: Vec::new(),
    })
    .await
    .unwrap();
    // A later commit of another server, to know the snapshot was handled.
    sink.send(Followed::Batch {
        revision: held + 1,
        mutations: vec![Mutation::Put {
            key: other.store_key(),
            value: serde_json::to_vec(&other).unwrap(),
        }],
        deleted: Vec::new(),
    })
    .await
    .unwrap();
    eventually("the later commit is applied", || {
        names() == ["mine", "other"]
    })
    .await;
    // A newer re-list replaces what the server holds.
    sink.send(Followed::Snapshot {
        revision: held + 2,
        records: vec![(other.store_key(), serde_json::to_vec(&other).unwrap())],
    })
    .await
    .unwrap();
    eventually("the newer snapshot replaces the state", || {
        names() == ["other"]
    })
    .await;
}
