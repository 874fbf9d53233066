//! ECS Service Connect, the control plane's part: what CreateService and UpdateService
//! accept as `serviceConnectConfiguration`, the Cloud Map services ECS creates for it, and
//! the routes each node's proxy serves (`FlotillaAgentV1.GetServiceConnectRoutes`).
//!
//! A service's configuration names a Cloud Map namespace (by name or ARN; the cluster's
//! `serviceConnectDefaults` when left out). Each entry of `services` offers one named
//! port mapping of the task definition (`portName`) to the namespace:
//! - as a Cloud Map service called `discoveryName` (default: the port name) that ECS
//!   creates (type HTTP: discovered by API, not DNS) and that holds one instance per
//!   RUNNING task of the deployment, registered like `serviceRegistries`
//!   ([`crate::registries`]: the task's address and the port mapping's container port for
//!   `awsvpc`, the node's address and the host port for `bridge`);
//! - under one client alias `dnsName:port` (default: `discoveryName.<namespace name>` on
//!   the container port), unique in the namespace.
//!
//! Every task of a deployment with Service Connect enabled — offering a port or only a
//! client — reaches every alias of its namespace: the agent gives the task the alias
//! names (`/etc/hosts`) and proxies each alias on its node to the alias's healthy
//! endpoints, on whatever node they run, with retries and outlier ejection (see
//! `crates/agent/src/service_connect/`). Each route carries the offering port mapping's
//! `appProtocol` (none is TCP, as in ECS), which picks how the node proxies it; a `udp`
//! port mapping cannot be offered.
//!
//! Left out (refused with `UnsupportedFeatureException`): `tls`, and `ingressPortOverride`
//! (flotilla proxies on the client side only; servers are reached directly).
//! `logConfiguration`, `accessLogConfiguration` and `timeout` are kept and shown, and have
//! no effect.
//!
//! The configuration belongs to a deployment (ECS's shape: `deployments[].serviceConnectConfiguration`
//! and `serviceConnectResources`): a change of it starts a new deployment, and each task
//! follows its own deployment's.

use std::collections::{BTreeMap, BTreeSet};

use model::agent::{ServiceConnectEndpoint, ServiceConnectRoute};
use model::wire::{self, NetworkMode};
use model::wire_sd;

use crate::engine::Ctx;
use crate::error::{EcsError, invalid};
use crate::ops::servicediscovery::instances::{AWS_INSTANCE_IPV4, AWS_INSTANCE_PORT, health_of};
use crate::ops::servicediscovery::namespaces;
use crate::ops::servicediscovery::services::create_service;
use crate::state::{
    Change, ClusterRecord, Scope, SdNamespaceRecord, SdServiceRecord, ServiceRecord, State,
    TaskDefinitionRecord, TaskRecord,
};

/// Most `services` entries of one configuration.
pub const MAX_SERVICE_CONNECT_SERVICES: usize = 10;

/// Most `clientAliases` of one entry (ECS: 1).
pub const MAX_CLIENT_ALIASES: usize = 1;

/// Longest `discoveryName` (ECS: 64).
pub const MAX_DISCOVERY_NAME: usize = 64;

/// Longest alias `dnsName` (ECS: 127).
pub const MAX_DNS_NAME: usize = 127;

/// Most routes one `GetServiceConnectRoutes` answer carries (the rest are left out and
/// logged: a namespace with more aliases than this is beyond what a node proxies).
pub const MAX_ROUTES: usize = 1_000;

/// Most endpoints of one route in an answer.
pub const MAX_ENDPOINTS_PER_ROUTE: usize = 1_000;

/// How long a task that Service Connect proxies may send requests to keeps running after
/// the service decided to stop it, in milliseconds: it leaves its Cloud Map service at
/// once, nodes' proxies drop it within their next route refresh (about a second), and
/// requests in flight finish.
pub const SERVICE_CONNECT_DRAIN_MS: u64 = 3_000;

