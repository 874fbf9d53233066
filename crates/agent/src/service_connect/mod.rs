//! ECS Service Connect on the node: a Service Connect task's containers call a client
//! alias (`http://web:8080`) and the call is load-balanced over the endpoints of the
//! service that offers it, on any node, with a retry on another endpoint when one cannot
//! be reached and outlier ejection (the passive health ECS's Envoy proxy gives).
//!
//! This module owns, for the node:
//! - **the routes in use**: per Cloud Map namespace that a task on the node uses
//!   ([`model::agent::TaskServiceConnect`]), the last answer of
//!   `FlotillaAgentV1.GetServiceConnectRoutes`. A task's namespace is fetched *before* the
//!   task starts (it fails to start when no answer comes, so it never runs without its
//!   names); every namespace in use is then refreshed about once a second by
//!   [`ServiceConnect::refresh_loop`], and forgotten when no task uses it any more. A
//!   failed refresh keeps the last routes (logged at most once a minute).
//! - **alias addresses**: each alias `dnsName` of a namespace gets one address from
//!   `--service-connect-cidr` ([`DEFAULT_CIDR`]), the same on every port
//!   ([`AliasAddresses`]). The assignment is persisted in
//!   `<data-dir>/service-connect.json` (with `durable::write`, before any hosts file
//!   names an address), so a restarted agent gives running tasks the same addresses. Each
//!   address is a `/32` on the node's `lo` ([`network::address`]); bridge and awsvpc tasks
//!   reach it through their default route via the bridge to the node, `host` tasks
//!   directly. Addresses in `127.0.0.0/8` are local already and are not added (tests
//!   without `CAP_NET_ADMIN` use such a range).
//! - **the proxy**: one [`lb::Lb`] for the whole node, one listener per (alias address,
//!   port) forwarding to one target group per route whose targets are its endpoints
//!   ([`lb_config`]): no active health check (an endpoint serves as soon as it is listed),
//!   outlier detection on ([`lb::OutlierDetection::default`]: a connection failure or 5
//!   5xx in a row eject an endpoint for 10 s, doubling, at most half of a route's). The
//!   offering port mapping's `appProtocol` picks the listener: HTTP (per request) for
//!   `http`, `http2` and `grpc`, TCP (per connection, bytes copied both ways) for none,
//!   as ECS treats a port without one.
//! - **hosts files**: `<data-dir>/hosts/<task-id>` ([`render_hosts`]), bind-mounted
//!   read-only at `/etc/hosts` in every container of a Service Connect task
//!   ([`crate::definition`]). When the namespace's aliases change the file is rewritten
//!   in place (same inode: a bind mount pins the inode, a rename would not be seen). It
//!   is removed with the task's networking ([`crate::task_network::teardown`]).
//!
//! ## Limits
//! - [`MAX_ROUTES_PER_NODE`] routes (alias, port) across the namespaces in use: each is a
//!   listener of the node's proxy, and `lb` runs at most [`lb::config::MAX_LISTENERS`]. So
//!   at most that many aliases get an address; routes past it (in namespace, name, port
//!   order) are left out, with a warning.
//! - [`MAX_ENDPOINTS_PER_ROUTE`] endpoints per route (the rest are left out).
//! - [`MAX_DNS_NAME_LEN`] bytes per alias name; a name that is not a plain host name is
//!   left out (it would be written into a hosts file).
//! - A namespace ARN is at most [`MAX_NAMESPACE_LEN`] bytes.
//!
//! ## Current limitations
//! - The proxy runs inside the agent: while the agent restarts, aliases do not answer
//!   (established client connections break; tasks keep running and the restarted agent
//!   restores the listeners).
//! - A TCP alias balances connections, not requests: a long-lived connection stays on its
//!   endpoint until either side closes it (a stopping task closes its own).
//! - A request with a body that is not buffered (non-idempotent, or over
//!   [`lb::proxy::MAX_RETRY_BODY`]) is not retried when its endpoint cannot be reached;
//!   that endpoint is ejected, so the next one goes elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use model::agent::{GetServiceConnectRoutesRequest, MAX_ROUTE_NAMESPACES, ServiceConnectRoute};
pub use network::Ipv4Cidr;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::AgentError;

