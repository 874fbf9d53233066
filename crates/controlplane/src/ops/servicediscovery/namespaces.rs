//! Namespaces: CreatePrivateDnsNamespace, CreateHttpNamespace, GetNamespace,
//! ListNamespaces, DeleteNamespace.

use model::wire_sd::{
    self, NamespaceFilterName, NamespaceType, OperationTargetType, OperationType,
};

use super::{
    MAX_NAMESPACES, SdError, SdWritten, check_create, check_creator_request_id, check_description,
    delete, delete_operations_of, id_of, invalid, is_dns_label, keep_operation, list_page,
    operation, put, random_chars, required,
};
use crate::engine::Ctx;
use crate::state::{DiscoveryRecord, Scope, SdNamespaceRecord, State};

/// Whether `name` is a DNS name Cloud Map accepts for a private DNS namespace: at most 253
/// characters, dot-separated labels of 1–63 letters, digits, hyphens and underscores
/// (one trailing dot allowed).
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn check_tags(tags: Option<&[wire_sd::Tag]>) -> Result<(), SdError> {
    super::tags::validate(tags.unwrap_or(&[]))
}

fn not_found(id: &str) -> SdError {
    SdError::NamespaceNotFound(format!("Namespace not found: {id}"))
}

/// The namespace a request names by id or ARN, or `NamespaceNotFound`.
pub fn find<'a>(
    state: &'a State,
    scope: &Scope,
    ident: &str,
) -> Result<&'a SdNamespaceRecord, SdError> {
    id_of(scope, "namespace", ident)
        .and_then(|id| state.discovery.namespace(scope, &id))
        .ok_or_else(|| not_found(ident))
}

/// The namespace whose name (its `HttpName`) is `name`, if there is one.
pub fn by_name<'a>(state: &'a State, scope: &Scope, name: &str) -> Option<&'a SdNamespaceRecord> {
    state
        .discovery
        .namespaces_in(scope, None)
        .find(|n| n.namespace.name.as_deref() == Some(name))
}

/// The namespace `ident` names by id or ARN ([`find`]), else by name ([`by_name`]): how
/// ECS (Service Connect) names a namespace.
pub fn by_id_arn_or_name<'a>(
    state: &'a State,
    scope: &Scope,
    ident: &str,
) -> Option<&'a SdNamespaceRecord> {
    find(state, scope, ident)
        .ok()
        .or_else(|| by_name(state, scope, ident))
}

struct NewNamespace {
    name: String,
    kind: NamespaceType,
    creator_request_id: Option<String>,
    description: Option<String>,
    tags: Vec<wire_sd::Tag>,
    vpc: Option<String>,
    soa_ttl: Option<i64>,
}

fn create(state: &State, ctx: &mut Ctx, n: NewNamespace) -> SdWritten<String> {
    check_description(n.description.as_deref())?;
    check_creator_request_id(n.creator_request_id.as_deref())?;
    check_tags(Some(&n.tags))?;
    let scope = ctx.scope.clone();
    let first = check_create(
        n.creator_request_id.as_ref(),
        by_name(state, &scope, &n.name),
        state.discovery.namespaces_in(&scope, None),
        "namespace",
        |existing| {
            SdError::NamespaceAlreadyExists(format!(
                "Namespace {} already exists (id {}).",
                n.name, existing.id
            ))
        },
    )?;
    if let Some(first) = first {
        // A retry (same name, same CreatorRequestId) answers the first call's operation.
        return Ok((first.operation_id.clone(), vec![]));
    }
    if state.discovery.namespaces_in(&scope, None).count() >= MAX_NAMESPACES {
        return Err(SdError::ResourceLimitExceeded(format!(
            "An account can have at most {MAX_NAMESPACES} namespaces per region."
        )));
    }
    let id = format!("ns-{}", random_chars(ctx, 16));
    let op = operation(
        ctx,
        OperationType::CreateNamespace,
        &[(OperationTargetType::Namespace, &id)],
    );
    let dns = match n.kind {
        NamespaceType::DnsPrivate => wire_sd::DnsProperties {
            hosted_zone_id: Some(format!("Z{}", random_chars(ctx, 20).to_ascii_uppercase())),
            soa: n.soa_ttl.map(|ttl| wire_sd::SOA { ttl: Some(ttl) }),
        },
        NamespaceType::DnsPublic | NamespaceType::Http => wire_sd::DnsProperties::default(),
    };
    let record = SdNamespaceRecord {
        scope: scope.clone(),
        id: id.clone(),
        namespace: wire_sd::Namespace {
            id: Some(id.clone()),
            arn: Some(super::arn(&scope, "namespace", &id)),
            resource_owner: Some(scope.account.to_string()),
            name: Some(n.name.clone()),
            r#type: Some(n.kind),
            description: n.description,
            properties: Some(wire_sd::NamespaceProperties {
                dns_properties: Some(dns),
                http_properties: Some(wire_sd::HttpProperties {
                    http_name: Some(n.name),
                }),
            }),
            create_date: Some(ctx.now),
            creator_request_id: n.creator_request_id,
            ..Default::default()
        },
        vpc: n.vpc,
        operation_id: op.id.clone(),
        tags: n.tags,
    };
    let op_id = op.id.clone();
    Ok((
        op_id,
        [
            vec![put(DiscoveryRecord::Namespace(record))],
            keep_operation(state, op),
        ]
        .concat(),
    ))
}

