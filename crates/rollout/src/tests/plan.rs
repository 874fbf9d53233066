//! The dry-run plan.

use super::harness::{Harness, NEW, node, service};
use crate::plan::{Disposition, plan};
use crate::policy::StandalonePolicy;
use crate::snapshot::UpdateView;

#[test]
fn the_plan_lists_every_node_in_order_with_what_happens_to_it() {
    let mut h = Harness::new(vec![
        node("i-a1", "a"),
        node("i-a2", "a"),
        node("i-b1", "b"),
        node("i-b2", "b"),
    ]);
    h.node_mut("i-a2").update = UpdateView::NoUpdate;
    h.node_mut("i-b2").update = UpdateView::Unknown;
    h.run_standalone_task("i-b1");
    let mut web = service("web", 2, 2);
    web.minimum_healthy_percent = Some(50);
    h.snapshot.services = vec![web];

    let p = plan(&h.snapshot, &h.state, &h.policy, h.now);
    let rows: Vec<(&str, Disposition)> = p
        .entries
        .iter()
        .map(|e| (e.instance_id.as_str(), e.disposition.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "i-a1",
                Disposition::Update {
                    position: 1,
                    note: None
                }
            ),
            (
                "i-b1",
                Disposition::Skip("runs 1 standalone task(s)".into())
            ),
            ("i-a2", Disposition::NoUpdate),
            ("i-b2", Disposition::Unknown),
        ]
    );
    assert_eq!(p.entries[0].target_version.as_deref(), Some(NEW));
    assert_eq!(p.gate, Ok(()));
    assert_eq!(p.notes.len(), 1);
    assert!(p.notes[0].contains("web allows 50%"));

    h.node_mut("i-b2").agent_connected = false;
    h.policy.standalone_tasks = StandalonePolicy::Wait;
    let p = plan(&h.snapshot, &h.state, &h.policy, h.now);
    assert_eq!(p.gate, Err("node i-b2's agent is disconnected".into()));
    assert_eq!(
        p.entries[1].disposition,
        Disposition::Update {
            position: 2,
            note: Some("waits for 1 standalone task(s) to stop".into())
        }
    );
}
