//! The server: [`Lb`] owns the listeners, the per-target state that outlives config updates
//! (health, requests in flight, metric handles), the upstream connection pool, and the
//! request path (route, pick a target, forward, retry once, log, count).
//!
//! Upstream connections are plain `hyper::client::conn::http1` connections kept in a pool of
//! idle ones per target (`Pool`): a request takes one (or opens one), sends, and the
//! connection goes back when the response body has been read. That is what hyper-util's
//! pooled client does too, less its per-request costs (a checkout future, an extra task
//! spawned per request to wait for the connection to become idle again).
//!
//! The routing state is an immutable [`Snapshot`] behind an `ArcSwap`: each request loads the
//! current one, so [`Lb::update`] swaps rules, groups and targets without touching
//! established client connections. Listeners are keyed by their configured `bind`; an update
//! binds the new ones first (so a bind error changes nothing), then removes the old ones, whose
//! connections finish their requests in flight and close (graceful shutdown).

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
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
use crate::outlier::{self, Observation, OutlierCell};
use crate::rules::{self, RequestInfo, Router};

/// Largest request body buffered so that an idempotent request can be retried; bigger (or
/// unknown-length) bodies are streamed and not retried.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;

/// The body type of every response the proxy sends (and of upstream requests).
pub type Body = BoxBody<Bytes, hyper::Error>;

/// How long connecting to a target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an upstream connection stays in a pool unused.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why [`Lb::start`] or [`Lb::update`] failed; on error nothing changed. Non-exhaustive:
/// callers keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    pool: Arc<Pool>,
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
    /// Passive health; only groups with outlier detection record into it.
    outlier: OutlierCell,
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
    /// Held while deciding an ejection, so that two at once cannot both pass the
    /// group's `max_ejection_percent`.
    ejection: Mutex<()>,
}

