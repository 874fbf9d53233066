//! LINEAR and CANARY deployments behind the load balancer: the green fleet starts in full
//! on the alternate group as for BLUE_GREEN, then production traffic moves by the
//! production rule's forward weights, step by step, holding each step's bake time on the
//! harness's clock; a circuit-breaker rollback puts all of it back on blue at once. And
//! what CreateService and UpdateService accept for the three strategies.

use super::*;
use controlplane::controllers::service::reconcile_service;
use controlplane::load_balancing::{BlueGreenRules, Side, rule_share};

impl Harness {
    /// Percent of production traffic the production rule sends to the group `alt`.
    fn green_share(&self, alt: &str) -> f64 {
        let rules = BlueGreenRules {
            main: self.tg_arn.clone(),
            alternate: alt.to_owned(),
            production_rule: &self.prod_rule,
            test_rule: None,
        };
        rule_share(
            &self.world.state,
            &scope(),
            &rules,
            &self.prod_rule,
            Side::Alternate,
        )
        .expect("the production rule forwards")
    }

    /// The production rule's forward weights, by target group ARN.
    fn prod_weights(&self) -> BTreeMap<String, Option<u32>> {
        self.world
            .forward_groups(&self.prod_rule)
            .into_iter()
            .collect()
    }

    /// Steps (at most `max` seconds) until `done`; whether it came.
    fn run_until(&mut self, max: usize, done: impl Fn(&Harness) -> bool) -> bool {
        for _ in 0..max {
            self.step(&mut |_| {});
            if done(self) {
                return true;
            }
        }
        false
    }

    /// The PRIMARY deployment's task definition.
    fn primary_def(&self) -> String {
        self.service()
            .deployments
            .unwrap_or_default()
            .into_iter()
            .find(|d| d.is_primary())
            .and_then(|d| d.task_definition)
            .expect("a PRIMARY deployment")
    }
}

/// A stable service of `web:1` deploying with `config`, and `web:2` registered (its
/// targets healthy): (alternate group, test rule, v1, v2).
fn deployed(config: Value) -> (Harness, String, String, String, String) {
    let mut h = Harness::new();
    let (alt, test_rule) = h.shifting_service(true, config);
    h.run(10, |_| {});
    assert!(h.stable(), "{:?}", h.service());
    assert_eq!(
        h.green_share(&alt),
        0.0,
        "the first deployment serves on main"
    );
    let v1 = h.service().task_definition.expect("v1");
    let v2 = h.register_def(Checks::Pass);
    (h, alt, test_rule.expect("a test rule"), v1, v2)
}

