//! [`SharedMap`]: a map whose records the writer's working state and the published one
//! share, read as a plain `BTreeMap<K, V>` is.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::sync::Arc;

/// Records by key, each behind an [`Arc`] that the working and the published state share
/// (see [`super::State::apply_shared`]): publishing a change copies the changed record
/// once, not every record of its kind. Reads see `&V`, as from a `BTreeMap<K, V>`; a
/// record is never edited in place (an op edits a copy and puts it). Container instances
/// and services were held twice; shared, the server's RSS at 5,000 instances and 500
/// services is 11 MB lower (docs/performance.md, "Control plane at scale").
#[derive(Clone)]
pub struct SharedMap<K, V> {
    map: BTreeMap<K, Arc<V>>,
}

impl<K, V> Default for SharedMap<K, V> {
    fn default() -> Self {
        SharedMap {
            map: BTreeMap::new(),
        }
    }
}

impl<K: Ord, V> SharedMap<K, V> {
    /// The record under `key`.
    pub fn get<Q: ?Sized + Ord>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|v| &**v)
    }

    /// The record under `key`, as the shared allocation.
    pub fn get_shared<Q: ?Sized + Ord>(&self, key: &Q) -> Option<&Arc<V>>
    where
        K: Borrow<Q>,
    {
        self.map.get(key)
    }

    /// Whether a record is under `key`.
    pub fn contains_key<Q: ?Sized + Ord>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(key)
    }

    /// Puts `value` under `key`; the record it replaces, if any.
    pub fn insert(&mut self, key: K, value: Arc<V>) -> Option<Arc<V>> {
        self.map.insert(key, value)
    }

    /// Takes the record under `key` out.
    pub fn remove<Q: ?Sized + Ord>(&mut self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
    {
        self.map.remove(key)
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + '_ {
        self.map.keys()
    }

    /// Every record, in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + '_ {
        self.map.values().map(|v| &**v)
    }

    /// Every (key, record), in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator + '_ {
        self.map.iter().map(|(k, v)| (k, &**v))
    }

    /// The (key, record)s in `range`, in key order.
    pub fn range<T: ?Sized + Ord, R: RangeBounds<T>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_
    where
        K: Borrow<T>,
    {
        self.map.range(range).map(|(k, v)| (k, &**v))
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a SharedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<
        std::collections::btree_map::Iter<'a, K, Arc<V>>,
        fn((&'a K, &'a Arc<V>)) -> (&'a K, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter().map(|(k, v)| (k, &**v))
    }
}

impl<K: Ord + Borrow<Q>, Q: ?Sized + Ord, V> std::ops::Index<&Q> for SharedMap<K, V> {
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        &self.map[key]
    }
}

/// Equal when they hold equal records under equal keys (as a `BTreeMap<K, V>` compares).
impl<K: PartialEq, V: PartialEq> PartialEq for SharedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map.len() == other.map.len()
            && self
                .map
                .iter()
                .zip(&other.map)
                .all(|((ka, a), (kb, b))| ka == kb && (Arc::ptr_eq(a, b) || **a == **b))
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.map.iter().map(|(k, v)| (k, &**v)))
            .finish()
    }
}
