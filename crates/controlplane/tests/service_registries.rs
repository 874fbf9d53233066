//! ECS services with `serviceRegistries`, driven as pure functions: a bridge service whose
//! tasks the controller registers in a Cloud Map service (A and SRV records) at their
//! node's address and host port, and deregisters as soon as it stops them; what the DNS
//! view then serves; and CreateService's validation of the entries.

use controlplane::ops::servicediscovery::dns::dns_snapshot;
use controlplane::ops::{agent, services};
use controlplane::state::TaskRecord;
use model::{wire, wire_sd};
use serde_json::json;
use testkit::ecs::{World, req, scope};
use testkit::service::{host_port, two_node_cluster};

struct Harness {
    world: World,
    registry_arn: String,
    registry_id: String,
    next_port: i32,
}

impl Harness {
    /// Cluster `c` with nodes `i-a` (10.0.0.1) and `i-b` (10.0.0.2), task definition
    /// `web:1` publishing port 80 on a dynamic host port, namespace `local` with service
    /// `web` (A and SRV records).
    fn new() -> Harness {
        let mut world = two_node_cluster(true);
        world.register_publishing("web");
        let (registry_arn, registry_id) = world.create_dns_registry("web");
        Harness {
            world,
            registry_arn,
            registry_id,
            next_port: 40000,
        }
    }

    fn create_service(&mut self, desired: i32) {
        let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
            "desiredCount": desired, "serviceRegistries": [{"registryArn": self.registry_arn,
                "containerName": "app", "containerPort": 80}]});
        let _: wire::CreateServiceResponse = self.world.write(services::create, req(body));
    }

    fn tasks(&self) -> Vec<TaskRecord> {
        self.world.group_tasks("service:web")
    }

    fn step(&mut self) {
        self.world.now += 1.0;
        self.world.reconcile("c", "web");
        self.world
            .publishing_agent_step("service:web", &mut self.next_port);
    }

    fn registered(&self) -> Vec<wire_sd::Instance> {
        self.world
            .state
            .discovery
            .instances_of(&scope(), &self.registry_id, None)
            .map(|i| i.instance.clone())
            .collect()
    }
}

#[test]
fn running_tasks_are_registered_at_their_node_and_host_port_and_leave_when_stopped() {
    let mut h = Harness::new();
    h.create_service(2);
    for _ in 0..5 {
        h.step();
    }
    let registered = h.registered();
    assert_eq!(registered.len(), 2, "{registered:?}");
    for i in &registered {
        let task = h
            .tasks()
            .into_iter()
            .find(|t| Some(&t.id) == i.id.as_ref())
            .expect("the instance id is a task id");
        let attrs = i.attributes.as_ref().unwrap();
        let node_ip = if h.world.ec2_id_of(&task).as_deref() == Some("i-a") {
            "10.0.0.1"
        } else {
            "10.0.0.2"
        };
        assert_eq!(attrs["AWS_INSTANCE_IPV4"], node_ip);
        let host_port = host_port(&task).unwrap();
        assert_eq!(attrs["AWS_INSTANCE_PORT"], host_port.to_string());
        assert_eq!(attrs["ECS_SERVICE_NAME"], "web");
        assert_eq!(attrs["ECS_CLUSTER_NAME"], "c");
        assert_eq!(attrs["ECS_TASK_DEFINITION_FAMILY"], "web");
    }
    // The DNS view serves both.
    let view = dns_snapshot(&h.world.state);
    let served: usize = view
        .iter()
        .flat_map(|n| &n.services)
        .map(|s| s.instances.len())
        .sum();
    assert_eq!(served, 2);
    // Scaling in deregisters the task in the pass that stops it.
    let _: wire::UpdateServiceResponse = h.world.write(
        services::update,
        req(json!({"cluster": "c", "service": "web", "desiredCount": 1})),
    );
    h.step();
    let stopping: Vec<String> = h
        .tasks()
        .into_iter()
        .filter(|t| t.task.desired_status.as_deref() == Some("STOPPED"))
        .map(|t| t.id)
        .collect();
    assert_eq!(stopping.len(), 1);
    let left: Vec<String> = h.registered().into_iter().filter_map(|i| i.id).collect();
    assert_eq!(left.len(), 1);
    assert!(!left.contains(&stopping[0]));
    // A task that crashes leaves the registry too, and its replacement joins.
    let victim = left[0].clone();
    let _: wire::SubmitTaskStateChangeResponse = h.world.write(
        agent::submit_task_state_change,
        req(json!({"cluster": "c", "task": victim, "status": "STOPPED"})),
    );
    for _ in 0..3 {
        h.step();
    }
    let now: Vec<String> = h.registered().into_iter().filter_map(|i| i.id).collect();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], victim);
}

#[test]
fn service_registries_are_validated_like_ecs() {
    let mut h = Harness::new();
    let missing = "arn:aws:servicediscovery:us-east-1:123456789012:service/srv-doesnotexist0000";
    let bad = [
        json!([{"registryArn": missing, "containerName": "app", "containerPort": 80}]),
        json!([{"registryArn": h.registry_arn}]),
        json!([{"registryArn": h.registry_arn, "containerName": "app", "containerPort": 81}]),
        json!([{"registryArn": h.registry_arn, "containerName": "app"}]),
        json!([{"registryArn": h.registry_arn, "containerName": "app", "containerPort": 80},
               {"registryArn": h.registry_arn, "containerName": "app", "containerPort": 80}]),
    ];
    h.world.assert_each_refused("serviceRegistries", bad);
    h.create_service(1);
}
