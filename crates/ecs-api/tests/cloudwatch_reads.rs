//! CloudWatch's reads through the real HTTP server (loopback socket, unsigned), in both
//! protocols it speaks: datapoints published with PutMetricData at known minutes come
//! back from GetMetricStatistics (60 s and 300 s periods, exact statistics, the unit)
//! and GetMetricData (a metric, metric math, `ScanBy`, paging) in AWS JSON 1.0 on
//! `POST /` and in Smithy RPC v2 CBOR on `POST /service/…/operation/…` (timestamps
//! tagged), and refusals carry CloudWatch's `__type` and `x-amzn-query-error`.

use std::time::{SystemTime, UNIX_EPOCH};

use ciborium::Value as Cbor;
use ecs_api::{ApiConfig, router, serve};
use serde_json::{Value, json};
use testkit::ecs;

const PREFIX: &str = "GraniteServiceVersion20100801";

/// A server on a loopback port; its endpoint. It runs until the test's runtime ends.
async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(
        ecs::control_plane(),
        ApiConfig {
            account_id: "000000000000".into(),
            ..Default::default()
        },
    );
    tokio::spawn(serve(listener, app, std::future::pending()));
    format!("http://{addr}")
}

/// The start of a five-minute period ten to fifteen minutes ago: every datapoint of the
/// tests is in the past, and within what the server keeps.
fn base() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(now).unwrap() / 300 * 300 - 600
}

/// A JSON 1.0 call: status, `x-amzn-query-error` and the JSON answer.
async fn json_call(endpoint: &str, op: &str, body: Value) -> (u16, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .post(endpoint)
        .header("x-amz-target", format!("{PREFIX}.{op}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let query = resp
        .headers()
        .get("x-amzn-query-error")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, query, resp.json().await.unwrap())
}

/// A JSON 1.0 call that must succeed.
async fn json_ok(endpoint: &str, op: &str, body: Value) -> Value {
    let (status, _, v) = json_call(endpoint, op, body).await;
    assert_eq!(status, 200, "{op}: {v}");
    v
}

/// A Smithy RPC v2 CBOR call: status and the CBOR answer.
async fn cbor_call(endpoint: &str, op: &str, body: &Cbor) -> (u16, Cbor) {
    let mut bytes = Vec::new();
    ciborium::into_writer(body, &mut bytes).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/service/{PREFIX}/operation/{op}"))
        .header("content-type", "application/cbor")
        .header("accept", "application/cbor")
        .header("smithy-protocol", "rpc-v2-cbor")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    (status, ciborium::from_reader(&body[..]).unwrap())
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.into())
}

fn map(entries: Vec<(&str, Cbor)>) -> Cbor {
    Cbor::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

/// Epoch seconds as botocore's CBOR serializer writes a timestamp: tag 1.
fn timestamp(secs: i64) -> Cbor {
    Cbor::Tag(1, Box::new(Cbor::Integer(secs.into())))
}

/// The member `key` of a CBOR map.
fn get<'a>(v: &'a Cbor, key: &str) -> &'a Cbor {
    v.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {v:?}"))
}

fn float(v: &Cbor) -> f64 {
    match v {
        Cbor::Float(f) => *f,
        Cbor::Integer(i) => i128::from(*i) as f64,
        other => panic!("not a number: {other:?}"),
    }
}

/// `Latency` of `Service=web`, in milliseconds: 1 and 3 in minute 0 after `base`, 10 in
/// minute 1, -2 in minute 4, 7 in minute 5.
async fn publish(endpoint: &str, base: i64) {
    let data: Vec<Value> = [(5, 1.0), (50, 3.0), (65, 10.0), (245, -2.0), (305, 7.0)]
        .iter()
        .map(|(at, v)| {
            json!({
                "MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "web"}],
                "Timestamp": base + at, "Value": v, "Unit": "Milliseconds",
            })
        })
        .collect();
    json_ok(
        endpoint,
        "PutMetricData",
        json!({"Namespace": "App", "MetricData": data}),
    )
    .await;
}

