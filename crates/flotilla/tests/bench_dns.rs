//! Smoke test of `flotilla bench dns` at a tiny size: the bench checks flotilla's answers
//! itself (every service's A set and SRV ports, NXDOMAIN + SOA) and fails otherwise; here it
//! must exit 0 and print its last line with a positive queries/s. The NSD row is skipped
//! when `nsd` or `dnsperf` is not installed.

use std::path::Path;
use std::process::Command;

fn installed(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(tool).is_file())
}

#[test]
fn bench_dns_runs_at_a_tiny_size() {
    let with_nsd = installed("nsd") && installed("dnsperf");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args([
        "bench",
        "dns",
        "--seconds",
        "0.5",
        "--latency-seconds",
        "0.3",
        "--services",
        "5",
        "--instances",
        "3",
    ]);
    if !with_nsd {
        eprintln!("nsd or dnsperf not installed: measuring flotilla only");
        cmd.arg("--no-nsd");
    }
    let out = cmd.output().expect("run flotilla bench dns");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench dns failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    let field = |key: &str| {
        last.split(' ')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {last:?}"))
    };
    let dns_qps: f64 = field("dns_qps").parse().expect("dns_qps is a number");
    assert!(dns_qps > 0.0, "{last}");
    let p99: f64 = field("p99_ms").parse().expect("p99_ms is a number");
    assert!(p99 > 0.0, "{last}");
    if with_nsd {
        let nsd_qps: f64 = field("nsd_qps").parse().expect("nsd_qps is a number");
        assert!(nsd_qps > 0.0, "{last}");
        let _: f64 = field("ratio").parse().expect("ratio is a number");
    } else {
        assert_eq!(field("nsd_qps"), "na", "{last}");
    }
}
