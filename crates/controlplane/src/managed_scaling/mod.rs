//! Managed scaling of capacity providers (ECS's *cluster auto scaling*), as a pure
//! decision: how many instances a provider's node group needs, and which step gets it
//! there. The IO (running the operator's scaling hook, a timer) lives in `flotilla
//! server` (`cmd/capacity_scaling.rs`); the state it reads is gathered by [`observe`],
//! and its state transitions are the pure writes of [`writes`].
//!
//! For each provider with `managedScaling.status` ENABLED, associated with an ACTIVE
//! cluster, over node group `G` (see [`crate::capacity`]):
//!
//! - **N**: the container instances of `G` (attribute `flotilla.node-group=G`), ACTIVE or
//!   DRAINING.
//! - **M**, the instances needed (ECS's definition): the instances of `G` that run at
//!   least one non-daemon task (a DAEMON service's tasks don't count, as in ECS), plus
//!   those that the **waiting tasks** fit on, plus the new instances the rest need.
//!   Waiting tasks are, per service deployment with this provider in its strategy, this
//!   provider's share of the deployment's `desiredCount` (ECS's base/weight split,
//!   [`crate::capacity::split`] from none) minus the tasks the deployment keeps on the
//!   provider on ACTIVE instances. They are first fitted, by CPU and memory, on the free
//!   room of `G`'s ACTIVE instances (first fit, in id order); what is left needs new
//!   instances, estimated per group of equal tasks as `ceil(count / per_instance)` where
//!   `per_instance` is how many fit on the group's **largest registered instance**
//!   (flotilla has no launch template to read an instance type from). A task larger than
//!   that instance is left out (no instance of the group could run it); with no
//!   instance at all, each group of waiting tasks counts one instance. RunTask tasks that
//!   found no room are not counted: RunTask answers them as `failures` and keeps no
//!   record (ECS would keep them PROVISIONING).
//! - **CapacityProviderReservation** = `M / N × 100` (rounded), with ECS's special
//!   cases: `N = 0, M > 0` → 200; `N = 0, M = 0` → 100 ([`reservation`]).
//! - **Desired size** = `ceil(M × 100 / targetCapacity)` ([`desired_size`]).
//!
//! Then one step:
//!
//! - desired > N: **grow** by `desired − N`, raised to `minimumScalingStepSize` and
//!   capped at `maximumScalingStepSize`, unless the last scale-out is less than
//!   `instanceWarmupPeriod` old (then nothing: its instances may still be starting).
//! - desired < N: **scale in** by `N − desired`: the candidates are the instances
//!   running no non-daemon task that no waiting task was fitted on, DRAINING ones
//!   first, then by id; with `managedTerminationProtection` ENABLED an instance running
//!   a non-daemon task is never chosen (by M's definition such an instance is never
//!   in excess anyway). A chosen ACTIVE instance is set **DRAINING** first when
//!   `managedDraining` is ENABLED (ECS's default), so that nothing new lands on it and
//!   its tasks move; a DRAINING one with no non-daemon task left (or any chosen one
//!   with managed draining DISABLED) is **removed**. Scale-in does not wait for a
//!   warm-up (ECS waits for 15 minutes of low reservation; flotilla scales in at the
//!   next pass), and there is no minimum size: an idle group can shrink to nothing.
//!
//! Every loop is bounded by the instances of one node group, the deployments of the
//! provider's clusters, and [`MAX_REMOVALS_PER_PASS`].

pub mod observe;
pub mod writes;

/// The most instances one pass sets DRAINING or removes, per provider.
pub const MAX_REMOVALS_PER_PASS: usize = 10;

/// A provider's managed scaling settings, with ECS's defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// `targetCapacity`, 1–100 (default 100).
    pub target_capacity: u32,
    /// `minimumScalingStepSize`, 1–10000 (default 1).
    pub min_step: u32,
    /// `maximumScalingStepSize`, 1–10000 (default 10000).
    pub max_step: u32,
    /// `instanceWarmupPeriod` in seconds, 0–10000 (default 300).
    pub warmup_secs: u32,
    /// `managedTerminationProtection` ENABLED.
    pub termination_protection: bool,
    /// `managedDraining` ENABLED (the default).
    pub managed_draining: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            target_capacity: 100,
            min_step: 1,
            max_step: 10_000,
            warmup_secs: 300,
            termination_protection: false,
            managed_draining: true,
        }
    }
}

