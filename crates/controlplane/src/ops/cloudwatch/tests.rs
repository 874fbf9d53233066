//! The evaluator's rule (windows, statistics, DatapointsToAlarm, TreatMissingData) as a
//! pure function, and the operations on a hand-built state: limits, PutMetricData
//! evaluating alarms at once, SetAlarmState's hold, DescribeAlarms' filters and pages,
//! flotilla's own publishing in `AWS/` namespaces, ListMetrics' filters and pages.

use model::wire_cw::{
    ComparisonOperator, DeleteAlarmsRequest, DescribeAlarmsRequest, Dimension, DimensionFilter,
    ListMetricsRequest, MetricAlarm, MetricDatum, PutMetricAlarmRequest, PutMetricDataRequest,
    SetAlarmStateRequest, StateValue, Statistic,
};

use super::evaluate::{evaluate, evaluate_alarms};
use super::*;
use crate::engine::Ctx;
use crate::ops::test_support::{apply, scope, state};
use crate::state::{Bucket, Scope, State};

/// A minute boundary, so that periods of 60 s and 300 s start on it.
const T0: f64 = 1_700_000_100.0;

fn bucket(at: f64, value: f64) -> Bucket {
    Bucket {
        minute: (at as i64).div_euclid(60),
        count: 1.0,
        sum: value,
        min: value,
        max: value,
    }
}

fn alarm(period: i32, n: i32, m: Option<i32>, treat: &str) -> MetricAlarm {
    MetricAlarm {
        statistic: Some(Statistic::Sum),
        period: Some(period),
        evaluation_periods: Some(n),
        datapoints_to_alarm: m,
        threshold: Some(5.0),
        comparison_operator: Some(ComparisonOperator::GreaterThanThreshold),
        treat_missing_data: Some(treat.into()),
        ..Default::default()
    }
}

fn state_of(a: &MetricAlarm, buckets: &[Bucket], now: f64) -> StateValue {
    evaluate(a, buckets, StateValue::Ok, now).state
}

#[test]
fn a_breaching_period_alarms_and_a_quiet_one_is_ok() {
    let a = alarm(60, 1, None, "missing");
    // The open minute counts as soon as it has a datapoint.
    let e = evaluate(&a, &[bucket(T0 + 10.0, 9.0)], StateValue::Ok, T0 + 30.0);
    assert_eq!(e.state, StateValue::Alarm);
    assert!(
        e.reason
            .starts_with("Threshold Crossed: 1 out of the last 1"),
        "{}",
        e.reason
    );
    assert!(serde_json::from_str::<serde_json::Value>(&e.reason_data).is_ok());
    assert_eq!(
        state_of(&a, &[bucket(T0 + 10.0, 5.0)], T0 + 30.0),
        StateValue::Ok,
        "5 is not greater than 5"
    );
    // Two datapoints of the same minute add up under Sum: 3 + 3 > 5.
    let two = [bucket(T0 + 1.0, 3.0), bucket(T0 + 2.0, 3.0)];
    assert_eq!(state_of(&a, &two, T0 + 30.0), StateValue::Alarm);
    let avg = MetricAlarm {
        statistic: Some(Statistic::Average),
        ..a.clone()
    };
    assert_eq!(state_of(&avg, &two, T0 + 30.0), StateValue::Ok);
}

#[test]
fn an_open_period_without_data_is_not_missing_but_an_ended_one_is() {
    let a = alarm(60, 1, None, "missing");
    // Data in the minute before; now in a fresh minute with none yet: the ended minute
    // is judged.
    let b = [bucket(T0 - 30.0, 9.0)];
    assert_eq!(state_of(&a, &b, T0 + 5.0), StateValue::Alarm);
    // Two minutes on, the breaching minute is out of the window: no data at all.
    assert_eq!(state_of(&a, &b, T0 + 65.0), StateValue::InsufficientData);
}

