//! The flotilla agent protocol's operations (see [`model::agent`]): what an instance
//! must run, and its connection state.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use model::agent::{
    GetServiceConnectRoutesRequest, GetServiceConnectRoutesResponse, MAX_ROUTE_NAMESPACES,
    PollTasksRequest, PollTasksResponse, ReportHealthRequest, ReportHealthResponse, TaskAssignment,
    TaskServiceConnect,
};
use model::arn::ResourceType;
use model::host::HostRequest;
use model::lifecycle::TaskStatus;
use model::logs::LogRequest;
use model::status::InstanceStatus;
use model::wire;
use serde::Serialize;

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::agent::edit_reported_task;
use crate::ops::common::{cluster_name, member_id};
use crate::ops::task_definitions;
use crate::state::{Change, InstanceRecord, MemberKey, Record, Scope, State, TaskRecord};

/// Finds the polling instance; an INACTIVE (deregistered) one may not poll.
pub fn polling_instance<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: Option<&str>,
    instance: Option<&str>,
) -> Result<&'a InstanceRecord, EcsError> {
    let cluster = crate::fargate::agent_cluster(state, scope, cluster)?;
    let ident = instance.ok_or_else(|| invalid("containerInstance is required."))?;
    let (_, id) = member_id(scope, ResourceType::ContainerInstance, ident)
        .ok_or_else(|| invalid(format!("containerInstance {ident:?} is not an id or ARN.")))?;
    match state
        .instances
        .get(&MemberKey::new(scope, &cluster.name, &id))
    {
        Some(i) if i.instance.status() != Some(InstanceStatus::Inactive) => Ok(i),
        Some(_) => Err(invalid(format!(
            "Container instance {ident} is deregistered; register it again."
        ))),
        None => Err(invalid(format!(
            "Container instance {ident} is not registered in cluster {}.",
            cluster.name
        ))),
    }
}

/// The instance a PollTasks request polls for: [`polling_instance`] of its `cluster` and
/// `containerInstance`.
fn poller<'a>(
    state: &'a State,
    scope: &Scope,
    req: &PollTasksRequest,
) -> Result<&'a InstanceRecord, EcsError> {
    polling_instance(
        state,
        scope,
        req.cluster.as_deref(),
        req.container_instance.as_deref(),
    )
}

/// The key of the instance a poll names, from the request alone (no state), as
/// [`polling_instance`] resolves it: a waiting poll joins its instance's wake-ups with it
/// before its first look. `None` for a request [`polling_instance`] refuses anyway.
pub fn polling_key(scope: &Scope, req: &PollTasksRequest) -> Option<MemberKey> {
    let cluster = cluster_name(scope, req.cluster.as_deref()).ok()?;
    let (_, id) = member_id(
        scope,
        ResourceType::ContainerInstance,
        req.container_instance.as_deref()?,
    )?;
    Some(MemberKey::new(scope, &cluster, &id))
}

/// The instance's key in the state ([`InstanceRecord::key`], as a function to map with).
pub fn instance_key(i: &InstanceRecord) -> MemberKey {
    i.key()
}

/// The tasks placed on the instance that are not STOPPED, in id order. They come from
/// the per-instance index ([`crate::state::Usage::tasks`]: every task that holds
/// resources there, i.e. is placed on it and not STOPPED), so a look costs
/// O(tasks on the instance), not O(tasks in the cluster): with 100,000 tasks in a
/// cluster, scanning them all on each of 10,000 agents' polls was the poll path's cost.
fn assigned<'a>(
    state: &'a State,
    instance: &'a InstanceRecord,
) -> impl Iterator<Item = &'a TaskRecord> + 'a {
    // The index's entries are the task records themselves (`TaskRef`).
    state
        .usage(&instance.scope, &instance.cluster, &instance.id)
        .into_iter()
        .flat_map(|u| u.tasks.iter())
        .map(|t| &*t.0)
        .filter(|t| {
            t.instance_id.as_deref() == Some(instance.id.as_str())
                && t.task.last() != Some(TaskStatus::Stopped)
        })
}

