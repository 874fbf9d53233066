//! The deployment circuit breaker: revisions that crash or never start trip it, with
//! and without rollback; its failure threshold; a failed first deployment that keeps
//! relaunching, throttled. Driven through the shared [`service_harness`].

mod service_harness;

use std::collections::HashSet;

use controlplane::controllers::service::failure_threshold;
use model::wire;
use serde_json::json;

use service_harness::{Behaviour, Harness, alive, stable};

#[test]
fn crashing_revision_trips_the_circuit_breaker_and_rolls_back() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3,
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}}}));
    h.settle(|_| {});
    let good = h.service().task_definition.unwrap();
    let good_tasks: HashSet<String> = h.tasks().map(|t| t.id.clone()).collect();
    let bad = h.register("web", 64);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.update_service(json!({"taskDefinition": bad}));
    let bad_id = h.service().deployments.unwrap()[0].id.clone().unwrap();
    let mut tripped = None;
    h.settle(|h| {
        let s = h.service();
        if tripped.is_none()
            && let Some(d) = s
                .deployments
                .unwrap()
                .into_iter()
                .find(|d| d.id.as_deref() == Some(bad_id.as_str()))
            && d.rollout_state == Some(wire::DeploymentRolloutState::Failed)
        {
            tripped = Some(d);
        }
    });
    let failed = tripped.unwrap_or_else(|| panic!("not FAILED: {:#?}", h.service().deployments));
    // Three tasks crash per round, so the count passes the threshold of 10 by up to 2.
    assert_eq!(failure_threshold(3), 10);
    assert!(
        (10..=12).contains(&failed.failed_tasks.unwrap()),
        "{failed:?}"
    );
    assert_eq!(
        failed.rollout_state_reason.as_deref(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    let s = h.service();
    assert!(stable(&s), "{s:?}");
    assert_eq!(s.task_definition.as_deref(), Some(good.as_str()));
    let d = &s.deployments.as_ref().unwrap()[0];
    assert_eq!(d.task_definition.as_deref(), Some(good.as_str()));
    assert_eq!(
        d.rollout_state,
        Some(wire::DeploymentRolloutState::Completed)
    );
    // The good tasks were never touched (min 100 %): the rollback keeps them.
    let alive_now: HashSet<String> = h
        .tasks()
        .filter(|t| alive(t))
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(alive_now, good_tasks);
    let events = h.events();
    assert!(
        events.iter().any(|e| e.starts_with(&format!(
            "(service web) (deployment {bad_id}) deployment failed: tasks failed to start"
        ))),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e.contains("rolling back")),
        "{events:#?}"
    );
}

#[test]
fn tasks_that_never_start_trip_the_breaker_too() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 30,
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}}}));
    h.settle(|_| {});
    let good = h.service().task_definition.unwrap();
    let bad = h.register("web", 64);
    h.behaviour.insert(bad.clone(), Behaviour::FailToStart);
    h.update_service(json!({"taskDefinition": bad}));
    let mut failed = 0;
    h.settle(|h| {
        for d in h.service().deployments.unwrap() {
            if d.rollout_state == Some(wire::DeploymentRolloutState::Failed) {
                failed = d.failed_tasks.unwrap();
            }
        }
    });
    // ceil(0.5 × 30) = 15 failures (30 started at once, so up to 30 counted).
    assert_eq!(failure_threshold(30), 15);
    assert!((15..=30).contains(&failed), "{failed}");
    let s = h.service();
    assert!(stable(&s));
    assert_eq!(s.task_definition, Some(good));
    assert!(
        h.tasks()
            .filter(|t| t.task.stop_code == Some(wire::TaskStopCode::TaskFailedToStart))
            .count()
            >= 15
    );
}

#[test]
fn breaker_without_rollback_leaves_the_deployment_failed_and_stops_launching() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": false}}}));
    h.settle(|_| {});
    let bad = h.register("web", 64);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.update_service(json!({"taskDefinition": bad}));
    h.settle(|_| {});
    let s = h.service();
    let d = &s.deployments.as_ref().unwrap()[0];
    assert_eq!(d.status.as_deref(), Some("PRIMARY"));
    assert_eq!(d.rollout_state, Some(wire::DeploymentRolloutState::Failed));
    assert!(d.failed_tasks.unwrap() >= 10, "{d:?}");
    assert_eq!(s.deployments.as_ref().unwrap().len(), 2, "not stable");
    assert_eq!(s.running_count, Some(2), "the old tasks still serve");
}

#[test]
fn failure_threshold_is_clamped() {
    assert_eq!(failure_threshold(0), 10);
    assert_eq!(failure_threshold(21), 11);
    assert_eq!(failure_threshold(1000), 200);
}

/// The first deployment of a service fails (nothing to roll back to): it stays the one
/// deployment, FAILED, and keeps relaunching its tasks to hold desiredCount, at most
/// once per FAILED_RELAUNCH_SECS after its last failure.
#[test]
fn a_failed_first_deployment_keeps_trying_throttled() {
    let mut h = Harness::new(&["a", "b", "c"]);
    let bad = h.register("web", 128);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.create_service(json!({"taskDefinition": bad, "desiredCount": 6,
        "deploymentConfiguration": {"deploymentCircuitBreaker":
            {"enable": true, "rollback": true}}}));
    for _ in 0..40 {
        h.step();
    }
    let s = h.service();
    let ds = s.deployments.clone().unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(
        ds[0].rollout_state,
        Some(wire::DeploymentRolloutState::Failed)
    );
    // Throttled: over the next 60 s at most ~2 relaunch rounds of 6.
    let before = h.tasks().count();
    let mut requeue = None;
    for _ in 0..60 {
        h.now += 1.0;
        let out = h.reconcile();
        requeue = requeue.or(out.requeue_after);
        h.agent_step();
    }
    let launched = h.tasks().count() - before;
    assert!(launched > 0, "it keeps trying");
    assert!(launched <= 18, "throttled: {launched} launches in 60 s");
    assert!(requeue.is_some(), "the throttle asks to be woken");
}
