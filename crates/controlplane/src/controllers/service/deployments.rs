//! Deployments: failed-task counts, the circuit breaker and its rollback target, the
//! steady-state record, what keeps `desiredCount` after a deployment FAILED, completing a
//! rollout, and the steady-state event. The rule for every case is in docs/services.md.

use super::*;

impl<'a> Pass<'a> {
    /// Counts each deployment's failed tasks (kept monotonic: stopped tasks may be
    /// cleaned up later, the count stays).
    pub(super) fn count_failures(&mut self) {
        // Only tasks of listed deployments: older stopped tasks are history.
        let mut counts: HashMap<String, i32> = self
            .deployments()
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
    /// failure threshold. With `rollback`, a FAILED PRIMARY (tripped now or earlier) hands
    /// PRIMARY back to its [rollback target](Self::rollback_target), which then rolls out
    /// like any deployment.
    pub(super) fn circuit_breaker(&mut self) {
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
        if let Some(pi) = deployments.iter().position(|d| {
            d.is_primary()
                && d.rollout_state == Some(Rollout::InProgress)
                && d.failed_tasks.unwrap_or(0) >= threshold
        }) {
            self.tripped = true;
            let d = &mut deployments[pi];
            let failed_id = d.id.clone().unwrap_or_default();
            let failures = d.failed_tasks.unwrap_or(0);
            d.rollout_state = Some(Rollout::Failed);
            d.rollout_state_reason =
                Some("ECS deployment circuit breaker: tasks failed to start.".into());
            d.updated_at = Some(now);
            self.events.push(format!(
                "{prefix} (deployment {failed_id}) deployment failed: tasks failed to start \
                 ({failures} failed tasks reached the circuit breaker threshold of {threshold})."
            ));
        }
        if breaker.rollback != Some(true) {
            return;
        }
        let deployments = self.svc.service.deployments.get_or_insert_with(Vec::new);
        let Some(pi) = deployments
            .iter()
            .position(|d| d.is_primary() && d.rollout_state == Some(Rollout::Failed))
        else {
            return;
        };
        let failed_id = deployments[pi].id.clone().unwrap_or_default();
        self.roll_back(
            pi,
            |target_id| {
                format!("ECS deployment circuit breaker: rolling back to deploymentId {target_id}.")
            },
            |target_id| {
                format!(
                    "{prefix} (deployment {target_id}) rolling back: deployment {failed_id} \
                     failed and the circuit breaker has rollback enabled."
                )
            },
        );
    }

    /// Carries out StopServiceDeployment's rollback: when the service deployment of the
    /// PRIMARY deployment is ROLLBACK_REQUESTED, the PRIMARY deployment is FAILED (so it
    /// is never a rollback target) and PRIMARY goes back to its
    /// [rollback target](rollback_target), as the circuit breaker's rollback does.
    pub(super) fn requested_rollback(&mut self) {
        let Some(pid) = self
            .deployments()
            .iter()
            .find(|d| d.is_primary())
            .and_then(|d| d.id.clone())
        else {
            return;
        };
        let requested = self
            .state
            .service_history
            .deployments_of(&self.rec.key())
            .any(|d| {
                d.target == pid
                    && d.deployment.status == Some(wire::ServiceDeploymentStatus::RollbackRequested)
            });
        let deployments = self.svc.service.deployments.get_or_insert_with(Vec::new);
        let Some(pi) = deployments.iter().position(|d| d.is_primary()) else {
            return;
        };
        if !requested || rollback_target(deployments, &self.svc.steady_deployments).is_none() {
            return;
        }
        let d = &mut deployments[pi];
        d.rollout_state = Some(Rollout::Failed);
        d.rollout_state_reason = Some("ECS deployment stopped: rollback requested.".into());
        d.updated_at = Some(self.now);
        let prefix = self.prefix();
        self.roll_back(
            pi,
            |target_id| format!("ECS deployment rolling back to deploymentId {target_id}."),
            |target_id| {
                format!(
                    "{prefix} (deployment {target_id}) rolling back: deployment {pid} was \
                     stopped with a rollback."
                )
            },
        );
    }

    /// Hands PRIMARY from the FAILED deployment `pi` back to its
    /// [rollback target](rollback_target) (see [`hand_primary_back`]): the target rolls
    /// out again with `reason(target id)` and the event `event(target id)` says so.
    /// Without a target nothing changes.
    pub(super) fn roll_back(
        &mut self,
        pi: usize,
        reason: impl FnOnce(&str) -> String,
        event: impl FnOnce(&str) -> String,
    ) {
        let (now, desired) = (self.now, self.svc.service.desired_count.unwrap_or(0));
        let deployments = self.svc.service.deployments.get_or_insert_with(Vec::new);
        let Some(ti) = rollback_target(deployments, &self.svc.steady_deployments) else {
            return;
        };
        let target_id = deployments[ti].id.clone().unwrap_or_default();
        let def = hand_primary_back(deployments, (pi, ti), desired, now, reason(&target_id));
        self.svc.service.task_definition = def;
        self.events.push(event(&target_id));
    }

    /// Records that the PRIMARY deployment has reached a steady state (what
    /// `services-stable` waits for: every desired task of it RUNNING and usable, none of
    /// another deployment), and forgets deployments no longer listed.
    pub(super) fn note_steady(&mut self, p: &Primary) {
        let desired = self.svc.service.desired_count.unwrap_or(0).max(0) as usize;
        let alive: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.alive(t))
            .collect();
        let steady = self.starts.is_empty()
            && alive.len() == desired
            && alive.iter().all(|t| {
                Self::of(t, p)
                    && self.wanted(t)
                    && is_running(&t.task)
                    && self.usable(t)
                    && t.task.health_status != Some(HealthStatus::Unhealthy)
            });
        let mut ids = std::mem::take(&mut self.svc.steady_deployments);
        let listed: HashSet<&str> = self
            .deployments()
            .iter()
            .filter_map(|d| d.id.as_deref())
            .collect();
        ids.retain(|id| listed.contains(id.as_str()));
        if steady && !p.failed && !ids.contains(&p.id) {
            ids.push(p.id.clone());
        }
        self.svc.steady_deployments = ids;
    }

