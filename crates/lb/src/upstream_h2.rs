//! Upstream HTTP/2 connections (h2c, prior knowledge), for target groups whose
//! [`ProtocolVersion`](crate::config::ProtocolVersion) is `Http2` or `Grpc`: [`H2Pool`]
//! holds ONE multiplexed connection per target, which every request to that target shares
//! (each sends on a clone of its `SendRequest`), and opens a new one when it has closed.
//! The HTTP/1.1 pool ([`crate::upstream`]) is untouched by it.
//!
//! - Connecting: requests that find no open connection wait for one connect (a per-target
//!   async lock), so a burst opens one connection, not one each; when that connect fails,
//!   the requests that waited for it fail with it instead of trying again one by one
//!   (each would wait out [`CONNECT_TIMEOUT`] against a target that does not answer).
//!   A failure counts as today's HTTP/1.1 ones do (health, outlier detection, one retry of
//!   an idempotent buffered request on another target): the caller sees an
//!   [`UpstreamError`].
//! - A request that a connection turned away unsent (it had closed meanwhile) goes out on
//!   a new one, at most [`MAX_SENDS`] tries in all.
//! - Limits: the target's `SETTINGS_MAX_CONCURRENT_STREAMS` caps the requests in flight to
//!   it; more wait for a stream (hyper queues them). Connections unused for
//!   [`IDLE_TIMEOUT`] are dropped (streams in flight on them finish first). While streams
//!   are open, a ping every [`PING_INTERVAL`] unanswered for [`PING_TIMEOUT`] closes a
//!   connection that died silently.
//! - Response bodies stream frame by frame, trailers included ([`H2ResponseBody`]), which
//!   is what gRPC needs: its status is in the trailers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::headers::host_of;
use crate::proxy::{Body, InFlight};
use crate::upstream::{CONNECT_TIMEOUT, UpstreamError};

/// How long a connection stays in the pool with no request sent on it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Ping interval while streams are open.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long an unanswered ping keeps a connection open.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Most tries to send one request: a connection found closed is replaced this often.
const MAX_SENDS: usize = 3;

/// Why the last connect to a target failed, kept for the requests that waited on it.
#[derive(Debug, Clone)]
enum ConnectFailure {
    Timeout,
    Io(std::io::ErrorKind, String),
}

impl ConnectFailure {
    fn of(e: &UpstreamError) -> ConnectFailure {
        match e {
            UpstreamError::ConnectTimeout => ConnectFailure::Timeout,
            UpstreamError::Connect(io) => ConnectFailure::Io(io.kind(), io.to_string()),
            UpstreamError::Http(h) => ConnectFailure::Io(std::io::ErrorKind::Other, h.to_string()),
        }
    }

    fn to_error(&self) -> UpstreamError {
        match self {
            ConnectFailure::Timeout => UpstreamError::ConnectTimeout,
            ConnectFailure::Io(kind, message) => {
                UpstreamError::Connect(std::io::Error::new(*kind, message.clone()))
            }
        }
    }
}

/// One target's connection, and what its connects have come to.
#[derive(Default)]
struct TargetConn {
    state: Mutex<ConnState>,
    /// Held while connecting.
    connecting: tokio::sync::Mutex<()>,
    /// When a request last went to the target, in milliseconds since the pool started.
    last_used_ms: AtomicU64,
}

#[derive(Default)]
struct ConnState {
    send: Option<SendRequest<Body>>,
    /// Connects finished so far.
    attempts: u64,
    /// Why the last one failed, if it did.
    last_failure: Option<ConnectFailure>,
}

impl TargetConn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open connection, if any, and how many connects have finished.
    fn open(&self) -> (Option<SendRequest<Body>>, u64) {
        let s = self.lock();
        let send = s.send.as_ref().filter(|c| !c.is_closed()).cloned();
        (send, s.attempts)
    }
}

/// One HTTP/2 connection per target, shared by all requests to it.
pub(crate) struct H2Pool {
    targets: Mutex<HashMap<SocketAddr, Arc<TargetConn>>>,
    started: Instant,
}

