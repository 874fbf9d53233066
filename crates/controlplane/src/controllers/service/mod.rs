//! The service controller: keeps a service's tasks equal to what its deployments ask for.
//!
//! [`reconcile_service`] is pure: from the durable [`State`], `ctx.now` and `ctx`'s seeded
//! RNG it decides, for one service, which tasks to start (placed by the `scheduler`
//! crate), which to stop (`stopCode` `ServiceSchedulerInitiated`), how the deployments
//! progress (`rolloutState`, `failedTasks`, the circuit breaker and its rollback), when old
//! deployments leave `deployments[]`, and which events to add. It is level-triggered and
//! idempotent: it looks only at the state, never at what happened before, so running it
//! twice on the same state yields no further changes, and a restart in the middle of a
//! deployment simply carries on from the stored tasks and deployments.
//!
//! One pass of a REPLICA service, in order:
//! 1. count failed tasks per deployment; trip the circuit breaker (and roll back); fail
//!    (and roll back) a rollout whose `deploymentConfiguration.alarms` went into ALARM;
//! 2. stop tasks that fail their health checks (past `healthCheckGracePeriodSeconds`),
//!    and pending tasks that are on a draining instance or belong to an old deployment;
//! 3. start tasks of the PRIMARY deployment up to `desiredCount`, never past
//!    `maximumPercent` of it (tasks count until the agent reports them STOPPED), on the
//!    deployment's launch type or split between its capacity providers;
//! 4. stop running tasks that should go (old deployments, draining instances, scale-in
//!    excess) while the healthy tasks stay at or above `minimumHealthyPercent`; scale-in
//!    and deployments never pick tasks with scale-in protection;
//! 5. re-spread across availability zones when asked (`availabilityZoneRebalancing`);
//! 6. complete the rollout (only the PRIMARY deployment remains) and say so in events.
//!
//! Layout: this module holds the entry points, the `Pass` and what it writes; the
//! phases live beside it — `facts` (questions about tasks), `actions` (stop, start, events),
//! `replica` (the REPLICA phases above), `rebalance`, `daemon` (DAEMON and deleted
//! services), `deployments` (failures, circuit breaker and rollback target, rollout
//! completion), `alarms` (CloudWatch deployment alarms), `capacity` (a deployment's
//! launch type or capacity provider strategy: starts per provider, scale-in by provider
//! share), `task_sets` (EXTERNAL services: each
//! task set keeps its own count) and `timing` (`requeue_after`).
//!
//! DAEMON services run one task on every ACTIVE instance their constraints select
//! ([`scheduler::daemon_placements`]); a DRAINING (deleted) service stops all its tasks and
//! turns INACTIVE once none is left.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use model::lifecycle::TaskStatus;
use model::status::{ClusterStatus, DeploymentStatus, InstanceStatus, ServiceStatus};
use model::wire::{
    self, AvailabilityZoneRebalancing, DeploymentRolloutState as Rollout, HealthStatus,
    SchedulingStrategy, TaskStopCode,
};
use scheduler::snapshot::{ClusterSnapshot, TaskRequest};
use scheduler::spec::{SpreadField, Strategy};
use scheduler::{Outcome, Placement, PlacementFailure, PlacementSpec};

use crate::engine::{Ctx, Written};
use crate::error::EcsError;
use crate::limits::{MAX_STARTS_PER_PASS, MAX_TASKS_PER_SERVICE};
use crate::load_balancing::{self, Binding};
use crate::ops::task_definitions;
use crate::placement::{reservation_of, snapshot, task_request};
use crate::state::elb::{ElbKey, TargetGroupRecord};
use crate::state::{
    Change, ClusterRecord, InstanceRecord, Record, ServiceKey, ServiceRecord, State,
    TaskDefinitionRecord, TaskRecord,
};
use crate::task::{
    TaskSpec, build_task, is_protected, is_running, protection_expiry as protected_until,
    request_stop, service_group,
};

mod actions;
mod alarms;
mod blue_green;
mod capacity;
mod daemon;
mod deployments;
mod facts;
mod instances;
mod rebalance;
mod registries;
mod replica;
mod targets;
mod task_sets;
mod timing;

