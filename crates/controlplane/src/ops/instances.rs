//! Container instances: RegisterContainerInstance, DeregisterContainerInstance,
//! DescribeContainerInstances, ListContainerInstances, UpdateContainerInstancesState;
//! and what each instance has left after its tasks' reservations.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use model::arn::ResourceType;
use model::status::InstanceStatus;
use model::wire::{self, ContainerInstanceStatus};
use serde::Deserialize;

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, client, invalid};
use crate::ops::common::{active_cluster, check_len, member_id, validate_tags};
use crate::paging::{PageRequest, counted, merge_ascending, paginate, start_after};
pub use crate::state::Usage;
use crate::state::{Change, InstanceRecord, MemberKey, Record, Scope, State};

/// Custom (non `ecs.`) attributes an instance may carry.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 10;

/// Reservations per instance id in one cluster, from the state's derived index.
pub fn usage_by_instance(state: &State, scope: &Scope, cluster: &str) -> HashMap<String, Usage> {
    state
        .instances_in(scope, cluster)
        .filter_map(|i| {
            state
                .usage(scope, cluster, &i.id)
                .map(|u| (i.id.clone(), u.clone()))
        })
        .collect()
}

/// An integer resource (`CPU`, `MEMORY`) of a resource list.
pub fn integer_resource(resources: &[wire::Resource], name: &str) -> i64 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .map_or(0, |r| {
            r.integer_value.map(i64::from).or(r.long_value).unwrap_or(0)
        })
}

/// A port-set resource (`PORTS`, `PORTS_UDP`) of a resource list.
pub fn port_resource(resources: &[wire::Resource], name: &str) -> Vec<u16> {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.string_set_value.as_ref())
        .map(|v| v.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

fn int_resource(name: &str, v: i64) -> wire::Resource {
    wire::Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(i32::try_from(v).unwrap_or(i32::MAX)),
        double_value: Some(0.0),
        long_value: Some(0),
        ..Default::default()
    }
}

fn ports_resource(name: &str, ports: &[u16]) -> wire::Resource {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    wire::Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(ports.iter().map(ToString::to_string).collect()),
        double_value: Some(0.0),
        long_value: Some(0),
        integer_value: Some(0),
    }
}

/// The instance as DescribeContainerInstances shows it, with live remaining resources
/// and task counts.
pub fn describe_one(
    rec: &InstanceRecord,
    usage: Option<&Usage>,
    with_tags: bool,
) -> wire::ContainerInstance {
    let mut ci = rec.instance.clone();
    let empty = Usage::default();
    let u = usage.unwrap_or(&empty);
    let registered = ci.registered_resources.clone().unwrap_or_default();
    let mut tcp = port_resource(&registered, "PORTS");
    tcp.extend(&u.ports_tcp);
    let mut udp = port_resource(&registered, "PORTS_UDP");
    udp.extend(&u.ports_udp);
    ci.remaining_resources = Some(vec![
        int_resource("CPU", integer_resource(&registered, "CPU") - u.cpu),
        int_resource("MEMORY", integer_resource(&registered, "MEMORY") - u.memory),
        ports_resource("PORTS", &tcp),
        ports_resource("PORTS_UDP", &udp),
    ]);
    ci.running_tasks_count = Some(u.running);
    ci.pending_tasks_count = Some(u.pending);
    if !with_tags {
        ci.tags = None;
    }
    ci
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityDocument {
    instance_id: Option<String>,
    availability_zone: Option<String>,
    instance_type: Option<String>,
    image_id: Option<String>,
    /// The address the node is reached at (EC2's `privateIp`); stored as the attribute
    /// [`PRIVATE_IP_ATTRIBUTE`], where load balancers resolve `instance` targets.
    private_ip: Option<String>,
}

/// The container instance attribute holding the node's address (the identity
/// document's `privateIp`): where a load balancer sends an `instance` target's traffic.
pub const PRIVATE_IP_ATTRIBUTE: &str = "flotilla.private-ip";

fn validate_resources(resources: &[wire::Resource]) -> Result<(), EcsError> {
    for r in resources {
        let name = r.name.as_deref().unwrap_or("");
        match name {
            "CPU" | "MEMORY" | "GPU" => {
                let v = r.integer_value.map(i64::from).or(r.long_value).unwrap_or(0);
                if v < 0 {
                    return Err(invalid(format!(
                        "totalResources {name} must not be negative, got {v}."
                    )));
                }
            }
            "PORTS" | "PORTS_UDP" => {
                for p in r.string_set_value.as_deref().unwrap_or(&[]) {
                    if p.parse::<u16>().is_err() {
                        return Err(invalid(format!(
                            "totalResources {name} holds {p:?}, which is not a port number."
                        )));
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "totalResources has unknown resource {other:?}; expected CPU, MEMORY, PORTS or PORTS_UDP."
                )));
            }
        }
    }
    Ok(())
}

