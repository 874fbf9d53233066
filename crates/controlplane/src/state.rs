//! The control plane's state: typed records, their keys, and [`Change`]s to them.
//!
//! Every record is stored as the ECS wire shape it is described as (so a describe is a
//! clone, not a translation) plus the few internal fields ECS does not show. Keys start
//! with a [`Scope`] (account + region): resources in different regions or accounts never
//! see each other, as in ECS.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

use model::arn::{Arn, ResourceType};
use model::lifecycle::TaskStatus;
use model::status::{ClusterStatus, InstanceStatus, ServiceStatus};
use model::wire;
use serde::{Deserialize, Serialize};

/// The account and region a request acts in; the first part of every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// 12-digit AWS account id.
    pub account: String,
    /// Region, from the request's SigV4 credential scope.
    pub region: String,
}

impl Scope {
    /// A scope.
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Scope {
        Scope {
            account: account.into(),
            region: region.into(),
        }
    }

    /// The ARN of a resource in this scope.
    pub fn arn(&self, kind: ResourceType, resource: impl Into<String>) -> String {
        Arn::new(&self.region, &self.account, kind, resource).to_string()
    }
}

/// Key of a cluster. Keys order by their fields in declaration order, so one scope's
/// clusters are a contiguous range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterKey {
    /// Where it lives.
    pub scope: Scope,
    /// The cluster's name.
    pub name: String,
}

impl ClusterKey {
    /// The key of cluster `name` in `scope`.
    pub fn new(scope: &Scope, name: &str) -> ClusterKey {
        ClusterKey {
            scope: scope.clone(),
            name: name.to_owned(),
        }
    }
}

/// Key of a container instance or task: a member of a cluster, by id. Keys order by
/// scope, cluster, id, so one cluster's members are a contiguous range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberKey {
    /// Where it lives.
    pub scope: Scope,
    /// The cluster's name.
    pub cluster: String,
    /// The container instance or task id (the last part of its ARN).
    pub id: String,
}

impl MemberKey {
    /// The key of member `id` of `cluster` in `scope`.
    pub fn new(scope: &Scope, cluster: &str, id: &str) -> MemberKey {
        MemberKey {
            scope: scope.clone(),
            cluster: cluster.to_owned(),
            id: id.to_owned(),
        }
    }
}

/// Key of a service. Keys order by scope, cluster, name, so one cluster's services are a
/// contiguous range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Where it lives.
    pub scope: Scope,
    /// The cluster's name.
    pub cluster: String,
    /// The service's name.
    pub name: String,
}

impl ServiceKey {
    /// The key of service `name` of `cluster` in `scope`.
    pub fn new(scope: &Scope, cluster: &str, name: &str) -> ServiceKey {
        ServiceKey {
            scope: scope.clone(),
            cluster: cluster.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// Key of a task definition: scope, family, revision.
pub type TaskDefKey = (Scope, String, i32);
/// Key of an account setting: scope, principal ARN, setting name.
pub type SettingKey = (Scope, String, String);

/// A cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Its name.
    pub name: String,
    /// As DescribeClusters shows it (counts and statistics are filled in at describe time).
    pub cluster: wire::Cluster,
}

/// One revision of a task definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Family name.
    pub family: String,
    /// Revision number (1, 2, …).
    pub revision: i32,
    /// As DescribeTaskDefinition shows it.
    pub definition: wire::TaskDefinition,
    /// Tags of this revision.
    pub tags: Vec<wire::Tag>,
}

/// A registered container instance (a node running `flotilla agent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Cluster name.
    pub cluster: String,
    /// Container instance id (the last part of its ARN).
    pub id: String,
    /// As DescribeContainerInstances shows it.
    pub instance: wire::ContainerInstance,
    /// Epoch seconds of the agent's last sign of life.
    pub last_heartbeat: f64,
}

/// What a task holds on its container instance while it is not STOPPED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// CPU units.
    pub cpu: i64,
    /// Memory MiB.
    pub memory: i64,
    /// TCP host ports.
    pub ports_tcp: Vec<u16>,
    /// UDP host ports.
    pub ports_udp: Vec<u16>,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Cluster name.
    pub cluster: String,
    /// Task id (the last part of its ARN).
    pub id: String,
    /// As DescribeTasks shows it.
    pub task: wire::Task,
    /// Resources held on the instance until the task is STOPPED.
    pub reservation: Reservation,
    /// The container instance id it was placed on.
    pub instance_id: Option<String>,
    /// RunTask's idempotency token.
    pub client_token: Option<String>,
    /// Digest of the RunTask request that came with `client_token`: a retry with the
    /// same token must repeat the same request (else `ConflictException`, as ECS).
    /// Absent on tasks stored before it existed (their token then matches any request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token_fingerprint: Option<String>,
    /// Whether an agent has taken the task over (reported a state for it).
    pub agent_acknowledged: bool,
}

/// A service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub name: String,
    /// As DescribeServices shows it.
    pub service: wire::Service,
    /// Ids of the listed deployments that reached a steady state (every desired task
    /// RUNNING, none of another deployment): rollback targets even before their rollout
    /// is COMPLETED (see docs/services.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steady_deployments: Vec<String>,
}

