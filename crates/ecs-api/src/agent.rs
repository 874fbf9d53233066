//! Routing of the flotilla agent protocol (`X-Amz-Target: FlotillaAgentV1.<Op>`, see
//! [`model::agent`]): one `match` over [`AgentOperation`], and the long poll.

use std::time::Duration;

use controlplane::ControlPlane;
use controlplane::ops::agent_channel::{poll_tasks, report_health, set_agent_connected};
use model::agent::{AgentOperation, MAX_WAIT_SECONDS, PollTasksRequest, ReportHealthRequest};

use crate::dispatch::{Call, encode, parse_json};
use crate::error::ApiError;

/// Runs one agent operation.
pub async fn dispatch_agent(
    cp: &ControlPlane,
    call: &Call,
    op: AgentOperation,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match op {
        AgentOperation::PollTasks => poll(cp, call, parse_json(body)?).await,
        AgentOperation::ReportHealth => {
            let req: ReportHealthRequest = parse_json(body)?;
            encode(
                &cp.write(call.scope.clone(), move |s, ctx| report_health(s, ctx, req))
                    .await?,
            )
        }
    }
}

/// Answers as soon as the instance's assignment differs from `knownDigest`, or when it
/// changes within `waitSeconds`; every look counts as a heartbeat, and an instance
/// marked disconnected is marked connected again.
async fn poll(cp: &ControlPlane, call: &Call, req: PollTasksRequest) -> Result<Vec<u8>, ApiError> {
    let wait = Duration::from_secs(u64::from(
        req.wait_seconds.unwrap_or(0).min(MAX_WAIT_SECONDS),
    ));
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = cp.subscribe();
    loop {
        changes.borrow_and_update();
        let (key, resp, connected) = cp.read(|s| poll_tasks(s, &call.scope, &req))?;
        cp.heartbeat(key.clone());
        if !connected {
            cp.write(call.scope.clone(), move |s, ctx| {
                set_agent_connected(s, ctx, &key, true)
            })
            .await?;
            continue;
        }
        if req.known_digest.as_deref() != Some(resp.digest.as_str())
            || tokio::time::Instant::now() >= deadline
        {
            return encode(&resp);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return encode(&resp);
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}
