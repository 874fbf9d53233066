//! Test support in the style of Nomad's `scheduler/testing.go`: builders for
//! mock instances and requests, and a [`Harness`] that holds an in-memory
//! snapshot, runs the scheduler, re-checks every plan the way a plan applier
//! would, applies it, and records it.
//!
//! Compiled for this crate's tests and, for other crates, behind the
//! `testing` feature.

use std::collections::{BTreeMap, BTreeSet};

use model::wire::{
    PlacementConstraint, PlacementConstraintType, PlacementStrategy, PlacementStrategyType,
    TransportProtocol,
};

use crate::daemon::{DaemonPlan, daemon_placements};
use crate::place::{Outcome, Placement, Plan, place};
use crate::snapshot::{
    ClusterSnapshot, HostPort, HostPorts, InstanceStatus, InstanceView, PortRange,
    RequiredAttribute, TaskRequest, TaskView,
};
use crate::spec::{PlacementSpec, SpecError};

/// The ARN a mock instance with ID `id` gets.
pub fn instance_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:container-instance/default/{id}")
}

/// Builder for a mock [`InstanceView`]: ACTIVE, agent connected, 2048 CPU
/// units, 4096 MiB, `ecs.os-type=linux`, default dynamic port range.
#[derive(Debug, Clone)]
pub struct InstanceBuilder {
    view: InstanceView,
}

/// Starts a mock instance with container instance ID `id`.
pub fn instance(id: &str) -> InstanceBuilder {
    let mut attributes = BTreeMap::new();
    attributes.insert("ecs.os-type".to_string(), Some("linux".to_string()));
    InstanceBuilder {
        view: InstanceView {
            arn: instance_arn(id),
            id: id.to_string(),
            ec2_instance_id: Some(format!("i-{id}")),
            status: InstanceStatus::Active,
            agent_connected: true,
            agent_version: Some("1.80.0".to_string()),
            registered_at: Some(1_700_000_000),
            attributes,
            remaining_cpu: 2048,
            remaining_memory: 4096,
            used_ports: HostPorts::default(),
            reserved_ports: HostPorts::default(),
            dynamic_port_range: PortRange::ECS_DEFAULT,
            tasks: Vec::new(),
        },
    }
}

impl InstanceBuilder {
    /// Remaining CPU units.
    pub fn cpu(mut self, cpu: u32) -> Self {
        self.view.remaining_cpu = cpu;
        self
    }
    /// Remaining memory (MiB).
    pub fn memory(mut self, memory: u32) -> Self {
        self.view.remaining_memory = memory;
        self
    }
    /// Sets attribute `name` to `value`.
    pub fn attr(mut self, name: &str, value: &str) -> Self {
        self.view
            .attributes
            .insert(name.to_string(), Some(value.to_string()));
        self
    }
    /// Sets attribute `name` without a value.
    pub fn flag(mut self, name: &str) -> Self {
        self.view.attributes.insert(name.to_string(), None);
        self
    }
    /// `ecs.availability-zone`.
    pub fn az(self, zone: &str) -> Self {
        self.attr("ecs.availability-zone", zone)
    }
    /// `ecs.instance-type`.
    pub fn instance_type(self, t: &str) -> Self {
        self.attr("ecs.instance-type", t)
    }
    /// Registration status.
    pub fn status(mut self, status: InstanceStatus) -> Self {
        self.view.status = status;
        self
    }
    /// Marks the agent disconnected.
    pub fn disconnected(mut self) -> Self {
        self.view.agent_connected = false;
        self
    }
    /// Adds a task of `group` already on the instance.
    pub fn task(mut self, arn: &str, group: &str) -> Self {
        self.view.tasks.push(TaskView::new(arn, group));
        self
    }
    /// Marks a TCP port used.
    pub fn used_tcp(mut self, port: u16) -> Self {
        self.view.used_ports.tcp.insert(port);
        self
    }
    /// Marks a UDP port used.
    pub fn used_udp(mut self, port: u16) -> Self {
        self.view.used_ports.udp.insert(port);
        self
    }
    /// Reserves a TCP port.
    pub fn reserved_tcp(mut self, port: u16) -> Self {
        self.view.reserved_ports.tcp.insert(port);
        self
    }
    /// Sets the dynamic port range.
    pub fn dynamic_range(mut self, first: u16, last: u16) -> Self {
        self.view.dynamic_port_range = PortRange { first, last };
        self
    }
    /// The instance.
    pub fn build(self) -> InstanceView {
        self.view
    }
}

/// A request for `cpu` units and `memory` MiB in `group`.
pub fn task(group: &str, cpu: u32, memory: u32) -> TaskRequest {
    TaskRequest::new(group, cpu, memory)
}

