//! The agent's main loop: register, then long-poll the assignment and reconcile.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use model::agent::{MAX_WAIT_SECONDS, PollTasksRequest, TaskAssignment};
use model::wire;
use runtime::ContainerRuntime;
use runtime::types::{GcPolicy, PullPolicy};
use tokio::sync::watch;

use crate::client::Client;
use crate::client::Credentials;
use crate::error::{AgentError, ApiCode};
use crate::host::HostInfo;
use crate::local_state::LocalState;
use crate::plan::{Action, Observed, plan};
use crate::service_connect::ServiceConnect;
use crate::supervisor::{Shared, supervise};

/// The agent's version, reported in `versionInfo`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Control plane URL.
    pub endpoint: String,
    /// Region to act in.
    pub region: String,
    /// The key every request is SigV4-signed with.
    pub credentials: Credentials,
    /// Cluster name.
    pub cluster: String,
    /// Where the agent keeps its state.
    pub data_dir: PathBuf,
    /// Custom attributes.
    pub attributes: BTreeMap<String, String>,
    /// Memory kept for the host (MiB).
    pub reserved_memory_mib: i64,
    /// Overrides the node's instance id (tests run several agents on one machine).
    pub instance_id: Option<String>,
    /// Stop timeout for containers that set none.
    pub default_stop_timeout: Duration,
    /// Pull behaviour.
    pub pull_policy: PullPolicy,
    /// Stopped containers and unused images are removed after this long.
    pub gc: GcPolicy,
    /// The task subnet of the node's bridge (`--bridge-cidr`, e.g. `172.31.0.0/16`):
    /// `bridge`/`awsvpc`/`none` tasks get real networking (see the `network` crate).
    /// `None` leaves them in a loopback-only namespace (tests with the fake runtime).
    pub bridge_cidr: Option<String>,
    /// The address the node is reached at (`--advertise-ip`), sent as the identity
    /// document's `privateIp`: where load balancers send `instance` targets' traffic.
    /// `None`: the local address of the route to the control plane ([`private_ip`]).
    pub advertise_ip: Option<std::net::IpAddr>,
    /// Name servers for tasks' containers that set no `dnsServers` (`--task-dns`), e.g.
    /// the server's Cloud Map DNS; empty keeps their image's `/etc/resolv.conf`.
    pub task_dns: Vec<std::net::IpAddr>,
    /// Where Service Connect client aliases get their node-local addresses
    /// (`--service-connect-cidr`, default [`crate::service_connect::DEFAULT_CIDR`]); see
    /// [`crate::service_connect`].
    pub service_connect_cidr: network::Ipv4Cidr,
    /// The node's host API socket (`--host-api-socket`, set by `flotilla host boot`):
    /// where the host calls the control plane relays are made (see
    /// [`crate::host_calls`]); `None` answers them with an error.
    pub host_api_socket: Option<PathBuf>,
    /// ECS Anywhere: the SSM activation an external node registers with
    /// (`--activation-id`, `--activation-code`; see [`crate::anywhere`]). Not needed
    /// once the node's credentials are saved in the data directory.
    pub activation: Option<crate::anywhere::Activation>,
}

