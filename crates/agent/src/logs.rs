//! Answering the control plane's log requests (`flotilla logs`, see [`model::logs`]).
//!
//! A request arrives in a `PollTasks` answer (the agent's own connection: the node needs
//! no inbound port). The agent finds the task's containers by their labels — so the
//! logs of a STOPPED task stay readable until garbage collection removes its
//! containers — reads each container's log files from the request's cursor through
//! [`ContainerRuntime::read_logs_from`], waits up to `waitSeconds` for output when there
//! is none new (following), merges the containers' records by time and answers with
//! `FlotillaAgentV1.PutLogs`. The answer stays under [`MAX_LOG_ANSWER_BYTES`]: the rest
//! is flagged `hasMore` and comes with the next request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use model::logs::{LogCursor, LogEvent, LogRequest, MAX_LOG_ANSWER_BYTES, PutLogsRequest};
use runtime::ContainerRuntime;
use runtime::logs::{LogChunk, LogPosition, LogRead};
use runtime::types::{ContainerId, ContainerState};

use crate::definition::{NAME_LABEL, TASK_LABEL};
use crate::supervisor::Shared;

/// How often a follow looks for new output (and for the containers' exit).
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Most log requests answered at the same time; more are refused with an error answer.
pub const MAX_CONCURRENT_READS: usize = 16;

/// One container of the task, as the node holds it.
#[derive(Debug, Clone)]
struct TaskContainer {
    name: String,
    id: ContainerId,
    running: bool,
}

/// The task's containers on this node (by label), in creation order.
async fn task_containers(
    runtime: &dyn ContainerRuntime,
    task_arn: &str,
    only: Option<&str>,
) -> Result<Vec<TaskContainer>, runtime::Error> {
    let mut found: Vec<TaskContainer> = runtime
        .list_containers()
        .await?
        .into_iter()
        .filter(|c| c.labels.get(TASK_LABEL).map(String::as_str) == Some(task_arn))
        .map(|c| TaskContainer {
            name: c.labels.get(NAME_LABEL).cloned().unwrap_or_default(),
            running: matches!(
                c.state,
                ContainerState::Running { .. } | ContainerState::Created
            ),
            id: c.id,
        })
        .filter(|c| only.is_none_or(|n| n == c.name))
        .collect();
    found.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    Ok(found)
}

/// `2026-01-01T00:00:05.12Z` → `2026-01-01T00:00:05.120000000Z`: RFC 3339 times with
/// fractions of different lengths, made comparable as strings.
fn time_key(ts: &str) -> String {
    match ts.strip_suffix('Z') {
        Some(t) => {
            let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
            format!("{whole}.{frac:0<9}Z")
        }
        None => ts.to_owned(),
    }
}

/// Merges per-container event lists (each in file order) into one, by time; each
/// container's own order is kept.
fn merge_by_time(mut lists: Vec<Vec<LogEvent>>) -> Vec<LogEvent> {
    let total = lists.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    for l in &mut lists {
        l.reverse(); // pop from the back = oldest first
    }
    loop {
        let next = lists
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.last().map(|e| (time_key(&e.timestamp), i)))
            .min();
        let Some((_, i)) = next else { break };
        if let Some(e) = lists[i].pop() {
            out.push(e);
        }
    }
    out
}

/// One read of every container from its cursor, within `budget` bytes in all.
async fn read_once(
    runtime: &dyn ContainerRuntime,
    containers: &[TaskContainer],
    req: &LogRequest,
    budget: usize,
) -> Result<(Vec<Vec<LogEvent>>, BTreeMap<String, LogCursor>, bool), runtime::Error> {
    let share = budget / containers.len().max(1);
    let tail = req.tail.map(|t| t as usize);
    let mut events = Vec::new();
    let mut cursors = BTreeMap::new();
    let mut more = false;
    for c in containers {
        let read = LogRead {
            from: req.cursors.get(&c.name).map(|p| LogPosition {
                file: p.file,
                head: p.head,
                offset: p.offset,
            }),
            tail,
            max_bytes: share,
        };
        let LogChunk {
            lines,
            next,
            more: m,
        } = runtime.read_logs_from(&c.id, read).await?;
        more |= m;
        if let Some(p) = next {
            cursors.insert(
                c.name.clone(),
                LogCursor {
                    file: p.file,
                    head: p.head,
                    offset: p.offset,
                },
            );
        }
        events.push(
            lines
                .into_iter()
                .map(|l| LogEvent {
                    container_name: c.name.clone(),
                    timestamp: l.timestamp,
                    stream: l.stream.as_str().to_owned(),
                    message: l.message,
                    partial: l.partial,
                })
                .collect(),
        );
    }
    Ok((events, cursors, more))
}

/// Reads what `req` asks for: at once when there is output after the cursors, else
/// waiting up to `waitSeconds` for some (ending early once no container runs).
///
/// # Errors
/// The runtime's error when the containers or their logs cannot be read.
pub async fn read_task_logs(
    runtime: &dyn ContainerRuntime,
    req: &LogRequest,
) -> Result<PutLogsRequest, runtime::Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(req.wait_seconds));
    let mut budget = MAX_LOG_ANSWER_BYTES;
    loop {
        let containers =
            task_containers(runtime, &req.task_arn, req.container_name.as_deref()).await?;
        let (events, cursors, has_more) = read_once(runtime, &containers, req, budget).await?;
        let any = events.iter().any(|e| !e.is_empty());
        let running = containers.iter().any(|c| c.running);
        if any || has_more || !running || tokio::time::Instant::now() >= deadline {
            let answer = PutLogsRequest {
                request_id: req.request_id.clone(),
                events: merge_by_time(events),
                cursors,
                has_more,
                containers: containers.into_iter().map(|c| c.name).collect(),
                ..PutLogsRequest::default()
            };
            // JSON escaping can make the answer larger than its text: read less.
            let size = serde_json::to_vec(&answer).map_or(usize::MAX, |v| v.len());
            if size > MAX_LOG_ANSWER_BYTES + MAX_LOG_ANSWER_BYTES / 4 && budget > 4096 {
                budget /= 2;
                continue;
            }
            return Ok(answer);
        }
        tokio::time::sleep(FOLLOW_POLL.min(deadline - tokio::time::Instant::now())).await;
    }
}