/// What the description of a Cloud Map service ECS created for Service Connect starts with;
/// the ECS service's ARN follows.
const MANAGED_BY: &str = "Managed by ECS Service Connect for ";

/// A configuration checked and filled in, ready for a deployment.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// As the deployment shows it: the namespace as an ARN, every default filled in.
    pub config: wire::ServiceConnectConfiguration,
    /// The Cloud Map service of each entry (`serviceConnectResources`).
    pub resources: Vec<wire::ServiceConnectServiceResource>,
    /// The Cloud Map services to create.
    pub changes: Vec<Change>,
}

fn is_discovery_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DISCOVERY_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DNS_NAME
        && !name.starts_with('-')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// The namespace a configuration names (name or ARN), or the cluster's default.
fn namespace<'a>(
    state: &'a State,
    scope: &Scope,
    given: &wire::ServiceConnectConfiguration,
    cluster: &ClusterRecord,
) -> Result<&'a SdNamespaceRecord, EcsError> {
    let ident = given
        .namespace
        .as_deref()
        .or_else(|| {
            cluster
                .cluster
                .service_connect_defaults
                .as_ref()
                .and_then(|d| d.namespace.as_deref())
        })
        .ok_or_else(|| {
            invalid(
                "serviceConnectConfiguration.namespace is required: the cluster has no \
                 serviceConnectDefaults namespace.",
            )
        })?;
    namespaces::by_id_arn_or_name(state, scope, ident)
        .ok_or_else(|| {
            EcsError::NamespaceNotFound(format!(
                "serviceConnectConfiguration.namespace {ident:?} is not a Cloud Map namespace of this account."
            ))
        })
}

/// The container and port mapping named `port_name`.
fn named_mapping<'a>(
    def: &'a wire::TaskDefinition,
    port_name: &str,
) -> Option<(&'a str, &'a wire::PortMapping)> {
    def.container_definitions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find_map(|c| {
            let mapping = c
                .port_mappings
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .find(|m| m.name.as_deref() == Some(port_name))?;
            Some((c.name.as_deref()?, mapping))
        })
}

/// The container and container port of the port mapping named `port_name`.
fn named_port(def: &wire::TaskDefinition, port_name: &str) -> Option<(String, i32)> {
    let (container, mapping) = named_mapping(def, port_name)?;
    Some((container.to_owned(), mapping.container_port?))
}

/// The Cloud Map service `name` of a namespace, if there is one.
fn sd_service<'a>(
    state: &'a State,
    scope: &Scope,
    namespace_id: &str,
    name: &str,
) -> Option<&'a SdServiceRecord> {
    state
        .discovery
        .services_in(scope, None)
        .filter(|s| s.service.namespace_id.as_deref() == Some(namespace_id))
        .find(|s| s.service.name.as_deref() == Some(name))
}

/// Every (dnsName, port) alias of `namespace_arn` that services other than
/// `except_service` offer in a deployment that is still listed.
fn aliases_in_use(
    state: &State,
    scope: &Scope,
    namespace_arn: &str,
    except_service: &str,
) -> BTreeSet<(String, i32)> {
    let mut out = BTreeSet::new();
    for rec in services_of(state, scope) {
        if rec.service.service_arn.as_deref() == Some(except_service) {
            continue;
        }
        for d in rec.service.deployments.as_deref().unwrap_or(&[]) {
            let Some(c) = enabled_config(d) else { continue };
            if c.namespace.as_deref() != Some(namespace_arn) {
                continue;
            }
            for s in c.services.as_deref().unwrap_or(&[]) {
                for a in s.client_aliases.as_deref().unwrap_or(&[]) {
                    if let (Some(n), Some(p)) = (&a.dns_name, a.port) {
                        out.insert((n.clone(), p));
                    }
                }
            }
        }
    }
    out
}

/// The services of one account and region that are not INACTIVE.
fn services_of<'a>(state: &'a State, scope: &Scope) -> impl Iterator<Item = &'a ServiceRecord> {
    let scope = scope.clone();
    state.services.values().filter(move |s| {
        s.scope == scope && s.service.status() != Some(model::status::ServiceStatus::Inactive)
    })
}

