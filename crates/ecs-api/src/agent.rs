//! Routing of the flotilla agent protocol (`X-Amz-Target: FlotillaAgentV1.<Op>`, see
//! [`model::agent`]): one `match` over [`AgentOperation`], the long poll (which also
//! carries log requests to the agent), and the agent's log answers (`PutLogs`).

use std::time::Duration;

use controlplane::ops::agent_channel::{
    instance_key, poll_digest, poll_tasks, polling_instance, report_health, set_agent_connected,
};
use controlplane::{ControlPlane, EcsError};
use model::agent::{
    AgentOperation, MAX_WAIT_SECONDS, PollTasksRequest, ReportHealthRequest, ReportNetworkRequest,
};
use model::logs::{PutLogsRequest, PutLogsResponse};

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
        AgentOperation::ReportNetwork => {
            let req: ReportNetworkRequest = parse_json(body)?;
            encode(
                &cp.write(call.scope.clone(), move |s, ctx| {
                    controlplane::ops::agent::report_network(s, ctx, req)
                })
                .await?,
            )
        }
        AgentOperation::ReportHealth => {
            let req: ReportHealthRequest = parse_json(body)?;
            encode(
                &cp.write(call.scope.clone(), move |s, ctx| report_health(s, ctx, req))
                    .await?,
            )
        }
        AgentOperation::PutLogs => put_logs(cp, call, parse_json(body)?),
    }
}

/// Hands an agent's answer to the `GetTaskLogs` request waiting for it.
fn put_logs(cp: &ControlPlane, call: &Call, req: PutLogsRequest) -> Result<Vec<u8>, ApiError> {
    let key = cp.read(|s| {
        polling_instance(
            s,
            &call.scope,
            req.cluster.as_deref(),
            req.container_instance.as_deref(),
        )
        .map(instance_key)
    })?;
    cp.heartbeat(key.clone());
    cp.log_broker()
        .answer(&key, req)
        .map_err(|e| ApiError::Ecs(EcsError::InvalidParameter(e.to_string())))?;
    encode(&PutLogsResponse {
        acknowledgment: "ACK".into(),
    })
}

/// How often a waiting poll refreshes its instance's heartbeat (well within the
/// server's `--agent-timeout`, 30 s by default).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Answers as soon as the instance's assignment differs from `knownDigest`, or when it
/// changes within `waitSeconds`, or when a log request is queued for the instance (it
/// rides in `logRequests`); the poll counts as a heartbeat while it waits, and an
/// instance marked disconnected is marked connected again.
///
/// Every published change wakes every waiting poll, so the look a woken poll takes is
/// cheap: it computes only the digest of the instance's assignment (from the
/// per-instance index, copying nothing) and builds the whole answer — tasks and their
/// definitions — only when it answers.
async fn poll(cp: &ControlPlane, call: &Call, req: PollTasksRequest) -> Result<Vec<u8>, ApiError> {
    let wait = Duration::from_secs(u64::from(
        req.wait_seconds.unwrap_or(0).min(MAX_WAIT_SECONDS),
    ));
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = cp.subscribe();
    let mut open_poll = None;
    let mut heartbeat_at: Option<tokio::time::Instant> = None;
    loop {
        changes.borrow_and_update();
        let (key, digest, connected) = cp.read(|s| poll_digest(s, &call.scope, &req))?;
        if !connected {
            cp.heartbeat(key.clone());
            cp.write(call.scope.clone(), move |s, ctx| {
                set_agent_connected(s, ctx, &key, true)
            })
            .await?;
            continue;
        }
        // While this poll is open the instance counts as reachable for log requests.
        let open_poll = open_poll.get_or_insert_with(|| cp.log_broker().poll_started(&key));
        let log_requests = cp.log_broker().take(&key);
        let now = tokio::time::Instant::now();
        if !log_requests.is_empty()
            || req.known_digest.as_deref() != Some(digest.as_str())
            || now >= deadline
        {
            let (key, mut resp, _) = cp.read(|s| poll_tasks(s, &call.scope, &req))?;
            cp.heartbeat(key);
            resp.log_requests = log_requests;
            return encode(&resp);
        }
        if heartbeat_at.is_none_or(|at| now.duration_since(at) >= HEARTBEAT_EVERY) {
            cp.heartbeat(key);
            heartbeat_at = Some(now);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    let (_, resp, _) = cp.read(|s| poll_tasks(s, &call.scope, &req))?;
                    return encode(&resp);
                }
            }
            () = open_poll.wake.notified() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}
