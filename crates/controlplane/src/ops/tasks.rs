//! Tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks; building a task from
//! its definition; and placing tasks on instances.

use std::collections::HashMap;

use model::arn::ResourceType;
use model::lifecycle::TaskStatus;
use model::wire::{self, Compatibility, LaunchType, NetworkMode, TaskDefinitionStatus};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, client, invalid};
use crate::ops::common::{active_cluster, check_len, member_id, merge_tags, validate_tags};
use crate::ops::instances::{self, Usage, integer_resource, port_resource, usage_by_instance};
use crate::ops::task_definitions::{self, host_ports, network_mode};
use crate::paging::{PageRequest, paginate};
use crate::state::{Change, ClusterRecord, InstanceRecord, Record, Reservation, Scope, State, TaskDefinitionRecord, TaskRecord};

/// The task's last status, parsed.
pub fn last_status(task: &wire::Task) -> Option<TaskStatus> {
    task.last_status.as_deref().and_then(|s| s.parse().ok())
}

/// Whether the task's last status is RUNNING.
pub fn is_running(task: &wire::Task) -> bool {
    last_status(task) == Some(TaskStatus::Running)
}

/// Whether the task has not yet reached RUNNING.
pub fn is_pending(task: &wire::Task) -> bool {
    last_status(task).is_some_and(TaskStatus::is_pending)
}

/// The default dynamic host-port range (Linux `ip_local_port_range` default), used
/// when an instance does not report its own.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 32768..=60999;

/// Everything a new task needs besides its definition and instance.
#[derive(Debug, Clone, Default)]
pub struct TaskSpec {
    /// `group` (defaults to `family:<family>`).
    pub group: Option<String>,
    /// `startedBy`.
    pub started_by: Option<String>,
    /// `overrides`.
    pub overrides: Option<wire::TaskOverride>,
    /// Tags of the task.
    pub tags: Vec<wire::Tag>,
    /// `enableExecuteCommand`.
    pub enable_execute_command: bool,
    /// RunTask's `clientToken`.
    pub client_token: Option<String>,
    /// Launch type shown on the task.
    pub launch_type: Option<LaunchType>,
}

