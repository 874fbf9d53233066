//! Services with the EXTERNAL deployment controller, driven as pure functions through the
//! shared [`service_harness`]: task sets created, scaled, made primary and deleted, the
//! service controller keeping each set's `computedDesiredCount` tasks running (and
//! stopping a deleted set's), and the operations' validation and errors.

mod service_harness;

use controlplane::ops::{services, task_sets};
use controlplane::state::{Record, ServiceRecord};
use controlplane::{Ctx, EcsError, State};
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::req;

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
fn running_in(h: &Harness, id: &str) -> usize {
    h.tasks()
        .filter(|t| t.task.started_by.as_deref() == Some(id))
        .filter(|t| {
            t.task.desired_status.as_deref() == Some("RUNNING")
                && t.task.last_status.as_deref() == Some("RUNNING")
        })
        .count()
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
    let d: wire::DeleteTaskSetResponse = try_op(
        &mut h,
        task_sets::delete,
        json!({"taskSet": blue, "force": true}),
    )
    .unwrap();
    assert_eq!(status(&d.task_set.unwrap()), "DRAINING");
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
