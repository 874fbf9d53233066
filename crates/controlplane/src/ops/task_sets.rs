//! Task sets: how an outside tool deploys a service whose `deploymentController` is
//! `EXTERNAL` — CreateTaskSet, DescribeTaskSets, UpdateTaskSet, UpdateServicePrimaryTaskSet
//! and DeleteTaskSet, with ECS's validation and errors.
//!
//! A task set is a task definition (with its launch type, `loadBalancers`,
//! `serviceRegistries`, `networkConfiguration`, `externalId` and tags) that runs
//! `computedDesiredCount = ceil(service desiredCount × scale% / 100)` tasks. Its tasks
//! belong to the service (group `service:<name>`) and carry the task set's id as
//! `startedBy`, as in ECS. The sets are stored inside the service record
//! ([`ServiceRecord::task_sets`], the wire shape itself): a task set lives and dies with
//! its service, every operation here touches one service, and the service controller
//! that runs the sets' tasks reads and rewrites that one record, so the single writer
//! orders every change without a second record to keep in step.
//!
//! Statuses: a new set is `ACTIVE`; UpdateServicePrimaryTaskSet makes one `PRIMARY` (the
//! previous primary becomes `ACTIVE`); DeleteTaskSet makes it `DRAINING` until the
//! controller has stopped its tasks, then the set disappears. `stabilityStatus`
//! (`STEADY_STATE` / `STABILIZING`) is kept by the controller
//! (`controllers/service/task_sets.rs`); `runningCount` / `pendingCount` are counted from
//! the tasks at describe time. DescribeServices shows the sets in `taskSets`, and the
//! PRIMARY set's task definition, launch type, load balancers, registries and network
//! configuration as the service's own (none while no set is PRIMARY).
//!
//! Limits: at most [`MAX_TASK_SETS_PER_SERVICE`] task sets per service (ECS's quota;
//! DRAINING ones count until they are gone); `scale` is `PERCENT` only, 0–100
//! (default 0 %, as ECS shows a set created without one).
//!
//! The typed [`TaskSetStatus`] lives here (model has no typed task set status yet); it
//! spells the statuses through `model::status`, which owns every status spelling.

use model::arn::ResourceType;
use model::status::{DeploymentStatus, ServiceStatus};
use model::wire::{self, LaunchType, ScaleUnit, StabilityStatus};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::common::{active_cluster, check_len, missing, validate_tags};
use crate::ops::services::find;
use crate::ops::task_definitions;
use crate::state::{Change, Record, Scope, ServiceRecord, State};
use crate::task::{is_pending, is_running, service_group};

/// Most task sets one service has at a time (ECS's quota), DRAINING ones included.
pub const MAX_TASK_SETS_PER_SERVICE: usize = 5;

/// The status of a task set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSetStatus {
    /// Serves production traffic; DescribeServices shows its settings as the service's.
    Primary,
    /// Runs its tasks, not primary.
    Active,
    /// Deleted: its tasks are being stopped; the set goes once none is left.
    Draining,
}

