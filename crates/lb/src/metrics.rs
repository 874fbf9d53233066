//! Per-target Prometheus metrics: requests, errors and response times, labelled by
//! target group and target; and the traffic counts of the load balancer and each of its
//! target groups ([`TrafficCounts`], read with [`Lb::traffic`](crate::Lb::traffic)),
//! what `flotilla server` publishes to CloudWatch as ALB metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TargetLabels {
    pub(crate) target_group: String,
    pub(crate) target: String,
}

pub(crate) type HistogramFamily = Family<TargetLabels, Histogram, fn() -> Histogram>;

pub(crate) struct Metrics {
    pub(crate) registry: Registry,
    pub(crate) requests: Family<TargetLabels, Counter>,
    pub(crate) errors: Family<TargetLabels, Counter>,
    pub(crate) latency: HistogramFamily,
}

pub(crate) fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("lb");
        let requests = Family::<TargetLabels, Counter>::default();
        let errors = Family::<TargetLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "target_requests",
            "Requests forwarded to a target (retries included)",
            requests.clone(),
        );
        registry.register(
            "target_errors",
            "Connection errors and 5xx responses from a target",
            errors.clone(),
        );
        registry.register(
            "target_response_seconds",
            "Time from forwarding a request to the target's response head",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            latency,
        }
    }
}

/// The status classes counted by [`TrafficCounts`]: 2xx, 3xx, 4xx, 5xx.
pub const STATUS_CLASSES: usize = 4;

/// The index of `status`'s class in [`TrafficCounts`]' arrays (2xx → 0 … 5xx → 3);
/// `None` for any other status.
pub fn status_class(status: u16) -> Option<usize> {
    match status {
        200..=599 => Some(usize::from(status / 100 - 2)),
        _ => None,
    }
}

/// How the client requests of a load balancer (or of one of its target groups) were
/// answered, counted since the [`Lb`](crate::Lb) started: cumulative, so a reader keeps
/// its previous copy and subtracts. The response-time extremes are the exception: they
/// cover the time since the previous [`Lb::traffic`](crate::Lb::traffic) call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrafficCounts {
    /// Client requests answered, each counted once (a retried request too), whoever
    /// answered it: a target, a fixed response, or the load balancer's own error.
    pub requests: u64,
    /// Responses a target sent, by status class (2xx, 3xx, 4xx, 5xx; see
    /// [`status_class`]).
    pub target_responses: [u64; STATUS_CLASSES],
    /// Responses the load balancer made itself, by status class: fixed responses, 502
    /// (no target could be reached), 503 (no healthy target, no route), 400 (an
    /// unreadable request body).
    pub elb_responses: [u64; STATUS_CLASSES],
    /// How many target response times were measured (one per response a target sent).
    pub response_count: u64,
    /// Their sum, in seconds: from forwarding the request to the target's response head.
    pub response_seconds: f64,
    /// The fastest of them since the previous [`Lb::traffic`](crate::Lb::traffic) call
    /// (`None` when none).
    pub response_min: Option<f64>,
    /// The slowest of them since the previous call (`None` when none).
    pub response_max: Option<f64>,
}

