//! The ECS side of load balancing: which ELBv2 target groups a service's tasks join, at
//! which address, and what CreateService / UpdateService accept as `loadBalancers`.
//!
//! A service's `loadBalancers` entry names a target group, a container and one of its
//! container ports. Each task of the service that runs becomes one target of that group:
//! - target type `instance` (bridge and host network modes): the container instance's
//!   `ec2InstanceId` and the host port the container port is published on;
//! - target type `ip` (`awsvpc`): the task's private IPv4 address and the container port.
//!
//! Both the API operations (validation) and the service controller (registration,
//! draining, health) use this module, so the rules live once. The targets themselves are
//! [`Target`] records inside the [`TargetGroupRecord`].

use model::wire;

use crate::error::{EcsError, invalid};
use crate::ops::elbv2::target_group_by_arn;
use crate::ops::elbv2::target_groups::users;
use crate::state::elb::{Target, TargetGroupRecord};
use crate::state::{InstanceRecord, Scope, State, TaskDefinitionRecord, TaskRecord};

/// Most `loadBalancers` entries one service has (ECS: 5 target groups per service).
pub const MAX_LOAD_BALANCERS_PER_SERVICE: usize = 5;

/// `stoppedReason` prefix of a task the service replaces because a load balancer found
/// it unhealthy (ECS's wording).
pub const ELB_HEALTH_REASON: &str = "Task failed ELB health checks in";

/// One `loadBalancers` entry of a service, its target group resolved.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// The target group's record.
    pub group: &'a TargetGroupRecord,
    /// The container whose port takes the traffic.
    pub container: &'a str,
    /// Its container port.
    pub container_port: i32,
}

impl Binding<'_> {
    /// Whether the group's targets are IP addresses (`awsvpc` tasks).
    pub fn is_ip(&self) -> bool {
        self.group.target_type == "ip"
    }
}

/// The service's `loadBalancers` whose target groups still exist (a group deleted after
/// the service was created is skipped: its tasks simply join nothing).
pub fn bindings<'a>(
    state: &'a State,
    scope: &Scope,
    service: &'a wire::Service,
) -> Vec<Binding<'a>> {
    service
        .load_balancers
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|lb| {
            Some(Binding {
                group: target_group_by_arn(state, scope, lb.target_group_arn.as_deref()?).ok()?,
                container: lb.container_name.as_deref()?,
                container_port: lb.container_port?,
            })
        })
        .collect()
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
) -> Result<(), EcsError> {
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
