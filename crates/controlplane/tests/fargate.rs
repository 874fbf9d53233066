//! The FARGATE launch type on a Fargate pool (`controlplane::fargate`): pool nodes are
//! never container instances of a cluster, FARGATE tasks and services run only on the
//! pool, with the Fargate shape; invalid launches get ECS's errors, a full pool ECS's
//! failure. Pure operations on a hand-driven state ([`World`]).

use controlplane::controllers::reconcile_service;
use controlplane::fargate::{
    CAPACITY_UNAVAILABLE, LATEST_PLATFORM_VERSION, SPOT_ATTRIBUTE, SPOT_INTERRUPTED, pool_cluster,
};
use controlplane::ops::{
    agent, agent_channel, clusters, instances, services, task_definitions, tasks,
};
use controlplane::state::{ServiceKey, TaskRecord};
use model::agent::ReportNetworkRequest;
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::{World, instance, req, scope};

const POOL: &str = "p1";

/// Cluster `c` with EC2 nodes `ec2` (4096 CPU / 4096 MiB each) and Fargate pool nodes
/// `pool` (`(id, zone, cpu, memory)`), and the Fargate task definition `f` (256/512).
fn world(ec2: &[&str], pool: &[(&str, &str, i64, i64)]) -> World {
    let mut w = World::new();
    w.create_cluster("c");
    for (i, id) in ec2.iter().enumerate() {
        let zone = ["a", "b", "c"][i % 3];
        w.add_instance("c", id, zone, 4096, 4096);
    }
    for (id, zone, cpu, mem) in pool {
        let _: wire::RegisterContainerInstanceResponse = w.write(
            instances::register,
            req(instance(&pool_cluster(POOL), id, zone, *cpu, *mem)),
        );
    }
    register_fargate(&mut w, "f", "256", "512");
    w
}

/// Two pool nodes, in zones `a` and `b`, of 4 vCPU and 8 GiB each.
const TWO_POOL_NODES: &[(&str, &str, i64, i64)] =
    &[("f-1", "a", 4096, 8192), ("f-2", "b", 4096, 8192)];

/// CreateService of `body` on `w`.
fn create_service(w: &mut World, body: Value) -> wire::CreateServiceResponse {
    w.write(services::create, req(body))
}

fn register_fargate(w: &mut World, family: &str, cpu: &str, memory: &str) {
    let _: wire::RegisterTaskDefinitionResponse = w.write(
        task_definitions::register,
        req(json!({"family": family, "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"], "cpu": cpu, "memory": memory,
            "containerDefinitions": [{"name": "app", "image": "busybox"}]})),
    );
}

fn network() -> Value {
    json!({"awsvpcConfiguration": {"subnets": ["subnet-0abc"], "securityGroups": ["sg-1"]}})
}

fn run_fargate(w: &mut World, extra: Value) -> Result<wire::RunTaskResponse, String> {
    let mut body = json!({"cluster": "c", "taskDefinition": "f", "launchType": "FARGATE",
        "networkConfiguration": network()});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    w.try_write(tasks::run_task, req(body))
        .map_err(|e| format!("{}: {e}", e.code()))
}

/// Registers spot pool node `id` in `zone` (4096 CPU, 8192 MiB); returns its instance id.
fn add_spot_node(w: &mut World, id: &str, zone: &str) -> String {
    let mut body = instance(&pool_cluster(POOL), id, zone, 4096, 8192);
    body["attributes"] = json!([{"name": SPOT_ATTRIBUTE, "value": "true"}]);
    let r: wire::RegisterContainerInstanceResponse = w.write(instances::register, req(body));
    r.container_instance
        .and_then(|c| c.container_instance_arn)
        .and_then(|a| a.rsplit('/').next().map(str::to_owned))
        .expect("an instance id")
}

/// Associates FARGATE and FARGATE_SPOT with cluster `c` (no default strategy), as AWS
/// requires before a strategy may name them.
fn associate_fargate_providers(w: &mut World) {
    let _: wire::PutClusterCapacityProvidersResponse = w.write(
        clusters::put_cluster_capacity_providers,
        req(
            json!({"cluster": "c", "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
            "defaultCapacityProviderStrategy": []}),
        ),
    );
}

