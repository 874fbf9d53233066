//! Managed scaling's state transitions, as pure writes for the single writer
//! (`ControlPlane::write`): an instance set DRAINING ([`drain`]), a scale-out the hook
//! accepted ([`scaled_out`], for the warm-up), an instance the hook removed
//! ([`removed`]), and the outcome of a hook call shown on the provider
//! ([`report_hook`], its `updateStatusReason`). Each re-reads the state it changes, so a
//! write that comes after the world moved on changes nothing it should not.

use model::status::InstanceStatus;
use model::wire::{self, ContainerInstanceStatus};

use crate::engine::{Ctx, Written};
use crate::ops::instances;
use crate::state::{Change, MemberKey, Record, State};

/// The prefix of the `updateStatusReason` managed scaling sets on a provider whose
/// scaling hook failed; a later success clears only a reason with this prefix.
pub const REASON_PREFIX: &str = "Managed scaling: ";

/// The longest reason kept (characters of the hook's error).
pub const MAX_REASON_CHARS: usize = 1024;

/// Sets `ids` (container instance ids of `cluster`, at most 10) DRAINING, those still
/// ACTIVE. Returns how many changed.
pub fn drain(state: &State, ctx: &mut Ctx, cluster: &str, ids: &[String]) -> Written<usize> {
    let active: Vec<String> = ids
        .iter()
        .filter(|id| {
            state
                .instances
                .get(&MemberKey::new(&ctx.scope, cluster, id))
                .is_some_and(|r| r.instance.status() == Some(InstanceStatus::Active))
        })
        .take(10)
        .cloned()
        .collect();
    if active.is_empty() {
        return Ok((0, Vec::new()));
    }
    let n = active.len();
    let (_, changes) = instances::update_state(
        state,
        ctx,
        wire::UpdateContainerInstancesStateRequest {
            cluster: Some(cluster.to_owned()),
            container_instances: Some(active),
            status: Some(ContainerInstanceStatus::Draining),
        },
    )?;
    Ok((n, changes))
}

/// Remembers that the hook accepted a scale-out of `count` instances for provider
/// `name` now (the warm-up counts from it), and clears a managed scaling failure
/// reason.
pub fn scaled_out(state: &State, ctx: &mut Ctx, name: &str, count: u32) -> Written<()> {
    let Some(rec) = state
        .capacity_providers
        .get(&(ctx.scope.clone(), name.to_owned()))
    else {
        return Ok(((), Vec::new()));
    };
    let mut rec = rec.clone();
    rec.scaling.last_scale_out_at = Some(ctx.now);
    rec.scaling.last_scale_out_count = Some(count);
    if rec
        .provider
        .update_status_reason
        .as_deref()
        .is_some_and(|r| r.starts_with(REASON_PREFIX))
    {
        rec.provider.update_status_reason = None;
    }
    Ok(((), vec![Change::Put(Record::CapacityProvider(rec))]))
}

/// The hook removed instance `id` of `cluster`: deregisters it (with force, as ECS
/// deregisters a terminated instance), if it is still registered.
pub fn removed(state: &State, ctx: &mut Ctx, cluster: &str, id: &str) -> Written<bool> {
    let registered = state
        .instances
        .get(&MemberKey::new(&ctx.scope, cluster, id))
        .is_some_and(|r| r.instance.status() != Some(InstanceStatus::Inactive));
    if !registered {
        return Ok((false, Vec::new()));
    }
    let (_, changes) = instances::deregister(
        state,
        ctx,
        wire::DeregisterContainerInstanceRequest {
            cluster: Some(cluster.to_owned()),
            container_instance: Some(id.to_owned()),
            force: Some(true),
        },
    )?;
    Ok((true, changes))
}

/// Shows a hook call's outcome on provider `name`: `Some(error)` sets its
/// `updateStatusReason` to [`REASON_PREFIX`] + the error (at most
/// [`MAX_REASON_CHARS`]), `None` clears a reason managed scaling set. No change when
/// it already reads so.
pub fn report_hook(state: &State, ctx: &mut Ctx, name: &str, error: Option<&str>) -> Written<()> {
    let Some(rec) = state
        .capacity_providers
        .get(&(ctx.scope.clone(), name.to_owned()))
    else {
        return Ok(((), Vec::new()));
    };
    let current = rec.provider.update_status_reason.as_deref();
    let wanted = match error {
        Some(e) => Some(format!(
            "{REASON_PREFIX}{}",
            e.chars().take(MAX_REASON_CHARS).collect::<String>()
        )),
        None if current.is_some_and(|r| r.starts_with(REASON_PREFIX)) => None,
        None => return Ok(((), Vec::new())),
    };
    if current == wanted.as_deref() {
        return Ok(((), Vec::new()));
    }
    let mut rec = rec.clone();
    rec.provider.update_status_reason = wanted;
    Ok(((), vec![Change::Put(Record::CapacityProvider(rec))]))
}
