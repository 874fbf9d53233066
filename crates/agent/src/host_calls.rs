//! Host API calls the control plane hands this agent (see [`model::host`]): each is made
//! on the node's host API socket (`--host-api-socket`, the socket `flotilla host boot`
//! serves) and answered with `FlotillaAgentV1.PutHostAnswer`, so the control plane can
//! read and drive the node's host layer (version, update status, settings, updates,
//! reboot) while the node keeps no inbound port.
//!
//! Only the calls of [`HostCall`] exist; each maps to exactly one request line here
//! ([`request_line`]). Answers larger than [`MAX_HOST_ANSWER_BYTES`] are refused with an
//! error instead of being forwarded; at most [`MAX_CONCURRENT_CALLS`] calls run at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use model::host::{
    CallHostApiResponse, HostCall, HostRequest, MAX_HOST_ANSWER_BYTES, PutHostAnswerRequest,
};

use crate::client::Client;

/// Most host calls in progress at once on one node; more are answered with an error.
pub const MAX_CONCURRENT_CALLS: usize = 4;

/// An HTTP request to the host API: method, path and query, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    /// `GET`, `POST`, `PATCH`.
    pub method: &'static str,
    /// Path and query.
    pub uri: String,
    /// JSON body, if any.
    pub body: Option<Vec<u8>>,
}

fn line(method: &'static str, uri: impl Into<String>) -> RequestLine {
    RequestLine {
        method,
        uri: uri.into(),
        body: None,
    }
}

/// Percent-encodes a query value (everything but `A-Za-z0-9._-`).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The request a call makes. `SetSettings` makes two ([`set_settings`]); this is its
/// first (the PATCH into transaction `tx`).
#[must_use]
pub fn request_line(call: &HostCall, tx: &str) -> RequestLine {
    match call {
        HostCall::GetOs => line("GET", "/os"),
        HostCall::GetUpdateStatus => line("GET", "/updates/status"),
        HostCall::RefreshUpdates => line("POST", "/actions/refresh-updates"),
        HostCall::PrepareUpdate => line("POST", "/actions/prepare-update"),
        HostCall::ActivateUpdate => line("POST", "/actions/activate-update"),
        HostCall::DeactivateUpdate => line("POST", "/actions/deactivate-update"),
        HostCall::Rollback => line("POST", "/actions/rollback"),
        HostCall::Reboot => line("POST", "/actions/reboot"),
        HostCall::GetSettings { prefix: None } => line("GET", "/"),
        HostCall::GetSettings {
            prefix: Some(prefix),
        } => {
            // As `apiclient get`: `os…` as given, everything else under `settings.`.
            let full = if prefix == "os" || prefix.starts_with("os.") {
                prefix.clone()
            } else {
                host_api::settings::full_key(prefix)
            };
            line("GET", format!("/?prefix={}", encode_query(&full)))
        }
        HostCall::SetSettings { settings } => RequestLine {
            method: "PATCH",
            uri: format!("/settings?tx={}", encode_query(tx)),
            body: Some(settings.to_string().into_bytes()),
        },
    }
}

/// The host API's answer as the control plane forwards it: the JSON body parsed, else
/// its text, null when empty.
fn response(status: u16, body: &[u8]) -> Result<CallHostApiResponse, String> {
    if body.len() > MAX_HOST_ANSWER_BYTES {
        return Err(format!(
            "the host API answered {} bytes; at most {MAX_HOST_ANSWER_BYTES} are forwarded",
            body.len()
        ));
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(body).trim().to_owned())
        })
    };
    Ok(CallHostApiResponse { status, body })
}

/// `SetSettings`: PATCH into a private transaction, then commit and apply it; a refused
/// commit deletes the transaction (nothing is left pending).
async fn set_settings(
    api: &host_api::client::Client,
    call: &HostCall,
    tx: &str,
) -> Result<(u16, Vec<u8>), String> {
    let patch = request_line(call, tx);
    let (status, body) = api
        .raw(patch.method, &patch.uri, patch.body)
        .await
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&status) {
        let _ = api
            .raw("DELETE", &format!("/tx?tx={}", encode_query(tx)), None)
            .await;
        return Ok((status, body));
    }
    let commit = api
        .raw(
            "POST",
            &format!("/tx/commit_and_apply?tx={}", encode_query(tx)),
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&commit.0) {
        let _ = api
            .raw("DELETE", &format!("/tx?tx={}", encode_query(tx)), None)
            .await;
    }
    Ok(commit)
}

