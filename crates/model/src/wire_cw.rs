//! The few Amazon CloudWatch (`monitoring`) shapes flotilla serves: metric alarms
//! (PutMetricAlarm, DescribeAlarms, DeleteAlarms, SetAlarmState), the metrics they
//! watch (PutMetricData, ListMetrics), which is what ECS's `deploymentConfiguration.alarms`
//! needs, and reading those metrics back (GetMetricStatistics, GetMetricData).
//! Hand-written from botocore's `cloudwatch/2010-08-01/service-2.json` for just these
//! operations. Clients speak Smithy RPC v2 CBOR to CloudWatch (`POST
//! /service/GraniteServiceVersion20100801/operation/<Operation>`, CBOR bodies); the
//! codec lives in `ecs-api`, these are plain serde shapes with PascalCase members.
//!
//! Timestamps are epoch seconds ([`Timestamp`]); on the wire they are CBOR tag 1, and the
//! members that carry one are listed in [`TIMESTAMP_MEMBERS`] for the codec.

use serde::{Deserialize, Serialize};

use crate::wire::{Required, Timestamp};

/// The service's target prefix: the second path segment of every request.
pub const TARGET_PREFIX: &str = "GraniteServiceVersion20100801";

/// Members of the shapes here that are timestamps, or lists of timestamps
/// (`Timestamps`), and no other member has these names: the codec writes them (each
/// element of a list) as CBOR tag 1 (epoch seconds).
pub const TIMESTAMP_MEMBERS: [&str; 5] = [
    "AlarmConfigurationUpdatedTimestamp",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
    "Timestamp",
    "Timestamps",
];

/// The CloudWatch operations flotilla serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CwOperation {
    /// Creates or replaces a metric alarm.
    PutMetricAlarm,
    /// Lists metric alarms, with filters and paging.
    DescribeAlarms,
    /// Deletes alarms.
    DeleteAlarms,
    /// Sets an alarm's state until its next evaluation (how AWS lets you test alarms).
    SetAlarmState,
    /// Publishes metric datapoints.
    PutMetricData,
    /// Lists metrics (namespace, name, dimensions), with filters and paging.
    ListMetrics,
    /// One metric's statistics per period.
    GetMetricStatistics,
    /// Several metrics' (and metric math's) values per period, with paging.
    GetMetricData,
}

impl CwOperation {
    /// Every served operation.
    pub const ALL: [CwOperation; 8] = [
        CwOperation::PutMetricAlarm,
        CwOperation::DescribeAlarms,
        CwOperation::DeleteAlarms,
        CwOperation::SetAlarmState,
        CwOperation::PutMetricData,
        CwOperation::ListMetrics,
        CwOperation::GetMetricStatistics,
        CwOperation::GetMetricData,
    ];

    /// The operation's name as the request path spells it.
    pub fn name(self) -> &'static str {
        match self {
            CwOperation::PutMetricAlarm => "PutMetricAlarm",
            CwOperation::DescribeAlarms => "DescribeAlarms",
            CwOperation::DeleteAlarms => "DeleteAlarms",
            CwOperation::SetAlarmState => "SetAlarmState",
            CwOperation::PutMetricData => "PutMetricData",
            CwOperation::ListMetrics => "ListMetrics",
            CwOperation::GetMetricStatistics => "GetMetricStatistics",
            CwOperation::GetMetricData => "GetMetricData",
        }
    }

    /// Looks an operation up by name.
    pub fn from_name(name: &str) -> Option<CwOperation> {
        CwOperation::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// CloudWatch's other operations (botocore 1.43): answered `UnsupportedOperation`, where
/// a name CloudWatch does not have is an unknown operation.
pub const UNSUPPORTED_OPERATIONS: [&str; 38] = [
    "DeleteAlarmMuteRule",
    "DeleteAnomalyDetector",
    "DeleteDashboards",
    "DeleteInsightRules",
    "DeleteMetricStream",
    "DescribeAlarmContributors",
    "DescribeAlarmHistory",
    "DescribeAlarmsForMetric",
    "DescribeAnomalyDetectors",
    "DescribeInsightRules",
    "DisableAlarmActions",
    "DisableInsightRules",
    "EnableAlarmActions",
    "EnableInsightRules",
    "GetAlarmMuteRule",
    "GetDashboard",
    "GetInsightRuleReport",
    "GetMetricStream",
    "GetMetricWidgetImage",
    "GetOTelEnrichment",
    "ListAlarmMuteRules",
    "ListDashboards",
    "ListManagedInsightRules",
    "ListMetricStreams",
    "ListTagsForResource",
    "PutAlarmMuteRule",
    "PutAnomalyDetector",
    "PutCompositeAlarm",
    "PutDashboard",
    "PutInsightRule",
    "PutManagedInsightRules",
    "PutMetricStream",
    "StartMetricStreams",
    "StartOTelEnrichment",
    "StopMetricStreams",
    "StopOTelEnrichment",
    "TagResource",
    "UntagResource",
];

/// An alarm's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StateValue {
    /// The metric is within its threshold.
    #[serde(rename = "OK")]
    Ok,
    /// The metric breached its threshold.
    #[serde(rename = "ALARM")]
    Alarm,
    /// Not enough data to decide (a new alarm, or no datapoints).
    #[serde(rename = "INSUFFICIENT_DATA")]
    InsufficientData,
}

