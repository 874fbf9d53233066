//! The node broker: carries users' requests for a node — log reads, host API calls — to
//! the node's agent, and the agent's answers back, over the agent's own connection.
//!
//! # Why a broker
//! Container output stays on the node (see `runtime::logs`), and so does the node's host
//! API (a Unix socket, see `model::host`); the node's agent opens every connection: the
//! control plane cannot call it. So a `GetTaskLogs` or `CallHostApi` request is *queued*
//! here for the container instance, the instance's waiting `PollTasks` long poll is woken
//! and carries the request to the agent (`logRequests`, `hostRequests`), and the agent
//! answers with `PutLogs` or `PutHostAnswer`, which this broker hands to the user request
//! still waiting for it.
//!
//! ```text
//!  flotilla logs ─► GetTaskLogs ─► submit ─► queue[instance] ─► wake ─► PollTasks answer
//!        ▲                                                               │ (agent reads files)
//!        └──── answer ◄──── waiting[requestId] ◄──── answer ◄──── PutLogs ◄┘
//! ```
//!
//! # Design
//! - **In memory only.** Nothing here is worth persisting: a request lives as long as the
//!   user's HTTP request, at most its wait + [`ANSWER_GRACE`]. After a server restart
//!   the agents poll again and new requests flow.
//! - **Connected means polling.** An instance counts as reachable while one of its polls
//!   is open, or within [`POLL_GAP`] after one ended (the agent polls again at once, but
//!   may first finish a garbage collection). Otherwise `submit` fails at once with
//!   [`NodeBrokerError::NotConnected`] instead of letting the user wait.
//! - **Bounded.** At most [`MAX_QUEUED_PER_INSTANCE`] requests wait per instance; answers
//!   are bounded by the agent (`model::logs::MAX_LOG_ANSWER_BYTES`,
//!   `model::host::MAX_HOST_ANSWER_BYTES`) and by the API's body limit. A request whose
//!   user gave up (timeout, closed connection) is removed when its [`PendingAnswer`] is
//!   dropped; a late answer to it is refused with [`NodeBrokerError::UnknownRequest`].
//! - **A request is answered by its own kind.** A `PutLogs` cannot answer a host call,
//!   nor the other way round ([`NodeBrokerError::UnknownRequest`]).
//! - **Several servers.** An agent polls one server. Where several share a store, each
//!   tells the others which agents it hears from (`flotilla server`'s presence records),
//!   and [`NodeBroker::set_peers`] keeps, per instance polling elsewhere, the address of
//!   that server: a request for an agent not connected here is relayed there whole
//!   (`ecs-api`), signature and all, and answered from there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use model::host::{HostRequest, PutHostAnswerRequest};
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
pub enum NodeBrokerError {
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

/// A request the control plane hands an agent in its poll answer.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeRequest {
    /// Read a task's logs; answered by `PutLogs`.
    Logs(LogRequest),
    /// Call the node's host API; answered by `PutHostAnswer`.
    Host(HostRequest),
}

impl NodeRequest {
    fn request_id(&self) -> &str {
        match self {
            NodeRequest::Logs(r) => &r.request_id,
            NodeRequest::Host(r) => &r.request_id,
        }
    }

    fn set_request_id(&mut self, id: &str) {
        match self {
            NodeRequest::Logs(r) => r.request_id = id.to_owned(),
            NodeRequest::Host(r) => r.request_id = id.to_owned(),
        }
    }

    /// Splits taken requests by kind, as the poll answer carries them.
    #[must_use]
    pub fn split(requests: Vec<NodeRequest>) -> (Vec<LogRequest>, Vec<HostRequest>) {
        let mut logs = Vec::new();
        let mut host = Vec::new();
        for r in requests {
            match r {
                NodeRequest::Logs(l) => logs.push(l),
                NodeRequest::Host(h) => host.push(h),
            }
        }
        (logs, host)
    }
}

/// An agent's answer to one [`NodeRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeAnswer {
    /// `PutLogs`.
    Logs(PutLogsRequest),
    /// `PutHostAnswer`.
    Host(PutHostAnswerRequest),
}

