//! `flotilla server --scaling-hook CMD`: managed scaling's runner. It runs the pure
//! decision of [`controlplane::managed_scaling`] for every managed capacity provider
//! every [`PASS_EVERY`] and after changes (at most once per [`MIN_GAP`]), and carries
//! out its steps: an instance to drain is set DRAINING through the single writer; a
//! scale-out or a removal runs the operator's hook, outside the writer, and its outcome
//! is written back (the scale-out's time, for the warm-up; a removed instance
//! deregistered; a failure on the provider's `updateStatusReason`).
//!
//! The hook contract (docs/capacity.md):
//!
//! - `CMD grow GROUP COUNT`: add `COUNT` (1–10000, the provider's step sizes) instances
//!   to node group `GROUP`; they should register with attribute
//!   `flotilla.node-group=GROUP` in the cluster named by `FLOTILLA_CLUSTER`.
//! - `CMD remove GROUP INSTANCE_ID`: remove the instance whose `ec2InstanceId` is
//!   `INSTANCE_ID` (`FLOTILLA_CONTAINER_INSTANCE_ARN` names its container instance);
//!   flotilla deregisters the container instance when the hook succeeds.
//! - Environment: `FLOTILLA_CAPACITY_PROVIDER`, `FLOTILLA_CLUSTER`, `FLOTILLA_ACCOUNT`,
//!   `FLOTILLA_REGION` (and `FLOTILLA_CONTAINER_INSTANCE_ARN` for `remove`); stdin is
//!   empty; the working directory is the server's.
//! - Exit status 0: done (the request was accepted; the instances may still be
//!   starting). Anything else, a signal, or running past [`HOOK_TIMEOUT`] (the hook is
//!   killed): failed. A failure is logged with the first [`MAX_OUTPUT`] bytes of its
//!   output, shown on the provider's `updateStatusReason`, and the same call is retried
//!   after a backoff of [`BACKOFF_FIRST`] doubling to [`BACKOFF_MAX`] (when the decision
//!   still asks for it).
//!
//! `CMD` is split on whitespace (no quoting): a program and its leading arguments. One
//! hook runs at a time; one pass makes at most one `grow` and
//! [`MAX_REMOVALS_PER_PASS`](controlplane::managed_scaling::MAX_REMOVALS_PER_PASS)
//! `remove` calls per provider. Without `--scaling-hook`, decisions are only logged.
//! Every change of a provider's CapacityProviderReservation is logged (target
//! `flotilla::capacity`): flotilla has no CloudWatch to publish it to.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};

use controlplane::ControlPlane;
use controlplane::managed_scaling::Step;
use controlplane::managed_scaling::observe::{ProviderPlan, plans};
use controlplane::managed_scaling::writes::{drain, removed, report_hook, scaled_out};
use controlplane::state::{CapacityProviderKey, Change, Record};
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// How often the decision runs without a change.
pub const PASS_EVERY: Duration = Duration::from_secs(5);
/// The least time between two passes (changes come in bursts).
pub const MIN_GAP: Duration = Duration::from_secs(1);
/// How long one hook call may run before it is killed and counts as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// The first wait before a failed hook call is tried again.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between tries of a failing hook call.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The most bytes of a hook's output (stdout, then stderr) kept for logs and reasons.
pub const MAX_OUTPUT: usize = 4096;

/// The operator's scaling hook: a program and its leading arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalingHook {
    /// The program and the arguments before flotilla's.
    pub argv: Vec<String>,
}

impl std::str::FromStr for ScalingHook {
    type Err = String;
    fn from_str(s: &str) -> Result<ScalingHook, String> {
        let argv: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        if argv.is_empty() {
            return Err("the scaling hook command is empty".into());
        }
        Ok(ScalingHook { argv })
    }
}

/// One call of the hook: its arguments after the command and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    /// `grow GROUP COUNT` or `remove GROUP INSTANCE_ID`.
    pub args: Vec<String>,
    /// `FLOTILLA_*` variables.
    pub env: Vec<(String, String)>,
}

impl ScalingHook {
    /// Runs `call` to its end or [`HOOK_TIMEOUT`]: `Ok(())` on exit status 0, else why
    /// not, with the start of its output.
    pub async fn run(&self, call: &HookCall) -> Result<(), String> {
        self.run_with_timeout(call, HOOK_TIMEOUT).await
    }

