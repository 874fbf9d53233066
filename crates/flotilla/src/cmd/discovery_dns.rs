//! `flotilla server --dns-listen ADDR`: serves Cloud Map's private DNS namespaces over
//! DNS with the `dns` crate, fed from the control plane.
//!
//! The view comes from `controlplane::ops::servicediscovery::dns::dns_snapshot`; a new
//! snapshot is served after every committed batch that touches a Cloud Map record (and
//! after a lagging change feed, whatever it missed). [`to_snapshot`] is the pure
//! conversion, with the rules where the two models differ:
//! - a namespace name served by several accounts or regions: the first one (in the
//!   view's order) is served, the others are left out;
//! - only services whose name is one DNS label are served (`web`, not `a.web`);
//! - one TTL per service: the A records', else the SRV records';
//! - an instance without an IPv4 address is left out, and so is one without a port in
//!   a service with SRV records;
//! - names that are not DNS labels (`[a-z0-9-]`, 1–63 characters) are left out.
//!
//! A snapshot the server refuses anyway (its own limits) is logged and the previous one
//! keeps being served.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use controlplane::ControlPlane;
use controlplane::ops::servicediscovery::dns::{DiscoveryNamespace, dns_snapshot};
use controlplane::state::{Change, DiscoveryRecord, Record};
use tokio::sync::broadcast::error::RecvError;

/// Whether `s` is one DNS label flotilla serves.
fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The `dns` crate's snapshot of the control plane's view (rules in the module doc).
pub fn to_snapshot(view: &[DiscoveryNamespace]) -> dns::Snapshot {
    let mut seen = BTreeSet::new();
    let mut namespaces = Vec::new();
    for ns in view {
        let name = ns.name.to_ascii_lowercase();
        if !seen.insert(name.clone()) {
            continue;
        }
        let services = ns
            .services
            .iter()
            .filter(|s| is_label(&s.name))
            .filter_map(|s| {
                let mut record_types = Vec::new();
                if s.a_ttl.is_some() {
                    record_types.push(dns::RecordType::A);
                }
                if s.srv_ttl.is_some() {
                    record_types.push(dns::RecordType::Srv);
                }
                let ttl = s.a_ttl.or(s.srv_ttl)?;
                let srv = s.srv_ttl.is_some();
                let instances = s
                    .instances
                    .iter()
                    .filter(|i| is_label(&i.id) && (!srv || i.port.is_some()))
                    .filter_map(|i| {
                        Some(dns::Instance {
                            id: i.id.clone(),
                            ipv4: i.ipv4?,
                            port: i.port,
                            healthy: i.healthy,
                        })
                    })
                    .collect();
                Some(dns::Service {
                    name: s.name.clone(),
                    ttl,
                    record_types,
                    instances,
                })
            })
            .collect();
        namespaces.push(dns::Namespace { name, services });
    }
    dns::Snapshot { namespaces }
}

/// Whether a batch changes what the DNS answers: a namespace, service or instance
/// (not an operation, ECS Anywhere or CloudWatch record, which ride in `Discovery` too).
fn touches_discovery(changes: &[Change]) -> bool {
    changes.iter().any(|c| match c {
        Change::Put(r) | Change::Delete(r) => matches!(
            r,
            Record::Discovery(
                DiscoveryRecord::Namespace(_)
                    | DiscoveryRecord::Service(_)
                    | DiscoveryRecord::Instance(_)
            )
        ),
    })
}

/// Serves the namespaces on `bind` (UDP and TCP) until the process ends; names outside
/// them go to `upstreams` (REFUSED without any). Call inside the server's runtime.
pub async fn serve(
    cp: ControlPlane,
    bind: SocketAddr,
    upstreams: Vec<SocketAddr>,
) -> anyhow::Result<()> {
    let mut changes = cp.watch_changes();
    let snapshot = to_snapshot(&cp.read(dns_snapshot));
    let server = dns::DnsServer::start(bind, &snapshot, upstreams)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve DNS on {bind}: {e}"))?;
    tracing::info!(addr = %server.local_addr(), "serving Cloud Map's private DNS namespaces");
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(batch) if !touches_discovery(&batch) => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
            let snapshot = to_snapshot(&cp.read(dns_snapshot));
            if let Err(e) = server.update(&snapshot) {
                tracing::warn!(error = %e, "the DNS view was refused; the previous one is served");
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use controlplane::ops::servicediscovery::dns::{DiscoveryInstance, DiscoveryService};
    use controlplane::state::Scope;

    use super::*;

    fn instance(id: &str, ip: Option<[u8; 4]>, port: Option<u16>) -> DiscoveryInstance {
        DiscoveryInstance {
            id: id.into(),
            ipv4: ip.map(Ipv4Addr::from),
            port,
            healthy: true,
        }
    }

    fn namespace(account: &str, name: &str, services: Vec<DiscoveryService>) -> DiscoveryNamespace {
        DiscoveryNamespace {
            scope: Scope::new(account, "us-east-1"),
            id: format!("ns-{account}"),
            name: name.into(),
            soa_ttl: None,
            services,
        }
    }

    #[test]
    fn the_view_becomes_a_snapshot_the_dns_server_accepts() {
        let web = DiscoveryService {
            id: "srv-1".into(),
            name: "web".into(),
            a_ttl: Some(30),
            srv_ttl: Some(60),
            weighted: false,
            instances: vec![
                instance("task-1", Some([10, 0, 0, 1]), Some(8080)),
                instance("task-2", None, Some(8080)),
                instance("task-3", Some([10, 0, 0, 3]), None),
                instance("Task_4", Some([10, 0, 0, 4]), Some(8080)),
            ],
        };
        let nested = DiscoveryService {
            id: "srv-2".into(),
            name: "a.b".into(),
            a_ttl: Some(30),
            srv_ttl: None,
            weighted: false,
            instances: vec![instance("x", Some([10, 0, 0, 9]), None)],
        };
        let view = vec![
            namespace("111111111111", "corp.local", vec![web, nested]),
            namespace("222222222222", "corp.local", vec![]),
        ];
        let s = to_snapshot(&view);
        assert_eq!(s.namespaces.len(), 1, "one corp.local");
        let [service] = &s.namespaces[0].services[..] else {
            panic!("only the one-label service: {s:?}")
        };
        assert_eq!(service.ttl, 30);
        assert_eq!(
            service.record_types,
            [dns::RecordType::A, dns::RecordType::Srv]
        );
        let ids: Vec<&str> = service.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            ["task-1"],
            "no address, no port for SRV, not a label: left out"
        );
        dns::Zone::new(&s, 1).expect("the server accepts it");
    }
}
