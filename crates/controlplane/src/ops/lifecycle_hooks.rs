//! Lifecycle hook invocations (`deploymentConfiguration.lifecycleHooks` of blue/green,
//! LINEAR and CANARY deployments), the side the server's hook runner uses. Not an ECS API
//! operation: the service controller records an invocation when a deployment reaches a
//! stage with hooks ([`HookState`]); the runner finds the ones due ([`due_calls`]), POSTs
//! each webhook the Lambda-style event ([`HookCall::body`]) and stores the answer through
//! [`report_hook_result`] with the single writer. The controller then lets the
//! deployment go on (every hook of the stage SUCCEEDED) or fails and rolls it back.
//!
//! Answers, as ECS reads a Lambda hook's: `{"hookStatus": "SUCCEEDED"}`,
//! `{"hookStatus": "FAILED"}`, or `{"hookStatus": "IN_PROGRESS", "callBackDelay": N,
//! "hookDetails": {…}}` (called again after N seconds, [`DEFAULT_CALLBACK_DELAY_SECS`]
//! without one; `hookDetails` is passed back on that call). The first call carries the
//! hook's configured `hookDetails` (`{}` without). Anything else — another
//! status, a body that is not such JSON, an HTTP status other than 2xx — fails the hook,
//! as a Lambda function that errs does. A webhook that cannot be reached (connection
//! refused, no answer within the runner's timeout) is called again after
//! [`UNREACHABLE_RETRY_SECS`]; after [`MAX_UNREACHABLE`] such calls in a row it fails.
//!
//! A `PAUSE` hook (`targetType`) calls nothing: it holds its stage until
//! ContinueServiceDeployment ([`crate::ops::service_deployments::continue_deployment`])
//! finishes it, or until its timeout.
//!
//! [`validate`] is CreateService's and UpdateService's check of the hooks.

use model::wire;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::services::is_blue_green;
use crate::state::{Change, HookState, HookStatus, Record, ServiceKey, ServiceRecord, State};

/// Seconds before an IN_PROGRESS hook is called again when it names no `callBackDelay`
/// (ECS: 30).
pub const DEFAULT_CALLBACK_DELAY_SECS: f64 = 30.0;
/// Most seconds a `callBackDelay` may ask for (longer ones are cut to this; the hook's
/// timeout still applies).
pub const MAX_CALLBACK_DELAY_SECS: f64 = 3600.0;
/// Seconds before an unreachable webhook is called again.
pub const UNREACHABLE_RETRY_SECS: f64 = 10.0;
/// Calls in a row that reach nothing after which the hook FAILED.
pub const MAX_UNREACHABLE: u32 = 3;

/// One due call of a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct HookCall {
    /// The service.
    pub service: ServiceKey,
    /// The invocation's execution id.
    pub execution_id: String,
    /// Its answered calls so far: the report must name the same count (a stale answer,
    /// or a second runner's, is then ignored).
    pub attempt: u32,
    /// The webhook URL.
    pub url: String,
    /// The JSON body to POST (the Lambda event ECS sends).
    pub body: Value,
}

/// What a call of a webhook came to.
#[derive(Debug, Clone, PartialEq)]
pub enum HookAnswer {
    /// `hookStatus` SUCCEEDED.
    Succeeded,
    /// `hookStatus` FAILED, or an answer that is not a valid one (why).
    Failed(String),
    /// `hookStatus` IN_PROGRESS: call again after `callback_delay` seconds (the
    /// default when `None`), passing `hook_details` back.
    InProgress {
        /// `callBackDelay`, seconds.
        callback_delay: Option<f64>,
        /// `hookDetails` to pass on the next call.
        hook_details: Option<Value>,
    },
    /// Nothing answered (connection refused, timeout: why).
    Unreachable(String),
}

/// The `hookStatus` a hook answers with.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum AnsweredStatus {
    Succeeded,
    Failed,
    InProgress,
}

