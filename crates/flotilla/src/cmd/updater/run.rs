//! `flotilla updater run`: observe, decide (the `rollout` crate), carry out, record,
//! again. Every step is an event (tracing + `events.jsonl`); the state is saved after
//! each action, so a stopped updater continues where it was.

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use rollout::{Action, Decision, Event, Policy, StandalonePolicy, State, Window, WindowStatus};

use super::Target;
use super::execute::execute;
use super::files::StateFiles;
use super::observe::{self, Refresh};
use super::status::print_plan;

/// Between two decisions while waiting.
const STEP: Duration = Duration::from_secs(2);

/// Arguments of `flotilla updater run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// Nodes updated at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    max_unavailable: u16,
    /// Maintenance window `CRON/DURATION` (UTC): new nodes start only while it is open,
    /// e.g. `0 2 * * */3h` (02:00–05:00 every day). A node in progress is finished.
    #[arg(long, value_parser = parse_window)]
    window: Option<Window>,
    /// What to do with a node that runs standalone (non-service) tasks: `skip` it for
    /// now, or drain it and `wait` until those tasks stop.
    #[arg(long, value_enum, default_value_t = StandaloneTasks::Skip)]
    standalone_tasks: StandaloneTasks,
    /// Seconds a rebooted node may take to come back before the rollout halts.
    #[arg(long, default_value_t = 600)]
    node_timeout: u64,
    /// Seconds service tasks may take to leave a draining node before it is given back.
    #[arg(long, default_value_t = 1800)]
    drain_timeout: u64,
    /// Seconds between two looks for updates (without `--once`).
    #[arg(long, default_value_t = 300)]
    interval: u64,
    /// Exit when every node with an update is updated or skipped (0), or on a halt (1).
    #[arg(long)]
    once: bool,
    /// Print the plan (nodes in order, what happens to each) and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `--standalone-tasks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StandaloneTasks {
    Skip,
    Wait,
}

fn parse_window(s: &str) -> Result<Window, rollout::Error> {
    s.parse()
}

impl RunArgs {
    fn policy(&self) -> Policy {
        Policy {
            max_unavailable: usize::from(self.max_unavailable),
            standalone_tasks: match self.standalone_tasks {
                StandaloneTasks::Skip => StandalonePolicy::Skip,
                StandaloneTasks::Wait => StandalonePolicy::Wait,
            },
            window: self.window.clone(),
            node_timeout: jiff::SignedDuration::from_secs(secs(self.node_timeout)),
            drain_timeout: jiff::SignedDuration::from_secs(secs(self.drain_timeout)),
            retry_skipped_after: (!self.once)
                .then(|| jiff::SignedDuration::from_secs(secs(self.interval))),
        }
    }
}

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

/// Runs the updater until done (`--once`), halted (`--once`) or killed.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let policy = args.policy();
    policy.validate()?;
    let files = StateFiles::open(&args.target.state_dir()?)?;
    let ecs = args.target.client()?;
    let mut state = files.load()?;
    if args.dry_run {
        let snapshot = observe::snapshot(&ecs, &state, Refresh::Nodes).await?;
        print_plan(&rollout::plan(&snapshot, &state, &policy, Timestamp::now()));
        return Ok(());
    }
    state.start_run();
    files.save(&state)?;
    let run = Run {
        files,
        bar: progress_bar(),
        started: Timestamp::now(),
    };
    run.record(
        None,
        "start",
        &format!("updater started for cluster {}", args.target.cluster),
    )?;
    let mut refresh = Refresh::Nodes;
    let mut last_wait = String::new();
    loop {
        let snapshot = observe::snapshot(&ecs, &state, refresh).await?;
        refresh = Refresh::WhenMissing;
        run.show(&snapshot, &state);
        let mut waited = String::new();
        match rollout::decide(&snapshot, &state, &policy, Timestamp::now()) {
            Decision::Act(action) => {
                if matches!(action, Action::Halt { .. }) {
                    // Recorded before the calls: a halt must stick even if they fail.
                    run.finish(&mut state, &action)?;
                    execute(&ecs, &action).await?;
                } else if let Some(halt) = execute(&ecs, &action).await? {
                    run.finish(&mut state, &halt)?;
                    execute(&ecs, &halt).await?;
                } else {
                    run.finish(&mut state, &action)?;
                }
                continue;
            }
            Decision::Wait { reason } => {
                waited = reason;
                if waited != last_wait {
                    run.record(None, "wait", &waited)?;
                }
                run.bar.set_message(format!("waiting: {waited}"));
                tokio::time::sleep(STEP).await;
            }
            Decision::OutsideWindow { opens_at } => {
                let why = match opens_at {
                    Some(at) => format!("maintenance window closed; opens at {at}"),
                    None => "maintenance window never opens again".to_owned(),
                };
                waited = why.clone();
                if waited != last_wait {
                    run.record(None, "window", &why)?;
                }
                run.bar.set_message(why);
                tokio::time::sleep(until(opens_at, policy.window.as_ref())).await;
            }
            Decision::Halted(halt) => {
                if args.once {
                    run.bar.finish_and_clear();
                    bail!(
                        "halted on node {}: {} (fix it, then `flotilla updater resume --cluster {}`)",
                        halt.instance_id,
                        halt.reason,
                        args.target.cluster
                    );
                }
                waited = format!("halted on node {}: {}", halt.instance_id, halt.reason);
                if waited != last_wait {
                    run.record(Some(halt.instance_id.clone()), "halted", &waited)?;
                }
                run.bar
                    .set_message(format!("{waited}; waiting for `updater resume`"));
                tokio::time::sleep(STEP * 5).await;
                // `updater resume` clears the halt in the file.
                state = run.files.load()?;
            }
            Decision::Done => {
                run.record(None, "done", &run.summary(&state))?;
                if args.once {
                    run.bar.finish_and_clear();
                    println!("{}", run.summary(&state));
                    return Ok(());
                }
                run.bar.set_message("up to date; next look in a while");
                tokio::time::sleep(Duration::from_secs(args.interval)).await;
                refresh = Refresh::Nodes;
            }
        }
        last_wait = waited;
    }
}

