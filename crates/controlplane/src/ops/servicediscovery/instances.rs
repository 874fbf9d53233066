//! Instances: RegisterInstance, DeregisterInstance, GetInstance, ListInstances,
//! GetInstancesHealthStatus, UpdateInstanceCustomHealthStatus, DiscoverInstances,
//! DiscoverInstancesRevision.

use std::collections::BTreeMap;

use model::wire_sd::{
    self, CustomHealthStatus, HealthStatus, HealthStatusFilter, OperationTargetType, OperationType,
    RecordType,
};

use super::{
    MAX_ATTRIBUTES, MAX_INSTANCES_PER_NAMESPACE, MAX_INSTANCES_PER_SERVICE, SdError, SdWritten,
    check_creator_request_id, delete, find_service, invalid, keep_operation, list_page,
    max_results, operation, put, required,
};
use crate::engine::Ctx;
use crate::state::{Change, DiscoveryRecord, Scope, SdInstanceRecord, SdServiceRecord, State};

/// The IPv4 address attribute.
pub const AWS_INSTANCE_IPV4: &str = "AWS_INSTANCE_IPV4";
/// The IPv6 address attribute.
pub const AWS_INSTANCE_IPV6: &str = "AWS_INSTANCE_IPV6";
/// The port attribute.
pub const AWS_INSTANCE_PORT: &str = "AWS_INSTANCE_PORT";
/// The CNAME attribute.
pub const AWS_INSTANCE_CNAME: &str = "AWS_INSTANCE_CNAME";
/// The initial custom health status attribute.
pub const AWS_INIT_HEALTH_STATUS: &str = "AWS_INIT_HEALTH_STATUS";

/// Whether `id` is an instance id Cloud Map accepts: 1–64 of `[0-9a-zA-Z_/:.@-]`.
pub fn is_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_/:.@-".contains(&b))
}

/// Checks attributes: at most [`MAX_ATTRIBUTES`], keys of 1–255 printable characters,
/// values of at most 1,024 printable characters (inner spaces and tabs allowed).
pub fn check_attributes(attrs: &BTreeMap<String, String>) -> Result<(), SdError> {
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(invalid(format!(
            "An instance can have at most {MAX_ATTRIBUTES} attributes, got {}.",
            attrs.len()
        )));
    }
    for (k, v) in attrs {
        if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
            return Err(invalid(format!(
                "Attribute key {k:?} is invalid: 1-255 printable ASCII characters without spaces."
            )));
        }
        let printable = v.bytes().all(|b| (b' '..=b'~').contains(&b) || b == b'\t');
        if v.len() > 1024 || !printable || v.trim() != v {
            return Err(invalid(format!(
                "The value of attribute {k} is invalid: at most 1024 printable ASCII characters, no leading or trailing spaces."
            )));
        }
    }
    Ok(())
}

