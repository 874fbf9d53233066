//! The view of Cloud Map that flotilla's DNS server is fed: plain data, no wire shapes.

use model::wire_sd::{NamespaceType, RecordType, RoutingPolicy};

use super::instances::{AWS_INSTANCE_IPV4, AWS_INSTANCE_PORT, health_of};
use crate::state::{Scope, State};

/// A private DNS namespace: the zone its services are served in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryNamespace {
    /// Account and region it belongs to.
    pub scope: Scope,
    /// `ns-…`.
    pub id: String,
    /// The zone name, e.g. `corp.local` (no trailing dot).
    pub name: String,
    /// The SOA TTL (negative caching), when one was given.
    pub soa_ttl: Option<u32>,
    /// Its services with DNS records, in id order.
    pub services: Vec<DiscoveryService>,
}

/// A service of a private DNS namespace, served as `<name>.<namespace>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryService {
    /// `srv-…`.
    pub id: String,
    /// The service name (the label(s) before the namespace name).
    pub name: String,
    /// The TTL of its A records, when it has A records.
    pub a_ttl: Option<u32>,
    /// The TTL of its SRV records, when it has SRV records.
    pub srv_ttl: Option<u32>,
    /// `WEIGHTED` (answer one record) rather than `MULTIVALUE` (answer up to eight).
    pub weighted: bool,
    /// Its instances, in id order: all of them, healthy or not (the server answers
    /// the healthy ones, or all when none is healthy, as Route 53 does).
    pub instances: Vec<DiscoveryInstance>,
}

/// A registered instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryInstance {
    /// The instance id (an SRV target is `<id>.<service>.<namespace>`).
    pub id: String,
    /// `AWS_INSTANCE_IPV4`, when it is an address.
    pub ipv4: Option<std::net::Ipv4Addr>,
    /// `AWS_INSTANCE_PORT`, when it is a port.
    pub port: Option<u16>,
    /// Whether it counts as healthy (custom health HEALTHY, or no health check at all).
    pub healthy: bool,
}

fn ttl(t: i64) -> u32 {
    u32::try_from(t.max(0)).unwrap_or(u32::MAX)
}

/// Every private DNS namespace of every scope, with its DNS services (those with A or
/// SRV records) and their instances. HTTP namespaces and HTTP-only services are left out.
pub fn dns_snapshot(state: &State) -> Vec<DiscoveryNamespace> {
    let d = &state.discovery;
    let mut out: Vec<DiscoveryNamespace> = d
        .namespaces
        .values()
        .filter(|n| n.namespace.r#type == Some(NamespaceType::DnsPrivate))
        .map(|n| DiscoveryNamespace {
            scope: n.scope.clone(),
            id: n.id.clone(),
            name: n.namespace.name.clone().unwrap_or_default(),
            soa_ttl: n
                .namespace
                .properties
                .as_ref()
                .and_then(|p| p.dns_properties.as_ref())
                .and_then(|p| p.soa.as_ref())
                .and_then(|s| s.ttl)
                .map(ttl),
            services: Vec::new(),
        })
        .collect();
    for s in d.services.values() {
        let Some(dns) = &s.service.dns_config else {
            continue;
        };
        let Some(ns) = out.iter_mut().find(|n| {
            n.scope == s.scope && Some(n.id.as_str()) == s.service.namespace_id.as_deref()
        }) else {
            continue;
        };
        let records = dns.dns_records.as_deref().unwrap_or(&[]);
        let ttl_of = |t: RecordType| {
            records
                .iter()
                .find(|r| r.r#type == Some(t))
                .and_then(|r| r.ttl)
                .map(ttl)
        };
        let (a_ttl, srv_ttl) = (ttl_of(RecordType::A), ttl_of(RecordType::Srv));
        if a_ttl.is_none() && srv_ttl.is_none() {
            continue;
        }
        let instances = d
            .instances_of(&s.scope, &s.id, None)
            .map(|i| {
                let attr = |k: &str| {
                    i.instance
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get(k).cloned())
                };
                DiscoveryInstance {
                    id: i.id.clone(),
                    ipv4: attr(AWS_INSTANCE_IPV4).and_then(|v| v.parse().ok()),
                    port: attr(AWS_INSTANCE_PORT).and_then(|v| v.parse().ok()),
                    healthy: health_of(i) != model::wire_sd::HealthStatus::Unhealthy,
                }
            })
            .collect();
        ns.services.push(DiscoveryService {
            id: s.id.clone(),
            name: s.service.name.clone().unwrap_or_default(),
            a_ttl,
            srv_ttl,
            weighted: dns.routing_policy == Some(RoutingPolicy::Weighted),
            instances,
        });
    }
    out
}
