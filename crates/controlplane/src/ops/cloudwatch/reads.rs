//! GetMetricStatistics and GetMetricData: a metric's stored one-minute buckets read
//! back, as reads on the published state. This module owns the requests' checks (with
//! CloudWatch's codes and words), finding each metric and the answers' shape and paging;
//! the arithmetic is pure and lives apart: periods and statistics in
//! [`statistics`](super::statistics), metric math in [`expression`](super::expression).
//!
//! ## What is answered
//! - A metric is named by its namespace, name and *exact* set of dimensions (in any
//!   order), as in CloudWatch: a metric with one more or one less dimension is another
//!   metric, and one that does not exist has no datapoints (not an error).
//! - Only what is kept is answered: the past [`RETENTION_MINUTES`] of one-minute
//!   buckets. A range reaching further back is accepted and has no datapoints there.
//! - `Unit`: a metric keeps the unit its last datum named (`None` when none did); a
//!   request's `Unit` other than that one answers no datapoints, as CloudWatch answers
//!   none for data of another unit.
//! - GetMetricData pages by `MaxDatapoints` (all results together): each page lists every
//!   result (in the order of the queries) with its datapoints on that page, `PartialData`
//!   when more of them follow. A page ends after a given (query, timestamp), so data
//!   published between pages neither repeats nor shifts what the next page holds.
//!
//! ## Limits
//! [`MAX_STATISTICS_DATAPOINTS`] datapoints a GetMetricStatistics range may hold,
//! [`MAX_METRIC_DATA_QUERIES`] queries and [`MAX_DATAPOINTS_PER_PAGE`] datapoints a page
//! for GetMetricData, [`MAX_STATISTICS`] statistics; an expression's length and nesting
//! in [`expression`](super::expression). Every series has at most one datapoint per
//! stored bucket, so the work of a call is at most its queries times the buckets a
//! metric keeps, whatever the range.

use std::collections::BTreeMap;

use model::wire_cw::{
    Datapoint, Dimension, GetMetricDataRequest, GetMetricDataResult, GetMetricStatisticsRequest,
    GetMetricStatisticsResult, MetricDataQuery, MetricDataResult, MetricStat, ScanBy, Statistic,
    StatusCode,
};

use super::expression::{self, Expr, Series, Value};
use super::statistics::{Window, check_period, check_range, per_period, statistic_named, value_of};
use super::{
    CwError, MAX_NAME_CHARS, RETENTION_MINUTES, check_count, check_dimensions, check_len,
    check_unit,
};
use crate::state::{Bucket, MetricRecord, Scope, State, metric_id};

/// Most datapoints one GetMetricStatistics range may hold (`(EndTime − StartTime) /
/// Period`, CloudWatch's limit; more is `InvalidParameterCombination`).
pub const MAX_STATISTICS_DATAPOINTS: f64 = 1440.0;
/// Most `Statistics` of one GetMetricStatistics (the model's).
pub const MAX_STATISTICS: usize = 5;
/// Most `MetricDataQueries` of one GetMetricData (CloudWatch's).
pub const MAX_METRIC_DATA_QUERIES: usize = 500;
/// Most datapoints of one GetMetricData page, all results together, and the page size
/// without `MaxDatapoints` (CloudWatch's default).
pub const MAX_DATAPOINTS_PER_PAGE: i32 = 100_800;

/// The statistics flotilla answers, as CloudWatch lists them in its refusal.
const STATISTIC_NAMES: &str = "SampleCount, Average, Sum, Minimum, Maximum";

/// The metric `namespace`/`name` with exactly `dimensions` in `scope`, and its buckets
/// still kept at `now` that are of `unit` (all when `None`).
fn kept_buckets<'s>(
    state: &'s State,
    scope: &Scope,
    now: f64,
    (namespace, name, dimensions): (&str, &str, &[Dimension]),
    unit: Option<&str>,
) -> Option<(&'s MetricRecord, Vec<Bucket>)> {
    let id = metric_id(namespace, name, dimensions);
    let m = state.discovery.cloudwatch.metric(scope, &id)?;
    let metric_unit = m.unit.as_deref().unwrap_or("None");
    if unit.is_some_and(|u| u != metric_unit) {
        return Some((m, Vec::new()));
    }
    let oldest = (now.floor() as i64).div_euclid(60) - RETENTION_MINUTES + 1;
    let kept = m
        .buckets
        .iter()
        .filter(|b| b.minute >= oldest)
        .copied()
        .collect();
    Some((m, kept))
}