impl HookAnswer {
    /// Reads a webhook's answer: its HTTP status and body (JSON `{"hookStatus": …}`).
    pub fn from_response(status: u16, body: &[u8]) -> HookAnswer {
        if !(200..300).contains(&status) {
            return HookAnswer::Failed(format!("the webhook answered HTTP {status}"));
        }
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return HookAnswer::Failed("the webhook's answer is not JSON".into());
        };
        let Some(raw) = v.get("hookStatus") else {
            return HookAnswer::Failed("its answer has no hookStatus".into());
        };
        match AnsweredStatus::deserialize(raw) {
            Ok(AnsweredStatus::Succeeded) => HookAnswer::Succeeded,
            Ok(AnsweredStatus::Failed) => HookAnswer::Failed("it answered FAILED".into()),
            Ok(AnsweredStatus::InProgress) => HookAnswer::InProgress {
                callback_delay: v.get("callBackDelay").and_then(Value::as_f64),
                hook_details: v.get("hookDetails").filter(|d| d.is_object()).cloned(),
            },
            Err(_) => HookAnswer::Failed(format!(
                "it answered hookStatus {raw} (SUCCEEDED, FAILED or IN_PROGRESS expected)"
            )),
        }
    }
}

/// The answer to one call, for [`report_hook_result`].
#[derive(Debug, Clone, PartialEq)]
pub struct HookResult {
    /// The service.
    pub service: ServiceKey,
    /// The invocation's execution id.
    pub execution_id: String,
    /// [`HookCall::attempt`] of the call.
    pub attempt: u32,
    /// What it came to.
    pub answer: HookAnswer,
}

/// Most `lifecycleHooks` a deployment configuration may have.
pub const MAX_LIFECYCLE_HOOKS: usize = 10;

/// Largest configured `hookDetails` (serialized JSON): the service record keeps a copy for
/// every invocation, and a webhook's answer, `hookDetails` included, is held to the same
/// 64 KiB.
pub const MAX_HOOK_DETAILS_BYTES: usize = 64 * 1024;

