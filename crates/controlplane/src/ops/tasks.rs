//! Tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks; building a task from
//! its definition; and placing tasks on instances.

use std::ops::Bound;

use model::arn::ResourceType;
use model::lifecycle::TaskStatus;
use model::wire::{self, Compatibility, LaunchType, NetworkMode, TaskDefinitionStatus};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, client, invalid};
use crate::ops::common::{
    active_cluster, check_len, member_id, merge_tags, missing, validate_tags,
};
use crate::ops::instances::{self, integer_resource, port_resource};
use crate::ops::task_definitions::{self, host_ports, network_mode};
use crate::paging::{PageRequest, counted, paginate, start_after};
use crate::state::{
    Change, ClusterRecord, InstanceRecord, Record, Reservation, Scope, State, TaskDefinitionRecord,
    TaskFilter, TaskRecord, Usage,
};
use scheduler::snapshot::{
    ClusterSnapshot, HostPort, HostPorts, InstanceStatus, InstanceView, PortRange, TaskRequest,
    TaskView,
};
use scheduler::{Outcome, PlacementSpec};

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

/// The definition as this task runs it: container and task-level overrides applied.
fn effective_definition(
    def: &wire::TaskDefinition,
    overrides: Option<&wire::TaskOverride>,
) -> wire::TaskDefinition {
    let mut d = def.clone();
    let Some(o) = overrides else { return d };
    if o.cpu.is_some() {
        d.cpu.clone_from(&o.cpu);
    }
    if o.memory.is_some() {
        d.memory.clone_from(&o.memory);
    }
    for co in o.container_overrides.as_deref().unwrap_or(&[]) {
        if let Some(c) = d
            .container_definitions
            .get_or_insert_with(Vec::new)
            .iter_mut()
            .find(|c| c.name == co.name)
        {
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

/// What one task of `def` (with `overrides`) asks of an instance, as the scheduler
/// sees it.
pub fn task_request(
    def: &TaskDefinitionRecord,
    overrides: Option<&wire::TaskOverride>,
    group: &str,
) -> TaskRequest {
    let eff = effective_definition(&def.definition, overrides);
    let (cpu, memory) = task_definitions::reservation(&eff);
    let (static_ports, dynamic_ports) = host_ports(&eff);
    TaskRequest {
        cpu: u32::try_from(cpu).unwrap_or(u32::MAX),
        memory: u32::try_from(memory).unwrap_or(u32::MAX),
        group: group.to_owned(),
        static_ports,
        dynamic_ports,
        required_attributes: Vec::new(),
    }
}

/// What a task placed for `request` with `dynamic` host ports holds on its instance.
pub fn reservation_of(request: &TaskRequest, dynamic: &[HostPort]) -> Reservation {
    let ports = |proto: wire::TransportProtocol| -> Vec<u16> {
        request
            .static_ports
            .iter()
            .chain(dynamic)
            .filter(|p| p.protocol == proto)
            .map(|p| p.port)
            .collect()
    };
    Reservation {
        cpu: i64::from(request.cpu),
        memory: i64::from(request.memory),
        ports_tcp: ports(wire::TransportProtocol::Tcp),
        ports_udp: ports(wire::TransportProtocol::Udp),
    }
}

/// The attribute that carries an instance's dynamic host-port range (`first-last`),
/// reported by the agent from `ip_local_port_range`.
pub const PORT_RANGE_ATTRIBUTE: &str = "flotilla.dynamic-port-range";

fn port_range(instance: &InstanceRecord) -> PortRange {
    instance
        .instance
        .attributes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|a| a.name.as_deref() == Some(PORT_RANGE_ATTRIBUTE))
        .and_then(|a| {
            a.value
                .as_deref()?
                .split_once('-')
                .map(|(f, l)| (f.trim().parse().ok(), l.trim().parse().ok()))
        })
        .and_then(|(f, l)| {
            Some(PortRange {
                first: f?,
                last: l?,
            })
        })
        .filter(|r| r.first <= r.last)
        .unwrap_or_default()
}

fn instance_status(s: Option<&str>) -> InstanceStatus {
    match s {
        Some("ACTIVE") => InstanceStatus::Active,
        Some("DRAINING") => InstanceStatus::Draining,
        Some("REGISTERING") => InstanceStatus::Registering,
        Some("DEREGISTERING") => InstanceStatus::Deregistering,
        Some("REGISTRATION_FAILED") => InstanceStatus::RegistrationFailed,
        _ => InstanceStatus::Inactive,
    }
}

/// The scheduler's view of one instance: what is left after its tasks' reservations.
pub fn instance_view(state: &State, instance: &InstanceRecord) -> InstanceView {
    instance_view_with(state, instance, true)
}

/// [`instance_view`] with the instance's tasks either one entry per task (`per_task`,
/// needed to choose tasks to stop) or one merged entry per group (enough for placement,
/// and its cost does not grow with the number of tasks).
pub fn instance_view_with(
    state: &State,
    instance: &InstanceRecord,
    per_task: bool,
) -> InstanceView {
    let empty = Usage::default();
    let used = state
        .usage(&instance.scope, &instance.cluster, &instance.id)
        .unwrap_or(&empty);
    let registered = instance
        .instance
        .registered_resources
        .as_deref()
        .unwrap_or(&[]);
    let left = |total: i64, used: i64| u32::try_from((total - used).max(0)).unwrap_or(u32::MAX);
    let attributes = instance
        .instance
        .attributes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|a| Some((a.name.clone()?, a.value.clone())))
        .collect();
    InstanceView {
        arn: instance
            .instance
            .container_instance_arn
            .clone()
            .unwrap_or_default(),
        id: instance.id.clone(),
        ec2_instance_id: instance.instance.ec2_instance_id.clone(),
        status: instance_status(instance.instance.status.as_deref()),
        agent_connected: instance.instance.agent_connected == Some(true),
        agent_version: instance
            .instance
            .version_info
            .as_ref()
            .and_then(|v| v.agent_version.clone()),
        #[allow(clippy::cast_possible_truncation)]
        registered_at: instance.instance.registered_at.map(|t| t as i64),
        attributes,
        remaining_cpu: left(integer_resource(registered, "CPU"), used.cpu),
        remaining_memory: left(integer_resource(registered, "MEMORY"), used.memory),
        used_ports: HostPorts {
            tcp: used.ports_tcp.iter().copied().collect(),
            udp: used.ports_udp.iter().copied().collect(),
        },
        reserved_ports: HostPorts {
            tcp: port_resource(registered, "PORTS").into_iter().collect(),
            udp: port_resource(registered, "PORTS_UDP").into_iter().collect(),
        },
        dynamic_port_range: port_range(instance),
        tasks: if per_task {
            used.tasks
                .iter()
                .map(|(id, group)| TaskView::new(id.clone(), group.clone()))
                .collect()
        } else {
            used.groups
                .iter()
                .map(|(group, n)| TaskView {
                    arn: String::new(),
                    group: group.clone(),
                    count: *n,
                })
                .collect()
        },
    }
}

/// The scheduler's view of a cluster (every registered instance; the scheduler
/// itself skips those that cannot take tasks).
pub fn snapshot<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
) -> (ClusterSnapshot, Vec<&'a InstanceRecord>) {
    snapshot_with(state, scope, cluster, true)
}

