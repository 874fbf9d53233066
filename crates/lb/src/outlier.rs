//! Outlier detection: passive health from the traffic itself, as Envoy's outlier
//! detection does it (what ECS Service Connect's proxy uses). A group with
//! [`OutlierDetection`] set watches what each proxied request to a target ended with; a
//! target whose connection fails [`OutlierDetection::consecutive_connect_failures`] times
//! in a row, or that answers [`OutlierDetection::consecutive_5xx`] 5xx responses in a row,
//! is *ejected*: it gets no new requests for [`OutlierDetection::base_ejection_ms`],
//! doubled for each ejection that follows soon after the last one (capped at
//! [`OutlierDetection::max_ejection_ms`]), and then comes back on its own. At most
//! [`OutlierDetection::max_ejection_percent`] of a group's targets are ejected at once, so
//! a wide failure (the network, not the targets) does not empty the group.
//!
//! The decisions ([`ejection_duration`], [`ejection_allowed`], [`OutlierCell::observe`])
//! take the clock as an argument, so they are unit-tested without waiting. Groups without
//! outlier detection (every ELBv2 group) never record anything here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::OutlierDetection;
use crate::health::epoch;

/// How one proxied request to a target ended, as outlier detection counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A response below 500.
    Success,
    /// A 5xx response.
    ServerError,
    /// No response: the connection could not be opened, or broke before the response head.
    ConnectFailure,
}

/// One target's outlier state. The request path reads [`OutlierCell::is_ejected`] without
/// taking the lock.
#[derive(Debug)]
pub(crate) struct OutlierCell {
    inner: Mutex<OutlierInner>,
    /// The end of the current ejection as nanoseconds after [`epoch`] plus one; 0 when the
    /// target was never ejected.
    ejected_until: AtomicU64,
}

#[derive(Debug, Default)]
struct OutlierInner {
    connect_failures: u32,
    server_errors: u32,
    /// The doubling exponent of the last ejection (1 for the first).
    ejections: u32,
    /// When the last ejection ended (or ends).
    last_ejection_end: Option<Instant>,
}

/// The length of ejection number `ejections` in a row (1 for the first):
/// `base × 2^(ejections-1)`, at most `max_ejection_ms`.
pub fn ejection_duration(config: &OutlierDetection, ejections: u32) -> Duration {
    let doubling = 1u64 << ejections.saturating_sub(1).min(20);
    Duration::from_millis(
        config
            .base_ejection_ms
            .saturating_mul(doubling)
            .min(config.max_ejection_ms),
    )
}

/// Whether one more target of a group of `targets`, `ejected` of which are ejected now,
/// may be ejected under `max_percent`.
pub fn ejection_allowed(ejected: usize, targets: usize, max_percent: u32) -> bool {
    (ejected as u64 + 1) * 100 <= targets as u64 * u64::from(max_percent)
}

