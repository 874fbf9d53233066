//! The alarm evaluation timer: the only IO of CloudWatch's alarms. Every
//! [`EVALUATION_TICK`] it looks (a read) whether an alarm's state is due to change by
//! time alone — its datapoints ageing out of its window, SetAlarmState's hold ending —
//! and if so writes [`evaluate_alarms`] through the single writer. Writes and new
//! datapoints evaluate their alarms at once; the timer only covers the passing of time.
//! It runs where the controllers run (the leader, with several servers).

use std::time::Duration;

use super::evaluate::{evaluate_alarms, reevaluated};
use crate::engine::ControlPlane;
use crate::state::{Scope, State};

/// How often alarms are looked at.
pub const EVALUATION_TICK: Duration = Duration::from_secs(10);

/// Whether some alarm's state changes at `now`.
pub fn any_due(state: &State, now: f64) -> bool {
    state
        .discovery
        .cloudwatch
        .alarms
        .values()
        .any(|a| reevaluated(state, a, now).is_some())
}

/// Starts the timer with `tick`; it runs until the task is aborted.
pub fn spawn_alarm_evaluator(cp: ControlPlane, tick: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(tick);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let now = cp.now();
            if !cp.read(|s| any_due(s, now)) {
                continue;
            }
            match cp
                .write(Scope::new("", ""), |state, ctx| {
                    evaluate_alarms(state, ctx, ())
                })
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(changed = n, "cloudwatch: alarm states changed"),
                Err(e) => tracing::warn!(error = %e, "alarm evaluation failed; retrying later"),
            }
        }
    })
}
