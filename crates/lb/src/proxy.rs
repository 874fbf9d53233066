//! The server: [`Lb`] owns the listeners, the per-target state that outlives config updates
//! (health, requests in flight, metric handles), the upstream connection pool, and the request
//! path (route, pick a target, forward, retry once, log, count).
//!
//! The routing state is an immutable [`Snapshot`] behind an `ArcSwap`: each request loads the
//! current one, so [`Lb::update`] swaps rules, groups and targets without touching
//! established client connections. Listeners are keyed by their configured `bind`; an update
//! binds the new ones first (so a bind error changes nothing), then removes the old ones, whose
//! connections finish their requests in flight and close (graceful shutdown).

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::balance::{self, Candidate, STICKY_COOKIE};
use crate::config::{
    Action, ConfigError, HealthCheckConfig, LbConfig, Stickiness, TargetGroupConfig, TargetState,
};
use crate::health::{self, CheckClient, HealthCell, HealthState, TargetHealth};
use crate::rules::{self, RequestInfo, Router};

/// Largest request body buffered so that an idempotent request can be retried; bigger (or
/// unknown-length) bodies are streamed and not retried.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;

/// The body type of every response the proxy sends (and of upstream requests).
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Why [`Lb::start`] or [`Lb::update`] failed; on error nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A running load balancer. Dropping it stops its listeners (connections finish the requests
/// in flight) and its health checks.
pub struct Lb {
    shared: Arc<Shared>,
    control: Mutex<Control>,
}

/// What request handling needs; shared with the listener and connection tasks.
struct Shared {
    state: ArcSwap<Snapshot>,
    client: Client<HttpConnector, Body>,
    metrics: Metrics,
}

/// What only updates touch.
#[derive(Default)]
struct Control {
    listeners: HashMap<SocketAddr, ListenerHandle>,
    targets: HashMap<(String, SocketAddr), TargetSlot>,
}

struct ListenerHandle {
    local: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct TargetSlot {
    shared: Arc<TargetShared>,
    health_config: watch::Sender<HealthCheckConfig>,
    checker: JoinHandle<()>,
}

/// Per-target state that survives config updates.
struct TargetShared {
    health: Arc<HealthCell>,
    outstanding: AtomicU64,
    requests: Counter,
    errors: Counter,
    latency: Histogram,
}

/// The routing state one request sees.
#[derive(Default)]
struct Snapshot {
    routers: HashMap<SocketAddr, Router>,
    groups: HashMap<String, GroupRt>,
}

struct GroupRt {
    name: String,
    config: TargetGroupConfig,
    referenced: bool,
    targets: Vec<TargetRt>,
    counter: AtomicU64,
}

struct TargetRt {
    addr: SocketAddr,
    state: TargetState,
    shared: Arc<TargetShared>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target_group: String,
    target: String,
}

type HistogramFamily = Family<TargetLabels, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    requests: Family<TargetLabels, Counter>,
    errors: Family<TargetLabels, Counter>,
    latency: HistogramFamily,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("lb");
        let requests = Family::<TargetLabels, Counter>::default();
        let errors = Family::<TargetLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "target_requests",
            "Requests forwarded to a target (retries included)",
            requests.clone(),
        );
        registry.register(
            "target_errors",
            "Connection errors and 5xx responses from a target",
            errors.clone(),
        );
        registry.register(
            "target_response_seconds",
            "Time from forwarding a request to the target's response head",
            latency.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            latency,
        }
    }
}

