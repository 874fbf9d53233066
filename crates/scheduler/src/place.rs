//! Replica placement: feasibility filters → rankers → select.
//!
//! [`place`] walks the requests in order. For each one it scans the ACTIVE
//! instances once, drops those that fail a filter (agent, attributes,
//! `memberOf`, `distinctInstance`, CPU, memory, ports), ranks the rest by the
//! strategy chain as a lexicographic key, and takes the smallest key. The
//! chosen instance's remaining resources, ports and group counts are then
//! updated in the engine's own working copy, so later requests of the same
//! call see earlier placements. The snapshot itself is never modified.
//!
//! When nothing fits, a second, slower pass over the instances records why
//! each was rejected; that is what [`PlacementFailure`] reports.

use std::collections::{BTreeSet, HashMap};

use model::wire::{Failure, TransportProtocol};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::query::{Query, QueryTarget};
use crate::snapshot::{
    ClusterSnapshot, HostPort, HostPorts, InstanceStatus, InstanceView, RequiredAttribute,
    TaskRequest,
};
use crate::spec::{BinpackField, PlacementSpec, SpreadField, Strategy};

/// Why an instance could not take a task, with the spelling ECS uses in
/// `Failure.reason` (see [`FailureReason::as_str`]). Variants are ordered by
/// the filter that produces them: an instance rejected for `Memory` passed
/// every earlier check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FailureReason {
    /// The cluster has no ACTIVE container instance at all.
    NoContainerInstances,
    /// The instance's agent is disconnected (`AGENT`).
    Agent,
    /// The instance lacks an attribute the task definition requires (`ATTRIBUTE`).
    Attribute,
    /// A `memberOf` constraint excluded the instance.
    MemberOf,
    /// The instance already runs a task of the same group.
    DistinctInstance,
    /// Not enough CPU (`RESOURCE:CPU`).
    Cpu,
    /// Not enough memory (`RESOURCE:MEMORY`).
    Memory,
    /// A TCP host port is taken or no dynamic TCP port is free (`RESOURCE:PORTS`).
    Ports,
    /// A UDP host port is taken or no dynamic UDP port is free (`RESOURCE:PORTS_UDP`).
    PortsUdp,
}

impl FailureReason {
    /// The ECS spelling, for `Failure.reason` and service event messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NoContainerInstances => {
                "No Container Instances were found in your cluster."
            }
            FailureReason::Agent => "AGENT",
            FailureReason::Attribute => "ATTRIBUTE",
            FailureReason::MemberOf => "MemberOf placement constraint unsatisfied.",
            FailureReason::DistinctInstance => "DistinctInstance placement constraint unsatisfied.",
            FailureReason::Cpu => "RESOURCE:CPU",
            FailureReason::Memory => "RESOURCE:MEMORY",
            FailureReason::Ports => "RESOURCE:PORTS",
            FailureReason::PortsUdp => "RESOURCE:PORTS_UDP",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A successful placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Index of the chosen instance in [`ClusterSnapshot::instances`].
    pub instance_index: usize,
    /// ARN of the chosen instance.
    pub instance_arn: String,
    /// The host ports picked for [`TaskRequest::dynamic_ports`], in the same
    /// order, from the instance's dynamic port range.
    pub dynamic_ports: Vec<HostPort>,
}

/// How many instances were rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The reason.
    pub reason: FailureReason,
    /// How many ACTIVE instances failed first on it.
    pub instances: usize,
    /// One of them (the first in snapshot order), for `Failure.arn`.
    pub example_instance_arn: String,
}

/// Why a request could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementFailure {
    /// Rejections grouped by reason, in filter order. Empty only together
    /// with [`FailureReason::NoContainerInstances`] in `closest`.
    pub rejections: Vec<Rejection>,
    /// The instance that got furthest through the filters and the reason it
    /// failed (ECS's "closest matching container-instance"); without an
    /// ARN when the cluster has no ACTIVE instance.
    pub closest: (Option<String>, FailureReason),
}

impl PlacementFailure {
    fn no_instances() -> PlacementFailure {
        PlacementFailure {
            rejections: Vec::new(),
            closest: (None, FailureReason::NoContainerInstances),
        }
    }

    /// The reason of the closest instance.
    pub fn reason(&self) -> FailureReason {
        self.closest.1
    }

