//! `deploymentConfiguration.alarms`: a CloudWatch alarm that goes into ALARM while the
//! PRIMARY deployment rolls out (IN_PROGRESS, blue/green bake time included) fails it;
//! with `rollback`, PRIMARY goes back to the rollback target exactly as the circuit
//! breaker's rollback does. Which alarms count is `ops::cloudwatch::deployment`'s rule.

use super::*;
use crate::ops::cloudwatch::deployment::{enabled, failure_reason, triggered};

/// An alarm counts for a rollback only if it went into ALARM strictly after the rollback
/// began: this much after.
const ROLLBACK_MARGIN_SECS: f64 = 1e-3;

impl Pass<'_> {
    /// Since when the alarms count for the PRIMARY deployment `d`: its creation, or, when
    /// it is the target of a rollback, just after the rollback began (the alarm that
    /// failed the deployment rolled back from is still in ALARM, and must not fail the
    /// rollback too).
    fn monitored_since(&self, d: &wire::Deployment) -> f64 {
        let rolled_back_at = self
            .state
            .service_history
            .deployments_of(&self.rec.key())
            .filter(|sd| sd.rollback_to.is_some() && sd.rollback_to == d.id)
            .filter_map(|sd| sd.deployment.rollback.as_ref()?.started_at)
            .reduce(f64::max);
        match rolled_back_at {
            Some(at) => at + ROLLBACK_MARGIN_SECS,
            None => d.created_at.unwrap_or(0.0),
        }
    }

    /// Fails the IN_PROGRESS PRIMARY deployment when one of the service's enabled
    /// deployment alarms has triggered (none when the circuit breaker failed it first,
    /// in this pass or before), and rolls back when `rollback` is set.
    pub(super) fn deployment_alarms(&mut self) {
        let Some(alarms) = enabled(self.svc.service.deployment_configuration.as_ref()).cloned()
        else {
            return;
        };
        let deployments = self.svc.service.deployments.as_deref().unwrap_or(&[]);
        let Some(pi) = deployments
            .iter()
            .position(|d| d.is_primary() && d.rollout_state == Some(Rollout::InProgress))
        else {
            return;
        };
        let since = self.monitored_since(&deployments[pi]);
        let names = triggered(self.state, &self.rec.scope, &alarms, since);
        if names.is_empty() {
            return;
        }
        let (now, prefix) = (self.now, self.prefix());
        let deployments = self.svc.service.deployments.get_or_insert_with(Vec::new);
        let d = &mut deployments[pi];
        let failed_id = d.id.clone().unwrap_or_default();
        d.rollout_state = Some(Rollout::Failed);
        d.rollout_state_reason = Some(failure_reason(&names));
        d.updated_at = Some(now);
        self.tripped = true;
        let list = names.join(", ");
        self.events.push(format!(
            "{prefix} (deployment {failed_id}) deployment failed: alarm(s) {list} in ALARM \
             state."
        ));
        if alarms.rollback != Some(true) {
            return;
        }
        self.roll_back(
            pi,
            |target_id| format!("ECS deployment alarms: rolling back to deploymentId {target_id}."),
            |target_id| {
                format!(
                    "{prefix} (deployment {target_id}) rolling back: deployment {failed_id} \
                     failed because alarm(s) {list} went into ALARM, and the deployment \
                     alarms have rollback enabled."
                )
            },
        );
    }
}
