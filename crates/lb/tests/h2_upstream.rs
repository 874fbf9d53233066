//! HTTP/2 and gRPC target groups end to end: a loopback backend that speaks only HTTP/2
//! (prior knowledge), reached through an HTTP listener by HTTP/2 and HTTP/1.1 clients;
//! trailers, one shared upstream connection, retry past a dead target, and gRPC health
//! checks.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb::{Action, HealthCheckConfig, HealthState, Lb, ProtocolVersion, TargetGroupConfig};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// A loopback backend that speaks only HTTP/2 with prior knowledge (an HTTP/1.1 request
/// fails). `/AWS.ALB/healthcheck` answers `grpc-status` [`H2Backend::set_grpc_health`]
/// (12, UNIMPLEMENTED, at first) in its trailers; `/slow` waits for
/// [`H2Backend::release`]; anything else answers `hello from <id>` with trailer
/// `grpc-status: 0`, and headers saying what it saw (`seen-version`, `seen-te`,
/// `seen-authority`, `seen-connection-headers`, and `seen-request-trailer`: the request's
/// `x-checksum` trailer).
struct H2Backend {
    addr: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// `/slow` requests being held.
    held: Arc<AtomicUsize>,
    grpc_health: Arc<AtomicU32>,
    gate: watch::Sender<bool>,
    accept_task: AbortHandle,
}

