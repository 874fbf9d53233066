//! DAEMON services (one task on every ACTIVE instance the constraints select) and deleted
//! (DRAINING) services, which stop every task and turn INACTIVE.

use super::*;

impl<'a> Pass<'a> {
    pub(super) fn daemon(&mut self, ctx: &mut Ctx) {
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
        let request = crate::placement::for_launch_type(
            task_request(def, None, &self.group),
            self.svc.service.launch_type,
        );
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
                self.cannot_place(&PlacementFailure {
                    rejections: Vec::new(),
                    closest: (Some(f.instance_arn.clone()), f.reason),
                });
            }
        }
    }

    /// A deleted (DRAINING) service: stop everything, INACTIVE once nothing is left.
    pub(super) fn drain_deleted(&mut self) {
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
            self.svc.service.set_status(ServiceStatus::Inactive);
            let now = self.now;
            for d in self.svc.service.deployments.get_or_insert_with(Vec::new) {
                if d.desired_count != Some(0) {
                    d.desired_count = Some(0);
                    d.updated_at = Some(now);
                }
            }
        }
    }
}

/// How many instances a daemon should run on: the ACTIVE instances its constraints
/// select, whatever they hold now.
pub(super) fn daemon_targets(
    snap: &ClusterSnapshot,
    request: &TaskRequest,
    spec: &PlacementSpec,
) -> usize {
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
