//! Selection: the best feasible instance for one request.
//!
//! Three ways, one answer (see [`Engine::select`]):
//!
//! - **linear** ([`Engine::select_linear`]): one scan over every ACTIVE
//!   instance, the reference the others are tested against;
//! - **indexed** ([`Engine::select_indexed`], chains without `random`): the
//!   first feasible instance of each cell's sorted index, best cell wins,
//!   O(cells × log instances);
//! - **sampled** ([`Engine::select_random_sampled`], attribute spreads then
//!   `random`): uniform draws from the lowest-count cells until one is
//!   feasible, with a scan after [`RANDOM_TRIES`] misses.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::engine::Engine;
use super::feasible::Fit;
use super::rank::{KEY_LEN, Key, first_component, mix};
use crate::snapshot::TaskRequest;
use crate::spec::BinpackField;

/// Draws before [`Engine::select_random_sampled`] falls back to a scan.
const RANDOM_TRIES: usize = 64;

impl Engine<'_> {
    /// The best feasible instance for `req`, or `None`.
    pub(super) fn select(&mut self, req: &TaskRequest, gid: u32) -> Option<usize> {
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
        let mask = self.attribute_mask(&req.required_attributes);
        let group = &self.groups[gid as usize];
        let mut best: Option<(Key, usize)> = None;
        for &i in &self.active {
            let i = i as usize;
            if !self.passes_static(i, mask) {
                continue;
            }
            if self.fit(i, req, group) != Fit::Yes {
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
        for (c, k, i32) in evict {
            self.evict(idx, c, k, i32);
        }
        best.map(|(_, i)| i)
    }

    /// Sampled selection for chains of attribute spreads ending in `random`:
    /// take the cells with the lowest spread counts, draw instances from
    /// them uniformly and keep the first feasible one (rejection sampling is
    /// uniform over the feasible ones). After [`RANDOM_TRIES`] misses, scan
    /// those cells; if none is feasible, move on to the next-lowest cells.
    pub(super) fn select_random_sampled(&mut self, req: &TaskRequest, gid: u32) -> Option<usize> {
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

    /// [`Engine::fit`] plus the static filters, for sampled selection: an
    /// instance that fails the per-call filters is dropped for good, one
    /// that lacks this request's attributes only skipped.
    fn sample_fit(&self, i: usize, req: &TaskRequest, gid: u32, mask: Option<usize>) -> Fit {
        if !self.base_ok[i] {
            return Fit::Never;
        }
        if mask.is_some_and(|m| !self.masks[m][i]) {
            return Fit::NotNow;
        }
        self.fit(i, req, &self.groups[gid as usize])
    }
}
