//! The traffic counts `Lb::traffic` gives (what `flotilla server` publishes to CloudWatch):
//! each request counted once, in the group that answered it or in the load balancer's own,
//! by who answered (a target, or the load balancer itself) and status class, with the
//! targets' response times.

mod common;

use common::*;
use lb::{Action, Condition, HealthState, Lb, RuleConfig, TargetGroupConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_group_answerer_and_status_class() {
    let web = Backend::start("web").await;
    // A port nothing listens on, checks off so it is routable at once: every request
    // to it is the load balancer's own 502.
    let refusing = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut down = TargetGroupConfig::new([refusing]);
    down.health_check.enabled = false;
    let rule = |priority, path: &str, action| RuleConfig {
        priority,
        conditions: vec![Condition::PathPattern {
            values: vec![path.into()],
        }],
        action,
    };
    let lb = Lb::start(config(
        vec![
            rule(10, "/maintenance", Action::fixed(503, "down for a bit")),
            rule(20, "/nothing", Action::fixed(404, "")),
            rule(30, "/down", Action::forward("down")),
        ],
        Action::forward("web"),
        vec![("web", group(&[&web])), ("down", down)],
    ))
    .unwrap();
    wait_group_state(&lb, "web", None, HealthState::Healthy).await;
    let before = lb.traffic();
    assert_eq!(before.load_balancer.requests, 0, "{before:?}");

    let c = client();
    let u = url(&lb);
    for (path, status) in [
        ("/", 200),
        ("/", 200),
        ("/status/302", 302),
        ("/status/404", 404),
        ("/status/503", 503),
        ("/maintenance", 503),
        ("/nothing", 404),
        ("/down", 502),
    ] {
        let r = get(&c, &format!("{u}{path}"), &[]).await;
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }

    let t = lb.traffic();
    let w = t.groups["web"];
    assert_eq!(w.requests, 5);
    assert_eq!(w.target_responses, [2, 1, 1, 1]);
    assert_eq!(w.elb_responses, [0, 0, 0, 0]);
    assert_eq!(w.response_count, 5);
    let (min, max) = (w.response_min.unwrap(), w.response_max.unwrap());
    assert!(
        0.0 < min && min <= max && max <= w.response_seconds,
        "{w:?}"
    );
    let d = t.groups["down"];
    assert_eq!((d.requests, d.elb_responses), (1, [0, 0, 0, 1]));
    assert_eq!((d.response_count, d.response_min), (0, None));
    let all = t.load_balancer;
    assert_eq!(all.requests, 8);
    assert_eq!(all.target_responses, [2, 1, 1, 1]);
    assert_eq!(
        all.elb_responses,
        [0, 0, 1, 2],
        "404 fixed; 503 fixed and 502"
    );
    assert_eq!(all.response_count, 5);
    assert_eq!((all.response_min, all.response_max), (Some(min), Some(max)));

    // Counts are cumulative; the extremes are taken by each call.
    let again = lb.traffic();
    assert_eq!(again.load_balancer.requests, 8);
    assert_eq!(again.groups["web"].response_count, 5);
    assert_eq!(again.load_balancer.response_min, None);

    // A new config keeps the counts, also of a group it drops.
    lb.update(config(
        vec![],
        Action::forward("web"),
        vec![("web", group(&[&web]))],
    ))
    .unwrap();
    assert_eq!(get(&c, &u, &[]).await.status, 200);
    let after = lb.traffic();
    assert_eq!(after.groups["web"].requests, 6);
    assert_eq!(after.groups["down"].requests, 1);
    assert_eq!(after.load_balancer.requests, 9);
}
