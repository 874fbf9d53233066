//! Cloud Map (`servicediscovery`) records: namespaces, services, registered instances and
//! the operation records of the asynchronous calls, kept in [`Discovery`] (one field of
//! [`State`](super::State)) and stored as [`Record::Discovery`](super::Record).
//!
//! Keys are `(scope, id)` (instances: `(scope, service id, instance id)`), so one scope's
//! records, and one service's instances, are contiguous ranges. Store keys are
//! `sd-ns|<account>|<region>|<id>`, `sd-svc|…|<id>`, `sd-inst|…|<service id>|<instance id>`
//! and `sd-op|…|<id>`.

use std::collections::BTreeMap;
use std::ops::Bound;

use model::wire_sd;
use serde::{Deserialize, Serialize};

use super::keys::Scope;

/// Key of a namespace, a service or an operation: scope and id.
pub type SdKey = (Scope, String);
/// Key of a registered instance: scope, service id, instance id.
pub type SdInstanceKey = (Scope, String, String);

/// A namespace (private DNS or HTTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdNamespaceRecord {
    /// Where it lives.
    pub scope: Scope,
    /// `ns-…`.
    pub id: String,
    /// As GetNamespace shows it (`ServiceCount` is filled in when read).
    pub namespace: wire_sd::Namespace,
    /// The VPC a private DNS namespace was created for (as given; flotilla has no VPCs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    /// The id of the CREATE_NAMESPACE operation (a retry with the same
    /// `CreatorRequestId` answers it again).
    pub operation_id: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<wire_sd::Tag>,
}

/// A service of a namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdServiceRecord {
    /// Where it lives.
    pub scope: Scope,
    /// `srv-…`.
    pub id: String,
    /// As GetService shows it (`InstanceCount` is filled in when read).
    pub service: wire_sd::Service,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<wire_sd::Tag>,
    /// Counts registrations and deregistrations (DiscoverInstances' `InstancesRevision`;
    /// health changes do not count, as in Cloud Map).
    pub revision: i64,
}

/// An instance registered with a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdInstanceRecord {
    /// Where it lives.
    pub scope: Scope,
    /// The service's id.
    pub service_id: String,
    /// The instance id the caller chose.
    pub id: String,
    /// As GetInstance shows it.
    pub instance: wire_sd::Instance,
    /// The custom health status, for instances of a service with
    /// `HealthCheckCustomConfig`; `None` otherwise (shown as `UNKNOWN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<wire_sd::CustomHealthStatus>,
}

/// The record of an asynchronous operation (all complete at once, with `SUCCESS`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdOperationRecord {
    /// Where it lives.
    pub scope: Scope,
    /// The operation id.
    pub id: String,
    /// As GetOperation shows it.
    pub operation: wire_sd::Operation,
}

/// Any Cloud Map record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sd", content = "value")]
pub enum DiscoveryRecord {
    /// A namespace.
    Namespace(SdNamespaceRecord),
    /// A service.
    Service(SdServiceRecord),
    /// A registered instance.
    Instance(SdInstanceRecord),
    /// An operation record.
    Operation(SdOperationRecord),
    /// An ECS Anywhere record (SSM activation, managed node): see `state/anywhere.rs`.
    Anywhere(super::anywhere::AnywhereRecord),
    /// A CloudWatch record (metric alarm, metric datapoints): see `state/cloudwatch.rs`.
    CloudWatch(super::cloudwatch::CwRecord),
    /// An ACM certificate: see `state/acm.rs`.
    Acm(super::acm::CertificateRecord),
}

impl DiscoveryRecord {
    /// The record's key in the store.
    pub fn store_key(&self) -> String {
        let (kind, s, rest) = match self {
            DiscoveryRecord::Namespace(r) => ("sd-ns", &r.scope, r.id.clone()),
            DiscoveryRecord::Service(r) => ("sd-svc", &r.scope, r.id.clone()),
            DiscoveryRecord::Instance(r) => {
                ("sd-inst", &r.scope, format!("{}|{}", r.service_id, r.id))
            }
            DiscoveryRecord::Operation(r) => ("sd-op", &r.scope, r.id.clone()),
            DiscoveryRecord::Anywhere(r) => return r.store_key(),
            DiscoveryRecord::CloudWatch(r) => return r.store_key(),
            DiscoveryRecord::Acm(r) => return r.store_key(),
        };
        format!("{kind}|{}|{}|{rest}", s.account, s.region)
    }
}

/// Every Cloud Map record of the state.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Namespaces by id.
    pub namespaces: BTreeMap<SdKey, SdNamespaceRecord>,
    /// Services by id.
    pub services: BTreeMap<SdKey, SdServiceRecord>,
    /// Instances by service and id.
    pub instances: BTreeMap<SdInstanceKey, SdInstanceRecord>,
    /// Operation records by id.
    pub operations: BTreeMap<SdKey, SdOperationRecord>,
    /// ECS Anywhere's activations and managed nodes (`state/anywhere.rs`).
    pub anywhere: super::anywhere::Anywhere,
    /// CloudWatch's metric alarms and metrics (`state/cloudwatch.rs`).
    pub cloudwatch: super::cloudwatch::CloudWatch,
    /// ACM's imported certificates (`state/acm.rs`).
    pub acm: super::acm::Acm,
}

