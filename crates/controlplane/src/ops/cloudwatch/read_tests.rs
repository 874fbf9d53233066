//! GetMetricStatistics and GetMetricData on a hand-built state: datapoints published
//! with PutMetricData at known minutes read back with exact statistics per 60 s and
//! 300 s period, the exact dimension set, units, retention, metric math, `ScanBy`,
//! paging, and the refusals with CloudWatch's codes.

use model::wire_cw::{
    Datapoint, Dimension, GetMetricDataRequest, GetMetricDataResult, GetMetricStatisticsRequest,
    Metric, MetricDataQuery, MetricDatum, MetricStat, PutMetricDataRequest, ScanBy, StatusCode,
};

use super::reads::{MAX_DATAPOINTS_PER_PAGE, MAX_METRIC_DATA_QUERIES};
use super::*;
use crate::engine::Ctx;
use crate::ops::test_support::{apply, scope, state};
use crate::state::{Scope, State};

/// A minute boundary that is also a five-minute one.
const T0: f64 = 1_700_000_100.0;
/// When the tests read: ten minutes after [`T0`].
const NOW: f64 = T0 + 600.0;

fn dim(name: &str, value: &str) -> Dimension {
    Dimension {
        name: name.into(),
        value: value.into(),
    }
}

/// PutMetricData of `App`/`name` with `dims`: each `(seconds after T0, value)`, in
/// `unit` when given; written at [`NOW`].
fn put(s: &mut State, name: &str, dims: &[Dimension], points: &[(f64, f64)], unit: Option<&str>) {
    let data = points
        .iter()
        .map(|(at, v)| MetricDatum {
            metric_name: Some(name.into()),
            dimensions: Some(dims.to_vec()),
            timestamp: Some(T0 + at),
            value: Some(*v),
            unit: unit.map(str::to_owned),
            ..Default::default()
        })
        .collect();
    let mut ctx = Ctx::new(scope(), NOW, 1);
    let req = PutMetricDataRequest {
        namespace: Some("App".into()),
        metric_data: Some(data),
        ..Default::default()
    };
    let (_, changes) = put_metric_data(s, &mut ctx, req).unwrap();
    apply(s, &changes);
}

/// `Latency` of `Service=web`: two values in minute 0 (1 and 3), 10 in minute 1, -2 in
/// minute 4, 7 in minute 5.
fn latency() -> State {
    let mut s = state();
    put(
        &mut s,
        "Latency",
        &[dim("Service", "web")],
        &[
            (5.0, 1.0),
            (50.0, 3.0),
            (65.0, 10.0),
            (245.0, -2.0),
            (305.0, 7.0),
        ],
        None,
    );
    s
}

fn stats_request(period: i32, stats: &[&str]) -> GetMetricStatisticsRequest {
    GetMetricStatisticsRequest {
        namespace: Some("App".into()),
        metric_name: Some("Latency".into()),
        dimensions: Some(vec![dim("Service", "web")]),
        start_time: Some(T0),
        end_time: Some(NOW),
        period: Some(period),
        statistics: Some(stats.iter().map(|s| (*s).to_owned()).collect()),
        ..Default::default()
    }
}

const ALL_STATS: [&str; 5] = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

fn point(at: f64, count: f64, sum: f64, min: f64, max: f64) -> Datapoint {
    Datapoint {
        timestamp: T0 + at,
        sample_count: Some(count),
        average: Some(sum / count),
        sum: Some(sum),
        minimum: Some(min),
        maximum: Some(max),
        unit: Some("None".into()),
    }
}

#[test]
fn get_metric_statistics_answers_exact_statistics_per_60_and_300_second_period() {
    let s = latency();
    let r = get_metric_statistics(&s, &scope(), NOW, stats_request(60, &ALL_STATS)).unwrap();
    assert_eq!(r.label, "Latency");
    assert_eq!(
        r.datapoints,
        [
            point(0.0, 2.0, 4.0, 1.0, 3.0),
            point(60.0, 1.0, 10.0, 10.0, 10.0),
            point(240.0, 1.0, -2.0, -2.0, -2.0),
            point(300.0, 1.0, 7.0, 7.0, 7.0),
        ]
    );
    let r = get_metric_statistics(&s, &scope(), NOW, stats_request(300, &ALL_STATS)).unwrap();
    assert_eq!(
        r.datapoints,
        [
            point(0.0, 4.0, 12.0, -2.0, 10.0),
            point(300.0, 1.0, 7.0, 7.0, 7.0)
        ]
    );
    // Only the statistics asked for; a statistic named twice is answered once.
    let r = get_metric_statistics(&s, &scope(), NOW, stats_request(300, &["Sum", "Sum"])).unwrap();
    assert_eq!(
        r.datapoints[0],
        Datapoint {
            timestamp: T0,
            sum: Some(12.0),
            unit: Some("None".into()),
            ..Default::default()
        }
    );
    // The range: the start rounds down to the minute, the end is exclusive.
    let r = get_metric_statistics(
        &s,
        &scope(),
        NOW,
        GetMetricStatisticsRequest {
            start_time: Some(T0 + 59.0),
            end_time: Some(T0 + 240.0),
            ..stats_request(60, &["Sum"])
        },
    )
    .unwrap();
    let at: Vec<f64> = r.datapoints.iter().map(|d| d.timestamp - T0).collect();
    assert_eq!(at, [0.0, 60.0]);
}