/// `deploymentConfiguration.lifecycleHooks`, as flotilla serves them (webhooks and
/// PAUSE hooks, see docs/services.md): only with the BLUE_GREEN, LINEAR and CANARY
/// strategies; at most [`MAX_LIFECYCLE_HOOKS`]; each with at least one stage, no stage
/// twice; a `PAUSE` hook (`targetType`) without `hookTargetArn`, any other
/// (`AWS_LAMBDA`, the default) with an `http://` or `https://` URL to a host as
/// `hookTargetArn` (any other target, a Lambda function's ARN included, is
/// `UnsupportedFeatureException`); `timeoutConfiguration.timeoutInMinutes` 1–20160;
/// `hookDetails` at most [`MAX_HOOK_DETAILS_BYTES`]. `roleArn` is accepted and ignored.
///
/// # Errors
///
/// `InvalidParameterException` or `UnsupportedFeatureException` as above.
pub fn validate(c: &wire::DeploymentConfiguration) -> Result<(), EcsError> {
    let hooks = c.lifecycle_hooks.as_deref().unwrap_or(&[]);
    if hooks.is_empty() {
        return Ok(());
    }
    if !is_blue_green(Some(c)) {
        let strategy = c.strategy.unwrap_or(wire::DeploymentStrategy::Rolling);
        return Err(invalid(format!(
            "deploymentConfiguration.lifecycleHooks can only be specified with the \
             BLUE_GREEN, LINEAR or CANARY deployment strategy, not {}.",
            strategy.as_str()
        )));
    }
    if hooks.len() > MAX_LIFECYCLE_HOOKS {
        return Err(invalid(format!(
            "deploymentConfiguration.lifecycleHooks can have at most {MAX_LIFECYCLE_HOOKS} \
             hooks, got {}.",
            hooks.len()
        )));
    }
    for (i, h) in hooks.iter().enumerate() {
        let at = format!("deploymentConfiguration.lifecycleHooks[{i}]");
        let pause = h.target_type == Some(wire::DeploymentLifecycleHookTargetType::Pause);
        let stages = h.lifecycle_stages.as_deref().unwrap_or(&[]);
        if stages.is_empty() {
            return Err(invalid(format!("{at}.lifecycleStages must not be empty.")));
        }
        if let Some(s) = stages
            .iter()
            .enumerate()
            .find_map(|(j, s)| stages[..j].contains(s).then_some(s))
        {
            return Err(invalid(format!(
                "{at}.lifecycleStages lists {s} more than once."
            )));
        }
        let target = h.hook_target_arn.as_deref().unwrap_or("");
        if pause {
            if h.hook_target_arn.is_some() {
                return Err(invalid(format!(
                    "{at}.hookTargetArn must not be specified for a hook with targetType \
                     PAUSE: it pauses the deployment until ContinueServiceDeployment."
                )));
            }
        } else if target.is_empty() {
            return Err(invalid(format!(
                "{at}.hookTargetArn is required for a hook with targetType AWS_LAMBDA (the \
                 default); only a PAUSE hook has none."
            )));
        } else {
            check_webhook_url(target).map_err(|e| match e {
                WebhookProblem::NotHttp => EcsError::UnsupportedFeature(format!(
                    "{at}.hookTargetArn {target:?}: flotilla has no Lambda; a lifecycle hook \
                 must be an http:// or https:// webhook URL, which flotilla POSTs the \
                 hook's event to."
                )),
                WebhookProblem::Invalid(why) => invalid(format!(
                    "{at}.hookTargetArn {target:?} is not a valid webhook URL: {why}."
                )),
            })?;
        }
        if let Some(size) = h
            .hook_details
            .as_ref()
            .map(|d| d.to_string().len())
            .filter(|size| *size > MAX_HOOK_DETAILS_BYTES)
        {
            return Err(invalid(format!(
                "{at}.hookDetails can be at most {MAX_HOOK_DETAILS_BYTES} bytes of JSON, got \
                 {size}."
            )));
        }
        if let Some(m) = h
            .timeout_configuration
            .as_ref()
            .and_then(|t| t.timeout_in_minutes)
            && !(1..=20160).contains(&m)
        {
            return Err(invalid(format!(
                "{at}.timeoutConfiguration.timeoutInMinutes must be between 1 and 20160, \
                 got {m}."
            )));
        }
    }
    Ok(())
}

