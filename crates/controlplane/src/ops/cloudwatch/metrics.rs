//! PutMetricData: datapoints into one-minute buckets, and the alarms watching them
//! evaluated at once; the same path for the metrics flotilla publishes itself
//! ([`publish_metric_data`]); ListMetrics.

use std::collections::BTreeMap;

use model::wire_cw::{
    DimensionFilter, ListMetricsRequest, ListMetricsResult, Metric, MetricDatum,
    PutMetricDataRequest,
};

use super::evaluate::reevaluated_with;
use super::{
    CwError, CwWritten, LIST_METRICS_PAGE, MAX_DIMENSION_FILTERS, MAX_DIMENSION_VALUE_CHARS,
    MAX_FUTURE_SECS, MAX_METRIC_DATA, MAX_METRICS, MAX_NAME_CHARS, MAX_VALUES, RETENTION_MINUTES,
    check_count, check_dimensions, check_len, check_unit, delete, put,
};
use crate::engine::Ctx;
use crate::state::{Bucket, CwRecord, MetricRecord, Scope, State, metric_id};

/// The buckets one datum adds (one per value, or one for a statistic set), each with the
/// minute of the datum's timestamp.
fn buckets_of(i: usize, d: &MetricDatum, now: f64) -> Result<Vec<Bucket>, CwError> {
    let at = d.timestamp.unwrap_or(now);
    if !at.is_finite() || at > now + MAX_FUTURE_SECS {
        return Err(CwError::InvalidParameterValue(format!(
            "The parameter MetricData.member.{}.Timestamp must be at most two hours in the \
             future.",
            i + 1
        )));
    }
    let minute = (at.floor() as i64).div_euclid(60);
    let given = [
        d.value.is_some(),
        d.statistic_values.is_some(),
        d.values.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(CwError::InvalidParameterCombination(format!(
            "The parameters MetricData.member.{0}.Value, MetricData.member.{0}.StatisticValues \
             and MetricData.member.{0}.Values are mutually exclusive.",
            i + 1
        )));
    }
    let bad = |what: &str| {
        CwError::InvalidParameterValue(format!(
            "The value for parameter MetricData.member.{}.{what} is invalid: it must be a \
             finite number.",
            i + 1
        ))
    };
    let one = |value: f64, count: f64| Bucket {
        minute,
        count,
        sum: value * count,
        min: value,
        max: value,
    };
    if let Some(v) = d.value {
        if !v.is_finite() {
            return Err(bad("Value"));
        }
        return Ok(vec![one(v, 1.0)]);
    }
    if let Some(s) = d.statistic_values {
        let all = [s.sample_count, s.sum, s.minimum, s.maximum];
        if all.iter().any(|x| !x.is_finite()) || s.sample_count <= 0.0 || s.minimum > s.maximum {
            return Err(bad("StatisticValues"));
        }
        return Ok(vec![Bucket {
            minute,
            count: s.sample_count,
            sum: s.sum,
            min: s.minimum,
            max: s.maximum,
        }]);
    }
    let values = d.values.clone().unwrap_or_default();
    if values.len() > MAX_VALUES {
        return Err(CwError::InvalidParameterValue(format!(
            "MetricData.member.{}.Values has {} values; at most {MAX_VALUES} are allowed.",
            i + 1,
            values.len()
        )));
    }
    let counts = d.counts.clone().unwrap_or_else(|| vec![1.0; values.len()]);
    if counts.len() != values.len() {
        return Err(CwError::InvalidParameterCombination(format!(
            "MetricData.member.{0}.Counts must have as many entries as \
             MetricData.member.{0}.Values.",
            i + 1
        )));
    }
    values
        .iter()
        .zip(&counts)
        .map(|(v, c)| {
            if !v.is_finite() {
                Err(bad("Values"))
            } else if !c.is_finite() || *c <= 0.0 {
                Err(bad("Counts"))
            } else {
                Ok(one(*v, *c))
            }
        })
        .collect()
}

/// `buckets` with `add` merged in (same minute: one bucket), those older than
/// [`RETENTION_MINUTES`] before `now` dropped, oldest first.
pub fn merged(buckets: &[Bucket], add: &[Bucket], now: f64) -> Vec<Bucket> {
    let oldest = (now.floor() as i64).div_euclid(60) - RETENTION_MINUTES + 1;
    let mut by_minute: BTreeMap<i64, Bucket> = BTreeMap::new();
    for b in buckets.iter().chain(add).filter(|b| b.minute >= oldest) {
        by_minute
            .entry(b.minute)
            .and_modify(|x| x.merge(b))
            .or_insert(*b);
    }
    by_minute.into_values().collect()
}

