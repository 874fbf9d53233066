//! `FlotillaV1.GetTaskLogs`, the decisions (see [`model::logs`] for the protocol and
//! [`crate::node_broker`] for how a request reaches the node): which instance holds a
//! task's logs, what to ask its agent, the opaque `nextToken`, and how the agent's
//! answer becomes the user's.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use model::lifecycle::TaskStatus;
use model::logs::{
    GetTaskLogsRequest, GetTaskLogsResponse, LogCursor, LogRequest, MAX_LOG_WAIT_SECONDS,
    PutLogsRequest,
};

use crate::error::{EcsError, client, invalid};
use crate::ops::agent_channel::instance_key;
use crate::ops::common::active_cluster;
use crate::ops::tasks;
use crate::state::{MemberKey, Scope, State};

/// The task whose logs were asked for, and where they are.
#[derive(Debug, Clone, PartialEq)]
pub struct LogTarget {
    /// The instance that ran the task.
    pub instance: MemberKey,
    /// Its ARN (for messages).
    pub instance_arn: String,
    /// The task's ARN.
    pub task_arn: String,
    /// The task's `lastStatus` now.
    pub task_status: String,
}

/// Finds the task of a `GetTaskLogs` request and the instance holding its logs, and
/// checks the request.
///
/// # Errors
/// `ClusterNotFoundException`; `InvalidParameterException` for a missing or unknown
/// task (as StopTask), a task not placed yet, a container the task does not have, a
/// `waitSeconds` over 20.
pub fn locate(
    state: &State,
    scope: &Scope,
    req: &GetTaskLogsRequest,
) -> Result<LogTarget, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    let ident = req
        .task
        .as_deref()
        .ok_or_else(|| invalid("task is required."))?;
    if req.wait_seconds.is_some_and(|w| w > MAX_LOG_WAIT_SECONDS) {
        return Err(invalid(format!(
            "waitSeconds must be between 0 and {MAX_LOG_WAIT_SECONDS}."
        )));
    }
    let rec = tasks::find(state, scope, &cluster.name, ident)
        .ok_or_else(|| invalid("The referenced task was not found."))?;
    let task_arn = rec.task.task_arn.clone().unwrap_or_default();
    if let Some(name) = req.container_name.as_deref() {
        let names: Vec<&str> = rec
            .task
            .containers
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter_map(|c| c.name.as_deref())
            .collect();
        if !names.contains(&name) {
            return Err(invalid(format!(
                "Task {task_arn} has no container {name:?} (its containers: {}).",
                names.join(", ")
            )));
        }
    }
    let instance = rec
        .instance_id
        .as_ref()
        .and_then(|id| {
            state
                .instances
                .get(&MemberKey::new(scope, rec.placed_in(), id))
        })
        .ok_or_else(|| {
            invalid(format!(
                "Task {task_arn} has not been placed on a container instance, so it has no logs."
            ))
        })?;
    Ok(LogTarget {
        instance: instance_key(instance),
        instance_arn: instance
            .instance
            .container_instance_arn
            .clone()
            .unwrap_or_else(|| instance.id.clone()),
        task_arn: task_arn.to_string(),
        task_status: rec
            .task
            .last_status
            .as_deref()
            .unwrap_or_default()
            .to_owned(),
    })
}

/// Encodes where reading stopped, per container, as an opaque `nextToken`.
pub fn encode_token(cursors: &BTreeMap<String, LogCursor>) -> String {
    let json = serde_json::to_vec(cursors).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a `nextToken` made by [`encode_token`].
///
/// # Errors
/// `InvalidParameterException` when it is not one.
pub fn decode_token(token: &str) -> Result<BTreeMap<String, LogCursor>, EcsError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| invalid("nextToken is not a token returned by GetTaskLogs."))
}

