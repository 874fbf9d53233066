//! Scheduler scenarios driven through the Nomad-style `Harness`: seed mock
//! instances, feed requests, assert on the plan and on the resulting state.

use std::collections::BTreeSet;

use model::wire::TransportProtocol::{Tcp, Udp};
use scheduler::testing::{Harness, TaskRequestExt, instance, instance_arn, spec, task};
use scheduler::{
    FailureReason, InstanceStatus, Outcome, PlacementFailure, PlacementSpec, TaskRequest,
    choose_tasks_to_stop,
};

fn no_strategy() -> PlacementSpec {
    PlacementSpec::default()
}

fn reason(outcome: &Outcome) -> FailureReason {
    match outcome {
        Outcome::Failed(f) => f.reason(),
        Outcome::Placed(p) => panic!("unexpectedly placed on {}", p.instance_arn),
    }
}

/// The failure of an outcome that must have failed.
fn failure(outcome: &Outcome) -> &PlacementFailure {
    match outcome {
        Outcome::Failed(f) => f,
        Outcome::Placed(_) => panic!("placed"),
    }
}

/// A failure's rejections: (reason, how many instances failed first on it) each.
fn rejections(f: &PlacementFailure) -> Vec<(FailureReason, usize)> {
    f.rejections
        .iter()
        .map(|r| (r.reason, r.instances))
        .collect()
}

/// Places `copies` of `request` under the spec of `strategies` and `constraints` with
/// `seed`; the plan must apply. Returns the spec.
fn place_copies(
    h: &mut Harness,
    copies: usize,
    request: &TaskRequest,
    strategies: &[&str],
    constraints: &[&str],
    seed: u64,
) -> PlacementSpec {
    let s = spec(strategies, constraints).expect("spec");
    h.place(&vec![request.clone(); copies], &s, seed)
        .expect("applies");
    s
}

fn three_zones(per_zone: usize) -> Harness {
    let mut instances = Vec::new();
    for (z, zone) in ["us-east-1a", "us-east-1b", "us-east-1c"]
        .iter()
        .enumerate()
    {
        for k in 0..per_zone {
            instances.push(instance(&format!("{z}-{k}")).az(zone).build());
        }
    }
    Harness::new(instances)
}

#[test]
fn binpack_memory_fills_one_instance_first() {
    let mut h = Harness::new((0..3).map(|i| instance(&format!("i{i}")).memory(1024).build()));
    let s = spec(&["binpack:memory"], &[]).expect("spec");
    let plan = h
        .place(&vec![task("g", 10, 256); 5], &s, 7)
        .expect("applies");
    assert_eq!(plan.placed_count(), 5);
    let counts: Vec<usize> = h.tasks_per_instance("g").into_values().collect();
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    // 4 tasks fill the first instance, the fifth goes to a second one.
    assert_eq!(sorted, vec![0, 1, 4], "{counts:?}");
}

#[test]
fn binpack_prefers_the_fullest_feasible_instance() {
    let mut h = Harness::new([
        instance("big").memory(4096).build(),
        instance("small").memory(600).build(),
        instance("tiny").memory(100).build(),
    ]);
    let s = spec(&["binpack:memory"], &[]).expect("spec");
    h.place(&[task("g", 1, 512)], &s, 1).expect("applies");
    assert_eq!(h.last_choices(), vec![Some("small".to_string())]);
    h.place(&[task("g", 1, 512)], &s, 1).expect("applies");
    assert_eq!(h.last_choices(), vec![Some("big".to_string())]);
}

#[test]
fn binpack_cpu_uses_cpu() {
    let mut h = Harness::new([
        instance("a").cpu(4096).memory(1000).build(),
        instance("b").cpu(1024).memory(8000).build(),
    ]);
    let s = spec(&["binpack:cpu"], &[]).expect("spec");
    h.place(&[task("g", 512, 100)], &s, 1).expect("applies");
    assert_eq!(h.last_choices(), vec![Some("b".to_string())]);
}

#[test]
fn spread_availability_zone_balances_zones_then_binpacks_within() {
    let mut h = three_zones(3);
    let s = spec(
        &["spread:attribute:ecs.availability-zone", "binpack:memory"],
        &[],
    )
    .expect("spec");
    let plan = h
        .place(&vec![task("service:web", 10, 512); 9], &s, 3)
        .expect("applies");
    assert_eq!(plan.placed_count(), 9);
    let per_zone = h.tasks_per_attribute("service:web", "ecs.availability-zone");
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![3, 3, 3]
    );
    // Within each zone binpack put all three tasks on one instance.
    let per_instance = h.tasks_per_instance("service:web");
    let used: Vec<usize> = per_instance.values().copied().filter(|c| *c > 0).collect();
    assert_eq!(used, vec![3, 3, 3], "{per_instance:?}");
}