impl Discovery {
    /// Inserts or replaces a record.
    pub fn put(&mut self, record: DiscoveryRecord) {
        match record {
            DiscoveryRecord::Namespace(r) => {
                self.namespaces.insert((r.scope.clone(), r.id.clone()), r);
            }
            DiscoveryRecord::Service(r) => {
                self.services.insert((r.scope.clone(), r.id.clone()), r);
            }
            DiscoveryRecord::Instance(r) => {
                let key = (r.scope.clone(), r.service_id.clone(), r.id.clone());
                self.instances.insert(key, r);
            }
            DiscoveryRecord::Operation(r) => {
                self.operations.insert((r.scope.clone(), r.id.clone()), r);
            }
            DiscoveryRecord::Anywhere(r) => self.anywhere.put(r),
            DiscoveryRecord::CloudWatch(r) => self.cloudwatch.put(r),
            DiscoveryRecord::Acm(r) => self.acm.put(r),
        }
    }

    /// Removes a record.
    pub fn delete(&mut self, record: &DiscoveryRecord) {
        match record {
            DiscoveryRecord::Namespace(r) => {
                self.namespaces.remove(&(r.scope.clone(), r.id.clone()));
            }
            DiscoveryRecord::Service(r) => {
                self.services.remove(&(r.scope.clone(), r.id.clone()));
            }
            DiscoveryRecord::Instance(r) => {
                self.instances
                    .remove(&(r.scope.clone(), r.service_id.clone(), r.id.clone()));
            }
            DiscoveryRecord::Operation(r) => {
                self.operations.remove(&(r.scope.clone(), r.id.clone()));
            }
            DiscoveryRecord::Anywhere(r) => self.anywhere.delete(r),
            DiscoveryRecord::CloudWatch(r) => self.cloudwatch.delete(r),
            DiscoveryRecord::Acm(r) => self.acm.delete(r),
        }
    }

    /// Every record, as the store holds them.
    pub fn records(&self) -> impl Iterator<Item = DiscoveryRecord> + '_ {
        let ns = self
            .namespaces
            .values()
            .cloned()
            .map(DiscoveryRecord::Namespace);
        let svc = self
            .services
            .values()
            .cloned()
            .map(DiscoveryRecord::Service);
        let inst = self
            .instances
            .values()
            .cloned()
            .map(DiscoveryRecord::Instance);
        let ops = self
            .operations
            .values()
            .cloned()
            .map(DiscoveryRecord::Operation);
        let anywhere = self.anywhere.records().map(DiscoveryRecord::Anywhere);
        let cloudwatch = self.cloudwatch.records().map(DiscoveryRecord::CloudWatch);
        let acm = self.acm.records().map(DiscoveryRecord::Acm);
        ns.chain(svc)
            .chain(inst)
            .chain(ops)
            .chain(anywhere)
            .chain(cloudwatch)
            .chain(acm)
    }

    /// A namespace by id.
    pub fn namespace(&self, scope: &Scope, id: &str) -> Option<&SdNamespaceRecord> {
        self.namespaces.get(&(scope.clone(), id.to_owned()))
    }

    /// A service by id.
    pub fn service(&self, scope: &Scope, id: &str) -> Option<&SdServiceRecord> {
        self.services.get(&(scope.clone(), id.to_owned()))
    }

    /// An instance by service id and instance id.
    pub fn instance(&self, scope: &Scope, service_id: &str, id: &str) -> Option<&SdInstanceRecord> {
        self.instances
            .get(&(scope.clone(), service_id.to_owned(), id.to_owned()))
    }

    /// One scope's namespaces, in id order, from just after `after` (or the first).
    pub fn namespaces_in<'a>(
        &'a self,
        scope: &Scope,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a SdNamespaceRecord> + use<'a> {
        in_scope(&self.namespaces, scope, after)
    }

    /// One scope's services, in id order, from just after `after` (or the first).
    pub fn services_in<'a>(
        &'a self,
        scope: &Scope,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a SdServiceRecord> + use<'a> {
        in_scope(&self.services, scope, after)
    }

    /// One scope's operation records, in id order, from just after `after`.
    pub fn operations_in<'a>(
        &'a self,
        scope: &Scope,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a SdOperationRecord> + use<'a> {
        in_scope(&self.operations, scope, after)
    }

    /// One service's instances, in id order, from just after `after` (or the first).
    pub fn instances_of<'a>(
        &'a self,
        scope: &Scope,
        service_id: &str,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a SdInstanceRecord> + use<'a> {
        let first = (scope.clone(), service_id.to_owned(), String::new());
        let start = match after {
            Some(a) => Bound::Excluded((scope.clone(), service_id.to_owned(), a.to_owned())),
            None => Bound::Included(first),
        };
        let (scope, service_id) = (scope.clone(), service_id.to_owned());
        self.instances
            .range((start, Bound::Unbounded))
            .take_while(move |((s, svc, _), _)| *s == scope && *svc == service_id)
            .map(|(_, v)| v)
    }

    /// How many instances one service has.
    pub fn instance_count(&self, scope: &Scope, service_id: &str) -> usize {
        self.instances_of(scope, service_id, None).count()
    }
}

/// One scope's records of a map keyed by (scope, name or id), in key order, from just
/// after `after` (or the first): Cloud Map's and CloudWatch's listings.
pub(super) fn in_scope<'a, V>(
    map: &'a BTreeMap<SdKey, V>,
    scope: &Scope,
    after: Option<&str>,
) -> impl DoubleEndedIterator<Item = &'a V> + use<'a, V> {
    let start = match after {
        Some(a) => Bound::Excluded((scope.clone(), a.to_owned())),
        None => Bound::Included((scope.clone(), String::new())),
    };
    // The first key past the scope: the next region name of the same account.
    let next = Scope::new(scope.account.clone(), format!("{}\0", scope.region));
    map.range((start, Bound::Excluded((next, String::new()))))
        .map(|(_, v)| v)
}
