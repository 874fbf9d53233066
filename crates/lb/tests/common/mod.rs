//! Test helpers: loopback hyper backends that can be made unhealthy, killed, or held
//! mid-request, a pooled client, config builders, and polling with a deadline.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb::{
    Action, HealthCheckConfig, HealthState, Lb, LbConfig, ListenerConfig, RuleConfig,
    TargetGroupConfig,
};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// A loopback HTTP/1.1 backend. `GET /health` answers 200 or 500 (see [`Backend::set_healthy`]);
/// `GET /slow` waits until [`Backend::release`]; `GET /status/<code>` answers that status;
/// anything else answers its id, and echoes the `x-forwarded-*` headers it saw as
/// `seen-x-forwarded-*`.
pub struct Backend {
    pub addr: SocketAddr,
    pub id: String,
    healthy: Arc<AtomicBool>,
    pub in_flight: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Backend {
    pub async fn start(id: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (gate, gate_rx) = watch::channel(false);
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let id_s = id.to_string();
        let (h, f, t) = (healthy.clone(), in_flight.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (id, healthy, in_flight, gate) =
                    (id_s.clone(), h.clone(), f.clone(), gate_rx.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (id, healthy, in_flight, mut gate) =
                        (id.clone(), healthy.clone(), in_flight.clone(), gate.clone());
                    async move {
                        let resp = match req.uri().path() {
                            "/health" if healthy.load(Ordering::SeqCst) => text(200, "ok"),
                            "/health" => text(500, "sick"),
                            "/slow" => {
                                in_flight.fetch_add(1, Ordering::SeqCst);
                                let _ = gate.wait_for(|open| *open).await;
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                                text(200, &format!("slow {id}"))
                            }
                            p if p.starts_with("/status/") => {
                                text(p["/status/".len()..].parse().unwrap_or(500), &id)
                            }
                            _ => {
                                let mut r = text(200, &id);
                                for (k, v) in req.headers() {
                                    if k.as_str().starts_with("x-forwarded-") {
                                        let name = format!("seen-{}", k.as_str());
                                        r.headers_mut().insert(
                                            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                                            v.clone(),
                                        );
                                    }
                                }
                                r
                            }
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let conn = tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                t.lock().unwrap().push(conn.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Backend {
            addr,
            id: id.to_string(),
            healthy,
            in_flight,
            gate,
            tasks,
        }
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Lets every `/slow` request (current and future) finish.
    pub fn release(&self) {
        let _ = self.gate.send(true);
    }

    /// Stops listening and drops every connection, as a crashed process would.
    pub fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn text(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// A pooled keep-alive HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A response, read whole.
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

pub async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Fast health checks: every 50 ms, healthy after 1 pass, unhealthy after 2 failures.
pub fn fast_health() -> HealthCheckConfig {
    HealthCheckConfig {
        enabled: true,
        protocol: lb::HealthCheckProtocol::Http,
        path: "/health".into(),
        interval_ms: 50,
        timeout_ms: 40,
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        matcher: "200".into(),
    }
}

pub fn group(backends: &[&Backend]) -> TargetGroupConfig {
    let mut g = TargetGroupConfig::new(backends.iter().map(|b| b.addr));
    g.health_check = fast_health();
    g
}

pub fn bind() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// One listener on `127.0.0.1:0`.
pub fn config(
    rules: Vec<RuleConfig>,
    default_action: Action,
    groups: Vec<(&str, TargetGroupConfig)>,
) -> LbConfig {
    LbConfig {
        listeners: vec![ListenerConfig {
            tls: None,
            bind: bind(),
            protocol: lb::ListenerProtocol::Http,
            rules,
            default_action,
        }],
        target_groups: groups
            .into_iter()
            .map(|(n, g)| (n.to_string(), g))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The base URL of the listener bound to `127.0.0.1:0`.
pub fn url(lb: &Lb) -> String {
    format!("http://{}", lb.local_addr(bind()).unwrap())
}

/// A new HTTP/1.1 client connection to `addr` (its connection task spawned).
pub async fn connect_h1(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// What `lb_target_requests_total` says for `target` of group `web`.
pub fn requests_to(lb: &Lb, target: SocketAddr) -> u64 {
    let line = format!("lb_target_requests_total{{target_group=\"web\",target=\"{target}\"}} ");
    lb.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Polls `f` every 10 ms until it returns true; panics after `secs` seconds.
pub async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every target of `group` reports `state`.
pub async fn wait_group_state(lb: &Lb, group: &str, addr: Option<SocketAddr>, state: HealthState) {
    wait_until(10, &format!("{group} {addr:?} {state:?}"), || {
        let ok = lb
            .target_health()
            .iter()
            .filter(|t| t.group == group && addr.is_none_or(|a| a == t.target))
            .all(|t| t.state == state);
        async move { ok }
    })
    .await;
}

/// A load balancer whose one listener forwards everything to group `web` over
/// `backends`, once every backend is healthy.
pub async fn healthy_lb(backends: &[&Backend]) -> Lb {
    let lb = Lb::start(config(
        vec![],
        Action::forward("web"),
        vec![("web", group(backends))],
    ))
    .unwrap();
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
    lb
}