#[tokio::test]
async fn json_1_0_get_metric_statistics_and_get_metric_data() {
    let endpoint = start().await;
    let base = base();
    publish(&endpoint, base).await;
    let stats = |period: i64| {
        json!({
            "Namespace": "App", "MetricName": "Latency",
            "Dimensions": [{"Name": "Service", "Value": "web"}],
            "StartTime": base, "EndTime": base + 600, "Period": period,
            "Statistics": ["SampleCount", "Average", "Sum", "Minimum", "Maximum"],
        })
    };
    let v = json_ok(&endpoint, "GetMetricStatistics", stats(300)).await;
    assert_eq!(v["Label"], "Latency");
    let b = base as f64;
    assert_eq!(
        v["Datapoints"],
        json!([
            {"Timestamp": b, "SampleCount": 4.0, "Average": 3.0, "Sum": 12.0,
             "Minimum": -2.0, "Maximum": 10.0, "Unit": "Milliseconds"},
            {"Timestamp": b + 300.0, "SampleCount": 1.0, "Average": 7.0, "Sum": 7.0,
             "Minimum": 7.0, "Maximum": 7.0, "Unit": "Milliseconds"},
        ])
    );
    let v = json_ok(&endpoint, "GetMetricStatistics", stats(60)).await;
    let sums: Vec<(f64, f64)> = v["Datapoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["Timestamp"].as_f64().unwrap() - b,
                d["Sum"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sums,
        [(0.0, 4.0), (60.0, 10.0), (240.0, -2.0), (300.0, 7.0)]
    );
    // One dimension less is another metric: no datapoints.
    let mut fewer = stats(60);
    fewer["Dimensions"] = json!([]);
    let v = json_ok(&endpoint, "GetMetricStatistics", fewer).await;
    assert_eq!(v["Datapoints"], json!([]));

    let metric = json!({"Namespace": "App", "MetricName": "Latency",
                        "Dimensions": [{"Name": "Service", "Value": "web"}]});
    let request = json!({
        "MetricDataQueries": [
            {"Id": "m1", "MetricStat": {"Metric": metric, "Period": 300, "Stat": "Sum"}},
            {"Id": "e1", "Expression": "m1 / 60", "Label": "per second"},
        ],
        "StartTime": base, "EndTime": base + 600, "MaxDatapoints": 3,
    });
    let v = json_ok(&endpoint, "GetMetricData", request.clone()).await;
    assert_eq!(v["Messages"], json!([]));
    assert_eq!(
        v["MetricDataResults"],
        json!([
            {"Id": "m1", "Label": "Latency", "Timestamps": [b + 300.0, b],
             "Values": [7.0, 12.0], "StatusCode": "Complete"},
            {"Id": "e1", "Label": "per second", "Timestamps": [b + 300.0],
             "Values": [7.0 / 60.0], "StatusCode": "PartialData"},
        ])
    );
    let mut next = request;
    next["NextToken"] = v["NextToken"].clone();
    let v = json_ok(&endpoint, "GetMetricData", next).await;
    assert!(v.get("NextToken").is_none(), "{v}");
    assert_eq!(v["MetricDataResults"][1]["Values"], json!([0.2]));
    assert_eq!(v["MetricDataResults"][1]["StatusCode"], "Complete");

    // Refusals: CloudWatch's __type and query code.
    let mut bad = stats(30);
    bad["Period"] = json!(30);
    let (status, query, v) = json_call(&endpoint, "GetMetricStatistics", bad).await;
    assert_eq!(status, 400);
    assert_eq!(v["__type"], "InvalidParameterValueException");
    assert_eq!(query.as_deref(), Some("InvalidParameterValue;Sender"));
    let mut long = stats(60);
    long["EndTime"] = json!(base + 86_401);
    let (status, query, v) = json_call(&endpoint, "GetMetricStatistics", long).await;
    assert_eq!(status, 400);
    assert_eq!(query.as_deref(), Some("InvalidParameterCombination;Sender"));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("You have requested up to 1,441 datapoints"),
        "{v}"
    );
    let (status, query, _) = json_call(
        &endpoint,
        "GetMetricData",
        json!({"StartTime": base, "EndTime": base + 600}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(query.as_deref(), Some("MissingParameter;Sender"));
}

#[tokio::test]
async fn rpc_v2_cbor_get_metric_statistics_and_get_metric_data() {
    let endpoint = start().await;
    let base = base();
    publish(&endpoint, base).await;
    let dims = || {
        Cbor::Array(vec![map(vec![
            ("Name", text("Service")),
            ("Value", text("web")),
        ])])
    };
    let (status, v) = cbor_call(
        &endpoint,
        "GetMetricStatistics",
        &map(vec![
            ("Namespace", text("App")),
            ("MetricName", text("Latency")),
            ("Dimensions", dims()),
            ("StartTime", timestamp(base)),
            ("EndTime", timestamp(base + 600)),
            ("Period", Cbor::Integer(300.into())),
            (
                "Statistics",
                Cbor::Array(vec![text("Sum"), text("Maximum")]),
            ),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{v:?}");
    assert_eq!(get(&v, "Label"), &text("Latency"));
    let points = get(&v, "Datapoints").as_array().unwrap();
    assert_eq!(points.len(), 2);
    let first = &points[0];
    assert_eq!(
        get(first, "Timestamp"),
        &Cbor::Tag(1, Box::new(Cbor::Float(base as f64)))
    );
    assert_eq!(float(get(first, "Sum")), 12.0);
    assert_eq!(float(get(first, "Maximum")), 10.0);
    assert_eq!(get(first, "Unit"), &text("Milliseconds"));
    assert!(
        first
            .as_map()
            .unwrap()
            .iter()
            .all(|(k, _)| k.as_text() != Some("Average")),
        "only the statistics asked for: {first:?}"
    );

    let metric = map(vec![
        ("Namespace", text("App")),
        ("MetricName", text("Latency")),
        ("Dimensions", dims()),
    ]);
    let (status, v) = cbor_call(
        &endpoint,
        "GetMetricData",
        &map(vec![
            (
                "MetricDataQueries",
                Cbor::Array(vec![
                    map(vec![
                        ("Id", text("m1")),
                        (
                            "MetricStat",
                            map(vec![
                                ("Metric", metric),
                                ("Period", Cbor::Integer(60.into())),
                                ("Stat", text("Average")),
                            ]),
                        ),
                        ("ReturnData", Cbor::Bool(false)),
                    ]),
                    map(vec![("Id", text("e1")), ("Expression", text("m1 * 2"))]),
                ]),
            ),
            ("StartTime", timestamp(base)),
            ("EndTime", timestamp(base + 600)),
            ("ScanBy", text("TimestampAscending")),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{v:?}");
    let results = get(&v, "MetricDataResults").as_array().unwrap();
    assert_eq!(results.len(), 1, "m1 is not returned");
    let e1 = &results[0];
    assert_eq!(get(e1, "Id"), &text("e1"));
    assert_eq!(get(e1, "StatusCode"), &text("Complete"));
    let stamps: Vec<Cbor> = [0, 60, 240, 300]
        .iter()
        .map(|at| Cbor::Tag(1, Box::new(Cbor::Float((base + at) as f64))))
        .collect();
    assert_eq!(get(e1, "Timestamps"), &Cbor::Array(stamps));
    let values: Vec<f64> = get(e1, "Values")
        .as_array()
        .unwrap()
        .iter()
        .map(float)
        .collect();
    assert_eq!(values, [4.0, 20.0, -4.0, 14.0]);

    // A refusal in CBOR: `__type` in the body.
    let (status, v) = cbor_call(
        &endpoint,
        "GetMetricStatistics",
        &map(vec![
            ("Namespace", text("App")),
            ("MetricName", text("Latency")),
            ("StartTime", timestamp(base)),
            ("EndTime", timestamp(base + 600)),
            ("Period", Cbor::Integer(60.into())),
            ("ExtendedStatistics", Cbor::Array(vec![text("p99")])),
        ]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(get(&v, "__type"), &text("InvalidParameterValueException"));
}