fn check_for_service(s: &SdServiceRecord, attrs: &BTreeMap<String, String>) -> Result<(), SdError> {
    if let Some(ip) = attrs.get(AWS_INSTANCE_IPV4)
        && ip.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(invalid(format!(
            "AWS_INSTANCE_IPV4 {ip:?} is not an IPv4 address."
        )));
    }
    if let Some(ip) = attrs.get(AWS_INSTANCE_IPV6)
        && ip.parse::<std::net::Ipv6Addr>().is_err()
    {
        return Err(invalid(format!(
            "AWS_INSTANCE_IPV6 {ip:?} is not an IPv6 address."
        )));
    }
    if let Some(port) = attrs.get(AWS_INSTANCE_PORT)
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(invalid(format!(
            "AWS_INSTANCE_PORT {port:?} is not a port between 1 and 65535."
        )));
    }
    if let Some(h) = attrs.get(AWS_INIT_HEALTH_STATUS) {
        if s.service.health_check_custom_config.is_none() {
            return Err(invalid(
                "AWS_INIT_HEALTH_STATUS is valid only for a service with HealthCheckCustomConfig.",
            ));
        }
        if h.parse::<CustomHealthStatus>().is_err() {
            return Err(invalid(
                "AWS_INIT_HEALTH_STATUS must be HEALTHY or UNHEALTHY.",
            ));
        }
    }
    let types: Vec<RecordType> = s
        .service
        .dns_config
        .as_ref()
        .and_then(|d| d.dns_records.as_ref())
        .map(|rs| rs.iter().filter_map(|r| r.r#type).collect())
        .unwrap_or_default();
    let need = |attr: &str, why: &str| {
        if attrs.contains_key(attr) {
            Ok(())
        } else {
            Err(invalid(format!("{attr} is required: {why}.")))
        }
    };
    for t in &types {
        match t {
            RecordType::A => need(AWS_INSTANCE_IPV4, "the service has an A record")?,
            RecordType::Aaaa => need(AWS_INSTANCE_IPV6, "the service has an AAAA record")?,
            RecordType::Cname => need(AWS_INSTANCE_CNAME, "the service has a CNAME record")?,
            RecordType::Srv => {
                need(AWS_INSTANCE_PORT, "the service has an SRV record")?;
                if !attrs.contains_key(AWS_INSTANCE_IPV4) && !attrs.contains_key(AWS_INSTANCE_IPV6)
                {
                    return Err(invalid(
                        "AWS_INSTANCE_IPV4 or AWS_INSTANCE_IPV6 is required: the service has an SRV record.",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Instance `id` of service `service`, or `InstanceNotFound`.
fn find_instance<'a>(
    state: &'a State,
    scope: &Scope,
    service: &str,
    id: &str,
) -> Result<&'a SdInstanceRecord, SdError> {
    state.discovery.instance(scope, service, id).ok_or_else(|| {
        SdError::InstanceNotFound(format!(
            "Instance {id} is not registered with service {service}."
        ))
    })
}

/// The service `service_ident` names (id or ARN) and its instance `id`, or
/// `ServiceNotFound` / `InstanceNotFound`.
fn named_instance<'a>(
    state: &'a State,
    scope: &Scope,
    service_ident: &str,
    id: &str,
) -> Result<(&'a SdServiceRecord, &'a SdInstanceRecord), SdError> {
    let service = find_service(state, scope, service_ident)?;
    let instance = find_instance(state, scope, &service.id, id)?;
    Ok((service, instance))
}

/// RegisterInstance: creates or updates (same `InstanceId`) an instance of a service.
pub fn register_instance(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::RegisterInstanceRequest,
) -> SdWritten<wire_sd::RegisterInstanceResponse> {
    let service_ident = required(req.service_id, "ServiceId")?;
    let id = required(req.instance_id, "InstanceId")?;
    let attrs = required(req.attributes, "Attributes")?;
    if !is_instance_id(&id) {
        return Err(invalid(format!(
            "InstanceId {id:?} is invalid: 1-64 of letters, digits and _/:.@-"
        )));
    }
    check_creator_request_id(req.creator_request_id.as_deref())?;
    check_attributes(&attrs)?;
    let scope = ctx.scope.clone();
    let service = find_service(state, &scope, &service_ident)?.clone();
    check_for_service(&service, &attrs)?;
    let existing = state.discovery.instance(&scope, &service.id, &id);
    if existing.is_none() {
        if state.discovery.instance_count(&scope, &service.id) >= MAX_INSTANCES_PER_SERVICE {
            return Err(SdError::ResourceLimitExceeded(format!(
                "A service can have at most {MAX_INSTANCES_PER_SERVICE} instances."
            )));
        }
        let ns = service.service.namespace_id.clone().unwrap_or_default();
        let in_namespace: usize = state
            .discovery
            .services_in(&scope, None)
            .filter(|s| s.service.namespace_id.as_deref() == Some(ns.as_str()))
            .map(|s| state.discovery.instance_count(&scope, &s.id))
            .sum();
        if in_namespace >= MAX_INSTANCES_PER_NAMESPACE {
            return Err(SdError::ResourceLimitExceeded(format!(
                "A namespace can have at most {MAX_INSTANCES_PER_NAMESPACE} instances."
            )));
        }
    }
    let health = service
        .service
        .health_check_custom_config
        .as_ref()
        .map(|_| {
            match attrs.get(AWS_INIT_HEALTH_STATUS).map(|h| h.parse()) {
                Some(Ok(h)) => h,
                // A re-registration keeps the status the instance had.
                _ => existing
                    .and_then(|e| e.health)
                    .unwrap_or(CustomHealthStatus::Healthy),
            }
        });
    let record = SdInstanceRecord {
        scope: scope.clone(),
        service_id: service.id.clone(),
        id: id.clone(),
        instance: wire_sd::Instance {
            id: Some(id.clone()),
            creator_request_id: req.creator_request_id,
            attributes: Some(attrs),
            created_by_account: Some(scope.account.to_string()),
        },
        health,
    };
    let (op_id, changes) = instance_change(
        state,
        ctx,
        OperationType::RegisterInstance,
        service,
        &id,
        put(DiscoveryRecord::Instance(record)),
    );
    Ok((
        wire_sd::RegisterInstanceResponse {
            operation_id: Some(op_id),
        },
        changes,
    ))
}

/// The changes of registering or deregistering instance `id` of `service`: `change` (the
/// instance's put or delete), the service's next revision, and the operation record; and
/// the operation's id.
fn instance_change(
    state: &State,
    ctx: &mut Ctx,
    kind: OperationType,
    mut service: SdServiceRecord,
    id: &str,
    change: Change,
) -> (String, Vec<Change>) {
    let op = operation(
        ctx,
        kind,
        &[
            (OperationTargetType::Service, &service.id),
            (OperationTargetType::Instance, id),
        ],
    );
    let op_id = op.id.clone();
    service.revision += 1;
    let mut changes = vec![change, put(DiscoveryRecord::Service(service))];
    changes.extend(keep_operation(state, op));
    (op_id, changes)
}

/// DeregisterInstance.
pub fn deregister_instance(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::DeregisterInstanceRequest,
) -> SdWritten<wire_sd::DeregisterInstanceResponse> {
    let service_ident = required(req.service_id, "ServiceId")?;
    let id = required(req.instance_id, "InstanceId")?;
    let (service, instance) = named_instance(state, &ctx.scope, &service_ident, &id)?;
    let instance = instance.clone();
    let (op_id, changes) = instance_change(
        state,
        ctx,
        OperationType::DeregisterInstance,
        service.clone(),
        &id,
        delete(DiscoveryRecord::Instance(instance)),
    );
    Ok((
        wire_sd::DeregisterInstanceResponse {
            operation_id: Some(op_id),
        },
        changes,
    ))
}

/// GetInstance.
pub fn get_instance(
    state: &State,
    scope: &Scope,
    req: wire_sd::GetInstanceRequest,
) -> Result<wire_sd::GetInstanceResponse, SdError> {
    let service_ident = required(req.service_id, "ServiceId")?;
    let id = required(req.instance_id, "InstanceId")?;
    let (_, instance) = named_instance(state, scope, &service_ident, &id)?;
    Ok(wire_sd::GetInstanceResponse {
        resource_owner: Some(scope.account.to_string()),
        instance: Some(instance.instance.clone()),
    })
}

/// One page of `service`'s instances in id order (`paging`: the request's `MaxResults`
/// and `NextToken`), each as `item` shows it: how ListInstances and
/// GetInstancesHealthStatus (`operation`) page.
fn instances_page<T>(
    state: &State,
    now: f64,
    operation: &str,
    service: &SdServiceRecord,
    paging: (Option<i32>, Option<&str>),
    item: impl Fn(&SdInstanceRecord) -> T,
) -> Result<crate::paging::Page<T>, SdError> {
    list_page(state, now, operation, &service.id, paging, |after| {
        state
            .discovery
            .instances_of(&service.scope, &service.id, after)
            .map(move |i| (i.id.clone(), item(i)))
    })
}

/// ListInstances: one service's instances, paged in id order.
pub fn list_instances(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire_sd::ListInstancesRequest,
) -> Result<wire_sd::ListInstancesResponse, SdError> {
    let service_ident = required(req.service_id, "ServiceId")?;
    let service = find_service(state, scope, &service_ident)?;
    let paging = (req.max_results, req.next_token.as_deref());
    let page = instances_page(state, now, "ListInstances", service, paging, |i| {
        wire_sd::InstanceSummary {
            id: Some(i.id.clone()),
            attributes: i.instance.attributes.clone(),
            created_by_account: i.instance.created_by_account.clone(),
        }
    })?;
    Ok(wire_sd::ListInstancesResponse {
        resource_owner: Some(scope.account.to_string()),
        instances: Some(page.items),
        next_token: page.next_token,
    })
}

/// The health an instance shows: its custom status, or `UNKNOWN` without a health check.
pub fn health_of(i: &SdInstanceRecord) -> HealthStatus {
    match i.health {
        Some(CustomHealthStatus::Healthy) => HealthStatus::Healthy,
        Some(CustomHealthStatus::Unhealthy) => HealthStatus::Unhealthy,
        None => HealthStatus::Unknown,
    }
}

/// GetInstancesHealthStatus: the health of the named instances (all without a list).
pub fn get_instances_health_status(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire_sd::GetInstancesHealthStatusRequest,
) -> Result<wire_sd::GetInstancesHealthStatusResponse, SdError> {
    let service_ident = required(req.service_id, "ServiceId")?;
    let service = find_service(state, scope, &service_ident)?;
    if let Some(ids) = &req.instances {
        if ids.is_empty() || ids.len() > 1000 {
            return Err(invalid("Instances must name between 1 and 1000 instances."));
        }
        let mut status = BTreeMap::new();
        for id in ids {
            let i = find_instance(state, scope, &service.id, id)?;
            status.insert(id.clone(), health_of(i));
        }
        return Ok(wire_sd::GetInstancesHealthStatusResponse {
            status: Some(status),
            next_token: None,
        });
    }
    let paging = (req.max_results, req.next_token.as_deref());
    let page = instances_page(
        state,
        now,
        "GetInstancesHealthStatus",
        service,
        paging,
        |i| (i.id.clone(), health_of(i)),
    )?;
    Ok(wire_sd::GetInstancesHealthStatusResponse {
        status: Some(page.items.into_iter().collect()),
        next_token: page.next_token,
    })
}

/// UpdateInstanceCustomHealthStatus: sets the custom health of an instance of a service
/// with `HealthCheckCustomConfig` (at once; AWS applies it after about 30 s). The
/// operation has no output shape: the answer is an empty object.
pub fn update_instance_custom_health_status(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::UpdateInstanceCustomHealthStatusRequest,
) -> SdWritten<()> {
    let service_ident = required(req.service_id, "ServiceId")?;
    let id = required(req.instance_id, "InstanceId")?;
    let status = required(req.status, "Status")?;
    let (service, instance) = named_instance(state, &ctx.scope, &service_ident, &id)?;
    let mut instance = instance.clone();
    if service.service.health_check_custom_config.is_none() {
        return Err(SdError::CustomHealthNotFound(format!(
            "Service {} has no HealthCheckCustomConfig.",
            service.id
        )));
    }
    if instance.health == Some(status) {
        return Ok(((), vec![]));
    }
    instance.health = Some(status);
    Ok(((), vec![put(DiscoveryRecord::Instance(instance))]))
}

/// The service DiscoverInstances names: namespace by its `HttpName`, service by name.
fn discovered<'a>(
    state: &'a State,
    scope: &Scope,
    namespace: &str,
    service: &str,
    owner: Option<&str>,
) -> Result<&'a SdServiceRecord, SdError> {
    if owner.is_some_and(|o| o != scope.account) {
        return Err(SdError::NamespaceNotFound(format!(
            "Namespace not found: {namespace}"
        )));
    }
    let ns = super::namespaces::by_name(state, scope, namespace)
        .ok_or_else(|| SdError::NamespaceNotFound(format!("Namespace not found: {namespace}")))?;
    state
        .discovery
        .services_in(scope, None)
        .find(|s| {
            s.service.namespace_id.as_deref() == Some(ns.id.as_str())
                && s.service
                    .name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(service))
        })
        .ok_or_else(|| {
            SdError::ServiceNotFound(format!(
                "Service {service} not found in namespace {namespace}."
            ))
        })
}

fn has_all(i: &SdInstanceRecord, params: &BTreeMap<String, String>) -> bool {
    let attrs = i.instance.attributes.as_ref();
    params
        .iter()
        .all(|(k, v)| attrs.and_then(|a| a.get(k)) == Some(v))
}

/// DiscoverInstances: the instances of a service found by namespace and service name,
/// filtered by health (`HEALTHY` by default; ignored for services without a health
/// check) and by attributes (`QueryParameters` must all match; `OptionalParameters`
/// narrow the answer only when some instance matches them too).
pub fn discover_instances(
    state: &State,
    scope: &Scope,
    req: wire_sd::DiscoverInstancesRequest,
) -> Result<wire_sd::DiscoverInstancesResponse, SdError> {
    let namespace = required(req.namespace_name, "NamespaceName")?;
    let service_name = required(req.service_name, "ServiceName")?;
    let max = usize::try_from(max_results(req.max_results, 1000)?.unwrap_or(100)).unwrap_or(100);
    let query = req.query_parameters.unwrap_or_default();
    let optional = req.optional_parameters.unwrap_or_default();
    check_attributes(&query)?;
    check_attributes(&optional)?;
    let service = discovered(
        state,
        scope,
        &namespace,
        &service_name,
        req.owner_account.as_deref(),
    )?;
    let matching: Vec<&SdInstanceRecord> = state
        .discovery
        .instances_of(scope, &service.id, None)
        .filter(|i| has_all(i, &query))
        .collect();
    let narrowed: Vec<&SdInstanceRecord> = matching
        .iter()
        .copied()
        .filter(|i| has_all(i, &optional))
        .collect();
    let candidates = if optional.is_empty() || narrowed.is_empty() {
        matching
    } else {
        narrowed
    };
    let checked = service.service.health_check_custom_config.is_some();
    let filter = req.health_status.unwrap_or(HealthStatusFilter::Healthy);
    let chosen: Vec<&SdInstanceRecord> = if checked {
        let with = |h: HealthStatus| {
            candidates
                .iter()
                .copied()
                .filter(|i| health_of(i) == h)
                .collect::<Vec<_>>()
        };
        match filter {
            HealthStatusFilter::Healthy => with(HealthStatus::Healthy),
            HealthStatusFilter::Unhealthy => with(HealthStatus::Unhealthy),
            HealthStatusFilter::All => candidates,
            HealthStatusFilter::HealthyOrElseAll => {
                let healthy = with(HealthStatus::Healthy);
                if healthy.is_empty() {
                    candidates
                } else {
                    healthy
                }
            }
        }
    } else {
        candidates
    };
    let ns_name = super::namespaces::by_name(state, scope, &namespace)
        .and_then(|n| n.namespace.name.clone())
        .unwrap_or(namespace);
    let instances = chosen
        .into_iter()
        .take(max)
        .map(|i| wire_sd::HttpInstanceSummary {
            instance_id: Some(i.id.clone()),
            namespace_name: Some(ns_name.clone()),
            service_name: service.service.name.clone(),
            health_status: Some(health_of(i)),
            attributes: i.instance.attributes.clone(),
        })
        .collect();
    Ok(wire_sd::DiscoverInstancesResponse {
        instances: Some(instances),
        instances_revision: Some(service.revision),
    })
}

/// DiscoverInstancesRevision: the service's registration revision.
pub fn discover_instances_revision(
    state: &State,
    scope: &Scope,
    req: wire_sd::DiscoverInstancesRevisionRequest,
) -> Result<wire_sd::DiscoverInstancesRevisionResponse, SdError> {
    let service = discovered(
        state,
        scope,
        &required(req.namespace_name, "NamespaceName")?,
        &required(req.service_name, "ServiceName")?,
        req.owner_account.as_deref(),
    )?;
    Ok(wire_sd::DiscoverInstancesRevisionResponse {
        instances_revision: Some(service.revision),
    })
}
