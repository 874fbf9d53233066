//! TCP listeners (a network load balancer's): raw bytes spliced both ways to the targets
//! of the default group, TCP-connect health checks, a refused connection sent to another
//! target, and the config rules of a TCP listener.

mod common;

use std::net::SocketAddr;

use common::*;
use lb::{
    Action, HealthCheckProtocol, HealthState, Lb, LbConfig, ListenerConfig, ListenerProtocol,
    TargetGroupConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP server that answers each line `x` with `<id>:x` (not HTTP).
async fn echo(id: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let mut out = format!("{id}:").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn tcp_config(targets: &[SocketAddr], tcp_checks: bool) -> LbConfig {
    let mut g = TargetGroupConfig::new(targets.iter().copied());
    g.health_check = fast_health();
    if tcp_checks {
        g.health_check.protocol = HealthCheckProtocol::Tcp;
    } else {
        g.health_check.enabled = false;
    }
    LbConfig {
        listeners: vec![ListenerConfig {
            tls: None,
            bind: bind(),
            protocol: ListenerProtocol::Tcp,
            rules: vec![],
            default_action: Action::forward("db"),
        }],
        target_groups: [("db".to_string(), g)].into_iter().collect(),
    }
}

/// Sends `line` on a new connection through the listener and reads the answer.
async fn ask(lb: &Lb, line: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(lb.local_addr(bind()).unwrap())
        .await
        .ok()?;
    s.write_all(line.as_bytes()).await.ok()?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn bytes_go_both_ways_and_connections_spread_over_healthy_targets() {
    let (a, b) = (echo("a").await, echo("b").await);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let lb = Lb::start(tcp_config(&[a, b, dead], true)).unwrap();
    // TCP-connect checks: the two servers turn healthy, the closed port unhealthy.
    wait_group_state(&lb, "db", Some(a), HealthState::Healthy).await;
    wait_group_state(&lb, "db", Some(b), HealthState::Healthy).await;
    wait_group_state(&lb, "db", Some(dead), HealthState::Unhealthy).await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let answer = ask(&lb, &format!("ping {i}")).await.expect("an answer");
        let (id, rest) = answer.split_once(':').unwrap();
        assert_eq!(rest, format!("ping {i}"), "the bytes came back unchanged");
        seen.insert(id.to_owned());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["a", "b"],
        "round robin over both"
    );
}

#[tokio::test]
async fn a_refused_connection_goes_to_another_target() {
    let a = echo("a").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // No active checks: both count as healthy, so half the first picks hit the dead one.
    let lb = Lb::start(tcp_config(&[dead, a], false)).unwrap();
    for i in 0..10 {
        assert_eq!(
            ask(&lb, "x").await.as_deref(),
            Some("a:x"),
            "connection {i}"
        );
    }
}

#[test]
fn a_tcp_listener_only_forwards_and_has_no_rules() {
    let mut c = tcp_config(&["127.0.0.1:1".parse().unwrap()], true);
    c.listeners[0].default_action = Action::fixed(200, "hi");
    assert!(c.validate().is_err());
    let mut c = tcp_config(&["127.0.0.1:1".parse().unwrap()], true);
    c.listeners[0].rules.push(lb::RuleConfig {
        priority: 1,
        conditions: vec![],
        action: Action::forward("db"),
    });
    assert!(c.validate().is_err());
    assert!(
        tcp_config(&["127.0.0.1:1".parse().unwrap()], true)
            .validate()
            .is_ok()
    );
}