/// Validates attribute names and values as ECS does.
pub fn validate_attribute(a: &wire::Attribute) -> Result<(), EcsError> {
    let name = a.name.as_deref().unwrap_or("");
    let ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./@:".contains(&b))
    };
    if name.is_empty() || name.len() > 128 || !ok(name) {
        return Err(invalid(format!(
            "attribute name {name:?} is invalid: 1-128 letters, numbers, hyphens, underscores, slashes, periods, colons and at signs."
        )));
    }
    if let Some(v) = &a.value
        && (v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
    {
        return Err(invalid(format!(
            "attribute {name:?} has an invalid value {v:?}: 1-128 printable characters."
        )));
    }
    Ok(())
}

/// Custom attributes are the ones whose name does not start with `ecs.`.
pub fn count_custom(attrs: &[wire::Attribute]) -> usize {
    attrs
        .iter()
        .filter(|a| !a.name.as_deref().unwrap_or("").starts_with("ecs."))
        .count()
}

/// RegisterContainerInstance: a new instance, or the same one again when the agent
/// re-registers (same `containerInstanceArn`, or same EC2/host instance id).
pub fn register(
    state: &State,
    ctx: &mut Ctx,
    req: wire::RegisterContainerInstanceRequest,
) -> Written<wire::RegisterContainerInstanceResponse> {
    // A Fargate pool node registers into its pool (`crate::fargate`).
    let cluster = crate::fargate::agent_cluster(state, &ctx.scope, req.cluster.as_deref())
        .map_err(|_| client("Cluster not found."))?;
    let doc: IdentityDocument = match req.instance_identity_document.as_deref() {
        None | Some("") => IdentityDocument::default(),
        Some(s) => serde_json::from_str(s).map_err(|e| {
            invalid(format!(
                "instanceIdentityDocument is not a valid identity document: {e}"
            ))
        })?,
    };
    if let Some(ip) = &doc.private_ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(invalid(format!(
            "instanceIdentityDocument privateIp {:?} is not an IPv4 or IPv6 address.",
            ip.chars().take(64).collect::<String>()
        )));
    }
    let resources = req.total_resources.unwrap_or_default();
    validate_resources(&resources)?;
    let custom = req.attributes.unwrap_or_default();
    for a in &custom {
        validate_attribute(a)?;
    }
    if count_custom(&custom) > MAX_CUSTOM_ATTRIBUTES {
        // RegisterContainerInstance declares no AttributeLimitExceededException (only
        // PutAttributes does): the limit is a bad parameter here.
        return Err(invalid(format!(
            "attributes: you can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes for each resource."
        )));
    }
    let tags = req.tags.unwrap_or_default();
    validate_tags(&tags)?;
    let scope = ctx.scope.clone();
    let existing = match req.container_instance_arn.as_deref() {
        Some(arn) => {
            let (arn_cluster, id) = member_id(&scope, ResourceType::ContainerInstance, arn)
                .ok_or_else(|| {
                    invalid(format!(
                        "containerInstanceArn {arn:?} is not a container instance ARN."
                    ))
                })?;
            if arn_cluster.as_deref().is_some_and(|c| c != cluster.name) {
                return Err(invalid(format!(
                    "containerInstanceArn {arn:?} belongs to another cluster than {}.",
                    cluster.name
                )));
            }
            let found = state
                .instances
                .get(&MemberKey::new(&scope, &cluster.name, &id));
            Some(found.ok_or_else(|| {
                invalid(format!(
                    "containerInstanceArn {arn:?} is not registered in this cluster."
                ))
            })?)
        }
        None => doc.instance_id.as_deref().and_then(|iid| {
            state.instances_in(&scope, &cluster.name).find(|i| {
                i.instance.ec2_instance_id.as_deref() == Some(iid)
                    && matches!(
                        i.instance.status(),
                        Some(InstanceStatus::Active | InstanceStatus::Draining)
                    )
            })
        }),
    };
    let id = existing.map_or_else(|| ctx.new_id(), |e| e.id.clone());
    let arn = ctx.arn(
        ResourceType::ContainerInstance,
        format!("{}/{id}", cluster.name),
    );
    let ec2_id = doc
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("i-{}", &id[..17]));
    let mut attrs: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        attrs.insert(k.to_owned(), v);
    };
    put("ecs.os-type", Some("linux".into()));
    put("ecs.os-family", Some("LINUX".into()));
    put("ecs.cpu-architecture", Some("x86_64".into()));
    if let Some(az) = &doc.availability_zone {
        put("ecs.availability-zone", Some(az.clone()));
    }
    if let Some(t) = &doc.instance_type {
        put("ecs.instance-type", Some(t.clone()));
    }
    if let Some(ami) = &doc.image_id {
        put("ecs.ami-id", Some(ami.clone()));
    }
    if let Some(ip) = &doc.private_ip {
        put(PRIVATE_IP_ATTRIBUTE, Some(ip.clone()));
    }
    if let Some(e) = existing {
        for a in e.instance.attributes.as_deref().unwrap_or(&[]) {
            if let Some(n) = &a.name {
                attrs.entry(n.clone()).or_insert_with(|| a.value.clone());
            }
        }
    }
    for a in &custom {
        attrs.insert(a.name.clone().unwrap_or_default(), a.value.clone());
    }
    let attributes: Vec<wire::Attribute> = attrs
        .into_iter()
        .map(|(name, value)| wire::Attribute {
            name: Some(name),
            value,
            ..Default::default()
        })
        .collect();
    let previous = existing.map(|e| &e.instance);
    let instance = wire::ContainerInstance {
        container_instance_arn: Some(arn),
        ec2_instance_id: Some(ec2_id),
        version: Some(previous.and_then(|p| p.version).unwrap_or(0) + 1),
        version_info: Some(req.version_info.unwrap_or_default()),
        // A re-registration without resources keeps the ones registered before.
        registered_resources: Some(if resources.is_empty() {
            previous
                .and_then(|p| p.registered_resources.clone())
                .unwrap_or_default()
        } else {
            resources
        }),
        status: Some(
            previous
                .and_then(|p| p.status.clone())
                .unwrap_or_else(|| InstanceStatus::Active.into()),
        ),
        agent_connected: Some(true),
        attributes: Some(attributes),
        registered_at: Some(previous.and_then(|p| p.registered_at).unwrap_or(ctx.now)),
        attachments: Some(vec![]),
        tags: Some(if tags.is_empty() {
            previous.and_then(|p| p.tags.clone()).unwrap_or_default()
        } else {
            tags
        }),
        ..Default::default()
    };
    let rec = InstanceRecord {
        scope: scope.clone(),
        cluster: cluster.name.clone(),
        id,
        instance,
        last_heartbeat: ctx.now,
    };
    let usage = usage_by_instance(state, &scope, &cluster.name);
    let shown = describe_one(&rec, usage.get(&rec.id), true);
    Ok((
        wire::RegisterContainerInstanceResponse {
            container_instance: Some(shown),
        },
        vec![Change::Put(Record::Instance(rec))],
    ))
}