impl ClusterRecord {
    /// The cluster's key.
    pub fn key(&self) -> ClusterKey {
        ClusterKey::new(&self.scope, &self.name)
    }
}

impl InstanceRecord {
    /// The container instance's key.
    pub fn key(&self) -> MemberKey {
        MemberKey::new(&self.scope, &self.cluster, &self.id)
    }

    /// The value of the instance's first attribute named `name`, if it has one.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.instance
            .attributes
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .and_then(|a| a.value.as_deref())
    }
}

impl TaskRecord {
    /// The task's key.
    pub fn key(&self) -> MemberKey {
        MemberKey::new(&self.scope, &self.cluster, &self.id)
    }
}

impl ServiceRecord {
    /// The service's key.
    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(&self.scope, &self.cluster, &self.name)
    }
}

/// An account setting (per principal, or the account default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingRecord {
    /// Where it lives.
    pub scope: Scope,
    /// As ListAccountSettings shows it.
    pub setting: wire::Setting,
}

/// Server-wide facts that must survive restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaRecord {
    /// Hex key that signs pagination tokens.
    pub paging_secret: String,
}

/// Any stored record; the unit of persistence.
// Records are moved, not copied, between the writer and the store; boxing the large
// variants would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record")]
pub enum Record {
    /// A cluster.
    Cluster(ClusterRecord),
    /// A task definition revision.
    TaskDefinition(TaskDefinitionRecord),
    /// A container instance.
    Instance(InstanceRecord),
    /// A task.
    Task(TaskRecord),
    /// A service.
    Service(ServiceRecord),
    /// An account setting.
    Setting(SettingRecord),
    /// Server metadata.
    Meta(MetaRecord),
}

impl Record {
    /// The record's key in the store. Names and ids never contain `|`.
    pub fn store_key(&self) -> String {
        fn k(kind: &str, s: &Scope, rest: &[&str]) -> String {
            let mut out = format!("{kind}|{}|{}", s.account, s.region);
            for r in rest {
                out.push('|');
                out.push_str(r);
            }
            out
        }
        match self {
            Record::Cluster(r) => k("cluster", &r.scope, &[&r.name]),
            Record::TaskDefinition(r) => {
                k("taskdef", &r.scope, &[&r.family, &r.revision.to_string()])
            }
            Record::Instance(r) => k("instance", &r.scope, &[&r.cluster, &r.id]),
            Record::Task(r) => k("task", &r.scope, &[&r.cluster, &r.id]),
            Record::Service(r) => k("service", &r.scope, &[&r.cluster, &r.name]),
            Record::Setting(r) => k(
                "setting",
                &r.scope,
                &[
                    r.setting.principal_arn.as_deref().unwrap_or(""),
                    r.setting.name.map(|n| n.as_str()).unwrap_or(""),
                ],
            ),
            Record::Meta(_) => "meta".to_owned(),
        }
    }
}

/// One decided change to the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace this record.
    Put(Record),
    /// Remove this record.
    Delete(Record),
}

/// What the tasks on one container instance hold (derived from the tasks, never stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU units reserved by tasks that are not STOPPED.
    pub cpu: i64,
    /// Memory MiB reserved by tasks that are not STOPPED.
    pub memory: i64,
    /// TCP host ports bound by those tasks.
    pub ports_tcp: Vec<u16>,
    /// UDP host ports bound by those tasks.
    pub ports_udp: Vec<u16>,
    /// Tasks whose last status is RUNNING.
    pub running: i32,
    /// Tasks not yet RUNNING.
    pub pending: i32,
    /// Task id → group of every task holding resources here.
    pub tasks: BTreeMap<String, String>,
    /// Group → number of those tasks (what placement needs, without a list).
    pub groups: BTreeMap<String, u32>,
}

/// Task counts of one cluster (derived, never stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    /// Tasks whose last status is RUNNING.
    pub running: i64,
    /// Tasks not yet RUNNING.
    pub pending: i64,
    /// Of `running`, those with the FARGATE launch type.
    pub running_fargate: i64,
    /// Of `pending`, those with the FARGATE launch type.
    pub pending_fargate: i64,
}

/// What ListTasks can narrow a cluster's tasks by, besides `desiredStatus` (see
/// [`TaskLists`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskFilter {
    /// Every task (the value is empty).
    All,
    /// `containerInstance`: the id of the instance the task was placed on.
    Instance,
    /// `startedBy`.
    StartedBy,
    /// The task's `group` (`serviceName` lists group `service:<name>`).
    Group,
    /// `family`: the family of the task's definition.
    Family,
}

/// One cluster's tasks by `(desiredStatus, filter, value)`, each set in id order: a page
/// of ListTasks ranges over one set from the last id it returned, so it costs the same
/// at any offset.
pub type TaskLists = BTreeMap<(String, TaskFilter, String), BTreeSet<String>>;

/// A record that retention deletes some time after it became INACTIVE.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Retained {
    /// An INACTIVE (deleted) cluster.
    Cluster(ClusterKey),
    /// An INACTIVE (deleted) service.
    Service(ServiceKey),
    /// An INACTIVE (deregistered) container instance.
    Instance(MemberKey),
}

