//! `flotilla updater run`: observe, decide (the `rollout` crate), carry out, record,
//! again. Every step is an event (tracing + the stored events); the state is stored in
//! the control plane after each action (`store`), so a stopped updater — or another copy
//! of it, such as the ECS service's replacement task — continues where it was.

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use rollout::{Action, Decision, Event, Policy, StandalonePolicy, State, Window, WindowStatus};

use super::Target;
use super::ecs::Ecs;
use super::execute::execute;
use super::observe::{self, Refresh};
use super::status::print_plan;
use super::store::{self, Store};

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

/// Runs the updater until done (`--once`), halted (`--once`), or stopped (SIGTERM,
/// SIGINT: it gives its lease up first, so that a replacement goes on at once).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let policy = args.policy();
    policy.validate()?;
    let ecs = args.target.client()?;
    if args.dry_run {
        let state = store::read(&ecs).await?.doc.state;
        let snapshot = observe::snapshot(&ecs, &state, Refresh::Nodes).await?;
        print_plan(&rollout::plan(&snapshot, &state, &policy, Timestamp::now()));
        return Ok(());
    }
    let run = Run {
        bar: progress_bar(),
        started: Timestamp::now(),
    };
    let waiting = |why: &str| run.bar.set_message(format!("waiting: {why}"));
    let mut store = tokio::select! {
        store = Store::acquire(&ecs, &waiting) => store?,
        signal = stopped() => {
            run.bar.finish_and_clear();
            println!("stopped ({signal}) while waiting for the lease");
            return Ok(());
        }
    };
    let outcome = tokio::select! {
        outcome = rollout_loop(&args, &policy, &ecs, &mut store, &run) => outcome,
        signal = stopped() => Ok(Some(format!("stopped ({signal})"))),
    };
    run.bar.finish_and_clear();
    if let Err(e) = store.release().await {
        tracing::warn!(
            "could not give the lease up (it ends by itself in {} s): {e:#}",
            store::LEASE.as_secs()
        );
    }
    if let Some(message) = outcome? {
        println!("{message}");
    }
    Ok(())
}

/// SIGTERM (ECS stopping the updater's task) or SIGINT; its name.
async fn stopped() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Observes, decides, carries out, records, until done or halted with `--once`
/// (`Ok(Some(summary))`, or the halt as an error).
async fn rollout_loop(
    args: &RunArgs,
    policy: &Policy,
    ecs: &Ecs,
    store: &mut Store<'_>,
    run: &Run,
) -> anyhow::Result<Option<String>> {
    store.update(&|d| d.state.start_run()).await?;
    run.record(
        store,
        None,
        "start",
        &format!(
            "updater {} started for cluster {}",
            store.holder(),
            args.target.cluster
        ),
    )
    .await?;
    let mut refresh = Refresh::Nodes;
    let mut last_wait = String::new();
    loop {
        let state = store.state().clone();
        let snapshot = observe::snapshot(ecs, &state, refresh).await?;
        refresh = Refresh::WhenMissing;
        run.show(&snapshot, &state);
        match rollout::decide(&snapshot, &state, policy, Timestamp::now()) {
            Decision::Act(action) => {
                if matches!(action, Action::Halt { .. }) {
                    // Recorded before the calls: a halt must stick even if they fail.
                    run.finish(store, &action).await?;
                    execute(ecs, &action).await?;
                } else if let Some(halt) = execute(ecs, &action).await? {
                    run.finish(store, &halt).await?;
                    execute(ecs, &halt).await?;
                } else {
                    run.finish(store, &action).await?;
                }
                continue;
            }
            Decision::Wait { reason } => {
                run.note(store, &mut last_wait, None, "wait", &reason)
                    .await?;
                run.bar.set_message(format!("waiting: {reason}"));
                store.sleep(STEP).await?;
            }
            Decision::OutsideWindow { opens_at } => {
                let why = match opens_at {
                    Some(at) => format!("maintenance window closed; opens at {at}"),
                    None => "maintenance window never opens again".to_owned(),
                };
                run.note(store, &mut last_wait, None, "window", &why)
                    .await?;
                run.bar.set_message(why);
                store.sleep(until(opens_at, policy.window.as_ref())).await?;
            }
            Decision::Halted(halt) => {
                if args.once {
                    bail!(
                        "halted on node {}: {} (fix it, then `flotilla updater resume --cluster {}`)",
                        halt.instance_id,
                        halt.reason,
                        args.target.cluster
                    );
                }
                let waited = format!("halted on node {}: {}", halt.instance_id, halt.reason);
                let node = Some(halt.instance_id.clone());
                run.note(store, &mut last_wait, node, "halted", &waited)
                    .await?;
                run.bar
                    .set_message(format!("{waited}; waiting for `updater resume`"));
                store.sleep(STEP * 5).await?;
                // `updater resume` clears the halt in the control plane.
                store.reload().await?;
            }
            Decision::Done => {
                let summary = run.summary(&state);
                if args.once {
                    run.record(store, None, "done", &summary).await?;
                    return Ok(Some(summary));
                }
                // Once per outcome, not once per look.
                run.note(store, &mut last_wait, None, "done", &summary)
                    .await?;
                run.bar.set_message("up to date; next look in a while");
                store.sleep(Duration::from_secs(args.interval)).await?;
                refresh = Refresh::Nodes;
            }
        }
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
    bar: ProgressBar,
    started: Timestamp,
}

impl Run {
    /// Records an action as carried out: the state and its event stored together.
    async fn finish(&self, store: &mut Store<'_>, action: &Action) -> anyhow::Result<()> {
        let event = self.event(
            Some(action.instance_id().to_owned()),
            action.what(),
            &action.why(),
        );
        let now = Timestamp::now();
        store
            .update(&|d| {
                d.state.record(action, now);
                d.push(event.clone());
            })
            .await
            .map(|_| ())
    }

    /// An event: through tracing (above the progress bar) and into the stored events.
    async fn record(
        &self,
        store: &mut Store<'_>,
        node: Option<String>,
        what: &str,
        why: &str,
    ) -> anyhow::Result<()> {
        store.record(self.event(node, what, why)).await
    }

    /// Records a waiting event once per reason in a row: only when `why` differs from
    /// `last`, the reason recorded last (which it then becomes).
    async fn note(
        &self,
        store: &mut Store<'_>,
        last: &mut String,
        node: Option<String>,
        what: &str,
        why: &str,
    ) -> anyhow::Result<()> {
        if last != why {
            self.record(store, node, what, why).await?;
            why.clone_into(last);
        }
        Ok(())
    }

    /// Makes an event and shows it.
    fn event(&self, node: Option<String>, what: &str, why: &str) -> Event {
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
        event
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