fn instant_to_nanos(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

impl OutlierCell {
    pub(crate) fn new() -> OutlierCell {
        epoch();
        OutlierCell {
            inner: Mutex::new(OutlierInner::default()),
            ejected_until: AtomicU64::new(0),
        }
    }

    /// Whether the target is ejected at `now`.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        match self.ejected_until.load(Ordering::Acquire) {
            0 => false,
            until => instant_to_nanos(now) < until,
        }
    }

    /// How long the target stays ejected after `now` (`None` when it is not).
    pub(crate) fn ejected_for(&self, now: Instant) -> Option<Duration> {
        match self.ejected_until.load(Ordering::Acquire) {
            0 => None,
            until => {
                let now = instant_to_nanos(now);
                (now < until).then(|| Duration::from_nanos(until - now))
            }
        }
    }

    /// Counts `observation`; when it crosses a threshold and `may_eject()` agrees (the
    /// group's ejection cap), ejects the target and returns for how long.
    pub(crate) fn observe(
        &self,
        observation: Observation,
        config: &OutlierDetection,
        now: Instant,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match observation {
            Observation::Success => {
                c.connect_failures = 0;
                c.server_errors = 0;
                return None;
            }
            Observation::ServerError => {
                c.connect_failures = 0;
                c.server_errors = c.server_errors.saturating_add(1);
            }
            // Envoy counts a failure without a response as a 5xx too.
            Observation::ConnectFailure => {
                c.connect_failures = c.connect_failures.saturating_add(1);
                c.server_errors = c.server_errors.saturating_add(1);
            }
        }
        let tripped = c.connect_failures >= config.consecutive_connect_failures
            || c.server_errors >= config.consecutive_5xx;
        if !tripped || self.is_ejected(now) || !may_eject() {
            return None;
        }
        // The doubling decays: each base period spent un-ejected since the last ejection
        // ended takes one doubling off.
        let base = Duration::from_millis(config.base_ejection_ms.max(1));
        let decayed = c.last_ejection_end.map_or(0, |end| {
            let calm = now.saturating_duration_since(end).as_millis() / base.as_millis();
            c.ejections
                .saturating_sub(u32::try_from(calm).unwrap_or(u32::MAX))
        });
        c.ejections = decayed.saturating_add(1);
        let length = ejection_duration(config, c.ejections);
        let until = now + length;
        c.last_ejection_end = Some(until);
        c.connect_failures = 0;
        c.server_errors = 0;
        self.ejected_until
            .store(instant_to_nanos(until), Ordering::Release);
        Some(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutlierDetection {
        OutlierDetection {
            consecutive_connect_failures: 1,
            consecutive_5xx: 3,
            base_ejection_ms: 10_000,
            max_ejection_ms: 60_000,
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn ejections_double_up_to_the_cap() {
        let c = config();
        let secs = |n| ejection_duration(&c, n).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [10, 20, 40, 60]);
        assert_eq!(secs(u32::MAX), 60, "no overflow");
    }

    #[test]
    fn at_most_the_percentage_is_ejected() {
        assert!(!ejection_allowed(0, 1, 50), "a lone target stays");
        assert!(ejection_allowed(0, 2, 50));
        assert!(!ejection_allowed(1, 2, 50));
        assert!(ejection_allowed(4, 10, 50));
        assert!(!ejection_allowed(5, 10, 50));
        assert!(ejection_allowed(0, 1, 100));
        assert!(!ejection_allowed(0, 100, 0));
    }

    #[test]
    fn a_connect_failure_ejects_and_the_target_comes_back() {
        let (c, cell, t0) = (config(), OutlierCell::new(), Instant::now());
        assert!(!cell.is_ejected(t0));
        let ejected = cell.observe(Observation::ConnectFailure, &c, t0, || true);
        assert_eq!(ejected, Some(Duration::from_secs(10)));
        assert!(cell.is_ejected(t0 + Duration::from_secs(9)));
        assert!(cell.ejected_for(t0 + Duration::from_secs(9)).is_some());
        assert!(!cell.is_ejected(t0 + Duration::from_secs(10)));
        assert_eq!(cell.ejected_for(t0 + Duration::from_secs(10)), None);
    }

    #[test]
    fn consecutive_5xx_eject_and_a_success_resets_the_count() {
        let (c, cell, t0) = (config(), OutlierCell::new(), Instant::now());
        for _ in 0..2 {
            assert_eq!(
                cell.observe(Observation::ServerError, &c, t0, || true),
                None
            );
        }
        assert_eq!(cell.observe(Observation::Success, &c, t0, || true), None);
        for _ in 0..2 {
            assert_eq!(
                cell.observe(Observation::ServerError, &c, t0, || true),
                None
            );
        }
        assert!(!cell.is_ejected(t0));
        assert!(
            cell.observe(Observation::ServerError, &c, t0, || true)
                .is_some()
        );
        assert!(cell.is_ejected(t0));
    }

    #[test]
    fn the_cap_can_refuse_an_ejection() {
        let (c, cell, t0) = (config(), OutlierCell::new(), Instant::now());
        assert_eq!(
            cell.observe(Observation::ConnectFailure, &c, t0, || false),
            None
        );
        assert!(!cell.is_ejected(t0));
    }

    #[test]
    fn repeated_ejections_double_and_calm_periods_undo_the_doubling() {
        let (c, cell, t0) = (config(), OutlierCell::new(), Instant::now());
        let s = Duration::from_secs;
        let fail = |at| cell.observe(Observation::ConnectFailure, &c, at, || true);
        assert_eq!(fail(t0), Some(s(10)));
        // Failing again as soon as it is back: twice as long, then four times.
        assert_eq!(fail(t0 + s(10)), Some(s(20)));
        assert_eq!(fail(t0 + s(30)), Some(s(40)));
        // Failures while ejected (requests in flight) change nothing.
        assert_eq!(fail(t0 + s(31)), None);
        // Back at 70 s; two calm base periods take two doublings off: 10 s × 2^(3-2).
        assert_eq!(fail(t0 + s(90)), Some(s(20)));
        // A long calm: back to the base.
        assert_eq!(fail(t0 + s(1000)), Some(s(10)));
    }
}