/// PutMetricData: the datapoints go into their metrics' one-minute buckets (a metric is
/// created on its first datapoint); datapoints older than the retention are accepted and
/// not kept. Alarms on these metrics are evaluated in the same write.
pub fn put_metric_data(state: &State, ctx: &mut Ctx, req: PutMetricDataRequest) -> CwWritten<()> {
    let namespace = req.namespace.unwrap_or_default();
    check_len("namespace", &namespace, 1, MAX_NAME_CHARS)?;
    if namespace.starts_with("AWS/") {
        return Err(CwError::InvalidParameterValue(format!(
            "The value {namespace} for parameter Namespace is invalid: namespaces starting \
             with AWS/ are reserved for AWS."
        )));
    }
    if req.entity_metric_data.is_some_and(|e| !e.is_empty()) {
        return Err(CwError::InvalidParameterValue(
            "EntityMetricData is not supported by flotilla; use MetricData.".into(),
        ));
    }
    let data = req.metric_data.unwrap_or_default();
    if data.is_empty() {
        return Err(CwError::MissingParameter(
            "The parameter MetricData is required.".into(),
        ));
    }
    check_count("metricData", data.len(), MAX_METRIC_DATA)?;
    record(state, ctx, &namespace, &data)
}

/// The datapoints flotilla publishes itself in one of AWS's namespaces (the load
/// balancers' `AWS/ApplicationELB`, from `flotilla server --lb-listen`), through
/// PutMetricData's path: each datum checked alike, the same buckets, the alarms on these
/// metrics evaluated in the same write. What only concerns callers does not apply: the
/// namespace is `AWS/…`, one call may carry more than [`MAX_METRIC_DATA`] data (one
/// write per publish), and these metrics do not count towards [`MAX_METRICS`]. Instead
/// they are bounded by what publishes them: a metric of `namespace` without a datapoint
/// in the past [`RETENTION_MINUTES`] (a deleted load balancer's, an idle one's request
/// metrics) is deleted by the same write.
pub fn publish_metric_data(
    state: &State,
    ctx: &mut Ctx,
    namespace: &str,
    data: &[MetricDatum],
) -> CwWritten<()> {
    check_len("namespace", namespace, 1, MAX_NAME_CHARS)?;
    if !namespace.starts_with("AWS/") {
        return Err(CwError::InvalidParameterValue(format!(
            "flotilla publishes its own metrics in AWS/ namespaces, not in {namespace}."
        )));
    }
    let mut changes = if data.is_empty() {
        Vec::new()
    } else {
        record(state, ctx, namespace, data)?.1
    };
    let published: std::collections::BTreeSet<String> = data
        .iter()
        .map(|d| {
            metric_id(
                namespace,
                d.metric_name.as_deref().unwrap_or(""),
                d.dimensions.as_deref().unwrap_or(&[]),
            )
        })
        .collect();
    changes.extend(
        state
            .discovery
            .cloudwatch
            .metrics_in(&ctx.scope, None)
            .filter(|m| {
                m.namespace == namespace
                    && !published.contains(&m.id)
                    && merged(&m.buckets, &[], ctx.now).is_empty()
            })
            .map(|m| delete(CwRecord::Metric(Box::new(m.clone())))),
    );
    Ok(((), changes))
}

/// PutMetricData's write once the request is checked: every datum into its metric's
/// buckets, the alarms on those metrics evaluated.
fn record(state: &State, ctx: &mut Ctx, namespace: &str, data: &[MetricDatum]) -> CwWritten<()> {
    let now = ctx.now;
    let cw = &state.discovery.cloudwatch;
    // Metric id → the record as it will be written.
    let mut written: BTreeMap<String, MetricRecord> = BTreeMap::new();
    for (i, d) in data.iter().enumerate() {
        let name = d.metric_name.clone().unwrap_or_default();
        check_len(
            &format!("metricData.{}.metricName", i + 1),
            &name,
            1,
            MAX_NAME_CHARS,
        )?;
        let mut dims = d.dimensions.clone().unwrap_or_default();
        check_dimensions(&format!("metricData.{}.dimensions", i + 1), &dims)?;
        dims.sort();
        if let Some(unit) = &d.unit {
            check_unit(&format!("metricData.{}.unit", i + 1), unit)?;
        }
        let add = buckets_of(i, d, now)?;
        let id = metric_id(namespace, &name, &dims);
        let record = match written.remove(&id) {
            Some(r) => r,
            None => match cw.metric(&ctx.scope, &id) {
                Some(r) => r.clone(),
                None => MetricRecord {
                    scope: ctx.scope.clone(),
                    id: id.clone(),
                    namespace: namespace.to_owned(),
                    name,
                    dimensions: dims,
                    buckets: Vec::new(),
                    unit: None,
                },
            },
        };
        let buckets = merged(&record.buckets, &add, now);
        let unit = d.unit.clone().or(record.unit.clone());
        written.insert(
            id,
            MetricRecord {
                buckets,
                unit,
                ..record
            },
        );
    }
    let new = written
        .keys()
        .filter(|id| cw.metric(&ctx.scope, id).is_none())
        .count();
    if new > 0
        && !namespace.starts_with("AWS/")
        && cw.own_metric_count(&ctx.scope) + new > MAX_METRICS
    {
        return Err(CwError::LimitExceeded(format!(
            "This account already has the {MAX_METRICS} metrics flotilla keeps in this region."
        )));
    }
    let mut changes = Vec::new();
    for alarm in cw.alarms_in(&ctx.scope, None) {
        let a = &alarm.alarm;
        let id = metric_id(
            a.namespace.as_deref().unwrap_or(""),
            a.metric_name.as_deref().unwrap_or(""),
            a.dimensions.as_deref().unwrap_or(&[]),
        );
        if let Some(m) = written.get(&id)
            && let Some(next) = reevaluated_with(state, alarm, Some(&m.buckets), now)
        {
            changes.push(put(CwRecord::Alarm(Box::new(next))));
        }
    }
    changes.extend(
        written
            .into_values()
            .map(|m| put(CwRecord::Metric(Box::new(m)))),
    );
    Ok(((), changes))
}

