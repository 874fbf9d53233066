//! The service controller's limits: desired counts beyond the tasks-per-service quota
//! refused (or, when stored before the limit, reported and skipped), and the bounded
//! number of tasks one pass starts. Driven through the shared [`service_harness`].

mod service_harness;

use controlplane::Change;
use controlplane::ops::services;
use controlplane::state::Record;
use serde_json::json;
use testkit::ecs::req;

use service_harness::Harness;

/// A stored service beyond the limits (written before they existed) is reported and
/// skipped, not acted on: no task is started, an event says why.
#[test]
fn a_stored_service_beyond_the_limits_is_reported_and_skipped() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    let key = h.key();
    let mut rec = h.state.services.get(&key).unwrap().clone();
    rec.service.desired_count = Some(i32::MAX);
    h.apply(&[Change::Put(Record::Service(rec))]);
    let out = h.reconcile();
    assert!(out.started.is_empty());
    assert!(
        out.events[0].contains("cannot be reconciled: desiredCount 2147483647"),
        "{:?}",
        out.events
    );
    // Said once, not on every pass.
    h.now += 1.0;
    assert!(h.reconcile().events.is_empty());
}

/// CreateService and UpdateService refuse counts beyond ECS's tasks-per-service quota.
#[test]
fn desired_count_beyond_the_quota_is_refused() {
    let mut h = Harness::new(&["a"]);
    let mut ctx = h.ctx();
    let err = services::create(
        &h.state,
        &mut ctx,
        req(
            json!({"cluster": "c", "serviceName": "big", "taskDefinition": "web",
                   "desiredCount": 2147483647}),
        ),
    )
    .unwrap_err();
    assert_eq!(err.code(), "InvalidParameterException");
    assert!(err.to_string().contains("5000"), "{err}");
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    let mut ctx = h.ctx();
    let err = services::update(
        &h.state,
        &mut ctx,
        req(json!({"cluster": "c", "service": "web", "desiredCount": 5001})),
    )
    .unwrap_err();
    assert_eq!(err.code(), "InvalidParameterException");
}

/// A pass starts at most MAX_STARTS_PER_PASS tasks and asks to be run again at once.
#[test]
fn one_pass_starts_a_bounded_number_of_tasks() {
    let mut h = Harness::new(&[]);
    for i in 0..60 {
        let z = ["a", "b", "c"][i % 3];
        h.add_instance(z);
    }
    h.register("tiny", 8);
    h.create_service(json!({"taskDefinition": "tiny", "desiredCount": 1200}));
    let out = h.reconcile();
    let max = usize::try_from(controlplane::limits::MAX_STARTS_PER_PASS).unwrap();
    assert_eq!(out.started.len(), max);
    assert_eq!(out.requeue_after, Some(0.0));
}
