//! Services: CreateService, GetService, ListServices, UpdateService, DeleteService.

use model::wire_sd::{
    self, FilterCondition, NamespaceType, OperationTargetType, OperationType, RecordType,
    RoutingPolicy, ServiceFilterName, ServiceType,
};

use super::namespaces::{check_filter, filter_passes};
use super::{
    MAX_SERVICES_PER_NAMESPACE, SdError, SdWritten, check_create, check_creator_request_id,
    check_description, delete, delete_operations_of, find_service, invalid, is_dns_label,
    keep_operation, list_page, operation, put, random_chars, required,
};
use crate::engine::Ctx;
use crate::state::{DiscoveryRecord, Scope, SdServiceRecord, State};

/// Whether `name` is a service name Cloud Map accepts: at most 127 characters,
/// dot-separated labels of letters, digits, hyphens and underscores that neither start
/// nor end with a hyphen (each at most 63), or `.` alone.
pub fn is_service_name(name: &str) -> bool {
    if name == "." {
        return true;
    }
    !name.is_empty() && name.len() <= 127 && name.split('.').all(is_dns_label)
}

/// Checks a service's DNS records: at least one, no type twice, `CNAME` alone (and only
/// with the `WEIGHTED` policy), TTLs between 0 and 2147483647.
pub fn check_dns_records(
    records: &[wire_sd::DnsRecord],
    policy: RoutingPolicy,
) -> Result<(), SdError> {
    if records.is_empty() {
        return Err(invalid(
            "DnsConfig.DnsRecords must name at least one record.",
        ));
    }
    let mut seen: Vec<RecordType> = Vec::new();
    for r in records {
        let t = r
            .r#type
            .ok_or_else(|| invalid("DnsConfig.DnsRecords[].Type is required."))?;
        let ttl = r
            .ttl
            .ok_or_else(|| invalid("DnsConfig.DnsRecords[].TTL is required."))?;
        if !(0..=2_147_483_647).contains(&ttl) {
            return Err(invalid(format!(
                "TTL {ttl} is invalid: it must be between 0 and 2147483647."
            )));
        }
        if seen.contains(&t) {
            return Err(invalid(format!("DnsRecords names type {t} twice.")));
        }
        seen.push(t);
    }
    if seen.contains(&RecordType::Cname) && seen.len() > 1 {
        return Err(invalid(
            "A CNAME record cannot be combined with other records.",
        ));
    }
    if seen.contains(&RecordType::Cname) && policy != RoutingPolicy::Weighted {
        return Err(invalid("A CNAME record needs the WEIGHTED routing policy."));
    }
    Ok(())
}

fn not_found(id: &str) -> SdError {
    SdError::ServiceNotFound(format!("Service not found: {id}"))
}