#[test]
fn a_metric_is_its_exact_dimension_set() {
    let mut s = state();
    let both = [dim("Service", "web"), dim("Stage", "prod")];
    put(&mut s, "Latency", &both, &[(5.0, 2.0)], None);
    let read = |dims: Vec<Dimension>| {
        get_metric_statistics(
            &s,
            &scope(),
            NOW,
            GetMetricStatisticsRequest {
                dimensions: Some(dims),
                ..stats_request(60, &["Sum"])
            },
        )
        .unwrap()
        .datapoints
        .len()
    };
    assert_eq!(read(vec![dim("Stage", "prod"), dim("Service", "web")]), 1);
    assert_eq!(read(vec![dim("Service", "web")]), 0, "one dimension less");
    assert_eq!(read(vec![]), 0);
    let three = vec![dim("Service", "web"), dim("Stage", "prod"), dim("Az", "a")];
    assert_eq!(read(three), 0, "one dimension more");
    assert_eq!(read(vec![dim("Service", "web"), dim("Stage", "dev")]), 0);
    // Other accounts and regions see nothing.
    let other = Scope::new("000000000000", "eu-west-1");
    let r = get_metric_statistics(&s, &other, NOW, stats_request(60, &["Sum"])).unwrap();
    assert!(r.datapoints.is_empty());
}