#[test]
fn datapoints_to_alarm_is_m_out_of_n() {
    let a = alarm(60, 3, Some(2), "missing");
    let one_of_three = [
        bucket(T0 - 120.0, 9.0),
        bucket(T0 - 60.0, 1.0),
        bucket(T0, 1.0),
    ];
    assert_eq!(state_of(&a, &one_of_three, T0 + 1.0), StateValue::Ok);
    let two_of_three = [
        bucket(T0 - 120.0, 9.0),
        bucket(T0 - 60.0, 1.0),
        bucket(T0, 9.0),
    ];
    assert_eq!(state_of(&a, &two_of_three, T0 + 1.0), StateValue::Alarm);
    // Without DatapointsToAlarm all three must breach.
    let all = alarm(60, 3, None, "missing");
    assert_eq!(state_of(&all, &two_of_three, T0 + 1.0), StateValue::Ok);
}

#[test]
fn longer_periods_aggregate_their_minutes() {
    // Period 300: five one-minute buckets of 2 sum to 10 > 5.
    let a = alarm(300, 1, None, "missing");
    let start = (T0 as i64).div_euclid(300) as f64 * 300.0;
    let b: Vec<Bucket> = (0..5)
        .map(|i| bucket(start + 60.0 * f64::from(i), 2.0))
        .collect();
    assert_eq!(state_of(&a, &b, start + 299.0), StateValue::Alarm);
    assert_eq!(state_of(&a, &b[..2], start + 299.0), StateValue::Ok);
}

#[test]
fn treat_missing_data_decides_what_no_data_means() {
    let now = T0 + 1.0;
    // One of two periods breaches, the other has no data.
    let b = [bucket(T0 - 60.0, 9.0)];
    let n2 = |treat| alarm(60, 2, None, treat);
    assert_eq!(state_of(&n2("missing"), &b, now), StateValue::Ok);
    assert_eq!(state_of(&n2("notBreaching"), &b, now), StateValue::Ok);
    assert_eq!(state_of(&n2("breaching"), &b, now), StateValue::Alarm);
    assert_eq!(state_of(&n2("ignore"), &b, now), StateValue::Ok);
    // No data at all.
    assert_eq!(
        state_of(&n2("missing"), &[], now),
        StateValue::InsufficientData
    );
    assert_eq!(state_of(&n2("notBreaching"), &[], now), StateValue::Ok);
    assert_eq!(state_of(&n2("breaching"), &[], now), StateValue::Alarm);
    for kept in [
        StateValue::Alarm,
        StateValue::Ok,
        StateValue::InsufficientData,
    ] {
        assert_eq!(evaluate(&n2("ignore"), &[], kept, now).state, kept);
    }
}

/// The `Service=web` dimension the metric of these tests carries.
fn web() -> Option<Vec<Dimension>> {
    Some(vec![Dimension {
        name: "Service".into(),
        value: "web".into(),
    }])
}

fn put_alarm(state: &mut State, name: &str, now: f64) -> Result<(), CwError> {
    let mut ctx = Ctx::new(scope(), now, 1);
    let req = PutMetricAlarmRequest {
        dimensions: web(),
        ..testkit::cw::errors_alarm(name)
    };
    let (_, changes) = put_metric_alarm(state, &mut ctx, req)?;
    apply(state, &changes);
    Ok(())
}

fn put_value(state: &mut State, value: f64, now: f64) {
    let mut ctx = Ctx::new(scope(), now, 2);
    let req = testkit::cw::errors_datum(value, web());
    let (_, changes) = put_metric_data(state, &mut ctx, req).unwrap();
    apply(state, &changes);
}

fn alarm_state(state: &State, name: &str) -> StateValue {
    state
        .discovery
        .cloudwatch
        .alarm(&scope(), name)
        .unwrap()
        .state()
}