impl NodeAnswer {
    fn request_id(&self) -> &str {
        match self {
            NodeAnswer::Logs(a) => &a.request_id,
            NodeAnswer::Host(a) => &a.request_id,
        }
    }

    fn answers(&self, request: &NodeRequest) -> bool {
        matches!(
            (self, request),
            (NodeAnswer::Logs(_), NodeRequest::Logs(_))
                | (NodeAnswer::Host(_), NodeRequest::Host(_))
        )
    }
}

impl From<LogRequest> for NodeRequest {
    fn from(r: LogRequest) -> Self {
        NodeRequest::Logs(r)
    }
}

impl From<HostRequest> for NodeRequest {
    fn from(r: HostRequest) -> Self {
        NodeRequest::Host(r)
    }
}

impl From<PutLogsRequest> for NodeAnswer {
    fn from(a: PutLogsRequest) -> Self {
        NodeAnswer::Logs(a)
    }
}

impl From<PutHostAnswerRequest> for NodeAnswer {
    fn from(a: PutHostAnswerRequest) -> Self {
        NodeAnswer::Host(a)
    }
}

#[derive(Default)]
struct Instance {
    queued: Vec<NodeRequest>,
    wake: Arc<Notify>,
    open_polls: usize,
    last_poll_end: Option<Instant>,
}

struct Waiting {
    instance: MemberKey,
    answer: oneshot::Sender<NodeAnswer>,
    kind: NodeRequest,
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
pub struct NodeBroker {
    channels: Arc<Mutex<Channels>>,
    /// Instances whose agents poll another server: that server's address.
    peers: Arc<Mutex<HashMap<MemberKey, String>>>,
}

impl std::fmt::Debug for NodeBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBroker").finish_non_exhaustive()
    }
}

/// An open `PollTasks` of one instance; dropping it marks the poll ended.
pub struct PollGuard {
    broker: NodeBroker,
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
pub struct PendingAnswer {
    broker: NodeBroker,
    /// The request's id (as the agent echoes it in `PutLogs`).
    pub request_id: String,
    answer: Option<oneshot::Receiver<NodeAnswer>>,
}

impl PendingAnswer {
    /// Waits up to `timeout` for the agent's answer.
    ///
    /// # Errors
    /// [`NodeBrokerError::NotPickedUp`] or [`NodeBrokerError::NoAnswer`] when the time runs
    /// out, depending on whether the agent took the request.
    pub async fn wait(mut self, timeout: Duration) -> Result<NodeAnswer, NodeBrokerError> {
        let Some(rx) = self.answer.take() else {
            return Err(NodeBrokerError::NoAnswer(timeout));
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
                    NodeBrokerError::NoAnswer(timeout)
                } else {
                    NodeBrokerError::NotPickedUp(timeout)
                })
            }
        }
    }
}

impl Drop for PendingAnswer {
    fn drop(&mut self) {
        let mut ch = self.broker.lock();
        if let Some(w) = ch.waiting.remove(&self.request_id)
            && let Some(i) = ch.instances.get_mut(&w.instance)
        {
            i.queued.retain(|r| r.request_id() != self.request_id);
        }
    }
}