fn pool_ids(w: &World) -> Vec<String> {
    w.state
        .instances
        .values()
        .filter(|i| i.cluster == pool_cluster(POOL))
        .map(|i| i.id.clone())
        .collect()
}

fn record(w: &World, arn: &str) -> TaskRecord {
    let id = arn.rsplit('/').next().expect("an id");
    w.state
        .tasks
        .values()
        .find(|t| t.id == id)
        .map(|t| TaskRecord::clone(t))
        .expect("the task")
}

/// Every task of the world, stopped ones included.
fn all_tasks(w: &World) -> Vec<TaskRecord> {
    w.state
        .tasks
        .values()
        .map(|t| TaskRecord::clone(t))
        .collect()
}

/// One service controller pass over service `web` of cluster `c`, applied.
fn reconcile_web(w: &mut World) {
    let key = ServiceKey::new(&scope(), "c", "web");
    let mut ctx = w.ctx();
    let (_, changes) = reconcile_service(&w.state, &mut ctx, &key).expect("reconcile");
    w.apply(&changes);
}

/// The value of detail `name` of the task's ENI attachment.
fn eni_detail(task: &wire::Task, name: &str) -> Option<String> {
    task.attachments.as_deref().expect("attachments")[0]
        .details
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|d| d.name.as_deref() == Some(name))
        .and_then(|d| d.value.clone())
}