/// One container instance of the node group, as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// ACTIVE (else DRAINING).
    pub active: bool,
    /// Registered CPU units.
    pub cpu: i64,
    /// Registered memory MiB.
    pub memory: i64,
    /// CPU units not reserved by its tasks.
    pub free_cpu: i64,
    /// Memory MiB not reserved by its tasks.
    pub free_memory: i64,
    /// Its tasks that are not STOPPED and not a DAEMON service's.
    pub busy: u32,
}

/// `count` waiting tasks, each reserving `cpu` units and `memory` MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// CPU units per task.
    pub cpu: i64,
    /// Memory MiB per task.
    pub memory: i64,
    /// How many tasks.
    pub count: u32,
}

/// One step of a decision. Instances are indexes into the `nodes` given to [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Ask the node group for `count` more instances.
    Grow {
        /// How many.
        count: u32,
    },
    /// Set this ACTIVE instance DRAINING (managed draining).
    Drain(usize),
    /// Ask the node group to remove this instance.
    Remove(usize),
}

/// What [`decide`] found and chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Instances of the group (ACTIVE and DRAINING).
    pub n: u32,
    /// Instances needed.
    pub m: u32,
    /// CapacityProviderReservation, percent.
    pub reservation: u32,
    /// The group size the target capacity asks for.
    pub desired: u32,
    /// The steps to take now, in order.
    pub steps: Vec<Step>,
    /// When a scale-out is held back by the warm-up: the time it ends.
    pub warming_up_until: Option<f64>,
}

/// CapacityProviderReservation for `m` instances needed of `n`: `m / n × 100`,
/// rounded to the nearest percent; 200 when `n = 0 < m`, 100 when both are 0.
pub fn reservation(m: u32, n: u32) -> u32 {
    match (m, n) {
        (0, 0) => 100,
        (_, 0) => 200,
        _ => {
            let v = (u64::from(m) * 200 + u64::from(n)) / (2 * u64::from(n));
            u32::try_from(v).unwrap_or(u32::MAX)
        }
    }
}

