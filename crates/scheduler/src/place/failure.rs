//! Why a request could not be placed: the [`FailureReason`] of each
//! instance in ECS's spelling, grouped into a [`PlacementFailure`], and the
//! diagnosis pass that produces it once selection has found nothing.
//!
//! Diagnosis is deliberately separate from selection: selection takes the
//! fast path ([`Engine::fit`]) and stops at the first feasible instance,
//! while diagnosis runs every filter in canonical order ([`Engine::check`])
//! on every ACTIVE instance to name the first one each fails.

use model::wire::Failure;
use serde::{Deserialize, Serialize};

use super::engine::Engine;
use crate::snapshot::TaskRequest;

/// Why an instance could not take a task, with the spelling ECS uses in
/// `Failure.reason` (see [`FailureReason::as_str`]). Variants are ordered by
/// the filter that produces them: an instance rejected for `Memory` passed
/// every earlier check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FailureReason {
    /// The cluster has no ACTIVE container instance at all.
    NoContainerInstances,
    /// The instance's agent is disconnected (`AGENT`).
    Agent,
    /// The instance lacks an attribute the task definition requires (`ATTRIBUTE`).
    Attribute,
    /// A `memberOf` constraint excluded the instance.
    MemberOf,
    /// The instance already runs a task of the same group.
    DistinctInstance,
    /// Not enough CPU (`RESOURCE:CPU`).
    Cpu,
    /// Not enough memory (`RESOURCE:MEMORY`).
    Memory,
    /// A TCP host port is taken or no dynamic TCP port is free (`RESOURCE:PORTS`).
    Ports,
    /// A UDP host port is taken or no dynamic UDP port is free (`RESOURCE:PORTS_UDP`).
    PortsUdp,
}

impl FailureReason {
    /// The ECS spelling, for `Failure.reason` and service event messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NoContainerInstances => {
                "No Container Instances were found in your cluster."
            }
            FailureReason::Agent => "AGENT",
            FailureReason::Attribute => "ATTRIBUTE",
            FailureReason::MemberOf => "MemberOf placement constraint unsatisfied.",
            FailureReason::DistinctInstance => "DistinctInstance placement constraint unsatisfied.",
            FailureReason::Cpu => "RESOURCE:CPU",
            FailureReason::Memory => "RESOURCE:MEMORY",
            FailureReason::Ports => "RESOURCE:PORTS",
            FailureReason::PortsUdp => "RESOURCE:PORTS_UDP",
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many instances were rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The reason.
    pub reason: FailureReason,
    /// How many ACTIVE instances failed first on it.
    pub instances: usize,
    /// One of them (the first in snapshot order), for `Failure.arn`.
    pub example_instance_arn: String,
}

/// Why a request could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementFailure {
    /// Rejections grouped by reason, in filter order. Empty only together
    /// with [`FailureReason::NoContainerInstances`] in `closest`.
    pub rejections: Vec<Rejection>,
    /// The instance that got furthest through the filters and the reason it
    /// failed (ECS's "closest matching container-instance"); without an
    /// ARN when the cluster has no ACTIVE instance.
    pub closest: (Option<String>, FailureReason),
}

impl PlacementFailure {
    pub(super) fn no_instances() -> PlacementFailure {
        PlacementFailure {
            rejections: Vec::new(),
            closest: (None, FailureReason::NoContainerInstances),
        }
    }

    /// The reason of the closest instance.
    pub fn reason(&self) -> FailureReason {
        self.closest.1
    }

    /// `RunTask`-style failures: one per rejection reason, naming an
    /// instance that failed on it (or, with no instances, one failure with no
    /// ARN).
    pub fn to_wire(&self) -> Vec<Failure> {
        if self.rejections.is_empty() {
            return vec![Failure {
                arn: None,
                reason: Some(self.closest.1.as_str().to_string()),
                detail: None,
            }];
        }
        self.rejections
            .iter()
            .map(|r| Failure {
                arn: Some(r.example_instance_arn.clone()),
                reason: Some(r.reason.as_str().to_string()),
                detail: None,
            })
            .collect()
    }

    /// The service-event sentence ECS writes for an unplaceable task,
    /// starting after "service NAME was unable to place a task because ".
    pub fn message(&self) -> String {
        match &self.closest {
            (Some(arn), reason) => format!(
                "no container instance met all of its requirements. The closest matching \
                 (container-instance {arn}) encountered error \"{reason}\"."
            ),
            (None, reason) => {
                format!("no container instance met all of its requirements. Reason: {reason}")
            }
        }
    }
}

impl Engine<'_> {
    /// Why no instance can take `req`.
    pub(super) fn diagnose(&self, req: &TaskRequest, gid: u32) -> PlacementFailure {
        let mut rejections: Vec<Rejection> = Vec::new();
        let mut closest: Option<(usize, FailureReason)> = None;
        for &i in &self.active {
            let i = i as usize;
            let Err(reason) = self.check(i, req, gid) else {
                continue;
            };
            match rejections.iter_mut().find(|r| r.reason == reason) {
                Some(r) => r.instances += 1,
                None => rejections.push(Rejection {
                    reason,
                    instances: 1,
                    example_instance_arn: self.snap.instances[i].arn.clone(),
                }),
            }
            if closest.is_none_or(|(_, r)| reason > r) {
                closest = Some((i, reason));
            }
        }
        rejections.sort_by_key(|r| r.reason);
        match closest {
            Some((i, reason)) => PlacementFailure {
                rejections,
                closest: (Some(self.snap.instances[i].arn.clone()), reason),
            },
            None => PlacementFailure::no_instances(),
        }
    }
}
