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
use controlplane::ops::service_deployments as sd;
use controlplane::ops::services;
use controlplane::state::elb::TargetGroupRecord;
use controlplane::state::{Change, HookStatus, Record, ServiceKey};
use model::wire::{
    self, DeploymentLifecycleHookAction as Action, DeploymentLifecycleHookStatus as Hs,
    DeploymentLifecycleHookTargetType as Target, ServiceDeploymentLifecycleStage as Ls,
    ServiceDeploymentStatus as Status,
};
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

    /// Registers a new revision of `web` and updates the service to it: (the revision
    /// it ran, the new one).
    fn roll_out(&mut self) -> (String, String) {
        let old = self.service().task_definition.expect("v1");
        let new = self.register();
        self.update_to(&new);
        (old, new)
    }

    /// The newest service deployment, as DescribeServiceDeployments shows it.
    fn newest(&self) -> wire::ServiceDeployment {
        let list = sd::list(
            &self.world.state,
            &scope(),
            self.world.now,
            req(json!({"cluster": "c", "service": "web", "maxResults": 1})),
        )
        .expect("list");
        let arn = list.service_deployments.expect("deployments")[0]
            .service_deployment_arn
            .clone()
            .expect("arn");
        let r = sd::describe_deployments(
            &self.world.state,
            &scope(),
            req(json!({"serviceDeploymentArns": [arn]})),
        )
        .expect("describe");
        assert_eq!(r.failures, Some(vec![]));
        r.service_deployments.expect("described").remove(0)
    }

    /// ContinueServiceDeployment (`action` left out when `None`): the error's code and
    /// message when refused.
    fn continue_hook(
        &mut self,
        arn: &str,
        hook_id: &str,
        action: Option<&str>,
    ) -> Result<wire::ContinueServiceDeploymentResponse, (String, String)> {
        let mut body = json!({"serviceDeploymentArn": arn, "hookId": hook_id});
        if let Some(a) = action {
            body["action"] = json!(a);
        }
        self.world
            .try_write(sd::continue_deployment, req(body))
            .map_err(|e| (e.code().to_owned(), e.to_string()))
    }
}

