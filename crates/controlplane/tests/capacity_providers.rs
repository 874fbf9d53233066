//! Capacity providers as pure operations on a [`World`]: their CRUD and validation,
//! PutClusterCapacityProviders' rules, and RunTask placing a strategy's tasks on each
//! provider's node group as ECS's base/weight arithmetic says.

use controlplane::EcsError;
use controlplane::capacity::NODE_GROUP_ATTRIBUTE;
use controlplane::ops::{capacity_providers, clusters, instances, services, tags, tasks};
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::{self, World, req};

fn create(w: &mut World, body: Value) -> Result<wire::CapacityProvider, EcsError> {
    w.try_write(capacity_providers::create, req(body))
        .map(|r: wire::CreateCapacityProviderResponse| r.capacity_provider.expect("provider"))
}

fn provider(w: &mut World, name: &str, group: &str) -> wire::CapacityProvider {
    create(
        w,
        json!({"name": name, "autoScalingGroupProvider": {"autoScalingGroupArn": group}}),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", e.code()))
}

fn describe(w: &World, body: Value) -> wire::DescribeCapacityProvidersResponse {
    capacity_providers::describe(&w.state, &ecs::scope(), w.now, req(body)).expect("describe")
}

fn put(w: &mut World, providers: Value, strategy: Value) -> Result<(), EcsError> {
    w.try_write(
        clusters::put_cluster_capacity_providers,
        req(json!({"cluster": "c", "capacityProviders": providers,
            "defaultCapacityProviderStrategy": strategy})),
    )
    .map(|_: wire::PutClusterCapacityProvidersResponse| ())
}

/// Registers instance `id` in cluster `c`, in node `group` when given.
fn node(w: &mut World, id: &str, group: Option<&str>) {
    let mut body = ecs::instance("c", id, "a", 4096, 4096);
    if let Some(g) = group {
        body["attributes"] = json!([{"name": NODE_GROUP_ATTRIBUTE, "value": g}]);
    }
    let _: wire::RegisterContainerInstanceResponse = w.write(instances::register, req(body));
}

/// Cluster `c` with nodes `b1`, `b2` in group `blue`, `g1`, `g2` in `green`, `x` in none;
/// providers `blue-cp` and `green-cp` (the latter by an Auto Scaling group ARN), both
/// associated with `c`; task definition `web`.
fn two_groups() -> World {
    let mut w = World::new();
    w.create_cluster("c");
    for (id, group) in [
        ("b1", Some("blue")),
        ("b2", Some("blue")),
        ("g1", Some("green")),
        ("g2", Some("green")),
        ("x", None),
    ] {
        node(&mut w, id, group);
    }
    provider(&mut w, "blue-cp", "blue");
    provider(
        &mut w,
        "green-cp",
        "arn:aws:autoscaling:eu-west-1:000000000000:autoScalingGroup:1a2b:autoScalingGroupName/green",
    );
    put(&mut w, json!(["blue-cp", "green-cp"]), json!([])).expect("associate");
    w.register("web", 64);
    w
}

/// The node group of the instance each task of the cluster runs on, with its
/// `capacityProviderName`, sorted.
fn placements(w: &World) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = w
        .state
        .tasks
        .values()
        .map(|t| {
            let inst = w
                .state
                .instances
                .values()
                .find(|i| t.instance_id.as_deref() == Some(i.id.as_str()))
                .expect("placed");
            (
                inst.attribute(NODE_GROUP_ATTRIBUTE)
                    .unwrap_or("-")
                    .to_owned(),
                t.task.capacity_provider_name.as_deref().map(str::to_owned),
            )
        })
        .collect();
    out.sort();
    out
}

fn count(p: &[(String, Option<String>)], group: &str, provider: Option<&str>) -> usize {
    p.iter()
        .filter(|(g, cp)| g == group && cp.as_deref() == provider)
        .count()
}

