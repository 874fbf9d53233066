//! Tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks. Building a task and
//! stopping one are [`crate::task`]'s; what the scheduler sees of the state is
//! [`crate::placement`]'s.

use model::arn::ResourceType;
use model::lifecycle::TaskStatus;
use model::status::InstanceStatus as RecordStatus;
use model::wire::{self, Compatibility, LaunchType, TaskDefinitionStatus};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, client, invalid};
use crate::ops::common::{active_cluster, check_len, member_id, merge_tags, validate_tags};
use crate::ops::instances;
use crate::ops::task_definitions;
use crate::placement::{
    in_node_group, instance_view_with, placement_snapshot, reservation_of, task_request,
};
use crate::state::{
    Change, ClusterRecord, InstanceRecord, MemberKey, Record, Scope, State, TaskDefinitionRecord,
    TaskRecord,
};
use crate::task::{TaskSpec, build_task, request_stop};
use scheduler::snapshot::{ClusterSnapshot, InstanceStatus, TaskRequest};
use scheduler::{Outcome, PlacementSpec};

mod read;
pub use read::{describe, list};

fn validate_overrides(
    def: &wire::TaskDefinition,
    overrides: &wire::TaskOverride,
) -> Result<(), EcsError> {
    let names: Vec<&str> = def
        .container_definitions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    for o in overrides.container_overrides.as_deref().unwrap_or(&[]) {
        let name = o.name.as_deref().unwrap_or("");
        if !names.contains(&name) {
            return Err(invalid(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
        if o.memory.is_some_and(|m| m < 6) || o.cpu.is_some_and(|c| c < 0) {
            return Err(invalid(format!(
                "containerOverrides for {name}: memory must be at least 6 MiB and cpu not negative."
            )));
        }
    }
    if let Some(c) = &overrides.cpu {
        model::size::parse_cpu(c).map_err(|e| invalid(format!("overrides.cpu: {e}")))?;
    }
    if let Some(m) = &overrides.memory {
        model::size::parse_memory(m).map_err(|e| invalid(format!("overrides.memory: {e}")))?;
    }
    Ok(())
}

fn resolve_runnable<'a>(
    state: &'a State,
    scope: &Scope,
    ident: Option<&str>,
) -> Result<&'a TaskDefinitionRecord, EcsError> {
    let ident = ident.ok_or_else(|| invalid("taskDefinition is required."))?;
    let def = task_definitions::resolve(state, scope, ident)
        .ok_or_else(|| client("TaskDefinition not found."))?;
    if def.definition.status != Some(TaskDefinitionStatus::Active) {
        return Err(client("TaskDefinition is inactive"));
    }
    Ok(def)
}

fn validate_started_by(s: Option<&str>) -> Result<(), EcsError> {
    if let Some(s) = s
        && (s.len() > 36
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(invalid(
            "startedBy can be up to 36 letters (uppercase and lowercase), numbers, hyphens, and underscores.",
        ));
    }
    Ok(())
}

/// A task as RunTask and StartTask answer it: as on ECS, without `tags` when it has none
/// (DescribeTasks shows them with `include: ["TAGS"]`).
fn answered(task: &wire::Task) -> wire::Task {
    let mut t = task.clone();
    if t.tags.as_ref().is_some_and(Vec::is_empty) {
        t.tags = None;
    }
    t
}

fn task_tags(
    def: &TaskDefinitionRecord,
    tags: Vec<wire::Tag>,
    propagate: Option<wire::PropagateTags>,
) -> Result<Vec<wire::Tag>, EcsError> {
    validate_tags(&tags)?;
    Ok(if propagate == Some(wire::PropagateTags::TaskDefinition) {
        merge_tags(&def.tags, &tags)
    } else {
        tags
    })
}

fn check_launch_type(
    def: &TaskDefinitionRecord,
    launch_type: Option<LaunchType>,
) -> Result<(), EcsError> {
    match launch_type {
        // Checked by `crate::fargate::validate_launch`; placed on the Fargate pool.
        Some(LaunchType::Fargate) => Ok(()),
        // ECS Anywhere: external instances run bridge, host and none tasks.
        Some(LaunchType::External) => {
            let requires = def
                .definition
                .requires_compatibilities
                .as_deref()
                .unwrap_or(&[]);
            if !requires.is_empty() && !requires.contains(&Compatibility::External) {
                return Err(client(
                    "Task definition does not support launch_type EXTERNAL.",
                ));
            }
            if def.definition.network_mode == Some(wire::NetworkMode::Awsvpc) {
                return Err(invalid(
                    "Tasks with the EXTERNAL launch type do not support the awsvpc network mode; use bridge, host or none.",
                ));
            }
            Ok(())
        }
        Some(LaunchType::ManagedInstances) => Err(EcsError::UnsupportedFeature(
            "The MANAGED_INSTANCES launch type is not available in flotilla.".into(),
        )),
        _ => {
            let requires = def
                .definition
                .requires_compatibilities
                .as_deref()
                .unwrap_or(&[]);
            if !requires.is_empty()
                && !requires.contains(&Compatibility::Ec2)
                && !requires.contains(&Compatibility::External)
            {
                return Err(client("Task definition does not support launch_type EC2."));
            }
            Ok(())
        }
    }
}

fn placement_spec(
    def: &TaskDefinitionRecord,
    strategies: &[wire::PlacementStrategy],
    constraints: &[wire::PlacementConstraint],
) -> Result<PlacementSpec, EcsError> {
    crate::placement::placement_spec(def, strategies, constraints)
        .map_err(|e| invalid(e.to_string()))
}

/// What one task of `def` launched as `spec` asks of an instance: [`task_request`] with
/// the spec's overrides and group ([`TaskSpec::group_or_family`]).
fn spec_request(def: &TaskDefinitionRecord, spec: &TaskSpec) -> TaskRequest {
    task_request(
        def,
        spec.overrides.as_ref(),
        &spec.group_or_family(&def.family),
    )
}

/// Places `requests` with the scheduler and builds a task for each placement (with the
/// capacity provider `providers` gives the request at the same index, if any); returns
/// the tasks and ECS-style failures for the rest.
fn place(
    ctx: &mut Ctx,
    cluster: &ClusterRecord,
    def: &TaskDefinitionRecord,
    task_spec: &TaskSpec,
    (snapshot, records): (&ClusterSnapshot, &[&InstanceRecord]),
    (requests, providers): (&[TaskRequest], &[Option<String>]),
    placement: &PlacementSpec,
) -> (Vec<TaskRecord>, Vec<wire::Failure>) {
    let plan = scheduler::place(snapshot, requests, placement, ctx.random_u64());
    let (mut placed, mut failures) = (Vec::new(), Vec::<wire::Failure>::new());
    for (i, (request, outcome)) in requests.iter().zip(&plan.outcomes).enumerate() {
        match outcome {
            Outcome::Placed(p) => {
                let Some(instance) = records.get(p.instance_index) else {
                    continue;
                };
                let reservation = reservation_of(request, &p.dynamic_ports);
                let mut task = build_task(
                    ctx,
                    cluster,
                    def,
                    instance,
                    task_spec,
                    reservation,
                    &p.dynamic_ports,
                );
                task.task.capacity_provider_name =
                    providers.get(i).cloned().flatten().map(Into::into);
                placed.push(task);
            }
            Outcome::Failed(f) => {
                for failure in f.to_wire() {
                    if !failures.contains(&failure) {
                        failures.push(failure);
                    }
                }
            }
        }
    }
    (placed, failures)
}

/// How long a RunTask `clientToken` stays in use: ECS keeps a token for 24 hours (less
/// when its tasks are gone sooner; here, when retention deletes them).
pub const CLIENT_TOKEN_TTL_SECS: f64 = 24.0 * 3600.0;

/// Most characters of a RunTask `clientToken` (ECS: 64).
pub const MAX_CLIENT_TOKEN_LEN: usize = 64;

/// ECS: "Up to 64 characters are allowed. The valid characters are characters in the
/// range of 33-126, inclusive."
fn validate_client_token(token: &str) -> Result<(), EcsError> {
    if token.is_empty()
        || token.len() > MAX_CLIENT_TOKEN_LEN
        || !token.bytes().all(|b| (33..=126).contains(&b))
    {
        return Err(invalid(format!(
            "clientToken must be 1-{MAX_CLIENT_TOKEN_LEN} characters in the range of 33-126 (printable ASCII, no spaces)."
        )));
    }
    Ok(())
}

/// A digest of every parameter of a RunTask request but its `clientToken`, as parsed
/// (so the order of the JSON members does not matter; any other difference does).
fn request_fingerprint(req: &wire::RunTaskRequest) -> Result<String, EcsError> {
    use sha2::Digest;
    let mut bare = req.clone();
    bare.client_token = None;
    let bytes = serde_json::to_vec(&bare).map_err(|e| EcsError::Server(e.to_string()))?;
    Ok(hex::encode(&sha2::Sha256::digest(&bytes)[..16]))
}

/// What a RunTask whose `clientToken` was used before answers: the same tasks (as they
/// are now) when the request is the same, `ConflictException` when it is not (ECS:
/// "The provided clientToken is already in use with a different RunTask request"), or
/// `None` when the token is not in use (never used in this cluster, used more than
/// [`CLIENT_TOKEN_TTL_SECS`] ago, or its tasks are gone). Tokens are per cluster, as
/// ECS's: the same token in another cluster is another request.
fn client_token_replay(
    state: &State,
    scope: &Scope,
    cluster: &str,
    token: &str,
    fingerprint: &str,
    now: f64,
) -> Result<Option<wire::RunTaskResponse>, EcsError> {
    let earlier: Vec<&TaskRecord> = state
        .client_token_tasks(scope, cluster, token)
        .filter(|t| {
            t.task
                .created_at
                .is_none_or(|at| now - at < CLIENT_TOKEN_TTL_SECS)
        })
        .collect();
    if earlier.is_empty() {
        return Ok(None);
    }
    // Tasks stored before fingerprints existed match any request.
    if earlier.iter().any(|t| {
        t.client_token_fingerprint
            .as_deref()
            .is_some_and(|f| f != fingerprint)
    }) {
        let arns: Vec<&str> = earlier
            .iter()
            .filter_map(|t| t.task.task_arn.as_deref())
            .collect();
        return Err(EcsError::Conflict(format!(
            "The provided clientToken is already in use with a different RunTask request. \
             Run RunTask with a unique clientToken, or with this clientToken and the original \
             set of parameters. Tasks already associated with the clientToken: {}.",
            arns.join(", ")
        )));
    }
    Ok(Some(wire::RunTaskResponse {
        tasks: Some(earlier.iter().map(|t| answered(&t.task)).collect()),
        failures: Some(vec![]),
    }))
}

/// RunTask: places up to 10 tasks of a definition on the cluster's instances.
pub fn run_task(
    state: &State,
    ctx: &mut Ctx,
    req: wire::RunTaskRequest,
) -> Written<wire::RunTaskResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let def = resolve_runnable(state, &ctx.scope, req.task_definition.as_deref())?;
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(invalid(format!(
            "count must be between 1 and 10, got {count}."
        )));
    }
    // A strategy (given, or the cluster's default) and a launch type exclude each other.
    let strategy = crate::capacity::resolve_strategy(
        cluster,
        req.launch_type,
        req.capacity_provider_strategy.as_deref(),
    )?;
    // FARGATE (the launch type, or a strategy of the Fargate providers): the pool's.
    let fargate_launch = req.launch_type == Some(LaunchType::Fargate)
        || strategy
            .as_deref()
            .is_some_and(crate::capacity::is_fargate_strategy);
    if !fargate_launch {
        check_launch_type(def, req.launch_type)?;
    }
    let fargate = if fargate_launch {
        crate::fargate::validate_launch(
            &def.definition,
            req.overrides.as_ref(),
            req.network_configuration.as_ref(),
        )?;
        Some(crate::fargate::resolve_platform_version(
            req.platform_version.as_deref(),
        )?)
    } else {
        None
    };
    validate_started_by(req.started_by.as_deref())?;
    if req
        .group
        .as_ref()
        .is_some_and(|g| g.is_empty() || g.len() > 255)
    {
        return Err(invalid("group must be 1-255 characters."));
    }
    if let Some(o) = &req.overrides {
        validate_overrides(&def.definition, o)?;
    }
    let fingerprint = match &req.client_token {
        Some(token) => {
            validate_client_token(token)?;
            let fingerprint = request_fingerprint(&req)?;
            if let Some(earlier) = client_token_replay(
                state,
                &ctx.scope,
                &cluster.name,
                token,
                &fingerprint,
                ctx.now,
            )? {
                return Ok((earlier, vec![]));
            }
            Some(fingerprint)
        }
        None => None,
    };
    let spec = TaskSpec {
        group: req.group,
        started_by: req.started_by,
        overrides: req.overrides,
        tags: task_tags(def, req.tags.unwrap_or_default(), req.propagate_tags)?,
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
        client_token: req.client_token,
        launch_type: Some(req.launch_type.unwrap_or(LaunchType::Ec2)),
        fargate: None,
    };
    if let Some(platform_version) = fargate {
        let launch = FargateRun {
            count,
            strategy: strategy.as_deref(),
            platform_version,
            subnet: crate::fargate::first_subnet(req.network_configuration.as_ref()),
            placement: (
                req.placement_strategy.as_deref().unwrap_or(&[]),
                req.placement_constraints.as_deref().unwrap_or(&[]),
            ),
        };
        return run_fargate(state, ctx, cluster, def, spec, launch, fingerprint);
    }
    let placement = placement_spec(
        def,
        req.placement_strategy.as_deref().unwrap_or(&[]),
        req.placement_constraints.as_deref().unwrap_or(&[]),
    )?
    .or_default_strategies(PlacementSpec::run_task_default_strategies());
    let (snap, records) = placement_snapshot(state, &ctx.scope, &cluster.name);
    if !snap
        .instances
        .iter()
        .any(|i| i.status == InstanceStatus::Active)
    {
        return Err(invalid(
            "No Container Instances were found in your cluster.",
        ));
    }
    // EXTERNAL goes to external instances only; EC2 never does.
    let request = crate::placement::for_launch_type(spec_request(def, &spec), spec.launch_type);
    // With a strategy, each task is for one provider and kept to its node group.
    let (requests, providers) = match &strategy {
        None => (vec![request; usize::try_from(count).unwrap_or(1)], vec![]),
        Some(s) => {
            let n = u32::try_from(count).unwrap_or(1);
            let mut out = (Vec::new(), Vec::new());
            for (provider, node_group, k) in crate::capacity::launch_plan(state, &ctx.scope, s, n)?
            {
                for _ in 0..k {
                    out.0.push(in_node_group(request.clone(), &node_group));
                    out.1.push(Some(provider.clone()));
                }
            }
            out
        }
    };
    let (placed, failures) = place(
        ctx,
        cluster,
        def,
        &spec,
        (&snap, &records),
        (&requests, &providers),
        &placement,
    );
    run_task_answer(placed, failures, fingerprint)
}