/// Request decorations for tests.
pub trait TaskRequestExt {
    /// Adds a static host port.
    fn static_port(self, port: u16, protocol: TransportProtocol) -> Self;
    /// Adds a dynamic host port.
    fn dynamic_port(self, protocol: TransportProtocol) -> Self;
    /// Requires an attribute (with a value, or any value for `None`).
    fn requires(self, name: &str, value: Option<&str>) -> Self;
}

impl TaskRequestExt for TaskRequest {
    fn static_port(mut self, port: u16, protocol: TransportProtocol) -> Self {
        self.static_ports.push(HostPort { port, protocol });
        self
    }
    fn dynamic_port(mut self, protocol: TransportProtocol) -> Self {
        self.dynamic_ports.push(protocol);
        self
    }
    fn requires(mut self, name: &str, value: Option<&str>) -> Self {
        self.required_attributes.push(RequiredAttribute {
            name: name.to_string(),
            value: value.map(str::to_string),
        });
        self
    }
}

/// Builds a spec from compact strings: strategies `binpack:memory`,
/// `spread:attribute:ecs.availability-zone`, `spread:instanceId`, `random`;
/// constraints `distinctInstance`, `memberOf:<expression>`. Goes through the
/// wire shapes, so it exercises [`PlacementSpec::from_wire`].
///
/// # Errors
///
/// The [`SpecError`] `from_wire` reports.
pub fn spec(strategies: &[&str], constraints: &[&str]) -> Result<PlacementSpec, SpecError> {
    let strategies: Vec<PlacementStrategy> = strategies
        .iter()
        .map(|s| {
            let (t, field) = s
                .split_once(':')
                .map_or((*s, None), |(t, f)| (t, Some(f.to_string())));
            PlacementStrategy {
                r#type: PlacementStrategyType::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_str() == t),
                field,
            }
        })
        .collect();
    let constraints: Vec<PlacementConstraint> = constraints
        .iter()
        .map(|c| {
            let (t, expression) = c
                .split_once(':')
                .map_or((*c, None), |(t, e)| (t, Some(e.to_string())));
            PlacementConstraint {
                r#type: PlacementConstraintType::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_str() == t),
                expression,
            }
        })
        .collect();
    PlacementSpec::from_wire(&strategies, &[], &constraints)
}

/// Why the harness's applier refused a plan: the scheduler over-committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The placement names an instance that is not in the snapshot.
    #[error("request {request}: instance index {index} out of range")]
    NoSuchInstance {
        /// Request index.
        request: usize,
        /// The bad index.
        index: usize,
    },
    /// The placement picked an instance that is not ACTIVE or not connected.
    #[error("request {request}: instance {arn} cannot take tasks")]
    Unusable {
        /// Request index.
        request: usize,
        /// Instance ARN.
        arn: String,
    },
    /// Not enough CPU or memory left.
    #[error("request {request}: instance {arn} over-committed ({what})")]
    OverCommitted {
        /// Request index.
        request: usize,
        /// Instance ARN.
        arn: String,
        /// `cpu` or `memory`.
        what: &'static str,
    },
    /// A host port was already taken, or a dynamic one is outside the range.
    #[error("request {request}: instance {arn} port {port} conflict")]
    PortConflict {
        /// Request index.
        request: usize,
        /// Instance ARN.
        arn: String,
        /// The port.
        port: u16,
    },
    /// The wrong number of dynamic ports was assigned.
    #[error("request {request}: {got} dynamic ports assigned, {want} requested")]
    DynamicPortCount {
        /// Request index.
        request: usize,
        /// Assigned.
        got: usize,
        /// Requested.
        want: usize,
    },
}

/// An in-memory cluster plus a recording, re-checking plan applier.
#[derive(Debug, Clone, Default)]
pub struct Harness {
    /// The current state; plans are applied to it.
    pub snapshot: ClusterSnapshot,
    /// Every plan produced, in order.
    pub plans: Vec<Plan>,
    /// Every daemon plan produced, in order.
    pub daemon_plans: Vec<DaemonPlan>,
    next_task: u64,
}

impl Harness {
    /// A harness over `instances`.
    pub fn new(instances: impl IntoIterator<Item = InstanceView>) -> Harness {
        Harness {
            snapshot: ClusterSnapshot {
                instances: instances.into_iter().collect(),
            },
            ..Harness::default()
        }
    }

    /// Adds an instance (e.g. one that just registered).
    pub fn add_instance(&mut self, instance: InstanceView) {
        self.snapshot.instances.push(instance);
    }

