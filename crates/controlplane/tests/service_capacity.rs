//! Services with a `capacityProviderStrategy`: CreateService takes one (or the cluster's
//! default), the controller places each deployment's tasks per provider with ECS's
//! base/weight arithmetic on each provider's node group (or the Fargate pool), and
//! UpdateService moves a service between strategies and launch types with a new
//! deployment. Driven through the shared [`service_harness`].

mod service_harness;

use std::collections::BTreeMap;

use controlplane::capacity::NODE_GROUP_ATTRIBUTE;
use controlplane::fargate::{SPOT_ATTRIBUTE, pool_cluster};
use controlplane::ops::{capacity_providers, clusters, instances, services, task_definitions};
use model::wire;
use serde_json::{Value, json};
use service_harness::{Harness, alive, stable};
use testkit::ecs::{instance, req};

/// Cluster `c` with nodes `b1`, `b2` in node group `blue` (zones a, b), `g1`, `g2` in
/// `green`, providers `A` (blue) and `B` (green) associated with it, task definition
/// `web:1`.
fn two_groups() -> Harness {
    let mut h = Harness::new(&[]);
    for (id, zone, group) in [
        ("b1", "a", "blue"),
        ("b2", "b", "blue"),
        ("g1", "a", "green"),
        ("g2", "b", "green"),
    ] {
        node(&mut h, id, zone, Some(group));
    }
    provider(&mut h, "A", "blue");
    provider(&mut h, "B", "green");
    put(&mut h, json!(["A", "B"]), json!([]));
    h
}

fn node(h: &mut Harness, id: &str, zone: &str, group: Option<&str>) {
    let mut body = instance("c", id, zone, 4096, 4096);
    if let Some(g) = group {
        body["attributes"] = json!([{"name": NODE_GROUP_ATTRIBUTE, "value": g}]);
    }
    let _: wire::RegisterContainerInstanceResponse = h.write(instances::register, req(body));
}

fn provider(h: &mut Harness, name: &str, group: &str) {
    let _: wire::CreateCapacityProviderResponse = h.write(
        capacity_providers::create,
        req(json!({"name": name, "autoScalingGroupProvider": {"autoScalingGroupArn": group}})),
    );
}

fn put(h: &mut Harness, providers: Value, strategy: Value) {
    let _: wire::PutClusterCapacityProvidersResponse = h.write(
        clusters::put_cluster_capacity_providers,
        req(json!({"cluster": "c", "capacityProviders": providers,
            "defaultCapacityProviderStrategy": strategy})),
    );
}

/// Tasks meant to run, by (node group of their instance, capacityProviderName).
fn by_provider(h: &Harness) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for t in h
        .tasks()
        .filter(|t| alive(t) && t.task.desired_status.as_deref() == Some("RUNNING"))
    {
        let group = h
            .state
            .instances
            .values()
            .find(|i| t.instance_id.as_deref() == Some(i.id.as_str()))
            .map(|i| {
                i.attribute(NODE_GROUP_ATTRIBUTE)
                    .or_else(|| i.attribute(SPOT_ATTRIBUTE).map(|_| "spot"))
                    .unwrap_or("-")
                    .to_owned()
            })
            .unwrap_or_default();
        let cp = t
            .task
            .capacity_provider_name
            .as_deref()
            .unwrap_or("-")
            .to_owned();
        *out.entry((group, cp)).or_default() += 1;
    }
    out
}

fn counts(v: &[(&str, &str, usize)]) -> BTreeMap<(String, String), usize> {
    v.iter()
        .map(|(g, cp, n)| (((*g).to_owned(), (*cp).to_owned()), *n))
        .collect()
}

fn item(name: &str, weight: i32, base: i32) -> wire::CapacityProviderStrategyItem {
    wire::CapacityProviderStrategyItem {
        capacity_provider: Some(name.into()),
        weight: Some(weight),
        base: Some(base),
    }
}

fn create_err(h: &mut Harness, extra: Value) -> controlplane::EcsError {
    let mut body = json!({"cluster": "c", "serviceName": "bad", "taskDefinition": "web",
        "desiredCount": 1});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    h.try_write(services::create, req::<wire::CreateServiceRequest>(body))
        .unwrap_err()
}

