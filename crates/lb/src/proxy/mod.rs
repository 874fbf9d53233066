//! The server: [`Lb`] owns the listeners, the per-target state that outlives config updates
//! (health, requests in flight, metric handles), the upstream connection pools
//! ([`crate::upstream`] for HTTP/1.1 targets, [`crate::upstream_h2`] for HTTP/2 and gRPC
//! ones), and the HTTP request path (route, pick a target
//! ([`crate::select`]), forward, retry once, log, count). TCP listeners are in
//! [`crate::tcp`].
//!
//! The routing state is an immutable [`Snapshot`] behind an `ArcSwap`: each request loads the
//! current one, so [`Lb::update`] swaps rules, groups and targets without touching
//! established client connections. Listeners are keyed by their configured `bind`; an update
//! binds the new ones first (so a bind error changes nothing), then removes the old ones, whose
//! connections finish their requests in flight and close (graceful shutdown). HTTP and HTTPS
//! listeners share one accept loop, which looks up the listener's TLS configuration in the
//! snapshot per connection ([`crate::tls`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{
    Action, ConfigError, LbConfig, ListenerProtocol, TargetGroupConfig, TargetState,
};
use crate::health::{self, CheckClients, CheckSettings, HealthCell, HealthState, TargetHealth};
use crate::metrics::{Metrics, TargetLabels, TrafficCell, TrafficSnapshot};
use crate::outlier::OutlierCell;
use crate::rules::Router;
use crate::upstream::Pool;
use crate::upstream_h2::H2Pool;

mod serve;
mod targets;

use serve::accept_loop;
pub(crate) use targets::{InFlight, connect_failed, observe_outlier};

/// Largest request body buffered so that an idempotent request can be retried; bigger (or
/// unknown-length) bodies are streamed and not retried.
pub const MAX_RETRY_BODY: u64 = 64 * 1024;

/// The body type of every response the proxy sends (and of upstream requests).
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Why [`Lb::start`] or [`Lb::update`] failed; on error nothing changed. Non-exhaustive:
/// callers keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LbError {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An HTTPS listener's certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
pub(crate) struct Shared {
    pub(crate) state: ArcSwap<Snapshot>,
    pub(crate) pool: Arc<Pool>,
    /// The connections to the targets of HTTP/2 and gRPC groups.
    pub(crate) h2_pool: Arc<H2Pool>,
    metrics: Metrics,
    /// The requests no target group answered (fixed responses, a forward to no group).
    pub(crate) unrouted: TrafficCell,
    /// Each target group's traffic, by name; kept when a group leaves the config.
    traffic: Mutex<BTreeMap<String, Arc<TrafficCell>>>,
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
    health_config: watch::Sender<CheckSettings>,
    checker: JoinHandle<()>,
}

/// Per-target state that survives config updates.
pub(crate) struct TargetShared {
    pub(crate) health: Arc<HealthCell>,
    /// Passive health; only groups with outlier detection record into it.
    pub(crate) outlier: OutlierCell,
    pub(crate) outstanding: AtomicU64,
    pub(crate) requests: Counter,
    pub(crate) errors: Counter,
    pub(crate) latency: Histogram,
}

/// The routing state one request sees.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub(crate) routers: HashMap<SocketAddr, Router>,
    pub(crate) groups: HashMap<String, GroupRt>,
    /// The TLS configuration of each HTTPS listener, by bind: a connection accepted on a
    /// listener with one is a TLS connection (so a certificate change, or HTTP ↔ HTTPS,
    /// reaches new connections without a rebind).
    pub(crate) tls: HashMap<SocketAddr, Arc<rustls::ServerConfig>>,
}