impl TaskSetStatus {
    /// The wire spelling (the same words as a deployment's and a service's statuses).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskSetStatus::Primary => DeploymentStatus::Primary.as_str(),
            TaskSetStatus::Active => DeploymentStatus::Active.as_str(),
            TaskSetStatus::Draining => ServiceStatus::Draining.as_str(),
        }
    }

    /// The status of `ts`, typed (`None` when absent or unknown).
    pub fn of(ts: &wire::TaskSet) -> Option<TaskSetStatus> {
        let s = ts.status.as_deref()?;
        [
            TaskSetStatus::Primary,
            TaskSetStatus::Active,
            TaskSetStatus::Draining,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Sets the status of `ts`.
    pub fn set(self, ts: &mut wire::TaskSet) {
        ts.status = Some(self.as_str().to_owned());
    }
}

/// Whether a deployment controller is `EXTERNAL`.
pub fn is_external_controller(c: Option<&wire::DeploymentController>) -> bool {
    c.and_then(|c| c.r#type) == Some(wire::DeploymentControllerType::External)
}

/// Whether the service is deployed by an outside tool through task sets.
pub fn is_external(s: &wire::Service) -> bool {
    is_external_controller(s.deployment_controller.as_ref())
}

/// `ceil(desired × scale% / 100)`: ECS rounds a task set's share up (1.2 tasks → 2). A
/// DRAINING set wants none.
pub fn computed_desired_count(desired: i32, ts: &wire::TaskSet) -> i32 {
    if TaskSetStatus::of(ts) == Some(TaskSetStatus::Draining) {
        return 0;
    }
    let pct = ts.scale.as_ref().and_then(|s| s.value).unwrap_or(0.0);
    // The small tolerance keeps 3 × 33.333…% at 1, not 2, after float rounding.
    let exact = f64::from(desired.max(0)) * pct.clamp(0.0, 100.0) / 100.0;
    (exact - 1e-9).ceil().max(0.0) as i32
}

/// The scale a request gives, checked: unit `PERCENT` (the only one), value 0–100;
/// none is 0 %.
fn checked_scale(scale: Option<wire::Scale>) -> Result<wire::Scale, EcsError> {
    let scale = scale.unwrap_or_default();
    let value = scale.value.unwrap_or(0.0);
    if !value.is_finite() || !(0.0..=100.0).contains(&value) {
        return Err(invalid(format!(
            "scale.value must be a number between 0 and 100, got {value}."
        )));
    }
    Ok(wire::Scale {
        value: Some(value),
        unit: Some(scale.unit.unwrap_or(ScaleUnit::Percent)),
    })
}

/// CreateService's members that belong to the task sets of an EXTERNAL service (ECS
/// takes them on CreateTaskSet): refused with `InvalidParameterException`, as are the
/// DAEMON strategy and blue/green deployment strategies.
pub fn check_external_create(req: &wire::CreateServiceRequest) -> Result<(), EcsError> {
    let given = [
        ("taskDefinition", req.task_definition.is_some()),
        (
            "loadBalancers",
            req.load_balancers.as_ref().is_some_and(|l| !l.is_empty()),
        ),
        (
            "serviceRegistries",
            req.service_registries
                .as_ref()
                .is_some_and(|l| !l.is_empty()),
        ),
        ("networkConfiguration", req.network_configuration.is_some()),
        ("launchType", req.launch_type.is_some()),
        ("platformVersion", req.platform_version.is_some()),
        (
            "capacityProviderStrategy",
            req.capacity_provider_strategy
                .as_ref()
                .is_some_and(|l| !l.is_empty()),
        ),
        (
            "serviceConnectConfiguration",
            req.service_connect_configuration.is_some(),
        ),
    ];
    if let Some((field, _)) = given.iter().find(|(_, g)| *g) {
        return Err(invalid(format!(
            "{field} cannot be specified for a service that uses the EXTERNAL deployment \
             controller; specify it on the service's task sets (CreateTaskSet)."
        )));
    }
    if req.scheduling_strategy == Some(wire::SchedulingStrategy::Daemon) {
        return Err(invalid(
            "The DAEMON scheduling strategy is not supported with the EXTERNAL deployment \
             controller.",
        ));
    }
    if crate::ops::services::is_blue_green(req.deployment_configuration.as_ref()) {
        return Err(invalid(
            "deploymentConfiguration.strategy must be ROLLING for a service that uses the \
             EXTERNAL deployment controller.",
        ));
    }
    Ok(())
}

/// UpdateService's members an EXTERNAL service cannot change (ECS: create a new task set
/// instead): refused with `InvalidParameterException`.
pub fn check_external_update(req: &wire::UpdateServiceRequest) -> Result<(), EcsError> {
    let given = [
        ("taskDefinition", req.task_definition.is_some()),
        ("loadBalancers", req.load_balancers.is_some()),
        ("serviceRegistries", req.service_registries.is_some()),
        ("networkConfiguration", req.network_configuration.is_some()),
        ("platformVersion", req.platform_version.is_some()),
        (
            "capacityProviderStrategy",
            req.capacity_provider_strategy.is_some(),
        ),
        (
            "serviceConnectConfiguration",
            req.service_connect_configuration.is_some(),
        ),
        ("forceNewDeployment", req.force_new_deployment == Some(true)),
    ];
    if let Some((field, _)) = given.iter().find(|(_, g)| *g) {
        return Err(invalid(format!(
            "{field} cannot be updated for a service that uses the EXTERNAL deployment \
             controller; create a new task set instead."
        )));
    }
    if crate::ops::services::is_blue_green(req.deployment_configuration.as_ref()) {
        return Err(invalid(
            "deploymentConfiguration.strategy must be ROLLING for a service that uses the \
             EXTERNAL deployment controller.",
        ));
    }
    Ok(())
}

/// A task set as DescribeTaskSets shows it: `computedDesiredCount` from the service's
/// current desired count, `runningCount` / `pendingCount` from its tasks (those started
/// by it and still meant to run); tags only when asked for.
pub fn describe_task_set(
    state: &State,
    rec: &ServiceRecord,
    ts: &wire::TaskSet,
    with_tags: bool,
) -> wire::TaskSet {
    let mut out = ts.clone();
    let (mut running, mut pending) = (0, 0);
    let group = service_group(&rec.name);
    for t in state.tasks_in_group(&rec.scope, &rec.cluster, &group) {
        if t.task.started_by.is_none()
            || t.task.started_by.as_deref() != ts.id.as_deref()
            || t.task.desired() != Some(model::lifecycle::TaskStatus::Running)
        {
            continue;
        }
        running += i32::from(is_running(&t.task));
        pending += i32::from(is_pending(&t.task));
    }
    out.computed_desired_count = Some(computed_desired_count(
        rec.service.desired_count.unwrap_or(0),
        ts,
    ));
    out.running_count = Some(running);
    out.pending_count = Some(pending);
    if !with_tags {
        out.tags = None;
    }
    out
}

/// DescribeServices' view of an EXTERNAL service: its task sets in `taskSets`, and the
/// PRIMARY set's task definition, launch type, load balancers, registries and network
/// configuration as the service's (none while no set is PRIMARY).
pub fn show_on_service(state: &State, rec: &ServiceRecord, s: &mut wire::Service) {
    let sets: Vec<wire::TaskSet> = rec
        .task_sets
        .iter()
        .map(|ts| describe_task_set(state, rec, ts, false))
        .collect();
    let primary = sets
        .iter()
        .find(|ts| TaskSetStatus::of(ts) == Some(TaskSetStatus::Primary));
    s.task_definition = primary.and_then(|p| p.task_definition.clone());
    s.launch_type = primary.and_then(|p| p.launch_type);
    s.load_balancers = Some(
        primary
            .and_then(|p| p.load_balancers.clone())
            .unwrap_or_default(),
    );
    s.service_registries = Some(
        primary
            .and_then(|p| p.service_registries.clone())
            .unwrap_or_default(),
    );
    s.network_configuration = primary.and_then(|p| p.network_configuration.clone());
    s.task_sets = Some(sets);
}

/// The ACTIVE EXTERNAL service a task set request names: `ClusterNotFoundException`,
/// `ServiceNotFoundException`, `ServiceNotActiveException`, or
/// `InvalidParameterException` for a service another controller deploys.
fn external_service<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: Option<&str>,
    service: Option<&str>,
) -> Result<&'a ServiceRecord, EcsError> {
    let cluster = active_cluster(state, scope, cluster)?;
    let ident = service.ok_or_else(|| invalid("service is required."))?;
    let rec = find(state, scope, &cluster.name, ident).ok_or(EcsError::ServiceNotFound)?;
    if rec.service.status() != Some(ServiceStatus::Active) {
        return Err(EcsError::ServiceNotActive);
    }
    if !is_external(&rec.service) {
        return Err(invalid(
            "Amazon ECS only supports task set management on services configured to use \
             external deployment controllers.",
        ));
    }
    Ok(rec)
}