impl StateValue {
    /// The state as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StateValue::Ok => "OK",
            StateValue::Alarm => "ALARM",
            StateValue::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// The statistic of a metric alarm, over each period's datapoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Statistic {
    /// How many datapoints.
    SampleCount,
    /// Their mean.
    Average,
    /// Their sum.
    Sum,
    /// The smallest.
    Minimum,
    /// The largest.
    Maximum,
}

/// How a period's statistic is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComparisonOperator {
    /// `value >= threshold` breaches.
    GreaterThanOrEqualToThreshold,
    /// `value > threshold` breaches.
    GreaterThanThreshold,
    /// `value < threshold` breaches.
    LessThanThreshold,
    /// `value <= threshold` breaches.
    LessThanOrEqualToThreshold,
    /// Anomaly detection bands (refused: flotilla has no anomaly detection).
    LessThanLowerOrGreaterThanUpperThreshold,
    /// Anomaly detection bands (refused).
    LessThanLowerThreshold,
    /// Anomaly detection bands (refused).
    GreaterThanUpperThreshold,
}

/// A metric dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension {
    /// Its name (1–255 characters).
    pub name: String,
    /// Its value (1–1024 characters).
    pub value: String,
}

/// A tag (accepted with PutMetricAlarm and kept; not listed by DescribeAlarms, as in
/// CloudWatch).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// PutMetricAlarm input (the members flotilla reads; metric math `Metrics`,
/// `ExtendedStatistic` and anomaly thresholds are refused).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutMetricAlarmRequest {
    /// The alarm's name, unique in the account and region (1–255 characters).
    pub alarm_name: Option<String>,
    /// Its description (0–1024 characters).
    pub alarm_description: Option<String>,
    /// Whether actions run on state changes (kept; flotilla runs no actions).
    pub actions_enabled: Option<bool>,
    /// Actions on OK (kept, at most 5; not run).
    #[serde(rename = "OKActions")]
    pub ok_actions: Option<Vec<String>>,
    /// Actions on ALARM (kept, at most 5; not run).
    pub alarm_actions: Option<Vec<String>>,
    /// Actions on INSUFFICIENT_DATA (kept, at most 5; not run).
    pub insufficient_data_actions: Option<Vec<String>>,
    /// The metric's name.
    pub metric_name: Option<String>,
    /// The metric's namespace.
    pub namespace: Option<String>,
    /// The statistic.
    pub statistic: Option<Statistic>,
    /// A percentile statistic (refused).
    pub extended_statistic: Option<String>,
    /// The metric's dimensions (at most 30).
    pub dimensions: Option<Vec<Dimension>>,
    /// Seconds per period.
    pub period: Option<i32>,
    /// The unit (kept; datapoints of any unit count).
    pub unit: Option<String>,
    /// How many periods are evaluated.
    pub evaluation_periods: Option<i32>,
    /// How many of them must breach (default: all).
    pub datapoints_to_alarm: Option<i32>,
    /// The threshold.
    pub threshold: Option<f64>,
    /// How the statistic is compared with the threshold.
    pub comparison_operator: Option<ComparisonOperator>,
    /// `missing` (default), `notBreaching`, `breaching` or `ignore`.
    pub treat_missing_data: Option<String>,
    /// Percentile option (refused with `ExtendedStatistic`).
    pub evaluate_low_sample_count_percentile: Option<String>,
    /// Metric math queries (refused).
    pub metrics: Option<Vec<serde_json::Value>>,
    /// Tags (at most 50).
    pub tags: Option<Vec<Tag>>,
    /// Anomaly detection band (refused).
    pub threshold_metric_id: Option<String>,
}