/// Most events a service keeps (newest first), as ECS.
pub const MAX_EVENTS: usize = 100;
/// ECS repeats "has reached a steady state." at most this often while nothing happens.
pub const STEADY_STATE_REPEAT_SECS: f64 = 6.0 * 3600.0;
/// An identical "unable to place" (or "unable to stop or start") event is not repeated
/// within this many seconds.
pub const REPEAT_PROBLEM_EVENT_SECS: f64 = 300.0;
/// A task that reached RUNNING and then stopped because an essential container exited
/// with a non-zero code within this many seconds counts as a failed task for the
/// circuit breaker (ECS counts only tasks that never reach RUNNING).
pub const CRASH_WINDOW_SECS: f64 = 300.0;
/// `stoppedReason` of a task the scheduler stops because it fails its health checks.
pub const HEALTH_CHECK_REASON: &str = "Task failed container health checks";
/// A RUNNING task of a rollout in progress whose containers report no health counts as
/// healthy after this many seconds (ECS: 40 s); until then it neither lets old tasks stop
/// nor completes the rollout. Tasks of a completed deployment count once RUNNING.
pub const HEALTHY_AFTER_SECS: f64 = 40.0;
/// Fewest and most failed tasks that trip the circuit breaker.
pub const FAILURE_THRESHOLD_BOUNDS: (i32, i32) = (10, 200);
/// A service whose placement failed is looked at again after this many seconds (sooner
/// if the cluster changes).
pub const PLACEMENT_RETRY_SECS: f64 = 3.0;
/// A FAILED deployment with nothing to fall back to relaunches its own tasks (to keep
/// `desiredCount`) at most once per this many seconds after its last failed task.
pub const FAILED_RELAUNCH_SECS: f64 = 30.0;

/// What one reconcile of a service did (the changes themselves go to the writer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceOutcome {
    /// Ids of the tasks started.
    pub started: Vec<String>,
    /// Ids of the tasks asked to stop.
    pub stopped: Vec<String>,
    /// Messages of the events added.
    pub events: Vec<String>,
    /// Seconds after which the service needs another pass even if nothing changes (a
    /// task turning healthy by time, a grace period ending, a placement to retry); `None`
    /// when only a change can give it work.
    pub requeue_after: Option<f64>,
}

impl ServiceOutcome {
    /// Whether the pass neither started nor stopped a task nor said anything.
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.stopped.is_empty() && self.events.is_empty()
    }
}

/// Failed tasks that trip the circuit breaker of a deployment of `desired` tasks:
/// `min(max(10, ceil(0.5 × desired)), 200)`.
pub fn failure_threshold(desired: i32) -> i32 {
    let half = (i64::from(desired.max(0)) + 1) / 2;
    let (lo, hi) = FAILURE_THRESHOLD_BOUNDS;
    i32::try_from(half.clamp(i64::from(lo), i64::from(hi))).unwrap_or(hi)
}