#[test]
fn units_are_kept_answered_and_filtered_on() {
    let mut s = state();
    put(
        &mut s,
        "Latency",
        &[dim("Service", "web")],
        &[(5.0, 2.0)],
        Some("Milliseconds"),
    );
    let read = |s: &State, unit: Option<&str>| {
        get_metric_statistics(
            s,
            &scope(),
            NOW,
            GetMetricStatisticsRequest {
                unit: unit.map(str::to_owned),
                ..stats_request(60, &["Sum"])
            },
        )
        .unwrap()
        .datapoints
    };
    let all = read(&s, None);
    assert_eq!(all[0].unit.as_deref(), Some("Milliseconds"));
    assert_eq!(read(&s, Some("Milliseconds")), all);
    assert!(read(&s, Some("Seconds")).is_empty());
    assert!(read(&s, Some("None")).is_empty());
    // A datum without a unit keeps the metric's.
    put(
        &mut s,
        "Latency",
        &[dim("Service", "web")],
        &[(6.0, 1.0)],
        None,
    );
    assert_eq!(read(&s, Some("Milliseconds"))[0].sum, Some(3.0));
    // Units are CloudWatch's standard ones.
    let mut ctx = Ctx::new(scope(), NOW, 1);
    let e = put_metric_data(
        &s,
        &mut ctx,
        PutMetricDataRequest {
            namespace: Some("App".into()),
            metric_data: Some(vec![MetricDatum {
                metric_name: Some("Latency".into()),
                value: Some(1.0),
                unit: Some("Parsecs".into()),
                ..Default::default()
            }]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "ValidationError");
    let e = get_metric_statistics(
        &s,
        &scope(),
        NOW,
        GetMetricStatisticsRequest {
            unit: Some("Parsecs".into()),
            ..stats_request(60, &["Sum"])
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "ValidationError");
}

#[test]
fn only_what_is_kept_is_answered() {
    let s = latency();
    let later = T0 + 60.0 * RETENTION_MINUTES as f64 + 60.0;
    let req = GetMetricStatisticsRequest {
        end_time: Some(later),
        ..stats_request(3600, &["SampleCount"])
    };
    let now = get_metric_statistics(&s, &scope(), NOW, req.clone()).unwrap();
    assert_eq!(now.datapoints[0].sample_count, Some(5.0));
    // RETENTION_MINUTES later the first minute (two samples) is no longer kept.
    let r = get_metric_statistics(&s, &scope(), later - 60.0, req.clone()).unwrap();
    assert_eq!(r.datapoints[0].sample_count, Some(3.0));
    let r = get_metric_statistics(&s, &scope(), later + 600.0, req).unwrap();
    assert!(r.datapoints.is_empty());
}

#[test]
fn get_metric_statistics_refuses_what_it_cannot_answer() {
    let s = latency();
    let refused = |req: GetMetricStatisticsRequest| {
        get_metric_statistics(&s, &scope(), NOW, req).unwrap_err()
    };
    let base = stats_request(60, &["Sum"]);
    let code = |req| refused(req).code();
    assert_eq!(
        code(GetMetricStatisticsRequest {
            period: Some(90),
            ..base.clone()
        }),
        "InvalidParameterValueException"
    );
    assert_eq!(
        code(GetMetricStatisticsRequest {
            statistics: None,
            ..base.clone()
        }),
        "InvalidParameterCombinationException"
    );
    let e = refused(GetMetricStatisticsRequest {
        extended_statistics: Some(vec!["p99".into()]),
        ..base.clone()
    });
    assert_eq!(e.code(), "InvalidParameterValueException");
    assert!(e.to_string().contains("no percentiles"), "{e}");
    assert_eq!(
        code(stats_request(60, &["p99"])),
        "ValidationError",
        "not a statistic"
    );
    assert_eq!(
        code(stats_request(
            60,
            &["Sum", "Sum", "Sum", "Sum", "Sum", "Sum"]
        )),
        "ValidationError"
    );
    assert_eq!(
        code(GetMetricStatisticsRequest {
            end_time: Some(T0),
            ..base.clone()
        }),
        "InvalidParameterValueException"
    );
    assert_eq!(
        code(GetMetricStatisticsRequest {
            dimensions: Some(vec![dim("a", "1"), dim("a", "2")]),
            ..base.clone()
        }),
        "InvalidParameterValueException"
    );
    // At most 1,440 datapoints: a day of minutes is fine, a second more is not.
    let day = GetMetricStatisticsRequest {
        end_time: Some(T0 + 86_400.0),
        ..base.clone()
    };
    assert_eq!(
        get_metric_statistics(&s, &scope(), NOW, day.clone())
            .unwrap()
            .datapoints
            .len(),
        4
    );
    let e = refused(GetMetricStatisticsRequest {
        end_time: Some(T0 + 86_401.0),
        ..day
    });
    assert_eq!(e.code(), "InvalidParameterCombinationException");
    assert_eq!(e.query_code(), "InvalidParameterCombination");
    assert_eq!(
        e.to_string(),
        "You have requested up to 1,441 datapoints, which exceeds the limit of 1,440. You \
         may reduce the datapoints requested by increasing Period, or decreasing the time \
         range."
    );
}

fn stat_query(id: &str, name: &str, service: &str, stat: &str, period: i32) -> MetricDataQuery {
    MetricDataQuery {
        id: Some(id.into()),
        metric_stat: Some(MetricStat {
            metric: Some(Metric {
                namespace: "App".into(),
                metric_name: name.into(),
                dimensions: vec![dim("Service", service)],
            }),
            period: Some(period),
            stat: Some(stat.into()),
            unit: None,
        }),
        ..Default::default()
    }
}

fn math(id: &str, expression: &str) -> MetricDataQuery {
    MetricDataQuery {
        id: Some(id.into()),
        expression: Some(expression.into()),
        ..Default::default()
    }
}

fn data_request(queries: Vec<MetricDataQuery>) -> GetMetricDataRequest {
    GetMetricDataRequest {
        metric_data_queries: Some(queries),
        start_time: Some(T0),
        end_time: Some(NOW),
        ..Default::default()
    }
}

/// Each result as (id, label, [(seconds after T0, value)], status).
type Answer = Vec<(String, String, Vec<(f64, f64)>, StatusCode)>;

fn answer(r: &GetMetricDataResult) -> Answer {
    r.metric_data_results
        .iter()
        .map(|m| {
            assert_eq!(m.timestamps.len(), m.values.len());
            let points = m
                .timestamps
                .iter()
                .zip(&m.values)
                .map(|(t, v)| (t - T0, *v))
                .collect();
            (m.id.clone(), m.label.clone(), points, m.status_code)
        })
        .collect()
}

/// `Requests` of `Service=web`: 10, 20, 30 in minutes 0, 1, 2; `Errors`: 1 in minute 1,
/// 3 in minute 2, 0 in minute 3.
fn requests_and_errors() -> State {
    let mut s = state();
    let web = [dim("Service", "web")];
    put(
        &mut s,
        "Requests",
        &web,
        &[(0.0, 10.0), (60.0, 20.0), (120.0, 30.0)],
        None,
    );
    put(
        &mut s,
        "Errors",
        &web,
        &[(60.0, 1.0), (120.0, 3.0), (180.0, 0.0)],
        None,
    );
    s
}

#[test]
fn get_metric_data_answers_stats_and_metric_math_newest_first_by_default() {
    let s = requests_and_errors();
    let req = data_request(vec![
        stat_query("requests", "Requests", "web", "Sum", 60),
        MetricDataQuery {
            return_data: Some(false),
            ..stat_query("errors", "Errors", "web", "Sum", 60)
        },
        MetricDataQuery {
            label: Some("error rate".into()),
            ..math("rate", "100 * errors / requests")
        },
        math("total", "SUM([requests, errors])"),
        math("per_second", "requests / 60"),
        math("both", "requests + errors"),
    ]);
    let r = get_metric_data(&s, &scope(), NOW, req.clone()).unwrap();
    assert_eq!(r.next_token, None);
    let complete = StatusCode::Complete;
    let row = |id: &str, label: &str, points: &[(f64, f64)]| {
        (id.to_owned(), label.to_owned(), points.to_vec(), complete)
    };
    assert_eq!(
        answer(&r),
        [
            row(
                "requests",
                "Requests",
                &[(120.0, 30.0), (60.0, 20.0), (0.0, 10.0)]
            ),
            row("rate", "error rate", &[(120.0, 10.0), (60.0, 5.0)]),
            row(
                "total",
                "total",
                &[(180.0, 0.0), (120.0, 33.0), (60.0, 21.0), (0.0, 10.0)]
            ),
            row(
                "per_second",
                "per_second",
                &[(120.0, 0.5), (60.0, 20.0 / 60.0), (0.0, 10.0 / 60.0)]
            ),
            row("both", "both", &[(120.0, 33.0), (60.0, 21.0)]),
        ]
    );
    // Oldest first with ScanBy; 300 s periods add the minutes up.
    let r = get_metric_data(
        &s,
        &scope(),
        NOW,
        GetMetricDataRequest {
            scan_by: Some(ScanBy::TimestampAscending),
            ..req
        },
    )
    .unwrap();
    assert_eq!(answer(&r)[0].2, [(0.0, 10.0), (60.0, 20.0), (120.0, 30.0)]);
    let r = get_metric_data(
        &s,
        &scope(),
        NOW,
        data_request(vec![
            stat_query("r", "Requests", "web", "Average", 300),
            stat_query("e", "Errors", "web", "SampleCount", 300),
            math("ratio", "e / r"),
            stat_query("none", "Requests", "api", "Sum", 300),
        ]),
    )
    .unwrap();
    let values: Vec<Vec<(f64, f64)>> = answer(&r).into_iter().map(|a| a.2).collect();
    assert_eq!(
        values,
        [
            vec![(0.0, 20.0)],
            vec![(0.0, 3.0)],
            vec![(0.0, 0.15)],
            vec![]
        ]
    );
}

#[test]
fn get_metric_data_pages_by_max_datapoints_without_repeats() {
    let mut s = requests_and_errors();
    let req = GetMetricDataRequest {
        max_datapoints: Some(2),
        scan_by: Some(ScanBy::TimestampAscending),
        ..data_request(vec![
            stat_query("requests", "Requests", "web", "Sum", 60),
            stat_query("errors", "Errors", "web", "Sum", 60),
        ])
    };
    let first = get_metric_data(&s, &scope(), NOW, req.clone()).unwrap();
    let a = answer(&first);
    assert_eq!(a[0].2, [(0.0, 10.0), (60.0, 20.0)]);
    assert_eq!(a[0].3, StatusCode::PartialData);
    assert_eq!((a[1].2.len(), a[1].3), (0, StatusCode::PartialData));
    // A datapoint published between pages, before where the first page ended, does
    // not shift the next one.
    put(
        &mut s,
        "Requests",
        &[dim("Service", "web")],
        &[(30.0, 5.0)],
        None,
    );
    let mut token = first.next_token.clone();
    let mut pages = vec![a];
    while token.is_some() {
        let page = get_metric_data(
            &s,
            &scope(),
            NOW,
            GetMetricDataRequest {
                next_token: token,
                ..req.clone()
            },
        )
        .unwrap();
        token = page.next_token.clone();
        pages.push(answer(&page));
        assert!(pages.len() <= 4, "pages end");
    }
    let statuses: Vec<Vec<StatusCode>> = pages
        .iter()
        .map(|p| p.iter().map(|r| r.3).collect())
        .collect();
    use StatusCode::{Complete, PartialData};
    assert_eq!(
        statuses,
        [
            [PartialData, PartialData],
            [Complete, PartialData],
            [Complete, Complete]
        ]
    );
    let joined =
        |id: usize| -> Vec<(f64, f64)> { pages.iter().flat_map(|p| p[id].2.clone()).collect() };
    assert_eq!(joined(0), [(0.0, 10.0), (60.0, 20.0), (120.0, 30.0)]);
    assert_eq!(joined(1), [(60.0, 1.0), (120.0, 3.0), (180.0, 0.0)]);
    // A token belongs to its request (other queries or range), and only this server's.
    let e = get_metric_data(
        &s,
        &scope(),
        NOW,
        GetMetricDataRequest {
            next_token: first.next_token.clone(),
            end_time: Some(NOW + 60.0),
            ..req.clone()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidNextToken");
    let e = get_metric_data(
        &s,
        &scope(),
        NOW,
        GetMetricDataRequest {
            next_token: Some("made-up".into()),
            ..req.clone()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidNextToken");
    // Without MaxDatapoints, everything fits one page.
    let all = get_metric_data(
        &s,
        &scope(),
        NOW,
        GetMetricDataRequest {
            max_datapoints: None,
            ..req
        },
    )
    .unwrap();
    assert_eq!(all.next_token, None);
    assert_eq!(answer(&all)[0].2.len(), 3);
}

#[test]
fn get_metric_data_refuses_what_it_cannot_answer() {
    let s = requests_and_errors();
    let code = |queries: Vec<MetricDataQuery>| {
        get_metric_data(&s, &scope(), NOW, data_request(queries))
            .unwrap_err()
            .code()
    };
    let m1 = || stat_query("m1", "Requests", "web", "Sum", 60);
    let invalid = "InvalidParameterValueException";
    assert_eq!(code(vec![]), invalid);
    assert_eq!(
        code(vec![m1(); MAX_METRIC_DATA_QUERIES + 1]),
        invalid,
        "too many"
    );
    assert_eq!(code(vec![m1(), m1()]), invalid, "the same id twice");
    assert_eq!(
        code(vec![stat_query("M1", "Requests", "web", "Sum", 60)]),
        invalid
    );
    assert_eq!(
        code(vec![MetricDataQuery { id: None, ..m1() }]),
        "MissingRequiredParameterException"
    );
    assert_eq!(
        code(vec![MetricDataQuery {
            expression: Some("1".into()),
            ..m1()
        }]),
        "InvalidParameterCombinationException"
    );
    assert_eq!(
        code(vec![MetricDataQuery {
            metric_stat: None,
            ..m1()
        }]),
        "MissingRequiredParameterException"
    );
    assert_eq!(
        code(vec![stat_query("m1", "Requests", "web", "p99", 60)]),
        invalid
    );
    assert_eq!(
        code(vec![stat_query("m1", "Requests", "web", "Sum", 45)]),
        invalid
    );
    for expression in [
        "FILL(m1, 0)",
        "m1 + m9",
        "e1 + 1",
        "1 + 2",
        "m1 +",
        "m1 + m5",
    ] {
        let m5 = stat_query("m5", "Requests", "web", "Sum", 300);
        assert_eq!(
            code(vec![m1(), m5, math("e1", expression)]),
            invalid,
            "{expression}"
        );
    }
    assert_eq!(
        code(vec![m1(), math("e1", "e2 + 1"), math("e2", "e1 * m1")]),
        invalid,
        "a cycle"
    );
    let e = get_metric_data(
        &s,
        &scope(),
        NOW,
        GetMetricDataRequest {
            max_datapoints: Some(MAX_DATAPOINTS_PER_PAGE + 1),
            ..data_request(vec![m1()])
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), invalid);
    let e = get_metric_data(
        &s,
        &scope(),
        NOW,
        GetMetricDataRequest {
            start_time: Some(NOW),
            ..data_request(vec![m1()])
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), invalid);
    // Expressions may name expressions, in any order.
    let r = get_metric_data(
        &s,
        &scope(),
        NOW,
        data_request(vec![math("e2", "e1 * 2"), math("e1", "m1 + 1"), m1()]),
    )
    .unwrap();
    assert_eq!(answer(&r)[0].2, [(120.0, 62.0), (60.0, 42.0), (0.0, 22.0)]);
}
