//! Per-target Prometheus metrics: requests, errors and response times, labelled by
//! target group and target.

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
