//! Smoke test of `flotilla bench scale`: the debug binary at a tiny size (20 simulated
//! agents, 60 tasks, 3 services) finishes, exits 0, and prints its figures as the last
//! line in the documented format with plausible values.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bench_scale_runs_at_a_tiny_size() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "bench",
            "scale",
            "--instances",
            "20",
            "--tasks",
            "60",
            "--services",
            "3",
            "--connections",
            "64",
            "--settle-seconds",
            "0",
            "--settle-max-extra-seconds",
            "0",
            "--quiet-seconds",
            "1",
            "--updates",
            "5",
            "--list-pages",
            "5",
            "--stall-seconds",
            "60",
            "--timeout",
            "120",
        ])
        .env("FLOTILLA_LOG", "warn")
        .output()
        .expect("run flotilla bench scale");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench scale failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "bench scale took {:?}",
        started.elapsed()
    );
    let last = stdout.lines().last().unwrap_or_default();
    let fields: Vec<(&str, f64)> = last
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{last:?}"));
            (k, v.parse().unwrap_or_else(|_| panic!("{last:?}")))
        })
        .collect();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "rss_mb",
            "agent_cpu_pct",
            "reconcile_p99_ms",
            "list_tasks_p99_ms"
        ],
        "{last:?}"
    );
    let value = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| *v)
            .unwrap()
    };
    assert!((1.0..4096.0).contains(&value("rss_mb")), "{last:?}");
    assert!((0.0..=400.0).contains(&value("agent_cpu_pct")), "{last:?}");
    assert!(
        value("reconcile_p99_ms") > 0.0 && value("reconcile_p99_ms") < 30_000.0,
        "{last:?}"
    );
    assert!(
        value("list_tasks_p99_ms") > 0.0 && value("list_tasks_p99_ms") < 10_000.0,
        "{last:?}"
    );
}
