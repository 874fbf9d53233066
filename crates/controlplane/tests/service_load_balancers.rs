//! ECS services behind ELBv2 target groups, driven as pure functions: a cluster of two
//! instances, an ALB with a listener forwarding to an `instance` target group, a bridge
//! service whose container port 80 is published on a dynamic host port; a loop of
//! `reconcile_service`, a simulated agent (SubmitTaskStateChange with network bindings)
//! and a simulated data plane (health reports written into the group) until nothing moves.

use std::collections::{BTreeMap, HashMap};

use controlplane::load_balancing::ELB_HEALTH_REASON;
use controlplane::ops::elbv2::target_groups;
use controlplane::ops::{agent, services};
use controlplane::state::elb::{ObservedHealth, Target, TargetGroupRecord};
use controlplane::state::{Change, Record, ServiceKey, TaskRecord};
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::{World, req, scope};
use testkit::service::two_node_cluster;

/// What the simulated data plane says about a target once it is registered.
#[derive(Clone, Copy, PartialEq)]
enum Checks {
    /// Healthy as soon as checked.
    Pass,
    /// Unhealthy as soon as checked.
    Fail,
    /// Never checked (no data plane).
    Silent,
}

struct Harness {
    world: World,
    tg_name: String,
    tg_arn: String,
    /// What the data plane answers for tasks of each task definition.
    checks: HashMap<String, Checks>,
    next_port: i32,
    /// The production listener's default rule.
    prod_rule: String,
    /// When each task's target first drained (epoch seconds), by task ARN.
    drained_at: BTreeMap<String, f64>,
}

const DELAY_SECS: u64 = 20;

impl Harness {
    /// Cluster `c` with instances `i-a`, `i-b`; task definition `web:1` (port 80 on a
    /// dynamic host port); ALB `alb` whose listener forwards to target group `tg`
    /// (deregistration delay [`DELAY_SECS`]).
    fn new() -> Harness {
        let mut h = Harness {
            world: two_node_cluster(false),
            tg_name: "tg".into(),
            tg_arn: String::new(),
            checks: HashMap::new(),
            next_port: 32768,
            prod_rule: String::new(),
            drained_at: BTreeMap::new(),
        };
        h.register_def(Checks::Pass);
        let lb = h.world.create_load_balancer("alb");
        let tg = h.world.create_target_group("tg", "instance");
        h.tg_arn = tg.arn();
        let tg = h.world.set_deregistration_delay(&tg, DELAY_SECS);
        let listener = h.world.create_listener(lb.arn(), 80, &tg.arn());
        h.prod_rule = listener.rule_arn(&listener.default_rule_id);
        h
    }

    /// Registers a revision of `web` publishing container port 80 whose targets the data
    /// plane finds as `checks` says; returns its ARN.
    fn register_def(&mut self, checks: Checks) -> String {
        let arn = self.world.register_publishing("web");
        self.checks.insert(arn.clone(), checks);
        arn
    }

    fn lb_entry(&self) -> Value {
        json!([{"targetGroupArn": self.tg_arn, "containerName": "app", "containerPort": 80}])
    }