#[test]
fn a_canary_deployment_holds_its_share_through_the_canary_bake_then_moves_the_rest() {
    let (mut h, alt, test_rule, v1, v2) = deployed(json!({"strategy": "CANARY",
        "bakeTimeInMinutes": 1,
        "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 2}}));
    h.update_to(&v2);
    assert!(
        h.run_until(200, |h| h.green_share(&alt) > 0.0),
        "the canary starts"
    );
    let canary_at = h.world.now;
    assert_eq!(h.green_share(&alt), 10.0);
    assert_eq!(
        h.prod_weights(),
        BTreeMap::from([(h.tg_arn.clone(), Some(9)), (alt.clone(), Some(1))]),
        "10 % as forward weights 9 (blue) and 1 (green)"
    );
    assert_eq!(
        h.healthy_in(&alt),
        2,
        "green is healthy before it takes traffic"
    );
    assert_eq!(h.rule_target(&test_rule), alt, "test traffic goes to green");
    assert_eq!(h.running_of(&v1), 2);
    assert!(
        h.event_messages()
            .iter()
            .any(|m| m.contains("10% of production traffic shifted to its 2 tasks (canary)")),
        "{:?}",
        h.event_messages()
    );
    // A server wakes the service for the next step by itself.
    let mut ctx = h.world.ctx();
    let (out, _) = reconcile_service(&h.world.state, &mut ctx, &Harness::key()).expect("pass");
    assert!(
        out.requeue_after.is_some_and(|s| s > 0.0 && s <= 120.0),
        "{:?}",
        out.requeue_after
    );
    // The canary share holds through canaryBakeTimeInMinutes, blue serving the rest.
    h.run(119, |h| {
        assert_eq!(
            h.green_share(&alt),
            10.0,
            "moved before the canary bake ended"
        );
        assert_eq!(h.running_of(&v1), 2);
    });
    h.run(1, |_| {});
    assert_eq!(
        h.green_share(&alt),
        100.0,
        "the rest moves after the canary bake"
    );
    assert_eq!(h.world.now - canary_at, 120.0);
    let shifted_at = h.world.now;
    // Then the deployment's bakeTimeInMinutes before blue stops.
    h.run(59, |h| {
        assert_eq!(h.running_of(&v1), 2, "blue is kept through the bake")
    });
    h.run(100, |_| {});
    assert_eq!(h.running_of(&v1), 0, "blue stops after the bake");
    let blue_stops = h.stop_times_of(&v1);
    assert!(
        blue_stops.iter().all(|s| *s >= shifted_at + 60.0),
        "{blue_stops:?}"
    );
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert_eq!(h.healthy_in(&alt), 2);
}

#[test]
fn a_linear_deployment_moves_traffic_in_equal_steps_a_step_bake_apart() {
    let (mut h, alt, _, v1, v2) = deployed(json!({"strategy": "LINEAR",
        "bakeTimeInMinutes": 0,
        "linearConfiguration": {"stepPercent": 40.0, "stepBakeTimeInMinutes": 1}}));
    h.update_to(&v2);
    let mut seen: Vec<(f64, f64)> = vec![(h.world.now, 0.0)];
    let mut weights_at_40 = None;
    h.run(400, |h| {
        let share = h.green_share(&alt);
        if share != seen.last().expect("a share").1 {
            seen.push((h.world.now, share));
            if share == 40.0 {
                weights_at_40 = Some(h.prod_weights());
            }
        }
        if share < 100.0 {
            assert_eq!(h.running_of(&v1), 2, "blue serves the rest");
            assert!(share == 0.0 || h.healthy_in(&alt) == 2);
        }
    });
    let shares: Vec<f64> = seen.iter().map(|(_, s)| *s).collect();
    assert_eq!(shares, vec![0.0, 40.0, 80.0, 100.0], "{seen:?}");
    assert_eq!(
        seen[2].0 - seen[1].0,
        60.0,
        "stepBakeTimeInMinutes between steps"
    );
    assert_eq!(
        seen[3].0 - seen[2].0,
        60.0,
        "the last step comes after a bake too"
    );
    assert_eq!(
        weights_at_40,
        Some(BTreeMap::from([
            (h.tg_arn.clone(), Some(3)),
            (alt.clone(), Some(2))
        ]))
    );
    assert_eq!(
        h.prod_weights(),
        BTreeMap::from([(h.tg_arn.clone(), Some(0)), (alt.clone(), Some(1))])
    );
    let events = h.event_messages();
    for m in [
        "40% of production traffic shifted to its 2 tasks (linear step)",
        "80% of production traffic shifted to its 2 tasks (linear step)",
        "production traffic shifted to its 2 tasks; bake time 0s",
    ] {
        assert!(events.iter().any(|e| e.contains(m)), "{m}: {events:?}");
    }
    assert_eq!(h.running_of(&v1), 0);
    assert_eq!(h.running_of(&v2), 2);
    assert!(h.stable(), "{:?}", h.service().deployments);
    // The next deployment shifts back to the main group the same way.
    let v3 = h.register_def(Checks::Pass);
    h.update_to(&v3);
    assert!(
        h.run_until(200, |h| h.green_share(&alt) == 60.0),
        "40 % to main"
    );
    h.run(300, |_| {});
    assert_eq!(h.green_share(&alt), 0.0);
    assert_eq!(h.running_of(&v3), 2);
    assert!(h.stable());
}

#[test]
fn a_rollback_in_the_middle_of_a_shift_returns_all_traffic_to_blue_at_once() {
    let (mut h, alt, _, v1, v2) = deployed(json!({"strategy": "LINEAR",
        "bakeTimeInMinutes": 1,
        "deploymentCircuitBreaker": {"enable": true, "rollback": true},
        "linearConfiguration": {"stepPercent": 20.0, "stepBakeTimeInMinutes": 1}}));
    h.update_to(&v2);
    assert!(
        h.run_until(300, |h| h.green_share(&alt) == 40.0),
        "two steps"
    );
    // Green starts failing its health checks: the shift holds, the circuit breaker
    // trips, and the rollback gives blue all production traffic in the same pass.
    h.checks.insert(v2.clone(), Checks::Fail);
    let mut rolled_back_at = None;
    h.run(900, |h| {
        let share = h.green_share(&alt);
        assert!(
            share <= 40.0,
            "the shift went on with unhealthy green tasks"
        );
        if h.primary_def() == v1 {
            rolled_back_at.get_or_insert(h.world.now);
            assert_eq!(share, 0.0, "rolled back, yet {share}% still goes to green");
        }
        assert_eq!(h.running_of(&v1), 2, "blue keeps serving");
    });
    assert!(rolled_back_at.is_some(), "{:?}", h.event_messages());
    assert_eq!(
        h.prod_weights(),
        BTreeMap::from([(h.tg_arn.clone(), Some(1)), (alt.clone(), Some(0))])
    );
    assert!(
        h.event_messages()
            .iter()
            .any(|m| m.contains("its 40% of production traffic moved back")),
        "{:?}",
        h.event_messages()
    );
    assert_eq!(h.running_of(&v2), 0);
    assert!(h.stable(), "{:?}", h.service().deployments);
}

#[test]
fn linear_and_canary_settings_are_validated_like_ecs() {
    let mut h = Harness::new();
    let hook = json!([{"hookTargetArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
        "roleArn": "arn:aws:iam::123456789012:role/r", "lifecycleStages": ["TEST_TRAFFIC_SHIFT"]}]);
    let cases = [
        (
            json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 2.9}}),
            "stepPercent must be a multiple of 0.1 from 3.0 to 100.0",
        ),
        (
            json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 100.1}}),
            "stepPercent must be a multiple of 0.1",
        ),
        (
            json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 10.05}}),
            "stepPercent must be a multiple of 0.1",
        ),
        (
            json!({"strategy": "LINEAR", "linearConfiguration": {"stepBakeTimeInMinutes": -1}}),
            "stepBakeTimeInMinutes must be between 0 and 1440",
        ),
        (
            json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0.0}}),
            "canaryPercent must be a multiple of 0.1 from 0.1 to 100.0",
        ),
        (
            json!({"strategy": "CANARY", "canaryConfiguration": {"canaryBakeTimeInMinutes": 1441}}),
            "canaryBakeTimeInMinutes must be between 0 and 1440",
        ),
        (
            json!({"strategy": "CANARY", "bakeTimeInMinutes": 1441}),
            "bakeTimeInMinutes must be between 0 and 1440",
        ),
        (
            json!({"strategy": "CANARY", "linearConfiguration": {"stepPercent": 10.0}}),
            "linearConfiguration can only be specified with the LINEAR deployment strategy",
        ),
        (
            json!({"strategy": "BLUE_GREEN", "canaryConfiguration": {}}),
            "canaryConfiguration can only be specified with the CANARY deployment strategy",
        ),
        (
            json!({"linearConfiguration": {"stepPercent": 10.0}}),
            "LINEAR deployment strategy, not ROLLING",
        ),
        (
            json!({"strategy": "LINEAR"}),
            "needs an advancedConfiguration",
        ),
        (
            json!({"strategy": "CANARY"}),
            "needs an advancedConfiguration",
        ),
    ];
    for (config, message) in cases {
        let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
            "loadBalancers": h.lb_entry(), "deploymentConfiguration": config});
        let e = h.world.refused_create_service(body);
        assert_eq!(e.code(), "InvalidParameterException", "{config}: {e}");
        assert!(e.to_string().contains(message), "{config}: {e}");
    }
    let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
        "deploymentConfiguration": {"strategy": "LINEAR", "lifecycleHooks": hook}});
    let e = h.world.refused_create_service(body);
    assert_eq!(e.code(), "UnsupportedFeatureException", "{e}");
    // The bounds themselves are accepted, and shown as given.
    let (_, _) = h.shifting_service(
        false,
        json!({"strategy": "CANARY",
            "canaryConfiguration": {"canaryPercent": 0.1, "canaryBakeTimeInMinutes": 1440}}),
    );
    let shown = h.service().deployment_configuration.expect("configuration");
    assert_eq!(
        shown.canary_configuration.and_then(|c| c.canary_percent),
        Some(0.1)
    );
    // UpdateService checks the same way.
    let body = json!({"cluster": "c", "service": "web",
        "deploymentConfiguration": {"strategy": "ROLLING",
            "canaryConfiguration": {"canaryPercent": 5.0}}});
    let e = h
        .world
        .try_write::<_, wire::UpdateServiceResponse>(services::update, req(body))
        .expect_err("refused");
    assert_eq!(e.code(), "InvalidParameterException", "{e}");
    let body = json!({"cluster": "c", "service": "web",
        "deploymentConfiguration": {"strategy": "LINEAR",
            "linearConfiguration": {"stepPercent": 3.0, "stepBakeTimeInMinutes": 0}}});
    let _: wire::UpdateServiceResponse = h.world.write(services::update, req(body));
}

#[test]
fn blue_green_needs_an_advanced_configuration() {
    let mut h = Harness::new();
    let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
        "loadBalancers": h.lb_entry(), "deploymentConfiguration": {"strategy": "BLUE_GREEN"}});
    let e = h.world.refused_create_service(body);
    assert_eq!(e.code(), "InvalidParameterException");
    let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
        "deploymentConfiguration": {"strategy": "CANARY"}});
    let e = h.world.refused_create_service(body);
    assert_eq!(
        e.code(),
        "InvalidParameterException",
        "CANARY needs them too"
    );
}
