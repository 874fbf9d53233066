//! The ECS side of load balancing: which ELBv2 target groups a service's tasks join, at
//! which address, and what CreateService / UpdateService accept as `loadBalancers`.
//!
//! A service's `loadBalancers` entry names a target group, a container and one of its
//! container ports (an EXTERNAL service's task sets each carry their own entries, which
//! only that set's tasks join: [`task_set_bindings`]). Each task of the service (or of the
//! set) that runs becomes one target of that group:
//! - target type `instance` (bridge and host network modes): the container instance's
//!   `ec2InstanceId` and the host port the container port is published on;
//! - target type `ip` (`awsvpc`): the task's private IPv4 address and the container port.
//!
//! Both the API operations (validation) and the service controller (registration,
//! draining, health) use this module, so the rules live once. The targets themselves are
//! [`Target`] records inside the [`TargetGroupRecord`].
//!
//! Blue/green (`deploymentConfiguration.strategy` `BLUE_GREEN`): an entry's
//! `advancedConfiguration` names a second, alternate target group and the production
//! (and optionally test) listener rule. Each deployment's tasks join one [`Side`]; the
//! production rule's weights say which side is live ([`live_side`]); the service
//! controller moves traffic by rewriting them: all at once ([`shift_rule`]), or a share
//! of it for the LINEAR and CANARY strategies ([`weigh_rule`], [`share_weights`]).

use model::wire;

use crate::error::{EcsError, invalid};
use crate::ops::elbv2::target_groups::users;
use crate::ops::elbv2::{RuleRef, rule_by_arn, target_group_by_arn};
use crate::state::elb::{Action, ActionKind, Target, TargetGroupRecord, WeightedTargetGroup};
use crate::state::{
    Change, InstanceRecord, Record, Scope, State, TaskDefinitionRecord, TaskRecord,
};

/// Most `loadBalancers` entries one service has (ECS: 5 target groups per service).
pub const MAX_LOAD_BALANCERS_PER_SERVICE: usize = 5;

/// `stoppedReason` prefix of a task the service replaces because a load balancer found
/// it unhealthy (ECS's wording).
pub const ELB_HEALTH_REASON: &str = "Task failed ELB health checks in";

/// Which of a blue/green entry's two target groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `targetGroupArn` (every entry that is not blue/green).
    Main,
    /// `advancedConfiguration.alternateTargetGroupArn`.
    Alternate,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Main => Side::Alternate,
            Side::Alternate => Side::Main,
        }
    }
}

/// A blue/green entry's two groups and its listener rules.
#[derive(Debug, Clone)]
pub struct BlueGreenRules<'a> {
    /// `targetGroupArn`.
    pub main: String,
    /// `alternateTargetGroupArn`.
    pub alternate: String,
    /// The rule whose forward action production traffic takes.
    pub production_rule: &'a str,
    /// The rule test traffic takes, if any.
    pub test_rule: Option<&'a str>,
}

/// One `loadBalancers` entry of a service (one side of it, for a blue/green entry), its
/// target group resolved.
#[derive(Debug, Clone)]
pub struct Binding<'a> {
    /// The target group's record.
    pub group: &'a TargetGroupRecord,
    /// The container whose port takes the traffic.
    pub container: &'a str,
    /// Its container port.
    pub container_port: i32,
    /// Which of the entry's groups `group` is.
    pub side: Side,
    /// The entry's groups and rules, when it has an alternate group.
    pub blue_green: Option<BlueGreenRules<'a>>,
    /// Which tasks join `group`: `None` for the service's own `loadBalancers` (every task
    /// of the service), or the id of the task set whose `loadBalancers` entry this is
    /// (only the tasks that set started: their `startedBy` is its id).
    pub task_set: Option<&'a str>,
}

impl Binding<'_> {
    /// Whether the group's targets are IP addresses (`awsvpc` tasks).
    pub fn is_ip(&self) -> bool {
        self.group.target_type == "ip"
    }

    /// Whether a task started by `started_by` (its `startedBy`: a deployment or task set
    /// id) joins this binding's group: always for the service's own entries, only the
    /// set's own tasks for a task set's.
    pub fn takes(&self, started_by: Option<&str>) -> bool {
        self.task_set.is_none_or(|id| started_by == Some(id))
    }
}

