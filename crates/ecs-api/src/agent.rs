//! Routing of the flotilla agent protocol (`X-Amz-Target: FlotillaAgentV1.<Op>`, see
//! [`model::agent`]): one `match` over [`AgentOperation`], the long poll (which also
//! carries log requests and host API calls to the agent), and the agent's answers
//! (`PutLogs`, `PutHostAnswer`).
//!
//! ## Waking waiting polls
//! Every agent holds one poll open nearly all the time, so a large cluster has
//! thousands waiting at once. A published change wakes only the polls of the instances
//! it touched (a task placed on the instance, the instance's own record, its cluster):
//! [`Wakers`] follows the control plane's change feed ([`ControlPlane::watch_changes`])
//! and notifies those instances. A publish the feed does not explain within
//! [`UNEXPLAINED_GRACE`] (a reset wipes the state without a batch on the feed), or a
//! feed that lagged, wakes every waiting poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use controlplane::node_broker::{NodeAnswer, NodeRequest};
use controlplane::ops::agent_channel::{
    instance_key, poll_answer_json, poll_digest, polling_instance, polling_key, report_health,
    service_connect_routes, set_agent_connected,
};
use controlplane::state::{MemberKey, Record};
use controlplane::{Change, ControlPlane, EcsError};
use model::agent::{
    AgentOperation, GetServiceConnectRoutesRequest, MAX_WAIT_SECONDS, PollTasksRequest,
    ReportHealthRequest, ReportNetworkRequest,
};
use model::host::{PutHostAnswerRequest, PutHostAnswerResponse};
use model::logs::{PutLogsRequest, PutLogsResponse};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, broadcast, watch};

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
                    controlplane::ops::agent::report_network(s, ctx, req.clone())
                })
                .await?,
            )
        }
        AgentOperation::ReportHealth => {
            let req: ReportHealthRequest = parse_json(body)?;
            encode(
                &cp.write(call.scope.clone(), move |s, ctx| {
                    report_health(s, ctx, req.clone())
                })
                .await?,
            )
        }
        AgentOperation::PutLogs => put_logs(cp, call, parse_json(body)?),
        AgentOperation::PutHostAnswer => put_host_answer(cp, call, parse_json(body)?),
        // Served before authentication by the server (the activation authenticates
        // it); here for callers that route agent operations themselves.
        AgentOperation::RegisterExternalInstance => {
            crate::anywhere::register_external_instance(
                cp,
                &call.scope.region,
                &call.scope.account,
                body,
            )
            .await
        }
        AgentOperation::RotateNodeCredentials => {
            crate::anywhere::rotate_node_credentials(cp, call).await
        }
        AgentOperation::GetServiceConnectRoutes => {
            let req: GetServiceConnectRoutesRequest = parse_json(body)?;
            encode(&cp.read(|s| service_connect_routes(s, &call.scope, &req))?)
        }
    }
}

/// Hands an agent's answer to the `GetTaskLogs` request waiting for it.
fn put_logs(cp: &ControlPlane, call: &Call, req: PutLogsRequest) -> Result<Vec<u8>, ApiError> {
    let instance = (req.cluster.clone(), req.container_instance.clone());
    hand_answer(cp, call, instance, req.into())?;
    encode(&PutLogsResponse {
        acknowledgment: "ACK".into(),
    })
}

/// Hands an agent's answer to the `CallHostApi` request waiting for it.
fn put_host_answer(
    cp: &ControlPlane,
    call: &Call,
    req: PutHostAnswerRequest,
) -> Result<Vec<u8>, ApiError> {
    let instance = (req.cluster.clone(), req.container_instance.clone());
    hand_answer(cp, call, instance, req.into())?;
    encode(&PutHostAnswerResponse {
        acknowledgment: "ACK".into(),
    })
}

/// The answering instance's heartbeat, then its answer to the broker.
fn hand_answer(
    cp: &ControlPlane,
    call: &Call,
    (cluster, instance): (Option<String>, Option<String>),
    answer: NodeAnswer,
) -> Result<(), ApiError> {
    let key = cp.read(|s| {
        polling_instance(s, &call.scope, cluster.as_deref(), instance.as_deref()).map(instance_key)
    })?;
    cp.heartbeat(key.clone());
    cp.node_broker()
        .answer(&key, answer)
        .map_err(|e| ApiError::Ecs(EcsError::InvalidParameter(e.to_string())))
}

/// How often a waiting poll refreshes its instance's heartbeat (well within the
/// server's `--agent-timeout`, 30 s by default).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How long a publish may go without its batch on the change feed before every
/// waiting poll is woken (the writer publishes, then sends the batch, so a batch
/// normally follows at once; a reset sends none).
const UNEXPLAINED_GRACE: Duration = Duration::from_millis(100);

