//! Upstream HTTP/1.1 connections (groups of
//! [`ProtocolVersion::Http1`](crate::config::ProtocolVersion::Http1), the default; HTTP/2
//! ones are [`crate::upstream_h2`]'s): a pool of idle ones per target ([`Pool`]), opening new
//! ones, and the response body that hands its connection back to the pool once read
//! ([`UpstreamBody`]). A request takes a connection (or opens one), sends, and the
//! connection goes back when the response body has been read. That is what hyper-util's
//! pooled client does too, less its per-request costs (a checkout future, an extra task
//! spawned per request to wait for the connection to become idle again).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::proxy::{Body, InFlight};

/// How long connecting to a target may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an upstream connection stays in a pool unused.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why forwarding to a target failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect: timed out after {CONNECT_TIMEOUT:?}")]
    ConnectTimeout,
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// An idle upstream connection.
struct Idle {
    send: SendRequest<Body>,
    since: Instant,
}

/// Idle upstream HTTP/1.1 connections, by target. The most recently used one is reused first
/// (the least likely to have been closed by the target meanwhile); those idle for
/// [`POOL_IDLE_TIMEOUT`] are closed. The lock is held for a push or a pop only.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
}

impl Pool {
    /// A pool, with a task that closes its expired connections every `POOL_IDLE_TIMEOUT /
    /// 2`; the task ends with the pool.
    pub(crate) fn start() -> Arc<Pool> {
        let pool = Arc::new(Pool::default());
        let weak: Weak<Pool> = Arc::downgrade(&pool);
        let reaper = async move {
            loop {
                tokio::time::sleep(POOL_IDLE_TIMEOUT / 2).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.lock().retain(|_, list| {
                    list.retain(|c| !c.send.is_closed() && c.since.elapsed() < POOL_IDLE_TIMEOUT);
                    !list.is_empty()
                });
            }
        };
        tokio::spawn(reaper);
        pool
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection to `target` that is still open, if any (`now`: about now).
    fn take(&self, target: SocketAddr, now: Instant) -> Option<SendRequest<Body>> {
        let mut idle = self.lock();
        let list = idle.get_mut(&target)?;
        while let Some(c) = list.pop() {
            if now.saturating_duration_since(c.since) >= POOL_IDLE_TIMEOUT {
                // The rest are older still.
                list.clear();
                break;
            }
            if !c.send.is_closed() {
                return Some(c.send);
            }
        }
        None
    }

    pub(crate) fn put(&self, target: SocketAddr, send: SendRequest<Body>) {
        if send.is_closed() {
            return;
        }
        let since = Instant::now();
        self.lock()
            .entry(target)
            .or_default()
            .push(Idle { send, since });
    }

    /// Sends `req` to `target` over an idle connection, else a new one, and returns the
    /// response head with the connection (to [`Pool::put`] back once the body is read). A
    /// request that a reused connection turned away unsent (the target had closed it) goes
    /// out on another one, as hyper's pooled client does. `now`: about now.
    pub(crate) async fn send(
        &self,
        target: SocketAddr,
        mut req: Request<Body>,
        now: Instant,
    ) -> Result<(Response<Incoming>, SendRequest<Body>), UpstreamError> {
        loop {
            let (mut send, reused) = match self.take(target, now) {
                Some(s) => (s, true),
                // Boxed: the rarely taken path keeps the per-request future small.
                None => (Box::pin(connect(target)).await?, false),
            };
            if reused && send.ready().await.is_err() {
                continue;
            }
            match send.try_send_request(req).await {
                Ok(resp) => return Ok((resp, send)),
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }
}

/// A new upstream HTTP/1.1 connection to `target`, its task spawned on the current runtime.
async fn connect(target: SocketAddr) -> Result<SendRequest<Body>, UpstreamError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target))
        .await
        .map_err(|_| UpstreamError::ConnectTimeout)?
        .map_err(UpstreamError::Connect)?;
    let _ = stream.set_nodelay(true);
    // One buffer, one `write` per request, as for responses (`serve_connection`).
    let (send, conn) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%target, error = %e, "upstream connection failed");
        }
    });
    Ok(send)
}

/// The upstream connection a response body is being read from.
pub(crate) struct Lease {
    pub(crate) pool: Arc<Pool>,
    pub(crate) target: SocketAddr,
    pub(crate) send: SendRequest<Body>,
    pub(crate) _in_flight: InFlight,
}

/// An upstream response body on its way to the client. Once it has been read to the end,
/// its connection goes back to the pool; dropped before that, the connection is closed
/// (hyper does not reuse a connection with a response half read). Either way the target's
/// in-flight count drops.
pub(crate) struct UpstreamBody {
    pub(crate) inner: Incoming,
    pub(crate) lease: Option<Lease>,
}

impl UpstreamBody {
    fn release(&mut self, reuse: bool) {
        if let Some(l) = self.lease.take()
            && reuse
        {
            l.pool.put(l.target, l.send);
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(true),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(true),
            Poll::Ready(Some(Err(_))) => this.release(false),
            _ => {}
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

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        let done = self.inner.is_end_stream();
        self.release(done);
    }
}