impl H2Backend {
    async fn start(id: &str) -> H2Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let grpc_health = Arc::new(AtomicU32::new(12));
        let (gate, gate_rx) = watch::channel(false);
        let id = id.to_string();
        let (acc, h, gh) = (accepted.clone(), held.clone(), grpc_health.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let (id, h, gh, gate) = (id.clone(), h.clone(), gh.clone(), gate_rx.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (id, h, gh, gate) = (id.clone(), h.clone(), gh.clone(), gate.clone());
                    async move { Ok::<_, Infallible>(answer(req, &id, &h, &gh, gate).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        H2Backend {
            addr,
            accepted,
            held,
            grpc_health,
            gate,
            accept_task: accept.abort_handle(),
        }
    }

    fn set_grpc_health(&self, code: u32) {
        self.grpc_health.store(code, Ordering::SeqCst);
    }

    fn release(&self) {
        let _ = self.gate.send(true);
    }
}

impl Drop for H2Backend {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

type TrailerBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A response with `body` and one trailer, `grpc-status: <code>`.
fn with_grpc_status(body: String, code: u32) -> Response<TrailerBody> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code));
    let body = Full::new(Bytes::from(body))
        .with_trailers(async move { Some(Ok(trailers)) })
        .boxed();
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}

async fn answer(
    req: Request<Incoming>,
    id: &str,
    held: &AtomicUsize,
    grpc_health: &AtomicU32,
    mut gate: watch::Receiver<bool>,
) -> Response<TrailerBody> {
    let seen_version = format!("{:?}", req.version());
    let seen_te = req.headers().get(http::header::TE).cloned();
    let seen_authority = req.uri().authority().map(|a| a.to_string());
    let connection_headers = ["connection", "keep-alive", "transfer-encoding", "upgrade"]
        .iter()
        .filter(|h| req.headers().contains_key(**h))
        .count();
    let path = req.uri().path().to_string();
    // Read the request body whole (a gRPC message, or nothing), and its trailers.
    let seen_trailer = req
        .into_body()
        .collect()
        .await
        .ok()
        .and_then(|b| b.trailers().and_then(|t| t.get("x-checksum").cloned()));
    let mut resp = match path.as_str() {
        "/AWS.ALB/healthcheck" => {
            with_grpc_status(String::new(), grpc_health.load(Ordering::SeqCst))
        }
        "/slow" => {
            held.fetch_add(1, Ordering::SeqCst);
            let _ = gate.wait_for(|open| *open).await;
            held.fetch_sub(1, Ordering::SeqCst);
            with_grpc_status(format!("slow {id}"), 0)
        }
        _ => with_grpc_status(format!("hello from {id}"), 0),
    };
    let h = resp.headers_mut();
    h.insert(
        "seen-version",
        HeaderValue::from_str(&seen_version).unwrap(),
    );
    if let Some(te) = seen_te {
        h.insert("seen-te", te);
    }
    if let Some(a) = seen_authority {
        h.insert("seen-authority", HeaderValue::from_str(&a).unwrap());
    }
    h.insert(
        "seen-connection-headers",
        HeaderValue::from(connection_headers),
    );
    if let Some(t) = seen_trailer {
        h.insert("seen-request-trailer", t);
    }
    resp
}

/// A group of `targets` speaking `version`, with health checks off (the targets serve
/// at once).
fn unchecked_group(targets: &[SocketAddr], version: ProtocolVersion) -> TargetGroupConfig {
    let mut g = TargetGroupConfig::new(targets.iter().copied());
    g.protocol_version = version;
    g.health_check.enabled = false;
    g
}

/// A gRPC group checked every 50 ms on ELBv2's gRPC path with `matcher` (gRPC codes).
fn grpc_group(targets: &[SocketAddr], matcher: &str) -> TargetGroupConfig {
    let mut g = TargetGroupConfig::new(targets.iter().copied());
    g.protocol_version = ProtocolVersion::Grpc;
    g.health_check = HealthCheckConfig {
        matcher: matcher.into(),
        ..HealthCheckConfig::grpc_default()
    };
    let fast = fast_health();
    g.health_check.interval_ms = fast.interval_ms;
    g.health_check.timeout_ms = fast.timeout_ms;
    g.health_check.healthy_threshold = fast.healthy_threshold;
    g.health_check.unhealthy_threshold = fast.unhealthy_threshold;
    g
}

fn start(group: TargetGroupConfig) -> Lb {
    Lb::start(config(vec![], Action::forward("web"), vec![("web", group)])).unwrap()
}

/// An HTTP/2 prior-knowledge client connection to the listener.
async fn h2_client(lb: &Lb) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(lb.local_addr(bind()).unwrap())
        .await
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// A gRPC-shaped call: `POST path`, `application/grpc`, `te: trailers`, an empty message.
fn grpc_request(lb: &Lb, path: &str) -> Request<Full<Bytes>> {
    let addr = lb.local_addr(bind()).unwrap();
    Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_gets_the_body_and_the_grpc_status_trailer() {
    let a = H2Backend::start("a").await;
    // Checked by gRPC: the backend answers UNIMPLEMENTED (12) there, ELBv2's default.
    let lb = start(grpc_group(&[a.addr], "12"));
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
    let mut send = h2_client(&lb).await;
    for _ in 0..3 {
        send.ready().await.unwrap();
        let resp = send
            .send_request(grpc_request(&lb, "/svc.Echo/Say"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["seen-version"], "HTTP/2.0");
        assert_eq!(resp.headers()["seen-te"], "trailers");
        assert_eq!(resp.headers()["seen-connection-headers"], "0");
        let lb_addr = lb.local_addr(bind()).unwrap().to_string();
        assert_eq!(resp.headers()["seen-authority"], lb_addr.as_str());
        let body = resp.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned().expect("trailers");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(&body.to_bytes()[..], b"hello from a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_reach_the_target_buffered_or_streamed() {
    let a = H2Backend::start("a").await;
    let lb = start(unchecked_group(&[a.addr], ProtocolVersion::Http2));
    let addr = lb.local_addr(bind()).unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // A PUT of known small length is buffered (to be retried); a POST streams.
    for method in [http::Method::PUT, http::Method::POST] {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("abc"));
        let body = Full::new(Bytes::from_static(b"hello"))
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed();
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}/upload"))
            .header("content-length", "5")
            .body(body)
            .unwrap();
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        let seen = resp.headers().get("seen-request-trailer");
        assert_eq!(seen.map(|v| v.as_bytes()), Some(&b"abc"[..]), "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_reaches_an_h2_target() {
    let a = H2Backend::start("a").await;
    let lb = start(unchecked_group(&[a.addr], ProtocolVersion::Http2));
    let c = client();
    for _ in 0..3 {
        let got = get(
            &c,
            &format!("{}/hello", url(&lb)),
            &[("connection", "keep-alive, x-private"), ("x-private", "1")],
        )
        .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "hello from a");
        assert_eq!(got.headers["seen-version"], "HTTP/2.0");
        assert_eq!(got.headers["seen-connection-headers"], "0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_upstream_connection() {
    const REQUESTS: usize = 20;
    let a = H2Backend::start("a").await;
    let lb = start(unchecked_group(&[a.addr], ProtocolVersion::Http2));
    let addr = lb.local_addr(bind()).unwrap();
    // Each request on a client connection of its own, all held at the backend at once.
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut send = connect_h1(addr).await;
                let resp = send
                    .send_request(
                        Request::get("/slow")
                            .header("host", "x")
                            .body(Empty::<Bytes>::new())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap().to_bytes()
            })
        })
        .collect();
    wait_until(10, "every request held at the backend", || {
        let held = a.held.load(Ordering::SeqCst);
        async move { held == REQUESTS }
    })
    .await;
    a.release();
    for t in tasks {
        assert_eq!(&t.await.unwrap()[..], b"slow a");
    }
    assert_eq!(a.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_to_a_dead_target_is_retried_on_the_other() {
    let live = H2Backend::start("live").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let lb = start(unchecked_group(&[live.addr, dead], ProtocolVersion::Grpc));
    let c = client();
    for _ in 0..10 {
        let got = get(&c, &format!("{}/hello", url(&lb)), &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "hello from live");
    }
    // Round robin sent some to the dead one first: those were retried.
    assert!(requests_to(&lb, dead) > 0);
    assert_eq!(requests_to(&lb, live.addr), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_checks_follow_the_grpc_status() {
    let a = H2Backend::start("a").await;
    a.set_grpc_health(0);
    let lb = start(grpc_group(&[a.addr], "0"));
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;

    a.set_grpc_health(12);
    wait_group_state(&lb, "web", None, HealthState::Unhealthy).await;
    let report = lb.target_health();
    assert_eq!(
        report[0].reason.as_deref(),
        Some("Target.ResponseCodeMismatch")
    );
    let mut send = h2_client(&lb).await;
    send.ready().await.unwrap();
    let resp = send
        .send_request(grpc_request(&lb, "/svc.Echo/Say"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);

    // A matcher with a range and a list takes 12 again.
    let mut group = grpc_group(&[a.addr], "0-2,12");
    group.health_check.healthy_threshold = 1;
    lb.update(config(vec![], Action::forward("web"), vec![("web", group)]))
        .unwrap();
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_group_is_checked_over_h2() {
    let a = H2Backend::start("a").await;
    let mut g = TargetGroupConfig::new([a.addr]);
    g.protocol_version = ProtocolVersion::Http2;
    g.health_check = fast_health();
    g.health_check.path = "/ping".into();
    let lb = start(g);
    // Only HTTP/2 gets an answer from this backend.
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
    let got = get(&client(), &format!("{}/x", url(&lb)), &[]).await;
    assert_eq!(got.body, "hello from a");
}
