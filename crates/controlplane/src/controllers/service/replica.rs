//! One pass of a REPLICA service, in the phases the [module docs](super) list: free stops,
//! starts, budgeted stops, saying when nothing can move, and rebalancing. Each phase is a
//! method; [`Replica`] carries what the phases share.

use super::*;

/// What the phases of one REPLICA pass share.
struct Replica<'a> {
    /// The PRIMARY deployment.
    primary: Primary,
    /// Whether the PRIMARY deployment is rolling out (not FAILED): its tasks replace
    /// other deployments' tasks. After it FAILED (and was not rolled back) nothing is
    /// replaced by its tasks any more, but `desiredCount` is still kept.
    rolling: bool,
    /// The deployment new tasks are started as, and its task definition and placement
    /// spec (none when nothing can be launched now).
    launch: Option<(Primary, &'a TaskDefinitionRecord, PlacementSpec)>,
    desired: i64,
    min_healthy: i64,
    max_total: i64,
    /// `stoppedReason` of the tasks this pass stops.
    reason: String,
    /// Blue/green: other deployments' tasks on this side keep running (it takes
    /// production traffic, or it did before the PRIMARY deployment's bake time began).
    hold: Option<crate::load_balancing::Side>,
}

impl<'a> Pass<'a> {
    pub(super) fn replica(&mut self, ctx: &mut Ctx) {
        // Blue/green lifecycle hooks: a failed one rolls the deployment back first.
        self.lifecycle_hooks();
        let Some(primary) = self.primary() else {
            return;
        };
        let desired = i64::from(self.svc.service.desired_count.unwrap_or(0).max(0));
        let (min_pct, max_pct) = percents(&self.svc.service);
        let rolling = !primary.failed;
        let launching = if rolling {
            // Blue/green: no green task starts before its scale-up hooks succeed.
            (!self.holds_scale_up(&primary)).then(|| primary.clone())
        } else {
            self.fallback(&primary)
        };
        let launch = launching.and_then(|l| {
            let (def, spec) = self.launch_inputs(&l)?;
            Some((l, def, spec))
        });
        let hold = self.blue_green();
        // Blue/green starts the whole green fleet beside the blue one.
        let max_pct = if self.deploys_blue_green() {
            max_pct.max(200)
        } else {
            max_pct
        };
        let r = Replica {
            hold,
            reason: self.scaling_reason(),
            primary,
            rolling,
            launch,
            desired,
            min_healthy: (desired * min_pct + 99) / 100,
            max_total: desired * max_pct / 100,
        };
        let view = LazySnapshot::for_service(self.state, self.rec);

        self.stop_unhealthy();
        self.stop_free(&r);
        let room = self.start_missing(ctx, &r, &view);
        let stopped = self.stop_within_budget(ctx, &r, &view);
        self.say_if_stuck(&r, room, stopped);
        // (Not with a strategy: the providers' split, not the zones, decides where.)
        if r.rolling
            && r.hold.is_none()
            && r.primary.strategy.is_empty()
            && let Some((_, def, spec)) = &r.launch
        {
            self.rebalance(ctx, &r.primary, (def, spec), &view, r.max_total);
        }
    }

