//! Service deployments: rolling updates within the minimum and maximum healthy percent,
//! forced new deployments, draining instances, a deployment that cannot move, a
//! restart mid-deployment, and the 40 s rule's wake-up. Driven through the shared
//! [`service_harness`].

mod service_harness;

use std::collections::HashSet;

use controlplane::ops::instances;
use controlplane::state::{Record, TaskRecord};
use controlplane::{Change, State};
use model::wire;
use serde_json::json;
use testkit::ecs::req;

use service_harness::{Harness, alive, stable};

#[test]
fn rolling_deploy_respects_min_and_max_percent_at_every_step() {
    for (min, max, desired) in [(100, 200, 4), (50, 100, 4), (50, 150, 6), (0, 100, 3)] {
        let mut h = Harness::new(&["a", "b", "c"]);
        h.create_service(json!({"taskDefinition": "web", "desiredCount": desired,
            "deploymentConfiguration": {"minimumHealthyPercent": min, "maximumPercent": max}}));
        h.settle(|_| {});
        assert!(stable(&h.service()));
        let v2 = h.register("web", 256);
        h.update_service(json!({"taskDefinition": v2}));
        let (lo, hi) = ((desired * min + 99) / 100, desired * max / 100);
        h.trace.clear();
        h.settle(|h| {
            let (alive, healthy) = *h.trace.last().unwrap();
            assert!(alive <= hi as usize, "{min}/{max}: {alive} tasks > {hi}");
            assert!(
                healthy >= lo as usize,
                "{min}/{max}: {healthy} healthy < {lo}"
            );
        });
        let s = h.service();
        assert!(stable(&s), "{min}/{max}: {s:?}");
        let deployments = s.deployments.unwrap();
        assert_eq!(deployments.len(), 1);
        assert_eq!(deployments[0].task_definition.as_deref(), Some(v2.as_str()));
        assert_eq!(
            deployments[0].rollout_state,
            Some(wire::DeploymentRolloutState::Completed)
        );
        assert!(
            h.tasks()
                .filter(|t| alive(t))
                .all(|t| t.task.task_definition_arn.as_deref() == Some(v2.as_str()))
        );
        let stopped_by_scheduler = h
            .tasks()
            .filter(|t| t.task.stop_code == Some(wire::TaskStopCode::ServiceSchedulerInitiated))
            .count();
        assert_eq!(stopped_by_scheduler, desired as usize, "{min}/{max}");
    }
}

#[test]
fn force_new_deployment_replaces_every_task() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    h.settle(|_| {});
    let first: HashSet<String> = h.tasks().map(|t| t.id.clone()).collect();
    h.update_service(json!({"forceNewDeployment": true}));
    h.settle(|_| {});
    assert!(stable(&h.service()));
    let now_running: HashSet<String> = h
        .tasks()
        .filter(|t| alive(t))
        .map(|t| t.id.clone())
        .collect();
    assert!(first.is_disjoint(&now_running));
}

#[test]
fn draining_instance_tasks_are_replaced_first_then_stopped() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3}));
    h.settle(|_| {});
    // A standalone task on the instance that drains is left alone.
    let drained = h.instance_id_in("a");
    let _: wire::StartTaskResponse = h.write(
        controlplane::ops::tasks::start_task,
        req(json!({"cluster": "c", "taskDefinition": "web", "containerInstances": [drained]})),
    );
    let _: wire::UpdateContainerInstancesStateResponse = h.write(
        instances::update_state,
        req(json!({"cluster": "c", "containerInstances": [drained], "status": "DRAINING"})),
    );
    let on_drained: Vec<String> = h
        .tasks()
        .filter(|t| t.instance_id.as_deref() == Some(drained.as_str()))
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(on_drained.len(), 1);
    h.trace.clear();
    h.settle(|h| {
        let (_, healthy) = *h.trace.last().unwrap();
        assert!(healthy >= 3, "min healthy 100 % held while draining");
        // Nothing new lands on the draining instance.
        assert!(h.tasks().filter(|t| alive(t)).all(|t| {
            t.instance_id.as_deref() != Some(drained.as_str()) || on_drained.contains(&t.id)
        }));
    });
    assert!(stable(&h.service()));
    let replaced = h
        .state
        .tasks
        .values()
        .find(|t| t.id == on_drained[0])
        .unwrap();
    assert_eq!(replaced.task.last_status.as_deref(), Some("STOPPED"));
    assert!(
        replaced
            .task
            .stopped_reason
            .as_deref()
            .unwrap()
            .contains("is draining")
    );
    let standalone = h
        .state
        .tasks
        .values()
        .find(|t| t.task.group.as_deref() == Some("family:web"))
        .unwrap();
    assert_eq!(standalone.task.desired_status.as_deref(), Some("RUNNING"));
    assert_eq!(h.running_by_zone().get("a"), None);
}

