//! When a service needs its next pass by time alone (`requeue_after`): a rollout's task
//! turning healthy after 40 s, a grace period ending, protection lapsing, a placement to
//! retry. The runner turns the earliest into a wake-up, so no timer polls idle services.

use super::*;

impl<'a> Pass<'a> {
    /// Asks for another pass at `at` (epoch seconds) unless an earlier one is asked for.
    pub(super) fn wake(&mut self, at: f64) {
        let at = at.max(self.now);
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    /// The times at which a task's standing changes by time alone: a rollout's new task
    /// counting as healthy after [`HEALTHY_AFTER_SECS`], an UNHEALTHY task's grace period
    /// ending, scale-in protection lapsing.
    pub(super) fn wake_for_time(&mut self) {
        let grace = self.grace();
        let mut times = Vec::new();
        for t in self.tasks.iter().filter(|t| self.wanted(t)) {
            let Some(started) = t.task.started_at.filter(|_| is_running(&t.task)) else {
                continue;
            };
            match t.task.health_status {
                Some(HealthStatus::Healthy) => {}
                Some(HealthStatus::Unhealthy) => times.push(started + grace),
                _ if !self.rolled_out(t) => times.push(started + HEALTHY_AFTER_SECS),
                _ => {}
            }
            if let Some(until) = protected_until(&t.task) {
                times.push(until);
            }
        }
        times.extend(self.lb_wake_times());
        let now = self.now;
        for at in times.into_iter().filter(|&at| at > now) {
            self.wake(at);
        }
        if self.placement_failed {
            self.wake(self.now + PLACEMENT_RETRY_SECS);
        }
    }
}
