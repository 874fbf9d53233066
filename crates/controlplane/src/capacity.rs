//! Capacity providers in placement: which strategy a task launches with, how a strategy
//! splits a number of tasks between its providers ([`split`]), and which instances a
//! provider's tasks may land on.
//!
//! flotilla has no Auto Scaling. A capacity provider's `autoScalingGroupArn` names a
//! **node group** instead (an Auto Scaling group ARN, whose `autoScalingGroupName/…` part
//! is the group's name, or a plain name), and a container instance belongs to node group
//! `g` when it carries the attribute [`NODE_GROUP_ATTRIBUTE`]` = g` (the agent sets it
//! with `--attributes flotilla.node-group=g`). A task launched for provider `P` is placed
//! only on instances of `P`'s node group. With managed scaling ENABLED, the node group's
//! size is decided by [`crate::managed_scaling`] (and changed by `flotilla server
//! --scaling-hook`).
//!
//! The arithmetic is ECS's: the provider with a `base` first receives tasks until it runs
//! `base` of them; the rest are split in proportion to the providers' `weight`s (a
//! provider of weight 0 receives none beyond its base). RunTask splits its tasks from
//! none ([`launch_plan`]); a service's deployment (strategy from [`service_strategy`])
//! splits its new tasks counting what each provider already runs
//! (`controllers::service`, its `capacity` module).

use std::collections::BTreeMap;

use model::wire::{self, CapacityProviderStrategyItem, LaunchType};

use crate::error::{EcsError, invalid};
use crate::ops::clusters::BUILT_IN_CAPACITY_PROVIDERS;
use crate::state::{CapacityProviderRecord, ClusterRecord, Scope, State};

/// The container instance attribute that puts an instance in a node group.
pub const NODE_GROUP_ATTRIBUTE: &str = "flotilla.node-group";

/// The most capacity providers one strategy may name (ECS: 20).
pub const MAX_STRATEGY_ITEMS: usize = 20;

/// Whether `name` is one of the built-in Fargate providers (FARGATE, FARGATE_SPOT).
pub fn is_fargate(name: &str) -> bool {
    BUILT_IN_CAPACITY_PROVIDERS.contains(&name)
}

/// The node group an `autoScalingGroupArn` names: the name after
/// `autoScalingGroupName/` in an Auto Scaling group ARN, else the value itself.
pub fn node_group_of(asg: &str) -> &str {
    match asg.split_once(":autoScalingGroupName/") {
        Some((_, name)) if asg.starts_with("arn:") => name,
        _ => asg,
    }
}

/// The ACTIVE capacity provider `name` of `scope`, if there is one.
pub fn active_provider<'a>(
    state: &'a State,
    scope: &Scope,
    name: &str,
) -> Option<&'a CapacityProviderRecord> {
    state
        .capacity_providers
        .get(&(scope.clone(), name.to_owned()))
        .filter(|p| p.provider.status == Some(wire::CapacityProviderStatus::Active))
}

/// The node group of the ACTIVE capacity provider `name`.
pub fn provider_node_group<'a>(state: &'a State, scope: &Scope, name: &str) -> Option<&'a str> {
    active_provider(state, scope, name)?
        .provider
        .auto_scaling_group_provider
        .as_ref()?
        .auto_scaling_group_arn
        .as_deref()
        .map(node_group_of)
}

/// Checks a strategy's shape as ECS does: at most [`MAX_STRATEGY_ITEMS`] items, each
/// naming a provider in `associated` once, weight 0–1000, base 0–100000, at most one item
/// with a base, and some weight above 0 when there are several items. `field` names the
/// member in messages.
pub fn check_strategy(
    strategy: &[CapacityProviderStrategyItem],
    associated: &[String],
    field: &str,
) -> Result<(), EcsError> {
    if strategy.len() > MAX_STRATEGY_ITEMS {
        return Err(invalid(format!(
            "{field} can contain at most {MAX_STRATEGY_ITEMS} capacity providers."
        )));
    }
    let mut with_base = 0;
    for (i, item) in strategy.iter().enumerate() {
        let name = item.capacity_provider.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(invalid(format!(
                "{field}[{i}].capacityProvider is required."
            )));
        }
        if !associated.iter().any(|p| p == name) {
            return Err(invalid(format!(
                "The specified capacity provider {name} is not associated with the cluster. \
                 Associate it with PutClusterCapacityProviders first ({field})."
            )));
        }
        if strategy[..i]
            .iter()
            .any(|o| o.capacity_provider.as_deref() == Some(name))
        {
            return Err(invalid(format!(
                "{field} names capacity provider {name} more than once."
            )));
        }
        if !(0..=1000).contains(&item.weight.unwrap_or(0)) {
            return Err(invalid(format!(
                "{field}[{i}].weight must be between 0 and 1000."
            )));
        }
        let base = item.base.unwrap_or(0);
        if !(0..=100_000).contains(&base) {
            return Err(invalid(format!(
                "{field}[{i}].base must be between 0 and 100000."
            )));
        }
        if base > 0 {
            with_base += 1;
        }
    }
    if with_base > 1 {
        return Err(invalid(
            "Only one capacity provider in a strategy can have a base defined.",
        ));
    }
    if strategy.len() > 1 && strategy.iter().all(|i| i.weight.unwrap_or(0) == 0) {
        return Err(invalid(format!(
            "{field}: at least one capacity provider must have a weight greater than zero."
        )));
    }
    Ok(())
}

