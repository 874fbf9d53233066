//! Routes → proxy: the control plane's routes cleaned, and turned into the node
//! proxy's [`lb::LbConfig`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use model::agent::ServiceConnectRoute;
use model::wire::ApplicationProtocol;

use super::{AliasAddresses, MAX_ENDPOINTS_PER_ROUTE, MAX_ROUTES_PER_NODE, valid_dns_name};

/// A namespace's routes, cleaned: only those of `namespace`, with a valid name and port,
/// one per (name, port), in (name, port) order, with at most [`MAX_ENDPOINTS_PER_ROUTE`]
/// distinct, parseable endpoints each.
pub fn clean_routes(namespace: &str, routes: &[ServiceConnectRoute]) -> Vec<ServiceConnectRoute> {
    let mut out: BTreeMap<(String, u16), ServiceConnectRoute> = BTreeMap::new();
    for r in routes {
        if r.namespace != namespace || r.port == 0 || !valid_dns_name(&r.dns_name) {
            continue;
        }
        let mut seen = BTreeSet::new();
        let endpoints = r
            .endpoints
            .iter()
            .filter(|e| e.port != 0 && e.address.parse::<IpAddr>().is_ok())
            .filter(|e| seen.insert((e.address.clone(), e.port)))
            .take(MAX_ENDPOINTS_PER_ROUTE)
            .cloned()
            .collect();
        out.entry((r.dns_name.clone(), r.port))
            .or_insert_with(|| ServiceConnectRoute {
                endpoints,
                ..r.clone()
            });
    }
    out.into_values().collect()
}

/// The routes the node proxies: those of every namespace in `routes`, in (namespace,
/// name, port) order, the first [`MAX_ROUTES_PER_NODE`].
pub(super) fn proxied_routes(
    routes: &BTreeMap<String, Vec<ServiceConnectRoute>>,
) -> Vec<&ServiceConnectRoute> {
    let all: Vec<&ServiceConnectRoute> = routes.values().flatten().collect();
    if all.len() > MAX_ROUTES_PER_NODE {
        tracing::warn!(
            routes = all.len(),
            "more Service Connect routes than the node proxies ({MAX_ROUTES_PER_NODE}); the rest are left out"
        );
    }
    all.into_iter().take(MAX_ROUTES_PER_NODE).collect()
}

/// A stable target group name for a route (FNV-1a of namespace, name and port): the
/// proxy keys its per-endpoint state (ejections) by group, so it must not change when
/// other routes come and go.
pub(super) fn group_name(route: &ServiceConnectRoute) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in route
        .namespace
        .bytes()
        .chain([0])
        .chain(route.dns_name.bytes())
        .chain([0])
        .chain(route.port.to_be_bytes())
    {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("sc-{hash:016x}")
}

/// How the proxy serves an alias whose port mapping has `app_protocol`: the listener's
/// protocol and the endpoints' HTTP version. Per request for `http` (HTTP/1.1 to the
/// endpoints), `http2` and `grpc` (HTTP/2 cleartext to the endpoints, trailers passed
/// through); per connection (the bytes copied both ways) for a port with none, which ECS
/// treats as TCP.
pub(super) fn proxying(
    app_protocol: Option<ApplicationProtocol>,
) -> (lb::ListenerProtocol, lb::ProtocolVersion) {
    match app_protocol {
        Some(ApplicationProtocol::Http) => (lb::ListenerProtocol::Http, lb::ProtocolVersion::Http1),
        Some(ApplicationProtocol::Http2) => {
            (lb::ListenerProtocol::Http, lb::ProtocolVersion::Http2)
        }
        // No active checks here, so `Grpc` (gRPC health checks) would change nothing.
        Some(ApplicationProtocol::Grpc) => (lb::ListenerProtocol::Http, lb::ProtocolVersion::Http2),
        None => (lb::ListenerProtocol::Tcp, lb::ProtocolVersion::Http1),
    }
}

/// The proxy's config for `routes` (each with an address in `addresses`; the others are
/// left out): one listener per (alias address, port), forwarding to a group of the
/// route's endpoints with no active health check and outlier detection.
pub fn lb_config(routes: &[&ServiceConnectRoute], addresses: &AliasAddresses) -> lb::LbConfig {
    let mut config = lb::LbConfig::default();
    for r in routes {
        let Some(ip) = addresses.get(&r.namespace, &r.dns_name) else {
            continue;
        };
        let name = group_name(r);
        if config.target_groups.contains_key(&name) {
            continue;
        }
        let targets = r
            .endpoints
            .iter()
            .filter_map(|e| Some(SocketAddr::new(e.address.parse::<IpAddr>().ok()?, e.port)));
        let (protocol, version) = proxying(r.app_protocol);
        let mut group = lb::TargetGroupConfig::new(targets);
        group.protocol_version = version;
        group.health_check.enabled = false;
        group.deregistration_delay_secs = 0;
        group.outlier_detection = Some(lb::OutlierDetection::default());
        config.target_groups.insert(name.clone(), group);
        config.listeners.push(lb::ListenerConfig {
            tls: None,
            bind: SocketAddr::new(IpAddr::V4(ip), r.port),
            protocol,
            rules: Vec::new(),
            default_action: lb::Action::forward(name),
        });
    }
    config
}