/// Finds an instance of `cluster` by id or ARN.
pub fn find<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
    ident: &str,
) -> Option<&'a InstanceRecord> {
    let (arn_cluster, id) = member_id(scope, ResourceType::ContainerInstance, ident)?;
    if arn_cluster.as_deref().is_some_and(|c| c != cluster) {
        return None;
    }
    state.instances.get(&MemberKey::new(scope, cluster, &id))
}

/// DeregisterContainerInstance: refuses while tasks run on it unless `force`.
pub fn deregister(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeregisterContainerInstanceRequest,
) -> Written<wire::DeregisterContainerInstanceResponse> {
    // A pool node can be deregistered or drained by its pool's name.
    let cluster = crate::fargate::agent_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let ident = req
        .container_instance
        .ok_or_else(|| invalid("containerInstance is required."))?;
    let rec = find(state, &ctx.scope, &cluster.name, &ident)
        .filter(|r| r.instance.status() != Some(InstanceStatus::Inactive))
        .ok_or_else(|| {
            invalid(format!(
                "The referenced container instance {ident} was not found."
            ))
        })?;
    let usage = usage_by_instance(state, &ctx.scope, &cluster.name);
    let u = usage.get(&rec.id);
    if u.is_some_and(|u| u.running + u.pending > 0) && req.force != Some(true) {
        return Err(invalid(
            "Found running tasks on the instance; stop them first or deregister with force.",
        ));
    }
    let mut rec = rec.clone();
    rec.instance.set_status(InstanceStatus::Inactive);
    rec.instance.agent_connected = Some(false);
    let shown = describe_one(&rec, u, true);
    // An external (ECS Anywhere) node's credentials are revoked with it.
    let revoked = match rec.instance.ec2_instance_id.as_deref() {
        Some(mi) if mi.starts_with("mi-") => {
            crate::ops::anywhere::revoke_node(state, &ctx.scope, mi)
        }
        _ => Vec::new(),
    };
    let mut changes = vec![Change::Put(Record::Instance(rec))];
    changes.extend(revoked);
    Ok((
        wire::DeregisterContainerInstanceResponse {
            container_instance: Some(shown),
        },
        changes,
    ))
}