/// The strategy a RunTask (or service) launches with: `strategy` when given, else the
/// cluster's default strategy when neither a launch type nor a strategy is given, else
/// none (the cluster's instances, EC2 launch type). A launch type and a strategy together
/// are refused, as in ECS, and so is a strategy mixing the Fargate providers with others
/// ([`is_fargate_strategy`] tells a Fargate one).
pub fn resolve_strategy(
    cluster: &ClusterRecord,
    launch_type: Option<LaunchType>,
    strategy: Option<&[CapacityProviderStrategyItem]>,
) -> Result<Option<Vec<CapacityProviderStrategyItem>>, EcsError> {
    let given = strategy.filter(|s| !s.is_empty());
    let chosen = match (launch_type, given) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "Specifying both a launchType and capacityProviderStrategy is not supported.",
            ));
        }
        (Some(_), None) => return Ok(None),
        (None, Some(s)) => {
            let associated = cluster.cluster.capacity_providers.as_deref().unwrap_or(&[]);
            check_strategy(s, associated, "capacityProviderStrategy")?;
            s.to_vec()
        }
        (None, None) => cluster
            .cluster
            .default_capacity_provider_strategy
            .clone()
            .unwrap_or_default(),
    };
    if chosen.is_empty() {
        return Ok(None);
    }
    // FARGATE and FARGATE_SPOT run on the Fargate pool (`crate::fargate`); ECS refuses a
    // strategy that mixes them with node-group providers.
    let fargate = chosen
        .iter()
        .filter(|i| i.capacity_provider.as_deref().is_some_and(is_fargate))
        .count();
    if fargate > 0 && fargate < chosen.len() {
        return Err(invalid(
            "The capacity provider strategy cannot contain a mix of capacity providers using \
             Auto Scaling groups and Fargate providers. Specify one or the other and try again.",
        ));
    }
    Ok(Some(chosen))
}

/// Whether a strategy (as [`resolve_strategy`] returns it) names only the Fargate
/// providers: its tasks run on the Fargate pool.
pub fn is_fargate_strategy(strategy: &[CapacityProviderStrategyItem]) -> bool {
    !strategy.is_empty()
        && strategy
            .iter()
            .all(|i| i.capacity_provider.as_deref().is_some_and(is_fargate))
}

/// A CreateService's strategy: `strategy` when given, else the cluster's default when
/// neither it nor a launch type is given (as [`resolve_strategy`] decides, with its
/// checks), else none (the launch type, EC2 by default). A DAEMON service takes no
/// strategy: one given is refused, and the cluster's default is set aside (EC2). Items
/// come back with ECS's defaults filled in ([`normalized`]).
pub fn service_strategy(
    cluster: &ClusterRecord,
    launch_type: Option<LaunchType>,
    strategy: Option<&[CapacityProviderStrategyItem]>,
    daemon: bool,
) -> Result<Option<Vec<CapacityProviderStrategyItem>>, EcsError> {
    if daemon {
        if strategy.is_some_and(|s| !s.is_empty()) {
            return Err(invalid(
                "A capacity provider strategy cannot be used with the DAEMON scheduling \
                 strategy. Specify a launch type instead.",
            ));
        }
        return Ok(None);
    }
    Ok(resolve_strategy(cluster, launch_type, strategy)?.map(|s| normalized(&s)))
}

/// A strategy as DescribeServices shows it: every item with its `weight` and `base`
/// (0 when not given), so that two strategies compare as ECS compares them.
pub fn normalized(strategy: &[CapacityProviderStrategyItem]) -> Vec<CapacityProviderStrategyItem> {
    strategy
        .iter()
        .map(|i| CapacityProviderStrategyItem {
            capacity_provider: i.capacity_provider.clone(),
            weight: Some(i.weight.unwrap_or(0)),
            base: Some(i.base.unwrap_or(0)),
        })
        .collect()
}