/// A `loadBalancers` entry's `targetGroupArn`, that group's record, and the entry's
/// container and container port; `None` for an entry without all three members or whose
/// target group no longer exists.
fn resolve_entry<'a>(
    state: &'a State,
    scope: &Scope,
    lb: &'a wire::LoadBalancer,
) -> Option<(&'a str, &'a TargetGroupRecord, &'a str, i32)> {
    let (Some(arn), Some(container), Some(container_port)) = (
        lb.target_group_arn.as_deref(),
        lb.container_name.as_deref(),
        lb.container_port,
    ) else {
        return None;
    };
    let group = target_group_by_arn(state, scope, arn).ok()?;
    Some((arn, group, container, container_port))
}

/// The service's `loadBalancers` whose target groups still exist (a group deleted after
/// the service was created is skipped: its tasks simply join nothing); a blue/green entry
/// gives one binding per side.
pub fn bindings<'a>(
    state: &'a State,
    scope: &Scope,
    service: &'a wire::Service,
) -> Vec<Binding<'a>> {
    let mut out = Vec::new();
    for lb in service.load_balancers.as_deref().unwrap_or(&[]) {
        let Some((main_arn, main, container, container_port)) = resolve_entry(state, scope, lb)
        else {
            continue;
        };
        let rules = lb.advanced_configuration.as_ref().and_then(|a| {
            Some(BlueGreenRules {
                main: main_arn.to_owned(),
                alternate: a.alternate_target_group_arn.clone()?,
                production_rule: a.production_listener_rule.as_deref()?,
                test_rule: a.test_listener_rule.as_deref(),
            })
        });
        let alternate = rules
            .as_ref()
            .and_then(|r| target_group_by_arn(state, scope, &r.alternate).ok());
        out.push(Binding {
            group: main,
            container,
            container_port,
            side: Side::Main,
            blue_green: rules.clone(),
            task_set: None,
        });
        if let Some(group) = alternate {
            out.push(Binding {
                group,
                container,
                container_port,
                side: Side::Alternate,
                blue_green: rules,
                task_set: None,
            });
        }
    }
    out
}

/// The `loadBalancers` of each task set (EXTERNAL services) whose target groups still
/// exist, each binding taking only its own set's tasks ([`Binding::takes`]). A set's entry
/// is never blue/green: the outside deployment tool moves traffic between the sets'
/// groups itself, so only `targetGroupArn` is bound ([`Side::Main`]). Sets without an id
/// (never written so) are skipped.
pub fn task_set_bindings<'a>(
    state: &'a State,
    scope: &Scope,
    sets: &'a [wire::TaskSet],
) -> Vec<Binding<'a>> {
    let mut out = Vec::new();
    for ts in sets {
        let Some(id) = ts.id.as_deref() else {
            continue;
        };
        for lb in ts.load_balancers.as_deref().unwrap_or(&[]) {
            let Some((_, group, container, container_port)) = resolve_entry(state, scope, lb)
            else {
                continue;
            };
            out.push(Binding {
                group,
                container,
                container_port,
                side: Side::Main,
                blue_green: None,
                task_set: Some(id),
            });
        }
    }
    out
}

/// The forward action's groups of a list of actions, if it has one.
fn forward_of(actions: &[Action]) -> Option<&[WeightedTargetGroup]> {
    actions.iter().find_map(|a| match &a.kind {
        ActionKind::Forward { target_groups, .. } => Some(target_groups.as_slice()),
        ActionKind::FixedResponse { .. } => None,
    })
}

fn actions_of<'s>(rule: &RuleRef<'s>) -> &'s [Action] {
    match rule {
        RuleRef::Rule(r, _) => &r.actions,
        RuleRef::Default(l) => &l.default_actions,
    }
}

/// The side the rule `rule_arn` sends traffic to: the alternate group when it weighs
/// more than the main one (a missing weight counts 1), else the main one.
pub fn live_side(state: &State, scope: &Scope, rules: &BlueGreenRules<'_>, rule_arn: &str) -> Side {
    let weight = |groups: &[WeightedTargetGroup], arn: &str| {
        groups
            .iter()
            .find(|g| g.arn == arn)
            .map_or(0, |g| g.weight.unwrap_or(1))
    };
    let Ok(rule) = rule_by_arn(state, scope, rule_arn) else {
        return Side::Main;
    };
    let Some(groups) = forward_of(actions_of(&rule)) else {
        return Side::Main;
    };
    if weight(groups, &rules.alternate) > weight(groups, &rules.main) {
        Side::Alternate
    } else {
        Side::Main
    }
}

