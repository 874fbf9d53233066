//! The state as the `scheduler` crate sees it: the adapter between the control plane's
//! records and the scheduler's pure inputs and outputs. RunTask and StartTask
//! ([`ops::tasks`](crate::ops::tasks)) and the service controller
//! ([`controllers::service`](crate::controllers::service)) both place tasks through it.
//!
//! - [`snapshot`] / [`placement_snapshot`]: a cluster's instances as
//!   [`ClusterSnapshot`] (what each has left after its tasks' reservations), with the
//!   records in the same order, so a [`Placement`](scheduler::Placement)'s
//!   `instance_index` names the instance record.
//! - [`task_request`]: what one task of a definition (with its overrides) asks of an
//!   instance; [`reservation_of`]: what a placed task then holds; [`in_node_group`]: a
//!   request kept to one capacity provider's node group.
//! - [`placement_spec`]: strategies and constraints, the task definition's included.

use model::status::InstanceStatus as RecordStatus;
use model::wire;
use scheduler::PlacementSpec;
use scheduler::snapshot::{
    ClusterSnapshot, HostPort, HostPorts, InstanceStatus, InstanceView, PortRange,
    RequiredAttribute, TaskRequest, TaskView,
};
use scheduler::spec::SpecError;

use crate::ops::instances::{integer_resource, port_resource};
use crate::ops::task_definitions::{self, host_ports};
use crate::state::{InstanceRecord, Reservation, Scope, State, TaskDefinitionRecord, Usage};

/// What one task of `def` (with `overrides`) asks of an instance, as the scheduler
/// sees it.
pub fn task_request(
    def: &TaskDefinitionRecord,
    overrides: Option<&wire::TaskOverride>,
    group: &str,
) -> TaskRequest {
    let eff = model::overrides::apply(&def.definition, overrides);
    let (cpu, memory) = task_definitions::reservation(&eff);
    let (static_ports, dynamic_ports) = host_ports(&eff);
    TaskRequest {
        cpu: u32::try_from(cpu).unwrap_or(u32::MAX),
        memory: u32::try_from(memory).unwrap_or(u32::MAX),
        group: group.to_owned(),
        static_ports,
        dynamic_ports,
        // EC2 (or no launch type) never places on external instances, as in ECS;
        // [`for_launch_type`] asks for external ones instead.
        required_attributes: vec![launch_type_requirement(wire::LaunchType::Ec2)],
    }
}

/// The placement attribute flotilla gives every instance in the scheduler's view:
/// `EXTERNAL` for an external (ECS Anywhere) instance, else `EC2`. It is computed
/// from [`EXTERNAL_CAPABILITY`], never stored, so an instance cannot set it itself.
pub const LAUNCH_TYPE_ATTRIBUTE: &str = "flotilla.launch-type";

/// The attribute ECS gives an external (ECS Anywhere) container instance.
pub const EXTERNAL_CAPABILITY: &str = "ecs.capability.external";

fn launch_type_requirement(launch_type: wire::LaunchType) -> RequiredAttribute {
    RequiredAttribute {
        name: LAUNCH_TYPE_ATTRIBUTE.to_owned(),
        value: Some(launch_type.as_str().to_owned()),
    }
}

/// `request` (from [`task_request`]) for a task of `launch_type`: an `EXTERNAL` task
/// goes only to external instances; any other keeps [`task_request`]'s EC2 rule.
pub fn for_launch_type(
    mut request: TaskRequest,
    launch_type: Option<wire::LaunchType>,
) -> TaskRequest {
    if launch_type == Some(wire::LaunchType::External) {
        request
            .required_attributes
            .retain(|a| a.name != LAUNCH_TYPE_ATTRIBUTE);
        request
            .required_attributes
            .push(launch_type_requirement(wire::LaunchType::External));
    }
    request
}

/// Whether `instance` is an external (ECS Anywhere) instance.
pub fn is_external(instance: &InstanceRecord) -> bool {
    instance
        .instance
        .attributes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|a| a.name.as_deref() == Some(EXTERNAL_CAPABILITY))
}