#[test]
fn pool_nodes_are_never_container_instances_of_a_cluster() {
    let mut w = world(&["i-1", "i-2", "i-3"], TWO_POOL_NODES);
    let listed: wire::ListContainerInstancesResponse = instances::list(
        &w.state,
        &scope(),
        testkit::ecs::T0,
        req(json!({"cluster": "c"})),
    )
    .expect("list");
    assert_eq!(listed.container_instance_arns.unwrap_or_default().len(), 3);
    // Not by the pool's name either: it is no cluster.
    let e = instances::list(
        &w.state,
        &scope(),
        testkit::ecs::T0,
        req(json!({"cluster": pool_cluster(POOL)})),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ClusterNotFoundException");
    let pool_arn = w
        .state
        .instances
        .values()
        .find(|i| i.cluster == pool_cluster(POOL))
        .and_then(|i| i.instance.container_instance_arn.clone())
        .expect("a pool node");
    let described = instances::describe(
        &w.state,
        &scope(),
        req(json!({"cluster": "c", "containerInstances": [pool_arn]})),
    )
    .expect("describe");
    assert!(described.container_instances.unwrap_or_default().is_empty());
    assert_eq!(described.failures.unwrap_or_default().len(), 1);
    let clusters: wire::ListClustersResponse =
        clusters::list_clusters(&w.state, &scope(), testkit::ecs::T0, req(json!({})))
            .expect("list clusters");
    assert_eq!(clusters.cluster_arns.unwrap_or_default().len(), 1);
    // No one can create a cluster named like a pool.
    let e = w
        .try_write(
            clusters::create_cluster,
            req::<wire::CreateClusterRequest>(json!({"clusterName": pool_cluster(POOL)})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
}

#[test]
fn a_fargate_service_of_four_runs_on_the_pool_only_with_the_fargate_shape() {
    let mut w = world(&["i-1", "i-2", "i-3"], TWO_POOL_NODES);
    let created = create_service(
        &mut w,
        json!({"cluster": "c", "serviceName": "web", "taskDefinition": "f",
            "desiredCount": 4, "launchType": "FARGATE", "networkConfiguration": network()}),
    );
    let svc = created.service.expect("service");
    assert_eq!(
        svc.platform_version.as_deref(),
        Some(LATEST_PLATFORM_VERSION)
    );
    assert_eq!(svc.platform_family.as_deref(), Some("Linux"));
    reconcile_web(&mut w);
    let pool = pool_ids(&w);
    let started = all_tasks(&w);
    assert_eq!(started.len(), 4);
    let mut per_node = std::collections::BTreeMap::new();
    for t in &started {
        let on = t.instance_id.clone().expect("placed");
        assert!(
            pool.contains(&on.to_string()),
            "task on {on}, not on the pool {pool:?}"
        );
        assert_eq!(t.pool.as_deref(), Some(pool_cluster(POOL).as_str()));
        *per_node.entry(on).or_insert(0) += 1;
        let task = &t.task;
        assert_eq!(task.launch_type, Some(wire::LaunchType::Fargate));
        assert_eq!(
            task.platform_version.as_deref(),
            Some(LATEST_PLATFORM_VERSION)
        );
        assert_eq!(task.platform_family.as_deref(), Some("Linux"));
        assert_eq!(task.capacity_provider_name.as_deref(), Some("FARGATE"));
        assert_eq!(task.container_instance_arn, None);
        let eni = &task.attachments.as_deref().expect("attachments")[0];
        assert_eq!(eni.r#type.as_deref(), Some("ElasticNetworkInterface"));
        assert_eq!(eni.status.as_deref(), Some("PRECREATED"));
    }
    // Spread across the two zones (one node each): two tasks per node.
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![2, 2]);
    // The pool node's poll carries the tasks of cluster c placed on it.
    for node in w.state.instances.values().filter(|i| pool.contains(&i.id)) {
        assert_eq!(agent_channel::assignment(&w.state, node).tasks.len(), 2);
    }
    // The pool node reports each task's address and RUNNING, naming its pool.
    for (i, t) in started.iter().enumerate() {
        let arn = t.task.task_arn.clone().expect("arn");
        let _: model::agent::ReportNetworkResponse = w.write(
            agent::report_network,
            ReportNetworkRequest {
                cluster: Some(pool_cluster(POOL)),
                task: Some(arn.to_string()),
                private_ipv4_address: format!("172.31.0.{}", 10 + i),
                mac_address: Some("02:00:00:00:00:01".into()),
                subnet: Some("172.31.0.0/16".into()),
                gateway: Some("172.31.0.1".into()),
            },
        );
        let _: wire::SubmitTaskStateChangeResponse = w.write(
            agent::submit_task_state_change,
            req(json!({"cluster": pool_cluster(POOL), "task": arn, "status": "RUNNING"})),
        );
    }
    let mut ips = std::collections::BTreeSet::new();
    for t in &started {
        let now = record(&w, t.task.task_arn.as_deref().expect("arn"));
        assert_eq!(now.task.last_status.as_deref(), Some("RUNNING"));
        let eni = &now.task.attachments.as_deref().expect("attachments")[0];
        assert_eq!(eni.status.as_deref(), Some("ATTACHED"));
        let detail = |name: &str| eni_detail(&now.task, name);
        assert_eq!(detail("subnetId").as_deref(), Some("subnet-0abc"));
        assert!(detail("networkInterfaceId").is_some_and(|n| n.starts_with("eni-")));
        assert!(detail("privateDnsName").is_some_and(|n| n.starts_with("ip-172-31-0-")));
        ips.insert(detail("privateIPv4Address").expect("an address"));
    }
    assert_eq!(ips.len(), 4, "each task has its own address");
    // Steady: the tasks on the pool count as on ACTIVE instances; nothing more starts.
    reconcile_web(&mut w);
    assert_eq!(w.state.tasks.len(), 4);
    // The cluster's EC2 nodes hold nothing.
    for id in ["i-1", "i-2", "i-3"] {
        let n = w
            .state
            .instances
            .values()
            .find(|i| i.instance.ec2_instance_id.as_deref() == Some(id))
            .expect("node");
        assert!(w.state.usage(&scope(), "c", &n.id).is_none());
    }
}

#[test]
fn an_oversized_fargate_task_gets_ecs_error() {
    let mut w = world(&[], &[("f-1", "a", 4096, 8192)]);
    let e = run_fargate(
        &mut w,
        json!({"overrides": {"cpu": "256", "memory": "4096"}}),
    )
    .unwrap_err();
    assert_eq!(
        e,
        "InvalidParameterException: No Fargate configuration exists for given values: \
         256 CPU, 4096 memory. See the Amazon ECS documentation for the valid values."
    );
    let e = w
        .try_write(
            task_definitions::register,
            req::<wire::RegisterTaskDefinitionRequest>(json!({"family": "big",
                "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                "cpu": "256", "memory": "4096",
                "containerDefinitions": [{"name": "app", "image": "busybox"}]})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ClientException");
    assert!(
        e.to_string().contains("No Fargate configuration exists"),
        "{e}"
    );
}

#[test]
fn invalid_fargate_launches_get_ecs_errors() {
    let mut w = world(&[], &[("f-1", "a", 4096, 8192)]);
    let e = w
        .try_write(
            tasks::run_task,
            req::<wire::RunTaskRequest>(json!({"cluster": "c", "taskDefinition": "f",
                "launchType": "FARGATE"})),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Network Configuration must be provided when networkMode 'awsvpc' is specified."
    );
    let e = run_fargate(&mut w, json!({"platformVersion": "0.9.0"})).unwrap_err();
    assert!(e.starts_with("InvalidParameterException"), "{e}");
    let e = run_fargate(
        &mut w,
        json!({"placementStrategy": [{"type": "binpack", "field": "memory"}]}),
    )
    .unwrap_err();
    assert!(
        e.contains("not supported with the FARGATE launch type"),
        "{e}"
    );
    // A bridge-mode (EC2-only) definition.
    let _: wire::RegisterTaskDefinitionResponse = w.write(
        task_definitions::register,
        req(testkit::ecs::task_definition("b", 64)),
    );
    let e = run_fargate(&mut w, json!({"taskDefinition": "b"})).unwrap_err();
    assert_eq!(
        e,
        "InvalidParameterException: Task definition does not support launch_type FARGATE."
    );
    // A service too.
    let e = w
        .try_write(
            services::create,
            req::<wire::CreateServiceRequest>(json!({"cluster": "c", "serviceName": "s",
                "taskDefinition": "f", "desiredCount": 1, "launchType": "FARGATE"})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
}

#[test]
fn a_full_pool_answers_ecs_capacity_failure_without_naming_a_node() {
    // Room for two 256/512 tasks by memory.
    let mut w = world(&[], &[("f-1", "a", 4096, 1024)]);
    let r = run_fargate(&mut w, json!({"count": 3})).expect("run");
    assert_eq!(r.tasks.unwrap_or_default().len(), 2);
    let failures = r.failures.unwrap_or_default();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].reason.as_deref(), Some(CAPACITY_UNAVAILABLE));
    assert_eq!(failures[0].arn, None);
    assert!(
        failures[0]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("RESOURCE:MEMORY"))
    );
    // No pool at all: every task fails the same way (not an error).
    let mut w = world(&["i-1"], &[]);
    let r = run_fargate(&mut w, json!({})).expect("run");
    assert!(r.tasks.unwrap_or_default().is_empty());
    assert_eq!(
        r.failures.unwrap_or_default()[0].reason.as_deref(),
        Some(CAPACITY_UNAVAILABLE)
    );
}

#[test]
fn ec2_tasks_never_land_on_pool_nodes() {
    let mut w = world(&[], &[("f-1", "a", 4096, 8192)]);
    let _: wire::RegisterTaskDefinitionResponse = w.write(
        task_definitions::register,
        req(testkit::ecs::task_definition("b", 64)),
    );
    let e = w
        .try_write(
            tasks::run_task,
            req::<wire::RunTaskRequest>(json!({"cluster": "c", "taskDefinition": "b"})),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "No Container Instances were found in your cluster."
    );
    // With an EC2 node, every EC2 task goes there.
    w.add_instance("c", "i-1", "a", 4096, 4096);
    let arns = w.run(json!({"cluster": "c", "taskDefinition": "b", "count": 5}));
    assert_eq!(arns.len(), 5);
    let pool = pool_ids(&w);
    for arn in arns {
        let t = record(&w, &arn);
        assert!(!pool.contains(&t.instance_id.as_deref().expect("placed").to_owned()));
        assert_eq!(t.pool, None);
    }
}

#[test]
fn the_fargate_spot_provider_runs_on_the_pool_with_its_name() {
    let mut w = world(&[], &[("f-1", "a", 4096, 8192)]);
    let spot = add_spot_node(&mut w, "s-1", "b");
    associate_fargate_providers(&mut w);
    let r: wire::RunTaskResponse = w.write(
        tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "f", "count": 4,
            "networkConfiguration": network(),
            "capacityProviderStrategy": [
                {"capacityProvider": "FARGATE", "weight": 1, "base": 1},
                {"capacityProvider": "FARGATE_SPOT", "weight": 1}]})),
    );
    let names: Vec<String> = r
        .tasks
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            assert_eq!(t.launch_type, Some(wire::LaunchType::Fargate));
            let name = t.capacity_provider_name.clone().expect("a provider");
            // FARGATE_SPOT tasks on the spot node, FARGATE ones never.
            let on = record(&w, t.task_arn.as_deref().expect("arn")).instance_id;
            assert_eq!(on.as_deref() == Some(spot.as_str()), name == "FARGATE_SPOT");
            name.to_string()
        })
        .collect();
    // Base 1 on FARGATE, the other 3 split 1:1 beyond it (the odd one to the provider
    // listed first): 1 + 2 FARGATE, 1 FARGATE_SPOT.
    assert_eq!(
        names.iter().filter(|n| *n == "FARGATE").count(),
        3,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| *n == "FARGATE_SPOT").count(),
        1,
        "{names:?}"
    );
}

