//! ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions,
//! StopServiceDeployment and ContinueServiceDeployment: a service's deployment history,
//! kept by [`crate::service_deployments`] as the service controller deploys.

use std::collections::BTreeMap;

use model::wire::{
    self, DeploymentLifecycleHookAction as HookAction, ServiceDeploymentStatus as Status,
    StopServiceDeploymentStopType,
};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::common::cluster_name;
use crate::ops::services::find;
use crate::paging::{PageRequest, paginate};
use crate::service_deployments::{
    MAX_DESCRIBE_ARNS, describe_deployment, hook_status, is_finished, is_primary, parse_arn,
};
use crate::state::{Change, HistoryKey, HookStatus, Record, Scope, ServiceKey, State};

/// ListServiceDeployments' page size when `maxResults` is not given (ECS: 20).
pub const DEFAULT_LIST_RESULTS: i32 = 20;

/// ListServiceDeployments: the service's deployments, newest first, filtered by
/// `status` and `createdAt`; paginated (`maxResults` 1–100, default 20).
pub fn list(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListServiceDeploymentsRequest,
) -> Result<wire::ListServiceDeploymentsResponse, EcsError> {
    let cluster = cluster_name(scope, req.cluster.as_deref())?;
    if state.cluster(scope, &cluster).is_none() {
        return Err(EcsError::ClusterNotFound);
    }
    let ident = req
        .service
        .as_deref()
        .ok_or_else(|| invalid("service is required."))?;
    let svc = find(state, scope, &cluster, ident).ok_or(EcsError::ServiceNotFound)?;
    let statuses = req.status.clone().unwrap_or_default();
    if statuses.len() > Status::ALL.len() {
        return Err(invalid(format!(
            "status can name at most {} values.",
            Status::ALL.len()
        )));
    }
    let created = req.created_at.clone().unwrap_or_default();
    let filters = format!(
        "{cluster}|{}|{}|{:?}|{:?}",
        svc.name,
        statuses
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(","),
        created.after,
        created.before
    );
    let mut items: Vec<_> = state
        .service_history
        .deployments_of(&svc.key())
        // A service created again under the same name starts a new history.
        .filter(|d| d.deployment.created_at.unwrap_or(0.0) >= svc.service.created_at.unwrap_or(0.0))
        .filter(|d| {
            statuses.is_empty() || d.deployment.status.is_some_and(|s| statuses.contains(&s))
        })
        .filter(|d| {
            let at = d.deployment.created_at.unwrap_or(0.0);
            created.after.is_none_or(|a| at >= a) && created.before.is_none_or(|b| at <= b)
        })
        .collect();
    // At most MAX_HISTORY_PER_SERVICE records: sorting them costs nothing to speak of.
    items.sort_by_key(|d| std::cmp::Reverse(d.seq));
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListServiceDeployments",
            &filters,
            Some(req.max_results.unwrap_or(DEFAULT_LIST_RESULTS)),
            req.next_token.as_deref(),
        )
        .with_descending(true),
        |_| {
            Ok(items.into_iter().map(|r| {
                let d = &r.deployment;
                (
                    format!("{:020}", r.seq),
                    wire::ServiceDeploymentBrief {
                        service_deployment_arn: d.service_deployment_arn.clone(),
                        service_arn: d.service_arn.clone(),
                        cluster_arn: d.cluster_arn.clone(),
                        started_at: d.started_at,
                        created_at: d.created_at,
                        finished_at: d.finished_at,
                        target_service_revision_arn: d
                            .target_service_revision
                            .as_ref()
                            .and_then(|t| t.arn.clone()),
                        status: d.status,
                        status_reason: d.status_reason.clone(),
                    },
                )
            }))
        },
    )?;
    Ok(wire::ListServiceDeploymentsResponse {
        service_deployments: Some(page.items),
        next_token: page.next_token,
    })
}

/// The ARNs a Describe names: at most [`MAX_DESCRIBE_ARNS`], at least one.
fn described(arns: Option<Vec<String>>, member: &str) -> Result<Vec<String>, EcsError> {
    let arns = arns.unwrap_or_default();
    if arns.is_empty() {
        return Err(invalid(format!("{member} cannot be empty.")));
    }
    if arns.len() > MAX_DESCRIBE_ARNS {
        return Err(invalid(format!(
            "{member} can have at most {MAX_DESCRIBE_ARNS} items."
        )));
    }
    Ok(arns)
}

fn missing(arn: String) -> wire::Failure {
    wire::Failure {
        arn: Some(arn),
        reason: Some("MISSING".into()),
        detail: None,
    }
}