impl TrafficCounts {
    /// `self` with `other`'s counts added (extremes: the smaller minimum, the larger
    /// maximum).
    pub fn add(&mut self, other: &TrafficCounts) {
        self.requests += other.requests;
        for i in 0..STATUS_CLASSES {
            self.target_responses[i] += other.target_responses[i];
            self.elb_responses[i] += other.elb_responses[i];
        }
        self.response_count += other.response_count;
        self.response_seconds += other.response_seconds;
        self.response_min = match (self.response_min, other.response_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.response_max = match (self.response_max, other.response_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What [`Lb::traffic`](crate::Lb::traffic) returns: the load balancer's counts, and
/// those of each target group its config ever named (a group removed from the config
/// keeps its counts, so the load balancer's totals never go back).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficSnapshot {
    /// Every request of every listener: the groups' counts plus the requests no group
    /// answered (fixed responses, 503s of a forward without a group).
    pub load_balancer: TrafficCounts,
    /// The requests forwarded to each group, by group name.
    pub groups: BTreeMap<String, TrafficCounts>,
}

/// The counters of [`TrafficCounts`], updated by every request. Plain relaxed atomics:
/// a reader may see one request's counts split over two reads, which only moves it from
/// one period to the next.
#[derive(Debug)]
pub(crate) struct TrafficCell {
    requests: AtomicU64,
    target: [AtomicU64; STATUS_CLASSES],
    elb: [AtomicU64; STATUS_CLASSES],
    response_count: AtomicU64,
    response_nanos: AtomicU64,
    /// `u64::MAX` when no response was timed since the last take.
    response_min_nanos: AtomicU64,
    response_max_nanos: AtomicU64,
}

impl Default for TrafficCell {
    fn default() -> TrafficCell {
        TrafficCell {
            requests: AtomicU64::new(0),
            target: Default::default(),
            elb: Default::default(),
            response_count: AtomicU64::new(0),
            response_nanos: AtomicU64::new(0),
            response_min_nanos: AtomicU64::new(u64::MAX),
            response_max_nanos: AtomicU64::new(0),
        }
    }
}

impl TrafficCell {
    /// Counts one answered request: `status`, and `target_time` when a target answered
    /// (how long its response head took), else the load balancer answered itself.
    pub(crate) fn record(&self, status: u16, target_time: Option<Duration>) {
        let class = status_class(status);
        match target_time {
            Some(t) => {
                let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
                // The extremes first, so that a reader who sees this response counted
                // also sees it in the extremes it takes afterwards.
                if nanos < self.response_min_nanos.load(Ordering::Relaxed) {
                    self.response_min_nanos.fetch_min(nanos, Ordering::Relaxed);
                }
                if nanos > self.response_max_nanos.load(Ordering::Relaxed) {
                    self.response_max_nanos.fetch_max(nanos, Ordering::Relaxed);
                }
                self.response_nanos.fetch_add(nanos, Ordering::Relaxed);
                self.response_count.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = class {
                    self.target[c].fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                if let Some(c) = class {
                    self.elb[c].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far; the extremes are taken (reset), so each call sees those since
    /// the previous one.
    pub(crate) fn take(&self) -> TrafficCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let requests = load(&self.requests);
        let response_count = load(&self.response_count);
        let response_nanos = load(&self.response_nanos);
        let min = self.response_min_nanos.swap(u64::MAX, Ordering::Relaxed);
        let max = self.response_max_nanos.swap(0, Ordering::Relaxed);
        let secs = |n: u64| n as f64 / 1e9;
        let timed = min != u64::MAX;
        TrafficCounts {
            requests,
            target_responses: std::array::from_fn(|i| load(&self.target[i])),
            elb_responses: std::array::from_fn(|i| load(&self.elb[i])),
            response_count,
            response_seconds: secs(response_nanos),
            response_min: timed.then(|| secs(min)),
            response_max: timed.then(|| secs(max)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), Some(0));
        assert_eq!(status_class(302), Some(1));
        assert_eq!(status_class(404), Some(2));
        assert_eq!(status_class(599), Some(3));
        assert_eq!(status_class(101), None);
        assert_eq!(status_class(600), None);
    }

    #[test]
    fn a_cell_counts_cumulatively_and_takes_its_extremes() {
        let cell = TrafficCell::default();
        cell.record(200, Some(Duration::from_millis(20)));
        cell.record(503, Some(Duration::from_millis(5)));
        cell.record(503, None);
        cell.record(404, None);
        let c = cell.take();
        assert_eq!(c.requests, 4);
        assert_eq!(c.target_responses, [1, 0, 0, 1]);
        assert_eq!(c.elb_responses, [0, 0, 1, 1]);
        assert_eq!(c.response_count, 2);
        assert!((c.response_seconds - 0.025).abs() < 1e-9, "{c:?}");
        assert_eq!((c.response_min, c.response_max), (Some(0.005), Some(0.02)));
        // Counts stay, extremes are gone until the next timed response.
        let again = cell.take();
        assert_eq!(again.requests, 4);
        assert_eq!((again.response_min, again.response_max), (None, None));
        cell.record(200, Some(Duration::from_millis(7)));
        let c = cell.take();
        assert_eq!((c.response_min, c.response_max), (Some(0.007), Some(0.007)));
        assert_eq!(c.response_count, 3);
    }

    #[test]
    fn counts_add_up() {
        let mut a = TrafficCounts {
            requests: 2,
            target_responses: [1, 0, 0, 1],
            response_count: 2,
            response_seconds: 0.5,
            response_min: Some(0.1),
            response_max: Some(0.4),
            ..Default::default()
        };
        a.add(&TrafficCounts {
            requests: 1,
            elb_responses: [0, 0, 0, 1],
            ..Default::default()
        });
        a.add(&TrafficCounts {
            requests: 1,
            target_responses: [1, 0, 0, 0],
            response_count: 1,
            response_seconds: 0.05,
            response_min: Some(0.05),
            response_max: Some(0.05),
            ..Default::default()
        });
        assert_eq!(a.requests, 4);
        assert_eq!(a.target_responses, [2, 0, 0, 1]);
        assert_eq!(a.elb_responses, [0, 0, 0, 1]);
        assert_eq!((a.response_min, a.response_max), (Some(0.05), Some(0.4)));
    }
}
