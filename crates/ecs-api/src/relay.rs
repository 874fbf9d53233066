//! Relaying a request to the server a node's agent polls, when several servers share one
//! store: a log read (`GetTaskLogs`) or host call (`CallHostApi`) can only be carried to
//! the agent by the server it long-polls. The server that got the request sends it on
//! whole — headers, SigV4 signature and body unchanged, so the peer verifies the caller's
//! own signature — marked with [`RELAYED_HEADER`], and answers with the peer's answer.
//! A request that carries the mark is never relayed again (no loops); a peer that does
//! not answer leaves this server's own answer (the agent is not connected).
//!
//! [`ask_agent`] is how a request reaches an agent through this server's node broker
//! (log reads, host calls): the answer, [`ApiError::Relay`] when the agent polls another
//! server, or the broker's failure as [`broker_error`] words it.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use controlplane::EcsError;
use controlplane::node_broker::{NodeAnswer, NodeBrokerError, NodeRequest};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::ApiError;

/// Marks a relayed request.
pub const RELAYED_HEADER: &str = "x-flotilla-relayed";

/// The longest a relayed request may take: a log read's longest wait (20 s) and a host
/// call's, plus the broker's grace, with room to spare.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(90);

/// Carries `request` to the agent of `instance` through the node broker and waits up to
/// `wait` for its answer. A request the broker cannot queue because the agent polls
/// another server is [`ApiError::Relay`] to that server ([`relay_if_elsewhere`]); every
/// other broker failure is `failed(e)` (see [`broker_error`]).
pub(crate) async fn ask_agent(
    cp: &controlplane::ControlPlane,
    instance: &controlplane::state::MemberKey,
    request: impl Into<NodeRequest>,
    wait: Duration,
    failed: impl Fn(&NodeBrokerError) -> ApiError,
) -> Result<NodeAnswer, ApiError> {
    let pending = cp
        .node_broker()
        .submit(instance, request)
        .map_err(|e| relay_if_elsewhere(cp, instance, &e, failed(&e)))?;
    pending.wait(wait).await.map_err(|e| failed(&e))
}

/// How a request to the agent on container instance `instance_arn` that the node broker
/// could not carry is answered: `unavailable` says what cannot be done while the agent
/// is not connected (`its host API cannot be called`), `requests` names the kind of
/// requests that wait for it (`log requests`).
pub(crate) fn broker_error(
    instance_arn: &str,
    e: &NodeBrokerError,
    unavailable: &str,
    requests: &str,
) -> ApiError {
    ApiError::Ecs(match e {
        NodeBrokerError::NotConnected | NodeBrokerError::NotPickedUp(_) => {
            EcsError::TargetNotConnected(format!(
                "The agent on container instance {instance_arn} is not connected, so {unavailable} now."
            ))
        }
        NodeBrokerError::NoAnswer(after) => EcsError::TargetNotConnected(format!(
            "The agent on container instance {instance_arn} did not answer within {} s.",
            after.as_secs()
        )),
        NodeBrokerError::Busy => EcsError::Client(format!(
            "Too many {requests} are waiting for container instance {instance_arn}; try again."
        )),
        NodeBrokerError::UnknownRequest(_) => EcsError::Server(e.to_string()),
    })
}

/// A request the broker could not queue because the agent is not connected here: when
/// it polls another server, [`ApiError::Relay`] to that server (the caller relays the
/// request whole), else `here`.
fn relay_if_elsewhere(
    cp: &controlplane::ControlPlane,
    instance: &controlplane::state::MemberKey,
    e: &NodeBrokerError,
    here: ApiError,
) -> ApiError {
    match (e, cp.node_broker().peer_of(instance)) {
        (NodeBrokerError::NotConnected, Some(peer)) => ApiError::Relay {
            peer,
            here: Box::new(here),
        },
        _ => here,
    }
}

/// The HTTP client relays go through.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(RELAY_TIMEOUT)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// Whether `headers` are a relayed request's.
pub fn was_relayed(headers: &HeaderMap) -> bool {
    headers.contains_key(RELAYED_HEADER)
}

/// Sends the request (`headers`, `body`) to `peer` (`host:port`) and returns its answer;
/// `None` when the peer cannot be reached or its answer not read.
pub async fn relay(
    http: &reqwest::Client,
    peer: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let mut request = http.post(format!("http://{peer}/"));
    for (name, value) in headers {
        // Framing headers belong to the connection; the rest (host, signature, target)
        // go as they came.
        if matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        request = request.header(name.as_str(), value.as_bytes());
    }
    let answer = request
        .header(RELAYED_HEADER, "1")
        .body(body.to_vec())
        .send()
        .await
        .inspect_err(|e| tracing::warn!(peer, error = %e, "cannot relay a request"))
        .ok()?;
    let status = StatusCode::from_u16(answer.status().as_u16()).ok()?;
    let content_type = answer.headers().get("content-type").cloned();
    let error_type = answer.headers().get("x-amzn-errortype").cloned();
    let body = answer.bytes().await.ok()?;
    let mut resp = (status, body).into_response();
    let out = resp.headers_mut();
    out.insert(
        http::header::CONTENT_TYPE,
        content_type
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
            .unwrap_or(HeaderValue::from_static("application/x-amz-json-1.1")),
    );
    if let Some(v) = error_type.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        out.insert("x-amzn-errortype", v);
    }
    Some(resp)
}
