//! The data plane's health reports: what `flotilla server --lb-listen`'s health checks
//! (crate `lb`) observe, stored on the targets so that DescribeTargetHealth shows it.
//!
//! Not an ELBv2 API operation: the server's own health task calls [`report_health`]
//! through the single writer with the *changes* it saw (a target turned healthy, or
//! unhealthy with a reason). The op is idempotent and cheap when nothing changed: it
//! writes only the groups whose stored health differs from a report (the healthy flag
//! or the reason), and skips reports for targets that are no longer registered (or are
//! draining: a draining target's health no longer shows). At most
//! [`MAX_HEALTH_REPORTS`] reports per op.

use std::collections::{BTreeMap, BTreeSet};

use super::{ElbArn, ElbResource, ElbWritten, validation};
use crate::Ctx;
use crate::state::elb::{ElbKey, ObservedHealth, TargetGroupRecord};
use crate::state::{Change, Record, Scope, State};

/// Most reports one [`report_health`] takes (a data plane sends more in several ops).
pub const MAX_HEALTH_REPORTS: usize = 1000;

/// One target's health as the data plane observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// The target group's scope.
    pub scope: Scope,
    /// The target group: its name or its ARN.
    pub target_group: String,
    /// The target's id (instance id or IP address).
    pub target_id: String,
    /// The target's port.
    pub port: u16,
    /// What the checks observed. `since_ms` is replaced by the writer's clock when the
    /// report changes the stored health.
    pub health: ObservedHealth,
}

/// The key of the group a report names, when it names one in its own scope.
fn group_key(r: &HealthReport) -> Option<ElbKey> {
    if !r.target_group.starts_with("arn:") {
        return Some((r.scope.clone(), r.target_group.clone()));
    }
    match ElbArn::parse(&r.target_group)? {
        ElbArn {
            resource: ElbResource::TargetGroup { name, .. },
            region,
            account,
        } if region == r.scope.region && account == r.scope.account => {
            Some((r.scope.clone(), name))
        }
        _ => None,
    }
}

/// Stores observed health on the targets the reports name (see the module doc). A
/// report for a group or target that does not exist (any more) is skipped, not an
/// error: the data plane may lag a deregistration. More than [`MAX_HEALTH_REPORTS`]
/// reports is a `ValidationError`.
pub fn report_health(state: &State, ctx: &mut Ctx, reports: Vec<HealthReport>) -> ElbWritten<()> {
    if reports.len() > MAX_HEALTH_REPORTS {
        return Err(validation(format!(
            "At most {MAX_HEALTH_REPORTS} health reports can be stored at once"
        )));
    }
    let now_ms = ctx.now_ms();
    let mut groups: BTreeMap<ElbKey, TargetGroupRecord> = BTreeMap::new();
    let mut dirty: BTreeSet<ElbKey> = BTreeSet::new();
    for r in reports {
        let Some(key) = group_key(&r) else { continue };
        let Some(stored) = state.elb.target_groups.get(&key) else {
            continue;
        };
        // An ARN of a group deleted and created again under the same name is not this one.
        if r.target_group.starts_with("arn:") && stored.arn() != r.target_group {
            continue;
        }
        let group = groups.entry(key.clone()).or_insert_with(|| {
            let mut g = stored.clone();
            g.prune_drained(now_ms);
            g
        });
        let Some(target) = group
            .targets
            .iter_mut()
            .find(|t| t.is(&r.target_id, r.port) && t.is_active())
        else {
            continue;
        };
        let same = target
            .health
            .as_ref()
            .is_some_and(|h| h.healthy == r.health.healthy && h.reason == r.health.reason);
        if !same {
            target.health = Some(ObservedHealth {
                since_ms: now_ms,
                ..r.health
            });
            dirty.insert(key);
        }
    }
    // Only the groups whose stored health changed are written (pruning alone is not
    // worth a write: readers skip drained targets).
    let changes = groups
        .into_iter()
        .filter(|(k, _)| dirty.contains(k))
        .map(|(_, g)| Change::Put(Record::TargetGroup(g)))
        .collect();
    Ok(((), changes))
}
