//! flotilla's own user-facing operations (`X-Amz-Target: FlotillaV1.<Op>`, see
//! [`model::logs`]): `GetTaskLogs`, served by asking the task's agent through the
//! [`node broker`](controlplane::node_broker) and waiting for its answer, and
//! `CallHostApi` (in [`crate::host_calls`]), and the OS updater's state
//! (`GetUpdaterState`, `PutUpdaterState`: [`controlplane::ops::updater_state`]).

use std::collections::BTreeMap;
use std::time::Duration;

use controlplane::node_broker::{ANSWER_GRACE, NodeAnswer, NodeBrokerError};
use controlplane::ops::logs::{LogTarget, decode_token, locate, log_request, response};
use controlplane::ops::updater_state;
use controlplane::{ControlPlane, EcsError};
use model::logs::{GetTaskLogsRequest, UserOperation};

use crate::dispatch::{Call, encode, list_parsed, parse_json, write_parsed};
use crate::error::ApiError;

/// Runs one user-facing flotilla operation.
pub async fn dispatch_user(
    cp: &ControlPlane,
    call: &Call,
    op: UserOperation,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match op {
        UserOperation::GetTaskLogs => get_task_logs(cp, call, parse_json(body)?).await,
        UserOperation::CallHostApi => {
            crate::host_calls::call_host_api(cp, call, parse_json(body)?).await
        }
        UserOperation::GetUpdaterState => {
            list_parsed(cp, call, parse_json(body)?, updater_state::get)
        }
        UserOperation::PutUpdaterState => {
            write_parsed(cp, call, parse_json(body)?, updater_state::put).await
        }
    }
}

/// Finds the task's instance, queues the read for its agent, and waits for the answer
/// (up to `waitSeconds` + the broker's grace): never longer, whatever the agent does.
async fn get_task_logs(
    cp: &ControlPlane,
    call: &Call,
    req: GetTaskLogsRequest,
) -> Result<Vec<u8>, ApiError> {
    let target = cp.read(|s| locate(s, &call.scope, &req))?;
    let cursors = match req.next_token.as_deref() {
        Some(t) if !t.is_empty() => decode_token(t)?,
        _ => BTreeMap::new(),
    };
    let request = log_request(&target, &req, cursors.clone());
    let wait = Duration::from_secs(u64::from(request.wait_seconds)) + ANSWER_GRACE;
    let pending = cp
        .node_broker()
        .submit(&target.instance, request)
        .map_err(|e| {
            crate::relay::relay_if_elsewhere(cp, &target.instance, &e, broker_error(&target, &e))
        })?;
    let NodeAnswer::Logs(answer) = pending
        .wait(wait)
        .await
        .map_err(|e| broker_error(&target, &e))?
    else {
        return Err(ApiError::Ecs(EcsError::Server(
            "the agent answered a log read with another kind of answer".into(),
        )));
    };
    encode(&response(&target, cursors, answer)?)
}

fn broker_error(target: &LogTarget, e: &NodeBrokerError) -> ApiError {
    let instance = &target.instance_arn;
    ApiError::Ecs(match e {
        NodeBrokerError::NotConnected | NodeBrokerError::NotPickedUp(_) => {
            EcsError::TargetNotConnected(format!(
                "The agent on container instance {instance} is not connected, so the logs of task {} cannot be read now.",
                target.task_arn
            ))
        }
        NodeBrokerError::NoAnswer(after) => EcsError::TargetNotConnected(format!(
            "The agent on container instance {instance} did not answer within {} s.",
            after.as_secs()
        )),
        NodeBrokerError::Busy => EcsError::Client(format!(
            "Too many log requests are waiting for container instance {instance}; try again."
        )),
        NodeBrokerError::UnknownRequest(_) => EcsError::Server(e.to_string()),
    })
}