pub(crate) struct GroupRt {
    pub(crate) name: String,
    pub(crate) config: TargetGroupConfig,
    pub(crate) referenced: bool,
    pub(crate) targets: Vec<TargetRt>,
    pub(crate) counter: AtomicU64,
    /// The group's traffic counts (outlive updates).
    pub(crate) traffic: Arc<TrafficCell>,
    /// Held while deciding an ejection, so that two at once cannot both pass the
    /// group's `max_ejection_percent`.
    pub(crate) ejection: Mutex<()>,
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

pub(crate) struct TargetRt {
    pub(crate) addr: SocketAddr,
    pub(crate) state: TargetState,
    pub(crate) shared: Arc<TargetShared>,
}

impl Lb {
    /// Validates `config`, binds its listeners and starts health checks. Must be called
    /// within a Tokio runtime (the tasks are spawned on it).
    pub fn start(config: LbConfig) -> Result<Lb, LbError> {
        let lb = Lb {
            shared: Arc::new(Shared {
                state: ArcSwap::from_pointee(Snapshot::default()),
                pool: Pool::start(),
                h2_pool: H2Pool::start(),
                metrics: Metrics::new(),
                unrouted: TrafficCell::default(),
                traffic: Mutex::new(BTreeMap::new()),
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
        // Certificates and keys are parsed before anything changes: a bad one changes nothing.
        let mut tls = HashMap::new();
        for l in &config.listeners {
            if l.protocol == ListenerProtocol::Https
                && let Some(settings) = &l.tls
            {
                tls.insert(l.bind, crate::tls::server_config(l.bind, settings)?);
            }
        }
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
        let check_clients = CheckClients::new();
        let mut wanted = HashMap::new();
        let mut groups = HashMap::new();
        for (name, g) in &config.target_groups {
            let settings = CheckSettings {
                check: g.health_check.clone(),
                protocol_version: g.protocol_version,
            };
            let mut targets = Vec::new();
            for t in &g.targets {
                let key = (name.clone(), t.addr);
                let slot = match control.targets.remove(&key) {
                    Some(slot) => {
                        slot.health_config.send_if_modified(|c| {
                            let changed = *c != settings;
                            *c = settings.clone();
                            changed
                        });
                        slot
                    }
                    None => self.new_target(name, t.addr, &settings, &check_clients),
                };
                targets.push(TargetRt {
                    addr: t.addr,
                    state: t.state,
                    shared: slot.shared.clone(),
                });
                wanted.insert(key, slot);
            }
            let traffic = self
                .shared
                .traffic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name.clone())
                .or_default()
                .clone();
            groups.insert(
                name.clone(),
                GroupRt {
                    name: name.clone(),
                    config: g.clone(),
                    referenced: referenced.contains(name.as_str()),
                    targets,
                    counter: AtomicU64::new(0),
                    traffic,
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
        self.shared.state.store(Arc::new(Snapshot {
            routers,
            groups,
            tls,
        }));

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
            let tcp = config
                .listeners
                .iter()
                .any(|l| l.bind == bind && l.protocol == ListenerProtocol::Tcp);
            let task = if tcp {
                tokio::spawn(crate::tcp::accept_loop(
                    self.shared.clone(),
                    listener,
                    bind,
                    rx,
                ))
            } else {
                tokio::spawn(accept_loop(
                    self.shared.clone(),
                    listener,
                    bind,
                    local.port(),
                    rx,
                ))
            };
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
        settings: &CheckSettings,
        clients: &CheckClients,
    ) -> TargetSlot {
        let labels = TargetLabels {
            target_group: group.to_string(),
            target: addr.to_string(),
        };
        let m = &self.shared.metrics;
        let health = Arc::new(HealthCell::new());
        if !settings.check.enabled {
            // Healthy from the first request on, not once the checker task has run.
            health.set_unchecked();
        }
        let (health_config, rx) = watch::channel(settings.clone());
        let checker = health::spawn_checker(addr, health.clone(), rx, clients.clone());
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

    /// The traffic of the HTTP listeners so far: the load balancer's and each target
    /// group's counts (see [`TrafficCounts`](crate::TrafficCounts)). Counts are
    /// cumulative; the response-time extremes are those since the previous call, which
    /// takes them: one reader (`flotilla server`'s CloudWatch publisher) calls this.
    /// TCP listeners are not counted.
    pub fn traffic(&self) -> TrafficSnapshot {
        let groups: BTreeMap<String, crate::TrafficCounts> = self
            .shared
            .traffic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, cell)| (name.clone(), cell.take()))
            .collect();
        let mut load_balancer = self.shared.unrouted.take();
        for g in groups.values() {
            load_balancer.add(g);
        }
        TrafficSnapshot {
            load_balancer,
            groups,
        }
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

/// The next client connection of a listener (`TCP_NODELAY` set). An accept error
/// (EMFILE and friends) is logged and retried after 50 ms instead of spinning.
pub(crate) async fn accept_client(
    listener: &tokio::net::TcpListener,
    bind: SocketAddr,
) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, client)) => {
                let _ = stream.set_nodelay(true);
                return (stream, client);
            }
            Err(e) => {
                tracing::warn!(%bind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
