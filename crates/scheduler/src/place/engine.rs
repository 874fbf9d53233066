//! The working state of one placement call: the [`Engine`].
//!
//! [`Engine::new`] copies what placements change (remaining CPU and memory,
//! ports, per-group task counts) out of the snapshot, evaluates the static
//! filters once per instance, assigns attribute-spread values and cells and
//! draws the seeded tie-break. [`Engine::place_one`] then runs one request
//! through select (`select.rs`) and either reserves the result with
//! [`Engine::commit`] or explains the failure (`failure.rs`). The snapshot
//! itself is never modified.
//!
//! The filters live in `feasible.rs`, the ranking key in `rank.rs`, the
//! per-cell sorted index in `index.rs`: each adds an `impl Engine` block
//! over the fields declared here.

use std::collections::HashMap;

use model::wire::TransportProtocol;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::failure::PlacementFailure;
use super::feasible::has_attributes;
use super::index::Index;
use super::plan::Placement;
use super::rank::KEY_LEN;
use crate::query::Query;
use crate::snapshot::{
    ClusterSnapshot, HostPort, HostPorts, InstanceStatus, InstanceView, RequiredAttribute,
    TaskRequest,
};
use crate::spec::{BinpackField, PlacementSpec, SpreadField, Strategy};

/// Per-group counters.
pub(super) struct GroupState {
    /// Tasks of this group per instance.
    pub(super) per_instance: Vec<u32>,
    /// For each effective strategy that spreads over an attribute, tasks of
    /// this group per attribute value id (empty vectors for others).
    pub(super) per_value: Vec<Vec<u32>>,
}

/// The working state of one placement call.
pub(crate) struct Engine<'a> {
    pub(super) snap: &'a ClusterSnapshot,
    pub(super) strategies: &'a [Strategy],
    pub(super) distinct: bool,
    pub(super) static_queries: Vec<&'a Query>,
    pub(super) dynamic_queries: Vec<&'a Query>,
    /// Indices of ACTIVE instances.
    pub(super) active: Vec<u32>,
    /// Agent connected and every static `memberOf` holds.
    pub(super) base_ok: Vec<bool>,
    pub(super) cpu: Vec<u32>,
    pub(super) mem: Vec<u32>,
    /// Ports taken by placements of this call.
    pub(super) added_ports: Vec<Option<Box<HostPorts>>>,
    /// Free ports in the dynamic range, [tcp, udp], if any request needs them.
    pub(super) free_dynamic: [Vec<u32>; 2],
    /// Groups of tasks placed by this call, per instance (group ids).
    pub(super) added_groups: Vec<Vec<u32>>,
    pub(super) group_ids: HashMap<String, u32>,
    pub(super) group_names: Vec<String>,
    pub(super) groups: Vec<GroupState>,
    /// Attribute value id per instance for each effective strategy that
    /// spreads over an attribute (empty for others).
    pub(super) spread_values: Vec<Vec<u32>>,
    pub(super) spread_value_count: Vec<usize>,
    /// Random tie-break, unique per instance.
    pub(super) tiebreak: Vec<u64>,
    /// Whether selection uses the sorted per-cell indexes (no `random`).
    pub(super) use_index: bool,
    /// Cell of each instance: instances in one cell share every
    /// attribute-spread value.
    pub(super) cell_of: Vec<u32>,
    /// For each cell, the attribute value id per strategy (0 where the
    /// strategy is not an attribute spread).
    pub(super) cell_values: Vec<Vec<u32>>,
    /// How many leading strategies are attribute spreads (cell-level).
    pub(super) prefix_len: usize,
    /// The first per-instance strategy, when it is a binpack (lets the
    /// index skip instances with too little of that resource).
    pub(super) per_instance_first: Option<BinpackField>,
    /// Whether the chain is attribute spreads then `random`, selected by
    /// sampling cells (see [`Engine::select_random_sampled`]).
    pub(super) random_cells: bool,
    /// ACTIVE instances of each cell.
    pub(super) cell_members: Vec<Vec<u32>>,
    pub(super) indexes: Vec<Index>,
    pub(super) index_ids: HashMap<(u32, Option<usize>), usize>,
    /// Masks of instances having a set of required attributes, by set.
    pub(super) attribute_masks: HashMap<Vec<RequiredAttribute>, usize>,
    pub(super) masks: Vec<Vec<bool>>,
    pub(super) rng: StdRng,
    /// Whether every request of the call has the same cpu, memory and
    /// ports (then a resource miss is final; see
    /// [`Fit::Never`](super::feasible::Fit::Never)).
    pub(super) uniform_requests: bool,
    /// Placements made so far.
    pub(crate) placements: u64,
}

/// Slot of `p` in per-protocol arrays such as [`Engine::free_dynamic`].
pub(super) fn proto_index(p: TransportProtocol) -> usize {
    match p {
        TransportProtocol::Tcp => 0,
        TransportProtocol::Udp => 1,
    }
}

