//! The service's load balancer targets (its `loadBalancers`, and each task set's own;
//! rules in [`crate::load_balancing`]): each RUNNING task joins the target groups of the
//! bindings that take it ([`Binding::takes`]: all of a service's tasks for its own
//! entries, only a set's tasks for the set's entries); a task the service stops is first
//! deregistered and only stopped once the groups' deregistration delay has passed (no
//! request fails because flotilla moved it); a task that stopped by itself leaves its
//! groups at once; and what the targets' health means for the task (healthy only once
//! every group says so; replaced when one finds it unhealthy after
//! `healthCheckGracePeriodSeconds`).
//!
//! Edits to target groups collect in `Pass::group_edits` and are written with the pass.

use super::*;
use crate::load_balancing::{Binding, ELB_HEALTH_REASON, target_of, targets_of_task};
use crate::service_connect::SERVICE_CONNECT_DRAIN_MS;
use crate::state::PendingStop;
use crate::state::elb::{Target, TargetGroupRecord};

impl<'a> Pass<'a> {
    fn now_ms(&self) -> u64 {
        (self.now.max(0.0) * 1000.0) as u64
    }

    /// The group as this pass will write it.
    fn group_now(&self, b: &Binding<'a>) -> &TargetGroupRecord {
        self.group_edits.get(&b.group.key()).unwrap_or(b.group)
    }

    /// The group to edit (drained targets dropped, as every write of a group does).
    fn group_mut(&mut self, b: &Binding<'a>) -> &mut TargetGroupRecord {
        let now_ms = self.now_ms();
        self.group_edits.entry(b.group.key()).or_insert_with(|| {
            let mut g = b.group.clone();
            g.prune_drained(now_ms);
            g
        })
    }

    fn task_arn(t: &TaskRecord) -> &str {
        t.task.task_arn.as_deref().unwrap_or("")
    }

    /// Keeps the groups in step with the tasks: stops the tasks whose draining ended,
    /// registers RUNNING tasks, deregisters targets whose task is gone or stopping.
    pub(super) fn sync_targets(&mut self) {
        self.finish_drains();
        if self.bindings.is_empty() {
            return;
        }
        for b in self.bindings.clone() {
            self.register_running(&b);
            self.deregister_gone(&b);
        }
    }