/// DescribeServiceDeployments: up to 20 ARNs; unknown ones in `failures` (MISSING).
pub fn describe_deployments(
    state: &State,
    scope: &Scope,
    req: wire::DescribeServiceDeploymentsRequest,
) -> Result<wire::DescribeServiceDeploymentsResponse, EcsError> {
    let arns = described(req.service_deployment_arns, "serviceDeploymentArns")?;
    let (found, failures) = look_up_each(
        scope,
        "service-deployment",
        arns,
        &state.service_history.deployments,
        |r| describe_deployment(state, r),
    );
    Ok(wire::DescribeServiceDeploymentsResponse {
        service_deployments: Some(found),
        failures: Some(failures),
    })
}

/// The record of `map` that `arn` (`…:<kind>/CLUSTER/SERVICE/ID` of `scope`) names.
fn by_arn<'a, R>(
    scope: &Scope,
    kind: &str,
    arn: &str,
    map: &'a BTreeMap<HistoryKey, R>,
) -> Option<&'a R> {
    let (cluster, service, id) = parse_arn(scope, kind, arn)?;
    map.get(&(ServiceKey::new(scope, cluster, service), id.to_owned()))
}

/// Each of `arns` looked up in `map` ([`by_arn`]) and shown by `show`; the unknown ones
/// as `failures` (MISSING), in the order asked.
fn look_up_each<R, T>(
    scope: &Scope,
    kind: &str,
    arns: Vec<String>,
    map: &BTreeMap<HistoryKey, R>,
    show: impl Fn(&R) -> T,
) -> (Vec<T>, Vec<wire::Failure>) {
    let (mut found, mut failures) = (Vec::new(), Vec::new());
    for arn in arns {
        match by_arn(scope, kind, &arn, map) {
            Some(r) => found.push(show(r)),
            None => failures.push(missing(arn)),
        }
    }
    (found, failures)
}

/// The service deployment `arn` names, or ECS's ServiceDeploymentNotFoundException.
fn deployment_named<'a>(
    state: &'a State,
    scope: &Scope,
    arn: &str,
) -> Result<&'a crate::state::ServiceDeploymentRecord, EcsError> {
    by_arn(
        scope,
        "service-deployment",
        arn,
        &state.service_history.deployments,
    )
    .ok_or_else(|| {
        EcsError::ServiceDeploymentNotFound(format!("The service deployment {arn} does not exist."))
    })
}

/// DescribeServiceRevisions: up to 20 ARNs; unknown ones in `failures` (MISSING).
pub fn describe_revisions(
    state: &State,
    scope: &Scope,
    req: wire::DescribeServiceRevisionsRequest,
) -> Result<wire::DescribeServiceRevisionsResponse, EcsError> {
    let arns = described(req.service_revision_arns, "serviceRevisionArns")?;
    let (found, failures) = look_up_each(
        scope,
        "service-revision",
        arns,
        &state.service_history.revisions,
        |r| r.revision.clone(),
    );
    Ok(wire::DescribeServiceRevisionsResponse {
        service_revisions: Some(found),
        failures: Some(failures),
    })
}

/// StopServiceDeployment with `stopType` ROLLBACK (the default): a PENDING or
/// IN_PROGRESS deployment turns ROLLBACK_REQUESTED and the service controller rolls the
/// service back to the deployment it replaces; one already stopping or rolling back is
/// left as it is. `ABORT` is refused (ECS: "The valid values are ROLLBACK").
pub fn stop(
    state: &State,
    ctx: &mut Ctx,
    req: wire::StopServiceDeploymentRequest,
) -> Written<wire::StopServiceDeploymentResponse> {
    let arn = req
        .service_deployment_arn
        .ok_or_else(|| invalid("serviceDeploymentArn is required."))?;
    if req.stop_type == Some(StopServiceDeploymentStopType::Abort) {
        return Err(invalid(
            "stopType ABORT is not supported: the valid value is ROLLBACK.",
        ));
    }
    let rec = deployment_named(state, &ctx.scope, &arn)?;
    let key = ServiceKey::new(&rec.scope, &rec.cluster, &rec.service);
    let answer = wire::StopServiceDeploymentResponse {
        service_deployment_arn: Some(arn.clone()),
    };
    let status = rec.deployment.status;
    match status {
        Some(Status::StopRequested | Status::RollbackRequested | Status::RollbackInProgress) => {
            return Ok((answer, Vec::new()));
        }
        s if is_finished(s) => {
            return Err(EcsError::Conflict(format!(
                "The service deployment {arn} is {} and cannot be stopped.",
                s.map(|s| s.as_str()).unwrap_or("finished")
            )));
        }
        _ => {}
    }
    let listed = state
        .services
        .get(&key)
        .and_then(|s| s.service.deployments.clone())
        .unwrap_or_default();
    let is_target_primary = listed
        .iter()
        .any(|d| is_primary(d) && d.id.as_deref() == Some(rec.target.as_str()));
    let has_previous = listed
        .iter()
        .any(|d| !is_primary(d) && d.rollout_state != Some(wire::DeploymentRolloutState::Failed));
    if !is_target_primary || !has_previous {
        return Err(EcsError::Conflict(format!(
            "The service deployment {arn} has no previous service revision to roll back to."
        )));
    }
    let mut rec = rec.clone();
    rec.deployment.status = Some(Status::RollbackRequested);
    rec.deployment.status_reason = Some("Rollback requested by StopServiceDeployment.".into());
    rec.deployment.updated_at = Some(ctx.now);
    Ok((answer, vec![Change::Put(Record::ServiceDeployment(rec))]))
}

