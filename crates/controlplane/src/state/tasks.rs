//! The state's tasks ([`TaskMap`]): each cluster's tasks as one set of [`TaskRef`]s in id
//! order, looked up by [`MemberKey`] without building a key.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::derived::TaskRef;
use super::keys::*;
use super::records::TaskRecord;

/// Every task, by cluster and id, in key order (scope, cluster, id) — what a
/// `BTreeMap<MemberKey, Arc<TaskRecord>>` was, at a pointer per task instead of a copied
/// four-string key and a map entry (≈ 225 B per task in each of the working and the
/// published state: 24 MB less RSS at 50,000 tasks; docs/performance.md, "Control plane
/// at scale"). Each record is shared ([`Arc`]) with the other state and the indexes, and
/// never edited in place: an op edits a copy (`TaskRecord::clone(t)`) and puts it.
#[derive(Clone, Default)]
pub struct TaskMap {
    clusters: BTreeMap<ClusterKey, BTreeSet<TaskRef>>,
    len: usize,
}

/// A cluster's name (account, region, cluster), borrowed from whatever holds it: a map
/// keyed by [`ClusterKey`] is searched with a [`MemberKey`]'s parts, no key built.
trait ClusterName {
    fn parts(&self) -> (&str, &str, &str);
}

impl ClusterName for ClusterKey {
    fn parts(&self) -> (&str, &str, &str) {
        (&self.scope.account, &self.scope.region, &self.name)
    }
}

struct Named<'a>(&'a str, &'a str, &'a str);

impl ClusterName for Named<'_> {
    fn parts(&self) -> (&str, &str, &str) {
        (self.0, self.1, self.2)
    }
}

impl PartialEq for dyn ClusterName + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn ClusterName + '_ {}

impl PartialOrd for dyn ClusterName + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// `ClusterKey`'s derived order is (scope: account, region; name): the same.
impl Ord for dyn ClusterName + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl<'a> Borrow<dyn ClusterName + 'a> for ClusterKey {
    fn borrow(&self) -> &(dyn ClusterName + 'a) {
        self
    }
}

impl TaskMap {
    fn cluster(&self, scope: &Scope, cluster: &str) -> Option<&BTreeSet<TaskRef>> {
        let name = Named(&scope.account, &scope.region, cluster);
        self.clusters.get(&name as &dyn ClusterName)
    }

    /// The task under `key`.
    pub fn get(&self, key: &MemberKey) -> Option<&Arc<TaskRecord>> {
        self.cluster(&key.scope, &key.cluster)?
            .get(key.id.as_str())
            .map(|t| &t.0)
    }

    /// Whether a task is under `key`.
    pub fn contains_key(&self, key: &MemberKey) -> bool {
        self.get(key).is_some()
    }

    /// Puts `r` under its key; the task it replaces, if any.
    pub fn insert(&mut self, r: Arc<TaskRecord>) -> Option<Arc<TaskRecord>> {
        let set = match self.cluster(&r.scope, &r.cluster) {
            Some(_) => {
                let name = Named(&r.scope.account, &r.scope.region, &r.cluster);
                self.clusters
                    .get_mut(&name as &dyn ClusterName)
                    .expect("present")
            }
            None => self
                .clusters
                .entry(ClusterKey::new(&r.scope, &r.cluster))
                .or_default(),
        };
        let old = set.replace(TaskRef(r)).map(|t| t.0);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Takes the task under `key` out.
    pub fn remove(&mut self, key: &MemberKey) -> Option<Arc<TaskRecord>> {
        let name = Named(&key.scope.account, &key.scope.region, &key.cluster);
        let set = self.clusters.get_mut(&name as &dyn ClusterName)?;
        let old = set.take(key.id.as_str())?.0;
        if set.is_empty() {
            self.clusters.remove(&name as &dyn ClusterName);
        }
        self.len -= 1;
        Some(old)
    }

    /// How many tasks there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every task, in key order.
    pub fn values(&self) -> impl Iterator<Item = &Arc<TaskRecord>> + '_ {
        self.clusters.values().flatten().map(|t| &t.0)
    }

    /// Every task's key, in order.
    pub fn keys(&self) -> impl Iterator<Item = MemberKey> + '_ {
        self.values().map(|t| t.key())
    }

    /// One cluster's tasks, in id order.
    pub fn in_cluster<'a>(
        &'a self,
        scope: &Scope,
        cluster: &str,
    ) -> impl Iterator<Item = &'a Arc<TaskRecord>> + 'a {
        self.cluster(scope, cluster)
            .into_iter()
            .flatten()
            .map(|t| &t.0)
    }
}

impl std::ops::Index<&MemberKey> for TaskMap {
    type Output = Arc<TaskRecord>;

    fn index(&self, key: &MemberKey) -> &Arc<TaskRecord> {
        self.get(key).expect("no task under this key")
    }
}

/// Equal when they hold equal tasks (as a map of records compares).
impl PartialEq for TaskMap {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .values()
                .zip(other.values())
                .all(|(a, b)| Arc::ptr_eq(a, b) || **a == **b)
    }
}

impl std::fmt::Debug for TaskMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.values().map(|t| (t.key(), t)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(account: &str, cluster: &str, id: &str) -> Arc<TaskRecord> {
        Arc::new(TaskRecord::bare(Scope::new(account, "r"), cluster, id))
    }

    /// The map behaves as the `BTreeMap<MemberKey, Arc<TaskRecord>>` it replaces: same
    /// lookups, same order, same length, replacing and removing alike.
    #[test]
    fn behaves_as_a_map_by_member_key() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (mut map, mut model) = (TaskMap::default(), BTreeMap::new());
        for _ in 0..3000 {
            let t = task(
                ["1", "2"][rng.random_range(0..2)],
                ["a", "ab", "b"][rng.random_range(0..3)],
                &format!("t{}", rng.random_range(0..40)),
            );
            let key = t.key();
            if rng.random_range(0..3) == 0 {
                assert_eq!(map.remove(&key), model.remove(&key));
            } else {
                assert_eq!(map.insert(Arc::clone(&t)), model.insert(key.clone(), t));
            }
            assert_eq!(map.get(&key), model.get(&key));
            assert_eq!(map.contains_key(&key), model.contains_key(&key));
            assert_eq!((map.len(), map.is_empty()), (model.len(), model.is_empty()));
        }
        assert!(map.keys().eq(model.keys().cloned()));
        assert!(map.values().eq(model.values()));
        let scope = Scope::new("1", "r");
        let a: Vec<_> = map.in_cluster(&scope, "a").map(|t| t.key()).collect();
        let want: Vec<_> = model
            .keys()
            .filter(|k| k.scope == scope && k.cluster == "a")
            .cloned()
            .collect();
        assert_eq!(a, want);
        assert!(!a.is_empty());
        assert_eq!(map, map.clone());
    }
}
