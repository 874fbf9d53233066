//! The HTTP side of a listener: accepting client connections (HTTP/1.1 and h2c, or, on an
//! HTTPS listener, either after a TLS handshake: [`crate::tls`]), and
//! each request's path through the proxy — route, pick a target ([`crate::select`]),
//! forward, retry once, answer, log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

use crate::balance;
use crate::config::Action;
use crate::headers::{
    X_FORWARDED_FOR, X_FORWARDED_PORT, X_FORWARDED_PROTO, host_of, is_idempotent, request_host,
    sticky_cookie, strip_hop_by_hop,
};
use crate::outlier::Observation;
use crate::rules::{self, RequestInfo};
use crate::select::Choice;
use crate::tls::HANDSHAKE_TIMEOUT;
use crate::upstream::{Lease, UpstreamBody};
use crate::upstream_h2::{self, H2ResponseBody};

use super::{
    Body, GroupRt, InFlight, MAX_RETRY_BODY, Shared, Snapshot, accept_client, connect_failed,
    observe_outlier,
};

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    bind: SocketAddr,
    port: u16,
    shutdown: watch::Receiver<bool>,
) {
    let port_value = HeaderValue::from(port);
    loop {
        let (stream, client) = accept_client(&listener, bind).await;
        // The listener's TLS configuration now: a certificate change reaches the next
        // connection.
        let tls = shared.state.load().tls.get(&bind).cloned();
        let conn = Conn {
            shared: shared.clone(),
            client,
            bind,
            client_ip: HeaderValue::from_str(&client.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            port_value: port_value.clone(),
            proto_value: HeaderValue::from_static(if tls.is_some() { "https" } else { "http" }),
        };
        match tls {
            None => {
                tokio::spawn(serve_connection(Arc::new(conn), stream, shutdown.clone()));
            }
            Some(config) => {
                tokio::spawn(serve_tls_connection(
                    Arc::new(conn),
                    stream,
                    config,
                    shutdown.clone(),
                ));
            }
        }
    }
}

/// An HTTPS listener's connection: the TLS handshake (at most [`HANDSHAKE_TIMEOUT`]),
/// then HTTP as on a plain listener. A failed handshake closes this connection only.
async fn serve_tls_connection(
    conn: Arc<Conn>,
    stream: tokio::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => serve_connection(conn, tls, shutdown).await,
        Ok(Err(e)) => {
            tracing::debug!(client = %conn.client, bind = %conn.bind, error = %e, "tls handshake failed");
        }
        Err(_) => {
            tracing::debug!(client = %conn.client, bind = %conn.bind, "tls handshake timed out");
        }
    }
}

/// One client connection: what its requests need besides the request.
struct Conn {
    shared: Arc<Shared>,
    client: SocketAddr,
    bind: SocketAddr,
    /// The client's IP, as `X-Forwarded-For` gets it.
    client_ip: HeaderValue,
    /// The listener's port, as `X-Forwarded-Port` gets it.
    port_value: HeaderValue,
    /// `http` or `https`, as `X-Forwarded-Proto` gets it.
    proto_value: HeaderValue,
}

