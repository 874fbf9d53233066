//! Capacity in a REPLICA pass: what a deployment launches on (its launch type, or its
//! `capacityProviderStrategy`), and starting a deployment's new tasks on it.
//!
//! A deployment with a strategy starts its tasks per provider as ECS's arithmetic says
//! ([`crate::capacity::split`]), counting the tasks the deployment already keeps on each
//! provider (by their `capacityProviderName`): the provider with a `base` is filled to its
//! base first, then each new task goes to the provider furthest below its weighted share.
//! A node-group provider's tasks are placed only on its node group's instances
//! ([`crate::placement::in_node_group`]), FARGATE's and FARGATE_SPOT's on the Fargate
//! pool's regular and spot nodes; every task records its provider. A provider with no
//! room gets the usual "unable to place a task" event, naming the provider; the other
//! providers still start theirs. Scale-in stops tasks of the providers furthest above
//! their share of `desiredCount` first.

use model::wire::LaunchType;

use super::*;
use crate::capacity::{is_fargate, is_fargate_strategy, provider_node_group, split};
use crate::placement::in_node_group;

/// Where a group of new tasks is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// The cluster's instances.
    Cluster,
    /// The Fargate pool's regular nodes (`spot` false) or spot nodes.
    Pool { spot: bool },
}

impl Primary {
    /// The deployment `d` of service `s` as a pass launches it: its own launch type or
    /// strategy (a deployment stored without either launches as the service does).
    pub(super) fn of_deployment(d: &wire::Deployment, s: &wire::Service) -> Primary {
        let strategy = d
            .capacity_provider_strategy
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_default();
        let launch_type = if strategy.is_empty() {
            d.launch_type.or(s.launch_type)
        } else {
            None
        };
        Primary {
            id: d.id.clone().unwrap_or_default(),
            task_definition: d.task_definition.clone().unwrap_or_default(),
            failed: d.rollout_state == Some(Rollout::Failed),
            launch_type,
            strategy,
        }
    }

    /// Whether its tasks run on the Fargate pool.
    pub(super) fn is_fargate(&self) -> bool {
        self.launch_type == Some(LaunchType::Fargate) || is_fargate_strategy(&self.strategy)
    }
}

/// Whether a deployment of `s` runs its tasks on the Fargate pool.
pub(super) fn deployment_on_fargate(d: &wire::Deployment, s: &wire::Service) -> bool {
    Primary::of_deployment(d, s).is_fargate()
}

impl<'a> Pass<'a> {
    /// Starts `n` tasks of deployment `launch`: on its launch type's capacity, or split
    /// between its strategy's providers.
    pub(super) fn start_on_capacity(
        &mut self,
        ctx: &mut Ctx,
        (launch, def, spec): (&Primary, &'a TaskDefinitionRecord, &PlacementSpec),
        n: u32,
        view: &LazySnapshot<'a>,
    ) {
        if launch.strategy.is_empty() {
            let at = if launch.is_fargate() {
                View::Pool { spot: false }
            } else {
                View::Cluster
            };
            self.start_group(ctx, (launch, def, spec), (None, at), n, view);
            return;
        }
        let already = self.per_provider(launch);
        for (provider, k) in split(&launch.strategy, n, &already) {
            let at = if is_fargate(&provider) {
                View::Pool {
                    spot: provider == crate::fargate::FARGATE_SPOT_PROVIDER,
                }
            } else {
                View::Cluster
            };
            self.start_group(ctx, (launch, def, spec), (Some(&provider), at), k, view);
        }
    }

    /// The tasks deployment `p` keeps (wanted, on an ACTIVE instance) and has started in
    /// this pass, by `capacityProviderName`.
    pub(super) fn per_provider(&self, p: &Primary) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        let kept = self
            .tasks
            .iter()
            .copied()
            .filter(|t| self.wanted(t) && self.usable(t) && Self::of(t, p))
            .chain(self.starts.iter().filter(|t| Self::of(t, p)));
        for t in kept {
            if let Some(name) = &t.task.capacity_provider_name {
                *out.entry(name.to_string()).or_default() += 1;
            }
        }
        out
    }