/// Whether `ident` (an id or an ARN) names `ts`.
fn names(ts: &wire::TaskSet, ident: &str) -> bool {
    ts.id.as_deref() == Some(ident) || ts.task_set_arn.as_deref() == Some(ident)
}

/// The index of the task set `ident` names in the service, or `TaskSetNotFoundException`.
fn set_index(rec: &ServiceRecord, ident: Option<&str>) -> Result<usize, EcsError> {
    let ident = ident.ok_or_else(|| invalid("taskSet is required."))?;
    rec.task_sets
        .iter()
        .position(|ts| names(ts, ident))
        .ok_or(EcsError::TaskSetNotFound)
}

/// A request that edits one task set.
trait SetEdit {
    /// The cluster, service and task set (an id or an ARN) it names.
    fn names(&self) -> [Option<&str>; 3];
}

impl SetEdit for wire::UpdateTaskSetRequest {
    fn names(&self) -> [Option<&str>; 3] {
        [
            self.cluster.as_deref(),
            self.service.as_deref(),
            self.task_set.as_deref(),
        ]
    }
}

impl SetEdit for wire::UpdateServicePrimaryTaskSetRequest {
    fn names(&self) -> [Option<&str>; 3] {
        [
            self.cluster.as_deref(),
            self.service.as_deref(),
            self.primary_task_set.as_deref(),
        ]
    }
}