/// The group size that brings the reservation to `target` percent:
/// `ceil(m × 100 / target)` (`target` taken as at least 1).
pub fn desired_size(m: u32, target: u32) -> u32 {
    let target = u64::from(target.clamp(1, 100));
    let v = (u64::from(m) * 100).div_ceil(target);
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// How many tasks of `d` fit in (`cpu`, `memory`); `u32::MAX` when it reserves nothing.
fn fits(d: &Demand, cpu: i64, memory: i64) -> u32 {
    let per = |have: i64, need: i64| {
        if need <= 0 {
            u64::MAX
        } else {
            u64::try_from(have.max(0) / need).unwrap_or(0)
        }
    };
    u32::try_from(per(cpu, d.cpu).min(per(memory, d.memory))).unwrap_or(u32::MAX)
}

/// Instances needed: `(needed, extra)`: which nodes are needed (running a non-daemon
/// task, or receiving a waiting task) and how many new instances the rest need.
fn needed(nodes: &[Node], demand: &[Demand]) -> (Vec<bool>, u32) {
    let mut need: Vec<bool> = nodes.iter().map(|n| n.busy > 0).collect();
    let mut free: Vec<(i64, i64)> = nodes.iter().map(|n| (n.free_cpu, n.free_memory)).collect();
    // The largest registered instance, by CPU then memory, sizes the new ones.
    let largest = nodes.iter().map(|n| (n.cpu, n.memory)).max();
    let mut extra: u32 = 0;
    for d in demand {
        let mut left = d.count;
        for (i, node) in nodes.iter().enumerate() {
            if left == 0 {
                break;
            }
            if !node.active {
                continue;
            }
            let k = fits(d, free[i].0, free[i].1).min(left);
            if k > 0 {
                free[i].0 -= d.cpu.max(0) * i64::from(k);
                free[i].1 -= d.memory.max(0) * i64::from(k);
                need[i] = true;
                left -= k;
            }
        }
        if left == 0 {
            continue;
        }
        let more = match largest {
            None => 1,
            Some((cpu, memory)) => match fits(d, cpu, memory) {
                0 => 0, // larger than any instance of the group: no new one helps
                per => left.div_ceil(per),
            },
        };
        extra = extra.saturating_add(more);
    }
    (need, extra)
}

/// The decision for one provider (module doc): `nodes` are its group's instances
/// (ACTIVE and DRAINING), `demand` its waiting tasks, `last_scale_out_at` the time of
/// the last scale-out the hook accepted, `now` the time.
pub fn decide(
    nodes: &[Node],
    demand: &[Demand],
    settings: &Settings,
    last_scale_out_at: Option<f64>,
    now: f64,
) -> Decision {
    let n = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
    let (need, extra) = needed(nodes, demand);
    let used = u32::try_from(need.iter().filter(|b| **b).count()).unwrap_or(u32::MAX);
    let m = used.saturating_add(extra);
    let desired = desired_size(m, settings.target_capacity);
    let mut decision = Decision {
        n,
        m,
        reservation: reservation(m, n),
        desired,
        steps: Vec::new(),
        warming_up_until: None,
    };
    if desired > n {
        let until = last_scale_out_at.map(|t| t + f64::from(settings.warmup_secs));
        if let Some(until) = until.filter(|u| now < *u) {
            decision.warming_up_until = Some(until);
            return decision;
        }
        let min = settings.min_step.max(1);
        let max = settings.max_step.max(min);
        let count = (desired - n).clamp(min, max);
        decision.steps.push(Step::Grow { count });
    } else if desired < n {
        let excess = (n - desired) as usize;
        let mut candidates: Vec<usize> = (0..nodes.len())
            .filter(|&i| !need[i])
            .filter(|&i| !(settings.termination_protection && nodes[i].busy > 0))
            .collect();
        // DRAINING first (already on their way out), then in the order given (id).
        candidates.sort_by_key(|&i| nodes[i].active);
        for i in candidates
            .into_iter()
            .take(excess.min(MAX_REMOVALS_PER_PASS))
        {
            let node = &nodes[i];
            if settings.managed_draining && node.active {
                decision.steps.push(Step::Drain(i));
            } else if !settings.managed_draining || node.busy == 0 {
                decision.steps.push(Step::Remove(i));
            }
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance of 1024 CPU units and 1024 MiB with `busy` tasks using `used` of each.
    fn node(busy: u32, used: i64) -> Node {
        Node {
            active: true,
            cpu: 1024,
            memory: 1024,
            free_cpu: 1024 - used,
            free_memory: 1024 - used,
            busy,
        }
    }

    fn full() -> Node {
        node(2, 1024)
    }

    fn empty() -> Node {
        node(0, 0)
    }

    /// Tasks of 512 units and 512 MiB: two per instance.
    fn half(count: u32) -> Demand {
        Demand {
            cpu: 512,
            memory: 512,
            count,
        }
    }

    fn target(t: u32) -> Settings {
        Settings {
            target_capacity: t,
            ..Settings::default()
        }
    }

    #[test]
    fn the_reservation_is_ecs_formula_with_its_special_cases() {
        assert_eq!(reservation(0, 0), 100, "no tasks, no instances");
        assert_eq!(reservation(1, 0), 200, "tasks but no instances");
        assert_eq!(reservation(0, 3), 0);
        assert_eq!(reservation(3, 2), 150);
        assert_eq!(reservation(2, 2), 100);
        assert_eq!(reservation(1, 3), 33);
        assert_eq!(reservation(2, 3), 67);
    }

    #[test]
    fn the_desired_size_is_m_over_the_target() {
        assert_eq!(desired_size(3, 100), 3);
        assert_eq!(desired_size(3, 50), 6, "half the capacity kept spare");
        assert_eq!(desired_size(9, 90), 10);
        assert_eq!(desired_size(10, 90), 12, "11.1 → 12");
        assert_eq!(desired_size(0, 75), 0);
    }

    /// ECS's example: target 100, two full instances, tasks waiting for one more:
    /// M = 3, N = 2, reservation 150 → grow by 1.
    #[test]
    fn target_100_with_one_instance_short_grows_by_one() {
        let d = decide(&[full(), full()], &[half(2)], &target(100), None, 0.0);
        assert_eq!((d.n, d.m, d.reservation, d.desired), (2, 3, 150, 3));
        assert_eq!(d.steps, vec![Step::Grow { count: 1 }]);
    }

    /// Target 50: the same tasks want twice the instances: M = 3 → desired 6, grow 4.
    #[test]
    fn target_50_keeps_half_spare() {
        let d = decide(&[full(), full()], &[half(2)], &target(50), None, 0.0);
        assert_eq!((d.m, d.desired), (3, 6));
        assert_eq!(d.steps, vec![Step::Grow { count: 4 }]);
        // With nothing waiting, two busy instances at target 50 still want 4.
        let d = decide(&[full(), full()], &[], &target(50), None, 0.0);
        assert_eq!((d.m, d.reservation, d.desired), (2, 100, 4));
        assert_eq!(d.steps, vec![Step::Grow { count: 2 }]);
    }

    #[test]
    fn the_step_sizes_bound_a_scale_out() {
        let s = Settings {
            min_step: 3,
            ..target(100)
        };
        let d = decide(&[full()], &[half(2)], &s, None, 0.0);
        assert_eq!(d.desired, 2);
        assert_eq!(
            d.steps,
            vec![Step::Grow { count: 3 }],
            "raised to the minimum"
        );
        let s = Settings {
            max_step: 2,
            ..target(100)
        };
        let d = decide(&[full()], &[half(10)], &s, None, 0.0);
        assert_eq!(d.desired, 6);
        assert_eq!(
            d.steps,
            vec![Step::Grow { count: 2 }],
            "capped at the maximum"
        );
    }

    #[test]
    fn a_scale_out_waits_for_the_last_ones_warm_up() {
        let s = Settings {
            warmup_secs: 300,
            ..target(100)
        };
        let d = decide(&[full()], &[half(2)], &s, Some(1000.0), 1200.0);
        assert!(d.steps.is_empty(), "{d:?}");
        assert_eq!(d.warming_up_until, Some(1300.0));
        let d = decide(&[full()], &[half(2)], &s, Some(1000.0), 1300.0);
        assert_eq!(d.steps, vec![Step::Grow { count: 1 }]);
    }

    /// Waiting tasks that fit on free room need no new instance: the instance they fit
    /// on is needed, so it is not removed either.
    #[test]
    fn waiting_tasks_fill_free_room_first() {
        let d = decide(
            &[node(1, 512), empty()],
            &[half(3)],
            &target(100),
            None,
            0.0,
        );
        assert_eq!((d.n, d.m), (2, 2));
        assert!(d.steps.is_empty(), "{d:?}");
        // One more task than the room: one new instance.
        let d = decide(
            &[node(1, 512), empty()],
            &[half(4)],
            &target(100),
            None,
            0.0,
        );
        assert_eq!((d.m, d.desired), (3, 3));
        assert_eq!(d.steps, vec![Step::Grow { count: 1 }]);
    }

    #[test]
    fn new_instances_are_sized_by_the_largest_registered_one() {
        let big = Node {
            cpu: 4096,
            memory: 4096,
            free_cpu: 0,
            free_memory: 0,
            ..full()
        };
        // 10 tasks of 512: 8 per large instance → 2 more.
        let d = decide(&[full(), big], &[half(10)], &target(100), None, 0.0);
        assert_eq!((d.m, d.desired), (4, 4));
        // A task larger than any instance needs no new one (none could run it).
        let huge = Demand {
            cpu: 8192,
            memory: 512,
            count: 1,
        };
        let d = decide(&[full()], &[huge], &target(100), None, 0.0);
        assert_eq!(d.m, 1);
        assert!(d.steps.is_empty());
    }

    /// No instance at all: tasks waiting → reservation 200 and at least one instance.
    #[test]
    fn an_empty_group_with_waiting_tasks_grows() {
        let d = decide(&[], &[half(5)], &target(100), None, 0.0);
        assert_eq!((d.n, d.m, d.reservation), (0, 1, 200));
        assert_eq!(d.steps, vec![Step::Grow { count: 1 }]);
        let d = decide(&[], &[], &target(100), None, 0.0);
        assert_eq!((d.reservation, d.desired), (100, 0));
        assert!(d.steps.is_empty());
    }

    /// Scale-in: the empty instances are drained first (managed draining), DRAINING
    /// ones that are empty removed; busy ones are kept.
    #[test]
    fn scale_in_drains_then_removes_the_empty_instances() {
        let nodes = [full(), empty(), empty()];
        let d = decide(&nodes, &[], &target(100), None, 0.0);
        assert_eq!((d.n, d.m, d.reservation, d.desired), (3, 1, 33, 1));
        assert_eq!(d.steps, vec![Step::Drain(1), Step::Drain(2)]);
        let drained = [
            full(),
            Node {
                active: false,
                ..empty()
            },
            Node {
                active: false,
                ..empty()
            },
        ];
        let d = decide(&drained, &[], &target(100), None, 0.0);
        assert_eq!(d.steps, vec![Step::Remove(1), Step::Remove(2)]);
    }

    #[test]
    fn draining_instances_go_first_and_busy_draining_ones_wait() {
        let busy_draining = Node {
            active: false,
            ..node(1, 100)
        };
        let s = Settings {
            termination_protection: false,
            ..target(50)
        };
        // M = 1 (the draining one runs a task), desired 2 of N 3: one to remove, an
        // empty one (the busy draining one is needed).
        let d = decide(
            &[empty(), busy_draining.clone(), empty()],
            &[],
            &s,
            None,
            0.0,
        );
        assert_eq!((d.m, d.desired), (1, 2));
        assert_eq!(d.steps, vec![Step::Drain(0)]);
        let empty_draining = Node {
            active: false,
            ..empty()
        };
        let d = decide(&[empty(), empty_draining, full()], &[], &s, None, 0.0);
        assert_eq!(d.steps, vec![Step::Remove(1)], "the draining one first");
    }

    #[test]
    fn without_managed_draining_instances_are_removed_at_once() {
        let s = Settings {
            managed_draining: false,
            ..target(100)
        };
        let d = decide(&[full(), empty()], &[], &s, None, 0.0);
        assert_eq!(d.steps, vec![Step::Remove(1)]);
    }

    /// Termination protection: an instance running tasks is never chosen, even when
    /// it is DRAINING and the group is above its size.
    #[test]
    fn protected_instances_are_never_chosen() {
        let s = Settings {
            termination_protection: true,
            ..target(100)
        };
        let nodes = [full(), full(), empty()];
        let d = decide(&nodes, &[], &s, None, 0.0);
        assert_eq!(d.desired, 2);
        assert_eq!(d.steps, vec![Step::Drain(2)]);
        // Daemon tasks don't count: an instance with only those is empty (busy 0).
        let daemon_only = node(0, 256);
        let d = decide(&[full(), daemon_only], &[], &s, None, 0.0);
        assert_eq!(d.steps, vec![Step::Drain(1)]);
    }

    #[test]
    fn scale_in_is_bounded_per_pass() {
        let nodes = vec![empty(); 25];
        let d = decide(&nodes, &[], &target(100), None, 0.0);
        assert_eq!(d.desired, 0);
        assert_eq!(d.steps.len(), MAX_REMOVALS_PER_PASS);
    }
}
