//! Service deployments and service revisions (ECS's deployment history): which records
//! a service's deployments are, and how their status follows the service controller.
//!
//! Every deployment of a service's `deployments[]` (CreateService's first, each new one of
//! UpdateService) gets a **service revision** (its configuration, frozen) and, when it
//! becomes PRIMARY for the first time, a **service deployment** that rolls it out,
//! replacing the deployments listed beside it. [`sync`] keeps them in step with the
//! service as it is written: it is level-triggered (a function of the service record and
//! the stored history) and idempotent, like the controller that calls it.
//!
//! Status, as ECS shows it: PENDING (created by CreateService/UpdateService, before the
//! controller's first pass) → IN_PROGRESS → SUCCESSFUL once the rollout COMPLETED;
//! STOPPED when the circuit breaker fails it without rollback or a newer deployment
//! replaces it; with a rollback (the circuit breaker's, or StopServiceDeployment's
//! ROLLBACK_REQUESTED) ROLLBACK_IN_PROGRESS → ROLLBACK_SUCCESSFUL (or ROLLBACK_FAILED when
//! the revision rolled back to fails too).
//!
//! History is bounded: at most [`MAX_HISTORY_PER_SERVICE`] service deployments and as
//! many revisions per service, the oldest finished ones dropped first (ECS keeps 90 days).
//! They go with the service record (retention of a deleted service).

use std::collections::HashSet;

use model::lifecycle::TaskStatus;
use model::status::{DeploymentStatus, ServiceStatus};
use model::wire::{
    self, DeploymentRolloutState as Rollout, ServiceDeploymentRollbackMonitorsStatus as Monitor,
    ServiceDeploymentStatus as Status,
};

use crate::engine::Ctx;
use crate::ops::cloudwatch::deployment::{is_alarm_failure, triggered};
use crate::state::{
    Change, HookState, HookStatus, Record, Scope, ServiceDeploymentRecord, ServiceKey,
    ServiceRecord, ServiceRevisionRecord, State,
};
use crate::task::{is_pending, is_running, service_group};

/// Most service deployments, and most service revisions, kept per service.
pub const MAX_HISTORY_PER_SERVICE: usize = 100;
/// Most ARNs one DescribeServiceDeployments or DescribeServiceRevisions names (ECS: 20).
pub const MAX_DESCRIBE_ARNS: usize = 20;
/// `rollback.reason` of a rollback StopServiceDeployment asked for.
pub const STOP_ROLLBACK_REASON: &str = "Service deployment rolled back because of a stop request.";

/// The circuit breaker's reason (the deployment's `rolloutStateReason` when it fails).
const BREAKER_REASON: &str = "ECS deployment circuit breaker: tasks failed to start.";

/// Whether a service deployment in `status` is over (nothing changes it any more).
pub fn is_finished(status: Option<Status>) -> bool {
    matches!(
        status,
        Some(
            Status::Successful
                | Status::Stopped
                | Status::RollbackSuccessful
                | Status::RollbackFailed
        )
    )
}

/// `arn:aws:ecs:REGION:ACCOUNT:service-deployment/CLUSTER/SERVICE/ID`.
pub fn deployment_arn(scope: &Scope, cluster: &str, service: &str, id: &str) -> String {
    history_arn(scope, "service-deployment", cluster, service, id)
}

/// `arn:aws:ecs:REGION:ACCOUNT:service-revision/CLUSTER/SERVICE/ID`.
pub fn revision_arn(scope: &Scope, cluster: &str, service: &str, id: &str) -> String {
    history_arn(scope, "service-revision", cluster, service, id)
}

fn history_arn(scope: &Scope, kind: &str, cluster: &str, service: &str, id: &str) -> String {
    format!(
        "arn:aws:ecs:{}:{}:{kind}/{cluster}/{service}/{id}",
        scope.region, scope.account
    )
}

/// The (cluster, service, id) a service-deployment (`kind` `service-deployment`) or
/// service-revision ARN of `scope` names; `None` for anything else.
pub fn parse_arn<'a>(
    scope: &Scope,
    kind: &str,
    arn: &'a str,
) -> Option<(&'a str, &'a str, &'a str)> {
    let prefix = format!("arn:aws:ecs:{}:{}:{kind}/", scope.region, scope.account);
    let rest = arn.strip_prefix(prefix.as_str())?;
    let mut parts = rest.split('/');
    let (c, s, id) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !c.is_empty() && !s.is_empty() && !id.is_empty())
        .then_some((c, s, id))
}