    fn create_service(&mut self, extra: Value) {
        let mut body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
            "desiredCount": 2, "loadBalancers": self.lb_entry()});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let _: wire::CreateServiceResponse = self.world.write(services::create, req(body));
    }

    fn key() -> ServiceKey {
        ServiceKey::new(&scope(), "c", "web")
    }

    fn group(&self) -> &TargetGroupRecord {
        self.world.target_group(&self.tg_name)
    }

    fn tasks(&self) -> Vec<TaskRecord> {
        self.world.group_tasks("service:web")
    }

    fn task_by_arn(&self, arn: &str) -> Option<TaskRecord> {
        self.tasks()
            .into_iter()
            .find(|t| t.task.task_arn.as_deref() == Some(arn))
    }

    fn reconcile(&mut self) {
        self.world.reconcile("c", "web");
    }

    /// The agent: PENDING → RUNNING with port 80 on the next host port; desired STOPPED →
    /// STOPPED.
    fn agent_step(&mut self) {
        self.world
            .publishing_agent_step("service:web", &mut self.next_port);
    }

    /// The data plane: checks every active target of every group a listener uses.
    fn data_plane_step(&mut self) {
        let groups: Vec<TargetGroupRecord> = self
            .world
            .state
            .elb
            .target_groups
            .values()
            .filter(|g| !target_groups::users(&self.world.state, &scope(), &g.arn()).is_empty())
            .cloned()
            .collect();
        for g in groups {
            self.check_group(g);
        }
    }

    fn check_group(&mut self, mut g: TargetGroupRecord) {
        let now_ms = (self.world.now * 1000.0) as u64;
        let mut changed = false;
        for target in g.targets.iter_mut().filter(|x| x.is_active()) {
            let def = target
                .registered_by
                .as_deref()
                .and_then(|arn| self.task_by_arn(arn))
                .and_then(|t| t.task.task_definition_arn.as_deref().map(str::to_owned))
                .unwrap_or_default();
            let healthy = match self.checks.get(&def).copied().unwrap_or(Checks::Pass) {
                Checks::Pass => true,
                Checks::Fail => false,
                Checks::Silent => continue,
            };
            if target.health.as_ref().map(|h| h.healthy) != Some(healthy) {
                target.health = Some(ObservedHealth {
                    healthy,
                    reason: (!healthy).then(|| "Target.ResponseCodeMismatch".into()),
                    description: (!healthy)
                        .then(|| "Health checks failed with these codes: [500]".into()),
                    since_ms: now_ms,
                });
                changed = true;
            }
        }
        if changed {
            self.world.apply(&[Change::Put(Record::TargetGroup(g))]);
        }
    }

    /// One second: reconcile, `check`, agent, data plane; notes when targets drain.
    fn step(&mut self, check: &mut impl FnMut(&Harness)) {
        self.world.now += 1.0;
        self.reconcile();
        check(self);
        for arn in self.world.draining_in(&self.tg_name) {
            self.drained_at.entry(arn).or_insert(self.world.now);
        }
        self.agent_step();
        self.data_plane_step();
    }

    fn run(&mut self, steps: usize, mut check: impl FnMut(&Harness)) {
        for _ in 0..steps {
            self.step(&mut check);
        }
    }

    fn service(&self) -> wire::Service {
        self.world.service("c", "web")
    }

    /// Every message of the service's events.
    fn event_messages(&self) -> Vec<String> {
        self.world.service_events("c", "web")
    }

    /// When each task of `def` was asked to stop (epoch seconds).
    fn stop_times_of(&self, def: &str) -> Vec<f64> {
        self.tasks()
            .iter()
            .filter(|t| t.task.task_definition_arn.as_deref() == Some(def))
            .filter_map(|t| t.task.stopping_at)
            .collect()
    }

    fn stable(&self) -> bool {
        let s = self.service();
        s.deployments.as_ref().map(Vec::len) == Some(1)
            && s.running_count == s.desired_count
            && s.deployments.as_ref().expect("deployments")[0].rollout_state
                == Some(wire::DeploymentRolloutState::Completed)
    }

    fn active_targets(&self) -> Vec<Target> {
        self.group()
            .targets
            .iter()
            .filter(|x| x.is_active())
            .cloned()
            .collect()
    }

    fn healthy_active_targets(&self) -> usize {
        self.active_targets()
            .iter()
            .filter(|x| x.is_healthy())
            .count()
    }
}

#[test]
fn running_tasks_join_the_group_at_their_instance_and_host_port() {
    let mut h = Harness::new();
    h.create_service(json!({}));
    h.run(10, |_| {});
    let targets = h.active_targets();
    assert_eq!(targets.len(), 2, "{targets:?}");
    for x in &targets {
        let task = h
            .task_by_arn(x.registered_by.as_deref().expect("registered by a task"))
            .expect("its task");
        assert_eq!(task.task.last_status.as_deref(), Some("RUNNING"));
        let instance = &h
            .world
            .state
            .instances
            .values()
            .find(|i| Some(i.id.as_str()) == task.instance_id.as_deref())
            .expect("instance")
            .instance;
        assert_eq!(Some(&x.id), instance.ec2_instance_id.as_ref());
        let bound = task.task.containers.as_ref().unwrap()[0]
            .network_bindings
            .as_ref()
            .unwrap()[0]
            .host_port;
        assert_eq!(Some(i32::from(x.port)), bound);
    }
    assert!(h.stable(), "{:?}", h.service());
}

