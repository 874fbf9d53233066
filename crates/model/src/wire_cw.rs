//! The few Amazon CloudWatch (`monitoring`) shapes flotilla serves: metric alarms
//! (PutMetricAlarm, DescribeAlarms, DeleteAlarms, SetAlarmState) and the metrics they
//! watch (PutMetricData, ListMetrics), which is what ECS's `deploymentConfiguration.alarms`
//! needs.
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

/// Members of the shapes here that are timestamps (and no other member has these
/// names): the codec writes them as CBOR tag 1 (epoch seconds).
pub const TIMESTAMP_MEMBERS: [&str; 4] = [
    "AlarmConfigurationUpdatedTimestamp",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
    "Timestamp",
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
}

impl CwOperation {
    /// Every served operation.
    pub const ALL: [CwOperation; 6] = [
        CwOperation::PutMetricAlarm,
        CwOperation::DescribeAlarms,
        CwOperation::DeleteAlarms,
        CwOperation::SetAlarmState,
        CwOperation::PutMetricData,
        CwOperation::ListMetrics,
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
        }
    }

    /// Looks an operation up by name.
    pub fn from_name(name: &str) -> Option<CwOperation> {
        CwOperation::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// CloudWatch's other operations (botocore 1.43): answered `UnsupportedOperation`, where
/// a name CloudWatch does not have is an unknown operation.
pub const UNSUPPORTED_OPERATIONS: [&str; 40] = [
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
    "GetMetricData",
    "GetMetricStatistics",
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
    /// The unit (kept nowhere: alarms count datapoints of any unit).
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

/// A metric as ListMetrics shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_their_names_and_are_not_listed_as_unsupported() {
        for op in CwOperation::ALL {
            assert_eq!(CwOperation::from_name(op.name()), Some(op));
            assert!(!UNSUPPORTED_OPERATIONS.contains(&op.name()));
        }
        assert_eq!(CwOperation::from_name("GetMetricData"), None);
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