#[test]
fn spread_counts_existing_tasks_of_the_group() {
    let mut h = Harness::new([
        instance("a1")
            .az("a")
            .task("t1", "service:web")
            .task("t2", "service:web")
            .build(),
        instance("b1").az("b").task("t3", "service:other").build(),
        instance("c1").az("c").task("t4", "service:web").build(),
    ]);
    let s = spec(&["spread:attribute:ecs.availability-zone"], &[]).expect("spec");
    h.place(
        &[task("service:web", 1, 1), task("service:web", 1, 1)],
        &s,
        9,
    )
    .expect("applies");
    assert_eq!(
        h.last_choices(),
        vec![Some("b1".to_string()), Some("b1".to_string())]
    );
    let per_zone = h.tasks_per_attribute("service:web", "ecs.availability-zone");
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
}

#[test]
fn spread_instance_id_puts_one_task_per_instance_before_doubling_up() {
    let mut h = Harness::new((0..4).map(|i| instance(&format!("i{i}")).build()));
    let s = spec(&["spread:instanceId"], &[]).expect("spec");
    h.place(&vec![task("g", 1, 1); 6], &s, 11).expect("applies");
    let mut counts: Vec<usize> = h.tasks_per_instance("g").into_values().collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![1, 1, 2, 2]);
    let first_four: BTreeSet<_> = h.last_choices().into_iter().take(4).collect();
    assert_eq!(first_four.len(), 4);
}

#[test]
fn distinct_instance_never_doubles_up_and_fails_when_exhausted() {
    let mut h = Harness::new([
        instance("a").build(),
        instance("b").build(),
        instance("c").task("old", "service:db").build(),
    ]);
    let s = spec(&["binpack:memory"], &["distinctInstance"]).expect("spec");
    let plan = h
        .place(&vec![task("service:db", 1, 1); 3], &s, 5)
        .expect("applies");
    assert_eq!(plan.placed_count(), 2);
    assert_eq!(reason(&plan.outcomes[2]), FailureReason::DistinctInstance);
    assert_eq!(
        FailureReason::DistinctInstance.as_str(),
        "DistinctInstance placement constraint unsatisfied."
    );
    let per = h.tasks_per_instance("service:db");
    assert!(per.values().all(|c| *c == 1), "{per:?}");
    // Another group is not affected.
    let plan = h
        .place(&[task("service:web", 1, 1)], &s, 5)
        .expect("applies");
    assert_eq!(plan.placed_count(), 1);
}

#[test]
fn member_of_instance_type_pattern() {
    let mut h = Harness::new([
        instance("t2a").instance_type("t2.micro").build(),
        instance("m5")
            .instance_type("m5.large")
            .memory(100_000)
            .build(),
        instance("t2b").instance_type("t2.small").build(),
    ]);
    let s = place_copies(
        &mut h,
        8,
        &task("g", 1, 1000),
        &["binpack:memory"],
        &["memberOf:attribute:ecs.instance-type =~ t2.*"],
        2,
    );
    let per = h.tasks_per_instance("g");
    assert_eq!(per["m5"], 0);
    assert_eq!(per["t2a"] + per["t2b"], 8);
    // Nothing fits on t2s any more: the closest instances fail on memory,
    // m5 fails on the constraint.
    let plan = h.place(&[task("g", 1, 1000)], &s, 2).expect("applies");
    let f = failure(&plan.outcomes[0]);
    assert_eq!(f.reason(), FailureReason::Memory);
    assert_eq!(
        rejections(f),
        vec![(FailureReason::MemberOf, 1), (FailureReason::Memory, 2)]
    );
    let wire = f.to_wire();
    assert_eq!(wire.len(), 2);
    assert_eq!(
        wire[0].reason.as_deref(),
        Some("MemberOf placement constraint unsatisfied.")
    );
    assert_eq!(wire[0].arn.as_deref(), Some(instance_arn("m5").as_str()));
    assert_eq!(wire[1].reason.as_deref(), Some("RESOURCE:MEMORY"));
    assert!(
        f.message()
            .contains("encountered error \"RESOURCE:MEMORY\""),
        "{}",
        f.message()
    );
}

