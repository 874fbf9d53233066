//! Feasibility: whether an instance can take a request, given the
//! placements made earlier in the same call.
//!
//! Two forms of the same filters:
//!
//! - [`Engine::check`] runs every filter in the canonical order ECS reports
//!   (agent, required attributes, `memberOf`, `distinctInstance`, CPU,
//!   memory, TCP ports, UDP ports) and names the first one that fails. DAEMON
//!   placement and failure diagnosis use it.
//! - [`Engine::fit`] is selection's fast path: the static filters (agent,
//!   static `memberOf`, required attributes) were evaluated once per instance
//!   by [`Engine::new`] ([`Engine::passes_static`]), so it checks only what
//!   placements change, cheapest first, and says whether a miss is final for
//!   the call ([`Fit`]).
//!
//! `memberOf` queries that mention tasks are evaluated on a
//! [`LiveInstance`], the snapshot instance plus this call's placements.

use model::wire::TransportProtocol;

use super::engine::{Engine, GroupState, proto_index};
use super::failure::FailureReason;
use crate::query::QueryTarget;
use crate::snapshot::{InstanceView, RequiredAttribute, TaskRequest};

/// What the per-placement filters say about one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fit {
    /// It can take the request.
    Yes,
    /// It cannot, and cannot take any later request of this call either
    /// (resources ran out and every request has the same shape).
    Never,
    /// It cannot take any later request of this call *in the same group*
    /// (`distinctInstance`).
    NeverForGroup,
    /// It cannot now; a later placement may change that (`task:group`).
    NotNow,
}

/// A [`QueryTarget`] that adds this call's placements to a snapshot instance.
pub(super) struct LiveInstance<'e> {
    inst: &'e InstanceView,
    added: &'e [u32],
    names: &'e [String],
}

impl QueryTarget for LiveInstance<'_> {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.inst.attribute(name)
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.inst.ec2_instance_id()
    }
    fn agent_connected(&self) -> bool {
        self.inst.agent_connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.inst.agent_version()
    }
    fn registered_at(&self) -> Option<i64> {
        self.inst.registered_at
    }
    fn running_tasks_count(&self) -> u64 {
        self.inst.task_count() + self.added.len() as u64
    }
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.inst.any_task_group(pred)
            || self
                .added
                .iter()
                .any(|g| self.names.get(*g as usize).is_some_and(|n| pred(n)))
    }
}

/// Whether `inst` has every attribute in `required` (with the required
/// value, where one is given).
pub(super) fn has_attributes(inst: &InstanceView, required: &[RequiredAttribute]) -> bool {
    required.iter().all(|r| match inst.attributes.get(&r.name) {
        None => false,
        Some(have) => r.value.is_none() || have.as_deref() == r.value.as_deref(),
    })
}

impl Engine<'_> {
    fn live(&self, i: usize) -> LiveInstance<'_> {
        LiveInstance {
            inst: &self.snap.instances[i],
            added: &self.added_groups[i],
            names: &self.group_names,
        }
    }

    /// The static filters, evaluated once per call: agent connected, every
    /// static `memberOf`, and (with `mask`, from [`Engine::attribute_mask`])
    /// the required attributes.
    pub(super) fn passes_static(&self, i: usize, mask: Option<usize>) -> bool {
        self.base_ok[i] && mask.is_none_or(|m| self.masks[m][i])
    }

    /// Whether every `memberOf` query that mentions tasks holds for instance
    /// `i`, counting this call's placements.
    fn member_of_now(&self, i: usize) -> bool {
        if self.dynamic_queries.is_empty() {
            return true;
        }
        let live = self.live(i);
        self.dynamic_queries.iter().all(|q| q.matches(&live))
    }

    pub(super) fn port_taken(&self, i: usize, proto: TransportProtocol, port: u16) -> bool {
        self.snap.instances[i].port_taken(proto, port)
            || self.added_ports[i]
                .as_ref()
                .is_some_and(|a| a.contains(proto, port))
    }

    /// `Ok` or the protocol that does not fit.
    fn ports_fit(&self, i: usize, req: &TaskRequest) -> Result<(), TransportProtocol> {
        for (k, sp) in req.static_ports.iter().enumerate() {
            if self.port_taken(i, sp.protocol, sp.port) || req.static_ports[..k].contains(sp) {
                return Err(sp.protocol);
            }
        }
        if req.dynamic_ports.is_empty() {
            return Ok(());
        }
        let range = self.snap.instances[i].dynamic_port_range;
        for proto in [TransportProtocol::Tcp, TransportProtocol::Udp] {
            let need = req.dynamic_ports.iter().filter(|p| **p == proto).count();
            if need == 0 {
                continue;
            }
            let statics_in_range = req
                .static_ports
                .iter()
                .filter(|sp| sp.protocol == proto && range.contains(sp.port))
                .count();
            let free = self.free_dynamic[proto_index(proto)]
                .get(i)
                .copied()
                .unwrap_or(0) as usize;
            if free < need + statics_in_range {
                return Err(proto);
            }
        }
        Ok(())
    }

    /// The filters in canonical order; `Ok` when the instance can take `req`.
    pub(crate) fn check(&self, i: usize, req: &TaskRequest, gid: u32) -> Result<(), FailureReason> {
        let inst = &self.snap.instances[i];
        if !inst.agent_connected {
            return Err(FailureReason::Agent);
        }
        if !has_attributes(inst, &req.required_attributes) {
            return Err(FailureReason::Attribute);
        }
        if !self.static_queries.iter().all(|q| q.matches(inst)) {
            return Err(FailureReason::MemberOf);
        }
        if !self.member_of_now(i) {
            return Err(FailureReason::MemberOf);
        }
        if self.distinct && self.groups[gid as usize].per_instance[i] > 0 {
            return Err(FailureReason::DistinctInstance);
        }
        if self.cpu[i] < req.cpu {
            return Err(FailureReason::Cpu);
        }
        if self.mem[i] < req.memory {
            return Err(FailureReason::Memory);
        }
        self.ports_fit(i, req).map_err(|p| match p {
            TransportProtocol::Tcp => FailureReason::Ports,
            TransportProtocol::Udp => FailureReason::PortsUdp,
        })
    }

    /// Every filter except the static ones ([`Engine::passes_static`]).
    pub(super) fn fit(&self, i: usize, req: &TaskRequest, group: &GroupState) -> Fit {
        // Resources and ports only shrink during a call, so when every
        // request has the same shape a miss is final.
        let resource_miss = if self.uniform_requests {
            Fit::Never
        } else {
            Fit::NotNow
        };
        if self.cpu[i] < req.cpu || self.mem[i] < req.memory {
            return resource_miss;
        }
        if self.distinct && group.per_instance[i] > 0 {
            // Group counts only grow.
            return Fit::NeverForGroup;
        }
        if req.needs_ports() && self.ports_fit(i, req).is_err() {
            return resource_miss;
        }
        if !self.member_of_now(i) {
            return Fit::NotNow;
        }
        Fit::Yes
    }
}