impl Required for PutMetricAlarmRequest {
    fn missing_required(&self) -> Option<&'static str> {
        self.alarm_name.is_none().then_some("AlarmName")
    }
}

/// A metric alarm as DescribeAlarms shows it (and as flotilla stores it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricAlarm {
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_name: Option<String>,
    /// `arn:aws:cloudwatch:<region>:<account>:alarm:<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_arn: Option<String>,
    /// Its description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_description: Option<String>,
    /// When its configuration last changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_configuration_updated_timestamp: Option<Timestamp>,
    /// Whether actions are enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions_enabled: Option<bool>,
    /// Actions on OK.
    #[serde(rename = "OKActions", skip_serializing_if = "Option::is_none")]
    pub ok_actions: Option<Vec<String>>,
    /// Actions on ALARM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm_actions: Option<Vec<String>>,
    /// Actions on INSUFFICIENT_DATA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insufficient_data_actions: Option<Vec<String>>,
    /// Its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_value: Option<StateValue>,
    /// Why it is in that state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// The reason as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason_data: Option<String>,
    /// When its state (or reason) was last updated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_updated_timestamp: Option<Timestamp>,
    /// The metric's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    /// The metric's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The statistic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<Statistic>,
    /// The metric's dimensions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Vec<Dimension>>,
    /// Seconds per period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<i32>,
    /// The unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// How many periods are evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation_periods: Option<i32>,
    /// How many must breach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datapoints_to_alarm: Option<i32>,
    /// The threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison_operator: Option<ComparisonOperator>,
    /// How missing data counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub treat_missing_data: Option<String>,
    /// When its state last changed (not just its reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_transitioned_timestamp: Option<Timestamp>,
}

/// DescribeAlarms input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAlarmsRequest {
    /// Only these alarms (at most 100).
    pub alarm_names: Option<Vec<String>>,
    /// Only alarms whose name starts so (not with `AlarmNames`).
    pub alarm_name_prefix: Option<String>,
    /// `MetricAlarm` and/or `CompositeAlarm` (default: metric alarms only).
    pub alarm_types: Option<Vec<String>>,
    /// Composite alarms' children (flotilla has no composite alarms: nothing matches).
    pub children_of_alarm_name: Option<String>,
    /// Composite alarms' parents (nothing matches).
    pub parents_of_alarm_name: Option<String>,
    /// Only alarms in this state.
    pub state_value: Option<StateValue>,
    /// Only alarms with an action starting so.
    pub action_prefix: Option<String>,
    /// Page size (1–100, default 50).
    pub max_records: Option<i32>,
    /// Where the previous page ended.
    pub next_token: Option<String>,
}

impl Required for DescribeAlarmsRequest {
    fn missing_required(&self) -> Option<&'static str> {
        None
    }
}

/// DescribeAlarms output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAlarmsResult {
    /// Composite alarms (always empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub composite_alarms: Option<Vec<serde_json::Value>>,
    /// The metric alarms of this page.
    pub metric_alarms: Vec<MetricAlarm>,
    /// Where the next page starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// DeleteAlarms input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteAlarmsRequest {
    /// The alarms to delete (at most 100).
    pub alarm_names: Option<Vec<String>>,
}

impl Required for DeleteAlarmsRequest {
    fn missing_required(&self) -> Option<&'static str> {
        self.alarm_names.is_none().then_some("AlarmNames")
    }
}