/// Live task counts of the deployment `deployment_id` of `svc` (requested: its
/// desired count while listed, else 0).
pub fn revision_counts(
    state: &State,
    svc: &ServiceRecord,
    deployment_id: &str,
    arn: Option<String>,
) -> wire::ServiceRevisionSummary {
    let requested = svc
        .service
        .deployments
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|d| d.id.as_deref() == Some(deployment_id))
        .and_then(|d| d.desired_count)
        .unwrap_or(0);
    let group = service_group(&svc.name);
    let (mut running, mut pending) = (0, 0);
    for t in state.tasks_in_group(&svc.scope, &svc.cluster, &group) {
        if t.task.started_by.as_deref() != Some(deployment_id)
            || t.task.desired() != Some(TaskStatus::Running)
        {
            continue;
        }
        running += i32::from(is_running(&t.task));
        pending += i32::from(is_pending(&t.task));
    }
    wire::ServiceRevisionSummary {
        arn,
        requested_task_count: Some(requested),
        running_task_count: Some(running),
        pending_task_count: Some(pending),
        ..Default::default()
    }
}

/// The service deployment as DescribeServiceDeployments shows it: live revision counts,
/// lifecycle stage and lifecycle hooks while it is not finished.
pub fn describe_deployment(
    state: &State,
    rec: &ServiceDeploymentRecord,
) -> wire::ServiceDeployment {
    let mut d = rec.deployment.clone();
    if is_finished(d.status) {
        return d;
    }
    let key = ServiceKey::new(&rec.scope, &rec.cluster, &rec.service);
    let Some(svc) = state.services.get(&key) else {
        return d;
    };
    set_revision_counts(state, svc, &rec.target, &rec.sources, &mut d);
    set_lifecycle(svc, &rec.target, &mut d);
    d
}

/// A lifecycle hook invocation's status as DescribeServiceDeployments shows it: an open
/// PAUSE hook is AWAITING_ACTION, an open webhook IN_PROGRESS, one ended by its timeout
/// TIMED_OUT (whatever the timeout action).
pub fn hook_status(h: &HookState) -> wire::DeploymentLifecycleHookStatus {
    use wire::DeploymentLifecycleHookStatus as S;
    match h.status {
        _ if h.timed_out => S::TimedOut,
        HookStatus::Pending | HookStatus::InProgress if h.pause => S::AwaitingAction,
        HookStatus::Pending | HookStatus::InProgress => S::InProgress,
        HookStatus::Succeeded => S::Succeeded,
        HookStatus::Failed => S::Failed,
        HookStatus::TimedOut => S::TimedOut,
    }
}

/// One entry of `lifecycleHookDetails`: the invocation `h` (its `hookId` is the
/// execution id, which ContinueServiceDeployment takes).
fn hook_detail(h: &HookState) -> wire::DeploymentLifecycleHookDetail {
    use wire::DeploymentLifecycleHookTargetType as T;
    wire::DeploymentLifecycleHookDetail {
        hook_id: Some(h.id.clone()),
        target_type: Some(if h.pause { T::Pause } else { T::AwsLambda }),
        target_arn: (!h.pause).then(|| h.target.clone()),
        status: Some(hook_status(h)),
        expires_at: Some(h.expires_at),
        timeout_action: Some(if h.continue_on_timeout {
            wire::DeploymentLifecycleHookAction::Continue
        } else {
            wire::DeploymentLifecycleHookAction::Rollback
        }),
    }
}

/// Sets `d`'s `lifecycleStage` and `lifecycleHookDetails` from what the service
/// controller recorded for deployment `target` in `svc`; leaves them as they are when it
/// recorded nothing for it (any more: the invocations go once another deployment is
/// PRIMARY, so the stored ones are the last seen).
fn set_lifecycle(svc: &ServiceRecord, target: &str, d: &mut wire::ServiceDeployment) {
    let bg = &svc.blue_green;
    if let Some((id, stage)) = &bg.stage
        && id == target
    {
        d.lifecycle_stage = Some(*stage);
    }
    let details: Vec<_> = bg
        .hooks
        .iter()
        .filter(|h| h.deployment == target)
        .map(hook_detail)
        .collect();
    if !details.is_empty() {
        d.lifecycle_hook_details = Some(details);
    }
}

