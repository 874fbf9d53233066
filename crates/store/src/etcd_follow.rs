//! Several servers on one etcd: following every commit, and electing one leader.
//!
//! ## Following ([`Store::follow`](crate::Store::follow) for [`EtcdStore`])
//! One etcd watch on the store's whole prefix, from the follower's last revision. etcd
//! sends every event of one transaction in one response (this watch does not ask for
//! fragments), all with the transaction's revision; the events on `records/…` keys of a
//! revision that also rewrote `meta/writer` are one commit, delivered as
//! [`Followed::Batch`]. Other revisions under the prefix (recovery probes, the leader
//! key, server presence) change no record and are skipped. When etcd has compacted the
//! history the watch asks for, the follower re-lists: every record and the writer key at
//! one revision, delivered as [`Followed::Snapshot`], then watches on from there. A broken
//! stream (etcd restarting, a member lost) is re-opened after [`RETRY`], from the last
//! revision delivered, so nothing is skipped or repeated.
//!
//! ## Electing a leader ([`Election`])
//! Each server holds an etcd lease of [`Election::TTL`] and keeps it alive. It campaigns by
//! creating `<prefix>leader` with that lease, in a transaction that succeeds only if the
//! key does not exist; the one that succeeds is the leader until its lease ends (it died,
//! or lost etcd for longer than the TTL: etcd deletes the key) or it resigns. The others
//! watch the key and campaign again when it is deleted. A server stops calling itself
//! leader as soon as a keep-alive goes unanswered for a third of the TTL, before etcd can
//! let another take over, so two servers never both believe they lead for longer than the
//! network takes to deliver one answer. Controllers' writes are fenced like every commit
//! (they are made against the current state), so even that overlap cannot duplicate work.
//!
//! Each server also publishes a small presence record under `<prefix>servers/<name>` with
//! its lease (what it publishes is up to it: the control plane puts the agents it hears
//! from there, so the leader's liveness check sees agents connected to any server).

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::{mpsc, watch};

use crate::etcd_store::{EtcdStore, bounded, kv_client, prefix_end};
use crate::{Followed, Mutation, StoreError};

/// Pause before re-opening a broken watch or lease.
pub const RETRY: Duration = Duration::from_millis(500);

/// Whether this server leads (see [`Election`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This server leads: its controllers run.
    Leader,
    /// Another server leads (its name, when known), or nobody does right now.
    Follower {
        /// The leader's name, as it campaigned.
        leader: Option<String>,
    },
}

impl Leadership {
    /// Whether this is [`Leadership::Leader`].
    pub fn is_leader(&self) -> bool {
        matches!(self, Leadership::Leader)
    }
}

/// Where the follower is: the last revision it delivered.
struct Cursor {
    after: i64,
}

