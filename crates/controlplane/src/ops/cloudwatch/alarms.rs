//! Metric alarms: PutMetricAlarm, DescribeAlarms, DeleteAlarms, SetAlarmState.

use model::wire_cw::{
    ComparisonOperator, DeleteAlarmsRequest, DescribeAlarmsRequest, DescribeAlarmsResult,
    MetricAlarm, PutMetricAlarmRequest, SetAlarmStateRequest, StateValue,
};

use super::evaluate::{Evaluation, hold_secs, reevaluated, with_state};
use super::{
    CwError, CwWritten, DEFAULT_RECORDS, MAX_ACTIONS, MAX_ALARMS, MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS, MAX_NAMES_PER_CALL, MAX_REASON_CHARS, MAX_REASON_DATA_CHARS, MAX_RECORDS,
    MAX_TAGS, MAX_WINDOW_SECS, check_count, check_dimensions, check_len, delete, put,
};
use crate::engine::Ctx;
use crate::state::{AlarmRecord, CwRecord, Scope, State};

/// `arn:aws:cloudwatch:<region>:<account>:alarm:<name>`.
pub fn alarm_arn(scope: &Scope, name: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{}:{}:alarm:{name}",
        scope.region, scope.account
    )
}

const TREAT_MISSING: [&str; 4] = ["breaching", "notBreaching", "ignore", "missing"];

/// Checks what flotilla evaluates: a single metric with a `Statistic`, a period that is a
/// multiple of 60, a window within [`MAX_WINDOW_SECS`], a static threshold.
fn check_metric_alarm(req: &PutMetricAlarmRequest) -> Result<(), CwError> {
    if req.metrics.is_some() || req.threshold_metric_id.is_some() {
        return Err(CwError::InvalidParameterValue(
            "Metric math alarms (Metrics, ThresholdMetricId) are not supported by flotilla; \
             give MetricName, Namespace and Statistic."
                .into(),
        ));
    }
    if req.extended_statistic.is_some() || req.evaluate_low_sample_count_percentile.is_some() {
        return Err(CwError::InvalidParameterValue(
            "Percentile statistics (ExtendedStatistic) are not supported by flotilla; use \
             Statistic."
                .into(),
        ));
    }
    let missing = |m: &str| CwError::MissingParameter(format!("The parameter {m} is required."));
    let name = req
        .metric_name
        .as_deref()
        .ok_or_else(|| missing("MetricName"))?;
    let namespace = req
        .namespace
        .as_deref()
        .ok_or_else(|| missing("Namespace"))?;
    check_len("metricName", name, 1, MAX_NAME_CHARS)?;
    check_len("namespace", namespace, 1, MAX_NAME_CHARS)?;
    check_dimensions("dimensions", req.dimensions.as_deref().unwrap_or(&[]))?;
    req.statistic.ok_or_else(|| missing("Statistic"))?;
    let op = req
        .comparison_operator
        .ok_or_else(|| missing("ComparisonOperator"))?;
    if !matches!(
        op,
        ComparisonOperator::GreaterThanOrEqualToThreshold
            | ComparisonOperator::GreaterThanThreshold
            | ComparisonOperator::LessThanThreshold
            | ComparisonOperator::LessThanOrEqualToThreshold
    ) {
        return Err(CwError::InvalidParameterValue(
            "Anomaly detection thresholds are not supported by flotilla.".into(),
        ));
    }
    let threshold = req.threshold.ok_or_else(|| missing("Threshold"))?;
    if !threshold.is_finite() {
        return Err(CwError::InvalidParameterValue(
            "Threshold must be a finite number.".into(),
        ));
    }
    let period = req.period.ok_or_else(|| missing("Period"))?;
    if period < 60 || period % 60 != 0 {
        return Err(CwError::InvalidParameterValue(format!(
            "Period {period} is not supported: flotilla keeps one-minute datapoints, so a \
             period must be a multiple of 60 seconds."
        )));
    }
    let evaluations = req
        .evaluation_periods
        .ok_or_else(|| missing("EvaluationPeriods"))?;
    if evaluations < 1 {
        return Err(CwError::Validation(
            "1 validation error detected: Value at 'evaluationPeriods' failed to satisfy \
             constraint: Member must have value greater than or equal to 1"
                .into(),
        ));
    }
    if i64::from(period) * i64::from(evaluations) > MAX_WINDOW_SECS {
        return Err(CwError::InvalidParameterValue(format!(
            "The evaluation window (Period x EvaluationPeriods, {} s) is longer than the \
             {MAX_WINDOW_SECS} s of datapoints flotilla keeps.",
            i64::from(period) * i64::from(evaluations)
        )));
    }
    if let Some(m) = req.datapoints_to_alarm
        && !(1..=evaluations).contains(&m)
    {
        return Err(CwError::Validation(format!(
            "DatapointsToAlarm must be between 1 and EvaluationPeriods ({evaluations}), got {m}."
        )));
    }
    if let Some(t) = req.treat_missing_data.as_deref()
        && !TREAT_MISSING.contains(&t)
    {
        return Err(CwError::Validation(format!(
            "TreatMissingData must be one of {}, got {t:?}.",
            TREAT_MISSING.join(", ")
        )));
    }
    Ok(())
}