    /// `RunTask`-style failures: one per rejection reason, naming an
    /// instance that failed on it (or, with no instances, one failure with no
    /// ARN).
    pub fn to_wire(&self) -> Vec<Failure> {
        if self.rejections.is_empty() {
            return vec![Failure {
                arn: None,
                reason: Some(self.closest.1.as_str().to_string()),
                detail: None,
            }];
        }
        self.rejections
            .iter()
            .map(|r| Failure {
                arn: Some(r.example_instance_arn.clone()),
                reason: Some(r.reason.as_str().to_string()),
                detail: None,
            })
            .collect()
    }

    /// The service-event sentence ECS writes for an unplaceable task,
    /// starting after "service NAME was unable to place a task because ".
    pub fn message(&self) -> String {
        match &self.closest {
            (Some(arn), reason) => format!(
                "no container instance met all of its requirements. The closest matching \
                 (container-instance {arn}) encountered error \"{reason}\"."
            ),
            (None, reason) => {
                format!("no container instance met all of its requirements. Reason: {reason}")
            }
        }
    }
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Placed.
    Placed(Placement),
    /// Not placed; nothing was reserved for it.
    Failed(PlacementFailure),
}

/// The result of [`place`]: one outcome per request, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Outcomes, parallel to the requests.
    pub outcomes: Vec<Outcome>,
}

impl Plan {
    /// The successful placements with their request index.
    pub fn placed(&self) -> impl Iterator<Item = (usize, &Placement)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Outcome::Placed(p) => Some((i, p)),
                Outcome::Failed(_) => None,
            })
    }

    /// The failures with their request index.
    pub fn failed(&self) -> impl Iterator<Item = (usize, &PlacementFailure)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Outcome::Failed(f) => Some((i, f)),
                Outcome::Placed(_) => None,
            })
    }

    /// Number of successful placements.
    pub fn placed_count(&self) -> usize {
        self.placed().count()
    }
}

/// Places `requests` on `snapshot` in order, honouring `spec`. Deterministic
/// for a given `seed`: the seed drives the random strategy and the tie-break
/// between instances that rank equal.
pub fn place(
    snapshot: &ClusterSnapshot,
    requests: &[TaskRequest],
    spec: &PlacementSpec,
    seed: u64,
) -> Plan {
    place_impl(snapshot, requests, spec, seed, false)
}

/// [`place`] with the reference selection: one scan over every instance per
/// request, O(instances) each. Returns exactly what [`place`] returns; kept
/// for equivalence tests and for benchmarks to compare against.
pub fn place_reference(
    snapshot: &ClusterSnapshot,
    requests: &[TaskRequest],
    spec: &PlacementSpec,
    seed: u64,
) -> Plan {
    place_impl(snapshot, requests, spec, seed, true)
}

/// [`place`], optionally forcing the O(instances) reference scan.
fn place_impl(
    snapshot: &ClusterSnapshot,
    requests: &[TaskRequest],
    spec: &PlacementSpec,
    seed: u64,
    force_linear: bool,
) -> Plan {
    let needs_dynamic = requests.iter().any(|r| !r.dynamic_ports.is_empty());
    let mut engine = Engine::new(snapshot, spec, seed, needs_dynamic);
    if force_linear {
        engine.use_index = false;
        engine.random_cells = false;
    }
    engine.uniform_requests = requests.windows(2).all(|w| {
        let (a, b) = (&w[0], &w[1]);
        a.cpu == b.cpu
            && a.memory == b.memory
            && a.static_ports == b.static_ports
            && a.dynamic_ports == b.dynamic_ports
    });
    let mut outcomes = Vec::with_capacity(requests.len());
    // A failed request fails the same way again until something is placed.
    let mut last_failure: Option<(usize, u64, PlacementFailure)> = None;
    for (index, req) in requests.iter().enumerate() {
        if let Some((prev, placed_then, failure)) = &last_failure
            && *placed_then == engine.placements
            && requests[*prev] == *req
        {
            outcomes.push(Outcome::Failed(failure.clone()));
            continue;
        }
        let outcome = match engine.place_one(req) {
            Ok(p) => Outcome::Placed(p),
            Err(f) => {
                last_failure = Some((index, engine.placements, f.clone()));
                Outcome::Failed(f)
            }
        };
        outcomes.push(outcome);
    }
    Plan { outcomes }
}

// ---------------------------------------------------------------------------
// Engine

