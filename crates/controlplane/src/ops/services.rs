//! Services (the records): CreateService, UpdateService, DeleteService,
//! DescribeServices, ListServices. Keeping the running tasks equal to the desired count
//! is the service controller's job; these operations record what is wanted, with ECS's
//! validation, deployments and counts.

use model::arn::ResourceType;
use model::lifecycle::TaskStatus;
use model::status::{DeploymentStatus, ServiceStatus};
use model::wire::{self, DeploymentRolloutState, SchedulingStrategy};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::limits::{MAX_SERVICES_PER_CLUSTER, MAX_TASKS_PER_SERVICE};
use crate::ops::common::{active_cluster, check_len, is_valid_name, missing, validate_tags};
use crate::ops::{task_definitions, task_sets};
use crate::paging::{PageRequest, paginate};
use crate::state::{Change, Record, Scope, ServiceKey, ServiceRecord, State};
use crate::task::{is_pending, is_running, service_group};

#[path = "services_capacity.rs"]
mod launch;
use launch::Launch;

fn validate_deployment_configuration(c: &wire::DeploymentConfiguration) -> Result<(), EcsError> {
    let max = c.maximum_percent.unwrap_or(200);
    let min = c.minimum_healthy_percent.unwrap_or(100);
    if !(0..=100).contains(&min) {
        return Err(invalid(format!(
            "deploymentConfiguration.minimumHealthyPercent must be between 0 and 100, got {min}."
        )));
    }
    if !(100..=200).contains(&max) {
        return Err(invalid(format!(
            "deploymentConfiguration.maximumPercent must be between 100 and 200, got {max}."
        )));
    }
    validate_traffic_shift(c)?;
    crate::ops::cloudwatch::deployment::validate(c)?;
    crate::ops::lifecycle_hooks::validate(c)
}

/// The strategy's own settings, as ECS checks them: `bakeTimeInMinutes`,
/// `linearConfiguration.stepBakeTimeInMinutes` and `canaryConfiguration
/// .canaryBakeTimeInMinutes` 0–1440; `stepPercent` a multiple of 0.1 from 3.0 to 100.0;
/// `canaryPercent` a multiple of 0.1 from 0.1 to 100.0; `linearConfiguration` only with
/// the LINEAR strategy and `canaryConfiguration` only with CANARY.
fn validate_traffic_shift(c: &wire::DeploymentConfiguration) -> Result<(), EcsError> {
    use wire::DeploymentStrategy::{Canary, Linear};
    let strategy = c.strategy.unwrap_or(wire::DeploymentStrategy::Rolling);
    let minutes = |name: &str, value: Option<i32>| match value {
        Some(m) if !(0..=1440).contains(&m) => Err(invalid(format!(
            "deploymentConfiguration.{name} must be between 0 and 1440, got {m}."
        ))),
        _ => Ok(()),
    };
    let percent = |name: &str, value: Option<f64>, low: f64| match value {
        Some(p) if !(low..=100.0).contains(&p) || ((p * 10.0).round() - p * 10.0).abs() > 1e-6 => {
            Err(invalid(format!(
                "deploymentConfiguration.{name} must be a multiple of 0.1 from {low:.1} to \
                 100.0, got {p}."
            )))
        }
        _ => Ok(()),
    };
    let only_with = |name: &str, wanted: wire::DeploymentStrategy| {
        if strategy == wanted {
            Ok(())
        } else {
            Err(invalid(format!(
                "deploymentConfiguration.{name} can only be specified with the {} deployment \
                 strategy, not {}.",
                wanted.as_str(),
                strategy.as_str()
            )))
        }
    };
    minutes("bakeTimeInMinutes", c.bake_time_in_minutes)?;
    if let Some(l) = &c.linear_configuration {
        only_with("linearConfiguration", Linear)?;
        percent("linearConfiguration.stepPercent", l.step_percent, 3.0)?;
        minutes(
            "linearConfiguration.stepBakeTimeInMinutes",
            l.step_bake_time_in_minutes,
        )?;
    }
    if let Some(k) = &c.canary_configuration {
        only_with("canaryConfiguration", Canary)?;
        percent("canaryConfiguration.canaryPercent", k.canary_percent, 0.1)?;
        minutes(
            "canaryConfiguration.canaryBakeTimeInMinutes",
            k.canary_bake_time_in_minutes,
        )?;
    }
    Ok(())
}