/// The newest service deployment's ARN and its hook details.
fn paused(d: &wire::ServiceDeployment) -> (String, Vec<wire::DeploymentLifecycleHookDetail>) {
    (
        d.service_deployment_arn.clone().expect("arn"),
        d.lifecycle_hook_details.clone().unwrap_or_default(),
    )
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
    let (v1, v2) = h.roll_out();
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
    let configured = json!({"team": "payments", "checks": ["smoke", 3]});
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["PRE_SCALE_UP"],
                "hookDetails": configured}]),
        json!({}),
    );
    let (_, v2) = h.roll_out();
    let mut answers = 0;
    h.run(200, |call| {
        answers += 1;
        // The configured details go with the first call, the hook's own after it.
        match answers {
            1 => assert_eq!(call.body["hookDetails"], configured),
            2 => assert_eq!(call.body["hookDetails"], json!({"round": 1})),
            _ => {}
        }
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
    // DescribeServices shows the details as they were configured.
    let hooks = h
        .service()
        .deployment_configuration
        .unwrap()
        .lifecycle_hooks
        .unwrap();
    assert_eq!(hooks[0].hook_details.as_ref(), Some(&configured));
}

#[test]
fn no_green_task_starts_before_pre_scale_up_succeeds_and_calls_are_spaced() {
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["PRE_SCALE_UP"]}]),
        json!({}),
    );
    let (_, v2) = h.roll_out();
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
    let (v1, v2) = h.roll_out();
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
    let (v1, v2) = h.roll_out();
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
    let (_, v2) = h.roll_out();
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
    // A PAUSE hook has no target; any other hook (AWS_LAMBDA, the default) needs one.
    for (config, what) in [
        (
            json!({"strategy": "LINEAR", "lifecycleHooks": [{"hookTargetArn": HOOK,
                "lifecycleStages": ["PRE_SCALE_UP"], "targetType": "PAUSE"}]}),
            "hookTargetArn must not be specified for a hook with targetType PAUSE",
        ),
        (
            json!({"strategy": "BLUE_GREEN", "lifecycleHooks": [{
                "lifecycleStages": ["PRE_SCALE_UP"], "targetType": "AWS_LAMBDA"}]}),
            "hookTargetArn is required for a hook with targetType AWS_LAMBDA",
        ),
        (
            json!({"strategy": "BLUE_GREEN", "lifecycleHooks": [{
                "lifecycleStages": ["PRE_SCALE_UP"]}]}),
            "hookTargetArn is required",
        ),
        (
            json!({"strategy": "BLUE_GREEN", "lifecycleHooks": [{"targetType": "PAUSE",
                "lifecycleStages": ["PRE_SCALE_UP"],
                "timeoutConfiguration": {"timeoutInMinutes": 20161}}]}),
            "between 1 and 20160",
        ),
        (
            json!({"strategy": "BLUE_GREEN", "lifecycleHooks": [{"targetType": "PAUSE",
                "lifecycleStages": ["PRE_SCALE_UP"],
                "hookDetails": {"pad": "x".repeat(64 * 1024)}}]}),
            "hookDetails can be at most 65536 bytes",
        ),
        (
            json!({"lifecycleHooks": [{"targetType": "PAUSE",
                "lifecycleStages": ["PRE_SCALE_UP"]}]}),
            "BLUE_GREEN, LINEAR or CANARY",
        ),
    ] {
        let err = create(&mut w, config).expect_err(what);
        assert_eq!(err.0, "InvalidParameterException", "{err:?}");
        assert!(err.1.contains(what), "{what}: {err:?}");
    }
    // A PAUSE hook without a target passes the hooks' checks (this service, without load
    // balancers, is then refused for that; the PAUSE tests below create such services).
    let err = create(
        &mut w,
        json!({"strategy": "CANARY", "lifecycleHooks": [{"targetType": "PAUSE",
            "lifecycleStages": ["PRE_SCALE_UP", "POST_PRODUCTION_TRAFFIC_SHIFT"],
            "roleArn": "arn:aws:iam::123456789012:role/ignored",
            "timeoutConfiguration": {"timeoutInMinutes": 30, "action": "CONTINUE"}}]}),
    )
    .expect_err("no load balancers");
    assert!(err.1.contains("need loadBalancers"), "{err:?}");
}

