//! Property tests: whatever the cluster, requests and strategies, a plan
//! never over-commits CPU, memory or host ports on any instance (the
//! harness's applier re-checks every placement against the state left by
//! the earlier ones, as the control plane's plan applier will).

use model::wire::TransportProtocol::{Tcp, Udp};
use proptest::prelude::*;
use scheduler::testing::{Harness, TaskRequestExt, instance, spec, task};
use scheduler::{InstanceStatus, InstanceView, Outcome, TaskRequest};

const STRATEGIES: &[&[&str]] = &[
    &[],
    &["binpack:memory"],
    &["binpack:cpu", "random"],
    &["spread:attribute:ecs.availability-zone", "binpack:memory"],
    &["spread:instanceId"],
    &["random"],
    &["spread:attribute:ecs.availability-zone", "random"],
];

const CONSTRAINTS: &[&[&str]] = &[
    &[],
    &["distinctInstance"],
    &["memberOf:attribute:ecs.instance-type =~ t2.*"],
    &["memberOf:task:group != g1"],
];

fn arb_instance() -> impl Strategy<Value = InstanceView> {
    (
        0u32..4096,
        0u32..4096,
        0usize..3,
        0usize..2,
        prop::collection::vec(8000u16..8006, 0..3),
        0u8..10,
    )
        .prop_map(|(cpu, mem, az, ty, used, state)| {
            let mut b = instance("x")
                .cpu(cpu)
                .memory(mem)
                .az(["a", "b", "c"][az])
                .instance_type(["t2.micro", "m5.large"][ty])
                .dynamic_range(8003, 8010);
            for p in used {
                b = b.used_tcp(p);
            }
            b = match state {
                0 => b.status(InstanceStatus::Draining),
                1 => b.disconnected(),
                _ => b,
            };
            b.build()
        })
}

fn arb_request() -> impl Strategy<Value = TaskRequest> {
    (
        0u32..1500,
        0u32..1500,
        0usize..3,
        prop::option::of(8000u16..8006),
        0usize..3,
        any::<bool>(),
    )
        .prop_map(|(cpu, mem, g, static_port, dynamic, udp)| {
            let mut r = task(["g0", "g1", "g2"][g], cpu, mem);
            if let Some(p) = static_port {
                r = r.static_port(p, if udp { Udp } else { Tcp });
            }
            for _ in 0..dynamic {
                r = r.dynamic_port(if udp { Udp } else { Tcp });
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

    #[test]
    fn never_over_commits(
        instances in prop::collection::vec(arb_instance(), 0..8),
        requests in prop::collection::vec(arb_request(), 1..40),
        strategy in 0..STRATEGIES.len(),
        constraint in 0..CONSTRAINTS.len(),
        seed in any::<u64>(),
    ) {
        let instances: Vec<InstanceView> = instances
            .into_iter()
            .enumerate()
            .map(|(i, mut inst)| {
                inst.id = format!("i{i}");
                inst.arn = scheduler::testing::instance_arn(&inst.id);
                inst
            })
            .collect();
        let mut h = Harness::new(instances);
        let s = spec(STRATEGIES[strategy], CONSTRAINTS[constraint]).expect("valid spec");
        let plan = h.place(&requests, &s, seed).map_err(|e| TestCaseError::fail(e.to_string()))?.clone();
        prop_assert_eq!(plan.outcomes.len(), requests.len());
        // distinctInstance holds across the whole call.
        if CONSTRAINTS[constraint] == ["distinctInstance"] {
            for inst in &h.snapshot.instances {
                for g in ["g0", "g1", "g2"] {
                    prop_assert!(inst.tasks.iter().filter(|t| t.group == g).count() <= 1);
                }
            }
        }
        // A failure means no instance could have taken the request then;
        // in particular the plan is the same when replayed.
        for o in &plan.outcomes {
            if let Outcome::Placed(p) = o {
                prop_assert!(h.snapshot.instances[p.instance_index].status == InstanceStatus::Active);
            }
        }
    }

    #[test]
    fn placing_is_deterministic(
        instances in prop::collection::vec(arb_instance(), 1..6),
        requests in prop::collection::vec(arb_request(), 1..20),
        strategy in 0..STRATEGIES.len(),
        seed in any::<u64>(),
    ) {
        let h = Harness::new(instances);
        let s = spec(STRATEGIES[strategy], &[]).expect("valid spec");
        prop_assert_eq!(
            scheduler::place(&h.snapshot, &requests, &s, seed),
            scheduler::place(&h.snapshot, &requests, &s, seed)
        );
    }
}
