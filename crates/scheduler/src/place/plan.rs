//! What placement returns: the [`Plan`], one [`Outcome`] per request, and
//! the [`Placement`] of a request that was placed.

use serde::{Deserialize, Serialize};

use super::failure::PlacementFailure;
use crate::snapshot::HostPort;

/// A successful placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Index of the chosen instance in [`ClusterSnapshot::instances`](crate::ClusterSnapshot::instances).
    pub instance_index: usize,
    /// ARN of the chosen instance.
    pub instance_arn: String,
    /// The host ports picked for [`TaskRequest::dynamic_ports`](crate::TaskRequest::dynamic_ports),
    /// in the same order, from the instance's dynamic port range.
    pub dynamic_ports: Vec<HostPort>,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Placed.
    Placed(Placement),
    /// Not placed; nothing was reserved for it.
    Failed(PlacementFailure),
}

/// The result of [`place`](super::place): one outcome per request, in
/// request order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Outcomes, parallel to the requests.
    pub outcomes: Vec<Outcome>,
}

impl Plan {
    /// The successful placements with their request index.
    pub fn placed(&self) -> impl Iterator<Item = (usize, &Placement)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Outcome::Placed(p) => Some((i, p)),
                Outcome::Failed(_) => None,
            })
    }

    /// The failures with their request index.
    pub fn failed(&self) -> impl Iterator<Item = (usize, &PlacementFailure)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Outcome::Failed(f) => Some((i, f)),
                Outcome::Placed(_) => None,
            })
    }

    /// Number of successful placements.
    pub fn placed_count(&self) -> usize {
        self.placed().count()
    }
}
