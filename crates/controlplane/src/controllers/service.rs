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
//! 1. count failed tasks per deployment; trip the circuit breaker (and roll back);
//! 2. stop tasks that fail their health checks (past `healthCheckGracePeriodSeconds`),
//!    and pending tasks that are on a draining instance or belong to an old deployment;
//! 3. start tasks of the PRIMARY deployment up to `desiredCount`, never past
//!    `maximumPercent` of it (tasks count until the agent reports them STOPPED);
//! 4. stop running tasks that should go (old deployments, draining instances, scale-in
//!    excess) while the healthy tasks stay at or above `minimumHealthyPercent`; scale-in
//!    and deployments never pick tasks with scale-in protection;
//! 5. re-spread across availability zones when asked (`availabilityZoneRebalancing`);
//! 6. complete the rollout (only the PRIMARY deployment remains) and say so in events.
//!
//! DAEMON services run one task on every ACTIVE instance their constraints select
//! ([`scheduler::daemon_placements`]); a DRAINING (deleted) service stops all its tasks and
//! turns INACTIVE once none is left.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap, HashSet};

use model::wire::{
    self, AvailabilityZoneRebalancing, DeploymentRolloutState as Rollout, HealthStatus,
    SchedulingStrategy, TaskStopCode,
};
use scheduler::snapshot::{ClusterSnapshot, TaskRequest};
use scheduler::spec::{SpreadField, Strategy};
use scheduler::{Outcome, Placement, PlacementFailure, PlacementSpec};

use crate::engine::{Ctx, Written};
use crate::error::EcsError;
use crate::ops::protection::is_protected;
use crate::ops::task_definitions;
use crate::ops::tasks::{
    TaskSpec, build_task, is_running, mark_stopped, reservation_of, snapshot, task_request,
};
use crate::state::{
    Change, ClusterRecord, InstanceRecord, MemberKey, Record, ServiceRecord, State,
    TaskDefinitionRecord, TaskRecord,
};

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

/// What one reconcile of a service did (the changes themselves go to the writer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceOutcome {
    /// Ids of the tasks started.
    pub started: Vec<String>,
    /// Ids of the tasks asked to stop.
    pub stopped: Vec<String>,
    /// Messages of the events added.
    pub events: Vec<String>,
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

/// The group of a service's tasks.
pub fn service_group(name: &str) -> String {
    format!("service:{name}")
}