/// SetAlarmState input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SetAlarmStateRequest {
    /// The alarm.
    pub alarm_name: Option<String>,
    /// Its new state.
    pub state_value: Option<StateValue>,
    /// Why (0–1023 characters).
    pub state_reason: Option<String>,
    /// The reason as JSON (0–4000 characters).
    pub state_reason_data: Option<String>,
}

impl Required for SetAlarmStateRequest {
    fn missing_required(&self) -> Option<&'static str> {
        if self.alarm_name.is_none() {
            Some("AlarmName")
        } else if self.state_value.is_none() {
            Some("StateValue")
        } else {
            self.state_reason.is_none().then_some("StateReason")
        }
    }
}

/// A statistic set: one datapoint summarizing several samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StatisticSet {
    /// How many samples.
    pub sample_count: f64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub minimum: f64,
    /// The largest.
    pub maximum: f64,
}

/// One metric's datapoint(s) in PutMetricData.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricDatum {
    /// The metric's name.
    pub metric_name: Option<String>,
    /// Its dimensions (at most 30).
    pub dimensions: Option<Vec<Dimension>>,
    /// When (default: now).
    pub timestamp: Option<Timestamp>,
    /// One value.
    pub value: Option<f64>,
    /// A statistic set instead of a value.
    pub statistic_values: Option<StatisticSet>,
    /// Several values instead (at most 150).
    pub values: Option<Vec<f64>>,
    /// How often each of `values` occurred (default 1 each).
    pub counts: Option<Vec<f64>>,
    /// The unit, one of [`STANDARD_UNITS`] (the metric keeps the last one given, which
    /// GetMetricStatistics and GetMetricData answer and filter on; alarms count
    /// datapoints of any unit).
    pub unit: Option<String>,
    /// 1 (high resolution) or 60; flotilla keeps one-minute datapoints either way.
    pub storage_resolution: Option<i32>,
}

/// PutMetricData input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutMetricDataRequest {
    /// The metrics' namespace (not `AWS/…`, which is AWS's own, as in CloudWatch).
    pub namespace: Option<String>,
    /// The datapoints (at most 1000).
    pub metric_data: Option<Vec<MetricDatum>>,
    /// Entity-associated data (refused).
    pub entity_metric_data: Option<Vec<serde_json::Value>>,
    /// Entity validation (ignored).
    pub strict_entity_validation: Option<bool>,
}

impl Required for PutMetricDataRequest {
    fn missing_required(&self) -> Option<&'static str> {
        if self.namespace.is_none() {
            return Some("Namespace");
        }
        self.metric_data
            .iter()
            .flatten()
            .any(|d| d.metric_name.is_none())
            .then_some("MetricData.member.MetricName")
    }
}

/// A dimension ListMetrics filters on: the metric must have a dimension of this name
/// (with this value, when given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DimensionFilter {
    /// The dimension's name (1–255 characters).
    pub name: String,
    /// Its value (1–1024 characters); any value when absent.
    pub value: Option<String>,
}

/// ListMetrics input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListMetricsRequest {
    /// Only metrics of this namespace.
    pub namespace: Option<String>,
    /// Only metrics of this name.
    pub metric_name: Option<String>,
    /// Only metrics that have each of these dimensions (at most 10); other dimensions
    /// of theirs do not matter.
    pub dimensions: Option<Vec<DimensionFilter>>,
    /// Where the previous page ended.
    pub next_token: Option<String>,
    /// `PT3H`: only metrics with datapoints in the past three hours.
    pub recently_active: Option<String>,
    /// Cross-account observability (flotilla has none: only `false`).
    pub include_linked_accounts: Option<bool>,
    /// Cross-account observability: only the caller's own account.
    pub owning_account: Option<String>,
}

impl Required for ListMetricsRequest {
    fn missing_required(&self) -> Option<&'static str> {
        None
    }
}

/// A metric as ListMetrics shows it (and as GetMetricData's `MetricStat` names one: a
/// member it lacks reads as empty, which the operation refuses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Metric {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub metric_name: String,
    /// Its dimensions, sorted by name.
    pub dimensions: Vec<Dimension>,
}

/// ListMetrics output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListMetricsResult {
    /// The metrics of this page.
    pub metrics: Vec<Metric>,
    /// Where the next page starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// CloudWatch's `StandardUnit`s: the units PutMetricData, GetMetricStatistics and