    /// What keeps `desiredCount` once the PRIMARY deployment `p` has FAILED and was not
    /// rolled back: the newest other deployment that did not fail (its tasks are known
    /// to run), or else `p` itself, relaunched at most once per
    /// [`FAILED_RELAUNCH_SECS`] after its last failed task.
    pub(super) fn fallback(&mut self, p: &Primary) -> Option<Primary> {
        let keeper = self
            .deployments()
            .iter()
            .find(|d| !d.is_primary() && d.rollout_state != Some(Rollout::Failed))
            .map(|d| Primary {
                failed: false,
                ..Primary::of_deployment(d, &self.svc.service)
            });
        if keeper.is_some() {
            return keeper;
        }
        let last_failure = self
            .tasks
            .iter()
            .filter(|t| Self::of(t, p) && self.is_failure(t))
            .filter_map(|t| t.task.stopped_at.or(t.task.execution_stopped_at))
            .fold(None, |acc: Option<f64>, at| {
                Some(acc.map_or(at, |a| a.max(at)))
            });
        match last_failure {
            Some(at) if self.now < at + FAILED_RELAUNCH_SECS => {
                self.wake(at + FAILED_RELAUNCH_SECS);
                None
            }
            _ => Some(p.clone()),
        }
    }

    /// Completes an IN_PROGRESS rollout once settled, drops the other deployments, and
    /// keeps each deployment's desired count current.
    pub(super) fn finish_rollout(&mut self) {
        let Some(p) = self.primary() else { return };
        // A rollout the breaker just failed shows FAILED for at least one pass.
        let settled = self.settled(&p) && !self.tripped;
        let desired = self.svc.service.desired_count.unwrap_or(0);
        let mut wanted_by: HashMap<String, i32> = HashMap::new();
        for t in self.tasks.iter().filter(|t| self.wanted(t)) {
            *wanted_by
                .entry(t.task.started_by.as_deref().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        let (now, prefix) = (self.now, self.prefix());
        let deployments = self.svc.service.deployments.get_or_insert_with(Vec::new);
        let mut events = Vec::new();
        for d in deployments.iter_mut() {
            let want = if d.is_primary() {
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
            if d.is_primary() && d.rollout_state == Some(Rollout::InProgress) && settled {
                let id = d.id.clone().unwrap_or_default();
                d.rollout_state = Some(Rollout::Completed);
                d.rollout_state_reason = Some(format!("ECS deployment {id} completed."));
                d.updated_at = Some(now);
                events.push(format!("{prefix} (deployment {id}) deployment completed."));
            }
        }
        let completed = deployments
            .iter()
            .any(|d| d.is_primary() && d.rollout_state == Some(Rollout::Completed));
        if completed && settled {
            deployments.retain(|d| d.is_primary());
        }
        self.events.extend(events);
    }

    /// "has reached a steady state." when settled with one deployment, unless it is
    /// the newest event already and was said within the last 6 hours.
    pub(super) fn steady_state(&mut self) {
        let Some(p) = self.primary() else { return };
        let deployments = self.deployments();
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
}

/// A rollback's bookkeeping: the failed PRIMARY `pi` turns ACTIVE, the rollback target
/// `ti` PRIMARY again (rolling out to `desired` tasks, with `reason`) and first in the
/// list. Returns the target's task definition, the service's from now on.
pub(super) fn hand_primary_back(
    deployments: &mut Vec<wire::Deployment>,
    (pi, ti): (usize, usize),
    desired: i32,
    now: f64,
    reason: String,
) -> Option<String> {
    deployments[pi].set_status(DeploymentStatus::Active);
    deployments[pi].updated_at = Some(now);
    let target = &mut deployments[ti];
    target.set_status(DeploymentStatus::Primary);
    target.rollout_state = Some(Rollout::InProgress);
    target.rollout_state_reason = Some(reason);
    target.desired_count = Some(desired);
    target.updated_at = Some(now);
    let def = target.task_definition.clone();
    let t = deployments.remove(ti);
    deployments.insert(0, t);
    def
}

/// The deployment a FAILED PRIMARY rolls back to: the newest other deployment that
/// completed its rollout or reached a steady state (`steady`), else the newest other one
/// that did not fail (it was serving before the failed one began). Never a FAILED one.
pub(super) fn rollback_target(
    deployments: &[wire::Deployment],
    steady: &[String],
) -> Option<usize> {
    let candidates = || {
        deployments
            .iter()
            .enumerate()
            .filter(|(_, d)| !d.is_primary() && d.rollout_state != Some(Rollout::Failed))
    };
    candidates()
        .find(|(_, d)| {
            d.rollout_state == Some(Rollout::Completed)
                || d.id.as_ref().is_some_and(|id| steady.contains(id))
        })
        .or_else(|| candidates().next())
        .map(|(i, _)| i)
}