#[test]
fn a_pool_node_reports_only_on_tasks_of_its_pool() {
    let mut w = world(&["i-1"], &[("f-1", "a", 4096, 8192)]);
    let _: wire::RegisterTaskDefinitionResponse = w.write(
        task_definitions::register,
        req(testkit::ecs::task_definition("b", 64)),
    );
    let ec2 = w.run(json!({"cluster": "c", "taskDefinition": "b"}));
    let e = w
        .try_write(
            agent::submit_task_state_change,
            req::<wire::SubmitTaskStateChangeRequest>(json!({"cluster": pool_cluster(POOL),
                "task": ec2[0], "status": "RUNNING"})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let fargate = run_fargate(&mut w, json!({}))
        .expect("run")
        .tasks
        .unwrap_or_default();
    let arn = fargate[0].task_arn.clone().expect("arn");
    // The cluster's name works as well (the task is the cluster's).
    let _: wire::SubmitTaskStateChangeResponse = w.write(
        agent::submit_task_state_change,
        req(json!({"cluster": "c", "task": arn, "status": "RUNNING"})),
    );
    assert_eq!(
        record(&w, &arn).task.last_status.as_deref(),
        Some("RUNNING")
    );
}

#[test]
fn tasks_of_a_silent_pool_node_are_lost_and_replaced_on_the_pool() {
    let mut w = world(&["i-1"], TWO_POOL_NODES);
    create_service(
        &mut w,
        json!({"cluster": "c", "serviceName": "web", "taskDefinition": "f",
            "desiredCount": 2, "launchType": "FARGATE", "networkConfiguration": network()}),
    );
    reconcile_web(&mut w);
    let arns: Vec<String> = w
        .state
        .tasks
        .values()
        .filter_map(|t| t.task.task_arn.as_deref().map(str::to_owned))
        .collect();
    for arn in &arns {
        let _: wire::SubmitTaskStateChangeResponse = w.write(
            agent::submit_task_state_change,
            req(json!({"cluster": pool_cluster(POOL), "task": arn, "status": "RUNNING"})),
        );
    }
    // f-1 falls silent; f-2 keeps polling.
    let nodes: Vec<_> = w
        .state
        .instances
        .values()
        .filter(|i| i.cluster == pool_cluster(POOL))
        .map(|i| {
            (
                i.key(),
                i.instance.ec2_instance_id.clone().unwrap_or_default(),
            )
        })
        .collect();
    w.now += 120.0;
    let seen = nodes
        .iter()
        .filter(|(_, ec2)| ec2 == "f-2")
        .map(|(k, _)| (k.clone(), w.now))
        .collect();
    let silent = nodes
        .iter()
        .find(|(_, ec2)| ec2 == "f-1")
        .map(|(k, _)| k.id.clone())
        .expect("f-1");
    let mut ctx = w.ctx();
    let (lost, changes) =
        agent_channel::check_liveness(&w.state, &mut ctx, &seen, 30.0, 60.0).expect("liveness");
    w.apply(&changes);
    assert!(lost >= 2, "the node disconnected and its task stopped");
    let on_silent = |w: &World| {
        w.state
            .tasks
            .values()
            .filter(|t| t.instance_id.as_deref() == Some(silent.as_str()))
            .filter(|t| t.task.last_status.as_deref() != Some("STOPPED"))
            .count()
    };
    assert_eq!(on_silent(&w), 0);
    // The service replaces the lost task on the pool node that is still there.
    reconcile_web(&mut w);
    let live: Vec<TaskRecord> = w
        .state
        .tasks
        .values()
        .filter(|t| t.task.last_status.as_deref() != Some("STOPPED"))
        .map(|t| TaskRecord::clone(t))
        .collect();
    assert_eq!(live.len(), 2);
    assert!(
        live.iter()
            .all(|t| t.pool.is_some() && t.instance_id.as_deref() != Some(silent.as_str()))
    );
}

#[test]
fn a_fargate_service_cannot_move_to_an_ec2_only_revision() {
    let mut w = world(&[], &[("f-1", "a", 4096, 8192)]);
    create_service(
        &mut w,
        json!({"cluster": "c", "serviceName": "web", "taskDefinition": "f",
            "desiredCount": 1, "launchType": "FARGATE", "networkConfiguration": network()}),
    );
    let _: wire::RegisterTaskDefinitionResponse = w.write(
        task_definitions::register,
        req(testkit::ecs::task_definition("b", 64)),
    );
    let e = w
        .try_write(
            services::update,
            req::<wire::UpdateServiceRequest>(
                json!({"cluster": "c", "service": "web", "taskDefinition": "b"}),
            ),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Task definition does not support launch_type FARGATE."
    );
    // A Fargate revision is fine.
    register_fargate(&mut w, "f", "512", "1024");
    let _: wire::UpdateServiceResponse = w.write(
        services::update,
        req(json!({"cluster": "c", "service": "web", "taskDefinition": "f:2"})),
    );
}

#[test]
fn draining_a_spot_node_interrupts_its_tasks_and_only_its_tasks() {
    let mut w = world(&[], &[("f-1", "a", 4096, 8192)]);
    let spot = add_spot_node(&mut w, "s-1", "b");
    associate_fargate_providers(&mut w);
    let spot_tasks: Vec<String> = run_fargate(
        &mut w,
        json!({"launchType": null, "count": 2,
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}),
    )
    .expect("run")
    .tasks
    .unwrap_or_default()
    .into_iter()
    .filter_map(|t| t.task_arn.map(String::from))
    .collect();
    assert_eq!(spot_tasks.len(), 2);
    let regular = run_fargate(&mut w, json!({}))
        .expect("run")
        .tasks
        .unwrap_or_default();
    let regular = regular[0].task_arn.as_deref().expect("arn").to_owned();
    for arn in spot_tasks.iter().chain([&regular]) {
        let _: wire::SubmitTaskStateChangeResponse = w.write(
            agent::submit_task_state_change,
            req(json!({"cluster": pool_cluster(POOL), "task": arn, "status": "RUNNING"})),
        );
    }
    // The pool reclaims the spot node: its operator drains it by the pool's name.
    let _: wire::UpdateContainerInstancesStateResponse = w.write(
        instances::update_state,
        req(
            json!({"cluster": pool_cluster(POOL), "containerInstances": [spot],
            "status": "DRAINING"}),
        ),
    );
    for arn in &spot_tasks {
        let t = record(&w, arn).task;
        assert_eq!(t.desired_status.as_deref(), Some("STOPPED"));
        assert_eq!(t.stop_code, Some(wire::TaskStopCode::SpotInterruption));
        assert_eq!(t.stopped_reason.as_deref(), Some(SPOT_INTERRUPTED));
        // The agent stops it (SIGTERM, then the container's stopTimeout).
        assert_eq!(t.last_status.as_deref(), Some("RUNNING"));
    }
    assert_eq!(
        record(&w, &regular).task.desired_status.as_deref(),
        Some("RUNNING")
    );
    // With the spot node draining, FARGATE_SPOT has no capacity left.
    let r = run_fargate(
        &mut w,
        json!({"launchType": null,
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}),
    )
    .expect("run");
    assert_eq!(
        r.failures.unwrap_or_default()[0].reason.as_deref(),
        Some(CAPACITY_UNAVAILABLE)
    );
}

/// CreateTaskSet with the FARGATE launch type (or the FARGATE provider's strategy) in an
/// EXTERNAL service: the set's tasks run on the pool with the Fargate shape, its own
/// platform version and subnet; a steady set starts nothing more; bad launches get
/// ECS's errors.
#[test]
fn a_fargate_task_set_runs_its_tasks_on_the_pool() {
    use controlplane::ops::task_sets;
    let mut w = world(&["i-1"], TWO_POOL_NODES);
    create_service(
        &mut w,
        json!({"cluster": "c", "serviceName": "web", "desiredCount": 2,
            "deploymentController": {"type": "EXTERNAL"}}),
    );
    let set_body = |extra: Value| {
        let mut body = json!({"cluster": "c", "service": "web", "taskDefinition": "f",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-set"]}},
            "scale": {"value": 100.0, "unit": "PERCENT"}});
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        body
    };
    // Both a launch type and a strategy; FARGATE without awsvpc subnets; an unknown
    // platform version: refused, nothing stored.
    for bad in [
        json!({"launchType": "FARGATE",
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}]}),
        json!({"launchType": "FARGATE", "networkConfiguration": null}),
        json!({"launchType": "FARGATE", "platformVersion": "0.9.9"}),
    ] {
        let mut body = set_body(bad.clone());
        if bad.get("networkConfiguration").is_some_and(Value::is_null) {
            body.as_object_mut().unwrap().remove("networkConfiguration");
        }
        let r: Result<wire::CreateTaskSetResponse, _> = w.try_write(task_sets::create, req(body));
        assert_eq!(
            r.map(|_| ()).unwrap_err().code(),
            "InvalidParameterException",
            "{bad}"
        );
    }
    let created: wire::CreateTaskSetResponse = w.write(
        task_sets::create,
        req(set_body(json!({"launchType": "FARGATE"}))),
    );
    let ts = created.task_set.expect("task set");
    assert_eq!(ts.launch_type, Some(wire::LaunchType::Fargate));
    assert_eq!(
        ts.platform_version.as_deref(),
        Some(LATEST_PLATFORM_VERSION)
    );
    assert_eq!(ts.platform_family.as_deref(), Some("Linux"));
    reconcile_web(&mut w);
    let pool = pool_ids(&w);
    let started = all_tasks(&w);
    assert_eq!(started.len(), 2, "the set's computedDesiredCount");
    for t in &started {
        let on = t.instance_id.clone().expect("placed");
        assert!(
            pool.contains(&on.to_string()),
            "task on {on}, not on the pool {pool:?}"
        );
        assert_eq!(
            t.task.started_by.as_deref(),
            ts.id.as_deref(),
            "started by its set"
        );
        assert_eq!(t.task.launch_type, Some(wire::LaunchType::Fargate));
        assert_eq!(t.task.capacity_provider_name.as_deref(), Some("FARGATE"));
        assert_eq!(t.task.container_instance_arn, None);
        assert_eq!(
            eni_detail(&t.task, "subnetId").as_deref(),
            Some("subnet-set"),
            "the set's own subnet"
        );
    }
    // Pending on the pool's ACTIVE nodes: the next pass starts nothing more.
    reconcile_web(&mut w);
    assert_eq!(w.state.tasks.len(), 2);
}