/// The node's address as the identity document's `privateIp` shows it: `advertise_ip`
/// when given, else the local address of a UDP socket `connect`ed to the control plane
/// endpoint's host (the first, when several are given; connecting a UDP socket only
/// picks the route; no packet is sent).
/// `None` when neither works (the endpoint's host does not resolve, no route).
pub async fn private_ip(
    endpoint: &str,
    advertise_ip: Option<std::net::IpAddr>,
) -> Option<std::net::IpAddr> {
    if advertise_ip.is_some() {
        return advertise_ip;
    }
    let first = endpoint.split(',').next()?.trim();
    let url = reqwest::Url::parse(first).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let server = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let any: std::net::SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(any).await.ok()?;
    socket.connect(server).await.ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

async fn register(
    client: &Client,
    cfg: &AgentConfig,
    host: &HostInfo,
    known_arn: Option<String>,
    external: bool,
) -> Result<String, AgentError> {
    let mut attributes: Vec<wire::Attribute> = cfg
        .attributes
        .iter()
        .map(|(k, v)| wire::Attribute {
            name: Some(k.clone()),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    attributes.push(wire::Attribute {
        name: Some("flotilla.dynamic-port-range".into()),
        value: Some(format!("{}-{}", host.port_range.0, host.port_range.1)),
        ..Default::default()
    });
    attributes.push(wire::Attribute {
        name: Some("ecs.capability.container-health-check".into()),
        ..Default::default()
    });
    let mut doc = serde_json::json!({
        "instanceId": host.instance_id,
        "availabilityZone": cfg.attributes.get("ecs.availability-zone").cloned().unwrap_or_else(|| format!("{}-local", cfg.region)),
        "instanceType": "flotilla-node",
        "region": cfg.region,
    });
    if external {
        // An external machine has no zone or EC2 instance type (as ECS shows it); the
        // control plane sets its instance id to its `mi-` id.
        doc = serde_json::json!({ "instanceId": host.instance_id, "region": cfg.region });
    }
    if let Some(ip) = private_ip(&cfg.endpoint, cfg.advertise_ip).await {
        doc["privateIp"] = ip.to_string().into();
    }
    let req = wire::RegisterContainerInstanceRequest {
        cluster: Some(cfg.cluster.clone()),
        instance_identity_document: Some(doc.to_string()),
        total_resources: Some(host.resources()),
        version_info: Some(wire::VersionInfo {
            agent_version: Some(AGENT_VERSION.into()),
            agent_hash: None,
            docker_version: Some("containerd".into()),
        }),
        container_instance_arn: known_arn,
        attributes: Some(attributes),
        ..Default::default()
    };
    let ci = client.register(&req).await?;
    ci.container_instance_arn
        .ok_or_else(|| AgentError::ControlPlane("registration returned no ARN".into()))
}

/// Runs the agent until `shutdown` resolves. Tasks keep running when the agent stops;
/// the next start adopts them.
pub async fn run(
    cfg: AgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let client = Client::new(&cfg.endpoint, &cfg.region, cfg.credentials.clone())?;
    tokio::pin!(shutdown);
    // ECS Anywhere: an external node signs with its own key (see `crate::anywhere`).
    let node = tokio::select! {
        () = &mut shutdown => return Ok(()),
        r = external_identity(&client, &cfg) => r?,
    };
    let mut local = LocalState::load(&cfg.data_dir)?;
    if local.cluster.as_deref().is_some_and(|c| c != cfg.cluster) {
        local.container_instance_arn = None;
    }
    let instance_id = node
        .as_ref()
        .map(|n| n.managed_instance_id.clone())
        .or_else(|| cfg.instance_id.clone());
    let host = HostInfo::probe(cfg.reserved_memory_mib, instance_id.as_deref());
    let network = open_task_networks(&cfg, &local).await?;

    // Register (retrying while the control plane is unreachable).
    let mut backoff = Duration::from_millis(200);
    let arn = loop {
        let attempt = register(
            &client,
            &cfg,
            &host,
            local.container_instance_arn.clone(),
            node.is_some(),
        );
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = attempt => match r {
                Ok(arn) => break arn,
                Err(AgentError::Api { code: ApiCode::InvalidParameter, message }) if local.container_instance_arn.is_some() => {
                    tracing::warn!(%message, "the control plane no longer knows this instance; registering anew");
                    local.container_instance_arn = None;
                }
                Err(e) if node.is_some() && crate::anywhere::is_refusal(&e) => {
                    return Err(node_refused(&cfg, node.as_ref(), &e));
                }
                Err(e @ AgentError::Api { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register yet; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    };
    local.container_instance_arn = Some(arn.clone());
    local.cluster = Some(cfg.cluster.clone());
    local.save(&cfg.data_dir)?;
    tracing::info!(instance = %arn, cluster = %cfg.cluster, cpu = host.cpu_units, memory = host.memory_mib, "registered");

    let live_tasks: BTreeSet<String> = local
        .tasks
        .keys()
        .map(|arn| crate::supervisor::task_id(arn).to_owned())
        .collect();
    crate::service_connect::remove_hosts_except(&cfg.data_dir, &live_tasks);
    let routes = crate::service_connect::ControlPlaneRoutes {
        client: client.clone(),
        cluster: cfg.cluster.clone(),
        container_instance: arn.clone(),
    };
    let service_connect = Arc::new(ServiceConnect::new(
        &cfg.data_dir,
        cfg.service_connect_cidr,
        Arc::new(routes),
    )?);
    let refresher = tokio::spawn(service_connect.clone().refresh_loop());
    let rotation = node.clone().map(|n| {
        tokio::spawn(crate::anywhere::rotation_loop(
            client.clone(),
            cfg.data_dir.clone(),
            n,
        ))
    });
    let mut refused = None;

    let shared = Arc::new(Shared {
        client: client.clone(),
        runtime: runtime.clone(),
        cluster: cfg.cluster.clone(),
        data_dir: cfg.data_dir.clone(),
        state: Mutex::new(local),
        save_order: tokio::sync::Mutex::new(()),
        default_stop_timeout: cfg.default_stop_timeout,
        pull_policy: cfg.pull_policy,
        pull_locks: Mutex::default(),
        network,
        task_dns: cfg.task_dns.clone(),
        service_connect,
    });
    let mut supervisors: BTreeMap<String, (watch::Sender<bool>, tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    let mut digest: Option<String> = None;
    // The tasks of the last full answer (a brief one says they still hold).
    let mut assignment: Vec<TaskAssignment> = Vec::new();
    let mut last_gc = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(200);
    let log_reads = Arc::new(tokio::sync::Semaphore::new(
        crate::logs::MAX_CONCURRENT_READS,
    ));
    let host_calls = Arc::new(tokio::sync::Semaphore::new(
        crate::host_calls::MAX_CONCURRENT_CALLS,
    ));
    loop {
        supervisors.retain(|_, (_, h)| !h.is_finished());
        let req = PollTasksRequest {
            cluster: Some(cfg.cluster.clone()),
            container_instance: Some(arn.clone()),
            known_digest: digest.clone(),
            wait_seconds: Some(MAX_WAIT_SECONDS),
            omit_unchanged: Some(true),
        };
        let resp = tokio::select! {
            () = &mut shutdown => break,
            r = client.poll_tasks(&req) => r,
        };
        let current = match resp {
            Ok(r) => {
                backoff = Duration::from_millis(200);
                for request in r.log_requests {
                    crate::logs::spawn_answer(&shared, &arn, request, &log_reads);
                }
                for request in r.host_requests {
                    crate::host_calls::spawn_answer(
                        &client,
                        &cfg.cluster,
                        &arn,
                        cfg.host_api_socket.clone(),
                        request,
                        &host_calls,
                    );
                }
                // A brief answer (`unchanged`): the assignment is the last full one's.
                if !r.unchanged || digest.is_none() {
                    assignment = r.tasks;
                }
                digest = Some(r.digest);
                &assignment
            }
            Err(e) if node.is_some() && crate::anywhere::is_refusal(&e) => {
                refused = Some(e);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "poll failed; retrying in {backoff:?}");
                digest = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        reconcile(&shared, current, &mut supervisors);
        if last_gc.elapsed() > Duration::from_secs(60) {
            last_gc = tokio::time::Instant::now();
            match runtime.garbage_collect(&cfg.gc, SystemTime::now()).await {
                Ok(report) if !report.containers.is_empty() || !report.images.is_empty() => {
                    tracing::info!(
                        containers = report.containers.len(),
                        images = report.images.len(),
                        "garbage collected"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
            }
        }
    }
    for (_, (_, handle)) in supervisors {
        handle.abort();
    }
    refresher.abort();
    if let Some(rotation) = rotation {
        rotation.abort();
    }
    if let Some(e) = refused {
        return Err(node_refused(&cfg, node.as_ref(), &e));
    }
    tracing::info!("agent stopping; tasks keep running and will be adopted by the next agent");
    Ok(())
}

/// An external node's identity (saved, or got with its activation, retrying while the
/// control plane is unreachable); `None` for an ordinary node.
async fn external_identity(
    client: &Client,
    cfg: &AgentConfig,
) -> Result<Option<crate::anywhere::NodeIdentity>, AgentError> {
    let mut backoff = Duration::from_millis(200);
    let node = loop {
        match crate::anywhere::identity(client, &cfg.data_dir, cfg.activation.as_ref()).await {
            Ok(node) => break node,
            Err(e @ (AgentError::Api { .. } | AgentError::State { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot register with the activation yet; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    if let Some(n) = &node {
        if n.region != cfg.region {
            return Err(AgentError::ControlPlane(format!(
                "this node ({}) was registered in {}; run the agent with --region {}",
                n.managed_instance_id, n.region, n.region
            )));
        }
        client.set_credentials(n.credentials());
    }
    Ok(node)
}

/// The error an external node exits with once its key is refused: a key the control
/// plane no longer knows (its instance was deregistered, or the key expired) is
/// removed from the data directory, so that the node can join again with a new
/// activation.
fn node_refused(
    cfg: &AgentConfig,
    node: Option<&crate::anywhere::NodeIdentity>,
    e: &AgentError,
) -> AgentError {
    let mi = node.map_or("?", |n| n.managed_instance_id.as_str());
    let unknown = matches!(e, AgentError::Api { code: ApiCode::Other(c), .. } if c == "UnrecognizedClientException");
    if unknown {
        let _ = std::fs::remove_file(crate::anywhere::credentials_path(&cfg.data_dir));
    }
    AgentError::ControlPlane(format!(
        "the control plane refused the credentials of external node {mi} ({e}); it was deregistered or its key expired{}",
        if unknown {
            "; its saved credentials were removed: join again with a new activation (--activation-id, --activation-code)"
        } else {
            ""
        }
    ))
}

fn reconcile(
    shared: &Arc<Shared>,
    assignment: &[TaskAssignment],
    supervisors: &mut BTreeMap<String, (watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
) {
    let recorded: BTreeSet<String> = shared
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .tasks
        .keys()
        .cloned()
        .collect();
    let observed = Observed {
        supervised: supervisors
            .iter()
            .map(|(k, (tx, _))| (k.clone(), *tx.borrow()))
            .collect(),
        recorded,
    };
    for action in plan(assignment, &observed) {
        match action {
            Action::Start(arn) | Action::Adopt(arn) if supervisors.contains_key(&arn) => {}
            Action::Start(arn) => spawn(shared, assignment, &arn, false, supervisors),
            Action::Adopt(arn) => spawn(shared, assignment, &arn, true, supervisors),
            Action::Stop(arn) => {
                if let Some((tx, _)) = supervisors.get(&arn) {
                    let _ = tx.send(true);
                }
            }
            Action::Forget(arn) => {
                // A task the control plane stopped while this agent was down (its node
                // "rebooted", say) still has networking recorded: remove it, or its
                // stale DNAT rules would shadow the next task given the same host port.
                let shared = shared.clone();
                tokio::spawn(async move {
                    let forgotten = shared.update_state(|s| {
                        s.tasks.remove(&arn);
                    });
                    if let Err(e) = forgotten.await {
                        tracing::warn!(task = %arn, error = %e, "could not forget the task");
                    }
                    crate::task_network::teardown(&shared, crate::supervisor::task_id(&arn)).await;
                });
            }
        }
    }
}

fn spawn(
    shared: &Arc<Shared>,
    assignment: &[TaskAssignment],
    arn: &str,
    adopt: bool,
    supervisors: &mut BTreeMap<String, (watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
) {
    let Some(a) = assignment
        .iter()
        .find(|a| a.task.task_arn.as_deref() == Some(arn))
        .cloned()
    else {
        return;
    };
    let wants_stop = a.task.desired() != Some(model::lifecycle::TaskStatus::Running);
    let (tx, rx) = watch::channel(wants_stop);
    let handle = tokio::spawn(supervise(shared.clone(), a, adopt, rx));
    supervisors.insert(arn.to_owned(), (tx, handle));
}

/// Opens the node's task networking (when configured) and removes what belongs to tasks
/// the node no longer holds: after a `kill -9`, the recorded tasks are adopted with their
/// networking intact, and everything else goes.
async fn open_task_networks(
    cfg: &AgentConfig,
    local: &LocalState,
) -> Result<Option<Arc<network::TaskNetworks>>, AgentError> {
    let Some(cidr) = &cfg.bridge_cidr else {
        return Ok(None);
    };
    let mut net = network::NetworkConfig::new(&cfg.data_dir);
    net.subnet = cidr
        .parse()
        .map_err(|e| AgentError::Network(format!("--bridge-cidr {e}")))?;
    let networks = tokio::task::spawn_blocking(move || network::TaskNetworks::open(net))
        .await
        .map_err(|e| AgentError::Network(e.to_string()))?
        .map_err(|e| AgentError::Network(e.to_string()))?;
    let networks = Arc::new(networks);
    let live = local
        .tasks
        .keys()
        .map(|arn| crate::supervisor::task_id(arn).to_owned())
        .collect();
    crate::task_network::cleanup_except(networks.clone(), live).await;
    Ok(Some(networks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_private_ip_is_the_route_to_the_control_plane_unless_advertised() {
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        assert_eq!(
            private_ip("http://127.0.0.1:8080", None).await,
            Some(loopback)
        );
        let advertised = std::net::IpAddr::from([10, 1, 2, 3]);
        assert_eq!(
            private_ip("http://127.0.0.1:8080", Some(advertised)).await,
            Some(advertised)
        );
        assert_eq!(private_ip("not a url", None).await, None);
    }
}