fn count_dynamic_free(inst: &InstanceView, proto: TransportProtocol) -> u32 {
    let range = inst.dynamic_port_range;
    if range.is_empty() {
        return 0;
    }
    let used = inst.used_ports.get(proto);
    let taken_used = used.range(range.first..=range.last).count();
    let taken_reserved = inst
        .reserved_ports
        .get(proto)
        .range(range.first..=range.last)
        .filter(|p| !used.contains(p))
        .count();
    let taken = u32::try_from(taken_used + taken_reserved).unwrap_or(u32::MAX);
    range.len().saturating_sub(taken)
}

impl<'a> Engine<'a> {
    pub(crate) fn new(
        snap: &'a ClusterSnapshot,
        spec: &'a PlacementSpec,
        seed: u64,
        needs_dynamic: bool,
    ) -> Engine<'a> {
        let n = snap.instances.len();
        let mut rng = StdRng::seed_from_u64(seed);
        let (dynamic_queries, static_queries): (Vec<&Query>, Vec<&Query>) =
            spec.member_of().partition(|q| q.depends_on_tasks());
        let active: Vec<u32> = snap
            .instances
            .iter()
            .enumerate()
            .filter(|(_, inst)| inst.status == InstanceStatus::Active)
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect();
        let base_ok: Vec<bool> = snap
            .instances
            .iter()
            .map(|inst| inst.agent_connected && static_queries.iter().all(|q| q.matches(inst)))
            .collect();
        let strategies = spec.effective_strategies();
        let mut spread_values = Vec::with_capacity(strategies.len());
        let mut spread_value_count = Vec::with_capacity(strategies.len());
        for s in strategies {
            if let Strategy::Spread(SpreadField::Attribute(name)) = s {
                let mut ids: HashMap<Option<&str>, u32> = HashMap::new();
                let values = snap
                    .instances
                    .iter()
                    .map(|inst| {
                        let v = inst
                            .attributes
                            .get(name)
                            .map(|v| v.as_deref().unwrap_or(""));
                        let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                        *ids.entry(v).or_insert(next)
                    })
                    .collect();
                spread_values.push(values);
                spread_value_count.push(ids.len());
            } else {
                spread_values.push(Vec::new());
                spread_value_count.push(0);
            }
        }
        let tiebreak = (0..n as u64)
            .map(|i| (u64::from(rng.random::<u32>()) << 32) | (i & 0xFFFF_FFFF))
            .collect();
        let use_index = !strategies.contains(&Strategy::Random);
        let mut cell_ids: HashMap<[u32; KEY_LEN], u32> = HashMap::new();
        let mut cell_values = Vec::new();
        let cell_of: Vec<u32> = (0..n)
            .map(|i| {
                let mut values = [0u32; KEY_LEN];
                for (slot, v) in values.iter_mut().zip(&spread_values) {
                    *slot = v.get(i).copied().unwrap_or(0);
                }
                *cell_ids.entry(values).or_insert_with(|| {
                    cell_values.push(values[..strategies.len()].to_vec());
                    u32::try_from(cell_values.len() - 1).unwrap_or(u32::MAX)
                })
            })
            .collect();
        if cell_values.is_empty() {
            cell_values.push(vec![0; strategies.len()]);
        }
        let prefix_len = strategies
            .iter()
            .take_while(|s| matches!(s, Strategy::Spread(SpreadField::Attribute(_))))
            .count();
        let random_cells =
            strategies.last() == Some(&Strategy::Random) && prefix_len + 1 == strategies.len();
        let mut cell_members = vec![Vec::new(); cell_values.len()];
        for &i in &active {
            if let Some(c) = cell_of.get(i as usize)
                && base_ok[i as usize]
            {
                cell_members[*c as usize].push(i);
            }
        }
        let per_instance_first = strategies.iter().find_map(|s| match s {
            Strategy::Spread(SpreadField::Attribute(_)) => None,
            Strategy::Binpack(f) => Some(Some(*f)),
            Strategy::Spread(SpreadField::InstanceId) | Strategy::Random => Some(None),
        });
        let free_dynamic = if needs_dynamic {
            [TransportProtocol::Tcp, TransportProtocol::Udp].map(|p| {
                snap.instances
                    .iter()
                    .map(|inst| count_dynamic_free(inst, p))
                    .collect()
            })
        } else {
            [Vec::new(), Vec::new()]
        };
        Engine {
            snap,
            strategies,
            distinct: spec.distinct_instance(),
            static_queries,
            dynamic_queries,
            active,
            base_ok,
            cpu: snap.instances.iter().map(|i| i.remaining_cpu).collect(),
            mem: snap.instances.iter().map(|i| i.remaining_memory).collect(),
            added_ports: vec![None; n],
            free_dynamic,
            added_groups: vec![Vec::new(); n],
            group_ids: HashMap::new(),
            group_names: Vec::new(),
            groups: Vec::new(),
            spread_values,
            spread_value_count,
            tiebreak,
            use_index,
            cell_of,
            cell_values,
            prefix_len,
            random_cells,
            cell_members,
            per_instance_first: per_instance_first.flatten(),
            indexes: Vec::new(),
            index_ids: HashMap::new(),
            attribute_masks: HashMap::new(),
            masks: Vec::new(),
            rng,
            uniform_requests: false,
            placements: 0,
        }
    }

    /// Whether the cluster has any ACTIVE instance.
    pub(crate) fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Indices of the ACTIVE instances, in snapshot order.
    pub(crate) fn active(&self) -> impl Iterator<Item = usize> + '_ {
        self.active.iter().map(|&i| i as usize)
    }

    /// The id of group `name`, counting its tasks per instance and per
    /// attribute-spread value on first use.
    pub(crate) fn group_id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.group_ids.get(name) {
            return *id;
        }
        let mut per_instance = Vec::with_capacity(self.snap.instances.len());
        for inst in &self.snap.instances {
            let c = inst.group_count(name);
            per_instance.push(u32::try_from(c).unwrap_or(u32::MAX));
        }
        let per_value = self
            .spread_values
            .iter()
            .zip(&self.spread_value_count)
            .map(|(values, &count)| {
                let mut counts = vec![0u32; count];
                for (i, v) in values.iter().enumerate() {
                    if let Some(slot) = counts.get_mut(*v as usize) {
                        *slot += per_instance[i];
                    }
                }
                counts
            })
            .collect();
        let id = u32::try_from(self.groups.len()).unwrap_or(u32::MAX);
        self.groups.push(GroupState {
            per_instance,
            per_value,
        });
        self.group_names.push(name.to_string());
        self.group_ids.insert(name.to_string(), id);
        id
    }

    /// Tasks of group `gid` on instance `i`, including this call's.
    pub(crate) fn group_count(&self, gid: u32, i: usize) -> u32 {
        self.groups
            .get(gid as usize)
            .and_then(|g| g.per_instance.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Index into `masks` of the instances having `required`, or `None`
    /// when nothing is required.
    pub(super) fn attribute_mask(&mut self, required: &[RequiredAttribute]) -> Option<usize> {
        if required.is_empty() {
            return None;
        }
        if let Some(id) = self.attribute_masks.get(required) {
            return Some(*id);
        }
        let mask = self
            .snap
            .instances
            .iter()
            .map(|inst| has_attributes(inst, required))
            .collect();
        let id = self.masks.len();
        self.masks.push(mask);
        self.attribute_masks.insert(required.to_vec(), id);
        Some(id)
    }

    /// Places one request: the best feasible instance, reserved, or why
    /// there is none.
    pub(super) fn place_one(&mut self, req: &TaskRequest) -> Result<Placement, PlacementFailure> {
        if !self.has_active() {
            return Err(PlacementFailure::no_instances());
        }
        let gid = self.group_id(&req.group);
        match self.select(req, gid) {
            Some(i) => Ok(self.commit(i, req, gid)),
            None => Err(self.diagnose(req, gid)),
        }
    }

    /// Reserves `req` on instance `i` and returns the placement.
    pub(crate) fn commit(&mut self, i: usize, req: &TaskRequest, gid: u32) -> Placement {
        self.cpu[i] = self.cpu[i].saturating_sub(req.cpu);
        self.mem[i] = self.mem[i].saturating_sub(req.memory);
        let group = &mut self.groups[gid as usize];
        group.per_instance[i] += 1;
        for (k, values) in self.spread_values.iter().enumerate() {
            if let Some(&v) = values.get(i)
                && let Some(c) = group.per_value[k].get_mut(v as usize)
            {
                *c += 1;
            }
        }
        self.added_groups[i].push(gid);
        let mut dynamic_ports = Vec::with_capacity(req.dynamic_ports.len());
        if req.needs_ports() {
            let range = self.snap.instances[i].dynamic_port_range;
            for sp in &req.static_ports {
                self.take_port(i, sp.protocol, sp.port, range.contains(sp.port));
            }
            for &proto in &req.dynamic_ports {
                let port = (range.first..=range.last).find(|&p| !self.port_taken(i, proto, p));
                if let Some(port) = port {
                    self.take_port(i, proto, port, true);
                    dynamic_ports.push(HostPort {
                        port,
                        protocol: proto,
                    });
                }
            }
        }
        self.placements += 1;
        if self.use_index {
            self.reindex(i);
        }
        Placement {
            instance_index: i,
            instance_arn: self.snap.instances[i].arn.clone(),
            dynamic_ports,
        }
    }

    fn take_port(&mut self, i: usize, proto: TransportProtocol, port: u16, in_dynamic_range: bool) {
        self.added_ports[i]
            .get_or_insert_with(Default::default)
            .get_mut(proto)
            .insert(port);
        if in_dynamic_range && let Some(free) = self.free_dynamic[proto_index(proto)].get_mut(i) {
            *free = free.saturating_sub(1);
        }
    }
}
