//! ECS's `deploymentConfiguration.alarms` (`DeploymentAlarms`): what CreateService and
//! UpdateService accept, and which of the named alarms fail a deployment.
//!
//! ## The rule (docs/services.md, "CloudWatch alarms")
//! While a deployment is monitored (its rollout IN_PROGRESS, which for BLUE_GREEN,
//! LINEAR and CANARY includes the bake time), a named alarm **triggers** when it is in
//! ALARM and went into ALARM at or after the deployment was created: ECS watches for an
//! alarm "going into" ALARM, and an alarm that was already in ALARM before the deployment
//! began (a standing problem the deployment did not cause) does not fail it — it triggers
//! only if it leaves ALARM and goes back. Alarm names need not exist when the service is
//! created or updated (as in ECS, alarms are often created after the service); a name
//! with no alarm never triggers.

use model::wire::{self, DeploymentAlarms};
use model::wire_cw::StateValue;

use super::MAX_NAME_CHARS;
use crate::error::{EcsError, invalid};
use crate::state::{Scope, State};

/// Most alarm names in `deploymentConfiguration.alarms.alarmNames` (ECS's).
pub const MAX_DEPLOYMENT_ALARMS: usize = 10;

/// How a deployment's `rolloutStateReason` starts when its alarms failed it; the service
/// deployment's history reads the cause from it.
pub const ALARM_FAILURE_PREFIX: &str = "ECS deployment failed: CloudWatch alarm";

/// The `rolloutStateReason` of a deployment that the alarms `names` failed.
pub fn failure_reason(names: &[String]) -> String {
    format!(
        "{ALARM_FAILURE_PREFIX}{} {} in ALARM.",
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

/// Whether `reason` (a deployment's `rolloutStateReason`) says its alarms failed it.
pub fn is_alarm_failure(reason: Option<&str>) -> bool {
    reason.is_some_and(|r| r.starts_with(ALARM_FAILURE_PREFIX))
}

/// CreateService / UpdateService: `alarms` needs `alarmNames` (1–10 names of 1–255
/// characters, no empty one), `enable` and `rollback`, as the ECS model requires.
pub fn validate(c: &wire::DeploymentConfiguration) -> Result<(), EcsError> {
    let Some(a) = &c.alarms else { return Ok(()) };
    let names = a
        .alarm_names
        .as_ref()
        .ok_or_else(|| invalid("deploymentConfiguration.alarms.alarmNames is required."))?;
    if a.enable.is_none() {
        return Err(invalid(
            "deploymentConfiguration.alarms.enable is required.",
        ));
    }
    if a.rollback.is_none() {
        return Err(invalid(
            "deploymentConfiguration.alarms.rollback is required.",
        ));
    }
    if names.len() > MAX_DEPLOYMENT_ALARMS {
        return Err(invalid(format!(
            "deploymentConfiguration.alarms.alarmNames can name at most \
             {MAX_DEPLOYMENT_ALARMS} alarms, got {}.",
            names.len()
        )));
    }
    if a.enable == Some(true) && names.is_empty() {
        return Err(invalid(
            "deploymentConfiguration.alarms.alarmNames must name at least one alarm when \
             enable is true.",
        ));
    }
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.chars().count() > MAX_NAME_CHARS)
    {
        return Err(invalid(format!(
            "deploymentConfiguration.alarms.alarmNames: {:?} is not an alarm name (1 to \
             {MAX_NAME_CHARS} characters).",
            bad.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// The service's alarms when they are enabled (`enable` true), else `None`.
pub fn enabled(c: Option<&wire::DeploymentConfiguration>) -> Option<&DeploymentAlarms> {
    c.and_then(|c| c.alarms.as_ref())
        .filter(|a| a.enable == Some(true))
}

/// The alarms of `alarms` (in their order, each once) that trigger for a deployment
/// created at `since` (see the module docs): in ALARM, and gone into it at or after
/// `since`.
pub fn triggered(
    state: &State,
    scope: &Scope,
    alarms: &DeploymentAlarms,
    since: f64,
) -> Vec<String> {
    let cw = &state.discovery.cloudwatch;
    let mut out: Vec<String> = Vec::new();
    for name in alarms.alarm_names.as_deref().unwrap_or(&[]) {
        if out.contains(name) {
            continue;
        }
        let Some(a) = cw.alarm(scope, name) else {
            continue;
        };
        let since_alarm = a.alarm.state_transitioned_timestamp.unwrap_or(0.0);
        if a.state() == StateValue::Alarm && since_alarm >= since {
            out.push(name.clone());
        }
    }
    out
}

/// Whether `name` is one of the alarms of a service's deployment configuration `c`
/// (enabled or not): a change to that alarm gives the service work.
pub fn names_alarm(c: Option<&wire::DeploymentConfiguration>, name: &str) -> bool {
    c.and_then(|c| c.alarms.as_ref())
        .and_then(|a| a.alarm_names.as_deref())
        .is_some_and(|names| names.iter().any(|n| n == name))
}
