//! The log broker: carries users' log reads to the agents that hold the logs, and the
//! agents' answers back, over the agents' own connections.
//!
//! # Why a broker
//! Container output stays on the node (see `runtime::logs`), and the node's agent opens
//! every connection: the control plane cannot call it. So a `GetTaskLogs` request is
//! *queued* here for the task's container instance, the instance's waiting
//! `PollTasks` long poll is woken and carries the request to the agent
//! (`logRequests`), and the agent answers with `PutLogs`, which this broker hands to the
//! user request still waiting for it.
//!
//! ```text
//!  flotilla logs ─► GetTaskLogs ─► submit ─► queue[instance] ─► wake ─► PollTasks answer
//!        ▲                                                               │ (agent reads files)
//!        └──── answer ◄──── waiting[requestId] ◄──── answer ◄──── PutLogs ◄┘
//! ```
//!
//! # Design
//! - **In memory only.** Nothing here is worth persisting: a request lives as long as the
//!   user's HTTP request, at most `waitSeconds` + [`ANSWER_GRACE`]. After a server restart
//!   the agents poll again and new requests flow.
//! - **Connected means polling.** An instance counts as reachable while one of its polls
//!   is open, or within [`POLL_GAP`] after one ended (the agent polls again at once, but
//!   may first finish a garbage collection). Otherwise `submit` fails at once with
//!   [`LogBrokerError::NotConnected`] instead of letting the user wait.
//! - **Bounded.** At most [`MAX_QUEUED_PER_INSTANCE`] requests wait per instance; answers
//!   are bounded by the agent (`model::logs::MAX_LOG_ANSWER_BYTES`) and by the API's body
//!   limit. A request whose user gave up (timeout, closed connection) is removed when its
//!   [`PendingLogs`] is dropped; a late answer to it is refused with
//!   [`LogBrokerError::UnknownRequest`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use model::logs::{LogRequest, PutLogsRequest};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::state::MemberKey;

/// How long after its last poll ended an agent still counts as connected.
pub const POLL_GAP: Duration = Duration::from_secs(15);

/// How long beyond the request's own wait the agent has to answer.
pub const ANSWER_GRACE: Duration = Duration::from_secs(15);

/// Most requests waiting for one instance's agent at a time.
pub const MAX_QUEUED_PER_INSTANCE: usize = 64;

/// Why a log request could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogBrokerError {
    /// The instance's agent is not polling (stopped, lost, or never started).
    #[error("the agent is not connected")]
    NotConnected,
    /// Too many requests already wait for this instance.
    #[error("too many log requests are waiting for this container instance")]
    Busy,
    /// The agent did not take the request within the wait (it stopped polling meanwhile).
    #[error("the agent did not pick up the request within {0:?}")]
    NotPickedUp(Duration),
    /// The agent took the request but did not answer within the wait.
    #[error("the agent did not answer within {0:?}")]
    NoAnswer(Duration),
    /// `PutLogs` named a request that is not waiting (its user gave up, or another
    /// instance's request).
    #[error("no log request {0} is waiting for this container instance")]
    UnknownRequest(String),
}

#[derive(Default)]
struct Instance {
    queued: Vec<LogRequest>,
    wake: Arc<Notify>,
    open_polls: usize,
    last_poll_end: Option<Instant>,
}

struct Waiting {
    instance: MemberKey,
    answer: oneshot::Sender<PutLogsRequest>,
    taken: bool,
}

#[derive(Default)]
struct Channels {
    instances: HashMap<MemberKey, Instance>,
    waiting: HashMap<String, Waiting>,
    next_id: u64,
}

/// The broker; cheap to clone (one shared table).
#[derive(Clone, Default)]
pub struct LogBroker {
    channels: Arc<Mutex<Channels>>,
}

impl std::fmt::Debug for LogBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBroker").finish_non_exhaustive()
    }
}

/// An open `PollTasks` of one instance; dropping it marks the poll ended.
pub struct PollGuard {
    broker: LogBroker,
    instance: MemberKey,
    /// Notified when a request is queued for the instance.
    pub wake: Arc<Notify>,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let mut ch = self.broker.lock();
        if let Some(i) = ch.instances.get_mut(&self.instance) {
            i.open_polls = i.open_polls.saturating_sub(1);
            i.last_poll_end = Some(Instant::now());
        }
    }
}

/// A submitted request waiting for its answer; dropping it withdraws the request.
pub struct PendingLogs {
    broker: LogBroker,
    /// The request's id (as the agent echoes it in `PutLogs`).
    pub request_id: String,
    answer: Option<oneshot::Receiver<PutLogsRequest>>,
}

