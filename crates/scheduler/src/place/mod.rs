//! Replica placement: feasibility filters → rankers → select.
//!
//! [`place`] walks the requests in order. For each one it scans the ACTIVE
//! instances once, drops those that fail a filter (agent, attributes,
//! `memberOf`, `distinctInstance`, CPU, memory, ports), ranks the rest by the
//! strategy chain as a lexicographic key, and takes the smallest key. The
//! chosen instance's remaining resources, ports and group counts are then
//! updated in the engine's own working copy, so later requests of the same
//! call see earlier placements. The snapshot itself is never modified.
//!
//! When nothing fits, a second, slower pass over the instances records why
//! each was rejected; that is what [`PlacementFailure`] reports.
//!
//! # Layout
//!
//! Split the way Nomad's `scheduler/` splits `feasible`, `rank` and
//! `select`; every file but `plan.rs` adds an `impl Engine` block:
//!
//! - this file: the entry points [`place`] and [`place_reference`];
//! - `engine.rs`: the working state of one call (`Engine`): construction
//!   from the snapshot, group counters, placing one request, reserving it;
//! - `feasible.rs`: the filters, in canonical order and as selection's fast
//!   path;
//! - `rank.rs`: the lexicographic ranking key;
//! - `index.rs`: the per-cell sorted index behind indexed selection;
//! - `select.rs`: choosing an instance (linear scan, indexed, sampled);
//! - `failure.rs`: [`FailureReason`], [`PlacementFailure`] and the diagnosis
//!   pass;
//! - `plan.rs`: the output types [`Plan`], [`Outcome`], [`Placement`].

mod engine;
mod failure;
mod feasible;
mod index;
mod plan;
mod rank;
mod select;
#[cfg(test)]
mod tests;

pub(crate) use engine::Engine;
pub use failure::{FailureReason, PlacementFailure, Rejection};
pub use plan::{Outcome, Placement, Plan};

use crate::snapshot::{ClusterSnapshot, TaskRequest};
use crate::spec::PlacementSpec;

/// Places `requests` on `snapshot` in order, honouring `spec`. Deterministic
/// for a given `seed`: the seed drives the random strategy and the tie-break
/// between instances that rank equal.
pub fn place(
    snapshot: &ClusterSnapshot,
    requests: &[TaskRequest],
    spec: &PlacementSpec,
    seed: u64,
) -> Plan {
    place_impl(snapshot, requests, spec, seed, false)
}

/// [`place`] with the reference selection: one scan over every instance per
/// request, O(instances) each. Returns exactly what [`place`] returns; kept
/// for equivalence tests and for benchmarks to compare against.
pub fn place_reference(
    snapshot: &ClusterSnapshot,
    requests: &[TaskRequest],
    spec: &PlacementSpec,
    seed: u64,
) -> Plan {
    place_impl(snapshot, requests, spec, seed, true)
}

/// [`place`], optionally forcing the O(instances) reference scan.
fn place_impl(
    snapshot: &ClusterSnapshot,
    requests: &[TaskRequest],
    spec: &PlacementSpec,
    seed: u64,
    force_linear: bool,
) -> Plan {
    let needs_dynamic = requests.iter().any(|r| !r.dynamic_ports.is_empty());
    let mut engine = Engine::new(snapshot, spec, seed, needs_dynamic);
    if force_linear {
        engine.use_index = false;
        engine.random_cells = false;
    }
    engine.uniform_requests = requests.windows(2).all(|w| {
        let (a, b) = (&w[0], &w[1]);
        a.cpu == b.cpu
            && a.memory == b.memory
            && a.static_ports == b.static_ports
            && a.dynamic_ports == b.dynamic_ports
    });
    let mut outcomes = Vec::with_capacity(requests.len());
    // A failed request fails the same way again until something is placed.
    let mut last_failure: Option<(usize, u64, PlacementFailure)> = None;
    for (index, req) in requests.iter().enumerate() {
        if let Some((prev, placed_then, failure)) = &last_failure
            && *placed_then == engine.placements
            && requests[*prev] == *req
        {
            outcomes.push(Outcome::Failed(failure.clone()));
            continue;
        }
        let outcome = match engine.place_one(req) {
            Ok(p) => Outcome::Placed(p),
            Err(f) => {
                last_failure = Some((index, engine.placements, f.clone()));
                Outcome::Failed(f)
            }
        };
        outcomes.push(outcome);
    }
    Plan { outcomes }
}
