//! ECS Service Connect, the control plane's part, driven as pure functions: CreateService
//! with `serviceConnectConfiguration` creates the Cloud Map service, the controller
//! registers the RUNNING tasks at their node's address and host port, the agent's
//! assignment carries each task's namespace, `GetServiceConnectRoutes` answers the alias
//! with the endpoints — and through a deployment the alias never runs out of endpoints,
//! stopped tasks leave first and stop only after the drain.

use controlplane::ops::agent_channel::{assignment, service_connect_routes};
use controlplane::ops::servicediscovery::namespaces;
use controlplane::ops::{clusters, services, task_definitions};
use controlplane::registries::PRIVATE_IP_ATTRIBUTE;
use controlplane::service_connect::{self, SERVICE_CONNECT_DRAIN_MS};
use controlplane::state::TaskRecord;
use model::agent::{GetServiceConnectRoutesRequest, ServiceConnectRoute};
use model::{wire, wire_sd};
use serde_json::{Value, json};
use testkit::ecs::{World, req, scope};
use testkit::service::two_node_cluster;

struct Harness {
    world: World,
    namespace_arn: String,
    next_port: i32,
}

fn sc(namespace: &str) -> Value {
    json!({"enabled": true, "namespace": namespace, "services": [{"portName": "http",
        "clientAliases": [{"port": 8080, "dnsName": "web"}]}]})
}

impl Harness {
    /// Cluster `c` with nodes `i-a` (10.0.0.1) and `i-b` (10.0.0.2); task definitions
    /// `web:1` and `web:2` (bridge, port 80 named `http` on a dynamic host port),
    /// `client:1`, `host:1` (host network); HTTP namespace `local`.
    fn new() -> Harness {
        let mut world = two_node_cluster(true);
        for (family, mode, image) in [
            ("web", "bridge", "busybox"),
            ("web", "bridge", "busybox:2"),
            ("client", "bridge", "busybox"),
            ("host", "host", "busybox"),
        ] {
            let _: wire::RegisterTaskDefinitionResponse = world.write(
                task_definitions::register,
                req(json!({"family": family, "networkMode": mode, "containerDefinitions": [{
                    "name": "app", "image": image, "memory": 128,
                    "portMappings": [{"containerPort": 80, "hostPort": if mode == "host" {80} else {0},
                        "name": "http"}]
                }]})),
            );
        }
        let mut h = Harness {
            world,
            namespace_arn: String::new(),
            next_port: 40000,
        };
        let _ = h
            .world
            .sd_write(namespaces::create_http_namespace, json!({"Name": "local"}));
        h.namespace_arn = h.world.first_namespace().namespace.arn.clone().unwrap();
        h
    }

    fn create(&mut self, name: &str, def: &str, desired: i32, sc: Value) -> wire::Service {
        let body = json!({"cluster": "c", "serviceName": name, "taskDefinition": def,
            "desiredCount": desired, "serviceConnectConfiguration": sc});
        let r: wire::CreateServiceResponse = self.world.write(services::create, req(body));
        r.service.unwrap()
    }

    fn tasks(&self, service: &str) -> Vec<TaskRecord> {
        self.world.group_tasks(&format!("service:{service}"))
    }

    /// One second: each service reconciled, then each group's simulated agent.
    fn step(&mut self, services: &[&str]) {
        self.world.now += 1.0;
        for name in services {
            self.world.reconcile("c", name);
            self.world
                .publishing_agent_step(&format!("service:{name}"), &mut self.next_port);
        }
    }

    fn routes(&self) -> Vec<ServiceConnectRoute> {
        let instance = self.world.state.instances.values().next().unwrap();
        let r = GetServiceConnectRoutesRequest {
            cluster: Some("c".into()),
            container_instance: Some(instance.id.clone()),
            namespaces: vec![self.namespace_arn.clone()],
        };
        service_connect_routes(&self.world.state, &scope(), &r)
            .expect("routes")
            .routes
    }