/// Draws before [`Engine::select_random_sampled`] falls back to a scan.
const RANDOM_TRIES: usize = 64;

/// Key components: one per effective strategy plus the tie-break.
const KEY_LEN: usize = crate::spec::MAX_STRATEGIES + 1;
type Key = [u64; KEY_LEN];

/// Per-group counters.
struct GroupState {
    /// Tasks of this group per instance.
    per_instance: Vec<u32>,
    /// For each effective strategy that spreads over an attribute, tasks of
    /// this group per attribute value id (empty vectors for others).
    per_value: Vec<Vec<u32>>,
}

/// What the per-placement filters say about one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
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

/// Instances of one group (and attribute mask) sorted by the per-instance
/// part of their key, per cell.
struct Index {
    gid: u32,
    cells: Vec<BTreeSet<(Key, u32)>>,
    /// The key each instance is filed under (`None`: not in the index).
    current: Vec<Option<Key>>,
}

fn first_component(v: u64) -> Key {
    let mut k = [0u64; KEY_LEN];
    k[0] = v;
    k
}

/// The working state of one placement call.
pub(crate) struct Engine<'a> {
    snap: &'a ClusterSnapshot,
    strategies: &'a [Strategy],
    distinct: bool,
    static_queries: Vec<&'a Query>,
    dynamic_queries: Vec<&'a Query>,
    /// Indices of ACTIVE instances.
    active: Vec<u32>,
    /// Agent connected and every static `memberOf` holds.
    base_ok: Vec<bool>,
    cpu: Vec<u32>,
    mem: Vec<u32>,
    /// Ports taken by placements of this call.
    added_ports: Vec<Option<Box<HostPorts>>>,
    /// Free ports in the dynamic range, [tcp, udp], if any request needs them.
    free_dynamic: [Vec<u32>; 2],
    /// Groups of tasks placed by this call, per instance (group ids).
    added_groups: Vec<Vec<u32>>,
    group_ids: HashMap<String, u32>,
    group_names: Vec<String>,
    groups: Vec<GroupState>,
    /// Attribute value id per instance for each effective strategy that
    /// spreads over an attribute (empty for others).
    spread_values: Vec<Vec<u32>>,
    spread_value_count: Vec<usize>,
    /// Random tie-break, unique per instance.
    tiebreak: Vec<u64>,
    /// Whether selection uses the sorted per-cell indexes (no `random`).
    use_index: bool,
    /// Cell of each instance: instances in one cell share every
    /// attribute-spread value.
    cell_of: Vec<u32>,
    /// For each cell, the attribute value id per strategy (0 where the
    /// strategy is not an attribute spread).
    cell_values: Vec<Vec<u32>>,
    /// How many leading strategies are attribute spreads (cell-level).
    prefix_len: usize,
    /// The first per-instance strategy, when it is a binpack (lets the
    /// index skip instances with too little of that resource).
    per_instance_first: Option<BinpackField>,
    /// Whether the chain is attribute spreads then `random`, selected by
    /// sampling cells (see [`Engine::select_random_sampled`]).
    random_cells: bool,
    /// ACTIVE instances of each cell.
    cell_members: Vec<Vec<u32>>,
    indexes: Vec<Index>,
    index_ids: HashMap<(u32, Option<usize>), usize>,
    /// Masks of instances having a set of required attributes, by set.
    attribute_masks: HashMap<Vec<RequiredAttribute>, usize>,
    masks: Vec<Vec<bool>>,
    rng: StdRng,
    /// Whether every request of the call has the same cpu, memory and
    /// ports (then a resource miss is final; see [`Fit::Never`]).
    uniform_requests: bool,
    /// Placements made so far.
    pub(crate) placements: u64,
}

