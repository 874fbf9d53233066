//! Per-target bookkeeping shared by the HTTP and TCP paths: the in-flight count, and
//! what a failed connection or a response tells health and outlier detection.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::config::TargetState;
use crate::outlier::{self, Observation};

use super::{GroupRt, TargetRt, TargetShared};

/// Decrements a target's in-flight count when dropped.
pub(crate) struct InFlight(Arc<TargetShared>);

impl InFlight {
    pub(crate) fn new(t: &Arc<TargetShared>) -> InFlight {
        t.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(t.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts how a request to `target` of `group` (which has outlier detection) ended, and
/// ejects the target when that crosses a threshold and the group's cap allows it.
pub(crate) fn observe_outlier(group: &GroupRt, target: &TargetRt, seen: Observation) {
    let Some(config) = &group.config.outlier_detection else {
        return;
    };
    let now = Instant::now();
    if seen == Observation::Success {
        target.shared.outlier.observe(seen, config, now, || false);
        return;
    }
    let _deciding = group.ejection.lock().unwrap_or_else(|e| e.into_inner());
    let may_eject = || {
        let active = group
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Active);
        let ejected = active
            .clone()
            .filter(|t| t.shared.outlier.is_ejected(now))
            .count();
        outlier::ejection_allowed(ejected, active.count(), config.max_ejection_percent)
    };
    if let Some(length) = target.shared.outlier.observe(seen, config, now, may_eject) {
        tracing::info!(target = %target.addr, group = %group.name, ?seen, ejected_for = ?length, "target ejected (outlier detection)");
    }
}

/// Counts a failed connection (or request) to `target` of `group`: an error, a failed
/// health check where the group checks health, and a connect failure for outlier
/// detection where the group has it.
pub(crate) fn connect_failed(group: &GroupRt, target: &TargetRt) {
    target.shared.errors.inc();
    let h = &group.config.health_check;
    if h.enabled {
        target.shared.health.record(
            Err("Target.FailedHealthChecks".to_string()),
            h.healthy_threshold,
            h.unhealthy_threshold,
        );
    }
    observe_outlier(group, target, Observation::ConnectFailure);
}
