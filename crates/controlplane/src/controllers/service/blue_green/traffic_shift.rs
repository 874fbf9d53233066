//! How production traffic moves to a green deployment once all its tasks are healthy,
//! by `deploymentConfiguration.strategy`: BLUE_GREEN at once; CANARY `canaryPercent`
//! first, the rest after `canaryBakeTimeInMinutes`; LINEAR `stepPercent` more each step,
//! `stepBakeTimeInMinutes` apart, until 100 %. A partial share is written as forward
//! weights of the production listener rule ([`crate::load_balancing::weigh_rule`]) and
//! recorded as the service's [`TrafficStep`], so the next step's time is read from the
//! stored state and `now` alone. The rules for each state are in docs/services.md.

use super::*;
use crate::load_balancing::{Side, weigh_rule};
use crate::state::TrafficStep;

/// ECS's LINEAR defaults: `stepPercent` 10.0, `stepBakeTimeInMinutes` 6.
pub(crate) const LINEAR_DEFAULTS: (f64, i32) = (10.0, 6);
/// ECS's CANARY defaults: `canaryPercent` 5.0, `canaryBakeTimeInMinutes` 10.
pub(crate) const CANARY_DEFAULTS: (f64, i32) = (5.0, 10);

/// How a deployment configuration moves production traffic to the green side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Plan {
    /// BLUE_GREEN: everything in one step.
    AllAtOnce,
    /// CANARY: `percent` first, everything after `bake_secs`.
    Canary {
        /// The canary's share of production traffic.
        percent: f64,
        /// Seconds the canary share holds.
        bake_secs: f64,
    },
    /// LINEAR: `step` percent more each step, every `bake_secs`.
    Linear {
        /// Percent added by each step.
        step: f64,
        /// Seconds each share below 100 % holds.
        bake_secs: f64,
    },
}

impl Plan {
    /// The plan of a deployment configuration, ECS's defaults filled in.
    pub(crate) fn of(c: Option<&wire::DeploymentConfiguration>) -> Plan {
        let minutes = |m: Option<i32>, default: i32| f64::from(m.unwrap_or(default).max(0)) * 60.0;
        match c.and_then(|c| c.strategy) {
            Some(wire::DeploymentStrategy::Canary) => {
                let k = c.and_then(|c| c.canary_configuration.clone());
                let k = k.unwrap_or_default();
                Plan::Canary {
                    percent: k.canary_percent.unwrap_or(CANARY_DEFAULTS.0),
                    bake_secs: minutes(k.canary_bake_time_in_minutes, CANARY_DEFAULTS.1),
                }
            }
            Some(wire::DeploymentStrategy::Linear) => {
                let l = c.and_then(|c| c.linear_configuration.clone());
                let l = l.unwrap_or_default();
                Plan::Linear {
                    step: l.step_percent.unwrap_or(LINEAR_DEFAULTS.0),
                    bake_secs: minutes(l.step_bake_time_in_minutes, LINEAR_DEFAULTS.1),
                }
            }
            _ => Plan::AllAtOnce,
        }
    }

    /// The green side's share of production traffic due at `now`, given the share it
    /// has and since when (`None` before the first step), and when the share after that
    /// is due (`None` once it is 100). One step at a time: a pass moves traffic by at
    /// most one step, so every share is written and held at least once.
    pub(crate) fn next(&self, current: Option<(f64, f64)>, now: f64) -> (f64, Option<f64>) {
        let (first, step, bake) = match *self {
            Plan::AllAtOnce => return (100.0, None),
            Plan::Canary { percent, bake_secs } => (percent, 100.0, bake_secs),
            Plan::Linear { step, bake_secs } => (step, step, bake_secs),
        };
        let share = match current {
            None => first,
            Some((share, since)) if now < since + bake => return (share, Some(since + bake)),
            Some((share, _)) => share + step,
        };
        // Shares are multiples of 0.1 %: round away the sums' binary error.
        let share = ((share * 10.0).round() / 10.0).min(100.0);
        (share, (share < 100.0).then_some(now + bake))
    }
}

impl<'a> Pass<'a> {
    /// The traffic step of the PRIMARY deployment `p`, if a LINEAR or CANARY shift to it
    /// is under way.
    pub(super) fn step_of(&self, p: &Primary) -> Option<&TrafficStep> {
        self.svc
            .blue_green
            .shifting
            .as_ref()
            .filter(|s| s.deployment == p.id)
    }

    /// Ends a traffic shift that is not `p`'s (its deployment was rolled back or replaced)
    /// or that `p` can no longer finish (it failed): its share of production traffic is
    /// given back to the blue side in this pass, at once. Says so in an event.
    pub(super) fn end_abandoned_shift(&mut self, p: &Primary) {
        let Some(step) = self.svc.blue_green.shifting.clone() else {
            return;
        };
        if step.deployment == p.id && !p.failed {
            return;
        }
        self.svc.blue_green.shifting = None;
        self.events.push(format!(
            "{} (deployment {}) its {}% of production traffic moved back to the previous \
             deployment's tasks.",
            self.prefix(),
            step.deployment,
            step.percent
        ));
    }