impl SetEdit for wire::DeleteTaskSetRequest {
    fn names(&self) -> [Option<&str>; 3] {
        [
            self.cluster.as_deref(),
            self.service.as_deref(),
            self.task_set.as_deref(),
        ]
    }
}

/// The service and the index of the set in it that an edit of one task set names:
/// [`external_service`]'s errors, then [`set_index`]'s, then `draining` (where given)
/// for a DRAINING set.
fn named_set<'a>(
    state: &'a State,
    scope: &Scope,
    req: &impl SetEdit,
    draining: Option<&str>,
) -> Result<(&'a ServiceRecord, usize), EcsError> {
    let [cluster, service, set] = req.names();
    let rec = external_service(state, scope, cluster, service)?;
    let i = set_index(rec, set)?;
    if let Some(message) = draining
        && TaskSetStatus::of(&rec.task_sets[i]) == Some(TaskSetStatus::Draining)
    {
        return Err(invalid(message));
    }
    Ok((rec, i))
}

/// What an edit of set `i` of `rec` answers and writes: the set as described, and the
/// service record put.
fn put_set(state: &State, rec: ServiceRecord, i: usize) -> (Option<wire::TaskSet>, Vec<Change>) {
    let shown = describe_task_set(state, &rec, &rec.task_sets[i], false);
    (Some(shown), vec![Change::Put(Record::Service(rec))])
}

/// A new task set id, `ecs-svc/` and 19 digits like ECS's.
fn new_id(ctx: &mut Ctx) -> String {
    let digits: String = (0..19)
        .map(|_| char::from(b'0' + u8::try_from(ctx.random_u64() % 10).unwrap_or(0)))
        .collect();
    format!("ecs-svc/{digits}")
}

/// CreateTaskSet: a new ACTIVE, STABILIZING set in an EXTERNAL service; the service
/// controller starts its tasks.
pub fn create(
    state: &State,
    ctx: &mut Ctx,
    req: wire::CreateTaskSetRequest,
) -> Written<wire::CreateTaskSetResponse> {
    let rec = external_service(
        state,
        &ctx.scope,
        req.cluster.as_deref(),
        req.service.as_deref(),
    )?;
    if rec.task_sets.len() >= MAX_TASK_SETS_PER_SERVICE {
        return Err(invalid(format!(
            "Service {} already has {} task sets, the most a service can have \
             ({MAX_TASK_SETS_PER_SERVICE}). Delete a task set and try again.",
            rec.name,
            rec.task_sets.len()
        )));
    }
    let ident = req
        .task_definition
        .ok_or_else(|| invalid("taskDefinition is required."))?;
    let def = task_definitions::resolve(state, &ctx.scope, &ident)
        .ok_or_else(|| invalid("TaskDefinition not found."))?;
    if def.definition.status != Some(wire::TaskDefinitionStatus::Active) {
        return Err(invalid("TaskDefinition is inactive"));
    }
    let cluster = active_cluster(state, &ctx.scope, Some(&rec.cluster))?;
    // A launch type, or a strategy (given, else the cluster's default), as CreateService.
    let strategy = crate::capacity::resolve_strategy(
        cluster,
        req.launch_type,
        req.capacity_provider_strategy.as_deref(),
    )?;
    let launch_type = match &strategy {
        Some(_) => None,
        None => Some(req.launch_type.unwrap_or(LaunchType::Ec2)),
    };
    let fargate = launch_type == Some(LaunchType::Fargate)
        || strategy
            .as_deref()
            .is_some_and(crate::capacity::is_fargate_strategy);
    let platform_version = if fargate {
        crate::fargate::validate_launch(&def.definition, None, req.network_configuration.as_ref())?;
        Some(crate::fargate::resolve_platform_version(
            req.platform_version.as_deref(),
        )?)
    } else {
        None // ignored off Fargate, as CreateService does
    };
    let scale = checked_scale(req.scale)?;
    let external_id = req.external_id.unwrap_or_default();
    if external_id.len() > 255 {
        return Err(invalid("externalId can be at most 255 characters long."));
    }
    let load_balancers = req.load_balancers.unwrap_or_default();
    check_len(&load_balancers, 5, "loadBalancers")?;
    crate::load_balancing::validate(state, &ctx.scope, &load_balancers, def, false)?;
    let service_registries = req.service_registries.unwrap_or_default();
    crate::registries::validate(state, &ctx.scope, &service_registries, def)?;
    let tags = req.tags.unwrap_or_default();
    validate_tags(&tags)?;
    let id = new_id(ctx);
    let mut ts = wire::TaskSet {
        task_set_arn: Some(ctx.arn(
            ResourceType::TaskSet,
            format!("{}/{}/{id}", rec.cluster, rec.name),
        )),
        id: Some(id),
        service_arn: rec.service.service_arn.clone(),
        cluster_arn: rec.service.cluster_arn.clone(),
        external_id: (!external_id.is_empty()).then_some(external_id),
        task_definition: def.definition.task_definition_arn.clone(),
        launch_type,
        capacity_provider_strategy: strategy,
        platform_family: fargate.then(|| crate::fargate::PLATFORM_FAMILY.to_owned()),
        platform_version,
        network_configuration: req.network_configuration,
        load_balancers: Some(load_balancers),
        service_registries: Some(service_registries),
        scale: Some(scale),
        stability_status: Some(StabilityStatus::Stabilizing),
        stability_status_at: Some(ctx.now),
        created_at: Some(ctx.now),
        updated_at: Some(ctx.now),
        tags: Some(tags),
        ..Default::default()
    };
    TaskSetStatus::Active.set(&mut ts);
    ts.computed_desired_count = Some(computed_desired_count(
        rec.service.desired_count.unwrap_or(0),
        &ts,
    ));
    let mut rec = rec.clone();
    rec.task_sets.push(ts.clone());
    let shown = describe_task_set(state, &rec, &ts, true);
    Ok((
        wire::CreateTaskSetResponse {
            task_set: Some(shown),
        },
        vec![Change::Put(Record::Service(rec))],
    ))
}

