//! The ECS side of Cloud Map: what CreateService accepts as `serviceRegistries`, and the
//! instance a service's task is in its registry.
//!
//! A `serviceRegistries` entry names a Cloud Map service (`registryArn`). Each RUNNING
//! task of the ECS service is registered as one instance whose id is the task id, as ECS
//! does (a task set's entries, EXTERNAL services, take only that set's tasks:
//! [`task_set_registries`]):
//! - `awsvpc` tasks: `AWS_INSTANCE_IPV4` is the task's own address, `AWS_INSTANCE_PORT`
//!   the entry's `port` or `containerPort` (when the registry has SRV records);
//! - `bridge` and `host` tasks: `AWS_INSTANCE_IPV4` is the node's address (its container
//!   instance attribute [`PRIVATE_IP_ATTRIBUTE`]), `AWS_INSTANCE_PORT` the host port
//!   `containerName:containerPort` is published on;
//! - plus `ECS_CLUSTER_NAME`, `ECS_SERVICE_NAME`, `ECS_TASK_DEFINITION_FAMILY`,
//!   `AVAILABILITY_ZONE`, `REGION`, and `AWS_INIT_HEALTH_STATUS` `HEALTHY` for a registry
//!   with a custom health check.
//!
//! The task is deregistered as soon as the service decides to stop it (or it stops), so
//! name lookups stop returning it before it goes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use model::wire;

use crate::error::{EcsError, invalid};
use crate::ops::servicediscovery::find_service;
use crate::ops::servicediscovery::instances::{
    AWS_INIT_HEALTH_STATUS, AWS_INSTANCE_IPV4, AWS_INSTANCE_PORT,
};
use crate::ops::task_definitions;
use crate::state::{
    InstanceRecord, Scope, SdServiceRecord, State, TaskDefinitionRecord, TaskRecord,
};

/// Most `serviceRegistries` entries of one service (ECS: 1).
pub const MAX_SERVICE_REGISTRIES: usize = 1;

pub use crate::ops::instances::PRIVATE_IP_ATTRIBUTE;

/// One `serviceRegistries` entry, or one Service Connect service of a deployment
/// ([`crate::service_connect::registry_entries`]), its Cloud Map service resolved.
#[derive(Debug, Clone)]
pub struct Registry<'a> {
    /// The Cloud Map service.
    pub service: &'a SdServiceRecord,
    /// The entry as given (or as Service Connect names it).
    pub entry: Cow<'a, wire::ServiceRegistry>,
    /// Service Connect: the deployment whose tasks register (each task follows its own
    /// deployment's configuration); `None` for `serviceRegistries`, which every task joins.
    pub deployment: Option<&'a str>,
    /// A task set's `serviceRegistries` entry (EXTERNAL services): the set's id, so only
    /// the tasks it started register; `None` for the service's own entries and Service
    /// Connect.
    pub task_set: Option<&'a str>,
}

impl Registry<'_> {
    /// Whether instances need a port: the Cloud Map service answers SRV records, or
    /// Service Connect proxies connect to it.
    pub fn wants_port(&self) -> bool {
        self.deployment.is_some() || has_srv(self.service)
    }

    /// Whether a task of deployment (or task set) `started_by` registers here.
    pub fn takes(&self, started_by: Option<&str>) -> bool {
        self.deployment.is_none_or(|d| started_by == Some(d))
            && self.task_set.is_none_or(|s| started_by == Some(s))
    }
}

fn has_srv(s: &SdServiceRecord) -> bool {
    s.service
        .dns_config
        .as_ref()
        .and_then(|d| d.dns_records.as_ref())
        .is_some_and(|rs| {
            rs.iter()
                .any(|r| r.r#type == Some(model::wire_sd::RecordType::Srv))
        })
}

/// The service's registries that still exist: its `serviceRegistries`, then the Service
/// Connect services of each listed deployment.
pub fn registries<'a>(
    state: &'a State,
    scope: &Scope,
    service: &'a wire::Service,
) -> Vec<Registry<'a>> {
    let given = service
        .service_registries
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|entry| {
            let service = find_service(state, scope, entry.registry_arn.as_deref()?).ok()?;
            Some(Registry {
                service,
                entry: Cow::Borrowed(entry),
                deployment: None,
                task_set: None,
            })
        });
    let connect = service
        .deployments
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|d| {
            let def = task_definitions::resolve(state, scope, d.task_definition.as_deref()?)?;
            Some((d, def))
        })
        .flat_map(|(d, def)| {
            crate::service_connect::registry_entries(d, &def.definition)
                .into_iter()
                .filter_map(move |entry| {
                    let service =
                        find_service(state, scope, entry.registry_arn.as_deref()?).ok()?;
                    Some(Registry {
                        service,
                        entry: Cow::Owned(entry),
                        deployment: d.id.as_deref(),
                        task_set: None,
                    })
                })
        });
    given.chain(connect).collect()
}

