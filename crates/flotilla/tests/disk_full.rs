//! The control plane on a disk that fills up, for real: `flotilla server` keeps its store
//! on a small tmpfs mounted for the test, a filler file takes every free block, and then
//! is deleted again. Needs root (`cargo test -p flotilla --test disk_full --
//! --include-ignored`, as CI runs it).
//!
//! While the disk is full, writes are refused with 500 `ServerException`, `/healthz` is
//! 503 with the reason, and every acknowledged write can still be read. Once the filler
//! is gone the server recovers by itself: `/healthz` turns 200 without a client write,
//! writes succeed, and after a `kill -9` and a restart the store holds exactly the
//! acknowledged writes — none lost, none of the refused ones.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::fs::{Tmpfs, fill};
use testkit::server::ServerProcess;
use testkit::{http, wait};

/// A running `flotilla server` and a client of it.
struct Server {
    process: ServerProcess,
    http: reqwest::blocking::Client,
}

/// `flotilla server` on `data_dir`, its stderr piped; not waited for.
fn spawn(data_dir: &Path) -> ServerProcess {
    ServerProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_flotilla")),
        data_dir,
        Stdio::piped(),
    )
}

fn start(data_dir: &Path) -> Server {
    let mut process = spawn(data_dir);
    // The server logs to stderr; drain it so that it never blocks on a full pipe.
    let mut stderr = process.child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stderr.read_to_end(&mut sink);
    });
    process.wait_healthy(Duration::from_secs(30));
    Server {
        process,
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

impl Server {
    /// `GET /healthz`: (status, body); status 0 when the server does not answer.
    fn healthz(&self) -> (u16, String) {
        http::healthz(&self.http, &self.process.endpoint)
    }

    fn call(&self, op: &str, body: &Value) -> (u16, Value) {
        http::post_blocking(&self.http, &self.process.endpoint, op, body)
    }

    /// CreateCluster with about 2 KiB of tags: true when acknowledged, false when refused
    /// with a server fault; anything else fails the test.
    fn create(&self, name: &str) -> bool {
        let tags: Vec<Value> = (0..10)
            .map(|i| json!({"key": format!("pad{i}"), "value": "x".repeat(200)}))
            .collect();
        let (status, body) =
            self.call("CreateCluster", &json!({"clusterName": name, "tags": tags}));
        match status {
            200 => {
                assert_eq!(body["cluster"]["clusterName"], name);
                true
            }
            500 => {
                assert_eq!(body["__type"], "ServerException", "{body}");
                false
            }
            _ => panic!("CreateCluster {name}: {status} {body}"),
        }
    }

    /// Every cluster name, through ListClusters' pages.
    fn cluster_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = json!({"maxResults": 100});
            if let Some(t) = &token {
                req["nextToken"] = json!(t);
            }
            let (status, body) = self.call("ListClusters", &req);
            assert_eq!(status, 200, "{body}");
            for arn in body["clusterArns"].as_array().unwrap() {
                let arn = arn.as_str().unwrap();
                names.insert(arn.rsplit('/').next().unwrap().to_owned());
            }
            match body["nextToken"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => return names,
            }
        }
    }

    /// Asserts that the server holds exactly the `acked` clusters, each whole.
    fn check(&self, acked: &BTreeSet<String>, when: &str) {
        let names = self.cluster_names();
        let lost: Vec<_> = acked.difference(&names).collect();
        let extra: Vec<_> = names.difference(acked).collect();
        assert!(
            lost.is_empty() && extra.is_empty(),
            "{when}: acknowledged but missing {lost:?}; never acknowledged but present {extra:?}"
        );
        let acked: Vec<&String> = acked.iter().collect();
        for chunk in acked.chunks(100) {
            let (status, body) = self.call(
                "DescribeClusters",
                &json!({"clusters": chunk, "include": ["TAGS"]}),
            );
            assert_eq!(status, 200, "{body}");
            let found = body["clusters"].as_array().unwrap();
            assert_eq!(found.len(), chunk.len(), "{when}: {body}");
            for c in found {
                assert_eq!(c["status"], "ACTIVE", "{when}: {c}");
                assert_eq!(c["tags"].as_array().map(Vec::len), Some(10), "{when}: {c}");
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn writes_come_back_by_themselves_after_the_disk_was_full() {
    let fs = Tmpfs::mount("8m");
    let data_dir = fs.path().join("server");
    let mut server = start(&data_dir);
    let mut acked = BTreeSet::new();
    let mut refused = BTreeSet::new();
    for i in 0..20 {
        let name = format!("before-{i}");
        assert!(server.create(&name), "{name} refused with room on the disk");
        acked.insert(name);
    }

    // Take every free block, then write until the store's file has no room left either.
    let filler = fs.path().join("filler");
    fill(&filler);
    for i in 0.. {
        assert!(i < 5000, "writes never failed on a full disk");
        let name = format!("full-{i}");
        if server.create(&name) {
            acked.insert(name);
        } else {
            refused.insert(name);
            break;
        }
    }
    let (status, body) = server.healthz();
    assert_eq!(status, 503, "/healthz while the disk is full: {body}");
    assert!(body.contains("No space left on device"), "{body}");
    for i in 0..3 {
        let name = format!("still-full-{i}");
        if server.create(&name) {
            acked.insert(name);
        } else {
            refused.insert(name);
        }
    }
    assert_eq!(server.healthz().0, 503);
    server.check(&acked, "while the disk is full");

    // Room again: the server recovers by itself, without a client's write.
    std::fs::remove_file(&filler).unwrap();
    wait::until(
        "/healthz to be healthy with room on the disk",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || match server.healthz() {
            (200, body) => {
                assert_eq!(body, "ok");
                Ok(())
            }
            (503, body) => Err(body),
            (status, body) => panic!("/healthz: {status} {body}"),
        },
    );
    for i in 0..10 {
        let name = format!("after-{i}");
        assert!(server.create(&name), "{name} refused after recovery");
        acked.insert(name);
    }
    server.check(&acked, "after recovery");
    assert!(refused.iter().all(|r| !acked.contains(r)));

    // kill -9 and restart: exactly the acknowledged writes are on disk.
    server.process.child.kill().unwrap();
    server.process.child.wait().unwrap();
    drop(server);
    let server = start(&data_dir);
    server.check(&acked, "after kill -9 and a restart");
    assert!(server.create("after-restart"));
    drop(server);
    drop(fs);
}

#[test]
#[ignore = "needs root"]
fn a_server_that_cannot_create_its_store_on_a_full_disk_says_so_in_one_line() {
    let fs = Tmpfs::mount("1m");
    fill(&fs.path().join("filler"));
    let mut server = spawn(&fs.path().join("server"));
    let status = wait::until(
        "the server to exit",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || server.child.try_wait().unwrap(),
    );
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("flotilla: cannot open the store at ")
            && last.matches("No space left on device").count() == 1,
        "{stderr}"
    );
    drop(fs);
}