#[test]
fn a_deployment_waits_for_the_load_balancer_to_find_new_tasks_healthy() {
    let mut h = Harness::new();
    h.create_service(json!({}));
    h.run(10, |_| {});
    assert!(h.stable());
    let v2 = h.register_def(Checks::Silent);
    h.update_to(&v2);
    // Without health from the data plane (not even after the 40 s rule) the old tasks
    // keep serving and the rollout does not complete.
    h.run(120, |_| {});
    assert!(!h.stable());
    assert_eq!(h.healthy_active_targets(), 2);
    let old_running = h
        .tasks()
        .iter()
        .filter(|t| {
            t.task.task_definition_arn.as_deref() != Some(v2.as_str())
                && t.task.desired_status.as_deref() == Some("RUNNING")
        })
        .count();
    assert_eq!(old_running, 2);
    // Once the data plane says healthy, the rollout moves on and completes.
    h.checks.insert(v2.clone(), Checks::Pass);
    h.run(2 * DELAY_SECS as usize + 30, |_| {});
    assert!(h.stable(), "{:?}", h.service().deployments);
}

#[test]
fn a_rolling_deployment_drains_every_old_task_before_stopping_it() {
    let mut h = Harness::new();
    h.create_service(json!({"desiredCount": 4,
        "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 150}}));
    h.run(10, |_| {});
    assert!(h.stable());
    let v2 = h.register_def(Checks::Pass);
    h.update_to(&v2);
    h.run(4 * DELAY_SECS as usize + 60, |h| {
        // Never fewer healthy targets than minimumHealthyPercent allows, and never a stop
        // requested for a task still taking new requests.
        assert!(h.healthy_active_targets() >= 2, "{:?}", h.group().targets);
        for t in h.tasks() {
            if t.task.desired_status.as_deref() == Some("STOPPED") {
                let arn = t.task.task_arn.clone().unwrap();
                assert!(
                    !h.active_targets()
                        .iter()
                        .any(|x| x.registered_by.as_deref() == Some(arn.as_str())),
                    "task {} asked to stop while its target is active",
                    t.id
                );
            }
        }
    });
    assert!(h.stable(), "{:?}", h.service().deployments);
    let old: Vec<TaskRecord> = h
        .tasks()
        .into_iter()
        .filter(|t| t.task.task_definition_arn.as_deref() != Some(v2.as_str()))
        .collect();
    assert_eq!(old.len(), 4);
    for t in old {
        let arn = t.task.task_arn.as_deref().unwrap().to_owned();
        let drained = h.drained_at[&arn];
        let stopping = t.task.stopping_at.expect("stopping_at");
        assert!(
            stopping - drained >= DELAY_SECS as f64 - 1.0,
            "task {} stopped {}s after draining began",
            t.id,
            stopping - drained
        );
        assert_eq!(
            t.task.stop_code,
            Some(wire::TaskStopCode::ServiceSchedulerInitiated)
        );
    }
    let events = h.service().events.unwrap_or_default();
    assert!(
        events.iter().any(|e| e
            .message
            .as_deref()
            .is_some_and(|m| m.contains("has begun draining connections"))),
        "{events:?}"
    );
    // Drained targets are dropped from the group by its next write.
    assert_eq!(h.active_targets().len(), 4);
}

#[test]
fn a_task_the_load_balancer_finds_unhealthy_is_replaced_after_the_grace_period() {
    let mut h = Harness::new();
    h.checks.clear();
    let def = h
        .world
        .state
        .task_definitions
        .values()
        .next()
        .unwrap()
        .definition
        .task_definition_arn
        .clone()
        .unwrap();
    h.checks.insert(def, Checks::Fail);
    h.create_service(json!({"healthCheckGracePeriodSeconds": 30}));
    h.run(25, |_| {});
    assert!(
        h.tasks()
            .iter()
            .all(|t| t.task.desired_status.as_deref() == Some("RUNNING")),
        "replaced within the grace period"
    );
    h.run(30 + DELAY_SECS as usize + 10, |_| {});
    let replaced: Vec<TaskRecord> = h
        .tasks()
        .into_iter()
        .filter(|t| t.task.desired_status.as_deref() == Some("STOPPED"))
        .collect();
    assert!(!replaced.is_empty());
    for t in &replaced {
        let reason = t.task.stopped_reason.clone().unwrap_or_default();
        assert!(reason.starts_with(ELB_HEALTH_REASON), "{reason}");
        assert!(reason.contains(&h.tg_arn), "{reason}");
    }
    let events = h.event_messages();
    assert!(
        events
            .iter()
            .any(|m| m.contains("is unhealthy in (target-group")),
        "{events:?}"
    );
}

#[test]
fn a_crashed_task_leaves_its_group_and_its_replacement_joins() {
    let mut h = Harness::new();
    h.create_service(json!({}));
    h.run(10, |_| {});
    assert!(h.stable());
    let victim = h.tasks()[0].clone();
    let _: wire::SubmitTaskStateChangeResponse = h.world.write(
        agent::submit_task_state_change,
        req(
            json!({"cluster": "c", "task": victim.id, "status": "STOPPED",
            "containers": [{"containerName": "app", "status": "STOPPED", "exitCode": 1}],
            "reason": "Essential container in task exited"}),
        ),
    );
    h.run(1, |_| {});
    let arn = victim.task.task_arn.clone().unwrap();
    let now_ms = (h.world.now * 1000.0) as u64;
    assert!(
        h.group()
            .targets
            .iter()
            .any(|x| x.registered_by.as_deref() == Some(arn.as_str()) && x.is_draining(now_ms)),
        "{:?}",
        h.group().targets
    );
    h.run(10, |_| {});
    assert!(h.stable());
    assert_eq!(h.healthy_active_targets(), 2);
}

#[test]
fn load_balancers_are_validated_like_ecs() {
    let mut h = Harness::new();
    let bad = [
        json!([{"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef", "containerName": "app", "containerPort": 80}]),
        json!([{"targetGroupArn": h.tg_arn, "containerName": "nope", "containerPort": 80}]),
        json!([{"targetGroupArn": h.tg_arn, "containerName": "app", "containerPort": 81}]),
        json!([{"targetGroupArn": h.tg_arn, "containerName": "app"}]),
        json!([{"loadBalancerName": "classic", "containerName": "app", "containerPort": 80}]),
        json!([{"targetGroupArn": h.tg_arn, "containerName": "app", "containerPort": 80},
               {"targetGroupArn": h.tg_arn, "containerName": "app", "containerPort": 80}]),
    ];
    h.world.assert_each_refused("loadBalancers", bad);
    // A group no listener uses, and an `ip` group for a bridge task, are refused too.
    let lonely = h.world.create_target_group("lonely", "instance");
    let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
        "loadBalancers": [{"targetGroupArn": lonely.arn(), "containerName": "app", "containerPort": 80}]});
    let e = h.world.refused_create_service(body);
    assert!(
        e.to_string()
            .contains("does not have an associated load balancer"),
        "{e}"
    );
    let ip = h.world.create_target_group("ips", "ip");
    let lb = h.world.first_load_balancer_arn();
    let _ = h.world.create_listener(lb, 8080, &ip.arn());
    let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
        "loadBalancers": [{"targetGroupArn": ip.arn(), "containerName": "app", "containerPort": 80}]});
    let e = h.world.refused_create_service(body);
    assert!(
        e.to_string()
            .contains("incompatible with the bridge network mode"),
        "{e}"
    );
    // The valid entry is accepted and shown.
    h.create_service(json!({}));
    let shown = h.service().load_balancers.unwrap_or_default();
    assert_eq!(shown.len(), 1);
    assert_eq!(
        shown[0].target_group_arn.as_deref(),
        Some(h.tg_arn.as_str())
    );
}

