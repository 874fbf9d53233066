//! The Cloud Map operations as pure functions: a hand-built [`State`], each write run as
//! the writer runs it (changes applied on success), assertions on answers, errors and the
//! DNS snapshot. One test goes through a real [`ControlPlane`] and a store reopen.

use std::collections::BTreeMap;
use std::sync::Arc;

use controlplane::ops::servicediscovery::dns::dns_snapshot;
use controlplane::ops::servicediscovery::{
    MAX_ATTRIBUTES, MAX_INSTANCES_PER_SERVICE, MAX_NAMESPACES, SdError, SdWritten, instances,
    namespaces, operations, services, tags,
};
use controlplane::{ControlPlane, Ctx, EcsError, Scope, State};
use model::wire_sd;
use serde_json::{Value, json};
use testkit::ecs::{T0, ctx, req, scope};

type Op<Req, Resp> = fn(&State, &mut Ctx, Req) -> SdWritten<Resp>;

/// A state and a clock, with Cloud Map writes run as the writer runs them.
struct Sd {
    state: State,
    now: f64,
    seed: u64,
}

impl Sd {
    fn new() -> Sd {
        Sd {
            state: State::default(),
            now: T0,
            seed: 1,
        }
    }

    fn try_write<Req, Resp>(&mut self, op: Op<Req, Resp>, body: Value) -> Result<Resp, SdError>
    where
        Req: serde::de::DeserializeOwned,
    {
        self.seed += 1;
        self.now += 1.0;
        let mut c = ctx(self.now, self.seed);
        let (resp, changes) = op(&self.state, &mut c, req(body))?;
        for change in &changes {
            self.state.apply(change);
        }
        Ok(resp)
    }

    fn write<Req, Resp>(&mut self, op: Op<Req, Resp>, body: Value) -> Resp
    where
        Req: serde::de::DeserializeOwned,
    {
        self.try_write(op, body)
            .unwrap_or_else(|e| panic!("{}: {e}", e.code()))
    }

    fn read<Req, Resp>(
        &self,
        op: fn(&State, &Scope, Req) -> Result<Resp, SdError>,
        body: Value,
    ) -> Result<Resp, SdError>
    where
        Req: serde::de::DeserializeOwned,
    {
        op(&self.state, &scope(), req(body))
    }

    fn list<Req, Resp>(
        &self,
        op: fn(&State, &Scope, f64, Req) -> Result<Resp, SdError>,
        body: Value,
    ) -> Result<Resp, SdError>
    where
        Req: serde::de::DeserializeOwned,
    {
        op(&self.state, &scope(), self.now, req(body))
    }

    /// A private DNS namespace; returns its id (read back from its operation).
    fn private_namespace(&mut self, name: &str) -> String {
        let r = self.write(
            namespaces::create_private_dns_namespace,
            json!({"Name": name, "Vpc": "vpc-1"}),
        );
        self.namespace_of(r.operation_id.as_deref().unwrap())
    }

    fn namespace_of(&self, operation_id: &str) -> String {
        let op = self
            .read(
                operations::get_operation,
                json!({"OperationId": operation_id}),
            )
            .unwrap()
            .operation
            .unwrap();
        assert_eq!(op.status, Some(wire_sd::OperationStatus::Success));
        op.targets.unwrap()["NAMESPACE"].clone()
    }

