//! The zone: what the DNS server knows and the pure rules that turn a question into an answer.
//!
//! This module owns the input shape ([`Snapshot`]: namespaces → services → instances, the
//! subset of AWS Cloud Map that ECS service discovery uses), its validation ([`Zone::new`]) and
//! [`Zone::answer`], which maps `(qname, qtype)` to an [`Answer`]. No IO, no clock.
//!
//! # The rules (following Cloud Map's DNS behaviour)
//!
//! * A service `web` in namespace `corp.local` is the name `web.corp.local`.
//! * `A web.corp.local` → one A record per selected instance, with the service's TTL
//!   (only when the service has [`RecordType::A`]).
//! * `SRV web.corp.local` → one `SRV 1 1 <port> <instance-id>.web.corp.local` per selected
//!   instance (Cloud Map uses the service name itself for SRV, not `_web._tcp…`, and
//!   priority 1, weight 1), with the A record of each target in the additional section (only
//!   when the service has [`RecordType::Srv`]).
//! * `A <instance-id>.web.corp.local` → that instance's address, whatever its health (it is the
//!   target of an SRV record that may have been cached); it exists when the service has SRV.
//! * *Selected instances* are the healthy ones; when **no** instance is healthy, Cloud Map
//!   returns the unhealthy ones instead (ECS developer guide, `service-discovery.md`: "if all
//!   are unhealthy, up to 8 unhealthy records are returned"), and so do we. A service with no
//!   instance at all answers NOERROR with no records (NODATA).
//! * Cloud Map caps a MULTIVALUE answer at 8 records chosen at random; flotilla returns every
//!   selected instance (at most [`MAX_INSTANCES_PER_SERVICE`]) in a stable order, and the
//!   server sets TC when the answer does not fit the client's UDP size so it retries over TCP.
//! * Any other type at an existing name, and any type at the namespace apex except SOA →
//!   NOERROR/NODATA with the namespace's SOA in the authority section.
//! * A name inside a namespace that matches none of the above → NXDOMAIN with the SOA in the
//!   authority section (RFC 2308). Negative answers are cached for [`NEGATIVE_TTL`] seconds,
//!   short on purpose: a service created a moment later must become visible quickly.
//! * A name outside every namespace → [`Answer::Foreign`]: the server forwards it (or answers
//!   REFUSED when it has no upstream). Classes other than IN inside a namespace → REFUSED.
//! * Names compare case-insensitively (RFC 4343).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as WireType};

/// Most namespaces one snapshot may hold.
pub const MAX_NAMESPACES: usize = 100;
/// Most services one namespace may hold.
pub const MAX_SERVICES_PER_NAMESPACE: usize = 1_000;
/// Most instances one service may hold (ECS: at most 1,000 tasks per service with service
/// discovery).
pub const MAX_INSTANCES_PER_SERVICE: usize = 1_000;
/// Longest DNS label (RFC 1035); service names and instance ids are single labels.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest namespace name in presentation form, so that `<instance>.<service>.<namespace>`
/// always fits in 253 characters.
pub const MAX_NAMESPACE_LEN: usize = 253 - 2 * (MAX_LABEL_LEN + 1);
/// Largest TTL (RFC 2181 §8; Cloud Map accepts the same range).
pub const MAX_TTL: u32 = 2_147_483_647;
/// TTL of the SOA record and of negative answers (its `minimum` field), in seconds.
pub const NEGATIVE_TTL: u32 = 15;

/// What the server serves: every namespace with its services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The namespaces; their names must not overlap (none is inside another).
    pub namespaces: Vec<Namespace>,
}

/// A Cloud Map private DNS namespace, e.g. `corp.local`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// The domain, without trailing dot, e.g. `corp.local`.
    pub name: String,
    /// Its services.
    pub services: Vec<Service>,
}

/// A Cloud Map service: a name in its namespace and the instances behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// One DNS label, e.g. `web` for `web.corp.local`.
    pub name: String,
    /// TTL of its records, in seconds.
    pub ttl: u32,
    /// Which records it has: A, SRV or both (at least one).
    pub record_types: Vec<RecordType>,
    /// Its registered instances, healthy or not.
    pub instances: Vec<Instance>,
}

/// A Cloud Map `DnsRecord` type flotilla serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// An IPv4 address per instance.
    A,
    /// A port and target name per instance.
    Srv,
}

/// One registered instance (an ECS task).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// One DNS label, unique in its service; the SRV target is `<id>.<service>.<namespace>`.
    pub id: String,
    /// The task's private address.
    pub ipv4: Ipv4Addr,
    /// The port SRV records carry; required when the service has SRV records.
    pub port: Option<u16>,
    /// Whether its health checks pass.
    pub healthy: bool,
}

