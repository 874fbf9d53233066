//! One connection's life: its phase (waiting for a head, idle, busy) shared between the
//! socket wrapper and the hyper service, the deadlines that close it, the registry of
//! open connections the accept loop picks one from to close, and the body wrappers
//! that time a request body and mark the connection idle when a response is done.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot, watch};
use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tower::ServiceExt;

use super::*;

/// The open connections, for choosing one to close.
#[derive(Default)]
pub(super) struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn add(&self, limits: ServeLimits, slot: OwnedSemaphorePermit) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(id, limits, slot));
        self.lock().insert(id, Arc::clone(&conn));
        conn
    }

    /// Asks the connection that has waited longest without a request in progress to
    /// close; once one has, its slot.
    pub(super) async fn evict_longest_waiting(&self) -> Option<OwnedSemaphorePermit> {
        for _ in 0..EVICTION_TRIES {
            let candidate = {
                let conns = self.lock();
                conns
                    .values()
                    .filter_map(|c| c.waiting_since().map(|since| (since, c)))
                    .min_by_key(|(since, _)| *since)
                    .map(|(_, c)| Arc::clone(c))
            };
            let conn = candidate?;
            let (tx, rx) = oneshot::channel();
            if !conn.ask_to_close(tx) {
                continue;
            }
            if let Ok(Ok(Some(slot))) = timeout(Duration::from_secs(1), rx).await {
                tracing::debug!(
                    connection = conn.id,
                    "closed a connection without a request in progress to make room"
                );
                return Some(slot);
            }
        }
        None
    }
}

/// Removes a connection from the registry, and frees its slot, when its task ends.
pub(super) struct Registered {
    pub(super) registry: Arc<Registry>,
    pub(super) conn: Arc<Conn>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.conn.id);
        let mut s = self.conn.lock();
        s.closed = true;
        drop(s.slot.take());
        if let Some(tx) = s.close_request.take() {
            let _ = tx.send(None);
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    /// Waiting for (the rest of) a request head, until the deadline.
    Head { deadline: Instant },
    /// Keep-alive between requests, until the deadline.
    Idle { deadline: Instant },
    /// A request is being handled or its response written.
    Busy,
}

pub(super) struct ConnState {
    phase: Phase,
    /// Requests whose response body is not yet dropped.
    busy: usize,
    /// When the connection last started waiting (accepted, or went idle).
    since: Instant,
    /// Someone asks the connection to close if it has no request in progress; the
    /// answer is its slot (`None`: it stays).
    close_request: Option<oneshot::Sender<Option<OwnedSemaphorePermit>>>,
    /// The connection's place under the cap, until it ends or hands it over.
    slot: Option<OwnedSemaphorePermit>,
    /// The connection has closed, or is closing (its task ending).
    closed: bool,
}

/// What one connection is doing, shared by its task, its service and its socket.
pub(super) struct Conn {
    id: u64,
    limits: ServeLimits,
    state: Mutex<ConnState>,
    /// Wakes the connection's task: its deadline moved, or it is asked to close.
    wake: Notify,
}