/// A deployment's configuration when Service Connect is enabled in it.
pub fn enabled_config(d: &wire::Deployment) -> Option<&wire::ServiceConnectConfiguration> {
    d.service_connect_configuration
        .as_ref()
        .filter(|c| c.enabled == Some(true))
}

/// Checks a `serviceConnectConfiguration` as CreateService and UpdateService do, fills in
/// its defaults, and finds (or plans to create) each entry's Cloud Map service.
///
/// `service_arn` is the ECS service's: a Cloud Map service ECS created for it before is
/// used again; one created otherwise or for another service is refused.
///
/// # Errors
///
/// `InvalidParameterException` (or `NamespaceNotFoundException`,
/// `UnsupportedFeatureException`) saying what is wrong.
pub fn resolve(
    state: &State,
    ctx: &mut Ctx,
    cluster: &ClusterRecord,
    service_arn: &str,
    given: &wire::ServiceConnectConfiguration,
    def: &TaskDefinitionRecord,
) -> Result<Resolved, EcsError> {
    let enabled = given
        .enabled
        .ok_or_else(|| invalid("serviceConnectConfiguration.enabled is required."))?;
    if !enabled {
        return Ok(Resolved {
            config: wire::ServiceConnectConfiguration {
                enabled: Some(false),
                ..Default::default()
            },
            ..Default::default()
        });
    }
    let scope = ctx.scope.clone();
    let ns = namespace(state, &scope, given, cluster)?;
    let ns_arn = ns.namespace.arn.clone().unwrap_or_default();
    let ns_name = ns.namespace.name.clone().unwrap_or_default();
    let mode = def.definition.network_mode.unwrap_or(NetworkMode::Bridge);
    if !matches!(mode, NetworkMode::Bridge | NetworkMode::Awsvpc) {
        return Err(invalid(format!(
            "Service Connect needs the bridge or awsvpc network mode; the task definition uses {}.",
            mode.as_str()
        )));
    }
    let entries = given.services.as_deref().unwrap_or(&[]);
    if entries.len() > MAX_SERVICE_CONNECT_SERVICES {
        return Err(invalid(format!(
            "serviceConnectConfiguration.services can have at most {MAX_SERVICE_CONNECT_SERVICES} entries, got {}.",
            entries.len()
        )));
    }
    let taken = aliases_in_use(state, &scope, &ns_arn, service_arn);
    let mut out = Resolved::default();
    let mut seen_names = BTreeSet::new();
    let mut seen_aliases = BTreeSet::new();
    let mut services = Vec::new();
    for entry in entries {
        if entry.tls.is_some() {
            return Err(EcsError::UnsupportedFeature(
                "Service Connect tls is not available in flotilla.".into(),
            ));
        }
        if entry.ingress_port_override.is_some() {
            return Err(EcsError::UnsupportedFeature(
                "Service Connect ingressPortOverride is not available in flotilla: its \
                 proxies run on the client side only."
                    .into(),
            ));
        }
        let port_name = entry.port_name.clone().ok_or_else(|| {
            invalid("serviceConnectConfiguration.services[].portName is required.")
        })?;
        let (_, mapping) = named_mapping(&def.definition, &port_name).ok_or_else(|| {
            invalid(format!(
                "serviceConnectConfiguration: portName {port_name:?} is not the name of a port \
                 mapping in the task definition."
            ))
        })?;
        if mapping.protocol == Some(wire::TransportProtocol::Udp) {
            return Err(invalid(format!(
                "serviceConnectConfiguration: port mapping {port_name:?} is UDP; Service Connect \
                 proxies TCP only."
            )));
        }
        let container_port = mapping.container_port.ok_or_else(|| {
            invalid(format!(
                "serviceConnectConfiguration: port mapping {port_name:?} has no containerPort."
            ))
        })?;
        let discovery_name = entry.discovery_name.clone().unwrap_or(port_name.clone());
        if !is_discovery_name(&discovery_name) {
            return Err(invalid(format!(
                "serviceConnectConfiguration: discoveryName {discovery_name:?} is invalid: up to \
                 {MAX_DISCOVERY_NAME} lowercase letters, numbers, underscores and hyphens, not \
                 starting with a hyphen."
            )));
        }
        if !seen_names.insert(discovery_name.clone()) {
            return Err(invalid(format!(
                "serviceConnectConfiguration: discoveryName {discovery_name:?} is given twice."
            )));
        }
        let given_aliases = entry.client_aliases.as_deref().unwrap_or(&[]);
        if given_aliases.len() > MAX_CLIENT_ALIASES {
            return Err(invalid(format!(
                "serviceConnectConfiguration: an entry can have at most {MAX_CLIENT_ALIASES} clientAliases."
            )));
        }
        let mut aliases = Vec::new();
        let defaults = [wire::ServiceConnectClientAlias::default()];
        let listed = if given_aliases.is_empty() {
            &defaults[..]
        } else {
            given_aliases
        };
        for a in listed {
            let port = a.port.unwrap_or(container_port);
            if !(1..=65535).contains(&port) {
                return Err(invalid(format!(
                    "serviceConnectConfiguration: clientAliases port {port} is not between 1 and 65535."
                )));
            }
            let dns_name = a
                .dns_name
                .clone()
                .unwrap_or_else(|| format!("{discovery_name}.{ns_name}"));
            if !is_dns_name(&dns_name) {
                return Err(invalid(format!(
                    "serviceConnectConfiguration: clientAliases dnsName {dns_name:?} is invalid: up \
                     to {MAX_DNS_NAME} lowercase letters, numbers, underscores, hyphens and periods."
                )));
            }
            let key = (dns_name.clone(), port);
            if taken.contains(&key) || !seen_aliases.insert(key) {
                return Err(invalid(format!(
                    "serviceConnectConfiguration: the client alias {dns_name}:{port} is already \
                     used in namespace {ns_name}."
                )));
            }
            aliases.push(wire::ServiceConnectClientAlias {
                port: Some(port),
                dns_name: Some(dns_name),
                test_traffic_rules: a.test_traffic_rules.clone(),
            });
        }
        let discovery_arn = match sd_service(state, &scope, &ns.id, &discovery_name) {
            Some(existing) => {
                let ours = existing
                    .service
                    .description
                    .as_deref()
                    .and_then(|d| d.strip_prefix(MANAGED_BY))
                    == Some(service_arn);
                if !ours {
                    return Err(invalid(format!(
                        "serviceConnectConfiguration: discoveryName {discovery_name:?} is already \
                         a Cloud Map service in namespace {ns_name} that ECS did not create for \
                         this service."
                    )));
                }
                existing.service.arn.clone().unwrap_or_default()
            }
            None => {
                let req = wire_sd::CreateServiceRequest {
                    name: Some(discovery_name.clone()),
                    namespace_id: Some(ns.id.clone()),
                    description: Some(format!("{MANAGED_BY}{service_arn}")),
                    r#type: Some(wire_sd::ServiceTypeOption::Http),
                    ..Default::default()
                };
                let (resp, changes) = create_service(state, ctx, req)
                    .map_err(|e| invalid(format!("serviceConnectConfiguration: {e}")))?;
                out.changes.extend(changes);
                resp.service.and_then(|s| s.arn).unwrap_or_default()
            }
        };
        out.resources.push(wire::ServiceConnectServiceResource {
            discovery_name: Some(discovery_name.clone()),
            discovery_arn: Some(discovery_arn),
        });
        services.push(wire::ServiceConnectService {
            port_name: Some(port_name),
            discovery_name: Some(discovery_name),
            client_aliases: Some(aliases),
            ingress_port_override: None,
            timeout: entry.timeout.clone(),
            tls: None,
        });
    }
    out.config = wire::ServiceConnectConfiguration {
        enabled: Some(true),
        namespace: Some(ns_arn),
        services: Some(services),
        log_configuration: given.log_configuration.clone(),
        access_log_configuration: given.access_log_configuration.clone(),
    };
    Ok(out)
}

