//! CloudWatch records: metric alarms and the one-minute datapoints of the metrics
//! published with PutMetricData (`ops::cloudwatch`).
//!
//! They travel as [`DiscoveryRecord::CloudWatch`](super::DiscoveryRecord) and live in
//! [`Discovery::cloudwatch`](super::Discovery), as ECS Anywhere's do: the records of
//! another AWS API on the one endpoint, riding there so that the store's record list (the
//! engine's `records_of`) stays unchanged. Store keys are
//! `cw-alarm|<account>|<region>|<name>` and `cw-metric|<account>|<region>|<id>`, the id
//! being the hex SHA-256 of the metric's namespace, name and sorted dimensions.
//!
//! A metric keeps one [`Bucket`] per minute that had datapoints (count, sum, minimum,
//! maximum: every statistic an alarm can ask for), at most
//! `ops::cloudwatch::RETENTION_MINUTES` of them; older ones are dropped when the metric
//! is next written or evaluated.

use std::collections::BTreeMap;

use model::wire_cw::{self, Dimension};
use serde::{Deserialize, Serialize};

use super::keys::Scope;

/// A metric alarm (PutMetricAlarm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Its name (unique in the scope).
    pub name: String,
    /// As DescribeAlarms shows it: configuration and state.
    pub alarm: wire_cw::MetricAlarm,
    /// Tags given with PutMetricAlarm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<wire_cw::Tag>,
    /// Set by SetAlarmState: the state it set holds until then (epoch seconds), when the
    /// alarm is next evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<f64>,
}

impl AlarmRecord {
    /// Its state (INSUFFICIENT_DATA when none is recorded).
    pub fn state(&self) -> wire_cw::StateValue {
        self.alarm
            .state_value
            .unwrap_or(wire_cw::StateValue::InsufficientData)
    }
}

/// One minute of a metric's datapoints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// The minute: epoch seconds / 60.
    pub minute: i64,
    /// How many samples.
    pub count: f64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Bucket {
    /// Adds `other`'s samples to this minute.
    pub fn merge(&mut self, other: &Bucket) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// A metric (namespace, name, dimensions) and its recent datapoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Hex SHA-256 of the metric's identity ([`metric_id`]).
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its dimensions, sorted by name.
    pub dimensions: Vec<Dimension>,
    /// One bucket per minute that had datapoints, oldest first.
    pub buckets: Vec<Bucket>,
    /// The unit the last datum that named one gave (one of CloudWatch's standard units);
    /// GetMetricStatistics and GetMetricData answer it and filter on it. One unit per
    /// metric, not per datapoint: data published in several units reads as the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// The id of the metric `namespace`/`name` with `dimensions` (in any order).
pub fn metric_id(namespace: &str, name: &str, dimensions: &[Dimension]) -> String {
    use sha2::{Digest, Sha256};
    let mut dims: Vec<&Dimension> = dimensions.iter().collect();
    dims.sort();
    let canonical = serde_json::to_string(&(namespace, name, dims)).unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Any CloudWatch record. Boxed, so that carrying one costs a [`Change`](super::Change)
/// (and [`DiscoveryRecord`](super::DiscoveryRecord)) no size of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cloudwatch", content = "value")]
pub enum CwRecord {
    /// A metric alarm.
    Alarm(Box<AlarmRecord>),
    /// A metric's datapoints.
    Metric(Box<MetricRecord>),
}

impl CwRecord {
    /// The record's key in the store.
    pub fn store_key(&self) -> String {
        let (kind, s, id) = match self {
            CwRecord::Alarm(r) => ("cw-alarm", &r.scope, &r.name),
            CwRecord::Metric(r) => ("cw-metric", &r.scope, &r.id),
        };
        format!("{kind}|{}|{}|{id}", s.account, s.region)
    }
}

/// Every alarm and metric, by scope and name (id).
#[derive(Debug, Clone, Default)]
pub struct CloudWatch {
    /// Alarms by scope and name, so one scope's are a contiguous range in name order.
    pub alarms: BTreeMap<(Scope, String), AlarmRecord>,
    /// Metrics by scope and id.
    pub metrics: BTreeMap<(Scope, String), MetricRecord>,
}

impl CloudWatch {
    /// Inserts or replaces a record.
    pub fn put(&mut self, record: CwRecord) {
        match record {
            CwRecord::Alarm(r) => {
                self.alarms.insert((r.scope.clone(), r.name.clone()), *r);
            }
            CwRecord::Metric(r) => {
                self.metrics.insert((r.scope.clone(), r.id.clone()), *r);
            }
        }
    }

    /// Removes a record.
    pub fn delete(&mut self, record: &CwRecord) {
        match record {
            CwRecord::Alarm(r) => {
                self.alarms.remove(&(r.scope.clone(), r.name.clone()));
            }
            CwRecord::Metric(r) => {
                self.metrics.remove(&(r.scope.clone(), r.id.clone()));
            }
        }
    }

    /// Every record, as the store holds them.
    pub fn records(&self) -> impl Iterator<Item = CwRecord> + '_ {
        self.alarms
            .values()
            .map(|a| CwRecord::Alarm(Box::new(a.clone())))
            .chain(
                self.metrics
                    .values()
                    .map(|m| CwRecord::Metric(Box::new(m.clone()))),
            )
    }

    /// The alarm `name` of `scope`.
    pub fn alarm(&self, scope: &Scope, name: &str) -> Option<&AlarmRecord> {
        self.alarms.get(&(scope.clone(), name.to_owned()))
    }

    /// One scope's alarms in name order, from just after `after` (or the first).
    pub fn alarms_in<'a>(
        &'a self,
        scope: &Scope,
        after: Option<&str>,
    ) -> impl DoubleEndedIterator<Item = &'a AlarmRecord> + use<'a> {
        super::discovery::in_scope(&self.alarms, scope, after)
    }

    /// The metric `id` of `scope`.
    pub fn metric(&self, scope: &Scope, id: &str) -> Option<&MetricRecord> {
        self.metrics.get(&(scope.clone(), id.to_owned()))
    }

    /// One scope's metrics in id order, from just after `after` (or the first).
    pub fn metrics_in<'a>(
        &'a self,
        scope: &Scope,
        after: Option<&str>,
    ) -> impl DoubleEndedIterator<Item = &'a MetricRecord> + use<'a> {
        super::discovery::in_scope(&self.metrics, scope, after)
    }

    /// How many metrics `scope` has outside AWS's namespaces (`AWS/…`, those flotilla
    /// publishes itself): the ones PutMetricData's limit counts.
    pub fn own_metric_count(&self, scope: &Scope) -> usize {
        self.metrics_in(scope, None)
            .filter(|m| !m.namespace.starts_with("AWS/"))
            .count()
    }
}
