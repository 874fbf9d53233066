//! Services with the EXTERNAL deployment controller, driven as pure functions through the
//! shared [`service_harness`]: task sets created, scaled, made primary and deleted, the
//! service controller keeping each set's `computedDesiredCount` tasks running (and
//! stopping a deleted set's), the operations' validation and errors, and each set's
//! tasks joining its own target groups (drained before they stop) and Cloud Map
//! services.

mod service_harness;

use std::collections::{BTreeMap, BTreeSet};

use controlplane::ops::{services, task_sets};
use controlplane::state::elb::TargetGroupRecord;
use controlplane::state::{Record, ServiceRecord, TaskRecord};
use controlplane::{Ctx, EcsError, State};
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::req;
use testkit::service::host_port;

use service_harness::{Harness, alive};

type Op<Req, Resp> =
    fn(&State, &mut Ctx, Req) -> Result<(Resp, Vec<controlplane::Change>), EcsError>;

/// A harness (zones a, b; `web:1` and `web:2`) with the EXTERNAL service `web` of
/// `desired` tasks.
fn external(desired: i32) -> Harness {
    let mut h = Harness::new(&["a", "b"]);
    h.register("web", 128);
    h.create_service(json!({"desiredCount": desired,
        "deploymentController": {"type": "EXTERNAL"}}));
    h
}

fn with_service(mut body: Value) -> Value {
    body["cluster"] = json!("c");
    body["service"] = json!("web");
    body
}

fn try_op<Req: serde::de::DeserializeOwned, Resp>(
    h: &mut Harness,
    op: Op<Req, Resp>,
    body: Value,
) -> Result<Resp, EcsError> {
    h.try_write(op, req(with_service(body)))
}

