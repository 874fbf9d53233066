//! Managed scaling end to end on the in-process harness: a provider with managed
//! scaling (target 100) over node group `blue`, a service that needs more instances
//! than the group has → the decision asks the group to grow; the new instances
//! register and the tasks place; the service scaled to 0 → the empty instances are
//! set DRAINING (managed draining), then their removal is asked and they are
//! deregistered. The scaling hook is played by the test (what `flotilla server`'s
//! runner does around it is `crates/flotilla/src/cmd/capacity_scaling.rs`).

mod service_harness;

use controlplane::capacity::NODE_GROUP_ATTRIBUTE;
use controlplane::managed_scaling::observe::{ProviderPlan, plan_of};
use controlplane::managed_scaling::writes::{
    REASON_PREFIX, drain, removed, report_hook, scaled_out,
};
use controlplane::managed_scaling::{Step, reservation};
use controlplane::ops::{capacity_providers, clusters, instances};
use model::wire;
use serde_json::json;
use service_harness::{Harness, alive};
use testkit::ecs::{instance, req, scope};

/// A node of 2048 CPU units and MiB in group `blue`.
fn node(h: &mut Harness, id: &str) {
    let mut body = instance("c", id, "a", 2048, 2048);
    body["attributes"] = json!([{"name": NODE_GROUP_ATTRIBUTE, "value": "blue"}]);
    let _: wire::RegisterContainerInstanceResponse = h.write(instances::register, req(body));
}

/// Cluster `c` with node `n1` in group `blue`, provider `A` over it (managed scaling,
/// target 100, termination protection), associated with `c`.
fn setup() -> Harness {
    let mut h = Harness::new(&[]);
    node(&mut h, "n1");
    let _: wire::CreateCapacityProviderResponse = h.write(
        capacity_providers::create,
        req(json!({"name": "A", "autoScalingGroupProvider": {
            "autoScalingGroupArn": "blue",
            "managedScaling": {"status": "ENABLED", "targetCapacity": 100,
                "instanceWarmupPeriod": 60},
            "managedTerminationProtection": "ENABLED"}})),
    );
    let _: wire::PutClusterCapacityProvidersResponse = h.write(
        clusters::put_cluster_capacity_providers,
        req(json!({"cluster": "c", "capacityProviders": ["A"],
            "defaultCapacityProviderStrategy": []})),
    );
    h
}

fn plan(h: &Harness) -> ProviderPlan {
    plan_of(&h.state, &(scope(), "A".to_owned()), h.now).expect("A is managed")
}

/// The hook calls a runner would make for `p`, as `grow GROUP COUNT` / `remove GROUP
/// ID` strings, after carrying out the DRAINING writes; the hook "succeeds" and its
/// writes are applied as the runner applies them.
fn carry_out(h: &mut Harness, p: &ProviderPlan) -> Vec<String> {
    let mut calls = Vec::new();
    for step in &p.decision.steps {
        match *step {
            Step::Drain(i) => {
                let m = &p.members[i];
                let _: usize = h.write(
                    |s, c, (cluster, id): (String, String)| drain(s, c, &cluster, &[id]),
                    (m.cluster.clone(), m.id.clone()),
                );
            }
            Step::Grow { count } => {
                calls.push(format!("grow {} {count}", p.group));
                let () = h.write(|s, c, n: u32| scaled_out(s, c, "A", n), count);
            }
            Step::Remove(i) => {
                let m = &p.members[i];
                calls.push(format!("remove {} {}", p.group, m.ec2_instance_id));
                let _: bool = h.write(
                    |s, c, (cluster, id): (String, String)| removed(s, c, &cluster, &id),
                    (m.cluster.clone(), m.id.clone()),
                );
            }
        }
    }
    calls
}

fn status_of(h: &Harness, ec2_id: &str) -> String {
    h.state
        .instances
        .values()
        .find(|i| i.instance.ec2_instance_id.as_deref() == Some(ec2_id))
        .and_then(|i| i.instance.status.clone())
        .expect("the instance")
}