/// Starts the follower task of [`EtcdStore::follow`] on the store's runtime.
pub(crate) fn spawn_follow(
    store: &EtcdStore,
    client: Client,
    after: u64,
    sink: mpsc::Sender<Followed>,
) {
    let prefix = store.prefix().to_owned();
    let timeout = store.timeout();
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    store.spawn(async move {
        let mut cursor = Cursor { after };
        while !sink.is_closed() {
            match follow_once(&client, &prefix, timeout, &mut cursor, &sink).await {
                Ok(()) => return,
                Err(e) => {
                    tracing_like_warn(&format!(
                        "etcd watch broke ({e}); resuming after revision {}",
                        cursor.after
                    ));
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

/// The store crate has no logging dependency: a broken watch is reported on stderr once
/// per break (it is rare, and the next line of the server's log says it resumed).
fn tracing_like_warn(message: &str) {
    eprintln!("flotilla store: {message}");
}

/// The events of one etcd revision under the prefix.
#[derive(Default)]
struct Group {
    revision: i64,
    /// It rewrote the writer key: a commit (or wipe) of the records.
    committed: bool,
    mutations: Vec<Mutation>,
    deleted: Vec<(String, Vec<u8>)>,
}

/// One watch stream, until the sink closes (`Ok`) or the stream breaks (`Err`).
async fn follow_once(
    client: &Client,
    prefix: &str,
    timeout: Duration,
    cursor: &mut Cursor,
    sink: &mpsc::Sender<Followed>,
) -> Result<(), StoreError> {
    let records = format!("{prefix}records/");
    let writer = format!("{prefix}meta/writer");
    let mut watcher = client.watch_client();
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(cursor.after + 1);
    let mut stream = bounded(
        timeout,
        "watch",
        watcher.watch(prefix.as_bytes().to_vec(), Some(options)),
    )
    .await?;
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                return Err(StoreError::Transaction(
                    "the etcd watch stream ended".into(),
                ));
            }
            Err(e) => return Err(StoreError::Transaction(format!("etcd watch failed: {e}"))),
        };
        if resp.compact_revision() > 0 || resp.canceled() {
            let (at, snapshot) = relist(client, prefix, timeout).await?;
            if sink.send(snapshot).await.is_err() {
                return Ok(());
            }
            cursor.after = at;
            return Err(StoreError::Transaction(format!(
                "the watch's history was compacted (at {}); re-listed at revision {at}",
                resp.compact_revision()
            )));
        }
        // Group the events by revision: one group is one transaction.
        let mut groups: Vec<Group> = Vec::new();
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let revision = kv.mod_revision();
            if groups.last().is_none_or(|g| g.revision != revision) {
                groups.push(Group {
                    revision,
                    ..Group::default()
                });
            }
            let group = groups.last_mut().expect("pushed above");
            let key = kv.key();
            if key == writer.as_bytes() {
                group.committed = true;
            } else if let Some(record) = key.strip_prefix(records.as_bytes()) {
                let key = String::from_utf8(record.to_vec()).map_err(|e| {
                    StoreError::Transaction(format!("a record key in etcd is not UTF-8: {e}"))
                })?;
                match event.event_type() {
                    EventType::Put => group.mutations.push(Mutation::Put {
                        key,
                        value: kv.value().to_vec(),
                    }),
                    EventType::Delete => {
                        if let Some(prev) = event.prev_kv() {
                            group.deleted.push((key.clone(), prev.value().to_vec()));
                        }
                        group.mutations.push(Mutation::Delete { key });
                    }
                }
            }
        }
        for group in groups {
            cursor.after = cursor.after.max(group.revision);
            if !group.committed {
                continue;
            }
            let batch = Followed::Batch {
                revision: u64::try_from(group.revision).unwrap_or(0),
                mutations: group.mutations,
                deleted: group.deleted,
            };
            if sink.send(batch).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Every record and the writer key's revision at one etcd revision; returns that etcd
/// revision (to watch on from) and the snapshot.
async fn relist(
    client: &Client,
    prefix: &str,
    timeout: Duration,
) -> Result<(i64, Followed), StoreError> {
    let records_prefix = format!("{prefix}records/").into_bytes();
    let (at, records) =
        crate::etcd_store::load_at(kv_client(client), records_prefix, timeout).await?;
    let mut kv = kv_client(client);
    let writer = bounded(
        timeout,
        "read of the writer key",
        kv.get(
            format!("{prefix}meta/writer"),
            Some(GetOptions::new().with_revision(at)),
        ),
    )
    .await?;
    let revision = writer.kvs().first().map_or(0, |kv| kv.mod_revision());
    Ok((
        at,
        Followed::Snapshot {
            revision: u64::try_from(revision).unwrap_or(0),
            records,
        },
    ))
}

/// One server's part in electing the leader (see the module docs). Dropping it stops
/// campaigning; the lease then runs out within [`Election::TTL`].
pub struct Election {
    leadership: watch::Receiver<Leadership>,
    lease: watch::Receiver<i64>,
    client: Client,
    prefix: String,
    name: String,
    timeout: Duration,
    handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("leadership", &*self.leadership.borrow())
            .finish_non_exhaustive()
    }
}

impl Election {
    /// How long a leader's lease lasts without keep-alives: the longest the cluster is
    /// without a leader after the leader dies.
    pub const TTL: Duration = Duration::from_secs(5);

    /// Starts campaigning as `name` (a server's address, unique among the servers).
    pub fn start(store: &EtcdStore, name: &str) -> Election {
        let (tell, leadership) = watch::channel(Leadership::Follower { leader: None });
        let (tell_lease, lease) = watch::channel(0);
        let client = store.client();
        let prefix = store.prefix().to_owned();
        let timeout = store.timeout();
        {
            let (client, prefix, name) = (client.clone(), prefix.clone(), name.to_owned());
            store.spawn(async move {
                while !tell.is_closed() {
                    if let Err(e) =
                        campaign(&client, &prefix, &name, timeout, &tell, &tell_lease).await
                    {
                        tracing_like_warn(&format!("leader election: {e}; campaigning again"));
                    }
                    tell.send_replace(Leadership::Follower { leader: None });
                    tell_lease.send_replace(0);
                    tokio::time::sleep(RETRY).await;
                }
            });
        }
        Election {
            leadership,
            lease,
            client,
            prefix,
            name: name.to_owned(),
            timeout,
            handle: store.handle(),
        }
    }

    /// Who leads, now and as it changes.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// Publishes this server's presence record (`<prefix>servers/<name>`), bound to its
    /// lease: it disappears when the server does. A no-op while it holds no lease.
    pub async fn publish(&self, value: Vec<u8>) -> Result<(), StoreError> {
        let lease = *self.lease.borrow();
        if lease == 0 {
            return Ok(());
        }
        let mut kv = kv_client(&self.client);
        let key = format!("{}servers/{}", self.prefix, self.name);
        let timeout = self.timeout;
        self.run(async move {
            bounded(
                timeout,
                "presence put",
                kv.put(key, value, Some(PutOptions::new().with_lease(lease))),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// The name this server campaigns and publishes its presence under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every server's presence record: (name, value).
    pub async fn members(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut kv = kv_client(&self.client);
        let prefix = format!("{}servers/", self.prefix);
        let timeout = self.timeout;
        self.run(async move {
            let range = GetOptions::new().with_range(prefix_end(prefix.as_bytes()));
            let resp = bounded(
                timeout,
                "presence read",
                kv.get(prefix.clone(), Some(range)),
            )
            .await?;
            Ok(resp
                .kvs()
                .iter()
                .map(|kv| {
                    let name = String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned();
                    (name, kv.value().to_vec())
                })
                .collect())
        })
        .await
    }

    /// Runs `fut` on the store's runtime (the client lives there) and awaits it here.
    async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.handle
            .spawn(fut)
            .await
            .unwrap_or(Err(StoreError::Closed))
    }
}

/// One term: take a lease, keep it alive, campaign, lead or follow, until the lease is
/// lost (an error) or the election is dropped (`Ok`).
async fn campaign(
    client: &Client,
    prefix: &str,
    name: &str,
    timeout: Duration,
    tell: &watch::Sender<Leadership>,
    tell_lease: &watch::Sender<i64>,
) -> Result<(), StoreError> {
    let ttl = i64::try_from(Election::TTL.as_secs()).unwrap_or(5);
    let mut leases = client.lease_client();
    let lease = bounded(timeout, "lease grant", leases.grant(ttl, None))
        .await?
        .id();
    let (mut keeper, mut answers) =
        bounded(timeout, "lease keep-alive", leases.keep_alive(lease)).await?;
    tell_lease.send_replace(lease);
    let key = format!("{prefix}leader");
    let beat = Election::TTL / 3;
    let mut next_beat = tokio::time::Instant::now();
    loop {
        if tell.is_closed() {
            let _ = leases.revoke(lease).await;
            return Ok(());
        }
        // Campaign (or see who leads) whenever we are not leader.
        if !tell.borrow().is_leader() {
            let mut kv = kv_client(client);
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    name,
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(key.clone(), None)]);
            let resp = bounded(timeout, "campaign", kv.txn(txn)).await?;
            if resp.succeeded() {
                tell.send_replace(Leadership::Leader);
            } else {
                let leader = resp.op_responses().into_iter().find_map(|r| match r {
                    etcd_client::TxnOpResponse::Get(get) => get
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                    _ => None,
                });
                tell.send_replace(Leadership::Follower { leader });
            }
        }
        // Keep the lease alive; a keep-alive unanswered within a beat ends the term.
        tokio::time::sleep_until(next_beat).await;
        next_beat += beat;
        keeper
            .keep_alive()
            .await
            .map_err(|e| StoreError::Transaction(format!("lease keep-alive failed: {e}")))?;
        match tokio::time::timeout(beat, answers.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
            Ok(Ok(Some(_))) => return Err(StoreError::Transaction("the lease expired".into())),
            Ok(Ok(None)) => {
                return Err(StoreError::Transaction(
                    "the keep-alive stream ended".into(),
                ));
            }
            Ok(Err(e)) => {
                return Err(StoreError::Transaction(format!(
                    "lease keep-alive failed: {e}"
                )));
            }
            Err(_) => {
                return Err(StoreError::Transaction(format!(
                    "no keep-alive answer within {beat:?}"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd_process::EtcdProcess;
    use crate::{EtcdOptions, EtcdStore};

    fn wait_for(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !check() {
            assert!(
                std::time::Instant::now() < deadline,
                "not within 15 s: {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn one_server_leads_and_another_takes_over_when_it_goes() {
        let etcd = EtcdProcess::start().expect("etcd");
        let open = || EtcdStore::connect(&[etcd.endpoint()], EtcdOptions::default()).unwrap();
        let (one, two) = (open(), open());
        let first = Election::start(&one, "one");
        let second = Election::start(&two, "two");
        let roles = |a: &Election, b: &Election| {
            (
                a.leadership().borrow().clone(),
                b.leadership().borrow().clone(),
            )
        };
        wait_for("one leader, followed by the other", || {
            matches!(
                roles(&first, &second),
                (Leadership::Leader, Leadership::Follower { leader: Some(l) }) if l == "one"
            ) || matches!(
                roles(&first, &second),
                (Leadership::Follower { leader: Some(l) }, Leadership::Leader) if l == "two"
            )
        });
        // Never two leaders: sample for a while.
        for _ in 0..50 {
            let (a, b) = roles(&first, &second);
            assert!(!(a.is_leader() && b.is_leader()), "two leaders");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (leader, rest) = if first.leadership().borrow().is_leader() {
            (first, second)
        } else {
            (second, first)
        };
        drop(leader);
        wait_for("the other takes over", || {
            rest.leadership().borrow().is_leader()
        });
    }
}