/// The digest of what the instance must hold, and whether it is draining: O(1), from the
/// per-instance index ([`crate::state::Usage::digest`], kept as its tasks change).
fn instance_digest(state: &State, instance: &InstanceRecord) -> (String, bool) {
    let tasks = state
        .usage(&instance.scope, &instance.cluster, &instance.id)
        .map_or(0, |u| u.digest);
    let draining = instance.instance.status() != Some(InstanceStatus::Active);
    let mut hasher = DefaultHasher::new();
    (tasks, draining).hash(&mut hasher);
    (format!("{:016x}", hasher.finish()), draining)
}

/// What the instance must hold now: every task placed on it that is not STOPPED, with
/// its definition, and a digest that changes whenever any of that changes.
pub fn assignment(state: &State, instance: &InstanceRecord) -> PollTasksResponse {
    let mut tasks = Vec::new();
    for t in assigned(state, instance) {
        let def = t
            .task
            .task_definition_arn
            .as_deref()
            .and_then(|arn| task_definitions::resolve(state, &instance.scope, arn))
            .map(|d| d.definition.clone())
            .unwrap_or_default();
        tasks.push(TaskAssignment {
            task: t.task.clone(),
            task_definition: def,
            service_connect: service_connect_of(state, t),
        });
    }
    let (digest, draining) = instance_digest(state, instance);
    PollTasksResponse {
        digest,
        tasks,
        draining,
        log_requests: Vec::new(),
        host_requests: Vec::new(),
        unchanged: false,
    }
}

/// [`PollTasksResponse`] as borrowed views of the state, for [`poll_answer_json`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnswerView<'a> {
    digest: String,
    tasks: Vec<AssignmentView<'a>>,
    draining: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    log_requests: &'a [LogRequest],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    host_requests: &'a [HostRequest],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unchanged: bool,
}

/// [`TaskAssignment`], borrowed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentView<'a> {
    task: &'a wire::Task,
    task_definition: &'a wire::TaskDefinition,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_connect: Option<TaskServiceConnect>,
}

/// A task's Service Connect settings: its deployment's namespace, when enabled.
fn service_connect_of(state: &State, t: &TaskRecord) -> Option<TaskServiceConnect> {
    crate::service_connect::task_namespace(state, t).map(|ns| TaskServiceConnect {
        namespace: ns.to_owned(),
    })
}

/// PollTasks' answer — the JSON of [`poll_tasks`]' [`PollTasksResponse`] with
/// `log_requests` and `host_requests` — serialized straight from the state: no task or definition is
/// copied (an answer carries every task of the instance with its definition).
///
/// An agent that asks for it (`omitUnchanged`) and already holds the assignment
/// (`knownDigest` is the digest) gets the brief answer instead: no tasks, `unchanged`.
/// Every agent gets an answer at least every `waitSeconds`, nearly all of them with
/// nothing changed, so this is what keeps an idle poll from encoding the instance's
/// tasks again.
///
/// # Errors
///
/// As [`polling_instance`]; `EcsError::Server` if the answer cannot be encoded.
pub fn poll_answer_json(
    state: &State,
    scope: &Scope,
    req: &PollTasksRequest,
    log_requests: &[LogRequest],
    host_requests: &[HostRequest],
) -> Result<(MemberKey, Vec<u8>), EcsError> {
    let instance = poller(state, scope, req)?;
    let (digest, draining) = instance_digest(state, instance);
    let unchanged =
        req.omit_unchanged == Some(true) && req.known_digest.as_deref() == Some(digest.as_str());
    let missing = wire::TaskDefinition::default();
    let mut tasks = Vec::new();
    // The brief answer looks at no task.
    let listed = if unchanged { None } else { Some(instance) };
    for t in listed.into_iter().flat_map(|i| assigned(state, i)) {
        let def = t
            .task
            .task_definition_arn
            .as_deref()
            .and_then(|arn| task_definitions::resolve(state, &instance.scope, arn))
            .map_or(&missing, |d| &d.definition);
        tasks.push(AssignmentView {
            task: &t.task,
            task_definition: def,
            service_connect: service_connect_of(state, t),
        });
    }
    let json = serde_json::to_vec(&AnswerView {
        digest,
        tasks,
        draining,
        log_requests,
        host_requests,
        unchanged,
    })
    .map_err(|e| EcsError::Server(format!("cannot encode the response: {e}")))?;
    Ok((instance_key(instance), json))
}