/// One Cloud Map service a deployment registers its tasks in, as a `serviceRegistries`
/// entry would name it (the Cloud Map service, the container and its container port).
pub fn registry_entries(
    d: &wire::Deployment,
    def: &wire::TaskDefinition,
) -> Vec<wire::ServiceRegistry> {
    let Some(config) = enabled_config(d) else {
        return Vec::new();
    };
    let resources = d.service_connect_resources.as_deref().unwrap_or(&[]);
    config
        .services
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|s| {
            let (container, port) = named_port(def, s.port_name.as_deref()?)?;
            let arn = resources
                .iter()
                .find(|r| r.discovery_name == s.discovery_name)?
                .discovery_arn
                .clone()?;
            Some(wire::ServiceRegistry {
                registry_arn: Some(arn),
                container_name: Some(container),
                container_port: Some(port),
                port: None,
            })
        })
        .collect()
}

/// The namespace ARN a task reaches aliases in: its deployment's (by `startedBy`), when
/// that has Service Connect enabled.
pub fn task_namespace<'a>(state: &'a State, task: &TaskRecord) -> Option<&'a str> {
    let name = task.task.group.as_deref()?.strip_prefix("service:")?;
    let rec = state.services.get(&crate::state::ServiceKey::new(
        &task.scope,
        &task.cluster,
        name,
    ))?;
    let deployment = rec
        .service
        .deployments
        .as_deref()?
        .iter()
        .find(|d| d.id.is_some() && d.id.as_deref() == task.task.started_by.as_deref())?;
    enabled_config(deployment)?.namespace.as_deref()
}