    fn service(&mut self, namespace: &str, name: &str, extra: Value) -> wire_sd::Service {
        let mut body = json!({
            "Name": name,
            "NamespaceId": namespace,
            "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 20}]},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.write(services::create_service, body).service.unwrap()
    }

    fn register(
        &mut self,
        service: &str,
        id: &str,
        ip: &str,
        port: u16,
    ) -> Result<String, SdError> {
        self.try_write(
            instances::register_instance,
            json!({"ServiceId": service, "InstanceId": id,
                   "Attributes": {"AWS_INSTANCE_IPV4": ip, "AWS_INSTANCE_PORT": port.to_string(), "az": "a"}}),
        )
        .map(|r| r.operation_id.unwrap())
    }

    fn discover(&self, ns: &str, svc: &str, extra: Value) -> Vec<String> {
        let mut body = json!({"NamespaceName": ns, "ServiceName": svc});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let mut ids: Vec<String> = self
            .read(instances::discover_instances, body)
            .unwrap()
            .instances
            .unwrap()
            .into_iter()
            .map(|i| i.instance_id.unwrap())
            .collect();
        ids.sort();
        ids
    }
}

#[test]
fn namespace_service_instances_discover_and_teardown() {
    let mut sd = Sd::new();
    let ns = sd.private_namespace("corp.local");
    assert!(ns.starts_with("ns-") && ns.len() == 19, "{ns}");
    let got = sd
        .read(namespaces::get_namespace, json!({"Id": ns}))
        .unwrap()
        .namespace
        .unwrap();
    assert_eq!(got.name.as_deref(), Some("corp.local"));
    assert_eq!(got.r#type, Some(wire_sd::NamespaceType::DnsPrivate));
    assert_eq!(
        got.arn.as_deref(),
        Some(format!("arn:aws:servicediscovery:eu-west-1:000000000000:namespace/{ns}").as_str())
    );
    assert_eq!(got.service_count, Some(0));

    let svc = sd.service(&ns, "web", json!({"HealthCheckCustomConfig": {}}));
    let sid = svc.id.clone().unwrap();
    assert!(sid.starts_with("srv-") && sid.len() == 20, "{sid}");
    assert_eq!(svc.r#type, Some(wire_sd::ServiceType::DnsHttp));
    assert_eq!(
        svc.dns_config.as_ref().unwrap().routing_policy,
        Some(wire_sd::RoutingPolicy::Multivalue)
    );

    for (i, ip) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
        sd.register(&sid, &format!("i-{i}"), ip, 8080).unwrap();
    }
    let s = sd
        .read(
            services::get_service,
            json!({"Id": svc.arn.clone().unwrap()}),
        )
        .unwrap()
        .service
        .unwrap();
    assert_eq!(
        s.instance_count,
        Some(3),
        "GetService by ARN counts instances"
    );

    // Custom health: instances start HEALTHY.
    assert_eq!(
        sd.discover("corp.local", "web", json!({})),
        ["i-0", "i-1", "i-2"]
    );
    sd.write(
        instances::update_instance_custom_health_status,
        json!({"ServiceId": sid, "InstanceId": "i-1", "Status": "UNHEALTHY"}),
    );
    assert_eq!(sd.discover("corp.local", "web", json!({})), ["i-0", "i-2"]);
    assert_eq!(
        sd.discover("corp.local", "web", json!({"HealthStatus": "UNHEALTHY"})),
        ["i-1"]
    );
    assert_eq!(
        sd.discover("corp.local", "web", json!({"HealthStatus": "ALL"})),
        ["i-0", "i-1", "i-2"]
    );
    assert_eq!(
        sd.discover(
            "corp.local",
            "WEB",
            json!({"QueryParameters": {"AWS_INSTANCE_IPV4": "10.0.0.3"}})
        ),
        ["i-2"],
        "service names match without case; query parameters filter"
    );
    // Optional parameters narrow only when something matches them.
    assert_eq!(
        sd.discover(
            "corp.local",
            "web",
            json!({"OptionalParameters": {"az": "nope"}})
        ),
        ["i-0", "i-2"]
    );
    // Every instance unhealthy: HEALTHY_OR_ELSE_ALL fails open.
    for id in ["i-0", "i-2"] {
        sd.write(
            instances::update_instance_custom_health_status,
            json!({"ServiceId": sid, "InstanceId": id, "Status": "UNHEALTHY"}),
        );
    }
    assert!(sd.discover("corp.local", "web", json!({})).is_empty());
    assert_eq!(
        sd.discover(
            "corp.local",
            "web",
            json!({"HealthStatus": "HEALTHY_OR_ELSE_ALL"})
        ),
        ["i-0", "i-1", "i-2"]
    );

    // The DNS view.
    let snap = dns_snapshot(&sd.state);
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].name, "corp.local");
    let web = &snap[0].services[0];
    assert_eq!(
        (web.name.as_str(), web.a_ttl, web.srv_ttl),
        ("web", Some(10), Some(20))
    );
    assert_eq!(web.instances.len(), 3);
    assert_eq!(web.instances[0].ipv4, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(web.instances[0].port, Some(8080));
    assert!(web.instances.iter().all(|i| !i.healthy));

    // In use: neither the namespace nor the service can go.
    let e = sd
        .try_write(namespaces::delete_namespace, json!({"Id": ns}))
        .unwrap_err();
    assert_eq!(e.code(), "ResourceInUse");
    let e = sd
        .try_write(services::delete_service, json!({"Id": sid}))
        .unwrap_err();
    assert_eq!(e.code(), "ResourceInUse");

    let rev = sd
        .read(
            instances::discover_instances_revision,
            json!({"NamespaceName": "corp.local", "ServiceName": "web"}),
        )
        .unwrap()
        .instances_revision;
    assert_eq!(rev, Some(3));
    for id in ["i-0", "i-1", "i-2"] {
        let op = sd.write(
            instances::deregister_instance,
            json!({"ServiceId": sid, "InstanceId": id}),
        );
        assert!(op.operation_id.is_some());
    }
    let e = sd
        .try_write(
            instances::deregister_instance,
            json!({"ServiceId": sid, "InstanceId": "i-0"}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InstanceNotFound");
    sd.write(services::delete_service, json!({"Id": sid}));
    let e = sd
        .read(services::get_service, json!({"Id": sid}))
        .unwrap_err();
    assert_eq!(e.code(), "ServiceNotFound");
    let op = sd.write(namespaces::delete_namespace, json!({"Id": ns}));
    assert_eq!(sd.namespace_of(op.operation_id.as_deref().unwrap()), ns);
    let e = sd
        .read(namespaces::get_namespace, json!({"Id": ns}))
        .unwrap_err();
    assert_eq!(e.code(), "NamespaceNotFound");
    assert!(dns_snapshot(&sd.state).is_empty());
}

#[test]
fn duplicates_and_retries() {
    let mut sd = Sd::new();
    let first = sd.write(
        namespaces::create_http_namespace,
        json!({"Name": "apps", "CreatorRequestId": "r1"}),
    );
    // A retry of the same call answers the same operation.
    let again = sd.write(
        namespaces::create_http_namespace,
        json!({"Name": "apps", "CreatorRequestId": "r1"}),
    );
    assert_eq!(first.operation_id, again.operation_id);
    let e = sd
        .try_write(namespaces::create_http_namespace, json!({"Name": "apps"}))
        .unwrap_err();
    assert_eq!(e.code(), "NamespaceAlreadyExists");
    let e = sd
        .try_write(
            namespaces::create_http_namespace,
            json!({"Name": "other", "CreatorRequestId": "r1"}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "DuplicateRequest");
    let ns = sd.namespace_of(first.operation_id.as_deref().unwrap());
    let e = sd
        .try_write(
            services::create_service,
            json!({"Name": "api", "NamespaceId": ns, "DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 1}]}}),
        )
        .unwrap_err();
    assert_eq!(
        e.code(),
        "InvalidInput",
        "no DNS records in an HTTP namespace"
    );
    let svc = sd.write(
        services::create_service,
        json!({"Name": "api", "NamespaceId": ns}),
    );
    assert_eq!(
        svc.service.unwrap().r#type,
        Some(wire_sd::ServiceType::Http)
    );
    let e = sd
        .try_write(
            services::create_service,
            json!({"Name": "API", "NamespaceId": ns}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ServiceAlreadyExists");
    let e = sd
        .try_write(
            services::create_service,
            json!({"Name": "x", "NamespaceId": "ns-nope"}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "NamespaceNotFound");
}

#[test]
fn validation_follows_cloud_map() {
    let mut sd = Sd::new();
    for bad in [
        "",
        "a..b",
        "-a.local",
        &"a".repeat(64),
        &format!("{}.x", "a.".repeat(130)),
    ] {
        let e = sd
            .try_write(
                namespaces::create_private_dns_namespace,
                json!({"Name": bad, "Vpc": "v"}),
            )
            .unwrap_err();
        assert_eq!(e.code(), "InvalidInput", "{bad:?}");
    }
    let ns = sd.private_namespace("a.local");
    for bad in ["", "a b", &"x".repeat(128), "-x"] {
        let e = sd
            .try_write(
                services::create_service,
                json!({"Name": bad, "NamespaceId": ns}),
            )
            .unwrap_err();
        assert_eq!(e.code(), "InvalidInput", "{bad:?}");
    }
    let e = sd
        .try_write(
            services::create_service,
            json!({"Name": "c", "NamespaceId": ns,
                   "DnsConfig": {"DnsRecords": [{"Type": "CNAME", "TTL": 1}]}}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidInput", "CNAME needs WEIGHTED");
    let svc = sd.service(&ns, "web", json!({}));
    let sid = svc.id.unwrap();
    // An A record needs an address; an SRV record a port.
    let e = sd
        .try_write(
            instances::register_instance,
            json!({"ServiceId": sid, "InstanceId": "i", "Attributes": {"AWS_INSTANCE_PORT": "80"}}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    assert!(e.to_string().contains("AWS_INSTANCE_IPV4"), "{e}");
    let e = sd.register(&sid, "i", "10.0.0.300", 80).unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    let e = sd
        .register(&sid, &"i".repeat(65), "10.0.0.1", 80)
        .unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    let mut attrs: BTreeMap<String, String> = (0..MAX_ATTRIBUTES)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    attrs.insert("AWS_INSTANCE_IPV4".into(), "10.0.0.1".into());
    attrs.insert("AWS_INSTANCE_PORT".into(), "80".into());
    let e = sd
        .try_write(
            instances::register_instance,
            json!({"ServiceId": sid, "InstanceId": "i", "Attributes": attrs}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    let e = sd
        .try_write(
            instances::register_instance,
            json!({"ServiceId": sid, "InstanceId": "i",
                   "Attributes": {"AWS_INSTANCE_IPV4": "10.0.0.1", "AWS_INSTANCE_PORT": "1", "big": "v".repeat(1025)}}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    // Custom health only for services that have it.
    sd.register(&sid, "i", "10.0.0.1", 80).unwrap();
    let e = sd
        .try_write(
            instances::update_instance_custom_health_status,
            json!({"ServiceId": sid, "InstanceId": "i", "Status": "UNHEALTHY"}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "CustomHealthNotFound");
    let d = sd
        .read(
            instances::discover_instances,
            json!({"NamespaceName": "a.local", "ServiceName": "web", "HealthStatus": "UNHEALTHY"}),
        )
        .unwrap();
    let found = d.instances.unwrap();
    assert_eq!(
        found.len(),
        1,
        "the health filter is ignored without a health check"
    );
    assert_eq!(found[0].health_status, Some(wire_sd::HealthStatus::Unknown));
}

#[test]
fn quotas_answer_resource_limit_exceeded() {
    let mut sd = Sd::new();
    for i in 0..MAX_NAMESPACES {
        sd.write(
            namespaces::create_http_namespace,
            json!({"Name": format!("n{i}")}),
        );
    }
    let e = sd
        .try_write(
            namespaces::create_http_namespace,
            json!({"Name": "one-more"}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ResourceLimitExceeded");

    let mut sd = Sd::new();
    let ns = sd.private_namespace("q.local");
    let sid = sd.service(&ns, "s", json!({})).id.unwrap();
    for i in 0..MAX_INSTANCES_PER_SERVICE {
        sd.register(&sid, &format!("i{i}"), "10.0.0.1", 80).unwrap();
    }
    let e = sd.register(&sid, "last", "10.0.0.1", 80).unwrap_err();
    assert_eq!(e.code(), "ResourceLimitExceeded");
    // Re-registering an existing instance is an update, not a new one.
    sd.register(&sid, "i0", "10.0.0.9", 80).unwrap();
}

#[test]
fn listings_filter_and_page() {
    let mut sd = Sd::new();
    let a = sd.private_namespace("a.local");
    let r = sd.write(namespaces::create_http_namespace, json!({"Name": "b"}));
    let b = sd.namespace_of(r.operation_id.as_deref().unwrap());
    let l = sd
        .list(
            namespaces::list_namespaces,
            json!({"Filters": [{"Name": "TYPE", "Values": ["HTTP"], "Condition": "EQ"}]}),
        )
        .unwrap();
    let ids: Vec<_> = l
        .namespaces
        .unwrap()
        .into_iter()
        .map(|n| n.id.unwrap())
        .collect();
    assert_eq!(ids, std::slice::from_ref(&b));
    let l = sd
        .list(
            namespaces::list_namespaces,
            json!({"Filters": [{"Name": "NAME", "Values": ["a.local"]}]}),
        )
        .unwrap();
    assert_eq!(l.namespaces.unwrap()[0].id.as_deref(), Some(a.as_str()));
    for i in 0..5 {
        sd.service(&a, &format!("s{i}"), json!({}));
    }
    sd.write(
        services::create_service,
        json!({"Name": "h", "NamespaceId": b}),
    );
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"MaxResults": 2, "Filters": [{"Name": "NAMESPACE_ID", "Values": [a], "Condition": "EQ"}]});
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = sd.list(services::list_services, body).unwrap();
        seen.extend(page.services.unwrap().into_iter().map(|s| s.name.unwrap()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["s0", "s1", "s2", "s3", "s4"]);
    let e = sd
        .list(services::list_services, json!({"MaxResults": 101}))
        .unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    let e = sd
        .list(services::list_services, json!({"NextToken": "forged"}))
        .unwrap_err();
    assert_eq!(e.code(), "InvalidInput");
    let ops = sd
        .list(
            operations::list_operations,
            json!({"Filters": [{"Name": "TYPE", "Values": ["CREATE_NAMESPACE"]}]}),
        )
        .unwrap();
    assert_eq!(ops.operations.unwrap().len(), 2);
}

#[test]
fn tags_on_namespaces_and_services() {
    let mut sd = Sd::new();
    let ns = sd.private_namespace("t.local");
    let arn = format!("arn:aws:servicediscovery:eu-west-1:000000000000:namespace/{ns}");
    sd.write(
        tags::tag_resource,
        json!({"ResourceARN": arn, "Tags": [{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "a"}]}),
    );
    sd.write(
        tags::untag_resource,
        json!({"ResourceARN": arn, "TagKeys": ["team"]}),
    );
    let t = sd
        .read(tags::list_tags_for_resource, json!({"ResourceARN": arn}))
        .unwrap()
        .tags
        .unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].key.as_deref(), Some("env"));
    let e = sd
        .read(
            tags::list_tags_for_resource,
            json!({"ResourceARN": "arn:aws:servicediscovery:eu-west-1:000000000000:service/srv-none"}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ResourceNotFoundException");
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"Key": format!("k{i}"), "Value": ""}))
        .collect();
    let e = sd
        .try_write(
            tags::tag_resource,
            json!({"ResourceARN": arn, "Tags": many}),
        )
        .unwrap_err();
    assert_eq!(e.code(), "TooManyTagsException");
}

#[tokio::test]
async fn records_survive_a_restart() {
    let store = Arc::new(store::MemStore::new());
    let cp = ControlPlane::open(store.clone()).unwrap();
    let op = cp
        .write(scope(), |s, c| {
            namespaces::create_private_dns_namespace(
                s,
                c,
                req(json!({"Name": "keep.local", "Vpc": "v"})),
            )
            .map_err(|e| EcsError::Client(e.to_string()))
        })
        .await
        .unwrap();
    let ns_id = cp.read(|s| {
        operations::get_operation(
            s,
            &scope(),
            req(json!({"OperationId": op.operation_id.unwrap()})),
        )
        .unwrap()
        .operation
        .unwrap()
        .targets
        .unwrap()["NAMESPACE"]
            .clone()
    });
    drop(cp);
    let cp = ControlPlane::open(store).unwrap();
    let got = cp.read(|s| namespaces::get_namespace(s, &scope(), req(json!({"Id": ns_id}))));
    assert_eq!(
        got.unwrap().namespace.unwrap().name.as_deref(),
        Some("keep.local")
    );
}

#[test]
fn operation_records_are_bounded_oldest_first() {
    use controlplane::ops::servicediscovery::{keep_operation_within, operation};
    let mut sd = Sd::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut c = ctx(T0 + f64::from(i), 7 + u64::try_from(i).unwrap());
        let op = operation(
            &mut c,
            wire_sd::OperationType::CreateNamespace,
            &[(wire_sd::OperationTargetType::Namespace, "ns-x")],
        );
        assert_eq!(op.id.len(), 41, "{}", op.id);
        ids.push(op.id.clone());
        for change in keep_operation_within(&sd.state, op, 3) {
            sd.state.apply(&change);
        }
    }
    let kept: Vec<String> = sd
        .state
        .discovery
        .operations
        .values()
        .map(|o| o.id.clone())
        .collect();
    assert_eq!(kept, ids[2..], "ids sort by time; the two oldest went");
}
