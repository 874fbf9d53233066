//! An alarm's state from its configuration, its metric's datapoints and the time: the
//! pure [`evaluate`], and [`evaluate_alarms`], the write the evaluation timer runs.
//!
//! ## The rule
//! Periods are aligned on multiples of `Period` (epoch seconds). The window is the
//! `EvaluationPeriods` most recent periods: the one still open at `now` counts only once
//! it has a datapoint (so a datapoint is acted on at once, but an open period is never
//! judged missing), else the window is the periods that ended before it. Each period's
//! value is the alarm's `Statistic` over the one-minute buckets in it; a period without
//! one is *missing*. With `M = DatapointsToAlarm` (default `EvaluationPeriods`):
//!
//! | `TreatMissingData` | ALARM when | else |
//! | --- | --- | --- |
//! | `missing` (default) | ≥ M periods breach | INSUFFICIENT_DATA if every period is missing, else OK |
//! | `notBreaching` | ≥ M periods breach (missing ones do not) | OK |
//! | `breaching` | ≥ M periods breach or are missing | OK |
//! | `ignore` | ≥ M periods breach | the state is kept if every period is missing, else OK |
//!
//! A state set by SetAlarmState holds until the alarm's next evaluation, at most one
//! period (60 s at most) later ([`hold_secs`]).

use model::wire_cw::{ComparisonOperator, MetricAlarm, StateValue, Statistic};

use crate::engine::{Ctx, Written};
use crate::state::{AlarmRecord, Bucket, CwRecord, State, metric_id};

/// A decided state and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The state.
    pub state: StateValue,
    /// `StateReason`.
    pub reason: String,
    /// `StateReasonData` (JSON).
    pub reason_data: String,
}

/// How a period of the window looked.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Period {
    Missing,
    Value { value: f64, breaching: bool },
}

/// How long a state SetAlarmState set holds: until the next evaluation, one period
/// later but at most 60 s.
pub fn hold_secs(alarm: &MetricAlarm) -> f64 {
    f64::from(alarm.period.unwrap_or(60).clamp(1, 60))
}

/// The statistic of `buckets` (all in one period), or `None` when there are none.
pub fn statistic(stat: Statistic, buckets: &[&Bucket]) -> Option<f64> {
    if buckets.is_empty() {
        return None;
    }
    let count: f64 = buckets.iter().map(|b| b.count).sum();
    let sum: f64 = buckets.iter().map(|b| b.sum).sum();
    Some(match stat {
        Statistic::SampleCount => count,
        Statistic::Sum => sum,
        Statistic::Average if count > 0.0 => sum / count,
        Statistic::Average => 0.0,
        Statistic::Minimum => buckets.iter().map(|b| b.min).fold(f64::INFINITY, f64::min),
        Statistic::Maximum => buckets
            .iter()
            .map(|b| b.max)
            .fold(f64::NEG_INFINITY, f64::max),
    })
}

/// Whether `value` breaches `threshold` under `op` (the anomaly-band operators, which
/// PutMetricAlarm refuses, never breach).
pub fn breaches(op: ComparisonOperator, value: f64, threshold: f64) -> bool {
    match op {
        ComparisonOperator::GreaterThanOrEqualToThreshold => value >= threshold,
        ComparisonOperator::GreaterThanThreshold => value > threshold,
        ComparisonOperator::LessThanThreshold => value < threshold,
        ComparisonOperator::LessThanOrEqualToThreshold => value <= threshold,
        ComparisonOperator::LessThanLowerOrGreaterThanUpperThreshold
        | ComparisonOperator::LessThanLowerThreshold
        | ComparisonOperator::GreaterThanUpperThreshold => false,
    }
}

fn op_words(op: ComparisonOperator) -> &'static str {
    match op {
        ComparisonOperator::GreaterThanOrEqualToThreshold => "greater than or equal to",
        ComparisonOperator::GreaterThanThreshold => "greater than",
        ComparisonOperator::LessThanThreshold => "less than",
        ComparisonOperator::LessThanOrEqualToThreshold => "less than or equal to",
        ComparisonOperator::LessThanLowerOrGreaterThanUpperThreshold
        | ComparisonOperator::LessThanLowerThreshold
        | ComparisonOperator::GreaterThanUpperThreshold => "outside the band of",
    }
}

