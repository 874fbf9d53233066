//! Service Connect on a node, end to end on loopback: a fake control plane's routes, the
//! agent's proxy on alias addresses of `127.0.0.0/8` (local without adding anything to
//! `lo`), real HTTP backends, the hosts file rewritten in place.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent::error::AgentError;
use agent::service_connect::{RouteSource, RoutesFuture, ServiceConnect};
use model::agent::{ServiceConnectEndpoint, ServiceConnectRoute};

const NS: &str = "arn:aws:servicediscovery:us-east-1:000000000000:namespace/ns-it";

fn route(ns: &str, name: &str, port: u16, endpoints: &[(&str, u16)]) -> ServiceConnectRoute {
    ServiceConnectRoute {
        namespace: ns.into(),
        dns_name: name.into(),
        port,
        discovery_name: name.into(),
        endpoints: endpoints
            .iter()
            .map(|(a, p)| ServiceConnectEndpoint {
                address: (*a).into(),
                port: *p,
            })
            .collect(),
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
async fn aliases_are_proxied_with_a_dead_endpoint_ejected_and_follow_route_changes() {
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
    let sc = Arc::new(
        ServiceConnect::new(dir.path(), "127.79.0.0/16".parse().unwrap(), fake.clone()).unwrap(),
    );
    let hosts = sc.ensure_task("task-1", NS).await.unwrap();
    assert_eq!(hosts, dir.path().join("hosts/task-1"));
    let text = std::fs::read_to_string(&hosts).unwrap();
    assert!(text.contains("127.0.0.1 localhost\n"), "{text}");
    assert!(text.ends_with("127.79.0.1 web\n"), "{text}");
    let alias = SocketAddr::from(([127, 79, 0, 1], port));
    for i in 0..20 {
        assert_eq!(get(alias).await.as_deref(), Some("web-1"), "request {i}");
    }

    // A second task of the namespace shares the alias; the loop follows a new alias.
    let hosts2 = sc.ensure_task("task-2", NS).await.unwrap();
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
            async move { std::fs::read_to_string(&file).is_ok_and(|t| t.contains("127.79.0.2 db\n")) }
        })
        .await;
    }
    assert_eq!(
        std::fs::metadata(&hosts).unwrap().ino(),
        inode,
        "rewritten in place"
    );
    assert_eq!(
        get(SocketAddr::from(([127, 79, 0, 2], db_port)))
            .await
            .as_deref(),
        Some("web-1")
    );

    // A control plane that stops answering changes nothing.
    fake.set(Err("down".into()));
    let calls = fake.calls.load(Ordering::SeqCst);
    eventually("two more refreshes", || {
        let n = fake.calls.load(Ordering::SeqCst);
        async move { n >= calls + 2 }
    })
    .await;
    assert_eq!(get(alias).await.as_deref(), Some("web-1"));

    // The last task of the namespace takes its aliases with it.
    sc.release_task("task-1").await;
    assert!(!hosts.exists());
    assert_eq!(
        get(alias).await.as_deref(),
        Some("web-1"),
        "task-2 still uses it"
    );
    sc.release_task("task-2").await;
    assert!(!hosts2.exists());
    assert!(get(alias).await.is_none());
    refresher.abort();
}

#[tokio::test]
async fn a_task_without_routes_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRoutes::new(Err("unreachable".into()));
    let sc = ServiceConnect::new(dir.path(), "127.80.0.0/16".parse().unwrap(), fake)
        .unwrap()
        .with_first_fetch_deadline(Duration::from_millis(300));
    let e = sc.ensure_task("t1", NS).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot get the Service Connect routes of namespace {NS}: control plane: unreachable"
        )
    );
    assert!(!dir.path().join("hosts/t1").exists());
}