/// PutMetricAlarm: creates the alarm, or replaces its configuration (its state stays, as
/// in CloudWatch), then evaluates it at once.
pub fn put_metric_alarm(state: &State, ctx: &mut Ctx, req: PutMetricAlarmRequest) -> CwWritten<()> {
    let name = req.alarm_name.clone().unwrap_or_default();
    check_len("alarmName", &name, 1, MAX_NAME_CHARS)?;
    if name.chars().any(char::is_control) {
        return Err(CwError::InvalidParameterValue(
            "An alarm name cannot contain control characters.".into(),
        ));
    }
    check_len(
        "alarmDescription",
        req.alarm_description.as_deref().unwrap_or(""),
        0,
        MAX_DESCRIPTION_CHARS,
    )?;
    for (what, actions) in [
        ("OKActions", &req.ok_actions),
        ("alarmActions", &req.alarm_actions),
        ("insufficientDataActions", &req.insufficient_data_actions),
    ] {
        check_count(what, actions.as_ref().map_or(0, Vec::len), MAX_ACTIONS)?;
    }
    let tags = req.tags.clone().unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(CwError::LimitExceeded(format!(
            "An alarm can have at most {MAX_TAGS} tags."
        )));
    }
    check_metric_alarm(&req)?;
    let cw = &state.discovery.cloudwatch;
    let old = cw.alarm(&ctx.scope, &name);
    if old.is_none() && cw.alarms_in(&ctx.scope, None).count() >= MAX_ALARMS {
        return Err(CwError::LimitExceeded(format!(
            "This account already has {MAX_ALARMS} alarms in this region, the most flotilla \
             keeps; delete some and try again."
        )));
    }
    let now = ctx.now;
    let mut dims = req.dimensions.unwrap_or_default();
    dims.sort();
    let alarm = MetricAlarm {
        alarm_name: Some(name.clone()),
        alarm_arn: Some(alarm_arn(&ctx.scope, &name)),
        alarm_description: req.alarm_description,
        alarm_configuration_updated_timestamp: Some(now),
        actions_enabled: Some(req.actions_enabled.unwrap_or(true)),
        ok_actions: Some(req.ok_actions.unwrap_or_default()),
        alarm_actions: Some(req.alarm_actions.unwrap_or_default()),
        insufficient_data_actions: Some(req.insufficient_data_actions.unwrap_or_default()),
        metric_name: req.metric_name,
        namespace: req.namespace,
        statistic: req.statistic,
        dimensions: Some(dims),
        period: req.period,
        unit: req.unit,
        evaluation_periods: req.evaluation_periods,
        datapoints_to_alarm: req.datapoints_to_alarm,
        threshold: req.threshold,
        comparison_operator: req.comparison_operator,
        treat_missing_data: Some(req.treat_missing_data.unwrap_or_else(|| "missing".into())),
        ..old.map(|o| o.alarm.clone()).unwrap_or_else(|| MetricAlarm {
            state_value: Some(StateValue::InsufficientData),
            state_reason: Some("Unchecked: Initial alarm creation".into()),
            state_updated_timestamp: Some(now),
            state_transitioned_timestamp: Some(now),
            ..Default::default()
        })
    };
    let record = AlarmRecord {
        scope: ctx.scope.clone(),
        name,
        alarm,
        tags,
        held_until: old.and_then(|o| o.held_until),
    };
    let record = reevaluated(state, &record, now).unwrap_or(record);
    Ok(((), vec![put(CwRecord::Alarm(Box::new(record)))]))
}

