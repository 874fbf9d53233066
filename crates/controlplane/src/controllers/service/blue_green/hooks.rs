//! Lifecycle hooks of blue/green (LINEAR, CANARY) deployments
//! (`deploymentConfiguration.lifecycleHooks`), the pure half: when a deployment reaches
//! a stage that has hooks, the pass records one [`HookState`] per hook (PENDING) and
//! holds the deployment at that stage until every one of them has SUCCEEDED (or TIMED_OUT
//! with the `CONTINUE` timeout action). The server's hook runner calls the webhooks and
//! stores their answers ([`crate::ops::lifecycle_hooks`]); a FAILED hook (or one past its
//! timeout with `ROLLBACK`) fails the deployment and rolls it back as the circuit breaker
//! does, whether or not the breaker is enabled. A `PAUSE` hook calls nothing: it is
//! finished by ContinueServiceDeployment (CONTINUE: SUCCEEDED, ROLLBACK: FAILED) or by
//! its timeout. The pass also records the stage the deployment is at
//! ([`Pass::show_stage`]) for DescribeServiceDeployments' `lifecycleStage`. Where each
//! stage falls is in docs/services.md ("Lifecycle hooks").
//!
//! Hooks run for a deployment that replaces another one: not for a service's first
//! deployment (there is no blue side) nor for a rollback.

use super::*;
use crate::state::{HookState, HookStatus};
use wire::DeploymentLifecycleHookStage as Stage;
use wire::ServiceDeploymentLifecycleStage as DeploymentStage;

/// How long ECS waits for a hook by default (`timeoutConfiguration.timeoutInMinutes`
/// 1440: 24 hours).
pub const DEFAULT_HOOK_TIMEOUT_MINUTES: i32 = 1440;

/// `step` of a traffic share (percent) in a [`HookState`]: tenths of a percent.
pub(crate) fn step_of_share(percent: f64) -> u32 {
    (percent * 10.0).round().clamp(0.0, 1000.0) as u32
}

/// The execution id of hook `hook` of deployment `deployment` at `stage` (and `step`).
pub(crate) fn execution_id(deployment: &str, stage: Stage, step: u32, hook: usize) -> String {
    format!("{deployment}/{}/{step}/{hook}", stage.as_str())
}

/// Why the deployment's rollout reason names a rollback (its hooks do not run).
const ROLLING_BACK: &str = "rolling back to deploymentId";

/// The service deployment's lifecycle stage while a hook of `stage` holds it (ECS has no
/// PRE_PRODUCTION_TRAFFIC_SHIFT service deployment stage: the production shift is
/// starting).
pub(crate) fn deployment_stage(stage: Stage) -> DeploymentStage {
    match stage {
        Stage::ReconcileService => DeploymentStage::ReconcileService,
        Stage::PreScaleUp => DeploymentStage::PreScaleUp,
        Stage::PostScaleUp => DeploymentStage::PostScaleUp,
        Stage::TestTrafficShift => DeploymentStage::TestTrafficShift,
        Stage::PostTestTrafficShift => DeploymentStage::PostTestTrafficShift,
        Stage::PreProductionTrafficShift | Stage::ProductionTrafficShift => {
            DeploymentStage::ProductionTrafficShift
        }
        Stage::PostProductionTrafficShift => DeploymentStage::PostProductionTrafficShift,
    }
}

