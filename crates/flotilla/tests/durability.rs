//! Durability of the control plane: `kill -9` of `flotilla server` in the middle of a
//! burst of concurrent writes loses no acknowledged write and leaves nothing
//! half-written.
//!
//! Each round starts the real binary on the same data directory, has 16 clients
//! create clusters and register task-definition revisions as fast as they can, kills
//! the server with SIGKILL after a random number of acknowledgements, restarts it, and
//! checks every acknowledged write against the restarted server. Writes that were in
//! flight at the kill may or may not be there; if they are, they must be whole.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::http::try_call as call;
use testkit::server::ServerProcess;

/// `flotilla server` on `data_dir`, healthy.
fn start(data_dir: &Path) -> ServerProcess {
    let server = ServerProcess::spawn(
        Path::new(env!("CARGO_BIN_EXE_flotilla")),
        data_dir,
        Stdio::inherit(),
    );
    server.wait_healthy(Duration::from_secs(30));
    server
}

#[derive(Default)]
struct Acked {
    clusters: BTreeSet<String>,
    revisions: BTreeSet<(String, i64)>,
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    for round in 0..3u64 {
        let mut server = start(dir.path());
        let kill_after = 150 + (round * 97) % 200;
        let endpoint = server.endpoint.clone();
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        rt.block_on(async {
            let http = reqwest::Client::new();
            let mut workers = Vec::new();
            for w in 0..16 {
                let (http, endpoint, acked, count) = (http.clone(), endpoint.clone(), acked.clone(), count.clone());
                workers.push(tokio::spawn(async move {
                    for i in 0.. {
                        let name = format!("r{round}-w{w}-{i}");
                        let result = if i % 2 == 0 {
                            call(&http, &endpoint, "CreateCluster", &json!({"clusterName": name, "tags": [{"key": "round", "value": round.to_string()}]}))
                                .await
                                .map(|_| acked.lock().unwrap().clusters.insert(name))
                        } else {
                            let family = format!("fam-w{w}");
                            let body = json!({"family": family, "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 32, "environment": [{"name": "ID", "value": name}]}]});
                            call(&http, &endpoint, "RegisterTaskDefinition", &body).await.map(|v| {
                                let rev = v["taskDefinition"]["revision"].as_i64().expect("revision");
                                acked.lock().unwrap().revisions.insert((family, rev))
                            })
                        };
                        if result.is_err() {
                            return; // the server is gone
                        }
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }));
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while count.load(std::sync::atomic::Ordering::SeqCst) < kill_after {
                assert!(Instant::now() < deadline, "writes did not progress");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            server.child.kill().expect("SIGKILL the server"); // kill -9, mid-burst
            for w in workers {
                w.await.unwrap();
            }
        });
        let _ = server.child.wait();
        drop(server);

        // Restart and check every acknowledged write.
        let server = start(dir.path());
        let acked = acked.lock().unwrap();
        assert!(
            acked.clusters.len() + acked.revisions.len() >= usize::try_from(kill_after).unwrap()
        );
        rt.block_on(async {
            let http = reqwest::Client::new();
            let names: Vec<&String> = acked.clusters.iter().collect();
            for chunk in names.chunks(100) {
                let v = call(
                    &http,
                    &server.endpoint,
                    "DescribeClusters",
                    &json!({"clusters": chunk, "include": ["TAGS"]}),
                )
                .await
                .unwrap();
                assert_eq!(
                    v["failures"].as_array().unwrap().len(),
                    0,
                    "lost clusters: {}",
                    v["failures"]
                );
                for c in v["clusters"].as_array().unwrap() {
                    assert_eq!(c["status"], "ACTIVE");
                    assert_eq!(
                        c["tags"].as_array().unwrap().len(),
                        1,
                        "cluster half-written: {c}"
                    );
                }
            }
            for (family, rev) in acked.revisions.iter() {
                let v = call(
                    &http,
                    &server.endpoint,
                    "DescribeTaskDefinition",
                    &json!({"taskDefinition": format!("{family}:{rev}")}),
                )
                .await
                .unwrap_or_else(|e| panic!("lost {family}:{rev}: {e}"));
                let td = &v["taskDefinition"];
                assert_eq!(td["status"], "ACTIVE");
                assert_eq!(
                    td["containerDefinitions"][0]["environment"]
                        .as_array()
                        .unwrap()
                        .len(),
                    1,
                    "half-written: {td}"
                );
            }
            // Revisions of a family have no gaps and no duplicates after recovery.
            let fams = call(
                &http,
                &server.endpoint,
                "ListTaskDefinitionFamilies",
                &json!({}),
            )
            .await
            .unwrap();
            for fam in fams["families"].as_array().unwrap() {
                let mut revs = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let mut body = json!({"familyPrefix": fam, "maxResults": 100});
                    if let Some(t) = &token {
                        body["nextToken"] = json!(t);
                    }
                    let page = call(&http, &server.endpoint, "ListTaskDefinitions", &body)
                        .await
                        .unwrap();
                    for arn in page["taskDefinitionArns"].as_array().unwrap() {
                        revs.push(
                            arn.as_str()
                                .unwrap()
                                .rsplit(':')
                                .next()
                                .unwrap()
                                .parse::<i64>()
                                .unwrap(),
                        );
                    }
                    match page["nextToken"].as_str() {
                        Some(t) => token = Some(t.to_owned()),
                        None => break,
                    }
                }
                let expected: Vec<i64> = (1..=i64::try_from(revs.len()).unwrap()).collect();
                assert_eq!(revs, expected, "family {fam} has gaps or duplicates");
            }
        });
        drop(server);
    }
}