/// RunTask's answer and changes: the placed tasks (in id order when a client token was
/// given: a retry answers the token's tasks in that order, so does the first answer), each
/// remembering the token's fingerprint.
fn run_task_answer(
    mut placed: Vec<TaskRecord>,
    failures: Vec<wire::Failure>,
    fingerprint: Option<String>,
) -> Written<wire::RunTaskResponse> {
    if fingerprint.is_some() {
        placed.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let tasks = placed.iter().map(|t| answered(&t.task)).collect();
    let changes = placed
        .into_iter()
        .map(|mut t| {
            t.client_token_fingerprint.clone_from(&fingerprint);
            Change::Put(Record::Task(t))
        })
        .collect();
    Ok((
        wire::RunTaskResponse {
            tasks: Some(tasks),
            failures: Some(failures),
        },
        changes,
    ))
}

/// A FARGATE RunTask's launch inputs (see [`run_fargate`]).
struct FargateRun<'r> {
    count: i32,
    /// The Fargate providers' strategy, if the request (or the cluster) gave one.
    strategy: Option<&'r [wire::CapacityProviderStrategyItem]>,
    platform_version: String,
    subnet: Option<String>,
    /// The request's `placementStrategy` and `placementConstraints` (refused).
    placement: (
        &'r [wire::PlacementStrategy],
        &'r [wire::PlacementConstraint],
    ),
}

