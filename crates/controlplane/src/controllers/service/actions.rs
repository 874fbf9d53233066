//! The actions a pass takes: stopping a task (the record as it will be written), starting
//! one where the scheduler placed it, the PRIMARY deployment's launch inputs (task
//! definition and placement spec), tasks failing their health checks, and problem events
//! said at most once per [`REPEAT_PROBLEM_EVENT_SECS`](super::REPEAT_PROBLEM_EVENT_SECS).

use super::*;

impl<'a> Pass<'a> {
    pub(super) fn stop(&mut self, t: &TaskRecord, reason: String) {
        if self.stopped_ids.contains(&t.id) || self.drain_first(t, &reason) {
            return;
        }
        let mut r = t.clone();
        request_stop(
            &mut r,
            TaskStopCode::ServiceSchedulerInitiated,
            reason,
            self.now,
        );
        self.stopped_ids.insert(r.id.clone());
        self.stops.push(r);
    }

    pub(super) fn scaling_reason(&self) -> String {
        let id = self.primary().map(|p| p.id).unwrap_or_default();
        format!("Scaling activity initiated by (deployment {id})")
    }

    /// A task could not be placed: the pass says so (once, as a problem event) and
    /// counts the placement as failed.
    pub(super) fn cannot_place(&mut self, failure: &PlacementFailure) {
        self.placement_failed = true;
        let m = format!(
            "{} was unable to place a task because {}",
            self.prefix(),
            failure.message()
        );
        self.problem(m);
    }

    /// Adds a problem event unless the same one was said recently.
    pub(super) fn problem(&mut self, message: String) {
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

    pub(super) fn placement_spec(
        &self,
        def: &TaskDefinitionRecord,
    ) -> Result<PlacementSpec, String> {
        let s = &self.svc.service;
        crate::placement::placement_spec(
            def,
            s.placement_strategy.as_deref().unwrap_or(&[]),
            s.placement_constraints.as_deref().unwrap_or(&[]),
        )
        .map(|spec| spec.or_default_strategies(PlacementSpec::service_default_strategies()))
        .map_err(|e| e.to_string())
    }

    /// The PRIMARY deployment's task definition and placement spec, or an event saying
    /// why tasks cannot be started.
    pub(super) fn launch_inputs(
        &mut self,
        p: &Primary,
    ) -> Option<(&'a TaskDefinitionRecord, PlacementSpec)> {
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

    pub(super) fn task_spec(&self, def: &TaskDefinitionRecord, p: &Primary) -> TaskSpec {
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
            launch_type: p.launch_type,
            // A deployment on Fargate runs its tasks on the Fargate pool, with the
            // service's platform version (the provider: FARGATE unless a strategy says);
            // a task set's tasks with the set's own version and network.
            fargate: p.is_fargate().then(|| {
                let set = self
                    .svc
                    .task_sets
                    .iter()
                    .find(|ts| ts.id.as_deref() == Some(p.id.as_str()));
                let (version, network) = match set {
                    Some(ts) => (&ts.platform_version, &ts.network_configuration),
                    None => (&s.platform_version, &s.network_configuration),
                };
                crate::task::FargateSpec {
                    platform_version: version
                        .clone()
                        .unwrap_or_else(|| crate::fargate::LATEST_PLATFORM_VERSION.to_owned()),
                    provider: crate::fargate::FARGATE_PROVIDER.to_owned(),
                    subnet: crate::fargate::first_subnet(network.as_ref()),
                }
            }),
        }
    }

    pub(super) fn start(
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

    pub(super) fn stop_unhealthy(&mut self) {
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
        self.stop_lb_unhealthy();
    }
}