/// Sets the task counts of `d`'s target revision (deployment `target`) and source
/// revisions (deployments `sources`, in order) from the service as it is now.
fn set_revision_counts(
    state: &State,
    svc: &ServiceRecord,
    target: &str,
    sources: &[String],
    d: &mut wire::ServiceDeployment,
) {
    if let Some(t) = d.target_service_revision.as_mut() {
        *t = revision_counts(state, svc, target, t.arn.take());
    }
    for (s, id) in d
        .source_service_revisions
        .get_or_insert_with(Vec::new)
        .iter_mut()
        .zip(sources)
    {
        *s = revision_counts(state, svc, id, s.arn.take());
    }
}

/// Fills DescribeServices' `currentServiceDeployment` (the service's newest service
/// deployment) and `currentServiceRevisions` (the revisions of its listed deployments,
/// with their counts) in `s`, the service as described (its deployments' counts set).
pub fn show_on_service(state: &State, rec: &ServiceRecord, s: &mut wire::Service) {
    let key = rec.key();
    let since = rec.service.created_at.unwrap_or(0.0);
    let history = &state.service_history;
    s.current_service_deployment = history
        .deployments_of(&key)
        .filter(|d| d.deployment.created_at.unwrap_or(0.0) >= since)
        .max_by_key(|d| d.seq)
        .and_then(|d| d.deployment.service_deployment_arn.clone());
    let revisions: Vec<&ServiceRevisionRecord> = history.revisions_of(&key).collect();
    let current: Vec<wire::ServiceCurrentRevisionSummary> = s
        .deployments
        .iter()
        .flatten()
        .filter_map(|d| {
            let r = revisions
                .iter()
                .find(|r| d.id.as_deref() == Some(r.deployment_id.as_str()))?;
            Some(wire::ServiceCurrentRevisionSummary {
                arn: r.revision.service_revision_arn.clone(),
                requested_task_count: d.desired_count,
                running_task_count: d.running_count,
                pending_task_count: d.pending_count,
            })
        })
        .collect();
    s.current_service_revisions = (!current.is_empty()).then_some(current);
}