    /// Runs [`place`], checks and applies the plan, records it and returns it.
    ///
    /// # Errors
    ///
    /// The first over-commitment found; the snapshot is then left with the
    /// placements before it applied.
    pub fn place(
        &mut self,
        requests: &[TaskRequest],
        spec: &PlacementSpec,
        seed: u64,
    ) -> Result<&Plan, ApplyError> {
        let plan = place(&self.snapshot, requests, spec, seed);
        for (r, p) in plan.placed() {
            self.apply(r, p, &requests[r])?;
        }
        self.plans.push(plan);
        let last = self.plans.len() - 1;
        Ok(&self.plans[last])
    }

    /// Runs [`daemon_placements`], checks and applies it, records it.
    ///
    /// # Errors
    ///
    /// As for [`Harness::place`].
    pub fn place_daemon(
        &mut self,
        request: &TaskRequest,
        spec: &PlacementSpec,
    ) -> Result<&DaemonPlan, ApplyError> {
        let plan = daemon_placements(&self.snapshot, request, spec);
        for (r, p) in plan.placements.iter().enumerate() {
            self.apply(r, p, request)?;
        }
        self.daemon_plans.push(plan);
        let last = self.daemon_plans.len() - 1;
        Ok(&self.daemon_plans[last])
    }

    /// Re-checks one placement against the current state (as a plan applier
    /// would) and applies it.
    fn apply(
        &mut self,
        request: usize,
        p: &Placement,
        req: &TaskRequest,
    ) -> Result<(), ApplyError> {
        let inst =
            self.snapshot
                .instances
                .get(p.instance_index)
                .ok_or(ApplyError::NoSuchInstance {
                    request,
                    index: p.instance_index,
                })?;
        let arn = inst.arn.clone();
        if inst.status != InstanceStatus::Active || !inst.agent_connected || p.instance_arn != arn {
            return Err(ApplyError::Unusable { request, arn });
        }
        if inst.remaining_cpu < req.cpu {
            return Err(ApplyError::OverCommitted {
                request,
                arn,
                what: "cpu",
            });
        }
        if inst.remaining_memory < req.memory {
            return Err(ApplyError::OverCommitted {
                request,
                arn,
                what: "memory",
            });
        }
        if p.dynamic_ports.len() != req.dynamic_ports.len() {
            return Err(ApplyError::DynamicPortCount {
                request,
                got: p.dynamic_ports.len(),
                want: req.dynamic_ports.len(),
            });
        }
        let mut seen: BTreeSet<HostPort> = BTreeSet::new();
        for (k, hp) in req.static_ports.iter().chain(&p.dynamic_ports).enumerate() {
            let dynamic = k >= req.static_ports.len();
            let bad_range = dynamic && !inst.dynamic_port_range.contains(hp.port);
            let bad_proto = dynamic && req.dynamic_ports[k - req.static_ports.len()] != hp.protocol;
            if inst.port_taken(hp.protocol, hp.port) || !seen.insert(*hp) || bad_range || bad_proto
            {
                return Err(ApplyError::PortConflict {
                    request,
                    arn,
                    port: hp.port,
                });
            }
        }
        self.next_task += 1;
        let task_arn = format!(
            "arn:aws:ecs:us-east-1:123456789012:task/default/t{}",
            self.next_task
        );
        self.snapshot.apply(p, req, task_arn);
        Ok(())
    }

    /// Instance IDs chosen by the last plan, in request order (`None` for
    /// failures).
    pub fn last_choices(&self) -> Vec<Option<String>> {
        self.plans.last().map_or_else(Vec::new, |plan| {
            plan.outcomes
                .iter()
                .map(|o| match o {
                    Outcome::Placed(p) => {
                        Some(self.snapshot.instances[p.instance_index].id.clone())
                    }
                    Outcome::Failed(_) => None,
                })
                .collect()
        })
    }

    /// Number of tasks of `group` per instance ID.
    pub fn tasks_per_instance(&self, group: &str) -> BTreeMap<String, usize> {
        self.snapshot
            .instances
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    usize::try_from(i.group_count(group)).unwrap_or(usize::MAX),
                )
            })
            .collect()
    }

    /// Number of tasks of `group` per value of attribute `name`.
    pub fn tasks_per_attribute(&self, group: &str, name: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for i in &self.snapshot.instances {
            let v = i
                .attributes
                .get(name)
                .cloned()
                .flatten()
                .unwrap_or_default();
            *out.entry(v).or_insert(0) +=
                usize::try_from(i.group_count(group)).unwrap_or(usize::MAX);
        }
        out
    }
}
