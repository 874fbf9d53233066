//! Choosing which tasks to stop when a service scales in.
//!
//! ECS stops tasks so that what remains still honours the placement
//! strategies: with `spread`, tasks leave the fullest bucket first; with
//! `binpack`, they leave the instance with the most free resources (the
//! least packed one), so packed instances stay packed. [`choose_tasks_to_stop`]
//! applies the same strategy chain in reverse, one task at a time, after
//! first taking tasks on instances that cannot run them well (not ACTIVE,
//! agent disconnected, or gone from the snapshot).

use std::collections::{BTreeSet, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::snapshot::{ClusterSnapshot, InstanceStatus};
use crate::spec::{BinpackField, PlacementSpec, SpreadField, Strategy};

/// Picks up to `n` of `candidates` (task ARNs, typically the service's
/// running tasks) to stop, best first. Tasks in `protected` (task scale-in
/// protection) are never picked but still count towards the spread balance.
/// Returns fewer than `n` when too few unprotected candidates exist.
/// Deterministic for a given `seed`, which breaks ties.
pub fn choose_tasks_to_stop(
    snapshot: &ClusterSnapshot,
    candidates: &[String],
    n: usize,
    spec: &PlacementSpec,
    protected: &BTreeSet<String>,
    seed: u64,
) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut where_is: HashMap<&str, usize> = HashMap::new();
    for (i, inst) in snapshot.instances.iter().enumerate() {
        for t in &inst.tasks {
            where_is.insert(t.arn.as_str(), i);
        }
    }
    let strategies = spec.effective_strategies();
    // Bucket of each candidate under each spread strategy.
    let instance_of: Vec<Option<usize>> = candidates
        .iter()
        .map(|a| where_is.get(a.as_str()).copied())
        .collect();
    let bucket = |s: &Strategy, inst: Option<usize>| -> Option<String> {
        let inst = &snapshot.instances[inst?];
        match s {
            Strategy::Spread(SpreadField::InstanceId) => Some(inst.arn.clone()),
            Strategy::Spread(SpreadField::Attribute(name)) => Some(
                inst.attributes
                    .get(name)
                    .map(|v| v.clone().unwrap_or_default())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    };
    let buckets: Vec<Vec<Option<String>>> = strategies
        .iter()
        .map(|s| instance_of.iter().map(|&inst| bucket(s, inst)).collect())
        .collect();
    let mut counts: Vec<HashMap<Option<String>, i64>> = vec![HashMap::new(); strategies.len()];
    for (k, per_candidate) in buckets.iter().enumerate() {
        for b in per_candidate {
            *counts[k].entry(b.clone()).or_default() += 1;
        }
    }
    let tiebreak: Vec<u64> = candidates.iter().map(|_| rng.random()).collect();
    let mut remaining: Vec<usize> = (0..candidates.len())
        .filter(|&c| !protected.contains(&candidates[c]))
        .collect();
    let mut chosen = Vec::with_capacity(n.min(remaining.len()));
    while chosen.len() < n && !remaining.is_empty() {
        let random = rng.random::<u64>();
        let key = |c: usize| -> Vec<i64> {
            let unhealthy = match instance_of[c].map(|i| &snapshot.instances[i]) {
                Some(inst) => inst.status != InstanceStatus::Active || !inst.agent_connected,
                None => true,
            };
            let mut key = vec![i64::from(unhealthy)];
            for (k, s) in strategies.iter().enumerate() {
                let inst = instance_of[c].map(|i| &snapshot.instances[i]);
                key.push(match s {
                    Strategy::Spread(_) => counts[k].get(&buckets[k][c]).copied().unwrap_or(0),
                    Strategy::Binpack(BinpackField::Cpu) => {
                        inst.map_or(i64::MAX, |i| i64::from(i.remaining_cpu))
                    }
                    Strategy::Binpack(BinpackField::Memory) => {
                        inst.map_or(i64::MAX, |i| i64::from(i.remaining_memory))
                    }
                    // Reinterpreting the bits is fine: any order is random.
                    Strategy::Random => (random ^ tiebreak[c]) as i64,
                });
            }
            key.push(tiebreak[c] as i64);
            key
        };
        let Some((pos, _)) = remaining.iter().enumerate().max_by_key(|(_, c)| key(**c)) else {
            break;
        };
        let c = remaining.swap_remove(pos);
        for (k, s) in strategies.iter().enumerate() {
            if matches!(s, Strategy::Spread(_))
                && let Some(count) = counts[k].get_mut(&buckets[k][c])
            {
                *count -= 1;
            }
        }
        chosen.push(candidates[c].clone());
    }
    chosen
}