/// RunTask for FARGATE: `count` tasks placed on the Fargate pool of the account and
/// region (every pool node that is ACTIVE and connected), spread across zones, each
/// with the Fargate shape. A task the pool has no room for is one `failures` entry with
/// ECS's reason ([`crate::fargate::CAPACITY_UNAVAILABLE`]); its `detail` says what ran
/// short (the pool's nodes are never named).
fn run_fargate(
    state: &State,
    ctx: &mut Ctx,
    cluster: &ClusterRecord,
    def: &TaskDefinitionRecord,
    mut spec: TaskSpec,
    launch: FargateRun<'_>,
    fingerprint: Option<String>,
) -> Written<wire::RunTaskResponse> {
    if !launch.placement.0.is_empty() || !launch.placement.1.is_empty() {
        return Err(invalid(
            "Task placement strategies and constraints are not supported with the FARGATE launch type.",
        ));
    }
    let placement = crate::fargate::placement_spec();
    let request = spec_request(def, &spec);
    // `count` is 1-10 (checked by RunTask): so is the number of requests.
    let n = u32::try_from(launch.count).unwrap_or(1);
    let split = match launch.strategy {
        Some(s) => crate::capacity::split(s, n, &Default::default()),
        None => vec![(crate::fargate::FARGATE_PROVIDER.to_owned(), n)],
    };
    spec.launch_type = Some(LaunchType::Fargate);
    let (mut placed, mut failed) = (Vec::new(), Vec::new());
    // FARGATE tasks on the pool's regular nodes, FARGATE_SPOT ones on its spot nodes:
    // disjoint sets, so one placement each books no node twice.
    for (provider, k) in split {
        let spot = provider == crate::fargate::FARGATE_SPOT_PROVIDER;
        spec.fargate = Some(crate::task::FargateSpec {
            platform_version: launch.platform_version.clone(),
            provider: provider.clone(),
            subnet: launch.subnet.clone(),
        });
        let requests = vec![request.clone(); k as usize];
        let providers = vec![Some(provider); k as usize];
        let (snap, records) = crate::fargate::pool_snapshot(state, &ctx.scope, false, spot);
        let (p, f) = place(
            ctx,
            cluster,
            def,
            &spec,
            (&snap, &records),
            (&requests, &providers),
            &placement,
        );
        placed.extend(p);
        failed.extend(f);
    }
    let failures: Vec<wire::Failure> = if failed.is_empty() {
        vec![]
    } else {
        let mut short: Vec<String> = failed.into_iter().filter_map(|f| f.reason).collect();
        short.sort();
        short.dedup();
        vec![wire::Failure {
            detail: Some(format!(
                "No Fargate pool node of this region has room for the task ({}).",
                short.join(", ")
            )),
            ..crate::fargate::capacity_failure()
        }]
    };
    run_task_answer(placed, failures, fingerprint)
}

