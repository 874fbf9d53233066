//! The scheduler's input: an immutable view of the cluster and the tasks to
//! place. The caller (the control plane) builds these from its store; the
//! scheduler never reads anything else.

use std::collections::{BTreeMap, BTreeSet};

use model::wire::TransportProtocol;
use serde::{Deserialize, Serialize};

use crate::query::QueryTarget;

/// Container instance status, as ECS reports it. Only `Active` instances
/// receive tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceStatus {
    /// Accepting tasks.
    Active,
    /// Being drained: never chosen for new tasks.
    Draining,
    /// Registration in progress.
    Registering,
    /// Deregistration in progress.
    Deregistering,
    /// Registration failed.
    RegistrationFailed,
    /// Deregistered.
    Inactive,
}

/// A task already on an instance, as far as placement cares — or, with
/// `count > 1`, that many tasks of one group (placement only needs counts per
/// group, so a caller with many tasks may merge them; scale-in needs one entry
/// per task, with its ARN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Task ARN (empty for a merged entry).
    pub arn: String,
    /// Task group: `service:<name>` for service tasks, `family:<family>` by
    /// default for `RunTask`, or the caller-supplied group.
    pub group: String,
    /// How many tasks this entry stands for (at least 1).
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

impl TaskView {
    /// One task.
    pub fn new(arn: impl Into<String>, group: impl Into<String>) -> TaskView {
        TaskView {
            arn: arn.into(),
            group: group.into(),
            count: 1,
        }
    }
}

impl InstanceView {
    /// Tasks on the instance (merged entries counted fully).
    pub fn task_count(&self) -> u64 {
        self.tasks.iter().map(|t| u64::from(t.count)).sum()
    }

    /// Tasks of `group` on the instance.
    pub fn group_count(&self, group: &str) -> u64 {
        self.tasks
            .iter()
            .filter(|t| t.group == group)
            .map(|t| u64::from(t.count))
            .sum()
    }
}

/// Host ports, per protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPorts {
    /// TCP ports.
    pub tcp: BTreeSet<u16>,
    /// UDP ports.
    pub udp: BTreeSet<u16>,
}

impl HostPorts {
    /// The set for `protocol`.
    pub fn get(&self, protocol: TransportProtocol) -> &BTreeSet<u16> {
        match protocol {
            TransportProtocol::Tcp => &self.tcp,
            TransportProtocol::Udp => &self.udp,
        }
    }

    /// The set for `protocol`, mutably.
    pub fn get_mut(&mut self, protocol: TransportProtocol) -> &mut BTreeSet<u16> {
        match protocol {
            TransportProtocol::Tcp => &mut self.tcp,
            TransportProtocol::Udp => &mut self.udp,
        }
    }

    /// Whether `port` is in the set for `protocol`.
    pub fn contains(&self, protocol: TransportProtocol, port: u16) -> bool {
        self.get(protocol).contains(&port)
    }
}

/// An inclusive range of host ports from which dynamic host ports are
/// allocated (the agent's ephemeral range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// First port in the range.
    pub first: u16,
    /// Last port in the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// The ECS agent's default dynamic host port range, 49153–65535.
    pub const ECS_DEFAULT: PortRange = PortRange {
        first: 49153,
        last: 65535,
    };

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Number of ports in the range (0 if `first > last`).
    pub fn len(&self) -> u32 {
        if self.first > self.last {
            0
        } else {
            u32::from(self.last) - u32::from(self.first) + 1
        }
    }

    /// Whether the range holds no port.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::ECS_DEFAULT
    }
}