async fn serve_connection<S>(conn: Arc<Conn>, stream: S, mut shutdown: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(conn.handle(req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Head and body copied into one buffer and sent with one `write`: cheaper than a
    // `writev` of two iovecs for the small responses that dominate (measured with the
    // `flotilla bench lb` load: 13.0 → 12.1 µs of the proxy's CPU per request).
    builder.http1().writev(false);
    let served = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        () = async { let _ = shutdown.wait_for(|stop| *stop).await; } => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}

/// An ALB-style error page.
fn error_response(status: StatusCode) -> Response<Body> {
    let text = match status.as_u16() {
        502 => "502 Bad Gateway",
        503 => "503 Service Temporarily Unavailable",
        _ => status.canonical_reason().unwrap_or("Error"),
    };
    let body = format!(
        "<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n<center><h1>{text}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// What the access log says about one request, and what its traffic counts need.
struct Outcome {
    resp: Response<Body>,
    target: Option<SocketAddr>,
    /// How long the target took to send the response head, when a target answered
    /// (`None`: the load balancer answered itself).
    target_time: Option<Duration>,
}

impl Outcome {
    /// An answer of the load balancer's own.
    fn own(resp: Response<Body>) -> Outcome {
        Outcome {
            resp,
            target: None,
            target_time: None,
        }
    }
}

impl Conn {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        // The access log costs a clock read and a copy of the path: only when it is on.
        if !tracing::enabled!(target: "lb::access", tracing::Level::INFO) {
            return self.route(req).await.resp;
        }
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let out = self.route(req).await;
        tracing::info!(
            target: "lb::access",
            client = %self.client,
            method = %method,
            path = %path,
            status = out.resp.status().as_u16(),
            target = %out.target.map_or_else(|| "-".to_string(), |t| t.to_string()),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        );
        out.resp
    }

    /// Routes and answers one request, and counts it in the traffic of the group that
    /// answered it (or of the load balancer, when none did).
    async fn route(&self, req: Request<Incoming>) -> Outcome {
        let snap = self.shared.state.load_full();
        let (out, group) = self.route_in(&snap, req).await;
        let traffic = group.map_or(&self.shared.unrouted, |g| &*g.traffic);
        traffic.record(out.resp.status().as_u16(), out.target_time);
        out
    }

    async fn route_in<'s>(
        &self,
        snap: &'s Snapshot,
        req: Request<Incoming>,
    ) -> (Outcome, Option<&'s GroupRt>) {
        let no_target = |resp| (Outcome::own(resp), None);
        let Some(router) = snap.routers.get(&self.bind) else {
            return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE));
        };
        let info = RequestInfo {
            method: req.method().as_str(),
            host: request_host(&req),
            path: req.uri().path(),
            headers: req.headers(),
        };
        match router.route(&info) {
            Action::FixedResponse {
                status,
                content_type,
                body,
            } => {
                let mut resp = Response::new(full(body.clone()));
                *resp.status_mut() =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let ct = content_type
                    .as_deref()
                    .unwrap_or("text/plain; charset=utf-8");
                if let Ok(v) = HeaderValue::from_str(ct) {
                    resp.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                no_target(resp)
            }
            Action::Forward { target_groups } => {
                let sticky = balance::find_sticky_cookie(
                    req.headers()
                        .get_all(header::COOKIE)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                )
                .and_then(balance::decode_sticky)
                .filter(|(g, _)| target_groups.iter().any(|w| &w.name == g && w.weight > 0));
                let name = match (&sticky, target_groups.as_slice()) {
                    (Some((g, _)), _) => g.as_str(),
                    // One group: no need for a random number.
                    (None, [only]) if only.weight > 0 => only.name.as_str(),
                    (None, _) => match rules::choose_weighted(target_groups, rand::random()) {
                        Some(n) => n,
                        None => return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE)),
                    },
                };
                let Some(group) = snap.groups.get(name) else {
                    return no_target(error_response(StatusCode::SERVICE_UNAVAILABLE));
                };
                let out = self.forward(group, req, sticky.map(|(_, a)| a)).await;
                (out, Some(group))
            }
        }
    }

    async fn forward(
        &self,
        group: &GroupRt,
        req: Request<Incoming>,
        sticky: Option<SocketAddr>,
    ) -> Outcome {
        let outliers = group.config.outlier_detection.as_ref();
        let choice = Choice::new(group);
        if choice.is_empty() {
            return Outcome::own(error_response(StatusCode::SERVICE_UNAVAILABLE));
        }
        let first = sticky
            .and_then(|a| choice.find(a))
            .or_else(|| choice.pick(None));
        let Some(mut target) = first else {
            return Outcome::own(error_response(StatusCode::SERVICE_UNAVAILABLE));
        };

        let (mut parts, body) = req.into_parts();
        let size = body.size_hint();
        // The request's trailers, when a buffered body had some (a streamed body passes
        // its own through).
        let mut trailers: Option<HeaderMap> = None;
        let buffered =
            if is_idempotent(&parts.method) && size.upper().is_some_and(|u| u <= MAX_RETRY_BODY) {
                if body.is_end_stream() {
                    Ok(Bytes::new())
                } else {
                    match body.collect().await {
                        Ok(b) => {
                            trailers = b.trailers().cloned();
                            Ok(b.to_bytes())
                        }
                        Err(_) => {
                            return Outcome::own(error_response(StatusCode::BAD_REQUEST));
                        }
                    }
                }
            } else {
                Err(body)
            };
        // HTTP/2 (and gRPC) targets: an h2 request, whatever the client spoke.
        let h2 = group.config.protocol_version.is_http2();
        let te_trailers = h2 && upstream_h2::wants_trailers(&parts.headers);
        self.prepare_upstream_headers(&mut parts.headers, &parts.uri);
        if te_trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // Origin form (`/path?query`), what an HTTP/1.1 origin server expects.
        let uri = match parts.uri.path_and_query() {
            Some(_) if parts.uri.scheme().is_none() && parts.uri.authority().is_none() => {
                parts.uri.clone()
            }
            pq => {
                let mut u = http::uri::Parts::default();
                u.path_and_query = Some(
                    pq.cloned()
                        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
                );
                match Uri::from_parts(u) {
                    Ok(u) => u,
                    Err(_) => {
                        return Outcome::own(error_response(StatusCode::BAD_REQUEST));
                    }
                }
            }
        };

        let (bytes, mut streamed) = match buffered {
            Ok(b) => (Some(b), None),
            Err(body) => (None, Some(body)),
        };
        let pool = &self.shared.pool;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = match (&bytes, streamed.take()) {
                (Some(b), _) if trailers.is_some() => {
                    let t = trailers.clone().map(Ok);
                    full(b.clone()).with_trailers(std::future::ready(t)).boxed()
                }
                (Some(b), _) if b.is_empty() => empty(),
                (Some(b), _) => full(b.clone()),
                (None, Some(s)) => s.boxed(),
                (None, None) => unreachable!("a streamed body is never retried"),
            };
            let may_retry = bytes.is_some() && attempt == 1 && choice.len() > 1;
            let mut headers = if may_retry {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            if !headers.contains_key(header::HOST)
                && let Ok(v) = HeaderValue::from_str(&host_of(target.addr))
            {
                headers.insert(header::HOST, v);
            }
            let mut up = Request::new(body);
            *up.method_mut() = parts.method.clone();
            if h2 {
                // HTTP/2 carries the host as the URI's authority (`:authority`).
                let host = headers.remove(header::HOST);
                *up.version_mut() = Version::HTTP_2;
                *up.uri_mut() = upstream_h2::request_uri(&uri, host.as_ref(), target.addr);
            } else {
                *up.version_mut() = Version::HTTP_11;
                *up.uri_mut() = uri.clone();
            }
            *up.headers_mut() = headers;
            let in_flight = InFlight::new(&target.shared);
            target.shared.requests.inc();
            let sent = Instant::now();
            // `Some(connection)` for HTTP/1.1, to go back to the pool once the body is read.
            let response = if h2 {
                // Boxed: the HTTP/1.1 path keeps its future as small as it was.
                Box::pin(self.shared.h2_pool.send(target.addr, up))
                    .await
                    .map(|resp| (resp, None))
            } else {
                pool.send(target.addr, up, sent)
                    .await
                    .map(|(resp, send)| (resp, Some(send)))
            };
            match response {
                Ok((resp, send)) => {
                    let took = sent.elapsed();
                    target.shared.latency.observe(took.as_secs_f64());
                    let failed = resp.status().is_server_error();
                    if failed {
                        target.shared.errors.inc();
                    }
                    if outliers.is_some() {
                        let seen = if failed {
                            Observation::ServerError
                        } else {
                            Observation::Success
                        };
                        observe_outlier(group, target, seen);
                    }
                    let (mut rparts, rbody) = resp.into_parts();
                    strip_hop_by_hop(&mut rparts.headers);
                    if let Some(s) = &group.config.stickiness
                        && let Some(v) = sticky_cookie(&group.name, target.addr, s)
                    {
                        rparts.headers.append(header::SET_COOKIE, v);
                    }
                    // The in-flight count drops, and an HTTP/1.1 connection goes back to the
                    // pool, when the body is done, not at the head.
                    let body = match send {
                        Some(send) => BoxBody::new(UpstreamBody {
                            inner: rbody,
                            lease: Some(Lease {
                                pool: pool.clone(),
                                target: target.addr,
                                send,
                                _in_flight: in_flight,
                            }),
                        }),
                        None => {
                            // hyper would answer an HTTP/1.1 client as such anyway; saying
                            // so spares it a log line per response.
                            if parts.version != Version::HTTP_2 {
                                rparts.version = Version::HTTP_11;
                            }
                            BoxBody::new(H2ResponseBody::new(rbody, in_flight))
                        }
                    };
                    return Outcome {
                        resp: Response::from_parts(rparts, body),
                        target: Some(target.addr),
                        target_time: Some(took),
                    };
                }
                Err(e) => {
                    drop(in_flight);
                    connect_failed(group, target);
                    tracing::debug!(target = %target.addr, group = %group.name, error = %e, attempt, "upstream request failed");
                    if may_retry && let Some(next) = choice.pick(Some(target.addr)) {
                        target = next;
                        continue;
                    }
                    return Outcome {
                        resp: error_response(StatusCode::BAD_GATEWAY),
                        target: Some(target.addr),
                        target_time: None,
                    };
                }
            }
        }
    }

    fn prepare_upstream_headers(&self, headers: &mut HeaderMap, uri: &Uri) {
        strip_hop_by_hop(headers);
        if !headers.contains_key(header::HOST)
            && let Some(auth) = uri.authority()
            && let Ok(v) = HeaderValue::from_str(auth.as_str())
        {
            headers.insert(header::HOST, v);
        }
        let xff = match headers.get(&X_FORWARDED_FOR).filter(|v| v.to_str().is_ok()) {
            None => Some(self.client_ip.clone()),
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + self.client_ip.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(self.client_ip.as_bytes());
                HeaderValue::from_maybe_shared(Bytes::from(v)).ok()
            }
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR, v);
        }
        headers.insert(X_FORWARDED_PROTO, self.proto_value.clone());
        headers.insert(X_FORWARDED_PORT, self.port_value.clone());
    }
}