/// Brings the history of `svc` (the service as it is being written) up to date: a
/// revision for each listed deployment that has none, a service deployment for a
/// PRIMARY that has none (PENDING unless `started`: the controller's pass starts it),
/// the status of every unfinished one, and the bound. Returns the changes (none when
/// all is current). Only unfinished and new records are copied: a pass on a settled
/// service costs a walk over its (at most 2 × [`MAX_HISTORY_PER_SERVICE`]) records.
pub fn sync(state: &State, ctx: &mut Ctx, svc: &ServiceRecord, started: bool) -> Vec<Change> {
    let key = svc.key();
    let history = &state.service_history;
    let old_revisions: Vec<&ServiceRevisionRecord> = history.revisions_of(&key).collect();
    let old_deployments: Vec<&ServiceDeploymentRecord> = history.deployments_of(&key).collect();
    let listed = svc.service.deployments.as_deref().unwrap_or(&[]);
    let mut new_revisions: Vec<ServiceRevisionRecord> = Vec::new();
    let mut rev_seq = old_revisions.iter().map(|r| r.seq).max().unwrap_or(0);
    for d in listed {
        let Some(id) = d.id.as_deref() else { continue };
        let known = old_revisions
            .iter()
            .copied()
            .chain(&new_revisions)
            .any(|r| r.deployment_id == id);
        if !known {
            rev_seq += 1;
            new_revisions.push(new_revision(state, ctx, svc, d, rev_seq));
        }
    }
    let revisions: Vec<&ServiceRevisionRecord> = old_revisions
        .iter()
        .copied()
        .chain(&new_revisions)
        .collect();
    let rev_arn = |deployment_id: &str| {
        revisions
            .iter()
            .find(|r| r.deployment_id == deployment_id)
            .and_then(|r| r.revision.service_revision_arn.clone())
    };
    // The unfinished ones, which may move on.
    let mut work: Vec<ServiceDeploymentRecord> = old_deployments
        .iter()
        .filter(|d| !is_finished(d.deployment.status))
        .map(|d| ServiceDeploymentRecord::clone(d))
        .collect();
    let mut newest = old_deployments.iter().map(|d| d.seq).max().unwrap_or(0);
    let primary = listed.iter().find(|d| d.is_primary());
    if let Some(p) = primary
        && let Some(pid) = p.id.as_deref()
        && !old_deployments.iter().any(|d| d.target == pid)
    {
        newest += 1;
        let id = new_deployment_id(ctx);
        let sources: Vec<String> = listed
            .iter()
            .filter(|d| !d.is_primary())
            .filter_map(|d| d.id.clone())
            .collect();
        let summary = |id: &str| wire::ServiceRevisionSummary {
            arn: rev_arn(id),
            ..Default::default()
        };
        let s = &svc.service;
        let deployment = wire::ServiceDeployment {
            service_deployment_arn: Some(deployment_arn(&svc.scope, &svc.cluster, &svc.name, &id)),
            service_arn: s.service_arn.clone(),
            cluster_arn: s.cluster_arn.clone(),
            created_at: p.created_at.or(Some(ctx.now)),
            updated_at: Some(ctx.now),
            source_service_revisions: Some(sources.iter().map(|id| summary(id)).collect()),
            target_service_revision: Some(summary(pid)),
            status: Some(Status::Pending),
            deployment_configuration: s.deployment_configuration.clone(),
            deployment_circuit_breaker: Some(breaker(svc, p, Monitor::Monitoring)),
            alarms: alarms_shown(svc),
            ..Default::default()
        };
        work.push(ServiceDeploymentRecord {
            scope: svc.scope.clone(),
            cluster: svc.cluster.clone(),
            service: svc.name.clone(),
            id,
            seq: newest,
            target: pid.to_owned(),
            sources,
            rollback_to: None,
            deployment,
        });
    }
    for d in work.iter_mut() {
        let is_newest = d.seq == newest;
        advance(state, svc, d, (started, is_newest), ctx.now, &revisions);
    }
    let mut changes = bound(
        &old_deployments,
        &work,
        &old_revisions,
        new_revisions.len(),
        listed,
    );
    for d in work {
        if !old_deployments.iter().any(|o| **o == d) {
            changes.push(Change::Put(Record::ServiceDeployment(d)));
        }
    }
    changes.extend(
        new_revisions
            .into_iter()
            .map(|r| Change::Put(Record::ServiceRevision(r))),
    );
    changes
}

/// The deletes that keep the history within [`MAX_HISTORY_PER_SERVICE`]: the oldest
/// service deployments that were finished already, then the oldest revisions no kept
/// or listed deployment uses (and, should every one be in use, the oldest anyway).
fn bound(
    old_deployments: &[&ServiceDeploymentRecord],
    work: &[ServiceDeploymentRecord],
    old_revisions: &[&ServiceRevisionRecord],
    added_revisions: usize,
    listed: &[wire::Deployment],
) -> Vec<Change> {
    let mut changes = Vec::new();
    let added = work
        .iter()
        .filter(|w| !old_deployments.iter().any(|o| o.id == w.id))
        .count();
    let mut finished: Vec<&ServiceDeploymentRecord> = old_deployments
        .iter()
        .copied()
        .filter(|d| is_finished(d.deployment.status))
        .collect();
    finished.sort_by_key(|d| d.seq);
    let excess = (old_deployments.len() + added).saturating_sub(MAX_HISTORY_PER_SERVICE);
    let dropped: HashSet<&str> = finished
        .iter()
        .take(excess)
        .map(|d| d.id.as_str())
        .collect();
    changes.extend(
        finished
            .iter()
            .take(excess)
            .map(|d| Change::Delete(Record::ServiceDeployment(ServiceDeploymentRecord::clone(d)))),
    );
    let excess = (old_revisions.len() + added_revisions).saturating_sub(MAX_HISTORY_PER_SERVICE);
    if excess == 0 {
        return changes;
    }
    let used: HashSet<&str> = old_deployments
        .iter()
        .copied()
        .filter(|d| !dropped.contains(d.id.as_str()))
        .chain(work)
        .flat_map(|d| {
            std::iter::once(d.target.as_str())
                .chain(d.sources.iter().map(String::as_str))
                .chain(d.rollback_to.as_deref())
        })
        .chain(listed.iter().filter_map(|d| d.id.as_deref()))
        .collect();
    let mut by_age: Vec<&ServiceRevisionRecord> = old_revisions.to_vec();
    by_age.sort_by_key(|r| (used.contains(r.deployment_id.as_str()), r.seq));
    changes.extend(
        by_age
            .into_iter()
            .take(excess)
            .map(|r| Change::Delete(Record::ServiceRevision(r.clone()))),
    );
    changes
}