/// StartTask: one task on each of the given container instances.
pub fn start_task(
    state: &State,
    ctx: &mut Ctx,
    req: wire::StartTaskRequest,
) -> Written<wire::StartTaskResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let def = resolve_runnable(state, &ctx.scope, req.task_definition.as_deref())?;
    let idents = req
        .container_instances
        .ok_or_else(|| invalid("containerInstances is required."))?;
    if idents.is_empty() {
        return Err(invalid(
            "containerInstances must name at least one container instance.",
        ));
    }
    check_len(&idents, 10, "containerInstances")?;
    check_launch_type(def, None)?;
    validate_started_by(req.started_by.as_deref())?;
    if let Some(o) = &req.overrides {
        validate_overrides(&def.definition, o)?;
    }
    let spec = TaskSpec {
        group: req.group,
        started_by: req.started_by,
        overrides: req.overrides,
        tags: task_tags(def, req.tags.unwrap_or_default(), req.propagate_tags)?,
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
        client_token: None,
        launch_type: Some(LaunchType::Ec2),
        fargate: None,
    };
    let request = spec_request(def, &spec);
    let placement = placement_spec(def, &[], &[])?;
    let (mut tasks, mut failures, mut changes) = (Vec::new(), Vec::new(), Vec::new());
    let mut snapshots: Vec<TaskRecord> = Vec::new();
    for ident in idents {
        let Some(inst) = instances::find(state, &ctx.scope, &cluster.name, &ident) else {
            failures.push(wire::Failure {
                arn: Some(ident),
                reason: Some("MISSING".into()),
                detail: None,
            });
            continue;
        };
        // StartTask names its instances: one that cannot take tasks is reported by its
        // ARN and status (the scheduler alone would only say that none was found).
        if inst.instance.status() != Some(RecordStatus::Active) {
            failures.push(wire::Failure {
                arn: inst.instance.container_instance_arn.clone(),
                reason: Some(
                    inst.instance
                        .status
                        .clone()
                        .unwrap_or_else(|| RecordStatus::Inactive.into()),
                ),
                detail: None,
            });
            continue;
        }
        let mut view = instance_view_with(state, inst, false);
        // Tasks started earlier in this call hold resources too.
        for t in snapshots
            .iter()
            .filter(|t| t.instance_id.as_deref() == Some(inst.id.as_str()))
        {
            view.remaining_cpu = view
                .remaining_cpu
                .saturating_sub(u32::try_from(t.reservation.cpu).unwrap_or(0));
            view.remaining_memory = view
                .remaining_memory
                .saturating_sub(u32::try_from(t.reservation.memory).unwrap_or(0));
            view.used_ports.tcp.extend(&t.reservation.ports_tcp);
            view.used_ports.udp.extend(&t.reservation.ports_udp);
        }
        let snap = ClusterSnapshot {
            instances: vec![view],
        };
        // On an external (ECS Anywhere) instance the task is an EXTERNAL one, as in ECS.
        let external = crate::placement::is_external(inst).then(|| {
            let mut s = spec.clone();
            s.launch_type = Some(LaunchType::External);
            let r = crate::placement::for_launch_type(request.clone(), s.launch_type);
            (s, r)
        });
        let (spec_here, request_here) = match &external {
            Some((s, r)) => (s, r),
            None => (&spec, &request),
        };
        let (placed, f) = place(
            ctx,
            cluster,
            def,
            spec_here,
            (&snap, &[inst]),
            (std::slice::from_ref(request_here), &[]),
            &placement,
        );
        failures.extend(f);
        for task in placed {
            tasks.push(answered(&task.task));
            changes.push(Change::Put(Record::Task(task.clone())));
            snapshots.push(task);
        }
    }
    Ok((
        wire::StartTaskResponse {
            tasks: Some(tasks),
            failures: Some(failures),
        },
        changes,
    ))
}