/// DescribeTaskSets: the sets named (ids or ARNs; every set of the service when none is
/// named), unknown ones in `failures` with reason MISSING.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: wire::DescribeTaskSetsRequest,
) -> Result<wire::DescribeTaskSetsResponse, EcsError> {
    let rec = external_service(state, scope, req.cluster.as_deref(), req.service.as_deref())?;
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&wire::TaskSetField::Tags);
    let (mut sets, mut failures) = (Vec::new(), Vec::new());
    match req.task_sets {
        None => sets.extend(
            rec.task_sets
                .iter()
                .map(|ts| describe_task_set(state, rec, ts, with_tags)),
        ),
        Some(idents) => {
            for ident in idents {
                match rec.task_sets.iter().find(|ts| names(ts, &ident)) {
                    Some(ts) => sets.push(describe_task_set(state, rec, ts, with_tags)),
                    None => failures.push(missing(scope, ident, ResourceType::TaskSet, |i| {
                        format!("{}/{}/{i}", rec.cluster, rec.name)
                    })),
                }
            }
        }
    }
    Ok(wire::DescribeTaskSetsResponse {
        task_sets: Some(sets),
        failures: Some(failures),
    })
}

/// UpdateTaskSet: a new `scale` (the only member it changes); the set is STABILIZING
/// until the controller has its new count running.
pub fn update(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UpdateTaskSetRequest,
) -> Written<wire::UpdateTaskSetResponse> {
    let (rec, i) = named_set(
        state,
        &ctx.scope,
        &req,
        Some("The task set is being deleted (DRAINING)."),
    )?;
    let scale = checked_scale(Some(
        req.scale.ok_or_else(|| invalid("scale is required."))?,
    ))?;
    let mut rec = rec.clone();
    let desired = rec.service.desired_count.unwrap_or(0);
    let ts = &mut rec.task_sets[i];
    ts.scale = Some(scale);
    ts.updated_at = Some(ctx.now);
    let computed = computed_desired_count(desired, ts);
    if ts.computed_desired_count != Some(computed) {
        ts.computed_desired_count = Some(computed);
        ts.stability_status = Some(StabilityStatus::Stabilizing);
        ts.stability_status_at = Some(ctx.now);
    }
    let (task_set, changes) = put_set(state, rec, i);
    Ok((wire::UpdateTaskSetResponse { task_set }, changes))
}