/// How long to sleep while the window is closed: until it opens, at most a minute.
fn until(opens_at: Option<Timestamp>, window: Option<&Window>) -> Duration {
    let now = Timestamp::now();
    let left = opens_at
        .map(|at| at.duration_since(now))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::from_secs(60));
    // Re-check at once if the window opened meanwhile.
    if window.is_some_and(|w| matches!(w.status(now), WindowStatus::Open { .. })) {
        return STEP;
    }
    left.clamp(STEP, Duration::from_secs(60))
}

/// One run's output: events, progress bar.
struct Run {
    files: StateFiles,
    bar: ProgressBar,
    started: Timestamp,
}

impl Run {
    /// Records an action as carried out: state saved, event written.
    fn finish(&self, state: &mut State, action: &Action) -> anyhow::Result<()> {
        state.record(action, Timestamp::now());
        self.files.save(state)?;
        self.record(
            Some(action.instance_id().to_owned()),
            action.what(),
            &action.why(),
        )
    }

    /// An event: through tracing (above the progress bar) and into `events.jsonl`.
    fn record(&self, node: Option<String>, what: &str, why: &str) -> anyhow::Result<()> {
        let event = Event {
            at: Timestamp::now(),
            node,
            what: what.to_owned(),
            why: why.to_owned(),
        };
        self.bar.suspend(|| match &event.node {
            Some(node) => tracing::info!(node = %node, "{what}: {why}"),
            None => tracing::info!("{what}: {why}"),
        });
        if let Some(node) = &event.node {
            self.bar.set_message(format!("{node}: {what}"));
        }
        self.files.append(&event)
    }

    /// Updates the bar: nodes finished in this run over those finished or to do.
    fn show(&self, snapshot: &rollout::Snapshot, state: &State) {
        let finished = self.finished(state);
        let to_do = snapshot
            .nodes
            .iter()
            .filter(|n| {
                state.in_progress.contains_key(&n.arn)
                    || (n.update.pending_version().is_some() && !state.skipped.contains_key(&n.arn))
            })
            .count();
        self.bar.set_length((finished + to_do) as u64);
        self.bar.set_position(finished as u64);
    }

    fn finished(&self, state: &State) -> usize {
        let updated = state
            .updated
            .values()
            .filter(|u| u.at >= self.started)
            .count();
        updated + state.skipped.len()
    }

    fn summary(&self, state: &State) -> String {
        let updated: Vec<String> = state
            .updated
            .values()
            .filter(|u| u.at >= self.started)
            .map(|u| format!("{} → {}", u.instance_id, u.to_version))
            .collect();
        let skipped: Vec<String> = state
            .skipped
            .values()
            .map(|s| format!("{} ({})", s.instance_id, s.reason))
            .collect();
        format!(
            "done: {} node(s) updated{}; {} skipped{}",
            updated.len(),
            list(&updated),
            skipped.len(),
            list(&skipped)
        )
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(": {}", items.join(", "))
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} nodes  {wide_msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}