impl Harness {
    /// An alternate group `tg-alt` (same delay) and a test listener on 8080 whose default
    /// rule forwards to `tg`; a BLUE_GREEN service of 2 tasks over `tg`/`tg-alt` with a
    /// bake time of one minute. Returns the alternate group's ARN and the test rule.
    fn blue_green_service(&mut self, with_test_rule: bool) -> (String, Option<String>) {
        self.shifting_service(
            with_test_rule,
            json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1}),
        )
    }

    /// As [`Harness::blue_green_service`], with `deployment_configuration` as the
    /// service's `deploymentConfiguration`.
    fn shifting_service(
        &mut self,
        with_test_rule: bool,
        deployment_configuration: Value,
    ) -> (String, Option<String>) {
        let alt = self.world.create_target_group("tg-alt", "instance");
        self.world.set_deregistration_delay(&alt, DELAY_SECS);
        let lb = self.world.first_load_balancer_arn();
        let test = self.world.create_listener(lb, 8080, &self.tg_arn);
        let test_rule = with_test_rule.then(|| test.rule_arn(&test.default_rule_id));
        let mut advanced = json!({"alternateTargetGroupArn": alt.arn(),
            "productionListenerRule": self.prod_rule,
            "roleArn": "arn:aws:iam::123456789012:role/ecs"});
        if let Some(rule) = &test_rule {
            advanced["testListenerRule"] = json!(rule);
        }
        let lbs = json!([{"targetGroupArn": self.tg_arn, "containerName": "app", "containerPort": 80,
            "advancedConfiguration": advanced}]);
        self.create_service(json!({"loadBalancers": lbs,
            "deploymentConfiguration": deployment_configuration}));
        (alt.arn(), test_rule)
    }

    /// The group a rule sends its traffic to (the heaviest of its forward action).
    fn rule_target(&self, rule_arn: &str) -> String {
        self.world.rule_target(rule_arn)
    }

    fn healthy_in(&self, group_arn: &str) -> usize {
        let name = group_arn.split('/').nth(1).expect("name").to_owned();
        self.world.state.elb.target_groups[&(scope(), name)]
            .targets
            .iter()
            .filter(|x| x.is_active() && x.is_healthy())
            .count()
    }

    fn running_of(&self, def: &str) -> usize {
        self.world.meant_to_run(def)
    }

    fn update_to(&mut self, def: &str) {
        self.world.deploy("c", "web", def);
    }
}

