//! The agent-facing operations of the ECS API: DiscoverPollEndpoint,
//! SubmitTaskStateChange, SubmitContainerStateChange, SubmitAttachmentStateChanges; and
//! flotilla's `ReportNetwork` (an `awsvpc` task's address, chosen by the node).
//!
//! A state change only moves a task forward in its lifecycle
//! ([`TaskStatus::can_move_to`]); a late or repeated report (an agent retrying after a
//! restart) is acknowledged and changes nothing, so retries are always safe.

use model::agent::{ReportNetworkRequest, ReportNetworkResponse};
use model::lifecycle::TaskStatus;
use model::wire::{self, TaskStopCode};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, client, invalid};
use crate::ops::tasks::find;
use crate::state::{Change, Record, Scope, State, TaskRecord};

const ACK: &str = "ACK";

/// DiscoverPollEndpoint: the endpoint agents talk to is this server itself.
pub fn discover_poll_endpoint(
    state: &State,
    scope: &Scope,
    advertised: &str,
    req: wire::DiscoverPollEndpointRequest,
) -> Result<wire::DiscoverPollEndpointResponse, EcsError> {
    if req.cluster.is_some() {
        // DiscoverPollEndpoint declares no ClusterNotFoundException: the agent sees the
        // generic ClientException, as from RegisterContainerInstance.
        crate::fargate::agent_cluster(state, scope, req.cluster.as_deref())
            .map_err(|_| client("Cluster not found."))?;
    }
    Ok(wire::DiscoverPollEndpointResponse {
        endpoint: Some(advertised.to_owned()),
        telemetry_endpoint: Some(advertised.to_owned()),
        service_connect_endpoint: Some(advertised.to_owned()),
    })
}

fn apply_container_change(
    rec: &mut TaskRecord,
    c: &wire::ContainerStateChange,
) -> Result<(), EcsError> {
    let name = c
        .container_name
        .as_deref()
        .ok_or_else(|| invalid("containers[].containerName is required."))?;
    let container = rec
        .task
        .containers
        .get_or_insert_with(Vec::new)
        .iter_mut()
        .find(|x| x.name.as_deref() == Some(name))
        .ok_or_else(|| invalid(format!("The task has no container named {name}.")))?;
    if let Some(status) = &c.status {
        let new: TaskStatus = status
            .parse()
            .map_err(|e: String| invalid(format!("containers[].status: {e}")))?;
        if container.last().is_none_or(|o| o.can_move_to(new)) {
            container.set_last(new);
        }
    }
    if c.exit_code.is_some() {
        container.exit_code = c.exit_code;
    }
    if c.reason.is_some() {
        container.reason.clone_from(&c.reason);
    }
    if c.runtime_id.is_some() {
        container.runtime_id.clone_from(&c.runtime_id);
    }
    if c.image_digest.is_some() {
        container.image_digest = c.image_digest.as_deref().map(Into::into);
    }
    if let Some(b) = &c.network_bindings {
        container.network_bindings = Some(b.clone());
    }
    Ok(())
}

/// The container part of SubmitTaskStateChange and SubmitContainerStateChange: the task
/// is now its agent's (`agentAcknowledged`), and `containers`' changes apply in order.
fn acknowledge_containers(
    rec: &mut TaskRecord,
    containers: &[wire::ContainerStateChange],
) -> Result<(), EcsError> {
    rec.agent_acknowledged = true;
    for c in containers {
        apply_container_change(rec, c)?;
    }
    Ok(())
}