#[test]
fn put_metric_data_evaluates_the_alarms_on_that_metric_at_once() {
    let mut s = state();
    put_alarm(&mut s, "errors", T0).unwrap();
    assert_eq!(alarm_state(&s, "errors"), StateValue::InsufficientData);
    put_value(&mut s, 2.0, T0 + 1.0);
    assert_eq!(alarm_state(&s, "errors"), StateValue::Ok);
    put_value(&mut s, 7.0, T0 + 2.0);
    let a = s.discovery.cloudwatch.alarm(&scope(), "errors").unwrap();
    assert_eq!(a.state(), StateValue::Alarm);
    assert_eq!(a.alarm.state_transitioned_timestamp, Some(T0 + 2.0));
    // Time alone: two minutes later the datapoints left the window.
    let mut ctx = Ctx::new(scope(), T0 + 150.0, 3);
    let (n, changes) = evaluate_alarms(&s, &mut ctx, ()).unwrap();
    assert_eq!(n, 1);
    apply(&mut s, &changes);
    assert_eq!(alarm_state(&s, "errors"), StateValue::InsufficientData);
    // Nothing more changes: an evaluation is idempotent.
    let (n, changes) = evaluate_alarms(&s, &mut ctx, ()).unwrap();
    assert_eq!((n, changes.len()), (0, 0));
}

#[test]
fn set_alarm_state_holds_until_the_next_evaluation() {
    let mut s = state();
    put_alarm(&mut s, "errors", T0).unwrap();
    let mut ctx = Ctx::new(scope(), T0 + 10.0, 4);
    let (_, changes) = set_alarm_state(
        &s,
        &mut ctx,
        SetAlarmStateRequest {
            alarm_name: Some("errors".into()),
            state_value: Some(StateValue::Alarm),
            state_reason: Some("testing".into()),
            state_reason_data: None,
        },
    )
    .unwrap();
    apply(&mut s, &changes);
    let a = s.discovery.cloudwatch.alarm(&scope(), "errors").unwrap();
    assert_eq!(a.state(), StateValue::Alarm);
    assert_eq!(a.alarm.state_reason.as_deref(), Some("testing"));
    // Within the period nothing (not even new data) moves it.
    put_value(&mut s, 1.0, T0 + 20.0);
    assert_eq!(alarm_state(&s, "errors"), StateValue::Alarm);
    let mut ctx = Ctx::new(scope(), T0 + 69.0, 5);
    assert_eq!(evaluate_alarms(&s, &mut ctx, ()).unwrap().0, 0);
    // The next evaluation puts it back where its data says.
    let mut ctx = Ctx::new(scope(), T0 + 71.0, 5);
    let (_, changes) = evaluate_alarms(&s, &mut ctx, ()).unwrap();
    apply(&mut s, &changes);
    assert_eq!(alarm_state(&s, "errors"), StateValue::Ok);
    // Unknown alarms and bad reason data are refused.
    let refused = |s: &State, name: &str, data: Option<&str>| {
        let mut ctx = Ctx::new(scope(), T0, 6);
        set_alarm_state(
            s,
            &mut ctx,
            SetAlarmStateRequest {
                alarm_name: Some(name.into()),
                state_value: Some(StateValue::Ok),
                state_reason: Some("x".into()),
                state_reason_data: data.map(str::to_owned),
            },
        )
        .unwrap_err()
        .code()
    };
    assert_eq!(refused(&s, "nope", None), "ResourceNotFound");
    assert_eq!(
        refused(&s, "errors", Some("{not json")),
        "InvalidFormatFault"
    );
}