/// `n` with thousands separators, as CloudWatch writes counts in messages.
fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The refusal of a percentile (or any statistic buckets cannot give).
fn no_percentiles(what: &str) -> CwError {
    CwError::InvalidParameterValue(format!(
        "{what} is not supported by flotilla: it keeps each minute's sample count, sum, \
         minimum and maximum, not their distribution, so only the statistics \
         {STATISTIC_NAMES} are answered (no percentiles)."
    ))
}

/// GetMetricStatistics: the requested statistics of one metric, one datapoint per period
/// of the range that has data, oldest first; `Label` is the metric's name.
pub fn get_metric_statistics(
    state: &State,
    scope: &Scope,
    now: f64,
    req: GetMetricStatisticsRequest,
) -> Result<GetMetricStatisticsResult, CwError> {
    let namespace = req.namespace.unwrap_or_default();
    check_len("namespace", &namespace, 1, MAX_NAME_CHARS)?;
    let name = req.metric_name.unwrap_or_default();
    check_len("metricName", &name, 1, MAX_NAME_CHARS)?;
    let dimensions = req.dimensions.unwrap_or_default();
    check_dimensions("dimensions", &dimensions)?;
    let (start_time, end_time) = (req.start_time.unwrap_or(0.0), req.end_time.unwrap_or(0.0));
    check_range(start_time, end_time)?;
    let period = check_period("Period", req.period.unwrap_or(0))?;
    if req.extended_statistics.is_some_and(|e| !e.is_empty()) {
        return Err(no_percentiles("ExtendedStatistics"));
    }
    let names = req.statistics.unwrap_or_default();
    if names.is_empty() {
        return Err(CwError::InvalidParameterCombination(
            "At least one of the parameters Statistics and ExtendedStatistics must be \
             specified."
                .into(),
        ));
    }
    check_count("statistics", names.len(), MAX_STATISTICS)?;
    let mut stats: Vec<Statistic> = Vec::with_capacity(names.len());
    for n in &names {
        let Some(s) = statistic_named(n) else {
            check_len("statistics.member", n, 1, MAX_NAME_CHARS)?;
            return Err(CwError::Validation(format!(
                "1 validation error detected: Value '{n}' at 'statistics' failed to satisfy \
                 constraint: Member must satisfy enum value set: [{STATISTIC_NAMES}]"
            )));
        };
        if !stats.contains(&s) {
            stats.push(s);
        }
    }
    if let Some(u) = &req.unit {
        check_unit("unit", u)?;
    }
    let window = Window::new(start_time, end_time, period);
    let requested = window.periods();
    if requested > MAX_STATISTICS_DATAPOINTS {
        return Err(CwError::InvalidParameterCombination(format!(
            "You have requested up to {} datapoints, which exceeds the limit of {}. You may \
             reduce the datapoints requested by increasing Period, or decreasing the time \
             range.",
            with_commas(requested as u64),
            with_commas(MAX_STATISTICS_DATAPOINTS as u64)
        )));
    }
    let found = kept_buckets(
        state,
        scope,
        now,
        (&namespace, &name, &dimensions),
        req.unit.as_deref(),
    );
    let Some((metric, buckets)) = found else {
        return Ok(GetMetricStatisticsResult {
            label: name,
            datapoints: Vec::new(),
        });
    };
    let unit = metric.unit.clone().unwrap_or_else(|| "None".into());
    let datapoints = per_period(&buckets, &window)
        .into_iter()
        .filter_map(|(start, b)| {
            let mut d = Datapoint {
                timestamp: start as f64,
                unit: Some(unit.clone()),
                ..Default::default()
            };
            for s in &stats {
                let v = Some(value_of(*s, &b)?);
                match s {
                    Statistic::SampleCount => d.sample_count = v,
                    Statistic::Average => d.average = v,
                    Statistic::Sum => d.sum = v,
                    Statistic::Minimum => d.minimum = v,
                    Statistic::Maximum => d.maximum = v,
                }
            }
            Some(d)
        })
        .collect();
    Ok(GetMetricStatisticsResult {
        label: name,
        datapoints,
    })
}

/// What one query is, once checked.
enum Query<'r> {
    /// A metric's statistic.
    Stat {
        stat: &'r MetricStat,
        statistic: Statistic,
        period: i64,
    },
    /// Metric math over other queries.
    Math(Expr),
}

/// `MetricDataQueries.member.<i>` (1-based), how CloudWatch names a query's members.
fn member(i: usize) -> String {
    format!("MetricDataQueries.member.{}", i + 1)
}