/// Finds a task of `cluster` by id or ARN.
pub fn find<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
    ident: &str,
) -> Option<&'a TaskRecord> {
    let (arn_cluster, id) = member_id(scope, ResourceType::Task, ident)?;
    if arn_cluster.as_deref().is_some_and(|c| c != cluster) {
        return None;
    }
    state
        .tasks
        .get(&MemberKey::new(scope, cluster, &id))
        .map(|t| &**t)
}

/// StopTask: asks the agent to stop the task; a task no agent has taken over yet stops
/// at once (there is nothing running to stop).
pub fn stop_task(
    state: &State,
    ctx: &mut Ctx,
    req: wire::StopTaskRequest,
) -> Written<wire::StopTaskResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let ident = req.task.ok_or_else(|| invalid("task is required."))?;
    if req.reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(invalid("reason can be at most 1024 characters."));
    }
    let rec = find(state, &ctx.scope, &cluster.name, &ident)
        .ok_or_else(|| invalid("The referenced task was not found."))?;
    if rec.task.desired() == Some(TaskStatus::Stopped) {
        return Ok((
            wire::StopTaskResponse {
                task: Some(rec.task.clone()),
            },
            vec![],
        ));
    }
    let mut rec = rec.clone();
    request_stop(
        &mut rec,
        wire::TaskStopCode::UserInitiated,
        req.reason.unwrap_or_else(|| "Task stopped by user".into()),
        ctx.now,
    );
    Ok((
        wire::StopTaskResponse {
            task: Some(rec.task.clone()),
        },
        vec![Change::Put(Record::Task(rec))],
    ))
}