/// Whether the deployment configuration deploys a green fleet on the alternate target
/// groups and moves production traffic to it: the BLUE_GREEN, LINEAR and CANARY
/// strategies (they need `advancedConfiguration` on their `loadBalancers`).
pub fn is_blue_green(c: Option<&wire::DeploymentConfiguration>) -> bool {
    use wire::DeploymentStrategy::{BlueGreen, Canary, Linear};
    matches!(
        c.and_then(|c| c.strategy),
        Some(BlueGreen | Linear | Canary)
    )
}

/// `desiredCount` must be 0..=[`MAX_TASKS_PER_SERVICE`] (ECS's tasks-per-service quota).
fn check_desired_count(desired: i32) -> Result<(), EcsError> {
    if desired < 0 {
        return Err(invalid("desiredCount must not be negative."));
    }
    if desired > MAX_TASKS_PER_SERVICE {
        return Err(invalid(format!(
            "desiredCount {desired} is more than the {MAX_TASKS_PER_SERVICE} tasks a service \
             can run."
        )));
    }
    Ok(())
}

fn with_defaults(c: Option<wire::DeploymentConfiguration>) -> wire::DeploymentConfiguration {
    let mut c = c.unwrap_or_default();
    c.maximum_percent.get_or_insert(200);
    c.minimum_healthy_percent.get_or_insert(100);
    c.deployment_circuit_breaker
        .get_or_insert(wire::DeploymentCircuitBreaker {
            enable: Some(false),
            rollback: Some(false),
        });
    c
}

/// A new PRIMARY deployment of `task_definition` on `launch`'s capacity (with its
/// platform version on the Fargate pool).
fn new_deployment(
    ctx: &mut Ctx,
    task_definition: &str,
    desired: i32,
    launch: &Launch,
    platform_version: Option<&str>,
) -> wire::Deployment {
    let digits: String = (0..19)
        .map(|_| char::from(b'0' + u8::try_from(ctx.random_u64() % 10).unwrap_or(0)))
        .collect();
    let id = format!("ecs-svc/{digits}");
    wire::Deployment {
        rollout_state_reason: Some(format!("ECS deployment {id} in progress.")),
        id: Some(id),
        status: Some(DeploymentStatus::Primary.into()),
        task_definition: Some(task_definition.to_owned()),
        desired_count: Some(desired),
        pending_count: Some(0),
        running_count: Some(0),
        failed_tasks: Some(0),
        created_at: Some(ctx.now),
        updated_at: Some(ctx.now),
        launch_type: launch.launch_type,
        capacity_provider_strategy: launch.strategy.clone(),
        platform_version: platform_version.map(str::to_owned),
        platform_family: platform_version.map(|_| crate::fargate::PLATFORM_FAMILY.to_owned()),
        rollout_state: Some(DeploymentRolloutState::InProgress),
        ..Default::default()
    }
}

/// The service as DescribeServices shows it: live running/pending counts, per deployment
/// by the tasks' `startedBy` (the deployment id; a task started otherwise counts for the
/// newest deployment of its task definition).
pub fn describe_one(state: &State, rec: &ServiceRecord, with_tags: bool) -> wire::Service {
    let mut s = rec.service.clone();
    let group = service_group(&rec.name);
    let (mut running, mut pending) = (0, 0);
    let deployments = s.deployments.get_or_insert_with(Vec::new);
    let mut per_deployment = vec![(0, 0); deployments.len()];
    for t in state.tasks_in(&rec.scope, &rec.cluster) {
        if t.task.group.as_deref() != Some(group.as_str())
            || t.task.desired() != Some(TaskStatus::Running)
        {
            continue;
        }
        let (r, p) = (is_running(&t.task), is_pending(&t.task));
        running += i32::from(r);
        pending += i32::from(p);
        let owner = deployments
            .iter()
            .position(|d| d.id.is_some() && d.id.as_deref() == t.task.started_by.as_deref())
            .or_else(|| {
                deployments.iter().position(|d| {
                    d.task_definition.as_deref() == t.task.task_definition_arn.as_deref()
                })
            });
        if let Some(e) = owner.and_then(|i| per_deployment.get_mut(i)) {
            e.0 += i32::from(r);
            e.1 += i32::from(p);
        }
    }
    s.running_count = Some(running);
    s.pending_count = Some(pending);
    for (d, (r, p)) in s
        .deployments
        .get_or_insert_with(Vec::new)
        .iter_mut()
        .zip(per_deployment)
    {
        d.running_count = Some(r);
        d.pending_count = Some(p);
    }
    crate::service_deployments::show_on_service(state, rec, &mut s);
    if task_sets::is_external(&s) {
        task_sets::show_on_service(state, rec, &mut s);
    }
    if !with_tags {
        s.tags = None;
    }
    s
}

