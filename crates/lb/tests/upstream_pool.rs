//! The upstream connection pool: many client connections at once, and targets that close
//! their connections (after each response, or when idle).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lb::{Action, HealthState, Lb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_client_connections_at_once() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let lb = healthy_lb(&[&a, &b, &c]).await;
    let addr = lb.local_addr(bind()).unwrap();
    // Many client connections at once: the pool opens as many upstream ones as it needs.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let mut send = connect_h1(addr).await;
                for _ in 0..20 {
                    send.ready().await.unwrap();
                    let resp = send
                        .send_request(
                            Request::get("/")
                                .header("host", "x")
                                .header("x-forwarded-for", "10.0.0.1")
                                .body(Empty::<Bytes>::new())
                                .unwrap(),
                        )
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    assert_eq!(
                        resp.headers()["seen-x-forwarded-for"],
                        "10.0.0.1, 127.0.0.1"
                    );
                    resp.into_body().collect().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let m = lb.metrics_text();
    assert!(m.contains("lb_target_requests_total"), "{m}");
}

/// A backend answering "ok" that closes each connection `after` it was accepted, answered
/// or not (a short keep-alive timeout), or after each response if `after` is `None`.
async fn closing_backend(after: Option<Duration>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let mut b = hyper::server::conn::http1::Builder::new();
                b.keep_alive(after.is_some());
                let served = b.serve_connection(TokioIo::new(stream), svc);
                match after {
                    Some(d) => drop(tokio::time::timeout(d, served).await),
                    None => drop(served.await),
                }
            });
        }
    });
    addr
}

fn unchecked_lb(target: SocketAddr) -> Lb {
    let mut g = lb::TargetGroupConfig::new([target]);
    g.health_check.enabled = false;
    Lb::start(config(vec![], Action::forward("web"), vec![("web", g)])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_copes_with_a_target_closing_after_each_response() {
    let lb = unchecked_lb(closing_backend(None).await);
    let cl = client();
    let u = url(&lb);
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
    for i in 0..50 {
        let r = get(&cl, &u, &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_copes_with_a_target_closing_idle_connections() {
    // One target, so no retry on another one can hide a failure: a pooled connection the
    // target closed must not cost the request.
    let lb = unchecked_lb(closing_backend(Some(Duration::from_millis(50))).await);
    let cl = client();
    let u = url(&lb);
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
    for i in 0..5 {
        let r = get(&cl, &u, &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A POST (not retried on another target) on a pooled connection the target closed.
    let resp = cl
        .request(Request::post(&u).body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