fn validate_overrides(def: &wire::TaskDefinition, overrides: &wire::TaskOverride) -> Result<(), EcsError> {
    let names: Vec<&str> = def.container_definitions.as_deref().unwrap_or(&[]).iter().filter_map(|c| c.name.as_deref()).collect();
    for o in overrides.container_overrides.as_deref().unwrap_or(&[]) {
        let name = o.name.as_deref().unwrap_or("");
        if !names.contains(&name) {
            return Err(invalid(format!("Override for container named {name} is not a container in the TaskDefinition.")));
        }
        if o.memory.is_some_and(|m| m < 6) || o.cpu.is_some_and(|c| c < 0) {
            return Err(invalid(format!("containerOverrides for {name}: memory must be at least 6 MiB and cpu not negative.")));
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

/// The definition as this task runs it: container and task-level overrides applied.
fn effective_definition(def: &wire::TaskDefinition, overrides: Option<&wire::TaskOverride>) -> wire::TaskDefinition {
    let mut d = def.clone();
    let Some(o) = overrides else { return d };
    if o.cpu.is_some() {
        d.cpu.clone_from(&o.cpu);
    }
    if o.memory.is_some() {
        d.memory.clone_from(&o.memory);
    }
    for co in o.container_overrides.as_deref().unwrap_or(&[]) {
        if let Some(c) = d.container_definitions.get_or_insert_with(Vec::new).iter_mut().find(|c| c.name == co.name) {
            if co.cpu.is_some() {
                c.cpu = co.cpu;
            }
            if co.memory.is_some() {
                c.memory = co.memory;
            }
            if co.memory_reservation.is_some() {
                c.memory_reservation = co.memory_reservation;
            }
        }
    }
    d
}

/// What a task of `def` (with `overrides`) reserves, before dynamic ports are chosen.
pub fn requirement(def: &wire::TaskDefinition, overrides: Option<&wire::TaskOverride>) -> (Reservation, usize) {
    let eff = effective_definition(def, overrides);
    let (cpu, memory) = task_definitions::reservation(&eff);
    let (ports_tcp, ports_udp, dynamic) = host_ports(&eff);
    (Reservation { cpu, memory, ports_tcp, ports_udp }, dynamic)
}

/// Builds a new task (not yet stored) on `instance`.
pub fn build_task(
    ctx: &mut Ctx,
    cluster: &ClusterRecord,
    def: &TaskDefinitionRecord,
    instance: &InstanceRecord,
    spec: &TaskSpec,
    reservation: Reservation,
    dynamic_ports: &[u16],
) -> TaskRecord {
    let id = ctx.new_id();
    let task_arn = ctx.arn(ResourceType::Task, format!("{}/{id}", cluster.name));
    let d = &def.definition;
    let eff = effective_definition(d, spec.overrides.as_ref());
    let mut dynamic = dynamic_ports.iter().copied();
    let mode = network_mode(d);
    let containers = eff
        .container_definitions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|c| {
            let uuid = ctx.new_uuid();
            let bindings = if mode == NetworkMode::Bridge || mode == NetworkMode::Host {
                c.port_mappings
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .map(|pm| {
                        let host = match pm.host_port {
                            Some(h) if h > 0 => h,
                            _ if mode == NetworkMode::Host => pm.container_port.unwrap_or(0),
                            _ => dynamic.next().map_or(0, i32::from),
                        };
                        wire::NetworkBinding {
                            bind_ip: Some("0.0.0.0".into()),
                            container_port: pm.container_port,
                            host_port: Some(host),
                            protocol: pm.protocol,
                            ..Default::default()
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            wire::Container {
                container_arn: Some(ctx.arn(ResourceType::Container, format!("{}/{id}/{uuid}", cluster.name))),
                task_arn: Some(task_arn.clone()),
                name: c.name.clone(),
                image: c.image.clone(),
                last_status: Some("PENDING".into()),
                network_bindings: Some(bindings),
                network_interfaces: Some(vec![]),
                health_status: c.health_check.as_ref().map(|_| wire::HealthStatus::Unknown),
                cpu: c.cpu.map(|v| v.to_string()),
                memory: c.memory.map(|v| v.to_string()),
                memory_reservation: c.memory_reservation.map(|v| v.to_string()),
                ..Default::default()
            }
        })
        .collect();
    let attr = |name: &str| {
        instance
            .instance
            .attributes
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .and_then(|a| a.value.clone())
    };
    let initial = if mode == NetworkMode::Awsvpc { TaskStatus::Provisioning } else { TaskStatus::Pending };
    let task = wire::Task {
        attachments: Some(vec![]),
        attributes: Some(vec![wire::Attribute {
            name: Some("ecs.cpu-architecture".into()),
            value: attr("ecs.cpu-architecture"),
            ..Default::default()
        }]),
        availability_zone: attr("ecs.availability-zone"),
        cluster_arn: cluster.cluster.cluster_arn.clone(),
        container_instance_arn: instance.instance.container_instance_arn.clone(),
        containers: Some(containers),
        cpu: Some(reservation.cpu.to_string()),
        memory: Some(reservation.memory.to_string()),
        created_at: Some(ctx.now),
        desired_status: Some("RUNNING".into()),
        enable_execute_command: Some(spec.enable_execute_command),
        group: Some(spec.group.clone().unwrap_or_else(|| format!("family:{}", def.family))),
        health_status: Some(wire::HealthStatus::Unknown),
        last_status: Some(initial.as_str().into()),
        launch_type: Some(spec.launch_type.unwrap_or(LaunchType::Ec2)),
        overrides: Some(spec.overrides.clone().unwrap_or_else(|| wire::TaskOverride {
            container_overrides: Some(vec![]),
            inference_accelerator_overrides: Some(vec![]),
            ..Default::default()
        })),
        started_by: spec.started_by.clone(),
        tags: Some(spec.tags.clone()),
        task_arn: Some(task_arn),
        task_definition_arn: d.task_definition_arn.clone(),
        version: Some(1),
        ..Default::default()
    };
    TaskRecord {
        scope: ctx.scope.clone(),
        cluster: cluster.name.clone(),
        id,
        task,
        reservation: Reservation {
            ports_tcp: [reservation.ports_tcp.as_slice(), dynamic_ports].concat(),
            ..reservation
        },
        instance_id: Some(instance.id.clone()),
        client_token: spec.client_token.clone(),
        agent_acknowledged: false,
    }
}

/// Why a task does not fit on an instance, as ECS names it in `failures[].reason`.
pub fn fit(instance: &InstanceRecord, used: &Usage, need: &Reservation, dynamic: usize) -> Result<Vec<u16>, &'static str> {
    let registered = instance.instance.registered_resources.as_deref().unwrap_or(&[]);
    if integer_resource(registered, "CPU") - used.cpu < need.cpu {
        return Err("RESOURCE:CPU");
    }
    if integer_resource(registered, "MEMORY") - used.memory < need.memory {
        return Err("RESOURCE:MEMORY");
    }
    let reserved_tcp = port_resource(registered, "PORTS");
    let reserved_udp = port_resource(registered, "PORTS_UDP");
    let taken_tcp = |p: &u16| reserved_tcp.contains(p) || used.ports_tcp.contains(p);
    if need.ports_tcp.iter().any(taken_tcp) {
        return Err("RESOURCE:PORTS");
    }
    if need.ports_udp.iter().any(|p| reserved_udp.contains(p) || used.ports_udp.contains(p)) {
        return Err("RESOURCE:PORTS_UDP");
    }
    let mut chosen = Vec::with_capacity(dynamic);
    for p in DYNAMIC_PORTS {
        if chosen.len() == dynamic {
            break;
        }
        if !taken_tcp(&p) && !need.ports_tcp.contains(&p) {
            chosen.push(p);
        }
    }
    if chosen.len() < dynamic {
        return Err("RESOURCE:PORTS");
    }
    Ok(chosen)
}

fn add_usage(used: &mut Usage, r: &Reservation) {
    used.cpu += r.cpu;
    used.memory += r.memory;
    used.ports_tcp.extend(&r.ports_tcp);
    used.ports_udp.extend(&r.ports_udp);
    used.pending += 1;
}

fn resolve_runnable<'a>(state: &'a State, scope: &Scope, ident: Option<&str>) -> Result<&'a TaskDefinitionRecord, EcsError> {
    let ident = ident.ok_or_else(|| invalid("taskDefinition is required."))?;
    let def = task_definitions::resolve(state, scope, ident).ok_or_else(|| client("TaskDefinition not found."))?;
    if def.definition.status != Some(TaskDefinitionStatus::Active) {
        return Err(client("TaskDefinition is inactive"));
    }
    Ok(def)
}

fn validate_started_by(s: Option<&str>) -> Result<(), EcsError> {
    if let Some(s) = s {
        if s.len() > 36 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(invalid("startedBy can be up to 36 letters (uppercase and lowercase), numbers, hyphens, and underscores."));
        }
    }
    Ok(())
}

fn task_tags(def: &TaskDefinitionRecord, tags: Vec<wire::Tag>, propagate: Option<wire::PropagateTags>) -> Result<Vec<wire::Tag>, EcsError> {
    validate_tags(&tags)?;
    Ok(if propagate == Some(wire::PropagateTags::TaskDefinition) { merge_tags(&def.tags, &tags) } else { tags })
}

fn check_launch_type(def: &TaskDefinitionRecord, launch_type: Option<LaunchType>) -> Result<(), EcsError> {
    match launch_type {
        Some(LaunchType::Fargate) => Err(EcsError::UnsupportedFeature(
            "The FARGATE launch type is not available in flotilla yet; run the task on the cluster's container instances (EC2 launch type).".into(),
        )),
        Some(LaunchType::ManagedInstances) => {
            Err(EcsError::UnsupportedFeature("The MANAGED_INSTANCES launch type is not available in flotilla.".into()))
        }
        _ => {
            let requires = def.definition.requires_compatibilities.as_deref().unwrap_or(&[]);
            if !requires.is_empty() && !requires.contains(&Compatibility::Ec2) && !requires.contains(&Compatibility::External) {
                return Err(client("Task definition does not support launch_type EC2."));
            }
            Ok(())
        }
    }
}

/// Places `count` tasks on the cluster's ACTIVE, connected instances: first fit in a
/// seeded random order, accounting for what earlier placements of the call consume.
/// Returns the tasks placed and one failure per task that did not fit.
fn place(
    state: &State,
    ctx: &mut Ctx,
    cluster: &ClusterRecord,
    def: &TaskDefinitionRecord,
    spec: &TaskSpec,
    count: usize,
) -> Result<(Vec<TaskRecord>, Vec<wire::Failure>), EcsError> {
    let mut candidates: Vec<&InstanceRecord> = state
        .instances_in(&ctx.scope, &cluster.name)
        .filter(|i| i.instance.status.as_deref() == Some("ACTIVE") && i.instance.agent_connected == Some(true))
        .collect();
    if candidates.is_empty() {
        return Err(invalid("No Container Instances were found in your cluster."));
    }
    let mut usage = usage_by_instance(state, &ctx.scope, &cluster.name);
    let (need, dynamic) = requirement(&def.definition, spec.overrides.as_ref());
    let (mut placed, mut failures) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let n = candidates.len();
        #[allow(clippy::cast_possible_truncation)]
        let start = (ctx.random_u64() % n as u64) as usize;
        candidates.rotate_left(start);
        let mut reasons: HashMap<String, &'static str> = HashMap::new();
        let mut chosen = None;
        for inst in &candidates {
            match fit(inst, usage.get(&inst.id).unwrap_or(&Usage::default()), &need, dynamic) {
                Ok(ports) => {
                    chosen = Some((*inst, ports));
                    break;
                }
                Err(reason) => {
                    reasons.insert(inst.instance.container_instance_arn.clone().unwrap_or_default(), reason);
                }
            }
        }
        match chosen {
            Some((inst, ports)) => {
                let task = build_task(ctx, cluster, def, inst, spec, need.clone(), &ports);
                add_usage(usage.entry(inst.id.clone()).or_default(), &task.reservation);
                placed.push(task);
            }
            None => {
                let mut reasons: Vec<_> = reasons.into_iter().collect();
                reasons.sort();
                for (arn, reason) in reasons {
                    if !failures.iter().any(|f: &wire::Failure| f.arn.as_deref() == Some(&arn) && f.reason.as_deref() == Some(reason)) {
                        failures.push(wire::Failure { arn: Some(arn), reason: Some(reason.into()), detail: None });
                    }
                }
            }
        }
    }
    Ok((placed, failures))
}

/// RunTask: places up to 10 tasks of a definition on the cluster's instances.
pub fn run_task(state: &State, ctx: &mut Ctx, req: wire::RunTaskRequest) -> Written<wire::RunTaskResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let def = resolve_runnable(state, &ctx.scope, req.task_definition.as_deref())?;
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(invalid(format!("count must be between 1 and 10, got {count}.")));
    }
    if req.launch_type.is_some() && req.capacity_provider_strategy.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(invalid("Specifying both a launchType and capacityProviderStrategy is not supported."));
    }
    check_launch_type(def, req.launch_type)?;
    validate_started_by(req.started_by.as_deref())?;
    if req.group.as_ref().is_some_and(|g| g.is_empty() || g.len() > 255) {
        return Err(invalid("group must be 1-255 characters."));
    }
    if let Some(o) = &req.overrides {
        validate_overrides(&def.definition, o)?;
    }
    check_len(req.placement_constraints.as_deref().unwrap_or(&[]), 10, "placementConstraints")?;
    check_len(req.placement_strategy.as_deref().unwrap_or(&[]), 5, "placementStrategy")?;
    if let Some(token) = &req.client_token {
        if token.is_empty() || token.len() > 64 {
            return Err(invalid("clientToken must be 1-64 characters."));
        }
        let earlier: Vec<wire::Task> = state
            .tasks_in(&ctx.scope, &cluster.name)
            .filter(|t| t.client_token.as_ref() == Some(token))
            .map(|t| t.task.clone())
            .collect();
        if !earlier.is_empty() {
            return Ok((wire::RunTaskResponse { tasks: Some(earlier), failures: Some(vec![]) }, vec![]));
        }
    }
    let spec = TaskSpec {
        group: req.group,
        started_by: req.started_by,
        overrides: req.overrides,
        tags: task_tags(def, req.tags.unwrap_or_default(), req.propagate_tags)?,
        enable_execute_command: req.enable_execute_command.unwrap_or(false),
        client_token: req.client_token,
        launch_type: Some(req.launch_type.unwrap_or(LaunchType::Ec2)),
    };
    #[allow(clippy::cast_sign_loss)]
    let (placed, failures) = place(state, ctx, cluster, def, &spec, count as usize)?;
    let tasks = placed.iter().map(|t| t.task.clone()).collect();
    let changes = placed.into_iter().map(|t| Change::Put(Record::Task(t))).collect();
    Ok((wire::RunTaskResponse { tasks: Some(tasks), failures: Some(failures) }, changes))
}

