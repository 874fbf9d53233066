//! The safety rules: the health gate, standalone tasks, fallback and timeout halts,
//! resume, slow drains.

use super::harness::{Harness, NEW, OLD, arn, node, service};
use crate::decide::{Action, Decision};
use crate::policy::StandalonePolicy;
use crate::snapshot::NodeStatus;

fn wait_reason(d: &Decision) -> &str {
    match d {
        Decision::Wait { reason } => reason,
        other => panic!("expected a wait, got {other:?}"),
    }
}

#[test]
fn health_gate_waits_for_services_running_below_desired() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    h.snapshot.services = vec![service("web", 3, 2)];
    let d = h.step();
    assert!(wait_reason(&d).contains("service web runs 2 of 3"), "{d:?}");
    assert!(h.actions.is_empty());

    h.snapshot.services = vec![service("web", 3, 3)];
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
}

#[test]
fn health_gate_waits_for_a_deployment_in_progress() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    let mut web = service("web", 2, 2);
    web.deployments = 2;
    h.snapshot.services = vec![web.clone()];
    assert!(wait_reason(&h.step()).contains("deployment in progress"));

    web.deployments = 1;
    web.rollout_in_progress = true;
    h.snapshot.services = vec![web];
    assert!(wait_reason(&h.step()).contains("deployment in progress"));
    assert!(h.actions.is_empty());
}

#[test]
fn health_gate_waits_for_other_draining_or_disconnected_nodes() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    h.node_mut("i-2").status = NodeStatus::Draining;
    assert!(wait_reason(&h.step()).contains("node i-2 is DRAINING"));

    h.node_mut("i-2").status = NodeStatus::Active;
    h.node_mut("i-2").agent_connected = false;
    assert!(wait_reason(&h.step()).contains("i-2's agent is disconnected"));
    assert!(h.actions.is_empty());

    h.node_mut("i-2").agent_connected = true;
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
}

#[test]
fn the_gate_is_checked_before_each_node_not_during_one() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    h.snapshot.services = vec![service("web", 2, 2)];
    h.run_service_task("i-1", "web");
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
    // Draining i-1 makes web run below desired for a while: i-1 goes on.
    h.snapshot.services = vec![service("web", 2, 1)];
    h.finish_drained_node("i-1");
    // … but i-2 does not start until web is whole again.
    assert!(wait_reason(&h.step()).contains("before starting i-2: service web runs 1 of 2"));
    h.snapshot.services = vec![service("web", 2, 2)];
    assert!(
        matches!(h.step(), Decision::Act(Action::Drain { ref instance_id, .. }) if instance_id == "i-2")
    );
}

#[test]
fn standalone_tasks_skip_leaves_the_node_for_later_and_goes_on() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    h.run_standalone_task("i-1");
    h.run_service_task("i-2", "web");
    let d = h.step();
    let Decision::Act(Action::Skip {
        instance_id,
        reason,
        ..
    }) = d
    else {
        panic!("expected a skip, got {d:?}")
    };
    assert_eq!(instance_id, "i-1");
    assert!(reason.contains("1 standalone task"), "{reason}");
    assert_eq!(h.run_to_done(), ["i-2"]);
    assert!(h.state.skipped.contains_key(&arn("i-1")));
    assert!(!h.state.updated.contains_key(&arn("i-1")));
}

#[test]
fn a_skipped_node_is_retried_after_the_retry_delay() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    h.policy.retry_skipped_after = Some(jiff::SignedDuration::from_mins(5));
    h.run_standalone_task("i-1");
    assert!(matches!(h.step(), Decision::Act(Action::Skip { .. })));
    assert_eq!(h.step(), Decision::Done);
    h.stop_tasks("i-1");
    h.advance(299);
    assert_eq!(h.step(), Decision::Done, "not before the delay");
    h.advance(1);
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
}

#[test]
fn standalone_tasks_wait_drains_then_waits_for_them_to_stop() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    h.policy.standalone_tasks = StandalonePolicy::Wait;
    h.run_standalone_task("i-1");
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
    // No timeout on standalone tasks: an hour later it still waits.
    h.advance(3600);
    assert!(wait_reason(&h.step()).contains("waiting for 1 standalone task(s) to stop"));
    h.stop_tasks("i-1");
    assert!(matches!(h.step(), Decision::Act(Action::Apply { .. })));
}

