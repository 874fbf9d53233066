//! Header work of the HTTP path: hop-by-hop headers, `X-Forwarded-*` names, which
//! methods may be retried, the `Host` a target gets, and the sticky-session cookie.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request};
use hyper::body::Incoming;

use crate::balance::{self, STICKY_COOKIE};
use crate::config::Stickiness;

pub(crate) const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub(crate) const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1), and `Upgrade`.
pub(crate) const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the (few) names is cheaper than nine removals.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
}

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// `Host` for a request to `target` that came without one: the address, without the port if
/// it is 80 (what hyper-util's client, which the proxy used before, sends).
pub(crate) fn host_of(target: SocketAddr) -> String {
    match (target.ip(), target.port()) {
        (std::net::IpAddr::V4(ip), 80) => ip.to_string(),
        (std::net::IpAddr::V6(ip), 80) => format!("[{ip}]"),
        _ => target.to_string(),
    }
}

/// The request's host without the port: the `Host` header, else the URI's authority.
pub(crate) fn request_host(req: &Request<Incoming>) -> Option<&str> {
    let raw = match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok(),
        None => req.uri().authority().map(http::uri::Authority::as_str),
    }?;
    let host = match raw.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
        _ => raw,
    };
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

pub(crate) fn sticky_cookie(
    group: &str,
    target: SocketAddr,
    s: &Stickiness,
) -> Option<HeaderValue> {
    let Stickiness::LbCookie { duration_secs } = s;
    HeaderValue::from_str(&format!(
        "{STICKY_COOKIE}={}; Max-Age={duration_secs}; Path=/",
        balance::encode_sticky(group, target)
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_drops_port_80_only() {
        assert_eq!(host_of("10.0.0.5:80".parse().unwrap()), "10.0.0.5");
        assert_eq!(host_of("10.0.0.5:8080".parse().unwrap()), "10.0.0.5:8080");
        assert_eq!(host_of("[::1]:80".parse().unwrap()), "[::1]");
        assert_eq!(host_of("[::1]:81".parse().unwrap()), "[::1]:81");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("x"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["host"]
        );

        let mut plain = HeaderMap::new();
        plain.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1);
    }
}
