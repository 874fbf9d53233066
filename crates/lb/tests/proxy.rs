//! The data plane end to end on loopback: real backends, real sockets, a real `Lb`.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb::{
    Action, Condition, HealthState, Lb, LbConfig, ListenerConfig, RuleConfig, Stickiness,
    TargetState, WeightedTargetGroup,
};

async fn count_hits(url: &str, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let c = client();
    let mut hits = HashMap::new();
    for _ in 0..n {
        let r = get(&c, url, headers).await;
        assert_eq!(r.status, 200, "{}", r.body);
        *hits.entry(r.body).or_insert(0) += 1;
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreads_over_three_backends_with_forwarded_headers_and_metrics() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let lb = healthy_lb(&[&a, &b, &c]).await;
    let hits = count_hits(&url(&lb), 300, &[]).await;
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.values().all(|&n| n == 100), "round robin: {hits:?}");

    let r = get(&client(), &url(&lb), &[("x-forwarded-for", "10.0.0.1")]).await;
    assert_eq!(r.headers["seen-x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(r.headers["seen-x-forwarded-proto"], "http");
    let port = lb.local_addr(bind()).unwrap().port().to_string();
    assert_eq!(r.headers["seen-x-forwarded-port"], port.as_str());

    let m = lb.metrics_text();
    let line = format!(
        "lb_target_requests_total{{target_group=\"web\",target=\"{}\"}} ",
        a.addr
    );
    assert!(m.contains(&line), "{m}");
    assert!(m.contains("lb_target_response_seconds_bucket"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_host_and_header_rules() {
    let (api, canary, web) = (
        Backend::start("api").await,
        Backend::start("canary").await,
        Backend::start("web").await,
    );
    let rules = vec![
        RuleConfig {
            priority: 10,
            conditions: vec![Condition::PathPattern {
                values: vec!["/api/*".into(), "/v?/*".into()],
            }],
            action: Action::forward("api"),
        },
        RuleConfig {
            priority: 20,
            conditions: vec![Condition::HostHeader {
                values: vec!["admin.*".into()],
            }],
            action: Action::fixed(200, "admin console"),
        },
        RuleConfig {
            priority: 30,
            conditions: vec![Condition::HttpHeader {
                name: "x-canary".into(),
                values: vec!["yes".into()],
            }],
            action: Action::forward("canary"),
        },
    ];
    let lb = Lb::start(config(
        rules,
        Action::forward("web"),
        vec![
            ("api", group(&[&api])),
            ("canary", group(&[&canary])),
            ("web", group(&[&web])),
        ],
    ))
    .unwrap();
    for g in ["api", "canary", "web"] {
        wait_group_state(&lb, g, None, HealthState::Healthy).await;
    }
    let c = client();
    let u = url(&lb);
    assert_eq!(get(&c, &format!("{u}/api/users"), &[]).await.body, "api");
    assert_eq!(get(&c, &format!("{u}/v2/users"), &[]).await.body, "api");
    assert_eq!(get(&c, &format!("{u}/apix"), &[]).await.body, "web");
    let admin = get(&c, &format!("{u}/"), &[("host", "ADMIN.example.com:8080")]).await;
    assert_eq!((admin.status, admin.body.as_str()), (200, "admin console"));
    assert_eq!(
        get(&c, &format!("{u}/x"), &[("x-canary", "YES")])
            .await
            .body,
        "canary"
    );
    assert_eq!(
        get(&c, &format!("{u}/x"), &[("x-canary", "no")]).await.body,
        "web"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_forward() {
    let (blue, green) = (Backend::start("blue").await, Backend::start("green").await);
    let weighted = |b: u32, g: u32| {
        config(
            vec![],
            Action::Forward {
                target_groups: vec![
                    WeightedTargetGroup {
                        name: "blue".into(),
                        weight: b,
                    },
                    WeightedTargetGroup {
                        name: "green".into(),
                        weight: g,
                    },
                ],
            },
            vec![("blue", group(&[&blue])), ("green", group(&[&green]))],
        )
    };
    let lb = Lb::start(weighted(100, 0)).unwrap();
    wait_group_state(&lb, "blue", None, HealthState::Healthy).await;
    wait_group_state(&lb, "green", None, HealthState::Healthy).await;
    let hits = count_hits(&url(&lb), 200, &[]).await;
    assert_eq!(hits.get("blue"), Some(&200), "{hits:?}");

    lb.update(weighted(50, 50)).unwrap();
    let hits = count_hits(&url(&lb), 400, &[]).await;
    let (b, g) = (hits["blue"], hits["green"]);
    assert_eq!(b + g, 400);
    assert!((120..=280).contains(&b), "50/50 gave {hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_backend_stops_getting_traffic_and_comes_back() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let lb = healthy_lb(&[&a, &b]).await;
    a.set_healthy(false);
    wait_group_state(&lb, "web", Some(a.addr), HealthState::Unhealthy).await;
    let th = lb.target_health();
    let ta = th.iter().find(|t| t.target == a.addr).unwrap();
    assert_eq!(ta.reason.as_deref(), Some("Target.ResponseCodeMismatch"));
    let hits = count_hits(&url(&lb), 50, &[]).await;
    assert_eq!(hits.get("b"), Some(&50), "{hits:?}");

    a.set_healthy(true);
    wait_group_state(&lb, "web", Some(a.addr), HealthState::Healthy).await;
    let hits = count_hits(&url(&lb), 50, &[]).await;
    assert!(hits.get("a").is_some_and(|&n| n > 0), "{hits:?}");

    // No healthy target at all: ALB's 503.
    a.set_healthy(false);
    b.set_healthy(false);
    wait_group_state(&lb, "web", None, HealthState::Unhealthy).await;
    let r = get(&client(), &url(&lb), &[]).await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("503 Service Temporarily Unavailable"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_costs_no_failed_gets() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    // Slow health checks, so that only the retry can hide the dead backend.
    let mut g = group(&[&a, &b, &c]);
    g.health_check.interval_ms = 60_000;
    g.health_check.timeout_ms = 1_000;
    let lb = Lb::start(config(vec![], Action::forward("web"), vec![("web", g)])).unwrap();
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
    let cl = client();
    let u = url(&lb);
    let mut failures = 0;
    let mut hits: HashMap<String, usize> = HashMap::new();
    for i in 0..300 {
        if i == 60 {
            b.kill();
        }
        let r = get(&cl, &u, &[]).await;
        if r.status != 200 {
            failures += 1;
        }
        if i >= 60 {
            *hits.entry(r.body).or_insert(0) += 1;
        }
    }
    assert_eq!(failures, 0);
    assert_eq!(hits.get("b"), None, "{hits:?}");
    // The passive failures marked it unhealthy.
    wait_group_state(&lb, "web", Some(b.addr), HealthState::Unhealthy).await;
    // Only an idempotent request is retried: a POST to the dead target alone gets 502.
    let only_b = config(
        vec![],
        Action::forward("web"),
        vec![("web", {
            let mut g = group(&[&b]);
            g.health_check.enabled = false;
            g
        })],
    );
    lb.update(only_b).unwrap();
    let resp = cl
        .request(Request::post(&u).body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_target_gets_no_new_requests_but_finishes_in_flight_ones() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let make = |draining: bool| {
        let mut main = group(&[&a, &b]);
        let mut slow = group(&[&a]);
        if draining {
            let until = TargetState::Draining {
                until_unix_ms: unix_ms() + 60_000,
            };
            main.targets[0].state = until;
            slow.targets[0].state = until;
        }
        config(
            vec![RuleConfig {
                priority: 1,
                conditions: vec![Condition::PathPattern {
                    values: vec!["/slow".into()],
                }],
                action: Action::forward("slow"),
            }],
            Action::forward("main"),
            vec![("main", main), ("slow", slow)],
        )
    };
    let lb = Arc::new(Lb::start(make(false)).unwrap());
    wait_group_state(&lb, "main", None, HealthState::Healthy).await;
    wait_group_state(&lb, "slow", None, HealthState::Healthy).await;
    let u = url(&lb);
    let slow = tokio::spawn({
        let u = u.clone();
        async move { get(&client(), &format!("{u}/slow"), &[]).await }
    });
    wait_until(10, "the slow request to reach a", || {
        let n = a.in_flight.load(std::sync::atomic::Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;

    lb.update(make(true)).unwrap();
    wait_group_state(&lb, "main", Some(a.addr), HealthState::Draining).await;
    let hits = count_hits(&u, 40, &[]).await;
    assert_eq!(hits.get("b"), Some(&40), "{hits:?}");
    assert_eq!(get(&client(), &format!("{u}/slow"), &[]).await.status, 503);

    a.release();
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "slow a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_keeps_an_open_keep_alive_connection() {
    let lb = Lb::start(config(vec![], Action::fixed(200, "v1"), vec![])).unwrap();
    let mut send = connect_h1(lb.local_addr(bind()).unwrap()).await;
    let mut ask = async || {
        send.ready().await.unwrap();
        let resp = send
            .send_request(
                Request::get("/")
                    .header("host", "x")
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    };
    assert_eq!(ask().await, "v1");

    // Same listener, new default action, plus a second listener.
    let second: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut two = config(vec![], Action::fixed(200, "v2"), vec![]);
    two.listeners.push(ListenerConfig {
        tls: None,
        bind: second,
        protocol: lb::ListenerProtocol::Http,
        rules: vec![],
        default_action: Action::fixed(200, "second"),
    });
    lb.update(two.clone()).unwrap();
    assert_eq!(ask().await, "v2", "same connection, new config");
    let second_url = format!("http://{}", lb.local_addr(second).unwrap());
    assert_eq!(get(&client(), &second_url, &[]).await.body, "second");

    // An invalid update changes nothing.
    let mut bad = two.clone();
    bad.listeners[0].default_action = Action::forward("nope");
    assert!(lb.update(bad).is_err());
    assert_eq!(ask().await, "v2");

    // Removing the second listener closes its port.
    let second_addr = lb.local_addr(second).unwrap();
    lb.update(config(vec![], Action::fixed(200, "v3"), vec![]))
        .unwrap();
    assert_eq!(lb.local_addr(second), None);
    assert_eq!(ask().await, "v3");
    wait_until(10, "the removed listener to close", || async move {
        tokio::net::TcpStream::connect(second_addr).await.is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_client() {
    let a = Backend::start("a").await;
    let lb = healthy_lb(&[&a]).await;
    let addr = lb.local_addr(bind()).unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        send.ready().await.unwrap();
        let resp = send
            .send_request(
                Request::get(format!("http://{addr}/hello"))
                    .body(Empty::<Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_pins_a_client() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let mut g = group(&[&a, &b, &c]);
    g.stickiness = Some(Stickiness::LbCookie { duration_secs: 60 });
    let lb = Lb::start(config(vec![], Action::forward("web"), vec![("web", g)])).unwrap();
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
    let cl = client();
    let u = url(&lb);
    let first = get(&cl, &u, &[]).await;
    let set_cookie = first.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("Max-Age=60"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let hits = count_hits(&u, 30, &[("cookie", &cookie)]).await;
    assert_eq!(hits.get(&first.body), Some(&30), "{hits:?}");
    // Without the cookie, requests spread.
    assert_eq!(count_hits(&u, 30, &[]).await.len(), 3);
}

#[test]
fn config_from_json() {
    let json = r#"{
        "listeners": [{"bind": "127.0.0.1:0", "default_action": {"type": "fixed-response", "status": 404}}],
        "target_groups": {}
    }"#;
    let c: LbConfig = serde_json::from_str(json).unwrap();
    c.validate().unwrap();
}
