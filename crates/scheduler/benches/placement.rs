//! Placement throughput: `cargo bench -p scheduler --bench placement`.
//!
//! Places tasks with `spread(attribute:ecs.availability-zone)` then
//! `binpack(memory)` and a `memberOf(attribute:ecs.instance-type =~ t2.*)`
//! constraint on simulated clusters of 1k, 10k and 50k instances, in one
//! `place` call per run (single thread), and prints a table. Pass instance
//! counts as arguments to run other sizes, e.g. `-- 10000`, or
//! `-- setup 10000` to time 100 one-task calls (the per-call setup cost).
//!
//! Rows: the indexed selection (the goal: ≥ 10,000 placements/s on 10k
//! instances), the per-call setup cost, the O(instances) reference scan
//! (`place_reference`, fewer tasks), spread + random (sampled), and
//! binpack + distinctInstance filling every matching instance once.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use scheduler::place::place_reference;
use scheduler::snapshot::{HostPorts, PortRange};
use scheduler::testing::spec;
use scheduler::{
    ClusterSnapshot, InstanceStatus, InstanceView, Outcome, PlacementSpec, Plan, TaskRequest, place,
};

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const TYPES: [&str; 4] = ["t2.large", "t2.xlarge", "t2.2xlarge", "m5.large"];

fn cluster(n: usize) -> ClusterSnapshot {
    let instances = (0..n)
        .map(|i| {
            let mut attributes = BTreeMap::new();
            attributes.insert("ecs.availability-zone".into(), Some(ZONES[i % 3].into()));
            attributes.insert("ecs.instance-type".into(), Some(TYPES[(i / 3) % 4].into()));
            attributes.insert("ecs.os-type".into(), Some("linux".into()));
            let id = format!("{i:08x}");
            InstanceView {
                arn: format!("arn:aws:ecs:us-east-1:123456789012:container-instance/bench/{id}"),
                ec2_instance_id: Some(format!("i-{id}")),
                id,
                status: InstanceStatus::Active,
                agent_connected: true,
                agent_version: Some("1.80.0".into()),
                registered_at: Some(1_700_000_000),
                attributes,
                remaining_cpu: 8192,
                // Some variety so that binpack has something to rank.
                remaining_memory: 16384 - 512 * (i % 7) as u32,
                used_ports: HostPorts::default(),
                reserved_ports: HostPorts::default(),
                dynamic_port_range: PortRange::ECS_DEFAULT,
                tasks: Vec::new(),
            }
        })
        .collect();
    ClusterSnapshot { instances }
}

type PlaceFn = fn(&ClusterSnapshot, &[TaskRequest], &PlacementSpec, u64) -> Plan;

/// Runs one `place` call and prints a table row.
fn row(label: &str, f: PlaceFn, snap: &ClusterSnapshot, tasks: usize, s: &PlacementSpec) {
    let requests = vec![TaskRequest::new("service:bench", 256, 512); tasks];
    let start = Instant::now();
    let plan = black_box(f(black_box(snap), &requests, s, 42));
    let secs = start.elapsed().as_secs_f64();
    let placed = plan
        .outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Placed(_)))
        .count();
    println!(
        "| {label} | {} | {tasks} | {placed} | {secs:.3} | {:.0} | {:.2} |",
        snap.instances.len(),
        tasks as f64 / secs,
        secs * 1e6 / tasks as f64
    );
}

fn main() {
    // `-- setup N`: profile the per-call setup (100 one-task calls on N instances).
    if let Some(n) = std::env::args()
        .nth(2)
        .filter(|_| std::env::args().nth(1).as_deref() == Some("setup"))
    {
        let n: usize = n.parse().unwrap_or(10_000);
        let snap = cluster(n);
        let constraints: &[&str] = if std::env::args().nth(3).is_some() {
            &[]
        } else {
            &["memberOf:attribute:ecs.instance-type =~ t2.*"]
        };
        let s = spec(
            &["spread:attribute:ecs.availability-zone", "binpack:memory"],
            constraints,
        )
        .expect("valid spec");
        let req = [TaskRequest::new("service:bench", 256, 512)];
        let start = Instant::now();
        for seed in 0..100 {
            black_box(place(&snap, &req, &s, seed));
        }
        println!(
            "setup: {:.2} ms per call",
            start.elapsed().as_secs_f64() * 10.0
        );
        return;
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1_000, 10_000, 50_000]
    } else {
        args
    };
    let spread_binpack = spec(
        &["spread:attribute:ecs.availability-zone", "binpack:memory"],
        &["memberOf:attribute:ecs.instance-type =~ t2.*"],
    )
    .expect("valid spec");
    let spread_random = spec(
        &["spread:attribute:ecs.availability-zone", "random"],
        &["memberOf:attribute:ecs.instance-type =~ t2.*"],
    )
    .expect("valid spec");
    let distinct = spec(
        &["binpack:memory"],
        &[
            "distinctInstance",
            "memberOf:attribute:ecs.instance-type =~ t2.*",
        ],
    )
    .expect("valid spec");
    println!("| workload | instances | tasks | placed | total (s) | placements/s | µs/placement |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for &n in &sizes {
        let snap = cluster(n);
        let tasks = 100_000.min(n * 10);
        row(
            "spread(az)+binpack(memory), indexed",
            place,
            &snap,
            tasks,
            &spread_binpack,
        );
        row(
            "one task per call (setup cost)",
            place,
            &snap,
            1,
            &spread_binpack,
        );
        // The O(instances) reference scan: fewer tasks, it is slow.
        let few = (2_000_000 / n).clamp(100, tasks);
        row(
            "spread(az)+binpack(memory), reference scan",
            place_reference,
            &snap,
            few,
            &spread_binpack,
        );
        row(
            "spread(az)+random, sampled",
            place,
            &snap,
            tasks,
            &spread_random,
        );
        // One task per matching instance (3/4 of them).
        row(
            "binpack(memory)+distinctInstance",
            place,
            &snap,
            n * 3 / 4,
            &distinct,
        );
    }
}