#[test]
fn put_metric_alarm_checks_what_flotilla_can_evaluate() {
    let base = testkit::cw::errors_alarm("a");
    let code = |req: PutMetricAlarmRequest| {
        let mut ctx = Ctx::new(scope(), T0, 1);
        put_metric_alarm(&state(), &mut ctx, req)
            .err()
            .map(|e| e.code())
    };
    assert_eq!(code(base.clone()), None);
    for (req, want) in [
        (
            PutMetricAlarmRequest {
                alarm_name: Some("x".repeat(256)),
                ..base.clone()
            },
            "ValidationError",
        ),
        (
            PutMetricAlarmRequest {
                period: Some(30),
                ..base.clone()
            },
            "InvalidParameterValueException",
        ),
        (
            PutMetricAlarmRequest {
                period: Some(3600),
                evaluation_periods: Some(4),
                ..base.clone()
            },
            "InvalidParameterValueException",
        ),
        (
            PutMetricAlarmRequest {
                datapoints_to_alarm: Some(2),
                ..base.clone()
            },
            "ValidationError",
        ),
        (
            PutMetricAlarmRequest {
                statistic: None,
                ..base.clone()
            },
            "MissingRequiredParameterException",
        ),
        (
            PutMetricAlarmRequest {
                treat_missing_data: Some("sometimes".into()),
                ..base.clone()
            },
            "ValidationError",
        ),
        (
            PutMetricAlarmRequest {
                extended_statistic: Some("p99".into()),
                ..base.clone()
            },
            "InvalidParameterValueException",
        ),
    ] {
        assert_eq!(code(req), Some(want));
    }
    // At most MAX_ALARMS per account and region; an update of one does not count.
    let mut s = state();
    for i in 0..MAX_ALARMS {
        put_alarm(&mut s, &format!("a{i:04}"), T0).unwrap();
    }
    assert_eq!(
        put_alarm(&mut s, "one-more", T0).unwrap_err().code(),
        "LimitExceededFault"
    );
    put_alarm(&mut s, "a0000", T0 + 1.0).unwrap();
}