/// The digest [`assignment`] would give, in O(1) (from the per-instance index): what a
/// waiting poll checks on every look.
pub fn assignment_digest(state: &State, instance: &InstanceRecord) -> String {
    instance_digest(state, instance).0
}

/// PollTasks, one look (the API layer repeats it while it waits for a change).
pub fn poll_tasks(
    state: &State,
    scope: &Scope,
    req: &PollTasksRequest,
) -> Result<(MemberKey, PollTasksResponse, bool), EcsError> {
    look(state, scope, req, assignment)
}

/// PollTasks, a cheap look: the instance's key, the digest of its assignment and
/// whether its agent counts as connected. A waiting poll builds the whole answer
/// ([`poll_tasks`]) only when the digest differs from the agent's.
pub fn poll_digest(
    state: &State,
    scope: &Scope,
    req: &PollTasksRequest,
) -> Result<(MemberKey, String, bool), EcsError> {
    look(state, scope, req, assignment_digest)
}

/// One look of a poll: the polling instance's key, `view` of its assignment, and whether
/// its agent counts as connected.
fn look<T>(
    state: &State,
    scope: &Scope,
    req: &PollTasksRequest,
    view: fn(&State, &InstanceRecord) -> T,
) -> Result<(MemberKey, T, bool), EcsError> {
    let instance = poller(state, scope, req)?;
    let connected = instance.instance.agent_connected == Some(true);
    Ok((instance_key(instance), view(state, instance), connected))
}

/// GetServiceConnectRoutes: the client aliases of the namespaces the asking node's
/// Service Connect tasks use, with their endpoints ([`crate::service_connect::routes`]).
///
/// # Errors
///
/// As [`polling_instance`]; `InvalidParameterException` for more than
/// [`MAX_ROUTE_NAMESPACES`] namespaces.
pub fn service_connect_routes(
    state: &State,
    scope: &Scope,
    req: &GetServiceConnectRoutesRequest,
) -> Result<GetServiceConnectRoutesResponse, EcsError> {
    polling_instance(
        state,
        scope,
        req.cluster.as_deref(),
        req.container_instance.as_deref(),
    )?;
    if req.namespaces.len() > MAX_ROUTE_NAMESPACES {
        return Err(invalid(format!(
            "namespaces: at most {MAX_ROUTE_NAMESPACES}, got {}.",
            req.namespaces.len()
        )));
    }
    Ok(GetServiceConnectRoutesResponse {
        routes: crate::service_connect::routes(state, scope, &req.namespaces),
    })
}

/// Marks an instance's agent connected or not (a write only when it changes).
pub fn set_agent_connected(
    state: &State,
    ctx: &mut Ctx,
    key: &MemberKey,
    connected: bool,
) -> Written<()> {
    let Some(rec) = state.instances.get(key) else {
        return Ok(((), vec![]));
    };
    if rec.instance.agent_connected == Some(connected)
        || rec.instance.status() == Some(InstanceStatus::Inactive)
    {
        return Ok(((), vec![]));
    }
    let mut rec = rec.clone();
    rec.instance.agent_connected = Some(connected);
    rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
    rec.last_heartbeat = ctx.now;
    Ok(((), vec![Change::Put(Record::Instance(rec))]))
}

/// The reason given to tasks of an instance whose agent was lost.
pub fn lost_reason(instance: &InstanceRecord) -> String {
    format!(
        "Task stopped because its container instance {} stopped reporting (agent lost).",
        instance
            .instance
            .container_instance_arn
            .as_deref()
            .unwrap_or(&instance.id)
    )
}