/// StartTask: one task on each of the given container instances.
pub fn start_task(state: &State, ctx: &mut Ctx, req: wire::StartTaskRequest) -> Written<wire::StartTaskResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let def = resolve_runnable(state, &ctx.scope, req.task_definition.as_deref())?;
    let idents = req.container_instances.ok_or_else(|| invalid("containerInstances is required."))?;
    if idents.is_empty() {
        return Err(invalid("containerInstances must name at least one container instance."));
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
    };
    let (need, dynamic) = requirement(&def.definition, spec.overrides.as_ref());
    let mut usage = usage_by_instance(state, &ctx.scope, &cluster.name);
    let (mut tasks, mut failures, mut changes) = (Vec::new(), Vec::new(), Vec::new());
    for ident in idents {
        let fail = |reason: &str| wire::Failure { arn: Some(ident.clone()), reason: Some(reason.into()), detail: None };
        let Some(inst) = instances::find(state, &ctx.scope, &cluster.name, &ident) else {
            failures.push(fail("MISSING"));
            continue;
        };
        if inst.instance.status.as_deref() != Some("ACTIVE") {
            failures.push(fail(inst.instance.status.as_deref().unwrap_or("INACTIVE")));
            continue;
        }
        if inst.instance.agent_connected != Some(true) {
            failures.push(fail("AGENT"));
            continue;
        }
        match fit(inst, usage.get(&inst.id).unwrap_or(&Usage::default()), &need, dynamic) {
            Err(reason) => failures.push(fail(reason)),
            Ok(ports) => {
                let task = build_task(ctx, cluster, def, inst, &spec, need.clone(), &ports);
                add_usage(usage.entry(inst.id.clone()).or_default(), &task.reservation);
                tasks.push(task.task.clone());
                changes.push(Change::Put(Record::Task(task)));
            }
        }
    }
    Ok((wire::StartTaskResponse { tasks: Some(tasks), failures: Some(failures) }, changes))
}

