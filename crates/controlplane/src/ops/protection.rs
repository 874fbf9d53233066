//! Task scale-in protection: UpdateTaskProtection and GetTaskProtection.
//!
//! A protected service task is never picked by the service controller when it scales in
//! or replaces tasks in a deployment, until the protection expires (`expiresInMinutes`,
//! default 120, at most 2880) or is turned off. As in ECS, only tasks of a service can be
//! protected; others come back in `failures` with reason `TASK_NOT_VALID`.
//!
//! The expiry is kept as a task attribute, [`PROTECTION_ATTRIBUTE`] (epoch seconds), so it
//! is stored with the task and survives restarts; expired protection is ignored given `now`,
//! never cleaned up by a timer. Reading it is [`crate::task`]'s, which the service
//! controller uses too.

use model::arn::ResourceType;
use model::lifecycle::TaskStatus;
use model::wire;

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::common::{active_cluster, check_len};
use crate::ops::tasks::find;
use crate::state::{Change, Record, Scope, State, TaskRecord};
use crate::task::{PROTECTION_ATTRIBUTE, is_protected, protection_expiry};

/// `expiresInMinutes` when not given.
pub const DEFAULT_EXPIRES_IN_MINUTES: i32 = 120;
/// Largest `expiresInMinutes` (48 hours).
pub const MAX_EXPIRES_IN_MINUTES: i32 = 2880;

fn shown(rec: &TaskRecord, now: f64) -> wire::ProtectedTask {
    let expiry = protection_expiry(&rec.task).filter(|e| *e > now);
    wire::ProtectedTask {
        task_arn: rec.task.task_arn.as_deref().map(str::to_owned),
        protection_enabled: Some(expiry.is_some()),
        expiration_date: expiry,
    }
}

fn failure(arn: String, reason: &str, detail: &str) -> wire::Failure {
    wire::Failure {
        arn: Some(arn),
        reason: Some(reason.into()),
        detail: Some(detail.into()),
    }
}

fn task_arn(scope: &Scope, cluster: &str, ident: &str) -> String {
    if ident.starts_with("arn:") {
        ident.to_owned()
    } else {
        scope.arn(ResourceType::Task, format!("{cluster}/{ident}"))
    }
}

fn is_service_task(rec: &TaskRecord) -> bool {
    rec.task
        .group
        .as_deref()
        .is_some_and(|g| crate::task::group_service(g).is_some())
}

/// UpdateTaskProtection: sets or clears scale-in protection on up to 10 service tasks.
pub fn update(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UpdateTaskProtectionRequest,
) -> Written<wire::UpdateTaskProtectionResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let idents = req.tasks.ok_or_else(|| invalid("tasks is required."))?;
    if idents.is_empty() {
        return Err(invalid("tasks must name at least one task."));
    }
    check_len(&idents, 10, "tasks")?;
    let enabled = req
        .protection_enabled
        .ok_or_else(|| invalid("protectionEnabled is required."))?;
    let minutes = req.expires_in_minutes.unwrap_or(DEFAULT_EXPIRES_IN_MINUTES);
    if enabled && !(1..=MAX_EXPIRES_IN_MINUTES).contains(&minutes) {
        return Err(invalid(format!(
            "expiresInMinutes must be between 1 and {MAX_EXPIRES_IN_MINUTES}, got {minutes}."
        )));
    }
    let (mut protected, mut failures, mut changes) = (Vec::new(), Vec::new(), Vec::new());
    for ident in idents {
        let arn = task_arn(&ctx.scope, &cluster.name, &ident);
        let Some(rec) = find(state, &ctx.scope, &cluster.name, &ident) else {
            failures.push(failure(arn, "MISSING", "The task was not found."));
            continue;
        };
        if !is_service_task(rec) {
            failures.push(failure(
                arn,
                "TASK_NOT_VALID",
                "Task protection is only supported for tasks that belong to a service.",
            ));
            continue;
        }
        if rec.task.desired() == Some(TaskStatus::Stopped) {
            failures.push(failure(
                arn,
                "TASK_NOT_VALID",
                "The task is stopping or stopped.",
            ));
            continue;
        }
        let mut rec = rec.clone();
        let attrs = rec.task.attributes.get_or_insert_with(Vec::new);
        attrs.retain(|a| a.name.as_deref() != Some(PROTECTION_ATTRIBUTE));
        if enabled {
            let expiry = ctx.now + f64::from(minutes) * 60.0;
            attrs.push(wire::Attribute {
                name: Some(PROTECTION_ATTRIBUTE.into()),
                value: Some(format!("{expiry}")),
                ..Default::default()
            });
        }
        protected.push(shown(&rec, ctx.now));
        changes.push(Change::Put(Record::Task(rec)));
    }
    Ok((
        wire::UpdateTaskProtectionResponse {
            protected_tasks: Some(protected),
            failures: Some(failures),
        },
        changes,
    ))
}

/// GetTaskProtection: the protection of up to 100 tasks (without `tasks`: every
/// protected task of the cluster).
pub fn get(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::GetTaskProtectionRequest,
) -> Result<wire::GetTaskProtectionResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let (mut protected, mut failures) = (Vec::new(), Vec::new());
    match req.tasks {
        Some(idents) => {
            check_len(&idents, 100, "tasks")?;
            for ident in idents {
                let arn = task_arn(scope, &cluster.name, &ident);
                match find(state, scope, &cluster.name, &ident) {
                    None => failures.push(failure(arn, "MISSING", "The task was not found.")),
                    Some(rec) if !is_service_task(rec) => failures.push(failure(
                        arn,
                        "TASK_NOT_VALID",
                        "Task protection is only supported for tasks that belong to a service.",
                    )),
                    Some(rec) => protected.push(shown(rec, now)),
                }
            }
        }
        None => protected.extend(
            state
                .tasks_in(scope, &cluster.name)
                .filter(|t| is_protected(&t.task, now))
                .map(|t| shown(t, now)),
        ),
    }
    Ok(wire::GetTaskProtectionResponse {
        protected_tasks: Some(protected),
        failures: Some(failures),
    })
}
