//! The DAEMON scheduling strategy: one task per matching ACTIVE instance.
//!
//! A daemon service has no desired count: every ACTIVE instance that the
//! service's constraints (and the task definition's required attributes)
//! select should run exactly one of its tasks. The service controller calls
//! [`daemon_placements`] before placing replica tasks (so daemons get first
//! claim on resources) and again whenever instances join, which keeps daemons
//! on new instances. Placement strategies do not apply to daemons.

use serde::{Deserialize, Serialize};

use crate::place::{Engine, FailureReason, Placement};
use crate::snapshot::{ClusterSnapshot, TaskRequest};
use crate::spec::PlacementSpec;

/// An instance that should run the daemon but cannot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFailure {
    /// Index in [`ClusterSnapshot::instances`].
    pub instance_index: usize,
    /// Instance ARN.
    pub instance_arn: String,
    /// Why: [`FailureReason::Agent`] or a `RESOURCE:*` reason.
    pub reason: FailureReason,
}

/// What the daemon scheduler wants done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonPlan {
    /// One placement per instance that lacks the daemon and can take it, in
    /// snapshot order.
    pub placements: Vec<Placement>,
    /// Matching instances that lack the daemon and cannot take it now.
    pub failures: Vec<InstanceFailure>,
}

/// Plans one task of `request.group` on every ACTIVE instance that the
/// constraints in `spec` select and that has no task of that group yet.
///
/// Instances excluded by `memberOf` or by missing required attributes are not
/// targets and appear nowhere in the plan; `distinctInstance` is implied and
/// strategies are ignored. The result does not depend on a seed: dynamic
/// ports are the lowest free ones.
pub fn daemon_placements(
    snapshot: &ClusterSnapshot,
    request: &TaskRequest,
    spec: &PlacementSpec,
) -> DaemonPlan {
    let mut engine = Engine::new(snapshot, spec, 0, !request.dynamic_ports.is_empty());
    let gid = engine.group_id(&request.group);
    let mut plan = DaemonPlan::default();
    let active: Vec<usize> = engine.active().collect();
    for i in active {
        if engine.group_count(gid, i) > 0 {
            continue;
        }
        match engine.check(i, request, gid) {
            Ok(()) => plan.placements.push(engine.commit(i, request, gid)),
            Err(
                FailureReason::Attribute
                | FailureReason::MemberOf
                | FailureReason::DistinctInstance,
            ) => {}
            Err(reason) => plan.failures.push(InstanceFailure {
                instance_index: i,
                instance_arn: snapshot.instances[i].arn.clone(),
                reason,
            }),
        }
    }
    plan
}