/// Production traffic only ever goes to a group with every desired task healthy.
fn production_is_served(h: &Harness) {
    let live = h.rule_target(&h.prod_rule);
    assert!(
        h.healthy_in(&live) >= 2,
        "production on {live} with too few healthy targets"
    );
}

#[test]
fn a_blue_green_deployment_moves_production_traffic_at_once_and_keeps_blue_through_the_bake() {
    blue_green_rollout(true);
}

#[test]
fn without_a_test_rule_green_is_still_checked_before_production_moves() {
    // Only the production rule names the alternate group (with weight 0): the data
    // plane checks groups a listener uses, so green must be named there first.
    blue_green_rollout(false);
}

fn blue_green_rollout(with_test_rule: bool) {
    let mut h = Harness::new();
    let (alt, test_rule) = h.blue_green_service(with_test_rule);
    h.run(10, |_| {});
    assert!(h.stable(), "{:?}", h.service());
    assert_eq!(
        h.rule_target(&h.prod_rule),
        h.tg_arn,
        "the first deployment serves on the main group"
    );
    let v1 = h.service().task_definition.unwrap();
    let v2 = h.register_def(Checks::Pass);
    h.update_to(&v2);
    let mut shifted_at = None;
    let mut test_moved = false;
    for _ in 0..200 {
        h.step(&mut production_is_served);
        if test_rule.as_ref().is_none_or(|r| h.rule_target(r) == alt) {
            test_moved = true;
        }
        if shifted_at.is_none() && h.rule_target(&h.prod_rule) == alt {
            shifted_at = Some(h.world.now);
            assert!(
                test_moved,
                "test traffic reaches green before production does"
            );
            assert_eq!(
                h.running_of(&v1),
                2,
                "blue keeps running when traffic moves"
            );
        }
        if let Some(at) = shifted_at
            && h.world.now < at + 59.0
        {
            assert_eq!(
                h.running_of(&v1),
                2,
                "blue keeps running through the bake time"
            );
        }
    }
    let at = shifted_at.expect("production traffic moved to green");
    assert_eq!(h.running_of(&v1), 0, "blue is stopped after the bake");
    assert!(h.stable(), "{:?}", h.service().deployments);
    assert_eq!(h.healthy_in(&alt), 2);
    let blue_stops = h.stop_times_of(&v1);
    assert!(
        blue_stops.iter().all(|s| *s >= at + 60.0),
        "{blue_stops:?} vs shift at {at}"
    );
    // The next deployment goes back to the main group.
    let v3 = h.register_def(Checks::Pass);
    h.update_to(&v3);
    h.run(200, production_is_served);
    assert_eq!(h.rule_target(&h.prod_rule), h.tg_arn);
    assert_eq!(h.running_of(&v3), 2);
    assert!(h.stable());
}

#[test]
fn a_green_fleet_that_never_turns_healthy_never_takes_production_traffic() {
    let mut h = Harness::new();
    let (alt, _) = h.blue_green_service(true);
    h.run(10, |_| {});
    let v1 = h.service().task_definition.unwrap();
    let bad = h.register_def(Checks::Silent);
    h.update_to(&bad);
    h.run(300, |h| {
        assert_eq!(h.rule_target(&h.prod_rule), h.tg_arn);
        assert_eq!(h.running_of(&v1), 2);
    });
    assert_eq!(h.running_of(&bad), 2, "green waits on the alternate side");
    assert_eq!(h.healthy_in(&alt), 0);
    // Deploying the blue revision again starts a new green fleet; the abandoned one stops
    // and blue serves until the new fleet is healthy.
    h.update_to(&v1);
    h.run(200, production_is_served);
    assert_eq!(h.running_of(&bad), 0);
    assert_eq!(h.running_of(&v1), 2);
    assert!(h.stable());
}

// LINEAR and CANARY: production traffic moves by the production rule's weights.
#[path = "service_load_balancers/traffic_shift.rs"]
mod traffic_shift;
