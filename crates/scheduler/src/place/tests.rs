//! Unit tests of replica placement: the indexed and sampled selections against
//! the reference scan.

use model::wire::TransportProtocol::{Tcp, Udp};
use proptest::prelude::{ProptestConfig, any, prop, prop_assert_eq, proptest};
use proptest::strategy::Strategy as PropStrategy;

use super::*;
use crate::snapshot::InstanceView;
use crate::testing::{TaskRequestExt, instance, spec, task};

const STRATEGIES: &[&[&str]] = &[
    &[],
    &["binpack:memory"],
    &["binpack:cpu"],
    &["spread:attribute:ecs.availability-zone", "binpack:memory"],
    &[
        "spread:attribute:ecs.availability-zone",
        "spread:instanceId",
        "binpack:cpu",
    ],
    &["binpack:memory", "spread:attribute:ecs.availability-zone"],
    &["spread:instanceId", "spread:attribute:ecs.instance-type"],
    &[
        "spread:attribute:ecs.instance-type",
        "spread:attribute:ecs.availability-zone",
        "binpack:memory",
    ],
];

const CONSTRAINTS: &[&[&str]] = &[
    &[],
    &["distinctInstance"],
    &["memberOf:attribute:ecs.instance-type =~ t2.*"],
    &["memberOf:task:group != g1"],
];

fn arb_instance() -> impl PropStrategy<Value = InstanceView> {
    (
        0u32..3000,
        0u32..3000,
        0usize..4,
        0usize..3,
        any::<bool>(),
        0usize..3,
    )
        .prop_map(|(cpu, mem, az, ty, connected, tasks)| {
            let mut b = instance("x").cpu(cpu).memory(mem).dynamic_range(9000, 9004);
            if az < 3 {
                b = b.az(["a", "b", "c"][az]);
            }
            b = b.instance_type(["t2.micro", "t2.small", "m5.large"][ty]);
            if !connected {
                b = b.disconnected();
            }
            for t in 0..tasks {
                b = b.task(&format!("t{t}"), ["g0", "g1"][t % 2]);
            }
            b.build()
        })
}

fn arb_request() -> impl PropStrategy<Value = TaskRequest> {
    (
        0u32..800,
        0u32..800,
        0usize..3,
        0usize..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(cpu, mem, g, dynamic, udp, attr)| {
            let mut r = task(["g0", "g1", "g2"][g], cpu, mem);
            for _ in 0..dynamic {
                r = r.dynamic_port(if udp { Udp } else { Tcp });
            }
            if attr {
                r = r.requires("ecs.instance-type", None);
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)))]

    /// The indexed selection is an optimisation only: it must choose
    /// exactly what the reference scan chooses.
    #[test]
    fn indexed_selection_matches_linear_scan(
        instances in prop::collection::vec(arb_instance(), 0..12),
        requests in prop::collection::vec(arb_request(), 1..30),
        strategy in 0..STRATEGIES.len(),
        constraint in 0..CONSTRAINTS.len(),
        seed in any::<u64>(),
    ) {
        let snap = ClusterSnapshot {
            instances: instances
                .into_iter()
                .enumerate()
                .map(|(i, mut inst)| {
                    inst.id = format!("i{i}");
                    inst.arn = format!("arn:{i}");
                    inst
                })
                .collect(),
        };
        let s = spec(STRATEGIES[strategy], CONSTRAINTS[constraint]).expect("valid spec");
        prop_assert_eq!(
            place_impl(&snap, &requests, &s, seed, false),
            place_impl(&snap, &requests, &s, seed, true)
        );
        // The same with every request alike, where misses evict
        // instances from the index.
        let alike = vec![requests[0].clone(); requests.len() * 2];
        prop_assert_eq!(
            place_impl(&snap, &alike, &s, seed, false),
            place_impl(&snap, &alike, &s, seed, true)
        );
    }

    /// Sampled random selection picks differently from the scan, but
    /// with identical requests the number placed does not depend on
    /// which feasible instance each one took, so it must match.
    #[test]
    fn sampled_random_places_as_many_as_the_scan(
        instances in prop::collection::vec(arb_instance(), 0..12),
        request in arb_request(),
        count in 1usize..40,
        zones in any::<bool>(),
        constraint in 0..CONSTRAINTS.len(),
        seed in any::<u64>(),
    ) {
        let snap = ClusterSnapshot { instances };
        let chain: &[&str] = if zones {
            &["spread:attribute:ecs.availability-zone", "random"]
        } else {
            &["random"]
        };
        let s = spec(chain, CONSTRAINTS[constraint]).expect("valid spec");
        let requests = vec![request; count];
        let sampled = place_impl(&snap, &requests, &s, seed, false);
        let scanned = place_impl(&snap, &requests, &s, seed, true);
        prop_assert_eq!(sampled.placed_count(), scanned.placed_count());
    }
}
