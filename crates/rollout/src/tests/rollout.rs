//! The happy paths: one node's whole sequence, the order over zones, concurrency,
//! nodes without an update, and the state file's shape.

use super::harness::{Harness, NEW, OLD, arn, node};
use crate::decide::{Action, Decision};
use crate::snapshot::UpdateView;
use crate::state::{Phase, State};

#[test]
fn one_node_goes_drain_apply_reboot_activate_complete() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    h.run_service_task("i-1", "web");

    assert!(
        matches!(h.step(), Decision::Act(Action::Drain { ref target_version, .. }) if target_version == NEW)
    );
    // The service task is still on the node: wait, do not apply.
    let Decision::Wait { reason } = h.step() else {
        panic!("expected to wait for the drain")
    };
    assert!(reason.contains("1 service task(s) left"), "{reason}");

    h.stop_tasks("i-1");
    assert!(matches!(h.step(), Decision::Act(Action::Apply { ref version, .. }) if version == NEW));
    assert!(matches!(h.step(), Decision::Act(Action::Reboot { .. })));
    // Down and not back yet.
    h.advance(30);
    assert!(matches!(h.step(), Decision::Wait { .. }));

    h.boot("i-1", NEW);
    assert!(matches!(h.step(), Decision::Act(Action::Activate { .. })));
    assert!(
        matches!(h.step(), Decision::Act(Action::Complete { ref version, .. }) if version == NEW)
    );
    assert_eq!(h.step(), Decision::Done);

    let updated = &h.state.updated[&arn("i-1")];
    assert_eq!(
        (updated.from_version.as_deref(), updated.to_version.as_str()),
        (Some(OLD), NEW)
    );
    assert!(h.state.in_progress.is_empty());
}

#[test]
fn nodes_are_taken_round_robin_over_zones() {
    let mut h = Harness::new(vec![
        node("i-a2", "zone-a"),
        node("i-a1", "zone-a"),
        node("i-a3", "zone-a"),
        node("i-c1", "zone-c"),
        node("i-b1", "zone-b"),
    ]);
    assert_eq!(
        h.run_to_done(),
        ["i-a1", "i-b1", "i-c1", "i-a2", "i-a3"],
        "one node per zone in turn, by instance id within a zone"
    );
}

#[test]
fn the_order_continues_with_the_next_zone_after_a_node_is_done() {
    // i-a1 is already updated (no update offered): the next is from zone b, not i-a2.
    let mut h = Harness::new(vec![
        node("i-a1", "a"),
        node("i-a2", "a"),
        node("i-b1", "b"),
        node("i-b2", "b"),
    ]);
    h.node_mut("i-a1").update = UpdateView::NoUpdate;
    assert_eq!(h.run_to_done(), ["i-b1", "i-a2", "i-b2"]);
}

#[test]
fn nodes_without_an_update_are_not_candidates() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b"), node("i-3", "c")]);
    // i-2's wave has not come yet (the node decides that itself).
    h.node_mut("i-2").update = UpdateView::NoUpdate;
    assert_eq!(h.run_to_done(), ["i-1", "i-3"]);
    assert!(!h.state.updated.contains_key(&arn("i-2")));
}

#[test]
fn one_node_at_a_time_by_default() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b")]);
    h.run_service_task("i-1", "web");
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
    // i-1 is draining; i-2 must not start even though everything else is fine.
    assert!(matches!(h.step(), Decision::Wait { .. }));
    assert_eq!(h.drained(), ["i-1"]);
}

#[test]
fn max_unavailable_two_drains_two_nodes_before_either_is_applied() {
    let mut h = Harness::new(vec![node("i-1", "a"), node("i-2", "b"), node("i-3", "c")]);
    h.policy.max_unavailable = 2;
    h.run_service_task("i-1", "web");
    h.run_service_task("i-2", "web");

    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
    assert!(matches!(h.step(), Decision::Act(Action::Drain { .. })));
    assert!(
        matches!(h.step(), Decision::Wait { .. }),
        "two in progress: no third"
    );
    assert_eq!(h.drained(), ["i-1", "i-2"]);
    assert_eq!(h.state.in_progress.len(), 2);

    h.stop_tasks("i-2");
    assert!(
        matches!(h.step(), Decision::Act(Action::Apply { ref instance_id, .. }) if instance_id == "i-2"),
        "a node that is ready moves on while the other still drains"
    );
}

#[test]
fn the_state_round_trips_through_json_with_named_phases() {
    let mut h = Harness::new(vec![node("i-1", "a")]);
    h.step();
    let json = serde_json::to_value(&h.state).unwrap();
    assert_eq!(
        json["in_progress"][arn("i-1")]["phase"]["phase"],
        "draining"
    );
    assert_eq!(json["in_progress"][arn("i-1")]["target_version"], NEW);
    let back: State = serde_json::from_value(json).unwrap();
    assert_eq!(back, h.state);
    assert!(matches!(
        back.in_progress[&arn("i-1")].phase,
        Phase::Draining { .. }
    ));
}
