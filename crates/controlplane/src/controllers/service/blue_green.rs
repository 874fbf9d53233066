//! Blue/green deployments (`deploymentConfiguration.strategy` `BLUE_GREEN`, ECS's
//! built-in strategy of 2025, and its `LINEAR` and `CANARY` variants): each deployment's
//! tasks join one side of the service's target group pairs ([`Side`]); the new ("green")
//! deployment starts in full on the side that takes no production traffic, test traffic
//! (the test listener rule) goes to it at once, production traffic (the production
//! listener rule) moves to it once every desired green task is healthy — in one step
//! for BLUE_GREEN, in weighted steps for LINEAR and CANARY ([`traffic_shift`]) — and the
//! old ("blue") tasks keep running through `bakeTimeInMinutes` so that a rollback moves
//! traffic back at once. After the bake they stop (drained, though no traffic reaches
//! them). A rollback (the circuit breaker) makes the blue deployment PRIMARY again: its
//! tasks are healthy, so all traffic moves back in the same pass, whether it had moved in
//! full or in part. Lifecycle hooks hold a deployment at the stages they name
//! ([`hooks`]). The rules for each state are in docs/services.md.

use super::*;
use crate::load_balancing::{BlueGreenRules, Side, live_side, shift_rule};
use crate::ops::services::is_blue_green;
use wire::DeploymentLifecycleHookStage as Stage;
use wire::ServiceDeploymentLifecycleStage as DeploymentStage;

pub(crate) mod hooks;
mod traffic_shift;

/// The stages between a healthy green fleet and the production traffic shift.
const BEFORE_PRODUCTION: [(Stage, u32); 3] = [
    (Stage::PostScaleUp, 0),
    (Stage::TestTrafficShift, 0),
    (Stage::PostTestTrafficShift, 0),
];
/// The stages after production traffic moved in full; the bake time follows them.
const AFTER_PRODUCTION: [(Stage, u32); 2] = [
    (Stage::ProductionTrafficShift, 1000),
    (Stage::PostProductionTrafficShift, 0),
];

impl<'a> Pass<'a> {
    /// Whether this service deploys blue/green (the strategy, and an entry with an
    /// alternate group).
    pub(super) fn deploys_blue_green(&self) -> bool {
        is_blue_green(self.svc.service.deployment_configuration.as_ref())
            && self.bindings.iter().any(|b| b.blue_green.is_some())
    }

    /// The side a task's deployment uses (the main groups for one never assigned).
    pub(super) fn side_of(&self, t: &TaskRecord) -> Side {
        let alternate = t
            .task
            .started_by
            .as_deref()
            .and_then(|d| self.svc.blue_green.alternate.get(d))
            .copied()
            .unwrap_or(false);
        if alternate {
            Side::Alternate
        } else {
            Side::Main
        }
    }