/// [`split`] of `count` new tasks (none running yet: a RunTask) with each provider's
/// node group: `(provider, node group, n)`. A provider that is not ACTIVE is refused.
/// (The service controller splits with the tasks a deployment already runs instead.)
pub fn launch_plan(
    state: &State,
    scope: &Scope,
    strategy: &[CapacityProviderStrategyItem],
    count: u32,
) -> Result<Vec<(String, String, u32)>, EcsError> {
    split(strategy, count, &BTreeMap::new())
        .into_iter()
        .map(|(provider, n)| {
            let group = provider_node_group(state, scope, &provider).ok_or_else(|| {
                invalid(format!(
                    "The capacity provider {provider} is not ACTIVE and cannot run tasks."
                ))
            })?;
            Ok((provider.clone(), group.to_owned(), n))
        })
        .collect()
}

/// Splits `count` new tasks between a strategy's providers, given how many tasks each
/// provider already runs (`already`, by provider name; a RunTask starts from none):
/// first the provider with a `base` until it runs `base` tasks, then the rest by weight,
/// each task to the provider furthest below its weighted share (ties to the provider
/// listed first). Returns `(provider, n)` in strategy order, providers receiving none
/// left out. When no provider has a weight, the rest goes to the base provider (or the
/// first listed).
pub fn split(
    strategy: &[CapacityProviderStrategyItem],
    count: u32,
    already: &BTreeMap<String, u32>,
) -> Vec<(String, u32)> {
    let names: Vec<&str> = strategy
        .iter()
        .map(|i| i.capacity_provider.as_deref().unwrap_or(""))
        .collect();
    let weight = |i: usize| u64::try_from(strategy[i].weight.unwrap_or(0).max(0)).unwrap_or(0);
    let base = |i: usize| u32::try_from(strategy[i].base.unwrap_or(0).max(0)).unwrap_or(0);
    let running = |i: usize| already.get(names[i]).copied().unwrap_or(0);
    let mut added = vec![0u32; strategy.len()];
    let mut left = count;
    // The base first.
    if let Some(b) = (0..strategy.len()).find(|&i| base(i) > 0) {
        let n = base(b).saturating_sub(running(b)).min(left);
        added[b] += n;
        left -= n;
    }
    // The weighted share counts the tasks beyond the base.
    let weighted =
        |i: usize, added: &[u32]| u64::from((running(i) + added[i]).saturating_sub(base(i)));
    let fallback = (0..strategy.len()).find(|&i| base(i) > 0).unwrap_or(0);
    while left > 0 && !strategy.is_empty() {
        let next = (0..strategy.len())
            .filter(|&i| weight(i) > 0)
            .min_by(|&a, &b| {
                // (weighted_a + 1) / w_a against (weighted_b + 1) / w_b, exactly.
                ((weighted(a, &added) + 1) * weight(b))
                    .cmp(&((weighted(b, &added) + 1) * weight(a)))
            });
        let i = next.unwrap_or(fallback);
        added[i] += 1;
        left -= 1;
    }
    names
        .iter()
        .zip(added)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| ((*name).to_owned(), n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, weight: i32, base: i32) -> CapacityProviderStrategyItem {
        CapacityProviderStrategyItem {
            capacity_provider: Some(name.into()),
            weight: Some(weight),
            base: Some(base),
        }
    }

    fn split_new(strategy: &[CapacityProviderStrategyItem], count: u32) -> Vec<(String, u32)> {
        split(strategy, count, &BTreeMap::new())
    }

    fn pairs(v: &[(&str, u32)]) -> Vec<(String, u32)> {
        v.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    }

    /// ECS's example: weight 1 for A and 4 for B: for every task on A, four on B.
    #[test]
    fn weights_one_and_four_split_one_to_four() {
        let s = [item("A", 1, 0), item("B", 4, 0)];
        assert_eq!(split_new(&s, 5), pairs(&[("A", 1), ("B", 4)]));
        assert_eq!(split_new(&s, 10), pairs(&[("A", 2), ("B", 8)]));
    }

    /// The base is satisfied first; the weights then split the rest: base 1 on A,
    /// weight 1 A and 4 B, 6 tasks → A runs 1 + 1, B runs 4.
    #[test]
    fn the_base_comes_first_then_the_weights() {
        let s = [item("A", 1, 1), item("B", 4, 0)];
        assert_eq!(split_new(&s, 6), pairs(&[("A", 2), ("B", 4)]));
        assert_eq!(split_new(&s, 1), pairs(&[("A", 1)]));
    }

    /// ECS's other example: base 2 on an on-demand provider of weight 0, weight 1 on a
    /// spot one: every task beyond the base goes to the spot provider.
    #[test]
    fn a_weight_of_zero_takes_only_its_base() {
        let s = [item("ondemand", 0, 2), item("spot", 1, 0)];
        assert_eq!(split_new(&s, 5), pairs(&[("ondemand", 2), ("spot", 3)]));
        assert_eq!(split_new(&s, 2), pairs(&[("ondemand", 2)]));
    }

    #[test]
    fn equal_weights_split_evenly() {
        let s = [item("A", 1, 0), item("B", 1, 0)];
        assert_eq!(split_new(&s, 4), pairs(&[("A", 2), ("B", 2)]));
        assert_eq!(split_new(&s, 3), pairs(&[("A", 2), ("B", 1)]));
    }

    /// A service's running tasks count: the base is met already, and new tasks go where
    /// the split is furthest from the weights.
    #[test]
    fn tasks_already_running_count() {
        let s = [item("A", 1, 1), item("B", 1, 0)];
        let already: BTreeMap<String, u32> = [("A".to_owned(), 1), ("B".to_owned(), 2)].into();
        assert_eq!(split(&s, 2, &already), pairs(&[("A", 2)]));
        let already: BTreeMap<String, u32> = [("B".to_owned(), 3)].into();
        assert_eq!(split(&s, 3, &already), pairs(&[("A", 3)]));
    }

    /// A service of 5 with base 1 on A and weights 1:3 runs A 2, B 3; scaled to 9, the
    /// 4 new tasks count what runs (A 2, B 3) and keep 1:3 beyond the base: A 3, B 6.
    /// A provider that lost a task gets the replacement.
    #[test]
    fn a_service_split_counts_what_each_provider_runs() {
        let s = [item("A", 1, 1), item("B", 3, 0)];
        assert_eq!(split_new(&s, 5), pairs(&[("A", 2), ("B", 3)]));
        let running: BTreeMap<String, u32> = [("A".to_owned(), 2), ("B".to_owned(), 3)].into();
        assert_eq!(split(&s, 4, &running), pairs(&[("A", 1), ("B", 3)]));
        let lost_b: BTreeMap<String, u32> = [("A".to_owned(), 2), ("B".to_owned(), 2)].into();
        assert_eq!(split(&s, 1, &lost_b), pairs(&[("B", 1)]));
        // The base is refilled first when its provider lost its only task.
        let lost_a: BTreeMap<String, u32> = [("B".to_owned(), 3)].into();
        assert_eq!(split(&s, 1, &lost_a), pairs(&[("A", 1)]));
    }

    #[test]
    fn a_single_provider_takes_everything() {
        assert_eq!(split_new(&[item("A", 0, 0)], 3), pairs(&[("A", 3)]));
        assert_eq!(split_new(&[item("A", 5, 2)], 3), pairs(&[("A", 3)]));
        assert!(split_new(&[item("A", 1, 0)], 0).is_empty());
        assert!(split_new(&[], 3).is_empty());
    }

    #[test]
    fn node_groups_come_from_an_arn_or_a_name() {
        let arn = "arn:aws:autoscaling:eu-west-1:000000000000:autoScalingGroup:\
                   0d3b5f2c-1111-2222-3333-444455556666:autoScalingGroupName/blue";
        assert_eq!(node_group_of(arn), "blue");
        assert_eq!(node_group_of("green"), "green");
    }

    #[test]
    fn strategies_are_checked_as_ecs_does() {
        let associated = vec!["A".to_owned(), "B".to_owned()];
        let check = |s: &[CapacityProviderStrategyItem]| check_strategy(s, &associated, "s");
        assert!(check(&[item("A", 1, 1), item("B", 4, 0)]).is_ok());
        assert!(check(&[item("C", 1, 0)]).is_err(), "not associated");
        assert!(check(&[item("A", 1001, 0)]).is_err(), "weight too high");
        assert!(check(&[item("A", 1, 100_001)]).is_err(), "base too high");
        assert!(
            check(&[item("A", 1, 1), item("B", 1, 1)]).is_err(),
            "two bases"
        );
        assert!(
            check(&[item("A", 0, 0), item("B", 0, 0)]).is_err(),
            "no weight"
        );
        assert!(check(&[item("A", 1, 0), item("A", 1, 0)]).is_err(), "twice");
    }
}
