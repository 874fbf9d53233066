//! Tests of the load balancers' plan (records → `lb` config) and of the health reports.

use controlplane::ops::elbv2::ElbWritten;
use controlplane::ops::elbv2::listeners::{
    self, ActionInput, ConditionInput, CreateListener, CreateRule,
};
use controlplane::ops::elbv2::load_balancers::{self, CreateLoadBalancer};
use controlplane::ops::elbv2::target_groups::{self, CreateTargetGroup, TargetInput};
use controlplane::ops::instances;
use controlplane::{Ctx, State};
use serde_json::json;
use testkit::ecs::{self, World};
use testkit::elb::{fixed_response, forward, http_listener, load_balancer};

use controlplane::state::elb::TargetGroupRecord;

use super::*;

const LISTEN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn elb<Req, Resp>(
    w: &mut World,
    op: fn(&State, &mut Ctx, Req) -> ElbWritten<Resp>,
    r: Req,
) -> Resp {
    let mut ctx = w.ctx();
    let (resp, changes) = op(&w.state, &mut ctx, r).unwrap_or_else(|e| panic!("{e}"));
    w.apply(&changes);
    resp
}

fn group(w: &mut World, name: &str, target_type: &str) -> TargetGroupRecord {
    elb(
        w,
        target_groups::create,
        CreateTargetGroup {
            name: name.into(),
            protocol: Some("HTTP".into()),
            port: Some(80),
            target_type: Some(target_type.into()),
            ..Default::default()
        },
    )
}

