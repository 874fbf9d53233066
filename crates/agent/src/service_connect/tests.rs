//! Unit tests of the node's Service Connect.

use std::net::SocketAddr;

use super::*;
use model::agent::ServiceConnectEndpoint;
use model::wire::ApplicationProtocol;

const NS: &str = "arn:aws:servicediscovery:us-east-1:000000000000:namespace/ns-1";

fn range(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

fn route(ns: &str, name: &str, port: u16, endpoints: &[(&str, u16)]) -> ServiceConnectRoute {
    ServiceConnectRoute {
        namespace: ns.into(),
        dns_name: name.into(),
        port,
        discovery_name: name.into(),
        app_protocol: Some(ApplicationProtocol::Http),
        endpoints: endpoints
            .iter()
            .map(|(a, p)| ServiceConnectEndpoint {
                address: (*a).into(),
                port: *p,
            })
            .collect(),
    }
}

#[test]
fn one_address_per_alias_persisted_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = AliasAddresses::load(dir.path(), range(DEFAULT_CIDR)).unwrap();
    let web = a.assign(NS, "web").unwrap();
    assert_eq!(web, Ipv4Addr::new(198, 19, 0, 1));
    assert_eq!(a.assign(NS, "web"), Some(web), "stable");
    let db = a.assign(NS, "db").unwrap();
    assert_ne!(db, web);
    let other = a.assign("arn:other", "web").unwrap();
    assert_ne!(other, web, "same name in another namespace: another alias");
    a.save(dir.path()).unwrap();
    let again = AliasAddresses::load(dir.path(), range(DEFAULT_CIDR)).unwrap();
    assert_eq!(again, a);
    assert_eq!(again.get(NS, "db"), Some(db));
    // A changed range drops what no longer fits.
    let moved = AliasAddresses::load(dir.path(), range("10.99.0.0/16")).unwrap();
    assert_eq!(moved.addresses(), BTreeSet::new());
    // A corrupt file is an error, not an empty assignment.
    std::fs::write(aliases_path(dir.path()), b"{nope").unwrap();
    assert!(AliasAddresses::load(dir.path(), range(DEFAULT_CIDR)).is_err());
}

#[test]
fn a_small_range_runs_out_and_freed_addresses_come_back() {
    // A /30 has two assignable addresses.
    let mut a = AliasAddresses::new(range("10.9.0.0/30"));
    assert_eq!(a.assign(NS, "a"), Some(Ipv4Addr::new(10, 9, 0, 1)));
    assert_eq!(a.assign(NS, "b"), Some(Ipv4Addr::new(10, 9, 0, 2)));
    assert_eq!(a.assign(NS, "c"), None);
    a.retain(|(_, name)| name != "a");
    assert_eq!(a.assign(NS, "c"), Some(Ipv4Addr::new(10, 9, 0, 1)));
}

#[test]
fn at_most_the_node_limit_of_aliases() {
    let mut a = AliasAddresses::new(range(DEFAULT_CIDR));
    for i in 0..MAX_ROUTES_PER_NODE {
        assert!(a.assign(NS, &format!("svc{i}")).is_some());
    }
    assert_eq!(a.assign(NS, "one-more"), None);
}

#[test]
fn hosts_file_lists_loopback_then_aliases() {
    let text = render_hosts(&[
        ("db".into(), Ipv4Addr::new(198, 19, 0, 2)),
        ("web.internal".into(), Ipv4Addr::new(198, 19, 0, 1)),
    ]);
    assert_eq!(
        text,
        "# Written by the flotilla agent (Service Connect client aliases).\n\
         127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n\
         198.19.0.2 db\n198.19.0.1 web.internal\n"
    );
}

#[test]
fn hosts_files_are_rewritten_in_place_and_removed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = hosts_path(dir.path(), "t1");
    write_in_place(&path, "first, longer content\n").unwrap();
    let inode = std::fs::metadata(&path).unwrap().ino();
    write_in_place(&path, "second\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode, "same inode");
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
    remove_hosts(dir.path(), "t1");
    assert!(!path.exists());
    remove_hosts(dir.path(), "t1");
    write_in_place(&hosts_path(dir.path(), "live"), "x").unwrap();
    write_in_place(&hosts_path(dir.path(), "gone"), "x").unwrap();
    remove_hosts_except(dir.path(), &BTreeSet::from(["live".to_owned()]));
    assert!(hosts_path(dir.path(), "live").exists());
    assert!(!hosts_path(dir.path(), "gone").exists());
}