/// DescribeContainerInstances.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: wire::DescribeContainerInstancesRequest,
) -> Result<wire::DescribeContainerInstancesResponse, EcsError> {
    let idents = req
        .container_instances
        .ok_or_else(|| invalid("containerInstances is required."))?;
    if idents.is_empty() {
        return Err(invalid("ContainerInstances cannot be empty."));
    }
    check_len(&idents, 100, "containerInstances")?;
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&wire::ContainerInstanceField::Tags);
    let usage = usage_by_instance(state, scope, &cluster.name);
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for ident in idents {
        match find(state, scope, &cluster.name, &ident) {
            Some(rec) => found.push(describe_one(rec, usage.get(&rec.id), with_tags)),
            None => failures.push(wire::Failure {
                arn: Some(ident),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(wire::DescribeContainerInstancesResponse {
        container_instances: Some(found),
        failures: Some(failures),
    })
}

/// ListContainerInstances, optionally filtered by status and a cluster-query-language
/// expression. A page ranges over the instances of the asked status (ACTIVE and DRAINING
/// by default) from the last id it returned.
pub fn list(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListContainerInstancesRequest,
) -> Result<wire::ListContainerInstancesResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let filter = match req.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(f) => Some(crate::ops::attributes::compile_filter(f)?),
        None => None,
    };
    let status = req.status;
    let filters = format!(
        "{}|{}|{}",
        cluster.name,
        status.map(|s| s.as_str()).unwrap_or(""),
        req.filter.as_deref().unwrap_or("")
    );
    // The instances of one status from just after `after`, in id order.
    let of_status = |st: &'static str, after: Option<&str>| {
        let key = |id: &str| {
            (
                scope.clone(),
                cluster.name.clone(),
                st.to_owned(),
                id.to_owned(),
            )
        };
        let start = start_after(after.map(key), key(""));
        counted(
            state
                .derived
                .instances_by_status
                .range((start, Bound::Unbounded)),
        )
        .take_while(move |(s, c, status, _)| s == scope && *c == cluster.name && status == st)
        .map(|(_, _, _, id)| (id.clone(), ()))
    };
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListContainerInstances",
            &filters,
            req.max_results,
            req.next_token.as_deref(),
        ),
        |after| {
            let ids: Box<dyn Iterator<Item = (String, ())>> = match status {
                Some(s) => Box::new(of_status(s.as_str(), after)),
                None => Box::new(merge_ascending(
                    of_status(InstanceStatus::Active.as_str(), after),
                    of_status(InstanceStatus::Draining.as_str(), after),
                )),
            };
            Ok(ids
                .filter_map(|(id, ())| {
                    state
                        .instances
                        .get(&MemberKey::new(scope, &cluster.name, &id))
                })
                .filter(|rec| {
                    filter.as_ref().is_none_or(|f| {
                        let usage = state.usage(scope, &cluster.name, &rec.id);
                        crate::ops::attributes::instance_matches(state, rec, usage, f)
                    })
                })
                .map(|rec| {
                    (
                        rec.id.clone(),
                        rec.instance
                            .container_instance_arn
                            .clone()
                            .unwrap_or_default(),
                    )
                }))
        },
    )?;
    Ok(wire::ListContainerInstancesResponse {
        container_instance_arns: Some(page.items),
        next_token: page.next_token,
    })
}