    /// Moves production traffic towards `p`'s side `green`, all of whose desired tasks
    /// (`ready` of them) are healthy: writes the share its strategy asks for now and
    /// records it. `true` once the whole of it goes to `green` (as BLUE_GREEN does at
    /// once), `false` while the blue side keeps part of it. Lifecycle hooks hold each
    /// step: PRE_PRODUCTION_TRAFFIC_SHIFT before its share is written,
    /// PRODUCTION_TRAFFIC_SHIFT after it (the next step waits for them).
    pub(super) fn advance_shift(&mut self, p: &Primary, green: Side, ready: usize) -> bool {
        use super::hooks::step_of_share;
        use wire::DeploymentLifecycleHookStage as Stage;
        let plan = Plan::of(self.svc.service.deployment_configuration.as_ref());
        let current = self.step_of(p).map(|s| (s.percent, s.since));
        if let Some((held, _)) = current
            && !self.stage_done(p, Stage::ProductionTrafficShift, step_of_share(held))
        {
            return false;
        }
        let (share, next_at) = plan.next(current, self.now);
        if current.map(|(s, _)| s) != Some(share)
            && !self.stage_done(p, Stage::PreProductionTrafficShift, step_of_share(share))
        {
            return false;
        }
        if share >= 100.0 {
            return true;
        }
        if current.map(|(s, _)| s) != Some(share) {
            self.weigh_production(green, share);
            self.svc.blue_green.shifting = Some(TrafficStep {
                deployment: p.id.clone(),
                alternate: green == Side::Alternate,
                percent: share,
                since: self.now,
            });
            let kind = if matches!(plan, Plan::Canary { .. }) {
                "canary"
            } else {
                "linear step"
            };
            self.events.push(format!(
                "{} (deployment {}) {share}% of production traffic shifted to its {ready} \
                 tasks ({kind}).",
                self.prefix(),
                p.id,
            ));
            self.stage_done(p, Stage::ProductionTrafficShift, step_of_share(share));
        }
        if let Some(at) = next_at {
            self.wake(at);
        }
        false
    }

    /// Writes every pair's production rule to forward `percent` of its requests to
    /// `side` and the rest to the other side; `true` when a rule changed.
    pub(super) fn weigh_production(&mut self, side: Side, percent: f64) -> bool {
        let mut moved = false;
        for r in self.pairs() {
            if let Some(change) = weigh_rule(
                self.state,
                &self.rec.scope,
                &r,
                r.production_rule,
                side,
                percent,
            ) {
                self.rule_changes.push(change);
                moved = true;
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::Plan;

    #[test]
    fn canary_holds_its_share_through_the_bake_then_moves_the_rest() {
        let plan = Plan::Canary {
            percent: 10.0,
            bake_secs: 60.0,
        };
        assert_eq!(plan.next(None, 100.0), (10.0, Some(160.0)));
        assert_eq!(plan.next(Some((10.0, 100.0)), 159.0), (10.0, Some(160.0)));
        assert_eq!(plan.next(Some((10.0, 100.0)), 160.0), (100.0, None));
    }

    #[test]
    fn linear_adds_a_step_per_bake_and_stops_at_100() {
        let plan = Plan::Linear {
            step: 33.3,
            bake_secs: 0.0,
        };
        let mut current = None;
        let mut shares = Vec::new();
        loop {
            let (share, _) = plan.next(current, 0.0);
            shares.push(share);
            if share >= 100.0 {
                break;
            }
            current = Some((share, 0.0));
        }
        assert_eq!(shares, vec![33.3, 66.6, 99.9, 100.0]);
        let plan = Plan::Linear {
            step: 50.0,
            bake_secs: 30.0,
        };
        assert_eq!(plan.next(Some((50.0, 0.0)), 29.0), (50.0, Some(30.0)));
        assert_eq!(plan.next(Some((50.0, 0.0)), 30.0), (100.0, None));
    }

    #[test]
    fn blue_green_and_whole_shares_move_at_once() {
        assert_eq!(Plan::AllAtOnce.next(None, 0.0), (100.0, None));
        let plan = Plan::Canary {
            percent: 100.0,
            bake_secs: 600.0,
        };
        assert_eq!(plan.next(None, 0.0), (100.0, None));
    }

    #[test]
    fn ecs_defaults_apply() {
        use model::wire::{DeploymentConfiguration, DeploymentStrategy};
        let c = DeploymentConfiguration {
            strategy: Some(DeploymentStrategy::Linear),
            ..Default::default()
        };
        assert_eq!(
            Plan::of(Some(&c)),
            Plan::Linear {
                step: 10.0,
                bake_secs: 360.0
            }
        );
        let c = DeploymentConfiguration {
            strategy: Some(DeploymentStrategy::Canary),
            ..Default::default()
        };
        assert_eq!(
            Plan::of(Some(&c)),
            Plan::Canary {
                percent: 5.0,
                bake_secs: 600.0
            }
        );
    }
}