#[test]
fn names_that_would_break_a_hosts_file_are_refused() {
    for ok in ["web", "web.internal", "my_svc-1"] {
        assert!(valid_dns_name(ok), "{ok}");
    }
    let long = "a".repeat(MAX_DNS_NAME_LEN + 1);
    for bad in [
        "",
        "web\n1.2.3.4 evil",
        "a b",
        ".web",
        "web.",
        "a..b",
        &long,
    ] {
        assert!(!valid_dns_name(bad), "{bad:?}");
    }
}

#[test]
fn routes_are_cleaned_per_namespace() {
    let many: Vec<(String, u16)> = (0..MAX_ENDPOINTS_PER_ROUTE + 5)
        .map(|i| (format!("10.0.{}.{}", i / 250, i % 250 + 1), 80))
        .collect();
    let many: Vec<(&str, u16)> = many.iter().map(|(a, p)| (a.as_str(), *p)).collect();
    let routes = vec![
        route(
            NS,
            "web",
            8080,
            &[("10.0.0.1", 80), ("10.0.0.1", 80), ("nope", 80)],
        ),
        route(NS, "web", 8080, &[("10.0.0.9", 80)]),
        route(NS, "bad name", 80, &[]),
        route(NS, "zero", 0, &[]),
        route("arn:other", "web", 8080, &[]),
        route(NS, "big", 80, &many),
    ];
    let cleaned = clean_routes(NS, &routes);
    let names: Vec<(&str, u16)> = cleaned
        .iter()
        .map(|r| (r.dns_name.as_str(), r.port))
        .collect();
    assert_eq!(names, [("big", 80), ("web", 8080)]);
    assert_eq!(cleaned[0].endpoints.len(), MAX_ENDPOINTS_PER_ROUTE);
    assert_eq!(
        cleaned[1].endpoints.len(),
        1,
        "deduplicated, parseable only"
    );
}

#[test]
fn routes_become_one_listener_and_group_each() {
    let routes = [
        route(NS, "web", 8080, &[("10.0.0.1", 80), ("10.0.0.2", 80)]),
        route(NS, "web", 9090, &[("10.0.0.1", 90)]),
        route(NS, "db", 5432, &[]),
        route(NS, "unassigned", 80, &[("10.0.0.3", 80)]),
    ];
    let mut a = AliasAddresses::new(range(DEFAULT_CIDR));
    let web = a.assign(NS, "web").unwrap();
    let db = a.assign(NS, "db").unwrap();
    let refs: Vec<&ServiceConnectRoute> = routes.iter().collect();
    let config = lb_config(&refs, &a);
    config.validate().unwrap();
    let binds: Vec<SocketAddr> = config.listeners.iter().map(|l| l.bind).collect();
    assert_eq!(
        binds,
        [
            SocketAddr::new(web.into(), 8080),
            SocketAddr::new(web.into(), 9090),
            SocketAddr::new(db.into(), 5432)
        ],
        "same address on every port; no listener without an address"
    );
    assert_eq!(config.target_groups.len(), 3);
    let lb::Action::Forward { target_groups } = &config.listeners[0].default_action else {
        panic!("forwards");
    };
    let group = &config.target_groups[&target_groups[0].name];
    let targets: Vec<SocketAddr> = group.targets.iter().map(|t| t.addr).collect();
    assert_eq!(
        targets,
        [
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap()
        ]
    );
    assert!(
        !group.health_check.enabled,
        "endpoints serve as soon as listed"
    );
    assert!(group.outlier_detection.is_some());
    // Group names do not depend on the other routes.
    let alone = lb_config(&refs[..1], &a);
    assert!(alone.target_groups.contains_key(&target_groups[0].name));
}

#[test]
fn the_port_mappings_app_protocol_picks_per_request_or_per_connection_proxying() {
    let mut a = AliasAddresses::new(range(DEFAULT_CIDR));
    a.assign(NS, "web").unwrap();
    use lb::ListenerProtocol::{Http, Tcp};
    use lb::ProtocolVersion::{Http1, Http2};
    let protocols = [
        (Some(ApplicationProtocol::Http), (Http, Http1)),
        (Some(ApplicationProtocol::Http2), (Http, Http2)),
        (Some(ApplicationProtocol::Grpc), (Http, Http2)),
        (None, (Tcp, Http1)),
    ];
    for (app_protocol, want) in protocols {
        let r = ServiceConnectRoute {
            app_protocol,
            ..route(NS, "web", 8080, &[("10.0.0.1", 80)])
        };
        let config = lb_config(&[&r], &a);
        config.validate().unwrap();
        let group = config.target_groups.values().next().unwrap();
        assert_eq!(
            (config.listeners[0].protocol, group.protocol_version),
            want,
            "{app_protocol:?}"
        );
    }
}