/// UpdateContainerInstancesState: ACTIVE or DRAINING.
pub fn update_state(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UpdateContainerInstancesStateRequest,
) -> Written<wire::UpdateContainerInstancesStateResponse> {
    // A pool node can be deregistered or drained by its pool's name.
    let cluster = crate::fargate::agent_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let idents = req
        .container_instances
        .ok_or_else(|| invalid("containerInstances is required."))?;
    check_len(&idents, 10, "containerInstances")?;
    let status = match req.status {
        Some(s @ (ContainerInstanceStatus::Active | ContainerInstanceStatus::Draining)) => s,
        Some(other) => {
            return Err(invalid(format!(
                "Container instances can only be set to ACTIVE or DRAINING, not {other}."
            )));
        }
        None => return Err(invalid("status is required.")),
    };
    let usage = usage_by_instance(state, &ctx.scope, &cluster.name);
    let (mut done, mut failures, mut changes) = (Vec::new(), Vec::new(), Vec::new());
    for ident in idents {
        match find(state, &ctx.scope, &cluster.name, &ident)
            .filter(|r| r.instance.status() != Some(InstanceStatus::Inactive))
        {
            None => failures.push(wire::Failure {
                arn: Some(ident),
                reason: Some("MISSING".into()),
                detail: None,
            }),
            Some(r) => {
                let mut rec = r.clone();
                let status = InstanceStatus::from(status);
                if rec.instance.status() != Some(status) {
                    rec.instance.set_status(status);
                    rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
                    changes.push(Change::Put(Record::Instance(rec.clone())));
                    // Draining a spot pool node reclaims it: its tasks are interrupted.
                    if status == InstanceStatus::Draining {
                        changes.extend(
                            crate::fargate::spot_interruptions(state, &rec, ctx.now)
                                .into_iter()
                                .map(|t| Change::Put(Record::Task(t))),
                        );
                    }
                }
                done.push(describe_one(&rec, usage.get(&rec.id), false));
            }
        }
    }
    Ok((
        wire::UpdateContainerInstancesStateResponse {
            container_instances: Some(done),
            failures: Some(failures),
        },
        changes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state with the `default` cluster, and a context to write in it.
    fn with_default_cluster() -> (State, Ctx) {
        let scope = Scope::new("000000000000", "us-east-1");
        let mut state = State::default();
        let mut ctx = Ctx::new(scope, 1000.0, 1);
        let (_, changes) = crate::ops::clusters::create_cluster(
            &state,
            &mut ctx,
            wire::CreateClusterRequest::default(),
        )
        .unwrap();
        for c in &changes {
            state.apply(c);
        }
        (state, ctx)
    }

    /// Fuzz finding: more than 10 custom attributes answered AttributeLimitExceededException,
    /// an error botocore's RegisterContainerInstance does not declare.
    #[test]
    fn too_many_attributes_at_registration_are_an_invalid_parameter() {
        let (state, mut ctx) = with_default_cluster();
        let attributes = |n: usize| {
            (0..n)
                .map(|i| wire::Attribute {
                    name: Some(format!("a{i}")),
                    value: Some("v".into()),
                    ..Default::default()
                })
                .collect::<Vec<_>>()
        };
        let req = |n| wire::RegisterContainerInstanceRequest {
            attributes: Some(attributes(n)),
            ..Default::default()
        };
        let e = register(&state, &mut ctx, req(11)).unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException", "{e}");
        assert!(e.to_string().contains("up to 10 custom attributes"), "{e}");
        assert!(register(&state, &mut ctx, req(10)).is_ok());
    }

    /// The identity document's `privateIp` becomes the `flotilla.private-ip` attribute
    /// (where load balancers send `instance` targets' traffic); a re-registration without
    /// one keeps it; one that is not an address is an invalid parameter.
    #[test]
    fn the_private_ip_of_the_identity_document_is_an_attribute() {
        let (mut state, mut ctx) = with_default_cluster();
        let req = |doc: serde_json::Value| wire::RegisterContainerInstanceRequest {
            instance_identity_document: Some(doc.to_string()),
            ..Default::default()
        };
        let private_ip = |r: &wire::RegisterContainerInstanceResponse| {
            r.container_instance
                .as_ref()
                .and_then(|c| c.attributes.as_ref())
                .and_then(|a| {
                    a.iter()
                        .find(|a| a.name.as_deref() == Some(PRIVATE_IP_ATTRIBUTE))
                })
                .and_then(|a| a.value.clone())
        };
        for ip in ["10.0.0.7", "fd00::7"] {
            let (r, changes) = register(
                &state,
                &mut ctx,
                req(serde_json::json!({"instanceId": "i-1", "privateIp": ip})),
            )
            .unwrap();
            for c in &changes {
                state.apply(c);
            }
            assert_eq!(private_ip(&r).as_deref(), Some(ip));
        }
        let (r, _) = register(
            &state,
            &mut ctx,
            req(serde_json::json!({"instanceId": "i-1"})),
        )
        .unwrap();
        assert_eq!(private_ip(&r).as_deref(), Some("fd00::7"), "kept");
        for bad in ["10.0.0", "node-1", "10.0.0.7:80", ""] {
            let e = register(
                &state,
                &mut ctx,
                req(serde_json::json!({"instanceId": "i-2", "privateIp": bad})),
            )
            .unwrap_err();
            assert_eq!(e.code(), "InvalidParameterException", "{bad:?}: {e}");
        }
    }
}