impl Conn {
    fn new(id: u64, limits: ServeLimits, slot: OwnedSemaphorePermit) -> Conn {
        let now = Instant::now();
        Conn {
            id,
            limits,
            state: Mutex::new(ConnState {
                phase: Phase::Head {
                    deadline: now + limits.header_timeout,
                },
                busy: 0,
                since: now,
                close_request: None,
                slot: Some(slot),
                closed: false,
            }),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection closes unless a request arrives; `None` while busy.
    fn deadline(&self) -> Option<Instant> {
        match self.lock().phase {
            Phase::Head { deadline } | Phase::Idle { deadline } => Some(deadline),
            Phase::Busy => None,
        }
    }

    fn expired(&self) -> bool {
        self.deadline().is_some_and(|d| d <= Instant::now())
    }

    /// Since when it has waited without a request in progress; `None` while busy,
    /// already asked to close, or closed.
    fn waiting_since(&self) -> Option<Instant> {
        let s = self.lock();
        (s.busy == 0 && s.close_request.is_none() && !s.closed).then_some(s.since)
    }

    /// Asks the connection to close if it has no request in progress; the answer
    /// comes on `tx`. False if it is already asked, or closed.
    fn ask_to_close(&self, tx: oneshot::Sender<Option<OwnedSemaphorePermit>>) -> bool {
        let mut s = self.lock();
        if s.close_request.is_some() || s.closed {
            return false;
        }
        s.close_request = Some(tx);
        drop(s);
        self.wake.notify_one();
        true
    }

    /// Answers a request to close: true (and the connection must close; its slot goes
    /// to the asker) when it has no request in progress.
    fn answer_close_request(&self) -> bool {
        let mut s = self.lock();
        let Some(tx) = s.close_request.take() else {
            return false;
        };
        let close = s.busy == 0;
        let slot = if close { s.slot.take() } else { None };
        s.closed |= close;
        let _ = tx.send(slot);
        close
    }

    /// Bytes arrived: on an idle connection they start the next request's head.
    fn on_read(&self) {
        let mut s = self.lock();
        if let Phase::Idle { .. } = s.phase {
            s.phase = Phase::Head {
                deadline: Instant::now() + self.limits.header_timeout,
            };
            drop(s);
            self.wake.notify_one();
        }
    }

    /// A request's head has arrived; busy until the guard (moved into the response
    /// body) drops.
    fn start_request(self: &Arc<Self>) -> BusyGuard {
        let mut s = self.lock();
        s.busy += 1;
        s.phase = Phase::Busy;
        BusyGuard(Arc::clone(self))
    }
}

pub(super) struct BusyGuard(Arc<Conn>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let conn = &self.0;
        let mut s = conn.lock();
        s.busy = s.busy.saturating_sub(1);
        if s.busy == 0 {
            let now = Instant::now();
            s.phase = Phase::Idle {
                deadline: now + conn.limits.idle_timeout,
            };
            s.since = now;
        }
        drop(s);
        conn.wake.notify_one();
    }
}

pub(super) async fn run_connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    router: Router,
    mut stop: watch::Receiver<bool>,
    _registered: Registered,
) {
    if *stop.borrow() {
        return;
    }
    let io = TokioIo::new(Watched {
        stream,
        conn: Arc::clone(&conn),
    });
    let service = ConnService {
        router,
        conn: Arc::clone(&conn),
    };
    let mut connection = pin!(
        http1::Builder::new()
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(io, service)
    );
    let mut stopping = false;
    loop {
        let deadline = conn.deadline();
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(connection = conn.id, error = %e, "connection ended");
                }
                return;
            }
            () = sleep_until_or_never(deadline) => {
                if conn.expired() {
                    tracing::debug!(
                        connection = conn.id,
                        "closing a connection: no complete request head in time, or idle too long"
                    );
                    return;
                }
            }
            () = conn.wake.notified() => {
                if conn.answer_close_request() || (stopping && conn.deadline().is_some()) {
                    return;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                if conn.deadline().is_some() {
                    return;
                }
                // Answer the request in progress, then close.
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

pub(super) async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(d) => sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The socket, noting reads for the connection's phase.
pub(super) struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.on_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The router as hyper calls it on one connection: marks the connection busy from a
/// request's head to the end of its response, and bounds the time its body may take.
#[derive(Clone)]
pub(super) struct ConnService {
    router: Router,
    conn: Arc<Conn>,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let guard = self.conn.start_request();
        let limit = self.conn.limits.body_timeout;
        let req = req.map(|body| {
            Body::new(TimedBody {
                body,
                limit,
                deadline: Instant::now() + limit,
                timer: None,
            })
        });
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|body| {
                Body::new(GuardedBody {
                    body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// A request body that fails once its time is up.
pub(super) struct TimedBody {
    body: Incoming,
    limit: Duration,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                "the request body did not arrive within {} s",
                this.limit.as_secs_f64()
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that keeps its connection busy until it is dropped.
pub(super) struct GuardedBody {
    body: Body,
    _guard: BusyGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