#[test]
fn create_fills_in_ecs_defaults_and_describe_finds_it() {
    let mut w = World::new();
    let p = provider(&mut w, "blue-cp", "blue");
    assert_eq!(
        p.capacity_provider_arn.as_deref(),
        Some("arn:aws:ecs:eu-west-1:000000000000:capacity-provider/blue-cp")
    );
    assert_eq!(p.status, Some(wire::CapacityProviderStatus::Active));
    let asg = p.auto_scaling_group_provider.expect("asg");
    let m = asg.managed_scaling.expect("managed scaling");
    assert_eq!(m.status, Some(wire::ManagedScalingStatus::Disabled));
    assert_eq!(
        (
            m.target_capacity,
            m.minimum_scaling_step_size,
            m.maximum_scaling_step_size,
            m.instance_warmup_period
        ),
        (Some(100), Some(1), Some(10_000), Some(300))
    );
    assert_eq!(
        asg.managed_termination_protection,
        Some(wire::ManagedTerminationProtection::Disabled)
    );
    assert_eq!(asg.managed_draining, Some(wire::ManagedDraining::Enabled));

    let arn = p.capacity_provider_arn.expect("arn");
    let r = describe(
        &w,
        json!({"capacityProviders": ["blue-cp", arn, "FARGATE", "nope"]}),
    );
    let names: Vec<_> = r
        .capacity_providers
        .unwrap()
        .into_iter()
        .map(|p| p.name.unwrap())
        .collect();
    assert_eq!(names, ["blue-cp", "blue-cp", "FARGATE"]);
    let failures = r.failures.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].reason.as_deref(), Some("MISSING"));
    assert!(
        failures[0]
            .arn
            .as_deref()
            .unwrap()
            .ends_with("capacity-provider/nope")
    );
}