/// Liveness decisions for every instance, given when each agent was last heard from
/// (`last_seen`, epoch seconds): agents silent for `disconnect_after` seconds become
/// disconnected; the unstopped tasks of an instance silent for `lost_after` seconds are
/// marked STOPPED (the service controller then replaces them elsewhere).
pub fn check_liveness(
    state: &State,
    ctx: &mut Ctx,
    last_seen: &std::collections::HashMap<MemberKey, f64>,
    disconnect_after: f64,
    lost_after: f64,
) -> Written<usize> {
    let mut changes = Vec::new();
    for (key, rec) in &state.instances {
        if !matches!(
            rec.instance.status(),
            Some(InstanceStatus::Active | InstanceStatus::Draining)
        ) {
            continue;
        }
        let seen = last_seen
            .get(key)
            .copied()
            .unwrap_or(rec.last_heartbeat)
            .max(rec.last_heartbeat);
        let silent = ctx.now - seen;
        if silent > disconnect_after && rec.instance.agent_connected == Some(true) {
            let mut r = rec.clone();
            r.instance.agent_connected = Some(false);
            r.instance.version = Some(r.instance.version.unwrap_or(0) + 1);
            r.last_heartbeat = seen;
            changes.push(Change::Put(Record::Instance(r)));
        }
        if silent > lost_after {
            for t in assigned(state, rec) {
                let mut t = t.clone();
                if t.task.stopped_reason.is_none() {
                    t.task.stopped_reason = Some(lost_reason(rec));
                }
                t.task
                    .stop_code
                    .get_or_insert(wire::TaskStopCode::TerminationNotice);
                crate::task::mark_stopped(&mut t.task, ctx.now);
                changes.push(Change::Put(Record::Task(t)));
            }
        }
    }
    let n = changes.len();
    Ok((n, changes))
}

/// The task's health from its essential containers that have a health check: any
/// UNHEALTHY makes it UNHEALTHY, all HEALTHY makes it HEALTHY, else UNKNOWN (as ECS).
pub fn task_health(task: &wire::Task, def: Option<&wire::TaskDefinition>) -> wire::HealthStatus {
    let checked: Vec<&wire::Container> = task
        .containers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter(|c| {
            def.and_then(|d| d.container_definitions.as_deref())
                .and_then(|cds| {
                    cds.iter()
                        .find(|cd| cd.name.as_deref() == c.name.as_deref())
                })
                .is_some_and(|cd| cd.essential != Some(false) && cd.health_check.is_some())
        })
        .collect();
    if checked
        .iter()
        .any(|c| c.health_status == Some(wire::HealthStatus::Unhealthy))
    {
        wire::HealthStatus::Unhealthy
    } else if !checked.is_empty()
        && checked
            .iter()
            .all(|c| c.health_status == Some(wire::HealthStatus::Healthy))
    {
        wire::HealthStatus::Healthy
    } else {
        wire::HealthStatus::Unknown
    }
}