/// What to ask the agent (the broker assigns the request id).
pub fn log_request(
    target: &LogTarget,
    req: &GetTaskLogsRequest,
    cursors: BTreeMap<String, LogCursor>,
) -> LogRequest {
    LogRequest {
        request_id: String::new(),
        task_arn: target.task_arn.clone(),
        container_name: req.container_name.clone(),
        cursors,
        tail: req.tail,
        wait_seconds: req.wait_seconds.unwrap_or(0).min(MAX_LOG_WAIT_SECONDS),
    }
}

/// The user's answer from the agent's: its events, and a token that continues every
/// container where it stopped (containers it did not read keep their old place).
///
/// # Errors
/// `ClientException` when the agent could not read the logs;
/// `ResourceNotFoundException` when the task is STOPPED and the node no longer holds its
/// containers (garbage-collected).
pub fn response(
    target: &LogTarget,
    mut cursors: BTreeMap<String, LogCursor>,
    answer: PutLogsRequest,
) -> Result<GetTaskLogsResponse, EcsError> {
    if let Some(e) = answer.error {
        return Err(client(format!(
            "Reading the logs of task {} on container instance {} failed: {e}",
            target.task_arn, target.instance_arn
        )));
    }
    if answer.containers.is_empty() && target.task_status == TaskStatus::Stopped.as_str() {
        return Err(EcsError::ResourceNotFound(format!(
            "The logs of task {} are no longer on container instance {} (its containers were removed).",
            target.task_arn, target.instance_arn
        )));
    }
    cursors.extend(answer.cursors);
    Ok(GetTaskLogsResponse {
        events: answer.events,
        next_forward_token: encode_token(&cursors),
        has_more: answer.has_more,
        task_status: target.task_status.clone(),
        containers: answer.containers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(status: &str) -> LogTarget {
        LogTarget {
            instance: MemberKey::new(&Scope::new("000000000000", "us-east-1"), "c", "i-1"),
            instance_arn: "arn:aws:ecs:us-east-1:000000000000:container-instance/c/i-1".into(),
            task_arn: "arn:task".into(),
            task_status: status.into(),
        }
    }

    #[test]
    fn tokens_round_trip_and_forgeries_are_refused() {
        let cursors: BTreeMap<String, LogCursor> = [(
            "web".to_owned(),
            LogCursor {
                file: 12,
                head: 34,
                offset: 56,
            },
        )]
        .into();
        let t = encode_token(&cursors);
        assert_eq!(decode_token(&t).unwrap(), cursors);
        let e = decode_token("not a token!").unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException");
        let e = decode_token(&URL_SAFE_NO_PAD.encode(b"[1,2]")).unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException");
    }

    #[test]
    fn the_next_token_keeps_containers_the_agent_did_not_read() {
        let old = LogCursor {
            file: 1,
            head: 1,
            offset: 10,
        };
        let new = LogCursor {
            file: 2,
            head: 2,
            offset: 20,
        };
        let cursors = [("a".to_owned(), old), ("b".to_owned(), old)].into();
        let answer = PutLogsRequest {
            cursors: [("b".to_owned(), new)].into(),
            containers: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let r = response(&target("RUNNING"), cursors, answer).unwrap();
        let next = decode_token(&r.next_forward_token).unwrap();
        assert_eq!(next["a"], old);
        assert_eq!(next["b"], new);
        assert_eq!(r.task_status, "RUNNING");
    }

    #[test]
    fn agent_errors_and_removed_containers_are_reported() {
        let e = response(
            &target("RUNNING"),
            BTreeMap::new(),
            PutLogsRequest {
                error: Some("disk on fire".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "ClientException");
        assert!(e.to_string().contains("disk on fire"), "{e}");
        let e = response(
            &target("STOPPED"),
            BTreeMap::new(),
            PutLogsRequest::default(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ResourceNotFoundException");
        // A task still starting simply has no output yet.
        let r = response(
            &target("PENDING"),
            BTreeMap::new(),
            PutLogsRequest::default(),
        )
        .unwrap();
        assert!(r.events.is_empty());
    }
}