/// Task definition revisions of one family (derived).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilyCounts {
    /// Revisions stored, whatever their status.
    pub revisions: u32,
    /// Of those, the ACTIVE ones.
    pub active: u32,
}

/// Numbers the transitions into INACTIVE, process-wide, so that retention can tell an
/// INACTIVE record from the same key made INACTIVE again later (see
/// [`Derived::inactive`]).
static INACTIVE_EPOCH: AtomicU64 = AtomicU64::new(1);

/// Indexes derived from the records, kept up to date by [`State::apply`] so that
/// placement and describes cost O(instances), not O(tasks), every List page costs the
/// same at any offset, and retention finds what expired without a scan.
#[derive(Debug, Clone, Default)]
pub struct Derived {
    /// Reservations per container instance.
    pub usage: HashMap<MemberKey, Usage>,
    /// Task counts per cluster.
    pub counts: HashMap<ClusterKey, ClusterCounts>,
    /// ListTasks' indexes, per cluster.
    pub task_lists: HashMap<ClusterKey, TaskLists>,
    /// RunTask client tokens: (scope, cluster, token) → ids of the tasks it started.
    pub client_tokens: HashMap<(Scope, String, String), BTreeSet<String>>,
    /// Tasks per task definition ARN (any status): a revision still referenced is not
    /// deleted.
    pub definition_refs: HashMap<String, u32>,
    /// STOPPED tasks by when they stopped (epoch milliseconds), oldest first.
    pub stopped: BTreeSet<(i64, MemberKey)>,
    /// INACTIVE clusters, services and instances, each with the number of its transition
    /// into INACTIVE (unique in the process; a new number when it becomes INACTIVE
    /// again, so retention restarts its clock).
    pub inactive: BTreeMap<Retained, u64>,
    /// Task definition revisions in DELETE_IN_PROGRESS.
    pub deleting: BTreeSet<TaskDefKey>,
    /// ACTIVE clusters (what ListClusters lists).
    pub active_clusters: BTreeSet<ClusterKey>,
    /// Services that are not INACTIVE (what ListServices lists).
    pub listed_services: BTreeSet<ServiceKey>,
    /// Container instances by (scope, cluster, status, id).
    pub instances_by_status: BTreeSet<(Scope, String, String, String)>,
    /// Task definition revisions by (scope, status, family, revision).
    pub definitions_by_status: BTreeSet<(Scope, String, String, i32)>,
    /// Revisions per family.
    pub families: BTreeMap<(Scope, String), FamilyCounts>,
    /// Families by (scope, whether one of its revisions is ACTIVE, family).
    pub families_by_status: BTreeSet<(Scope, bool, String)>,
}

/// The family of a task definition ARN (`…:task-definition/<family>:<revision>`).
pub fn family_of_arn(arn: &str) -> Option<&str> {
    arn.rsplit('/')
        .next()
        .and_then(|fr| fr.rsplit_once(':'))
        .map(|(family, _)| family)
}

/// When a STOPPED task stopped (epoch seconds): `stoppedAt`, else the closest time
/// recorded before it.
pub fn stopped_at(t: &wire::Task) -> f64 {
    t.stopped_at
        .or(t.execution_stopped_at)
        .or(t.stopping_at)
        .or(t.created_at)
        .unwrap_or(0.0)
}

fn millis(t: f64) -> i64 {
    // Saturating float-to-int conversion; epoch milliseconds fit easily.
    (t * 1000.0) as i64
}

/// The ListTasks index entries of a task (besides its desired status).
fn task_filters(t: &TaskRecord) -> Vec<(TaskFilter, String)> {
    let mut out = vec![(TaskFilter::All, String::new())];
    if let Some(i) = &t.instance_id {
        out.push((TaskFilter::Instance, i.clone()));
    }
    if let Some(b) = &t.task.started_by {
        out.push((TaskFilter::StartedBy, b.clone()));
    }
    if let Some(g) = &t.task.group {
        out.push((TaskFilter::Group, g.clone()));
    }
    if let Some(f) = t
        .task
        .task_definition_arn
        .as_deref()
        .and_then(family_of_arn)
    {
        out.push((TaskFilter::Family, f.to_owned()));
    }
    out
}