/// Why a snapshot cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZoneError {
    /// A name is not a valid DNS name of the expected shape.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A count limit is exceeded.
    #[error("{what}: {count} exceeds the limit of {limit}")]
    TooMany {
        /// What is counted.
        what: String,
        /// How many there are.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A name appears twice where it must be unique.
    #[error("duplicate name {0:?}")]
    Duplicate(String),
    /// Two namespaces overlap (one is inside the other).
    #[error("namespace {0:?} overlaps namespace {1:?}")]
    Overlap(String, String),
    /// A service is misconfigured.
    #[error("service {service:?}: {reason}")]
    InvalidService {
        /// The service's full name.
        service: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The answer to one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The name is outside every namespace: not ours to answer.
    Foreign,
    /// The name is ours; this is the authoritative reply.
    Local(Reply),
}

/// An authoritative reply: response code and the three record sections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// NOERROR, NXDOMAIN or REFUSED.
    pub rcode: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the SOA, for negative answers).
    pub authority: Vec<Record>,
    /// The additional section (A records of SRV targets).
    pub additionals: Vec<Record>,
}

/// A validated, indexed snapshot: what [`Zone::answer`] reads.
#[derive(Debug, Default)]
pub struct Zone {
    namespaces: Vec<NamespaceIndex>,
    names: HashMap<Name, Node>,
}

#[derive(Debug)]
struct NamespaceIndex {
    apex: Name,
    soa: Record,
}

/// What lives at one name.
#[derive(Debug)]
enum Node {
    Apex,
    Service {
        a: Option<Vec<Record>>,
        srv: Option<(Vec<Record>, Vec<Record>)>,
    },
    Target(Record),
}

impl Zone {
    /// Validates `snapshot` against the documented limits and indexes it; `serial` becomes the
    /// SOA serial (bump it on every change).
    pub fn new(snapshot: &Snapshot, serial: u32) -> Result<Self, ZoneError> {
        check_count("namespaces", snapshot.namespaces.len(), MAX_NAMESPACES)?;
        let mut zone = Zone::default();
        for ns in &snapshot.namespaces {
            let apex = namespace_name(&ns.name)?;
            for other in &zone.namespaces {
                if other.apex.zone_of(&apex) || apex.zone_of(&other.apex) {
                    return Err(ZoneError::Overlap(ns.name.clone(), other.apex.to_string()));
                }
            }
            check_count(
                &format!("services in {}", ns.name),
                ns.services.len(),
                MAX_SERVICES_PER_NAMESPACE,
            )?;
            let soa = soa_record(&apex, serial);
            zone.names.insert(apex.clone(), Node::Apex);
            for service in &ns.services {
                zone.add_service(&apex, service)?;
            }
            zone.namespaces.push(NamespaceIndex { apex, soa });
        }
        Ok(zone)
    }

    fn add_service(&mut self, apex: &Name, service: &Service) -> Result<(), ZoneError> {
        let name = child(apex, &service.name)?;
        let full = name.to_string();
        let invalid = |reason| ZoneError::InvalidService {
            service: full.clone(),
            reason,
        };
        if service.record_types.is_empty() {
            return Err(invalid("needs at least one record type (A or SRV)"));
        }
        if service.ttl > MAX_TTL {
            return Err(invalid("TTL above 2147483647"));
        }
        check_count(
            &format!("instances of {full}"),
            service.instances.len(),
            MAX_INSTANCES_PER_SERVICE,
        )?;
        let has_srv = service.record_types.contains(&RecordType::Srv);
        let any_healthy = service.instances.iter().any(|i| i.healthy);
        let selected: Vec<&Instance> = service
            .instances
            .iter()
            .filter(|i| i.healthy || !any_healthy)
            .collect();
        let a_of = |owner: &Name, ip: Ipv4Addr| {
            Record::from_rdata(owner.clone(), service.ttl, RData::A(A(ip)))
        };
        let mut targets = Vec::new();
        for instance in &service.instances {
            let target = child(&name, &instance.id)?;
            if has_srv && instance.port.is_none() {
                return Err(invalid("an SRV service needs a port on every instance"));
            }
            if self.names.contains_key(&target) || targets.iter().any(|(t, _)| *t == target) {
                return Err(ZoneError::Duplicate(target.to_string()));
            }
            targets.push((target, instance));
        }
        let a = service
            .record_types
            .contains(&RecordType::A)
            .then(|| selected.iter().map(|i| a_of(&name, i.ipv4)).collect());
        let srv = has_srv.then(|| {
            let mut answers = Vec::new();
            let mut additionals = Vec::new();
            for (target, instance) in &targets {
                if !selected.iter().any(|s| std::ptr::eq(*s, *instance)) {
                    continue;
                }
                let port = instance.port.unwrap_or_default();
                let srv = SRV::new(1, 1, port, target.clone());
                answers.push(Record::from_rdata(
                    name.clone(),
                    service.ttl,
                    RData::SRV(srv),
                ));
                additionals.push(a_of(target, instance.ipv4));
            }
            (answers, additionals)
        });
        if self.names.contains_key(&name) {
            return Err(ZoneError::Duplicate(full));
        }
        self.names.insert(name, Node::Service { a, srv });
        if has_srv {
            for (target, instance) in targets {
                let record = a_of(&target, instance.ipv4);
                self.names.insert(target, Node::Target(record));
            }
        }
        Ok(())
    }

