//! `FlotillaV1.CallHostApi` (see [`model::host`]): one typed call to a node's host API,
//! carried to the node's agent through the [`node broker`](controlplane::node_broker)
//! and answered with the host API's own status and body.

use std::time::Duration;

use controlplane::node_broker::{ANSWER_GRACE, NodeAnswer, NodeBrokerError};
use controlplane::ops::agent_channel::{instance_key, polling_instance};
use controlplane::{ControlPlane, EcsError};
use model::host::{CallHostApiRequest, HOST_CALL_WAIT_SECONDS, HostRequest};

use crate::dispatch::{Call, encode};
use crate::error::ApiError;

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
    let pending = cp
        .node_broker()
        .submit(
            &key,
            HostRequest {
                request_id: String::new(),
                call: req.call,
            },
        )
        .map_err(|e| crate::relay::relay_if_elsewhere(cp, &key, &e, broker_error(&arn, &e)))?;
    let answer = pending
        .wait(wait)
        .await
        .map_err(|e| broker_error(&arn, &e))?;
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

fn broker_error(instance: &str, e: &NodeBrokerError) -> ApiError {
    ApiError::Ecs(match e {
        NodeBrokerError::NotConnected | NodeBrokerError::NotPickedUp(_) => {
            EcsError::TargetNotConnected(format!(
                "The agent on container instance {instance} is not connected, so its host API cannot be called now."
            ))
        }
        NodeBrokerError::NoAnswer(after) => EcsError::TargetNotConnected(format!(
            "The agent on container instance {instance} did not answer within {} s.",
            after.as_secs()
        )),
        NodeBrokerError::Busy => EcsError::Client(format!(
            "Too many requests are waiting for container instance {instance}; try again."
        )),
        NodeBrokerError::UnknownRequest(_) => EcsError::Server(e.to_string()),
    })
}
