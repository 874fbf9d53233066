//! Facts a pass reads about the service's tasks: alive, wanted, healthy (the 40 s rule),
//! on a usable instance, protected, failed (what the circuit breaker counts), and which
//! tasks stay. Pure questions about the stored records and the decisions made so far.

use super::*;

impl<'a> Pass<'a> {
    /// The service's deployments as stored (none when unset).
    pub(super) fn deployments(&self) -> &[wire::Deployment] {
        self.svc.service.deployments.as_deref().unwrap_or(&[])
    }

    /// The health-check grace period, in seconds (0 when unset or negative).
    pub(super) fn grace(&self) -> f64 {
        f64::from(
            self.svc
                .service
                .health_check_grace_period_seconds
                .unwrap_or(0)
                .max(0),
        )
    }

    /// Not STOPPED (it holds a slot under `maximumPercent`), and not stopped in this pass
    /// at once (a task no agent has taken over stops immediately).
    pub(super) fn alive(&self, t: &TaskRecord) -> bool {
        t.task.last() != Some(TaskStatus::Stopped)
            && (t.agent_acknowledged || !self.stopped_ids.contains(&t.id))
    }

    /// Alive and meant to run (not asked to stop, before or in this pass, nor draining
    /// from its load balancers before a stop).
    pub(super) fn wanted(&self, t: &TaskRecord) -> bool {
        t.task.last() != Some(TaskStatus::Stopped)
            && t.task.desired() == Some(TaskStatus::Running)
            && t.pending_stop.is_none()
            && !self.stopped_ids.contains(&t.id)
    }

    /// Wanted, RUNNING, and either reported HEALTHY or, unless reported UNHEALTHY, of a
    /// deployment whose rollout has completed or running for [`HEALTHY_AFTER_SECS`] (a
    /// rollout's new tasks must stay up a while before they count). Behind load
    /// balancers (a binding takes it), instead of the time rule: every target group has
    /// seen it healthy.
    pub(super) fn healthy(&self, t: &TaskRecord) -> bool {
        if self.bound(t) {
            return self.wanted(t)
                && is_running(&t.task)
                && t.task.health_status != Some(HealthStatus::Unhealthy)
                && self.lb_healthy(t);
        }
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
    pub(super) fn up(&self, t: &TaskRecord) -> bool {
        self.wanted(t)
            && is_running(&t.task)
            && t.task.health_status != Some(HealthStatus::Unhealthy)
    }

    /// Whether the task's deployment has completed its rollout.
    pub(super) fn rolled_out(&self, t: &TaskRecord) -> bool {
        self.deployments().iter().any(|d| {
            d.id.is_some()
                && d.id.as_deref() == t.task.started_by.as_deref()
                && d.rollout_state == Some(Rollout::Completed)
        })
    }

    pub(super) fn unhealthy(&self, t: &TaskRecord) -> bool {
        let grace = self.grace();
        is_running(&t.task)
            && t.task.health_status == Some(HealthStatus::Unhealthy)
            && t.task.started_at.is_none_or(|s| self.now >= s + grace)
    }

    /// On an ACTIVE instance (a DRAINING, deregistered or unknown one needs a replacement).
    pub(super) fn usable(&self, t: &TaskRecord) -> bool {
        t.instance_id
            .as_deref()
            .and_then(|i| self.instances.get(i))
            .is_some_and(|i| i.instance.status() == Some(InstanceStatus::Active))
    }

    pub(super) fn protected(&self) -> BTreeSet<String> {
        self.tasks
            .iter()
            .filter(|t| is_protected(&t.task, self.now))
            .map(|t| t.id.clone())
            .collect()
    }

    pub(super) fn alive_after(&self) -> usize {
        self.tasks.iter().filter(|t| self.alive(t)).count() + self.starts.len()
    }

    pub(super) fn primary(&self) -> Option<Primary> {
        self.deployments()
            .iter()
            .find(|d| d.is_primary())
            .map(|d| Primary::of_deployment(d, &self.svc.service))
    }

    pub(super) fn of(t: &TaskRecord, p: &Primary) -> bool {
        t.task.started_by.as_deref() == Some(p.id.as_str())
    }

    pub(super) fn is_failure(&self, t: &TaskRecord) -> bool {
        if t.task.last() != Some(TaskStatus::Stopped) {
            return false;
        }
        match t.task.stop_code {
            Some(TaskStopCode::TaskFailedToStart) => true,
            Some(TaskStopCode::ServiceSchedulerInitiated) => {
                t.task.stopped_reason.as_deref().is_some_and(|r| {
                    r.starts_with(HEALTH_CHECK_REASON)
                        || r.starts_with(load_balancing::ELB_HEALTH_REASON)
                })
            }
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

    pub(super) fn essential_exit_non_zero(&self, t: &TaskRecord) -> bool {
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

    pub(super) fn task(&self, id: &str) -> Option<&'a TaskRecord> {
        self.tasks.iter().copied().find(|t| t.id == id)
    }

    /// Tasks that stay: wanted and on an ACTIVE instance, of the PRIMARY deployment
    /// while it rolls out (of any deployment once it has failed), and those started now.
    pub(super) fn keep(&self, p: &Primary, rolling: bool) -> i64 {
        (self
            .tasks
            .iter()
            .filter(|t| self.wanted(t) && self.usable(t) && (!rolling || Self::of(t, p)))
            .count()
            + self.starts.len()) as i64
    }

    /// Whether the service runs exactly its desired count, all healthy, all of the
    /// PRIMARY deployment, with nothing starting or stopping.
    pub(super) fn settled(&self, p: &Primary) -> bool {
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
}
