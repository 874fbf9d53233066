//! The ELBv2 operations as pure functions: a [`State`], a request, a seeded [`Ctx`];
//! assertions on the answer, the error code and the state after applying the changes.

use controlplane::ops::elbv2::listeners::{
    self, ActionInput, ConditionInput, CreateListener, CreateRule, DescribeRules, ModifyRule,
};
use controlplane::ops::elbv2::load_balancers::{self, CreateLoadBalancer, DescribeLoadBalancers};
use controlplane::ops::elbv2::target_groups::{
    self, CreateTargetGroup, DescribeTargetGroups, HealthCheckInput, TargetInput,
};
use controlplane::ops::elbv2::{ElbArn, ElbResource, MAX_LOAD_BALANCERS, tags};
use controlplane::state::elb::{ElbTag, ListenerRecord, TargetGroupRecord};
use controlplane::{Ctx, Scope};
use testkit::ecs::{self, T0, World};
use testkit::elb::{fixed_response, forward, http_group, http_listener, load_balancer};

/// CreateTargetGroup of an HTTP group `name` on port 8080 (no target type given).
fn tg(w: &mut World, name: &str) -> TargetGroupRecord {
    w.elb(target_groups::create, http_group(name, 8080, None))
}

/// CreateRule on `l` at `priority` with `conditions`, doing `actions`.
fn rule(
    l: &ListenerRecord,
    priority: i64,
    conditions: Vec<ConditionInput>,
    actions: Vec<ActionInput>,
) -> CreateRule {
    CreateRule {
        listener_arn: l.arn(),
        priority: Some(priority),
        conditions,
        actions,
        tags: vec![],
    }
}

fn path(p: &str) -> ConditionInput {
    ConditionInput {
        field: "path-pattern".into(),
        path_pattern: Some(vec![p.into()]),
        ..Default::default()
    }
}