/// DescribeAlarms: the scope's metric alarms in name order, filtered, one page at a time.
pub fn describe_alarms(
    state: &State,
    scope: &Scope,
    now: f64,
    req: DescribeAlarmsRequest,
) -> Result<DescribeAlarmsResult, CwError> {
    let names = req.alarm_names.clone().unwrap_or_default();
    check_count("alarmNames", names.len(), MAX_NAMES_PER_CALL)?;
    if !names.is_empty() && req.alarm_name_prefix.is_some() {
        return Err(CwError::InvalidParameterCombination(
            "AlarmNames and AlarmNamePrefix cannot be given together.".into(),
        ));
    }
    let max = match req.max_records {
        None => DEFAULT_RECORDS,
        Some(n) if (1..=MAX_RECORDS).contains(&n) => n,
        Some(n) => {
            return Err(CwError::Validation(format!(
                "1 validation error detected: Value '{n}' at 'maxRecords' failed to satisfy \
                 constraint: Member must have value between 1 and {MAX_RECORDS}"
            )));
        }
    };
    let types = req.alarm_types.clone().unwrap_or_default();
    let metric_alarms_wanted = types.is_empty() || types.iter().any(|t| t == "MetricAlarm");
    // Composite alarms' relations: flotilla has none, so nothing matches.
    let only_composite =
        req.children_of_alarm_name.is_some() || req.parents_of_alarm_name.is_some();
    let matches = |a: &AlarmRecord| {
        (names.is_empty() || names.contains(&a.name))
            && req
                .alarm_name_prefix
                .as_deref()
                .is_none_or(|p| a.name.starts_with(p))
            && req.state_value.is_none_or(|s| a.state() == s)
            && req.action_prefix.as_deref().is_none_or(|p| {
                [
                    &a.alarm.ok_actions,
                    &a.alarm.alarm_actions,
                    &a.alarm.insufficient_data_actions,
                ]
                .into_iter()
                .flatten()
                .flatten()
                .any(|x| x.starts_with(p))
            })
    };
    let canonical = serde_json::to_string(&DescribeAlarmsRequest {
        next_token: None,
        max_records: None,
        ..req.clone()
    })
    .unwrap_or_default();
    let mut request = crate::paging::PageRequest::ascending(
        &state.meta.paging_secret,
        now,
        "DescribeAlarms",
        &canonical,
        Some(max),
        req.next_token.as_deref(),
    );
    request.limit = MAX_RECORDS;
    let cw = &state.discovery.cloudwatch;
    let page = crate::paging::paginate(&request, |after| {
        let items: Box<dyn Iterator<Item = (String, &AlarmRecord)>> =
            if metric_alarms_wanted && !only_composite {
                Box::new(
                    crate::paging::counted(cw.alarms_in(scope, after))
                        .filter(|a| matches(a))
                        .map(|a| (a.name.clone(), a)),
                )
            } else {
                Box::new(std::iter::empty())
            };
        Ok(items)
    })
    .map_err(|e| CwError::InvalidNextToken(e.to_string()))?;
    Ok(DescribeAlarmsResult {
        composite_alarms: Some(Vec::new()),
        metric_alarms: page.items.into_iter().map(|a| a.alarm.clone()).collect(),
        next_token: page.next_token,
    })
}

/// DeleteAlarms: deletes every named alarm; if one of them does not exist nothing is
/// deleted and the answer is `ResourceNotFound`, as in CloudWatch.
pub fn delete_alarms(state: &State, ctx: &mut Ctx, req: DeleteAlarmsRequest) -> CwWritten<()> {
    let names = req.alarm_names.unwrap_or_default();
    check_count("alarmNames", names.len(), MAX_NAMES_PER_CALL)?;
    let cw = &state.discovery.cloudwatch;
    let mut seen = std::collections::HashSet::new();
    let mut changes = Vec::with_capacity(names.len());
    for name in &names {
        let a = cw
            .alarm(&ctx.scope, name)
            .ok_or_else(|| CwError::ResourceNotFound(format!("{name} does not exist")))?;
        if seen.insert(name) {
            changes.push(delete(CwRecord::Alarm(Box::new(a.clone()))));
        }
    }
    Ok(((), changes))
}

/// SetAlarmState: puts the alarm in `StateValue` with the given reason until its next
/// evaluation ([`hold_secs`] later), as CloudWatch does to let you test alarms and
/// what they trigger (an ECS deployment's rollback).
pub fn set_alarm_state(state: &State, ctx: &mut Ctx, req: SetAlarmStateRequest) -> CwWritten<()> {
    let name = req.alarm_name.unwrap_or_default();
    check_len("alarmName", &name, 1, MAX_NAME_CHARS)?;
    let reason = req.state_reason.unwrap_or_default();
    check_len("stateReason", &reason, 0, MAX_REASON_CHARS)?;
    let data = req.state_reason_data;
    if let Some(d) = &data {
        check_len("stateReasonData", d, 0, MAX_REASON_DATA_CHARS)?;
        if serde_json::from_str::<serde_json::Value>(d).is_err() {
            return Err(CwError::InvalidFormat(
                "StateReasonData is not valid JSON.".into(),
            ));
        }
    }
    let alarm = state
        .discovery
        .cloudwatch
        .alarm(&ctx.scope, &name)
        .ok_or_else(|| CwError::ResourceNotFound(format!("Alarm {name} not found")))?;
    let e = Evaluation {
        state: req.state_value.unwrap_or(StateValue::InsufficientData),
        reason,
        reason_data: data.unwrap_or_default(),
    };
    let mut next = with_state(alarm, e, ctx.now);
    if next.alarm.state_reason_data.as_deref() == Some("") {
        next.alarm.state_reason_data = None;
    }
    next.held_until = Some(ctx.now + hold_secs(&next.alarm));
    Ok(((), vec![put(CwRecord::Alarm(Box::new(next)))]))
}