/// The service `ident` (a name or an ARN) names in `cluster`, whatever its status.
pub(crate) fn find<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
    ident: &str,
) -> Option<&'a ServiceRecord> {
    let name = if ident.starts_with("arn:") {
        let arn = crate::ops::common::parse_arn_in_scope(ident, ResourceType::Service, scope)?;
        match arn.resource.split_once('/') {
            Some((c, n)) if c == cluster => n.to_owned(),
            Some(_) => return None,
            None => arn.resource,
        }
    } else {
        ident.to_owned()
    };
    state.services.get(&ServiceKey::new(scope, cluster, &name))
}

/// CreateService.
pub fn create(
    state: &State,
    ctx: &mut Ctx,
    req: wire::CreateServiceRequest,
) -> Written<wire::CreateServiceResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    // EXTERNAL: the task definition and what goes with it belong to the task sets.
    let external = task_sets::is_external_controller(req.deployment_controller.as_ref());
    if external {
        task_sets::check_external_create(&req)?;
    }
    let name = req
        .service_name
        .ok_or_else(|| invalid("serviceName is required."))?;
    if !is_valid_name(&name) {
        return Err(invalid(format!(
            "serviceName {name:?} is invalid: up to 255 letters, numbers, hyphens, and underscores are allowed."
        )));
    }
    if state
        .services
        .get(&ServiceKey::new(&ctx.scope, &cluster.name, &name))
        .is_some_and(|s| s.service.status() != Some(ServiceStatus::Inactive))
    {
        return Err(invalid("Creation of service was not idempotent."));
    }
    let def = if external {
        None
    } else {
        let ident = req
            .task_definition
            .as_deref()
            .ok_or_else(|| invalid("taskDefinition is required."))?;
        let def = task_definitions::resolve(state, &ctx.scope, ident)
            .ok_or_else(|| invalid("TaskDefinition not found."))?;
        if def.definition.status != Some(wire::TaskDefinitionStatus::Active) {
            return Err(invalid("TaskDefinition is inactive"));
        }
        Some(def)
    };
    let scheduling = req
        .scheduling_strategy
        .unwrap_or(SchedulingStrategy::Replica);
    let desired = match (scheduling, req.desired_count) {
        (SchedulingStrategy::Daemon, Some(_)) => {
            return Err(invalid(
                "desiredCount cannot be given for a DAEMON service.",
            ));
        }
        (SchedulingStrategy::Daemon, None) => 0,
        (SchedulingStrategy::Replica, d) => d.unwrap_or(0),
    };
    check_desired_count(desired)?;
    let services_here = state
        .services_in(&ctx.scope, &cluster.name)
        .filter(|s| s.service.status() != Some(ServiceStatus::Inactive))
        .count();
    if services_here >= MAX_SERVICES_PER_CLUSTER {
        return Err(invalid(format!(
            "Cluster {} already has {services_here} services, the most a cluster can have \
             ({MAX_SERVICES_PER_CLUSTER}). Delete a service and try again.",
            cluster.name
        )));
    }
    // A launch type, or a capacity provider strategy (given, or the cluster's default).
    let given = (req.launch_type, req.capacity_provider_strategy.as_deref());
    let launch = launch::create_launch(cluster, given, external, scheduling)?;
    // The Fargate pool (`crate::fargate`): checked as RunTask's.
    let platform_version = if launch.is_fargate() {
        Some(launch::check_fargate(
            def,
            scheduling,
            (
                req.placement_constraints.as_deref().unwrap_or(&[]),
                req.placement_strategy.as_deref().unwrap_or(&[]),
            ),
            req.network_configuration.as_ref(),
            req.platform_version.as_deref(),
        )?)
    } else {
        None
    };
    let mut config = req.deployment_configuration.unwrap_or_default();
    if scheduling == SchedulingStrategy::Daemon {
        // ECS's DAEMON defaults: replace one instance's task at a time, no surge.
        config.minimum_healthy_percent.get_or_insert(0);
        config.maximum_percent.get_or_insert(100);
    }
    let config = with_defaults(Some(config));
    validate_deployment_configuration(&config)?;
    check_len(
        req.placement_constraints.as_deref().unwrap_or(&[]),
        10,
        "placementConstraints",
    )?;
    check_len(
        req.placement_strategy.as_deref().unwrap_or(&[]),
        5,
        "placementStrategy",
    )?;
    let load_balancers = req.load_balancers.unwrap_or_default();
    let blue_green = is_blue_green(Some(&config));
    let service_registries = req.service_registries.unwrap_or_default();
    if let Some(def) = def {
        crate::load_balancing::validate(state, &ctx.scope, &load_balancers, def, blue_green)?;
        crate::registries::validate(state, &ctx.scope, &service_registries, def)?;
    }
    let tags = req.tags.unwrap_or_default();
    validate_tags(&tags)?;
    let def_arn = def.and_then(|d| d.definition.task_definition_arn.clone());
    let service_arn = ctx.arn(ResourceType::Service, format!("{}/{name}", cluster.name));
    let service_connect = match (req.service_connect_configuration.as_ref(), def) {
        (Some(c), Some(def)) => Some(crate::service_connect::resolve(
            state,
            ctx,
            cluster,
            &service_arn,
            c,
            def,
        )?),
        _ => None,
    };
    let mut changes = Vec::new();
    // An EXTERNAL service has no deployments: its task sets stand in for them.
    let mut deployments = Vec::new();
    if let Some(def_arn) = &def_arn {
        let mut deployment =
            new_deployment(ctx, def_arn, desired, &launch, platform_version.as_deref());
        if let Some(sc) = service_connect {
            deployment.service_connect_configuration = Some(sc.config);
            deployment.service_connect_resources = Some(sc.resources);
            changes = sc.changes;
        }
        deployments.push(deployment);
    }
    let service = wire::Service {
        service_arn: Some(service_arn),
        service_name: Some(name.clone()),
        cluster_arn: cluster.cluster.cluster_arn.clone(),
        load_balancers: Some(load_balancers),
        service_registries: Some(service_registries),
        status: Some(ServiceStatus::Active.into()),
        desired_count: Some(desired),
        running_count: Some(0),
        pending_count: Some(0),
        launch_type: launch.launch_type,
        capacity_provider_strategy: launch.strategy,
        task_definition: def_arn,
        deployment_configuration: Some(config),
        deployments: Some(deployments),
        events: Some(vec![]),
        created_at: Some(ctx.now),
        placement_constraints: Some(req.placement_constraints.unwrap_or_default()),
        placement_strategy: Some(req.placement_strategy.unwrap_or_default()),
        network_configuration: req.network_configuration,
        platform_family: platform_version
            .as_ref()
            .map(|_| crate::fargate::PLATFORM_FAMILY.to_owned()),
        platform_version,
        health_check_grace_period_seconds: req.health_check_grace_period_seconds,
        scheduling_strategy: Some(scheduling),
        deployment_controller: Some(req.deployment_controller.unwrap_or(
            wire::DeploymentController {
                r#type: Some(wire::DeploymentControllerType::Ecs),
            },
        )),
        tags: Some(tags),
        created_by: Some(format!("arn:aws:iam::{}:root", ctx.scope.account)),
        enable_ecs_managed_tags: Some(req.enable_ecs_managed_tags.unwrap_or(false)),
        propagate_tags: Some(req.propagate_tags.unwrap_or(wire::PropagateTags::None)),
        enable_execute_command: Some(req.enable_execute_command.unwrap_or(false)),
        availability_zone_rebalancing: Some(
            req.availability_zone_rebalancing
                .unwrap_or(wire::AvailabilityZoneRebalancing::Enabled),
        ),
        ..Default::default()
    };
    let rec = ServiceRecord {
        scope: ctx.scope.clone(),
        cluster: cluster.name.clone(),
        name,
        service,
        steady_deployments: Vec::new(),
        blue_green: Default::default(),
        task_sets: Vec::new(),
    };
    let shown = describe_one(state, &rec, true);
    changes.extend(crate::service_deployments::sync(state, ctx, &rec, false));
    changes.push(Change::Put(Record::Service(rec)));
    Ok((
        wire::CreateServiceResponse {
            service: Some(shown),
        },
        changes,
    ))
}

