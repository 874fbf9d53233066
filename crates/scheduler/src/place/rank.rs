//! Ranking: the lexicographic [`Key`] the strategy chain gives a feasible
//! instance (smaller ranks first).
//!
//! Each effective strategy contributes one component: an attribute spread
//! the group's task count in the instance's bucket, `spread(instanceId)` the
//! group's tasks on the instance, a binpack the remaining CPU or memory,
//! `random` a seeded hash. A seeded per-instance tie-break comes last, so no
//! two instances rank equal.
//!
//! The indexed selection splits the key in two: the *cell prefix* (the
//! leading attribute spreads, the same for every instance of a cell) and the
//! *instance key* (the per-instance strategies and the tie-break), which
//! orders instances inside a cell.

use super::engine::{Engine, GroupState};
use crate::spec::{BinpackField, SpreadField, Strategy};

/// Key components: one per effective strategy plus the tie-break.
pub(super) const KEY_LEN: usize = crate::spec::MAX_STRATEGIES + 1;

/// A ranking key; smaller is better.
pub(super) type Key = [u64; KEY_LEN];

/// A key whose first component is `v` and the rest zero.
pub(super) fn first_component(v: u64) -> Key {
    let mut k = [0u64; KEY_LEN];
    k[0] = v;
    k
}

/// splitmix64: a cheap, well-mixed hash for per-placement random keys.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Engine<'_> {
    /// The full key of instance `i` for `group`; `random` is this
    /// placement's draw for the `random` strategy.
    pub(super) fn key(&self, i: usize, group: &GroupState, random: u64) -> Key {
        let mut key = [0u64; KEY_LEN];
        for (k, s) in self.strategies.iter().enumerate() {
            key[k] = match s {
                Strategy::Spread(SpreadField::Attribute(_)) => {
                    let v = self.spread_values[k][i] as usize;
                    u64::from(group.per_value[k][v])
                }
                Strategy::Random => mix(random ^ self.tiebreak[i]),
                Strategy::Spread(SpreadField::InstanceId) | Strategy::Binpack(_) => {
                    self.instance_component(s, i, group).unwrap_or_default()
                }
            };
        }
        key[self.strategies.len()] = self.tiebreak[i];
        key
    }

    /// The component a per-instance strategy (`spread(instanceId)`,
    /// binpack) gives instance `i`; `None` for attribute spreads and
    /// `random`.
    #[inline]
    fn instance_component(&self, s: &Strategy, i: usize, group: &GroupState) -> Option<u64> {
        match s {
            Strategy::Spread(SpreadField::InstanceId) => Some(u64::from(group.per_instance[i])),
            Strategy::Binpack(BinpackField::Cpu) => Some(u64::from(self.cpu[i])),
            Strategy::Binpack(BinpackField::Memory) => Some(u64::from(self.mem[i])),
            Strategy::Spread(SpreadField::Attribute(_)) | Strategy::Random => None,
        }
    }

    /// The key components that are the same for a whole cell, up to the
    /// first per-instance strategy.
    pub(super) fn cell_prefix(&self, cell: usize, group: &GroupState) -> Key {
        let mut key = [0u64; KEY_LEN];
        for (k, slot) in key.iter_mut().enumerate().take(self.prefix_len) {
            let v = self.cell_values[cell][k] as usize;
            *slot = group.per_value[k].get(v).copied().map_or(0, u64::from);
        }
        key
    }

    /// The per-instance part of instance `i`'s key for `group`.
    pub(super) fn instance_key(&self, i: usize, group: &GroupState) -> Key {
        let mut key = [0u64; KEY_LEN];
        let mut n = 0;
        for s in self.strategies {
            let Some(v) = self.instance_component(s, i, group) else {
                continue;
            };
            key[n] = v;
            n += 1;
        }
        key[n] = self.tiebreak[i];
        key
    }
}