#[test]
fn a_node_back_on_its_old_version_halts_the_rollout() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    assert!(matches!(h.settle(), Decision::Wait { .. }));
    assert!(matches!(h.actions.last(), Some(Action::Reboot { .. })));
    h.advance(40);
    h.boot("i-1", OLD); // the new slot failed its health check: fallback
    let d = h.step();
    let Decision::Act(Action::Halt {
        instance_id,
        target_version,
        reason,
        ..
    }) = d
    else {
        panic!("expected a halt, got {d:?}")
    };
    assert_eq!(
        (instance_id.as_str(), target_version.as_str()),
        ("i-1", NEW)
    );
    assert!(reason.contains("fell back to 1.0.0"), "{reason}");

    // Halted: nothing else starts, however long we wait.
    h.advance(3600);
    assert!(matches!(h.step(), Decision::Halted(ref halt) if halt.instance_id == "i-1"));
    assert_eq!(h.drained(), ["i-1"]);
}

#[test]
fn a_node_still_on_its_old_version_before_going_down_is_waited_for() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    h.settle();
    // The reboot was asked but the node has not gone down yet: still connected, still
    // Ready on the old version. That is not a fallback.
    let n = h.node_mut("i-1");
    n.agent_connected = true;
    n.update = crate::snapshot::UpdateView::Ready {
        version: NEW.to_owned(),
    };
    assert!(matches!(h.step(), Decision::Wait { .. }));
}

#[test]
fn a_node_not_heard_from_is_waited_for_whatever_version_it_last_showed() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    h.settle();
    // Shown connected (the control plane has not noticed the old agent is gone), its
    // host API unreachable: no decision on its version yet.
    let n = h.node_mut("i-1");
    n.agent_connected = true;
    n.os_version = Some(OLD.to_owned());
    n.update = crate::snapshot::UpdateView::Unknown;
    assert!(matches!(h.step(), Decision::Wait { .. }));
}

#[test]
fn a_node_not_back_within_the_node_timeout_halts() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    h.settle();
    h.advance(599);
    assert!(wait_reason(&h.step()).contains("waiting for node i-1 to come back"));
    h.advance(1);
    let d = h.step();
    assert!(
        matches!(d, Decision::Act(Action::Halt { ref reason, .. }) if reason.contains("did not come back on 1.1.0 within 10m")),
        "{d:?}"
    );
    assert!(matches!(h.step(), Decision::Halted(_)));
}

#[test]
fn resume_clears_the_halt_and_the_rollout_goes_on() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    h.settle();
    h.boot("i-1", OLD);
    assert!(matches!(h.step(), Decision::Act(Action::Halt { .. })));
    assert!(matches!(h.step(), Decision::Halted(_)));
    assert_eq!(
        h.node_mut("i-1").status,
        NodeStatus::Active,
        "the halted node is back in service"
    );

    let halt = h.state.resume().expect("was halted");
    assert_eq!(halt.node, arn("i-1"));
    // Refreshed again (no longer in progress), the halted node still offers the update,
    // so it is tried again first.
    h.node_mut("i-1").update = crate::snapshot::UpdateView::Available {
        version: NEW.to_owned(),
    };
    assert!(
        matches!(h.step(), Decision::Act(Action::Drain { ref instance_id, .. }) if instance_id == "i-1")
    );
}

#[test]
fn a_drain_that_never_finishes_gives_the_node_back_and_moves_on() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    h.run_service_task("i-1", "web");
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
    h.advance(30 * 60 - 1);
    assert!(matches!(h.step(), Decision::Wait { .. }));
    h.advance(1);
    let d = h.step();
    assert!(
        matches!(d, Decision::Act(Action::GiveBack { ref reason, .. }) if reason.contains("after 30m of draining")),
        "{d:?}"
    );
    assert_eq!(h.node_mut("i-1").status, NodeStatus::Active);
    assert!(
        matches!(h.step(), Decision::Act(Action::Drain { ref instance_id, .. }) if instance_id == "i-2")
    );
}

#[test]
fn an_update_withdrawn_during_the_drain_gives_the_node_back() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
    h.node_mut("i-1").update = crate::snapshot::UpdateView::NoUpdate;
    assert!(matches!(h.step(), Decision::Act(Action::GiveBack { .. })));
    assert_eq!(h.step(), Decision::Done);
}