fn active_service<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
    ident: Option<&str>,
) -> Result<&'a ServiceRecord, EcsError> {
    let ident = ident.ok_or_else(|| invalid("service is required."))?;
    let rec = find(state, scope, cluster, ident).ok_or(EcsError::ServiceNotFound)?;
    if rec.service.status() != Some(ServiceStatus::Active) {
        return Err(EcsError::ServiceNotActive);
    }
    Ok(rec)
}

/// UpdateService: desired count, task definition, deployment configuration, placement,
/// capacity provider strategy; a new task definition, load balancers, Service Connect
/// configuration or capacity (`services_capacity.rs`), or `forceNewDeployment`, starts a
/// new PRIMARY deployment.
pub fn update(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UpdateServiceRequest,
) -> Written<wire::UpdateServiceResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let mut rec = active_service(state, &ctx.scope, &cluster.name, req.service.as_deref())?.clone();
    if task_sets::is_external(&rec.service) {
        task_sets::check_external_update(&req)?;
    }
    // A new capacity provider strategy (or back to a launch type) starts a deployment.
    let new_launch = launch::update_launch(
        cluster,
        &rec.service,
        req.capacity_provider_strategy.as_deref(),
    )?;
    let s = &mut rec.service;
    if let Some(d) = req.desired_count {
        check_desired_count(d)?;
        if s.scheduling_strategy == Some(SchedulingStrategy::Daemon) {
            return Err(invalid(
                "desiredCount cannot be changed for a DAEMON service.",
            ));
        }
        s.desired_count = Some(d);
    }
    if let Some(c) = req.deployment_configuration {
        let merged = with_defaults(Some(c));
        validate_deployment_configuration(&merged)?;
        s.deployment_configuration = Some(merged);
    }
    if let Some(pc) = req.placement_constraints {
        check_len(&pc, 10, "placementConstraints")?;
        s.placement_constraints = Some(pc);
    }
    if let Some(ps) = req.placement_strategy {
        check_len(&ps, 5, "placementStrategy")?;
        s.placement_strategy = Some(ps);
    }
    if let Some(e) = req.enable_execute_command {
        s.enable_execute_command = Some(e);
    }
    if let Some(r) = req.availability_zone_rebalancing {
        s.availability_zone_rebalancing = Some(r);
    }
    if let Some(g) = req.health_check_grace_period_seconds {
        s.health_check_grace_period_seconds = Some(g);
    }
    let mut new_def = None;
    if let Some(ident) = req.task_definition {
        let def = task_definitions::resolve(state, &ctx.scope, &ident)
            .ok_or_else(|| invalid("TaskDefinition not found."))?;
        if def.definition.status != Some(wire::TaskDefinitionStatus::Active) {
            return Err(invalid("TaskDefinition is inactive"));
        }
        // A FARGATE service's new revision must run on Fargate (`crate::fargate`).
        if new_launch
            .as_ref()
            .map_or_else(|| Launch::of_service(s).is_fargate(), Launch::is_fargate)
        {
            crate::fargate::validate_launch(
                &def.definition,
                None,
                req.network_configuration
                    .as_ref()
                    .or(s.network_configuration.as_ref()),
            )?;
        }
        new_def = def.definition.task_definition_arn.clone();
    }
    // New load balancers, or a new task definition, must fit each other (ECS starts a
    // new deployment when `loadBalancers` change).
    let changed_lbs = req
        .load_balancers
        .as_ref()
        .is_some_and(|l| Some(l) != s.load_balancers.as_ref());
    if changed_lbs || new_def.is_some() {
        let ident = new_def
            .clone()
            .or_else(|| s.task_definition.clone())
            .unwrap_or_default();
        if let Some(def) = task_definitions::resolve(state, &ctx.scope, &ident) {
            let lbs = req
                .load_balancers
                .clone()
                .or_else(|| s.load_balancers.clone())
                .unwrap_or_default();
            let blue_green = is_blue_green(s.deployment_configuration.as_ref());
            crate::load_balancing::validate(state, &ctx.scope, &lbs, def, blue_green)?;
        }
    }
    if let Some(lbs) = req.load_balancers {
        s.load_balancers = Some(lbs);
    }
    let desired = s.desired_count.unwrap_or(0);
    let changed_def = new_def
        .as_ref()
        .is_some_and(|d| Some(d) != s.task_definition.as_ref());
    // Service Connect: the configuration given, else the primary deployment's, checked
    // against the task definition the next deployment runs; a change starts one.
    let primary_sc = s
        .deployments
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|d| d.is_primary())
        .and_then(|d| d.service_connect_configuration.clone());
    let sc_given = req
        .service_connect_configuration
        .or_else(|| primary_sc.clone());
    let mut service_connect = None;
    if let Some(given) = &sc_given {
        let ident = new_def
            .clone()
            .or_else(|| s.task_definition.clone())
            .unwrap_or_default();
        let def = task_definitions::resolve(state, &ctx.scope, &ident)
            .ok_or_else(|| invalid("TaskDefinition not found."))?;
        let arn = s.service_arn.clone().unwrap_or_default();
        let sc = crate::service_connect::resolve(state, ctx, cluster, &arn, given, def)?;
        service_connect = Some(sc);
    }
    let changed_sc = service_connect.as_ref().map(|sc| &sc.config) != primary_sc.as_ref();
    let mut changes = Vec::new();
    if let Some(l) = &new_launch {
        let network = req.network_configuration.as_ref();
        let target = (new_def.as_deref(), network);
        launch::switch(state, &ctx.scope, s, l, target, req.platform_version)?;
    }
    if changed_def
        || changed_lbs
        || changed_sc
        || new_launch.is_some()
        || req.force_new_deployment == Some(true)
    {
        let def = new_def
            .or_else(|| s.task_definition.clone())
            .unwrap_or_default();
        let launch = Launch::of_service(s);
        let platform = s.platform_version.clone().filter(|_| launch.is_fargate());
        let mut deployment = new_deployment(ctx, &def, desired, &launch, platform.as_deref());
        if let Some(sc) = service_connect {
            deployment.service_connect_configuration = Some(sc.config);
            deployment.service_connect_resources = Some(sc.resources);
            // The Cloud Map services it names, where new.
            changes = sc.changes;
        }
        let s = &mut rec.service;
        for d in s.deployments.get_or_insert_with(Vec::new) {
            if d.is_primary() {
                d.set_status(DeploymentStatus::Active);
                d.updated_at = Some(ctx.now);
            }
        }
        s.deployments
            .get_or_insert_with(Vec::new)
            .insert(0, deployment);
        s.task_definition = Some(def);
    } else if let Some(primary) = rec
        .service
        .deployments
        .get_or_insert_with(Vec::new)
        .iter_mut()
        .find(|d| d.is_primary())
    {
        primary.desired_count = Some(desired);
        primary.updated_at = Some(ctx.now);
    }
    let shown = describe_one(state, &rec, false);
    changes.extend(crate::service_deployments::sync(state, ctx, &rec, false));
    changes.push(Change::Put(Record::Service(rec)));
    Ok((
        wire::UpdateServiceResponse {
            service: Some(shown),
        },
        changes,
    ))
}