/// One container instance as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// Container instance ARN; placements name instances by it.
    pub arn: String,
    /// Container instance ID (the last part of the ARN). `spread(instanceId)`
    /// buckets by it.
    pub id: String,
    /// EC2 instance ID (or the host's equivalent), for `ec2InstanceId`.
    pub ec2_instance_id: Option<String>,
    /// Registration status.
    pub status: InstanceStatus,
    /// Whether the agent is connected; disconnected instances fail with `AGENT`.
    pub agent_connected: bool,
    /// Agent version, for `agentVersion`.
    pub agent_version: Option<String>,
    /// Registration time, seconds since the Unix epoch, for `registeredAt`.
    pub registered_at: Option<i64>,
    /// Attributes (`ecs.availability-zone`, `ecs.instance-type`, custom ...).
    pub attributes: BTreeMap<String, Option<String>>,
    /// CPU units still free.
    pub remaining_cpu: u32,
    /// Memory (MiB) still free.
    pub remaining_memory: u32,
    /// Host ports in use by tasks.
    pub used_ports: HostPorts,
    /// Host ports reserved on the instance (agent, SSH, ...).
    pub reserved_ports: HostPorts,
    /// Range from which dynamic host ports are drawn.
    pub dynamic_port_range: PortRange,
    /// Tasks on the instance (pending and running).
    pub tasks: Vec<TaskView>,
}

impl InstanceView {
    /// Whether `port`/`protocol` is used or reserved.
    pub fn port_taken(&self, protocol: TransportProtocol, port: u16) -> bool {
        self.used_ports.contains(protocol, port) || self.reserved_ports.contains(protocol, port)
    }
}

impl QueryTarget for InstanceView {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).map(|v| v.as_deref())
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.ec2_instance_id.as_deref()
    }
    fn agent_connected(&self) -> bool {
        self.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.agent_version.as_deref()
    }
    fn registered_at(&self) -> Option<i64> {
        self.registered_at
    }
    fn running_tasks_count(&self) -> u64 {
        self.task_count()
    }
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.tasks.iter().any(|t| pred(&t.group))
    }
}

/// An immutable view of one cluster's container instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// The instances, in a stable order (placements refer to them by index
    /// as well as by ARN).
    pub instances: Vec<InstanceView>,
}

impl ClusterSnapshot {
    /// Records a placement as if the plan had been applied: subtracts the
    /// request's resources, marks its host ports used and adds a task
    /// `task_arn` of the request's group. Used to chain plans (daemons
    /// before replicas) and by tests; the control plane applies plans to its
    /// store instead. Ignores a placement whose index is out of range.
    pub fn apply(
        &mut self,
        placement: &crate::place::Placement,
        request: &TaskRequest,
        task_arn: impl Into<String>,
    ) {
        let Some(inst) = self.instances.get_mut(placement.instance_index) else {
            return;
        };
        inst.remaining_cpu = inst.remaining_cpu.saturating_sub(request.cpu);
        inst.remaining_memory = inst.remaining_memory.saturating_sub(request.memory);
        for p in request.static_ports.iter().chain(&placement.dynamic_ports) {
            inst.used_ports.get_mut(p.protocol).insert(p.port);
        }
        inst.tasks
            .push(TaskView::new(task_arn, request.group.clone()));
    }
}

/// A host port a task asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HostPort {
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub protocol: TransportProtocol,
}

/// An instance attribute a task definition requires (`requiresAttributes`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequiredAttribute {
    /// Attribute name.
    pub name: String,
    /// Required value; `None` means "present with any value".
    pub value: Option<String>,
}

/// One task to place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRequest {
    /// CPU units.
    pub cpu: u32,
    /// Memory (MiB).
    pub memory: u32,
    /// Task group (see [`TaskView::group`]); `spread` and `distinctInstance`
    /// count tasks of this group.
    pub group: String,
    /// Fixed host ports (bridge/host mode `hostPort` ≠ 0).
    pub static_ports: Vec<HostPort>,
    /// One entry per dynamic host port (`hostPort` 0 in bridge mode), by
    /// protocol; the plan assigns the ports in this order.
    pub dynamic_ports: Vec<TransportProtocol>,
    /// Attributes the instance must have.
    pub required_attributes: Vec<RequiredAttribute>,
}

impl TaskRequest {
    /// A request for `cpu` units and `memory` MiB in `group`, with no ports
    /// or attribute requirements.
    pub fn new(group: impl Into<String>, cpu: u32, memory: u32) -> TaskRequest {
        TaskRequest {
            cpu,
            memory,
            group: group.into(),
            static_ports: Vec::new(),
            dynamic_ports: Vec::new(),
            required_attributes: Vec::new(),
        }
    }

    /// Whether the request needs any host port.
    pub fn needs_ports(&self) -> bool {
        !self.static_ports.is_empty() || !self.dynamic_ports.is_empty()
    }
}
