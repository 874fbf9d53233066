//! Commit latency of the store backends: N single-record batches, one after another (the
//! control plane's writer commits one batch at a time), against a throwaway one-member
//! etcd ([`EtcdProcess`], `/usr/bin/etcd` from `scripts/setup.sh`) and, for comparison, a
//! redb file in a temporary directory. Prints commits/s and p50/p99 per backend.
//!
//! ```sh
//! cargo run --release -p store --example store_commits [-- COMMITS]   # default 2000
//! ```
//!
//! Both fsync each commit (etcd its write-ahead log, redb its file), on the same disk.

use std::time::{Duration, Instant};

use store::etcd_process::EtcdProcess;
use store::{EtcdOptions, EtcdStore, Mutation, RedbStore, Store};

/// A task-sized record (the control plane's task records are about this size in JSON).
const RECORD_BYTES: usize = 1_500;

fn measure(name: &str, store: &dyn Store, commits: usize) {
    let value = vec![b'x'; RECORD_BYTES];
    let mut latencies = Vec::with_capacity(commits);
    let started = Instant::now();
    for i in 0..commits {
        let batch = [Mutation::Put {
            key: format!("task/{i:06}"),
            value: value.clone(),
        }];
        let t = Instant::now();
        store.commit(&batch).expect("commit");
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    let pct = |p: f64| -> Duration {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    println!(
        "{name:<6} {commits} commits in {:.2} s: {:.0} commits/s, p50 {:.2} ms, p99 {:.2} ms",
        total.as_secs_f64(),
        commits as f64 / total.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    assert_eq!(store.load().expect("load").len(), commits);
}

fn main() {
    let commits: usize = std::env::args()
        .nth(1)
        .map_or(2_000, |a| a.parse().expect("COMMITS must be a number"));
    let etcd = EtcdProcess::start().unwrap_or_else(|e| panic!("{e}"));
    let store = EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).expect("connect");
    measure("etcd", &store, commits);
    let dir = tempfile::tempdir().expect("temp dir");
    let redb = RedbStore::open(&dir.path().join("state.redb")).expect("open redb");
    measure("redb", &redb, commits);
}