/// ContinueServiceDeployment: finishes the PAUSE lifecycle hook `hookId` that holds the
/// IN_PROGRESS service deployment `serviceDeploymentArn` at its stage. `action`
/// `CONTINUE` (the default) lets the stage go on, as a webhook's SUCCEEDED does;
/// `ROLLBACK` fails the hook, and the service controller's next pass fails the
/// deployment and rolls it back to the previous revision (as a webhook's FAILED does).
///
/// # Errors
///
/// `ServiceDeploymentNotFoundException` for an unknown ARN; `ClientException` for a
/// service deployment that is not IN_PROGRESS (finished, or already rolling back);
/// `InvalidParameterException` for a `hookId` that is not an AWAITING_ACTION PAUSE hook
/// of that deployment.
pub fn continue_deployment(
    state: &State,
    ctx: &mut Ctx,
    req: wire::ContinueServiceDeploymentRequest,
) -> Written<wire::ContinueServiceDeploymentResponse> {
    let arn = req
        .service_deployment_arn
        .ok_or_else(|| invalid("serviceDeploymentArn is required."))?;
    let hook_id = req.hook_id.ok_or_else(|| invalid("hookId is required."))?;
    if hook_id.is_empty() {
        return Err(invalid("hookId must not be empty."));
    }
    let action = req.action.unwrap_or(HookAction::Continue);
    let rec = deployment_named(state, &ctx.scope, &arn)?;
    let status = rec.deployment.status.unwrap_or(Status::Pending);
    if status != Status::InProgress {
        let why = if is_finished(Some(status)) {
            "it is finished"
        } else {
            "only an IN_PROGRESS service deployment can be paused at a lifecycle hook"
        };
        return Err(EcsError::Client(format!(
            "The service deployment {arn} is {}: {why}, so it cannot be continued or rolled \
             back.",
            status.as_str()
        )));
    }
    let key = ServiceKey::new(&rec.scope, &rec.cluster, &rec.service);
    let no_such_hook = || {
        invalid(format!(
            "hookId {hook_id:?} names no lifecycle hook of the service deployment {arn}; \
             DescribeServiceDeployments lists its hooks in lifecycleHookDetails."
        ))
    };
    let mut svc = state.services.get(&key).ok_or_else(no_such_hook)?.clone();
    let h = svc
        .blue_green
        .hooks
        .iter_mut()
        .find(|h| h.id == hook_id && h.deployment == rec.target)
        .ok_or_else(no_such_hook)?;
    if !h.pause {
        return Err(invalid(format!(
            "The lifecycle hook {hook_id} is not a PAUSE hook (its targetType is \
             AWS_LAMBDA): its webhook's answer decides it, not ContinueServiceDeployment."
        )));
    }
    if !h.status.is_open() {
        return Err(invalid(format!(
            "The lifecycle hook {hook_id} is {}, not AWAITING_ACTION: it no longer pauses \
             the deployment.",
            hook_status(h).as_str()
        )));
    }
    h.finished_at = Some(ctx.now);
    let (stage, deployment) = (h.stage, h.deployment.clone());
    let message = match action {
        HookAction::Continue => {
            h.status = HookStatus::Succeeded;
            format!(
                "lifecycle hook {hook_id} (PAUSE) at stage {stage} continued by \
                 ContinueServiceDeployment."
            )
        }
        HookAction::Rollback => {
            h.status = HookStatus::Failed;
            h.reason = Some("ContinueServiceDeployment asked for a rollback".into());
            format!(
                "lifecycle hook {hook_id} (PAUSE) at stage {stage}: rollback requested by \
                 ContinueServiceDeployment."
            )
        }
    };
    crate::ops::lifecycle_hooks::push_event(&mut svc, ctx, &deployment, &message);
    Ok((
        wire::ContinueServiceDeploymentResponse {
            service_deployment_arn: Some(arn),
        },
        vec![Change::Put(Record::Service(svc))],
    ))
}
