//! The load balancers' metrics in CloudWatch, as Application Load Balancers publish
//! theirs (namespace [`NAMESPACE`], docs/load-balancers.md): every [`PUBLISH_EVERY`] the
//! data plane's task reads each application load balancer's traffic counts
//! ([`lb::Lb::traffic`], cumulative) and its targets' health, turns what changed since the
//! previous publish into datapoints ([`datapoints`], pure), and writes them through the
//! control plane's CloudWatch store in the load balancer's account and region
//! ([`controlplane::ops::cloudwatch::publish_metric_data`]: PutMetricData's path, one
//! write per account and region per publish), where alarms watch them like any metric.
//!
//! What is published, per period:
//! - dimension `LoadBalancer` (`app/<name>/<id>`): `RequestCount`,
//!   `HTTPCode_Target_{2,3,4,5}XX_Count`, `HTTPCode_ELB_4XX_Count`,
//!   `HTTPCode_ELB_5XX_Count` (all `Count`) and `TargetResponseTime` (`Seconds`, one
//!   statistic set: sample count, sum, minimum, maximum) — only for a period with
//!   requests, as ELB reports request metrics only while requests flow (then zero counts
//!   are published too, so that an alarm on 5xx sees a quiet period as 0, not missing);
//!   `TargetResponseTime` only when a target answered;
//! - dimensions `LoadBalancer` and `TargetGroup` (`targetgroup/<name>/<id>`):
//!   `RequestCount`, `HTTPCode_Target_5XX_Count` and `TargetResponseTime` likewise, for a
//!   group that had requests; `HealthyHostCount` and `UnHealthyHostCount` (`Count`) every
//!   period, for each group the load balancer serves.
//!
//! Network load balancers publish nothing (their metrics are `AWS/NetworkELB`'s).

use std::collections::BTreeMap;
use std::time::Duration;

use controlplane::state::State;
use model::wire_cw::{Dimension, MetricDatum, StatisticSet};

use super::LbKey;

/// The namespace of the metrics: Application Load Balancers'.
pub const NAMESPACE: &str = "AWS/ApplicationELB";

/// How often the metrics are published: ELB's period. (`flotilla server
/// --lb-metrics-interval` publishes more often, for tests; the datapoints still fall
/// into one-minute buckets.)
pub const PUBLISH_EVERY: Duration = Duration::from_secs(60);

/// The `HTTPCode_Target_*` metric of each status class of [`lb::TrafficCounts`].
const TARGET_CODES: [&str; lb::STATUS_CLASSES] = [
    "HTTPCode_Target_2XX_Count",
    "HTTPCode_Target_3XX_Count",
    "HTTPCode_Target_4XX_Count",
    "HTTPCode_Target_5XX_Count",
];

/// How many of a target group's targets are healthy and unhealthy now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hosts {
    /// Healthy: they take traffic.
    pub healthy: u32,
    /// Unhealthy: they failed their checks.
    pub unhealthy: u32,
}

/// The host counts of each group of `health` ([`lb::Lb::target_health`]); targets
/// that are neither healthy nor unhealthy (initial, draining, unused) count in neither.
pub fn hosts(health: &[lb::TargetHealth]) -> BTreeMap<String, Hosts> {
    let mut out: BTreeMap<String, Hosts> = BTreeMap::new();
    for h in health {
        let e = out.entry(h.group.clone()).or_default();
        match h.state {
            lb::HealthState::Healthy => e.healthy += 1,
            lb::HealthState::Unhealthy => e.unhealthy += 1,
            lb::HealthState::Initial | lb::HealthState::Draining | lb::HealthState::Unused => {}
        }
    }
    out
}

/// One load balancer's period: what [`datapoints`] turns into CloudWatch data.
#[derive(Debug, Clone, Copy)]
pub struct LbPeriod<'a> {
    /// The `LoadBalancer` dimension: `app/<name>/<id>`.
    pub load_balancer: &'a str,
    /// The `TargetGroup` dimension (`targetgroup/<name>/<id>`) of each group name of the
    /// load balancer's traffic; a group without one publishes nothing of its own.
    pub groups: &'a BTreeMap<String, String>,
    /// The traffic at the previous publish; `None` for the first (the counts since the
    /// load balancer started are the period's).
    pub before: Option<&'a lb::TrafficSnapshot>,
    /// The traffic now.
    pub after: &'a lb::TrafficSnapshot,
    /// The host counts of each group the load balancer serves now.
    pub hosts: &'a BTreeMap<String, Hosts>,
}