    /// Places and starts `k` tasks of `launch` for `provider` (none: its launch type) in
    /// view `at`; the first that cannot be placed ends the group with an event.
    fn start_group(
        &mut self,
        ctx: &mut Ctx,
        (launch, def, spec): (&Primary, &'a TaskDefinitionRecord, &PlacementSpec),
        (provider, at): (Option<&str>, View),
        k: u32,
        view: &LazySnapshot<'a>,
    ) {
        let base = task_request(def, None, &self.group);
        let request = match (provider, at) {
            (_, View::Pool { .. }) => base,
            (None, View::Cluster) => crate::placement::for_launch_type(base, launch.launch_type),
            (Some(name), View::Cluster) => {
                let Some(group) = provider_node_group(self.state, &self.svc.scope, name) else {
                    let m = format!(
                        "{} was unable to place a task because the capacity provider {name} \
                         is not ACTIVE.",
                        self.prefix()
                    );
                    self.placement_failed = true;
                    self.problem(m);
                    return;
                };
                let request = crate::placement::for_launch_type(base, Some(LaunchType::Ec2));
                in_node_group(request, group)
            }
        };
        let requests = vec![request.clone(); k as usize];
        let (snap, records) = view.at(at);
        let plan = scheduler::place(snap, &requests, spec, ctx.random_u64());
        let mut task_spec = self.task_spec(def, launch);
        if let Some(name) = provider {
            match &mut task_spec.fargate {
                Some(f) => f.provider = name.to_owned(),
                None => task_spec.launch_type = Some(LaunchType::Ec2),
            }
        }
        for outcome in &plan.outcomes {
            match outcome {
                Outcome::Placed(pl) => {
                    let before = self.starts.len();
                    self.start(ctx, (def, &task_spec), records, &request, pl);
                    if let (Some(name), true) = (provider, self.starts.len() > before)
                        && let Some(t) = self.starts.last_mut()
                    {
                        t.task.capacity_provider_name = Some(name.into());
                    }
                }
                Outcome::Failed(f) => {
                    match provider {
                        Some(name) => self.cannot_place_on(name, f),
                        None => self.cannot_place(f),
                    }
                    break;
                }
            }
        }
    }

    /// A task of capacity provider `name` could not be placed: said as ECS says it,
    /// naming the provider ("No Container Instances were found in your capacity
    /// provider" when its node group has no instance at all).
    fn cannot_place_on(&mut self, name: &str, failure: &PlacementFailure) {
        self.placement_failed = true;
        let empty = !is_fargate(name)
            && provider_node_group(self.state, &self.svc.scope, name).is_none_or(|g| {
                !self.instances.values().any(|i| {
                    i.attribute(crate::capacity::NODE_GROUP_ATTRIBUTE) == Some(g)
                        && i.instance.status() == Some(InstanceStatus::Active)
                })
            });
        let why = if empty {
            "no container instance met all of its requirements. Reason: No Container \
             Instances were found in your capacity provider."
                .to_owned()
        } else {
            failure.message()
        };
        let m = format!(
            "{} was unable to place a task in capacity provider {name} because {why}",
            self.prefix()
        );
        self.problem(m);
    }

    /// How scale-in picks `excess` of `candidates` to stop: with a strategy, first from
    /// each provider running more than its share of `desired` tasks (as [`split`] places
    /// `desired` tasks from none) as many as it runs above it, so that the split stays
    /// ECS's; what is left (or everything, with a launch type) from all the candidates.
    /// Returns `(candidates, n)` groups, in order.
    pub(super) fn scale_in_groups(
        &self,
        p: &Primary,
        desired: i64,
        candidates: Vec<String>,
        excess: usize,
    ) -> Vec<(Vec<String>, usize)> {
        if p.strategy.is_empty() {
            return vec![(candidates, excess)];
        }
        let desired = u32::try_from(desired.max(0)).unwrap_or(0);
        let share: BTreeMap<String, u32> = split(&p.strategy, desired, &BTreeMap::new())
            .into_iter()
            .collect();
        let mut left = excess;
        let mut groups = Vec::new();
        for (name, running) in self.per_provider(p) {
            let above = running.saturating_sub(share.get(&name).copied().unwrap_or(0)) as usize;
            let n = above.min(left);
            if n == 0 {
                continue;
            }
            let mine: Vec<String> = candidates
                .iter()
                .filter(|id| {
                    self.task(id).is_some_and(|t| {
                        t.task.capacity_provider_name.as_deref() == Some(name.as_str())
                    })
                })
                .cloned()
                .collect();
            left -= n.min(mine.len());
            groups.push((mine, n));
        }
        if left > 0 {
            groups.push((candidates, left));
        }
        groups
    }
}