/// Makes one call on the host API at `socket`.
///
/// # Errors
/// No socket configured, the socket cannot be reached, or the answer is too large.
pub async fn call(
    socket: Option<&Path>,
    request: &HostRequest,
) -> Result<CallHostApiResponse, String> {
    let socket = socket.ok_or_else(|| {
        "this node runs no host layer (the agent was started without --host-api-socket)".to_owned()
    })?;
    let api = host_api::client::Client::new(socket);
    let tx = format!("control-plane-{}", request.request_id);
    let (status, body) = match &request.call {
        HostCall::SetSettings { .. } => set_settings(&api, &request.call, &tx).await?,
        other => {
            let l = request_line(other, &tx);
            api.raw(l.method, &l.uri, l.body)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    response(status, &body)
}

/// Answers `request` in the background: makes the call (or refuses it when
/// [`MAX_CONCURRENT_CALLS`] are in progress) and sends `PutHostAnswer`.
pub fn spawn_answer(
    client: &Client,
    cluster: &str,
    instance_arn: &str,
    socket: Option<PathBuf>,
    request: HostRequest,
    calls: &Arc<tokio::sync::Semaphore>,
) {
    let permit = calls.clone().try_acquire_owned().ok();
    let client = client.clone();
    let mut answer = PutHostAnswerRequest {
        cluster: Some(cluster.to_owned()),
        container_instance: Some(instance_arn.to_owned()),
        request_id: request.request_id.clone(),
        ..PutHostAnswerRequest::default()
    };
    tokio::spawn(async move {
        let outcome = match permit {
            None => Err(format!(
                "more than {MAX_CONCURRENT_CALLS} host API calls are in progress on this node"
            )),
            Some(_permit) => call(socket.as_deref(), &request).await,
        };
        match outcome {
            Ok(a) => answer.answer = Some(a),
            Err(e) => answer.error = Some(e),
        }
        tracing::info!(call = request.call.name(), request = %request.request_id, error = ?answer.error, "host API call answered");
        if let Err(e) = client.put_host_answer(&answer).await {
            tracing::debug!(request = %request.request_id, error = %e, "host answer not delivered");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_maps_to_one_request_of_the_host_api() {
        assert_eq!(request_line(&HostCall::GetOs, "t"), line("GET", "/os"));
        assert_eq!(
            request_line(&HostCall::Reboot, "t"),
            line("POST", "/actions/reboot")
        );
        assert_eq!(
            request_line(
                &HostCall::GetSettings {
                    prefix: Some("kernel.sysctl.\"vm.x\"&tx=1".into())
                },
                "t"
            )
            .uri,
            "/?prefix=settings.kernel.sysctl.%22vm.x%22%26tx%3D1",
            "a prefix cannot add query parameters"
        );
        let set = request_line(
            &HostCall::SetSettings {
                settings: serde_json::json!({"motd": "hi"}),
            },
            "control-plane-req-1",
        );
        assert_eq!(set.method, "PATCH");
        assert_eq!(set.uri, "/settings?tx=control-plane-req-1");
        assert_eq!(set.body.unwrap(), br#"{"motd":"hi"}"#);
    }

    #[test]
    fn answers_are_json_text_or_null_and_bounded() {
        let json = response(200, br#"{"version_id":"1.0.0"}"#).unwrap();
        assert_eq!(json.body["version_id"], "1.0.0");
        let text = response(409, b"wrong state: Idle\n").unwrap();
        assert_eq!(text.status, 409);
        assert_eq!(text.body, "wrong state: Idle");
        assert_eq!(response(204, b"").unwrap().body, serde_json::Value::Null);
        assert!(response(200, &vec![b' '; MAX_HOST_ANSWER_BYTES + 1]).is_err());
    }

    #[tokio::test]
    async fn a_node_without_a_host_layer_says_so() {
        let r = HostRequest {
            request_id: "req-1".into(),
            call: HostCall::GetOs,
        };
        let e = call(None, &r).await.unwrap_err();
        assert!(e.contains("--host-api-socket"), "{e}");
        let e = call(Some(Path::new("/nonexistent/api.sock")), &r)
            .await
            .unwrap_err();
        assert!(e.contains("/nonexistent/api.sock"), "{e}");
    }
}
