//! CloudWatch request bodies the alarm tests share: one alarm on `App`'s `Errors` metric
//! (summed over one minute, ALARM above 5) and a datapoint of that metric.
//!
//! They build only `model` shapes, so `controlplane`'s own unit tests can use them too
//! (see the crate's limitations).

use model::wire_cw::{
    ComparisonOperator, Dimension, MetricDatum, PutMetricAlarmRequest, PutMetricDataRequest,
    Statistic,
};

/// PutMetricAlarm for `name`: `App`/`Errors`, Sum over one 60 s period, ALARM when
/// greater than 5, no dimensions.
pub fn errors_alarm(name: &str) -> PutMetricAlarmRequest {
    PutMetricAlarmRequest {
        alarm_name: Some(name.into()),
        metric_name: Some("Errors".into()),
        namespace: Some("App".into()),
        statistic: Some(Statistic::Sum),
        period: Some(60),
        evaluation_periods: Some(1),
        threshold: Some(5.0),
        comparison_operator: Some(ComparisonOperator::GreaterThanThreshold),
        ..Default::default()
    }
}

/// PutMetricData of one `App`/`Errors` datapoint of `value` with `dimensions`, now.
pub fn errors_datum(value: f64, dimensions: Option<Vec<Dimension>>) -> PutMetricDataRequest {
    PutMetricDataRequest {
        namespace: Some("App".into()),
        metric_data: Some(vec![MetricDatum {
            metric_name: Some("Errors".into()),
            dimensions,
            value: Some(value),
            ..Default::default()
        }]),
        ..Default::default()
    }
}