/// Applies an agent's report to one task: finds it (id or ARN) in the named cluster,
/// both as the report's `cluster` and `task` members give them, lets `edit` change a
/// copy, and writes it back only when something changed, so repeated and late reports
/// cost nothing.
pub fn edit_reported_task(
    state: &State,
    scope: &Scope,
    (cluster, task): (Option<&str>, Option<&str>),
    edit: impl FnOnce(&mut TaskRecord) -> Result<(), EcsError>,
) -> Result<Vec<Change>, EcsError> {
    let cluster = crate::fargate::agent_cluster(state, scope, cluster)?;
    let ident = task.ok_or_else(|| invalid("task is required."))?;
    // A pool node reports on the tasks of any cluster placed on its pool.
    let before = if crate::fargate::is_pool(&cluster.name) {
        crate::fargate::find_pool_task(state, scope, &cluster.name, ident)
    } else {
        find(state, scope, &cluster.name, ident)
    }
    .ok_or_else(|| invalid("The referenced task was not found."))?;
    let mut rec = before.clone();
    edit(&mut rec)?;
    Ok(if rec == *before {
        vec![]
    } else {
        vec![Change::Put(Record::Task(rec))]
    })
}

/// SubmitTaskStateChange: the agent reports a task's (and its containers') new state.
pub fn submit_task_state_change(
    state: &State,
    ctx: &mut Ctx,
    req: wire::SubmitTaskStateChangeRequest,
) -> Written<wire::SubmitTaskStateChangeResponse> {
    let now = ctx.now;
    let changes = edit_reported_task(
        state,
        &ctx.scope,
        (req.cluster.as_deref(), req.task.as_deref()),
        |rec| {
            acknowledge_containers(rec, req.containers.as_deref().unwrap_or(&[]))?;
            apply_task_change(&mut rec.task, &req, now)
        },
    )?;
    Ok((
        wire::SubmitTaskStateChangeResponse {
            acknowledgment: Some(ACK.into()),
        },
        changes,
    ))
}

/// The task-level part of a SubmitTaskStateChange: pull times, and a forward move of
/// `lastStatus` with the timestamps and stop code that go with it.
fn apply_task_change(
    t: &mut wire::Task,
    req: &wire::SubmitTaskStateChangeRequest,
    now: f64,
) -> Result<(), EcsError> {
    if req.pull_started_at.is_some() {
        t.pull_started_at = req.pull_started_at;
    }
    if req.pull_stopped_at.is_some() {
        t.pull_stopped_at = req.pull_stopped_at;
    }
    let Some(status) = &req.status else {
        return Ok(());
    };
    let new: TaskStatus = status
        .parse()
        .map_err(|e: String| invalid(format!("status: {e}")))?;
    if !t.last().is_none_or(|o| o.can_move_to(new)) {
        return Ok(());
    }
    let version = t.version;
    let ever_ran = t.started_at.is_some();
    t.set_last(new);
    if new == TaskStatus::Running {
        t.started_at.get_or_insert(now);
        t.connectivity = Some(wire::Connectivity::Connected);
        t.connectivity_at.get_or_insert(now);
    }
    if new >= TaskStatus::Deactivating && t.stop_code.is_none() {
        t.stop_code = Some(if ever_ran {
            TaskStopCode::EssentialContainerExited
        } else {
            TaskStopCode::TaskFailedToStart
        });
        t.stopped_reason.clone_from(&req.reason);
        t.stopping_at.get_or_insert(now);
    }
    if new == TaskStatus::Stopped {
        if let Some(at) = req.execution_stopped_at {
            t.execution_stopped_at = Some(at);
        }
        // The containers keep what the agent reported; only the task's fields move.
        let containers = t.containers.clone();
        crate::task::mark_stopped(t, now);
        t.containers = containers;
    }
    t.version = Some(version.unwrap_or(0) + 1);
    Ok(())
}

/// SubmitContainerStateChange: one container's new state.
pub fn submit_container_state_change(
    state: &State,
    ctx: &mut Ctx,
    req: wire::SubmitContainerStateChangeRequest,
) -> Written<wire::SubmitContainerStateChangeResponse> {
    let change = wire::ContainerStateChange {
        container_name: req.container_name,
        runtime_id: req.runtime_id,
        exit_code: req.exit_code,
        network_bindings: req.network_bindings,
        reason: req.reason,
        status: req.status,
        image_digest: None,
    };
    let changes = edit_reported_task(
        state,
        &ctx.scope,
        (req.cluster.as_deref(), req.task.as_deref()),
        |rec| acknowledge_containers(rec, std::slice::from_ref(&change)),
    )?;
    Ok((
        wire::SubmitContainerStateChangeResponse {
            acknowledgment: Some(ACK.into()),
        },
        changes,
    ))
}

