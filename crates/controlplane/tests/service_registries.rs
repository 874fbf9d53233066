//! ECS services with `serviceRegistries`, driven as pure functions: a bridge service whose
//! tasks the controller registers in a Cloud Map service (A and SRV records) at their
//! node's address and host port, and deregisters as soon as it stops them; what the DNS
//! view then serves; and CreateService's validation of the entries.

use controlplane::controllers::service::reconcile_service;
use controlplane::ops::servicediscovery::dns::dns_snapshot;
use controlplane::ops::servicediscovery::{namespaces, services as sd_services};
use controlplane::ops::{agent, services, task_definitions};
use controlplane::state::{ServiceKey, TaskRecord};
use model::{wire, wire_sd};
use serde_json::json;
use testkit::ecs::{World, req, scope};

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
        let mut world = World::new();
        world.create_cluster("c");
        for (id, zone, ip) in [("i-a", "a", "10.0.0.1"), ("i-b", "b", "10.0.0.2")] {
            world.add_node_with_ip("c", id, zone, ip);
        }
        let _: wire::RegisterTaskDefinitionResponse = world.write(
            task_definitions::register,
            req(json!({"family": "web", "containerDefinitions": [{
                "name": "app", "image": "busybox", "memory": 128,
                "portMappings": [{"containerPort": 80, "hostPort": 0}]
            }]})),
        );
        let mut h = Harness {
            world,
            registry_arn: String::new(),
            registry_id: String::new(),
            next_port: 40000,
        };
        let _ = h.world.sd_write(
            namespaces::create_private_dns_namespace,
            json!({"Name": "local", "Vpc": "vpc-1"}),
        );
        let ns = h
            .world
            .state
            .discovery
            .namespaces
            .values()
            .next()
            .unwrap()
            .id
            .clone();
        let svc = h
            .world.sd_write(
                sd_services::create_service,
                json!({"Name": "web", "NamespaceId": ns,
                    "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}]}}),
            )
            .service
            .unwrap();
        h.registry_arn = svc.arn.unwrap();
        h.registry_id = svc.id.unwrap();
        h
    }

    fn create_service(&mut self, desired: i32) {
        let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
            "desiredCount": desired, "serviceRegistries": [{"registryArn": self.registry_arn,
                "containerName": "app", "containerPort": 80}]});
        let _: wire::CreateServiceResponse = self.world.write(services::create, req(body));
    }

    fn tasks(&self) -> Vec<TaskRecord> {
        self.world
            .state
            .tasks
            .values()
            .map(|t| (**t).clone())
            .filter(|t| t.task.group.as_deref() == Some("service:web"))
            .collect()
    }

    fn step(&mut self) {
        self.world.now += 1.0;
        let mut ctx = self.world.ctx();
        let key = ServiceKey::new(&scope(), "c", "web");
        let (_, changes) = reconcile_service(&self.world.state, &mut ctx, &key).expect("reconcile");
        self.world.apply(&changes);
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
        let node_ip = if task.instance_id
            == h.world
                .state
                .instances
                .values()
                .find(|x| x.instance.ec2_instance_id.as_deref() == Some("i-a"))
                .map(|x| x.id.clone())
        {
            "10.0.0.1"
        } else {
            "10.0.0.2"
        };
        assert_eq!(attrs["AWS_INSTANCE_IPV4"], node_ip);
        let host_port = task.task.containers.as_ref().unwrap()[0]
            .network_bindings
            .as_ref()
            .unwrap()[0]
            .host_port
            .unwrap();
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
    for entries in bad {
        let body = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web:1",
            "desiredCount": 1, "serviceRegistries": entries});
        let e = h
            .world
            .try_write::<_, wire::CreateServiceResponse>(services::create, req(body))
            .expect_err("refused");
        assert_eq!(e.code(), "InvalidParameterException", "{entries}: {e}");
    }
    h.create_service(1);
}
