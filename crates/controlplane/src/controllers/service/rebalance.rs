//! Availability-zone rebalancing (`availabilityZoneRebalancing`): one extra task where
//! the spread strategy puts it, only when the scale-in that follows strictly evens the
//! spread out.

use super::*;

impl<'a> Pass<'a> {
    /// With `availabilityZoneRebalancing` ENABLED and a steady service whose tasks are
    /// spread unevenly (the fullest zone holds two or more tasks more than the emptiest
    /// one that can take a task), starts one extra task where the spread strategy puts
    /// it; scale-in then stops one in the fullest zone once the new one runs.
    pub(super) fn rebalance(
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
        // The service's tasks per zone (from its own tasks' instances), then, at zero,
        // the zones of the instances that can take a task and hold none of them. A zone
        // already counted needs no further look at its instances, so on a cluster whose
        // every zone holds some of the service's tasks the walk is one attribute read
        // and one lookup per instance.
        let zone = |i: &'a InstanceRecord| i.attribute(&field).unwrap_or("");
        let zone_of_task = |t: &TaskRecord| {
            t.instance_id
                .as_deref()
                .and_then(|id| self.instances.get(id))
                .map(zone)
        };
        let mut counts: HashMap<&str, i64> = HashMap::new();
        for t in &mine {
            if let Some(z) = zone_of_task(t) {
                *counts.entry(z).or_default() += 1;
            }
        }
        for i in self.instances.values() {
            let z = zone(i);
            if !counts.contains_key(z)
                && i.instance.status() == Some(InstanceStatus::Active)
                && i.instance.agent_connected == Some(true)
            {
                counts.insert(z, 0);
            }
        }
        let (Some(&most), Some(&least)) = (counts.values().max(), counts.values().min()) else {
            return;
        };
        if most - least < 2 {
            return;
        }
        let (snap, records) = view.get();
        let request = crate::placement::for_launch_type(
            task_request(def, None, &self.group),
            self.svc.service.launch_type,
        );
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
        let new_zone = counts.get(zone(target)).copied().unwrap_or(0);
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
            .map(|z| counts.get(z).copied().unwrap_or(0));
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
}