    /// The namespaces' apex names.
    pub fn apexes(&self) -> impl Iterator<Item = &Name> {
        self.namespaces.iter().map(|ns| &ns.apex)
    }

    /// Every name the zone holds (apexes, services, SRV targets): what a server may
    /// precompute answers for.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.names.keys()
    }

    /// Answers `qtype` at `qname` in class `qclass` (see the module doc for the rules).
    pub fn answer(&self, qname: &Name, qtype: WireType, qclass: DNSClass) -> Answer {
        let qname = qname.to_lowercase();
        let Some(ns) = self.namespaces.iter().find(|ns| ns.apex.zone_of(&qname)) else {
            return Answer::Foreign;
        };
        if qclass != DNSClass::IN {
            return Answer::Local(Reply::empty(ResponseCode::Refused));
        }
        let nodata = || Reply::negative(ResponseCode::NoError, &ns.soa);
        let reply = match self.names.get(&qname) {
            None => Reply::negative(ResponseCode::NXDomain, &ns.soa),
            Some(Node::Apex) if qtype == WireType::SOA => Reply {
                answers: vec![ns.soa.clone()],
                ..Reply::empty(ResponseCode::NoError)
            },
            Some(Node::Apex) => nodata(),
            Some(Node::Service { a, srv }) => match (qtype, a, srv) {
                (WireType::A, Some(a), _) if !a.is_empty() => Reply {
                    answers: a.clone(),
                    ..Reply::empty(ResponseCode::NoError)
                },
                (WireType::SRV, _, Some((answers, additionals))) if !answers.is_empty() => Reply {
                    answers: answers.clone(),
                    additionals: additionals.clone(),
                    ..Reply::empty(ResponseCode::NoError)
                },
                _ => nodata(),
            },
            Some(Node::Target(record)) if qtype == WireType::A => Reply {
                answers: vec![record.clone()],
                ..Reply::empty(ResponseCode::NoError)
            },
            Some(Node::Target(_)) => nodata(),
        };
        Answer::Local(reply)
    }
}