/// Adds `key` to or removes it from the set under `at` (dropping emptied sets).
fn set_member<K: Ord + Clone, V: Ord + Clone>(
    map: &mut BTreeMap<K, BTreeSet<V>>,
    at: K,
    key: &V,
    add: bool,
) {
    if add {
        map.entry(at).or_default().insert(key.clone());
    } else if let Some(set) = map.get_mut(&at) {
        set.remove(key);
        if set.is_empty() {
            map.remove(&at);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    Running,
    Stopped,
}

fn phase(t: &wire::Task) -> Phase {
    match t.last() {
        Some(TaskStatus::Running) => Phase::Running,
        Some(
            TaskStatus::Deactivating
            | TaskStatus::Stopping
            | TaskStatus::Deprovisioning
            | TaskStatus::Stopped,
        ) => Phase::Stopped,
        Some(TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating) => {
            Phase::Pending
        }
        // No status yet holds nothing; a status this version does not know counts as
        // pending.
        None if t.last_status.is_none() => Phase::Stopped,
        None => Phase::Pending,
    }
}

impl Derived {
    /// Adds (`sign` = 1) or removes (`sign` = -1) a task's entries in the list,
    /// token, reference and retention indexes.
    fn index_task(&mut self, t: &TaskRecord, sign: i64) {
        let add = sign > 0;
        let cluster = ClusterKey::new(&t.scope, &t.cluster);
        let desired = t.task.desired_status.clone().unwrap_or_default();
        let lists = self.task_lists.entry(cluster.clone()).or_default();
        for (filter, value) in task_filters(t) {
            set_member(lists, (desired.clone(), filter, value), &t.id, add);
        }
        if lists.is_empty() {
            self.task_lists.remove(&cluster);
        }
        if let Some(token) = &t.client_token {
            let key = (t.scope.clone(), t.cluster.clone(), token.clone());
            let ids = self.client_tokens.entry(key.clone()).or_default();
            if add {
                ids.insert(t.id.clone());
            } else {
                ids.remove(&t.id);
            }
            if ids.is_empty() {
                self.client_tokens.remove(&key);
            }
        }
        if let Some(arn) = &t.task.task_definition_arn {
            let n = self.definition_refs.entry(arn.clone()).or_default();
            if add {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.definition_refs.remove(arn);
                }
            }
        }
        if t.task.last() == Some(TaskStatus::Stopped) {
            let entry = (millis(stopped_at(&t.task)), t.key());
            if add {
                self.stopped.insert(entry);
            } else {
                self.stopped.remove(&entry);
            }
        }
    }

    /// Records whether `key` is INACTIVE now (`was`: before this change).
    fn mark_inactive(&mut self, key: Retained, was: bool, is: bool) {
        if !is {
            self.inactive.remove(&key);
        } else if !was || !self.inactive.contains_key(&key) {
            let epoch = INACTIVE_EPOCH.fetch_add(1, Ordering::Relaxed);
            self.inactive.insert(key, epoch);
        }
    }

    fn index_definition(&mut self, r: &TaskDefinitionRecord, sign: i64) {
        let status = r.definition.status.map(|s| s.as_str()).unwrap_or("");
        let entry = (
            r.scope.clone(),
            status.to_owned(),
            r.family.clone(),
            r.revision,
        );
        let key = (r.scope.clone(), r.family.clone(), r.revision);
        let deleting = r.definition.status == Some(wire::TaskDefinitionStatus::DeleteInProgress);
        let active = u32::from(r.definition.status == Some(wire::TaskDefinitionStatus::Active));
        let family = (r.scope.clone(), r.family.clone());
        let counts = self.families.entry(family.clone()).or_default();
        self.families_by_status
            .remove(&(r.scope.clone(), counts.active > 0, r.family.clone()));
        if sign > 0 {
            counts.revisions += 1;
            counts.active += active;
            self.definitions_by_status.insert(entry);
            if deleting {
                self.deleting.insert(key);
            }
        } else {
            counts.revisions = counts.revisions.saturating_sub(1);
            counts.active = counts.active.saturating_sub(active);
            if counts.revisions == 0 {
                self.families.remove(&family);
            }
            self.definitions_by_status.remove(&entry);
            self.deleting.remove(&key);
        }
        if let Some(counts) = self.families.get(&family) {
            self.families_by_status
                .insert((r.scope.clone(), counts.active > 0, r.family.clone()));
        }
    }

    fn index_instance(&mut self, r: &InstanceRecord, sign: i64) {
        let entry = (
            r.scope.clone(),
            r.cluster.clone(),
            r.instance.status.clone().unwrap_or_default(),
            r.id.clone(),
        );
        if sign > 0 {
            self.instances_by_status.insert(entry);
        } else {
            self.instances_by_status.remove(&entry);
        }
    }

    /// Adds (`sign` = 1) or removes (`sign` = -1) a task's contribution.
    fn account(&mut self, t: &TaskRecord, sign: i64) {
        self.index_task(t, sign);
        let p = phase(&t.task);
        let fargate = i64::from(t.task.launch_type == Some(wire::LaunchType::Fargate));
        let c = self
            .counts
            .entry(ClusterKey::new(&t.scope, &t.cluster))
            .or_default();
        match p {
            Phase::Running => {
                c.running += sign;
                c.running_fargate += sign * fargate;
            }
            Phase::Pending => {
                c.pending += sign;
                c.pending_fargate += sign * fargate;
            }
            Phase::Stopped => {}
        }
        // Reservations are held until the task is STOPPED (not merely stopping).
        let holds = t.task.last() != Some(TaskStatus::Stopped);
        let Some(instance) = &t.instance_id else {
            return;
        };
        if !holds {
            return;
        }
        let key = MemberKey::new(&t.scope, &t.cluster, instance);
        let u = self.usage.entry(key.clone()).or_default();
        let r = &t.reservation;
        let sign32 = i32::try_from(sign).unwrap_or(0);
        u.cpu += sign * r.cpu;
        u.memory += sign * r.memory;
        match p {
            Phase::Running => u.running += sign32,
            Phase::Pending => u.pending += sign32,
            Phase::Stopped => {}
        }
        let group = t.task.group.clone().unwrap_or_default();
        if sign > 0 {
            *u.groups.entry(group).or_insert(0) += 1;
        } else if let Some(n) = u.groups.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                u.groups.remove(&group);
            }
        }
        if sign > 0 {
            u.ports_tcp.extend(&r.ports_tcp);
            u.ports_udp.extend(&r.ports_udp);
            u.tasks
                .insert(t.id.clone(), t.task.group.clone().unwrap_or_default());
        } else {
            u.tasks.remove(&t.id);
            for p in &r.ports_tcp {
                if let Some(i) = u.ports_tcp.iter().position(|x| x == p) {
                    u.ports_tcp.swap_remove(i);
                }
            }
            for p in &r.ports_udp {
                if let Some(i) = u.ports_udp.iter().position(|x| x == p) {
                    u.ports_udp.swap_remove(i);
                }
            }
        }
        if *u == Usage::default() {
            self.usage.remove(&key);
        }
    }
}