impl PendingLogs {
    /// Waits up to `timeout` for the agent's answer.
    ///
    /// # Errors
    /// [`LogBrokerError::NotPickedUp`] or [`LogBrokerError::NoAnswer`] when the time runs
    /// out, depending on whether the agent took the request.
    pub async fn wait(mut self, timeout: Duration) -> Result<PutLogsRequest, LogBrokerError> {
        let Some(rx) = self.answer.take() else {
            return Err(LogBrokerError::NoAnswer(timeout));
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) | Err(_) => {
                let taken = self
                    .broker
                    .lock()
                    .waiting
                    .get(&self.request_id)
                    .is_some_and(|w| w.taken);
                Err(if taken {
                    LogBrokerError::NoAnswer(timeout)
                } else {
                    LogBrokerError::NotPickedUp(timeout)
                })
            }
        }
    }
}

impl Drop for PendingLogs {
    fn drop(&mut self) {
        let mut ch = self.broker.lock();
        if let Some(w) = ch.waiting.remove(&self.request_id)
            && let Some(i) = ch.instances.get_mut(&w.instance)
        {
            i.queued.retain(|r| r.request_id != self.request_id);
        }
    }
}

impl LogBroker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An agent's poll begins: the instance counts as connected until the guard is
    /// dropped (and [`POLL_GAP`] after). Wait on the guard's `wake` for requests.
    pub fn poll_started(&self, instance: &MemberKey) -> PollGuard {
        let mut ch = self.lock();
        let i = ch.instances.entry(instance.clone()).or_default();
        i.open_polls += 1;
        PollGuard {
            broker: self.clone(),
            instance: instance.clone(),
            wake: i.wake.clone(),
        }
    }

    /// Takes every request queued for the instance (the poll hands them to its agent).
    pub fn take(&self, instance: &MemberKey) -> Vec<LogRequest> {
        let mut ch = self.lock();
        let taken = match ch.instances.get_mut(instance) {
            Some(i) => std::mem::take(&mut i.queued),
            None => return Vec::new(),
        };
        for r in &taken {
            if let Some(w) = ch.waiting.get_mut(&r.request_id) {
                w.taken = true;
            }
        }
        taken
    }

    /// Queues `request` for the instance's agent (its `requestId` is assigned here) and
    /// wakes the agent's poll.
    ///
    /// # Errors
    /// [`LogBrokerError::NotConnected`] when the agent is not polling,
    /// [`LogBrokerError::Busy`] when too many requests already wait for it.
    pub fn submit(
        &self,
        instance: &MemberKey,
        mut request: LogRequest,
    ) -> Result<PendingLogs, LogBrokerError> {
        let mut ch = self.lock();
        ch.next_id += 1;
        let id = format!("logs-{}", ch.next_id);
        let i = ch
            .instances
            .get_mut(instance)
            .ok_or(LogBrokerError::NotConnected)?;
        let polling = i.open_polls > 0 || i.last_poll_end.is_some_and(|t| t.elapsed() <= POLL_GAP);
        if !polling {
            return Err(LogBrokerError::NotConnected);
        }
        if i.queued.len() >= MAX_QUEUED_PER_INSTANCE {
            return Err(LogBrokerError::Busy);
        }
        request.request_id.clone_from(&id);
        i.queued.push(request);
        i.wake.notify_one();
        let (tx, rx) = oneshot::channel();
        ch.waiting.insert(
            id.clone(),
            Waiting {
                instance: instance.clone(),
                answer: tx,
                taken: false,
            },
        );
        Ok(PendingLogs {
            broker: self.clone(),
            request_id: id,
            answer: Some(rx),
        })
    }

    /// Delivers an agent's answer to the user request waiting for it.
    ///
    /// # Errors
    /// [`LogBrokerError::UnknownRequest`] when no request of that id waits for this
    /// instance (the user gave up, or the id belongs to another instance).
    pub fn answer(
        &self,
        instance: &MemberKey,
        answer: PutLogsRequest,
    ) -> Result<(), LogBrokerError> {
        let mut ch = self.lock();
        let id = answer.request_id.clone();
        match ch.waiting.get(&id) {
            Some(w) if &w.instance == instance => {}
            _ => return Err(LogBrokerError::UnknownRequest(id)),
        }
        let Some(w) = ch.waiting.remove(&id) else {
            return Err(LogBrokerError::UnknownRequest(id));
        };
        drop(ch);
        w.answer
            .send(answer)
            .map_err(|_| LogBrokerError::UnknownRequest(id))
    }

    /// Requests queued or awaiting an answer (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Scope;

    fn key(id: &str) -> MemberKey {
        MemberKey::new(&Scope::new("000000000000", "us-east-1"), "c", id)
    }

    fn request(task: &str) -> LogRequest {
        LogRequest {
            task_arn: task.into(),
            ..LogRequest::default()
        }
    }

    fn answer_to(r: &LogRequest, text: &str) -> PutLogsRequest {
        PutLogsRequest {
            request_id: r.request_id.clone(),
            events: vec![model::logs::LogEvent {
                message: text.into(),
                ..Default::default()
            }],
            ..PutLogsRequest::default()
        }
    }

    #[tokio::test]
    async fn a_request_reaches_the_polling_agent_and_its_answer_the_user() {
        let broker = LogBroker::default();
        let node = key("i-1");
        let poll = broker.poll_started(&node);
        let pending = broker.submit(&node, request("t1")).unwrap();
        // The poll is woken and takes the request.
        tokio::time::timeout(Duration::from_secs(1), poll.wake.notified())
            .await
            .expect("the poll is woken");
        let taken = broker.take(&node);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].task_arn, "t1");
        assert_eq!(taken[0].request_id, pending.request_id);
        assert!(broker.take(&node).is_empty(), "taken once");
        broker.answer(&node, answer_to(&taken[0], "hello")).unwrap();
        let got = pending.wait(Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.events[0].message, "hello");
        assert_eq!(broker.waiting(), 0);
    }

    #[tokio::test]
    async fn a_request_queued_between_polls_waits_for_the_next_poll() {
        let broker = LogBroker::default();
        let node = key("i-1");
        drop(broker.poll_started(&node)); // a poll just ended
        let pending = broker.submit(&node, request("t1")).unwrap();
        let poll = broker.poll_started(&node);
        // The wake-up was stored: the next poll sees it at once.
        tokio::time::timeout(Duration::from_secs(1), poll.wake.notified())
            .await
            .expect("stored wake-up");
        let [r] = broker.take(&node).try_into().unwrap();
        broker.answer(&node, answer_to(&r, "x")).unwrap();
        assert!(pending.wait(Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn an_agent_that_never_polled_or_stopped_polling_is_not_connected() {
        let broker = LogBroker::default();
        let node = key("i-1");
        assert_eq!(
            broker.submit(&node, request("t")).err(),
            Some(LogBrokerError::NotConnected)
        );
        drop(broker.poll_started(&node));
        assert!(broker.submit(&node, request("t")).is_ok(), "within the gap");
        tokio::time::advance(POLL_GAP + Duration::from_secs(1)).await;
        assert_eq!(
            broker.submit(&node, request("t")).err(),
            Some(LogBrokerError::NotConnected)
        );
        assert_eq!(broker.waiting(), 0, "refused requests leave nothing behind");
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_say_whether_the_agent_took_the_request() {
        let broker = LogBroker::default();
        let node = key("i-1");
        let _poll = broker.poll_started(&node);
        let pending = broker.submit(&node, request("t")).unwrap();
        assert_eq!(
            pending.wait(Duration::from_secs(5)).await.err(),
            Some(LogBrokerError::NotPickedUp(Duration::from_secs(5)))
        );
        assert_eq!(broker.waiting(), 0);
        assert!(
            broker.take(&node).is_empty(),
            "a withdrawn request is not handed out"
        );

        let pending = broker.submit(&node, request("t")).unwrap();
        let [r] = broker.take(&node).try_into().unwrap();
        assert_eq!(
            pending.wait(Duration::from_secs(5)).await.err(),
            Some(LogBrokerError::NoAnswer(Duration::from_secs(5)))
        );
        // The late answer finds nobody waiting.
        assert_eq!(
            broker.answer(&node, answer_to(&r, "late")),
            Err(LogBrokerError::UnknownRequest(r.request_id.clone()))
        );
    }

    #[tokio::test]
    async fn an_agent_cannot_answer_another_instances_request() {
        let broker = LogBroker::default();
        let (a, b) = (key("i-a"), key("i-b"));
        let _pa = broker.poll_started(&a);
        let _pb = broker.poll_started(&b);
        let pending = broker.submit(&a, request("t")).unwrap();
        let [r] = broker.take(&a).try_into().unwrap();
        assert!(broker.take(&b).is_empty());
        assert!(matches!(
            broker.answer(&b, answer_to(&r, "forged")),
            Err(LogBrokerError::UnknownRequest(_))
        ));
        broker.answer(&a, answer_to(&r, "real")).unwrap();
        assert_eq!(
            pending.wait(Duration::from_secs(1)).await.unwrap().events[0].message,
            "real"
        );
    }

    #[tokio::test]
    async fn the_queue_per_instance_is_bounded() {
        let broker = LogBroker::default();
        let node = key("i-1");
        let _poll = broker.poll_started(&node);
        let pending: Vec<PendingLogs> = (0..MAX_QUEUED_PER_INSTANCE)
            .map(|_| broker.submit(&node, request("t")).unwrap())
            .collect();
        assert_eq!(
            broker.submit(&node, request("t")).err(),
            Some(LogBrokerError::Busy)
        );
        drop(pending);
        assert_eq!(broker.waiting(), 0);
        assert!(broker.submit(&node, request("t")).is_ok());
    }
}