/// The change that makes `rule_arn` forward everything to `to`'s group (weights 1 and
/// 0 over both groups, the rule's other actions kept), or `None` when it already does or
/// the rule is gone.
pub fn shift_rule(
    state: &State,
    scope: &Scope,
    rules: &BlueGreenRules<'_>,
    rule_arn: &str,
    to: Side,
) -> Option<Change> {
    weigh_rule(state, scope, rules, rule_arn, to, 100.0)
}

/// The forward weights (`to`'s group, the other group) that send `percent` of the
/// requests to `to`: the share in tenths of a percent (ECS's step), reduced, so every
/// weight stays within ELBv2's 0–999 (10 % gives 1 and 9, 0.1 % gives 1 and 999). At
/// 100 % or more 1 and 0, at 0 or less (or NaN) 0 and 1.
pub fn share_weights(percent: f64) -> (u32, u32) {
    const WHOLE: u32 = 1000;
    let tenths = (percent * 10.0).round();
    if tenths.is_nan() || tenths <= 0.0 {
        return (0, 1);
    }
    if tenths >= f64::from(WHOLE) {
        return (1, 0);
    }
    // Within 1..=999 here, so the cast is exact.
    let to = tenths as u32;
    let (mut a, mut b) = (to, WHOLE - to);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    (to / a, (WHOLE - to) / a)
}

/// The change that makes `rule_arn` forward `percent` of its requests to `to`'s group
/// and the rest to the other group of the pair ([`share_weights`]; the rule's other
/// actions and its stickiness kept), or `None` when it already does or the rule is gone.
/// The one path by which the service controller moves production and test traffic.
pub fn weigh_rule(
    state: &State,
    scope: &Scope,
    rules: &BlueGreenRules<'_>,
    rule_arn: &str,
    to: Side,
    percent: f64,
) -> Option<Change> {
    let rule = rule_by_arn(state, scope, rule_arn).ok()?;
    let (live, dead) = match to {
        Side::Main => (&rules.main, &rules.alternate),
        Side::Alternate => (&rules.alternate, &rules.main),
    };
    let (to_weight, other_weight) = share_weights(percent);
    let groups = vec![
        WeightedTargetGroup {
            arn: live.clone(),
            weight: Some(to_weight),
        },
        WeightedTargetGroup {
            arn: dead.clone(),
            weight: Some(other_weight),
        },
    ];
    let rewrite = |actions: &[Action]| -> Option<Vec<Action>> {
        let current = forward_of(actions)?;
        if current == groups.as_slice() {
            return None;
        }
        Some(
            actions
                .iter()
                .map(|a| match &a.kind {
                    ActionKind::Forward { stickiness, .. } => Action {
                        order: a.order,
                        kind: ActionKind::Forward {
                            target_groups: groups.clone(),
                            stickiness: *stickiness,
                            single: false,
                        },
                    },
                    ActionKind::FixedResponse { .. } => a.clone(),
                })
                .collect(),
        )
    };
    match rule {
        RuleRef::Rule(r, _) => {
            let mut r = r.clone();
            r.actions = rewrite(&r.actions)?;
            Some(Change::Put(Record::ListenerRule(r)))
        }
        RuleRef::Default(l) => {
            let mut l = l.clone();
            l.default_actions = rewrite(&l.default_actions)?;
            Some(Change::Put(Record::Listener(l)))
        }
    }
}