impl Lb {
    /// Validates `config`, binds its listeners and starts health checks. Must be called
    /// within a Tokio runtime (the tasks are spawned on it).
    pub fn start(config: LbConfig) -> Result<Lb, LbError> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let lb = Lb {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(Snapshot::default()),
                client,
                metrics: Metrics::new(),
            }),
            control: Mutex::new(Control::default()),
        };
        lb.update(config)?;
        Ok(lb)
    }

    /// Replaces the config. Established client connections stay open and see the new rules
    /// from their next request; listeners are added and removed; targets keep their health
    /// and in-flight counts across updates. On error nothing changed.
    pub fn update(&self, config: LbConfig) -> Result<(), LbError> {
        config.validate()?;
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());

        // Bind first: a bind error leaves everything as it was.
        let mut bound = Vec::new();
        for l in &config.listeners {
            if control.listeners.contains_key(&l.bind) {
                continue;
            }
            let listener = std::net::TcpListener::bind(l.bind)
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|source| LbError::Bind {
                    addr: l.bind,
                    source,
                })?;
            bound.push((l.bind, listener));
        }

        // Targets: keep the state of those that stay, start checks for the new ones.
        let referenced: BTreeSet<&str> = config
            .listeners
            .iter()
            .flat_map(|l| l.rules.iter().map(|r| &r.action).chain([&l.default_action]))
            .flat_map(|a| match a {
                Action::Forward { target_groups } => {
                    target_groups.iter().map(|g| g.name.as_str()).collect()
                }
                Action::FixedResponse { .. } => Vec::new(),
            })
            .collect();
        let check_client: CheckClient =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let mut wanted = HashMap::new();
        let mut groups = HashMap::new();
        for (name, g) in &config.target_groups {
            let mut targets = Vec::new();
            for t in &g.targets {
                let key = (name.clone(), t.addr);
                let slot = match control.targets.remove(&key) {
                    Some(slot) => {
                        slot.health_config.send_if_modified(|c| {
                            let changed = *c != g.health_check;
                            *c = g.health_check.clone();
                            changed
                        });
                        slot
                    }
                    None => self.new_target(name, t.addr, &g.health_check, &check_client),
                };
                targets.push(TargetRt {
                    addr: t.addr,
                    state: t.state,
                    shared: slot.shared.clone(),
                });
                wanted.insert(key, slot);
            }
            groups.insert(
                name.clone(),
                GroupRt {
                    name: name.clone(),
                    config: g.clone(),
                    referenced: referenced.contains(name.as_str()),
                    targets,
                    counter: AtomicU64::new(0),
                },
            );
        }
        for (_, gone) in std::mem::replace(&mut control.targets, wanted) {
            gone.checker.abort();
        }

        let routers = config
            .listeners
            .iter()
            .map(|l| (l.bind, Router::new(l)))
            .collect();
        self.shared
            .state
            .store(Arc::new(Snapshot { routers, groups }));

        // Listeners: stop the removed ones, start the new ones.
        let keep: BTreeSet<SocketAddr> = config.listeners.iter().map(|l| l.bind).collect();
        control.listeners.retain(|bind, h| {
            let stay = keep.contains(bind);
            if !stay {
                h.stop();
            }
            stay
        });
        for (bind, listener) in bound {
            let local = listener.local_addr().unwrap_or(bind);
            let (shutdown, rx) = watch::channel(false);
            let task = tokio::spawn(accept_loop(
                self.shared.clone(),
                listener,
                bind,
                local.port(),
                rx,
            ));
            control.listeners.insert(
                bind,
                ListenerHandle {
                    local,
                    shutdown,
                    task,
                },
            );
        }
        Ok(())
    }

    fn new_target(
        &self,
        group: &str,
        addr: SocketAddr,
        check: &HealthCheckConfig,
        client: &CheckClient,
    ) -> TargetSlot {
        let labels = TargetLabels {
            target_group: group.to_string(),
            target: addr.to_string(),
        };
        let m = &self.shared.metrics;
        let health = Arc::new(HealthCell::new());
        let (health_config, rx) = watch::channel(check.clone());
        let checker = health::spawn_checker(addr, health.clone(), rx, client.clone());
        TargetSlot {
            shared: Arc::new(TargetShared {
                health,
                outstanding: AtomicU64::new(0),
                requests: m.requests.get_or_create(&labels).clone(),
                errors: m.errors.get_or_create(&labels).clone(),
                latency: m.latency.get_or_create(&labels).clone(),
            }),
            health_config,
            checker,
        }
    }

    /// The address a listener configured with `bind` actually listens on (differs when
    /// `bind` has port 0).
    pub fn local_addr(&self, bind: SocketAddr) -> Option<SocketAddr> {
        let control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        control.listeners.get(&bind).map(|h| h.local)
    }

    /// Every target's state, by group then config order (what `DescribeTargetHealth` needs).
    pub fn target_health(&self) -> Vec<TargetHealth> {
        let snap = self.shared.state.load();
        let now_ms = unix_ms();
        let mut groups: Vec<&GroupRt> = snap.groups.values().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::new();
        for g in groups {
            for t in &g.targets {
                let (state, reason) = match t.state {
                    TargetState::Draining { until_unix_ms } if now_ms < until_unix_ms => (
                        HealthState::Draining,
                        Some("Target.DeregistrationInProgress".to_string()),
                    ),
                    TargetState::Draining { .. } => (
                        HealthState::Unused,
                        Some("Target.NotRegistered".to_string()),
                    ),
                    TargetState::Active if !g.referenced => {
                        (HealthState::Unused, Some("Target.NotInUse".to_string()))
                    }
                    TargetState::Active => t.shared.health.report(),
                };
                out.push(TargetHealth {
                    target: t.addr,
                    group: g.name.clone(),
                    state,
                    reason,
                });
            }
        }
        out
    }

    /// The per-target metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.shared.metrics.registry);
        s
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let control = self.control.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, h) in control.listeners.drain() {
            h.stop();
        }
        for (_, t) in control.targets.drain() {
            t.checker.abort();
        }
    }
}