/// GetMetricData accept.
pub const STANDARD_UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// GetMetricStatistics input: one metric (its exact dimensions), a time range cut into
/// periods, and the statistics wanted of each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetMetricStatisticsRequest {
    /// The metric's namespace.
    pub namespace: Option<String>,
    /// The metric's name.
    pub metric_name: Option<String>,
    /// The metric's dimensions, all of them (a metric with other dimensions is another
    /// metric).
    pub dimensions: Option<Vec<Dimension>>,
    /// The first period starts here (rounded down to the minute).
    pub start_time: Option<Timestamp>,
    /// Datapoints up to here (exclusive).
    pub end_time: Option<Timestamp>,
    /// Seconds per period (a multiple of 60).
    pub period: Option<i32>,
    /// `SampleCount`, `Average`, `Sum`, `Minimum`, `Maximum` (1–5 of them).
    pub statistics: Option<Vec<String>>,
    /// Percentiles (refused: flotilla keeps no percentiles).
    pub extended_statistics: Option<Vec<String>>,
    /// Only datapoints of this unit (one of [`STANDARD_UNITS`]).
    pub unit: Option<String>,
}

impl Required for GetMetricStatisticsRequest {
    fn missing_required(&self) -> Option<&'static str> {
        if self.namespace.is_none() {
            Some("Namespace")
        } else if self.metric_name.is_none() {
            Some("MetricName")
        } else if self.start_time.is_none() {
            Some("StartTime")
        } else if self.end_time.is_none() {
            Some("EndTime")
        } else {
            self.period.is_none().then_some("Period")
        }
    }
}

/// One period's statistics (those asked for) as GetMetricStatistics answers them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Datapoint {
    /// The period's start.
    pub timestamp: Timestamp,
    /// How many samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_count: Option<f64>,
    /// Their mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub average: Option<f64>,
    /// Their sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    /// The smallest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<f64>,
    /// The largest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<f64>,
    /// The unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// GetMetricStatistics output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetMetricStatisticsResult {
    /// The metric's name.
    pub label: String,
    /// One per period that has datapoints, oldest first.
    pub datapoints: Vec<Datapoint>,
}

/// A metric, period and statistic: one time series of GetMetricData.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricStat {
    /// The metric (its exact dimensions).
    pub metric: Option<Metric>,
    /// Seconds per period (a multiple of 60).
    pub period: Option<i32>,
    /// `SampleCount`, `Average`, `Sum`, `Minimum` or `Maximum`.
    pub stat: Option<String>,
    /// Only datapoints of this unit (one of [`STANDARD_UNITS`]).
    pub unit: Option<String>,
}

/// One query of GetMetricData: a metric's statistic (`MetricStat`) or metric math over
/// other queries (`Expression`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricDataQuery {
    /// Its id: a lowercase letter, then letters, digits and underscores (1–255).
    pub id: Option<String>,
    /// The metric's statistic.
    pub metric_stat: Option<MetricStat>,
    /// Metric math over other queries' ids (1–2048 characters).
    pub expression: Option<String>,
    /// Its label (default: the metric's name, or the id of an expression).
    pub label: Option<String>,
    /// Whether its values are answered (default true; `false` for queries only an
    /// expression uses).
    pub return_data: Option<bool>,
    /// An expression's period (accepted; an expression has its inputs' periods).
    pub period: Option<i32>,
    /// Cross-account observability (only the caller's own account has data).
    pub account_id: Option<String>,
}

/// The order of each result's datapoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScanBy {
    /// Newest first (the default).
    #[default]
    TimestampDescending,
    /// Oldest first.
    TimestampAscending,
}

/// How labels are written (accepted; flotilla's labels carry no times).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LabelOptions {
    /// The time zone of times in labels.
    pub timezone: Option<String>,
}