/// The `serviceRegistries` of each task set (EXTERNAL services) whose Cloud Map service
/// still exists, each taking only its own set's tasks ([`Registry::takes`]).
pub fn task_set_registries<'a>(
    state: &'a State,
    scope: &Scope,
    sets: &'a [wire::TaskSet],
) -> Vec<Registry<'a>> {
    sets.iter()
        .filter_map(|ts| Some((ts.id.as_deref()?, ts)))
        .flat_map(|(id, ts)| {
            ts.service_registries
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(move |entry| (id, entry))
        })
        .filter_map(|(id, entry)| {
            let service = find_service(state, scope, entry.registry_arn.as_deref()?).ok()?;
            Some(Registry {
                service,
                entry: Cow::Borrowed(entry),
                deployment: None,
                task_set: Some(id),
            })
        })
        .collect()
}

/// The attributes the task is registered with, once the agent has reported where it
/// listens (`None` before that, or when its node's address is unknown).
pub fn instance_attributes(
    registry: &Registry<'_>,
    (cluster, service): (&str, &str),
    task: &TaskRecord,
    instance: Option<&InstanceRecord>,
) -> Option<BTreeMap<String, String>> {
    let containers = task.task.containers.as_deref().unwrap_or(&[]);
    let task_ip = containers
        .iter()
        .flat_map(|c| c.network_interfaces.as_deref().unwrap_or(&[]))
        .find_map(|n| n.private_ipv4_address.clone());
    let e = &*registry.entry;
    let (ip, port) = match task_ip {
        Some(ip) => (ip, e.port.or(e.container_port)),
        None => {
            let ip = instance?.attribute(PRIVATE_IP_ATTRIBUTE)?.to_owned();
            let host_port = e.container_name.as_deref().and_then(|name| {
                containers
                    .iter()
                    .filter(|c| c.name.as_deref() == Some(name))
                    .flat_map(|c| c.network_bindings.as_deref().unwrap_or(&[]))
                    .find(|b| b.container_port == e.container_port)
                    .and_then(|b| b.host_port)
            });
            (ip, host_port)
        }
    };
    let mut attrs = BTreeMap::new();
    attrs.insert(AWS_INSTANCE_IPV4.to_owned(), ip);
    if registry.wants_port() {
        attrs.insert(AWS_INSTANCE_PORT.to_owned(), port?.to_string());
    }
    if registry
        .service
        .service
        .health_check_custom_config
        .is_some()
    {
        attrs.insert(AWS_INIT_HEALTH_STATUS.to_owned(), "HEALTHY".to_owned());
    }
    attrs.insert("ECS_CLUSTER_NAME".into(), cluster.to_owned());
    attrs.insert("ECS_SERVICE_NAME".into(), service.to_owned());
    if let Some(family) = task
        .task
        .task_definition_arn
        .as_deref()
        .and_then(|a| a.rsplit_once(":task-definition/"))
        .and_then(|(_, rest)| rest.split(':').next())
    {
        attrs.insert("ECS_TASK_DEFINITION_FAMILY".into(), family.to_owned());
    }
    if let Some(zone) = &task.task.availability_zone {
        attrs.insert("AVAILABILITY_ZONE".into(), zone.to_string());
    }
    attrs.insert("REGION".into(), task.scope.region.to_string());
    Some(attrs)
}

/// Checks a service's `serviceRegistries` as CreateService does: at most one entry; it
/// names an existing Cloud Map service; with SRV records, `bridge` and `host` tasks need
/// `containerName` and `containerPort` (a port mapping of the task definition), `awsvpc`
/// tasks a `port` or `containerPort`.
///
/// # Errors
///
/// `InvalidParameterException` saying what is wrong.
pub fn validate(
    state: &State,
    scope: &Scope,
    entries: &[wire::ServiceRegistry],
    def: &TaskDefinitionRecord,
) -> Result<(), EcsError> {
    if entries.len() > MAX_SERVICE_REGISTRIES {
        return Err(invalid(format!(
            "serviceRegistries can have at most {MAX_SERVICE_REGISTRIES} entry."
        )));
    }
    let awsvpc = def.definition.network_mode == Some(wire::NetworkMode::Awsvpc);
    for e in entries {
        let arn = e
            .registry_arn
            .as_deref()
            .ok_or_else(|| invalid("serviceRegistries: registryArn is required."))?;
        let service = find_service(state, scope, arn).map_err(|_| {
            invalid(format!(
                "The service registry {} does not exist.",
                crate::ops::elbv2::shorten(arn)
            ))
        })?;
        if e.container_name.is_some() != e.container_port.is_some() {
            return Err(invalid(
                "serviceRegistries: containerName and containerPort must be given together.",
            ));
        }
        if let (Some(name), Some(port)) = (e.container_name.as_deref(), e.container_port) {
            let mapped = def
                .definition
                .container_definitions
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .filter(|c| c.name.as_deref() == Some(name))
                .flat_map(|c| c.port_mappings.as_deref().unwrap_or(&[]))
                .any(|m| m.container_port == Some(port));
            if !mapped {
                return Err(invalid(format!(
                    "serviceRegistries: the container {} has no container port {port} in the task definition.",
                    crate::ops::elbv2::shorten(name)
                )));
            }
        }
        if has_srv(service) {
            if awsvpc && e.port.is_none() && e.container_port.is_none() {
                return Err(invalid(
                    "The service registry has SRV records: give a port or a containerName and containerPort.",
                ));
            }
            if !awsvpc && e.container_port.is_none() {
                return Err(invalid(
                    "When specifying 'host' or 'bridge' for networkMode, values for \
                     'containerName' and 'containerPort' must be specified from the task definition.",
                ));
            }
        }
    }
    Ok(())
}