    /// Pending tasks on a draining instance, or of an old deployment while rolling out,
    /// stop at once: they are not healthy, so stopping them costs nothing.
    fn stop_free(&mut self, r: &Replica<'a>) {
        let free: Vec<&TaskRecord> = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && !is_running(&t.task))
            .filter(|t| !self.usable(t) || (r.rolling && !Self::of(t, &r.primary)))
            .collect();
        for t in free {
            self.stop(t, r.reason.clone());
        }
    }

    /// Starts tasks up to `desiredCount`, never above `maximumPercent`, at most
    /// [`MAX_STARTS_PER_PASS`] (asking for another pass at once if more are missing).
    /// Returns the room left under `maximumPercent` before starting.
    fn start_missing(&mut self, ctx: &mut Ctx, r: &Replica<'a>, view: &LazySnapshot<'a>) -> i64 {
        let need = r.desired - self.keep(&r.primary, r.rolling);
        let room = r.max_total - self.alive_after() as i64;
        let n = need.min(room).max(0);
        if n > MAX_STARTS_PER_PASS {
            self.wake(self.now);
        }
        let n = n.min(MAX_STARTS_PER_PASS);
        let Some((launch, def, spec)) = &r.launch else {
            return room;
        };
        if n <= 0 {
            return room;
        }
        // On the deployment's launch type, or split between its strategy's providers.
        let n = u32::try_from(n).unwrap_or(0);
        self.start_on_capacity(ctx, (launch, def, spec), n, view);
        room
    }

    /// Stops RUNNING tasks while the running ones stay at or above
    /// `minimumHealthyPercent`: old deployments' tasks (only for new tasks that proved
    /// healthy), tasks on draining instances, then scale-in excess. Returns how many
    /// tasks it stopped.
    fn stop_within_budget(
        &mut self,
        ctx: &mut Ctx,
        r: &Replica<'a>,
        view: &LazySnapshot<'a>,
    ) -> usize {
        let up = self.tasks.iter().filter(|t| self.up(t)).count() as i64;
        let proven = self.tasks.iter().filter(|t| self.healthy(t)).count() as i64;
        let mut budget = up - r.min_healthy;
        let protected = self.protected();
        let stops_before = self.stops.len();
        let spec = r
            .launch
            .as_ref()
            .map(|(_, _, s)| s.clone())
            .unwrap_or_default();
        if r.rolling && self.deploys_blue_green() {
            // Blue/green: an older fleet the load balancer never found healthy (an
            // abandoned green one) takes no traffic; it goes without touching the budget.
            let idle: Vec<&TaskRecord> = self
                .tasks
                .iter()
                .copied()
                .filter(|t| self.wanted(t) && is_running(&t.task))
                .filter(|t| !Self::of(t, &r.primary) && !self.healthy(t))
                .filter(|t| Some(self.side_of(t)) != r.hold)
                .collect();
            for t in idle {
                self.stop(t, r.reason.clone());
            }
        }
        if r.rolling && budget > 0 && proven > r.min_healthy {
            let old: Vec<String> = self
                .tasks
                .iter()
                .filter(|t| self.wanted(t) && !Self::of(t, &r.primary))
                .filter(|t| Some(self.side_of(t)) != r.hold)
                .map(|t| t.id.clone())
                .collect();
            let n = usize::try_from(budget.min(proven - r.min_healthy)).unwrap_or(0);
            let chosen = if old.is_empty() {
                Vec::new()
            } else {
                let seed = ctx.random_u64();
                scheduler::choose_tasks_to_stop(view.get().0, &old, n, &spec, &protected, seed)
            };
            for id in chosen {
                if let Some(t) = self.task(&id) {
                    self.stop(t, r.reason.clone());
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
            let reason = format!("{}: container instance {instance} is draining", r.reason);
            self.stop(t, reason);
            budget -= 1;
        }
        let excess = self.keep(&r.primary, r.rolling) - r.desired;
        if excess > 0 {
            let candidates: Vec<String> = self
                .tasks
                .iter()
                .filter(|t| {
                    self.wanted(t) && self.usable(t) && (!r.rolling || Self::of(t, &r.primary))
                })
                .map(|t| t.id.clone())
                .collect();
            let n = usize::try_from(excess).unwrap_or(0);
            let seed = ctx.random_u64();
            // With a strategy, the providers above their share first.
            let mut chosen: Vec<String> = Vec::new();
            for (group, k) in self.scale_in_groups(&r.primary, r.desired, candidates, n) {
                let group: Vec<String> = group
                    .into_iter()
                    .filter(|id| !chosen.contains(id))
                    .collect();
                let k = k.min(n - chosen.len());
                chosen.extend(scheduler::choose_tasks_to_stop(
                    view.get().0,
                    &group,
                    k,
                    &spec,
                    &protected,
                    seed,
                ));
            }
            for id in chosen {
                let Some(t) = self.task(&id) else { continue };
                if is_running(&t.task) {
                    if budget <= 0 {
                        continue;
                    }
                    budget -= 1;
                }
                self.stop(t, r.reason.clone());
            }
        }
        self.stops.len() - stops_before
    }

    /// A configuration that lets nothing move — every task healthy (none on its way up
    /// or down), yet no room to start and no budget to stop — is said with ECS's message.
    fn say_if_stuck(&mut self, r: &Replica<'a>, room: i64, stopped: usize) {
        let old_left = self
            .tasks
            .iter()
            .any(|t| self.wanted(t) && (!Self::of(t, &r.primary) || !self.usable(t)));
        let all_healthy = self
            .tasks
            .iter()
            .filter(|t| self.alive(t))
            .all(|t| self.healthy(t));
        if r.rolling
            && r.hold.is_none()
            && self.starts.is_empty()
            && stopped == 0
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
    }
}