/// DeleteService: refuses while scaled above zero unless `force`; a service without
/// tasks goes straight to INACTIVE, else DRAINING until its tasks have stopped.
pub fn delete(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeleteServiceRequest,
) -> Written<wire::DeleteServiceResponse> {
    let cluster = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let ident = req.service.ok_or_else(|| invalid("service is required."))?;
    let rec = find(state, &ctx.scope, &cluster.name, &ident).ok_or(EcsError::ServiceNotFound)?;
    // DeleteService declares no ServiceNotActiveException: a service already deleted is
    // not found, as ECS answers.
    if rec.service.status() == Some(ServiceStatus::Inactive) {
        return Err(EcsError::ServiceNotFound);
    }
    let desired = rec.service.desired_count.unwrap_or(0);
    if desired > 0
        && req.force != Some(true)
        && rec.service.scheduling_strategy != Some(SchedulingStrategy::Daemon)
    {
        return Err(invalid(
            "The service cannot be stopped while it is scaled above 0.",
        ));
    }
    let mut rec = rec.clone();
    let group = service_group(&rec.name);
    let has_tasks = state.tasks_in(&ctx.scope, &cluster.name).any(|t| {
        t.task.group.as_deref() == Some(group.as_str())
            && t.task.last() != Some(TaskStatus::Stopped)
    });
    rec.service.desired_count = Some(0);
    rec.service.set_status(if has_tasks {
        ServiceStatus::Draining
    } else {
        ServiceStatus::Inactive
    });
    let shown = describe_one(state, &rec, false);
    let mut changes = crate::service_deployments::sync(state, ctx, &rec, false);
    changes.push(Change::Put(Record::Service(rec)));
    Ok((
        wire::DeleteServiceResponse {
            service: Some(shown),
        },
        changes,
    ))
}