/// ReportHealth: records containers' health and the task's derived health.
pub fn report_health(
    state: &State,
    ctx: &mut Ctx,
    req: ReportHealthRequest,
) -> Written<ReportHealthResponse> {
    let changes = edit_reported_task(
        state,
        &ctx.scope,
        (req.cluster.as_deref(), req.task.as_deref()),
        |rec| {
            for h in &req.containers {
                let c = rec
                    .task
                    .containers
                    .get_or_insert_with(Vec::new)
                    .iter_mut()
                    .find(|c| c.name.as_deref() == Some(h.container_name.as_str()))
                    .ok_or_else(|| {
                        invalid(format!(
                            "The task has no container named {}.",
                            h.container_name
                        ))
                    })?;
                c.health_status = Some(h.health_status);
            }
            let def = rec
                .task
                .task_definition_arn
                .as_deref()
                .and_then(|arn| task_definitions::resolve(state, &ctx.scope, arn))
                .map(|d| &d.definition);
            rec.task.health_status = Some(task_health(&rec.task, def));
            Ok(())
        },
    )?;
    Ok((
        ReportHealthResponse {
            acknowledgment: "ACK".into(),
        },
        changes,
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::ops::test_support::{self, scope};
    use crate::ops::{clusters, instances, tasks};

    fn apply<Req: serde::de::DeserializeOwned, Resp>(
        s: &mut State,
        op: fn(&State, &mut Ctx, Req) -> Written<Resp>,
        body: Value,
        seed: u64,
    ) -> Resp {
        let mut ctx = Ctx::new(scope(), 1000.0, seed);
        let (resp, changes) = op(s, &mut ctx, serde_json::from_value(body).unwrap()).unwrap();
        test_support::apply(s, &changes);
        resp
    }

    /// The per-instance index gives what a scan of the cluster's tasks gave, the cheap
    /// look's digest is the answer's, and the borrowed answer is the owned one's JSON.
    #[test]
    fn the_cheap_look_and_the_borrowed_answer_match_the_assignment() {
        let mut s = State::default();
        apply(
            &mut s,
            clusters::create_cluster,
            json!({"clusterName": "c"}),
            1,
        );
        for (i, id) in ["i-1", "i-2", "i-3"].iter().enumerate() {
            let doc = json!({"instanceId": id, "availabilityZone": "a"}).to_string();
            apply(
                &mut s,
                instances::register,
                json!({"cluster": "c", "instanceIdentityDocument": doc, "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]}),
                10 + i as u64,
            );
        }
        apply(
            &mut s,
            task_definitions::register,
            json!({"family": "web", "containerDefinitions": [
                {"name": "app", "image": "busybox", "memory": 64}]}),
            2,
        );
        let ran = apply(
            &mut s,
            tasks::run_task,
            json!({"cluster": "c", "taskDefinition": "web", "count": 8}),
            3,
        );
        let first = ran.tasks.unwrap()[0].task_arn.clone().unwrap();
        apply(
            &mut s,
            tasks::stop_task,
            json!({"cluster": "c", "task": first}),
            4,
        );
        let mut answered = 0;
        for inst in s.instances.values() {
            let req = PollTasksRequest {
                cluster: Some("c".into()),
                container_instance: inst.instance.container_instance_arn.clone(),
                ..Default::default()
            };
            let (key, resp, _) = poll_tasks(&s, &scope(), &req).unwrap();
            let scanned: Vec<&str> = s
                .tasks_in(&scope(), "c")
                .filter(|t| {
                    t.instance_id.as_deref() == Some(inst.id.as_str())
                        && t.task.last() != Some(TaskStatus::Stopped)
                })
                .map(|t| t.task.task_arn.as_deref().unwrap())
                .collect();
            let given: Vec<&str> = resp
                .tasks
                .iter()
                .map(|a| a.task.task_arn.as_deref().unwrap())
                .collect();
            assert_eq!(given, scanned);
            assert!(
                !given.contains(&first.as_str()),
                "a STOPPED task is not assigned"
            );
            answered += given.len();
            assert_eq!(polling_key(&scope(), &req), Some(key.clone()));
            let (_, digest, _) = poll_digest(&s, &scope(), &req).unwrap();
            assert_eq!(digest, resp.digest);
            let logs = vec![LogRequest::default()];
            let host = vec![HostRequest {
                request_id: "req-1".into(),
                call: model::host::HostCall::GetUpdateStatus,
            }];
            let (json_key, json) = poll_answer_json(&s, &scope(), &req, &logs, &host).unwrap();
            let mut owned = resp.clone();
            owned.log_requests = logs;
            owned.host_requests = host;
            assert_eq!(json, serde_json::to_vec(&owned).unwrap());
            assert_eq!(json_key, key);
            let (_, without) = poll_answer_json(&s, &scope(), &req, &[], &[]).unwrap();
            assert_eq!(without, serde_json::to_vec(&resp).unwrap());
            // An agent that holds the assignment and asks for brief answers gets one;
            // one whose digest is stale gets the whole answer.
            let brief = PollTasksRequest {
                known_digest: Some(digest.clone()),
                omit_unchanged: Some(true),
                ..req.clone()
            };
            let (_, json) = poll_answer_json(&s, &scope(), &brief, &[], &[]).unwrap();
            let answer: PollTasksResponse = serde_json::from_slice(&json).unwrap();
            assert!(answer.unchanged && answer.tasks.is_empty());
            assert_eq!((answer.digest, answer.draining), (digest, resp.draining));
            let stale = PollTasksRequest {
                known_digest: Some("0".into()),
                ..brief
            };
            let (_, json) = poll_answer_json(&s, &scope(), &stale, &[], &[]).unwrap();
            assert_eq!(json, serde_json::to_vec(&resp).unwrap());
        }
        assert_eq!(answered, 7);
    }
}