/// CreateTaskSet of `def` at `pct` %; the new set's id.
fn create_set(h: &mut Harness, def: &str, pct: f64) -> String {
    let r: wire::CreateTaskSetResponse = try_op(
        h,
        task_sets::create,
        json!({"taskDefinition": def, "externalId": format!("ext-{def}"),
            "scale": {"value": pct, "unit": "PERCENT"}, "tags": [{"key": "k", "value": "v"}]}),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", e.code()));
    r.task_set.unwrap().id.unwrap()
}

fn scale(h: &mut Harness, id: &str, pct: f64) {
    let _: wire::UpdateTaskSetResponse = try_op(
        h,
        task_sets::update,
        json!({"taskSet": id, "scale": {"value": pct, "unit": "PERCENT"}}),
    )
    .unwrap();
}

fn make_primary(h: &mut Harness, id: &str) -> wire::TaskSet {
    let r: wire::UpdateServicePrimaryTaskSetResponse =
        try_op(h, task_sets::update_primary, json!({"primaryTaskSet": id})).unwrap();
    r.task_set.unwrap()
}

/// DescribeTaskSets of every set of the service.
fn sets(h: &Harness) -> Vec<wire::TaskSet> {
    let r = task_sets::describe(
        &h.state,
        &testkit::ecs::scope(),
        req(with_service(json!({}))),
    )
    .unwrap();
    r.task_sets.unwrap()
}

fn set(h: &Harness, id: &str) -> wire::TaskSet {
    sets(h)
        .into_iter()
        .find(|s| s.id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("no task set {id}"))
}

/// Tasks meant to run and RUNNING, started by the task set `id`.
fn running_tasks_of<'a>(h: &'a Harness, id: &'a str) -> impl Iterator<Item = &'a TaskRecord> {
    h.tasks()
        .filter(move |t| t.task.started_by.as_deref() == Some(id))
        .filter(|t| {
            t.task.desired_status.as_deref() == Some("RUNNING")
                && t.task.last_status.as_deref() == Some("RUNNING")
        })
}

/// How many tasks of the task set `id` are meant to run and RUNNING.
fn running_in(h: &Harness, id: &str) -> usize {
    running_tasks_of(h, id).count()
}

/// DeleteTaskSet of `id` with `force`; the set as the answer shows it.
fn force_delete(h: &mut Harness, id: &str) -> wire::TaskSet {
    let r: wire::DeleteTaskSetResponse =
        try_op(h, task_sets::delete, json!({"taskSet": id, "force": true})).unwrap();
    r.task_set.unwrap()
}

fn status(ts: &wire::TaskSet) -> &str {
    ts.status.as_deref().unwrap_or("")
}

#[test]
fn task_sets_run_their_share_and_follow_scale_primary_and_delete() {
    let mut h = external(4);
    h.settle(|_| {});
    assert_eq!(
        h.tasks().count(),
        0,
        "an EXTERNAL service starts nothing by itself"
    );
    let s = h.service();
    assert_eq!(s.deployments.as_deref(), Some(&[][..]));
    assert_eq!(s.task_definition, None);
    assert_eq!(s.task_sets.as_deref(), Some(&[][..]));

    let blue = create_set(&mut h, "web:1", 100.0);
    let green = create_set(&mut h, "web:2", 0.0);
    assert_eq!(status(&set(&h, &blue)), "ACTIVE");
    assert_eq!(
        set(&h, &blue).stability_status,
        Some(wire::StabilityStatus::Stabilizing)
    );
    h.settle(|h| assert!(h.tasks().filter(|t| alive(t)).count() <= 4));
    assert_eq!(running_in(&h, &blue), 4);
    assert_eq!(running_in(&h, &green), 0);
    let b = set(&h, &blue);
    assert_eq!(
        (b.computed_desired_count, b.running_count, b.pending_count),
        (Some(4), Some(4), Some(0))
    );
    assert_eq!(b.stability_status, Some(wire::StabilityStatus::SteadyState));
    assert_eq!(b.external_id.as_deref(), Some("ext-web:1"));
    assert!(
        b.task_definition
            .unwrap()
            .ends_with(":task-definition/web:1")
    );
    assert!(
        b.task_set_arn
            .unwrap()
            .ends_with(&format!(":task-set/c/web/{blue}"))
    );
    assert_eq!(b.tags, None, "tags only with include TAGS");
    assert_eq!(
        set(&h, &green).stability_status,
        Some(wire::StabilityStatus::SteadyState)
    );
    assert_eq!(h.service().running_count, Some(4));

    // Scale green to 50 %: ceil(4 × 0.5) = 2 tasks of web:2 beside blue's 4.
    scale(&mut h, &green, 50.0);
    assert_eq!(
        set(&h, &green).stability_status,
        Some(wire::StabilityStatus::Stabilizing)
    );
    h.settle(|_| {});
    assert_eq!((running_in(&h, &blue), running_in(&h, &green)), (4, 2));
    assert_eq!(set(&h, &green).computed_desired_count, Some(2));

    // Primary: green; the service shows its task definition. Then blue again: green
    // goes back to ACTIVE.
    let g = make_primary(&mut h, &green);
    assert_eq!(status(&g), "PRIMARY");
    assert_eq!(status(&set(&h, &blue)), "ACTIVE");
    assert!(
        h.service()
            .task_definition
            .unwrap()
            .ends_with(":task-definition/web:2")
    );
    make_primary(&mut h, &blue);
    assert_eq!(status(&set(&h, &green)), "ACTIVE");
    make_primary(&mut h, &green);
    assert_eq!(status(&set(&h, &blue)), "ACTIVE");

    // Green takes it all; blue (still at 100 %) needs force to go.
    scale(&mut h, &green, 100.0);
    let e = try_op::<_, wire::DeleteTaskSetResponse>(
        &mut h,
        task_sets::delete,
        json!({"taskSet": blue}),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let d = force_delete(&mut h, &blue);
    assert_eq!(status(&d), "DRAINING");
    h.settle(|_| {});
    assert_eq!(running_in(&h, &green), 4);
    assert_eq!(
        h.tasks()
            .filter(|t| t.task.started_by.as_deref() == Some(blue.as_str()))
            .filter(|t| alive(t))
            .count(),
        0,
        "the deleted set's tasks stopped"
    );
    let left: Vec<String> = sets(&h).into_iter().filter_map(|s| s.id).collect();
    assert_eq!(
        left,
        std::slice::from_ref(&green),
        "the drained set is gone"
    );
    let r = task_sets::describe(
        &h.state,
        &testkit::ecs::scope(),
        req(with_service(
            json!({"taskSets": [blue], "include": ["TAGS"]}),
        )),
    )
    .unwrap();
    assert_eq!(r.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
    let r = task_sets::describe(
        &h.state,
        &testkit::ecs::scope(),
        req(with_service(
            json!({"taskSets": [green], "include": ["TAGS"]}),
        )),
    )
    .unwrap();
    assert_eq!(r.task_sets.unwrap()[0].tags.as_ref().map(Vec::len), Some(1));
    let s = h.service();
    assert_eq!(s.running_count, Some(4));
    assert_eq!(s.task_sets.map(|t| t.len()), Some(1));
}

#[test]
fn a_stopped_task_is_replaced_and_desired_count_rescales_the_sets() {
    let mut h = external(4);
    let a = create_set(&mut h, "web:1", 50.0);
    h.settle(|_| {});
    assert_eq!(running_in(&h, &a), 2);
    let victim = h
        .tasks()
        .find(|t| t.task.started_by.as_deref() == Some(a.as_str()))
        .unwrap()
        .clone();
    h.agent_report(&victim, "STOPPED", Some(1));
    h.settle(|_| {});
    assert_eq!(running_in(&h, &a), 2, "the stopped task was replaced");
    // desiredCount 3 at 50 %: ceil(1.5) = 2; desiredCount 6: 3.
    h.update_service(json!({"desiredCount": 3}));
    h.settle(|_| {});
    assert_eq!(running_in(&h, &a), 2);
    h.update_service(json!({"desiredCount": 6}));
    h.settle(|_| {});
    assert_eq!(running_in(&h, &a), 3);
    assert_eq!(set(&h, &a).computed_desired_count, Some(3));
    h.update_service(json!({"desiredCount": 0}));
    h.settle(|_| {});
    assert_eq!(h.tasks().filter(|t| alive(t)).count(), 0);
    assert_eq!(
        set(&h, &a).stability_status,
        Some(wire::StabilityStatus::SteadyState)
    );
}

#[test]
fn task_set_operations_are_validated_as_ecs_does() {
    let mut h = external(2);
    let code = |r: Result<wire::CreateTaskSetResponse, EcsError>| r.unwrap_err().code();
    for bad in [json!({"value": 101.0}), json!({"value": -1.0})] {
        let r = try_op(
            &mut h,
            task_sets::create,
            json!({"taskDefinition": "web:1", "scale": bad}),
        );
        assert_eq!(code(r), "InvalidParameterException");
    }
    let r = try_op(
        &mut h,
        task_sets::create,
        json!({"taskDefinition": "nope:1"}),
    );
    assert_eq!(code(r), "InvalidParameterException");
    // At most five task sets; a set created without scale is at 0 %.
    let first = create_set(&mut h, "web:1", 0.0);
    for _ in 0..4 {
        let r: wire::CreateTaskSetResponse = try_op(
            &mut h,
            task_sets::create,
            json!({"taskDefinition": "web:1"}),
        )
        .unwrap();
        let ts = r.task_set.unwrap();
        assert_eq!(ts.scale.unwrap().value, Some(0.0));
        assert_eq!(ts.computed_desired_count, Some(0));
    }
    let r = try_op(
        &mut h,
        task_sets::create,
        json!({"taskDefinition": "web:1"}),
    );
    assert_eq!(code(r), "InvalidParameterException");
    // Unknown task sets and services.
    let e = try_op::<_, wire::UpdateTaskSetResponse>(
        &mut h,
        task_sets::update,
        json!({"taskSet": "ecs-svc/0", "scale": {"value": 1.0}}),
    )
    .unwrap_err();
    assert_eq!(e.code(), "TaskSetNotFoundException");
    let e = try_op::<_, wire::UpdateServicePrimaryTaskSetResponse>(
        &mut h,
        task_sets::update_primary,
        json!({"primaryTaskSet": "ecs-svc/0"}),
    )
    .unwrap_err();
    assert_eq!(e.code(), "TaskSetNotFoundException");
    let e = h
        .try_write::<_, wire::DeleteTaskSetResponse>(
            task_sets::delete,
            req(json!({"cluster": "c", "service": "nope", "taskSet": first})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ServiceNotFoundException");
    // A DRAINING set cannot become primary.
    let _: wire::DeleteTaskSetResponse =
        try_op(&mut h, task_sets::delete, json!({"taskSet": first})).unwrap();
    let e = try_op::<_, wire::UpdateServicePrimaryTaskSetResponse>(
        &mut h,
        task_sets::update_primary,
        json!({"primaryTaskSet": first}),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    // UpdateService cannot change what belongs to the task sets.
    let e = h
        .try_write::<_, wire::UpdateServiceResponse>(
            services::update,
            req(with_service(json!({"taskDefinition": "web:2"}))),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    assert!(e.to_string().contains("taskDefinition"), "{e}");
}

#[test]
fn task_sets_need_an_external_service() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    let e = try_op::<_, wire::CreateTaskSetResponse>(
        &mut h,
        task_sets::create,
        json!({"taskDefinition": "web:1"}),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let e = task_sets::describe(
        &h.state,
        &testkit::ecs::scope(),
        req(with_service(json!({}))),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    assert!(h.service().task_sets.is_none());
}

#[test]
fn create_service_refuses_what_belongs_to_task_sets() {
    let mut h = Harness::new(&["a"]);
    let ext = json!({"type": "EXTERNAL"});
    for (extra, field) in [
        (json!({"taskDefinition": "web"}), "taskDefinition"),
        (json!({"launchType": "EC2"}), "launchType"),
        (
            json!({"loadBalancers": [{"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/x/1", "containerName": "app", "containerPort": 80}]}),
            "loadBalancers",
        ),
        (json!({"schedulingStrategy": "DAEMON"}), "DAEMON"),
    ] {
        let mut body = extra;
        body["cluster"] = json!("c");
        body["serviceName"] = json!("web");
        body["deploymentController"] = ext.clone();
        let e = h
            .try_write::<_, wire::CreateServiceResponse>(services::create, req(body))
            .unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException", "{field}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
}

#[test]
fn service_records_without_task_sets_still_load() {
    let h = external(1);
    let rec: &ServiceRecord = h.state.services.values().next().unwrap();
    let json = serde_json::to_value(Record::Service(rec.clone())).unwrap();
    assert!(
        json["record"].get("task_sets").is_none(),
        "an empty list is not stored: {json}"
    );
    let back: Record = serde_json::from_value(json).unwrap();
    assert_eq!(back, Record::Service(rec.clone()));
}

// ---------------------------------------------------------------------------------------
// Task sets behind load balancers and in Cloud Map: each set's tasks join the set's own
// target groups and registries.

/// Deregistration delay of `tg-blue` and `tg-green`, in seconds.
const DELAY_SECS: f64 = 20.0;

/// An EXTERNAL service `web` of `desired` tasks on nodes `i-a` (10.0.0.1) and `i-b`
/// (10.0.0.2), the task definition `webp:1` publishing container port 80 of `app` on a
/// dynamic host port, and an ALB whose listeners forward port 80 to `tg-blue` and port
/// 8080 to `tg-green` (both `instance` groups with a [`DELAY_SECS`] deregistration delay).
struct Fleet {
    h: Harness,
    blue_tg: String,
    green_tg: String,
    next_port: i32,
    /// Whether the simulated data plane reports targets healthy (else it is silent).
    checks: bool,
    /// When each task's target was first seen draining (epoch seconds), by task ARN.
    drained_at: BTreeMap<String, f64>,
}

impl Fleet {
    fn new(desired: i32) -> Fleet {
        let mut h = Harness::new(&[]);
        h.add_two_nodes_with_ips("c");
        h.register_publishing("webp");
        h.create_service(json!({"desiredCount": desired,
            "deploymentController": {"type": "EXTERNAL"}}));
        let lb = h.create_load_balancer("alb");
        let mut tgs = [("tg-blue", 80), ("tg-green", 8080)].map(|(name, port)| {
            let tg = h.create_target_group(name, "instance");
            h.set_deregistration_delay(&tg, DELAY_SECS);
            h.create_listener(lb.arn(), port, &tg.arn());
            tg.arn()
        });
        Fleet {
            h,
            blue_tg: std::mem::take(&mut tgs[0]),
            green_tg: std::mem::take(&mut tgs[1]),
            next_port: 32768,
            checks: true,
            drained_at: BTreeMap::new(),
        }
    }

    /// CreateTaskSet of `webp:1` at `pct` % with `extra` members (`loadBalancers`, …).
    fn create_set(&mut self, pct: f64, extra: Value) -> String {
        let mut body = json!({"taskDefinition": "webp:1",
            "scale": {"value": pct, "unit": "PERCENT"}});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let r: wire::CreateTaskSetResponse = try_op(&mut self.h, task_sets::create, body)
            .unwrap_or_else(|e| panic!("{}: {e}", e.code()));
        r.task_set.unwrap().id.unwrap()
    }

    /// A set at `pct` % behind the target group `tg_arn` (container `app`, port 80).
    fn create_set_behind(&mut self, pct: f64, tg_arn: &str) -> String {
        let lb = json!([{"targetGroupArn": tg_arn, "containerName": "app", "containerPort": 80}]);
        self.create_set(pct, json!({"loadBalancers": lb}))
    }

    fn group(&self, name: &str) -> &TargetGroupRecord {
        self.h.target_group(name)
    }

    fn now_ms(&self) -> u64 {
        (self.h.now * 1000.0) as u64
    }

    /// The ARNs of the tasks with an active (not draining) target in the group `name`.
    fn active_in(&self, name: &str) -> BTreeSet<String> {
        self.group(name)
            .targets
            .iter()
            .filter(|x| x.is_active())
            .filter_map(|x| x.registered_by.clone())
            .collect()
    }

    /// The ARNs of the tasks with a live target (active or still draining) in `name`.
    fn live_in(&self, name: &str) -> BTreeSet<String> {
        self.group(name)
            .live_targets(self.now_ms())
            .filter_map(|x| x.registered_by.clone())
            .collect()
    }

    /// The ARNs of the set's tasks meant to run and RUNNING.
    fn running_arns(&self, set: &str) -> BTreeSet<String> {
        running_tasks_of(&self.h, set)
            .filter_map(|t| t.task.task_arn.as_deref().map(str::to_owned))
            .collect()
    }

    /// One second: reconcile, `check`, the agent (publishing port 80 on the next host
    /// port), the data plane; notes when targets start draining.
    fn step(&mut self, check: &mut impl FnMut(&Fleet)) {
        self.h.now += 1.0;
        self.h.reconcile();
        check(self);
        for name in ["tg-blue", "tg-green"] {
            for arn in self.h.draining_in(name) {
                self.drained_at.entry(arn).or_insert(self.h.now);
            }
        }
        self.h
            .world
            .publishing_agent_step("service:web", &mut self.next_port);
        if self.checks {
            // The data plane: every active target of both groups is found healthy.
            self.h.mark_targets_healthy();
        }
    }

    fn run(&mut self, steps: usize, mut check: impl FnMut(&Fleet)) {
        for _ in 0..steps {
            self.step(&mut check);
        }
    }

    /// Asserts that no task asked to stop still has an active target in either group.
    fn no_stop_while_active(&self) {
        for t in self.h.tasks() {
            if t.task.desired_status.as_deref() == Some("STOPPED") {
                let arn = t.task.task_arn.as_deref().unwrap().to_owned();
                for name in ["tg-blue", "tg-green"] {
                    assert!(
                        !self.active_in(name).contains(&arn),
                        "task {} asked to stop while its target in {name} is active",
                        t.id
                    );
                }
            }
        }
    }

    /// Asserts that every task of `arns` was asked to stop only after its target had
    /// drained for the groups' deregistration delay.
    fn stopped_after_draining(&self, arns: &BTreeSet<String>) {
        for arn in arns {
            let t = self
                .h
                .tasks()
                .find(|t| t.task.task_arn.as_deref() == Some(arn.as_str()))
                .expect("task");
            assert_eq!(t.task.last_status.as_deref(), Some("STOPPED"), "{}", t.id);
            let drained = self
                .drained_at
                .get(arn)
                .unwrap_or_else(|| panic!("task {} was never deregistered before stopping", t.id));
            let stopping = t.task.stopping_at.expect("stopping_at");
            assert!(
                stopping - drained >= DELAY_SECS - 1.0,
                "task {} asked to stop {}s after draining began",
                t.id,
                stopping - drained
            );
        }
    }
}

#[test]
fn each_task_sets_running_tasks_join_its_own_target_group_only() {
    let mut f = Fleet::new(4);
    let (blue_tg, green_tg) = (f.blue_tg.clone(), f.green_tg.clone());
    let blue = f.create_set_behind(100.0, &blue_tg);
    let green = f.create_set_behind(50.0, &green_tg);
    // No health from the data plane yet: the sets' tasks run and are registered, but the
    // sets are not steady until their groups find them healthy.
    f.checks = false;
    f.run(20, |_| {});
    assert_eq!(f.running_arns(&blue).len(), 4);
    assert_eq!(f.running_arns(&green).len(), 2);
    assert_eq!(f.active_in("tg-blue"), f.running_arns(&blue));
    assert_eq!(f.active_in("tg-green"), f.running_arns(&green));
    for id in [&blue, &green] {
        assert_eq!(
            set(&f.h, id).stability_status,
            Some(wire::StabilityStatus::Stabilizing),
            "a set whose targets are not healthy yet is not steady"
        );
    }
    f.checks = true;
    f.run(5, |_| {});
    for id in [&blue, &green] {
        assert_eq!(
            set(&f.h, id).stability_status,
            Some(wire::StabilityStatus::SteadyState)
        );
    }
    // Each target is the task's node and the host port its port 80 is published on.
    for x in f.group("tg-blue").targets.iter() {
        let t =
            f.h.tasks()
                .find(|t| t.task.task_arn.as_deref() == x.registered_by.as_deref())
                .expect("its task");
        assert_eq!(f.h.ec2_id_of(t).as_ref(), Some(&x.id));
        assert_eq!(host_port(t), Some(i32::from(x.port)));
    }
    // Nothing moves once every target is healthy.
    let before = f.h.state.elb.target_groups.clone();
    f.run(10, |_| {});
    assert_eq!(f.h.state.elb.target_groups, before);
}

#[test]
fn a_scaled_down_task_set_drains_its_extra_tasks_before_stopping_them() {
    let mut f = Fleet::new(4);
    let (blue_tg, green_tg) = (f.blue_tg.clone(), f.green_tg.clone());
    let blue = f.create_set_behind(100.0, &blue_tg);
    let green = f.create_set_behind(100.0, &green_tg);
    f.run(15, |_| {});
    let before = f.running_arns(&blue);
    assert_eq!(before.len(), 4);
    assert_eq!(f.active_in("tg-blue"), before);
    scale(&mut f.h, &blue, 50.0);
    // The pass that scales in deregisters two targets and holds their stops back.
    f.step(&mut |f: &Fleet| {
        let now_ms = f.now_ms();
        let draining = f
            .group("tg-blue")
            .targets
            .iter()
            .filter(|x| x.is_draining(now_ms))
            .count();
        assert_eq!(draining, 2, "{:?}", f.group("tg-blue").targets);
        assert_eq!(f.active_in("tg-blue").len(), 2);
        assert!(
            f.h.tasks()
                .all(|t| t.task.desired_status.as_deref() == Some("RUNNING")),
            "no stop before the targets drained"
        );
    });
    f.run(DELAY_SECS as usize + 20, |f| f.no_stop_while_active());
    let kept = f.running_arns(&blue);
    assert_eq!(kept.len(), 2);
    assert_eq!(f.active_in("tg-blue"), kept);
    let gone: BTreeSet<String> = before.difference(&kept).cloned().collect();
    assert_eq!(gone.len(), 2);
    f.stopped_after_draining(&gone);
    assert!(f.live_in("tg-blue").is_disjoint(&gone));
    assert_eq!(
        f.active_in("tg-green"),
        f.running_arns(&green),
        "the other set is untouched"
    );
    assert_eq!(f.running_arns(&green).len(), 4);
    assert_eq!(
        set(&f.h, &blue).stability_status,
        Some(wire::StabilityStatus::SteadyState)
    );
}

#[test]
fn a_deleted_task_sets_tasks_leave_its_target_group() {
    let mut f = Fleet::new(2);
    let (blue_tg, green_tg) = (f.blue_tg.clone(), f.green_tg.clone());
    let blue = f.create_set_behind(100.0, &blue_tg);
    let green = f.create_set_behind(100.0, &green_tg);
    f.run(15, |_| {});
    let green_tasks = f.running_arns(&green);
    assert_eq!(green_tasks.len(), 2);
    assert_eq!(f.active_in("tg-green"), green_tasks);
    force_delete(&mut f.h, &green);
    f.step(&mut |f: &Fleet| {
        assert!(f.active_in("tg-green").is_empty(), "deregistered at once");
        assert_eq!(f.live_in("tg-green"), green_tasks, "and draining");
    });
    f.run(DELAY_SECS as usize + 20, |f| f.no_stop_while_active());
    f.stopped_after_draining(&green_tasks);
    assert!(f.live_in("tg-green").is_empty());
    let left: Vec<String> = sets(&f.h).into_iter().filter_map(|s| s.id).collect();
    assert_eq!(left, vec![blue.clone()], "the drained set is gone");
    assert_eq!(f.active_in("tg-blue"), f.running_arns(&blue));
    assert_eq!(f.running_arns(&blue).len(), 2);
}

#[test]
fn a_task_sets_service_registries_register_its_tasks() {
    let mut f = Fleet::new(2);
    let (registry_arn, registry_id) = f.h.create_dns_registry("web");
    let registries = json!({"serviceRegistries": [{"registryArn": registry_arn,
        "containerName": "app", "containerPort": 80}]});
    let listed = f.create_set(100.0, registries);
    let unlisted = f.create_set(50.0, json!({}));
    f.run(10, |_| {});
    let registered = |f: &Fleet| -> BTreeMap<String, BTreeMap<String, String>> {
        f.h.state
            .discovery
            .instances_of(&testkit::ecs::scope(), &registry_id, None)
            .map(|i| {
                (
                    i.id.clone(),
                    i.instance.attributes.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let ids = |f: &Fleet, set: &str| -> BTreeSet<String> {
        running_tasks_of(&f.h, set).map(|t| t.id.clone()).collect()
    };
    assert_eq!(ids(&f, &listed).len(), 2);
    assert_eq!(ids(&f, &unlisted).len(), 1);
    let now = registered(&f);
    assert_eq!(
        now.keys().cloned().collect::<BTreeSet<_>>(),
        ids(&f, &listed),
        "only the listing set's tasks: {now:?}"
    );
    for (id, attrs) in &now {
        let t = f.h.tasks().find(|t| &t.id == id).unwrap();
        let ip = match f.h.ec2_id_of(t).as_deref() {
            Some("i-a") => "10.0.0.1",
            _ => "10.0.0.2",
        };
        assert_eq!(attrs.get("AWS_INSTANCE_IPV4").map(String::as_str), Some(ip));
        let host_port = host_port(t).unwrap();
        assert_eq!(attrs.get("AWS_INSTANCE_PORT"), Some(&host_port.to_string()));
        assert_eq!(
            attrs.get("ECS_SERVICE_NAME").map(String::as_str),
            Some("web")
        );
    }
    // Scaled in to one task: the other leaves the registry in the pass that stops it.
    scale(&mut f.h, &listed, 50.0);
    f.run(3, |_| {});
    assert_eq!(
        registered(&f).keys().cloned().collect::<BTreeSet<_>>(),
        ids(&f, &listed)
    );
    assert_eq!(ids(&f, &listed).len(), 1);
    // Deleted: its last task leaves too.
    force_delete(&mut f.h, &listed);
    f.run(3, |_| {});
    assert!(registered(&f).is_empty(), "{:?}", registered(&f));
    assert_eq!(ids(&f, &unlisted).len(), 1);
}