/// Keys of the ACTIVE and DRAINING services whose reconcile would change something now
/// (a dry run against `state`; the runner then runs the real pass through the writer).
/// A service whose reconcile fails is listed too, so that the error surfaces.
pub fn services_needing_work(state: &State, now: f64) -> Vec<ServiceKey> {
    state
        .services
        .iter()
        .filter(|(_, r)| {
            matches!(
                r.service.status(),
                Some(ServiceStatus::Active | ServiceStatus::Draining)
            )
        })
        .filter(|(key, _)| {
            let mut ctx = Ctx::new(key.scope.clone(), now, 0);
            !matches!(reconcile_service(state, &mut ctx, key), Ok((_, c)) if c.is_empty())
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// Reconciles one service: decides the changes that move it one step towards its
/// desired state. A missing or INACTIVE service, or one whose cluster is gone, needs
/// nothing.
///
/// # Errors
///
/// `EcsError::Server` when `ctx.scope` is not the service's scope (a caller bug).
pub fn reconcile_service(
    state: &State,
    ctx: &mut Ctx,
    key: &ServiceKey,
) -> Written<ServiceOutcome> {
    let Some(rec) = state.services.get(key) else {
        return Ok((ServiceOutcome::default(), Vec::new()));
    };
    if ctx.scope != key.scope {
        return Err(EcsError::Server(format!(
            "the service controller ran service {} in the wrong scope",
            rec.name
        )));
    }
    let Some(cluster) = state
        .cluster(&key.scope, &key.cluster)
        .filter(|c| c.cluster.status() != Some(ClusterStatus::Inactive))
    else {
        return Ok((ServiceOutcome::default(), Vec::new()));
    };
    let mut pass = Pass::new(state, rec, cluster, ctx.now);
    if let Some(problem) = unmanageable(rec) {
        // A record stored before a limit existed (or written by hand): say so and leave
        // it alone, rather than act on it.
        tracing::warn!(cluster = %rec.cluster, service = %rec.name, %problem, "service skipped");
        let m = format!("{} cannot be reconciled: {problem}", pass.prefix());
        pass.problem(m);
        return Ok(pass.into_written(ctx, rec));
    }
    match rec.service.status() {
        // EXTERNAL: each task set keeps its own tasks (`task_sets.rs`).
        Some(ServiceStatus::Active) if task_sets::follows_task_sets(rec) => pass.task_sets(ctx),
        Some(ServiceStatus::Active) => {
            pass.sync_targets();
            pass.count_failures();
            pass.requested_rollback();
            pass.circuit_breaker();
            pass.deployment_alarms();
            if rec.service.scheduling_strategy == Some(SchedulingStrategy::Daemon) {
                pass.daemon(ctx);
            } else {
                pass.replica(ctx);
            }
            pass.finish_rollout();
            pass.steady_state();
            if let Some(p) = pass.primary() {
                pass.note_steady(&p);
            }
            pass.wake_for_time();
            pass.sync_registries(ctx);
        }
        Some(ServiceStatus::Draining) => {
            pass.sync_targets();
            pass.drain_deleted();
            pass.sync_registries(ctx);
        }
        _ => return Ok((ServiceOutcome::default(), Vec::new())),
    }
    Ok(pass.into_written(ctx, rec))
}

/// Why a stored service cannot be acted on, if it cannot: its desired count is beyond
/// [`MAX_TASKS_PER_SERVICE`].
fn unmanageable(rec: &ServiceRecord) -> Option<String> {
    let desired = rec.service.desired_count.unwrap_or(0);
    (!(0..=MAX_TASKS_PER_SERVICE).contains(&desired)).then(|| {
        format!(
            "desiredCount {desired} is outside 0..={MAX_TASKS_PER_SERVICE}; update the \
             service's desired count."
        )
    })
}

/// The PRIMARY deployment's facts the pass needs.
#[derive(Debug, Clone)]
struct Primary {
    id: String,
    task_definition: String,
    failed: bool,
    /// Its launch type (none with a strategy).
    launch_type: Option<wire::LaunchType>,
    /// Its `capacityProviderStrategy` (empty with a launch type).
    strategy: Vec<wire::CapacityProviderStrategyItem>,
}

/// One reconcile pass over one service: the inputs, and the decisions made so far.
struct Pass<'a> {
    state: &'a State,
    cluster: &'a ClusterRecord,
    /// The service as stored.
    rec: &'a ServiceRecord,
    /// The service as it will be written (deployments, counts, status).
    svc: ServiceRecord,
    now: f64,
    group: String,
    /// Every task of the service, stopped ones included.
    tasks: Vec<&'a TaskRecord>,
    /// The instances the pass can see, by id (looked up as asked for).
    instances: instances::PassInstances<'a>,
    /// Tasks asked to stop in this pass (the records as they will be written).
    stops: Vec<TaskRecord>,
    stopped_ids: HashSet<String>,
    /// Tasks started in this pass.
    starts: Vec<TaskRecord>,
    /// Event messages, oldest first.
    events: Vec<String>,
    /// Whether a placement failed in this pass.
    placement_failed: bool,
    /// Whether the circuit breaker tripped in this pass.
    tripped: bool,
    /// When the service next needs a pass by time alone (epoch seconds).
    wake_at: Option<f64>,
    /// Its `loadBalancers`, then its task sets' (each taking only that set's tasks),
    /// target groups resolved.
    bindings: Vec<Binding<'a>>,
    /// Target groups as this pass will write them.
    group_edits: BTreeMap<ElbKey, TargetGroupRecord>,
    /// Tasks deregistered from their groups in this pass, their stop held back (the
    /// records as they will be written).
    drains: Vec<TaskRecord>,
    /// Its `serviceRegistries`, Service Connect services and task sets'
    /// `serviceRegistries`, Cloud Map services resolved.
    registries: Vec<crate::registries::Registry<'a>>,
    /// Listener and rule records this pass rewrites (blue/green traffic shifts).
    rule_changes: Vec<Change>,
    /// Cloud Map registrations and deregistrations of this pass.
    registry_changes: Vec<Change>,
    /// Targets registered and deregistered in this pass.
    registered: usize,
    deregistered: usize,
}

impl<'a> Pass<'a> {
    fn new(state: &'a State, rec: &'a ServiceRecord, cluster: &'a ClusterRecord, now: f64) -> Self {
        let group = service_group(&rec.name);
        let tasks = state
            .tasks_in_group(&rec.scope, &rec.cluster, &group)
            .collect();
        // A FARGATE service's tasks are on the Fargate pool's instances, the others'
        // on the cluster's (a service moving between them has tasks on both).
        let instances =
            instances::PassInstances::new(state, &rec.scope, &rec.cluster, on_pool(rec));
        Pass {
            state,
            cluster,
            rec,
            svc: rec.clone(),
            now,
            group,
            tasks,
            instances,
            stops: Vec::new(),
            stopped_ids: HashSet::new(),
            starts: Vec::new(),
            events: Vec::new(),
            placement_failed: false,
            tripped: false,
            wake_at: None,
            bindings: load_balancing::bindings(state, &rec.scope, &rec.service)
                .into_iter()
                .chain(load_balancing::task_set_bindings(
                    state,
                    &rec.scope,
                    &rec.task_sets,
                ))
                .collect(),
            group_edits: BTreeMap::new(),
            registries: crate::registries::registries(state, &rec.scope, &rec.service)
                .into_iter()
                .chain(crate::registries::task_set_registries(
                    state,
                    &rec.scope,
                    &rec.task_sets,
                ))
                .collect(),
            registry_changes: Vec::new(),
            rule_changes: Vec::new(),
            drains: Vec::new(),
            registered: 0,
            deregistered: 0,
        }
    }

    fn prefix(&self) -> String {
        format!("(service {})", self.svc.name)
    }

    fn into_written(
        mut self,
        ctx: &mut Ctx,
        before: &ServiceRecord,
    ) -> (ServiceOutcome, Vec<Change>) {
        let prefix = self.prefix();
        if !self.starts.is_empty() {
            self.events.push(format!(
                "{prefix} has started {} tasks: {}.",
                self.starts.len(),
                task_list(&self.starts)
            ));
        }
        if !self.stops.is_empty() {
            self.events.push(format!(
                "{prefix} has stopped {} running tasks: {}.",
                self.stops.len(),
                task_list(&self.stops)
            ));
        }
        if !self.drains.is_empty() {
            self.events.push(format!(
                "{prefix} has begun draining connections on {} tasks.",
                self.drains.len()
            ));
        }
        if self.deregistered > 0 {
            self.events.push(format!(
                "{prefix} deregistered {} targets from its target groups.",
                self.deregistered
            ));
        }
        if self.registered > 0 {
            self.events.push(format!(
                "{prefix} registered {} targets in its target groups.",
                self.registered
            ));
        }
        let events = self.svc.service.events.get_or_insert_with(Vec::new);
        for message in &self.events {
            events.insert(
                0,
                wire::ServiceEvent {
                    id: Some(ctx.new_uuid()),
                    created_at: Some(self.now),
                    message: Some(message.clone()),
                },
            );
        }
        events.truncate(MAX_EVENTS);
        let outcome = ServiceOutcome {
            started: self.starts.iter().map(|t| t.id.clone()).collect(),
            stopped: self.stops.iter().map(|t| t.id.clone()).collect(),
            events: self.events.clone(),
            requeue_after: self.wake_at.map(|at| (at - self.now).max(0.0)),
        };
        let mut changes: Vec<Change> = self
            .stops
            .into_iter()
            .chain(self.drains)
            .chain(self.starts)
            .map(|t| Change::Put(Record::Task(t)))
            .chain(
                self.group_edits
                    .into_values()
                    .map(|g| Change::Put(Record::TargetGroup(g))),
            )
            .chain(self.rule_changes)
            .chain(self.registry_changes)
            .collect();
        // Service deployments and revisions follow the deployments as written.
        changes.extend(crate::service_deployments::sync(
            self.state, ctx, &self.svc, true,
        ));
        if self.svc != *before {
            changes.push(Change::Put(Record::Service(self.svc)));
        }
        (outcome, changes)
    }
}

/// The scheduler's views of the cluster and of the Fargate pool's regular and spot
/// nodes, each built on first use (a steady service needs none).
struct LazySnapshot<'a> {
    state: &'a State,
    scope: &'a crate::state::Scope,
    cluster: &'a str,
    cells: [OnceCell<(ClusterSnapshot, Vec<&'a InstanceRecord>)>; 3],
    /// The Fargate pool's view is the main one (a FARGATE service).
    fargate: bool,
}

impl<'a> LazySnapshot<'a> {
    fn new(state: &'a State, scope: &'a crate::state::Scope, cluster: &'a str) -> Self {
        LazySnapshot {
            state,
            scope,
            cluster,
            cells: Default::default(),
            fargate: false,
        }
    }

    /// The view a service's tasks are placed in: the Fargate pool's for a FARGATE one.
    fn for_service(state: &'a State, rec: &'a ServiceRecord) -> Self {
        let mut view = LazySnapshot::new(state, &rec.scope, &rec.cluster);
        view.fargate = is_fargate(&rec.service);
        view
    }

    /// The main view: the Fargate pool's regular nodes for a service on Fargate, else
    /// the cluster's.
    fn get(&self) -> (&ClusterSnapshot, &[&'a InstanceRecord]) {
        self.at(if self.fargate {
            capacity::View::Pool { spot: false }
        } else {
            capacity::View::Cluster
        })
    }

    /// The view `at`.
    fn at(&self, at: capacity::View) -> (&ClusterSnapshot, &[&'a InstanceRecord]) {
        let (i, spot) = match at {
            capacity::View::Cluster => (0, false),
            capacity::View::Pool { spot } => (1 + usize::from(spot), spot),
        };
        let (snap, records) = self.cells[i].get_or_init(|| {
            if i == 0 {
                snapshot(self.state, self.scope, self.cluster)
            } else {
                crate::fargate::pool_snapshot(self.state, self.scope, true, spot)
            }
        });
        (snap, records)
    }
}

/// Whether the service runs its tasks on the Fargate pool (launch type FARGATE, or a
/// strategy of the Fargate providers).
fn is_fargate(s: &wire::Service) -> bool {
    s.launch_type == Some(wire::LaunchType::Fargate)
        || crate::capacity::is_fargate_strategy(
            s.capacity_provider_strategy.as_deref().unwrap_or(&[]),
        )
}

/// Whether the service (or one of its deployments or task sets) has tasks on the Fargate pool, and
/// whether on the cluster's own instances.
fn on_pool(rec: &ServiceRecord) -> (bool, bool) {
    let s = &rec.service;
    let mut kinds = s
        .deployments
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|d| capacity::deployment_on_fargate(d, s))
        .chain(
            rec.task_sets
                .iter()
                .map(|ts| task_sets::set_launch(ts).is_fargate()),
        )
        .chain(std::iter::once(is_fargate(s)));
    let all: Vec<bool> = kinds.by_ref().collect();
    (all.iter().any(|f| *f), all.iter().any(|f| !*f))
}

/// `(minimumHealthyPercent, maximumPercent)` with ECS's defaults (DAEMON: 0 and 100).
fn percents(s: &wire::Service) -> (i64, i64) {
    let daemon = s.scheduling_strategy == Some(SchedulingStrategy::Daemon);
    let c = s.deployment_configuration.clone().unwrap_or_default();
    let (min_default, max_default) = if daemon { (0, 100) } else { (100, 200) };
    (
        i64::from(
            c.minimum_healthy_percent
                .unwrap_or(min_default)
                .clamp(0, 100),
        ),
        i64::from(c.maximum_percent.unwrap_or(max_default).max(100)),
    )
}

/// Tasks as a service event names them: `(task ID)`, separated by spaces.
fn task_list(tasks: &[TaskRecord]) -> String {
    tasks
        .iter()
        .map(|t| format!("(task {})", t.id))
        .collect::<Vec<_>>()
        .join(" ")
}
