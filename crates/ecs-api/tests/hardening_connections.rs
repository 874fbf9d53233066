//! Hardening of the connections (issue 10), over real loopback sockets: slow clients
//! that never finish their headers are closed after the header timeout and cannot
//! keep others from an answer; idle keep-alive connections close; the connection cap
//! makes room or answers 503; long requests (the agent's long poll) outlive every
//! timeout; slow bodies time out; graceful shutdown answers what is in progress.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ecs_api::server::{ServeLimits, serve_with};
use ecs_api::{ApiConfig, router, serve};
use serde_json::{Value, json};
use testkit::ecs;
use testkit::http::{ECS_TARGET_PREFIX as ECS, post, register_instance};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::timeout;
/// Half a request head: what a slow client sends, and then nothing.
const HALF_A_HEAD: &[u8] = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Tar";

fn quick(max_connections: usize) -> ServeLimits {
    ServeLimits {
        max_connections,
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(1),
    }
}

struct Server {
    addr: SocketAddr,
    endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: Option<ServeLimits>) -> Server {
    let cp = ecs::control_plane();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(
        cp,
        ApiConfig {
            account_id: "000000000000".into(),
            ..Default::default()
        },
    );
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = rx.await;
    };
    let done = match limits {
        Some(limits) => tokio::spawn(serve_with(listener, app, limits, shutdown)),
        None => tokio::spawn(serve(listener, app, shutdown)),
    };
    Server {
        addr,
        endpoint: format!("http://{addr}"),
        stop: Some(tx),
        done,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn slow_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut slow = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(HALF_A_HEAD).await.unwrap();
        slow.push(s);
    }
    slow
}

/// Waits until the server closes `s` (end of stream or reset); the time it took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read = timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    read.ok().map(|()| started.elapsed())
}

/// A cluster with one container instance (for the agent's long poll).
async fn instance(http: &reqwest::Client, ep: &str) -> String {
    post(http, ep, "CreateCluster", &json!({"clusterName": "c"})).await;
    register_instance(http, ep, "c", 1024, 1024).await
}

/// A long poll that waits `wait` seconds (nothing changes meanwhile).
async fn long_poll(
    http: reqwest::Client,
    ep: String,
    instance: String,
    wait: u32,
) -> (u16, Duration) {
    let target = "FlotillaAgentV1.PollTasks";
    let (_, first) = post(
        &http,
        &ep,
        target,
        &json!({"cluster": "c", "containerInstance": instance}),
    )
    .await;
    let digest = first["digest"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let (status, _) = post(
        &http,
        &ep,
        target,
        &json!({"cluster": "c", "containerInstance": instance, "knownDigest": digest, "waitSeconds": wait}),
    )
    .await;
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_beyond_the_cap_do_not_starve_others_and_are_closed() {
    let cap = 8;
    let server = start(Some(quick(cap))).await;
    let mut slow = slow_clients(server.addr, 3 * cap).await;

    // A normal client still gets its answer at once: the slow ones make room.
    let started = Instant::now();
    let (status, v) = timeout(
        Duration::from_secs(3),
        post(&client(), &server.endpoint, "ListClusters", &json!({})),
    )
    .await
    .expect("a normal request is answered while slow clients hold the cap");
    assert_eq!(status, 200, "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Every slow connection is closed: those beyond the cap at once, the rest after the
    // 1 s header timeout.
    let mut latest = Duration::ZERO;
    for s in &mut slow {
        let took = closed_within(s, Duration::from_secs(5))
            .await
            .expect("a slow connection is closed after the header timeout");
        latest = latest.max(took);
    }
    assert!(latest < Duration::from_secs(4), "{latest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn making_room_is_quick_with_the_accept_loop_on_its_own_thread() {
    // The accept loop runs on the test's own thread, outside the runtime's workers, as
    // `flotilla server` runs it (in `block_on`); the connections run on the workers.
    let cp = ecs::control_plane();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(cp, ApiConfig::default());
    let limits = ServeLimits {
        max_connections: 100,
        header_timeout: Duration::from_secs(30), // only making room closes them here
        ..quick(100)
    };
    let (tx, rx) = oneshot::channel::<()>();
    let server = serve_with(listener, app, limits, async {
        let _ = rx.await;
    });
    let clients = async move {
        let slow = slow_clients(addr, 300).await;
        let started = Instant::now();
        let closed = loop {
            let closed = slow
                .iter()
                .filter(|s| {
                    let mut buf = [0u8; 16];
                    !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                })
                .count();
            if closed >= 200 || started.elapsed() > Duration::from_secs(5) {
                break closed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let took = started.elapsed();
        tx.send(()).unwrap();
        (closed, took)
    };
    let (served, (closed, took)) = tokio::join!(server, clients);
    served.unwrap();
    assert_eq!(closed, 200, "connections closed to make room for 200 more");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_connection_without_a_complete_head_is_closed() {
    let server = start(None).await;
    let mut slow = slow_clients(server.addr, 1).await;
    let took = closed_within(&mut slow[0], Duration::from_secs(15))
        .await
        .expect("closed after the default header timeout (10 s)");
    assert!(took >= Duration::from_secs(9), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let server = start(Some(quick(16))).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = [0u8; 1024];
    for _ in 0..2 {
        // Longer than the header timeout between requests, shorter than the idle one.
        s.write_all(request).await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let took = closed_within(&mut s, Duration::from_secs(4))
        .await
        .expect("an idle connection is closed");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_outlives_the_timeouts_and_busy_connections_are_kept() {
    let cap = 3;
    let server = start(Some(quick(cap))).await;
    let http = client();
    let inst = instance(&http, &server.endpoint).await;
    // `cap` long polls of 3 s (longer than every timeout), each on its own connection.
    let polls: Vec<_> = (0..cap)
        .map(|_| {
            tokio::spawn(long_poll(
                reqwest::Client::new(),
                server.endpoint.clone(),
                inst.clone(),
                3,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Every connection has a request in progress: a newcomer is told to come back.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = String::new();
    timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
        .await
        .expect("refused promptly")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("x-amzn-errortype: ThrottlingException"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["__type"], "ThrottlingException");

    for poll in polls {
        let (status, took) = poll.await.unwrap();
        assert_eq!(status, 200);
        assert!(took >= Duration::from_millis(2900), "{took:?}");
    }
    let (status, _) = post(&http, &server.endpoint, "ListClusters", &json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_fails_the_request() {
    let server = start(Some(quick(16))).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        format!("POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {ECS}.ListClusters\r\nContent-Length: 100\r\n\r\n{{\"maxRes")
            .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
        .await
        .expect("answered after the body timeout")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("SerializationException"), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_requests_in_progress() {
    let mut server = start(Some(quick(16))).await;
    let http = client();
    let inst = instance(&http, &server.endpoint).await;
    let poll = tokio::spawn(long_poll(
        reqwest::Client::new(),
        server.endpoint.clone(),
        inst,
        2,
    ));
    let mut idle = slow_clients(server.addr, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop.take().unwrap().send(()).unwrap();
    // The waiting connection closes at once; the poll in progress is answered.
    assert!(
        closed_within(&mut idle[0], Duration::from_millis(800))
            .await
            .is_some()
    );
    let (status, _) = poll.await.unwrap();
    assert_eq!(status, 200);
    timeout(Duration::from_secs(5), server.done)
        .await
        .expect("serve returns once the poll is answered")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the listener is closed"
    );
}