/// The circuit breaker as a service deployment of `d` shows it.
fn breaker(
    svc: &ServiceRecord,
    d: &wire::Deployment,
    monitoring: Monitor,
) -> wire::ServiceDeploymentCircuitBreaker {
    let enabled = svc
        .service
        .deployment_configuration
        .as_ref()
        .and_then(|c| c.deployment_circuit_breaker.as_ref())
        .is_some_and(|b| b.enable == Some(true));
    let desired = svc.service.desired_count.unwrap_or(0);
    wire::ServiceDeploymentCircuitBreaker {
        status: Some(if enabled {
            monitoring
        } else {
            Monitor::Disabled
        }),
        failure_count: Some(d.failed_tasks.unwrap_or(0)),
        threshold: Some(crate::controllers::service::failure_threshold(desired)),
    }
}

/// Moves one unfinished service deployment `rec` along, given the service's
/// deployments as they are being written.
fn advance(
    state: &State,
    svc: &ServiceRecord,
    rec: &mut ServiceDeploymentRecord,
    (started, newest): (bool, bool),
    now: f64,
    revisions: &[&ServiceRevisionRecord],
) {
    let revision = |id: &str| revisions.iter().find(|r| r.deployment_id == id);
    let revision_arn =
        |id: &str| revision(id).and_then(|r| r.revision.service_revision_arn.clone());
    let revision_seq = |id: &str| revision(id).map(|r| r.seq);
    let listed = svc.service.deployments.as_deref().unwrap_or(&[]);
    let find = |id: &str| listed.iter().find(|d| d.id.as_deref() == Some(id));
    let primary = listed.iter().find(|d| d.is_primary());
    let target = find(&rec.target);
    let old = rec.deployment.clone();
    let d = &mut rec.deployment;
    let deleted = matches!(
        svc.service.status(),
        Some(ServiceStatus::Draining | ServiceStatus::Inactive)
    );
    let mut finished = false;
    if let Some(t) = target
        && let Some(b) = d.deployment_circuit_breaker.as_mut()
    {
        b.failure_count = Some(t.failed_tasks.unwrap_or(0));
    }
    match d.status {
        _ if deleted => {
            d.status = Some(Status::Stopped);
            d.status_reason = Some("The service was deleted.".into());
            d.stopped_at = Some(now);
            finished = true;
        }
        Some(Status::Pending | Status::InProgress | Status::RollbackRequested) => {
            let is_primary = target.is_some_and(|t| t.is_primary());
            let failed = target.is_some_and(|t| t.rollout_state == Some(Rollout::Failed));
            if d.status == Some(Status::Pending) && started {
                d.status = Some(Status::InProgress);
                d.started_at = Some(now);
            }
            if is_primary {
                let t = target.unwrap_or_else(|| unreachable!("primary is listed"));
                if t.rollout_state == Some(Rollout::Completed)
                    && d.status != Some(Status::RollbackRequested)
                {
                    d.status = Some(Status::Successful);
                    d.status_reason = t.rollout_state_reason.clone();
                    d.started_at = d.started_at.or(Some(now));
                    d.finished_at = Some(now);
                    set_breaker(d, Monitor::MonitoringComplete);
                    set_alarms(d, Monitor::MonitoringComplete);
                    finished = true;
                } else if failed {
                    // The circuit breaker or the alarms failed it and do not roll back.
                    d.status = Some(Status::Stopped);
                    d.status_reason = t.rollout_state_reason.clone();
                    d.stopped_at = Some(now);
                    trip(state, svc, t, d);
                    finished = true;
                }
            } else if let Some(p) = primary.filter(|p| {
                // PRIMARY moves back to an older deployment only by a rollback.
                let seq = |id: Option<&str>| id.and_then(revision_seq);
                seq(p.id.as_deref()) < seq(Some(rec.target.as_str()))
            }) {
                // Rolled back: PRIMARY went back to an older deployment.
                let pid = p.id.clone().unwrap_or_default();
                let reason = if d.status == Some(Status::RollbackRequested) {
                    STOP_ROLLBACK_REASON.to_owned()
                } else {
                    if let Some(t) = target {
                        trip(state, svc, t, d);
                    } else {
                        set_breaker(d, Monitor::Triggered);
                    }
                    target
                        .and_then(|t| t.rollout_state_reason.clone())
                        .unwrap_or_else(|| BREAKER_REASON.to_owned())
                };
                d.status = Some(Status::RollbackInProgress);
                d.status_reason = p.rollout_state_reason.clone();
                d.started_at = d.started_at.or(Some(now));
                d.rollback = Some(wire::Rollback {
                    reason: Some(reason),
                    started_at: Some(now),
                    service_revision_arn: revision_arn(&pid),
                });
                rec.rollback_to = Some(pid);
            } else if !newest || primary.is_some_and(|p| p.id.as_deref() != Some(&rec.target)) {
                d.status = Some(Status::Stopped);
                d.status_reason = Some(
                    "Service deployment stopped: a newer service deployment replaced it.".into(),
                );
                d.stopped_at = Some(now);
                finished = true;
            }
        }
        Some(Status::RollbackInProgress) => {
            let to = rec.rollback_to.as_deref().and_then(find);
            match to {
                Some(r) if r.is_primary() && r.rollout_state == Some(Rollout::Completed) => {
                    d.status = Some(Status::RollbackSuccessful);
                    d.status_reason = r.rollout_state_reason.clone();
                    d.finished_at = Some(now);
                    finished = true;
                }
                Some(r) if r.is_primary() && r.rollout_state != Some(Rollout::Failed) => {}
                Some(r) if r.is_primary() => {
                    d.status = Some(Status::RollbackFailed);
                    d.status_reason = r.rollout_state_reason.clone();
                    d.finished_at = Some(now);
                    finished = true;
                }
                _ => {
                    d.status = Some(Status::RollbackFailed);
                    d.status_reason = Some(
                        "A newer service deployment replaced the rollback before it completed."
                            .into(),
                    );
                    d.finished_at = Some(now);
                    finished = true;
                }
            }
        }
        _ => {}
    }
    // Kept with the record: once another deployment is PRIMARY the service forgets them.
    set_lifecycle(svc, &rec.target, d);
    if finished {
        // Freeze the counts as they were when it finished.
        set_revision_counts(state, svc, &rec.target, &rec.sources, d);
    }
    if *d != old {
        d.updated_at = Some(now);
    }
}

