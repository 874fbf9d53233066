//! Indexes derived from the records and never stored ([`Derived`]): reservations per
//! instance, task counts, ListTasks' and the other List calls' indexes, client tokens,
//! and what retention expires. [`super::State::apply`] keeps them up to date.

use std::borrow::Borrow;
use std::cmp::Ordering as Order;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use model::lifecycle::TaskStatus;
use model::wire;

use super::keys::*;
use super::records::*;

/// A task in an index: the record the state's `tasks` map holds (the same allocation,
/// shared by the working and published states as well), ordered, compared and looked
/// up (`Borrow<str>`) by task id alone. An index entry costs a pointer: ListTasks' sets
/// hold each task five times and [`Usage::tasks`] once more, which as `String` ids were
/// ≈ 0.8 KB per task over the two states (docs/performance.md, "Control plane at
/// scale"). An index is updated with its record ([`Derived::account`] removes the old
/// entry, then adds the new one), so an entry is the record the `tasks` map holds.
#[derive(Clone)]
pub struct TaskRef(pub Arc<TaskRecord>);

impl TaskRef {
    /// The task id.
    pub fn id(&self) -> &str {
        &self.0.id
    }
}

impl Deref for TaskRef {
    type Target = TaskRecord;

    fn deref(&self) -> &TaskRecord {
        &self.0
    }
}

impl Borrow<str> for TaskRef {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl PartialEq for TaskRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for TaskRef {}

impl PartialOrd for TaskRef {
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl Ord for TaskRef {
    fn cmp(&self, other: &Self) -> Order {
        self.0.id.cmp(&other.0.id)
    }
}

impl std::fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskRef({:?})", self.0.id)
    }
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
    /// Every task holding resources here, by id.
    pub tasks: BTreeSet<TaskRef>,
    /// Group → number of those tasks (what placement needs, without a list).
    pub groups: BTreeMap<String, u32>,
    /// The sum (wrapping) of [`task_digest`] over those tasks: what the instance must
    /// hold, kept as the tasks change, so a poll's look costs O(1), not O(tasks on the
    /// instance). A sum, not a sequential hash, so that it can be kept incrementally;
    /// it depends on the records alone, so a restart gives every agent the same digest.
    pub digest: u64,
}

/// A task's part of its instance's [`Usage::digest`]: what the agent must act on when it
/// changes (the task, its desired status, its version).
pub fn task_digest(t: &TaskRecord) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same value in every process.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        t.id.as_str(),
        t.task.desired_status.as_deref(),
        t.task.version,
    )
        .hash(&mut h);
    h.finish()
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
pub type TaskLists = BTreeMap<(String, TaskFilter, String), BTreeSet<TaskRef>>;

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
        out.push((TaskFilter::Instance, i.to_string()));
    }
    if let Some(b) = &t.task.started_by {
        out.push((TaskFilter::StartedBy, b.to_string()));
    }
    if let Some(g) = &t.task.group {
        out.push((TaskFilter::Group, g.to_string()));
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

/// Adds `t` to or removes it (by id) from the set under `at` (dropping emptied sets).
fn set_member<K: Ord>(
    map: &mut BTreeMap<K, BTreeSet<TaskRef>>,
    at: K,
    t: &Arc<TaskRecord>,
    add: bool,
) {
    if add {
        map.entry(at).or_default().insert(TaskRef(Arc::clone(t)));
    } else if let Some(set) = map.get_mut(&at) {
        set.remove(t.id.as_str());
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
    fn index_task(&mut self, t: &Arc<TaskRecord>, sign: i64) {
        let add = sign > 0;
        let cluster = ClusterKey::new(&t.scope, &t.cluster);
        let desired = t
            .task
            .desired_status
            .as_deref()
            .unwrap_or_default()
            .to_owned();
        let lists = self.task_lists.entry(cluster.clone()).or_default();
        for (filter, value) in task_filters(t) {
            set_member(lists, (desired.clone(), filter, value), t, add);
        }
        if lists.is_empty() {
            self.task_lists.remove(&cluster);
        }
        if let Some(token) = &t.client_token {
            let key = (t.scope.clone(), t.cluster.to_string(), token.clone());
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
            let n = self.definition_refs.entry(arn.to_string()).or_default();
            if add {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.definition_refs.remove(arn.as_str());
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
    pub(super) fn mark_inactive(&mut self, key: Retained, was: bool, is: bool) {
        if !is {
            self.inactive.remove(&key);
        } else if !was || !self.inactive.contains_key(&key) {
            let epoch = INACTIVE_EPOCH.fetch_add(1, Ordering::Relaxed);
            self.inactive.insert(key, epoch);
        }
    }

    pub(super) fn index_definition(&mut self, r: &TaskDefinitionRecord, sign: i64) {
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

    pub(super) fn index_instance(&mut self, r: &InstanceRecord, sign: i64) {
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

    /// Adds (`sign` = 1) or removes (`sign` = -1) a task's contribution (the record
    /// added is the one the state holds: the indexes share it).
    pub(super) fn account(&mut self, t: &Arc<TaskRecord>, sign: i64) {
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
        let key = MemberKey::new(&t.scope, t.placed_in(), instance);
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
        let group = t.task.group.as_deref().unwrap_or_default().to_owned();
        if sign > 0 {
            *u.groups.entry(group).or_insert(0) += 1;
        } else if let Some(n) = u.groups.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                u.groups.remove(&group);
            }
        }
        let digest = task_digest(t);
        if sign > 0 {
            u.digest = u.digest.wrapping_add(digest);
            u.ports_tcp.extend(&r.ports_tcp);
            u.ports_udp.extend(&r.ports_udp);
            u.tasks.insert(TaskRef(Arc::clone(t)));
        } else {
            u.digest = u.digest.wrapping_sub(digest);
            u.tasks.remove(t.id.as_str());
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