/// A target that outlier detection has ejected (see [`crate::outlier`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ejection {
    /// Its target group.
    pub group: String,
    /// The target.
    pub target: SocketAddr,
    /// How long it stays ejected.
    pub remaining: Duration,
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
        let lb = Lb {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(Snapshot::default()),
                pool: Pool::start(),
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
                    ejection: Mutex::new(()),
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
        if !check.enabled {
            // Healthy from the first request on, not once the checker task has run.
            health.set_unchecked();
        }
        let (health_config, rx) = watch::channel(check.clone());
        let checker = health::spawn_checker(addr, health.clone(), rx, client.clone());
        TargetSlot {
            shared: Arc::new(TargetShared {
                health,
                outlier: OutlierCell::new(),
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

    /// The targets outlier detection has ejected now, by group then config order.
    pub fn ejections(&self) -> Vec<Ejection> {
        let snap = self.shared.state.load();
        let now = Instant::now();
        let mut groups: Vec<&GroupRt> = snap.groups.values().collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
            .into_iter()
            .flat_map(|g| {
                g.targets.iter().filter_map(move |t| {
                    Some(Ejection {
                        group: g.name.clone(),
                        target: t.addr,
                        remaining: t.shared.outlier.ejected_for(now)?,
                    })
                })
            })
            .collect()
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
    let port_value = HeaderValue::from(port);
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
        let conn = Conn {
            shared: shared.clone(),
            client,
            bind,
            client_ip: HeaderValue::from_str(&client.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            port_value: port_value.clone(),
        };
        tokio::spawn(serve_connection(Arc::new(conn), stream, shutdown.clone()));
    }
}

/// One client connection: what its requests need besides the request.
struct Conn {
    shared: Arc<Shared>,
    client: SocketAddr,
    bind: SocketAddr,
    /// The client's IP, as `X-Forwarded-For` gets it.
    client_ip: HeaderValue,
    /// The listener's port, as `X-Forwarded-Port` gets it.
    port_value: HeaderValue,
}

async fn serve_connection(
    conn: Arc<Conn>,
    stream: tokio::net::TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.handle(req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Head and body copied into one buffer and sent with one `write`: cheaper than a
    // `writev` of two iovecs for the small responses that dominate (measured with the
    // `flotilla bench lb` load: 13.0 → 12.1 µs of the proxy's CPU per request).
    builder.http1().writev(false);
    let served = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}

/// Decrements a target's in-flight count when dropped.
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

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1), and `Upgrade`.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the (few) names is cheaper than nine removals.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
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
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
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

impl Conn {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        // The access log costs a clock read and a copy of the path: only when it is on.
        if !tracing::enabled!(target: "lb::access", tracing::Level::INFO) {
            return self.route(req).await.resp;
        }
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let out = self.route(req).await;
        tracing::info!(
            target: "lb::access",
            client = %self.client,
            method = %method,
            path = %path,
            status = out.resp.status().as_u16(),
            target = %out.target.map_or_else(|| "-".to_string(), |t| t.to_string()),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        out.resp
    }

    async fn route(&self, req: Request<Incoming>) -> Outcome {
        let snap = self.shared.state.load_full();
        let no_target = |resp| Outcome { resp, target: None };
        let Some(router) = snap.routers.get(&self.bind) else {
            return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE));
        };
        let info = RequestInfo {
            method: req.method().as_str(),
            host: request_host(&req),
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
                let name = match (&sticky, target_groups.as_slice()) {
                    (Some((g, _)), _) => g.as_str(),
                    // One group: no need for a random number.
                    (None, [only]) if only.weight > 0 => only.name.as_str(),
                    (None, _) => match rules::choose_weighted(target_groups, rand::random()) {
                        Some(n) => n,
                        None => return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE)),
                    },
                };
                let Some(group) = snap.groups.get(name) else {
                    return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE));
                };
                self.forward(group, req, sticky.map(|(_, a)| a)).await
            }
        }
    }

    async fn forward(
        &self,
        group: &GroupRt,
        req: Request<Incoming>,
        sticky: Option<SocketAddr>,
    ) -> Outcome {
        let slow_start = Duration::from_secs(group.config.slow_start_secs);
        let outliers = group.config.outlier_detection.as_ref();
        // The clock is only needed for slow start and outlier detection.
        let now = (!slow_start.is_zero() || outliers.is_some()).then(Instant::now);
        // Ejected targets are left out, unless every healthy one is (then they all serve).
        let ejected_now = |t: &TargetRt| {
            outliers.is_some() && now.is_some_and(|now| t.shared.outlier.is_ejected(now))
        };
        let skip_ejected = outliers.is_some()
            && group.targets.iter().any(|t| {
                t.state == TargetState::Active
                    && t.shared.health.healthy_since().is_some()
                    && !ejected_now(t)
            });
        let mut routable: Vec<&TargetRt> = Vec::with_capacity(group.targets.len());
        let mut cands: Vec<Candidate> = Vec::with_capacity(group.targets.len());
        for t in &group.targets {
            if t.state != TargetState::Active {
                continue;
            }
            let Some(since) = t.shared.health.healthy_since() else {
                continue;
            };
            if skip_ejected && ejected_now(t) {
                continue;
            }
            routable.push(t);
            cands.push(Candidate {
                outstanding: t.shared.outstanding.load(Ordering::Relaxed),
                weight: now.filter(|_| !slow_start.is_zero()).map_or(1.0, |now| {
                    balance::slow_start_weight(now.saturating_duration_since(since), slow_start)
                }),
            });
        }
        if routable.is_empty() {
            return Outcome {
                resp: error_response(StatusCode::SERVICE_UNAVAILABLE),
                target: None,
            };
        }
        let pick = |exclude: Option<SocketAddr>| -> Option<&TargetRt> {
            let counter = group.counter.fetch_add(1, Ordering::Relaxed);
            // Only a target in slow start makes `pick` draw.
            let random = if cands.iter().all(|c| c.weight >= 1.0) {
                0.0
            } else {
                rand::random()
            };
            match exclude {
                None => balance::pick(group.config.algorithm, &cands, counter, random)
                    .map(|i| routable[i]),
                Some(x) => {
                    let rest: Vec<usize> = (0..routable.len())
                        .filter(|&i| routable[i].addr != x)
                        .collect();
                    let rest_cands: Vec<Candidate> = rest.iter().map(|&i| cands[i]).collect();
                    balance::pick(group.config.algorithm, &rest_cands, counter, random)
                        .map(|i| routable[rest[i]])
                }
            }
        };
        let first = sticky
            .and_then(|a| routable.iter().find(|t| t.addr == a).copied())
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
                if body.is_end_stream() {
                    Ok(Bytes::new())
                } else {
                    match body.collect().await {
                        Ok(b) => Ok(b.to_bytes()),
                        Err(_) => {
                            return Outcome {
                                resp: error_response(StatusCode::BAD_REQUEST),
                                target: None,
                            };
                        }
                    }
                }
            } else {
                Err(body)
            };
        self.prepare_upstream_headers(&mut parts.headers, &parts.uri);
        // Origin form (`/path?query`), what an HTTP/1.1 origin server expects.
        let uri = match parts.uri.path_and_query() {
            Some(_) if parts.uri.scheme().is_none() && parts.uri.authority().is_none() => {
                parts.uri.clone()
            }
            pq => {
                let mut u = http::uri::Parts::default();
                u.path_and_query = Some(
                    pq.cloned()
                        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                );
                match Uri::from_parts(u) {
                    Ok(u) => u,
                    Err(_) => {
                        return Outcome {
                            resp: error_response(StatusCode::BAD_REQUEST),
                            target: None,
                        };
                    }
                }
            }
        };

        let (bytes, mut streamed) = match buffered {
            Ok(b) => (Some(b), None),
            Err(body) => (None, Some(body)),
        };
        let pool = &self.shared.pool;
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
            let mut headers = if may_retry {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            if !headers.contains_key(header::HOST)
                && let Ok(v) = HeaderValue::from_str(&host_of(target.addr))
            {
                headers.insert(header::HOST, v);
            }
            let mut up = Request::new(body);
            *up.method_mut() = parts.method.clone();
            *up.version_mut() = Version::HTTP_11;
            *up.uri_mut() = uri.clone();
            *up.headers_mut() = headers;
            let in_flight = InFlight::new(&target.shared);
            target.shared.requests.inc();
            let sent = Instant::now();
            match pool.send(target.addr, up, sent).await {
                Ok((resp, send)) => {
                    target.shared.latency.observe(sent.elapsed().as_secs_f64());
                    let failed = resp.status().is_server_error();
                    if failed {
                        target.shared.errors.inc();
                    }
                    if outliers.is_some() {
                        let seen = if failed {
                            Observation::ServerError
                        } else {
                            Observation::Success
                        };
                        observe_outlier(group, target, seen);
                    }
                    let (mut rparts, rbody) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers);
                    if let Some(s) = &group.config.stickiness
                        && let Some(v) = sticky_cookie(&group.name, target.addr, s)
                    {
                        rparts.headers.append(header::SET_COOKIE, v);
                    }
                    // The in-flight count drops, and the connection goes back to the pool,
                    // when the body is done, not at the head.
                    let body = UpstreamBody {
                        inner: rbody,
                        lease: Some(Lease {
                            pool: pool.clone(),
                            target: target.addr,
                            send,
                            _in_flight: in_flight,
                        }),
                    };
                    return Outcome {
                        resp: Response::from_parts(rparts, BoxBody::new(body)),
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
                    if outliers.is_some() {
                        observe_outlier(group, target, Observation::ConnectFailure);
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

    fn prepare_upstream_headers(&self, headers: &mut HeaderMap, uri: &Uri) {
        strip_hop_by_hop(headers);
        if !headers.contains_key(header::HOST)
            && let Some(auth) = uri.authority()
            && let Ok(v) = HeaderValue::from_str(auth.as_str())
        {
            headers.insert(header::HOST, v);
        }
        let xff = match headers.get(&X_FORWARDED_FOR).filter(|v| v.to_str().is_ok()) {
            None => Some(self.client_ip.clone()),
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + self.client_ip.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(self.client_ip.as_bytes());
                HeaderValue::from_maybe_shared(Bytes::from(v)).ok()
            }
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR, v);
        }
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        headers.insert(X_FORWARDED_PORT, self.port_value.clone());
    }
}

/// Counts how a request to `target` of `group` (which has outlier detection) ended, and
/// ejects the target when that crosses a threshold and the group's cap allows it.
fn observe_outlier(group: &GroupRt, target: &TargetRt, seen: Observation) {
    let Some(config) = &group.config.outlier_detection else {
        return;
    };
    let now = Instant::now();
    if seen == Observation::Success {
        target.shared.outlier.observe(seen, config, now, || false);
        return;
    }
    let _deciding = group.ejection.lock().unwrap_or_else(|e| e.into_inner());
    let may_eject = || {
        let active = group
            .targets
            .iter()
            .filter(|t| t.state == TargetState::Active);
        let ejected = active
            .clone()
            .filter(|t| t.shared.outlier.is_ejected(now))
            .count();
        outlier::ejection_allowed(ejected, active.count(), config.max_ejection_percent)
    };
    if let Some(length) = target.shared.outlier.observe(seen, config, now, may_eject) {
        tracing::info!(target = %target.addr, group = %group.name, ?seen, ejected_for = ?length, "target ejected (outlier detection)");
    }
}

/// `Host` for a request to `target` that came without one: the address, without the port if
/// it is 80 (what hyper-util's client, which the proxy used before, sends).
fn host_of(target: SocketAddr) -> String {
    match (target.ip(), target.port()) {
        (std::net::IpAddr::V4(ip), 80) => ip.to_string(),
        (std::net::IpAddr::V6(ip), 80) => format!("[{ip}]"),
        _ => target.to_string(),
    }
}

/// The request's host without the port: the `Host` header, else the URI's authority.
fn request_host(req: &Request<Incoming>) -> Option<&str> {
    let raw = match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok(),
        None => req.uri().authority().map(http::uri::Authority::as_str),
    }?;
    let host = match raw.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => raw,
    };
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// Why forwarding to a target failed.
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect: timed out after {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// An idle upstream connection.
struct Idle {
    send: SendRequest<Body>,
    since: Instant,
}

/// Idle upstream HTTP/1.1 connections, by target. The most recently used one is reused first
/// (the least likely to have been closed by the target meanwhile); those idle for
/// [`POOL_IDLE_TIMEOUT`] are closed. The lock is held for a push or a pop only.
#[derive(Default)]
struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

impl Pool {
    /// A pool, with a task that closes its expired connections every `POOL_IDLE_TIMEOUT /
    /// 2`; the task ends with the pool.
    fn start() -> Arc<Pool> {
        let pool = Arc::new(Pool::default());
        let weak: Weak<Pool> = Arc::downgrade(&pool);
        let reaper = async move {
            loop {
                tokio::time::sleep(POOL_IDLE_TIMEOUT / 2).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.lock().retain(|_, list| {
                    list.retain(|c| !c.send.is_closed() && c.since.elapsed() < POOL_IDLE_TIMEOUT);
                    !list.is_empty()
                });
            }
        };
        tokio::spawn(reaper);
        pool
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection to `target` that is still open, if any (`now`: about now).
    fn take(&self, target: SocketAddr, now: Instant) -> Option<SendRequest<Body>> {
        let mut idle = self.lock();
        let list = idle.get_mut(&target)?;
        while let Some(c) = list.pop() {
            if now.saturating_duration_since(c.since) >= POOL_IDLE_TIMEOUT {
                // The rest are older still.
                list.clear();
                break;
            }
            if !c.send.is_closed() {
                return Some(c.send);
            }
        }
        None
    }

    fn put(&self, target: SocketAddr, send: SendRequest<Body>) {
        if send.is_closed() {
            return;
        }
        let since = Instant::now();
        self.lock()
            .entry(target)
            .or_default()
            .push(Idle { send, since });
    }

    /// Sends `req` to `target` over an idle connection, else a new one, and returns the
    /// response head with the connection (to [`Pool::put`] back once the body is read). A
    /// request that a reused connection turned away unsent (the target had closed it) goes
    /// out on another one, as hyper's pooled client does. `now`: about now.
    async fn send(
        &self,
        target: SocketAddr,
        mut req: Request<Body>,
        now: Instant,
    ) -> Result<(Response<Incoming>, SendRequest<Body>), UpstreamError> {
        loop {
            let (mut send, reused) = match self.take(target, now) {
                Some(s) => (s, true),
                // Boxed: the rarely taken path keeps the per-request future small.
                None => (Box::pin(connect(target)).await?, false),
            };
            if reused && send.ready().await.is_err() {
                continue;
            }
            match send.try_send_request(req).await {
                Ok(resp) => return Ok((resp, send)),
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }
}

/// A new upstream HTTP/1.1 connection to `target`, its task spawned on the current runtime.
async fn connect(target: SocketAddr) -> Result<SendRequest<Body>, UpstreamError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target))
        .await
        .map_err(|_| UpstreamError::ConnectTimeout)?
        .map_err(UpstreamError::Connect)?;
    let _ = stream.set_nodelay(true);
    // One buffer, one `write` per request, as for responses (`serve_connection`).
    let (send, conn) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%target, error = %e, "upstream connection failed");
        }
    });
    Ok(send)
}