/// The deployment alarms as a new service deployment of `svc` shows them: MONITORING
/// when enabled, else DISABLED; none when the service names no alarms.
fn alarms_shown(svc: &ServiceRecord) -> Option<wire::ServiceDeploymentAlarms> {
    let a = svc
        .service
        .deployment_configuration
        .as_ref()?
        .alarms
        .as_ref()?;
    Some(wire::ServiceDeploymentAlarms {
        status: Some(if a.enable == Some(true) {
            Monitor::Monitoring
        } else {
            Monitor::Disabled
        }),
        alarm_names: a.alarm_names.clone(),
        triggered_alarm_names: None,
    })
}

fn set_alarms(d: &mut wire::ServiceDeployment, to: Monitor) {
    if let Some(a) = d.alarms.as_mut()
        && a.status != Some(Monitor::Disabled)
    {
        a.status = Some(to);
    }
}

/// Marks what failed the deployment `t` TRIGGERED: its deployment alarms (with the
/// alarms that triggered, `triggeredAlarmNames`) when its reason says so, else the
/// circuit breaker.
fn trip(state: &State, svc: &ServiceRecord, t: &wire::Deployment, d: &mut wire::ServiceDeployment) {
    if !is_alarm_failure(t.rollout_state_reason.as_deref()) {
        set_breaker(d, Monitor::Triggered);
        return;
    }
    set_alarms(d, Monitor::Triggered);
    let names =
        crate::ops::cloudwatch::deployment::enabled(svc.service.deployment_configuration.as_ref())
            .map(|a| triggered(state, &svc.scope, a, t.created_at.unwrap_or(0.0)))
            .unwrap_or_default();
    if let Some(a) = d.alarms.as_mut()
        && !names.is_empty()
    {
        a.triggered_alarm_names = Some(names);
    }
}

