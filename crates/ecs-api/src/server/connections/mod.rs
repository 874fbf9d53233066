//! The API server's accept loop: what `axum::serve` does, plus the limits a server
//! reachable by anyone needs and `axum::serve` has no knob for.
//!
//! ## Background
//! `axum::serve` holds a connection for as long as the client keeps it open, even one
//! that never finishes its request head: a client that opens a thousand connections and
//! trickles half a header ("slowloris") used up the process's file descriptors, and
//! nobody else got an answer. Accept errors (`EMFILE`) were retried every second while
//! those connections stayed.
//!
//! ## What is enforced ([`ServeLimits`])
//! - **Header timeout** (default 10 s): a connection must deliver a complete request
//!   head within this time of being accepted, or of the first byte of its next request
//!   on a keep-alive connection; otherwise it is closed without an answer.
//! - **Idle timeout** (default 60 s): a keep-alive connection with no request for this
//!   long is closed.
//! - **Body timeout** (default 60 s): a request body must have arrived this long after
//!   its head; otherwise the request fails (400 `SerializationException`) and the
//!   connection closes.
//! - **Head size**: at most [`MAX_HEAD_BYTES`]; hyper answers 431 beyond.
//! - **Listen backlog**: raised to [`LISTEN_BACKLOG`] (the kernel caps it at
//!   `net.core.somaxconn`), so that a burst of connections waits in the kernel rather
//!   than having its SYNs dropped.
//! - **Connection cap** (default [`DEFAULT_MAX_CONNECTIONS`], lowered to leave
//!   [`RESERVED_FDS`] descriptors free under the open-files limit). A connection that
//!   arrives at the cap makes room: the connection that has waited longest without a
//!   request in progress (idle keep-alive, or still sending its head) is closed. When
//!   every connection has a request in progress, the newcomer is answered
//!   `503 {"__type":"ThrottlingException",…}` with `Connection: close` (AWS clients
//!   retry it) and closed. Both are logged as warnings, at most every 10 s, with a
//!   count.
//! - **Accept errors** never stop the server: out of descriptors (`EMFILE`), it closes
//!   the longest-waiting connection without a request in progress, or backs off (10 ms
//!   doubling up to 1 s), and accepts again.
//!
//! None of the timeouts applies while a request is being handled or its response
//! written: a long poll (`FlotillaAgentV1.PollTasks`, `flotilla logs --follow`) lasts as
//! long as its handler.
//!
//! ## Design
//! One task per connection runs hyper's HTTP/1 connection next to the connection's
//! deadline. The connection's phase (waiting for a head, idle, busy) is kept in a small
//! shared `Conn`: the hyper service marks it busy when a request's head has arrived and
//! idle again when the response body is dropped (written or abandoned); the socket
//! wrapper notes the first byte read on an idle connection. The cap is a semaphore of
//! connection slots; a connection closed to make room hands its slot to the newcomer.
//! Graceful shutdown works as with `axum::serve`: the listener closes, connections
//! without a request in progress close, requests in progress are answered, then
//! [`serve_with`] returns. [`conn`] holds one connection's part.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, sleep, timeout};

mod conn;

use conn::*;

/// Default of [`ServeLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of [`ServeLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ServeLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`ServeLimits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head (request line and headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// File descriptors kept free of connections under the open-files limit (the store,
/// log files, the listener, the runtime's own).
pub const RESERVED_FDS: usize = 64;
/// Connections the kernel may queue before they are accepted (tokio's default is 128).
pub const LISTEN_BACKLOG: i32 = 1024;

/// Refused connections being answered at once; more are closed without an answer.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long answering a refused connection may take.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// Shortest interval between two warnings about refusals or accept errors.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// First pause after an accept error; it doubles while accepting keeps failing…
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// …up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How many connections making room may try: a candidate may start a request just
/// before it hears it is to close, and then stays.
const EVICTION_TRIES: usize = 8;