#[test]
fn webhook_hooks_and_the_stage_show_in_describe_service_deployments() {
    let mut h = Harness::new(
        json!([{"hookTargetArn": HOOK, "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 30}}]),
        json!({}),
    );
    h.roll_out();
    h.run(60, |_| None);
    let d = h.newest();
    assert_eq!(d.status, Some(Status::InProgress));
    assert_eq!(d.lifecycle_stage, Some(Ls::PostTestTrafficShift), "{d:#?}");
    let (_, details) = paused(&d);
    assert_eq!(details.len(), 1, "{details:#?}");
    let hook = &details[0];
    assert_eq!(hook.target_type, Some(Target::AwsLambda));
    assert_eq!(hook.target_arn.as_deref(), Some(HOOK));
    assert_eq!(hook.status, Some(Hs::InProgress));
    assert_eq!(hook.timeout_action, Some(Action::Rollback));
    assert_eq!(
        hook.hook_id.as_deref(),
        Some(h.calls[0].execution_id.as_str()),
        "the hook id is the invocation's execution id"
    );
    let started = h.world.state.services[&ServiceKey::new(&scope(), "c", "web")]
        .blue_green
        .hooks[0]
        .started_at;
    assert_eq!(hook.expires_at, Some(started + 30.0 * 60.0));
    h.run(1, |_| Some(HookAnswer::Succeeded));
    h.run(5, |_| None);
    assert_eq!(h.newest().lifecycle_stage, Some(Ls::BakeTime));
    h.run(120, |_| None);
    assert!(h.stable(), "{:?}", h.service().deployments);
    let d = h.newest();
    assert_eq!(d.status, Some(Status::Successful));
    let (_, details) = paused(&d);
    assert_eq!(details[0].status, Some(Hs::Succeeded), "kept once finished");
}

#[test]
fn the_lifecycle_stage_follows_a_blue_green_deployment() {
    let mut h = Harness::new(json!([]), json!({}));
    assert_eq!(
        h.newest().lifecycle_stage,
        None,
        "a first deployment has none"
    );
    h.roll_out();
    let mut seen: Vec<Ls> = Vec::new();
    for _ in 0..200 {
        h.run(1, |_| None);
        if let Some(s) = h.newest().lifecycle_stage
            && seen.last() != Some(&s)
        {
            seen.push(s);
        }
    }
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert_eq!(seen, [Ls::ScaleUp, Ls::BakeTime, Ls::CleanUp]);
    assert_eq!(h.newest().status, Some(Status::Successful));
}

#[test]
fn a_pause_hook_holds_its_stage_until_continue_service_deployment() {
    let mut h = Harness::new(
        json!([{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}]),
        json!({"bakeTimeInMinutes": 0}),
    );
    let (v1, v2) = h.roll_out();
    h.run(300, |_| None);
    assert!(
        h.calls.is_empty(),
        "a PAUSE hook calls nothing: {:?}",
        h.calls
    );
    assert_eq!(h.running_of(&v2), 2, "green runs in full");
    assert_eq!(
        h.live(),
        h.main,
        "production waits for ContinueServiceDeployment"
    );
    assert_eq!(h.running_of(&v1), 2, "blue keeps serving");
    let d = h.newest();
    assert_eq!(d.status, Some(Status::InProgress));
    assert_eq!(d.lifecycle_stage, Some(Ls::PostTestTrafficShift));
    let (arn, details) = paused(&d);
    assert_eq!(details.len(), 1, "{details:#?}");
    let hook = &details[0];
    assert_eq!(hook.target_type, Some(Target::Pause));
    assert_eq!(hook.target_arn, None);
    assert_eq!(hook.status, Some(Hs::AwaitingAction));
    assert_eq!(hook.timeout_action, Some(Action::Rollback), "ECS's default");
    let id = hook.hook_id.clone().expect("hookId");
    let started = h.world.state.services[&ServiceKey::new(&scope(), "c", "web")]
        .blue_green
        .hooks[0]
        .started_at;
    assert_eq!(hook.expires_at, Some(started + 1440.0 * 60.0), "24 hours");
    assert!(
        h.events()
            .iter()
            .any(|m| m.contains("reached lifecycle stage POST_TEST_TRAFFIC_SHIFT: paused")),
        "{:?}",
        h.events()
    );
    // CONTINUE (the default action) lets the stage end.
    let answer = h.continue_hook(&arn, &id, None).expect("continue");
    assert_eq!(answer.service_deployment_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(
        h.hook_status("POST_TEST_TRAFFIC_SHIFT"),
        [HookStatus::Succeeded]
    );
    let err = h
        .continue_hook(&arn, &id, None)
        .expect_err("no longer paused");
    assert_eq!(err.0, "InvalidParameterException", "{err:?}");
    assert!(err.1.contains("SUCCEEDED, not AWAITING_ACTION"), "{err:?}");
    h.run(5, |_| None);
    assert_eq!(h.live(), h.alt, "production moved to green");
    h.run(120, |_| None);
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert_eq!(h.running_of(&v1), 0);
    let d = h.newest();
    assert_eq!(d.status, Some(Status::Successful));
    assert_eq!(paused(&d).1[0].status, Some(Hs::Succeeded));
    let err = h
        .continue_hook(&arn, &id, Some("CONTINUE"))
        .expect_err("finished");
    assert_eq!(err.0, "ClientException", "{err:?}");
    assert!(err.1.contains("is SUCCESSFUL"), "{err:?}");
}

#[test]
fn continue_service_deployment_with_rollback_rolls_the_deployment_back() {
    let mut h = Harness::new(
        json!([{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}]),
        json!({}),
    );
    let (v1, v2) = h.roll_out();
    h.run(60, |_| None);
    assert_eq!(h.running_of(&v2), 2);
    let d = h.newest();
    assert_eq!(d.lifecycle_stage, Some(Ls::PostScaleUp));
    let (arn, details) = paused(&d);
    let id = details[0].hook_id.clone().expect("hookId");
    h.continue_hook(&arn, &id, Some("ROLLBACK"))
        .expect("rollback");
    h.run(120, |_| None);
    assert_eq!(h.live(), h.main, "production never moved");
    assert_eq!(h.service().task_definition.as_deref(), Some(v1.as_str()));
    assert_eq!(h.running_of(&v2), 0, "green stopped");
    assert_eq!(h.running_of(&v1), 2);
    assert!(h.stable(), "{:?}", h.service().deployments);
    let d = h.newest();
    assert_eq!(d.status, Some(Status::RollbackSuccessful), "{d:#?}");
    assert_eq!(paused(&d).1[0].status, Some(Hs::Failed));
    let events = h.events();
    assert!(
        events.iter().any(|m| m.contains(
            "deployment failed: lifecycle hook PAUSE failed at stage POST_SCALE_UP \
             (ContinueServiceDeployment asked for a rollback)"
        )),
        "{events:?}"
    );
}

#[test]
fn a_pause_hook_times_out_with_its_timeout_action() {
    // ROLLBACK (the default): the deployment fails and rolls back.
    let mut h = Harness::new(
        json!([{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"],
            "timeoutConfiguration": {"timeoutInMinutes": 2}}]),
        json!({}),
    );
    let (v1, v2) = h.roll_out();
    h.run(100, |_| None);
    assert_eq!(h.hook_status("POST_SCALE_UP"), [HookStatus::Pending]);
    assert_eq!(paused(&h.newest()).1[0].status, Some(Hs::AwaitingAction));
    h.run(200, |_| None);
    assert_eq!(h.live(), h.main, "production never moved");
    assert_eq!(h.running_of(&v2), 0);
    assert_eq!(h.running_of(&v1), 2);
    let d = h.newest();
    assert_eq!(d.status, Some(Status::RollbackSuccessful), "{d:#?}");
    assert_eq!(paused(&d).1[0].status, Some(Hs::TimedOut));
    assert!(
        h.events()
            .iter()
            .any(|m| m
                .contains("lifecycle hook PAUSE at stage POST_SCALE_UP timed out after 2 minutes")),
        "{:?}",
        h.events()
    );

    // CONTINUE: the deployment goes on.
    let mut h = Harness::new(
        json!([{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"],
            "timeoutConfiguration": {"timeoutInMinutes": 1, "action": "CONTINUE"}}]),
        json!({"bakeTimeInMinutes": 0}),
    );
    h.roll_out();
    h.run(30, |_| None);
    assert_eq!(h.live(), h.main, "held before the timeout");
    assert_eq!(
        paused(&h.newest()).1[0].timeout_action,
        Some(Action::Continue)
    );
    h.run(200, |_| None);
    assert_eq!(h.live(), h.alt);
    assert!(h.stable(), "{:?}", h.service().deployments);
    let d = h.newest();
    assert_eq!(d.status, Some(Status::Successful));
    assert_eq!(paused(&d).1[0].status, Some(Hs::TimedOut));
}

#[test]
fn continue_service_deployment_refuses_what_is_not_a_paused_hook() {
    let mut h = Harness::new(
        json!([{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]},
               {"hookTargetArn": HOOK, "lifecycleStages": ["POST_SCALE_UP"]}]),
        json!({}),
    );
    let first = h.newest().service_deployment_arn.expect("arn");
    h.roll_out();
    h.run(60, |_| None);
    let (arn, details) = paused(&h.newest());
    assert_eq!(details.len(), 2, "{details:#?}");
    let pause = details
        .iter()
        .find(|d| d.target_type == Some(Target::Pause))
        .and_then(|d| d.hook_id.clone())
        .expect("the PAUSE hook");
    let webhook = details
        .iter()
        .find(|d| d.target_type == Some(Target::AwsLambda))
        .and_then(|d| d.hook_id.clone())
        .expect("the webhook");
    let refused = |h: &mut Harness, arn: &str, id: &str, action: Option<&str>| {
        h.continue_hook(arn, id, action).expect_err("refused")
    };
    let missing = arn.replace("service-deployment/c/web/", "service-deployment/c/web/nope");
    for bad in [
        missing.as_str(),
        "arn:aws:ecs:us-east-1:1:service/c/web",
        "junk",
    ] {
        let err = refused(&mut h, bad, &pause, None);
        assert_eq!(
            err.0, "ServiceDeploymentNotFoundException",
            "{bad}: {err:?}"
        );
    }
    let err = refused(&mut h, &arn, "ecs-svc/0/POST_SCALE_UP/0/0", None);
    assert_eq!(err.0, "InvalidParameterException", "{err:?}");
    assert!(err.1.contains("names no lifecycle hook"), "{err:?}");
    let err = refused(&mut h, &arn, &webhook, Some("CONTINUE"));
    assert_eq!(err.0, "InvalidParameterException", "{err:?}");
    assert!(err.1.contains("not a PAUSE hook"), "{err:?}");
    let err = refused(&mut h, &arn, "", None);
    assert_eq!(err.0, "InvalidParameterException", "{err:?}");
    // The service's first deployment: finished.
    let err = refused(&mut h, &first, &pause, None);
    assert_eq!(err.0, "ClientException", "{err:?}");
    assert!(err.1.contains("SUCCESSFUL"), "{err:?}");
    // Nothing refused changed anything: the PAUSE hook still holds.
    h.run(10, |_| None);
    assert_eq!(h.live(), h.main);
    assert_eq!(
        h.hook_status("POST_SCALE_UP"),
        [HookStatus::Pending, HookStatus::Pending]
    );
    // The PAUSE hook continued, the stage still waits for the webhook.
    h.continue_hook(&arn, &pause, None).expect("continue");
    h.run(10, |_| None);
    assert_eq!(h.live(), h.main, "the webhook has not answered");
    h.run(1, |_| Some(HookAnswer::Succeeded));
    h.run(5, |_| None);
    assert_eq!(h.live(), h.alt);
}

#[test]
fn a_paused_deployment_survives_a_restart() {
    let mut h = Harness::new(
        json!([{"targetType": "PAUSE", "lifecycleStages": ["PRE_SCALE_UP"]}]),
        json!({}),
    );
    let (_, v2) = h.roll_out();
    h.run(20, |_| None);
    assert_eq!(h.running_of(&v2), 0, "green waits for PRE_SCALE_UP");
    let key = ServiceKey::new(&scope(), "c", "web");
    let svc = h.world.state.services[&key].clone();
    assert!(svc.blue_green.hooks[0].pause);
    assert!(svc.blue_green.stage.is_some());
    // Stored as the store stores records, and read back as a restart reads them.
    let stored = serde_json::to_vec(&Record::Service(svc.clone())).expect("encode");
    let back: Record = serde_json::from_slice(&stored).expect("decode");
    assert_eq!(back, Record::Service(svc));
    h.world.apply(&[Change::Put(back)]);
    let (arn, details) = paused(&h.newest());
    assert_eq!(h.newest().lifecycle_stage, Some(Ls::PreScaleUp));
    assert_eq!(details[0].status, Some(Hs::AwaitingAction));
    let id = details[0].hook_id.clone().expect("hookId");
    h.continue_hook(&arn, &id, None).expect("continue");
    h.run(200, |_| None);
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert_eq!(h.running_of(&v2), 2);
}
