//! ECS services on a [`World`]: the bridge fleet most service tests start from (nodes with
//! private addresses, a task definition publishing port 80), a reconcile pass of the
//! service controller, what DescribeServices shows, and a Cloud Map registry to list the
//! tasks in.

use controlplane::EcsError;
use controlplane::controllers::service::{ServiceOutcome, reconcile_service};
use controlplane::ops::servicediscovery::{namespaces, services as sd_services};
use controlplane::ops::{services, task_definitions};
use controlplane::state::{SdNamespaceRecord, ServiceKey, TaskRecord};
use model::wire;
use serde_json::{Value, json};

use crate::ecs::{World, req, scope};

/// A world with cluster `c` and nodes `i-a` (zone `a`) and `i-b` (zone `b`) of 4096 CPU
/// units and MiB each; `with_ips`: their agents reported 10.0.0.1 and 10.0.0.2 as their
/// private addresses ([`World::add_two_nodes_with_ips`]).
pub fn two_node_cluster(with_ips: bool) -> World {
    let mut world = World::new();
    world.create_cluster("c");
    if with_ips {
        world.add_two_nodes_with_ips("c");
    } else {
        world.add_instance("c", "i-a", "a", 4096, 4096);
        world.add_instance("c", "i-b", "b", 4096, 4096);
    }
    world
}

impl World {
    /// Nodes `i-a` (zone `a`, 10.0.0.1) and `i-b` (zone `b`, 10.0.0.2) in `cluster`, each
    /// as [`World::add_node_with_ip`] registers it.
    pub fn add_two_nodes_with_ips(&mut self, cluster: &str) {
        for (id, zone, ip) in [("i-a", "a", "10.0.0.1"), ("i-b", "b", "10.0.0.2")] {
            self.add_node_with_ip(cluster, id, zone, ip);
        }
    }

    /// Registers a revision of `family` whose container `app` (`busybox`, 128 MiB)
    /// publishes container port 80 on a dynamic host port; returns its ARN.
    pub fn register_publishing(&mut self, family: &str) -> String {
        let r: wire::RegisterTaskDefinitionResponse = self.write(
            task_definitions::register,
            req(json!({"family": family, "containerDefinitions": [{
                "name": "app", "image": "busybox", "memory": 128,
                "portMappings": [{"containerPort": 80, "hostPort": 0}]
            }]})),
        );
        r.task_definition
            .and_then(|d| d.task_definition_arn)
            .expect("task definition ARN")
    }

    /// CreateService with `body`, which must be refused; the error.
    pub fn refused_create_service(&mut self, body: Value) -> EcsError {
        self.try_write::<_, wire::CreateServiceResponse>(services::create, req(body))
            .expect_err("refused")
    }

    /// UpdateService of service `name` of `cluster` to the task definition `def`.
    pub fn deploy(&mut self, cluster: &str, name: &str, def: &str) {
        let _: wire::UpdateServiceResponse = self.write(
            services::update,
            req(json!({"cluster": cluster, "service": name, "taskDefinition": def})),
        );
    }

    /// Tasks of the task definition `def` meant to run (desired RUNNING, no stop
    /// pending), whatever their last status.
    pub fn meant_to_run(&self, def: &str) -> usize {
        self.state
            .tasks
            .values()
            .filter(|t| {
                t.task.task_definition_arn.as_deref() == Some(def)
                    && t.task.desired_status.as_deref() == Some("RUNNING")
                    && t.pending_stop.is_none()
            })
            .count()
    }

    /// CreateService of service `web` (`web:1`, one task) in cluster `c` with each of
    /// `values` as its `field` (`loadBalancers`, `serviceRegistries`, …): each must be
    /// refused with InvalidParameterException.
    pub fn assert_each_refused(&mut self, field: &str, values: impl IntoIterator<Item = Value>) {
        for value in values {
            let mut body = json!({"cluster": "c", "serviceName": "web",
                "taskDefinition": "web:1", "desiredCount": 1});
            body[field] = value.clone();
            let e = self.refused_create_service(body);
            assert_eq!(e.code(), "InvalidParameterException", "{value}: {e}");
        }
    }

    /// One pass of the service controller over service `name` of `cluster`, its changes
    /// applied.
    pub fn reconcile(&mut self, cluster: &str, name: &str) -> ServiceOutcome {
        let mut ctx = self.ctx();
        let key = ServiceKey::new(&scope(), cluster, name);
        let (out, changes) = reconcile_service(&self.state, &mut ctx, &key).expect("reconcile");
        self.apply(&changes);
        out
    }

    /// The service `name` of `cluster` as DescribeServices shows it (without tags).
    pub fn service(&self, cluster: &str, name: &str) -> wire::Service {
        let key = ServiceKey::new(&scope(), cluster, name);
        let rec = self.state.services.get(&key).expect("service");
        services::describe_one(&self.state, rec, false)
    }

    /// The messages of the service's events, newest first.
    pub fn service_events(&self, cluster: &str, name: &str) -> Vec<String> {
        self.service(cluster, name)
            .events
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| e.message)
            .collect()
    }

    /// Every task of the task group `group` (`service:<name>` for a service's).
    pub fn group_tasks(&self, group: &str) -> Vec<TaskRecord> {
        self.state
            .tasks
            .values()
            .map(|t| (**t).clone())
            .filter(|t| t.task.group.as_deref() == Some(group))
            .collect()
    }

    /// The EC2 instance id of the node the task was placed on.
    pub fn ec2_id_of(&self, task: &TaskRecord) -> Option<String> {
        self.state
            .instances
            .values()
            .find(|i| Some(i.id.as_str()) == task.instance_id.as_deref())
            .expect("the task's node")
            .instance
            .ec2_instance_id
            .clone()
    }

    /// The first (by key) Cloud Map namespace.
    pub fn first_namespace(&self) -> &SdNamespaceRecord {
        self.state
            .discovery
            .namespaces
            .values()
            .next()
            .expect("a namespace")
    }

    /// The private DNS namespace `local` (VPC `vpc-1`) with the Cloud Map service `name`
    /// (A and SRV records, TTL 10); the service's (ARN, id).
    pub fn create_dns_registry(&mut self, name: &str) -> (String, String) {
        let _ = self.sd_write(
            namespaces::create_private_dns_namespace,
            json!({"Name": "local", "Vpc": "vpc-1"}),
        );
        let ns = self.first_namespace().id.clone();
        let svc = self
            .sd_write(
                sd_services::create_service,
                json!({"Name": name, "NamespaceId": ns,
                    "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}]}}),
            )
            .service
            .expect("service");
        (svc.arn.expect("ARN"), svc.id.expect("id"))
    }
}

/// The host port the task's first container's first port is published on.
pub fn host_port(task: &TaskRecord) -> Option<i32> {
    task.task.containers.as_ref().expect("containers")[0]
        .network_bindings
        .as_ref()
        .expect("network bindings")[0]
        .host_port
}