    /// Tasks whose draining has ended get the stop they were waiting for.
    fn finish_drains(&mut self) {
        let due: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| {
                t.pending_stop.is_some()
                    && t.task.last() != Some(TaskStatus::Stopped)
                    && t.task.desired() == Some(TaskStatus::Running)
            })
            .collect();
        for t in due {
            let Some(pending) = &t.pending_stop else {
                continue;
            };
            if self.now < pending.at {
                self.wake(pending.at);
                continue;
            }
            let mut r = t.clone();
            r.pending_stop = None;
            request_stop(
                &mut r,
                TaskStopCode::ServiceSchedulerInitiated,
                pending.reason.clone(),
                self.now,
            );
            self.stopped_ids.insert(r.id.clone());
            self.stops.push(r);
        }
    }

    fn register_running(&mut self, b: &Binding<'a>) {
        let running: Vec<(&'a TaskRecord, (String, u16))> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && is_running(&t.task) && self.side_of(t) == b.side)
            .filter(|t| b.takes(t.task.started_by.as_deref()))
            .filter_map(|t| {
                let instance = t.instance_id.as_deref().and_then(|i| self.instances.get(i));
                Some((t, target_of(b, t, instance)?))
            })
            .collect();
        let now_ms = self.now_ms();
        for (t, (id, port)) in running {
            let arn = Self::task_arn(t);
            let current = self
                .group_now(b)
                .live_targets(now_ms)
                .find(|x| x.is(&id, port));
            if current.is_some_and(|x| x.is_active() && x.registered_by.as_deref() == Some(arn)) {
                continue;
            }
            let full = current.is_none()
                && self.group_now(b).live_targets(now_ms).count()
                    >= crate::ops::elbv2::MAX_TARGETS_PER_GROUP;
            if full {
                let m = format!(
                    "{} was unable to register task {} in (target-group {}): it has the \
                     most targets a group can have.",
                    self.prefix(),
                    t.id,
                    b.group.arn()
                );
                self.problem(m);
                continue;
            }
            let group = self.group_mut(b);
            group.targets.retain(|x| !x.is(&id, port));
            let mut target = Target::new(id.clone(), port, None);
            target.registered_by = Some(arn.to_owned());
            group.targets.push(target);
            self.registered += 1;
        }
    }

    /// Targets this service registered whose task is no longer meant to run (stopped by
    /// someone else, crashed, expired) drain without waiting for anything.
    fn deregister_gone(&mut self, b: &Binding<'a>) {
        let now_ms = self.now_ms();
        let gone: Vec<(String, u16)> = self
            .group_now(b)
            .targets
            .iter()
            .filter(|x| x.is_active())
            .filter_map(|x| {
                let arn = x.registered_by.as_deref()?;
                let ours_and_alive = self.task_by_arn(arn).map(|t| {
                    self.wanted(t)
                        || (t.pending_stop.is_some() && !self.stopped_ids.contains(&t.id))
                });
                match ours_and_alive {
                    Some(true) => None,
                    Some(false) => Some((x.id.clone(), x.port)),
                    // Another service's task (groups may be shared) stays; a task no
                    // longer stored at all is an orphan.
                    None => self.is_orphan(arn).then(|| (x.id.clone(), x.port)),
                }
            })
            .collect();
        for (id, port) in gone {
            let group = self.group_mut(b);
            let delay = group.deregistration_delay_ms();
            if delay == 0 {
                group.targets.retain(|x| !x.is(&id, port));
            } else if let Some(x) = group.targets.iter_mut().find(|x| x.is(&id, port)) {
                x.draining_until_ms = Some(now_ms + delay);
            }
            self.deregistered += 1;
        }
    }

    fn task_by_arn(&self, arn: &str) -> Option<&'a TaskRecord> {
        self.tasks
            .iter()
            .copied()
            .find(|t| t.task.task_arn.as_deref() == Some(arn))
    }

    /// Whether no task of the state has this ARN any more.
    fn is_orphan(&self, arn: &str) -> bool {
        let Some(rest) = arn.split_once(":task/").map(|(_, r)| r) else {
            return false;
        };
        let Some((cluster, id)) = rest.rsplit_once('/') else {
            return false;
        };
        !self
            .state
            .tasks
            .contains_key(&crate::state::MemberKey::new(&self.rec.scope, cluster, id))
    }

    /// Instead of stopping `t` now: deregisters its targets (in every group of the pass
    /// that holds one, whichever binding registered it) and holds the stop back until
    /// their deregistration delay has passed. Returns whether it did (a task in no group,
    /// not yet taken over by an agent, or whose groups have no delay stops at once).
    pub(super) fn drain_first(&mut self, t: &TaskRecord, reason: &str) -> bool {
        let proxied = self.service_connect_serves(t);
        if (self.bindings.is_empty() && !proxied)
            || !t.agent_acknowledged
            || t.pending_stop.is_some()
        {
            return false;
        }
        let arn = Self::task_arn(t).to_owned();
        let now_ms = self.now_ms();
        // Service Connect proxies learn that the task left within a refresh.
        let mut longest = if proxied { SERVICE_CONNECT_DRAIN_MS } else { 0 };
        for b in self.bindings.clone() {
            let mine: Vec<(String, u16)> = targets_of_task(self.group_now(&b), &arn, now_ms)
                .filter(|x| x.is_active())
                .map(|x| (x.id.clone(), x.port))
                .collect();
            if mine.is_empty() {
                continue;
            }
            self.deregistered += mine.len();
            let group = self.group_mut(&b);
            let delay = group.deregistration_delay_ms();
            for (id, port) in mine {
                if delay == 0 {
                    group.targets.retain(|x| !x.is(&id, port));
                } else if let Some(x) = group.targets.iter_mut().find(|x| x.is(&id, port)) {
                    x.draining_until_ms = Some(now_ms + delay);
                }
            }
            longest = longest.max(delay);
        }
        if longest == 0 {
            return false;
        }
        let at = self.now + longest as f64 / 1000.0;
        let mut r = t.clone();
        r.pending_stop = Some(PendingStop {
            at,
            reason: reason.to_owned(),
        });
        self.stopped_ids.insert(r.id.clone());
        self.drains.push(r);
        self.wake(at);
        true
    }

    /// Whether Service Connect proxies may send `t` requests: it is RUNNING in a
    /// deployment that offers a port to its namespace.
    fn service_connect_serves(&self, t: &TaskRecord) -> bool {
        is_running(&t.task)
            && self
                .registries
                .iter()
                .any(|r| r.deployment.is_some() && r.takes(t.task.started_by.as_deref()))
    }

    /// Whether some binding takes `t` (it is behind a load balancer): every task of a
    /// service with `loadBalancers`, a task set's tasks when the set has some.
    pub(super) fn bound(&self, t: &TaskRecord) -> bool {
        let by = t.task.started_by.as_deref();
        self.bindings.iter().any(|b| b.takes(by))
    }

    /// With load balancers: RUNNING and every group it belongs to (on its side, of its
    /// task set) has seen it healthy.
    pub(super) fn lb_healthy(&self, t: &TaskRecord) -> bool {
        let arn = Self::task_arn(t);
        let now_ms = self.now_ms();
        let side = self.side_of(t);
        let by = t.task.started_by.as_deref();
        self.bindings
            .iter()
            .filter(|b| b.side == side && b.takes(by))
            .all(|b| {
                targets_of_task(self.group_now(b), arn, now_ms)
                    .any(|x| x.is_active() && x.is_healthy())
            })
    }

    /// The first group that found the task unhealthy, with the reason it gave.
    pub(super) fn lb_unhealthy(&self, t: &TaskRecord) -> Option<(String, Option<String>)> {
        let arn = Self::task_arn(t);
        let now_ms = self.now_ms();
        let by = t.task.started_by.as_deref();
        self.bindings.iter().filter(|b| b.takes(by)).find_map(|b| {
            targets_of_task(self.group_now(b), arn, now_ms)
                .find(|x| x.is_active() && x.is_unhealthy())
                .map(|x| {
                    let reason = x.health.as_ref().and_then(|h| h.description.clone());
                    (b.group.arn(), reason)
                })
        })
    }

    /// Tasks a load balancer found unhealthy, past the grace period, are replaced.
    pub(super) fn stop_lb_unhealthy(&mut self) {
        let grace = self.grace();
        let sick: Vec<(&TaskRecord, String, Option<String>)> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && is_running(&t.task))
            .filter(|t| t.task.started_at.is_none_or(|s| self.now >= s + grace))
            .filter_map(|t| {
                let (group, why) = self.lb_unhealthy(t)?;
                Some((t, group, why))
            })
            .collect();
        for (t, group, why) in sick {
            let why = why.map(|w| format!(" due to ({w})")).unwrap_or_default();
            let m = format!(
                "{} (task {}) is unhealthy in (target-group {group}){why}.",
                self.prefix(),
                t.id
            );
            self.events.push(m);
            self.stop(t, format!("{ELB_HEALTH_REASON} (target-group {group})"));
        }
    }

    /// When a task a group found unhealthy is past its grace period.
    pub(super) fn lb_wake_times(&self) -> Vec<f64> {
        let grace = self.grace();
        self.tasks
            .iter()
            .filter(|t| self.wanted(t) && is_running(&t.task))
            .filter(|t| self.lb_unhealthy(t).is_some())
            .filter_map(|t| t.task.started_at.map(|s| s + grace))
            .collect()
    }
}
