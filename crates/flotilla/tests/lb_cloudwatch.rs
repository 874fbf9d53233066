//! The load balancers' CloudWatch metrics end to end: the real `flotilla server` with
//! `--lb-listen 127.0.0.1` and a one-second `--lb-metrics-interval`, a loopback HTTP
//! backend, an application load balancer, target group, listener and registered target
//! made through the ELBv2 API (query protocol, unsigned), N requests through the
//! listener; then, through the CloudWatch API (JSON 1.0): ListMetrics shows the
//! `AWS/ApplicationELB` metrics with their dimensions, an alarm on `RequestCount`
//! (Sum > 0 over 60 s) goes into ALARM, and alarms pin the published values: the
//! `RequestCount` sum over the hour is exactly N (one alarm `>= N`, one `<= N`, both in
//! ALARM) and `HealthyHostCount` is 1 (likewise).
//!
//! Every wait polls with a deadline. The one look at the clock: the exact-sum alarms use
//! hour-long periods (aligned on the hour, as CloudWatch's are), so when the hour is
//! about to turn the test waits for the next one before it sends, lest N requests
//! published on both sides of the turn be split between two periods.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use testkit::server::ServerProcess;
use testkit::wait;

/// Requests sent through the listener.
const N: usize = 25;
const CW: &str = "GraniteServiceVersion20100801";
const POLL: Duration = Duration::from_millis(200);

/// A loopback HTTP/1.1 backend answering `200 ok` to everything (health checks too).
async fn backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// An ELBv2 call (query protocol, form body, unsigned: routed by its shape); the XML
/// answer. Panics unless it is 200.
async fn elb(http: &reqwest::Client, endpoint: &str, params: &[(&str, &str)]) -> String {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Version", "2015-12-01")
        .extend_pairs(params)
        .finish();
    let resp = http
        .post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{params:?}: {status} {text}");
    text
}

/// The text of the first `<tag>` of `xml`.
fn xml_text<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    &xml[start..end]
}

/// A CloudWatch call (JSON 1.0, unsigned: routed by its target); the answer.
async fn cw(http: &reqwest::Client, endpoint: &str, op: &str, body: Value) -> Value {
    testkit::http::call(http, endpoint, &format!("{CW}.{op}"), &body).await
}

/// PutMetricAlarm `name` on the metric `metric` with `dimensions`, one period of
/// `period` seconds.
async fn alarm(
    http: &reqwest::Client,
    endpoint: &str,
    name: &str,
    (metric, dimensions): (&str, &Value),
    (statistic, period, op, threshold): (&str, u32, &str, f64),
) {
    cw(
        http,
        endpoint,
        "PutMetricAlarm",
        json!({
            "AlarmName": name, "Namespace": "AWS/ApplicationELB", "MetricName": metric,
            "Dimensions": dimensions, "Statistic": statistic, "Period": period,
            "EvaluationPeriods": 1, "Threshold": threshold, "ComparisonOperator": op,
        }),
    )
    .await;
}