/// Answers one request in the background: reads, then sends `PutLogs` once (if the user
/// already gave up, the control plane refuses it, and that is fine). At most
/// [`MAX_CONCURRENT_READS`] reads run at a time (`reads` holds the permits); beyond that
/// the request is answered with an error at once.
pub fn spawn_answer(
    shared: &Shared,
    instance_arn: &str,
    req: LogRequest,
    reads: &Arc<tokio::sync::Semaphore>,
) {
    let permit = reads.clone().try_acquire_owned().ok();
    let client = shared.client.clone();
    let runtime = shared.runtime.clone();
    let cluster = shared.cluster.clone();
    let instance_arn = instance_arn.to_owned();
    tokio::spawn(async move {
        let mut answer = match permit {
            None => Ok(PutLogsRequest {
                request_id: req.request_id.clone(),
                error: Some(format!(
                    "more than {MAX_CONCURRENT_READS} log reads are in progress on this node"
                )),
                ..PutLogsRequest::default()
            }),
            Some(_permit) => read_task_logs(runtime.as_ref(), &req).await,
        }
        .unwrap_or_else(|e| PutLogsRequest {
            request_id: req.request_id.clone(),
            error: Some(e.to_string()),
            ..PutLogsRequest::default()
        });
        answer.cluster = Some(cluster);
        answer.container_instance = Some(instance_arn);
        if let Err(e) = client.put_logs(&answer).await {
            tracing::debug!(request = %req.request_id, error = %e, "log answer not delivered");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::FakeRuntime;
    use runtime::types::{ContainerSpec, ImageRef, LogStream};

    fn event(container: &str, ts: &str, msg: &str) -> LogEvent {
        LogEvent {
            container_name: container.into(),
            timestamp: ts.into(),
            stream: "stdout".into(),
            message: msg.into(),
            partial: false,
        }
    }

    #[test]
    fn merging_orders_by_time_and_keeps_each_containers_order() {
        let a = vec![
            event("a", "2026-01-01T00:00:01Z", "a1"),
            event("a", "2026-01-01T00:00:03.5Z", "a2"),
        ];
        let b = vec![
            event("b", "2026-01-01T00:00:01.25Z", "b1"),
            event("b", "2026-01-01T00:00:03.25Z", "b2"),
        ];
        let merged: Vec<String> = merge_by_time(vec![a, b])
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(merged, ["a1", "b1", "b2", "a2"]);
    }

    async fn task_with_container(rt: &FakeRuntime, task: &str, name: &str) -> ContainerId {
        let id = ContainerId::new(format!("{name}-0")).unwrap();
        let mut spec = ContainerSpec::new(id.clone(), ImageRef::parse("busybox").unwrap());
        spec.labels = [
            (TASK_LABEL.to_owned(), task.to_owned()),
            (NAME_LABEL.to_owned(), name.to_owned()),
        ]
        .into();
        rt.add_cached_image(&spec.image);
        rt.create_container(&spec).await.unwrap();
        rt.start_container(&id).await.unwrap();
        id
    }

    #[tokio::test]
    async fn reads_resume_from_the_cursor_and_a_follow_waits_for_new_output() {
        let rt = Arc::new(FakeRuntime::new());
        let id = task_with_container(&rt, "arn:t", "web").await;
        rt.push_log(&id, LogStream::Stdout, "one");
        rt.push_log(&id, LogStream::Stderr, "two");
        let mut req = LogRequest {
            request_id: "r".into(),
            task_arn: "arn:t".into(),
            ..LogRequest::default()
        };
        let first = read_task_logs(rt.as_ref(), &req).await.unwrap();
        let got: Vec<(&str, &str)> = first
            .events
            .iter()
            .map(|e| (e.stream.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(got, [("stdout", "one"), ("stderr", "two")]);
        assert_eq!(first.containers, ["web"]);
        // Follow: nothing new yet, so the read waits; a new line ends the wait.
        req.cursors = first.cursors.clone();
        req.wait_seconds = 10;
        let pusher = {
            let rt = rt.clone();
            let id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                rt.push_log(&id, LogStream::Stdout, "three");
            })
        };
        let started = std::time::Instant::now();
        let second = read_task_logs(rt.as_ref(), &req).await.unwrap();
        pusher.await.unwrap();
        assert_eq!(second.events.len(), 1);
        assert_eq!(second.events[0].message, "three");
        assert!(started.elapsed() < Duration::from_secs(5));
        // Another task's containers are not read; a stopped task's still are.
        let other = LogRequest {
            task_arn: "arn:other".into(),
            ..req.clone()
        };
        let none = read_task_logs(rt.as_ref(), &other).await.unwrap();
        assert!(none.events.is_empty() && none.containers.is_empty());
        rt.stop_container(&id, Duration::from_secs(1))
            .await
            .unwrap();
        let from_start = LogRequest {
            cursors: BTreeMap::new(),
            ..req
        };
        let after_stop = read_task_logs(rt.as_ref(), &from_start).await.unwrap();
        assert_eq!(after_stop.events.len(), 3);
    }
}
