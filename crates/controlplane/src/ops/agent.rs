//! The agent-facing operations of the ECS API: DiscoverPollEndpoint,
//! SubmitTaskStateChange, SubmitContainerStateChange, SubmitAttachmentStateChanges.
//!
//! A state change only moves a task forward in its lifecycle
//! ([`TaskStatus::can_move_to`]); a late or repeated report (an agent retrying after a
//! restart) is acknowledged and changes nothing, so retries are always safe.

use model::lifecycle::TaskStatus;
use model::wire::{self, TaskStopCode};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, client, invalid};
use crate::ops::common::active_cluster;
use crate::ops::tasks::{find, last_status, mark_stopped};
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
        active_cluster(state, scope, req.cluster.as_deref())
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
        let old = container
            .last_status
            .as_deref()
            .and_then(|s| s.parse::<TaskStatus>().ok());
        if old.is_none_or(|o| o.can_move_to(new)) {
            container.last_status = Some(new.as_str().to_owned());
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
        container.image_digest.clone_from(&c.image_digest);
    }
    if let Some(b) = &c.network_bindings {
        container.network_bindings = Some(b.clone());
    }
    Ok(())
}

/// SubmitTaskStateChange: the agent reports a task's (and its containers') new state.
pub fn submit_task_state_change(
    state: &State,
    ctx: &mut Ctx,
    req: wire::SubmitTaskStateChangeRequest,
) -> Written<wire::SubmitTaskStateChangeResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let ident = req.task.ok_or_else(|| invalid("task is required."))?;
    let mut rec = find(state, &ctx.scope, &cluster.name, &ident)
        .ok_or_else(|| invalid("The referenced task was not found."))?
        .clone();
    let before = rec.clone();
    rec.agent_acknowledged = true;
    for c in req.containers.as_deref().unwrap_or(&[]) {
        apply_container_change(&mut rec, c)?;
    }
    let t = &mut rec.task;
    if req.pull_started_at.is_some() {
        t.pull_started_at = req.pull_started_at;
    }
    if req.pull_stopped_at.is_some() {
        t.pull_stopped_at = req.pull_stopped_at;
    }
    if let Some(status) = &req.status {
        let new: TaskStatus = status
            .parse()
            .map_err(|e: String| invalid(format!("status: {e}")))?;
        let old = last_status(t);
        if old.is_none_or(|o| o.can_move_to(new)) {
            let ever_ran = t.started_at.is_some();
            t.last_status = Some(new.as_str().to_owned());
            if new == TaskStatus::Running {
                t.started_at.get_or_insert(ctx.now);
                t.connectivity = Some(wire::Connectivity::Connected);
                t.connectivity_at.get_or_insert(ctx.now);
            }
            if new >= TaskStatus::Deactivating && t.stop_code.is_none() {
                t.stop_code = Some(if ever_ran {
                    TaskStopCode::EssentialContainerExited
                } else {
                    TaskStopCode::TaskFailedToStart
                });
                t.stopped_reason.clone_from(&req.reason);
                t.stopping_at.get_or_insert(ctx.now);
            }
            if new == TaskStatus::Stopped {
                if let Some(at) = req.execution_stopped_at {
                    t.execution_stopped_at = Some(at);
                }
                let containers = t.containers.clone();
                mark_stopped(t, ctx.now);
                t.containers = containers;
                t.version = before.task.version;
            }
            t.version = Some(t.version.unwrap_or(0) + 1);
        }
    }
    let changes = if rec == before {
        vec![]
    } else {
        vec![Change::Put(Record::Task(rec))]
    };
    Ok((
        wire::SubmitTaskStateChangeResponse {
            acknowledgment: Some(ACK.into()),
        },
        changes,
    ))
}

/// SubmitContainerStateChange: one container's new state.
pub fn submit_container_state_change(
    state: &State,
    ctx: &mut Ctx,
    req: wire::SubmitContainerStateChangeRequest,
) -> Written<wire::SubmitContainerStateChangeResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let ident = req.task.ok_or_else(|| invalid("task is required."))?;
    let mut rec = find(state, &ctx.scope, &cluster.name, &ident)
        .ok_or_else(|| invalid("The referenced task was not found."))?
        .clone();
    let before = rec.clone();
    rec.agent_acknowledged = true;
    let change = wire::ContainerStateChange {
        container_name: req.container_name,
        runtime_id: req.runtime_id,
        exit_code: req.exit_code,
        network_bindings: req.network_bindings,
        reason: req.reason,
        status: req.status,
        image_digest: None,
    };
    apply_container_change(&mut rec, &change)?;
    let changes = if rec == before {
        vec![]
    } else {
        vec![Change::Put(Record::Task(rec))]
    };
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
    active_cluster(state, scope, req.cluster.as_deref())?;
    if req.attachments.is_none() {
        return Err(invalid("attachments is required."));
    }
    Ok(wire::SubmitAttachmentStateChangesResponse {
        acknowledgment: Some(ACK.into()),
    })
}