/// [`snapshot`] for placement only: tasks merged per group, so building it costs
/// O(instances × groups), not O(tasks).
pub fn placement_snapshot<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
) -> (ClusterSnapshot, Vec<&'a InstanceRecord>) {
    snapshot_with(state, scope, cluster, false)
}

fn snapshot_with<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
    per_task: bool,
) -> (ClusterSnapshot, Vec<&'a InstanceRecord>) {
    let records: Vec<&InstanceRecord> = state
        .instances_in(scope, cluster)
        .filter(|i| i.instance.status.as_deref() != Some("INACTIVE"))
        .collect();
    let instances = records
        .iter()
        .map(|i| instance_view_with(state, i, per_task))
        .collect();
    (ClusterSnapshot { instances }, records)
}

/// Builds a new task (not yet stored) on `instance`.
pub fn build_task(
    ctx: &mut Ctx,
    cluster: &ClusterRecord,
    def: &TaskDefinitionRecord,
    instance: &InstanceRecord,
    spec: &TaskSpec,
    reservation: Reservation,
    dynamic_ports: &[HostPort],
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
                            _ => dynamic.next().map_or(0, |p| i32::from(p.port)),
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
                container_arn: Some(ctx.arn(
                    ResourceType::Container,
                    format!("{}/{id}/{uuid}", cluster.name),
                )),
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
    let initial = if mode == NetworkMode::Awsvpc {
        TaskStatus::Provisioning
    } else {
        TaskStatus::Pending
    };
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
        group: Some(
            spec.group
                .clone()
                .unwrap_or_else(|| format!("family:{}", def.family)),
        ),
        health_status: Some(wire::HealthStatus::Unknown),
        last_status: Some(initial.as_str().into()),
        launch_type: Some(spec.launch_type.unwrap_or(LaunchType::Ec2)),
        overrides: Some(
            spec.overrides
                .clone()
                .unwrap_or_else(|| wire::TaskOverride {
                    container_overrides: Some(vec![]),
                    inference_accelerator_overrides: Some(vec![]),
                    ..Default::default()
                }),
        ),
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
        reservation,
        instance_id: Some(instance.id.clone()),
        client_token: spec.client_token.clone(),
        client_token_fingerprint: None,
        agent_acknowledged: false,
    }
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