impl Reply {
    fn empty(rcode: ResponseCode) -> Self {
        Reply {
            rcode,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }

    fn negative(rcode: ResponseCode, soa: &Record) -> Self {
        Reply {
            authority: vec![soa.clone()],
            ..Reply::empty(rcode)
        }
    }
}

fn check_count(what: &str, count: usize, limit: usize) -> Result<(), ZoneError> {
    if count > limit {
        return Err(ZoneError::TooMany {
            what: what.to_owned(),
            count,
            limit,
        });
    }
    Ok(())
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn namespace_name(name: &str) -> Result<Name, ZoneError> {
    let invalid = |reason| ZoneError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > MAX_NAMESPACE_LEN {
        return Err(invalid("a namespace is 1 to 123 characters"));
    }
    if !trimmed.split('.').all(is_label) {
        return Err(invalid(
            "labels are 1-63 letters, digits, '-' or '_', not starting or ending with '-'",
        ));
    }
    let mut parsed = Name::from_ascii(trimmed).map_err(|_| invalid("not a DNS name"))?;
    parsed.set_fqdn(true);
    Ok(parsed.to_lowercase())
}

fn child(parent: &Name, label: &str) -> Result<Name, ZoneError> {
    let invalid = |reason| ZoneError::InvalidName {
        name: format!("{label}.{parent}"),
        reason,
    };
    if !is_label(label) {
        return Err(invalid(
            "must be one label of 1-63 letters, digits, '-' or '_', not starting or ending with '-'",
        ));
    }
    let name = Name::from_ascii(label)
        .and_then(|l| l.append_domain(parent))
        .map_err(|_| invalid("not a DNS name"))?;
    Ok(name.to_lowercase())
}

fn soa_record(apex: &Name, serial: u32) -> Record {
    let label = |l: &str| {
        Name::from_ascii(l)
            .and_then(|n| n.append_domain(apex))
            .unwrap_or_else(|_| apex.clone())
    };
    let soa = SOA::new(
        label("ns"),
        label("hostmaster"),
        serial,
        7200,
        900,
        1_209_600,
        NEGATIVE_TTL,
    );
    Record::from_rdata(apex.clone(), NEGATIVE_TTL, RData::SOA(soa))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, last: u8, port: Option<u16>, healthy: bool) -> Instance {
        Instance {
            id: id.into(),
            ipv4: Ipv4Addr::new(10, 0, 0, last),
            port,
            healthy,
        }
    }

    fn snapshot(record_types: Vec<RecordType>, instances: Vec<Instance>) -> Snapshot {
        Snapshot {
            namespaces: vec![Namespace {
                name: "corp.local".into(),
                services: vec![Service {
                    name: "web".into(),
                    ttl: 60,
                    record_types,
                    instances,
                }],
            }],
        }
    }

    fn zone(s: &Snapshot) -> Zone {
        Zone::new(s, 7).expect("valid snapshot")
    }

    fn ask(zone: &Zone, name: &str, qtype: WireType) -> Answer {
        zone.answer(&Name::from_ascii(name).unwrap(), qtype, DNSClass::IN)
    }

    fn local(answer: Answer) -> Reply {
        match answer {
            Answer::Local(reply) => reply,
            Answer::Foreign => panic!("expected a local answer"),
        }
    }

    fn addrs(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn a_lists_only_healthy_instances_with_the_service_ttl() {
        let z = zone(&snapshot(
            vec![RecordType::A],
            vec![
                inst("t1", 1, None, true),
                inst("t2", 2, None, false),
                inst("t3", 3, None, true),
            ],
        ));
        let reply = local(ask(&z, "web.corp.local.", WireType::A));
        assert_eq!(reply.rcode, ResponseCode::NoError);
        assert_eq!(addrs(&reply.answers), ["10.0.0.1", "10.0.0.3"]);
        assert!(reply.answers.iter().all(|r| r.ttl == 60));
        assert!(reply.authority.is_empty());
    }

    #[test]
    fn all_unhealthy_returns_the_unhealthy_ones_like_cloud_map() {
        let z = zone(&snapshot(
            vec![RecordType::A],
            vec![inst("t1", 1, None, false), inst("t2", 2, None, false)],
        ));
        let reply = local(ask(&z, "web.corp.local.", WireType::A));
        assert_eq!(addrs(&reply.answers), ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn no_instances_is_nodata_with_soa() {
        let z = zone(&snapshot(vec![RecordType::A], vec![]));
        let reply = local(ask(&z, "web.corp.local.", WireType::A));
        assert_eq!(reply.rcode, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        assert_eq!(reply.authority[0].record_type(), WireType::SOA);
    }

    #[test]
    fn srv_uses_the_service_name_priority_1_weight_1_and_target_a_records() {
        let z = zone(&snapshot(
            vec![RecordType::Srv],
            vec![
                inst("t1", 1, Some(8080), true),
                inst("t2", 2, Some(8081), false),
            ],
        ));
        let reply = local(ask(&z, "web.corp.local.", WireType::SRV));
        assert_eq!(addrs(&reply.answers), ["1 1 8080 t1.web.corp.local."]);
        assert_eq!(reply.additionals.len(), 1);
        assert_eq!(reply.additionals[0].name.to_string(), "t1.web.corp.local.");
        assert_eq!(addrs(&reply.additionals), ["10.0.0.1"]);
        // The SRV-only service has no A record at its own name...
        let a = local(ask(&z, "web.corp.local.", WireType::A));
        assert!(a.answers.is_empty() && a.rcode == ResponseCode::NoError);
        // ...but every target resolves, healthy or not.
        let t2 = local(ask(&z, "T2.web.corp.local.", WireType::A));
        assert_eq!(addrs(&t2.answers), ["10.0.0.2"]);
    }

    #[test]
    fn a_only_services_have_no_target_names() {
        let z = zone(&snapshot(
            vec![RecordType::A],
            vec![inst("t1", 1, None, true)],
        ));
        let reply = local(ask(&z, "t1.web.corp.local.", WireType::A));
        assert_eq!(reply.rcode, ResponseCode::NXDomain);
    }

    #[test]
    fn unknown_names_inside_a_namespace_are_nxdomain_with_soa() {
        let z = zone(&snapshot(vec![RecordType::A], vec![]));
        let reply = local(ask(&z, "nope.corp.local.", WireType::A));
        assert_eq!(reply.rcode, ResponseCode::NXDomain);
        assert!(reply.answers.is_empty());
        let soa = &reply.authority[0];
        assert_eq!(soa.name.to_string(), "corp.local.");
        assert_eq!(soa.ttl, NEGATIVE_TTL);
        match &soa.data {
            RData::SOA(soa) => assert_eq!((soa.serial, soa.minimum), (7, NEGATIVE_TTL)),
            other => panic!("not an SOA: {other:?}"),
        }
    }

    #[test]
    fn apex_answers_soa_and_nodata_otherwise() {
        let z = zone(&snapshot(vec![RecordType::A], vec![]));
        let soa = local(ask(&z, "corp.local.", WireType::SOA));
        assert_eq!(soa.answers[0].record_type(), WireType::SOA);
        let ns = local(ask(&z, "corp.local.", WireType::NS));
        assert!(ns.answers.is_empty() && ns.rcode == ResponseCode::NoError);
        assert_eq!(ns.authority.len(), 1);
    }

    #[test]
    fn other_types_at_a_service_are_nodata() {
        let z = zone(&snapshot(
            vec![RecordType::A],
            vec![inst("t1", 1, None, true)],
        ));
        let reply = local(ask(&z, "web.corp.local.", WireType::AAAA));
        assert_eq!(reply.rcode, ResponseCode::NoError);
        assert!(reply.answers.is_empty());
        assert_eq!(reply.authority.len(), 1);
    }

    #[test]
    fn names_compare_case_insensitively() {
        let z = zone(&snapshot(
            vec![RecordType::A],
            vec![inst("t1", 1, None, true)],
        ));
        let reply = local(ask(&z, "WeB.Corp.LOCAL.", WireType::A));
        assert_eq!(addrs(&reply.answers), ["10.0.0.1"]);
    }

    #[test]
    fn foreign_names_and_other_classes() {
        let z = zone(&snapshot(vec![RecordType::A], vec![]));
        assert_eq!(ask(&z, "example.com.", WireType::A), Answer::Foreign);
        assert_eq!(ask(&z, "local.", WireType::A), Answer::Foreign);
        let chaos = z.answer(
            &Name::from_ascii("web.corp.local.").unwrap(),
            WireType::A,
            DNSClass::CH,
        );
        assert_eq!(local(chaos).rcode, ResponseCode::Refused);
    }

    #[test]
    fn validation_limits() {
        let mut s = snapshot(vec![RecordType::A], vec![]);
        s.namespaces[0].services[0].name = "a.b".into();
        assert!(matches!(
            Zone::new(&s, 1),
            Err(ZoneError::InvalidName { .. })
        ));

        let s = snapshot(
            vec![RecordType::A],
            vec![inst(&"x".repeat(64), 1, None, true)],
        );
        assert!(matches!(
            Zone::new(&s, 1),
            Err(ZoneError::InvalidName { .. })
        ));

        let s = snapshot(vec![], vec![]);
        assert!(matches!(
            Zone::new(&s, 1),
            Err(ZoneError::InvalidService { .. })
        ));

        let s = snapshot(vec![RecordType::Srv], vec![inst("t1", 1, None, true)]);
        assert!(matches!(
            Zone::new(&s, 1),
            Err(ZoneError::InvalidService { .. })
        ));

        let s = snapshot(
            vec![RecordType::A],
            vec![inst("t1", 1, None, true), inst("T1", 2, None, true)],
        );
        assert!(matches!(Zone::new(&s, 1), Err(ZoneError::Duplicate(_))));

        let many = (0..=MAX_INSTANCES_PER_SERVICE)
            .map(|i| inst(&format!("t{i}"), 1, None, true))
            .collect();
        let s = snapshot(vec![RecordType::A], many);
        assert!(matches!(Zone::new(&s, 1), Err(ZoneError::TooMany { .. })));

        let mut s = snapshot(vec![RecordType::A], vec![]);
        s.namespaces.push(Namespace {
            name: "a.corp.local".into(),
            services: vec![],
        });
        assert!(matches!(Zone::new(&s, 1), Err(ZoneError::Overlap(..))));

        let mut s = snapshot(vec![RecordType::A], vec![]);
        s.namespaces[0].name = "x".repeat(MAX_NAMESPACE_LEN + 1);
        assert!(matches!(
            Zone::new(&s, 1),
            Err(ZoneError::InvalidName { .. })
        ));
    }
}