/// The whole state of the control plane.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Clusters, ACTIVE and INACTIVE.
    pub clusters: BTreeMap<ClusterKey, ClusterRecord>,
    /// Task definition revisions.
    pub task_definitions: BTreeMap<TaskDefKey, TaskDefinitionRecord>,
    /// Container instances.
    pub instances: BTreeMap<MemberKey, InstanceRecord>,
    /// Tasks.
    pub tasks: BTreeMap<MemberKey, TaskRecord>,
    /// Services.
    pub services: BTreeMap<ServiceKey, ServiceRecord>,
    /// Account settings.
    pub settings: BTreeMap<SettingKey, SettingRecord>,
    /// Server metadata.
    pub meta: MetaRecord,
    /// Indexes derived from the records.
    pub derived: Derived,
}

/// A key that starts with a scope and a cluster name ([`MemberKey`], [`ServiceKey`]):
/// its map holds one cluster's entries as a contiguous range.
trait InCluster: Ord {
    /// The smallest key of `cluster`.
    fn first(scope: &Scope, cluster: &str) -> Self;
    /// Whether the key is one of `cluster`'s.
    fn is_in(&self, scope: &Scope, cluster: &str) -> bool;
}

impl InCluster for MemberKey {
    fn first(scope: &Scope, cluster: &str) -> Self {
        MemberKey::new(scope, cluster, "")
    }
    fn is_in(&self, scope: &Scope, cluster: &str) -> bool {
        self.scope == *scope && self.cluster == cluster
    }
}

impl InCluster for ServiceKey {
    fn first(scope: &Scope, cluster: &str) -> Self {
        ServiceKey::new(scope, cluster, "")
    }
    fn is_in(&self, scope: &Scope, cluster: &str) -> bool {
        self.scope == *scope && self.cluster == cluster
    }
}

/// Iterates the values of one cluster's entries of a map keyed by cluster members.
fn in_cluster<'a, K: InCluster, V>(
    map: &'a BTreeMap<K, V>,
    scope: &Scope,
    cluster: &str,
) -> impl Iterator<Item = &'a V> + 'a {
    let start = K::first(scope, cluster);
    let scope = scope.clone();
    let cluster = cluster.to_owned();
    map.range((Bound::Included(start), Bound::Unbounded))
        .take_while(move |(k, _)| k.is_in(&scope, &cluster))
        .map(|(_, v)| v)
}