#[test]
fn create_refuses_what_ecs_refuses() {
    let mut w = World::new();
    let asg = json!({"autoScalingGroupArn": "blue"});
    for name in [
        "aws-x",
        "ECS1",
        "fargate-mine",
        "has space",
        "",
        &"n".repeat(256),
    ] {
        let e = create(
            &mut w,
            json!({"name": name, "autoScalingGroupProvider": asg}),
        )
        .unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException", "{name:?}: {e}");
    }
    let e = create(
        &mut w,
        json!({"name": "cp", "autoScalingGroupProvider": {"autoScalingGroupArn": "arn:aws:autoscaling:x"}}),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException", "{e}");
    let e = create(&mut w, json!({"name": "cp"})).unwrap_err();
    assert!(e.to_string().contains("autoScalingGroupProvider"), "{e}");
    for scaling in [
        json!({"targetCapacity": 0}),
        json!({"targetCapacity": 101}),
        json!({"minimumScalingStepSize": 0}),
        json!({"maximumScalingStepSize": 10_001}),
        json!({"minimumScalingStepSize": 5, "maximumScalingStepSize": 4}),
        json!({"instanceWarmupPeriod": -1}),
    ] {
        let body = json!({"name": "cp", "autoScalingGroupProvider":
            {"autoScalingGroupArn": "blue", "managedScaling": scaling}});
        let e = create(&mut w, body).unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException", "{scaling}: {e}");
    }
    provider(&mut w, "cp", "blue");
    let e = create(
        &mut w,
        json!({"name": "cp", "autoScalingGroupProvider": {"autoScalingGroupArn": "other"}}),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ClientException");
    let e = create(
        &mut w,
        json!({"name": "cp2", "autoScalingGroupProvider": asg}),
    )
    .unwrap_err();
    assert_eq!(
        e.code(),
        "ClientException",
        "one provider per node group: {e}"
    );
    assert!(e.to_string().contains("already being used"), "{e}");
}

#[test]
fn describe_lists_every_provider_with_the_fargate_ones_in_pages() {
    let mut w = World::new();
    for (name, group) in [("d", "g4"), ("a", "g1"), ("c", "g3"), ("b", "g2")] {
        provider(&mut w, name, group);
    }
    let (mut names, mut token) = (Vec::new(), None::<String>);
    loop {
        let r = describe(&w, json!({"maxResults": 2, "nextToken": token}));
        let page = r.capacity_providers.unwrap();
        assert!(page.len() <= 2);
        assert!(
            page.iter().all(|p| p.tags.is_none()),
            "tags only on request"
        );
        names.extend(page.into_iter().map(|p| p.name.unwrap()));
        token = r.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["FARGATE", "FARGATE_SPOT", "a", "b", "c", "d"]);
    let e = capacity_providers::describe(
        &w.state,
        &ecs::scope(),
        w.now,
        req(json!({"maxResults": 11})),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
}

#[test]
fn update_changes_managed_scaling_keeping_the_rest() {
    let mut w = World::new();
    provider(&mut w, "cp", "blue");
    let r: wire::UpdateCapacityProviderResponse = w.write(
        capacity_providers::update,
        req(json!({"name": "cp", "autoScalingGroupProvider": {
            "managedScaling": {"status": "ENABLED", "targetCapacity": 80},
            "managedDraining": "DISABLED"}})),
    );
    let p = r.capacity_provider.unwrap();
    assert_eq!(
        p.update_status,
        Some(wire::CapacityProviderUpdateStatus::UpdateComplete)
    );
    let asg = p.auto_scaling_group_provider.unwrap();
    let m = asg.managed_scaling.unwrap();
    assert_eq!(m.status, Some(wire::ManagedScalingStatus::Enabled));
    assert_eq!(
        (m.target_capacity, m.maximum_scaling_step_size),
        (Some(80), Some(10_000))
    );
    assert_eq!(asg.managed_draining, Some(wire::ManagedDraining::Disabled));
    assert_eq!(asg.auto_scaling_group_arn.as_deref(), Some("blue"));
    let e = w
        .try_write(
            capacity_providers::update,
            req::<wire::UpdateCapacityProviderRequest>(json!({"name": "cp",
                "autoScalingGroupProvider": {"managedScaling": {"targetCapacity": 0}}})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let e = w
        .try_write(
            capacity_providers::update,
            req::<wire::UpdateCapacityProviderRequest>(
                json!({"name": "nope", "autoScalingGroupProvider": {}}),
            ),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ClientException");
}

#[test]
fn delete_fails_while_a_cluster_has_the_provider_then_succeeds() {
    let mut w = two_groups();
    let del = |w: &mut World, cp: &str| -> Result<wire::CapacityProvider, EcsError> {
        w.try_write(
            capacity_providers::delete,
            req(json!({"capacityProvider": cp})),
        )
        .map(|r: wire::DeleteCapacityProviderResponse| r.capacity_provider.unwrap())
    };
    let p = del(&mut w, "blue-cp").expect("answered");
    assert_eq!(p.status, Some(wire::CapacityProviderStatus::Active));
    assert_eq!(
        p.update_status,
        Some(wire::CapacityProviderUpdateStatus::DeleteFailed)
    );
    assert!(
        p.update_status_reason
            .unwrap()
            .contains("associated with cluster: c"),
        "ECS's reason"
    );
    put(&mut w, json!(["green-cp"]), json!([])).expect("dissociate");
    let p = del(&mut w, "blue-cp").expect("deleted");
    assert_eq!(p.status, Some(wire::CapacityProviderStatus::Inactive));
    assert_eq!(
        p.update_status,
        Some(wire::CapacityProviderUpdateStatus::DeleteComplete)
    );
    assert_eq!(
        del(&mut w, "blue-cp").unwrap_err().code(),
        "ClientException"
    );
    assert_eq!(
        del(&mut w, "FARGATE").unwrap_err().code(),
        "InvalidParameterException"
    );
    // A deleted provider can no longer be associated, and its name is free again.
    assert_eq!(
        put(&mut w, json!(["blue-cp"]), json!([]))
            .unwrap_err()
            .code(),
        "InvalidParameterException"
    );
    provider(&mut w, "blue-cp", "blue");
}

#[test]
fn providers_take_tags_through_tag_resource() {
    let mut w = World::new();
    let arn = provider(&mut w, "cp", "blue")
        .capacity_provider_arn
        .unwrap();
    let _: wire::TagResourceResponse = w.write(
        tags::tag_resource,
        req(json!({"resourceArn": arn, "tags": [{"key": "team", "value": "a"}]})),
    );
    let r = describe(
        &w,
        json!({"capacityProviders": ["cp"], "include": ["TAGS"]}),
    );
    let tags = r.capacity_providers.unwrap()[0].tags.clone().unwrap();
    assert_eq!(tags[0].key.as_deref(), Some("team"));
}

#[test]
fn put_cluster_capacity_providers_checks_names_and_the_default_strategy() {
    let mut w = two_groups();
    let code = |r: Result<(), EcsError>| r.unwrap_err().code();
    assert_eq!(
        code(put(&mut w, json!(["nope"]), json!([]))),
        "InvalidParameterException"
    );
    assert_eq!(
        code(put(
            &mut w,
            json!(["blue-cp"]),
            json!([{"capacityProvider": "green-cp", "weight": 1}])
        )),
        "InvalidParameterException"
    );
    assert_eq!(
        code(put(
            &mut w,
            json!(["blue-cp", "green-cp"]),
            json!([{"capacityProvider": "blue-cp", "weight": 1, "base": 1},
                   {"capacityProvider": "green-cp", "weight": 1, "base": 2}])
        )),
        "InvalidParameterException"
    );
    assert_eq!(
        code(put(&mut w, json!(["blue-cp", "blue-cp"]), json!([]))),
        "InvalidParameterException"
    );
    put(
        &mut w,
        json!(["blue-cp", "green-cp", "FARGATE"]),
        json!([{"capacityProvider": "blue-cp", "weight": 1}]),
    )
    .expect("valid");
    // A provider a task still runs on cannot be removed.
    w.run(json!({"cluster": "c", "taskDefinition": "web",
        "capacityProviderStrategy": [{"capacityProvider": "green-cp", "weight": 1}]}));
    assert_eq!(
        code(put(&mut w, json!(["blue-cp"]), json!([]))),
        "ResourceInUseException"
    );
    put(&mut w, json!(["green-cp"]), json!([])).expect("blue-cp is unused");
}

#[test]
fn run_task_splits_a_strategy_by_base_and_weight_over_node_groups() {
    let mut w = two_groups();
    let arns = w.run(json!({"cluster": "c", "taskDefinition": "web", "count": 6,
        "capacityProviderStrategy": [
            {"capacityProvider": "blue-cp", "weight": 1, "base": 1},
            {"capacityProvider": "green-cp", "weight": 4}]}));
    assert_eq!(arns.len(), 6);
    let p = placements(&w);
    assert_eq!(count(&p, "blue", Some("blue-cp")), 2, "{p:?}");
    assert_eq!(count(&p, "green", Some("green-cp")), 4, "{p:?}");
    // DescribeTasks shows the provider.
    let r = tasks::describe(
        &w.state,
        &ecs::scope(),
        req(json!({"cluster": "c", "tasks": arns})),
    )
    .unwrap();
    assert!(
        r.tasks
            .unwrap()
            .iter()
            .all(|t| t.capacity_provider_name.is_some())
    );
    // DescribeClusters' STATISTICS counts each provider's tasks (all pending: no agent
    // has reported them running).
    let c = clusters::describe_clusters(
        &w.state,
        &ecs::scope(),
        req(json!({"clusters": ["c"], "include": ["STATISTICS"]})),
    )
    .unwrap()
    .clusters
    .unwrap()
    .remove(0);
    let stat = |name: &str| {
        c.statistics
            .iter()
            .flatten()
            .find(|kv| kv.name.as_deref() == Some(name))
            .and_then(|kv| kv.value.clone())
    };
    assert_eq!(
        stat("capacityProvider.blue-cp.pendingTasksCount").as_deref(),
        Some("2")
    );
    assert_eq!(
        stat("capacityProvider.green-cp.pendingTasksCount").as_deref(),
        Some("4")
    );
    assert_eq!(
        stat("capacityProvider.green-cp.runningTasksCount").as_deref(),
        Some("0")
    );
    assert_eq!(stat("activeFargateServiceCount").as_deref(), Some("0"));
}

#[test]
fn a_provider_without_nodes_gets_failures_not_other_nodes() {
    let mut w = two_groups();
    provider(&mut w, "empty-cp", "empty");
    put(
        &mut w,
        json!(["blue-cp", "green-cp", "empty-cp"]),
        json!([]),
    )
    .unwrap();
    let r: wire::RunTaskResponse = w.write(
        tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "web", "count": 2,
            "capacityProviderStrategy": [{"capacityProvider": "empty-cp", "weight": 1}]})),
    );
    assert!(r.tasks.unwrap().is_empty());
    assert!(!r.failures.unwrap().is_empty());
}

#[test]
fn the_default_strategy_is_used_without_launch_type_or_strategy() {
    let mut w = two_groups();
    put(
        &mut w,
        json!(["blue-cp", "green-cp"]),
        json!([{"capacityProvider": "green-cp", "weight": 1}]),
    )
    .unwrap();
    w.run(json!({"cluster": "c", "taskDefinition": "web", "count": 4}));
    let p = placements(&w);
    assert_eq!(count(&p, "green", Some("green-cp")), 4, "{p:?}");
    // A launch type sets the default strategy aside: no provider, any instance.
    w.run(json!({"cluster": "c", "taskDefinition": "web", "count": 3, "launchType": "EC2"}));
    let p = placements(&w);
    assert_eq!(p.iter().filter(|(_, cp)| cp.is_none()).count(), 3, "{p:?}");
}

#[test]
fn launch_type_and_strategy_are_exclusive_and_fargate_waits() {
    let mut w = two_groups();
    let run = |w: &mut World, body: Value| {
        w.try_write(tasks::run_task, req::<wire::RunTaskRequest>(body))
            .unwrap_err()
    };
    let e = run(
        &mut w,
        json!({"cluster": "c", "taskDefinition": "web", "launchType": "EC2",
            "capacityProviderStrategy": [{"capacityProvider": "blue-cp", "weight": 1}]}),
    );
    assert_eq!(e.code(), "InvalidParameterException", "{e}");
    let e = run(
        &mut w,
        json!({"cluster": "c", "taskDefinition": "web",
            "capacityProviderStrategy": [{"capacityProvider": "blue-cp", "weight": 1},
                                         {"capacityProvider": "green-cp", "weight": 1, "base": 1},
                                         {"capacityProvider": "blue-cp", "weight": 2}]}),
    );
    assert_eq!(e.code(), "InvalidParameterException", "{e}");
    put(&mut w, json!(["blue-cp", "FARGATE"]), json!([])).unwrap();
    let e = run(
        &mut w,
        json!({"cluster": "c", "taskDefinition": "web",
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}]}),
    );
    // The Fargate providers run on the Fargate pool (tests/fargate.rs): an EC2-only
    // definition is refused as ECS does, and so is a strategy mixing them with others.
    assert_eq!(e.code(), "InvalidParameterException", "{e}");
    assert_eq!(
        e.to_string(),
        "Task definition does not support launch_type FARGATE."
    );
    let e = run(
        &mut w,
        json!({"cluster": "c", "taskDefinition": "web",
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1},
                                         {"capacityProvider": "blue-cp", "weight": 1}]}),
    );
    assert!(e.to_string().contains("cannot contain a mix"), "{e}");
    assert!(w.state.tasks.is_empty());
    // Services check the strategy the same way (and take one: tests/service_capacity.rs).
    let svc = |w: &mut World, extra: Value| {
        let mut body = json!({"cluster": "c", "serviceName": "s", "taskDefinition": "web",
            "desiredCount": 1,
            "capacityProviderStrategy": [{"capacityProvider": "blue-cp", "weight": 1}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        w.try_write(services::create, req::<wire::CreateServiceRequest>(body))
            .unwrap_err()
    };
    assert_eq!(
        svc(&mut w, json!({"launchType": "EC2"})).code(),
        "InvalidParameterException"
    );
    assert_eq!(
        svc(
            &mut w,
            json!({"capacityProviderStrategy": [{"capacityProvider": "nope", "weight": 1}]})
        )
        .code(),
        "InvalidParameterException"
    );
}
