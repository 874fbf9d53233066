//! Read-only queries of the [`State`]: one cluster's tasks, instances and services (as
//! contiguous key ranges), ListTasks' index, client tokens, usage, counts and revisions.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::*;

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
    map: &'a SharedMap<K, V>,
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
        self.tasks.in_cluster(scope, cluster).map(|t| &**t)
    }

    /// The tasks of one cluster in `group` (a service's tasks: group `service:<name>`),
    /// any desired status, in id order. From ListTasks' index ([`TaskLists`]): it costs
    /// O(tasks in the group), not O(tasks in the cluster) — a service pass that scanned
    /// its cluster's 100,000 tasks for its own 100 kept the writer busy at 10k instances.
    pub fn tasks_in_group<'a>(
        &'a self,
        scope: &Scope,
        cluster: &str,
        group: &str,
    ) -> impl Iterator<Item = &'a TaskRecord> + 'a {
        let mut tasks: Vec<&'a TaskRecord> = Vec::new();
        if let Some(lists) = self
            .derived
            .task_lists
            .get(&ClusterKey::new(scope, cluster))
        {
            // Each desired status present (a handful), skipping from one to the next:
            // `d + "\0"` is the least string after `d`.
            let mut next = lists.keys().next().map(|(d, _, _)| d.clone());
            while let Some(desired) = next {
                let key = (desired, TaskFilter::Group, group.to_owned());
                if let Some(set) = lists.get(&key) {
                    tasks.extend(set.iter().map(|t| &*t.0));
                }
                let after = (format!("{}\0", key.0), TaskFilter::All, String::new());
                next = lists.range(after..).next().map(|((d, _, _), _)| d.clone());
            }
        }
        // The index's entries are the records themselves (see [`TaskRef`]).
        tasks.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        tasks.into_iter()
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
    ) -> Option<&BTreeSet<TaskRef>> {
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
            .map(|t| &**t)
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