impl State {
    /// Applies one change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Put(record) => self.put(record.clone()),
            Change::Delete(record) => self.delete(record),
        }
    }

    fn put(&mut self, record: Record) {
        match record {
            Record::Cluster(r) => {
                let key = r.key();
                let was = self
                    .clusters
                    .get(&key)
                    .is_some_and(|old| old.cluster.status() == Some(ClusterStatus::Inactive));
                let status = r.cluster.status();
                if status == Some(ClusterStatus::Active) {
                    self.derived.active_clusters.insert(key.clone());
                } else {
                    self.derived.active_clusters.remove(&key);
                }
                self.derived.mark_inactive(
                    Retained::Cluster(key.clone()),
                    was,
                    status == Some(ClusterStatus::Inactive),
                );
                self.clusters.insert(key, r);
            }
            Record::TaskDefinition(r) => {
                let key = (r.scope.clone(), r.family.clone(), r.revision);
                if let Some(old) = self.task_definitions.get(&key) {
                    let old = old.clone();
                    self.derived.index_definition(&old, -1);
                }
                self.derived.index_definition(&r, 1);
                self.task_definitions.insert(key, r);
            }
            Record::Instance(r) => {
                let key = r.key();
                let was = match self.instances.get(&key) {
                    Some(old) => {
                        let old = old.clone();
                        self.derived.index_instance(&old, -1);
                        old.instance.status() == Some(InstanceStatus::Inactive)
                    }
                    None => false,
                };
                self.derived.index_instance(&r, 1);
                self.derived.mark_inactive(
                    Retained::Instance(key.clone()),
                    was,
                    r.instance.status() == Some(InstanceStatus::Inactive),
                );
                self.instances.insert(key, r);
            }
            Record::Task(r) => {
                // Remove the old record's contribution first: both share the task id.
                let key = r.key();
                if let Some(old) = self.tasks.get(&key) {
                    let old = old.clone();
                    self.derived.account(&old, -1);
                }
                self.derived.account(&r, 1);
                self.tasks.insert(key, r);
            }
            Record::Service(r) => {
                let key = r.key();
                let was = self
                    .services
                    .get(&key)
                    .is_some_and(|old| old.service.status() == Some(ServiceStatus::Inactive));
                let inactive = r.service.status() == Some(ServiceStatus::Inactive);
                if inactive {
                    self.derived.listed_services.remove(&key);
                } else {
                    self.derived.listed_services.insert(key.clone());
                }
                self.derived
                    .mark_inactive(Retained::Service(key.clone()), was, inactive);
                self.services.insert(key, r);
            }
            Record::Setting(r) => {
                let key = setting_key(&r);
                self.settings.insert(key, r);
            }
            Record::Meta(m) => self.meta = m,
        }
    }

    fn delete(&mut self, record: &Record) {
        match record {
            Record::Cluster(r) => {
                let key = r.key();
                self.clusters.remove(&key);
                self.derived.active_clusters.remove(&key);
                self.derived.inactive.remove(&Retained::Cluster(key));
            }
            Record::TaskDefinition(r) => {
                if let Some(old) =
                    self.task_definitions
                        .remove(&(r.scope.clone(), r.family.clone(), r.revision))
                {
                    self.derived.index_definition(&old, -1);
                }
            }
            Record::Instance(r) => {
                let key = r.key();
                if let Some(old) = self.instances.remove(&key) {
                    self.derived.index_instance(&old, -1);
                }
                self.derived.inactive.remove(&Retained::Instance(key));
            }
            Record::Task(r) => {
                if let Some(old) = self.tasks.remove(&r.key()) {
                    self.derived.account(&old, -1);
                }
            }
            Record::Service(r) => {
                let key = r.key();
                self.services.remove(&key);
                self.derived.listed_services.remove(&key);
                self.derived.inactive.remove(&Retained::Service(key));
            }
            Record::Setting(r) => {
                self.settings.remove(&setting_key(r));
            }
            Record::Meta(_) => self.meta = MetaRecord::default(),
        }
    }

    /// An ACTIVE or INACTIVE cluster by name.
    pub fn cluster(&self, scope: &Scope, name: &str) -> Option<&ClusterRecord> {
        self.clusters.get(&ClusterKey::new(scope, name))
    }

    /// The tasks of one cluster, in id order.
    pub fn tasks_in<'a>(
        &'a self,
        scope: &Scope,
        cluster: &str,
    ) -> impl Iterator<Item = &'a TaskRecord> + 'a {
        in_cluster(&self.tasks, scope, cluster)
    }

    /// The container instances of one cluster, in id order.
    pub fn instances_in<'a>(
        &'a self,
        scope: &Scope,
        cluster: &str,
    ) -> impl Iterator<Item = &'a InstanceRecord> + 'a {
        in_cluster(&self.instances, scope, cluster)
    }

    /// The services of one cluster, in name order.
    pub fn services_in<'a>(
        &'a self,
        scope: &Scope,
        cluster: &str,
    ) -> impl Iterator<Item = &'a ServiceRecord> + 'a {
        in_cluster(&self.services, scope, cluster)
    }

    /// The ids of one cluster's tasks of `desired` status that `filter` has `value`
    /// for (ListTasks' index), in id order.
    pub fn task_list(
        &self,
        scope: &Scope,
        cluster: &str,
        desired: &str,
        filter: TaskFilter,
        value: &str,
    ) -> Option<&BTreeSet<String>> {
        self.derived
            .task_lists
            .get(&ClusterKey::new(scope, cluster))?
            .get(&(desired.to_owned(), filter, value.to_owned()))
    }

    /// The tasks a RunTask `clientToken` started in one cluster, in id order.
    pub fn client_token_tasks<'a>(
        &'a self,
        scope: &Scope,
        cluster: &str,
        token: &str,
    ) -> impl Iterator<Item = &'a TaskRecord> + 'a {
        let key = (scope.clone(), cluster.to_owned(), token.to_owned());
        let ids = self.derived.client_tokens.get(&key);
        let (scope, cluster) = (scope.clone(), cluster.to_owned());
        ids.into_iter()
            .flatten()
            .filter_map(move |id| self.tasks.get(&MemberKey::new(&scope, &cluster, id)))
    }

    /// What the tasks on one instance hold.
    pub fn usage(&self, scope: &Scope, cluster: &str, instance_id: &str) -> Option<&Usage> {
        self.derived
            .usage
            .get(&MemberKey::new(scope, cluster, instance_id))
    }

    /// Task counts of one cluster.
    pub fn counts(&self, scope: &Scope, cluster: &str) -> ClusterCounts {
        self.derived
            .counts
            .get(&ClusterKey::new(scope, cluster))
            .copied()
            .unwrap_or_default()
    }

    /// The revisions of one family, oldest first.
    pub fn revisions<'a>(
        &'a self,
        scope: &Scope,
        family: &str,
    ) -> impl Iterator<Item = &'a TaskDefinitionRecord> + 'a {
        let start = (scope.clone(), family.to_owned(), i32::MIN);
        let end = (scope.clone(), family.to_owned(), i32::MAX);
        self.task_definitions.range(start..=end).map(|(_, v)| v)
    }
}