/// Checks a query id: 1–255 characters, a lowercase letter then letters, digits and
/// underscores (so that expressions can name it).
fn check_id(i: usize, id: &str) -> Result<(), CwError> {
    check_len(&format!("{}.id", member(i)), id, 1, MAX_NAME_CHARS)?;
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(CwError::InvalidParameterValue(format!(
            "The value {id} for parameter {}.Id is invalid: an id must start with a \
             lowercase letter and hold only letters, numbers and underscores.",
            member(i)
        )));
    }
    Ok(())
}

/// Checks one query's members and says what it is.
fn check_query<'r>(i: usize, q: &'r MetricDataQuery) -> Result<Query<'r>, CwError> {
    let at = member(i);
    if let Some(a) = &q.account_id {
        check_len(&format!("{at}.accountId"), a, 1, MAX_NAME_CHARS)?;
    }
    match (&q.metric_stat, &q.expression) {
        (Some(_), Some(_)) => Err(CwError::InvalidParameterCombination(format!(
            "The parameters {at}.MetricStat and {at}.Expression are mutually exclusive."
        ))),
        (None, None) => Err(CwError::MissingParameter(format!(
            "The parameter {at}.MetricStat or {at}.Expression is required."
        ))),
        (None, Some(text)) => {
            let e = expression::parse(text).map_err(|why| {
                CwError::InvalidParameterValue(format!(
                    "The expression of {at} is not valid metric math for flotilla: {why}."
                ))
            })?;
            Ok(Query::Math(e))
        }
        (Some(stat), None) => {
            let missing =
                |m: &str| CwError::MissingParameter(format!("The parameter {at}.{m} is required."));
            let metric = stat
                .metric
                .as_ref()
                .ok_or_else(|| missing("MetricStat.Metric"))?;
            let ms = format!("{at}.metricStat.metric");
            check_len(
                &format!("{ms}.namespace"),
                &metric.namespace,
                1,
                MAX_NAME_CHARS,
            )?;
            check_len(
                &format!("{ms}.metricName"),
                &metric.metric_name,
                1,
                MAX_NAME_CHARS,
            )?;
            check_dimensions(&format!("{ms}.dimensions"), &metric.dimensions)?;
            let period = stat.period.ok_or_else(|| missing("MetricStat.Period"))?;
            let period = check_period(&format!("{at}.MetricStat.Period"), period)?;
            let name = stat
                .stat
                .as_deref()
                .ok_or_else(|| missing("MetricStat.Stat"))?;
            check_len(&format!("{at}.metricStat.stat"), name, 1, MAX_NAME_CHARS)?;
            let statistic = statistic_named(name)
                .ok_or_else(|| no_percentiles(&format!("The statistic {name} of {at}")))?;
            if let Some(u) = &stat.unit {
                check_unit(&format!("{at}.metricStat.unit"), u)?;
            }
            Ok(Query::Stat {
                stat,
                statistic,
                period,
            })
        }
    }
}