    async fn run_with_timeout(&self, call: &HookCall, timeout: Duration) -> Result<(), String> {
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .args(&call.args)
            .envs(call.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.argv[0]))?;
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let ran = tokio::time::timeout(timeout, async {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            let read_out = read_bounded(out.as_mut(), &mut o);
            let read_err = read_bounded(err.as_mut(), &mut e);
            let (_, _, status) = tokio::join!(read_out, read_err, child.wait());
            (status, o, e)
        })
        .await;
        let Ok((status, o, e)) = ran else {
            // `kill_on_drop` ends it with the future; wait for it not to linger.
            let _ = child.kill().await;
            return Err(format!("timed out after {} s", timeout.as_secs()));
        };
        let status = status.map_err(|e| format!("cannot wait for the hook: {e}"))?;
        if status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&o).trim().to_owned();
        let e = String::from_utf8_lossy(&e);
        if !e.trim().is_empty() {
            if !output.is_empty() {
                output.push_str(" / ");
            }
            output.push_str(e.trim());
        }
        let output: String = output.chars().take(MAX_OUTPUT).collect();
        Err(match status.code() {
            Some(c) => format!("exit status {c}: {output}"),
            None => format!("killed by a signal: {output}"),
        })
    }
}

/// Reads `from` to its end, keeping the first [`MAX_OUTPUT`] bytes in `into`.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(from: Option<&mut R>, into: &mut Vec<u8>) {
    let Some(from) = from else { return };
    let mut buf = [0u8; 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(into.len());
                into.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// What the runner remembers between passes (in memory: a new leader starts afresh).
#[derive(Debug, Default)]
pub struct Runner {
    /// The last reservation logged, per provider.
    reservations: HashMap<CapacityProviderKey, u32>,
    /// Failing hook calls: `(failures, not before)`, by provider and call.
    backoff: HashMap<(CapacityProviderKey, Vec<String>), (u32, Instant)>,
    /// Providers already warned about a missing hook.
    warned: BTreeSet<CapacityProviderKey>,
}

fn env(p: &ProviderPlan, cluster: &str) -> Vec<(String, String)> {
    vec![
        ("FLOTILLA_CAPACITY_PROVIDER".into(), p.key.1.clone()),
        ("FLOTILLA_CLUSTER".into(), cluster.to_owned()),
        ("FLOTILLA_ACCOUNT".into(), p.key.0.account.to_string()),
        ("FLOTILLA_REGION".into(), p.key.0.region.to_string()),
    ]
}

/// Whether `arg` may be handed to the hook: 1–255 printable ASCII characters, not
/// starting with `-` (so that no group or instance id reads as an option).
pub fn safe_arg(arg: &str) -> bool {
    (1..=255).contains(&arg.len())
        && !arg.starts_with('-')
        && arg.bytes().all(|b| b.is_ascii_graphic())
}

impl Runner {
    /// One pass: decide for every managed provider and carry out the steps.
    pub async fn pass(&mut self, cp: &ControlPlane, hook: Option<&ScalingHook>) {
        let now = cp.now();
        let all = cp.read(|s| plans(s, now));
        let live: BTreeSet<&CapacityProviderKey> = all.iter().map(|p| &p.key).collect();
        self.reservations.retain(|k, _| live.contains(k));
        self.backoff.retain(|(k, _), _| live.contains(k));
        for p in &all {
            self.log_reservation(p);
            let Some(hook) = hook else {
                if !p.decision.steps.is_empty() && self.warned.insert(p.key.clone()) {
                    tracing::warn!(target: "flotilla::capacity", provider = %p.key.1,
                        steps = ?p.decision.steps,
                        "managed scaling is ENABLED but the server has no --scaling-hook: nothing is scaled");
                }
                continue;
            };
            self.carry_out(cp, hook, p).await;
        }
    }

    fn log_reservation(&mut self, p: &ProviderPlan) {
        let d = &p.decision;
        if self.reservations.insert(p.key.clone(), d.reservation) != Some(d.reservation) {
            tracing::info!(target: "flotilla::capacity", provider = %p.key.1, group = %p.group,
                reservation = d.reservation, target = p.settings.target_capacity,
                instances = d.n, needed = d.m, desired = d.desired,
                "CapacityProviderReservation");
        }
    }

    async fn carry_out(&mut self, cp: &ControlPlane, hook: &ScalingHook, p: &ProviderPlan) {
        let scope = p.key.0.clone();
        let name = p.key.1.clone();
        // DRAINING first, per cluster (at most MAX_REMOVALS_PER_PASS ids in all).
        let mut to_drain: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for step in &p.decision.steps {
            if let Step::Drain(i) = *step {
                let m = &p.members[i];
                to_drain
                    .entry(m.cluster.clone())
                    .or_default()
                    .push(m.id.clone());
            }
        }
        for (cluster, ids) in to_drain {
            tracing::info!(target: "flotilla::capacity", provider = %name, %cluster, instances = ?ids,
                "managed draining: setting instances DRAINING before their removal");
            let written = cp
                .write(scope.clone(), move |s, ctx| drain(s, ctx, &cluster, &ids))
                .await;
            if let Err(e) = written {
                tracing::warn!(target: "flotilla::capacity", provider = %name, error = %e, "cannot drain instances");
            }
        }
        for step in &p.decision.steps {
            let (args, cluster, extra) = match *step {
                Step::Drain(_) => continue,
                Step::Grow { count } => (
                    vec!["grow".into(), p.group.clone(), count.to_string()],
                    p.cluster.clone(),
                    None,
                ),
                Step::Remove(i) => {
                    let m = &p.members[i];
                    (
                        vec!["remove".into(), p.group.clone(), m.ec2_instance_id.clone()],
                        m.cluster.clone(),
                        Some(("FLOTILLA_CONTAINER_INSTANCE_ARN".to_owned(), m.arn.clone())),
                    )
                }
            };
            if let Some(bad) = args[1..].iter().find(|a| !safe_arg(a)) {
                let reason = format!(
                    "not calling the scaling hook with {bad:?}: hook arguments must be \
                     printable ASCII not starting with '-'"
                );
                tracing::warn!(target: "flotilla::capacity", provider = %name, "{reason}");
                let name2 = name.clone();
                let _ = cp
                    .write(scope.clone(), move |s, ctx| {
                        report_hook(s, ctx, &name2, Some(&reason))
                    })
                    .await;
                continue;
            }
            let key = (p.key.clone(), args.clone());
            if self
                .backoff
                .get(&key)
                .is_some_and(|(_, at)| Instant::now() < *at)
            {
                continue;
            }
            let mut call = HookCall {
                args,
                env: env(p, &cluster),
            };
            call.env.extend(extra);
            tracing::info!(target: "flotilla::capacity", provider = %name, args = ?call.args, "running the scaling hook");
            let outcome = hook.run(&call).await;
            let said = format!(
                "{}: {}",
                call.args.join(" "),
                outcome.as_ref().err().map_or("ok", |e| e)
            );
            match outcome {
                Ok(()) => {
                    self.backoff.remove(&key);
                    let name2 = name.clone();
                    let written = match *step {
                        Step::Grow { count } => {
                            cp.write(scope.clone(), move |s, ctx| {
                                scaled_out(s, ctx, &name2, count)
                            })
                            .await
                        }
                        Step::Remove(i) => {
                            let (cluster, id) =
                                (p.members[i].cluster.clone(), p.members[i].id.clone());
                            let gone = cp
                                .write(scope.clone(), move |s, ctx| removed(s, ctx, &cluster, &id))
                                .await;
                            let cleared = cp
                                .write(scope.clone(), move |s, ctx| {
                                    report_hook(s, ctx, &name2, None)
                                })
                                .await;
                            gone.and(cleared).map(|_| ())
                        }
                        Step::Drain(_) => Ok(()),
                    };
                    tracing::info!(target: "flotilla::capacity", provider = %name, "scaling hook done: {said}");
                    if let Err(e) = written {
                        tracing::warn!(target: "flotilla::capacity", provider = %name, error = %e,
                            "the scaling hook's outcome was not stored");
                    }
                }
                Err(_) => {
                    let failures = self.backoff.get(&key).map_or(0, |(f, _)| *f) + 1;
                    let wait = backoff_after(failures);
                    self.backoff.insert(key, (failures, Instant::now() + wait));
                    tracing::warn!(target: "flotilla::capacity", provider = %name, failures,
                        retry_in_s = wait.as_secs(), "scaling hook failed: {said}");
                    let name2 = name.clone();
                    let reason = format!("the scaling hook failed ({failures} in a row): {said}");
                    let _ = cp
                        .write(scope.clone(), move |s, ctx| {
                            report_hook(s, ctx, &name2, Some(&reason))
                        })
                        .await;
                }
            }
        }
    }
}

/// The wait after `failures` failures in a row: [`BACKOFF_FIRST`] doubling, at most
/// [`BACKOFF_MAX`].
pub fn backoff_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

fn touches_capacity(changes: &[Change]) -> bool {
    changes.iter().any(|c| match c {
        Change::Put(r) | Change::Delete(r) => matches!(
            r,
            Record::Instance(_)
                | Record::Task(_)
                | Record::Service(_)
                | Record::CapacityProvider(_)
                | Record::Cluster(_)
        ),
    })
}

/// Starts the runner (module doc) until the handle is aborted. Call inside the server's
/// runtime, on the leader only.
pub fn serve(cp: ControlPlane, hook: Option<ScalingHook>) -> tokio::task::JoinHandle<()> {
    let mut changes = cp.watch_changes();
    tokio::spawn(async move {
        let mut runner = Runner::default();
        let mut tick = tokio::time::interval(PASS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now() - MIN_GAP;
        loop {
            tokio::select! {
                batch = changes.recv() => match batch {
                    Ok(batch) if !touches_capacity(&batch) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {}
            }
            let since = last.elapsed();
            if since < MIN_GAP {
                tokio::time::sleep(MIN_GAP - since).await;
            }
            // What came in meanwhile is seen by this pass.
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = changes.try_recv() {}
            last = Instant::now();
            runner.pass(&cp, hook.as_ref()).await;
        }
    })
}

#[cfg(test)]
#[path = "capacity_scaling_tests.rs"]
mod tests;