#[test]
fn a_deployment_that_cannot_move_says_so_once() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 100}}));
    h.settle(|_| {});
    let v2 = h.register("web", 64);
    h.update_service(json!({"taskDefinition": v2}));
    h.settle(|_| {});
    let s = h.service();
    assert_eq!(s.deployments.as_ref().unwrap().len(), 2, "stuck");
    let stuck: Vec<String> = h
        .events()
        .into_iter()
        .filter(|e| e.contains("was unable to stop or start tasks during a deployment"))
        .collect();
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    // Lowering the minimum lets it through.
    h.update_service(json!({"deploymentConfiguration": {"minimumHealthyPercent": 50}}));
    h.settle(|_| {});
    assert!(stable(&h.service()));
}

#[test]
fn draining_with_lower_min_healthy_stops_first() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 100}}));
    h.settle(|_| {});
    let drained = h.instance_id_in("a");
    let _: wire::UpdateContainerInstancesStateResponse = h.write(
        instances::update_state,
        req(json!({"cluster": "c", "containerInstances": [drained], "status": "DRAINING"})),
    );
    // max 100 %: no room to start first, so the task stops first.
    h.now += 1.0;
    let out = h.reconcile();
    assert_eq!((out.started.len(), out.stopped.len()), (0, 1));
    h.settle(|h| assert!(h.trace.last().unwrap().0 <= 2));
    assert!(stable(&h.service()));
    assert_eq!(h.running_by_zone().get("b"), Some(&2));
}

#[test]
fn restart_mid_deployment_does_not_duplicate_tasks() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3}));
    h.settle(|_| {});
    let v2 = h.register("web", 256);
    h.update_service(json!({"taskDefinition": v2}));
    h.now += 1.0;
    let first = h.reconcile();
    assert_eq!(first.started.len(), 3);
    // "Restart": rebuild the state from its records, as the engine loads it from disk.
    let mut records: Vec<Record> = Vec::new();
    records.extend(h.state.clusters.values().cloned().map(Record::Cluster));
    records.extend(
        h.state
            .task_definitions
            .values()
            .cloned()
            .map(Record::TaskDefinition),
    );
    records.extend(h.state.instances.values().cloned().map(Record::Instance));
    records.extend(
        h.state
            .tasks
            .values()
            .map(|t| Record::Task(TaskRecord::clone(t))),
    );
    records.extend(h.state.services.values().cloned().map(Record::Service));
    let mut rebuilt = State::default();
    for r in records {
        rebuilt.apply(&Change::Put(r));
    }
    h.state = rebuilt;
    h.seed = 999;
    let again = h.reconcile();
    assert!(again.started.is_empty(), "{again:?}");
    assert_eq!(h.tasks().filter(|t| alive(t)).count(), 6);
    h.settle(|h| assert!(h.trace.last().unwrap().0 <= 6));
    assert!(stable(&h.service()));
    assert_eq!(h.tasks().filter(|t| alive(t)).count(), 3);
}

/// A rollout's new tasks count as healthy 40 s after they start: the pass that sees them
/// RUNNING asks to be woken then, so no timer needs to poll the service.
#[test]
fn a_pass_asks_to_be_woken_when_tasks_turn_healthy_by_time() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    h.now += 1.0;
    h.reconcile();
    h.agent_step(); // RUNNING at h.now
    let started = h.now;
    h.now += 1.0;
    let out = h.reconcile();
    let after = out.requeue_after.expect("a wake-up for the 40 s rule");
    assert!(
        (h.now + after - (started + 40.0)).abs() < 1e-6,
        "woken at {} for tasks started at {started}",
        h.now + after
    );
}