/// The limits the server enforces on connections (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to deliver a complete request head, from the connection's start or from
    /// the first byte of its next request.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may stay without a request.
    pub idle_timeout: Duration,
    /// Time for a request body to arrive after its head.
    pub body_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then waits
/// for the requests in progress to be answered. Never fails: accept errors are
/// logged and retried.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Listening again on a listening socket only changes its backlog (Linux).
    if let Err(e) = socket2::SockRef::from(&listener).listen(LISTEN_BACKLOG) {
        tracing::debug!(error = %e, "cannot raise the listen backlog");
    }
    serve_on(listener, router, limits, shutdown).await;
    Ok(())
}

/// Something that accepts TCP connections (the listener; a failing one in tests).
trait Accept {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

async fn serve_on(
    mut listener: impl Accept,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let max = effective_max_connections(limits.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut acceptor = Acceptor {
        router,
        limits,
        max,
        slots: Arc::new(Semaphore::new(max)),
        registry: Arc::new(Registry::default()),
        refusals: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
        stop: stop_rx,
        refused: 0,
        last_refusal_log: None,
        evicted: 0,
        last_eviction_log: None,
        accept_errors: 0,
        last_error_log: None,
        backoff: BACKOFF_FIRST,
    };
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    acceptor.backoff = BACKOFF_FIRST;
                    acceptor.admit(stream, peer).await;
                }
                Err(e) => acceptor.accept_failed(e).await,
            },
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = acceptor.slots.acquire_many(all).await;
}

/// `requested`, lowered so that the connections and [`RESERVED_FDS`] fit the
/// process's open-files limit.
fn effective_max_connections(requested: usize) -> usize {
    let requested = requested.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    match open_files_limit() {
        Some(limit) if limit < requested.saturating_add(RESERVED_FDS) => {
            let lowered = limit.saturating_sub(RESERVED_FDS).max(1);
            tracing::info!(
                requested,
                lowered,
                open_files_limit = limit,
                "max connections lowered to fit the open-files limit (raise it with `ulimit -n` or LimitNOFILE=)"
            );
            lowered
        }
        _ => requested,
    }
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux); `None` when it is
/// unlimited or cannot be read.
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

struct Acceptor {
    router: Router,
    limits: ServeLimits,
    max: usize,
    slots: Arc<Semaphore>,
    registry: Arc<Registry>,
    refusals: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    refused: u64,
    last_refusal_log: Option<Instant>,
    evicted: u64,
    last_eviction_log: Option<Instant>,
    accept_errors: u64,
    last_error_log: Option<Instant>,
    backoff: Duration,
}