    /// Each endpoint of the only route, as `ip:port`, sorted.
    fn endpoints(&self) -> Vec<String> {
        let routes = self.routes();
        assert_eq!(routes.len(), 1, "{routes:?}");
        let mut out: Vec<String> = routes[0]
            .endpoints
            .iter()
            .map(|e| format!("{}:{}", e.address, e.port))
            .collect();
        out.sort();
        out
    }

    /// Where each RUNNING task of `service` listens (node address and host port), sorted.
    fn listening(&self, service: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .tasks(service)
            .iter()
            .filter(|t| {
                t.task.last_status.as_deref() == Some("RUNNING")
                    && t.task.desired_status.as_deref() == Some("RUNNING")
                    && t.pending_stop.is_none()
            })
            .map(|t| {
                let node = self
                    .world
                    .state
                    .instances
                    .values()
                    .find(|i| Some(i.id.as_str()) == t.instance_id.as_deref())
                    .unwrap();
                let ip = node.attribute(PRIVATE_IP_ATTRIBUTE).unwrap().to_owned();
                let port = t.task.containers.as_ref().unwrap()[0]
                    .network_bindings
                    .as_ref()
                    .unwrap()[0]
                    .host_port
                    .unwrap();
                format!("{ip}:{port}")
            })
            .collect();
        out.sort();
        out
    }

    /// The namespace each of `service`'s tasks is assigned with on its node.
    fn assigned_namespaces(&self, service: &str) -> Vec<Option<String>> {
        let ids: Vec<String> = self.tasks(service).into_iter().map(|t| t.id).collect();
        self.world
            .state
            .instances
            .values()
            .flat_map(|i| assignment(&self.world.state, i).tasks)
            .filter(|a| {
                a.task
                    .task_arn
                    .as_deref()
                    .is_some_and(|arn| ids.iter().any(|id| arn.ends_with(id.as_str())))
            })
            .map(|a| a.service_connect.map(|s| s.namespace))
            .collect()
    }
}