/// The state of every alarm, by name.
async fn alarm_states(http: &reqwest::Client, endpoint: &str) -> Vec<(String, String)> {
    let v = cw(http, endpoint, "DescribeAlarms", json!({})).await;
    v["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AlarmName"].as_str().unwrap().to_owned(),
                a["StateValue"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (metric name, dimension names) of every metric ListMetrics lists for `filter`,
/// sorted.
async fn listed(
    http: &reqwest::Client,
    endpoint: &str,
    filter: Value,
) -> Vec<(String, Vec<String>)> {
    let v = cw(http, endpoint, "ListMetrics", filter).await;
    assert!(v.get("NextToken").is_none(), "{v}");
    let mut out: Vec<(String, Vec<String>)> = v["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["Namespace"], "AWS/ApplicationELB", "{m}");
            let dims = m["Dimensions"].as_array().unwrap();
            (
                m["MetricName"].as_str().unwrap().to_owned(),
                dims.iter()
                    .map(|d| d["Name"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Whether `name` is in ALARM in `states`.
fn alarmed(states: &[(String, String)], name: &str) -> bool {
    states.iter().any(|(a, s)| a == name && s == "ALARM")
}

fn seconds_into_the_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 3600
}

#[test]
fn load_balancer_traffic_reaches_cloudwatch_metrics_and_alarms() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn_with(
        Path::new(env!("CARGO_BIN_EXE_flotilla")),
        dir.path(),
        Stdio::inherit(),
        &["--lb-listen", "127.0.0.1", "--lb-metrics-interval", "1"],
    );
    server.wait_healthy(Duration::from_secs(30));
    let endpoint = server.endpoint.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let ep = endpoint.as_str();
        let target = backend().await;

        let create_lb = [("Action", "CreateLoadBalancer"), ("Name", "metrics")];
        let created = elb(&http, ep, &create_lb).await;
        let lb_arn = xml_text(&created, "LoadBalancerArn").to_owned();
        let lb_dim = lb_arn.split_once(":loadbalancer/").unwrap().1.to_owned();
        assert!(lb_dim.starts_with("app/metrics/"), "{lb_dim}");
        let created = elb(
            &http,
            ep,
            &[
                ("Action", "CreateTargetGroup"),
                ("Name", "api"),
                ("Protocol", "HTTP"),
                ("Port", "80"),
                ("TargetType", "ip"),
                ("HealthCheckPath", "/"),
                ("HealthCheckIntervalSeconds", "5"),
                ("HealthCheckTimeoutSeconds", "2"),
                ("HealthyThresholdCount", "2"),
            ],
        )
        .await;
        let tg_arn = xml_text(&created, "TargetGroupArn").to_owned();
        let tg_dim = tg_arn.rsplit_once(':').unwrap().1.to_owned();
        assert!(tg_dim.starts_with("targetgroup/api/"), "{tg_dim}");
        let port = testkit::http::free_port();
        elb(
            &http,
            ep,
            &[
                ("Action", "CreateListener"),
                ("LoadBalancerArn", &lb_arn),
                ("Protocol", "HTTP"),
                ("Port", &port.to_string()),
                ("DefaultActions.member.1.Type", "forward"),
                ("DefaultActions.member.1.TargetGroupArn", &tg_arn),
            ],
        )
        .await;
        elb(
            &http,
            ep,
            &[
                ("Action", "RegisterTargets"),
                ("TargetGroupArn", &tg_arn),
                ("Targets.member.1.Id", "127.0.0.1"),
                ("Targets.member.1.Port", &target.port().to_string()),
            ],
        )
        .await;

        let by_lb = json!([{"Name": "LoadBalancer", "Value": lb_dim}]);
        let by_group = json!([
            {"Name": "LoadBalancer", "Value": lb_dim},
            {"Name": "TargetGroup", "Value": tg_dim},
        ]);
        let requests = ("RequestCount", &by_lb);
        let healthy = ("HealthyHostCount", &by_group);
        let n = N as f64;
        let (ge, le) = (
            "GreaterThanOrEqualToThreshold",
            "LessThanOrEqualToThreshold",
        );
        let busy = ("Sum", 60, "GreaterThanThreshold", 0.0);
        alarm(&http, ep, "busy", requests, busy).await;
        alarm(&http, ep, "all-n", requests, ("Sum", 3600, ge, n)).await;
        alarm(&http, ep, "at-most-n", requests, ("Sum", 3600, le, n)).await;
        alarm(&http, ep, "one-healthy", healthy, ("Maximum", 60, ge, 1.0)).await;
        let at_most_one = ("Maximum", 60, le, 1.0);
        alarm(&http, ep, "at-most-one-healthy", healthy, at_most_one).await;

        // The target turns healthy (DescribeTargetHealth), and traffic flows.
        let describe = [
            ("Action", "DescribeTargetHealth"),
            ("TargetGroupArn", tg_arn.as_str()),
        ];
        let within = Duration::from_secs(60);
        wait::until_async("the target to be healthy", within, POLL, async || {
            let xml = elb(&http, ep, &describe).await;
            xml.contains("<State>healthy</State>")
                .then_some(())
                .ok_or(xml)
        })
        .await;
        // Host counts are published every period, traffic or not.
        let within = Duration::from_secs(30);
        wait::until_async("HealthyHostCount to be 1", within, POLL, async || {
            let states = alarm_states(&http, ep).await;
            let both = alarmed(&states, "one-healthy") && alarmed(&states, "at-most-one-healthy");
            both.then_some(()).ok_or(format!("{states:?}"))
        })
        .await;
        let idle = listed(&http, ep, json!({"Namespace": "AWS/ApplicationELB"})).await;
        assert!(
            idle.iter()
                .all(|(m, _)| m == "HealthyHostCount" || m == "UnHealthyHostCount"),
            "no request metrics without requests: {idle:?}"
        );
        assert_eq!(
            alarm_states(&http, ep)
                .await
                .into_iter()
                .find(|(a, _)| a == "busy")
                .unwrap()
                .1,
            "INSUFFICIENT_DATA"
        );

        if seconds_into_the_hour() > 3600 - 30 {
            wait::until_async("the next hour", Duration::from_secs(40), POLL, async || {
                seconds_into_the_hour() < 60
            })
            .await;
        }
        let url = format!("http://127.0.0.1:{port}/");
        for i in 0..N {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "request {i}");
            assert_eq!(r.text().await.unwrap(), "ok");
        }

        let within = Duration::from_secs(30);
        wait::until_async("RequestCount to sum to N", within, POLL, async || {
            let states = alarm_states(&http, ep).await;
            let both = alarmed(&states, "busy") && alarmed(&states, "all-n");
            both.then_some(()).ok_or(format!("{states:?}"))
        })
        .await;
        let states = alarm_states(&http, ep).await;
        assert!(
            alarmed(&states, "at-most-n"),
            "the sum is N, not more: {states:?}"
        );

        let lb_and_group = vec!["LoadBalancer".to_owned(), "TargetGroup".to_owned()];
        let lb_only = vec!["LoadBalancer".to_owned()];
        let filter = json!({"Namespace": "AWS/ApplicationELB", "Dimensions": by_lb});
        let of_lb = listed(&http, ep, filter).await;
        let mut want: Vec<(String, Vec<String>)> = [
            "RequestCount",
            "HTTPCode_Target_2XX_Count",
            "HTTPCode_Target_3XX_Count",
            "HTTPCode_Target_4XX_Count",
            "HTTPCode_Target_5XX_Count",
            "HTTPCode_ELB_4XX_Count",
            "HTTPCode_ELB_5XX_Count",
            "TargetResponseTime",
        ]
        .iter()
        .map(|m| ((*m).to_owned(), lb_only.clone()))
        .chain(
            [
                "RequestCount",
                "HTTPCode_Target_5XX_Count",
                "TargetResponseTime",
                "HealthyHostCount",
                "UnHealthyHostCount",
            ]
            .iter()
            .map(|m| ((*m).to_owned(), lb_and_group.clone())),
        )
        .collect();
        want.sort();
        assert_eq!(of_lb, want);
        let of_group = listed(
            &http,
            ep,
            json!({"MetricName": "RequestCount", "Dimensions": [{"Name": "TargetGroup"}]}),
        )
        .await;
        assert_eq!(
            of_group,
            [("RequestCount".to_owned(), lb_and_group.clone())]
        );
    });
}
