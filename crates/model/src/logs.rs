//! Task logs through the control plane: `flotilla logs TASK [--follow]`.
//!
//! Container output stays on the node that ran it (see `runtime::logs`). The node's agent
//! opens every connection, so the control plane cannot call it: a user's
//! [`GetTaskLogsRequest`] (`X-Amz-Target: FlotillaV1.GetTaskLogs`) is queued for the
//! task's container instance and handed to its agent in the answer to the agent's own
//! long poll ([`PollTasksResponse::log_requests`](crate::agent::PollTasksResponse)) as a
//! [`LogRequest`]; the agent reads its log files and answers with
//! `FlotillaAgentV1.PutLogs` ([`PutLogsRequest`]); the control plane then answers the
//! waiting user request.
//!
//! Reading resumes from an opaque `nextToken`: per container, a [`LogCursor`] (which log
//! file, by inode and first-record fingerprint, and the byte offset after the last record
//! read), so following a task
//! neither repeats nor skips lines, across the logger's file rotation too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `X-Amz-Target` prefix of flotilla's own user-facing operations.
pub const USER_TARGET_PREFIX: &str = "FlotillaV1";

/// Longest `waitSeconds` a `GetTaskLogs` may ask for.
pub const MAX_LOG_WAIT_SECONDS: u32 = 20;

/// Most bytes of log events one answer carries (the agent halves its read until its
/// `PutLogs` body fits); the rest comes with the next request (`hasMore`).
pub const MAX_LOG_ANSWER_BYTES: usize = 1024 * 1024;

/// flotilla's own user-facing operations (`FlotillaV1.<Operation>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOperation {
    /// Read (or follow) a task's container output.
    GetTaskLogs,
    /// Call a node's host API through its agent (see [`crate::host`]).
    CallHostApi,
    /// Read the cluster's OS updater state (see [`crate::updater_state`]).
    GetUpdaterState,
    /// Write it (revision-checked, with a lease).
    PutUpdaterState,
}

impl UserOperation {
    /// Looks an operation up by name.
    pub fn from_name(name: &str) -> Option<UserOperation> {
        match name {
            "GetTaskLogs" => Some(UserOperation::GetTaskLogs),
            "CallHostApi" => Some(UserOperation::CallHostApi),
            "GetUpdaterState" => Some(UserOperation::GetUpdaterState),
            "PutUpdaterState" => Some(UserOperation::PutUpdaterState),
            _ => None,
        }
    }
}

/// `GetTaskLogs` input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTaskLogsRequest {
    /// Cluster name or ARN (`default` when absent).
    pub cluster: Option<String>,
    /// Task id or ARN.
    pub task: Option<String>,
    /// Only this container's output; every container's when absent.
    pub container_name: Option<String>,
    /// On the first request (no `nextToken`): only the last this many lines per container.
    pub tail: Option<u32>,
    /// Where the previous answer ended (its `nextForwardToken`).
    pub next_token: Option<String>,
    /// When there is no new output yet, wait up to this long (0–20 s) for some.
    pub wait_seconds: Option<u32>,
}

/// One record of a container's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    /// The container it came from.
    pub container_name: String,
    /// When the node's logger read it (RFC 3339, UTC, nanoseconds).
    pub timestamp: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text, without its newline.
    pub message: String,
    /// The line was longer than the logger's buffer: the next event continues it (print
    /// no newline after this one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// `GetTaskLogs` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTaskLogsResponse {
    /// The records, in the order they were written (merged across containers by time).
    pub events: Vec<LogEvent>,
    /// Pass it as `nextToken` to continue after these events.
    pub next_forward_token: String,
    /// More output was already there than one answer carries: ask again at once.
    pub has_more: bool,
    /// The task's `lastStatus` when the request arrived. Once it is `STOPPED` and an
    /// answer has no events and no `hasMore`, the output is complete.
    pub task_status: String,
    /// The task's containers whose output was read (their names).
    pub containers: Vec<String>,
}

/// Where reading a container's log stopped: the log file (by inode, so rotation does not
/// lose the place) and the byte offset after the last record read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogCursor {
    /// The file's inode.
    pub file: u64,
    /// A fingerprint of the file's first record (inodes of deleted files get reused).
    #[serde(default)]
    pub head: u64,
    /// Byte offset in that file.
    pub offset: u64,
}

/// A log read the control plane asks of an agent (in `PollTasks`' answer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRequest {
    /// Echo it in `PutLogs`.
    pub request_id: String,
    /// The task whose containers' output to read.
    pub task_arn: String,
    /// Only this container; all of the task's when absent.
    pub container_name: Option<String>,
    /// Per container name, where to resume; containers not named start at the beginning
    /// (or at the last `tail` lines).
    #[serde(default)]
    pub cursors: BTreeMap<String, LogCursor>,
    /// For containers without a cursor: only the last this many lines.
    pub tail: Option<u32>,
    /// Wait up to this long for output when there is none new.
    pub wait_seconds: u32,
}

/// `FlotillaAgentV1.PutLogs` input: the agent's answer to one [`LogRequest`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutLogsRequest {
    /// Cluster name or ARN.
    pub cluster: Option<String>,
    /// The answering instance (id or ARN).
    pub container_instance: Option<String>,
    /// The request answered.
    pub request_id: String,
    /// Records read, merged across containers by time.
    #[serde(default)]
    pub events: Vec<LogEvent>,
    /// Where to resume, per container (every container read, moved or not).
    #[serde(default)]
    pub cursors: BTreeMap<String, LogCursor>,
    /// Not everything available fitted in this answer.
    #[serde(default)]
    pub has_more: bool,
    /// The task's containers the node still holds (empty once they were removed).
    #[serde(default)]
    pub containers: Vec<String>,
    /// Why the logs could not be read (then nothing else counts).
    pub error: Option<String>,
}

/// `FlotillaAgentV1.PutLogs` output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutLogsResponse {
    /// `ACK`.
    pub acknowledgment: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_request_round_trips_in_camel_case() {
        let r = LogRequest {
            request_id: "r1".into(),
            task_arn: "arn:t".into(),
            container_name: None,
            cursors: [(
                "web".into(),
                LogCursor {
                    file: 7,
                    head: 9,
                    offset: 42,
                },
            )]
            .into(),
            tail: Some(10),
            wait_seconds: 5,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cursors"]["web"]["offset"], 42);
        assert_eq!(v["waitSeconds"], 5);
        assert_eq!(serde_json::from_value::<LogRequest>(v).unwrap(), r);
    }

    #[test]
    fn a_full_line_event_omits_partial() {
        let e = LogEvent {
            container_name: "web".into(),
            timestamp: "t".into(),
            stream: "stdout".into(),
            message: "hi".into(),
            partial: false,
        };
        let s = serde_json::to_string(&e).unwrap();
        assert!(!s.contains("partial"), "{s}");
        assert_eq!(serde_json::from_str::<LogEvent>(&s).unwrap(), e);
    }

    #[test]
    fn operations_by_name() {
        assert_eq!(
            UserOperation::from_name("GetTaskLogs"),
            Some(UserOperation::GetTaskLogs)
        );
        assert_eq!(UserOperation::from_name("Nope"), None);
    }
}
