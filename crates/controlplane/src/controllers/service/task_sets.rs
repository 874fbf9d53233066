//! One pass of an ACTIVE service with the `EXTERNAL` deployment controller: instead of
//! deployments, each of its task sets (`ops/task_sets.rs`) keeps its own tasks running.
//!
//! * A task belongs to the set whose id is its `startedBy` (ECS's rule). Tasks of no
//!   listed set (a set already gone) stop.
//! * Tasks failing their health checks past the grace period are replaced, as in a
//!   REPLICA pass.
//! * An ACTIVE or PRIMARY set keeps `computedDesiredCount = ceil(desiredCount × scale%)`
//!   tasks on ACTIVE instances: missing ones (never started, stopped, on a draining
//!   instance) are started with the set's task definition and launch type, placed as
//!   the service's tasks are (its placement strategy and constraints; the same start
//!   path as a REPLICA pass); excess ones stop (`choose_tasks_to_stop`: spread kept,
//!   scale-in protected tasks spared); a task on a draining instance stops once the set
//!   runs its count elsewhere. One set starts tasks per pass (placement sees the
//!   cluster without this pass's starts), the others in the next pass, asked for at once.
//! * A DRAINING (deleted) set stops all its tasks and leaves the service once none is
//!   alive.
//! * Each set's `stabilityStatus` is `STEADY_STATE` when the pass changed nothing for it
//!   and exactly its count of tasks are alive, all RUNNING on ACTIVE instances (and
//!   healthy in the set's target groups, if it has any); `STABILIZING` otherwise
//!   (`stabilityStatusAt` when it last changed).
//! * A set's `loadBalancers` and `serviceRegistries` take that set's tasks only (the
//!   pass's bindings and registries carry the set's id): its RUNNING tasks register in
//!   the set's target groups and Cloud Map services as a service's tasks do
//!   (`targets.rs`, `registries.rs`), a task the pass stops (scale-in, a deleted set,
//!   an unhealthy task) drains from its groups first and leaves its registries at once,
//!   and a group that finds a task unhealthy past the grace period has it replaced.
//!   Moving traffic between the sets' groups is left to the outside tool (listener
//!   weights).
//!
//! `maximumPercent` / `minimumHealthyPercent` do not bound these moves: the outside
//! controller decides the pace by scaling the sets.

use super::*;
use crate::ops::task_sets::{TaskSetStatus, computed_desired_count, is_external};
use model::wire::StabilityStatus;

/// The task set `ts` as a pass launches its tasks: its launch type (EC2, FARGATE or
/// EXTERNAL) or capacity provider strategy; its platform version and network
/// configuration are the set's own ([`Pass::task_spec`]).
pub(super) fn set_launch(ts: &wire::TaskSet) -> Primary {
    let strategy = ts.capacity_provider_strategy.clone().unwrap_or_default();
    Primary {
        id: ts.id.clone().unwrap_or_default(),
        task_definition: ts.task_definition.clone().unwrap_or_default(),
        failed: false,
        launch_type: if strategy.is_empty() {
            Some(ts.launch_type.unwrap_or(wire::LaunchType::Ec2))
        } else {
            None
        },
        strategy,
    }
}

/// Whether the service's tasks follow task sets rather than deployments.
pub(super) fn follows_task_sets(rec: &ServiceRecord) -> bool {
    is_external(&rec.service)
}