impl<'a> Pass<'a> {
    /// The configured hooks that run at `stage`, with their index.
    fn hooks_at(&self, stage: Stage) -> Vec<(usize, wire::DeploymentLifecycleHook)> {
        self.svc
            .service
            .deployment_configuration
            .as_ref()
            .and_then(|c| c.lifecycle_hooks.as_deref())
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                h.lifecycle_stages
                    .as_deref()
                    .unwrap_or(&[])
                    .contains(&stage)
            })
            .map(|(i, h)| (i, h.clone()))
            .collect()
    }

    /// Whether the PRIMARY deployment `p` runs lifecycle hooks: it rolls out
    /// (IN_PROGRESS), replaces another listed deployment, and is not a rollback (a
    /// deployment that reached a steady state before, or one the rollback named).
    fn runs_hooks(&self, p: &Primary) -> bool {
        let deployments = self.deployments();
        let Some(d) = deployments.iter().find(|d| d.id.as_deref() == Some(&p.id)) else {
            return false;
        };
        deployments.len() > 1
            && d.rollout_state == Some(Rollout::InProgress)
            && !self.svc.steady_deployments.contains(&p.id)
            && !d
                .rollout_state_reason
                .as_deref()
                .is_some_and(|r| r.contains(ROLLING_BACK))
    }

    /// Whether every hook of `stage` (at `step`) has let `p` through; records the
    /// invocations of a stage reached now (PENDING, due at once) and says so in an event.
    /// `true` when the stage has no hooks or `p` runs none.
    pub(super) fn stage_done(&mut self, p: &Primary, stage: Stage, step: u32) -> bool {
        let hooks = self.hooks_at(stage);
        if hooks.is_empty() || !self.runs_hooks(p) {
            return true;
        }
        let mut done = true;
        let (mut called, mut paused) = (Vec::new(), Vec::new());
        for (i, hook) in hooks {
            let id = execution_id(&p.id, stage, step, i);
            if let Some(h) = self.svc.blue_green.hooks.iter().find(|h| h.id == id) {
                done &= matches!(h.status, HookStatus::Succeeded | HookStatus::TimedOut);
                continue;
            }
            done = false;
            let timeout = hook.timeout_configuration.clone().unwrap_or_default();
            let minutes = timeout
                .timeout_in_minutes
                .unwrap_or(DEFAULT_HOOK_TIMEOUT_MINUTES)
                .max(1);
            let pause = hook.target_type == Some(wire::DeploymentLifecycleHookTargetType::Pause);
            let target = if pause {
                String::new()
            } else {
                hook.hook_target_arn.clone().unwrap_or_default()
            };
            let expires_at = self.now + f64::from(minutes) * 60.0;
            self.wake(expires_at);
            if pause {
                paused.push(id.clone());
            } else {
                called.push(target.clone());
            }
            self.svc.blue_green.hooks.push(HookState {
                id,
                deployment: p.id.clone(),
                stage,
                step,
                hook: i,
                target,
                pause,
                status: HookStatus::Pending,
                started_at: self.now,
                next_call_at: self.now,
                expires_at,
                continue_on_timeout: timeout.action
                    == Some(wire::DeploymentLifecycleHookAction::Continue),
                attempts: 0,
                errors: 0,
                finished_at: None,
                reason: None,
                // The hook's configured `hookDetails` go with its first call; what it
                // answers with IN_PROGRESS replaces them for the calls after.
                hook_details: hook.hook_details.clone(),
                timed_out: false,
            });
        }
        let at = if step > 0 && step < 1000 {
            format!(" ({}% of production traffic)", f64::from(step) / 10.0)
        } else {
            String::new()
        };
        if !called.is_empty() {
            self.events.push(format!(
                "{} (deployment {}) reached lifecycle stage {stage}{at}: calling lifecycle \
                 hooks {}.",
                self.prefix(),
                p.id,
                called.join(", ")
            ));
        }
        if !paused.is_empty() {
            self.events.push(format!(
                "{} (deployment {}) reached lifecycle stage {stage}{at}: paused by PAUSE \
                 lifecycle hooks {} until ContinueServiceDeployment.",
                self.prefix(),
                p.id,
                paused.join(", ")
            ));
        }
        done
    }

    /// The first of `stages` that holds `p` (see [`Self::stage_done`]), if any.
    pub(super) fn held_at(&mut self, p: &Primary, stages: &[(Stage, u32)]) -> Option<Stage> {
        stages
            .iter()
            .find(|&&(stage, step)| !self.stage_done(p, stage, step))
            .map(|&(stage, _)| stage)
    }

    /// The stage of an open hook of `p` (the deployment is held there), if any.
    pub(super) fn open_hook_stage(&self, p: &Primary) -> Option<Stage> {
        self.svc
            .blue_green
            .hooks
            .iter()
            .filter(|h| h.deployment == p.id && h.status.is_open())
            .map(|h| h.stage)
            .next_back()
    }

    /// Records the lifecycle stage of `p` that DescribeServiceDeployments shows: the
    /// stage of an open hook of `p` (it is held there), else `stage`. Only for a
    /// deployment that runs hooks (one that replaces another, not a rollback).
    pub(super) fn show_stage(&mut self, p: &Primary, stage: Option<DeploymentStage>) {
        if !self.runs_hooks(p) {
            return;
        }
        let stage = self.open_hook_stage(p).map(deployment_stage).or(stage);
        if let Some(stage) = stage {
            self.svc.blue_green.stage = Some((p.id.clone(), stage));
        }
    }

    /// [`Self::stage_done`] for each stage in turn, stopping at the first that holds.
    pub(super) fn stages_done(&mut self, p: &Primary, stages: &[(Stage, u32)]) -> bool {
        self.held_at(p, stages).is_none()
    }

    /// When the last of `p`'s hooks at `stages` finished, if any did.
    pub(super) fn hooks_finished_at(&self, p: &Primary, stages: &[Stage]) -> Option<f64> {
        self.svc
            .blue_green
            .hooks
            .iter()
            .filter(|h| h.deployment == p.id && stages.contains(&h.stage))
            .filter_map(|h| h.finished_at)
            .fold(None, |acc: Option<f64>, at| {
                Some(acc.map_or(at, |a| a.max(at)))
            })
    }

    /// Whether `p` may not start tasks yet: the RECONCILE_SERVICE (when more than one
    /// other deployment is listed) and PRE_SCALE_UP hooks come first.
    pub(in crate::controllers::service) fn holds_scale_up(&mut self, p: &Primary) -> bool {
        if !self.deploys_blue_green() || !self.runs_hooks(p) {
            return false;
        }
        let mut stages = Vec::new();
        if self.deployments().len() > 2 {
            stages.push((Stage::ReconcileService, 0));
        }
        stages.push((Stage::PreScaleUp, 0));
        !self.stages_done(p, &stages)
    }

    /// Runs first in a REPLICA pass: forgets the invocations of deployments that are no
    /// longer PRIMARY (and all of them once the service stops deploying blue/green),
    /// times out open ones past their `expires_at`, and fails the PRIMARY deployment
    /// whose hook FAILED, rolling it back.
    pub(in crate::controllers::service) fn lifecycle_hooks(&mut self) {
        if self.svc.blue_green.hooks.is_empty() {
            return;
        }
        let primary = self.primary().filter(|_| self.deploys_blue_green());
        let Some(p) = primary else {
            self.svc.blue_green.hooks.clear();
            return;
        };
        self.svc.blue_green.hooks.retain(|h| h.deployment == p.id);
        let (now, prefix) = (self.now, self.prefix());
        let mut events = Vec::new();
        let mut next_expiry = None;
        for h in self.svc.blue_green.hooks.iter_mut() {
            if !h.status.is_open() {
                continue;
            }
            if now < h.expires_at {
                next_expiry = Some(next_expiry.map_or(h.expires_at, |e: f64| e.min(h.expires_at)));
                continue;
            }
            let minutes = ((h.expires_at - h.started_at) / 60.0).round();
            h.status = if h.continue_on_timeout {
                HookStatus::TimedOut
            } else {
                HookStatus::Failed
            };
            h.finished_at = Some(now);
            h.timed_out = true;
            h.reason = Some(if h.pause {
                format!("no ContinueServiceDeployment within {minutes} minutes")
            } else {
                format!("no SUCCEEDED answer within {minutes} minutes")
            });
            events.push(format!(
                "{prefix} (deployment {}) lifecycle hook {} at stage {} timed out after \
                 {minutes} minutes; {}.",
                h.deployment,
                h.label(),
                h.stage,
                if h.continue_on_timeout {
                    "the deployment continues (timeout action CONTINUE)"
                } else {
                    "the deployment fails (timeout action ROLLBACK)"
                }
            ));
        }
        self.events.extend(events);
        if let Some(at) = next_expiry {
            self.wake(at);
        }
        let failed = self
            .svc
            .blue_green
            .hooks
            .iter()
            .find(|h| h.status == HookStatus::Failed)
            .cloned();
        if let Some(h) = failed
            && !p.failed
        {
            self.fail_for_hook(&p, &h);
        }
    }

    /// Fails the PRIMARY deployment `p` because hook `h` FAILED, and hands PRIMARY back to
    /// its rollback target ([`Self::roll_back`]) as the circuit breaker's rollback does
    /// (always: a failed hook rolls back). Without a target the deployment just FAILED.
    fn fail_for_hook(&mut self, p: &Primary, h: &HookState) {
        let (now, prefix) = (self.now, self.prefix());
        let why = h
            .reason
            .clone()
            .unwrap_or_else(|| "it answered FAILED".into());
        let deployments = self.svc.service.deployments.get_or_insert_with(Vec::new);
        let Some(pi) = deployments
            .iter()
            .position(|d| d.id.as_deref() == Some(p.id.as_str()))
        else {
            return;
        };
        self.tripped = true;
        let d = &mut deployments[pi];
        d.rollout_state = Some(Rollout::Failed);
        d.rollout_state_reason = Some(format!(
            "ECS deployment lifecycle hook {} failed at stage {}.",
            h.label(),
            h.stage
        ));
        d.updated_at = Some(now);
        self.events.push(format!(
            "{prefix} (deployment {}) deployment failed: lifecycle hook {} failed at stage \
             {} ({why}).",
            p.id,
            h.label(),
            h.stage
        ));
        self.roll_back(
            pi,
            |target_id| format!("ECS deployment lifecycle hook: {ROLLING_BACK} {target_id}."),
            |target_id| {
                format!(
                    "{prefix} (deployment {target_id}) rolling back: deployment {} failed its \
                     lifecycle hook at stage {}.",
                    p.id, h.stage
                )
            },
        );
    }
}