/// CreateService: a service in a namespace. In a private DNS namespace a service with
/// `DnsConfig` is of type `DNS_HTTP` (served over DNS and DiscoverInstances); one without,
/// or with `Type: HTTP`, and every service of an HTTP namespace is of type `HTTP`.
pub fn create_service(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::CreateServiceRequest,
) -> SdWritten<wire_sd::CreateServiceResponse> {
    let name = required(req.name, "Name")?;
    if !is_service_name(&name) {
        return Err(invalid(format!(
            "Name {name:?} is not a valid service name: at most 127 characters, DNS labels of letters, digits, hyphens and underscores."
        )));
    }
    check_description(req.description.as_deref())?;
    check_creator_request_id(req.creator_request_id.as_deref())?;
    let tags = req.tags.unwrap_or_default();
    super::tags::validate(&tags)?;
    if req.health_check_config.is_some() {
        return Err(invalid(
            "HealthCheckConfig (Route 53 health checks) is not supported by flotilla; use HealthCheckCustomConfig.",
        ));
    }
    let ns_ident = req
        .namespace_id
        .or_else(|| req.dns_config.as_ref().and_then(|d| d.namespace_id.clone()))
        .ok_or_else(|| invalid("NamespaceId is required."))?;
    let scope = ctx.scope.clone();
    let ns = super::namespaces::find(state, &scope, &ns_ident)?;
    let ns_type = ns.namespace.r#type.unwrap_or(NamespaceType::Http);
    let siblings: Vec<&SdServiceRecord> = state
        .discovery
        .services_in(&scope, None)
        .filter(|s| s.service.namespace_id.as_deref() == Some(ns.id.as_str()))
        .collect();
    let same_name = siblings.iter().copied().find(|s| {
        s.service
            .name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(&name))
    });
    let first = check_create(
        req.creator_request_id.as_ref(),
        same_name,
        state.discovery.services_in(&scope, None),
        "service",
        |existing| {
            SdError::ServiceAlreadyExists(format!(
                "Service {name} already exists in namespace {} (id {}).",
                ns.id, existing.id
            ))
        },
    )?;
    if let Some(first) = first {
        // A retry of the same call answers the service it created.
        return Ok((
            wire_sd::CreateServiceResponse {
                service: Some(with_count(state, first)),
            },
            vec![],
        ));
    }
    if siblings.len() >= MAX_SERVICES_PER_NAMESPACE {
        return Err(SdError::ResourceLimitExceeded(format!(
            "A namespace can have at most {MAX_SERVICES_PER_NAMESPACE} services."
        )));
    }
    let http_only = req.r#type == Some(wire_sd::ServiceTypeOption::Http);
    let dns_config = match req.dns_config {
        Some(_) if ns_type == NamespaceType::Http => {
            return Err(invalid(
                "DnsConfig is not valid for a service of an HTTP namespace.",
            ));
        }
        Some(_) if http_only => {
            return Err(invalid("DnsConfig is not valid with Type HTTP."));
        }
        Some(d) => {
            let policy = d.routing_policy.unwrap_or(RoutingPolicy::Multivalue);
            let records = d.dns_records.unwrap_or_default();
            check_dns_records(&records, policy)?;
            Some(wire_sd::DnsConfig {
                namespace_id: None,
                routing_policy: Some(policy),
                dns_records: Some(records),
            })
        }
        None => None,
    };
    let kind = if dns_config.is_some() {
        ServiceType::DnsHttp
    } else {
        ServiceType::Http
    };
    let id = format!("srv-{}", random_chars(ctx, 16));
    let record = SdServiceRecord {
        scope: scope.clone(),
        id: id.clone(),
        service: wire_sd::Service {
            id: Some(id.clone()),
            arn: Some(super::arn(&scope, "service", &id)),
            resource_owner: Some(scope.account.to_string()),
            name: Some(name),
            namespace_id: Some(ns.id.clone()),
            description: req.description,
            instance_count: None,
            dns_config,
            r#type: Some(kind),
            health_check_config: None,
            health_check_custom_config: req.health_check_custom_config.map(|_| {
                wire_sd::HealthCheckCustomConfig {
                    failure_threshold: Some(1),
                }
            }),
            create_date: Some(ctx.now),
            creator_request_id: req.creator_request_id,
            created_by_account: Some(scope.account.to_string()),
        },
        tags,
        revision: 0,
    };
    let shown = with_count(state, &record);
    Ok((
        wire_sd::CreateServiceResponse {
            service: Some(shown),
        },
        vec![put(DiscoveryRecord::Service(record))],
    ))
}

/// The service as GetService shows it: with its instance count.
pub fn with_count(state: &State, s: &SdServiceRecord) -> wire_sd::Service {
    let mut service = s.service.clone();
    let n = state.discovery.instance_count(&s.scope, &s.id);
    service.instance_count = Some(i32::try_from(n).unwrap_or(i32::MAX));
    service
}

/// GetService.
pub fn get_service(
    state: &State,
    scope: &Scope,
    req: wire_sd::GetServiceRequest,
) -> Result<wire_sd::GetServiceResponse, SdError> {
    let id = required(req.id, "Id")?;
    let s = find_service(state, scope, &id)?;
    Ok(wire_sd::GetServiceResponse {
        service: Some(with_count(state, s)),
    })
}

