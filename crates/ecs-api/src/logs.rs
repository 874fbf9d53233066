//! flotilla's own user-facing operations (`X-Amz-Target: FlotillaV1.<Op>`, see
//! [`model::logs`]): `GetTaskLogs`, served by asking the task's agent through the
//! [`node broker`](controlplane::node_broker) and waiting for its answer, and
//! `CallHostApi` (in [`crate::host_calls`]), and the OS updater's state
//! (`GetUpdaterState`, `PutUpdaterState`: [`controlplane::ops::updater_state`]).

use std::collections::BTreeMap;
use std::time::Duration;

use controlplane::node_broker::{ANSWER_GRACE, NodeAnswer};
use controlplane::ops::logs::{decode_token, locate, log_request, response};
use controlplane::ops::updater_state;
use controlplane::{ControlPlane, EcsError};
use model::logs::{GetTaskLogsRequest, UserOperation};

use crate::dispatch::{Call, encode, list_parsed, parse_json, write_parsed};
use crate::error::ApiError;
use crate::relay::{ask_agent, broker_error};

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
    let unavailable = format!("the logs of task {} cannot be read", target.task_arn);
    let NodeAnswer::Logs(answer) = ask_agent(cp, &target.instance, request, wait, |e| {
        broker_error(&target.instance_arn, e, &unavailable, "log requests")
    })
    .await?
    else {
        return Err(ApiError::Ecs(EcsError::Server(
            "the agent answered a log read with another kind of answer".into(),
        )));
    };
    encode(&response(&target, cursors, answer)?)
}