impl ListenerHandle {
    fn stop(&self) {
        self.task.abort();
        let _ = self.shutdown.send(true);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    bind: SocketAddr,
    port: u16,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%bind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(shared.handle(req, client, bind, port).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Decrements a target's in-flight count when the response body is done (or dropped).
struct InFlight(Arc<TargetShared>);

impl InFlight {
    fn new(t: &Arc<TargetShared>) -> InFlight {
        t.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(t.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An ALB-style error page.
fn error_response(status: StatusCode) -> Response<Body> {
    let text = match status.as_u16() {
        502 => "502 Bad Gateway",
        503 => "503 Service Temporarily Unavailable",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    let body = format!(
        "<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n<center><h1>{text}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
    headers.remove(header::UPGRADE);
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// What the access log says about one request.
struct Outcome {
    resp: Response<Body>,
    target: Option<SocketAddr>,
}

impl Shared {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: SocketAddr,
        bind: SocketAddr,
        port: u16,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let out = self.route(req, client, bind, port).await;
        tracing::info!(
            target: "lb::access",
            client = %client,
            method = %method,
            path = %path,
            status = out.resp.status().as_u16(),
            target = %out.target.map_or_else(|| "-".to_string(), |t| t.to_string()),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        out.resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        client: SocketAddr,
        bind: SocketAddr,
        port: u16,
    ) -> Outcome {
        let snap = self.state.load_full();
        let no_target = |resp| Outcome { resp, target: None };
        let Some(router) = snap.routers.get(&bind) else {
            return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE));
        };
        let host = request_host(&req);
        let info = RequestInfo {
            method: req.method().as_str(),
            host: host.as_deref(),
            path: req.uri().path(),
            headers: req.headers(),
        };
        match router.route(&info) {
            Action::FixedResponse {
                status,
                content_type,
                body,
            } => {
                let mut resp = Response::new(full(body.clone()));
                *resp.status_mut() =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let ct = content_type
                    .as_deref()
                    .unwrap_or("text/plain; charset=utf-8");
                if let Ok(v) = HeaderValue::from_str(ct) {
                    resp.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                no_target(resp)
            }
            Action::Forward { target_groups } => {
                let sticky = balance::find_sticky_cookie(
                    req.headers()
                        .get_all(header::COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                )
                .and_then(balance::decode_sticky)
                .filter(|(g, _)| target_groups.iter().any(|w| &w.name == g && w.weight > 0));
                let name = match &sticky {
                    Some((g, _)) => g.as_str(),
                    None => match rules::choose_weighted(target_groups, rand::random()) {
                        Some(n) => n,
                        None => return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE)),
                    },
                };
                let Some(group) = snap.groups.get(name) else {
                    return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE));
                };
                self.forward(group, req, client, port, sticky.map(|(_, a)| a))
                    .await
            }
        }
    }

    async fn forward(
        &self,
        group: &GroupRt,
        req: Request<Incoming>,
        client: SocketAddr,
        port: u16,
        sticky: Option<SocketAddr>,
    ) -> Outcome {
        let now = Instant::now();
        let slow_start = Duration::from_secs(group.config.slow_start_secs);
        let routable: Vec<(&TargetRt, Candidate)> = group
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Active)
            .filter_map(|t| {
                let since = t.shared.health.healthy_since()?;
                Some((
                    t,
                    Candidate {
                        outstanding: t.shared.outstanding.load(Ordering::Relaxed),
                        weight: balance::slow_start_weight(now - since, slow_start),
                    },
                ))
            })
            .collect();
        if routable.is_empty() {
            return Outcome {
                resp: error_response(StatusCode::SERVICE_UNAVAILABLE),
                target: None,
            };
        }
        let pick = |exclude: Option<SocketAddr>| -> Option<&TargetRt> {
            let rest: Vec<&(&TargetRt, Candidate)> = routable
                .iter()
                .filter(|(t, _)| Some(t.addr) != exclude)
                .collect();
            let cands: Vec<Candidate> = rest.iter().map(|(_, c)| *c).collect();
            let counter = group.counter.fetch_add(1, Ordering::Relaxed);
            balance::pick(group.config.algorithm, &cands, counter, rand::random())
                .map(|i| rest[i].0)
        };
        let first = sticky
            .and_then(|a| routable.iter().find(|(t, _)| t.addr == a).map(|(t, _)| *t))
            .or_else(|| pick(None));
        let Some(mut target) = first else {
            return Outcome {
                resp: error_response(StatusCode::SERVICE_UNAVAILABLE),
                target: None,
            };
        };

        let (mut parts, body) = req.into_parts();
        let size = body.size_hint();
        let buffered =
            if is_idempotent(&parts.method) && size.upper().is_some_and(|u| u <= MAX_RETRY_BODY) {
                match body.collect().await {
                    Ok(b) => Ok(b.to_bytes()),
                    Err(_) => {
                        return Outcome {
                            resp: error_response(StatusCode::BAD_REQUEST),
                            target: None,
                        };
                    }
                }
            } else {
                Err(body)
            };
        prepare_upstream_headers(&mut parts.headers, &parts.uri, client, port);
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();

        let (bytes, mut streamed) = match buffered {
            Ok(b) => (Some(b), None),
            Err(body) => (None, Some(body)),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = match (&bytes, streamed.take()) {
                (Some(b), _) if b.is_empty() => empty(),
                (Some(b), _) => full(b.clone()),
                (None, Some(s)) => s.boxed(),
                (None, None) => unreachable!("a streamed body is never retried"),
            };
            let may_retry = bytes.is_some() && attempt == 1 && routable.len() > 1;
            let headers = if may_retry {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            let mut up = Request::new(body);
            *up.method_mut() = parts.method.clone();
            *up.version_mut() = Version::HTTP_11;
            *up.headers_mut() = headers;
            match Uri::builder()
                .scheme("http")
                .authority(target.addr.to_string())
                .path_and_query(path_and_query.as_str())
                .build()
            {
                Ok(uri) => *up.uri_mut() = uri,
                Err(_) => {
                    return Outcome {
                        resp: error_response(StatusCode::BAD_REQUEST),
                        target: None,
                    };
                }
            }
            let in_flight = InFlight::new(&target.shared);
            target.shared.requests.inc();
            let sent = Instant::now();
            match self.client.request(up).await {
                Ok(resp) => {
                    target.shared.latency.observe(sent.elapsed().as_secs_f64());
                    if resp.status().is_server_error() {
                        target.shared.errors.inc();
                    }
                    let (mut rparts, rbody) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers);
                    if let Some(s) = &group.config.stickiness
                        && let Some(v) = sticky_cookie(&group.name, target.addr, s)
                    {
                        rparts.headers.append(header::SET_COOKIE, v);
                    }
                    // The in-flight count drops when the body is done, not at the head.
                    let body = rbody
                        .map_frame(move |f| {
                            let _ = &in_flight;
                            f
                        })
                        .boxed();
                    return Outcome {
                        resp: Response::from_parts(rparts, body),
                        target: Some(target.addr),
                    };
                }
                Err(e) => {
                    drop(in_flight);
                    target.shared.errors.inc();
                    let h = &group.config.health_check;
                    if h.enabled {
                        target.shared.health.record(
                            Err("Target.FailedHealthChecks".to_string()),
                            h.healthy_threshold,
                            h.unhealthy_threshold,
                        );
                    }
                    tracing::debug!(target = %target.addr, group = %group.name, error = %e, attempt, "upstream request failed");
                    if may_retry && let Some(next) = pick(Some(target.addr)) {
                        target = next;
                        continue;
                    }
                    return Outcome {
                        resp: error_response(StatusCode::BAD_GATEWAY),
                        target: Some(target.addr),
                    };
                }
            }
        }
    }
}

fn prepare_upstream_headers(headers: &mut HeaderMap, uri: &Uri, client: SocketAddr, port: u16) {
    strip_hop_by_hop(headers);
    if !headers.contains_key(header::HOST)
        && let Some(auth) = uri.authority()
        && let Ok(v) = HeaderValue::from_str(auth.as_str())
    {
        headers.insert(header::HOST, v);
    }
    let ip = client.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    headers.insert("x-forwarded-port", HeaderValue::from(port));
}

/// The request's host without the port: the `Host` header, else the URI's authority.
fn request_host(req: &Request<Incoming>) -> Option<String> {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))?;
    let host = match raw.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => raw.as_str(),
    };
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}

fn sticky_cookie(group: &str, target: SocketAddr, s: &Stickiness) -> Option<HeaderValue> {
    let Stickiness::LbCookie { duration_secs } = s;
    HeaderValue::from_str(&format!(
        "{STICKY_COOKIE}={}; Max-Age={duration_secs}; Path=/",
        balance::encode_sticky(group, target)
    ))
    .ok()
}