impl H2Pool {
    /// A pool, with a task that drops the connections unused for [`IDLE_TIMEOUT`] every
    /// `IDLE_TIMEOUT / 2`; the task ends with the pool.
    pub(crate) fn start() -> Arc<H2Pool> {
        let pool = Arc::new(H2Pool {
            targets: Mutex::new(HashMap::new()),
            started: Instant::now(),
        });
        let weak: Weak<H2Pool> = Arc::downgrade(&pool);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(IDLE_TIMEOUT / 2).await;
                let Some(pool) = weak.upgrade() else { return };
                let now = pool.now_ms();
                let idle_ms = IDLE_TIMEOUT.as_millis() as u64;
                pool.lock().retain(|_, t| {
                    now.saturating_sub(t.last_used_ms.load(Ordering::Relaxed)) < idle_ms
                });
            }
        });
        pool
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<TargetConn>>> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn target(&self, target: SocketAddr) -> Arc<TargetConn> {
        let t = self.lock().entry(target).or_default().clone();
        t.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        t
    }

    /// The target's open connection, else a new one; `true` with one that was open.
    async fn sender(&self, target: SocketAddr) -> Result<(SendRequest<Body>, bool), UpstreamError> {
        let conn = self.target(target);
        let (open, seen) = conn.open();
        if let Some(send) = open {
            return Ok((send, true));
        }
        let _connecting = conn.connecting.lock().await;
        let (open, attempts) = conn.open();
        if let Some(send) = open {
            return Ok((send, true));
        }
        if attempts != seen
            && let Some(failure) = &conn.lock().last_failure
        {
            // The connect this request waited for failed.
            return Err(failure.to_error());
        }
        let connected = connect(target).await;
        let mut state = conn.lock();
        state.attempts += 1;
        match connected {
            Ok(send) => {
                state.send = Some(send.clone());
                state.last_failure = None;
                Ok((send, false))
            }
            Err(e) => {
                state.send = None;
                state.last_failure = Some(ConnectFailure::of(&e));
                Err(e)
            }
        }
    }

    /// Sends `req` (whose URI is absolute: see [`request_uri`]) to `target` over its
    /// connection, and returns the response head; the body streams from it.
    pub(crate) async fn send(
        &self,
        target: SocketAddr,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let (mut send, reused) = self.sender(target).await?;
            match send.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(r) if reused && tries < MAX_SENDS => req = r,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }
}

/// A new HTTP/2 connection to `target`, its task spawned on the current runtime.
async fn connect(target: SocketAddr) -> Result<SendRequest<Body>, UpstreamError> {
    let connecting = async {
        let stream = tokio::net::TcpStream::connect(target)
            .await
            .map_err(UpstreamError::Connect)?;
        let _ = stream.set_nodelay(true);
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .handshake(TokioIo::new(stream))
            .await;
        Ok::<_, UpstreamError>(handshake?)
    };
    let (send, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| UpstreamError::ConnectTimeout)??;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%target, error = %e, "upstream h2 connection failed");
        }
    });
    Ok(send)
}

/// The absolute URI an HTTP/2 request needs (its `:scheme`, `:authority` and `:path`):
/// `origin` (origin form, `/path?query`) under `host` (the `Host` header the target would
/// get over HTTP/1.1), else under the target's address.
pub(crate) fn request_uri(origin: &Uri, host: Option<&HeaderValue>, target: SocketAddr) -> Uri {
    let path_and_query = origin
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let from_host = host
        .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
        .filter(|a| !a.as_str().contains('@'));
    let authority = match from_host {
        Some(a) => a,
        None => match http::uri::Authority::try_from(host_of(target)) {
            Ok(a) => a,
            Err(_) => return origin.clone(),
        },
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).unwrap_or_else(|_| origin.clone())
}

/// Whether the client's `TE` header asks for trailers (`TE: trailers`, alone or in a list):
/// then the HTTP/2 request upstream keeps `te: trailers`, the one `TE` HTTP/2 allows
/// (gRPC servers expect it).
pub(crate) fn wants_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// An upstream HTTP/2 response body on its way to the client, trailers included; the
/// target's in-flight count drops when it ends (or is dropped).
pub(crate) struct H2ResponseBody {
    inner: Incoming,
    in_flight: Option<InFlight>,
}

impl H2ResponseBody {
    pub(crate) fn new(inner: Incoming, in_flight: InFlight) -> H2ResponseBody {
        H2ResponseBody {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

impl hyper::body::Body for H2ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            this.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uri_is_absolute_under_the_host_else_the_target() {
        let origin: Uri = "/svc.Echo/Say?x=1".parse().unwrap();
        let target: SocketAddr = "10.0.0.5:50051".parse().unwrap();
        let host = HeaderValue::from_static("echo.internal:8080");
        assert_eq!(
            request_uri(&origin, Some(&host), target),
            "http://echo.internal:8080/svc.Echo/Say?x=1"
        );
        assert_eq!(
            request_uri(&origin, None, target),
            "http://10.0.0.5:50051/svc.Echo/Say?x=1"
        );
        let odd = HeaderValue::from_static("user@host");
        assert_eq!(
            request_uri(&origin, Some(&odd), target),
            "http://10.0.0.5:50051/svc.Echo/Say?x=1"
        );
    }

    #[test]
    fn te_trailers_is_found_in_lists() {
        let mut h = HeaderMap::new();
        assert!(!wants_trailers(&h));
        h.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        assert!(wants_trailers(&h));
        h.insert(header::TE, HeaderValue::from_static("gzip;q=0.5"));
        assert!(!wants_trailers(&h));
    }
}