#[test]
fn member_of_with_compound_expression() {
    let mut h = Harness::new([
        instance("a")
            .az("us-east-1a")
            .instance_type("t2.micro")
            .build(),
        instance("d")
            .az("us-east-1d")
            .instance_type("t2.micro")
            .build(),
        instance("g")
            .az("us-east-1a")
            .instance_type("g2.2xlarge")
            .build(),
    ]);
    place_copies(
        &mut h,
        3,
        &task("g", 1, 1),
        &[],
        &[
            "memberOf:attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d",
        ],
        2,
    );
    assert_eq!(h.last_choices(), vec![Some("a".to_string()); 3]);
}

#[test]
fn task_group_affinity_and_anti_affinity() {
    let mut h = Harness::new([
        instance("db-host").task("t1", "database").build(),
        instance("free1").build(),
        instance("free2").build(),
    ]);
    let near = spec(&[], &["memberOf:task:group == database"]).expect("spec");
    h.place(&vec![task("cache", 1, 1); 2], &near, 1)
        .expect("applies");
    assert_eq!(h.last_choices(), vec![Some("db-host".to_string()); 2]);

    place_copies(
        &mut h,
        4,
        &task("web", 1, 1),
        &["spread:instanceId"],
        &["memberOf:not(task:group == database)"],
        1,
    );
    assert_eq!(h.tasks_per_instance("web")["db-host"], 0);

    // Tasks placed earlier in the same call count: the second request
    // follows the first one's group.
    let follow = spec(&[], &["memberOf:task:group == leader"]).expect("spec");
    let plan = h
        .place(&[task("leader", 1, 1), task("follower", 1, 1)], &follow, 1)
        .expect("applies");
    assert_eq!(reason(&plan.outcomes[0]), FailureReason::MemberOf);
    assert_eq!(reason(&plan.outcomes[1]), FailureReason::MemberOf);
    let plan = h
        .place(&[task("leader", 1, 1)], &spec(&[], &[]).expect("spec"), 1)
        .expect("applies");
    let leader = plan.outcomes[0].clone();
    let plan = h
        .place(&[task("follower", 1, 1)], &follow, 1)
        .expect("applies");
    match (&leader, &plan.outcomes[0]) {
        (Outcome::Placed(l), Outcome::Placed(f)) => assert_eq!(l.instance_index, f.instance_index),
        other => panic!("{other:?}"),
    }
}

#[test]
fn static_port_conflicts_fail_with_resource_ports() {
    let mut h = Harness::new([
        instance("a").used_tcp(80).build(),
        instance("b").reserved_tcp(80).build(),
    ]);
    let plan = h
        .place(&[task("web", 1, 1).static_port(80, Tcp)], &no_strategy(), 1)
        .expect("applies");
    assert_eq!(reason(&plan.outcomes[0]), FailureReason::Ports);
    // UDP 80 is free, and a fresh instance takes TCP 80 exactly once.
    h.add_instance(instance("c").build());
    let plan = h
        .place(
            &[
                task("dns", 1, 1).static_port(80, Udp),
                task("web", 1, 1).static_port(80, Tcp),
                task("web", 1, 1).static_port(80, Tcp),
            ],
            &no_strategy(),
            1,
        )
        .expect("applies");
    assert!(matches!(plan.outcomes[0], Outcome::Placed(_)));
    match &plan.outcomes[1] {
        Outcome::Placed(p) => assert_eq!(p.instance_arn, instance_arn("c")),
        other => panic!("{other:?}"),
    }
    assert_eq!(reason(&plan.outcomes[2]), FailureReason::Ports);
}

#[test]
fn udp_port_conflict_reports_ports_udp() {
    let mut h = Harness::new([instance("a").used_udp(53).build()]);
    let plan = h
        .place(&[task("dns", 1, 1).static_port(53, Udp)], &no_strategy(), 1)
        .expect("applies");
    assert_eq!(reason(&plan.outcomes[0]), FailureReason::PortsUdp);
    assert_eq!(FailureReason::PortsUdp.as_str(), "RESOURCE:PORTS_UDP");
}

/// Instance `a` with the dynamic port range 50000–50009, TCP 50000 already in use.
fn one_instance_with_dynamic_ports() -> Harness {
    Harness::new([instance("a")
        .dynamic_range(50000, 50009)
        .used_tcp(50000)
        .build()])
}