fn setting_key(r: &SettingRecord) -> SettingKey {
    (
        r.scope.clone(),
        r.setting.principal_arn.clone().unwrap_or_default(),
        r.setting
            .name
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(scope: &Scope, name: &str) -> Record {
        Record::Cluster(ClusterRecord {
            scope: scope.clone(),
            name: name.into(),
            cluster: wire::Cluster {
                cluster_name: Some(name.into()),
                ..Default::default()
            },
        })
    }

    #[test]
    fn regions_are_separate() {
        let mut s = State::default();
        let eu = Scope::new("1", "eu-west-1");
        let us = Scope::new("1", "us-east-1");
        s.apply(&Change::Put(cluster(&eu, "a")));
        assert!(s.cluster(&eu, "a").is_some());
        assert!(s.cluster(&us, "a").is_none());
        s.apply(&Change::Delete(cluster(&eu, "a")));
        assert!(s.cluster(&eu, "a").is_none());
    }

    #[test]
    fn store_keys_are_distinct_per_kind_and_scope() {
        let a = cluster(&Scope::new("1", "r"), "x").store_key();
        let b = cluster(&Scope::new("1", "s"), "x").store_key();
        assert_ne!(a, b);
        assert!(a.starts_with("cluster|"));
    }

    fn task(sc: &Scope, id: &str, status: &str, cpu: i64, port: u16) -> Record {
        Record::Task(TaskRecord {
            scope: sc.clone(),
            cluster: "c".into(),
            id: id.into(),
            task: wire::Task {
                last_status: Some(status.into()),
                ..Default::default()
            },
            reservation: Reservation {
                cpu,
                memory: 2 * cpu,
                ports_tcp: vec![port],
                ports_udp: vec![],
            },
            instance_id: Some("i1".into()),
            client_token: None,
            client_token_fingerprint: None,
            agent_acknowledged: false,
        })
    }

    #[test]
    fn updating_a_task_keeps_it_in_the_instance_index() {
        let mut s = State::default();
        let sc = Scope::new("1", "r");
        s.apply(&Change::Put(task(&sc, "a", "PENDING", 100, 8080)));
        s.apply(&Change::Put(task(&sc, "a", "RUNNING", 100, 8080)));
        let u = s.usage(&sc, "c", "i1").unwrap();
        assert_eq!(u.tasks.len(), 1, "the task is still on its instance");
        assert_eq!(u.groups.values().sum::<u32>(), 1);
        assert_eq!(
            (u.cpu, u.running, u.pending, u.ports_tcp.clone()),
            (100, 1, 0, vec![8080])
        );
    }

    #[test]
    fn derived_usage_follows_task_changes() {
        let mut s = State::default();
        let sc = Scope::new("1", "r");
        s.apply(&Change::Put(task(&sc, "a", "PENDING", 100, 8080)));
        s.apply(&Change::Put(task(&sc, "b", "RUNNING", 50, 8081)));
        let u = s.usage(&sc, "c", "i1").unwrap();
        assert_eq!((u.cpu, u.memory, u.running, u.pending), (150, 300, 1, 1));
        assert_eq!(s.counts(&sc, "c").pending, 1);
        s.apply(&Change::Put(task(&sc, "a", "RUNNING", 100, 8080)));
        assert_eq!(s.usage(&sc, "c", "i1").unwrap().running, 2);
        assert_eq!(s.counts(&sc, "c").running, 2);
        s.apply(&Change::Put(task(&sc, "a", "STOPPED", 100, 8080)));
        let u = s.usage(&sc, "c", "i1").unwrap();
        assert_eq!((u.cpu, u.ports_tcp.clone()), (50, vec![8081]));
        s.apply(&Change::Delete(task(&sc, "b", "RUNNING", 50, 8081)));
        assert!(s.usage(&sc, "c", "i1").is_none());
        assert_eq!(s.counts(&sc, "c"), ClusterCounts::default());
    }

    #[test]
    fn cluster_ranges_do_not_leak_into_neighbours() {
        let mut s = State::default();
        let sc = Scope::new("1", "r");
        for (cluster, id) in [("a", "1"), ("ab", "2"), ("a", "3"), ("b", "4")] {
            s.apply(&Change::Put(Record::Task(TaskRecord {
                scope: sc.clone(),
                cluster: cluster.into(),
                id: id.into(),
                task: wire::Task::default(),
                reservation: Reservation::default(),
                instance_id: None,
                client_token: None,
                client_token_fingerprint: None,
                agent_acknowledged: false,
            })));
        }
        let ids: Vec<_> = s.tasks_in(&sc, "a").map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["1", "3"]);
    }

    /// The derived indexes of `s` equal those rebuilt from its records alone (the
    /// INACTIVE transition numbers aside: a rebuild numbers them anew).
    fn assert_indexes_match(s: &State) {
        let mut fresh = State::default();
        let records = s
            .clusters
            .values()
            .map(|r| Record::Cluster(r.clone()))
            .chain(
                s.task_definitions
                    .values()
                    .map(|r| Record::TaskDefinition(r.clone())),
            )
            .chain(s.instances.values().map(|r| Record::Instance(r.clone())))
            .chain(s.tasks.values().map(|r| Record::Task(r.clone())))
            .chain(s.services.values().map(|r| Record::Service(r.clone())));
        for r in records {
            fresh.apply(&Change::Put(r));
        }
        let (a, b) = (&s.derived, &fresh.derived);
        assert_eq!(a.usage, b.usage);
        assert_eq!(a.counts, b.counts);
        assert_eq!(a.task_lists, b.task_lists);
        assert_eq!(a.client_tokens, b.client_tokens);
        assert_eq!(a.definition_refs, b.definition_refs);
        assert_eq!(a.stopped, b.stopped);
        assert_eq!(
            a.inactive.keys().collect::<Vec<_>>(),
            b.inactive.keys().collect::<Vec<_>>()
        );
        assert_eq!(a.deleting, b.deleting);
        assert_eq!(a.active_clusters, b.active_clusters);
        assert_eq!(a.listed_services, b.listed_services);
        assert_eq!(a.instances_by_status, b.instances_by_status);
        assert_eq!(a.definitions_by_status, b.definitions_by_status);
        assert_eq!(a.families, b.families);
        assert_eq!(a.families_by_status, b.families_by_status);
    }

    /// Thousands of random puts and deletes of every kind of record: after each step
    /// the incrementally kept indexes equal a rebuild from the records.
    #[test]
    fn derived_indexes_stay_equal_to_a_rebuild() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let sc = Scope::new("1", "r");
        let mut s = State::default();
        let pick = |rng: &mut rand::rngs::StdRng, xs: &[&str]| {
            xs[rng.random_range(0..xs.len())].to_owned()
        };
        for step in 0..4000 {
            let delete = rng.random_range(0..4) == 0;
            let record = match rng.random_range(0..5) {
                0 => Record::Cluster(ClusterRecord {
                    scope: sc.clone(),
                    name: pick(&mut rng, &["a", "b", "c"]),
                    cluster: wire::Cluster {
                        status: Some(pick(&mut rng, &["ACTIVE", "INACTIVE"])),
                        ..Default::default()
                    },
                }),
                1 => Record::TaskDefinition(TaskDefinitionRecord {
                    scope: sc.clone(),
                    family: pick(&mut rng, &["f", "g"]),
                    revision: rng.random_range(1..4),
                    definition: wire::TaskDefinition {
                        status: Some(
                            [
                                wire::TaskDefinitionStatus::Active,
                                wire::TaskDefinitionStatus::Inactive,
                                wire::TaskDefinitionStatus::DeleteInProgress,
                            ][rng.random_range(0..3)],
                        ),
                        ..Default::default()
                    },
                    tags: vec![],
                }),
                2 => Record::Instance(InstanceRecord {
                    scope: sc.clone(),
                    cluster: pick(&mut rng, &["a", "b"]),
                    id: pick(&mut rng, &["i1", "i2", "i3"]),
                    instance: wire::ContainerInstance {
                        status: Some(pick(&mut rng, &["ACTIVE", "DRAINING", "INACTIVE"])),
                        ..Default::default()
                    },
                    last_heartbeat: 0.0,
                }),
                3 => {
                    let stopped = rng.random_range(0..2) == 0;
                    Record::Task(TaskRecord {
                        scope: sc.clone(),
                        cluster: pick(&mut rng, &["a", "b"]),
                        id: pick(&mut rng, &["t1", "t2", "t3", "t4", "t5"]),
                        task: wire::Task {
                            last_status: Some(
                                if stopped { "STOPPED" } else { "RUNNING" }.to_owned(),
                            ),
                            desired_status: Some(pick(&mut rng, &["RUNNING", "STOPPED"])),
                            group: Some(pick(&mut rng, &["service:x", "family:f"])),
                            started_by: (rng.random_range(0..2) == 0).then(|| "ci".to_owned()),
                            task_definition_arn: Some(format!(
                                "arn:aws:ecs:r:1:task-definition/{}:1",
                                pick(&mut rng, &["f", "g"])
                            )),
                            stopped_at: stopped.then_some(f64::from(rng.random_range(0..100))),
                            ..Default::default()
                        },
                        reservation: Reservation {
                            cpu: 10,
                            memory: 10,
                            ports_tcp: vec![],
                            ports_udp: vec![],
                        },
                        instance_id: Some(pick(&mut rng, &["i1", "i2"])),
                        client_token: (rng.random_range(0..2) == 0)
                            .then(|| pick(&mut rng, &["k1", "k2"])),
                        client_token_fingerprint: None,
                        agent_acknowledged: true,
                    })
                }
                _ => Record::Service(
                    serde_json::from_value(serde_json::json!({
                        "scope": sc,
                        "cluster": pick(&mut rng, &["a", "b"]),
                        "name": pick(&mut rng, &["x", "y"]),
                        "service": {"status": pick(&mut rng, &["ACTIVE", "DRAINING", "INACTIVE"])}
                    }))
                    .unwrap(),
                ),
            };
            s.apply(&if delete {
                Change::Delete(record)
            } else {
                Change::Put(record)
            });
            if step % 50 == 0 {
                assert_indexes_match(&s);
            }
        }
        assert_indexes_match(&s);
        assert!(!s.tasks.is_empty() && !s.derived.stopped.is_empty());
    }
}