/// The routes of the namespaces asked for: each client alias offered in a listed
/// deployment of a service of the scope, with the healthy instances of its Cloud Map
/// service as endpoints. Namespaces of another scope, or gone, have none.
pub fn routes(state: &State, scope: &Scope, namespaces: &[String]) -> Vec<ServiceConnectRoute> {
    let wanted: BTreeSet<&str> = namespaces.iter().map(String::as_str).collect();
    // (namespace, dnsName, port) → (discoveryName, Cloud Map service ARN, appProtocol);
    // the newest deployment that offers an alias wins.
    type Offer = (String, String, Option<wire::ApplicationProtocol>);
    let mut aliases: BTreeMap<(String, String, u16), Offer> = BTreeMap::new();
    for rec in services_of(state, scope) {
        for d in rec
            .service
            .deployments
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .rev()
        {
            let Some(c) = enabled_config(d) else { continue };
            let Some(ns) = c.namespace.as_deref().filter(|n| wanted.contains(n)) else {
                continue;
            };
            let resources = d.service_connect_resources.as_deref().unwrap_or(&[]);
            let def = d
                .task_definition
                .as_deref()
                .and_then(|arn| crate::ops::task_definitions::resolve(state, scope, arn));
            for s in c.services.as_deref().unwrap_or(&[]) {
                let app_protocol = def
                    .zip(s.port_name.as_deref())
                    .and_then(|(def, name)| named_mapping(&def.definition, name))
                    .and_then(|(_, mapping)| mapping.app_protocol);
                let Some(arn) = resources
                    .iter()
                    .find(|r| r.discovery_name == s.discovery_name)
                    .and_then(|r| r.discovery_arn.clone())
                else {
                    continue;
                };
                for a in s.client_aliases.as_deref().unwrap_or(&[]) {
                    let (Some(name), Some(port)) = (
                        a.dns_name.clone(),
                        a.port.and_then(|p| u16::try_from(p).ok()),
                    ) else {
                        continue;
                    };
                    aliases.insert(
                        (ns.to_owned(), name, port),
                        (
                            s.discovery_name.clone().unwrap_or_default(),
                            arn.clone(),
                            app_protocol,
                        ),
                    );
                }
            }
        }
    }
    if aliases.len() > MAX_ROUTES {
        tracing::warn!(
            aliases = aliases.len(),
            "Service Connect: more client aliases than one answer carries; the last are left out"
        );
    }
    aliases
        .into_iter()
        .take(MAX_ROUTES)
        .map(
            |((namespace, dns_name, port), (discovery_name, arn, app_protocol))| {
                let endpoints = crate::ops::servicediscovery::find_service(state, scope, &arn)
                    .map(|svc| endpoints_of(state, scope, svc))
                    .unwrap_or_default();
                ServiceConnectRoute {
                    namespace,
                    dns_name,
                    port,
                    discovery_name,
                    app_protocol,
                    endpoints,
                }
            },
        )
        .collect()
}