/// Finds a task of `cluster` by id or ARN.
pub fn find<'a>(state: &'a State, scope: &Scope, cluster: &str, ident: &str) -> Option<&'a TaskRecord> {
    let (arn_cluster, id) = member_id(scope, ResourceType::Task, ident)?;
    if arn_cluster.as_deref().is_some_and(|c| c != cluster) {
        return None;
    }
    state.tasks.get(&(scope.clone(), cluster.to_owned(), id))
}

/// Marks a task STOPPED now: its containers too, and it releases its reservation.
pub fn mark_stopped(task: &mut wire::Task, now: f64) {
    task.last_status = Some("STOPPED".into());
    task.desired_status = Some("STOPPED".into());
    task.stopping_at.get_or_insert(now);
    task.execution_stopped_at.get_or_insert(now);
    task.stopped_at = Some(now);
    for c in task.containers.get_or_insert_with(Vec::new) {
        c.last_status = Some("STOPPED".into());
    }
    task.version = Some(task.version.unwrap_or(0) + 1);
}

/// StopTask: asks the agent to stop the task; a task no agent has taken over yet stops
/// at once (there is nothing running to stop).
pub fn stop_task(state: &State, ctx: &mut Ctx, req: wire::StopTaskRequest) -> Written<wire::StopTaskResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let ident = req.task.ok_or_else(|| invalid("task is required."))?;
    if req.reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(invalid("reason can be at most 1024 characters."));
    }
    let rec = find(state, &ctx.scope, &cluster.name, &ident).ok_or_else(|| invalid("The referenced task was not found."))?;
    if rec.task.desired_status.as_deref() == Some("STOPPED") {
        return Ok((wire::StopTaskResponse { task: Some(rec.task.clone()) }, vec![]));
    }
    let mut rec = rec.clone();
    let t = &mut rec.task;
    t.desired_status = Some("STOPPED".into());
    t.stopped_reason = Some(req.reason.unwrap_or_else(|| "Task stopped by user".into()));
    t.stop_code = Some(wire::TaskStopCode::UserInitiated);
    t.stopping_at = Some(ctx.now);
    t.version = Some(t.version.unwrap_or(0) + 1);
    if !rec.agent_acknowledged {
        mark_stopped(&mut rec.task, ctx.now);
    }
    Ok((wire::StopTaskResponse { task: Some(rec.task.clone()) }, vec![Change::Put(Record::Task(rec))]))
}