/// The waiting polls of one control plane, by instance, and the task that wakes the
/// ones a published batch touched.
struct Wakers {
    /// Fails `has_changed` once the control plane is gone.
    alive: watch::Receiver<u64>,
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Instance → its notifier and how many polls wait on it.
    polls: Mutex<HashMap<MemberKey, (Arc<Notify>, usize)>>,
}

/// A poll's place among the [`Wakers`]; dropping it leaves.
struct Registration {
    wakers: Arc<Wakers>,
    key: MemberKey,
    notify: Arc<Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut polls = self.wakers.polls();
        if let Some(entry) = polls.get_mut(&self.key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                polls.remove(&self.key);
            }
        }
    }
}

impl Wakers {
    /// The wakers of `cp`, started on first use (one per control plane in the process).
    fn of(cp: &ControlPlane) -> Arc<Wakers> {
        static ALL: OnceLock<Mutex<HashMap<usize, Arc<Wakers>>>> = OnceLock::new();
        // The control plane's identity: where its node broker lives. An address can only
        // be reused after that control plane is gone, which `usable` notices.
        let id = std::ptr::from_ref(cp.node_broker()).addr();
        let mut all = ALL
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.retain(|_, w| w.usable());
        all.entry(id).or_insert_with(|| Wakers::start(cp)).clone()
    }

    fn start(cp: &ControlPlane) -> Arc<Wakers> {
        let wakers = Arc::new(Wakers {
            alive: cp.subscribe(),
            dispatcher: Mutex::new(None),
            polls: Mutex::default(),
        });
        let feed = cp.watch_changes();
        let published = cp.subscribe();
        let task = tokio::spawn(dispatch(Arc::downgrade(&wakers), feed, published));
        *wakers
            .dispatcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        wakers
    }

    /// Whether its control plane is still there and its dispatcher still runs (a
    /// runtime that shut down takes the dispatcher with it).
    fn usable(&self) -> bool {
        self.alive.has_changed().is_ok()
            && self
                .dispatcher
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(|t| !t.is_finished())
    }

    /// How many batches the control plane has published (it counts up before a batch
    /// goes out on the feed).
    fn published(&self) -> u64 {
        *self.alive.borrow()
    }

    fn polls(&self) -> MutexGuard<'_, HashMap<MemberKey, (Arc<Notify>, usize)>> {
        self.polls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(self: &Arc<Self>, key: &MemberKey) -> Registration {
        let mut polls = self.polls();
        let entry = polls
            .entry(key.clone())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        Registration {
            wakers: self.clone(),
            key: key.clone(),
            notify: entry.0.clone(),
        }
    }

    fn wake_all(&self) {
        for (notify, _) in self.polls().values() {
            notify.notify_waiters();
        }
    }

    /// Wakes the polls of every instance the batch touched.
    fn wake_touched(&self, batch: &[Change]) {
        let polls = self.polls();
        if polls.is_empty() {
            return;
        }
        // One key, rewritten per change: no allocation per change (the scope's texts
        // are shared, so cloning them copies pointers).
        let mut key = MemberKey::new(&controlplane::Scope::new("", ""), "", "");
        let set = |key: &mut MemberKey, scope: &controlplane::Scope, cluster: &str, id: &str| {
            key.scope.clone_from(scope);
            for (to, from) in [(&mut key.cluster, cluster), (&mut key.id, id)] {
                to.clear();
                to.push_str(from);
            }
        };
        for change in batch {
            let (Change::Put(record) | Change::Delete(record)) = change;
            match record {
                Record::Task(t) => {
                    let Some(instance) = t.instance_id.as_deref() else {
                        continue;
                    };
                    set(&mut key, &t.scope, t.placed_in(), instance);
                }
                Record::Instance(i) => set(&mut key, &i.scope, &i.cluster, &i.id),
                Record::Cluster(c) => {
                    for (k, (notify, _)) in polls.iter() {
                        if k.scope == c.scope && k.cluster == c.name {
                            notify.notify_waiters();
                        }
                    }
                    continue;
                }
                _ => continue,
            }
            if let Some((notify, _)) = polls.get(&key) {
                notify.notify_waiters();
            }
        }
    }
}

