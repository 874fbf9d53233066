//! The state store on etcd through the binary: `flotilla store copy` from the embedded
//! store into a real etcd (started by the test, `/usr/bin/etcd` from `scripts/setup.sh`),
//! and `flotilla server --store etcd://…` writing its state there.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use store::etcd_process::EtcdProcess;
use store::{EtcdOptions, EtcdStore, Mutation, RedbStore, Store};
use testkit::server::ServerProcess;

fn flotilla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("FLOTILLA_LOG", "warn")
        .output()
        .expect("run flotilla")
}

fn etcd() -> EtcdProcess {
    EtcdProcess::start().unwrap_or_else(|e| panic!("cannot start etcd for the test: {e}"))
}

fn etcd_store(etcd: &EtcdProcess) -> EtcdStore {
    EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).expect("connect to etcd")
}

fn put(key: String, value: Vec<u8>) -> Mutation {
    Mutation::Put { key, value }
}

/// Writes `n` records (in several commits, some overwritten and some deleted) into a new
/// redb store at `path`, and returns what it holds.
fn fill_redb(path: &Path, n: usize) -> Vec<(String, Vec<u8>)> {
    let redb = RedbStore::open(path).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(700) {
        let batch: Vec<Mutation> = chunk
            .iter()
            .map(|i| {
                put(
                    format!("task/{i:06}"),
                    format!("{{\"n\":{i}}}").into_bytes(),
                )
            })
            .collect();
        redb.commit(&batch).unwrap();
    }
    redb.commit(&[
        put("meta".into(), (0..=255u8).collect()),
        put("task/000001".into(), b"overwritten".to_vec()),
        Mutation::Delete {
            key: "task/000002".into(),
        },
    ])
    .unwrap();
    redb.load().unwrap()
}

#[test]
fn store_copy_moves_every_record_from_redb_into_etcd_and_guards_a_non_empty_target() {
    let etcd = etcd();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let source = fill_redb(&path, 2_500);
    assert_eq!(source.len(), 2_500);
    let from = format!("redb:{}", path.display());
    let to = format!("etcd://{}", etcd.endpoint());

    let out = flotilla(&["store", "copy", "--from", &from, "--to", &to]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("copied 2500 records from {from} to {to}")
    );
    assert_eq!(etcd_store(&etcd).load().unwrap(), source);

    // A second copy into the now non-empty target is refused, and changes nothing.
    {
        let redb = RedbStore::open(&path).unwrap();
        redb.commit(&[
            Mutation::Delete {
                key: "task/000003".into(),
            },
            put("cluster/new".into(), b"{}".to_vec()),
        ])
        .unwrap();
    }
    let out = flotilla(&["store", "copy", "--from", &from, "--to", &to]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is not empty (2500 records)") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(etcd_store(&etcd).load().unwrap(), source);

    // With --force the target becomes exactly the source: the deleted record is gone too.
    let out = flotilla(&[
        "store", "copy", "--from", &from, "--to", &to, "--force", "--batch", "300",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = RedbStore::open(&path).unwrap().load().unwrap();
    let target = etcd_store(&etcd).load().unwrap();
    assert_eq!(target, source);
    assert!(target.iter().any(|(k, _)| k == "cluster/new"));
    assert!(!target.iter().any(|(k, _)| k == "task/000003"));
}

#[test]
fn store_locations_are_checked_with_a_one_line_error() {
    for args in [
        &[
            "store",
            "copy",
            "--from",
            "redb:/x",
            "--to",
            "etcd://nohost",
        ][..],
        &["server", "--store", "mysql://db:3306"][..],
    ] {
        let out = flotilla(args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("expected redb:PATH or etcd://HOST:PORT[,HOST:PORT…]"),
            "{args:?}: {stderr}"
        );
    }
    let out = flotilla(&[
        "store",
        "copy",
        "--from",
        "redb:/x/s.redb",
        "--to",
        "redb:/x/s.redb",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the same store"));
}

#[test]
fn a_server_with_store_etcd_keeps_its_state_in_etcd_across_a_restart() {
    let etcd = etcd();
    let dir = tempfile::tempdir().unwrap();
    let spawn = || {
        let port = testkit::http::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--store", &format!("etcd://{}", etcd.endpoint())])
            .env("FLOTILLA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start flotilla server");
        let server = ServerProcess {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        server.wait_healthy(Duration::from_secs(30));
        server
    };
    let http = reqwest::blocking::Client::new();
    {
        let server = spawn();
        let (status, body) = testkit::http::post_blocking(
            &http,
            &server.endpoint,
            "CreateCluster",
            &json!({"clusterName": "on-etcd"}),
        );
        assert_eq!(status, 200, "{body}");
    }
    // The record is in etcd, not in a redb file under --data-dir.
    let records = etcd_store(&etcd).load().unwrap();
    assert!(
        records
            .iter()
            .any(|(_, v)| String::from_utf8_lossy(v).contains("on-etcd")),
        "{records:?}"
    );
    assert!(!dir.path().join("state.redb").exists());
    // A new server on the same etcd (the first was killed) loads it.
    let server = spawn();
    let (status, body) = testkit::http::post_blocking(
        &http,
        &server.endpoint,
        "DescribeClusters",
        &json!({"clusters": ["on-etcd"]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["clusters"][0]["clusterName"], "on-etcd", "{body}");
    assert_eq!(body["clusters"][0]["status"], "ACTIVE", "{body}");
}