/// DescribeTasks.
pub fn describe(state: &State, scope: &Scope, req: wire::DescribeTasksRequest) -> Result<wire::DescribeTasksResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let idents = req.tasks.ok_or_else(|| invalid("tasks is required."))?;
    check_len(&idents, 100, "tasks")?;
    let with_tags = req.include.unwrap_or_default().contains(&wire::TaskField::Tags);
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
            None => failures.push(wire::Failure {
                arn: Some(if ident.starts_with("arn:") { ident } else { scope.arn(ResourceType::Task, format!("{}/{ident}", cluster.name)) }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(wire::DescribeTasksResponse { tasks: Some(tasks), failures: Some(failures) })
}

/// ListTasks with ECS's filters; `desiredStatus` defaults to RUNNING.
pub fn list(state: &State, scope: &Scope, now: f64, req: wire::ListTasksRequest) -> Result<wire::ListTasksResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let desired = req.desired_status.unwrap_or(wire::DesiredStatus::Running);
    let instance_id = match req.container_instance.as_deref() {
        Some(ci) => Some(
            member_id(scope, ResourceType::ContainerInstance, ci)
                .map(|(_, id)| id)
                .ok_or_else(|| invalid(format!("containerInstance {ci:?} is not a container instance id or ARN.")))?,
        ),
        None => None,
    };
    if req.started_by.is_some() && req.service_name.is_some() {
        return Err(invalid("startedBy and serviceName cannot both be given."));
    }
    let service_group = req.service_name.as_deref().map(|s| format!("service:{}", s.rsplit('/').next().unwrap_or(s)));
    let family = req.family.as_deref();
    let items = state
        .tasks_in(scope, &cluster.name)
        .filter(|t| t.task.desired_status.as_deref() == Some(desired.as_str()))
        .filter(|t| instance_id.is_none() || t.instance_id == instance_id)
        .filter(|t| req.started_by.is_none() || t.task.started_by == req.started_by)
        .filter(|t| service_group.is_none() || t.task.group == service_group)
        .filter(|t| req.launch_type.is_none() || t.task.launch_type == req.launch_type)
        .filter(|t| {
            family.is_none_or(|f| {
                t.task.task_definition_arn.as_deref().and_then(|a| a.rsplit('/').next()).and_then(|fr| fr.rsplit_once(':')).map(|(fam, _)| fam)
                    == Some(f)
            })
        })
        .map(|t| (t.id.clone(), t.task.task_arn.clone().unwrap_or_default()));
    let filters = format!(
        "{}|{desired}|{}|{}|{}|{}|{}",
        cluster.name,
        instance_id.as_deref().unwrap_or(""),
        req.started_by.as_deref().unwrap_or(""),
        service_group.as_deref().unwrap_or(""),
        family.unwrap_or(""),
        req.launch_type.map(|l| l.as_str()).unwrap_or("")
    );
    let page = paginate(
        &PageRequest {
            secret: &state.meta.paging_secret,
            now,
            operation: "ListTasks",
            filters: &filters,
            max_results: req.max_results,
            limit: 100,
            next_token: req.next_token.as_deref(),
            descending: false,
        },
        items,
    )?;
    Ok(wire::ListTasksResponse { task_arns: Some(page.items), next_token: page.next_token })
}