/// Routes from a list the test changes.
struct FakeRoutes {
    routes: std::sync::Mutex<Result<Vec<ServiceConnectRoute>, String>>,
    calls: std::sync::atomic::AtomicUsize,
}

impl FakeRoutes {
    fn new(routes: Result<Vec<ServiceConnectRoute>, String>) -> Arc<FakeRoutes> {
        Arc::new(FakeRoutes {
            routes: std::sync::Mutex::new(routes),
            calls: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn set(&self, routes: Result<Vec<ServiceConnectRoute>, String>) {
        *self.routes.lock().unwrap() = routes;
    }
}

impl RouteSource for FakeRoutes {
    fn routes<'a>(&'a self, namespaces: &'a [String]) -> RoutesFuture<'a> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = self
            .routes
            .lock()
            .unwrap()
            .clone()
            .map(|all| {
                all.into_iter()
                    .filter(|r| namespaces.contains(&r.namespace))
                    .collect()
            })
            .map_err(AgentError::ControlPlane);
        Box::pin(async move { answer })
    }
}

/// A loopback HTTP backend answering `id` to everything.
async fn backend(id: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{id}",
                    id.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// `GET /` through the alias at `addr`, with a fresh connection.
async fn get(addr: SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.split("\r\n\r\n").nth(1).map(str::to_owned)
}

/// Polls `f` every 20 ms until it holds; panics after 10 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free port on the loopback range the tests use.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_task_gets_its_names_proxied_and_updated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let web = backend("web-1").await;
    let dead = free_port();
    let port = free_port();
    let fake = FakeRoutes::new(Ok(vec![route(
        NS,
        "web",
        port,
        &[("127.0.0.1", dead), ("127.0.0.1", web.port())],
    )]));
    // 127.0.0.0/8 is local already: no address is added to lo.
    let sc =
        Arc::new(ServiceConnect::new(dir.path(), range("127.77.0.0/16"), fake.clone()).unwrap());
    let hosts = sc.ensure_task("t1", NS).await.unwrap();
    let text = std::fs::read_to_string(&hosts).unwrap();
    assert!(text.ends_with("127.77.0.1 web\n"), "{text}");
    let alias = SocketAddr::from(([127, 77, 0, 1], port));
    // The endpoint that refuses connections is retried around, then ejected.
    for i in 0..20 {
        assert_eq!(get(alias).await.as_deref(), Some("web-1"), "request {i}");
    }

    // A second task of the namespace shares the alias; the loop picks up a new alias and
    // both files change in place.
    let hosts2 = sc.ensure_task("t2", NS).await.unwrap();
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&hosts).unwrap().ino();
    let refresher = tokio::spawn(sc.clone().refresh_loop());
    let db_port = free_port();
    fake.set(Ok(vec![
        route(NS, "web", port, &[("127.0.0.1", web.port())]),
        route(NS, "db", db_port, &[("127.0.0.1", web.port())]),
    ]));
    for file in [&hosts, &hosts2] {
        eventually("the db alias", || {
            let file = file.clone();
            async move { std::fs::read_to_string(&file).is_ok_and(|t| t.contains("127.77.0.2 db\n")) }
        })
        .await;
    }
    assert_eq!(std::fs::metadata(&hosts).unwrap().ino(), inode);
    let db = SocketAddr::from(([127, 77, 0, 2], db_port));
    assert_eq!(get(db).await.as_deref(), Some("web-1"));

    // A failing control plane keeps the last routes.
    fake.set(Err("down".into()));
    let calls = fake.calls.load(std::sync::atomic::Ordering::SeqCst);
    eventually("another refresh", || {
        let n = fake.calls.load(std::sync::atomic::Ordering::SeqCst);
        async move { n > calls + 1 }
    })
    .await;
    assert_eq!(get(alias).await.as_deref(), Some("web-1"));

    // A restarted agent gives the same addresses.
    let again = ServiceConnect::new(dir.path(), range("127.77.0.0/16"), fake.clone()).unwrap();
    assert_eq!(
        again.state.lock().await.addresses.get(NS, "db"),
        Some(Ipv4Addr::new(127, 77, 0, 2))
    );
    drop(again);

    // The last task goes: file, listeners and addresses with it.
    sc.release_task("t1").await;
    assert!(!hosts.exists());
    assert_eq!(
        get(alias).await.as_deref(),
        Some("web-1"),
        "t2 still uses it"
    );
    sc.release_task("t2").await;
    assert!(!hosts2.exists());
    assert!(get(alias).await.is_none(), "no listener any more");
    assert!(sc.state.lock().await.addresses.addresses().is_empty());
    refresher.abort();
}

/// A loopback TCP backend that writes `id` and then echoes what it reads.
async fn echo_backend(id: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let (mut r, mut w) = stream.into_split();
                if w.write_all(id.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_port_without_app_protocol_is_proxied_as_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_backend("echo-1:").await;
    let dead = free_port();
    let port = free_port();
    let fake = FakeRoutes::new(Ok(vec![ServiceConnectRoute {
        app_protocol: None,
        ..route(
            NS,
            "db",
            port,
            &[("127.0.0.1", dead), ("127.0.0.1", echo.port())],
        )
    }]));
    let sc = ServiceConnect::new(dir.path(), range("127.79.0.0/16"), fake).unwrap();
    sc.ensure_task("t1", NS).await.unwrap();
    let alias = SocketAddr::from(([127, 79, 0, 1], port));
    // Bytes that are not HTTP go through as they are, both ways, on every connection:
    // the endpoint that refuses connections is tried at most once per connection, then
    // ejected.
    for i in 0..10 {
        let mut s = tokio::net::TcpStream::connect(alias).await.unwrap();
        let line = format!("\x00ping {i}\n");
        s.write_all(line.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, format!("echo-1:{line}"), "connection {i}");
    }
    sc.release_task("t1").await;
}

/// A loopback backend that speaks only HTTP/2 with prior knowledge: it answers `id` with
/// the trailer `grpc-status: 0`, as a gRPC server does.
async fn h2_backend(id: &'static str) -> SocketAddr {
    use http_body_util::{BodyExt, Full};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                move |req: http::Request<hyper::body::Incoming>| async move {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let status = if req.version() == http::Version::HTTP_2 {
                        200
                    } else {
                        505
                    };
                    let body = Full::new(bytes::Bytes::from_static(id.as_bytes()))
                        .with_trailers(async move { Some(Ok(trailers)) });
                    let mut resp = http::Response::new(body);
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                },
            );
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn a_grpc_alias_reaches_http2_endpoints_with_their_trailers() {
    use http_body_util::BodyExt;
    let dir = tempfile::tempdir().unwrap();
    let api = h2_backend("api-1").await;
    let port = free_port();
    let fake = FakeRoutes::new(Ok(vec![ServiceConnectRoute {
        app_protocol: Some(ApplicationProtocol::Grpc),
        ..route(NS, "api", port, &[("127.0.0.1", api.port())])
    }]));
    let sc = ServiceConnect::new(dir.path(), range("127.80.0.0/16"), fake).unwrap();
    sc.ensure_task("t1", NS).await.unwrap();
    let alias = SocketAddr::from(([127, 80, 0, 1], port));
    // A gRPC client: HTTP/2 prior knowledge to the alias.
    let stream = tokio::net::TcpStream::connect(alias).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for i in 0..3 {
        let req = http::Request::post(format!("http://api:{port}/pkg.Api/Call"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "call {i}");
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        assert_eq!(&collected.to_bytes()[..], b"api-1", "call {i}");
        assert_eq!(
            trailers.and_then(|t| t.get("grpc-status").cloned()),
            Some(http::HeaderValue::from_static("0")),
            "call {i}: the trailer reaches the client"
        );
    }
    sc.release_task("t1").await;
}

#[tokio::test]
async fn a_task_does_not_start_without_routes() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRoutes::new(Err("unreachable".into()));
    let sc = ServiceConnect::new(dir.path(), range("127.78.0.0/16"), fake)
        .unwrap()
        .with_first_fetch_deadline(Duration::from_millis(300));
    let e = sc.ensure_task("t1", NS).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot get the Service Connect routes of namespace arn:"),
        "{e}"
    );
    sc.release_task("t1").await;
    assert!(sc.state.lock().await.tasks.is_empty());
}