/// `request` restricted to the instances of node group `group` (those whose
/// [`NODE_GROUP_ATTRIBUTE`](crate::capacity::NODE_GROUP_ATTRIBUTE) is `group`): how a
/// task launched for a capacity provider stays on its provider's nodes.
pub fn in_node_group(mut request: TaskRequest, group: &str) -> TaskRequest {
    request.required_attributes.push(RequiredAttribute {
        name: crate::capacity::NODE_GROUP_ATTRIBUTE.to_owned(),
        value: Some(group.to_owned()),
    });
    request
}

/// What a task placed for `request` with `dynamic` host ports holds on its instance.
pub fn reservation_of(request: &TaskRequest, dynamic: &[HostPort]) -> Reservation {
    let ports = |proto: wire::TransportProtocol| -> Vec<u16> {
        request
            .static_ports
            .iter()
            .chain(dynamic)
            .filter(|p| p.protocol == proto)
            .map(|p| p.port)
            .collect()
    };
    Reservation {
        cpu: i64::from(request.cpu),
        memory: i64::from(request.memory),
        ports_tcp: ports(wire::TransportProtocol::Tcp),
        ports_udp: ports(wire::TransportProtocol::Udp),
    }
}

/// The placement strategies and constraints of a task of `def`: `strategies` and
/// `constraints` as the request (or service) gives them, plus the task definition's
/// constraints. Callers add their default strategies.
///
/// # Errors
///
/// The scheduler's [`SpecError`] when a strategy or constraint is invalid.
pub fn placement_spec(
    def: &TaskDefinitionRecord,
    strategies: &[wire::PlacementStrategy],
    constraints: &[wire::PlacementConstraint],
) -> Result<PlacementSpec, SpecError> {
    let td_constraints = def
        .definition
        .placement_constraints
        .as_deref()
        .unwrap_or(&[]);
    PlacementSpec::from_wire(strategies, td_constraints, constraints)
}

/// The attribute that carries an instance's dynamic host-port range (`first-last`),
/// reported by the agent from `ip_local_port_range`.
pub const PORT_RANGE_ATTRIBUTE: &str = "flotilla.dynamic-port-range";

fn port_range(instance: &InstanceRecord) -> PortRange {
    instance
        .attribute(PORT_RANGE_ATTRIBUTE)
        .and_then(|v| {
            v.split_once('-')
                .map(|(f, l)| (f.trim().parse().ok(), l.trim().parse().ok()))
        })
        .and_then(|(f, l)| {
            Some(PortRange {
                first: f?,
                last: l?,
            })
        })
        .filter(|r| r.first <= r.last)
        .unwrap_or_default()
}

/// The scheduler's status of an instance (an unknown or absent status counts as
/// INACTIVE: it takes no tasks).
fn instance_status(s: Option<RecordStatus>) -> InstanceStatus {
    match s {
        Some(RecordStatus::Active) => InstanceStatus::Active,
        Some(RecordStatus::Draining) => InstanceStatus::Draining,
        Some(RecordStatus::Registering) => InstanceStatus::Registering,
        Some(RecordStatus::Deregistering) => InstanceStatus::Deregistering,
        Some(RecordStatus::RegistrationFailed) => InstanceStatus::RegistrationFailed,
        Some(RecordStatus::Inactive) | None => InstanceStatus::Inactive,
    }
}

/// The scheduler's view of one instance: what is left after its tasks' reservations.
pub fn instance_view(state: &State, instance: &InstanceRecord) -> InstanceView {
    instance_view_with(state, instance, true)
}

