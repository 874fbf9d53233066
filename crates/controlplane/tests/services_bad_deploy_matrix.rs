//! The deploy-state matrix (issue: a bad deploy right after a good one): for every state
//! the previous deployment may be in, and wherever a node loss falls during the bad
//! deployment, with the circuit breaker on (with and without rollback) and off, the
//! service ends where ECS would. Driven through the shared [`service_harness`].

mod service_harness;

use model::wire;
use serde_json::json;

use service_harness::{Behaviour, Harness, alive, stable};

/// How far the previous deployment got before the bad one is deployed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Previous {
    /// Its rollout COMPLETED (tasks up for more than 40 s).
    Completed,
    /// Steady (what `services-stable` returns on: every task RUNNING, one deployment),
    /// but not yet COMPLETED (the 40 s rule).
    Steady,
    /// Still starting its tasks.
    InProgress,
}

/// Runs one cell of the matrix: a 6-task service on 3 zones reaches `previous`, a
/// revision whose tasks exit after starting is deployed, and a node is lost while
/// that deployment is under way (`lose_node_after` steps in). Returns the harness and
/// the good and bad revisions.
fn bad_deploy(
    breaker: bool,
    rollback: bool,
    previous: Previous,
    lose_node_after: usize,
) -> (Harness, String, String) {
    let mut h = Harness::new(&["a", "b", "c"]);
    let good = h.register("web", 128);
    h.create_service(json!({"taskDefinition": good, "desiredCount": 6,
        "deploymentConfiguration": {"deploymentCircuitBreaker":
            {"enable": breaker, "rollback": rollback}}}));
    match previous {
        Previous::Completed => {
            h.settle(|_| {});
        }
        Previous::Steady => {
            for _ in 0..30 {
                if stable(&h.service()) {
                    break;
                }
                h.step();
            }
            let s = h.service();
            assert!(stable(&s), "steady: {s:?}");
            assert_ne!(
                s.deployments.unwrap()[0].rollout_state,
                Some(wire::DeploymentRolloutState::Completed),
                "the 40 s rule keeps it IN_PROGRESS"
            );
        }
        Previous::InProgress => {
            h.now += 1.0;
            h.reconcile();
        }
    }
    let bad = h.register("web", 128);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.update_service(json!({"taskDefinition": bad}));
    for _ in 0..lose_node_after {
        h.step();
    }
    h.lose_node("a");
    (h, good, bad)
}

/// Breaker and rollback on: whatever state the previous deployment was in, and
/// wherever the node loss falls, the service rolls back to the good revision, settles
/// with one deployment and six tasks of it, none on the lost node.
#[test]
fn matrix_breaker_with_rollback_always_converges_on_the_good_revision() {
    for previous in [Previous::Completed, Previous::Steady, Previous::InProgress] {
        for lose_after in [0, 3, 12] {
            let (mut h, good, _bad) = bad_deploy(true, true, previous, lose_after);
            h.settle(|_| {});
            let s = h.service();
            let cell = format!("previous {previous:?}, node lost after {lose_after} steps");
            assert!(stable(&s), "{cell}: {s:?}");
            assert_eq!(s.running_count, Some(6), "{cell}");
            assert_eq!(h.running_of(&good), 6, "{cell}");
            let d = &s.deployments.as_ref().unwrap()[0];
            assert_eq!(d.task_definition.as_deref(), Some(good.as_str()), "{cell}");
            assert_eq!(
                d.rollout_state,
                Some(wire::DeploymentRolloutState::Completed),
                "{cell}"
            );
            let events = h.events();
            assert!(
                events.iter().any(|e| e.contains("deployment failed")),
                "{cell}: {events:?}"
            );
            assert!(
                events.iter().any(|e| e.contains("rolling back")),
                "{cell}: {events:?}"
            );
        }
    }
}

/// Breaker on, rollback off: the bad deployment is FAILED and launches nothing more, yet
/// the service keeps six tasks running — lost ones are replaced with the last revision
/// that did not fail — and both deployments stay listed until the user deploys again.
#[test]
fn matrix_breaker_without_rollback_keeps_desired_count_on_the_last_good_revision() {
    for previous in [Previous::Completed, Previous::Steady, Previous::InProgress] {
        for lose_after in [0, 3, 12] {
            let (mut h, good, bad) = bad_deploy(true, false, previous, lose_after);
            h.settle(|_| {});
            let cell = format!("previous {previous:?}, node lost after {lose_after} steps");
            let s = h.service();
            let ds = s.deployments.clone().unwrap();
            assert_eq!(
                ds[0].task_definition.as_deref(),
                Some(bad.as_str()),
                "{cell}"
            );
            assert_eq!(
                ds[0].rollout_state,
                Some(wire::DeploymentRolloutState::Failed),
                "{cell}"
            );
            assert_eq!(h.running_of(&good), 6, "{cell}: {s:?}");
            assert_eq!(s.running_count, Some(6), "{cell}");
            // Then the user deploys the good revision again: one deployment, stable.
            h.update_service(json!({"taskDefinition": good, "forceNewDeployment": true}));
            h.settle(|_| {});
            assert!(stable(&h.service()), "{cell}");
        }
    }
}

/// Breaker off: nothing declares the bad revision failed, so (as ECS) the controller
/// keeps trying it; old tasks are only replaced by new ones that prove healthy, so the
/// good revision's surviving tasks keep serving, and capacity lost with the node is
/// retried with the new revision at every step.
#[test]
fn matrix_without_breaker_keeps_trying_and_keeps_the_good_tasks() {
    for previous in [Previous::Completed, Previous::Steady, Previous::InProgress] {
        let (mut h, good, bad) = bad_deploy(false, false, previous, 3);
        let cell = format!("previous {previous:?}");
        let mut started_bad = 0;
        for _ in 0..200 {
            let before = h.tasks().count();
            h.now += 1.0;
            h.reconcile();
            started_bad += h.tasks().count() - before;
            // Never fewer alive tasks than desired once the controller has acted.
            let alive = h.tasks().filter(|t| alive(t)).count();
            assert!(alive >= 6, "{cell}: {alive} alive");
            h.agent_step();
        }
        assert!(
            started_bad > 20,
            "{cell}: it keeps retrying ({started_bad})"
        );
        let gone: Vec<_> = h
            .tasks()
            .filter(|t| t.task.task_definition_arn.as_deref() == Some(good.as_str()))
            .filter(|t| t.task.desired_status.as_deref() == Some("STOPPED"))
            .map(|t| t.task.stopped_reason.clone())
            .collect();
        // Tasks of a previous rollout that were still PENDING made way at once (they
        // were not serving); RUNNING ones off the lost node stay.
        let expected = if previous == Previous::InProgress {
            0
        } else {
            4
        };
        assert!(h.running_of(&good) >= expected, "{cell}: {gone:?}");
        assert_eq!(
            h.service().deployments.unwrap()[0]
                .task_definition
                .as_deref(),
            Some(bad.as_str())
        );
    }
}
