//! `FlotillaV1.CallHostApi` (see [`model::host`]): one typed call to a node's host API,
//! carried to the node's agent through the [`node broker`](controlplane::node_broker)
//! and answered with the host API's own status and body.

use std::time::Duration;

use controlplane::node_broker::{ANSWER_GRACE, NodeAnswer};
use controlplane::ops::agent_channel::{instance_key, polling_instance};
use controlplane::{ControlPlane, EcsError};
use model::host::{CallHostApiRequest, HOST_CALL_WAIT_SECONDS, HostRequest};

use crate::dispatch::{Call, encode};
use crate::error::ApiError;
use crate::relay::{ask_agent, broker_error};

/// Finds the instance, queues the call for its agent, and waits for the answer (up to
/// [`HOST_CALL_WAIT_SECONDS`] + the broker's grace).
pub async fn call_host_api(
    cp: &ControlPlane,
    call: &Call,
    req: CallHostApiRequest,
) -> Result<Vec<u8>, ApiError> {
    let (key, arn) = cp.read(|s| {
        polling_instance(
            s,
            &call.scope,
            req.cluster.as_deref(),
            Some(&req.container_instance),
        )
        .map(|i| {
            (
                instance_key(i),
                i.instance
                    .container_instance_arn
                    .clone()
                    .unwrap_or_default(),
            )
        })
    })?;
    let wait = Duration::from_secs(u64::from(HOST_CALL_WAIT_SECONDS)) + ANSWER_GRACE;
    let name = req.call.name();
    let answer = ask_agent(
        cp,
        &key,
        HostRequest {
            request_id: String::new(),
            call: req.call,
        },
        wait,
        |e| broker_error(&arn, e, "its host API cannot be called", "requests"),
    )
    .await?;
    let NodeAnswer::Host(answer) = answer else {
        return Err(ApiError::Ecs(EcsError::Server(
            "the agent answered a host call with another kind of answer".into(),
        )));
    };
    match (answer.answer, answer.error) {
        (Some(a), None) => encode(&a),
        (_, Some(why)) => Err(ApiError::Ecs(EcsError::Client(format!(
            "The agent on container instance {arn} could not call its host API ({name}): {why}"
        )))),
        (None, None) => Err(ApiError::Ecs(EcsError::Server(format!(
            "The agent on container instance {arn} answered {name} with nothing."
        )))),
    }
}
