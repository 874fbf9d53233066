//! What managed scaling reads of the state: each managed provider's settings, its node
//! group's instances ([`Node`]s, with who they are) and its waiting tasks ([`Demand`]),
//! and the [`decide`] over them ([`plans`]). Pure: the caller passes the state and the
//! time. Costs O(clusters + instances + tasks) of the providers' scopes per call.

use std::collections::{BTreeMap, BTreeSet};

use model::lifecycle::TaskStatus;
use model::status::{ClusterStatus, DeploymentStatus, InstanceStatus, ServiceStatus};
use model::wire::{self, SchedulingStrategy};

use super::{Decision, Demand, Node, Settings, decide};
use crate::capacity::{NODE_GROUP_ATTRIBUTE, node_group_of, split};
use crate::ops::instances::integer_resource;
use crate::ops::task_definitions::{reservation, resolve};
use crate::state::{CapacityProviderKey, CapacityProviderRecord, MemberKey, Scope, State};

/// Which container instance a [`Node`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its cluster.
    pub cluster: String,
    /// Its container instance id.
    pub id: String,
    /// Its `ec2InstanceId` (what the scaling hook is told to remove).
    pub ec2_instance_id: String,
    /// Its container instance ARN.
    pub arn: String,
}

/// One managed provider's view and decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderPlan {
    /// The provider.
    pub key: CapacityProviderKey,
    /// Its node group.
    pub group: String,
    /// The cluster new instances should join: the first (by name) associated cluster
    /// with tasks waiting for the provider, else the first associated one.
    pub cluster: String,
    /// Its settings.
    pub settings: Settings,
    /// Who each node is, in the order of `nodes` (cluster, then id).
    pub members: Vec<Member>,
    /// The node group's instances as [`decide`] saw them.
    pub nodes: Vec<Node>,
    /// Its waiting tasks.
    pub demand: Vec<Demand>,
    /// What [`decide`] chose.
    pub decision: Decision,
}

/// The managed scaling settings of `p`, or `None` when managed scaling is not ENABLED
/// (or it has no Auto Scaling group provider).
pub fn settings_of(p: &wire::CapacityProvider) -> Option<Settings> {
    let asg = p.auto_scaling_group_provider.as_ref()?;
    let ms = asg.managed_scaling.as_ref()?;
    if ms.status != Some(wire::ManagedScalingStatus::Enabled) {
        return None;
    }
    let d = Settings::default();
    let int = |v: Option<i32>, default: u32, lo: u32, hi: u32| {
        v.and_then(|v| u32::try_from(v).ok())
            .unwrap_or(default)
            .clamp(lo, hi)
    };
    Some(Settings {
        target_capacity: int(ms.target_capacity, d.target_capacity, 1, 100),
        min_step: int(ms.minimum_scaling_step_size, d.min_step, 1, 10_000),
        max_step: int(ms.maximum_scaling_step_size, d.max_step, 1, 10_000),
        warmup_secs: int(ms.instance_warmup_period, d.warmup_secs, 0, 10_000),
        termination_protection: asg.managed_termination_protection
            == Some(wire::ManagedTerminationProtection::Enabled),
        managed_draining: asg.managed_draining != Some(wire::ManagedDraining::Disabled),
    })
}

/// The plans of every ACTIVE provider with managed scaling ENABLED that an ACTIVE
/// cluster of its scope lists, in key order.
pub fn plans(state: &State, now: f64) -> Vec<ProviderPlan> {
    state
        .capacity_providers
        .values()
        .filter_map(|p| plan(state, p, now))
        .collect()
}

/// The plan of provider `key`, if it is managed (see [`plans`]).
pub fn plan_of(state: &State, key: &CapacityProviderKey, now: f64) -> Option<ProviderPlan> {
    plan(state, state.capacity_providers.get(key)?, now)
}

fn plan(state: &State, p: &CapacityProviderRecord, now: f64) -> Option<ProviderPlan> {
    if p.provider.status != Some(wire::CapacityProviderStatus::Active) {
        return None;
    }
    let settings = settings_of(&p.provider)?;
    let group = node_group_of(
        p.provider
            .auto_scaling_group_provider
            .as_ref()?
            .auto_scaling_group_arn
            .as_deref()?,
    )
    .to_owned();
    let scope = &p.scope;
    let clusters = active_clusters(state, scope);
    let associated: Vec<&str> = clusters
        .iter()
        .copied()
        .filter(|c| {
            state.cluster(scope, c).is_some_and(|r| {
                r.cluster
                    .capacity_providers
                    .as_deref()
                    .unwrap_or(&[])
                    .contains(&p.name)
            })
        })
        .collect();
    let first = associated.first()?;
    let (members, nodes) = group_nodes(state, scope, &clusters, &group);
    let mut demand = Vec::new();
    let mut join = None;
    for c in &associated {
        let before = demand.len();
        waiting(state, scope, c, &p.name, &mut demand);
        if join.is_none() && demand.len() > before {
            join = Some((*c).to_owned());
        }
    }
    let decision = decide(&nodes, &demand, &settings, p.scaling.last_scale_out_at, now);
    Some(ProviderPlan {
        key: p.key(),
        group,
        cluster: join.unwrap_or_else(|| (*first).to_owned()),
        settings,
        members,
        nodes,
        demand,
        decision,
    })
}

/// The ACTIVE clusters of `scope`, by name.
fn active_clusters<'a>(state: &'a State, scope: &Scope) -> Vec<&'a str> {
    state
        .clusters
        .iter()
        .filter(|(k, c)| &k.scope == scope && c.cluster.status() == Some(ClusterStatus::Active))
        .map(|(k, _)| k.name.as_str())
        .collect()
}