/// UpdateServicePrimaryTaskSet: the named set becomes PRIMARY and the previous primary
/// ACTIVE. A DRAINING set cannot become primary.
pub fn update_primary(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UpdateServicePrimaryTaskSetRequest,
) -> Written<wire::UpdateServicePrimaryTaskSetResponse> {
    let (rec, i) = named_set(
        state,
        &ctx.scope,
        &req,
        Some("The task set is being deleted (DRAINING) and cannot become the primary task set."),
    )?;
    let mut rec = rec.clone();
    let now = ctx.now;
    for (j, ts) in rec.task_sets.iter_mut().enumerate() {
        let was = TaskSetStatus::of(ts);
        if j == i && was != Some(TaskSetStatus::Primary) {
            TaskSetStatus::Primary.set(ts);
            ts.updated_at = Some(now);
        } else if j != i && was == Some(TaskSetStatus::Primary) {
            TaskSetStatus::Active.set(ts);
            ts.updated_at = Some(now);
        }
    }
    let (task_set, changes) = put_set(state, rec, i);
    Ok((
        wire::UpdateServicePrimaryTaskSetResponse { task_set },
        changes,
    ))
}

/// DeleteTaskSet: the set turns DRAINING (refused while its scale is above 0 % unless
/// `force`); the controller stops its tasks and then removes it. Deleting a DRAINING set
/// again answers it unchanged.
pub fn delete(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeleteTaskSetRequest,
) -> Written<wire::DeleteTaskSetResponse> {
    let (rec, i) = named_set(state, &ctx.scope, &req, None)?;
    let ts = &rec.task_sets[i];
    if TaskSetStatus::of(ts) == Some(TaskSetStatus::Draining) {
        let shown = describe_task_set(state, rec, ts, false);
        return Ok((
            wire::DeleteTaskSetResponse {
                task_set: Some(shown),
            },
            Vec::new(),
        ));
    }
    let scaled = ts.scale.as_ref().and_then(|s| s.value).unwrap_or(0.0) > 0.0;
    if scaled && req.force != Some(true) {
        return Err(invalid(
            "The task set cannot be deleted while it is scaled above 0 %; update its scale \
             to 0 or use force.",
        ));
    }
    let mut rec = rec.clone();
    let ts = &mut rec.task_sets[i];
    TaskSetStatus::Draining.set(ts);
    ts.updated_at = Some(ctx.now);
    ts.computed_desired_count = Some(0);
    ts.stability_status = Some(StabilityStatus::Stabilizing);
    ts.stability_status_at = Some(ctx.now);
    let (task_set, changes) = put_set(state, rec, i);
    Ok((wire::DeleteTaskSetResponse { task_set }, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pct: f64) -> wire::TaskSet {
        let mut ts = wire::TaskSet {
            scale: Some(wire::Scale {
                value: Some(pct),
                unit: Some(ScaleUnit::Percent),
            }),
            ..Default::default()
        };
        TaskSetStatus::Active.set(&mut ts);
        ts
    }

    #[test]
    fn computed_desired_count_rounds_up() {
        assert_eq!(computed_desired_count(10, &set(100.0)), 10);
        assert_eq!(computed_desired_count(10, &set(0.0)), 0);
        assert_eq!(computed_desired_count(4, &set(30.0)), 2); // 1.2 → 2
        assert_eq!(computed_desired_count(3, &set(100.0 / 3.0)), 1);
        assert_eq!(computed_desired_count(0, &set(50.0)), 0);
        let mut draining = set(100.0);
        TaskSetStatus::Draining.set(&mut draining);
        assert_eq!(computed_desired_count(10, &draining), 0);
    }

    #[test]
    fn scale_is_checked() {
        assert!(checked_scale(None).is_ok_and(|s| s.value == Some(0.0)));
        for bad in [-1.0, 100.5, f64::NAN] {
            let s = wire::Scale {
                value: Some(bad),
                unit: None,
            };
            assert!(checked_scale(Some(s)).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            TaskSetStatus::Primary,
            TaskSetStatus::Active,
            TaskSetStatus::Draining,
        ] {
            let mut ts = wire::TaskSet::default();
            s.set(&mut ts);
            assert_eq!(TaskSetStatus::of(&ts), Some(s));
        }
    }
}