/// The percent of `rule_arn`'s forwarded requests that go to `side`'s group of the pair
/// (a missing weight counts 1), or `None` when the rule is gone, forwards nowhere, or
/// weighs both groups 0.
pub fn rule_share(
    state: &State,
    scope: &Scope,
    rules: &BlueGreenRules<'_>,
    rule_arn: &str,
    side: Side,
) -> Option<f64> {
    let rule = rule_by_arn(state, scope, rule_arn).ok()?;
    let groups = forward_of(actions_of(&rule))?;
    let weight = |arn: &str| {
        groups
            .iter()
            .find(|g| g.arn == arn)
            .map_or(0, |g| g.weight.unwrap_or(1))
    };
    let (main, alternate) = (weight(&rules.main), weight(&rules.alternate));
    let total = f64::from(main) + f64::from(alternate);
    if total == 0.0 {
        return None;
    }
    let mine = match side {
        Side::Main => main,
        Side::Alternate => alternate,
    };
    Some(f64::from(mine) * 100.0 / total)
}

/// The target (`id`, `port`) the task is in `binding`'s group, once the agent has
/// reported where it listens: `None` before that (or when the container has no such
/// port published).
pub fn target_of(
    binding: &Binding<'_>,
    task: &TaskRecord,
    instance: Option<&InstanceRecord>,
) -> Option<(String, u16)> {
    let containers = task.task.containers.as_deref().unwrap_or(&[]);
    if binding.is_ip() {
        let ip = containers
            .iter()
            .flat_map(|c| c.network_interfaces.as_deref().unwrap_or(&[]))
            .find_map(|n| n.private_ipv4_address.clone())?;
        let port = u16::try_from(binding.container_port).ok()?;
        return Some((ip, port));
    }
    let instance_id = instance?.instance.ec2_instance_id.clone()?;
    let host_port = containers
        .iter()
        .filter(|c| c.name.as_deref() == Some(binding.container))
        .flat_map(|c| c.network_bindings.as_deref().unwrap_or(&[]))
        .find(|b| b.container_port == Some(binding.container_port))
        .and_then(|b| b.host_port)?;
    Some((instance_id, u16::try_from(host_port).ok()?))
}

/// The live targets (active or draining at `now_ms`) that `task_arn` registered in `group`.
pub fn targets_of_task<'g>(
    group: &'g TargetGroupRecord,
    task_arn: &'g str,
    now_ms: u64,
) -> impl Iterator<Item = &'g Target> + 'g {
    group
        .live_targets(now_ms)
        .filter(move |t| t.registered_by.as_deref() == Some(task_arn))
}

/// Checks a service's `loadBalancers` against its task definition, as CreateService and
/// UpdateService do: at most [`MAX_LOAD_BALANCERS_PER_SERVICE`] entries; each names an
/// existing target group that a load balancer's listener uses, a container of the task
/// definition and one of its container ports; the group's target type fits the network
/// mode (`ip` for `awsvpc`, `instance` otherwise); no entry twice. Classic load
/// balancers (`loadBalancerName`) are not supported.
///
/// # Errors
///
/// `InvalidParameterException` saying which entry is wrong and why.
pub fn validate(
    state: &State,
    scope: &Scope,
    entries: &[wire::LoadBalancer],
    def: &TaskDefinitionRecord,
    blue_green: bool,
) -> Result<(), EcsError> {
    if blue_green && entries.is_empty() {
        return Err(invalid(
            "The BLUE_GREEN, LINEAR and CANARY deployment strategies need loadBalancers \
             with an advancedConfiguration.",
        ));
    }
    if entries.len() > MAX_LOAD_BALANCERS_PER_SERVICE {
        return Err(invalid(format!(
            "loadBalancers can have at most {MAX_LOAD_BALANCERS_PER_SERVICE} entries."
        )));
    }
    let awsvpc = def.definition.network_mode == Some(wire::NetworkMode::Awsvpc);
    let mut seen = Vec::new();
    for lb in entries {
        if lb.load_balancer_name.is_some() {
            return Err(invalid(
                "Classic Load Balancers (loadBalancerName) are not supported: give a targetGroupArn.",
            ));
        }
        let arn = lb
            .target_group_arn
            .as_deref()
            .ok_or_else(|| invalid("loadBalancers: targetGroupArn is required."))?;
        let group = target_group_by_arn(state, scope, arn).map_err(|_| {
            invalid(format!(
                "The target group with targetGroupArn {} does not exist.",
                crate::ops::elbv2::shorten(arn)
            ))
        })?;
        if users(state, scope, arn).is_empty() {
            return Err(invalid(format!(
                "The target group with targetGroupArn {arn} does not have an associated load balancer."
            )));
        }
        let name = lb
            .container_name
            .as_deref()
            .ok_or_else(|| invalid("loadBalancers: containerName is required."))?;
        let port = lb
            .container_port
            .ok_or_else(|| invalid("loadBalancers: containerPort is required."))?;
        let container = def
            .definition
            .container_definitions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
            .ok_or_else(|| {
                invalid(format!(
                    "The container {} does not exist in the task definition.",
                    crate::ops::elbv2::shorten(name)
                ))
            })?;
        let has_port = container
            .port_mappings
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|m| m.container_port == Some(port));
        if !has_port {
            return Err(invalid(format!(
                "The container {name} did not have a container port {port} defined."
            )));
        }
        let wants_ip = group.target_type == "ip";
        if wants_ip != awsvpc {
            let mode = def
                .definition
                .network_mode
                .map(|m| m.as_str())
                .unwrap_or("bridge");
            return Err(invalid(format!(
                "The provided target group {arn} has target type {}, which is incompatible \
                 with the {mode} network mode specified in the task definition.",
                group.target_type
            )));
        }
        if let Some(a) = &lb.advanced_configuration {
            validate_advanced(state, scope, arn, group, a)?;
        } else if blue_green {
            return Err(invalid(format!(
                "loadBalancers entry for {arn} needs an advancedConfiguration \
                 (alternateTargetGroupArn, productionListenerRule) for a BLUE_GREEN, LINEAR \
                 or CANARY deployment."
            )));
        }
        let key = (arn, name, port);
        if seen.contains(&key) {
            return Err(invalid(format!(
                "loadBalancers names target group {arn} with container {name}:{port} twice."
            )));
        }
        seen.push(key);
    }
    Ok(())
}