/// Whether `m` has a dimension named `f.name` (with value `f.value`, when given).
fn has_dimension(m: &MetricRecord, f: &DimensionFilter) -> bool {
    m.dimensions
        .iter()
        .any(|d| d.name == f.name && f.value.as_ref().is_none_or(|v| *v == d.value))
}

/// ListMetrics: the scope's metrics that match every filter given (namespace, name, and
/// each dimension filter: a metric with more dimensions matches too, as in CloudWatch),
/// [`LIST_METRICS_PAGE`] a page, in a stable order (by metric id), with a signed
/// `NextToken`. `RecentlyActive=PT3H` keeps those with a datapoint in the past three
/// hours; without it every metric flotilla keeps is listed (one published with
/// PutMetricData is kept for good, its datapoints for [`RETENTION_MINUTES`]; see
/// [`publish_metric_data`] for flotilla's own). flotilla has no cross-account
/// observability: `OwningAccount` other than the caller's lists nothing.
pub fn list_metrics(
    state: &State,
    scope: &Scope,
    now: f64,
    req: ListMetricsRequest,
) -> Result<ListMetricsResult, CwError> {
    if let Some(n) = &req.namespace {
        check_len("namespace", n, 1, MAX_NAME_CHARS)?;
    }
    if let Some(n) = &req.metric_name {
        check_len("metricName", n, 1, MAX_NAME_CHARS)?;
    }
    let filters = req.dimensions.clone().unwrap_or_default();
    check_count("dimensions", filters.len(), MAX_DIMENSION_FILTERS)?;
    for (i, f) in filters.iter().enumerate() {
        check_len(
            &format!("dimensions.{}.member.name", i + 1),
            &f.name,
            1,
            MAX_NAME_CHARS,
        )?;
        if let Some(v) = &f.value {
            check_len(
                &format!("dimensions.{}.member.value", i + 1),
                v,
                1,
                MAX_DIMENSION_VALUE_CHARS,
            )?;
        }
    }
    let recent_since = match req.recently_active.as_deref() {
        None => None,
        Some("PT3H") => Some((now.floor() as i64).div_euclid(60) - 3 * 60),
        Some(other) => {
            return Err(CwError::Validation(format!(
                "1 validation error detected: Value '{other}' at 'recentlyActive' failed to \
                 satisfy constraint: Member must satisfy enum value set: [PT3H]"
            )));
        }
    };
    let own = req
        .owning_account
        .as_deref()
        .is_none_or(|a| a == scope.account);
    let matches = |m: &MetricRecord| {
        own && req.namespace.as_ref().is_none_or(|n| *n == m.namespace)
            && req.metric_name.as_ref().is_none_or(|n| *n == m.name)
            && filters.iter().all(|f| has_dimension(m, f))
            && recent_since.is_none_or(|since| m.buckets.iter().any(|b| b.minute >= since))
    };
    let canonical = serde_json::to_string(&ListMetricsRequest {
        next_token: None,
        ..req.clone()
    })
    .unwrap_or_default();
    let request = crate::paging::PageRequest::ascending(
        &state.meta.paging_secret,
        now,
        "ListMetrics",
        &canonical,
        None,
        req.next_token.as_deref(),
    )
    .with_limit(LIST_METRICS_PAGE);
    let cw = &state.discovery.cloudwatch;
    let page = crate::paging::paginate(&request, |after| {
        Ok(crate::paging::counted(cw.metrics_in(scope, after))
            .filter(|m| matches(m))
            .map(|m| (m.id.clone(), m)))
    })
    .map_err(|e| CwError::InvalidNextToken(e.to_string()))?;
    Ok(ListMetricsResult {
        metrics: page
            .items
            .into_iter()
            .map(|m| Metric {
                namespace: m.namespace.clone(),
                metric_name: m.name.clone(),
                dimensions: m.dimensions.clone(),
            })
            .collect(),
        next_token: page.next_token,
    })
}