impl Acceptor {
    async fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => match self.make_room().await {
                Some(slot) => slot,
                None => return self.refuse(stream, peer),
            },
        };
        let conn = self.registry.add(self.limits, slot);
        let registered = Registered {
            registry: Arc::clone(&self.registry),
            conn: Arc::clone(&conn),
        };
        tokio::spawn(run_connection(
            stream,
            conn,
            self.router.clone(),
            self.stop.clone(),
            registered,
        ));
    }

    /// Closes the connection that has waited longest without a request in progress,
    /// and takes its slot.
    async fn make_room(&mut self) -> Option<OwnedSemaphorePermit> {
        let slot = self.registry.evict_longest_waiting().await?;
        self.evicted += 1;
        if self
            .last_eviction_log
            .is_none_or(|t| t.elapsed() >= LOG_EVERY)
        {
            tracing::warn!(
                closed = self.evicted,
                max_connections = self.max,
                "at the connection limit: closed the connections waiting longest without a request in progress to make room"
            );
            self.evicted = 0;
            self.last_eviction_log = Some(Instant::now());
        }
        Some(slot)
    }

    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr) {
        self.refused += 1;
        if self
            .last_refusal_log
            .is_none_or(|t| t.elapsed() >= LOG_EVERY)
        {
            tracing::warn!(
                %peer,
                refused = self.refused,
                max_connections = self.max,
                "connections refused with 503 ThrottlingException: every connection has a request in progress"
            );
            self.refused = 0;
            self.last_refusal_log = Some(Instant::now());
        }
        // Beyond the refusals being answered, close at once.
        if let Ok(permit) = Arc::clone(&self.refusals).try_acquire_owned() {
            let answer = refusal_answer(self.max);
            tokio::spawn(async move {
                let _permit = permit;
                let _ = timeout(REFUSAL_TIME, answer_refused(stream, answer)).await;
            });
        }
    }

    async fn accept_failed(&mut self, e: io::Error) {
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
        ) {
            return;
        }
        // Out of descriptors (EMFILE, ENFILE) or memory: free a descriptor by closing
        // a connection without a request in progress, or wait; never give up.
        self.accept_errors += 1;
        if self.last_error_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::error!(
                error = %e,
                failures = self.accept_errors,
                "accepting a connection failed; closing an idle connection or waiting, then accepting again"
            );
            self.accept_errors = 0;
            self.last_error_log = Some(Instant::now());
        }
        if self.registry.evict_longest_waiting().await.is_some() {
            sleep(BACKOFF_FIRST).await;
        } else {
            sleep(self.backoff).await;
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// The answer to a connection refused at the cap.
fn refusal_answer(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "__type": "ThrottlingException",
        "message": format!(
            "The server has {max} connections open, its limit, each with a request in progress. Try again later."
        ),
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: application/x-amz-json-1.1\r\n\
         x-amzn-errortype: ThrottlingException\r\n\
         x-amzn-requestid: {}\r\n\
         retry-after: 1\r\n\
         connection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        uuid::Uuid::new_v4(),
        body.len()
    )
    .into_bytes()
}

/// Answers a refused connection: reads the request head first (what arrives within
/// half a second), as closing a socket with unread input resets it and the client
/// could lose the answer; then writes the answer, closes its side and drains the rest.
async fn answer_refused(mut stream: TcpStream, answer: Vec<u8>) -> io::Result<()> {
    let mut head = vec![0u8; 16 * 1024];
    let _ = timeout(Duration::from_millis(500), async {
        let mut seen = 0;
        while seen < head.len() {
            let n = stream.read(&mut head[seen..]).await?;
            if n == 0 {
                break;
            }
            seen += n;
            if head[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
    stream.write_all(&answer).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::get;
    use tokio::sync::oneshot;

    use super::*;

    /// A listener whose first `failures` accepts fail as when the process is out of
    /// file descriptors.
    struct OutOfFds {
        inner: TcpListener,
        failures: Arc<AtomicUsize>,
    }

    impl Accept for OutOfFds {
        async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(io::Error::from_raw_os_error(24)); // EMFILE
            }
            self.inner.accept().await
        }
    }

    async fn get_ok(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn accept_errors_do_not_stop_the_server() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let failures = Arc::new(AtomicUsize::new(5));
        let listener = OutOfFds {
            inner,
            failures: Arc::clone(&failures),
        };
        let router = Router::new().route("/ok", get(|| async { "fine" }));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, router, ServeLimits::default(), async {
            let _ = rx.await;
        }));
        let answer = timeout(Duration::from_secs(10), get_ok(addr))
            .await
            .expect("answered despite the accept errors");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("fine"), "{answer}");
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        assert!(!server.is_finished());
        let _ = tx.send(());
        timeout(Duration::from_secs(5), server)
            .await
            .expect("shut down")
            .unwrap();
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        let limit = open_files_limit();
        let max = effective_max_connections(usize::MAX);
        match limit {
            Some(l) => assert_eq!(max, l.saturating_sub(RESERVED_FDS).max(1)),
            None => assert_eq!(max, Semaphore::MAX_PERMITS.min(u32::MAX as usize)),
        }
        assert_eq!(effective_max_connections(0), 1);
        assert_eq!(effective_max_connections(3), 3);
    }

    #[test]
    fn the_refusal_is_an_aws_error_answer() {
        let text = String::from_utf8(refusal_answer(7)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["__type"], "ThrottlingException");
        assert!(v["message"].as_str().unwrap().contains('7'));
    }
}
