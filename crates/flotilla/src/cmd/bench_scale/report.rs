//! The report of `flotilla bench scale`: the table of figures against their goals, then
//! the headline figures as the last line (what `crates/flotilla/tests/bench_scale.rs` reads).

use comfy_table::Table;

use crate::cmd::bench::percentile;

use super::{Figures, ScaleBenchArgs};

/// `p50 X ms, p99 Y ms` of the sorted latencies `sorted` (microseconds), in
/// milliseconds with `decimals` decimals.
pub(super) fn p50_p99(sorted: &[u64], decimals: usize) -> String {
    format!(
        "p50 {:.decimals$} ms, p99 {:.decimals$} ms",
        percentile(sorted, 0.5),
        percentile(sorted, 0.99)
    )
}

/// Prints the table, then the figures as the last line.
#[allow(clippy::cast_precision_loss)]
pub(super) fn print(args: &ScaleBenchArgs, fig: &Figures) {
    let ms = |v: &[u64], p| percentile(v, p);
    let p50_p99_or_na = |v: &[u64]| {
        if v.is_empty() {
            "n/a".to_owned()
        } else {
            p50_p99(v, 1)
        }
    };
    let mb = |kb: u64| kb as f64 / 1024.0;
    let mut table = Table::new();
    table.set_header(["measurement", "figure", "goal"]);
    let mut row = |a: String, b: String, c: &str| {
        table.add_row([a, b, c.to_owned()]);
    };
    row(
        "instances registered".into(),
        format!(
            "{} in {:.1} s ({:.0}/s)",
            args.instances,
            fig.register_secs,
            args.instances as f64 / fig.register_secs.max(1e-9)
        ),
        "",
    );
    row(
        "services created".into(),
        format!("{} in {:.1} s", args.services, fig.create_secs),
        "",
    );
    row(
        "all tasks RUNNING".into(),
        format!(
            "{} in {:.1} s ({:.0}/s)",
            args.tasks,
            fig.running_secs,
            args.tasks as f64 / fig.running_secs.max(1e-9)
        ),
        "",
    );
    row(
        "server RSS (VmRSS)".into(),
        format!(
            "{:.1} MB ({:.1} MB heap/stacks, {:.1} MB file pages; peak {:.1} MB)",
            mb(fig.rss.rss_kb),
            mb(fig.rss.anon_kb),
            mb(fig.rss.file_kb),
            mb(fig.rss.hwm_kb)
        ),
        "< 512 MB",
    );
    if let Some(bytes) = fig.store_bytes {
        row(
            "store file (state.redb)".into(),
            format!("{:.1} MB", bytes as f64 / 1e6),
            "",
        );
    }
    row(
        format!("server CPU, quiet window of {:.0} s", fig.quiet_secs),
        format!(
            "{:.2} % of one core: writer thread {:.2} %, API threads (polls) {:.2} % ({:.0} polls/s answered, {} with a change; after {:.0} s of settling; bench itself {:.1} %)",
            fig.cpu_pct,
            fig.writer_cpu_pct,
            fig.api_cpu_pct,
            fig.quiet_polls as f64 / fig.quiet_secs.max(1e-9),
            fig.quiet_changed,
            fig.settle_secs,
            fig.bench_cpu_pct
        ),
        "< 10 %",
    );
    row(
        "UpdateService → new task appears".into(),
        format!(
            "{}, max {:.1} ms ({} updates, {} timed out)",
            p50_p99(&fig.appeared, 1),
            ms(&fig.appeared, 1.0),
            fig.appeared.len(),
            fig.timeouts
        ),
        "p99 < 1000 ms",
    );
    for (measurement, latencies) in [
        ("  … handed to its agent by PollTasks", &fig.seen),
        ("  … reported RUNNING", &fig.running),
        ("  UpdateService answered", &fig.update_answer),
    ] {
        row(measurement.into(), p50_p99_or_na(latencies), "");
    }
    row(
        "ListTasks page of 100".into(),
        format!(
            "{} ({} pages, {} tasks)",
            p50_p99(&fig.list, 2),
            fig.list.len(),
            fig.listed
        ),
        "",
    );
    row("DescribeTasks of 100".into(), p50_p99(&fig.describe, 2), "");
    row(
        "agents' polls".into(),
        format!(
            "wait {} s, {} in flight at most; {} poll errors, {} reports retried, {} refused; {} STOPPED reports",
            fig.wait_seconds,
            fig.poll_slots.min(args.instances),
            fig.poll_errors,
            fig.report_retries,
            fig.report_errors,
            fig.stopped_reports
        ),
        "",
    );
    println!(
        "flotilla bench scale — {} instances, {} tasks, {} services, {} cores",
        args.instances,
        args.tasks,
        args.services,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    println!("{table}");
    println!(
        "rss_mb={:.1} agent_cpu_pct={:.2} reconcile_p99_ms={:.1} list_tasks_p99_ms={:.2}",
        mb(fig.rss.rss_kb),
        fig.cpu_pct,
        ms(&fig.appeared, 0.99),
        ms(&fig.list, 0.99)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p50_and_p99_are_milliseconds_with_the_given_decimals() {
        let sorted = [1_000, 2_000, 3_000];
        assert_eq!(p50_p99(&sorted, 1), "p50 2.0 ms, p99 3.0 ms");
        assert_eq!(p50_p99(&sorted, 2), "p50 2.00 ms, p99 3.00 ms");
    }
}
