//! Hardening of what a request may do (issue 10), through the router as a client sees
//! it: `POST /admin/reset` needs a signature when credentials are configured; a
//! signature must cover `host`, the timestamp and `x-amz-target`, so one made for
//! `DescribeClusters` cannot be replayed as `DeleteCluster`; no error message echoes a
//! megabyte of input.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use ecs_api::auth::{Credentials, KeyEntry, SigV4Header, compute_signature};
use ecs_api::{ApiConfig, router};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use serde_json::{Value, json};
use testkit::ecs;
use testkit::http::ECS_TARGET_PREFIX as ECS;
use time::OffsetDateTime;
use time::macros::format_description;
use tower::ServiceExt;

const KEY: (&str, &str) = ("AKIDHARDENING", "hardening-secret");

fn app(credentials: bool) -> Router {
    let cp = ecs::control_plane();
    let credentials = credentials.then(|| Credentials {
        keys: BTreeMap::from([(
            KEY.0.to_owned(),
            KeyEntry {
                secret: KEY.1.to_owned(),
                account: None,
            },
        )]),
    });
    router(
        cp,
        ApiConfig {
            account_id: "000000000000".into(),
            allow_reset: true,
            credentials,
        },
    )
}

/// How a test request is signed.
struct Signing<'a> {
    key: (&'a str, &'a str),
    service: &'a str,
    /// The headers the signature covers, in order.
    covers: &'a [&'a str],
}

const FULL: Signing<'static> = Signing {
    key: KEY,
    service: "ecs",
    covers: &["content-type", "host", "x-amz-date", "x-amz-target"],
};

/// A `POST path` with `target` (if any) and `body`, signed as `signing` says (or not).
fn request(
    path: &str,
    target: Option<&str>,
    body: &[u8],
    signing: Option<&Signing>,
) -> Request<Body> {
    let mut headers = HeaderMap::new();
    headers.insert("host", "127.0.0.1:8080".parse().unwrap());
    headers.insert(
        "content-type",
        "application/x-amz-json-1.1".parse().unwrap(),
    );
    if let Some(t) = target {
        headers.insert("x-amz-target", t.parse().unwrap());
    }
    let uri: Uri = path.parse().unwrap();
    if let Some(s) = signing {
        let amz_date = OffsetDateTime::now_utc()
            .format(format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap();
        headers.insert("x-amz-date", amz_date.parse().unwrap());
        let covers: Vec<String> = s
            .covers
            .iter()
            .filter(|h| headers.contains_key(**h))
            .map(|h| (*h).to_owned())
            .collect();
        let mut auth = SigV4Header {
            access_key: s.key.0.to_owned(),
            date: amz_date[..8].to_owned(),
            region: "us-east-1".into(),
            service: s.service.to_owned(),
            signed_headers: covers,
            signature: String::new(),
        };
        auth.signature = compute_signature(
            s.key.1,
            &auth,
            &amz_date,
            &Method::POST,
            &uri,
            &headers,
            body,
        )
        .unwrap();
        headers.insert("authorization", auth.to_string().parse().unwrap());
    }
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .body(Body::from(body.to_vec()))
        .unwrap();
    *req.headers_mut() = headers;
    req
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value, usize) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let len = bytes.len();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        len,
    )
}

async fn call(
    app: &Router,
    op: &str,
    body: Value,
    signing: Option<&Signing<'_>>,
) -> (StatusCode, Value) {
    let target = testkit::http::target(op);
    let (status, v, _) = send(
        app,
        request("/", Some(&target), body.to_string().as_bytes(), signing),
    )
    .await;
    (status, v)
}