/// DescribeServices: unknown services come back in `failures` with reason MISSING.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: wire::DescribeServicesRequest,
) -> Result<wire::DescribeServicesResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let idents = req
        .services
        .ok_or_else(|| invalid("services is required."))?;
    check_len(&idents, 10, "services")?;
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&wire::ServiceField::Tags);
    let (mut services, mut failures) = (Vec::new(), Vec::new());
    for ident in idents {
        match find(state, scope, &cluster.name, &ident) {
            Some(rec) => services.push(describe_one(state, rec, with_tags)),
            None => failures.push(missing(scope, ident, ResourceType::Service, |i| {
                format!("{}/{i}", cluster.name)
            })),
        }
    }
    Ok(wire::DescribeServicesResponse {
        services: Some(services),
        failures: Some(failures),
    })
}

/// ListServices: ACTIVE and DRAINING services of a cluster, in name order. A page ranges
/// over the index of listed services from the last name it returned.
pub fn list(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListServicesRequest,
) -> Result<wire::ListServicesResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let filters = format!(
        "{}|{}|{}",
        cluster.name,
        req.launch_type.map(|l| l.as_str()).unwrap_or(""),
        req.scheduling_strategy.map(|l| l.as_str()).unwrap_or("")
    );
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListServices",
            &filters,
            req.max_results,
            req.next_token.as_deref(),
        ),
        |after| {
            let key = |name: &str| ServiceKey::new(scope, &cluster.name, name);
            let start = crate::paging::start_after(after.map(key), key(""));
            Ok(crate::paging::counted(
                state
                    .derived
                    .listed_services
                    .range((start, std::ops::Bound::Unbounded)),
            )
            .take_while(|k| k.scope == *scope && k.cluster == cluster.name)
            .filter_map(|key| state.services.get(key))
            .filter(|s| req.launch_type.is_none() || s.service.launch_type == req.launch_type)
            .filter(|s| {
                req.scheduling_strategy.is_none()
                    || s.service.scheduling_strategy == req.scheduling_strategy
            })
            .map(|s| {
                (
                    s.name.clone(),
                    s.service.service_arn.clone().unwrap_or_default(),
                )
            }))
        },
    )?;
    Ok(wire::ListServicesResponse {
        service_arns: Some(page.items),
        next_token: page.next_token,
    })
}