/// The state `alarm` is in at `now`, given its metric's `buckets` (oldest first) and its
/// `current` state (kept by `ignore` when every period is missing). See the module docs.
pub fn evaluate(
    alarm: &MetricAlarm,
    buckets: &[Bucket],
    current: StateValue,
    now: f64,
) -> Evaluation {
    let period = i64::from(alarm.period.unwrap_or(60).max(60));
    let n = i64::from(alarm.evaluation_periods.unwrap_or(1).max(1));
    let m = i64::from(
        alarm
            .datapoints_to_alarm
            .unwrap_or(n as i32)
            .clamp(1, n as i32),
    );
    let stat = alarm.statistic.unwrap_or(Statistic::Average);
    let op = alarm
        .comparison_operator
        .unwrap_or(ComparisonOperator::GreaterThanThreshold);
    let threshold = alarm.threshold.unwrap_or(0.0);
    let now_s = now.floor() as i64;
    let open = now_s.div_euclid(period) * period;
    let in_period = |start: i64| -> Vec<&Bucket> {
        buckets
            .iter()
            .filter(|b| (start..start + period).contains(&(b.minute * 60)))
            .collect()
    };
    let newest = if in_period(open).is_empty() {
        open - period
    } else {
        open
    };
    // Newest first.
    let periods: Vec<(i64, Period)> = (0..n)
        .map(|k| {
            let start = newest - k * period;
            let p = match statistic(stat, &in_period(start)) {
                None => Period::Missing,
                Some(value) => Period::Value {
                    value,
                    breaching: breaches(op, value, threshold),
                },
            };
            (start, p)
        })
        .collect();
    let breaching = periods
        .iter()
        .filter(|(_, p)| {
            matches!(
                p,
                Period::Value {
                    breaching: true,
                    ..
                }
            )
        })
        .count() as i64;
    let missing = periods
        .iter()
        .filter(|(_, p)| *p == Period::Missing)
        .count() as i64;
    let treat = alarm.treat_missing_data.as_deref().unwrap_or("missing");
    let alarmed = match treat {
        "breaching" => breaching + missing >= m,
        _ => breaching >= m,
    };
    let all_missing = missing == n;
    let state = if alarmed {
        StateValue::Alarm
    } else if all_missing && treat == "missing" {
        StateValue::InsufficientData
    } else if all_missing && treat == "ignore" {
        current
    } else {
        StateValue::Ok
    };
    let values: Vec<String> = periods
        .iter()
        .filter_map(|(start, p)| match p {
            Period::Value { value, .. } => Some(format!("{value} ({start})")),
            Period::Missing => None,
        })
        .collect();
    let reason = if state == StateValue::InsufficientData
        || (all_missing && state == current && treat == "ignore")
    {
        format!("Insufficient Data: {n} datapoints were unknown.")
    } else {
        let (count, verb) = if state == StateValue::Alarm && treat == "breaching" {
            (breaching + missing, "")
        } else if state == StateValue::Alarm {
            (breaching, "")
        } else {
            (n - breaching, "not ")
        };
        let was = if count == 1 { "was" } else { "were" };
        format!(
            "Threshold Crossed: {count} out of the last {n} datapoints [{}] {was} {verb}{} the \
             threshold ({threshold}) (minimum {m} datapoint{} for OK -> ALARM transition).",
            values.join(", "),
            op_words(op),
            if m == 1 { "" } else { "s" }
        )
    };
    let recent: Vec<serde_json::Value> = periods
        .iter()
        .filter_map(|(_, p)| match p {
            Period::Value { value, .. } => Some(serde_json::json!(value)),
            Period::Missing => None,
        })
        .collect();
    let reason_data = serde_json::json!({
        "version": "1.0",
        "queryDate": now,
        "statistic": format!("{stat:?}"),
        "period": period,
        "recentDatapoints": recent,
        "threshold": threshold,
        "evaluatedDatapoints": periods.iter().map(|(start, p)| match p {
            Period::Value { value, .. } => serde_json::json!({"timestamp": start, "value": value}),
            Period::Missing => serde_json::json!({"timestamp": start}),
        }).collect::<Vec<_>>(),
    })
    .to_string();
    Evaluation {
        state,
        reason,
        reason_data,
    }
}

/// `alarm` evaluated at `now` against the state's datapoints: the record as it must be
/// written when its state changes, `None` when it stays (or SetAlarmState's state still
/// holds).
pub fn reevaluated(state: &State, alarm: &AlarmRecord, now: f64) -> Option<AlarmRecord> {
    reevaluated_with(state, alarm, None, now)
}

/// [`reevaluated`], reading the datapoints from `buckets` when given (a metric being
/// written in the same operation) instead of the state.
pub fn reevaluated_with(
    state: &State,
    alarm: &AlarmRecord,
    buckets: Option<&[Bucket]>,
    now: f64,
) -> Option<AlarmRecord> {
    if alarm.held_until.is_some_and(|until| now < until) {
        return None;
    }
    let a = &alarm.alarm;
    let stored;
    let buckets = match buckets {
        Some(b) => b,
        None => {
            let id = metric_id(
                a.namespace.as_deref().unwrap_or(""),
                a.metric_name.as_deref().unwrap_or(""),
                a.dimensions.as_deref().unwrap_or(&[]),
            );
            stored = state.discovery.cloudwatch.metric(&alarm.scope, &id);
            stored.map_or(&[][..], |m| m.buckets.as_slice())
        }
    };
    let current = alarm.state();
    let e = evaluate(a, buckets, current, now);
    if e.state == current {
        return None;
    }
    Some(with_state(alarm, e, now))
}

/// `alarm` moved to `e`'s state at `now` (a transition: both timestamps move).
pub fn with_state(alarm: &AlarmRecord, e: Evaluation, now: f64) -> AlarmRecord {
    let mut next = alarm.clone();
    let a = &mut next.alarm;
    if a.state_value != Some(e.state) {
        a.state_transitioned_timestamp = Some(now);
    }
    a.state_value = Some(e.state);
    a.state_reason = Some(e.reason);
    a.state_reason_data = Some(e.reason_data);
    a.state_updated_timestamp = Some(now);
    next.held_until = None;
    next
}

/// The evaluation timer's write: every alarm of every scope whose state is due to
/// change at `ctx.now` (datapoints aged out of its window, SetAlarmState's hold over).
/// Returns how many changed.
pub fn evaluate_alarms(state: &State, ctx: &mut Ctx, _: ()) -> Written<usize> {
    let changes: Vec<_> = state
        .discovery
        .cloudwatch
        .alarms
        .values()
        .filter_map(|a| reevaluated(state, a, ctx.now))
        .map(|a| super::put(CwRecord::Alarm(Box::new(a))))
        .collect();
    Ok((changes.len(), changes))
}
