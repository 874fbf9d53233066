//! Container health checks: the pure state machine that turns check results into a
//! health status (Docker's and ECS's rules), and the loop that runs the check inside the
//! container with the runtime's exec.
//!
//! Rules: the status starts UNKNOWN; a passing check makes it HEALTHY and clears the
//! failure count; `retries` consecutive failures make it UNHEALTHY; failures inside
//! `startPeriod` do not count (a pass during it still counts).

use std::sync::Arc;
use std::time::Duration;

use model::wire::{self, HealthStatus};
use runtime::ContainerRuntime;
use runtime::types::{ContainerId, HealthCheckCommand};
use tokio::sync::mpsc;

/// A container's health check settings, with ECS's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSettings {
    /// What to run.
    pub command: HealthCheckCommand,
    /// Time between checks (default 30 s).
    pub interval: Duration,
    /// Time a check may take (default 5 s).
    pub timeout: Duration,
    /// Consecutive failures that make the container UNHEALTHY (default 3).
    pub retries: u32,
    /// Grace period after start in which failures do not count (default 0).
    pub start_period: Duration,
}

impl CheckSettings {
    /// From a task definition's `healthCheck`; `None` for none or `["NONE"]`.
    pub fn from_ecs(hc: &wire::HealthCheck) -> Option<CheckSettings> {
        let cmd = hc.command.as_deref()?;
        if cmd.first().map(String::as_str) == Some("NONE") {
            return None;
        }
        let secs = |v: Option<i32>, default: u64| {
            v.and_then(|v| u64::try_from(v).ok())
                .map_or(Duration::from_secs(default), Duration::from_secs)
        };
        Some(CheckSettings {
            command: HealthCheckCommand::from_ecs(cmd).ok()?,
            interval: secs(hc.interval, 30),
            timeout: secs(hc.timeout, 5),
            retries: hc
                .retries
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(3)
                .max(1),
            start_period: secs(hc.start_period, 0),
        })
    }
}

/// The health of one container, fed with check results.
#[derive(Debug, Clone)]
pub struct Tracker {
    retries: u32,
    start_period: Duration,
    failures: u32,
    status: HealthStatus,
}

impl Tracker {
    /// A tracker in state UNKNOWN.
    pub fn new(retries: u32, start_period: Duration) -> Tracker {
        Tracker {
            retries,
            start_period,
            failures: 0,
            status: HealthStatus::Unknown,
        }
    }

    /// Records one check result, `since_start` after the container started; returns the
    /// new status when it changed.
    pub fn observe(&mut self, passed: bool, since_start: Duration) -> Option<HealthStatus> {
        let next = if passed {
            self.failures = 0;
            HealthStatus::Healthy
        } else if since_start < self.start_period {
            self.status
        } else {
            self.failures += 1;
            if self.failures >= self.retries {
                HealthStatus::Unhealthy
            } else {
                self.status
            }
        };
        (next != self.status).then(|| {
            self.status = next;
            next
        })
    }
}

/// Runs a container's health check until the receiver is gone, sending each change of
/// status as `(container name, status)`.
pub async fn run_checks(
    runtime: Arc<dyn ContainerRuntime>,
    id: ContainerId,
    name: String,
    settings: CheckSettings,
    changes: mpsc::Sender<(String, HealthStatus)>,
) {
    let started = tokio::time::Instant::now();
    let mut tracker = Tracker::new(settings.retries, settings.start_period);
    let exec = settings.command.to_exec(settings.timeout);
    loop {
        let passed = runtime.exec(&id, &exec).await.is_ok_and(|r| r.success());
        if let Some(status) = tracker.observe(passed, started.elapsed())
            && changes.send((name.clone(), status)).await.is_err()
        {
            return;
        }
        tokio::time::sleep(settings.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn passes_make_it_healthy_and_retries_failures_unhealthy() {
        let mut t = Tracker::new(3, Duration::ZERO);
        assert_eq!(t.observe(true, S), Some(HealthStatus::Healthy));
        assert_eq!(t.observe(true, S), None);
        assert_eq!(t.observe(false, S), None);
        assert_eq!(t.observe(false, S), None);
        assert_eq!(t.observe(false, S), Some(HealthStatus::Unhealthy));
        assert_eq!(t.observe(true, S), Some(HealthStatus::Healthy));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut t = Tracker::new(1, Duration::from_secs(10));
        assert_eq!(t.observe(false, Duration::from_secs(2)), None);
        assert_eq!(t.observe(false, Duration::from_secs(5)), None);
        assert_eq!(
            t.observe(false, Duration::from_secs(11)),
            Some(HealthStatus::Unhealthy)
        );
    }

    #[test]
    fn settings_take_ecs_defaults_and_none_disables() {
        let hc = wire::HealthCheck {
            command: Some(vec!["CMD-SHELL".into(), "true".into()]),
            ..Default::default()
        };
        let s = CheckSettings::from_ecs(&hc).unwrap();
        assert_eq!(
            (s.interval, s.timeout, s.retries, s.start_period),
            (
                Duration::from_secs(30),
                Duration::from_secs(5),
                3,
                Duration::ZERO
            )
        );
        let none = wire::HealthCheck {
            command: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert!(CheckSettings::from_ecs(&none).is_none());
    }
}