/// The DAEMON services of a cluster, by name.
fn daemons(state: &State, scope: &Scope, cluster: &str) -> BTreeSet<String> {
    state
        .services_in(scope, cluster)
        .filter(|s| s.service.scheduling_strategy == Some(SchedulingStrategy::Daemon))
        .map(|s| s.name.clone())
        .collect()
}

/// The ACTIVE and DRAINING instances of node group `group` in `clusters`.
fn group_nodes(
    state: &State,
    scope: &Scope,
    clusters: &[&str],
    group: &str,
) -> (Vec<Member>, Vec<Node>) {
    let (mut members, mut nodes) = (Vec::new(), Vec::new());
    for c in clusters {
        let mine: Vec<_> = state
            .instances_in(scope, c)
            .filter(|i| i.attribute(NODE_GROUP_ATTRIBUTE) == Some(group))
            .filter(|i| {
                matches!(
                    i.instance.status(),
                    Some(InstanceStatus::Active | InstanceStatus::Draining)
                )
            })
            .collect();
        if mine.is_empty() {
            continue;
        }
        // Non-daemon tasks that are not STOPPED, per instance.
        let daemon = daemons(state, scope, c);
        let mut busy: BTreeMap<&str, u32> = BTreeMap::new();
        for t in state.tasks_in(scope, c) {
            let is_daemon = t
                .task
                .group
                .as_deref()
                .and_then(crate::task::group_service)
                .is_some_and(|s| daemon.contains(s));
            if t.task.last() == Some(TaskStatus::Stopped) || is_daemon {
                continue;
            }
            if let Some(i) = t.instance_id.as_deref() {
                *busy.entry(i).or_default() += 1;
            }
        }
        for i in mine {
            let registered = i.instance.registered_resources.as_deref().unwrap_or(&[]);
            let (cpu, memory) = (
                integer_resource(registered, "CPU"),
                integer_resource(registered, "MEMORY"),
            );
            let used = state.usage(scope, c, &i.id);
            nodes.push(Node {
                active: i.instance.status() == Some(InstanceStatus::Active),
                cpu,
                memory,
                free_cpu: cpu - used.map_or(0, |u| u.cpu),
                free_memory: memory - used.map_or(0, |u| u.memory),
                busy: busy.get(i.id.as_str()).copied().unwrap_or(0),
            });
            members.push(Member {
                cluster: (*c).to_owned(),
                id: i.id.clone(),
                ec2_instance_id: i
                    .instance
                    .ec2_instance_id
                    .clone()
                    .unwrap_or_else(|| i.id.clone()),
                arn: i
                    .instance
                    .container_instance_arn
                    .clone()
                    .unwrap_or_default(),
            });
        }
    }
    (members, nodes)
}

/// Adds the tasks waiting for `provider` in `cluster` to `out`: per deployment (PRIMARY
/// or ACTIVE) of an ACTIVE REPLICA service whose strategy names it, the provider's
/// share of the deployment's `desiredCount` less the tasks it keeps on the provider on
/// ACTIVE instances.
fn waiting(state: &State, scope: &Scope, cluster: &str, provider: &str, out: &mut Vec<Demand>) {
    for s in state.services_in(scope, cluster) {
        if s.service.status() != Some(ServiceStatus::Active)
            || s.service.scheduling_strategy == Some(SchedulingStrategy::Daemon)
        {
            continue;
        }
        let deployments: Vec<&wire::Deployment> = s
            .service
            .deployments
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter(|d| {
                matches!(
                    d.status(),
                    Some(DeploymentStatus::Primary | DeploymentStatus::Active)
                )
            })
            .filter(|d| {
                d.capacity_provider_strategy
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .any(|i| i.capacity_provider.as_deref() == Some(provider))
            })
            .collect();
        if deployments.is_empty() {
            continue;
        }
        // Tasks kept on the provider, per deployment id.
        let mut kept: BTreeMap<&str, u32> = BTreeMap::new();
        for t in state.tasks_in_group(scope, cluster, &crate::task::service_group(&s.name)) {
            let on_active = t.instance_id.as_deref().is_some_and(|i| {
                state
                    .instances
                    .get(&MemberKey::new(scope, cluster, i))
                    .is_some_and(|r| r.instance.status() == Some(InstanceStatus::Active))
            });
            if t.task.last() != Some(TaskStatus::Stopped)
                && t.task.desired() == Some(TaskStatus::Running)
                && t.pending_stop.is_none()
                && t.task.capacity_provider_name.as_deref() == Some(provider)
                && on_active
                && let Some(by) = t.task.started_by.as_deref()
            {
                *kept.entry(by).or_default() += 1;
            }
        }
        for d in deployments {
            let strategy = d.capacity_provider_strategy.as_deref().unwrap_or(&[]);
            let desired = u32::try_from(d.desired_count.unwrap_or(0).max(0)).unwrap_or(0);
            let share = split(strategy, desired, &BTreeMap::new())
                .into_iter()
                .find(|(name, _)| name == provider)
                .map_or(0, |(_, n)| n);
            let id = d.id.as_deref().unwrap_or("");
            let count = share.saturating_sub(kept.get(id).copied().unwrap_or(0));
            let def = d
                .task_definition
                .as_deref()
                .and_then(|t| resolve(state, scope, t));
            if let (true, Some(def)) = (count > 0, def) {
                let (cpu, memory) = reservation(&def.definition);
                out.push(Demand { cpu, memory, count });
            }
        }
    }
}