/// The default alias address range (`--service-connect-cidr`): part of `198.18.0.0/15`,
/// reserved for benchmarking (RFC 2544), so it collides with no real network.
pub const DEFAULT_CIDR: &str = "198.19.0.0/16";
/// Most routes (alias, port) the node proxies, all namespaces together: one `lb`
/// listener each.
pub const MAX_ROUTES_PER_NODE: usize = lb::config::MAX_LISTENERS;
/// Most endpoints of one route (one `lb` target group's most targets).
pub const MAX_ENDPOINTS_PER_ROUTE: usize = lb::config::MAX_TARGETS_PER_GROUP;
/// Longest alias `dnsName`, in bytes (a DNS name's most).
pub const MAX_DNS_NAME_LEN: usize = 253;
/// Longest namespace ARN, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 1024;
/// How often the namespaces in use are refreshed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a starting task waits for its namespace's first routes.
pub const FIRST_FETCH_DEADLINE: Duration = Duration::from_secs(10);
/// How long one `GetServiceConnectRoutes` may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A failing refresh is logged at most this often.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// After a start, how long the saved addresses of namespaces no task has claimed yet are
/// kept: the tasks being adopted claim theirs one at a time, and an address given to
/// another alias meanwhile would redirect a running task's name.
const UNCLAIMED_GRACE: Duration = Duration::from_secs(120);

/// Why a Service Connect task cannot get its names (the task's
/// [`crate::error::TaskError::ServiceConnect`]).
#[derive(Debug, thiserror::Error)]
pub enum ServiceConnectError {
    /// The namespace's routes could not be fetched.
    #[error("cannot get the Service Connect routes of namespace {namespace}: {message}")]
    Routes {
        /// The namespace ARN.
        namespace: String,
        /// What failed.
        message: String,
    },
    /// The task's hosts file could not be written.
    #[error("/etc/hosts: {path}: {source}")]
    HostsFile {
        /// The file on the node.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The alias addresses could not be recorded or added to `lo`.
    #[error("Service Connect alias addresses: {0}")]
    Addresses(String),
}

mod aliases;
mod hosts;
mod routes;
#[cfg(test)]
mod tests;

pub use aliases::*;
pub use hosts::*;
pub use routes::*;

// --- Fetching routes ---------------------------------------------------------------------

/// A boxed future of routes.
pub type RoutesFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<ServiceConnectRoute>, AgentError>> + Send + 'a>>;

/// Where routes come from: the control plane ([`ControlPlaneRoutes`]), or a fake in tests.
pub trait RouteSource: Send + Sync {
    /// The routes of `namespaces` (at most [`MAX_ROUTE_NAMESPACES`]).
    fn routes<'a>(&'a self, namespaces: &'a [String]) -> RoutesFuture<'a>;
}

/// `FlotillaAgentV1.GetServiceConnectRoutes`, as this instance.
#[derive(Debug, Clone)]
pub struct ControlPlaneRoutes {
    /// The control plane.
    pub client: Client,
    /// The cluster.
    pub cluster: String,
    /// This container instance's ARN.
    pub container_instance: String,
}

impl RouteSource for ControlPlaneRoutes {
    fn routes<'a>(&'a self, namespaces: &'a [String]) -> RoutesFuture<'a> {
        Box::pin(async move {
            let req = GetServiceConnectRoutesRequest {
                cluster: Some(self.cluster.clone()),
                container_instance: Some(self.container_instance.clone()),
                namespaces: namespaces.to_vec(),
            };
            Ok(self.client.get_service_connect_routes(&req).await?.routes)
        })
    }
}

// --- The node's Service Connect ------------------------------------------------------------

/// The node's Service Connect: routes in use, alias addresses, the proxy, hosts files.
pub struct ServiceConnect {
    data_dir: PathBuf,
    range: Ipv4Cidr,
    source: Arc<dyn RouteSource>,
    first_fetch_deadline: Duration,
    state: Mutex<State>,
    /// Wakes [`ServiceConnect::refresh_loop`] when the first task registers.
    task_added: Notify,
}

impl std::fmt::Debug for ServiceConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConnect")
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

struct TaskEntry {
    namespace: String,
    /// What its hosts file holds, as last written (`None`: not written by this agent yet).
    written: Option<String>,
}

struct State {
    /// Service Connect tasks on the node, by task id.
    tasks: BTreeMap<String, TaskEntry>,
    /// The last routes of each namespace in use (cleaned).
    routes: BTreeMap<String, Vec<ServiceConnectRoute>>,
    addresses: AliasAddresses,
    /// The addresses `lo` was last given (`None`: not yet, in this process).
    on_loopback: Option<BTreeSet<Ipv4Addr>>,
    /// The proxy's config as last applied.
    applied: Option<lb::LbConfig>,
    proxy: Option<lb::Lb>,
    last_failure_log: Option<Instant>,
    /// Until when saved addresses of namespaces not in `claimed` are kept.
    unclaimed_until: Instant,
    /// Namespaces a task used since the start (emptied once `unclaimed_until` passed).
    claimed: BTreeSet<String>,
}

impl ServiceConnect {
    /// The node's Service Connect, with the alias assignment saved in `data_dir`. Nothing
    /// runs (no proxy, no address) until a Service Connect task comes.
    pub fn new(
        data_dir: &Path,
        range: Ipv4Cidr,
        source: Arc<dyn RouteSource>,
    ) -> Result<ServiceConnect, AgentError> {
        let addresses = AliasAddresses::load(data_dir, range)?;
        Ok(ServiceConnect {
            data_dir: data_dir.to_owned(),
            range,
            source,
            first_fetch_deadline: FIRST_FETCH_DEADLINE,
            state: Mutex::new(State {
                tasks: BTreeMap::new(),
                routes: BTreeMap::new(),
                addresses,
                on_loopback: None,
                applied: None,
                proxy: None,
                last_failure_log: None,
                unclaimed_until: Instant::now() + UNCLAIMED_GRACE,
                claimed: BTreeSet::new(),
            }),
            task_added: Notify::new(),
        })
    }