/// GetMetricData input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetMetricDataRequest {
    /// The queries (1–500).
    pub metric_data_queries: Option<Vec<MetricDataQuery>>,
    /// The first period starts here (rounded down to the minute).
    pub start_time: Option<Timestamp>,
    /// Datapoints up to here (exclusive).
    pub end_time: Option<Timestamp>,
    /// Where the previous page ended.
    pub next_token: Option<String>,
    /// The order of each result's datapoints (default newest first).
    pub scan_by: Option<ScanBy>,
    /// Most datapoints of one page, all results together (default 100,800).
    pub max_datapoints: Option<i32>,
    /// How labels are written (accepted).
    pub label_options: Option<LabelOptions>,
}

impl Required for GetMetricDataRequest {
    fn missing_required(&self) -> Option<&'static str> {
        if self.metric_data_queries.is_none() {
            Some("MetricDataQueries")
        } else if self.start_time.is_none() {
            Some("StartTime")
        } else {
            self.end_time.is_none().then_some("EndTime")
        }
    }
}

/// Whether a result has all its datapoints on this page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusCode {
    /// Every datapoint is answered.
    Complete,
    /// More follow on the next page (`NextToken`).
    PartialData,
}

/// A message about a result or the whole call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageData {
    /// Its code.
    pub code: String,
    /// Its text.
    pub value: String,
}

/// One query's datapoints on this page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricDataResult {
    /// The query's id.
    pub id: String,
    /// Its label.
    pub label: String,
    /// The periods' starts, in `ScanBy` order.
    pub timestamps: Vec<Timestamp>,
    /// The values, one per timestamp.
    pub values: Vec<f64>,
    /// `PartialData` when more datapoints follow on the next page.
    pub status_code: StatusCode,
    /// Messages about this result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageData>,
}

/// GetMetricData output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetMetricDataResult {
    /// One per query with `ReturnData`, in the order of the queries.
    pub metric_data_results: Vec<MetricDataResult>,
    /// Where the next page starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Messages about the whole call.
    pub messages: Vec<MessageData>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_their_names_and_are_not_listed_as_unsupported() {
        for op in CwOperation::ALL {
            assert_eq!(CwOperation::from_name(op.name()), Some(op));
            assert!(!UNSUPPORTED_OPERATIONS.contains(&op.name()));
        }
        assert_eq!(CwOperation::from_name("GetDashboard"), None);
    }

    #[test]
    fn metric_reads_parse_as_botocore_sends_them_and_answer_only_what_is_set() {
        let r: GetMetricDataRequest = serde_json::from_value(serde_json::json!({
            "MetricDataQueries": [
                {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Errors"},
                 "Period": 60, "Stat": "Sum"}, "ReturnData": false},
                {"Id": "e1", "Expression": "m1 / 60"}
            ],
            "StartTime": 1.0, "EndTime": 2.0, "ScanBy": "TimestampAscending", "MaxDatapoints": 10
        }))
        .unwrap();
        assert_eq!(r.missing_required(), None);
        assert_eq!(r.scan_by, Some(ScanBy::TimestampAscending));
        let q = r.metric_data_queries.unwrap();
        let metric = q[0].metric_stat.as_ref().unwrap().metric.as_ref().unwrap();
        assert!(metric.dimensions.is_empty(), "Dimensions may be left out");
        assert_eq!(q[1].expression.as_deref(), Some("m1 / 60"));
        assert_eq!(
            GetMetricStatisticsRequest::default().missing_required(),
            Some("Namespace")
        );
        let d = Datapoint {
            timestamp: 60.0,
            sum: Some(2.0),
            unit: Some("None".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"Timestamp": 60.0, "Sum": 2.0, "Unit": "None"})
        );
    }

    #[test]
    fn members_are_pascal_case_and_ok_actions_keeps_its_spelling() {
        let r: PutMetricAlarmRequest = serde_json::from_value(serde_json::json!({
            "AlarmName": "a", "OKActions": ["x"], "ComparisonOperator": "GreaterThanThreshold",
            "Statistic": "Sum", "Dimensions": [{"Name": "n", "Value": "v"}]
        }))
        .unwrap();
        assert_eq!(r.ok_actions.as_deref(), Some(&["x".to_owned()][..]));
        assert_eq!(r.statistic, Some(Statistic::Sum));
        let a = MetricAlarm {
            state_value: Some(StateValue::InsufficientData),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"StateValue": "INSUFFICIENT_DATA"})
        );
    }
}
