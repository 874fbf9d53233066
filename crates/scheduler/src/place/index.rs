//! The selection index: for one group (and required-attribute mask), each
//! cell's eligible instances in a `BTreeSet` sorted by their
//! [instance key](Engine::instance_key).
//!
//! An index is built on first use ([`Engine::index_for`]) from the
//! instances that pass the static filters. After a placement only the chosen
//! instance is re-sorted ([`Engine::reindex`]); instances that can never fit
//! again in the call are evicted by the indexed selection itself.

use std::collections::BTreeSet;

use super::engine::Engine;
use super::rank::Key;

/// Instances of one group (and attribute mask) sorted by the per-instance
/// part of their key, per cell.
pub(super) struct Index {
    /// The group the keys count tasks of.
    pub(super) gid: u32,
    /// Per cell, `(instance key, instance)` in key order.
    pub(super) cells: Vec<BTreeSet<(Key, u32)>>,
    /// The key each instance is filed under (`None`: not in the index).
    pub(super) current: Vec<Option<Key>>,
}

impl Engine<'_> {
    /// The index for group `gid` restricted to attribute mask `mask`,
    /// building it on first use.
    pub(super) fn index_for(&mut self, gid: u32, mask: Option<usize>) -> usize {
        if let Some(&idx) = self.index_ids.get(&(gid, mask)) {
            return idx;
        }
        let n = self.snap.instances.len();
        let mut current = vec![None; n];
        let mut cells: Vec<Vec<(Key, u32)>> = vec![Vec::new(); self.cell_values.len()];
        let group = &self.groups[gid as usize];
        for &i32 in &self.active {
            let i = i32 as usize;
            if !self.passes_static(i, mask) {
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
    pub(super) fn reindex(&mut self, i: usize) {
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

    /// Removes instance `i32`, filed under `key` in cell `cell`, from index
    /// `idx`: it can never fit again in this call.
    pub(super) fn evict(&mut self, idx: usize, cell: usize, key: Key, i32: u32) {
        let index = &mut self.indexes[idx];
        index.cells[cell].remove(&(key, i32));
        index.current[i32 as usize] = None;
    }
}