#[test]
fn a_strategy_places_the_base_first_then_the_weights_on_each_node_group() {
    let mut h = two_groups();
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 5,
        "capacityProviderStrategy": [
            {"capacityProvider": "A", "weight": 1, "base": 1},
            {"capacityProvider": "B", "weight": 3}]}));
    h.settle(|_| {});
    // Base 1 on A, then 4 tasks 1:3: A runs 1 + 1, B runs 3.
    assert_eq!(
        by_provider(&h),
        counts(&[("blue", "A", 2), ("green", "B", 3)])
    );
    let s = h.service();
    assert!(stable(&s));
    let shown = vec![item("A", 1, 1), item("B", 3, 0)];
    assert_eq!(s.capacity_provider_strategy.as_ref(), Some(&shown));
    assert_eq!(s.launch_type, None, "no launchType with a strategy");
    let d = &s.deployments.as_ref().unwrap()[0];
    assert_eq!(d.capacity_provider_strategy.as_ref(), Some(&shown));
    assert_eq!(d.launch_type, None);

    // Scaling out counts what runs: 4 more → A 3, B 6 (beyond the base, 2:6).
    h.update_service(json!({"desiredCount": 9}));
    h.settle(|_| {});
    assert_eq!(
        by_provider(&h),
        counts(&[("blue", "A", 3), ("green", "B", 6)])
    );
    // Scaling in keeps the split: back to A 2, B 3.
    h.update_service(json!({"desiredCount": 5}));
    h.settle(|_| {});
    assert_eq!(
        by_provider(&h),
        counts(&[("blue", "A", 2), ("green", "B", 3)])
    );
}

#[test]
fn a_lost_task_is_replaced_on_its_own_provider() {
    let mut h = two_groups();
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 4,
        "capacityProviderStrategy": [
            {"capacityProvider": "A", "weight": 1}, {"capacityProvider": "B", "weight": 1}]}));
    h.settle(|_| {});
    assert_eq!(
        by_provider(&h),
        counts(&[("blue", "A", 2), ("green", "B", 2)])
    );
    let victim = h
        .tasks()
        .find(|t| t.task.capacity_provider_name.as_deref() == Some("B"))
        .cloned()
        .unwrap();
    h.agent_report(&victim, "STOPPED", Some(1));
    h.settle(|_| {});
    assert_eq!(
        by_provider(&h),
        counts(&[("blue", "A", 2), ("green", "B", 2)])
    );
}

#[test]
fn the_cluster_default_strategy_is_used_without_launch_type_or_strategy() {
    let mut h = two_groups();
    put(
        &mut h,
        json!(["A", "B"]),
        json!([{"capacityProvider": "B", "weight": 1}]),
    );
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3}));
    h.settle(|_| {});
    assert_eq!(by_provider(&h), counts(&[("green", "B", 3)]));
    let s = h.service();
    assert_eq!(s.capacity_provider_strategy, Some(vec![item("B", 1, 0)]));
    assert_eq!(s.launch_type, None);
    // A launch type sets the default aside.
    let r: wire::CreateServiceResponse = h.write(
        services::create,
        req(
            json!({"cluster": "c", "serviceName": "ec2", "taskDefinition": "web",
            "launchType": "EC2"}),
        ),
    );
    let s = r.service.unwrap();
    assert_eq!(s.launch_type, Some(wire::LaunchType::Ec2));
    assert_eq!(s.capacity_provider_strategy, None);
}

#[test]
fn a_new_strategy_is_a_new_deployment_whose_tasks_land_on_the_new_group() {
    let mut h = two_groups();
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3,
        "capacityProviderStrategy": [{"capacityProvider": "A", "weight": 1}]}));
    h.settle(|_| {});
    assert_eq!(by_provider(&h), counts(&[("blue", "A", 3)]));
    // The same strategy changes nothing.
    h.update_service(json!({"capacityProviderStrategy": [{"capacityProvider": "A", "weight": 1}]}));
    assert_eq!(h.service().deployments.unwrap().len(), 1);

    h.update_service(json!({"capacityProviderStrategy": [{"capacityProvider": "B", "weight": 1}]}));
    let s = h.service();
    let deployments = s.deployments.unwrap();
    assert_eq!(deployments.len(), 2, "a new deployment");
    assert_eq!(
        deployments[0].capacity_provider_strategy,
        Some(vec![item("B", 1, 0)])
    );
    assert_eq!(
        deployments[1].capacity_provider_strategy,
        Some(vec![item("A", 1, 0)])
    );
    h.settle(|_| {});
    assert_eq!(by_provider(&h), counts(&[("green", "B", 3)]));
    assert!(stable(&h.service()));

    // An empty list goes back to the launch type (EC2 from node-group providers).
    h.update_service(json!({"capacityProviderStrategy": []}));
    let s = h.service();
    assert_eq!(s.launch_type, Some(wire::LaunchType::Ec2));
    assert_eq!(s.capacity_provider_strategy, None);
    assert_eq!(s.deployments.as_ref().unwrap().len(), 2);
    h.settle(|_| {});
    let placed = by_provider(&h);
    assert_eq!(placed.values().sum::<usize>(), 3);
    assert!(placed.keys().all(|(_, cp)| cp == "-"), "{placed:?}");
}

#[test]
fn a_launch_type_service_moves_to_a_strategy() {
    let mut h = two_groups();
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2, "launchType": "EC2"}));
    h.settle(|_| {});
    h.update_service(json!({"capacityProviderStrategy": [{"capacityProvider": "A", "weight": 1}]}));
    let s = h.service();
    assert_eq!(s.launch_type, None);
    assert_eq!(s.deployments.as_ref().unwrap().len(), 2);
    h.settle(|_| {});
    assert_eq!(by_provider(&h), counts(&[("blue", "A", 2)]));
}