#[test]
fn a_service_offers_its_port_under_an_alias_and_clients_get_the_namespace() {
    let mut h = Harness::new();
    let web = h.create("web", "web:1", 2, sc("local"));
    // The deployment shows the configuration filled in, and the Cloud Map service ECS made.
    let d = &web.deployments.as_ref().unwrap()[0];
    let config = d.service_connect_configuration.as_ref().unwrap();
    assert_eq!(config.namespace.as_deref(), Some(h.namespace_arn.as_str()));
    let entry = &config.services.as_ref().unwrap()[0];
    assert_eq!(entry.discovery_name.as_deref(), Some("http"));
    let resources = d.service_connect_resources.as_ref().unwrap();
    let discovery_arn = resources[0].discovery_arn.clone().unwrap();
    let sd_service = h
        .world
        .state
        .discovery
        .services
        .values()
        .find(|s| s.service.arn.as_deref() == Some(discovery_arn.as_str()))
        .expect("ECS created the Cloud Map service");
    assert_eq!(sd_service.service.name.as_deref(), Some("http"));
    assert_eq!(sd_service.service.r#type, Some(wire_sd::ServiceType::Http));
    // A client-only service in the same namespace.
    h.create(
        "client",
        "client:1",
        1,
        json!({"enabled": true, "namespace": "local"}),
    );
    for _ in 0..4 {
        h.step(&["web", "client"]);
    }
    // The alias answers with both RUNNING web tasks, at node address and host port.
    let routes = h.routes();
    assert_eq!(routes.len(), 1);
    assert_eq!((routes[0].dns_name.as_str(), routes[0].port), ("web", 8080));
    assert_eq!(routes[0].discovery_name, "http");
    assert_eq!(
        routes[0].app_protocol, None,
        "a port mapping without appProtocol: TCP, as in ECS"
    );
    assert_eq!(h.endpoints(), h.listening("web"));
    assert_eq!(h.endpoints().len(), 2);
    // Every task of both services is told its namespace; a task of another service not.
    let ns = Some(h.namespace_arn.clone());
    assert_eq!(h.assigned_namespaces("web"), vec![ns.clone(), ns.clone()]);
    assert_eq!(h.assigned_namespaces("client"), vec![ns]);
    let _: wire::CreateServiceResponse = h.world.write(
        services::create,
        req(
            json!({"cluster": "c", "serviceName": "plain", "taskDefinition": "client:1",
            "desiredCount": 1}),
        ),
    );
    h.step(&["plain"]);
    assert_eq!(h.assigned_namespaces("plain"), vec![None]);
}

#[test]
fn through_a_deployment_the_alias_keeps_endpoints_and_old_tasks_drain_before_they_stop() {
    let mut h = Harness::new();
    h.create("web", "web:1", 3, sc("local"));
    for _ in 0..4 {
        h.step(&["web"]);
    }
    let old = h.listening("web");
    assert_eq!(old.len(), 3);
    let _: wire::UpdateServiceResponse = h.world.write(
        services::update,
        req(json!({"cluster": "c", "service": "web", "taskDefinition": "web:2"})),
    );
    let mut saw_drain = false;
    for _ in 0..120 {
        h.step(&["web"]);
        let endpoints = h.endpoints();
        assert!(!endpoints.is_empty(), "the alias ran out of endpoints");
        // Every endpoint is a task meant to run: one that is draining or stopping has
        // already left (a task that just turned RUNNING joins in the next pass).
        let listening = h.listening("web");
        assert!(
            endpoints.iter().all(|e| listening.contains(e)),
            "{endpoints:?} vs {listening:?}"
        );
        for t in h.tasks("web") {
            if let Some(p) = &t.pending_stop {
                saw_drain = true;
                assert_eq!(t.task.desired_status.as_deref(), Some("RUNNING"));
                assert!(p.at - h.world.now <= SERVICE_CONNECT_DRAIN_MS as f64 / 1000.0);
            }
        }
        let new = h.listening("web");
        if new.len() == 3 && new.iter().all(|e| !old.contains(e)) && h.tasks("web").len() == 6 {
            break;
        }
    }
    assert!(saw_drain, "old tasks drained before they stopped");
    let now = h.endpoints();
    assert_eq!(now.len(), 3);
    assert!(now.iter().all(|e| !old.contains(e)), "{now:?} vs {old:?}");
    // The new deployment kept the configuration (same Cloud Map service, same alias).
    let svc = &h.world.state.services.values().next().unwrap().service;
    let deployments = svc.deployments.as_ref().unwrap();
    assert_eq!(
        deployments[0].service_connect_resources,
        deployments.last().unwrap().service_connect_resources
    );
}

#[test]
fn turning_service_connect_off_is_a_new_deployment_whose_tasks_get_no_namespace() {
    let mut h = Harness::new();
    h.create("web", "web:1", 1, sc("local"));
    for _ in 0..3 {
        h.step(&["web"]);
    }
    let r: wire::UpdateServiceResponse = h.world.write(
        services::update,
        req(json!({"cluster": "c", "service": "web",
            "serviceConnectConfiguration": {"enabled": false}})),
    );
    let deployments = r.service.unwrap().deployments.unwrap();
    assert_eq!(deployments.len(), 2, "a new deployment");
    for _ in 0..60 {
        h.step(&["web"]);
        if h.tasks("web")
            .iter()
            .filter(|t| t.task.last_status.as_deref() != Some("STOPPED"))
            .count()
            == 1
            && h.assigned_namespaces("web")
                .iter()
                .filter(|n| n.is_some())
                .count()
                == 0
        {
            break;
        }
    }
    assert_eq!(h.assigned_namespaces("web"), vec![None]);
    assert!(h.endpoints().is_empty(), "{:?}", h.endpoints());
    // The same configuration again changes nothing: no new deployment.
    let r: wire::UpdateServiceResponse = h.world.write(
        services::update,
        req(json!({"cluster": "c", "service": "web",
            "serviceConnectConfiguration": {"enabled": false}})),
    );
    let listed = r.service.unwrap().deployments.unwrap().len();
    assert!(listed <= 2);
}

#[test]
fn the_cluster_default_namespace_is_used_when_none_is_named() {
    let mut h = Harness::new();
    let ns = h.namespace_arn.clone();
    let _: wire::UpdateClusterResponse = h.world.write(
        clusters::update_cluster,
        req(json!({"cluster": "c", "serviceConnectDefaults": {"namespace": ns}})),
    );
    let web = h.create(
        "web",
        "web:1",
        1,
        json!({"enabled": true, "services": [{"portName": "http"}]}),
    );
    let config = web.deployments.unwrap()[0]
        .service_connect_configuration
        .clone()
        .unwrap();
    assert_eq!(config.namespace.as_deref(), Some(ns.as_str()));
    // Without clientAliases: discoveryName.namespace on the container port.
    let alias = &config.services.unwrap()[0].client_aliases.clone().unwrap()[0];
    assert_eq!(alias.dns_name.as_deref(), Some("http.local"));
    assert_eq!(alias.port, Some(80));
}

#[test]
fn service_connect_configurations_are_validated_like_ecs() {
    let mut h = Harness::new();
    h.create("taken", "web:1", 0, sc("local"));
    let cases = [
        (
            "web:1",
            json!({"namespace": "local"}),
            "InvalidParameterException",
        ),
        (
            "web:1",
            json!({"enabled": true}),
            "InvalidParameterException",
        ),
        (
            "web:1",
            json!({"enabled": true, "namespace": "nope"}),
            "NamespaceNotFoundException",
        ),
        (
            "web:1",
            json!({"enabled": true, "namespace": "local",
            "services": [{"portName": "grpc"}]}),
            "InvalidParameterException",
        ),
        (
            "web:1",
            json!({"enabled": true, "namespace": "local",
            "services": [{"portName": "http", "clientAliases": [{"port": 8080, "dnsName": "web"}]}]}),
            "InvalidParameterException",
        ),
        (
            "web:1",
            json!({"enabled": true, "namespace": "local",
            "services": [{"portName": "http", "discoveryName": "Web"}]}),
            "InvalidParameterException",
        ),
        (
            "web:1",
            json!({"enabled": true, "namespace": "local",
            "services": [{"portName": "http", "discoveryName": "other",
                "clientAliases": [{"port": 70000}]}]}),
            "InvalidParameterException",
        ),
        (
            "web:1",
            json!({"enabled": true, "namespace": "local",
            "services": [{"portName": "http", "discoveryName": "other",
                "clientAliases": [{"port": 1}, {"port": 2}]}]}),
            "InvalidParameterException",
        ),
        (
            "web:1",
            json!({"enabled": true, "namespace": "local",
            "services": [{"portName": "http", "discoveryName": "other",
                "tls": {"issuerCertificateAuthority": {}}}]}),
            "UnsupportedFeatureException",
        ),
        (
            "host:1",
            json!({"enabled": true, "namespace": "local"}),
            "InvalidParameterException",
        ),
        (
            "udp:1",
            json!({"enabled": true, "namespace": "local", "services": [{"portName": "dns"}]}),
            "InvalidParameterException",
        ),
    ];
    let _: wire::RegisterTaskDefinitionResponse = h.world.write(
        task_definitions::register,
        req(
            json!({"family": "udp", "networkMode": "bridge", "containerDefinitions": [{
                "name": "app", "image": "busybox", "memory": 128,
                "portMappings": [{"containerPort": 53, "protocol": "udp", "name": "dns"}]
            }]}),
        ),
    );
    for (i, (def, config, code)) in cases.into_iter().enumerate() {
        let body = json!({"cluster": "c", "serviceName": format!("s{i}"), "taskDefinition": def,
            "desiredCount": 1, "serviceConnectConfiguration": config});
        let e = h
            .world
            .try_write::<_, wire::CreateServiceResponse>(services::create, req(body))
            .expect_err("refused");
        assert_eq!(e.code(), code, "{config}: {e}");
    }
    // `taken`'s Cloud Map service `http` is its own: another service cannot take it over.
    let body = json!({"cluster": "c", "serviceName": "thief", "taskDefinition": "web:1",
        "desiredCount": 1, "serviceConnectConfiguration": {"enabled": true, "namespace": "local",
            "services": [{"portName": "http", "clientAliases": [{"port": 9090, "dnsName": "x"}]}]}});
    let e = h
        .world
        .try_write::<_, wire::CreateServiceResponse>(services::create, req(body))
        .expect_err("refused");
    assert!(e.to_string().contains("did not create"), "{e}");
}

#[test]
fn list_services_by_namespace_names_the_services_that_use_it() {
    let mut h = Harness::new();
    let web = h.create("web", "web:1", 0, sc("local"));
    let client = h.create(
        "client",
        "client:1",
        0,
        json!({"enabled": true, "namespace": "local"}),
    );
    let _: wire::CreateServiceResponse = h.world.write(
        services::create,
        req(
            json!({"cluster": "c", "serviceName": "plain", "taskDefinition": "client:1",
            "desiredCount": 0}),
        ),
    );
    let list = |h: &Harness, body: serde_json::Value| {
        service_connect::list_services_by_namespace(
            &h.world.state,
            &scope(),
            h.world.now,
            req(body),
        )
    };
    let all = list(&h, json!({"namespace": "local"})).unwrap();
    let mut want = vec![web.service_arn.unwrap(), client.service_arn.unwrap()];
    want.sort();
    assert_eq!(all.service_arns.clone().unwrap(), want);
    // By ARN too, and paged.
    let first = list(&h, json!({"namespace": h.namespace_arn, "maxResults": 1})).unwrap();
    assert_eq!(first.service_arns.as_deref(), Some(&want[..1]));
    let rest = list(
        &h,
        json!({"namespace": "local", "nextToken": first.next_token.unwrap()}),
    )
    .unwrap();
    assert_eq!(rest.service_arns.as_deref(), Some(&want[1..]));
    let e = list(&h, json!({"namespace": "nope"})).unwrap_err();
    assert_eq!(e.code(), "NamespaceNotFoundException");
}

#[test]
fn a_route_request_names_at_most_ten_namespaces() {
    let h = Harness::new();
    let instance = h.world.state.instances.values().next().unwrap();
    let ask = |n: usize| GetServiceConnectRoutesRequest {
        cluster: Some("c".into()),
        container_instance: Some(instance.id.clone()),
        namespaces: vec![h.namespace_arn.clone(); n],
    };
    assert!(
        service_connect_routes(
            &h.world.state,
            &scope(),
            &ask(model::agent::MAX_ROUTE_NAMESPACES)
        )
        .is_ok()
    );
    let e = service_connect_routes(
        &h.world.state,
        &scope(),
        &ask(model::agent::MAX_ROUTE_NAMESPACES + 1),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException", "{e}");
}

#[test]
fn a_route_carries_the_offering_port_mappings_app_protocol() {
    let mut h = Harness::new();
    for (family, app_protocol) in [("api", "grpc"), ("page", "http")] {
        let _: wire::RegisterTaskDefinitionResponse = h.world.write(
            task_definitions::register,
            req(json!({"family": family, "networkMode": "bridge", "containerDefinitions": [{
                "name": "app", "image": "busybox", "memory": 128,
                "portMappings": [{"containerPort": 50051, "name": family, "appProtocol": app_protocol}]
            }]})),
        );
        h.create(
            family,
            &format!("{family}:1"),
            1,
            json!({"enabled": true, "namespace": "local", "services": [{"portName": family}]}),
        );
    }
    let protocols: Vec<(String, Option<wire::ApplicationProtocol>)> = h
        .routes()
        .into_iter()
        .map(|r| (r.dns_name, r.app_protocol))
        .collect();
    assert_eq!(
        protocols,
        [
            (
                "api.local".to_owned(),
                Some(wire::ApplicationProtocol::Grpc)
            ),
            (
                "page.local".to_owned(),
                Some(wire::ApplicationProtocol::Http)
            ),
        ]
    );
}