/// A task set with a capacity provider strategy places as a service's deployment does:
/// FARGATE_SPOT tasks on the spot node, named by their provider.
#[test]
fn a_task_set_with_the_fargate_spot_strategy_runs_on_spot_nodes() {
    use controlplane::ops::task_sets;
    let mut w = world(&[], &[("f-1", "a", 4096, 8192)]);
    let spot = add_spot_node(&mut w, "s-1", "b");
    associate_fargate_providers(&mut w);
    create_service(
        &mut w,
        json!({"cluster": "c", "serviceName": "web", "desiredCount": 2,
            "deploymentController": {"type": "EXTERNAL"}}),
    );
    let created: wire::CreateTaskSetResponse = w.write(
        task_sets::create,
        req(
            json!({"cluster": "c", "service": "web", "taskDefinition": "f",
            "networkConfiguration": network(), "scale": {"value": 100.0, "unit": "PERCENT"},
            "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}),
        ),
    );
    let ts = created.task_set.expect("task set");
    assert_eq!(ts.launch_type, None, "a strategy, no launch type");
    reconcile_web(&mut w);
    let started = all_tasks(&w);
    assert_eq!(started.len(), 2);
    for t in &started {
        assert_eq!(t.instance_id.as_deref(), Some(spot.as_str()));
        assert_eq!(
            t.task.capacity_provider_name.as_deref(),
            Some("FARGATE_SPOT")
        );
        assert_eq!(t.task.launch_type, Some(wire::LaunchType::Fargate));
    }
}