/// What is wrong with a lifecycle hook's `hookTargetArn`.
enum WebhookProblem {
    /// Not an `http://` or `https://` URL at all (e.g. a Lambda function's ARN).
    NotHttp,
    /// An HTTP(S) URL that cannot be called (why).
    Invalid(&'static str),
}

/// Checks that `url` is an `http://` or `https://` URL to a host: a host name (letters,
/// digits, `-`, `.`), an IPv4 address or a bracketed IPv6 address, an optional port,
/// then an optional path and query of visible ASCII; at most 2048 characters. Loopback
/// and private addresses are allowed (the webhook is the operator's own).
fn check_webhook_url(url: &str) -> Result<(), WebhookProblem> {
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return Err(WebhookProblem::NotHttp);
    };
    if url.len() > 2048 {
        return Err(WebhookProblem::Invalid("it is longer than 2048 characters"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WebhookProblem::Invalid(
            "it may only hold visible ASCII characters",
        ));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(WebhookProblem::Invalid("it must not carry credentials"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err(WebhookProblem::Invalid(
                "its IPv6 address is not closed by ]",
            ));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(WebhookProblem::Invalid("its IPv6 address is not valid"));
        }
        (host, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':');
    if !host_ok {
        return Err(WebhookProblem::Invalid("it names no valid host"));
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(WebhookProblem::Invalid("its port is not 1-65535"));
    }
    Ok(())
}

/// The service deployment ARN ECS would name for `deployment` of a service whose ARN is
/// `service_arn` (`…:service/cluster/name` → `…:service-deployment/cluster/name/id`).
fn deployment_arn(service_arn: &str, deployment: &str) -> String {
    let id = deployment.rsplit('/').next().unwrap_or(deployment);
    format!(
        "{}/{id}",
        service_arn.replacen(":service/", ":service-deployment/", 1)
    )
}

/// The service revision ARN of `deployment` (flotilla has no service revisions: one
/// of the same shape naming the deployment).
fn revision_arn(service_arn: &str, deployment: &str) -> String {
    let id = deployment.rsplit('/').next().unwrap_or(deployment);
    format!(
        "{}/{id}",
        service_arn.replacen(":service/", ":service-revision/", 1)
    )
}

/// The calls due at `now`: every open invocation of a service's PRIMARY deployment whose
/// `next_call_at` has come and that has not timed out (the controller times it out).
pub fn due_calls(state: &State, now: f64) -> Vec<HookCall> {
    let mut out = Vec::new();
    for (key, rec) in &state.services {
        if rec.blue_green.hooks.is_empty() {
            continue;
        }
        let deployments = rec.service.deployments.as_deref().unwrap_or(&[]);
        let Some(primary) = deployments.iter().find(|d| d.is_primary()) else {
            continue;
        };
        let primary_id = primary.id.as_deref().unwrap_or("");
        let service_arn = rec.service.service_arn.clone().unwrap_or_default();
        for h in &rec.blue_green.hooks {
            if h.deployment != primary_id
                || h.pause
                || !h.status.is_open()
                || h.next_call_at > now
                || now >= h.expires_at
            {
                continue;
            }
            out.push(HookCall {
                service: key.clone(),
                execution_id: h.id.clone(),
                attempt: h.attempts,
                url: h.target.clone(),
                body: event(rec, deployments, &service_arn, h),
            });
        }
    }
    out
}

/// The event a hook receives, as ECS sends a Lambda hook's: `executionId`,
/// `lifecycleStage`, `resourceArn` (the service deployment), `executionDetails`
/// (`serviceArn`, `targetServiceRevisionArn`, `testTrafficWeights` and
/// `productionTrafficWeights` by service revision ARN) and `hookDetails` (what the hook
/// returned with IN_PROGRESS last, else its configured `hookDetails`, else `{}`).
fn event(
    rec: &ServiceRecord,
    deployments: &[wire::Deployment],
    service_arn: &str,
    h: &HookState,
) -> Value {
    let green = revision_arn(service_arn, &h.deployment);
    let blue = deployments
        .iter()
        .filter_map(|d| d.id.as_deref())
        .find(|id| *id != h.deployment)
        .map(|id| revision_arn(service_arn, id));
    let bg = &rec.blue_green;
    let production = if let Some(step) = bg
        .shifting
        .as_ref()
        .filter(|s| s.deployment == h.deployment)
    {
        step.percent
    } else if bg
        .shifted
        .as_ref()
        .is_some_and(|(id, _)| *id == h.deployment)
    {
        100.0
    } else {
        0.0
    };
    use wire::DeploymentLifecycleHookStage as S;
    let test = if matches!(
        h.stage,
        S::ReconcileService | S::PreScaleUp | S::PostScaleUp
    ) {
        0.0
    } else {
        100.0
    };
    let weights = |green_share: f64| {
        let mut m = serde_json::Map::new();
        if let Some(blue) = &blue
            && green_share < 100.0
        {
            m.insert(blue.clone(), json!(100.0 - green_share));
        }
        if green_share > 0.0 || blue.is_none() {
            m.insert(green.clone(), json!(green_share));
        }
        Value::Object(m)
    };
    json!({
        "executionId": h.id,
        "lifecycleStage": h.stage.as_str(),
        "resourceArn": deployment_arn(service_arn, &h.deployment),
        "executionDetails": {
            "serviceArn": service_arn,
            "targetServiceRevisionArn": green,
            "testTrafficWeights": weights(test),
            "productionTrafficWeights": weights(production),
        },
        "hookDetails": h.hook_details.clone().unwrap_or_else(|| json!({})),
    })
}

/// Stores the answer to one call (module doc): SUCCEEDED and FAILED finish the
/// invocation, IN_PROGRESS schedules the next call, an unreachable webhook is retried
/// (and FAILED after [`MAX_UNREACHABLE`] in a row). Returns whether it was stored: an
/// answer for an invocation that is gone, finished, or already answered for this
/// attempt is ignored (the deployment moved on, or another call answered first).
///
/// # Errors
///
/// `EcsError::Server` when `ctx.scope` is not the service's scope (a caller bug).
pub fn report_hook_result(state: &State, ctx: &mut Ctx, r: HookResult) -> Written<bool> {
    if ctx.scope != r.service.scope {
        return Err(EcsError::Server(
            "a lifecycle hook result was written in the wrong scope".into(),
        ));
    }
    let Some(stored) = state.services.get(&r.service) else {
        return Ok((false, Vec::new()));
    };
    let mut rec = stored.clone();
    let now = ctx.now;
    let Some(h) = rec
        .blue_green
        .hooks
        .iter_mut()
        .find(|h| h.id == r.execution_id)
        .filter(|h| !h.pause && h.status.is_open() && h.attempts == r.attempt)
    else {
        return Ok((false, Vec::new()));
    };
    h.attempts += 1;
    let mut message = None;
    match r.answer {
        HookAnswer::Succeeded => {
            h.status = HookStatus::Succeeded;
            h.finished_at = Some(now);
            h.errors = 0;
            message = Some(format!(
                "lifecycle hook {} at stage {} succeeded.",
                h.target, h.stage
            ));
        }
        HookAnswer::Failed(why) => {
            h.status = HookStatus::Failed;
            h.finished_at = Some(now);
            h.reason = Some(why);
        }
        HookAnswer::InProgress {
            callback_delay,
            hook_details,
        } => {
            let delay = callback_delay
                .filter(|d| d.is_finite() && *d >= 0.0)
                .unwrap_or(DEFAULT_CALLBACK_DELAY_SECS)
                .min(MAX_CALLBACK_DELAY_SECS);
            h.status = HookStatus::InProgress;
            h.next_call_at = now + delay;
            h.errors = 0;
            if hook_details.is_some() {
                h.hook_details = hook_details;
            }
        }
        HookAnswer::Unreachable(why) => {
            h.errors += 1;
            if h.errors >= MAX_UNREACHABLE {
                h.status = HookStatus::Failed;
                h.finished_at = Some(now);
                h.reason = Some(format!(
                    "the webhook could not be reached {} times in a row: {why}",
                    h.errors
                ));
            } else {
                h.next_call_at = now + UNREACHABLE_RETRY_SECS;
                h.reason = Some(why);
            }
        }
    }
    if let Some(m) = message {
        let deployment = h.deployment.clone();
        push_event(&mut rec, ctx, &deployment, &m);
    }
    Ok((true, vec![Change::Put(Record::Service(rec))]))
}

/// Adds the event "(service S) (deployment D) `message`" to `rec`, newest first.
pub(crate) fn push_event(rec: &mut ServiceRecord, ctx: &mut Ctx, deployment: &str, message: &str) {
    let name = rec.name.clone();
    let events = rec.service.events.get_or_insert_with(Vec::new);
    events.insert(
        0,
        wire::ServiceEvent {
            id: Some(ctx.new_uuid()),
            created_at: Some(ctx.now),
            message: Some(format!(
                "(service {name}) (deployment {deployment}) {message}"
            )),
        },
    );
    events.truncate(crate::controllers::service::MAX_EVENTS);
}
