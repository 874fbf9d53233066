//! Lifecycle hooks of blue/green deployments (`deploymentConfiguration.lifecycleHooks`),
//! driven as pure functions: a cluster of two instances, an ALB whose production listener
//! forwards to a main target group and whose test listener (port 8080) to it as well, an
//! alternate group, and a BLUE_GREEN service with webhook hooks. Each simulated second
//! runs `reconcile_service`, answers the due hook calls through
//! `ops::lifecycle_hooks::report_hook_result` as a scripted webhook would, then a
//! simulated agent and data plane (every registered target healthy at once).

use controlplane::ops::lifecycle_hooks::{
    HookAnswer, HookCall, HookResult, due_calls, report_hook_result,
};
use controlplane::ops::services;
use controlplane::state::elb::TargetGroupRecord;
use controlplane::state::{HookStatus, ServiceKey};
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::{World, req, scope};
use testkit::service::two_node_cluster;

const HOOK: &str = "http://127.0.0.1:9000/hook";

struct Harness {
    world: World,
    main: String,
    alt: String,
    prod_rule: String,
    next_port: i32,
    /// Every call made, in order.
    calls: Vec<HookCall>,
}

impl Harness {
    /// A stable BLUE_GREEN service of `web:1` whose deployment configuration also has
    /// `hooks` as `lifecycleHooks` (and `extra` merged in).
    fn new(hooks: Value, extra: Value) -> Harness {
        let mut h = Harness {
            world: two_node_cluster(false),
            main: String::new(),
            alt: String::new(),
            prod_rule: String::new(),
            next_port: 32768,
            calls: Vec::new(),
        };
        h.register();
        let lb = h.world.create_load_balancer("alb").arn();
        h.main = h.group("tg").arn();
        h.alt = h.group("tg-alt").arn();
        let prod = h.world.create_listener(lb.clone(), 80, &h.main);
        h.prod_rule = prod.rule_arn(&prod.default_rule_id);
        let test = h.world.create_listener(lb, 8080, &h.main);
        let mut config = json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1,
            "lifecycleHooks": hooks});
        for (k, v) in extra.as_object().expect("object") {
            config[k] = v.clone();
        }
        let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
            "desiredCount": 2, "deploymentConfiguration": config,
            "loadBalancers": [{"targetGroupArn": h.main, "containerName": "app",
                "containerPort": 80, "advancedConfiguration": {
                    "alternateTargetGroupArn": h.alt, "productionListenerRule": h.prod_rule,
                    "testListenerRule": test.rule_arn(&test.default_rule_id),
                    "roleArn": "arn:aws:iam::123456789012:role/ecs"}}]});
        let _: wire::CreateServiceResponse = h.world.write(services::create, req(body));
        h.run(10, |_| None);
        assert!(h.stable(), "{:?}", h.service());
        assert!(h.calls.is_empty(), "the first deployment calls no hooks");
        h
    }

    /// Target group `name` (HTTP, port 80, instance targets) draining in 5 s.
    fn group(&mut self, name: &str) -> TargetGroupRecord {
        let g = self.world.create_target_group(name, "instance");
        self.world.set_deregistration_delay(&g, 5)
    }

    /// Registers the next revision of `web`; its ARN.
    fn register(&mut self) -> String {
        self.world.register_publishing("web")
    }

    fn service(&self) -> wire::Service {
        self.world.service("c", "web")
    }

    fn stable(&self) -> bool {
        let s = self.service();
        let d = s.deployments.clone().unwrap_or_default();
        d.len() == 1
            && s.running_count == s.desired_count
            && d[0].rollout_state == Some(wire::DeploymentRolloutState::Completed)
    }

    /// The group the production rule sends (most of) its traffic to.
    fn live(&self) -> String {
        self.world.rule_target(&self.prod_rule)
    }

    fn running_of(&self, def: &str) -> usize {
        self.world.meant_to_run(def)
    }

    fn events(&self) -> Vec<String> {
        self.world.service_events("c", "web")
    }

    fn hook_status(&self, stage: &str) -> Vec<HookStatus> {
        self.world.state.services[&ServiceKey::new(&scope(), "c", "web")]
            .blue_green
            .hooks
            .iter()
            .filter(|h| h.stage.as_str() == stage)
            .map(|h| h.status)
            .collect()
    }

    /// One second: reconcile; the webhook answers the due calls as `answer` says (`None`:
    /// no answer yet, the call is made again next second); agent; data plane.
    fn step(&mut self, answer: &mut impl FnMut(&HookCall) -> Option<HookAnswer>) {
        self.world.now += 1.0;
        self.world.reconcile("c", "web");
        for call in due_calls(&self.world.state, self.world.now) {
            self.calls.push(call.clone());
            let Some(a) = answer(&call) else { continue };
            let mut ctx = self.world.ctx();
            let (stored, changes) = report_hook_result(
                &self.world.state,
                &mut ctx,
                HookResult {
                    service: call.service.clone(),
                    execution_id: call.execution_id.clone(),
                    attempt: call.attempt,
                    answer: a,
                },
            )
            .expect("report");
            assert!(stored);
            self.world.apply(&changes);
        }
        self.world
            .publishing_agent_step("service:web", &mut self.next_port);
        self.world.mark_targets_healthy();
    }

    fn run(&mut self, steps: usize, mut answer: impl FnMut(&HookCall) -> Option<HookAnswer>) {
        for _ in 0..steps {
            self.step(&mut answer);
        }
    }

    fn update_to(&mut self, def: &str) {
        self.world.deploy("c", "web", def);
    }
}

