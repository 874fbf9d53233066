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
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A tmpfs mounted on a temporary directory; unmounted on drop, whatever happened.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs (this test needs root)");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a server that would not die): detach it anyway.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Writes zeros to `path` until the file system has no block left.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in [64 * 1024, 512, 1] {
        let buf = vec![0u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
    }
}

struct Server {
    child: Child,
    endpoint: String,
    http: reqwest::blocking::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data_dir: &Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flotilla server");
    (child, format!("http://127.0.0.1:{port}"))
}

fn start(data_dir: &Path) -> Server {
    let (mut child, endpoint) = spawn(data_dir);
    // The server logs to stderr; drain it so that it never blocks on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stderr.read_to_end(&mut sink);
    });
    let server = Server {
        child,
        endpoint,
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.healthz().0 != 200 {
        assert!(Instant::now() < deadline, "server did not become healthy");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

impl Server {
    /// `GET /healthz`: (status, body); status 0 when the server does not answer.
    fn healthz(&self) -> (u16, String) {
        match self.http.get(format!("{}/healthz", self.endpoint)).send() {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    fn call(&self, op: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(&self.endpoint)
            .header(
                "x-amz-target",
                format!("AmazonEC2ContainerServiceV20141113.{op}"),
            )
            .header("content-type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .unwrap_or_else(|e| panic!("{op}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = server.healthz();
        if status == 200 {
            assert_eq!(body, "ok");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "/healthz still unhealthy with room on the disk: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..10 {
        let name = format!("after-{i}");
        assert!(server.create(&name), "{name} refused after recovery");
        acked.insert(name);
    }
    server.check(&acked, "after recovery");
    assert!(refused.iter().all(|r| !acked.contains(r)));

    // kill -9 and restart: exactly the acknowledged writes are on disk.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
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
    let (mut child, _) = spawn(&fs.path().join("server"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
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