#[test]
fn dynamic_ports_are_unique_per_instance_and_in_range() {
    let mut h = one_instance_with_dynamic_ports();
    let req = task("web", 1, 1)
        .dynamic_port(Tcp)
        .dynamic_port(Tcp)
        .static_port(50001, Tcp);
    // The first task takes static 50001 and the two lowest free dynamic
    // ports (50002, 50003, skipping used 50000 and its own static port);
    // the second conflicts on the static port.
    let plan = h.place(&vec![req; 4], &no_strategy(), 1).expect("applies");
    assert_eq!(plan.placed_count(), 1);
    match &plan.outcomes[0] {
        Outcome::Placed(p) => assert_eq!(
            p.dynamic_ports.iter().map(|hp| hp.port).collect::<Vec<_>>(),
            vec![50002, 50003]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(reason(&plan.outcomes[1]), FailureReason::Ports);

    let mut h = one_instance_with_dynamic_ports();
    let req = task("web", 1, 1)
        .dynamic_port(Tcp)
        .dynamic_port(Tcp)
        .dynamic_port(Udp);
    let plan = h.place(&vec![req; 5], &no_strategy(), 1).expect("applies");
    assert_eq!(plan.placed_count(), 4, "9 free TCP ports / 2 per task");
    assert_eq!(reason(&plan.outcomes[4]), FailureReason::Ports);
    let mut tcp = BTreeSet::new();
    for (_, p) in plan.placed() {
        assert_eq!(p.dynamic_ports.len(), 3);
        for hp in &p.dynamic_ports {
            assert!((50000..=50009).contains(&hp.port));
            if hp.protocol == Tcp {
                assert!(tcp.insert(hp.port), "port {} assigned twice", hp.port);
            }
        }
    }
    assert!(!tcp.contains(&50000));
}

#[test]
fn draining_disconnected_and_inactive_instances_are_never_chosen() {
    let mut h = Harness::new([
        instance("draining")
            .status(InstanceStatus::Draining)
            .memory(100_000)
            .build(),
        instance("inactive")
            .status(InstanceStatus::Inactive)
            .memory(100_000)
            .build(),
        instance("gone").disconnected().memory(100_000).build(),
        instance("ok").memory(1024).build(),
    ]);
    let s = spec(&["spread:instanceId"], &[]).expect("spec");
    let plan = h
        .place(&vec![task("g", 1, 512); 3], &s, 1)
        .expect("applies")
        .clone();
    assert_eq!(
        h.last_choices()[..2],
        [Some("ok".to_string()), Some("ok".to_string())]
    );
    // The third request fails: the closest is "ok" (memory); the
    // disconnected one fails on AGENT; DRAINING/INACTIVE are not considered.
    let f = failure(&plan.outcomes[2]);
    assert_eq!(
        rejections(f),
        vec![(FailureReason::Agent, 1), (FailureReason::Memory, 1)]
    );
    assert_eq!(f.closest, (Some(instance_arn("ok")), FailureReason::Memory));
}

#[test]
fn no_active_instances() {
    let mut h = Harness::new([instance("d").status(InstanceStatus::Draining).build()]);
    let plan = h
        .place(&[task("g", 1, 1)], &no_strategy(), 1)
        .expect("applies");
    assert_eq!(
        reason(&plan.outcomes[0]),
        FailureReason::NoContainerInstances
    );
    let f = failure(&plan.outcomes[0]);
    assert_eq!(f.to_wire()[0].arn, None);
    let mut empty = Harness::new([]);
    let plan = empty
        .place(&[task("g", 1, 1)], &no_strategy(), 1)
        .expect("applies");
    assert_eq!(
        reason(&plan.outcomes[0]),
        FailureReason::NoContainerInstances
    );
}

#[test]
fn resource_failures_name_cpu_or_memory() {
    let mut h = Harness::new([instance("a").cpu(256).memory(512).build()]);
    let plan = h
        .place(
            &[
                task("g", 512, 128),
                task("g", 128, 1024),
                task("g", 128, 128),
            ],
            &no_strategy(),
            1,
        )
        .expect("applies");
    assert_eq!(reason(&plan.outcomes[0]), FailureReason::Cpu);
    assert_eq!(reason(&plan.outcomes[1]), FailureReason::Memory);
    assert!(matches!(plan.outcomes[2], Outcome::Placed(_)));
    assert_eq!(FailureReason::Cpu.as_str(), "RESOURCE:CPU");
    assert_eq!(FailureReason::Memory.as_str(), "RESOURCE:MEMORY");
}

#[test]
fn required_attributes_fail_with_attribute() {
    let mut h = Harness::new([
        instance("a").build(),
        instance("b").flag("com.example.gpu").build(),
    ]);
    let req = task("g", 1, 1).requires("com.example.gpu", None);
    h.place(std::slice::from_ref(&req), &no_strategy(), 1)
        .expect("applies");
    assert_eq!(h.last_choices(), vec![Some("b".to_string())]);
    let req = task("g", 1, 1).requires("ecs.os-type", Some("windows"));
    let plan = h.place(&[req], &no_strategy(), 1).expect("applies");
    assert_eq!(reason(&plan.outcomes[0]), FailureReason::Attribute);
}

#[test]
fn same_seed_same_plan_and_random_depends_on_seed() {
    let h = three_zones(20);
    let s = spec(&["random"], &[]).expect("spec");
    let reqs = vec![task("g", 1, 1); 30];
    let a = scheduler::place(&h.snapshot, &reqs, &s, 42);
    let b = scheduler::place(&h.snapshot, &reqs, &s, 42);
    let c = scheduler::place(&h.snapshot, &reqs, &s, 43);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Random actually spreads: 30 picks over 60 instances hit many.
    let distinct: BTreeSet<_> = a.placed().map(|(_, p)| p.instance_index).collect();
    assert!(distinct.len() > 15, "{}", distinct.len());
    // Deterministic strategies are deterministic too.
    let s = spec(
        &["spread:attribute:ecs.availability-zone", "binpack:memory"],
        &[],
    )
    .expect("spec");
    assert_eq!(
        scheduler::place(&h.snapshot, &reqs, &s, 1),
        scheduler::place(&h.snapshot, &reqs, &s, 1)
    );
}

#[test]
fn daemon_places_one_per_matching_instance_and_follows_new_instances() {
    let mut h = Harness::new([
        instance("a").build(),
        instance("b").task("old", "service:agent").build(),
        instance("win").attr("ecs.os-type", "windows").build(),
        instance("drain").status(InstanceStatus::Draining).build(),
    ]);
    let s = spec(&[], &["memberOf:attribute:ecs.os-type == linux"]).expect("spec");
    let daemon = task("service:agent", 128, 128);
    let plan = h.place_daemon(&daemon, &s).expect("applies");
    assert_eq!(plan.placements.len(), 1);
    assert_eq!(plan.placements[0].instance_arn, instance_arn("a"));
    assert!(plan.failures.is_empty());
    // Idempotent: nothing more to do.
    assert!(
        h.place_daemon(&daemon, &s)
            .expect("applies")
            .placements
            .is_empty()
    );
    // A new instance gets one.
    h.add_instance(instance("c").build());
    let plan = h.place_daemon(&daemon, &s).expect("applies");
    assert_eq!(plan.placements.len(), 1);
    assert_eq!(plan.placements[0].instance_arn, instance_arn("c"));
    let per = h.tasks_per_instance("service:agent");
    assert_eq!(
        (per["a"], per["b"], per["c"], per["win"], per["drain"]),
        (1, 1, 1, 0, 0)
    );
}

#[test]
fn daemon_reports_instances_that_cannot_take_it() {
    let mut h = Harness::new([
        instance("full").memory(64).build(),
        instance("off").disconnected().build(),
        instance("ok").build(),
    ]);
    let plan = h
        .place_daemon(&task("service:agent", 128, 128), &no_strategy())
        .expect("applies");
    assert_eq!(plan.placements.len(), 1);
    let failures: Vec<_> = plan
        .failures
        .iter()
        .map(|f| (f.instance_arn.clone(), f.reason))
        .collect();
    assert_eq!(
        failures,
        vec![
            (instance_arn("full"), FailureReason::Memory),
            (instance_arn("off"), FailureReason::Agent)
        ]
    );
}

#[test]
fn daemons_placed_before_replicas_get_first_claim() {
    let mut h = Harness::new([
        instance("a").memory(1024).build(),
        instance("b").memory(1024).build(),
    ]);
    let daemon = task("service:log", 1, 256);
    h.place_daemon(&daemon, &no_strategy()).expect("applies");
    let s = spec(&["binpack:memory"], &[]).expect("spec");
    let plan = h
        .place(&vec![task("service:web", 1, 256); 7], &s, 1)
        .expect("applies");
    assert_eq!(plan.placed_count(), 6);
    assert_eq!(reason(&plan.outcomes[6]), FailureReason::Memory);
}

#[test]
fn scale_in_keeps_the_spread_balanced() {
    let mut h = three_zones(2);
    let s = spec(
        &[
            "spread:attribute:ecs.availability-zone",
            "spread:instanceId",
        ],
        &[],
    )
    .expect("spec");
    h.place(&vec![task("service:web", 1, 1); 12], &s, 1)
        .expect("applies");
    let tasks: Vec<String> = h
        .snapshot
        .instances
        .iter()
        .flat_map(|i| i.tasks.iter().map(|t| t.arn.clone()))
        .collect();
    let stop = choose_tasks_to_stop(&h.snapshot, &tasks, 6, &s, &BTreeSet::new(), 3);
    assert_eq!(stop.len(), 6);
    for inst in &mut h.snapshot.instances {
        inst.tasks.retain(|t| !stop.contains(&t.arn));
    }
    let per_zone = h.tasks_per_attribute("service:web", "ecs.availability-zone");
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    let per_instance = h.tasks_per_instance("service:web");
    assert!(per_instance.values().all(|c| *c == 1), "{per_instance:?}");
}

#[test]
fn scale_in_never_picks_protected_tasks_and_prefers_unhealthy_instances() {
    let h = Harness::new([
        instance("a")
            .task("a1", "s")
            .task("a2", "s")
            .task("a3", "s")
            .build(),
        instance("b").task("b1", "s").build(),
        instance("d")
            .status(InstanceStatus::Draining)
            .task("d1", "s")
            .build(),
    ]);
    let s = spec(&["spread:instanceId"], &[]).expect("spec");
    let all: Vec<String> = ["a1", "a2", "a3", "b1", "d1"].map(String::from).to_vec();
    let protected: BTreeSet<String> = ["a1", "a2"].map(String::from).into();
    let stop = choose_tasks_to_stop(&h.snapshot, &all, 10, &s, &protected, 1);
    assert_eq!(stop.len(), 3);
    assert_eq!(stop[0], "d1");
    assert_eq!(stop[1], "a3", "fullest instance next");
    assert!(!stop.iter().any(|t| protected.contains(t)));
    assert_eq!(
        choose_tasks_to_stop(&h.snapshot, &all, 0, &s, &protected, 1),
        Vec::<String>::new()
    );
}

#[test]
fn scale_in_with_binpack_empties_the_least_packed_instance() {
    let h = Harness::new([
        instance("packed")
            .memory(100)
            .task("p1", "s")
            .task("p2", "s")
            .build(),
        instance("loose").memory(3000).task("l1", "s").build(),
    ]);
    let s = spec(&["binpack:memory"], &[]).expect("spec");
    let all: Vec<String> = ["p1", "p2", "l1"].map(String::from).to_vec();
    let stop = choose_tasks_to_stop(&h.snapshot, &all, 1, &s, &BTreeSet::new(), 1);
    assert_eq!(stop, vec!["l1".to_string()]);
}

#[test]
fn spread_then_random_balances_zones_and_varies_instances() {
    let mut h = three_zones(10);
    let s = spec(&["spread:attribute:ecs.availability-zone", "random"], &[]).expect("spec");
    h.place(&vec![task("g", 1, 1); 12], &s, 5).expect("applies");
    let per_zone = h.tasks_per_attribute("g", "ecs.availability-zone");
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![4, 4, 4]
    );
    let used = h
        .tasks_per_instance("g")
        .values()
        .filter(|c| **c > 0)
        .count();
    assert!(used >= 8, "random picked only {used} instances");
    // Infeasible instances are skipped even when most of a zone is full.
    let mut h = Harness::new((0..30).map(|i| {
        let b = instance(&format!("i{i}")).az(["a", "b", "c"][i % 3]);
        if i < 27 {
            b.memory(0).build()
        } else {
            b.build()
        }
    }));
    let plan = h.place(&vec![task("g", 1, 1); 6], &s, 5).expect("applies");
    assert_eq!(plan.placed_count(), 6);
    let per_zone = h.tasks_per_attribute("g", "ecs.availability-zone");
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
}