/// SubmitAttachmentStateChanges: acknowledged (flotilla tracks no ENI attachments).
pub fn submit_attachment_state_changes(
    state: &State,
    scope: &Scope,
    req: wire::SubmitAttachmentStateChangesRequest,
) -> Result<wire::SubmitAttachmentStateChangesResponse, EcsError> {
    crate::fargate::agent_cluster(state, scope, req.cluster.as_deref())?;
    if req.attachments.is_none() {
        return Err(invalid("attachments is required."));
    }
    Ok(wire::SubmitAttachmentStateChangesResponse {
        acknowledgment: Some(ACK.into()),
    })
}

/// The attachment type ECS gives an `awsvpc` task's network interface.
pub const ENI_ATTACHMENT: &str = "ElasticNetworkInterface";

/// ReportNetwork: shows the address the node gave an `awsvpc` task the ECS way — an
/// `ElasticNetworkInterface` attachment (status ATTACHED, details `privateIPv4Address`,
/// `macAddress`, `subnetId`, `networkInterfaceId`) and each container's
/// `networkInterfaces[].privateIpv4Address`. The attachment keeps its id across reports,
/// so a repeated report changes nothing.
pub fn report_network(
    state: &State,
    ctx: &mut Ctx,
    req: ReportNetworkRequest,
) -> Written<ReportNetworkResponse> {
    let ip: std::net::Ipv4Addr = req
        .private_ipv4_address
        .parse()
        .map_err(|_| invalid("privateIpv4Address must be an IPv4 address."))?;
    let fresh_id = ctx.new_uuid();
    let changes = edit_reported_task(
        state,
        &ctx.scope,
        (req.cluster.as_deref(), req.task.as_deref()),
        |rec| {
            let attachments = rec.task.attachments.get_or_insert_with(Vec::new);
            let earlier = attachments
                .iter()
                .find(|a| a.r#type.as_deref() == Some(ENI_ATTACHMENT));
            let id = earlier.and_then(|a| a.id.clone()).unwrap_or(fresh_id);
            // A Fargate task's PRECREATED attachment names the subnet of its
            // `awsvpcConfiguration`: it stays (the node reports its own bridge's CIDR).
            let subnet = earlier
                .and_then(|a| a.details.as_deref())
                .and_then(|d| d.iter().find(|kv| kv.name.as_deref() == Some("subnetId")))
                .and_then(|kv| kv.value.clone())
                .or_else(|| req.subnet.clone());
            let dns_name = format!(
                "ip-{}.{}.compute.internal",
                ip.to_string().replace('.', "-"),
                ctx.scope.region
            );
            let detail = |name: &str, value: Option<String>| {
                value.map(|value| wire::KeyValuePair {
                    name: Some(name.to_owned()),
                    value: Some(value),
                })
            };
            let details = [
                detail("subnetId", subnet),
                detail("networkInterfaceId", Some(format!("eni-{}", &id[..8]))),
                detail("macAddress", req.mac_address.clone()),
                detail("privateDnsName", Some(dns_name)),
                detail("privateIPv4Address", Some(ip.to_string())),
                detail("gateway", req.gateway.clone()),
            ]
            .into_iter()
            .flatten()
            .collect();
            attachments.retain(|a| a.r#type.as_deref() != Some(ENI_ATTACHMENT));
            attachments.push(wire::Attachment {
                id: Some(id.clone()),
                r#type: Some(ENI_ATTACHMENT.to_owned()),
                status: Some("ATTACHED".to_owned()),
                details: Some(details),
            });
            for c in rec.task.containers.get_or_insert_with(Vec::new) {
                c.network_interfaces = Some(vec![wire::NetworkInterface {
                    attachment_id: Some(id.clone()),
                    private_ipv4_address: Some(ip.to_string()),
                    ipv6_address: None,
                }]);
            }
            Ok(())
        },
    )?;
    Ok((
        ReportNetworkResponse {
            acknowledgment: ACK.into(),
        },
        changes,
    ))
}