/// ListServices: filters `NAMESPACE_ID` (EQ, IN) and `RESOURCE_OWNER`; paged in id order.
pub fn list_services(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire_sd::ListServicesRequest,
) -> Result<wire_sd::ListServicesResponse, SdError> {
    let filters = req.filters.unwrap_or_default();
    for f in &filters {
        if f.name.is_none() {
            return Err(invalid("Filters[].Name is required."));
        }
        check_filter(
            f.values.as_deref(),
            f.condition,
            &[FilterCondition::Eq, FilterCondition::In],
        )?;
    }
    let paging = (req.max_results, req.next_token.as_deref());
    let page = list_page(state, now, "ListServices", &filters, paging, |after| {
        state
            .discovery
            .services_in(scope, after)
            .filter(|s| {
                filters.iter().all(|f| {
                    let field = match f.name {
                        Some(ServiceFilterName::NamespaceId) => {
                            s.service.namespace_id.clone().unwrap_or_default()
                        }
                        Some(ServiceFilterName::ResourceOwner) | None => "SELF".to_owned(),
                    };
                    filter_passes(&field, f.values.as_deref(), f.condition)
                })
            })
            .map(|s| {
                let v = with_count(state, s);
                let summary = wire_sd::ServiceSummary {
                    id: v.id,
                    arn: v.arn,
                    resource_owner: v.resource_owner,
                    name: v.name,
                    r#type: v.r#type,
                    description: v.description,
                    instance_count: v.instance_count,
                    dns_config: v.dns_config,
                    health_check_config: v.health_check_config,
                    health_check_custom_config: v.health_check_custom_config,
                    create_date: v.create_date,
                    created_by_account: v.created_by_account,
                };
                (s.id.clone(), summary)
            })
    })?;
    Ok(wire_sd::ListServicesResponse {
        services: Some(page.items),
        next_token: page.next_token,
    })
}

/// UpdateService: a new description, and new TTLs for the same DNS record types (the
/// record types themselves cannot change, nor can a service gain DNS records).
pub fn update_service(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::UpdateServiceRequest,
) -> SdWritten<wire_sd::UpdateServiceResponse> {
    let id = required(req.id, "Id")?;
    let change = required(req.service, "Service")?;
    let mut s = find_service(state, &ctx.scope, &id)?.clone();
    if change.health_check_config.is_some() {
        return Err(invalid(
            "HealthCheckConfig (Route 53 health checks) is not supported by flotilla.",
        ));
    }
    if let Some(d) = change.description {
        check_description(Some(&d))?;
        s.service.description = Some(d);
    }
    if let Some(dns) = change.dns_config {
        let Some(current) = s.service.dns_config.as_mut() else {
            return Err(invalid(
                "The service has no DnsConfig: DNS records cannot be added to it.",
            ));
        };
        let records = dns.dns_records.unwrap_or_default();
        let policy = current.routing_policy.unwrap_or(RoutingPolicy::Multivalue);
        check_dns_records(&records, policy)?;
        let types = |rs: &[wire_sd::DnsRecord]| {
            let mut t: Vec<_> = rs.iter().filter_map(|r| r.r#type).collect();
            t.sort();
            t
        };
        if types(&records) != types(current.dns_records.as_deref().unwrap_or(&[])) {
            return Err(invalid(
                "UpdateService can change the TTLs of a service's DNS records, not their types.",
            ));
        }
        current.dns_records = Some(records);
    }
    let op = operation(
        ctx,
        OperationType::UpdateService,
        &[(OperationTargetType::Service, &s.id)],
    );
    let op_id = op.id.clone();
    Ok((
        wire_sd::UpdateServiceResponse {
            operation_id: Some(op_id),
        },
        [
            vec![put(DiscoveryRecord::Service(s))],
            keep_operation(state, op),
        ]
        .concat(),
    ))
}

/// DeleteService: `ResourceInUse` while instances are registered with it.
pub fn delete_service(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::DeleteServiceRequest,
) -> SdWritten<wire_sd::DeleteServiceResponse> {
    let id = required(req.id, "Id")?;
    let s = find_service(state, &ctx.scope, &id)
        .map_err(|_| not_found(&id))?
        .clone();
    let n = state.discovery.instance_count(&ctx.scope, &s.id);
    if n > 0 {
        return Err(SdError::ResourceInUse(format!(
            "Service {} still has {n} registered instance(s): deregister them first.",
            s.id
        )));
    }
    let mut changes = vec![delete(DiscoveryRecord::Service(s.clone()))];
    changes.extend(delete_operations_of(
        state,
        &ctx.scope,
        OperationTargetType::Service,
        &s.id,
    ));
    Ok((wire_sd::DeleteServiceResponse {}, changes))
}