impl NodeBroker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces what is known of agents polling other servers: instance → the address
    /// (`host:port`) of the server that heard from it last (see the module's doc).
    pub fn set_peers(&self, peers: HashMap<MemberKey, String>) {
        *self.peers.lock().unwrap_or_else(PoisonError::into_inner) = peers;
    }

    /// The server `instance`'s agent polls, when it is another server.
    pub fn peer_of(&self, instance: &MemberKey) -> Option<String> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(instance)
            .cloned()
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
    pub fn take(&self, instance: &MemberKey) -> Vec<NodeRequest> {
        let mut ch = self.lock();
        let taken = match ch.instances.get_mut(instance) {
            Some(i) => std::mem::take(&mut i.queued),
            None => return Vec::new(),
        };
        for r in &taken {
            if let Some(w) = ch.waiting.get_mut(r.request_id()) {
                w.taken = true;
            }
        }
        taken
    }

    /// Queues `request` for the instance's agent (its `requestId` is assigned here) and
    /// wakes the agent's poll.
    ///
    /// # Errors
    /// [`NodeBrokerError::NotConnected`] when the agent is not polling,
    /// [`NodeBrokerError::Busy`] when too many requests already wait for it.
    pub fn submit(
        &self,
        instance: &MemberKey,
        request: impl Into<NodeRequest>,
    ) -> Result<PendingAnswer, NodeBrokerError> {
        let mut ch = self.lock();
        ch.next_id += 1;
        let mut request = request.into();
        let id = format!("req-{}", ch.next_id);
        let i = ch
            .instances
            .get_mut(instance)
            .ok_or(NodeBrokerError::NotConnected)?;
        let polling = i.open_polls > 0 || i.last_poll_end.is_some_and(|t| t.elapsed() <= POLL_GAP);
        if !polling {
            return Err(NodeBrokerError::NotConnected);
        }
        if i.queued.len() >= MAX_QUEUED_PER_INSTANCE {
            return Err(NodeBrokerError::Busy);
        }
        request.set_request_id(&id);
        let kind = request.clone();
        i.queued.push(request);
        i.wake.notify_one();
        let (tx, rx) = oneshot::channel();
        ch.waiting.insert(
            id.clone(),
            Waiting {
                instance: instance.clone(),
                answer: tx,
                kind,
                taken: false,
            },
        );
        Ok(PendingAnswer {
            broker: self.clone(),
            request_id: id,
            answer: Some(rx),
        })
    }

    /// Delivers an agent's answer to the user request waiting for it.
    ///
    /// # Errors
    /// [`NodeBrokerError::UnknownRequest`] when no request of that id waits for this
    /// instance (the user gave up, or the id belongs to another instance).
    pub fn answer(
        &self,
        instance: &MemberKey,
        answer: impl Into<NodeAnswer>,
    ) -> Result<(), NodeBrokerError> {
        let answer = answer.into();
        let mut ch = self.lock();
        let id = answer.request_id().to_owned();
        match ch.waiting.get(&id) {
            Some(w) if &w.instance == instance && answer.answers(&w.kind) => {}
            _ => return Err(NodeBrokerError::UnknownRequest(id)),
        }
        let Some(w) = ch.waiting.remove(&id) else {
            return Err(NodeBrokerError::UnknownRequest(id));
        };
        drop(ch);
        w.answer
            .send(answer)
            .map_err(|_| NodeBrokerError::UnknownRequest(id))
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

    fn answer_to(r: &NodeRequest, text: &str) -> PutLogsRequest {
        PutLogsRequest {
            request_id: r.request_id().to_owned(),
            events: vec![model::logs::LogEvent {
                message: text.into(),
                ..Default::default()
            }],
            ..PutLogsRequest::default()
        }
    }

    #[tokio::test]
    async fn a_request_reaches_the_polling_agent_and_its_answer_the_user() {
        let broker = NodeBroker::default();
        let node = key("i-1");
        let poll = broker.poll_started(&node);
        let pending = broker.submit(&node, request("t1")).unwrap();
        // The poll is woken and takes the request.
        tokio::time::timeout(Duration::from_secs(1), poll.wake.notified())
            .await
            .expect("the poll is woken");
        let taken = broker.take(&node);
        assert_eq!(taken.len(), 1);
        let NodeRequest::Logs(read) = &taken[0] else {
            panic!("a log request: {taken:?}")
        };
        assert_eq!(read.task_arn, "t1");
        assert_eq!(read.request_id, pending.request_id);
        assert!(broker.take(&node).is_empty(), "taken once");
        broker.answer(&node, answer_to(&taken[0], "hello")).unwrap();
        let NodeAnswer::Logs(got) = pending.wait(Duration::from_secs(1)).await.unwrap() else {
            panic!("a log answer")
        };
        assert_eq!(got.events[0].message, "hello");
        assert_eq!(broker.waiting(), 0);
    }

    #[tokio::test]
    async fn a_request_queued_between_polls_waits_for_the_next_poll() {
        let broker = NodeBroker::default();
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
        let broker = NodeBroker::default();
        let node = key("i-1");
        assert_eq!(
            broker.submit(&node, request("t")).err(),
            Some(NodeBrokerError::NotConnected)
        );
        drop(broker.poll_started(&node));
        assert!(broker.submit(&node, request("t")).is_ok(), "within the gap");
        tokio::time::advance(POLL_GAP + Duration::from_secs(1)).await;
        assert_eq!(
            broker.submit(&node, request("t")).err(),
            Some(NodeBrokerError::NotConnected)
        );
        assert_eq!(broker.waiting(), 0, "refused requests leave nothing behind");
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_say_whether_the_agent_took_the_request() {
        let broker = NodeBroker::default();
        let node = key("i-1");
        let _poll = broker.poll_started(&node);
        let pending = broker.submit(&node, request("t")).unwrap();
        assert_eq!(
            pending.wait(Duration::from_secs(5)).await.err(),
            Some(NodeBrokerError::NotPickedUp(Duration::from_secs(5)))
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
            Some(NodeBrokerError::NoAnswer(Duration::from_secs(5)))
        );
        // The late answer finds nobody waiting.
        assert_eq!(
            broker.answer(&node, answer_to(&r, "late")),
            Err(NodeBrokerError::UnknownRequest(r.request_id().to_owned()))
        );
    }

    #[tokio::test]
    async fn an_agent_cannot_answer_another_instances_request() {
        let broker = NodeBroker::default();
        let (a, b) = (key("i-a"), key("i-b"));
        let _pa = broker.poll_started(&a);
        let _pb = broker.poll_started(&b);
        let pending = broker.submit(&a, request("t")).unwrap();
        let [r] = broker.take(&a).try_into().unwrap();
        assert!(broker.take(&b).is_empty());
        assert!(matches!(
            broker.answer(&b, answer_to(&r, "forged")),
            Err(NodeBrokerError::UnknownRequest(_))
        ));
        broker.answer(&a, answer_to(&r, "real")).unwrap();
        assert!(matches!(
            pending.wait(Duration::from_secs(1)).await.unwrap(),
            NodeAnswer::Logs(l) if l.events[0].message == "real"
        ));
    }

    #[tokio::test]
    async fn a_host_call_is_answered_by_a_host_answer_only() {
        let broker = NodeBroker::default();
        let node = key("i-1");
        let _poll = broker.poll_started(&node);
        let pending = broker
            .submit(
                &node,
                HostRequest {
                    request_id: String::new(),
                    call: model::host::HostCall::GetOs,
                },
            )
            .unwrap();
        let taken = broker.take(&node);
        let (logs, host) = NodeRequest::split(taken.clone());
        assert!(logs.is_empty());
        assert_eq!(host.len(), 1);
        assert_eq!(host[0].call, model::host::HostCall::GetOs);
        assert!(
            matches!(
                broker.answer(&node, answer_to(&taken[0], "a log answer")),
                Err(NodeBrokerError::UnknownRequest(_))
            ),
            "a PutLogs cannot answer a host call"
        );
        let answer = PutHostAnswerRequest {
            request_id: host[0].request_id.clone(),
            answer: Some(model::host::CallHostApiResponse {
                status: 200,
                body: serde_json::json!({"version_id": "1.0.0"}),
            }),
            ..PutHostAnswerRequest::default()
        };
        broker.answer(&node, answer.clone()).unwrap();
        assert_eq!(
            pending.wait(Duration::from_secs(1)).await.unwrap(),
            NodeAnswer::Host(answer)
        );
    }

    #[tokio::test]
    async fn the_queue_per_instance_is_bounded() {
        let broker = NodeBroker::default();
        let node = key("i-1");
        let _poll = broker.poll_started(&node);
        let pending: Vec<PendingAnswer> = (0..MAX_QUEUED_PER_INSTANCE)
            .map(|_| broker.submit(&node, request("t")).unwrap())
            .collect();
        assert_eq!(
            broker.submit(&node, request("t")).err(),
            Some(NodeBrokerError::Busy)
        );
        drop(pending);
        assert_eq!(broker.waiting(), 0);
        assert!(broker.submit(&node, request("t")).is_ok());
    }
}