fn stage(call: &HookCall) -> &str {
    call.body["lifecycleStage"].as_str().unwrap_or("")
}

#[test]
fn production_traffic_waits_for_a_post_test_traffic_shift_hook() {
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            "roleArn": "arn:aws:iam::123456789012:role/accepted-and-ignored"}]),
        json!({}),
    );
    let v1 = h.service().task_definition.expect("v1");
    let v2 = h.register();
    h.update_to(&v2);
    // The webhook does not answer: green is healthy, but production stays on blue.
    h.run(120, |_| None);
    assert_eq!(h.running_of(&v2), 2, "green runs in full");
    assert_eq!(h.live(), h.main, "production waits for the hook");
    assert_eq!(h.running_of(&v1), 2, "blue keeps serving");
    assert!(h.calls.len() >= 100, "called each second until it answers");
    let first = &h.calls[0];
    assert_eq!(stage(first), "POST_TEST_TRAFFIC_SHIFT");
    assert_eq!(first.url, HOOK);
    assert_eq!(
        first.body["executionDetails"]["serviceArn"],
        h.service().service_arn.expect("arn").as_str()
    );
    assert!(
        h.events()
            .iter()
            .any(|m| m.contains("reached lifecycle stage POST_TEST_TRAFFIC_SHIFT")),
        "{:?}",
        h.events()
    );
    // It answers SUCCEEDED: production moves, blue stops after the bake.
    h.run(1, |_| Some(HookAnswer::Succeeded));
    h.run(5, |_| None);
    assert_eq!(h.live(), h.alt, "production moved to green");
    h.run(120, |_| None);
    assert_eq!(h.running_of(&v1), 0);
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert_eq!(
        h.hook_status("POST_TEST_TRAFFIC_SHIFT"),
        [HookStatus::Succeeded]
    );
}

#[test]
fn in_progress_calls_again_after_its_callback_delay() {
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["PRE_SCALE_UP"]}]),
        json!({}),
    );
    let v2 = h.register();
    h.update_to(&v2);
    let mut answers = 0;
    h.run(200, |call| {
        answers += 1;
        Some(if answers < 3 {
            HookAnswer::InProgress {
                callback_delay: Some(20.0),
                hook_details: Some(json!({"round": answers})),
            }
        } else {
            assert_eq!(call.body["hookDetails"], json!({"round": 2}));
            HookAnswer::Succeeded
        })
    });
    assert_eq!(
        h.calls.len(),
        3,
        "three calls: two IN_PROGRESS, then SUCCEEDED"
    );
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert_eq!(h.running_of(&v2), 2);
}

#[test]
fn no_green_task_starts_before_pre_scale_up_succeeds_and_calls_are_spaced() {
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["PRE_SCALE_UP"]}]),
        json!({}),
    );
    let v2 = h.register();
    h.update_to(&v2);
    let mut times = Vec::new();
    for _ in 0..45 {
        let now = h.world.now + 1.0;
        h.step(&mut |_| {
            times.push(now);
            Some(HookAnswer::InProgress {
                callback_delay: Some(20.0),
                hook_details: None,
            })
        });
        assert_eq!(h.running_of(&v2), 0, "green waits for PRE_SCALE_UP");
    }
    assert_eq!(times.len(), 3, "{times:?}");
    assert_eq!(times[1] - times[0], 20.0);
    assert_eq!(times[2] - times[1], 20.0);
}

