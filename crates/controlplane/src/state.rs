//! The control plane's state: typed records, their keys, and [`Change`]s to them.
//!
//! Every record is stored as the ECS wire shape it is described as (so a describe is a
//! clone, not a translation) plus the few internal fields ECS does not show. Keys start
//! with a [`Scope`] (account + region): resources in different regions or accounts never
//! see each other, as in ECS.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use model::arn::{Arn, ResourceType};
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

/// Key of a cluster: scope and name.
pub type ClusterKey = (Scope, String);
/// Key of a task definition: scope, family, revision.
pub type TaskDefKey = (Scope, String, i32);
/// Key of a container instance or task: scope, cluster name, id.
pub type MemberKey = (Scope, String, String);
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

/// Indexes derived from the records, kept up to date by [`State::apply`] so that
/// placement and describes cost O(instances), not O(tasks).
#[derive(Debug, Clone, Default)]
pub struct Derived {
    /// Reservations per container instance.
    pub usage: HashMap<MemberKey, Usage>,
    /// Task counts per cluster.
    pub counts: HashMap<ClusterKey, ClusterCounts>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending,
    Running,
    Stopped,
}

fn phase(t: &wire::Task) -> Phase {
    match t.last_status.as_deref() {
        Some("RUNNING") => Phase::Running,
        Some("STOPPED" | "DEACTIVATING" | "STOPPING" | "DEPROVISIONING") | None => Phase::Stopped,
        Some(_) => Phase::Pending,
    }
}

impl Derived {
    /// Adds (`sign` = 1) or removes (`sign` = -1) a task's contribution.
    fn account(&mut self, t: &TaskRecord, sign: i64) {
        let p = phase(&t.task);
        let fargate = i64::from(t.task.launch_type == Some(wire::LaunchType::Fargate));
        let c = self
            .counts
            .entry((t.scope.clone(), t.cluster.clone()))
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
        let holds = t.task.last_status.as_deref() != Some("STOPPED");
        let Some(instance) = &t.instance_id else {
            return;
        };
        if !holds {
            return;
        }
        let key = (t.scope.clone(), t.cluster.clone(), instance.clone());
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
    pub services: BTreeMap<MemberKey, ServiceRecord>,
    /// Account settings.
    pub settings: BTreeMap<SettingKey, SettingRecord>,
    /// Server metadata.
    pub meta: MetaRecord,
    /// Indexes derived from the records.
    pub derived: Derived,
}

/// Iterates the values of a map whose keys are `(Scope, cluster, id)` for one cluster.
fn in_cluster<'a, V>(
    map: &'a BTreeMap<MemberKey, V>,
    scope: &Scope,
    cluster: &str,
) -> impl Iterator<Item = &'a V> + 'a {
    let start = (scope.clone(), cluster.to_owned(), String::new());
    let scope = scope.clone();
    let cluster = cluster.to_owned();
    map.range((Bound::Included(start), Bound::Unbounded))
        .take_while(move |((s, c, _), _)| *s == scope && *c == cluster)
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
                self.clusters.insert((r.scope.clone(), r.name.clone()), r);
            }
            Record::TaskDefinition(r) => {
                self.task_definitions
                    .insert((r.scope.clone(), r.family.clone(), r.revision), r);
            }
            Record::Instance(r) => {
                self.instances
                    .insert((r.scope.clone(), r.cluster.clone(), r.id.clone()), r);
            }
            Record::Task(r) => {
                // Remove the old record's contribution first: both share the task id.
                let key = (r.scope.clone(), r.cluster.clone(), r.id.clone());
                if let Some(old) = self.tasks.get(&key) {
                    let old = old.clone();
                    self.derived.account(&old, -1);
                }
                self.derived.account(&r, 1);
                self.tasks.insert(key, r);
            }
            Record::Service(r) => {
                self.services
                    .insert((r.scope.clone(), r.cluster.clone(), r.name.clone()), r);
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
                self.clusters.remove(&(r.scope.clone(), r.name.clone()));
            }
            Record::TaskDefinition(r) => {
                self.task_definitions
                    .remove(&(r.scope.clone(), r.family.clone(), r.revision));
            }
            Record::Instance(r) => {
                self.instances
                    .remove(&(r.scope.clone(), r.cluster.clone(), r.id.clone()));
            }
            Record::Task(r) => {
                if let Some(old) =
                    self.tasks
                        .remove(&(r.scope.clone(), r.cluster.clone(), r.id.clone()))
                {
                    self.derived.account(&old, -1);
                }
            }
            Record::Service(r) => {
                self.services
                    .remove(&(r.scope.clone(), r.cluster.clone(), r.name.clone()));
            }
            Record::Setting(r) => {
                self.settings.remove(&setting_key(r));
            }
            Record::Meta(_) => self.meta = MetaRecord::default(),
        }
    }

    /// An ACTIVE or INACTIVE cluster by name.
    pub fn cluster(&self, scope: &Scope, name: &str) -> Option<&ClusterRecord> {
        self.clusters.get(&(scope.clone(), name.to_owned()))
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

    /// What the tasks on one instance hold.
    pub fn usage(&self, scope: &Scope, cluster: &str, instance_id: &str) -> Option<&Usage> {
        self.derived
            .usage
            .get(&(scope.clone(), cluster.to_owned(), instance_id.to_owned()))
    }

    /// Task counts of one cluster.
    pub fn counts(&self, scope: &Scope, cluster: &str) -> ClusterCounts {
        self.derived
            .counts
            .get(&(scope.clone(), cluster.to_owned()))
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
                agent_acknowledged: false,
            })));
        }
        let ids: Vec<_> = s.tasks_in(&sc, "a").map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["1", "3"]);
    }
}