/// The time series of every query (with its period), `MetricStat`s read from the state
/// and expressions evaluated over them in the order their inputs allow.
fn series_of(
    state: &State,
    scope: &Scope,
    now: f64,
    req: &GetMetricDataRequest,
    queries: &[MetricDataQuery],
    checked: &[Query<'_>],
    index: &BTreeMap<&str, usize>,
) -> Result<Vec<(Series, i64)>, CwError> {
    let (start_time, end_time) = (req.start_time.unwrap_or(0.0), req.end_time.unwrap_or(0.0));
    let mut series: Vec<Option<(Series, i64)>> = Vec::with_capacity(checked.len());
    for (q, c) in queries.iter().zip(checked) {
        series.push(match c {
            Query::Math(_) => None,
            Query::Stat {
                stat,
                statistic,
                period,
            } => {
                let own = q.account_id.as_deref().is_none_or(|a| a == scope.account);
                let metric = stat.metric.as_ref().map(|m| {
                    (
                        m.namespace.as_str(),
                        m.metric_name.as_str(),
                        m.dimensions.as_slice(),
                    )
                });
                let found = metric
                    .filter(|_| own)
                    .and_then(|m| kept_buckets(state, scope, now, m, stat.unit.as_deref()));
                let window = Window::new(start_time, end_time, *period);
                let points = found
                    .map(|(_, buckets)| {
                        per_period(&buckets, &window)
                            .into_iter()
                            .filter_map(|(t, b)| Some((t, value_of(*statistic, &b)?)))
                            .collect()
                    })
                    .unwrap_or_default();
                Some((points, *period))
            }
        });
    }
    // Every id an expression names must be a query's (not its own).
    for (i, c) in checked.iter().enumerate() {
        let Query::Math(e) = c else { continue };
        for id in e.ids() {
            if index.get(id).is_none_or(|j| *j == i) {
                return Err(CwError::InvalidParameterValue(format!(
                    "The expression of {} names {id}, which is not the id of another query.",
                    member(i)
                )));
            }
        }
    }
    // Each pass evaluates the expressions whose inputs are all known; one that makes no
    // progress leaves only expressions that name each other in a cycle. At most one
    // pass per expression.
    loop {
        let mut progressed = false;
        let mut pending = Vec::new();
        for (i, c) in checked.iter().enumerate() {
            let Query::Math(e) = c else { continue };
            if series[i].is_some() {
                continue;
            }
            let inputs: Vec<usize> = e
                .ids()
                .iter()
                .filter_map(|id| index.get(id).copied())
                .collect();
            if inputs.iter().any(|j| series[*j].is_none()) {
                pending.push(i);
                continue;
            }
            let periods: Vec<i64> = inputs
                .iter()
                .filter_map(|j| series[*j].as_ref().map(|(_, p)| *p))
                .collect();
            let Some(period) = periods.first().copied() else {
                return Err(CwError::InvalidParameterValue(format!(
                    "The expression of {} names no query: it must give a time series.",
                    member(i)
                )));
            };
            if let Some(other) = periods.iter().find(|p| **p != period) {
                return Err(CwError::InvalidParameterValue(format!(
                    "The expression of {} combines time series of periods {period} and \
                     {other}; flotilla combines only time series of one period.",
                    member(i)
                )));
            }
            let lookup = |id: &str| {
                index
                    .get(id)
                    .and_then(|j| series[*j].as_ref())
                    .map(|(s, _)| s)
            };
            let value = expression::evaluate(e, &lookup).map_err(|why| {
                CwError::InvalidParameterValue(format!(
                    "The expression of {} cannot be evaluated: {why}.",
                    member(i)
                ))
            })?;
            let Value::Series(s) = value else {
                return Err(CwError::InvalidParameterValue(format!(
                    "The expression of {} gives a number, not a time series.",
                    member(i)
                )));
            };
            series[i] = Some((s, period));
            progressed = true;
        }
        if pending.is_empty() {
            break;
        }
        if !progressed {
            let ids: Vec<&str> = pending
                .iter()
                .filter_map(|i| queries[*i].id.as_deref())
                .collect();
            return Err(CwError::InvalidParameterValue(format!(
                "The expressions of {} name each other in a cycle.",
                ids.join(", ")
            )));
        }
    }
    Ok(series.into_iter().map(Option::unwrap_or_default).collect())
}

/// The page key of a result's datapoint: the result's position, then the timestamp in
/// `ScanBy` order, both fixed-width so that keys sort as the answer goes.
fn page_key(result: usize, timestamp: i64, scan_by: ScanBy) -> String {
    let t = i128::from(timestamp);
    let ordinal = match scan_by {
        ScanBy::TimestampAscending => t - i128::from(i64::MIN),
        ScanBy::TimestampDescending => i128::from(i64::MAX) - t,
    };
    format!("{result:03}|{ordinal:020}")
}

/// GetMetricData: every query's time series over the range (see the module docs), the
/// results of those with `ReturnData` (default true) in the order of the queries, paged
/// by `MaxDatapoints` with a signed `NextToken`.
pub fn get_metric_data(
    state: &State,
    scope: &Scope,
    now: f64,
    req: GetMetricDataRequest,
) -> Result<GetMetricDataResult, CwError> {
    let queries = req.metric_data_queries.as_deref().unwrap_or_default();
    if queries.is_empty() || queries.len() > MAX_METRIC_DATA_QUERIES {
        return Err(CwError::InvalidParameterValue(format!(
            "The parameter MetricDataQueries must have between 1 and \
             {MAX_METRIC_DATA_QUERIES} queries; it has {}.",
            queries.len()
        )));
    }
    check_range(req.start_time.unwrap_or(0.0), req.end_time.unwrap_or(0.0))?;
    let max_datapoints = req.max_datapoints.unwrap_or(MAX_DATAPOINTS_PER_PAGE);
    if !(1..=MAX_DATAPOINTS_PER_PAGE).contains(&max_datapoints) {
        return Err(CwError::InvalidParameterValue(format!(
            "The parameter MaxDatapoints must be between 1 and {}.",
            with_commas(MAX_DATAPOINTS_PER_PAGE as u64)
        )));
    }
    let scan_by = req.scan_by.unwrap_or_default();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut checked = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let id = q.id.as_deref().ok_or_else(|| {
            CwError::MissingParameter(format!("The parameter {}.Id is required.", member(i)))
        })?;
        check_id(i, id)?;
        if index.insert(id, i).is_some() {
            return Err(CwError::InvalidParameterValue(format!(
                "The value {id} for parameter {}.Id is not unique.",
                member(i)
            )));
        }
        checked.push(check_query(i, q)?);
    }
    let series = series_of(state, scope, now, &req, queries, &checked, &index)?;
    // The answered results: (query position, id, label) and their datapoints' page keys.
    let returned: Vec<usize> = (0..queries.len())
        .filter(|i| queries[*i].return_data != Some(false))
        .collect();
    let mut items: Vec<(String, (usize, i64, f64))> = Vec::new();
    for (r, i) in returned.iter().enumerate() {
        let points = series[*i].0.iter();
        let ordered: Box<dyn Iterator<Item = (&i64, &f64)>> = match scan_by {
            ScanBy::TimestampAscending => Box::new(points),
            ScanBy::TimestampDescending => Box::new(points.rev()),
        };
        items.extend(ordered.map(|(t, v)| (page_key(r, *t, scan_by), (r, *t, *v))));
    }
    let canonical = serde_json::to_string(&GetMetricDataRequest {
        next_token: None,
        max_datapoints: None,
        ..req.clone()
    })
    .unwrap_or_default();
    let request = crate::paging::PageRequest::ascending(
        &state.meta.paging_secret,
        now,
        "GetMetricData",
        &canonical,
        Some(max_datapoints),
        req.next_token.as_deref(),
    )
    .with_limit(MAX_DATAPOINTS_PER_PAGE);
    // The last key of each result, to tell which have datapoints after the page.
    let mut last_keys: Vec<Option<String>> = vec![None; returned.len()];
    for (k, (r, _, _)) in &items {
        last_keys[*r] = Some(k.clone());
    }
    let page = crate::paging::paginate(&request, |_| Ok(items))
        .map_err(|e| CwError::InvalidNextToken(e.to_string()))?;
    let page_end = page
        .items
        .last()
        .map(|(r, t, _)| page_key(*r, *t, scan_by))
        .filter(|_| page.next_token.is_some());
    let mut results: Vec<MetricDataResult> = returned
        .iter()
        .enumerate()
        .map(|(r, i)| {
            let q = &queries[*i];
            let id = q.id.clone().unwrap_or_default();
            let label = q.label.clone().unwrap_or_else(|| match &q.metric_stat {
                Some(s) => s
                    .metric
                    .as_ref()
                    .map(|m| m.metric_name.clone())
                    .unwrap_or_default(),
                None => id.clone(),
            });
            let more = match (&page_end, &last_keys[r]) {
                (Some(end), Some(last)) => last > end,
                _ => false,
            };
            MetricDataResult {
                id,
                label,
                timestamps: Vec::new(),
                values: Vec::new(),
                status_code: if more {
                    StatusCode::PartialData
                } else {
                    StatusCode::Complete
                },
                messages: Vec::new(),
            }
        })
        .collect();
    for (r, t, v) in page.items {
        results[r].timestamps.push(t as f64);
        results[r].values.push(v);
    }
    Ok(GetMetricDataResult {
        metric_data_results: results,
        next_token: page.next_token,
        messages: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(with_commas(7), "7");
        assert_eq!(with_commas(1440), "1,440");
        assert_eq!(with_commas(100_800), "100,800");
        assert_eq!(with_commas(1_234_567), "1,234,567");
    }

    #[test]
    fn page_keys_sort_as_the_answer_goes() {
        let asc = ScanBy::TimestampAscending;
        let desc = ScanBy::TimestampDescending;
        assert!(page_key(0, 60, asc) < page_key(0, 120, asc));
        assert!(page_key(0, 120, desc) < page_key(0, 60, desc));
        assert!(page_key(0, i64::MAX, asc) < page_key(1, i64::MIN, asc));
        assert!(page_key(0, i64::MIN, desc) < page_key(1, i64::MAX, desc));
        assert!(page_key(0, -60, asc) < page_key(0, 0, asc));
    }

    #[test]
    fn query_ids_are_checked() {
        assert!(check_id(0, "m1").is_ok());
        assert!(check_id(0, "errors_per_request").is_ok());
        for bad in ["M1", "1m", "m-1", "m 1", "é"] {
            assert_eq!(
                check_id(0, bad).unwrap_err().code(),
                "InvalidParameterValueException",
                "{bad}"
            );
        }
        assert_eq!(check_id(0, "").unwrap_err().code(), "ValidationError");
    }
}