    /// Sets how long a starting task waits for its namespace's first routes (default
    /// [`FIRST_FETCH_DEADLINE`]).
    #[must_use]
    pub fn with_first_fetch_deadline(mut self, deadline: Duration) -> ServiceConnect {
        self.first_fetch_deadline = deadline;
        self
    }

    /// Makes task `task_id` of `namespace` ready to start (or, adopted after a restart, to
    /// go on): its namespace's routes fetched (waiting up to [`FIRST_FETCH_DEADLINE`] for
    /// the first answer), the proxy listening, its hosts file written. Returns the file.
    /// The task stays registered even on error; [`ServiceConnect::release_task`] ends that.
    pub async fn ensure_task(
        &self,
        task_id: &str,
        namespace: &str,
    ) -> Result<PathBuf, ServiceConnectError> {
        let routes_error = |message: String| ServiceConnectError::Routes {
            namespace: namespace.to_owned(),
            message,
        };
        if namespace.is_empty() || namespace.len() > MAX_NAMESPACE_LEN {
            return Err(routes_error(format!(
                "a namespace ARN is 1..={MAX_NAMESPACE_LEN} bytes"
            )));
        }
        let known = {
            let mut state = self.state.lock().await;
            state.tasks.insert(
                task_id.to_owned(),
                TaskEntry {
                    namespace: namespace.to_owned(),
                    written: None,
                },
            );
            if Instant::now() < state.unclaimed_until {
                state.claimed.insert(namespace.to_owned());
            }
            state.routes.contains_key(namespace)
        };
        self.task_added.notify_one();
        if !known {
            let fetched = self
                .first_fetch(namespace)
                .await
                .map_err(|e| routes_error(e.to_string()))?;
            let mut state = self.state.lock().await;
            if state.tasks.contains_key(task_id) {
                state.routes.entry(namespace.to_owned()).or_insert(fetched);
            }
        }
        let mut state = self.state.lock().await;
        self.apply(&mut state).await?;
        let path = hosts_path(&self.data_dir, task_id);
        let content = hosts_of(&state, namespace);
        write_in_place(&path, &content).map_err(|source| ServiceConnectError::HostsFile {
            path: path.display().to_string(),
            source,
        })?;
        if let Some(t) = state.tasks.get_mut(task_id) {
            t.written = Some(content);
        }
        Ok(path)
    }