#[test]
fn the_group_grows_for_waiting_tasks_then_drains_and_removes_empty_instances() {
    let mut h = setup();
    // A RunTask task of A on n1 (128 MiB) keeps it busy throughout.
    let solo = h.run(json!({"cluster": "c", "taskDefinition": "web",
        "capacityProviderStrategy": [{"capacityProvider": "A"}]}));
    assert_eq!(solo.len(), 1);
    h.report(&solo[0], "RUNNING");
    // Nothing waits: M = 1 (n1 runs a task), N = 1, reservation 100: nothing to do.
    let p = plan(&h);
    assert_eq!(
        (p.decision.n, p.decision.m, p.decision.reservation),
        (1, 1, 100)
    );
    assert!(p.decision.steps.is_empty(), "{:?}", p.decision);

    // A service of 3 tasks of 1920 MiB: one instance's worth each. One fits on n1.
    h.register("big", 1920);
    h.create_service(json!({"taskDefinition": "big", "desiredCount": 3,
        "capacityProviderStrategy": [{"capacityProvider": "A", "weight": 1}]}));
    h.settle(|_| {});
    // (The harness's `tasks()` are the service's.)
    assert_eq!(
        h.tasks().filter(|t| alive(t)).count(),
        1,
        "one service task, on n1"
    );
    let all = h.state.tasks.values().filter(|t| alive(t)).count();
    assert_eq!(all, 2, "and the RunTask task");
    assert!(
        h.events()
            .iter()
            .any(|e| e.contains("unable to place a task in capacity provider A")),
        "{:?}",
        h.events()
    );
    let p = plan(&h);
    assert_eq!((p.decision.n, p.decision.m), (1, 3));
    assert_eq!(p.decision.reservation, reservation(3, 1));
    assert_eq!(p.decision.reservation, 300);
    assert_eq!(p.decision.desired, 3);
    assert_eq!(carry_out(&mut h, &p), vec!["grow blue 2".to_owned()]);

    // Within the warm-up, no second scale-out, though nothing registered yet.
    h.now += 10.0;
    let p = plan(&h);
    assert!(p.decision.steps.is_empty(), "{:?}", p.decision);
    assert!(p.decision.warming_up_until.is_some());

    // The group adds two nodes: the tasks place, and the group is where it should be.
    node(&mut h, "n2");
    node(&mut h, "n3");
    let p = plan(&h);
    assert_eq!(
        (p.decision.n, p.decision.m),
        (3, 3),
        "the new nodes are needed"
    );
    assert!(p.decision.steps.is_empty());
    h.settle(|_| {});
    let service_tasks = h
        .tasks()
        .filter(|t| alive(t) && t.task.group.as_deref() == Some("service:web"))
        .count();
    assert_eq!(service_tasks, 3);
    h.now += 120.0;
    let p = plan(&h);
    assert_eq!(
        (p.decision.n, p.decision.m, p.decision.reservation),
        (3, 3, 100)
    );
    assert!(p.decision.steps.is_empty(), "{:?}", p.decision);

    // Scaled to 0: n1 still runs the RunTask task (M = 1); the two empty nodes are
    // drained first, then removed.
    h.update_service(json!({"desiredCount": 0}));
    h.settle(|_| {});
    let p = plan(&h);
    assert_eq!((p.decision.n, p.decision.m, p.decision.desired), (3, 1, 1));
    let mut chosen: Vec<&str> = p
        .decision
        .steps
        .iter()
        .map(|s| match s {
            Step::Drain(i) => p.members[*i].ec2_instance_id.as_str(),
            other => panic!("drain first, not {other:?}"),
        })
        .collect();
    chosen.sort_unstable(); // (in container instance id order: random ids)
    assert_eq!(chosen, vec!["n2", "n3"]);
    assert!(
        carry_out(&mut h, &p).is_empty(),
        "no hook call while draining"
    );
    assert_eq!(status_of(&h, "n2"), "DRAINING");
    assert_eq!(status_of(&h, "n3"), "DRAINING");
    assert_eq!(status_of(&h, "n1"), "ACTIVE");

    let p = plan(&h);
    let mut calls = carry_out(&mut h, &p);
    calls.sort();
    assert_eq!(calls, vec!["remove blue n2", "remove blue n3"]);
    assert_eq!(status_of(&h, "n2"), "INACTIVE");
    assert_eq!(status_of(&h, "n3"), "INACTIVE");
    let p = plan(&h);
    assert_eq!(
        (p.decision.n, p.decision.m, p.decision.reservation),
        (1, 1, 100)
    );
    assert!(p.decision.steps.is_empty());
}

/// A failing hook shows on the provider's `updateStatusReason`; a later success
/// clears it; a reason set otherwise is left alone.
#[test]
fn hook_failures_show_on_the_provider() {
    let mut h = setup();
    let reason = |h: &Harness| {
        h.state.capacity_providers[&(scope(), "A".to_owned())]
            .provider
            .update_status_reason
            .clone()
    };
    let () = h.write(
        |s, c, e: String| report_hook(s, c, "A", Some(&e)),
        "grow blue 2: exit status 1: no capacity".to_owned(),
    );
    let shown = reason(&h).expect("a reason");
    assert!(shown.starts_with(REASON_PREFIX), "{shown}");
    assert!(shown.ends_with("no capacity"), "{shown}");
    let () = h.write(|s, c, n: u32| scaled_out(s, c, "A", n), 1);
    assert_eq!(reason(&h), None, "a scale-out clears it");
    let rec = &h.state.capacity_providers[&(scope(), "A".to_owned())];
    assert_eq!(rec.scaling.last_scale_out_count, Some(1));
    assert_eq!(rec.scaling.last_scale_out_at, Some(h.now));
    // Describe shows only AWS's members.
    let d = capacity_providers::describe(
        &h.state,
        &scope(),
        h.now,
        req(json!({"capacityProviders": ["A"]})),
    )
    .expect("describe");
    let shown = serde_json::to_value(&d.capacity_providers.unwrap()[0]).unwrap();
    assert!(shown.get("scaling").is_none(), "{shown}");
}