/// Follows the change feed and wakes the polls each batch touched; see the module docs.
async fn dispatch(
    wakers: Weak<Wakers>,
    mut feed: broadcast::Receiver<Arc<Vec<Change>>>,
    mut published: watch::Receiver<u64>,
) {
    enum Wake {
        Batch(Arc<Vec<Change>>),
        All,
        Nothing,
    }
    let start = *published.borrow_and_update();
    // Batches received, against publishes counted since `start`.
    let mut fed: u64 = 0;
    let mut unexplained_since: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match unexplained_since {
                Some(at) => tokio::time::sleep_until(at + UNEXPLAINED_GRACE).await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            batch = feed.recv() => match batch {
                Ok(batch) => {
                    fed += 1;
                    Wake::Batch(batch)
                }
                Err(RecvError::Lagged(missed)) => {
                    fed += missed;
                    Wake::All
                }
                Err(RecvError::Closed) => return,
            },
            changed = published.changed() => {
                if changed.is_err() {
                    return;
                }
                Wake::Nothing
            }
            () = grace => {
                fed = published.borrow().wrapping_sub(start);
                Wake::All
            }
        };
        let Some(w) = wakers.upgrade() else { return };
        match wake {
            Wake::Batch(batch) => w.wake_touched(&batch),
            Wake::All => w.wake_all(),
            Wake::Nothing => {}
        }
        drop(w);
        let count = published.borrow_and_update().wrapping_sub(start);
        // Batches of publishes from before `start` make `fed` run ahead: forget them.
        fed = fed.min(count);
        unexplained_since = if count > fed {
            unexplained_since.or_else(|| Some(tokio::time::Instant::now()))
        } else {
            None
        };
    }
}

/// Answers as soon as the instance's assignment differs from `knownDigest`, or when it
/// changes within `waitSeconds`, or when a log request is queued for the instance (it
/// rides in `logRequests`); the poll counts as a heartbeat while it waits, and an
/// instance marked disconnected is marked connected again.
///
/// A waiting poll wakes only for changes to its own instance (see the module docs), and
/// its look is O(1): the digest of the instance's assignment is kept in the per-instance
/// index (`Usage::digest`). It builds the whole answer — tasks and their definitions,
/// serialized straight from the state — only when the assignment differs from the
/// agent's; an agent that asks with `omitUnchanged` (the real one does) gets a brief
/// answer when the wait runs out with nothing changed, so an idle poll encodes no task.
async fn poll(cp: &ControlPlane, call: &Call, req: PollTasksRequest) -> Result<Vec<u8>, ApiError> {
    let wait = Duration::from_secs(u64::from(
        req.wait_seconds.unwrap_or(0).min(MAX_WAIT_SECONDS),
    ));
    let deadline = tokio::time::Instant::now() + wait;
    let wakers = Wakers::of(cp);
    // Joined before the first look, so nothing published after it goes unnoticed.
    let mut registration = polling_key(&call.scope, &req).map(|key| wakers.register(&key));
    let mut open_poll = None;
    let mut heartbeat_at: Option<tokio::time::Instant> = None;
    loop {
        // Armed before the look, so a change published after it wakes this poll.
        let mut changed = registration
            .as_ref()
            .map(|r| Box::pin(r.notify.clone().notified_owned()));
        if let Some(c) = changed.as_mut() {
            c.as_mut().enable();
        }
        let published = wakers.published();
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
        let open_poll = open_poll.get_or_insert_with(|| cp.node_broker().poll_started(&key));
        let (log_requests, host_requests) = NodeRequest::split(cp.node_broker().take(&key));
        let now = tokio::time::Instant::now();
        if !log_requests.is_empty()
            || !host_requests.is_empty()
            || req.known_digest.as_deref() != Some(digest.as_str())
            || now >= deadline
        {
            let (key, answer) =
                cp.read(|s| poll_answer_json(s, &call.scope, &req, &log_requests, &host_requests))?;
            cp.heartbeat(key);
            return Ok(answer);
        }
        if heartbeat_at.is_none_or(|at| now.duration_since(at) >= HEARTBEAT_EVERY) {
            cp.heartbeat(key.clone());
            heartbeat_at = Some(now);
        }
        let changed = match changed {
            Some(armed) if registration.as_ref().is_some_and(|r| r.key == key) => armed,
            _ => {
                // Not joined under the key the look found (`polling_key` cannot tell):
                // join now. Whatever is published from now on wakes this poll; whatever
                // was published since the look was taken needs another look.
                let joined = wakers.register(&key);
                let mut armed = Box::pin(joined.notify.clone().notified_owned());
                armed.as_mut().enable();
                registration = Some(joined);
                if wakers.published() != published {
                    continue;
                }
                armed
            }
        };
        let timed_out = tokio::select! {
            () = changed => false,
            () = open_poll.wake.notified() => false,
            () = tokio::time::sleep_until(deadline) => true,
        };
        if timed_out {
            // Nothing woke this poll: answer with what is there, without another look.
            let (log_requests, host_requests) = NodeRequest::split(cp.node_broker().take(&key));
            let (key, answer) =
                cp.read(|s| poll_answer_json(s, &call.scope, &req, &log_requests, &host_requests))?;
            cp.heartbeat(key);
            return Ok(answer);
        }
    }
}