/// A capacity provider strategy may only name providers associated with the cluster;
/// those (FARGATE, FARGATE_SPOT) cannot run tasks in flotilla yet, so a task must not
/// silently land on the cluster's instances instead.
fn check_capacity_provider_strategy(
    cluster: &ClusterRecord,
    strategy: &[wire::CapacityProviderStrategyItem],
) -> Result<(), EcsError> {
    let associated = cluster.cluster.capacity_providers.as_deref().unwrap_or(&[]);
    for (i, item) in strategy.iter().enumerate() {
        let name = item.capacity_provider.as_deref().unwrap_or("");
        if !associated.iter().any(|p| p == name) {
            return Err(invalid(format!(
                "capacityProviderStrategy[{i}].capacityProvider {name:?} is not associated with the cluster."
            )));
        }
    }
    match strategy
        .first()
        .and_then(|item| item.capacity_provider.as_deref())
    {
        Some(name) => Err(EcsError::UnsupportedFeature(format!(
            "capacityProviderStrategy: capacity provider {name} cannot run tasks in flotilla yet; omit the strategy to run on the cluster's container instances."
        ))),
        None => Ok(()),
    }
}

fn check_launch_type(
    def: &TaskDefinitionRecord,
    launch_type: Option<LaunchType>,
) -> Result<(), EcsError> {
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

fn placement_spec(
    def: &TaskDefinitionRecord,
    strategies: &[wire::PlacementStrategy],
    constraints: &[wire::PlacementConstraint],
) -> Result<PlacementSpec, EcsError> {
    let td_constraints = def
        .definition
        .placement_constraints
        .as_deref()
        .unwrap_or(&[]);
    PlacementSpec::from_wire(strategies, td_constraints, constraints)
        .map_err(|e| invalid(e.to_string()))
}

/// Places `requests` with the scheduler and builds a task for each placement; returns
/// the tasks and ECS-style failures for the rest.
fn place(
    ctx: &mut Ctx,
    cluster: &ClusterRecord,
    def: &TaskDefinitionRecord,
    task_spec: &TaskSpec,
    (snapshot, records): (&ClusterSnapshot, &[&InstanceRecord]),
    requests: &[TaskRequest],
    placement: &PlacementSpec,
) -> (Vec<TaskRecord>, Vec<wire::Failure>) {
    let plan = scheduler::place(snapshot, requests, placement, ctx.random_u64());
    let (mut placed, mut failures) = (Vec::new(), Vec::<wire::Failure>::new());
    for (request, outcome) in requests.iter().zip(&plan.outcomes) {
        match outcome {
            Outcome::Placed(p) => {
                let Some(instance) = records.get(p.instance_index) else {
                    continue;
                };
                let reservation = reservation_of(request, &p.dynamic_ports);
                placed.push(build_task(
                    ctx,
                    cluster,
                    def,
                    instance,
                    task_spec,
                    reservation,
                    &p.dynamic_ports,
                ));
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
        tasks: Some(earlier.iter().map(|t| t.task.clone()).collect()),
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
    if req.launch_type.is_some()
        && req
            .capacity_provider_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(invalid(
            "Specifying both a launchType and capacityProviderStrategy is not supported.",
        ));
    }
    check_launch_type(def, req.launch_type)?;
    check_capacity_provider_strategy(
        cluster,
        req.capacity_provider_strategy.as_deref().unwrap_or(&[]),
    )?;
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
    };
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
    let group = spec
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{}", def.family));
    let request = task_request(def, spec.overrides.as_ref(), &group);
    let requests = vec![request; usize::try_from(count).unwrap_or(1)];
    let (mut placed, failures) = place(
        ctx,
        cluster,
        def,
        &spec,
        (&snap, &records),
        &requests,
        &placement,
    );
    if fingerprint.is_some() {
        // A retry answers the token's tasks in id order: so does the first answer.
        placed.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let tasks = placed.iter().map(|t| t.task.clone()).collect();
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
    };
    let group = spec
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{}", def.family));
    let request = task_request(def, spec.overrides.as_ref(), &group);
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
        if inst.instance.status.as_deref() != Some("ACTIVE") {
            failures.push(wire::Failure {
                arn: inst.instance.container_instance_arn.clone(),
                reason: Some(
                    inst.instance
                        .status
                        .clone()
                        .unwrap_or_else(|| "INACTIVE".into()),
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
        let (placed, f) = place(
            ctx,
            cluster,
            def,
            &spec,
            (&snap, &[inst]),
            std::slice::from_ref(&request),
            &placement,
        );
        failures.extend(f);
        for task in placed {
            tasks.push(task.task.clone());
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
    if rec.task.desired_status.as_deref() == Some("STOPPED") {
        return Ok((
            wire::StopTaskResponse {
                task: Some(rec.task.clone()),
            },
            vec![],
        ));
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
    Ok((
        wire::StopTaskResponse {
            task: Some(rec.task.clone()),
        },
        vec![Change::Put(Record::Task(rec))],
    ))
}

/// DescribeTasks.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: wire::DescribeTasksRequest,
) -> Result<wire::DescribeTasksResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let idents = req.tasks.ok_or_else(|| invalid("tasks is required."))?;
    check_len(&idents, 100, "tasks")?;
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
    let service_group = req
        .service_name
        .as_deref()
        .map(|s| format!("service:{}", s.rsplit('/').next().unwrap_or(s)));
    let family = req.family.as_deref();
    let wanted = |t: &TaskRecord| {
        t.task.desired_status.as_deref() == Some(desired.as_str())
            && (instance_id.is_none() || t.instance_id == instance_id)
            && (req.started_by.is_none() || t.task.started_by == req.started_by)
            && (service_group.is_none() || t.task.group == service_group)
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
        service_group.as_deref().map(|v| (TaskFilter::Group, v)),
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
        service_group.as_deref().unwrap_or(""),
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
            Ok(counted(index.range((start, Bound::Unbounded)))
                .filter_map(|id| {
                    state
                        .tasks
                        .get(&(scope.clone(), cluster.name.clone(), id.clone()))
                })
                .filter(|t| wanted(t))
                .map(|t| (t.id.clone(), t.task.task_arn.clone().unwrap_or_default())))
        },
    )?;
    Ok(wire::ListTasksResponse {
        task_arns: Some(page.items),
        next_token: page.next_token,
    })
}