/// [`instance_view`] with the instance's tasks either one entry per task (`per_task`,
/// needed to choose tasks to stop) or one merged entry per group (enough for placement,
/// and its cost does not grow with the number of tasks).
pub fn instance_view_with(
    state: &State,
    instance: &InstanceRecord,
    per_task: bool,
) -> InstanceView {
    let empty = Usage::default();
    let used = state
        .usage(&instance.scope, &instance.cluster, &instance.id)
        .unwrap_or(&empty);
    let registered = instance
        .instance
        .registered_resources
        .as_deref()
        .unwrap_or(&[]);
    let left = |total: i64, used: i64| u32::try_from((total - used).max(0)).unwrap_or(u32::MAX);
    let mut attributes: std::collections::BTreeMap<String, Option<String>> = instance
        .instance
        .attributes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|a| Some((a.name.clone()?, a.value.clone())))
        .collect();
    let launch_type = if is_external(instance) {
        wire::LaunchType::External
    } else {
        wire::LaunchType::Ec2
    };
    attributes.insert(
        LAUNCH_TYPE_ATTRIBUTE.to_owned(),
        Some(launch_type.as_str().to_owned()),
    );
    InstanceView {
        arn: instance
            .instance
            .container_instance_arn
            .clone()
            .unwrap_or_default(),
        id: instance.id.clone(),
        ec2_instance_id: instance.instance.ec2_instance_id.clone(),
        status: instance_status(instance.instance.status()),
        agent_connected: instance.instance.agent_connected == Some(true),
        agent_version: instance
            .instance
            .version_info
            .as_ref()
            .and_then(|v| v.agent_version.clone()),
        #[allow(clippy::cast_possible_truncation)]
        registered_at: instance.instance.registered_at.map(|t| t as i64),
        attributes,
        remaining_cpu: left(integer_resource(registered, "CPU"), used.cpu),
        remaining_memory: left(integer_resource(registered, "MEMORY"), used.memory),
        used_ports: HostPorts {
            tcp: used.ports_tcp.iter().copied().collect(),
            udp: used.ports_udp.iter().copied().collect(),
        },
        reserved_ports: HostPorts {
            tcp: port_resource(registered, "PORTS").into_iter().collect(),
            udp: port_resource(registered, "PORTS_UDP").into_iter().collect(),
        },
        dynamic_port_range: port_range(instance),
        tasks: if per_task {
            used.tasks
                .iter()
                .map(|t| TaskView::new(t.id.clone(), t.task.group.clone().unwrap_or_default()))
                .collect()
        } else {
            used.groups
                .iter()
                .map(|(group, n)| TaskView {
                    arn: String::new(),
                    group: group.clone(),
                    count: *n,
                })
                .collect()
        },
    }
}

/// The scheduler's view of some instances, and their records in the same order (an
/// outcome's `instance_index` is an index into both).
pub type Snapshot<'a> = (ClusterSnapshot, Vec<&'a InstanceRecord>);

/// The scheduler's view of a cluster (every registered instance; the scheduler
/// itself skips those that cannot take tasks).
pub fn snapshot<'a>(state: &'a State, scope: &Scope, cluster: &str) -> Snapshot<'a> {
    snapshot_with(state, scope, cluster, true)
}

/// [`snapshot`] for placement only: tasks merged per group, so building it costs
/// O(instances × groups), not O(tasks).
pub fn placement_snapshot<'a>(state: &'a State, scope: &Scope, cluster: &str) -> Snapshot<'a> {
    snapshot_with(state, scope, cluster, false)
}

fn snapshot_with<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
    per_task: bool,
) -> Snapshot<'a> {
    let records = state
        .instances_in(scope, cluster)
        .filter(|i| i.instance.status() != Some(RecordStatus::Inactive))
        .collect();
    snapshot_of(state, records, per_task)
}

/// The scheduler's view of `records` (each with its tasks' usage), and the records in the
/// same order.
pub(crate) fn snapshot_of<'a>(
    state: &State,
    records: Vec<&'a InstanceRecord>,
    per_task: bool,
) -> Snapshot<'a> {
    let instances = records
        .iter()
        .map(|i| instance_view_with(state, i, per_task))
        .collect();
    (ClusterSnapshot { instances }, records)
}