#[test]
fn describe_alarms_filters_and_pages_and_delete_is_all_or_nothing() {
    let mut s = state();
    for name in ["web-5xx", "web-latency", "worker-queue"] {
        put_alarm(&mut s, name, T0).unwrap();
    }
    put_value(&mut s, 9.0, T0 + 1.0);
    let describe = |s: &State, req: DescribeAlarmsRequest| {
        describe_alarms(s, &scope(), T0 + 2.0, req).unwrap()
    };
    let names = |r: &model::wire_cw::DescribeAlarmsResult| {
        r.metric_alarms
            .iter()
            .map(|a| a.alarm_name.clone().unwrap())
            .collect::<Vec<_>>()
    };
    let prefix = describe(
        &s,
        DescribeAlarmsRequest {
            alarm_name_prefix: Some("web-".into()),
            ..Default::default()
        },
    );
    assert_eq!(names(&prefix), ["web-5xx", "web-latency"]);
    let alarmed = describe(
        &s,
        DescribeAlarmsRequest {
            state_value: Some(StateValue::Alarm),
            ..Default::default()
        },
    );
    assert_eq!(alarmed.metric_alarms.len(), 3);
    let page1 = describe(
        &s,
        DescribeAlarmsRequest {
            max_records: Some(2),
            ..Default::default()
        },
    );
    assert_eq!(names(&page1), ["web-5xx", "web-latency"]);
    let page2 = describe(
        &s,
        DescribeAlarmsRequest {
            max_records: Some(2),
            next_token: page1.next_token.clone(),
            ..Default::default()
        },
    );
    assert_eq!(names(&page2), ["worker-queue"]);
    assert_eq!(page2.next_token, None);
    // A token for other filters is refused.
    let e = describe_alarms(
        &s,
        &scope(),
        T0 + 2.0,
        DescribeAlarmsRequest {
            alarm_name_prefix: Some("w".into()),
            next_token: page1.next_token,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidNextToken");
    // Other scopes see nothing.
    let other = Scope::new("000000000000", "eu-west-1");
    let r = describe_alarms(&s, &other, T0, DescribeAlarmsRequest::default()).unwrap();
    assert!(r.metric_alarms.is_empty());
    let delete = |s: &State, names: &[&str]| {
        let mut ctx = Ctx::new(scope(), T0 + 3.0, 9);
        delete_alarms(
            s,
            &mut ctx,
            DeleteAlarmsRequest {
                alarm_names: Some(names.iter().map(|n| (*n).to_owned()).collect()),
            },
        )
    };
    assert_eq!(
        delete(&s, &["web-5xx", "nope"]).unwrap_err().code(),
        "ResourceNotFound"
    );
    let (_, changes) = delete(&s, &["web-5xx", "web-5xx", "worker-queue"]).unwrap();
    assert_eq!(changes.len(), 2);
    apply(&mut s, &changes);
    let left = describe(&s, DescribeAlarmsRequest::default());
    assert_eq!(names(&left), ["web-latency"]);
}

#[test]
fn put_metric_data_keeps_a_bounded_window_and_refuses_bad_values() {
    let mut s = state();
    // One datapoint a minute for four hours: only RETENTION_MINUTES buckets stay.
    for i in 0..240 {
        put_value(&mut s, 1.0, T0 + 60.0 * f64::from(i));
    }
    let m = s.discovery.cloudwatch.metrics.values().next().unwrap();
    assert_eq!(m.buckets.len(), RETENTION_MINUTES as usize);
    let refused = |datum: MetricDatum, namespace: &str| {
        let mut ctx = Ctx::new(scope(), T0, 2);
        put_metric_data(
            &state(),
            &mut ctx,
            PutMetricDataRequest {
                namespace: Some(namespace.into()),
                metric_data: Some(vec![datum]),
                ..Default::default()
            },
        )
        .unwrap_err()
        .code()
    };
    let named = |value: f64| MetricDatum {
        metric_name: Some("m".into()),
        value: Some(value),
        ..Default::default()
    };
    let cases = [
        (named(f64::NAN), "App", "InvalidParameterValueException"),
        (
            MetricDatum {
                values: Some(vec![1.0]),
                ..named(1.0)
            },
            "App",
            "InvalidParameterCombinationException",
        ),
        (
            MetricDatum {
                timestamp: Some(T0 + 3.0 * 3600.0),
                ..named(1.0)
            },
            "App",
            "InvalidParameterValueException",
        ),
        (named(1.0), "AWS/ECS", "InvalidParameterValueException"),
    ];
    for (datum, namespace, code) in cases {
        assert_eq!(
            refused(datum.clone(), namespace),
            code,
            "{datum:?} in {namespace}"
        );
    }
}

fn dim(name: &str, value: &str) -> Dimension {
    Dimension {
        name: name.into(),
        value: value.into(),
    }
}

fn datum(name: &str, dims: Vec<Dimension>, value: f64) -> MetricDatum {
    MetricDatum {
        metric_name: Some(name.into()),
        dimensions: Some(dims),
        value: Some(value),
        ..Default::default()
    }
}

#[test]
fn flotilla_publishes_in_aws_namespaces_through_the_same_path() {
    let mut s = state();
    let lb = || vec![dim("LoadBalancer", "app/web/0123456789abcdef")];
    let mut ctx = Ctx::new(scope(), T0, 1);
    let alarm = PutMetricAlarmRequest {
        namespace: Some("AWS/ApplicationELB".into()),
        metric_name: Some("RequestCount".into()),
        dimensions: Some(lb()),
        threshold: Some(0.0),
        ..testkit::cw::errors_alarm("busy")
    };
    let (_, changes) = put_metric_alarm(&s, &mut ctx, alarm).unwrap();
    apply(&mut s, &changes);
    // PutMetricData refuses AWS's namespaces; flotilla's own publishing takes only them.
    let req = PutMetricDataRequest {
        namespace: Some("AWS/ApplicationELB".into()),
        metric_data: Some(vec![datum("RequestCount", lb(), 3.0)]),
        ..Default::default()
    };
    let e = put_metric_data(&s, &mut ctx, req).unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValueException");
    let mine = [datum("Errors", vec![], 1.0)];
    let e = publish_metric_data(&s, &mut ctx, "App", &mine).unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValueException");
    // More than one PutMetricData may carry, and more metrics than MAX_METRICS, in one
    // write; the alarm is evaluated in it.
    let data: Vec<MetricDatum> = (0..MAX_METRICS)
        .map(|i| {
            datum(
                "HealthyHostCount",
                vec![dim("LoadBalancer", &format!("app/lb/{i}"))],
                1.0,
            )
        })
        .chain([datum("RequestCount", lb(), 3.0)])
        .collect();
    let (_, changes) = publish_metric_data(&s, &mut ctx, "AWS/ApplicationELB", &data).unwrap();
    assert_eq!(changes.len(), MAX_METRICS + 2, "the metrics and the alarm");
    apply(&mut s, &changes);
    assert_eq!(alarm_state(&s, "busy"), StateValue::Alarm);
    // They do not count towards the account's own MAX_METRICS.
    put_value(&mut s, 1.0, T0 + 1.0);
    // Each datum is checked as PutMetricData checks it; no data writes nothing.
    let bad = [datum("RequestCount", lb(), f64::NAN)];
    let e = publish_metric_data(&s, &mut ctx, "AWS/ApplicationELB", &bad).unwrap_err();
    assert_eq!(e.code(), "InvalidParameterValueException");
    let (_, changes) = publish_metric_data(&s, &mut ctx, "AWS/ApplicationELB", &[]).unwrap();
    assert!(changes.is_empty());
    // Once their datapoints are older than the retention, the metrics that are not
    // published again are deleted (those of others' namespaces stay).
    let later = T0 + 60.0 * RETENTION_MINUTES as f64 + 60.0;
    let mut ctx = Ctx::new(scope(), later, 3);
    let (_, changes) = publish_metric_data(&s, &mut ctx, "AWS/ApplicationELB", &data[..1]).unwrap();
    apply(&mut s, &changes);
    let left: std::collections::BTreeSet<(&str, &str)> = s
        .discovery
        .cloudwatch
        .metrics
        .values()
        .map(|m| (m.namespace.as_str(), m.name.as_str()))
        .collect();
    assert_eq!(
        left,
        [
            ("AWS/ApplicationELB", "HealthyHostCount"),
            ("App", "Errors")
        ]
        .into()
    );
    assert_eq!(s.discovery.cloudwatch.metrics.len(), 2);
}

#[test]
fn list_metrics_filters_and_pages() {
    let mut s = state();
    let lb = dim("LoadBalancer", "app/web/1");
    let tg = dim("TargetGroup", "targetgroup/api/2");
    let data = vec![
        datum("RequestCount", vec![lb.clone()], 1.0),
        datum("RequestCount", vec![tg.clone(), lb.clone()], 1.0),
        datum("HealthyHostCount", vec![tg.clone(), lb.clone()], 1.0),
        datum(
            "RequestCount",
            vec![dim("LoadBalancer", "app/other/3")],
            1.0,
        ),
    ];
    let mut ctx = Ctx::new(scope(), T0, 1);
    let (_, changes) = publish_metric_data(&s, &mut ctx, "AWS/ApplicationELB", &data).unwrap();
    apply(&mut s, &changes);
    // An old datapoint of a metric of the caller's own.
    let (_, changes) = put_metric_data(
        &s,
        &mut Ctx::new(scope(), T0, 2),
        PutMetricDataRequest {
            namespace: Some("App".into()),
            metric_data: Some(vec![MetricDatum {
                timestamp: Some(T0 - 3600.0 * 2.5),
                ..datum("Errors", vec![], 1.0)
            }]),
            ..Default::default()
        },
    )
    .unwrap();
    apply(&mut s, &changes);
    let list = |req: ListMetricsRequest| list_metrics(&s, &scope(), T0 + 60.0, req);
    let names = |r: &model::wire_cw::ListMetricsResult| {
        let mut v: Vec<(String, String, usize)> = r
            .metrics
            .iter()
            .map(|m| {
                (
                    m.namespace.clone(),
                    m.metric_name.clone(),
                    m.dimensions.len(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let all = list(ListMetricsRequest::default()).unwrap();
    assert_eq!(all.metrics.len(), 5);
    assert_eq!(all.next_token, None);
    let elb = |n: &str, d: usize| ("AWS/ApplicationELB".to_owned(), n.to_owned(), d);
    // Dimensions: a metric with more dimensions matches too; sorted by name.
    let by_lb = list(ListMetricsRequest {
        namespace: Some("AWS/ApplicationELB".into()),
        dimensions: Some(vec![DimensionFilter {
            name: "LoadBalancer".into(),
            value: Some("app/web/1".into()),
        }]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        names(&by_lb),
        [
            elb("HealthyHostCount", 2),
            elb("RequestCount", 1),
            elb("RequestCount", 2)
        ]
    );
    let m = by_lb
        .metrics
        .iter()
        .find(|m| m.dimensions.len() == 2)
        .unwrap();
    assert_eq!(m.dimensions, [lb.clone(), tg.clone()]);
    let any_tg = list(ListMetricsRequest {
        metric_name: Some("RequestCount".into()),
        dimensions: Some(vec![DimensionFilter {
            name: "TargetGroup".into(),
            value: None,
        }]),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(names(&any_tg), [elb("RequestCount", 2)]);
    // RecentlyActive: the App metric's only datapoint is 2.5 hours older than the others
    // but still within three hours; an hour later it is not.
    let recent = |now: f64| {
        list_metrics(
            &s,
            &scope(),
            now,
            ListMetricsRequest {
                recently_active: Some("PT3H".into()),
                ..Default::default()
            },
        )
        .unwrap()
        .metrics
        .len()
    };
    assert_eq!(recent(T0 + 60.0), 5);
    assert_eq!(recent(T0 + 3600.0), 4);
    // Other accounts and regions see nothing.
    let other = list_metrics(
        &s,
        &Scope::new("000000000000", "eu-west-1"),
        T0,
        ListMetricsRequest::default(),
    )
    .unwrap();
    assert!(other.metrics.is_empty());
    let foreign = list(ListMetricsRequest {
        owning_account: Some("999999999999".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(foreign.metrics.is_empty());
    // Refusals.
    let refused = |req: ListMetricsRequest| list(req).unwrap_err().code();
    assert_eq!(
        refused(ListMetricsRequest {
            recently_active: Some("PT1H".into()),
            ..Default::default()
        }),
        "ValidationError"
    );
    let eleven = vec![
        DimensionFilter {
            name: "x".into(),
            value: None
        };
        MAX_DIMENSION_FILTERS + 1
    ];
    assert_eq!(
        refused(ListMetricsRequest {
            dimensions: Some(eleven),
            ..Default::default()
        }),
        "ValidationError"
    );
    assert_eq!(
        refused(ListMetricsRequest {
            next_token: Some("made-up".into()),
            ..Default::default()
        }),
        "InvalidNextToken"
    );
}

#[test]
fn list_metrics_pages_hold_500_and_tokens_belong_to_their_filters() {
    let mut s = state();
    let n = usize::try_from(LIST_METRICS_PAGE).unwrap() + 20;
    let data: Vec<MetricDatum> = (0..n)
        .map(|i| {
            datum(
                "RequestCount",
                vec![dim("LoadBalancer", &format!("app/lb/{i}"))],
                1.0,
            )
        })
        .collect();
    let mut ctx = Ctx::new(scope(), T0, 1);
    let (_, changes) = publish_metric_data(&s, &mut ctx, "AWS/ApplicationELB", &data).unwrap();
    apply(&mut s, &changes);
    let req = ListMetricsRequest {
        namespace: Some("AWS/ApplicationELB".into()),
        ..Default::default()
    };
    crate::paging::take_visited();
    let first = list_metrics(&s, &scope(), T0, req.clone()).unwrap();
    assert_eq!(first.metrics.len(), n - 20);
    let second = list_metrics(
        &s,
        &scope(),
        T0,
        ListMetricsRequest {
            next_token: first.next_token.clone(),
            ..req.clone()
        },
    )
    .unwrap();
    assert_eq!(second.metrics.len(), 20);
    assert_eq!(second.next_token, None);
    // The second page starts where the first ended: it visits only what it lists.
    assert!(crate::paging::take_visited() <= (n + 2) as u64);
    let mut seen: Vec<String> = first
        .metrics
        .iter()
        .chain(&second.metrics)
        .map(|m| m.dimensions[0].value.clone())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "no metric twice, none left out");
    let e = list_metrics(
        &s,
        &scope(),
        T0,
        ListMetricsRequest {
            metric_name: Some("RequestCount".into()),
            next_token: first.next_token,
            ..req
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidNextToken");
}