/// The instances of a Cloud Map service that are not unhealthy, as endpoints (instances without an
/// IPv4 address and port are left out).
fn endpoints_of(
    state: &State,
    scope: &Scope,
    svc: &SdServiceRecord,
) -> Vec<ServiceConnectEndpoint> {
    state
        .discovery
        .instances_of(scope, &svc.id, None)
        .filter(|i| health_of(i) != wire_sd::HealthStatus::Unhealthy)
        .filter_map(|i| {
            let attrs = i.instance.attributes.as_ref()?;
            Some(ServiceConnectEndpoint {
                address: attrs.get(AWS_INSTANCE_IPV4)?.clone(),
                port: attrs.get(AWS_INSTANCE_PORT)?.parse().ok()?,
            })
        })
        .take(MAX_ENDPOINTS_PER_ROUTE)
        .collect()
}

/// ListServicesByNamespace: the services (of every cluster of the account and region)
/// with a listed deployment whose Service Connect configuration uses the namespace, in
/// ARN order, paged.
///
/// # Errors
///
/// `InvalidParameterException` without a namespace or for a bad page request;
/// `NamespaceNotFoundException` for a namespace that does not exist.
pub fn list_services_by_namespace(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListServicesByNamespaceRequest,
) -> Result<wire::ListServicesByNamespaceResponse, EcsError> {
    let Some(ident) = req.namespace else {
        return Err(invalid("namespace is required."));
    };
    let ns = namespaces::by_id_arn_or_name(state, scope, &ident)
        .ok_or_else(|| EcsError::NamespaceNotFound(format!("Namespace not found: {ident}")))?;
    let ns_arn = ns.namespace.arn.clone().unwrap_or_default();
    let mut arns: Vec<String> = services_of(state, scope)
        .filter(|rec| {
            rec.service
                .deployments
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .filter_map(enabled_config)
                .any(|c| c.namespace.as_deref() == Some(ns_arn.as_str()))
        })
        .filter_map(|rec| rec.service.service_arn.clone())
        .collect();
    arns.sort();
    let page = crate::paging::paginate(
        &crate::paging::PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListServicesByNamespace",
            &ns_arn,
            req.max_results,
            req.next_token.as_deref(),
        ),
        |after| {
            let after = after.map(str::to_owned);
            Ok(arns
                .into_iter()
                .filter(move |a| after.as_deref().is_none_or(|x| a.as_str() > x))
                .map(|a| (a.clone(), a)))
        },
    )?;
    Ok(wire::ListServicesByNamespaceResponse {
        service_arns: Some(page.items),
        next_token: page.next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_ecs_rules() {
        assert!(is_discovery_name("web_1-a"));
        assert!(!is_discovery_name("-web"));
        assert!(!is_discovery_name("Web"));
        assert!(!is_discovery_name(&"a".repeat(MAX_DISCOVERY_NAME + 1)));
        assert!(is_dns_name("web.internal"));
        assert!(is_dns_name("web"));
        assert!(!is_dns_name("web."));
        assert!(!is_dns_name("-web"));
        assert!(!is_dns_name("we b"));
    }
}