/// The period's counts: `after` less `before` (all of `after` when its counters are
/// below `before`'s, which only a restarted data plane would do), with `after`'s
/// extremes (those of the period already).
fn delta(before: Option<&lb::TrafficCounts>, after: &lb::TrafficCounts) -> lb::TrafficCounts {
    let Some(b) = before.filter(|b| b.requests <= after.requests) else {
        return *after;
    };
    lb::TrafficCounts {
        requests: after.requests - b.requests,
        target_responses: std::array::from_fn(|i| {
            after.target_responses[i].saturating_sub(b.target_responses[i])
        }),
        elb_responses: std::array::from_fn(|i| {
            after.elb_responses[i].saturating_sub(b.elb_responses[i])
        }),
        response_count: after.response_count.saturating_sub(b.response_count),
        response_seconds: (after.response_seconds - b.response_seconds).max(0.0),
        response_min: after.response_min,
        response_max: after.response_max,
    }
}

fn dims(load_balancer: &str, group: Option<&str>) -> Vec<Dimension> {
    let mut d = vec![Dimension {
        name: "LoadBalancer".into(),
        value: load_balancer.into(),
    }];
    if let Some(g) = group {
        d.push(Dimension {
            name: "TargetGroup".into(),
            value: g.into(),
        });
    }
    d
}

fn count(name: &str, dimensions: &[Dimension], value: u64) -> MetricDatum {
    MetricDatum {
        metric_name: Some(name.into()),
        dimensions: Some(dimensions.to_vec()),
        value: Some(value as f64),
        unit: Some("Count".into()),
        ..Default::default()
    }
}

/// `TargetResponseTime` of the period as one statistic set; `None` when no target
/// answered. The extremes are kept around the mean (a response counted in one period
/// and timed into the next one's extremes cannot make minimum > mean > maximum), and
/// are the mean when none were taken.
fn response_time(dimensions: &[Dimension], d: &lb::TrafficCounts) -> Option<MetricDatum> {
    if d.response_count == 0 {
        return None;
    }
    let n = d.response_count as f64;
    let mean = d.response_seconds / n;
    Some(MetricDatum {
        metric_name: Some("TargetResponseTime".into()),
        dimensions: Some(dimensions.to_vec()),
        statistic_values: Some(StatisticSet {
            sample_count: n,
            sum: d.response_seconds,
            minimum: d.response_min.unwrap_or(mean).min(mean),
            maximum: d.response_max.unwrap_or(mean).max(mean),
        }),
        unit: Some("Seconds".into()),
        ..Default::default()
    })
}

/// The datapoints of one load balancer's period (see the module docs for which), in a
/// stable order: the load balancer's, then each group's by name.
pub fn datapoints(p: &LbPeriod<'_>) -> Vec<MetricDatum> {
    let mut out = Vec::new();
    let lb_dims = dims(p.load_balancer, None);
    let d = delta(p.before.map(|b| &b.load_balancer), &p.after.load_balancer);
    if d.requests > 0 {
        out.push(count("RequestCount", &lb_dims, d.requests));
        for (name, n) in TARGET_CODES.iter().zip(d.target_responses) {
            out.push(count(name, &lb_dims, n));
        }
        out.push(count(
            "HTTPCode_ELB_4XX_Count",
            &lb_dims,
            d.elb_responses[2],
        ));
        out.push(count(
            "HTTPCode_ELB_5XX_Count",
            &lb_dims,
            d.elb_responses[3],
        ));
        out.extend(response_time(&lb_dims, &d));
    }
    for (group, tg) in p.groups {
        let group_dims = dims(p.load_balancer, Some(tg));
        if let Some(after) = p.after.groups.get(group) {
            let d = delta(p.before.and_then(|b| b.groups.get(group)), after);
            if d.requests > 0 {
                out.push(count("RequestCount", &group_dims, d.requests));
                out.push(count(TARGET_CODES[3], &group_dims, d.target_responses[3]));
                out.extend(response_time(&group_dims, &d));
            }
        }
        if let Some(h) = p.hosts.get(group) {
            out.push(count("HealthyHostCount", &group_dims, u64::from(h.healthy)));
            out.push(count(
                "UnHealthyHostCount",
                &group_dims,
                u64::from(h.unhealthy),
            ));
        }
    }
    out
}

/// The dimensions of a running load balancer: its own, and its groups' by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbDimensions {
    /// `app/<name>/<id>`.
    pub load_balancer: String,
    /// `targetgroup/<name>/<id>` by group name.
    pub groups: BTreeMap<String, String>,
}

