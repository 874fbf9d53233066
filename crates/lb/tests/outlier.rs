//! Outlier detection end to end: a group with no active health check (targets serve as
//! soon as they are listed) and passive ejection, as the agent's Service Connect proxy
//! runs it.

mod common;

use std::net::SocketAddr;

use common::*;
use lb::{Action, HealthCheckConfig, Lb, OutlierDetection, TargetGroupConfig};

/// An address on which nothing listens: connecting is refused.
fn refusing_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn service_connect_group(targets: &[SocketAddr]) -> TargetGroupConfig {
    let mut g = TargetGroupConfig::new(targets.iter().copied());
    g.health_check = HealthCheckConfig {
        enabled: false,
        protocol: lb::HealthCheckProtocol::Http,
        ..HealthCheckConfig::default()
    };
    g.outlier_detection = Some(OutlierDetection::default());
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_endpoint_is_ejected_and_no_request_fails() {
    let live = Backend::start("live").await;
    let dead = refusing_addr();
    // The dead one first, so that round robin tries it at once.
    let lb = Lb::start(config(
        vec![],
        Action::forward("web"),
        vec![("web", service_connect_group(&[dead, live.addr]))],
    ))
    .unwrap();
    // No waiting for health checks: the first request is served.
    let c = client();
    for i in 0..100 {
        let r = get(&c, &url(&lb), &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.body, "live");
    }
    let ejected = lb.ejections();
    assert_eq!(ejected.len(), 1, "{ejected:?}");
    assert_eq!(
        (ejected[0].group.as_str(), ejected[0].target),
        ("web", dead)
    );
    assert!(ejected[0].remaining.as_secs() <= 10);
    assert_eq!(
        requests_to(&lb, dead),
        1,
        "ejected after its first failure, then left alone"
    );
    assert_eq!(requests_to(&lb, live.addr), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_half_a_group_is_ejected() {
    let live = Backend::start("live").await;
    let (dead1, dead2) = (refusing_addr(), refusing_addr());
    let lb = Lb::start(config(
        vec![],
        Action::forward("web"),
        vec![("web", service_connect_group(&[dead1, dead2, live.addr]))],
    ))
    .unwrap();
    let c = client();
    for _ in 0..30 {
        // A request that meets the dead one that may not be ejected is retried once, on
        // a target that is not ejected: the live one or the other dead one.
        let _ = get(&c, &url(&lb), &[]).await;
    }
    let ejected = lb.ejections();
    assert_eq!(ejected.len(), 1, "one of three, not two: {ejected:?}");
    assert!([dead1, dead2].contains(&ejected[0].target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_without_outlier_detection_eject_nothing() {
    let live = Backend::start("live").await;
    let dead = refusing_addr();
    let mut g = service_connect_group(&[dead, live.addr]);
    g.outlier_detection = None;
    let lb = Lb::start(config(vec![], Action::forward("web"), vec![("web", g)])).unwrap();
    let c = client();
    for _ in 0..10 {
        // Retried on the live one.
        assert_eq!(get(&c, &url(&lb), &[]).await.status, 200);
    }
    assert!(lb.ejections().is_empty());
    // Round robin's counter also turns for the retry, so every request meets the dead
    // one first: never ejected, it is tried again and again.
    assert_eq!(requests_to(&lb, dead), 10);
}