fn proto_index(p: TransportProtocol) -> usize {
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

/// splitmix64: a cheap, well-mixed hash for per-placement random keys.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A [`QueryTarget`] that adds this call's placements to a snapshot instance.
struct LiveInstance<'e> {
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

    /// Index into `masks` of the instances having `required`, or `None`
    /// when nothing is required.
    /// Tasks of group `gid` on instance `i`, including this call's.
    pub(crate) fn group_count(&self, gid: u32, i: usize) -> u32 {
        self.groups
            .get(gid as usize)
            .and_then(|g| g.per_instance.get(i))
            .copied()
            .unwrap_or(0)
    }

    fn attribute_mask(&mut self, required: &[RequiredAttribute]) -> Option<usize> {
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

    fn live(&self, i: usize) -> LiveInstance<'_> {
        LiveInstance {
            inst: &self.snap.instances[i],
            added: &self.added_groups[i],
            names: &self.group_names,
        }
    }

    fn port_taken(&self, i: usize, proto: TransportProtocol, port: u16) -> bool {
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
        let live = self.live(i);
        if !self.dynamic_queries.iter().all(|q| q.matches(&live)) {
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

    fn key(&self, i: usize, group: &GroupState, random: u64) -> Key {
        let mut key = [0u64; KEY_LEN];
        for (k, s) in self.strategies.iter().enumerate() {
            key[k] = match s {
                Strategy::Spread(SpreadField::InstanceId) => u64::from(group.per_instance[i]),
                Strategy::Spread(SpreadField::Attribute(_)) => {
                    let v = self.spread_values[k][i] as usize;
                    u64::from(group.per_value[k][v])
                }
                Strategy::Binpack(BinpackField::Cpu) => u64::from(self.cpu[i]),
                Strategy::Binpack(BinpackField::Memory) => u64::from(self.mem[i]),
                Strategy::Random => mix(random ^ self.tiebreak[i]),
            };
        }
        key[self.strategies.len()] = self.tiebreak[i];
        key
    }

    /// Every filter except the static ones (`base_ok`, attribute mask).
    fn fit(&self, i: usize, req: &TaskRequest, group: &GroupState) -> Fit {
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
        if !self.dynamic_queries.is_empty() {
            let live = self.live(i);
            if !self.dynamic_queries.iter().all(|q| q.matches(&live)) {
                return Fit::NotNow;
            }
        }
        Fit::Yes
    }

    fn feasible_dynamic(&self, i: usize, req: &TaskRequest, group: &GroupState) -> bool {
        self.fit(i, req, group) == Fit::Yes
    }

    /// The best feasible instance for `req`, or `None`.
    fn select(&mut self, req: &TaskRequest, gid: u32) -> Option<usize> {
        if self.random_cells {
            self.select_random_sampled(req, gid)
        } else if self.use_index {
            self.select_indexed(req, gid)
        } else {
            self.select_linear(req, gid)
        }
    }

    /// Reference selection: one scan over every ACTIVE instance, O(instances).
    fn select_linear(&mut self, req: &TaskRequest, gid: u32) -> Option<usize> {
        let random = self.rng.random::<u64>();
        let mask = self
            .attribute_mask(&req.required_attributes)
            .map(|m| &self.masks[m]);
        let group = &self.groups[gid as usize];
        let mut best: Option<(Key, usize)> = None;
        for &i in &self.active {
            let i = i as usize;
            if !self.base_ok[i] || mask.is_some_and(|m| !m[i]) {
                continue;
            }
            if !self.feasible_dynamic(i, req, group) {
                continue;
            }
            let key = self.key(i, group, random);
            if best.as_ref().is_none_or(|(b, _)| key < *b) {
                best = Some((key, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Indexed selection (no `random` strategy): instances are partitioned
    /// into cells that share every attribute-spread value, and each cell
    /// keeps its instances sorted by the per-instance part of the key. The
    /// first feasible instance of a cell is that cell's best, and the best
    /// cell wins. Same answer as [`Engine::select_linear`].
    fn select_indexed(&mut self, req: &TaskRequest, gid: u32) -> Option<usize> {
        let mask = self.attribute_mask(&req.required_attributes);
        let idx = self.index_for(gid, mask);
        let index = &self.indexes[idx];
        let group = &self.groups[gid as usize];
        let start: Key = match self.per_instance_first {
            Some(BinpackField::Memory) => first_component(u64::from(req.memory)),
            Some(BinpackField::Cpu) => first_component(u64::from(req.cpu)),
            None => [0; KEY_LEN],
        };
        let mut best: Option<(Key, usize)> = None;
        let mut evict: Vec<(usize, Key, u32)> = Vec::new();
        for (c, cell) in index.cells.iter().enumerate() {
            if let Some((b, _)) = &best {
                // The cell-level prefix alone may already lose.
                let prefix = self.cell_prefix(c, group);
                if prefix[..self.prefix_len] > b[..self.prefix_len] {
                    continue;
                }
            }
            for &(k, i32) in cell.range((start, 0)..) {
                let i = i32 as usize;
                match self.fit(i, req, group) {
                    Fit::Yes => {
                        let key = self.key(i, group, 0);
                        if best.as_ref().is_none_or(|(b, _)| key < *b) {
                            best = Some((key, i));
                        }
                        break;
                    }
                    Fit::Never | Fit::NeverForGroup => evict.push((c, k, i32)),
                    Fit::NotNow => {}
                }
            }
        }
        // Instances that can never fit again leave the index, so later
        // placements do not walk past them.
        let index = &mut self.indexes[idx];
        for (c, k, i32) in evict {
            index.cells[c].remove(&(k, i32));
            index.current[i32 as usize] = None;
        }
        best.map(|(_, i)| i)
    }

    /// Sampled selection for chains of attribute spreads ending in `random`:
    /// take the cells with the lowest spread counts, draw instances from
    /// them uniformly and keep the first feasible one (rejection sampling is
    /// uniform over the feasible ones). After [`RANDOM_TRIES`] misses, scan
    /// those cells; if none is feasible, move on to the next-lowest cells.
    fn select_random_sampled(&mut self, req: &TaskRequest, gid: u32) -> Option<usize> {
        let random = self.rng.random::<u64>();
        let mask = self.attribute_mask(&req.required_attributes);
        let group = &self.groups[gid as usize];
        let mut order: Vec<(Key, usize)> = (0..self.cell_members.len())
            .filter(|&c| !self.cell_members[c].is_empty())
            .map(|c| (self.cell_prefix(c, group), c))
            .collect();
        order.sort_unstable();
        let mut draws = StdRng::seed_from_u64(random);
        let mut start = 0;
        while start < order.len() {
            let prefix = order[start].0;
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|(p, _)| *p == prefix)
                    .count();
            let level = &order[start..end];
            let mut total: usize = level.iter().map(|(_, c)| self.cell_members[*c].len()).sum();
            for _ in 0..RANDOM_TRIES {
                if total == 0 {
                    break;
                }
                let mut r = draws.random_range(0..total);
                let mut drawn = None;
                for &(_, c) in level {
                    let len = self.cell_members[c].len();
                    if r < len {
                        drawn = Some((c, r));
                        break;
                    }
                    r -= len;
                }
                let Some((c, r)) = drawn else { break };
                let i = self.cell_members[c][r] as usize;
                match self.sample_fit(i, req, gid, mask) {
                    Fit::Yes => return Some(i),
                    // Cannot fit any request of this call again: drop it.
                    Fit::Never => {
                        self.cell_members[c].swap_remove(r);
                        total -= 1;
                    }
                    Fit::NeverForGroup | Fit::NotNow => {}
                }
            }
            let mut found: Option<(u64, usize)> = None;
            for &(_, c) in level {
                for &i32 in &self.cell_members[c] {
                    let i = i32 as usize;
                    if self.sample_fit(i, req, gid, mask) == Fit::Yes {
                        let key = mix(random ^ self.tiebreak[i]);
                        if found.is_none_or(|(k, _)| key < k) {
                            found = Some((key, i));
                        }
                    }
                }
            }
            if let Some((_, i)) = found {
                return Some(i);
            }
            start = end;
        }
        None
    }

    /// [`Engine::fit`] plus the static filters, for sampled selection.
    fn sample_fit(&self, i: usize, req: &TaskRequest, gid: u32, mask: Option<usize>) -> Fit {
        if !self.base_ok[i] {
            return Fit::Never;
        }
        if mask.is_some_and(|m| !self.masks[m][i]) {
            return Fit::NotNow;
        }
        self.fit(i, req, &self.groups[gid as usize])
    }

    /// The key components that are the same for a whole cell, up to the
    /// first per-instance strategy.
    fn cell_prefix(&self, cell: usize, group: &GroupState) -> Key {
        let mut key = [0u64; KEY_LEN];
        for (k, slot) in key.iter_mut().enumerate().take(self.prefix_len) {
            let v = self.cell_values[cell][k] as usize;
            *slot = group.per_value[k].get(v).copied().map_or(0, u64::from);
        }
        key
    }

    /// The per-instance part of instance `i`'s key for `group`.
    fn instance_key(&self, i: usize, group: &GroupState) -> Key {
        let mut key = [0u64; KEY_LEN];
        let mut n = 0;
        for s in self.strategies {
            let v = match s {
                Strategy::Spread(SpreadField::InstanceId) => u64::from(group.per_instance[i]),
                Strategy::Binpack(BinpackField::Cpu) => u64::from(self.cpu[i]),
                Strategy::Binpack(BinpackField::Memory) => u64::from(self.mem[i]),
                Strategy::Spread(SpreadField::Attribute(_)) | Strategy::Random => continue,
            };
            key[n] = v;
            n += 1;
        }
        key[n] = self.tiebreak[i];
        key
    }

    /// The index for group `gid` restricted to attribute mask `mask`,
    /// building it on first use.
    fn index_for(&mut self, gid: u32, mask: Option<usize>) -> usize {
        if let Some(&idx) = self.index_ids.get(&(gid, mask)) {
            return idx;
        }
        let n = self.snap.instances.len();
        let mut current = vec![None; n];
        let mut cells: Vec<Vec<(Key, u32)>> = vec![Vec::new(); self.cell_values.len()];
        let group = &self.groups[gid as usize];
        for &i32 in &self.active {
            let i = i32 as usize;
            if !self.base_ok[i] || mask.is_some_and(|m| !self.masks[m][i]) {
                continue;
            }
            let key = self.instance_key(i, group);
            cells[self.cell_of[i] as usize].push((key, i32));
            current[i] = Some(key);
        }
        // Sorted input lets the sets bulk-build in linear time.
        let cells = cells
            .into_iter()
            .map(|mut c| {
                c.sort_unstable();
                c.into_iter().collect::<BTreeSet<_>>()
            })
            .collect();
        let index = Index {
            gid,
            cells,
            current,
        };
        let idx = self.indexes.len();
        self.indexes.push(index);
        self.index_ids.insert((gid, mask), idx);
        idx
    }

    /// Re-sorts instance `i` in every index after its state changed.
    fn reindex(&mut self, i: usize) {
        let Ok(i32) = u32::try_from(i) else { return };
        let cell = self.cell_of[i] as usize;
        for k in 0..self.indexes.len() {
            let Some(old) = self.indexes[k].current[i] else {
                continue;
            };
            let group = &self.groups[self.indexes[k].gid as usize];
            let new = self.instance_key(i, group);
            if new != old {
                let index = &mut self.indexes[k];
                index.cells[cell].remove(&(old, i32));
                index.cells[cell].insert((new, i32));
                index.current[i] = Some(new);
            }
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

    /// Why no instance can take `req`.
    fn diagnose(&self, req: &TaskRequest, gid: u32) -> PlacementFailure {
        let mut rejections: Vec<Rejection> = Vec::new();
        let mut closest: Option<(usize, FailureReason)> = None;
        for &i in &self.active {
            let i = i as usize;
            let Err(reason) = self.check(i, req, gid) else {
                continue;
            };
            match rejections.iter_mut().find(|r| r.reason == reason) {
                Some(r) => r.instances += 1,
                None => rejections.push(Rejection {
                    reason,
                    instances: 1,
                    example_instance_arn: self.snap.instances[i].arn.clone(),
                }),
            }
            if closest.is_none_or(|(_, r)| reason > r) {
                closest = Some((i, reason));
            }
        }
        rejections.sort_by_key(|r| r.reason);
        match closest {
            Some((i, reason)) => PlacementFailure {
                rejections,
                closest: (Some(self.snap.instances[i].arn.clone()), reason),
            },
            None => PlacementFailure::no_instances(),
        }
    }

    fn place_one(&mut self, req: &TaskRequest) -> Result<Placement, PlacementFailure> {
        if !self.has_active() {
            return Err(PlacementFailure::no_instances());
        }
        let gid = self.group_id(&req.group);
        match self.select(req, gid) {
            Some(i) => Ok(self.commit(i, req, gid)),
            None => Err(self.diagnose(req, gid)),
        }
    }
}

fn has_attributes(inst: &InstanceView, required: &[RequiredAttribute]) -> bool {
    required.iter().all(|r| match inst.attributes.get(&r.name) {
        None => false,
        Some(have) => r.value.is_none() || have.as_deref() == r.value.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use model::wire::TransportProtocol::{Tcp, Udp};
    use proptest::prelude::{ProptestConfig, any, prop, prop_assert_eq, proptest};
    use proptest::strategy::Strategy as PropStrategy;

    use super::*;
    use crate::testing::{TaskRequestExt, instance, spec, task};

    const STRATEGIES: &[&[&str]] = &[
        &[],
        &["binpack:memory"],
        &["binpack:cpu"],
        &["spread:attribute:ecs.availability-zone", "binpack:memory"],
        &[
            "spread:attribute:ecs.availability-zone",
            "spread:instanceId",
            "binpack:cpu",
        ],
        &["binpack:memory", "spread:attribute:ecs.availability-zone"],
        &["spread:instanceId", "spread:attribute:ecs.instance-type"],
        &[
            "spread:attribute:ecs.instance-type",
            "spread:attribute:ecs.availability-zone",
            "binpack:memory",
        ],
    ];

    const CONSTRAINTS: &[&[&str]] = &[
        &[],
        &["distinctInstance"],
        &["memberOf:attribute:ecs.instance-type =~ t2.*"],
        &["memberOf:task:group != g1"],
    ];

    fn arb_instance() -> impl PropStrategy<Value = InstanceView> {
        (
            0u32..3000,
            0u32..3000,
            0usize..4,
            0usize..3,
            any::<bool>(),
            0usize..3,
        )
            .prop_map(|(cpu, mem, az, ty, connected, tasks)| {
                let mut b = instance("x").cpu(cpu).memory(mem).dynamic_range(9000, 9004);
                if az < 3 {
                    b = b.az(["a", "b", "c"][az]);
                }
                b = b.instance_type(["t2.micro", "t2.small", "m5.large"][ty]);
                if !connected {
                    b = b.disconnected();
                }
                for t in 0..tasks {
                    b = b.task(&format!("t{t}"), ["g0", "g1"][t % 2]);
                }
                b.build()
            })
    }

    fn arb_request() -> impl PropStrategy<Value = TaskRequest> {
        (
            0u32..800,
            0u32..800,
            0usize..3,
            0usize..3,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(cpu, mem, g, dynamic, udp, attr)| {
                let mut r = task(["g0", "g1", "g2"][g], cpu, mem);
                for _ in 0..dynamic {
                    r = r.dynamic_port(if udp { Udp } else { Tcp });
                }
                if attr {
                    r = r.requires("ecs.instance-type", None);
                }
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)))]

        /// The indexed selection is an optimisation only: it must choose
        /// exactly what the reference scan chooses.
        #[test]
        fn indexed_selection_matches_linear_scan(
            instances in prop::collection::vec(arb_instance(), 0..12),
            requests in prop::collection::vec(arb_request(), 1..30),
            strategy in 0..STRATEGIES.len(),
            constraint in 0..CONSTRAINTS.len(),
            seed in any::<u64>(),
        ) {
            let snap = ClusterSnapshot {
                instances: instances
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut inst)| {
                        inst.id = format!("i{i}");
                        inst.arn = format!("arn:{i}");
                        inst
                    })
                    .collect(),
            };
            let s = spec(STRATEGIES[strategy], CONSTRAINTS[constraint]).expect("valid spec");
            prop_assert_eq!(
                place_impl(&snap, &requests, &s, seed, false),
                place_impl(&snap, &requests, &s, seed, true)
            );
            // The same with every request alike, where misses evict
            // instances from the index.
            let alike = vec![requests[0].clone(); requests.len() * 2];
            prop_assert_eq!(
                place_impl(&snap, &alike, &s, seed, false),
                place_impl(&snap, &alike, &s, seed, true)
            );
        }

        /// Sampled random selection picks differently from the scan, but
        /// with identical requests the number placed does not depend on
        /// which feasible instance each one took, so it must match.
        #[test]
        fn sampled_random_places_as_many_as_the_scan(
            instances in prop::collection::vec(arb_instance(), 0..12),
            request in arb_request(),
            count in 1usize..40,
            zones in any::<bool>(),
            constraint in 0..CONSTRAINTS.len(),
            seed in any::<u64>(),
        ) {
            let snap = ClusterSnapshot { instances };
            let chain: &[&str] = if zones {
                &["spread:attribute:ecs.availability-zone", "random"]
            } else {
                &["random"]
            };
            let s = spec(chain, CONSTRAINTS[constraint]).expect("valid spec");
            let requests = vec![request; count];
            let sampled = place_impl(&snap, &requests, &s, seed, false);
            let scanned = place_impl(&snap, &requests, &s, seed, true);
            prop_assert_eq!(sampled.placed_count(), scanned.placed_count());
        }
    }
}