#[test]
fn a_provider_without_room_is_said_in_an_event() {
    let mut h = two_groups();
    provider(&mut h, "E", "empty");
    put(&mut h, json!(["A", "B", "E"]), json!([]));
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "capacityProviderStrategy": [
            {"capacityProvider": "A", "weight": 1}, {"capacityProvider": "E", "weight": 1}]}));
    h.reconcile();
    assert_eq!(by_provider(&h), counts(&[("blue", "A", 1)]));
    let events = h.events();
    assert!(
        events.iter().any(|e| e
            == "(service web) was unable to place a task in capacity provider E because no \
                container instance met all of its requirements. Reason: No Container \
                Instances were found in your capacity provider."),
        "{events:?}"
    );
}

#[test]
fn fargate_providers_run_a_service_on_the_pool() {
    let mut h = two_groups();
    for (id, spot) in [("p-a", false), ("s-a", true)] {
        let mut body = instance(&pool_cluster("p1"), id, "a", 4096, 8192);
        if spot {
            body["attributes"] = json!([{"name": SPOT_ATTRIBUTE, "value": "true"}]);
        }
        let _: wire::RegisterContainerInstanceResponse = h.write(instances::register, req(body));
    }
    let _: wire::RegisterTaskDefinitionResponse = h.write(
        task_definitions::register,
        req(json!({"family": "f", "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "app", "image": "busybox"}]})),
    );
    put(
        &mut h,
        json!(["A", "B", "FARGATE", "FARGATE_SPOT"]),
        json!([]),
    );
    h.create_service(json!({"taskDefinition": "f", "desiredCount": 5,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
        "capacityProviderStrategy": [
            {"capacityProvider": "FARGATE", "weight": 1, "base": 1},
            {"capacityProvider": "FARGATE_SPOT", "weight": 1}]}));
    h.settle(|_| {});
    // Base 1 on FARGATE, then 4 split 1:1: FARGATE runs 1 + 2, FARGATE_SPOT 2.
    assert_eq!(
        by_provider(&h),
        counts(&[("-", "FARGATE", 3), ("spot", "FARGATE_SPOT", 2)])
    );
    assert!(
        h.tasks()
            .filter(|t| alive(t))
            .all(|t| t.task.launch_type == Some(wire::LaunchType::Fargate))
    );
    let s = h.service();
    assert_eq!(s.platform_version.as_deref(), Some("1.4.0"));
    assert!(stable(&s));
}

#[test]
fn service_strategies_are_checked_as_ecs_does() {
    let mut h = two_groups();
    let cases = [
        (
            json!({"launchType": "EC2",
                "capacityProviderStrategy": [{"capacityProvider": "A", "weight": 1}]}),
            "Specifying both a launchType and capacityProviderStrategy is not supported.",
        ),
        (
            json!({"capacityProviderStrategy": [{"capacityProvider": "C", "weight": 1}]}),
            "The specified capacity provider C is not associated with the cluster.",
        ),
        (
            json!({"capacityProviderStrategy": [{"capacityProvider": "A", "weight": 1001}]}),
            "capacityProviderStrategy[0].weight must be between 0 and 1000.",
        ),
        (
            json!({"capacityProviderStrategy": [
                {"capacityProvider": "A", "weight": 1, "base": 100_001}]}),
            "capacityProviderStrategy[0].base must be between 0 and 100000.",
        ),
        (
            json!({"capacityProviderStrategy": [
                {"capacityProvider": "A", "weight": 1, "base": 1},
                {"capacityProvider": "B", "weight": 1, "base": 2}]}),
            "Only one capacity provider in a strategy can have a base defined.",
        ),
        (
            json!({"capacityProviderStrategy": [
                {"capacityProvider": "A", "weight": 0}, {"capacityProvider": "B", "weight": 0}]}),
            "at least one capacity provider must have a weight greater than zero.",
        ),
        (
            json!({"schedulingStrategy": "DAEMON", "desiredCount": null,
                "capacityProviderStrategy": [{"capacityProvider": "A", "weight": 1}]}),
            "cannot be used with the DAEMON scheduling strategy",
        ),
    ];
    for (extra, wanted) in cases {
        let e = create_err(&mut h, extra.clone());
        assert_eq!(e.code(), "InvalidParameterException", "{extra}: {e}");
        assert!(e.to_string().contains(wanted), "{extra}: {e}");
    }
    // UpdateService checks a new strategy the same way.
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    let e = h
        .try_write(
            services::update,
            req::<wire::UpdateServiceRequest>(json!({"cluster": "c", "service": "web",
                "capacityProviderStrategy": [{"capacityProvider": "C", "weight": 1}]})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException", "{e}");
    assert_eq!(h.service().deployments.unwrap().len(), 1);
}