/// Keys of the ACTIVE and DRAINING services whose reconcile would change something now
/// (a dry run against `state`; the runner then runs the real pass through the writer).
/// A service whose reconcile fails is listed too, so that the error surfaces.
pub fn services_needing_work(state: &State, now: f64) -> Vec<MemberKey> {
    state
        .services
        .iter()
        .filter(|(_, r)| matches!(r.service.status.as_deref(), Some("ACTIVE" | "DRAINING")))
        .filter(|(key, _)| {
            let mut ctx = Ctx::new(key.0.clone(), now, 0);
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
pub fn reconcile_service(state: &State, ctx: &mut Ctx, key: &MemberKey) -> Written<ServiceOutcome> {
    let Some(rec) = state.services.get(key) else {
        return Ok((ServiceOutcome::default(), Vec::new()));
    };
    if ctx.scope != key.0 {
        return Err(EcsError::Server(format!(
            "the service controller ran service {} in the wrong scope",
            rec.name
        )));
    }
    let Some(cluster) = state
        .cluster(&key.0, &key.1)
        .filter(|c| c.cluster.status.as_deref() != Some("INACTIVE"))
    else {
        return Ok((ServiceOutcome::default(), Vec::new()));
    };
    let mut pass = Pass::new(state, rec, cluster, ctx.now);
    match rec.service.status.as_deref() {
        Some("ACTIVE") => {
            pass.count_failures();
            pass.circuit_breaker();
            if rec.service.scheduling_strategy == Some(SchedulingStrategy::Daemon) {
                pass.daemon(ctx);
            } else {
                pass.replica(ctx);
            }
            pass.finish_rollout();
            pass.steady_state();
        }
        Some("DRAINING") => pass.drain_deleted(),
        _ => return Ok((ServiceOutcome::default(), Vec::new())),
    }
    Ok(pass.into_written(ctx, rec))
}

/// The PRIMARY deployment's facts the pass needs.
#[derive(Debug, Clone)]
struct Primary {
    id: String,
    task_definition: String,
    failed: bool,
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
    /// Status of every instance of the cluster, by id.
    instances: HashMap<&'a str, &'a InstanceRecord>,
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
}

impl<'a> Pass<'a> {
    fn new(state: &'a State, rec: &'a ServiceRecord, cluster: &'a ClusterRecord, now: f64) -> Self {
        let group = service_group(&rec.name);
        let tasks = state
            .tasks_in(&rec.scope, &rec.cluster)
            .filter(|t| t.task.group.as_deref() == Some(group.as_str()))
            .collect();
        let instances = state
            .instances_in(&rec.scope, &rec.cluster)
            .map(|i| (i.id.as_str(), i))
            .collect();
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
        }
    }

    fn prefix(&self) -> String {
        format!("(service {})", self.svc.name)
    }

    // ----- facts about tasks ------------------------------------------------------------

    /// Not STOPPED (it holds a slot under `maximumPercent`), and not stopped in this pass
    /// at once (a task no agent has taken over stops immediately).
    fn alive(&self, t: &TaskRecord) -> bool {
        t.task.last_status.as_deref() != Some("STOPPED")
            && (t.agent_acknowledged || !self.stopped_ids.contains(&t.id))
    }

    /// Alive and meant to run (not asked to stop, before or in this pass).
    fn wanted(&self, t: &TaskRecord) -> bool {
        t.task.last_status.as_deref() != Some("STOPPED")
            && t.task.desired_status.as_deref() == Some("RUNNING")
            && !self.stopped_ids.contains(&t.id)
    }

    /// Wanted, RUNNING, and either reported HEALTHY or, unless reported UNHEALTHY, of a
    /// deployment whose rollout has completed or running for [`HEALTHY_AFTER_SECS`] (a
    /// rollout's new tasks must stay up a while before they count).
    fn healthy(&self, t: &TaskRecord) -> bool {
        self.wanted(t)
            && is_running(&t.task)
            && match t.task.health_status {
                Some(HealthStatus::Healthy) => true,
                Some(HealthStatus::Unhealthy) => false,
                _ => {
                    self.rolled_out(t)
                        || t.task
                            .started_at
                            .is_some_and(|s| self.now - s >= HEALTHY_AFTER_SECS)
                }
            }
    }

    /// Wanted, RUNNING and not reported UNHEALTHY: what `minimumHealthyPercent` protects
    /// when scaling in or draining.
    fn up(&self, t: &TaskRecord) -> bool {
        self.wanted(t)
            && is_running(&t.task)
            && t.task.health_status != Some(HealthStatus::Unhealthy)
    }

    /// Whether the task's deployment has completed its rollout.
    fn rolled_out(&self, t: &TaskRecord) -> bool {
        self.svc
            .service
            .deployments
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|d| {
                d.id.is_some()
                    && d.id == t.task.started_by
                    && d.rollout_state == Some(Rollout::Completed)
            })
    }

    fn unhealthy(&self, t: &TaskRecord) -> bool {
        let grace = f64::from(
            self.svc
                .service
                .health_check_grace_period_seconds
                .unwrap_or(0)
                .max(0),
        );
        is_running(&t.task)
            && t.task.health_status == Some(HealthStatus::Unhealthy)
            && t.task.started_at.is_none_or(|s| self.now >= s + grace)
    }

    /// On an ACTIVE instance (a DRAINING, deregistered or unknown one needs a replacement).
    fn usable(&self, t: &TaskRecord) -> bool {
        t.instance_id
            .as_deref()
            .and_then(|i| self.instances.get(i))
            .is_some_and(|i| i.instance.status.as_deref() == Some("ACTIVE"))
    }

    fn protected(&self) -> BTreeSet<String> {
        self.tasks
            .iter()
            .filter(|t| is_protected(&t.task, self.now))
            .map(|t| t.id.clone())
            .collect()
    }

    fn alive_after(&self) -> usize {
        self.tasks.iter().filter(|t| self.alive(t)).count() + self.starts.len()
    }

    fn primary(&self) -> Option<Primary> {
        self.svc
            .service
            .deployments
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|d| d.status.as_deref() == Some("PRIMARY"))
            .map(|d| Primary {
                id: d.id.clone().unwrap_or_default(),
                task_definition: d.task_definition.clone().unwrap_or_default(),
                failed: d.rollout_state == Some(Rollout::Failed),
            })
    }

    fn of(t: &TaskRecord, p: &Primary) -> bool {
        t.task.started_by.as_deref() == Some(p.id.as_str())
    }

    fn is_failure(&self, t: &TaskRecord) -> bool {
        if t.task.last_status.as_deref() != Some("STOPPED") {
            return false;
        }
        match t.task.stop_code {
            Some(TaskStopCode::TaskFailedToStart) => true,
            Some(TaskStopCode::ServiceSchedulerInitiated) => t
                .task
                .stopped_reason
                .as_deref()
                .is_some_and(|r| r.starts_with(HEALTH_CHECK_REASON)),
            Some(TaskStopCode::EssentialContainerExited) => {
                let Some(started) = t.task.started_at else {
                    return true;
                };
                let stopped = t
                    .task
                    .execution_stopped_at
                    .or(t.task.stopping_at)
                    .or(t.task.stopped_at)
                    .unwrap_or(started);
                stopped - started <= CRASH_WINDOW_SECS && self.essential_exit_non_zero(t)
            }
            _ => false,
        }
    }

    fn essential_exit_non_zero(&self, t: &TaskRecord) -> bool {
        let def = t
            .task
            .task_definition_arn
            .as_deref()
            .and_then(|a| task_definitions::resolve(self.state, &self.svc.scope, a));
        let essential = |name: Option<&str>| {
            def.and_then(|d| {
                d.definition
                    .container_definitions
                    .as_deref()?
                    .iter()
                    .find(|c| c.name.as_deref() == name)
                    .map(|c| c.essential != Some(false))
            })
            .unwrap_or(true)
        };
        t.task
            .containers
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|c| essential(c.name.as_deref()) && c.exit_code.is_some_and(|e| e != 0))
    }

    // ----- decisions ----------------------------------------------------------------------

    fn stop(&mut self, t: &TaskRecord, reason: String) {
        if self.stopped_ids.contains(&t.id) {
            return;
        }
        let mut r = t.clone();
        r.task.desired_status = Some("STOPPED".into());
        r.task.stop_code = Some(TaskStopCode::ServiceSchedulerInitiated);
        r.task.stopped_reason = Some(reason);
        r.task.stopping_at = Some(self.now);
        r.task.version = Some(r.task.version.unwrap_or(0) + 1);
        if !r.agent_acknowledged {
            mark_stopped(&mut r.task, self.now);
        }
        self.stopped_ids.insert(r.id.clone());
        self.stops.push(r);
    }

    fn scaling_reason(&self) -> String {
        let id = self.primary().map(|p| p.id).unwrap_or_default();
        format!("Scaling activity initiated by (deployment {id})")
    }

    /// Adds a problem event unless the same one was said recently.
    fn problem(&mut self, message: String) {
        let recent = self.events.contains(&message)
            || self
                .svc
                .service
                .events
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|e| {
                    e.message.as_deref() == Some(message.as_str())
                        && e.created_at
                            .is_some_and(|at| self.now - at < REPEAT_PROBLEM_EVENT_SECS)
                });
        if !recent {
            self.events.push(message);
        }
    }

    /// Counts each deployment's failed tasks (kept monotonic: stopped tasks may be
    /// cleaned up later, the count stays).
    fn count_failures(&mut self) {
        // Only tasks of listed deployments: older stopped tasks are history.
        let mut counts: HashMap<String, i32> = self
            .svc
            .service
            .deployments
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter_map(|d| Some((d.id.clone()?, 0)))
            .collect();
        for t in &self.tasks {
            if let Some(n) = t
                .task
                .started_by
                .as_deref()
                .and_then(|by| counts.get_mut(by))
                && self.is_failure(t)
            {
                *n += 1;
            }
        }
        let now = self.now;
        for d in self.svc.service.deployments.get_or_insert_with(Vec::new) {
            let seen = counts
                .get(d.id.as_deref().unwrap_or(""))
                .copied()
                .unwrap_or(0);
            if seen > d.failed_tasks.unwrap_or(0) {
                d.failed_tasks = Some(seen);
                d.updated_at = Some(now);
            }
        }
    }

    /// Trips the circuit breaker of an IN_PROGRESS PRIMARY deployment that reached the
    /// failure threshold; with `rollback`, the last COMPLETED deployment becomes PRIMARY
    /// again.
    fn circuit_breaker(&mut self) {
        let config = self
            .svc
            .service
            .deployment_configuration
            .clone()
            .unwrap_or_default();
        let breaker = config.deployment_circuit_breaker.unwrap_or_default();
        if breaker.enable != Some(true) {
            return;
        }
        let desired = self.svc.service.desired_count.unwrap_or(0);
        let threshold = failure_threshold(desired);
        let prefix = self.prefix();
        let now = self.now;
        let deployments = self.svc.service.deployments.get_or_insert_with(Vec::new);
        let Some(pi) = deployments.iter().position(|d| {
            d.status.as_deref() == Some("PRIMARY")
                && d.rollout_state == Some(Rollout::InProgress)
                && d.failed_tasks.unwrap_or(0) >= threshold
        }) else {
            return;
        };
        self.tripped = true;
        let failed_id = deployments[pi].id.clone().unwrap_or_default();
        let failures = deployments[pi].failed_tasks.unwrap_or(0);
        deployments[pi].rollout_state = Some(Rollout::Failed);
        deployments[pi].rollout_state_reason =
            Some("ECS deployment circuit breaker: tasks failed to start.".into());
        deployments[pi].updated_at = Some(now);
        let mut events = vec![format!(
            "{prefix} (deployment {failed_id}) deployment failed: tasks failed to start \
             ({failures} failed tasks reached the circuit breaker threshold of {threshold})."
        )];
        if breaker.rollback == Some(true)
            && let Some(ti) = deployments.iter().position(|d| {
                d.status.as_deref() == Some("ACTIVE") && d.rollout_state == Some(Rollout::Completed)
            })
        {
            let target_id = deployments[ti].id.clone().unwrap_or_default();
            deployments[pi].status = Some("ACTIVE".into());
            let target = &mut deployments[ti];
            target.status = Some("PRIMARY".into());
            target.rollout_state = Some(Rollout::InProgress);
            target.rollout_state_reason = Some(format!(
                "ECS deployment circuit breaker: rolling back to deploymentId {target_id}."
            ));
            target.desired_count = Some(desired);
            target.updated_at = Some(now);
            let def = target.task_definition.clone();
            let t = deployments.remove(ti);
            deployments.insert(0, t);
            self.svc.service.task_definition = def;
            events.push(format!(
                "{prefix} (deployment {target_id}) rolling back: deployment {failed_id} \
                 failed and the circuit breaker has rollback enabled."
            ));
        }
        self.events.extend(events);
    }

    fn placement_spec(&self, def: &TaskDefinitionRecord) -> Result<PlacementSpec, String> {
        let s = &self.svc.service;
        PlacementSpec::from_wire(
            s.placement_strategy.as_deref().unwrap_or(&[]),
            def.definition
                .placement_constraints
                .as_deref()
                .unwrap_or(&[]),
            s.placement_constraints.as_deref().unwrap_or(&[]),
        )
        .map(|spec| spec.or_default_strategies(PlacementSpec::service_default_strategies()))
        .map_err(|e| e.to_string())
    }

    /// The PRIMARY deployment's task definition and placement spec, or an event saying
    /// why tasks cannot be started.
    fn launch_inputs(&mut self, p: &Primary) -> Option<(&'a TaskDefinitionRecord, PlacementSpec)> {
        let Some(def) = task_definitions::resolve(self.state, &self.svc.scope, &p.task_definition)
        else {
            let m = format!(
                "{} was unable to place a task because its task definition {} was not found.",
                self.prefix(),
                p.task_definition
            );
            self.problem(m);
            return None;
        };
        match self.placement_spec(def) {
            Ok(spec) => Some((def, spec)),
            Err(e) => {
                let m = format!("{} was unable to place a task: {e}", self.prefix());
                self.problem(m);
                None
            }
        }
    }

    fn task_spec(&self, def: &TaskDefinitionRecord, p: &Primary) -> TaskSpec {
        let s = &self.svc.service;
        let tags = match s.propagate_tags {
            Some(wire::PropagateTags::Service) => s.tags.clone().unwrap_or_default(),
            Some(wire::PropagateTags::TaskDefinition) => def.tags.clone(),
            _ => Vec::new(),
        };
        TaskSpec {
            group: Some(self.group.clone()),
            started_by: Some(p.id.clone()),
            overrides: None,
            tags,
            enable_execute_command: s.enable_execute_command.unwrap_or(false),
            client_token: None,
            launch_type: s.launch_type,
        }
    }

    fn start(
        &mut self,
        ctx: &mut Ctx,
        (def, spec): (&TaskDefinitionRecord, &TaskSpec),
        records: &[&InstanceRecord],
        request: &TaskRequest,
        p: &Placement,
    ) {
        let Some(instance) = records.get(p.instance_index) else {
            return;
        };
        let reservation = reservation_of(request, &p.dynamic_ports);
        let task = build_task(
            ctx,
            self.cluster,
            def,
            instance,
            spec,
            reservation,
            &p.dynamic_ports,
        );
        self.starts.push(task);
    }

    fn stop_unhealthy(&mut self) {
        let sick: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && self.unhealthy(t))
            .collect();
        for t in sick {
            let m = format!(
                "{} (task {}) failed container health checks.",
                self.prefix(),
                t.id
            );
            self.events.push(m);
            self.stop(t, HEALTH_CHECK_REASON.into());
        }
    }

    // ----- REPLICA --------------------------------------------------------------------

    fn replica(&mut self, ctx: &mut Ctx) {
        let Some(p) = self.primary() else { return };
        let desired = i64::from(self.svc.service.desired_count.unwrap_or(0).max(0));
        let (min_pct, max_pct) = percents(&self.svc.service);
        let min_healthy = (desired * min_pct + 99) / 100;
        let max_total = desired * max_pct / 100;
        let launching = !p.failed;
        let reason = self.scaling_reason();

        self.stop_unhealthy();
        // Pending tasks on a draining instance, or of an old deployment, go at once:
        // they are not healthy, so stopping them costs nothing.
        let free: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && !is_running(&t.task))
            .filter(|t| !self.usable(t) || (launching && !Self::of(t, &p)))
            .collect();
        for t in free {
            self.stop(t, reason.clone());
        }

        let view = LazySnapshot::new(self.state, &self.rec.scope, &self.rec.cluster);
        let inputs = if launching {
            self.launch_inputs(&p)
        } else {
            None
        };

        // Starts: up to desired, never above maximumPercent.
        let keep = self.keep(&p);
        let need = desired - keep;
        let room = max_total - self.alive_after() as i64;
        let n = need.min(room).max(0);
        if n > 0
            && let Some((def, spec)) = &inputs
        {
            let request = task_request(def, None, &self.group);
            let requests = vec![request.clone(); usize::try_from(n).unwrap_or(0)];
            let (snap, records) = view.get();
            let plan = scheduler::place(snap, &requests, spec, ctx.random_u64());
            let task_spec = self.task_spec(def, &p);
            for outcome in &plan.outcomes {
                match outcome {
                    Outcome::Placed(pl) => {
                        self.start(ctx, (def, &task_spec), records, &request, pl);
                    }
                    Outcome::Failed(f) => {
                        self.placement_failed = true;
                        let m = format!(
                            "{} was unable to place a task because {}",
                            self.prefix(),
                            f.message()
                        );
                        self.problem(m);
                        break;
                    }
                }
            }
        }

        // Stops of running tasks, while the running ones stay >= minimumHealthyPercent;
        // old deployments' tasks make way only for tasks that proved healthy.
        let up = self.tasks.iter().filter(|t| self.up(t)).count() as i64;
        let proven = self.tasks.iter().filter(|t| self.healthy(t)).count() as i64;
        let mut budget = up - min_healthy;
        let protected = self.protected();
        let stops_before = self.stops.len();
        let spec = inputs.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        if launching && budget > 0 && proven > min_healthy {
            let old: Vec<String> = self
                .tasks
                .iter()
                .filter(|t| self.wanted(t) && !Self::of(t, &p))
                .map(|t| t.id.clone())
                .collect();
            let n = usize::try_from(budget.min(proven - min_healthy)).unwrap_or(0);
            let chosen = if old.is_empty() {
                Vec::new()
            } else {
                let seed = ctx.random_u64();
                scheduler::choose_tasks_to_stop(view.get().0, &old, n, &spec, &protected, seed)
            };
            for id in chosen {
                if let Some(t) = self.task(&id) {
                    self.stop(t, reason.clone());
                    budget -= 1;
                }
            }
        }
        let draining: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && !self.usable(t))
            .collect();
        for t in draining {
            if budget <= 0 {
                break;
            }
            let instance = t.instance_id.clone().unwrap_or_default();
            self.stop(
                t,
                format!("{reason}: container instance {instance} is draining"),
            );
            budget -= 1;
        }
        let excess = self.keep(&p) - desired;
        if excess > 0 {
            let candidates: Vec<String> = self
                .tasks
                .iter()
                .filter(|t| self.wanted(t) && self.usable(t) && Self::of(t, &p))
                .map(|t| t.id.clone())
                .collect();
            let n = usize::try_from(excess).unwrap_or(0);
            for id in scheduler::choose_tasks_to_stop(
                view.get().0,
                &candidates,
                n,
                &spec,
                &protected,
                ctx.random_u64(),
            ) {
                let Some(t) = self.task(&id) else { continue };
                if is_running(&t.task) {
                    if budget <= 0 {
                        continue;
                    }
                    budget -= 1;
                }
                self.stop(t, reason.clone());
            }
        }
        let stopped_now = self.stops.len() - stops_before;

        // A configuration that lets nothing move: every task healthy (none on its way up
        // or down), yet no room to start and no budget to stop; say so (ECS's message).
        let old_left = self
            .tasks
            .iter()
            .any(|t| self.wanted(t) && (!Self::of(t, &p) || !self.usable(t)));
        let all_healthy = self
            .tasks
            .iter()
            .filter(|t| self.alive(t))
            .all(|t| self.healthy(t));
        if launching
            && self.starts.is_empty()
            && stopped_now == 0
            && room <= 0
            && old_left
            && all_healthy
        {
            let m = format!(
                "{} was unable to stop or start tasks during a deployment because of the \
                 service deployment configuration. Update the minimumHealthyPercent or \
                 maximumPercent value and try again.",
                self.prefix()
            );
            self.problem(m);
        }

        if let Some((def, spec)) = &inputs {
            self.rebalance(ctx, &p, (def, spec), &view, max_total);
        }
    }

    /// Tasks of the PRIMARY deployment that stay: wanted and on an ACTIVE instance.
    fn keep(&self, p: &Primary) -> i64 {
        (self
            .tasks
            .iter()
            .filter(|t| self.wanted(t) && self.usable(t) && Self::of(t, p))
            .count()
            + self.starts.len()) as i64
    }

    fn task(&self, id: &str) -> Option<&'a TaskRecord> {
        self.tasks.iter().copied().find(|t| t.id == id)
    }

    /// With `availabilityZoneRebalancing` ENABLED and a steady service whose tasks are
    /// spread unevenly (the fullest zone holds two or more tasks more than the emptiest
    /// one that can take a task), starts one extra task where the spread strategy puts
    /// it; scale-in then stops one in the fullest zone once the new one runs.
    fn rebalance(
        &mut self,
        ctx: &mut Ctx,
        p: &Primary,
        (def, spec): (&TaskDefinitionRecord, &PlacementSpec),
        view: &LazySnapshot<'a>,
        max_total: i64,
    ) {
        let s = &self.svc.service;
        if s.availability_zone_rebalancing != Some(AvailabilityZoneRebalancing::Enabled)
            || !self.starts.is_empty()
            || !self.stops.is_empty()
            || s.deployments.as_deref().unwrap_or(&[]).len() != 1
            || self.alive_after() as i64 >= max_total
        {
            return;
        }
        let desired = s.desired_count.unwrap_or(0).max(0) as usize;
        let mine: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.alive(t))
            .collect();
        if mine.len() != desired
            || mine
                .iter()
                .any(|t| !self.healthy(t) || !self.usable(t) || !Self::of(t, p))
        {
            return;
        }
        let Some(field) = spec.strategies.iter().find_map(|s| match s {
            Strategy::Spread(SpreadField::Attribute(a)) => Some(a.clone()),
            _ => None,
        }) else {
            return;
        };
        // Zones of the instances that can take a task, and the service's tasks per zone,
        // from the records: the snapshot is built only when a move is worth planning.
        let zone = |i: &InstanceRecord| -> String {
            i.instance
                .attributes
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .find(|a| a.name.as_deref() == Some(field.as_str()))
                .and_then(|a| a.value.clone())
                .unwrap_or_default()
        };
        let mut counts: HashMap<String, i64> = HashMap::new();
        for i in self.instances.values() {
            if i.instance.status.as_deref() == Some("ACTIVE")
                && i.instance.agent_connected == Some(true)
            {
                counts.entry(zone(i)).or_default();
            }
        }
        let zone_of_task = |t: &TaskRecord| {
            t.instance_id
                .as_deref()
                .and_then(|id| self.instances.get(id))
                .map(|i| zone(i))
        };
        for t in &mine {
            if let Some(z) = zone_of_task(t) {
                *counts.entry(z).or_default() += 1;
            }
        }
        let (Some(&most), Some(&least)) = (counts.values().max(), counts.values().min()) else {
            return;
        };
        if most - least < 2 {
            return;
        }
        let (snap, records) = view.get();
        let request = task_request(def, None, &self.group);
        let plan = scheduler::place(snap, std::slice::from_ref(&request), spec, ctx.random_u64());
        let Some(Outcome::Placed(pl)) = plan.outcomes.first() else {
            return;
        };
        let Some(target) = records.get(pl.instance_index) else {
            return;
        };
        // Only if the scale-in that follows would then stop a task in a zone holding at
        // least two more than the new task's zone (protected tasks never go), so every
        // round strictly evens the spread out.
        let new_zone = counts.get(&zone(target)).copied().unwrap_or(0);
        let mut after = snap.clone();
        after.apply(pl, &request, "rebalance");
        let mut candidates: Vec<String> = mine.iter().map(|t| t.id.clone()).collect();
        candidates.push("rebalance".into());
        let chosen = scheduler::choose_tasks_to_stop(
            &after,
            &candidates,
            1,
            spec,
            &self.protected(),
            ctx.random_u64(),
        );
        let from = chosen
            .first()
            .and_then(|id| self.task(id))
            .and_then(zone_of_task)
            .map(|z| counts.get(&z).copied().unwrap_or(0));
        if from.is_none_or(|c| c < new_zone + 2) {
            return;
        }
        let task_spec = self.task_spec(def, p);
        self.start(ctx, (def, &task_spec), records, &request, pl);
        let m = format!(
            "{} is rebalancing tasks across availability zones.",
            self.prefix()
        );
        self.events.push(m);
    }

    // ----- DAEMON ---------------------------------------------------------------------

    fn daemon(&mut self, ctx: &mut Ctx) {
        let Some(p) = self.primary() else { return };
        let launching = !p.failed;
        let reason = self.scaling_reason();
        self.stop_unhealthy();
        // Daemon tasks on an instance that stopped being ACTIVE just stop.
        let gone: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && !self.usable(t))
            .collect();
        for t in gone {
            let instance = t.instance_id.clone().unwrap_or_default();
            self.stop(
                t,
                format!("{reason}: container instance {instance} is draining"),
            );
        }
        // Two tasks of the deployment on one instance (never placed so, but repaired).
        let mut seen: HashSet<&str> = HashSet::new();
        let dup: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && Self::of(t, &p))
            .filter(|t| !seen.insert(t.instance_id.as_deref().unwrap_or("")))
            .collect();
        for t in dup {
            self.stop(t, reason.clone());
        }
        let Some((def, spec)) = self.launch_inputs(&p) else {
            return;
        };
        let (snap, records) = snapshot(self.state, &self.rec.scope, &self.rec.cluster);
        let request = task_request(def, None, &self.group);
        let targets = daemon_targets(&snap, &request, &spec);
        let desired = i32::try_from(targets).unwrap_or(i32::MAX);
        self.svc.service.desired_count = Some(desired);
        // Old deployments' tasks make way (within minimumHealthyPercent); the new task
        // lands on an instance only once the old one there has STOPPED.
        if launching {
            let (min_pct, _) = percents(&self.svc.service);
            let min_healthy = (targets as i64 * min_pct + 99) / 100;
            let healthy = self.tasks.iter().filter(|t| self.healthy(t)).count() as i64;
            let mut budget = healthy - min_healthy;
            let old: Vec<&TaskRecord> = self
                .tasks
                .iter()
                .copied()
                .filter(|t| self.wanted(t) && !Self::of(t, &p))
                .collect();
            for t in old {
                if is_running(&t.task) {
                    if budget <= 0 {
                        continue;
                    }
                    budget -= 1;
                }
                self.stop(t, reason.clone());
            }
            let plan = scheduler::daemon_placements(&snap, &request, &spec);
            let task_spec = self.task_spec(def, &p);
            for pl in &plan.placements {
                self.start(ctx, (def, &task_spec), &records, &request, pl);
            }
            if let Some(f) = plan.failures.first() {
                self.placement_failed = true;
                let failure = PlacementFailure {
                    rejections: Vec::new(),
                    closest: (Some(f.instance_arn.clone()), f.reason),
                };
                let m = format!(
                    "{} was unable to place a task because {}",
                    self.prefix(),
                    failure.message()
                );
                self.problem(m);
            }
        }
    }

    // ----- deployments, events ----------------------------------------------------------

    /// Whether the service runs exactly its desired count, all healthy, all of the
    /// PRIMARY deployment, with nothing starting or stopping.
    fn settled(&self, p: &Primary) -> bool {
        let desired = self.svc.service.desired_count.unwrap_or(0).max(0) as usize;
        self.starts.is_empty()
            && !self.placement_failed
            && self.alive_after() == desired
            && self
                .tasks
                .iter()
                .filter(|t| self.alive(t))
                .all(|t| Self::of(t, p) && self.healthy(t) && self.usable(t))
    }

    /// Completes an IN_PROGRESS rollout once settled, drops the other deployments, and
    /// keeps each deployment's desired count current.
    fn finish_rollout(&mut self) {
        let Some(p) = self.primary() else { return };
        // A rollout the breaker just failed shows FAILED for at least one pass.
        let settled = self.settled(&p) && !self.tripped;
        let desired = self.svc.service.desired_count.unwrap_or(0);
        let mut wanted_by: HashMap<String, i32> = HashMap::new();
        for t in self.tasks.iter().filter(|t| self.wanted(t)) {
            *wanted_by
                .entry(t.task.started_by.clone().unwrap_or_default())
                .or_default() += 1;
        }
        let (now, prefix) = (self.now, self.prefix());
        let deployments = self.svc.service.deployments.get_or_insert_with(Vec::new);
        let mut events = Vec::new();
        for d in deployments.iter_mut() {
            let want = if d.status.as_deref() == Some("PRIMARY") {
                desired
            } else {
                wanted_by
                    .get(d.id.as_deref().unwrap_or(""))
                    .copied()
                    .unwrap_or(0)
            };
            if d.desired_count != Some(want) {
                d.desired_count = Some(want);
                d.updated_at = Some(now);
            }
            if d.status.as_deref() == Some("PRIMARY")
                && d.rollout_state == Some(Rollout::InProgress)
                && settled
            {
                let id = d.id.clone().unwrap_or_default();
                d.rollout_state = Some(Rollout::Completed);
                d.rollout_state_reason = Some(format!("ECS deployment {id} completed."));
                d.updated_at = Some(now);
                events.push(format!("{prefix} (deployment {id}) deployment completed."));
            }
        }
        let completed = deployments.iter().any(|d| {
            d.status.as_deref() == Some("PRIMARY") && d.rollout_state == Some(Rollout::Completed)
        });
        if completed && settled {
            deployments.retain(|d| d.status.as_deref() == Some("PRIMARY"));
        }
        self.events.extend(events);
    }

    /// "has reached a steady state." when settled with one deployment, unless it is
    /// the newest event already and was said within the last 6 hours.
    fn steady_state(&mut self) {
        let Some(p) = self.primary() else { return };
        let deployments = self.svc.service.deployments.as_deref().unwrap_or(&[]);
        let completed =
            deployments.len() == 1 && deployments[0].rollout_state == Some(Rollout::Completed);
        if !completed || !self.stops.is_empty() || !self.settled(&p) {
            return;
        }
        let message = format!("{} has reached a steady state.", self.prefix());
        if let Some(last) = self.events.last() {
            if *last == message {
                return;
            }
        } else if let Some(last) = self.svc.service.events.as_deref().unwrap_or(&[]).first()
            && last.message.as_deref() == Some(message.as_str())
            && last
                .created_at
                .is_some_and(|at| self.now - at < STEADY_STATE_REPEAT_SECS)
        {
            return;
        }
        self.events.push(message);
    }

    /// A deleted (DRAINING) service: stop everything, INACTIVE once nothing is left.
    fn drain_deleted(&mut self) {
        let reason = format!("{}: the service is being deleted", self.scaling_reason());
        let all: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t))
            .collect();
        for t in all {
            self.stop(t, reason.clone());
        }
        if self.alive_after() == 0 {
            self.svc.service.status = Some("INACTIVE".into());
            let now = self.now;
            for d in self.svc.service.deployments.get_or_insert_with(Vec::new) {
                if d.desired_count != Some(0) {
                    d.desired_count = Some(0);
                    d.updated_at = Some(now);
                }
            }
        }
    }

    fn into_written(
        mut self,
        ctx: &mut Ctx,
        before: &ServiceRecord,
    ) -> (ServiceOutcome, Vec<Change>) {
        let prefix = self.prefix();
        if !self.starts.is_empty() {
            let list: Vec<String> = self
                .starts
                .iter()
                .map(|t| format!("(task {})", t.id))
                .collect();
            self.events.push(format!(
                "{prefix} has started {} tasks: {}.",
                list.len(),
                list.join(" ")
            ));
        }
        if !self.stops.is_empty() {
            let list: Vec<String> = self
                .stops
                .iter()
                .map(|t| format!("(task {})", t.id))
                .collect();
            self.events.push(format!(
                "{prefix} has stopped {} running tasks: {}.",
                list.len(),
                list.join(" ")
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
        };
        let mut changes: Vec<Change> = self
            .stops
            .into_iter()
            .chain(self.starts)
            .map(|t| Change::Put(Record::Task(t)))
            .collect();
        if self.svc != *before {
            changes.push(Change::Put(Record::Service(self.svc)));
        }
        (outcome, changes)
    }
}

/// The scheduler's view of the cluster, built on first use (a steady service needs none).
struct LazySnapshot<'a> {
    state: &'a State,
    scope: &'a crate::state::Scope,
    cluster: &'a str,
    cell: OnceCell<(ClusterSnapshot, Vec<&'a InstanceRecord>)>,
}

impl<'a> LazySnapshot<'a> {
    fn new(state: &'a State, scope: &'a crate::state::Scope, cluster: &'a str) -> Self {
        LazySnapshot {
            state,
            scope,
            cluster,
            cell: OnceCell::new(),
        }
    }

    fn get(&self) -> (&ClusterSnapshot, &[&'a InstanceRecord]) {
        let (snap, records) = self
            .cell
            .get_or_init(|| snapshot(self.state, self.scope, self.cluster));
        (snap, records)
    }
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

/// How many instances a daemon should run on: the ACTIVE instances its constraints
/// select, whatever they hold now.
fn daemon_targets(snap: &ClusterSnapshot, request: &TaskRequest, spec: &PlacementSpec) -> usize {
    let mut open = snap.clone();
    for i in &mut open.instances {
        i.tasks.retain(|t| t.group != request.group);
        i.remaining_cpu = u32::MAX;
        i.remaining_memory = u32::MAX;
        i.used_ports = Default::default();
        i.reserved_ports = Default::default();
        i.agent_connected = true;
    }
    let plan = scheduler::daemon_placements(&open, request, spec);
    plan.placements.len() + plan.failures.len()
}