/// CreatePrivateDnsNamespace: a namespace whose services are also served over DNS (by
/// flotilla's DNS server). `Vpc` is required, as in AWS, and kept as given.
pub fn create_private_dns_namespace(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::CreatePrivateDnsNamespaceRequest,
) -> SdWritten<wire_sd::CreatePrivateDnsNamespaceResponse> {
    let name = required(req.name, "Name")?;
    let vpc = required(req.vpc, "Vpc")?;
    if name.starts_with("arn:") || !is_dns_name(&name) {
        return Err(invalid(format!(
            "Name {name:?} is not a valid DNS name: at most 253 characters, labels of 1-63 letters, digits, hyphens and underscores."
        )));
    }
    if vpc.is_empty() || vpc.len() > 64 {
        return Err(invalid("Vpc must be between 1 and 64 characters long."));
    }
    let soa_ttl = req
        .properties
        .and_then(|p| p.dns_properties)
        .and_then(|d| d.soa)
        .and_then(|s| s.ttl);
    if soa_ttl.is_some_and(|t| !(0..=2_147_483_647).contains(&t)) {
        return Err(invalid("SOA TTL must be between 0 and 2147483647."));
    }
    let (op, changes) = create(
        state,
        ctx,
        NewNamespace {
            name: name.strip_suffix('.').unwrap_or(&name).to_owned(),
            kind: NamespaceType::DnsPrivate,
            creator_request_id: req.creator_request_id,
            description: req.description,
            tags: req.tags.unwrap_or_default(),
            vpc: Some(vpc),
            soa_ttl,
        },
    )?;
    Ok((
        wire_sd::CreatePrivateDnsNamespaceResponse {
            operation_id: Some(op),
        },
        changes,
    ))
}

/// CreateHttpNamespace: a namespace discoverable only through DiscoverInstances.
pub fn create_http_namespace(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::CreateHttpNamespaceRequest,
) -> SdWritten<wire_sd::CreateHttpNamespaceResponse> {
    let name = required(req.name, "Name")?;
    if name.is_empty()
        || name.len() > 1024
        || name.starts_with("arn:")
        || !name.bytes().all(|b| (b'!'..=b'~').contains(&b))
    {
        return Err(invalid(format!(
            "Name {name:?} is invalid: 1-1024 printable ASCII characters without spaces, not starting with arn:."
        )));
    }
    let (op, changes) = create(
        state,
        ctx,
        NewNamespace {
            name,
            kind: NamespaceType::Http,
            creator_request_id: req.creator_request_id,
            description: req.description,
            tags: req.tags.unwrap_or_default(),
            vpc: None,
            soa_ttl: None,
        },
    )?;
    Ok((
        wire_sd::CreateHttpNamespaceResponse {
            operation_id: Some(op),
        },
        changes,
    ))
}

