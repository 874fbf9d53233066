//! The read side of tasks: DescribeTasks and ListTasks.

use std::ops::Bound;

use model::arn::ResourceType;
use model::wire;

use crate::error::{EcsError, invalid};
use crate::ops::common::{active_cluster, check_len, member_id, missing};
use crate::paging::{PageRequest, counted, paginate, start_after};
use crate::state::{Scope, State, TaskFilter, TaskRecord};
use crate::task::service_group;

use super::find;

/// DescribeTasks.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: wire::DescribeTasksRequest,
) -> Result<wire::DescribeTasksResponse, EcsError> {
    let idents = req.tasks.ok_or_else(|| invalid("tasks is required."))?;
    if idents.is_empty() {
        return Err(invalid("Tasks cannot be empty."));
    }
    check_len(&idents, 100, "tasks")?;
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&wire::TaskField::Tags);
    let (mut tasks, mut failures) = (Vec::new(), Vec::new());
    for ident in idents {
        match find(state, scope, &cluster.name, &ident) {
            Some(rec) => {
                let mut t = rec.task.clone();
                if !with_tags {
                    t.tags = None;
                }
                tasks.push(t);
            }
            None => failures.push(missing(scope, ident, ResourceType::Task, |i| {
                format!("{}/{i}", cluster.name)
            })),
        }
    }
    Ok(wire::DescribeTasksResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

/// ListTasks with ECS's filters; `desiredStatus` defaults to RUNNING.
///
/// The state indexes each cluster's tasks by desired status and by each filter
/// ([`TaskFilter`]); a page ranges over the smallest index that the request's filters
/// select, from the last id it returned, and checks the other filters on each task, so
/// a page costs the same at any offset.
pub fn list(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListTasksRequest,
) -> Result<wire::ListTasksResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let desired = req.desired_status.unwrap_or(wire::DesiredStatus::Running);
    let instance_id = match req.container_instance.as_deref() {
        Some(ci) => Some(
            member_id(scope, ResourceType::ContainerInstance, ci)
                .map(|(_, id)| id)
                .ok_or_else(|| {
                    invalid(format!(
                        "containerInstance {ci:?} is not a container instance id or ARN."
                    ))
                })?,
        ),
        None => None,
    };
    if req.started_by.is_some() && req.service_name.is_some() {
        return Err(invalid("startedBy and serviceName cannot both be given."));
    }
    let of_service = req
        .service_name
        .as_deref()
        .map(|s| service_group(s.rsplit('/').next().unwrap_or(s)));
    let family = req.family.as_deref();
    let wanted = |t: &TaskRecord| {
        t.task.desired() == Some(desired.into())
            && (instance_id.is_none() || t.instance_id.as_deref() == instance_id.as_deref())
            && (req.started_by.is_none()
                || t.task.started_by.as_deref() == req.started_by.as_deref())
            && (of_service.is_none() || t.task.group.as_deref() == of_service.as_deref())
            && (req.launch_type.is_none() || t.task.launch_type == req.launch_type)
            && family.is_none_or(|f| {
                t.task
                    .task_definition_arn
                    .as_deref()
                    .and_then(crate::state::family_of_arn)
                    == Some(f)
            })
    };
    // The smallest index the filters select (every filter is checked on each task).
    let empty = std::collections::BTreeSet::new();
    let index = [
        Some((TaskFilter::All, "")),
        instance_id.as_deref().map(|v| (TaskFilter::Instance, v)),
        req.started_by
            .as_deref()
            .map(|v| (TaskFilter::StartedBy, v)),
        of_service.as_deref().map(|v| (TaskFilter::Group, v)),
        family.map(|v| (TaskFilter::Family, v)),
    ]
    .into_iter()
    .flatten()
    .map(|(filter, value)| {
        state
            .task_list(scope, &cluster.name, desired.as_str(), filter, value)
            .unwrap_or(&empty)
    })
    .min_by_key(|ids| ids.len())
    .unwrap_or(&empty);
    let filters = format!(
        "{}|{desired}|{}|{}|{}|{}|{}",
        cluster.name,
        instance_id.as_deref().unwrap_or(""),
        req.started_by.as_deref().unwrap_or(""),
        of_service.as_deref().unwrap_or(""),
        family.unwrap_or(""),
        req.launch_type.map(|l| l.as_str()).unwrap_or("")
    );
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListTasks",
            &filters,
            req.max_results,
            req.next_token.as_deref(),
        ),
        |after| {
            let start = start_after(after.map(str::to_owned), String::new());
            // The index's entries are the task records themselves.
            let start = start.as_ref().map(String::as_str);
            Ok(counted(index.range::<str, _>((start, Bound::Unbounded)))
                .map(|t| &*t.0)
                .filter(|t| wanted(t))
                .map(|t| {
                    (
                        t.id.clone(),
                        t.task.task_arn.as_deref().unwrap_or_default().to_owned(),
                    )
                }))
        },
    )?;
    Ok(wire::ListTasksResponse {
        task_arns: Some(page.items),
        next_token: page.next_token,
    })
}