fn targets(ids: &[(&str, Option<i64>)]) -> Vec<TargetInput> {
    ids.iter()
        .map(|(id, port)| TargetInput {
            id: (*id).into(),
            port: *port,
            ..Default::default()
        })
        .collect()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A load balancer `web` with a listener on 8080: rules by path, host and header
/// (weighted), a fixed response, and a default forward.
fn world() -> (World, TargetGroupRecord, TargetGroupRecord) {
    let mut w = World::new();
    let api = group(&mut w, "api", "ip");
    let www = group(&mut w, "www", "instance");
    let lb = elb(&mut w, load_balancers::create, load_balancer("web"));
    let l = elb(
        &mut w,
        listeners::create,
        http_listener(lb.arn(), 8080, &www.arn()),
    );
    let rule = |priority, conditions, action| CreateRule {
        listener_arn: l.arn(),
        priority: Some(priority),
        conditions,
        actions: vec![action],
        tags: vec![],
    };
    elb(
        &mut w,
        listeners::create_rule,
        rule(
            20,
            vec![
                ConditionInput {
                    field: "host-header".into(),
                    values: vec!["api.example.com".into()],
                    ..Default::default()
                },
                ConditionInput {
                    field: "http-header".into(),
                    http_header: Some(("X-Canary".into(), vec!["1".into()])),
                    ..Default::default()
                },
            ],
            ActionInput {
                action_type: "forward".into(),
                forward_groups: Some(vec![(api.arn(), Some(90)), (www.arn(), None)]),
                ..Default::default()
            },
        ),
    );
    elb(
        &mut w,
        listeners::create_rule,
        rule(
            10,
            vec![ConditionInput {
                field: "path-pattern".into(),
                values: vec!["/down/*".into()],
                ..Default::default()
            }],
            fixed_response("503", "text/plain", "down"),
        ),
    );
    elb(
        &mut w,
        listeners::create_rule,
        rule(
            30,
            vec![ConditionInput {
                field: "http-header".into(),
                http_header: Some(("X(1)".into(), vec!["1".into()])),
                ..Default::default()
            }],
            forward(&api.arn()),
        ),
    );
    (w, api, www)
}

#[test]
fn listeners_rules_and_weights_become_the_lb_config() {
    let (w, _, _) = world();
    let plans = to_plans(&w.state, LISTEN, w.now as u64 * 1000);
    let [plan] = &plans[..] else {
        panic!("one load balancer: {plans:?}")
    };
    assert_eq!(plan.key.1, "web");
    let c = &plan.config;
    c.validate().expect("lb accepts it");
    let [l] = &c.listeners[..] else {
        panic!("one listener")
    };
    assert_eq!(l.bind, addr("127.0.0.1:8080"));
    assert_eq!(l.default_action, lb::Action::forward("www"));
    let priorities: Vec<u32> = l.rules.iter().map(|r| r.priority).collect();
    assert_eq!(
        priorities,
        [10, 20],
        "by priority; the X(1) rule cannot match"
    );
    assert_eq!(
        l.rules[0].conditions,
        [lb::Condition::PathPattern {
            values: vec!["/down/*".into()]
        }]
    );
    assert_eq!(
        l.rules[0].action,
        lb::Action::FixedResponse {
            status: 503,
            content_type: Some("text/plain".into()),
            body: "down".into()
        }
    );
    assert_eq!(
        l.rules[1].conditions,
        [
            lb::Condition::HostHeader {
                values: vec!["api.example.com".into()]
            },
            lb::Condition::HttpHeader {
                name: "X-Canary".into(),
                values: vec!["1".into()]
            }
        ]
    );
    assert_eq!(
        l.rules[1].action,
        lb::Action::Forward {
            target_groups: vec![
                lb::WeightedTargetGroup {
                    name: "api".into(),
                    weight: 90
                },
                lb::WeightedTargetGroup {
                    name: "www".into(),
                    weight: 1
                },
            ]
        },
        "no weight is 1"
    );
    let names: Vec<&str> = c.target_groups.keys().map(String::as_str).collect();
    assert_eq!(names, ["api", "www"]);
    let hc = &c.target_groups["api"].health_check;
    assert_eq!(
        (
            hc.interval_ms,
            hc.timeout_ms,
            hc.healthy_threshold,
            hc.path.as_str()
        ),
        (30_000, 5_000, 5, "/")
    );
}

#[test]
fn targets_resolve_to_addresses_and_draining_ones_drain() {
    let (mut w, api, www) = world();
    elb(
        &mut w,
        target_groups::modify_attributes,
        (
            api.arn(),
            vec![
                ("deregistration_delay.timeout_seconds".into(), "30".into()),
                ("stickiness.enabled".into(), "true".into()),
                ("slow_start.duration_seconds".into(), "60".into()),
                (
                    "load_balancing.algorithm.type".into(),
                    "least_outstanding_requests".into(),
                ),
            ],
        ),
    );
    elb(
        &mut w,
        target_groups::register,
        (
            api.arn(),
            targets(&[
                ("10.0.0.1", None),
                ("10.0.0.2", Some(8081)),
                ("10.0.0.3", None),
            ]),
        ),
    );
    elb(
        &mut w,
        target_groups::deregister,
        (api.arn(), targets(&[("10.0.0.3", None)])),
    );
    // Instance targets: i-1 has a private IP, i-2 none, i-3 is not registered.
    w.create_cluster("c");
    let doc = |id: &str, ip: Option<&str>| {
        let mut d = json!({"instanceId": id});
        if let Some(ip) = ip {
            d["privateIp"] = ip.into();
        }
        ecs::req(
            json!({"cluster": "c", "instanceIdentityDocument": d.to_string(),
            "totalResources": ecs::resources(1024, 1024)}),
        )
    };
    let _: model::wire::RegisterContainerInstanceResponse =
        w.write(instances::register, doc("i-1", Some("10.1.0.1")));
    let _: model::wire::RegisterContainerInstanceResponse =
        w.write(instances::register, doc("i-2", None));
    elb(
        &mut w,
        target_groups::register,
        (
            www.arn(),
            targets(&[("i-1", Some(31000)), ("i-2", None), ("i-3", None)]),
        ),
    );
    let now_ms = w.now as u64 * 1000;
    let plans = to_plans(&w.state, LISTEN, now_ms);
    let c = &plans[0].config;
    c.validate().expect("lb accepts it");
    let api_c = &c.target_groups["api"];
    assert_eq!(
        api_c.targets,
        [
            lb::TargetConfig {
                addr: addr("10.0.0.1:80"),
                state: lb::TargetState::Active
            },
            lb::TargetConfig {
                addr: addr("10.0.0.2:8081"),
                state: lb::TargetState::Active
            },
            lb::TargetConfig {
                addr: addr("10.0.0.3:80"),
                state: lb::TargetState::Draining {
                    until_unix_ms: now_ms + 30_000
                }
            },
        ]
    );
    assert_eq!(
        (
            api_c.deregistration_delay_secs,
            api_c.slow_start_secs,
            &api_c.stickiness,
            api_c.algorithm
        ),
        (
            30,
            60,
            &Some(lb::Stickiness::LbCookie {
                duration_secs: 86_400
            }),
            lb::Algorithm::LeastOutstandingRequests
        )
    );
    assert_eq!(
        c.target_groups["www"].targets,
        [lb::TargetConfig {
            addr: addr("10.1.0.1:31000"),
            state: lb::TargetState::Active
        }],
        "only the instance with a private IP"
    );
    assert_eq!(
        plans[0].targets[&("www".to_string(), addr("10.1.0.1:31000"))],
        ("i-1".to_string(), 31000)
    );
    // Past the draining deadline the target is left out.
    let later = to_plans(&w.state, LISTEN, now_ms + 30_000);
    let addrs: Vec<SocketAddr> = later[0].config.target_groups["api"]
        .targets
        .iter()
        .map(|t| t.addr)
        .collect();
    assert_eq!(addrs, [addr("10.0.0.1:80"), addr("10.0.0.2:8081")]);
}

#[test]
fn health_changes_are_reported_against_the_stored_health() {
    let (mut w, api, _) = world();
    elb(
        &mut w,
        target_groups::register,
        (
            api.arn(),
            targets(&[("10.0.0.1", None), ("10.0.0.2", None)]),
        ),
    );
    let key = |id: &str| (ecs::scope(), "api".to_string(), id.to_string(), 80);
    let healthy = ObservedHealth {
        healthy: true,
        reason: None,
        description: None,
        since_ms: 0,
    };
    let (reason, description) = unhealthy_reason(Some("Target.Timeout"));
    let unhealthy = ObservedHealth {
        healthy: false,
        reason: Some(reason.into()),
        description: Some(description.into()),
        since_ms: 0,
    };
    let observed: Observed = [
        (key("10.0.0.1"), healthy.clone()),
        (key("10.0.0.2"), unhealthy.clone()),
        (key("10.0.0.9"), healthy.clone()),
    ]
    .into();
    let reports = changed(&w.state, observed.clone());
    let ids: Vec<&str> = reports.iter().map(|r| r.target_id.as_str()).collect();
    assert_eq!(ids, ["10.0.0.1", "10.0.0.2"], "10.0.0.9 is not registered");
    elb(&mut w, report_health, reports);
    assert!(
        changed(&w.state, observed).is_empty(),
        "nothing new to report"
    );
    let flipped: Observed = [(key("10.0.0.1"), unhealthy)].into();
    assert_eq!(changed(&w.state, flipped).len(), 1);
    assert_eq!(
        unhealthy_reason(Some("Target.FailedHealthChecks")).0,
        "Target.FailedHealthChecks"
    );
    assert_eq!(unhealthy_reason(None).0, "Target.FailedHealthChecks");
}

#[test]
fn lb_listen_is_an_address_or_off() {
    assert_eq!(parse_lb_listen("off"), Ok(LbListen(None)));
    assert_eq!(
        parse_lb_listen("0.0.0.0"),
        Ok(LbListen(Some([0, 0, 0, 0].into())))
    );
    assert!(parse_lb_listen("localhost").is_err());
}

#[test]
fn network_load_balancers_get_tcp_listeners_and_tcp_checks() {
    let mut w = World::new();
    let tg = elb(
        &mut w,
        target_groups::create,
        CreateTargetGroup {
            name: "db".into(),
            protocol: Some("TCP".into()),
            port: Some(5432),
            target_type: Some("ip".into()),
            ..Default::default()
        },
    );
    elb(
        &mut w,
        target_groups::register,
        (tg.arn(), targets(&[("10.0.0.7", Some(5432))])),
    );
    let nlb = elb(
        &mut w,
        load_balancers::create,
        CreateLoadBalancer {
            name: "db".into(),
            lb_type: Some("network".into()),
            ..Default::default()
        },
    );
    elb(
        &mut w,
        listeners::create,
        CreateListener {
            load_balancer_arn: nlb.arn(),
            protocol: Some("TCP".into()),
            port: Some(5432),
            default_actions: vec![forward(&tg.arn())],
            tags: vec![],
            ..Default::default()
        },
    );
    let plans = to_plans(&w.state, LISTEN, 0);
    assert_eq!(plans.len(), 1);
    let config = &plans[0].config;
    assert_eq!(config.listeners.len(), 1);
    let l = &config.listeners[0];
    assert_eq!(l.protocol, lb::ListenerProtocol::Tcp);
    assert_eq!(l.bind, SocketAddr::new(LISTEN, 5432));
    assert_eq!(l.default_action, lb::Action::forward("db"));
    let g = &config.target_groups["db"];
    assert_eq!(g.health_check.protocol, lb::HealthCheckProtocol::Tcp);
    assert_eq!(g.targets[0].addr, addr("10.0.0.7:5432"));
    config.validate().expect("a valid lb config");
}

#[test]
fn protocol_versions_and_grpc_matchers_reach_the_lb_config() {
    let mut w = World::new();
    let mut groups = Vec::new();
    for (name, version) in [("one", None), ("two", Some("HTTP2")), ("rpc", Some("GRPC"))] {
        groups.push(elb(
            &mut w,
            target_groups::create,
            CreateTargetGroup {
                name: name.into(),
                protocol: Some("HTTP".into()),
                protocol_version: version.map(Into::into),
                port: Some(50051),
                target_type: Some("ip".into()),
                ..Default::default()
            },
        ));
    }
    let lb = elb(&mut w, load_balancers::create, load_balancer("rpc"));
    let l = elb(
        &mut w,
        listeners::create,
        CreateListener {
            load_balancer_arn: lb.arn(),
            protocol: Some("HTTP".into()),
            port: Some(8080),
            default_actions: vec![ActionInput {
                action_type: "forward".into(),
                forward_groups: Some(groups.iter().map(|g| (g.arn(), None)).collect()),
                ..Default::default()
            }],
            tags: vec![],
            ..Default::default()
        },
    );
    assert_eq!(l.port, 8080);
    let plans = to_plans(&w.state, LISTEN, 0);
    let config = &plans[0].config;
    let versions: Vec<_> = ["one", "two", "rpc"]
        .iter()
        .map(|n| config.target_groups[*n].protocol_version)
        .collect();
    assert_eq!(
        versions,
        [
            lb::ProtocolVersion::Http1,
            lb::ProtocolVersion::Http2,
            lb::ProtocolVersion::Grpc
        ]
    );
    let rpc = &config.target_groups["rpc"].health_check;
    assert_eq!(
        (rpc.path.as_str(), rpc.matcher.as_str()),
        ("/AWS.ALB/healthcheck", "12")
    );
    assert_eq!(config.target_groups["two"].health_check.matcher, "200");
    config.validate().expect("a valid lb config");
}

#[test]
fn metric_dimensions_are_the_arn_suffixes_of_application_load_balancers() {
    let (mut w, api, www) = world();
    let plans = to_plans(&w.state, LISTEN, 0);
    let plan = &plans[0];
    let groups: Vec<String> = plan.config.target_groups.keys().cloned().collect();
    assert_eq!(groups, ["api", "www"]);
    let lb = w.state.elb.load_balancers.values().next().unwrap().clone();
    let d = metrics::dimensions(&w.state, &plan.key, &groups).unwrap();
    assert_eq!(d.load_balancer, format!("app/web/{}", lb.id));
    assert!(
        lb.arn()
            .ends_with(&format!(":loadbalancer/{}", d.load_balancer))
    );
    assert_eq!(
        d.groups,
        [
            ("api".to_owned(), format!("targetgroup/api/{}", api.id)),
            ("www".to_owned(), format!("targetgroup/www/{}", www.id)),
        ]
        .into()
    );
    // A group that is gone has no dimension; a load balancer recreated under its name
    // is another one.
    let gone = vec!["nope".to_owned()];
    let d = metrics::dimensions(&w.state, &plan.key, &gone).unwrap();
    assert!(d.groups.is_empty());
    let other = (plan.key.0.clone(), plan.key.1.clone(), "0".repeat(16));
    assert_eq!(metrics::dimensions(&w.state, &other, &groups), None);
    // A network load balancer publishes no ALB metrics.
    let nlb = elb(
        &mut w,
        load_balancers::create,
        CreateLoadBalancer {
            name: "db".into(),
            lb_type: Some("network".into()),
            ..Default::default()
        },
    );
    let key = (nlb.scope.clone(), nlb.name.clone(), nlb.id.clone());
    assert_eq!(metrics::dimensions(&w.state, &key, &groups), None);
}

#[test]
fn https_listeners_carry_their_acm_certificates_and_policy_to_the_lb_config() {
    use controlplane::ops::elbv2::certificates::CertificateInput;
    use controlplane::state::{
        CertificateFields, CertificateRecord, Change, DiscoveryRecord, Record,
    };
    let mut w = World::new();
    let cert = |id: &str, pem: &str| CertificateRecord {
        scope: ecs::scope(),
        id: id.into(),
        certificate_pem: format!("{pem}\n"),
        chain_pem: Some("CHAIN".into()),
        private_key_pem: format!("KEY-{pem}"),
        tags: vec![],
        created_at: 0.0,
        imported_at: 0.0,
        fields: CertificateFields::default(),
    };
    let (a, b) = (cert("a", "CERT-A"), cert("b", "CERT-B"));
    let imports = [
        Change::Put(Record::Discovery(DiscoveryRecord::Acm(a.clone()))),
        Change::Put(Record::Discovery(DiscoveryRecord::Acm(b.clone()))),
    ];
    // A certificate's (re-)import reaches the listeners with the commit that makes it.
    assert!(touches_load_balancing(&imports[..1]));
    w.apply(&imports);
    let lb = elb(&mut w, load_balancers::create, load_balancer("web"));
    let tg = group(&mut w, "www", "ip");
    let l = elb(
        &mut w,
        listeners::create,
        CreateListener {
            load_balancer_arn: lb.arn(),
            protocol: Some("HTTPS".into()),
            port: Some(8443),
            default_actions: vec![forward(&tg.arn())],
            certificates: vec![CertificateInput {
                arn: a.arn(),
                is_default: None,
            }],
            ssl_policy: Some("ELBSecurityPolicy-TLS13-1-3-2021-06".into()),
            ..Default::default()
        },
    );
    elb(
        &mut w,
        controlplane::ops::elbv2::certificates::add,
        (
            l.arn(),
            vec![CertificateInput {
                arn: b.arn(),
                is_default: None,
            }],
        ),
    );
    let plans = to_plans(&w.state, LISTEN, 0);
    let config = &plans[0].config;
    let bind = SocketAddr::new(LISTEN, 8443);
    assert_eq!(config.listeners[0].protocol, lb::ListenerProtocol::Https);
    assert_eq!(config.listeners[0].bind, bind);
    let tls = config.listeners[0]
        .tls
        .as_ref()
        .expect("an HTTPS listener's tls");
    assert_eq!(tls.min_version, lb::TlsVersion::Tls13);
    let pems: Vec<(&str, &str)> = tls
        .certificates
        .iter()
        .map(|c| (c.chain_pem.as_str(), c.key_pem.as_str()))
        .collect();
    assert_eq!(
        pems,
        [
            ("CERT-A\nCHAIN", "KEY-CERT-A"),
            ("CERT-B\nCHAIN", "KEY-CERT-B")
        ]
    );
    config.validate().expect("a valid lb config");
}