async fn cluster_names(app: &Router, signing: Option<&Signing<'_>>) -> Vec<String> {
    let (status, v) = call(app, "ListClusters", json!({}), signing).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["clusterArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn reset_needs_a_valid_signature_when_credentials_are_configured() {
    let app = app(true);
    let (status, v) = call(
        &app,
        "CreateCluster",
        json!({"clusterName": "keep"}),
        Some(&FULL),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    let wrong_secret = Signing {
        key: (KEY.0, "not-the-secret"),
        ..FULL
    };
    let unknown_key = Signing {
        key: ("AKIDNOBODY", KEY.1),
        ..FULL
    };
    let refusals = [
        (None, "MissingAuthenticationTokenException"),
        (Some(&wrong_secret), "InvalidSignatureException"),
        (Some(&unknown_key), "UnrecognizedClientException"),
    ];
    for (signing, code) in refusals {
        let (status, v, _) = send(&app, request("/admin/reset", None, b"", signing)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{code}: {v}");
        assert_eq!(v["__type"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // A signature made for another path does not do either.
    let mut moved = request("/", None, b"", Some(&FULL));
    *moved.uri_mut() = "/admin/reset".parse().unwrap();
    let (status, v, _) = send(&app, moved).await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (StatusCode::FORBIDDEN, Some("InvalidSignatureException"))
    );
    assert_eq!(cluster_names(&app, Some(&FULL)).await, ["keep"]);

    // Signed by a listed key (any service name in the scope), it wipes everything.
    for service in ["ecs", "flotilla"] {
        let signing = Signing { service, ..FULL };
        let (status, v, _) = send(&app, request("/admin/reset", None, b"", Some(&signing))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v, json!({"status": "ok"}));
    }
    assert!(cluster_names(&app, Some(&FULL)).await.is_empty());
}

#[tokio::test]
async fn without_credentials_reset_needs_no_signature() {
    let app = app(false);
    call(&app, "CreateCluster", json!({"clusterName": "gone"}), None).await;
    let (status, v, _) = send(&app, request("/admin/reset", None, b"", None)).await;
    assert_eq!((status, v), (StatusCode::OK, json!({"status": "ok"})));
    assert!(cluster_names(&app, None).await.is_empty());
}

#[tokio::test]
async fn a_signature_for_describe_clusters_cannot_delete_the_cluster() {
    let app = app(true);
    call(
        &app,
        "CreateCluster",
        json!({"clusterName": "prod"}),
        Some(&FULL),
    )
    .await;
    let body = json!({"cluster": "prod"}).to_string();
    // The attacker saw a DescribeClusters request whose signature leaves out the target…
    let without_target = Signing {
        covers: &["content-type", "host", "x-amz-date"],
        ..FULL
    };
    let seen = request(
        "/",
        Some(&format!("{ECS}.DescribeClusters")),
        body.as_bytes(),
        Some(&without_target),
    );
    // …and sends it again as DeleteCluster.
    let mut replay = seen;
    replay.headers_mut().insert(
        "x-amz-target",
        format!("{ECS}.DeleteCluster").parse().unwrap(),
    );
    let (status, v, _) = send(&app, replay).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["__type"], "InvalidSignatureException", "{v}");
    assert_eq!(
        v["message"],
        "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization."
    );
    assert_eq!(cluster_names(&app, Some(&FULL)).await, ["prod"]);

    // Leaving out host or the timestamp is refused the same way.
    for (covers, missing) in [
        (
            &["content-type", "x-amz-date", "x-amz-target"][..],
            "'Host'",
        ),
        (
            &["content-type", "host", "x-amz-target"][..],
            "'X-Amz-Date'",
        ),
    ] {
        let signing = Signing { covers, ..FULL };
        let (status, v) = call(&app, "ListClusters", json!({}), Some(&signing)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["__type"], "InvalidSignatureException", "{v}");
        assert!(v["message"].as_str().unwrap().starts_with(missing), "{v}");
    }
}

#[tokio::test]
async fn a_megabyte_of_input_is_not_echoed_in_errors() {
    let app = app(false);
    let huge = "Z".repeat(1 << 20);
    let bodies = [
        ("RunTask", json!({"taskDefinition": "web", "count": huge})),
        (
            "RunTask",
            json!({"taskDefinition": "web", "launchType": huge}),
        ),
        ("CreateCluster", json!({"clusterName": huge})),
        ("DescribeClusters", json!({"clusters": huge})),
        (
            "RegisterTaskDefinition",
            json!({"family": huge, "containerDefinitions": [{"name": "a", "image": "i", "memory": 32}]}),
        ),
        (
            "TagResource",
            json!({"resourceArn": huge, "tags": [{"key": "k", "value": "v"}]}),
        ),
    ];
    for (op, body) in bodies {
        let enum_value = body.get("launchType").is_some();
        let (status, v) = call(&app, op, body, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{op}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.len() <= 1024,
            "{op}: a {} byte message",
            message.len()
        );
        if enum_value {
            // A value outside an enum is answered as ECS does: the valid values, not
            // the value sent.
            assert_eq!(
                message,
                "launch type should be one of [EC2,FARGATE,EXTERNAL,MANAGED_INSTANCES]"
            );
        } else {
            assert!(
                message.contains("ZZZZ"),
                "{op}: the message quotes a prefix: {message}"
            );
        }
    }
    // An unknown operation of 60 KB is named by a prefix only.
    let target = format!("{ECS}.{}", "Y".repeat(60_000));
    let (status, v, len) = send(&app, request("/", Some(&target), b"{}", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["__type"], "UnknownOperationException");
    assert!(len < 400, "a {len} byte answer: {v}");
}