fn set_breaker(d: &mut wire::ServiceDeployment, to: Monitor) {
    if let Some(b) = d.deployment_circuit_breaker.as_mut()
        && b.status != Some(Monitor::Disabled)
    {
        b.status = Some(to);
    }
}

/// A service deployment id: 22 characters of `[A-Za-z0-9_-]`, as ECS's.
fn new_deployment_id(ctx: &mut Ctx) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let (a, b) = (ctx.random_u64(), ctx.random_u64());
    (0..22)
        .map(|i| {
            let bits = if i < 11 {
                a >> (i * 6)
            } else {
                b >> ((i - 11) * 6)
            };
            char::from(ALPHABET[usize::try_from(bits & 63).unwrap_or(0)])
        })
        .collect()
}

/// The revision of the listed deployment `d`: its configuration and the service's.
fn new_revision(
    state: &State,
    ctx: &mut Ctx,
    svc: &ServiceRecord,
    d: &wire::Deployment,
    seq: u64,
) -> ServiceRevisionRecord {
    let id = (ctx.random_u64() % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000).to_string();
    let s = &svc.service;
    let images = d
        .task_definition
        .as_deref()
        .and_then(|td| crate::ops::task_definitions::resolve(state, &svc.scope, td))
        .map(|r| {
            r.definition
                .container_definitions
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|c| wire::ContainerImage {
                    container_name: c.name.clone(),
                    image: c.image.clone(),
                    image_digest: None,
                })
                .collect::<Vec<_>>()
        });
    let resolved = s
        .load_balancers
        .as_ref()
        .map(|lbs| wire::ResolvedConfiguration {
            load_balancers: Some(
                lbs.iter()
                    .map(|lb| wire::ServiceRevisionLoadBalancer {
                        target_group_arn: lb.target_group_arn.clone(),
                        production_listener_rule: lb
                            .advanced_configuration
                            .as_ref()
                            .and_then(|a| a.production_listener_rule.clone()),
                    })
                    .collect(),
            ),
        });
    let revision = wire::ServiceRevision {
        service_revision_arn: Some(revision_arn(&svc.scope, &svc.cluster, &svc.name, &id)),
        service_arn: s.service_arn.clone(),
        cluster_arn: s.cluster_arn.clone(),
        task_definition: d.task_definition.clone(),
        capacity_provider_strategy: d.capacity_provider_strategy.clone(),
        launch_type: d.launch_type,
        platform_version: d.platform_version.clone(),
        platform_family: d.platform_family.clone(),
        load_balancers: s.load_balancers.clone(),
        service_registries: s.service_registries.clone(),
        network_configuration: d
            .network_configuration
            .clone()
            .or_else(|| s.network_configuration.clone()),
        container_images: images,
        guard_duty_enabled: Some(false),
        service_connect_configuration: d.service_connect_configuration.clone(),
        volume_configurations: d.volume_configurations.clone(),
        fargate_ephemeral_storage: d.fargate_ephemeral_storage.clone(),
        created_at: d.created_at.or(Some(ctx.now)),
        resolved_configuration: resolved,
        ..Default::default()
    };
    ServiceRevisionRecord {
        scope: svc.scope.clone(),
        cluster: svc.cluster.clone(),
        service: svc.name.clone(),
        id,
        seq,
        deployment_id: d.id.clone().unwrap_or_default(),
        revision,
    }
}

/// Whether `d` is the PRIMARY deployment (for callers outside the controller).
pub fn is_primary(d: &wire::Deployment) -> bool {
    d.status() == Some(DeploymentStatus::Primary)
}
