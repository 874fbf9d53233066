//! Smoke tests of `flotilla bench lb`: the debug binary at a tiny size (2 backends,
//! 2 connections, a fraction of a second per target) finishes, exits 0 and prints its
//! figures in the documented format, with traffic and no errors through direct and the
//! flotilla load balancer, in the closed loop and in the open loop (`--rate`). HAProxy's
//! column is checked when `haproxy` is installed and skipped (the bench prints `-`) when it
//! is not.

use std::process::Command;

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Runs `flotilla bench lb` at 2 backends, 2 connections and 2 workers plus `args`, checks
/// it exits 0 and returns its standard output.
fn bench_lb(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "bench",
            "lb",
            "--backends",
            "2",
            "--connections",
            "2",
            "--workers",
            "2",
        ])
        .args(args)
        .env("FLOTILLA_LOG", "warn")
        .output()
        .expect("run flotilla bench lb");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

#[test]
fn bench_lb_runs_at_a_tiny_size() {
    let stdout = bench_lb(&["--seconds", "0.5", "--warmup", "0.2"]);
    let lines: Vec<&str> = stdout.lines().collect();
    let last = lines.last().copied().unwrap_or_default();
    let errors = lines
        .get(lines.len().saturating_sub(2))
        .copied()
        .unwrap_or_default();

    let lb_rps: f64 = field(last, "lb_rps").parse().unwrap();
    assert!(lb_rps > 0.0, "{stdout}");
    let _: f64 = field(last, "added_p99_ms").parse().unwrap();
    assert_eq!(field(errors, "direct_errors"), "0", "{stdout}");
    assert_eq!(field(errors, "lb_errors"), "0", "{stdout}");
    let direct_row = lines
        .iter()
        .find(|l| l.contains("direct"))
        .unwrap_or_else(|| panic!("no direct row in {stdout}"));
    let direct_rps: f64 = direct_row
        .split('|')
        .nth(2)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("no req/s in {direct_row:?}"));
    assert!(direct_rps > 0.0, "{stdout}");

    let haproxy_installed = ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/sbin/haproxy"]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    if haproxy_installed {
        let h: f64 = field(last, "haproxy_rps").parse().unwrap();
        assert!(h > 0.0, "{stdout}");
        let _: f64 = field(last, "ratio").parse().unwrap();
        let _: f64 = field(last, "haproxy_added_p99_ms").parse().unwrap();
        assert_eq!(field(errors, "haproxy_errors"), "0", "{stdout}");
    } else {
        assert_eq!(field(last, "haproxy_rps"), "-", "{stdout}");
        assert_eq!(field(last, "haproxy_added_p99_ms"), "-", "{stdout}");
    }
}

#[test]
fn bench_lb_open_loop_keeps_its_rate() {
    let stdout = bench_lb(&[
        "--seconds",
        "1",
        "--warmup",
        "0.2",
        "--rate",
        "500",
        "--no-haproxy",
    ]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .first()
            .is_some_and(|l| l.contains("open loop at 500 req/s")),
        "{stdout}"
    );
    let last = lines.last().copied().unwrap_or_default();
    let errors = lines
        .get(lines.len().saturating_sub(2))
        .copied()
        .unwrap_or_default();

    // 500 requests are scheduled in the measured second; those still unanswered when it
    // ends are not counted.
    let lb_rps: f64 = field(last, "lb_rps").parse().unwrap();
    assert!((350.0..=510.0).contains(&lb_rps), "{stdout}");
    let _: f64 = field(last, "added_p99_ms").parse().unwrap();
    assert_eq!(field(last, "haproxy_rps"), "-", "{stdout}");
    assert_eq!(field(last, "haproxy_added_p99_ms"), "-", "{stdout}");
    assert_eq!(field(errors, "direct_errors"), "0", "{stdout}");
    assert_eq!(field(errors, "lb_errors"), "0", "{stdout}");
    // The rate sent to the direct baseline: the column after req/s.
    let direct_row = lines
        .iter()
        .find(|l| l.contains("direct"))
        .unwrap_or_else(|| panic!("no direct row in {stdout}"));
    let sent: f64 = direct_row
        .split('|')
        .nth(3)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sent/s in {direct_row:?}"));
    assert!((350.0..=510.0).contains(&sent), "{stdout}");
}

#[test]
fn bench_lb_refuses_a_rate_out_of_bounds() {
    for rate in ["0", "-5", "NaN", "1000001"] {
        let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["bench", "lb", "--no-haproxy", &format!("--rate={rate}")])
            .env("FLOTILLA_LOG", "warn")
            .output()
            .expect("run flotilla bench lb");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--rate {rate} was accepted");
        assert!(stderr.contains("--rate must be"), "--rate {rate}: {stderr}");
    }
}
