//! Placement throughput: `cargo bench -p scheduler --bench placement`.
//!
//! Places tasks with `spread(attribute:ecs.availability-zone)` then
//! `binpack(memory)` and a `memberOf(attribute:ecs.instance-type =~ t2.*)`
//! constraint on simulated clusters of 1k, 10k and 50k instances, in one
//! `place` call per run (single thread), and prints a table. Pass instance
//! counts as arguments to run other sizes, e.g. `-- 10000`.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use scheduler::snapshot::{HostPorts, PortRange};
use scheduler::testing::spec;
use scheduler::{ClusterSnapshot, InstanceStatus, InstanceView, Outcome, TaskRequest, place};

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

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let runs: Vec<(usize, usize)> = if args.is_empty() {
        vec![(1_000, 10_000), (10_000, 100_000), (50_000, 100_000)]
    } else {
        args.iter().map(|&n| (n, 100_000.min(n * 10))).collect()
    };
    let s = spec(
        &["spread:attribute:ecs.availability-zone", "binpack:memory"],
        &["memberOf:attribute:ecs.instance-type =~ t2.*"],
    )
    .expect("valid spec");
    println!("| instances | tasks | placed | total (s) | placements/s | µs/placement |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (n, tasks) in runs {
        let snap = cluster(n);
        let requests = vec![TaskRequest::new("service:bench", 256, 512); tasks];
        let start = Instant::now();
        let plan = black_box(place(black_box(&snap), &requests, &s, 42));
        let secs = start.elapsed().as_secs_f64();
        let placed = plan
            .outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Placed(_)))
            .count();
        println!(
            "| {n} | {tasks} | {placed} | {secs:.3} | {:.0} | {:.2} |",
            tasks as f64 / secs,
            secs * 1e6 / tasks as f64
        );
    }
}