/// The dimensions of the application load balancer `key` and of the groups `names` of
/// its scope that exist; `None` for a network load balancer or one that is gone.
pub fn dimensions<'a>(
    state: &State,
    key: &LbKey,
    names: impl IntoIterator<Item = &'a String>,
) -> Option<LbDimensions> {
    let (scope, name, id) = key;
    let rec = state
        .elb
        .load_balancers
        .get(&(scope.clone(), name.clone()))
        .filter(|r| r.id == *id && r.lb_type == "application")?;
    let arn = rec.arn();
    let load_balancer = arn.split_once(":loadbalancer/")?.1.to_owned();
    let groups = names
        .into_iter()
        .filter_map(|g| {
            let tg = state.elb.target_groups.get(&(scope.clone(), g.clone()))?;
            let arn = tg.arn();
            let suffix = arn.rsplit_once(':')?.1.to_owned();
            Some((g.clone(), suffix))
        })
        .collect();
    Some(LbDimensions {
        load_balancer,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: &str = "app/web/0123456789abcdef";
    const TG: &str = "targetgroup/api/fedcba9876543210";

    fn counts(requests: u64, target: [u64; 4], elb: [u64; 4], times: &[f64]) -> lb::TrafficCounts {
        lb::TrafficCounts {
            requests,
            target_responses: target,
            elb_responses: elb,
            response_count: times.len() as u64,
            response_seconds: times.iter().sum(),
            response_min: times.iter().copied().reduce(f64::min),
            response_max: times.iter().copied().reduce(f64::max),
        }
    }

    fn snapshot(api: lb::TrafficCounts, unrouted: lb::TrafficCounts) -> lb::TrafficSnapshot {
        let mut load_balancer = unrouted;
        load_balancer.add(&api);
        lb::TrafficSnapshot {
            load_balancer,
            groups: [("api".to_owned(), api)].into(),
        }
    }

    /// (name, dimension count, value or (count, sum, min, max)) of each datum.
    fn summary(data: &[MetricDatum]) -> Vec<(String, usize, String)> {
        data.iter()
            .map(|d| {
                let value = match (d.value, d.statistic_values) {
                    (Some(v), None) => format!("{v}"),
                    (None, Some(s)) => format!(
                        "{} {:.3} {:.3} {:.3}",
                        s.sample_count, s.sum, s.minimum, s.maximum
                    ),
                    other => panic!("{other:?}"),
                };
                let n = d.dimensions.as_ref().map_or(0, Vec::len);
                (d.metric_name.clone().unwrap(), n, value)
            })
            .collect()
    }

    fn row(name: &str, dims: usize, value: &str) -> (String, usize, String) {
        (name.to_owned(), dims, value.to_owned())
    }

    #[test]
    fn a_period_with_requests_publishes_its_deltas_and_the_host_counts() {
        let groups = [("api".to_owned(), TG.to_owned())].into();
        let hosts = [(
            "api".to_owned(),
            Hosts {
                healthy: 2,
                unhealthy: 1,
            },
        )]
        .into();
        // Before: 10 requests (8 × 2xx, 1 × 5xx from the targets, one own 503).
        let before = snapshot(
            counts(9, [8, 0, 0, 1], [0; 4], &[0.1; 9]),
            counts(1, [0; 4], [0, 0, 0, 1], &[]),
        );
        // This period: 5 more to the group (2 × 2xx, 1 × 3xx, 1 × 5xx, one 502 of the
        // load balancer's own) taking 0.02, 0.04, 0.06, 0.08 s; a fixed 404 and a 503.
        let mut after_api = counts(14, [10, 1, 0, 2], [0, 0, 0, 1], &[0.1; 9]);
        after_api.response_count += 4;
        after_api.response_seconds += 0.2;
        (after_api.response_min, after_api.response_max) = (Some(0.02), Some(0.08));
        let after = snapshot(after_api, counts(3, [0; 4], [0, 0, 1, 2], &[]));
        let data = datapoints(&LbPeriod {
            load_balancer: LB,
            groups: &groups,
            before: Some(&before),
            after: &after,
            hosts: &hosts,
        });
        assert_eq!(
            summary(&data),
            [
                row("RequestCount", 1, "7"),
                row("HTTPCode_Target_2XX_Count", 1, "2"),
                row("HTTPCode_Target_3XX_Count", 1, "1"),
                row("HTTPCode_Target_4XX_Count", 1, "0"),
                row("HTTPCode_Target_5XX_Count", 1, "1"),
                row("HTTPCode_ELB_4XX_Count", 1, "1"),
                row("HTTPCode_ELB_5XX_Count", 1, "2"),
                row("TargetResponseTime", 1, "4 0.200 0.020 0.080"),
                row("RequestCount", 2, "5"),
                row("HTTPCode_Target_5XX_Count", 2, "1"),
                row("TargetResponseTime", 2, "4 0.200 0.020 0.080"),
                row("HealthyHostCount", 2, "2"),
                row("UnHealthyHostCount", 2, "1"),
            ]
        );
        let lb_dim = Dimension {
            name: "LoadBalancer".into(),
            value: LB.into(),
        };
        let tg_dim = Dimension {
            name: "TargetGroup".into(),
            value: TG.into(),
        };
        assert_eq!(data[0].dimensions.as_deref(), Some(&[lb_dim.clone()][..]));
        assert_eq!(data[8].dimensions.as_deref(), Some(&[lb_dim, tg_dim][..]));
        assert_eq!(data[0].unit.as_deref(), Some("Count"));
        assert_eq!(data[7].unit.as_deref(), Some("Seconds"));
        assert!(
            data.iter().all(|d| d.timestamp.is_none()),
            "stamped by the write"
        );
    }

    #[test]
    fn an_idle_period_publishes_only_the_host_counts() {
        let groups = [("api".to_owned(), TG.to_owned())].into();
        let hosts = [("api".to_owned(), Hosts::default())].into();
        let same = snapshot(
            counts(4, [4, 0, 0, 0], [0; 4], &[]),
            lb::TrafficCounts::default(),
        );
        let data = datapoints(&LbPeriod {
            load_balancer: LB,
            groups: &groups,
            before: Some(&same),
            after: &same,
            hosts: &hosts,
        });
        assert_eq!(
            summary(&data),
            [
                row("HealthyHostCount", 2, "0"),
                row("UnHealthyHostCount", 2, "0")
            ]
        );
        // No groups served, nothing at all.
        let none = datapoints(&LbPeriod {
            load_balancer: LB,
            groups: &BTreeMap::new(),
            before: Some(&same),
            after: &same,
            hosts: &BTreeMap::new(),
        });
        assert!(none.is_empty());
    }

    #[test]
    fn the_first_period_counts_from_the_start_and_own_answers_have_no_response_time() {
        let groups = [("api".to_owned(), TG.to_owned())].into();
        // Only the load balancer's own answers: requests, no response time.
        let after = snapshot(
            counts(2, [0; 4], [0, 0, 0, 2], &[]),
            lb::TrafficCounts::default(),
        );
        let data = datapoints(&LbPeriod {
            load_balancer: LB,
            groups: &groups,
            before: None,
            after: &after,
            hosts: &BTreeMap::new(),
        });
        let names: Vec<(String, usize, String)> = summary(&data);
        assert!(names.contains(&row("RequestCount", 1, "2")), "{names:?}");
        assert!(names.contains(&row("HTTPCode_ELB_5XX_Count", 1, "2")));
        assert!(names.contains(&row("RequestCount", 2, "2")));
        assert!(names.contains(&row("HTTPCode_Target_5XX_Count", 2, "0")));
        assert!(!names.iter().any(|(n, _, _)| n == "TargetResponseTime"));
        // A group without a TargetGroup dimension (deleted meanwhile) publishes nothing
        // of its own; the load balancer still counts its requests.
        let data = datapoints(&LbPeriod {
            load_balancer: LB,
            groups: &BTreeMap::new(),
            before: None,
            after: &after,
            hosts: &BTreeMap::new(),
        });
        assert!(
            data.iter()
                .all(|d| d.dimensions.as_ref().unwrap().len() == 1)
        );
        assert_eq!(summary(&data)[0], row("RequestCount", 1, "2"));
    }

    #[test]
    fn response_time_extremes_stay_around_the_mean() {
        // Extremes not taken (None) are the mean; one outside the mean is clamped.
        let d = lb::TrafficCounts {
            requests: 2,
            response_count: 2,
            response_seconds: 0.4,
            response_min: None,
            response_max: Some(0.1),
            ..Default::default()
        };
        let s = response_time(&[], &d).unwrap().statistic_values.unwrap();
        assert_eq!((s.sample_count, s.minimum, s.maximum), (2.0, 0.2, 0.2));
        assert!(response_time(&[], &lb::TrafficCounts::default()).is_none());
    }

    #[test]
    fn counters_below_the_previous_ones_start_over() {
        let before = counts(10, [10, 0, 0, 0], [0; 4], &[]);
        let after = counts(3, [3, 0, 0, 0], [0; 4], &[]);
        assert_eq!(delta(Some(&before), &after), after);
    }

    #[test]
    fn host_counts_count_healthy_and_unhealthy_targets_only() {
        let t = |group: &str, port: u16, state| lb::TargetHealth {
            target: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            group: group.into(),
            state,
            reason: None,
        };
        let h = hosts(&[
            t("a", 1, lb::HealthState::Healthy),
            t("a", 2, lb::HealthState::Unhealthy),
            t("a", 3, lb::HealthState::Draining),
            t("b", 4, lb::HealthState::Initial),
        ]);
        assert_eq!(
            h,
            [
                (
                    "a".to_owned(),
                    Hosts {
                        healthy: 1,
                        unhealthy: 1
                    }
                ),
                ("b".to_owned(), Hosts::default())
            ]
            .into()
        );
    }
}