    /// Each blue/green entry's groups and rules, once.
    fn pairs(&self) -> Vec<BlueGreenRules<'a>> {
        self.bindings
            .iter()
            .filter(|b| b.side == Side::Main)
            .filter_map(|b| b.blue_green.clone())
            .collect()
    }

    /// The side production traffic goes to (the first entry's production rule); while a
    /// LINEAR or CANARY shift is under way, the side it moves away from.
    fn live(&self) -> Side {
        if let Some(step) = &self.svc.blue_green.shifting {
            return if step.alternate {
                Side::Main
            } else {
                Side::Alternate
            };
        }
        self.pairs().first().map_or(Side::Main, |r| {
            live_side(self.state, &self.rec.scope, r, r.production_rule)
        })
    }

    fn bake_secs(&self) -> f64 {
        let minutes = self
            .svc
            .service
            .deployment_configuration
            .as_ref()
            .and_then(|c| c.bake_time_in_minutes)
            .unwrap_or(0)
            .max(0);
        f64::from(minutes) * 60.0
    }

    /// Points `rule` of every pair at `side`.
    fn shift(&mut self, side: Side, production: bool) -> bool {
        let mut moved = false;
        for r in self.pairs() {
            let rule = if production {
                Some(r.production_rule)
            } else {
                r.test_rule
            };
            let Some(rule) = rule else { continue };
            if let Some(change) = shift_rule(self.state, &self.rec.scope, &r, rule, side) {
                self.rule_changes.push(change);
                moved = true;
            }
        }
        moved
    }

    /// Runs before the REPLICA phases: gives the PRIMARY deployment its side, moves test
    /// and production traffic, and says which side's tasks of other deployments must keep
    /// running: the live side until production traffic has moved in full, the side it
    /// left during the bake time. Other deployments' tasks elsewhere (an abandoned green
    /// fleet) go.
    pub(super) fn blue_green(&mut self) -> Option<Side> {
        if !self.deploys_blue_green() {
            return None;
        }
        let p = self.primary()?;
        let (hold, stage) = self.blue_green_of(&p);
        self.show_stage(&p, stage);
        hold
    }

    /// [`Self::blue_green`] for the PRIMARY deployment `p`; also the lifecycle stage it
    /// is at (`None` where none applies; an open hook's stage wins, see
    /// [`Self::show_stage`]).
    fn blue_green_of(&mut self, p: &Primary) -> (Option<Side>, Option<DeploymentStage>) {
        let p = p.clone();
        let live = self.live();
        self.end_abandoned_shift(&p);
        // The production rule forwards to both groups (the other with weight 0), so the
        // data plane checks the green side's targets before any traffic goes there. A
        // shift under way keeps its weights; any other share goes back to the live side.
        match self.step_of(&p).map(|s| (s.alternate, s.percent)) {
            Some((alternate, percent)) => {
                let green = if alternate {
                    Side::Alternate
                } else {
                    Side::Main
                };
                self.weigh_production(green, percent);
            }
            None => {
                self.shift(live, true);
            }
        }
        let listed: HashSet<String> = self
            .deployments()
            .iter()
            .filter_map(|d| d.id.clone())
            .collect();
        self.svc
            .blue_green
            .alternate
            .retain(|id, _| listed.contains(id));
        if !self.svc.blue_green.alternate.contains_key(&p.id) {
            // The first deployment serves where traffic already goes; a later one starts
            // on the other side.
            let others = self.tasks.iter().any(|t| self.alive(t) && !Self::of(t, &p));
            let side = if others { live.other() } else { live };
            self.svc
                .blue_green
                .alternate
                .insert(p.id.clone(), side == Side::Alternate);
        }
        let side = if self.svc.blue_green.alternate[&p.id] {
            Side::Alternate
        } else {
            Side::Main
        };
        if side == live {
            let shifted_here = self
                .svc
                .blue_green
                .shifted
                .as_ref()
                .map(|(id, at)| (id == &p.id, *at));
            if shifted_here.is_some_and(|(here, _)| here)
                && let Some(held) = self.held_at(&p, &AFTER_PRODUCTION)
            {
                // The blue side keeps running until the hooks after the shift succeed.
                return (Some(live.other()), Some(hooks::deployment_stage(held)));
            }
            // The bake time counts from the shift, or from the hooks after it.
            let hooks_done = self.hooks_finished_at(
                &p,
                &[
                    Stage::ProductionTrafficShift,
                    Stage::PostProductionTrafficShift,
                ],
            );
            let baking = shifted_here
                .filter(|(here, _)| *here)
                .map(|(_, at)| at.max(hooks_done.unwrap_or(at)) + self.bake_secs())
                .filter(|until| self.now < *until);
            if let Some(until) = baking {
                self.wake(until);
                return (Some(live.other()), Some(DeploymentStage::BakeTime));
            }
            let cleaning = shifted_here.is_some_and(|(here, _)| here);
            return (None, cleaning.then_some(DeploymentStage::CleanUp));
        }
        if p.failed {
            // A failed green deployment never takes production traffic; blue serves on.
            return (Some(live), None);
        }
        self.shift(side, false);
        let desired = self.svc.service.desired_count.unwrap_or(0).max(0) as usize;
        let ready = self
            .tasks
            .iter()
            .filter(|t| Self::of(t, &p) && self.healthy(t))
            .count();
        if ready < desired {
            // Production traffic holds where it is (a shift under way neither advances
            // nor goes back) until every green task is healthy again.
            let stage = if self.step_of(&p).is_some() {
                DeploymentStage::ProductionTrafficShift
            } else {
                DeploymentStage::ScaleUp
            };
            return (Some(live), Some(stage));
        }
        if let Some(held) = self.held_at(&p, &BEFORE_PRODUCTION) {
            return (Some(live), Some(hooks::deployment_stage(held)));
        }
        if !self.advance_shift(&p, side, ready) {
            return (Some(live), Some(DeploymentStage::ProductionTrafficShift));
        }
        // The last step of a LINEAR or CANARY shift counts as the shift even if the rule
        // already forwards everything to green (the bake time must still follow).
        let was_shifting = self.svc.blue_green.shifting.take().is_some();
        if self.shift(side, true) || was_shifting {
            self.svc.blue_green.shifted = Some((p.id.clone(), self.now));
            let bake = self.bake_secs();
            self.events.push(format!(
                "{} (deployment {}) production traffic shifted to its {} tasks; bake time {}s.",
                self.prefix(),
                p.id,
                ready,
                bake
            ));
            if let Some(held) = self.held_at(&p, &AFTER_PRODUCTION) {
                return (Some(live), Some(hooks::deployment_stage(held)));
            }
            if bake > 0.0 {
                self.wake(self.now + bake);
                return (Some(live), Some(DeploymentStage::BakeTime));
            }
        }
        (None, Some(DeploymentStage::CleanUp))
    }
}
