//! A node's host API through the control plane: `FlotillaV1.CallHostApi`.
//!
//! A node's host layer (`flotilla host boot`) serves its settings and update API on a Unix
//! socket only; the node keeps no inbound port. So, like task logs (see [`crate::logs`]),
//! a user's [`CallHostApiRequest`] is queued for the node's container instance and handed
//! to its agent in the answer to the agent's own long poll
//! ([`PollTasksResponse::host_requests`](crate::agent::PollTasksResponse)) as a
//! [`HostRequest`]; the agent makes the call on the host API socket and answers with
//! `FlotillaAgentV1.PutHostAnswer` ([`PutHostAnswerRequest`]); the control plane then
//! answers the waiting user request with the host API's own status and body.
//!
//! Only the calls of [`HostCall`] travel this way: reading the OS version, the update
//! status and the settings, driving an update (refresh, prepare, activate, cancel,
//! rollback), rebooting, and setting settings. Nothing else of the node can be reached.

use serde::{Deserialize, Serialize};

/// Longest host API answer body the agent forwards (bigger answers are refused by the
/// agent with an error instead).
pub const MAX_HOST_ANSWER_BYTES: usize = 256 * 1024;

/// How long the control plane waits for the agent's answer to one host call, in seconds.
pub const HOST_CALL_WAIT_SECONDS: u32 = 20;

/// One host API call, as a typed enum: the only calls a node answers through its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action")]
pub enum HostCall {
    /// `GET /os`: the running slot's version, variant, arch.
    GetOs,
    /// `GET /updates/status` (404 before the first update command since boot).
    GetUpdateStatus,
    /// `POST /actions/refresh-updates`: look for an update (honours waves).
    RefreshUpdates,
    /// `POST /actions/prepare-update`: download and write the chosen update.
    PrepareUpdate,
    /// `POST /actions/activate-update`: boot the new slot next.
    ActivateUpdate,
    /// `POST /actions/deactivate-update`: cancel an activated update.
    DeactivateUpdate,
    /// `POST /actions/rollback`: boot the other slot next.
    Rollback,
    /// `POST /actions/reboot`: the host layer stops everything and boots again.
    Reboot,
    /// `GET /?prefix=…`: settings (every one when `prefix` is absent).
    GetSettings {
        /// Dotted key prefix, `settings.` optional (`ecs`, `settings.updates`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
    },
    /// `PATCH /settings` then `POST /tx/commit_and_apply` in a private transaction.
    SetSettings {
        /// The settings document, as `apiclient set --json` takes it
        /// (`{"ecs": {"cluster": "prod"}}`, `settings.` optional at the top).
        settings: serde_json::Value,
    },
}

impl HostCall {
    /// The call's name (its `action`), for logs and events.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            HostCall::GetOs => "GetOs",
            HostCall::GetUpdateStatus => "GetUpdateStatus",
            HostCall::RefreshUpdates => "RefreshUpdates",
            HostCall::PrepareUpdate => "PrepareUpdate",
            HostCall::ActivateUpdate => "ActivateUpdate",
            HostCall::DeactivateUpdate => "DeactivateUpdate",
            HostCall::Rollback => "Rollback",
            HostCall::Reboot => "Reboot",
            HostCall::GetSettings { .. } => "GetSettings",
            HostCall::SetSettings { .. } => "SetSettings",
        }
    }
}

/// `FlotillaV1.CallHostApi` input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallHostApiRequest {
    /// Cluster name or ARN (`default` when absent).
    pub cluster: Option<String>,
    /// The node's container instance (id or ARN).
    pub container_instance: String,
    /// What to ask of its host API.
    pub call: HostCall,
}

/// `FlotillaV1.CallHostApi` output: the host API's own answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallHostApiResponse {
    /// The host API's HTTP status (200, 204, 404 no update status yet, 409 wrong state…).
    pub status: u16,
    /// Its body: the JSON document it answered, or its text (errors are plain text), or
    /// null when empty.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// A host call the control plane asks of an agent (in `PollTasks`' answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRequest {
    /// Echo it in `PutHostAnswer`.
    pub request_id: String,
    /// The call to make.
    pub call: HostCall,
}

/// `FlotillaAgentV1.PutHostAnswer` input: the agent's answer to one [`HostRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutHostAnswerRequest {
    /// Cluster name or ARN.
    pub cluster: Option<String>,
    /// The answering instance (id or ARN).
    pub container_instance: Option<String>,
    /// The request answered.
    pub request_id: String,
    /// The host API's answer, when the agent could reach it.
    pub answer: Option<CallHostApiResponse>,
    /// Why the host API could not be called (no host layer on this node, socket gone…).
    pub error: Option<String>,
}

/// `FlotillaAgentV1.PutHostAnswer` output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutHostAnswerResponse {
    /// `ACK`.
    pub acknowledgment: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_travel_as_tagged_objects() {
        let r: CallHostApiRequest = serde_json::from_value(serde_json::json!({
            "cluster": "c", "containerInstance": "i-1",
            "call": {"action": "SetSettings", "settings": {"ecs": {"cluster": "x"}}}
        }))
        .unwrap();
        assert_eq!(r.call.name(), "SetSettings");
        let plain = serde_json::to_value(HostCall::Reboot).unwrap();
        assert_eq!(plain, serde_json::json!({"action": "Reboot"}));
        let prefix = serde_json::to_value(HostCall::GetSettings {
            prefix: Some("ecs".into()),
        })
        .unwrap();
        assert_eq!(
            prefix,
            serde_json::json!({"action": "GetSettings", "prefix": "ecs"})
        );
        assert!(
            serde_json::from_value::<HostCall>(serde_json::json!({"action": "RunShell"})).is_err(),
            "only the listed calls exist"
        );
    }
}
