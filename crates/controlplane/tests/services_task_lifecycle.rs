//! A service's tasks over their lives: crashed tasks and tasks failing health checks
//! replaced, a forced delete draining the service to INACTIVE, and the capped event
//! log. Driven through the shared [`service_harness`].

mod service_harness;

use controlplane::Change;
use controlplane::controllers::service::MAX_EVENTS;
use controlplane::ops::services;
use controlplane::state::{Record, TaskRecord};
use model::wire;
use serde_json::json;
use testkit::ecs::req;

use service_harness::{Harness, alive, stable};

#[test]
fn tasks_failing_health_checks_are_replaced_after_the_grace_period() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(
        json!({"taskDefinition": "web", "desiredCount": 2, "healthCheckGracePeriodSeconds": 300}),
    );
    h.settle(|_| {});
    let sick_id = h.tasks().next().unwrap().id.clone();
    let mut sick = h
        .state
        .tasks
        .values()
        .find(|t| t.id == sick_id)
        .map(|t| TaskRecord::clone(t))
        .unwrap();
    sick.task.health_status = Some(wire::HealthStatus::Unhealthy);
    h.apply(&[Change::Put(Record::Task(sick))]);
    h.now += 1.0;
    let out = h.reconcile();
    assert!(out.stopped.is_empty(), "within the grace period: {out:?}");
    h.now += 300.0;
    h.settle(|_| {});
    let t = h.state.tasks.values().find(|t| t.id == sick_id).unwrap();
    assert_eq!(t.task.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(
        t.task.stopped_reason.as_deref(),
        Some("Task failed container health checks")
    );
    assert!(stable(&h.service()));
    assert_eq!(h.service().deployments.unwrap()[0].failed_tasks, Some(1));
}

#[test]
fn crashed_tasks_are_replaced() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    h.settle(|_| {});
    let victim = h.tasks().next().unwrap().clone();
    h.agent_report(&victim, "STOPPED", Some(137));
    h.settle(|_| {});
    let s = h.service();
    assert!(stable(&s));
    assert_eq!(s.running_count, Some(2));
    assert_eq!(h.tasks().count(), 3);
}

#[test]
fn delete_with_force_drains_to_inactive() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 4}));
    h.settle(|_| {});
    let _: wire::DeleteServiceResponse = h.write(
        services::delete,
        req(json!({"cluster": "c", "service": "web", "force": true})),
    );
    assert_eq!(h.service().status.as_deref(), Some("DRAINING"));
    h.settle(|_| {});
    let s = h.service();
    assert_eq!(s.status.as_deref(), Some("INACTIVE"));
    assert!(h.tasks().all(|t| !alive(t)));
    // Nothing more to do for an INACTIVE service.
    assert!(h.reconcile().is_empty());
}

#[test]
fn events_are_capped_newest_first() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    h.settle(|_| {});
    for _ in 0..60 {
        let victim = h.tasks().find(|t| alive(t)).unwrap().clone();
        h.agent_report(&victim, "STOPPED", Some(0));
        h.settle(|_| {});
    }
    let s = h.service();
    let events = s.events.unwrap();
    assert_eq!(events.len(), MAX_EVENTS);
    assert!(
        events
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );
    assert_eq!(
        events[0].message.as_deref(),
        Some("(service web) has reached a steady state.")
    );
}