impl<'a> Pass<'a> {
    /// The pass of an EXTERNAL service (see the module docs).
    pub(super) fn task_sets(&mut self, ctx: &mut Ctx) {
        self.sync_targets();
        self.stop_unhealthy();
        let sets = self.svc.task_sets.clone();
        let stray: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t))
            .filter(|t| {
                !sets
                    .iter()
                    .any(|s| s.id.is_some() && s.id.as_deref() == t.task.started_by.as_deref())
            })
            .collect();
        for t in stray {
            let by = t.task.started_by.clone().unwrap_or_default();
            let reason = format!("{}: its task set is gone", self.set_reason(&by));
            self.stop(t, reason);
        }
        let desired = self.svc.service.desired_count.unwrap_or(0).max(0);
        let view = LazySnapshot::for_service(self.state, self.rec);
        let mut kept = Vec::with_capacity(sets.len());
        let mut placed_one = false;
        for mut ts in sets {
            let id = ts.id.clone().unwrap_or_default();
            if TaskSetStatus::of(&ts) == Some(TaskSetStatus::Draining) {
                if self.drain_set(&id) {
                    kept.push(ts);
                }
                continue;
            }
            let count = computed_desired_count(desired, &ts);
            let (stops, starts) = (self.stops.len(), self.starts.len());
            let may_start = !placed_one;
            let started = self.follow_set(ctx, &ts, i64::from(count), may_start, &view);
            placed_one |= started;
            let changed = self.stops.len() != stops || self.starts.len() != starts;
            let stability = if !changed && self.set_settled(&id, count) {
                StabilityStatus::SteadyState
            } else {
                StabilityStatus::Stabilizing
            };
            if ts.stability_status != Some(stability) {
                ts.stability_status = Some(stability);
                ts.stability_status_at = Some(self.now);
            }
            ts.computed_desired_count = Some(count);
            kept.push(ts);
        }
        self.svc.task_sets = kept;
        self.wake_for_time();
        self.sync_registries(ctx);
    }

    /// `stoppedReason` of the tasks this pass stops for a task set.
    fn set_reason(&self, id: &str) -> String {
        format!("Scaling activity initiated by (task set {id})")
    }

    /// Whether `t` was started by the task set `id`.
    fn in_set(t: &TaskRecord, id: &str) -> bool {
        t.task.started_by.as_deref() == Some(id)
    }

    /// Stops every task of the DRAINING set `id`; whether the set must stay listed (some
    /// of its tasks are still alive).
    fn drain_set(&mut self, id: &str) -> bool {
        let reason = format!("{}: the task set is being deleted", self.set_reason(id));
        let all: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| Self::in_set(t, id) && self.wanted(t))
            .collect();
        for t in all {
            self.stop(t, reason.clone());
        }
        self.tasks
            .iter()
            .any(|t| Self::in_set(t, id) && self.alive(t))
    }

    /// Moves the set `ts` towards `count` tasks on ACTIVE instances; starts tasks only
    /// when `may_start`. Whether it tried to place any.
    fn follow_set(
        &mut self,
        ctx: &mut Ctx,
        ts: &wire::TaskSet,
        count: i64,
        may_start: bool,
        view: &LazySnapshot<'a>,
    ) -> bool {
        let id = ts.id.clone().unwrap_or_default();
        let reason = self.set_reason(&id);
        // Pending tasks on an instance that is no longer ACTIVE stop at once.
        let free: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| Self::in_set(t, &id) && self.wanted(t))
            .filter(|t| !is_running(&t.task) && !self.usable(t))
            .collect();
        for t in free {
            self.stop(t, reason.clone());
        }
        let keep = |p: &Self| {
            p.tasks
                .iter()
                .filter(|t| Self::in_set(t, &id) && p.wanted(t) && p.usable(t))
                .count() as i64
        };
        let need = count - keep(self);
        let mut tried = false;
        if need > 0 && may_start {
            tried = true;
            self.start_for_set(ctx, ts, need, view);
        } else if need > 0 {
            // Another set placed tasks in this pass; this one goes next.
            self.wake(self.now);
        }
        let excess = keep(self) - count;
        if excess > 0 {
            let candidates: Vec<String> = self
                .tasks
                .iter()
                .filter(|t| Self::in_set(t, &id) && self.wanted(t) && self.usable(t))
                .map(|t| t.id.clone())
                .collect();
            let spec = self.set_spec(ts).unwrap_or_default();
            let protected = self.protected();
            let seed = ctx.random_u64();
            let n = usize::try_from(excess).unwrap_or(0);
            let chosen = scheduler::choose_tasks_to_stop(
                view.get().0,
                &candidates,
                n,
                &spec,
                &protected,
                seed,
            );
            for task_id in chosen {
                if let Some(t) = self.task(&task_id) {
                    self.stop(t, reason.clone());
                }
            }
        }
        // A task on a draining instance makes way once the set runs its count elsewhere.
        let running_usable = self
            .tasks
            .iter()
            .filter(|t| Self::in_set(t, &id) && self.wanted(t) && self.usable(t))
            .filter(|t| is_running(&t.task))
            .count() as i64;
        if running_usable >= count {
            let draining: Vec<&TaskRecord> = self
                .tasks
                .iter()
                .copied()
                .filter(|t| Self::in_set(t, &id) && self.wanted(t) && !self.usable(t))
                .collect();
            for t in draining {
                let instance = t.instance_id.clone().unwrap_or_default();
                self.stop(
                    t,
                    format!("{reason}: container instance {instance} is draining"),
                );
            }
        }
        tried
    }

    /// The placement spec of the set's tasks: the service's strategies and constraints
    /// with the set's task definition (none when the definition is gone).
    fn set_spec(&self, ts: &wire::TaskSet) -> Option<PlacementSpec> {
        let def =
            task_definitions::resolve(self.state, &self.svc.scope, ts.task_definition.as_deref()?)?;
        self.placement_spec(def).ok()
    }

    /// Starts up to `n` tasks of the set (at most [`MAX_STARTS_PER_PASS`] in the pass),
    /// through the same launch inputs, placement and start as a REPLICA pass.
    fn start_for_set(
        &mut self,
        ctx: &mut Ctx,
        ts: &wire::TaskSet,
        n: i64,
        view: &LazySnapshot<'a>,
    ) {
        let room = MAX_STARTS_PER_PASS - self.starts.len() as i64;
        if n > room {
            self.wake(self.now);
        }
        let n = n.min(room);
        if n <= 0 {
            return;
        }
        let launch = set_launch(ts);
        let Some((def, spec)) = self.launch_inputs(&launch) else {
            return;
        };
        let n = u32::try_from(n).unwrap_or(0);
        self.start_on_capacity(ctx, (&launch, def, &spec), n, view);
    }

    /// Whether exactly `count` tasks of the set `id` are alive, all wanted, RUNNING, not
    /// reported UNHEALTHY, on ACTIVE instances and, when the set has `loadBalancers`,
    /// seen healthy by every one of its target groups.
    fn set_settled(&self, id: &str, count: i32) -> bool {
        let alive: Vec<&&TaskRecord> = self
            .tasks
            .iter()
            .filter(|t| Self::in_set(t, id) && self.alive(t))
            .collect();
        alive.len() == usize::try_from(count).unwrap_or(0)
            && alive.iter().all(|t| {
                self.wanted(t)
                    && is_running(&t.task)
                    && self.usable(t)
                    && t.task.health_status != Some(HealthStatus::Unhealthy)
                    && (!self.bound(t) || self.lb_healthy(t))
            })
    }
}