/// The upstream connection a response body is being read from.
struct Lease {
    pool: Arc<Pool>,
    target: SocketAddr,
    send: SendRequest<Body>,
    _in_flight: InFlight,
}

/// An upstream response body on its way to the client. Once it has been read to the end,
/// its connection goes back to the pool; dropped before that, the connection is closed
/// (hyper does not reuse a connection with a response half read). Either way the target's
/// in-flight count drops.
struct UpstreamBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl UpstreamBody {
    fn release(&mut self, reuse: bool) {
        if let Some(l) = self.lease.take()
            && reuse
        {
            l.pool.put(l.target, l.send);
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(true),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(true),
            Poll::Ready(Some(Err(_))) => this.release(false),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        let done = self.inner.is_end_stream();
        self.release(done);
    }
}

fn sticky_cookie(group: &str, target: SocketAddr, s: &Stickiness) -> Option<HeaderValue> {
    let Stickiness::LbCookie { duration_secs } = s;
    HeaderValue::from_str(&format!(
        "{STICKY_COOKIE}={}; Max-Age={duration_secs}; Path=/",
        balance::encode_sticky(group, target)
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_drops_port_80_only() {
        assert_eq!(host_of("10.0.0.5:80".parse().unwrap()), "10.0.0.5");
        assert_eq!(host_of("10.0.0.5:8080".parse().unwrap()), "10.0.0.5:8080");
        assert_eq!(host_of("[::1]:80".parse().unwrap()), "[::1]");
        assert_eq!(host_of("[::1]:81".parse().unwrap()), "[::1]:81");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("x"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["host"]
        );

        let mut plain = HeaderMap::new();
        plain.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1);
    }
}