fn service_count(state: &State, scope: &Scope, namespace_id: &str) -> i32 {
    let n = state
        .discovery
        .services_in(scope, None)
        .filter(|s| s.service.namespace_id.as_deref() == Some(namespace_id))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// GetNamespace.
pub fn get_namespace(
    state: &State,
    scope: &Scope,
    req: wire_sd::GetNamespaceRequest,
) -> Result<wire_sd::GetNamespaceResponse, SdError> {
    let id = required(req.id, "Id")?;
    let ns = find(state, scope, &id)?;
    let mut namespace = ns.namespace.clone();
    namespace.service_count = Some(service_count(state, scope, &ns.id));
    Ok(wire_sd::GetNamespaceResponse {
        namespace: Some(namespace),
    })
}

/// Checks a filter's shape: a name, values, and a condition that takes as many values
/// as it has.
pub fn check_filter(
    values: Option<&[String]>,
    condition: Option<wire_sd::FilterCondition>,
    allowed: &[wire_sd::FilterCondition],
) -> Result<(), SdError> {
    let values = values.unwrap_or(&[]);
    let condition = condition.unwrap_or(wire_sd::FilterCondition::Eq);
    if !allowed.contains(&condition) {
        return Err(invalid(format!(
            "The {condition} condition is not valid for this filter."
        )));
    }
    let ok = match condition {
        wire_sd::FilterCondition::Eq | wire_sd::FilterCondition::BeginsWith => values.len() == 1,
        wire_sd::FilterCondition::In => !values.is_empty(),
        wire_sd::FilterCondition::Between => values.len() == 2,
    };
    if !ok {
        return Err(invalid(format!(
            "The {condition} condition does not take {} values.",
            values.len()
        )));
    }
    Ok(())
}

/// Whether `field` passes a filter already checked by [`check_filter`].
pub fn filter_passes(
    field: &str,
    values: Option<&[String]>,
    condition: Option<wire_sd::FilterCondition>,
) -> bool {
    let values = values.unwrap_or(&[]);
    match condition.unwrap_or(wire_sd::FilterCondition::Eq) {
        wire_sd::FilterCondition::Eq | wire_sd::FilterCondition::In => {
            values.iter().any(|v| v == field)
        }
        wire_sd::FilterCondition::BeginsWith => {
            values.iter().any(|v| field.starts_with(v.as_str()))
        }
        wire_sd::FilterCondition::Between => false,
    }
}

fn matches(ns: &wire_sd::Namespace, f: &wire_sd::NamespaceFilter) -> bool {
    let field: String = match f.name {
        Some(NamespaceFilterName::Type) => {
            ns.r#type.map(|t| t.as_str().to_owned()).unwrap_or_default()
        }
        Some(NamespaceFilterName::Name) => ns.name.clone().unwrap_or_default(),
        Some(NamespaceFilterName::HttpName) => ns
            .properties
            .as_ref()
            .and_then(|p| p.http_properties.as_ref())
            .and_then(|h| h.http_name.clone())
            .unwrap_or_default(),
        // Only the caller's own namespaces exist: SELF matches them all.
        Some(NamespaceFilterName::ResourceOwner) => "SELF".to_owned(),
        None => return false,
    };
    filter_passes(&field, f.values.as_deref(), f.condition)
}

/// ListNamespaces: filters `TYPE`, `NAME`, `HTTP_NAME`, `RESOURCE_OWNER`; paged in id order.
pub fn list_namespaces(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire_sd::ListNamespacesRequest,
) -> Result<wire_sd::ListNamespacesResponse, SdError> {
    use wire_sd::FilterCondition::{BeginsWith, Eq, In};
    let filters = req.filters.unwrap_or_default();
    for f in &filters {
        let allowed: &[_] = match f.name {
            Some(NamespaceFilterName::Type | NamespaceFilterName::ResourceOwner) => &[Eq, In],
            Some(NamespaceFilterName::Name | NamespaceFilterName::HttpName) => &[Eq, BeginsWith],
            None => return Err(invalid("Filters[].Name is required.")),
        };
        check_filter(f.values.as_deref(), f.condition, allowed)?;
    }
    let paging = (req.max_results, req.next_token.as_deref());
    let page = list_page(state, now, "ListNamespaces", &filters, paging, |after| {
        state
            .discovery
            .namespaces_in(scope, after)
            .filter(|ns| filters.iter().all(|f| matches(&ns.namespace, f)))
            .map(|ns| {
                let n = &ns.namespace;
                let summary = wire_sd::NamespaceSummary {
                    id: n.id.clone(),
                    arn: n.arn.clone(),
                    resource_owner: n.resource_owner.clone(),
                    name: n.name.clone(),
                    r#type: n.r#type,
                    description: n.description.clone(),
                    service_count: Some(service_count(state, scope, &ns.id)),
                    properties: n.properties.clone(),
                    create_date: n.create_date,
                };
                (ns.id.clone(), summary)
            })
    })?;
    Ok(wire_sd::ListNamespacesResponse {
        namespaces: Some(page.items),
        next_token: page.next_token,
    })
}

/// DeleteNamespace: `ResourceInUse` while the namespace has services.
pub fn delete_namespace(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::DeleteNamespaceRequest,
) -> SdWritten<wire_sd::DeleteNamespaceResponse> {
    let id = required(req.id, "Id")?;
    let ns = find(state, &ctx.scope, &id)?.clone();
    if service_count(state, &ctx.scope, &ns.id) > 0 {
        return Err(SdError::ResourceInUse(format!(
            "Namespace {} still has services: delete them first.",
            ns.id
        )));
    }
    let op = operation(
        ctx,
        OperationType::DeleteNamespace,
        &[(OperationTargetType::Namespace, &ns.id)],
    );
    let mut changes = vec![delete(DiscoveryRecord::Namespace(ns.clone()))];
    // The namespace's own operation records go with it (they name no other resource).
    changes.extend(delete_operations_of(
        state,
        &ctx.scope,
        OperationTargetType::Namespace,
        &ns.id,
    ));
    let op_id = op.id.clone();
    changes.extend(keep_operation(state, op));
    Ok((
        wire_sd::DeleteNamespaceResponse {
            operation_id: Some(op_id),
        },
        changes,
    ))
}