#[test]
fn create_load_balancer_names_arns_and_dns_as_aws_does() {
    let mut w = World::new();
    let lb = w.create_load_balancer("web");
    assert_eq!(lb.id.len(), 16);
    assert_eq!(
        lb.arn(),
        format!(
            "arn:aws:elasticloadbalancing:eu-west-1:000000000000:loadbalancer/app/web/{}",
            lb.id
        )
    );
    assert_eq!(
        lb.dns_name(),
        format!("web-{}.eu-west-1.elb.flotilla.local", lb.id)
    );
    assert_eq!(
        (lb.lb_type.as_str(), lb.scheme.as_str()),
        ("application", "internet-facing")
    );
    let parsed = ElbArn::parse(&lb.arn()).unwrap();
    assert_eq!(
        parsed.resource,
        ElbResource::LoadBalancer {
            name: "web".into(),
            id: lb.id.clone()
        }
    );
    // Same name and settings: the same load balancer, nothing written.
    let again = w.create_load_balancer("web");
    assert_eq!(again.arn(), lb.arn());
    let e = w
        .try_elb(
            load_balancers::create,
            CreateLoadBalancer {
                name: "web".into(),
                lb_type: Some("network".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), "DuplicateLoadBalancerName");
}

#[test]
fn names_ports_and_priorities_are_validated() {
    let mut w = World::new();
    for bad in ["", "-web", "web-", "we_b", &"a".repeat(33), "internal-x"] {
        let e = w
            .try_elb(load_balancers::create, load_balancer(bad))
            .unwrap_err();
        assert_eq!(e.code(), "ValidationError", "{bad:?}");
    }
    w.create_load_balancer(&"a".repeat(32));
    for port in [0, 65_536, -1] {
        let e = w
            .try_elb(target_groups::create, http_group("t", port, None))
            .unwrap_err();
        assert_eq!(e.code(), "ValidationError", "{port}");
    }
    let lb = w.create_load_balancer("web");
    let tg = tg(&mut w, "api").arn();
    let l = w.create_listener(lb.arn(), 80, &tg);
    for priority in [0, 50_001] {
        let e = w
            .try_elb(
                listeners::create_rule,
                rule(&l, priority, vec![path("/a")], vec![forward(&tg)]),
            )
            .unwrap_err();
        assert_eq!(e.code(), "ValidationError", "{priority}");
    }
    // TLS is a network load balancer's protocol, and not served; HTTPS needs a
    // certificate (tests/acm.rs has the rest).
    let e = w
        .try_elb(
            listeners::create,
            CreateListener {
                protocol: Some("TLS".into()),
                ..http_listener(lb.arn(), 443, &tg)
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), "UnsupportedProtocol");
    let e = w
        .try_elb(
            listeners::create,
            CreateListener {
                protocol: Some("HTTPS".into()),
                ..http_listener(lb.arn(), 443, &tg)
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), "ValidationError");
}

#[test]
fn the_load_balancer_quota_holds() {
    let mut w = World::new();
    for i in 0..MAX_LOAD_BALANCERS {
        w.create_load_balancer(&format!("lb{i}"));
    }
    let e = w
        .try_elb(load_balancers::create, load_balancer("one-more"))
        .unwrap_err();
    assert_eq!(e.code(), "TooManyLoadBalancers");
    // Another region has its own quota.
    let mut ctx = Ctx::new(Scope::new(ecs::ACCOUNT, "us-east-1"), T0, 9);
    assert!(load_balancers::create(&w.state, &mut ctx, load_balancer("one-more")).is_ok());
}

#[test]
fn describe_load_balancers_pages_by_marker() {
    let mut w = World::new();
    for name in ["c", "a", "e", "b", "d"] {
        w.create_load_balancer(name);
    }
    let scope = ecs::scope();
    let mut marker = None;
    let mut seen = Vec::new();
    loop {
        let page = load_balancers::describe(
            &w.state,
            &scope,
            DescribeLoadBalancers {
                marker: marker.clone(),
                page_size: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        seen.extend(page.load_balancers.iter().map(|l| l.name.clone()));
        marker = page.next_marker;
        if marker.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    let e = load_balancers::describe(
        &w.state,
        &scope,
        DescribeLoadBalancers {
            names: vec!["a".into(), "zz".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "LoadBalancerNotFound");
    let e = load_balancers::describe(
        &w.state,
        &scope,
        DescribeLoadBalancers {
            page_size: Some(401),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "ValidationError");
}

#[test]
fn target_groups_get_aws_defaults_and_attributes() {
    let mut w = World::new();
    let tg = tg(&mut w, "api");
    let hc = &tg.health_check;
    assert_eq!(
        (
            hc.protocol.as_str(),
            hc.port.as_str(),
            hc.path.as_deref(),
            hc.interval_seconds,
            hc.timeout_seconds,
            hc.healthy_threshold,
            hc.unhealthy_threshold,
            hc.matcher.as_deref()
        ),
        ("HTTP", "traffic-port", Some("/"), 30, 5, 5, 2, Some("200"))
    );
    assert_eq!(tg.target_type, "instance");
    let scope = ecs::scope();
    let attrs = target_groups::describe_attributes(&w.state, &scope, tg.arn()).unwrap();
    assert_eq!(attrs["deregistration_delay.timeout_seconds"], "300");
    assert_eq!(attrs["stickiness.enabled"], "false");
    assert_eq!(attrs["stickiness.type"], "lb_cookie");
    let attrs = w.elb(
        target_groups::modify_attributes,
        (
            tg.arn(),
            vec![
                ("deregistration_delay.timeout_seconds".into(), "30".into()),
                ("stickiness.enabled".into(), "true".into()),
            ],
        ),
    );
    assert_eq!(attrs["deregistration_delay.timeout_seconds"], "30");
    assert_eq!(attrs["stickiness.enabled"], "true");
    for (k, v) in [
        ("deregistration_delay.timeout_seconds", "3601"),
        ("slow_start.duration_seconds", "10"),
        ("stickiness.type", "magic"),
        ("no.such.key", "1"),
    ] {
        let e = w
            .try_elb(
                target_groups::modify_attributes,
                (tg.arn(), vec![(k.into(), v.into())]),
            )
            .unwrap_err();
        assert_eq!(e.code(), "ValidationError", "{k}={v}");
    }
    let e = w
        .try_elb(target_groups::create, http_group("api", 9090, None))
        .unwrap_err();
    assert_eq!(e.code(), "DuplicateTargetGroupName");
}

/// CreateTargetGroup of an HTTP group `name` of protocol version `version`, with `hc`.
fn versioned_group(version: Option<&str>, hc: HealthCheckInput) -> CreateTargetGroup {
    CreateTargetGroup {
        protocol_version: version.map(Into::into),
        health_check: hc,
        ..http_group("rpc", 50051, Some("ip"))
    }
}

#[test]
fn grpc_groups_get_grpc_health_check_defaults_and_http2_is_accepted() {
    let mut w = World::new();
    let rpc = w.elb(
        target_groups::create,
        versioned_group(Some("GRPC"), HealthCheckInput::default()),
    );
    assert_eq!(rpc.protocol_version.as_deref(), Some("GRPC"));
    assert_eq!(
        rpc.health_check.path.as_deref(),
        Some("/AWS.ALB/healthcheck")
    );
    assert_eq!(rpc.health_check.matcher.as_deref(), Some("12"));
    // The same again answers the group; another version is another group.
    let again = w.elb(
        target_groups::create,
        versioned_group(Some("GRPC"), HealthCheckInput::default()),
    );
    assert_eq!(again.arn(), rpc.arn());
    let e = w
        .try_elb(
            target_groups::create,
            versioned_group(Some("HTTP2"), HealthCheckInput::default()),
        )
        .unwrap_err();
    assert_eq!(e.code(), "DuplicateTargetGroupName");

    // gRPC codes as given, on create and on modify.
    let given = CreateTargetGroup {
        name: "rpc2".into(),
        ..versioned_group(
            Some("GRPC"),
            HealthCheckInput {
                grpc_code: Some("0-2,12".into()),
                path: Some("/grpc.health.v1.Health/Check".into()),
                ..Default::default()
            },
        )
    };
    let rpc2 = w.elb(target_groups::create, given);
    assert_eq!(rpc2.health_check.matcher.as_deref(), Some("0-2,12"));
    let view = w.elb(
        target_groups::modify,
        (
            rpc2.arn(),
            HealthCheckInput {
                grpc_code: Some("0".into()),
                ..Default::default()
            },
        ),
    );
    assert_eq!(view.group.health_check.matcher.as_deref(), Some("0"));

    let h2 = w.elb(
        target_groups::create,
        CreateTargetGroup {
            name: "web2".into(),
            ..versioned_group(Some("HTTP2"), HealthCheckInput::default())
        },
    );
    assert_eq!(h2.protocol_version.as_deref(), Some("HTTP2"));
    assert_eq!(
        (
            h2.health_check.path.as_deref(),
            h2.health_check.matcher.as_deref()
        ),
        (Some("/"), Some("200"))
    );
}

#[test]
fn protocol_versions_and_matchers_are_validated() {
    let mut w = World::new();
    let e = w
        .try_elb(
            target_groups::create,
            versioned_group(Some("HTTP3"), HealthCheckInput::default()),
        )
        .unwrap_err();
    assert_eq!(e.code(), "UnsupportedProtocol");
    assert!(e.to_string().contains("HTTP1, HTTP2 or GRPC"), "{e}");

    // Matcher.GrpcCode is a GRPC group's only, Matcher.HttpCode is not one's.
    let grpc_code = |c: &str| HealthCheckInput {
        grpc_code: Some(c.into()),
        ..Default::default()
    };
    for version in [None, Some("HTTP1"), Some("HTTP2")] {
        let e = w
            .try_elb(
                target_groups::create,
                versioned_group(version, grpc_code("0")),
            )
            .unwrap_err();
        assert_eq!(e.code(), "ValidationError", "{version:?}");
        assert!(e.to_string().contains("GrpcCode"), "{e}");
    }
    let http_code = HealthCheckInput {
        matcher: Some("200".into()),
        ..Default::default()
    };
    let e = w
        .try_elb(
            target_groups::create,
            versioned_group(Some("GRPC"), http_code),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ValidationError");
    assert!(e.to_string().contains("HttpCode"), "{e}");
    for bad in ["100", "200", "0-", "0-1-2", "x", ""] {
        let e = w
            .try_elb(
                target_groups::create,
                versioned_group(Some("GRPC"), grpc_code(bad)),
            )
            .unwrap_err();
        assert_eq!(e.code(), "ValidationError", "{bad:?}");
    }
    // ModifyTargetGroup holds the same line.
    let web = tg(&mut w, "web");
    let e = w
        .try_elb(target_groups::modify, (web.arn(), grpc_code("12")))
        .unwrap_err();
    assert_eq!(e.code(), "ValidationError");
}

#[test]
fn target_health_is_unused_until_a_listener_forwards_to_the_group() {
    let mut w = World::new();
    let tg = tg(&mut w, "api");
    let targets = vec![
        TargetInput {
            id: "i-0123456789abcdef0".into(),
            ..Default::default()
        },
        TargetInput {
            id: "i-0123456789abcdef1".into(),
            port: Some(9000),
            ..Default::default()
        },
    ];
    w.elb(target_groups::register, (tg.arn(), targets.clone()));
    // Registering again changes nothing.
    w.elb(target_groups::register, (tg.arn(), targets.clone()));
    let scope = ecs::scope();
    let now_ms = (T0 * 1000.0) as u64;
    let health =
        target_groups::describe_health(&w.state, &scope, (tg.arn(), vec![], now_ms)).unwrap();
    assert_eq!(health.len(), 2);
    assert!(health.iter().all(|h| h.state == "unused"));
    assert_eq!(health[0].target.port, 8080, "the group's port by default");
    assert_eq!(health[1].health_check_port, "9000");
    let lb = w.create_load_balancer("web");
    w.create_listener(lb.arn(), 80, &tg.arn());
    let health =
        target_groups::describe_health(&w.state, &scope, (tg.arn(), vec![], now_ms)).unwrap();
    assert!(health.iter().all(|h| h.state == "initial"));
    assert_eq!(
        health[0].reason.as_deref(),
        Some("Elb.RegistrationInProgress")
    );
    // With no deregistration delay a deregistered target is gone at once.
    w.elb(
        target_groups::modify_attributes,
        (
            tg.arn(),
            vec![("deregistration_delay.timeout_seconds".into(), "0".into())],
        ),
    );
    w.elb(target_groups::deregister, (tg.arn(), targets[..1].to_vec()));
    let health =
        target_groups::describe_health(&w.state, &scope, (tg.arn(), targets.clone(), now_ms))
            .unwrap();
    assert_eq!(
        health
            .iter()
            .map(|h| (h.state, h.reason.as_deref()))
            .collect::<Vec<_>>(),
        [
            ("unused", Some("Target.NotRegistered")),
            ("initial", Some("Elb.RegistrationInProgress"))
        ]
    );
    let e = w
        .try_elb(target_groups::deregister, (tg.arn(), targets[..1].to_vec()))
        .unwrap_err();
    assert_eq!(e.code(), "InvalidTarget");
    // An ip group takes IP addresses only.
    let ip = w.elb(target_groups::create, http_group("ips", 80, Some("ip")));
    let e = w
        .try_elb(
            target_groups::register,
            (
                ip.arn(),
                vec![TargetInput {
                    id: "i-1".into(),
                    ..Default::default()
                }],
            ),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidTarget");
    w.elb(
        target_groups::register,
        (
            ip.arn(),
            vec![TargetInput {
                id: "10.0.0.7".into(),
                ..Default::default()
            }],
        ),
    );
}

#[test]
fn a_group_in_use_cannot_be_deleted_and_deleting_the_lb_frees_it() {
    let mut w = World::new();
    let tg = tg(&mut w, "api");
    let lb = w.create_load_balancer("web");
    let l = w.create_listener(lb.arn(), 80, &tg.arn());
    let scope = ecs::scope();
    let view = target_groups::describe(
        &w.state,
        &scope,
        DescribeTargetGroups {
            load_balancer_arn: Some(lb.arn()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(view.target_groups[0].load_balancer_arns, [lb.arn()]);
    let e = w.try_elb(target_groups::delete, tg.arn()).unwrap_err();
    assert_eq!(e.code(), "ResourceInUse");
    let e = w
        .try_elb(listeners::create, http_listener(lb.arn(), 80, &tg.arn()))
        .unwrap_err();
    assert_eq!(e.code(), "DuplicateListener");
    w.elb(load_balancers::delete, lb.arn());
    assert!(w.state.elb.listeners.is_empty(), "{:?}", l.arn());
    w.elb(target_groups::delete, tg.arn());
    assert!(w.state.elb.target_groups.is_empty());
    // Deleting what does not exist succeeds, as in AWS.
    w.elb(target_groups::delete, tg.arn());
    w.elb(load_balancers::delete, lb.arn());
}

#[test]
fn rules_have_unique_priorities_and_a_default_rule_last() {
    let mut w = World::new();
    let lb = w.create_load_balancer("web");
    let api = tg(&mut w, "api").arn();
    let web = tg(&mut w, "www").arn();
    let l = w.create_listener(lb.arn(), 80, &web);
    let weighted = ActionInput {
        action_type: "forward".into(),
        forward_groups: Some(vec![(api.clone(), Some(80)), (web.clone(), Some(20))]),
        ..Default::default()
    };
    let r = w.elb(
        listeners::create_rule,
        rule(
            &l,
            10,
            vec![
                path("/api/*"),
                ConditionInput {
                    field: "http-header".into(),
                    http_header: Some(("X-Env".into(), vec!["blue".into()])),
                    ..Default::default()
                },
            ],
            vec![weighted],
        ),
    );
    assert!(r.arn.contains(":listener-rule/app/web/"), "{}", r.arn);
    let e = w
        .try_elb(
            listeners::create_rule,
            rule(&l, 10, vec![path("/b")], vec![forward(&api)]),
        )
        .unwrap_err();
    assert_eq!(e.code(), "PriorityInUse");
    w.elb(
        listeners::create_rule,
        rule(
            &l,
            5,
            vec![ConditionInput {
                field: "host-header".into(),
                values: vec!["api.example.com".into()],
                ..Default::default()
            }],
            vec![fixed_response("503", "text/plain", "down")],
        ),
    );
    let scope = ecs::scope();
    let rules = listeners::describe_rules(
        &w.state,
        &scope,
        DescribeRules {
            listener_arn: Some(l.arn()),
            ..Default::default()
        },
    )
    .unwrap()
    .rules;
    let priorities: Vec<_> = rules.iter().map(|r| r.priority.as_str()).collect();
    assert_eq!(priorities, ["5", "10", "default"]);
    let default = rules.last().unwrap().arn.clone();
    let e = w
        .try_elb(listeners::delete_rule, default.clone())
        .unwrap_err();
    assert_eq!(e.code(), "OperationNotPermitted");
    // ModifyRule on the default rule changes the listener's default action.
    w.elb(
        listeners::modify_rule,
        ModifyRule {
            arn: default,
            actions: vec![forward(&api)],
            ..Default::default()
        },
    );
    let listener = w.state.elb.listeners.values().next().unwrap();
    assert_eq!(
        listener.default_actions[0]
            .target_group_arns()
            .collect::<Vec<_>>(),
        [api.as_str()]
    );
    w.elb(listeners::delete_rule, r.arn.clone());
    let e = w.try_elb(listeners::delete_rule, r.arn).unwrap_err();
    assert_eq!(e.code(), "RuleNotFound");
    // Weights beyond 999 and unknown groups are refused.
    let e = w
        .try_elb(
            listeners::create_rule,
            rule(
                &l,
                20,
                vec![path("/x")],
                vec![ActionInput {
                    action_type: "forward".into(),
                    forward_groups: Some(vec![(api.clone(), Some(1000))]),
                    ..Default::default()
                }],
            ),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ValidationError");
    let gone = api.replace("/api/", "/nope/");
    let e = w
        .try_elb(
            listeners::create_rule,
            rule(&l, 20, vec![path("/x")], vec![forward(&gone)]),
        )
        .unwrap_err();
    assert_eq!(e.code(), "TargetGroupNotFound");
}

#[test]
fn tags_are_added_overwritten_removed_and_checked() {
    let mut w = World::new();
    let lb = w.create_load_balancer("web");
    let tg = tg(&mut w, "api");
    let tag = |k: &str, v: &str| ElbTag {
        key: k.into(),
        value: Some(v.into()),
    };
    w.elb(
        tags::add,
        (
            vec![lb.arn(), tg.arn()],
            vec![tag("team", "a"), tag("env", "prod")],
        ),
    );
    w.elb(tags::add, (vec![lb.arn()], vec![tag("team", "b")]));
    w.elb(tags::remove, (vec![tg.arn()], vec!["env".into()]));
    let scope = ecs::scope();
    let d = tags::describe(&w.state, &scope, vec![lb.arn(), tg.arn()]).unwrap();
    assert_eq!(d[0].1, [tag("team", "b"), tag("env", "prod")]);
    assert_eq!(d[1].1, [tag("team", "a")]);
    let e = w
        .try_elb(
            tags::add,
            (vec![lb.arn()], vec![tag("k", "1"), tag("k", "2")]),
        )
        .unwrap_err();
    assert_eq!(e.code(), "DuplicateTagKeys");
    let many: Vec<_> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    let e = w.try_elb(tags::add, (vec![lb.arn()], many)).unwrap_err();
    assert_eq!(e.code(), "TooManyTags");
    w.elb(load_balancers::delete, lb.arn());
    let e = tags::describe(&w.state, &scope, vec![lb.arn()]).unwrap_err();
    assert_eq!(e.code(), "LoadBalancerNotFound");
}

#[test]
fn records_survive_the_store_round_trip() {
    let mut w = World::new();
    let lb = w.create_load_balancer("web");
    let tg = tg(&mut w, "api");
    w.create_listener(lb.arn(), 80, &tg.arn());
    for r in [
        controlplane::state::Record::LoadBalancer(lb.clone()),
        controlplane::state::Record::TargetGroup(tg.clone()),
    ] {
        let json = serde_json::to_vec(&r).unwrap();
        let back: controlplane::state::Record = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, r);
    }
    assert!(
        controlplane::state::Record::LoadBalancer(lb)
            .store_key()
            .starts_with("elb-lb|000000000000|eu-west-1|web")
    );
}