/// An entry's `advancedConfiguration`: an existing alternate group of the same target
/// type, and production (and test) rules that exist and forward to one of the two.
fn validate_advanced(
    state: &State,
    scope: &Scope,
    main_arn: &str,
    main: &TargetGroupRecord,
    a: &wire::AdvancedConfiguration,
) -> Result<(), EcsError> {
    let alt_arn = a
        .alternate_target_group_arn
        .as_deref()
        .ok_or_else(|| invalid("advancedConfiguration: alternateTargetGroupArn is required."))?;
    let alt = target_group_by_arn(state, scope, alt_arn).map_err(|_| {
        invalid(format!(
            "The alternate target group {} does not exist.",
            crate::ops::elbv2::shorten(alt_arn)
        ))
    })?;
    if alt_arn == main_arn {
        return Err(invalid(
            "advancedConfiguration: the alternate target group must differ from targetGroupArn.",
        ));
    }
    if alt.target_type != main.target_type {
        return Err(invalid(format!(
            "The alternate target group {alt_arn} has target type {}, not {} as {main_arn}.",
            alt.target_type, main.target_type
        )));
    }
    let production = a
        .production_listener_rule
        .as_deref()
        .ok_or_else(|| invalid("advancedConfiguration: productionListenerRule is required."))?;
    for rule_arn in std::iter::once(production).chain(a.test_listener_rule.as_deref()) {
        let rule = rule_by_arn(state, scope, rule_arn).map_err(|_| {
            invalid(format!(
                "The listener rule {} does not exist.",
                crate::ops::elbv2::shorten(rule_arn)
            ))
        })?;
        let forwards = forward_of(actions_of(&rule))
            .is_some_and(|gs| gs.iter().any(|g| g.arn == main_arn || g.arn == alt_arn));
        if !forwards {
            return Err(invalid(format!(
                "The listener rule {rule_arn} does not forward to {main_arn} or {alt_arn}."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::share_weights;

    #[test]
    fn shares_become_weights_within_elbv2_bounds() {
        assert_eq!(share_weights(10.0), (1, 9));
        assert_eq!(share_weights(40.0), (2, 3));
        assert_eq!(share_weights(50.0), (1, 1));
        assert_eq!(share_weights(33.3), (333, 667));
        assert_eq!(share_weights(0.1), (1, 999));
        assert_eq!(share_weights(99.9), (999, 1));
        assert_eq!(share_weights(100.0), (1, 0));
        assert_eq!(share_weights(0.0), (0, 1));
        assert_eq!(share_weights(f64::NAN), (0, 1));
    }
}