    /// The routes of `namespace`, retried until the first-fetch deadline.
    async fn first_fetch(&self, namespace: &str) -> Result<Vec<ServiceConnectRoute>, AgentError> {
        let deadline = Instant::now() + self.first_fetch_deadline;
        let mut backoff = Duration::from_millis(100);
        let asked = [namespace.to_owned()];
        loop {
            let attempt = tokio::time::timeout(FETCH_TIMEOUT, self.source.routes(&asked))
                .await
                .unwrap_or_else(|_| {
                    Err(AgentError::ControlPlane(format!(
                        "GetServiceConnectRoutes: no answer within {FETCH_TIMEOUT:?}"
                    )))
                });
            match attempt {
                Ok(routes) => return Ok(clean_routes(namespace, &routes)),
                Err(e) if Instant::now() + backoff >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(namespace, error = %e, "no Service Connect routes yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Task `task_id` is gone: removes its hosts file and, when it was its namespace's
    /// last task, the namespace's routes, listeners and addresses. Idempotent; also fine
    /// for a task this agent never saw.
    pub async fn release_task(&self, task_id: &str) {
        remove_hosts(&self.data_dir, task_id);
        let mut state = self.state.lock().await;
        let Some(gone) = state.tasks.remove(task_id) else {
            return;
        };
        if state.tasks.values().any(|t| t.namespace == gone.namespace) {
            return;
        }
        state.routes.remove(&gone.namespace);
        if let Err(e) = self.apply(&mut state).await {
            tracing::warn!(error = %e, "could not remove a namespace's Service Connect aliases");
        }
    }

    /// Refreshes every namespace in use about once a second while the node has Service
    /// Connect tasks; waits for the first one otherwise. Runs until dropped.
    pub async fn refresh_loop(self: Arc<Self>) {
        loop {
            let namespaces: Vec<String> = {
                let state = self.state.lock().await;
                state
                    .tasks
                    .values()
                    .map(|t| t.namespace.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            };
            if namespaces.is_empty() {
                self.task_added.notified().await;
                continue;
            }
            tokio::time::sleep(REFRESH_INTERVAL).await;
            for chunk in namespaces.chunks(MAX_ROUTE_NAMESPACES) {
                self.refresh(chunk).await;
            }
        }
    }

    /// Fetches `namespaces` once and applies what changed; a failure keeps the last routes.
    async fn refresh(&self, namespaces: &[String]) {
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, self.source.routes(namespaces))
            .await
            .unwrap_or_else(|_| {
                Err(AgentError::ControlPlane(format!(
                    "GetServiceConnectRoutes: no answer within {FETCH_TIMEOUT:?}"
                )))
            });
        let mut state = self.state.lock().await;
        let routes = match fetched {
            Ok(routes) => routes,
            Err(e) => {
                let now = Instant::now();
                if state
                    .last_failure_log
                    .is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL)
                {
                    state.last_failure_log = Some(now);
                    tracing::warn!(error = %e, ?namespaces, "cannot refresh Service Connect routes; keeping the last ones");
                }
                return;
            }
        };
        let mut changed = false;
        for ns in namespaces {
            // A namespace no task uses any more (released meanwhile) stays forgotten.
            if !state.tasks.values().any(|t| &t.namespace == ns) {
                continue;
            }
            let cleaned = clean_routes(ns, &routes);
            if state.routes.get(ns) != Some(&cleaned) {
                state.routes.insert(ns.clone(), cleaned);
                changed = true;
            }
        }
        if changed && let Err(e) = self.apply(&mut state).await {
            tracing::warn!(error = %e, "could not apply new Service Connect routes");
        }
    }

    /// Brings the node in line with `state.routes`: alias addresses (persisted, then on
    /// `lo`), the proxy, and every task's hosts file whose content changed.
    async fn apply(&self, state: &mut State) -> Result<(), ServiceConnectError> {
        // Addresses: free those of aliases gone, give the new ones theirs.
        let proxied: Vec<ServiceConnectRoute> =
            proxied_routes(&state.routes).into_iter().cloned().collect();
        let before = state.addresses.clone();
        let keep: BTreeSet<AliasKey> = proxied
            .iter()
            .map(|r| (r.namespace.clone(), r.dns_name.clone()))
            .collect();
        let in_grace = Instant::now() < state.unclaimed_until;
        if !in_grace {
            state.claimed.clear();
        }
        let claimed = &state.claimed;
        state
            .addresses
            .retain(|k| keep.contains(k) || (in_grace && !claimed.contains(&k.0)));
        for (namespace, dns_name) in &keep {
            if state.addresses.assign(namespace, dns_name).is_none() {
                tracing::warn!(namespace, dns_name, range = %self.range, "no alias address left for a Service Connect alias (--service-connect-cidr)");
            }
        }
        if state.addresses != before {
            let (addresses, dir) = (state.addresses.clone(), self.data_dir.clone());
            blocking(move || addresses.save(&dir).map_err(|e| e.to_string())).await?;
        }
        let wanted = state.addresses.addresses();
        if state.on_loopback.as_ref() != Some(&wanted) {
            if !self.range.network().is_loopback() {
                let (range, wanted) = (self.range, wanted.clone());
                blocking(move || {
                    network::address::sync_loopback_addresses(range, &wanted)
                        .map_err(|e| e.to_string())
                })
                .await?;
            }
            state.on_loopback = Some(wanted);
        }

        // The proxy.
        let refs: Vec<&ServiceConnectRoute> = proxied.iter().collect();
        let config = lb_config(&refs, &state.addresses);
        if state.applied.as_ref() != Some(&config) {
            let applied = update_proxy(&mut state.proxy, config);
            state.applied = Some(applied);
        }

        // Hosts files, rewritten in place where they changed.
        let contents: BTreeMap<String, String> = state
            .tasks
            .values()
            .map(|t| t.namespace.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|ns| {
                let content = hosts_of(state, &ns);
                (ns, content)
            })
            .collect();
        for (task_id, t) in &mut state.tasks {
            let content = &contents[&t.namespace];
            if t.written.is_none() || t.written.as_ref() == Some(content) {
                // Not written yet (ensure_task writes it) or unchanged.
                continue;
            }
            let path = hosts_path(&self.data_dir, task_id);
            match write_in_place(&path, content) {
                Ok(()) => t.written = Some(content.clone()),
                Err(e) => {
                    tracing::warn!(task = %task_id, path = %path.display(), error = %e, "could not rewrite the task's hosts file");
                }
            }
        }
        Ok(())
    }
}

/// The hosts file of a task of `namespace`: its aliases that have an address.
fn hosts_of(state: &State, namespace: &str) -> String {
    let aliases: BTreeMap<String, Ipv4Addr> = state
        .routes
        .get(namespace)
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r.dns_name.clone(),
                state.addresses.get(namespace, &r.dns_name)?,
            ))
        })
        .collect();
    render_hosts(&aliases.into_iter().collect::<Vec<_>>())
}

async fn blocking(
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), ServiceConnectError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
        .map_err(ServiceConnectError::Addresses)
}

/// Most listeners left out of one proxy update because they could not bind.
const MAX_BIND_FAILURES: usize = 8;

/// Applies `config` to the proxy (starting it the first time) and returns what runs. A
/// listener that cannot bind (its address or port taken on the node) is left out, with a
/// warning, so that one bad route does not hold up the others.
fn update_proxy(proxy: &mut Option<lb::Lb>, mut config: lb::LbConfig) -> lb::LbConfig {
    for _ in 0..=MAX_BIND_FAILURES {
        let result = match proxy {
            Some(lb) => lb.update(config.clone()),
            None => lb::Lb::start(config.clone()).map(|lb| {
                *proxy = Some(lb);
            }),
        };
        match result {
            Ok(()) => return config,
            Err(lb::LbError::Bind { addr, source }) => {
                tracing::warn!(%addr, error = %source, "a Service Connect alias cannot listen; left out");
                config.listeners.retain(|l| l.bind != addr);
            }
            Err(e) => {
                tracing::warn!(error = %e, "the Service Connect proxy refused its config");
                break;
            }
        }
    }
    // Nothing changed on the proxy; try again with the next change.
    lb::LbConfig::default()
}
