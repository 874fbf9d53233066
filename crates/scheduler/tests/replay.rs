//! Time and randomness are inputs: a placement recorded as JSON (snapshot,
//! requests, spec, seed) replays to the same plan.

use model::wire::TransportProtocol::Tcp;
use scheduler::testing::{TaskRequestExt, instance, spec, task};
use scheduler::{ClusterSnapshot, PlacementSpec, Plan, TaskRequest, place};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Record {
    snapshot: ClusterSnapshot,
    requests: Vec<TaskRequest>,
    spec: PlacementSpec,
    seed: u64,
    plan: Plan,
}

#[test]
fn a_recorded_placement_replays_to_the_same_plan() {
    let snapshot = ClusterSnapshot {
        instances: (0..9)
            .map(|i| {
                instance(&format!("i{i}"))
                    .az(["a", "b", "c"][i % 3])
                    .instance_type(if i % 2 == 0 { "t2.micro" } else { "m5.large" })
                    .task(&format!("old{i}"), "service:db")
                    .build()
            })
            .collect(),
    };
    let spec = spec(
        &["spread:attribute:ecs.availability-zone", "random"],
        &["memberOf:attribute:ecs.instance-type =~ t2.* and task:group == service:db"],
    )
    .expect("spec");
    let requests = vec![task("service:web", 128, 256).dynamic_port(Tcp); 7];
    let plan = place(&snapshot, &requests, &spec, 99);
    let json = serde_json::to_string(&Record {
        snapshot,
        requests,
        spec,
        seed: 99,
        plan,
    })
    .expect("serializes");

    let record: Record = serde_json::from_str(&json).expect("deserializes");
    let replayed = place(
        &record.snapshot,
        &record.requests,
        &record.spec,
        record.seed,
    );
    assert_eq!(replayed, record.plan);
    assert_eq!(replayed.placed_count(), 7);
}

#[test]
fn a_recorded_spec_with_a_bad_expression_does_not_load() {
    let bad = r#"{"strategies":[],"constraints":[{"MemberOf":"attribute:a = b"}]}"#;
    let err = serde_json::from_str::<PlacementSpec>(bad)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("did you mean `==`"), "{err}");
}