#[test]
fn a_failed_hook_rolls_the_deployment_back() {
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["POST_PRODUCTION_TRAFFIC_SHIFT"]}]),
        json!({"bakeTimeInMinutes": 0}),
    );
    let v1 = h.service().task_definition.expect("v1");
    let v2 = h.register();
    h.update_to(&v2);
    // Production moves; blue is kept while the hook after the shift runs (no bake).
    h.run(120, |_| None);
    assert_eq!(h.live(), h.alt, "production moved to green");
    assert_eq!(h.running_of(&v1), 2, "blue is kept until the hook answers");
    h.run(1, |c| {
        assert_eq!(stage(c), "POST_PRODUCTION_TRAFFIC_SHIFT");
        Some(HookAnswer::Failed("it answered FAILED".into()))
    });
    h.run(120, |_| None);
    assert_eq!(h.live(), h.main, "production is back on blue");
    assert_eq!(h.service().task_definition.as_deref(), Some(v1.as_str()));
    assert_eq!(h.running_of(&v2), 0, "green stopped");
    assert_eq!(h.running_of(&v1), 2);
    assert!(h.stable(), "{:?}", h.service().deployments);
    let events = h.events();
    assert!(
        events.iter().any(|m| m.contains(&format!(
            "deployment failed: lifecycle hook {HOOK} failed at stage POST_PRODUCTION_TRAFFIC_SHIFT"
        ))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|m| m.contains("rolling back")),
        "{events:?}"
    );
}

#[test]
fn a_hook_that_never_answers_times_out_and_fails_the_deployment() {
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["POST_SCALE_UP"],
            "timeoutConfiguration": {"timeoutInMinutes": 2}}]),
        json!({}),
    );
    let v1 = h.service().task_definition.expect("v1");
    let v2 = h.register();
    h.update_to(&v2);
    h.run(100, |_| None);
    assert_eq!(h.hook_status("POST_SCALE_UP"), [HookStatus::Pending]);
    assert_eq!(h.running_of(&v2), 2);
    h.run(200, |_| None);
    assert_eq!(h.live(), h.main, "production never moved");
    assert_eq!(h.running_of(&v2), 0);
    assert_eq!(h.running_of(&v1), 2);
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert!(
        h.events()
            .iter()
            .any(|m| m.contains("timed out after 2 minutes")),
        "{:?}",
        h.events()
    );
}

#[test]
fn a_timeout_with_continue_lets_the_deployment_go_on() {
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["POST_SCALE_UP"],
            "timeoutConfiguration": {"timeoutInMinutes": 1, "action": "CONTINUE"}}]),
        json!({"bakeTimeInMinutes": 0}),
    );
    let v2 = h.register();
    h.update_to(&v2);
    h.run(200, |_| None);
    assert_eq!(h.live(), h.alt);
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert_eq!(h.running_of(&v2), 2);
}

#[test]
fn hooks_are_validated() {
    let mut w = World::new();
    w.create_cluster("c");
    w.register("web", 128);
    let create = |w: &mut World, config: Value| {
        w.try_write(
            services::create,
            req::<wire::CreateServiceRequest>(json!({"cluster": "c", "serviceName": "web",
                "taskDefinition": "web", "desiredCount": 0, "deploymentConfiguration": config})),
        )
        .map(|_: wire::CreateServiceResponse| ())
        .map_err(|e| (e.code().to_owned(), e.to_string()))
    };
    let hook = |target: &str, stages: Value| {
        json!({"strategy": "BLUE_GREEN",
            "lifecycleHooks": [{"hookTargetArn": target, "lifecycleStages": stages}]})
    };
    let lambda = "arn:aws:lambda:us-east-1:123456789012:function:hook";
    let err = create(&mut w, hook(lambda, json!(["PRE_SCALE_UP"]))).expect_err("lambda");
    assert_eq!(err.0, "UnsupportedFeatureException", "{err:?}");
    assert!(err.1.contains("webhook URL"), "{err:?}");
    for (config, what) in [
        (hook(HOOK, json!([])), "lifecycleStages must not be empty"),
        (hook("http:///x", json!(["PRE_SCALE_UP"])), "no valid host"),
        (hook("http://h:0/", json!(["PRE_SCALE_UP"])), "port"),
        (
            hook(HOOK, json!(["PRE_SCALE_UP", "PRE_SCALE_UP"])),
            "more than once",
        ),
        (
            json!({"lifecycleHooks": [{"hookTargetArn": HOOK, "lifecycleStages": ["PRE_SCALE_UP"]}]}),
            "BLUE_GREEN, LINEAR or CANARY",
        ),
        (
            json!({"strategy": "CANARY", "lifecycleHooks": (0..11)
                .map(|_| json!({"hookTargetArn": HOOK, "lifecycleStages": ["PRE_SCALE_UP"]}))
                .collect::<Vec<_>>()}),
            "at most 10",
        ),
    ] {
        let err = create(&mut w, config).expect_err(what);
        assert_eq!(err.0, "InvalidParameterException", "{err:?}");
        assert!(err.1.contains(what), "{what}: {err:?}");
    }
    let err = create(
        &mut w,
        json!({"strategy": "LINEAR", "lifecycleHooks": [{
        "hookTargetArn": HOOK, "lifecycleStages": ["PRE_SCALE_UP"], "targetType": "PAUSE"}]}),
    )
    .expect_err("pause");
    assert_eq!(err.0, "UnsupportedFeatureException", "{err:?}");
}
