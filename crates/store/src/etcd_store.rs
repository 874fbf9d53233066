//! The etcd v3 backend: the records in an etcd cluster, each commit one etcd transaction.
//!
//! ## Layout
//! Under a prefix (default `/flotilla/`): `records/<key>` holds each record's bytes, and
//! `meta/writer` names the writer of the last commit (its value is that [`EtcdStore`]'s
//! random id). Nothing else under the prefix belongs to the records, so `load` is one
//! range (`records/` … `records0`) and `wipe` one range delete.
//!
//! ## The fence: the compare every commit makes
//! Every `commit` and `wipe` is ONE `Txn`:
//!
//! ```text
//! if   mod_revision(<prefix>meta/writer) == F
//! then put/delete each record …, put <prefix>meta/writer = <this store's id>
//! else (nothing)
//! ```
//!
//! `F` is the `mod_revision` of `meta/writer` this handle last saw: read when it connected,
//! then the revision of its own last commit (the writer key is written by the same
//! transaction, so its `mod_revision` *is* that commit's revision, and etcd's header
//! revision after it). Since every commit through any `EtcdStore` rewrites the writer key,
//! the compare fails exactly when another writer committed after this one last looked:
//! its in-memory state is stale, and applying its batch could interleave a stale state
//! with the other's (a delete the other made undone, say). The batch is then refused
//! whole with [`StoreError::Conflict`]. Why this key and not the records' own revisions:
//! a compare on a range of records (`mod_revision(records/…) < F+1`) cannot see a key the
//! other writer *deleted*, and comparing each key of the batch would let two writers
//! interleave on disjoint keys. One key that every commit writes covers both. An absent
//! writer key compares as `mod_revision` 0 (etcd's rule), so a new store needs no setup.
//!
//! A commit whose answer was lost (a timeout) may still have been applied, moving the
//! writer key past `F`; [`Store::recover`] reads the key back and, if its value is this
//! store's id, adopts its revision (the commit was ours; the caller's repair decides
//! whether to keep it). If another id wrote it, recovery fails with `Conflict`.
//!
//! Revisions: [`Store::revision`] is the writer key's `mod_revision` (0 when absent),
//! which is strictly increasing across commits but not consecutive (etcd's revision
//! counts every change in the cluster, including the probe writes of `recover`).
//!
//! ## etcd's limits: the required flags
//! etcd refuses a transaction of more than `--max-txn-ops` operations (default 128) or a
//! request over `--max-request-bytes` (default 1.5 MiB). The control plane's writer puts
//! the changes of up to 1,024 API requests in one batch (and retention deletes up to 1,000
//! records in one), and a batch must not be split (its atomicity is the contract), so etcd
//! must run with larger limits: [`REQUIRED_FLAGS`]. The store refuses a larger batch itself,
//! before sending it, with [`StoreError::BatchTooLarge`] (limits in [`EtcdOptions`]), so
//! the error names the limit instead of being etcd's bare "too many operations".
//!
//! ## Threads
//! The [`Store`] trait is synchronous and is called from the control plane's writer thread
//! (and at start, possibly from inside a tokio runtime). The async client runs on a
//! current-thread tokio runtime driven by a dedicated thread; each call is spawned onto it
//! and its answer awaited on a plain channel, so any thread may call. Every etcd request is
//! bounded by [`EtcdOptions::timeout`].
//!
//! ## Several servers
//! Each server's writer commits through its own handle; [`Store::follow`] (in
//! `etcd_follow.rs`) delivers every commit to each server, which applies the others'
//! and then moves its fence with [`Store::caught_up`]. A commit refused with `Conflict`
//! is retried by the control plane after it caught up. `etcd_follow.rs` also elects the
//! one server whose controllers run ([`crate::Election`]).
//!
//! ## Limitations
//! `load` reads at one revision, page by page: a compaction of that revision during a
//! large load fails it (the caller retries).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
};

use crate::{Mutation, Store, StoreError};

/// Largest transaction, in operations, [`EtcdStore`] sends by default; etcd must run with
/// `--max-txn-ops` at least this.
pub const MAX_TXN_OPS: usize = 16_384;
/// Largest request, in bytes, [`EtcdStore`] sends by default (estimated); etcd must run
/// with `--max-request-bytes` at least this.
pub const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;
/// The flags an etcd member serving [`EtcdStore`] needs (with their default values
/// of [`MAX_TXN_OPS`] and [`MAX_REQUEST_BYTES`]).
pub const REQUIRED_FLAGS: [&str; 4] = ["--max-txn-ops", "16384", "--max-request-bytes", "33554432"];
/// How long a turn ([`Store::take_turn`]) lasts if its holder dies before giving it back.
pub const TURN_TTL: Duration = Duration::from_secs(2);
/// Records per range request of [`Store::load`].
pub const LOAD_PAGE: i64 = 1_000;
/// Bytes a response may have (a page of 1,000 large records); tonic's default is 4 MiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Per-operation overhead in the size estimate of a transaction (protobuf framing).
const OP_OVERHEAD: usize = 32;

/// How an [`EtcdStore`] talks to etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Key prefix of everything the store writes; ends with `/`.
    pub prefix: String,
    /// Bound on each etcd request (and on connecting).
    pub timeout: Duration,
    /// Largest transaction sent, in operations (see [`MAX_TXN_OPS`]).
    pub max_txn_ops: usize,
    /// Largest request sent, in estimated bytes (see [`MAX_REQUEST_BYTES`]).
    pub max_request_bytes: usize,
}

impl Default for EtcdOptions {
    fn default() -> EtcdOptions {
        EtcdOptions {
            prefix: "/flotilla/".to_owned(),
            timeout: Duration::from_secs(5),
            max_txn_ops: MAX_TXN_OPS,
            max_request_bytes: MAX_REQUEST_BYTES,
        }
    }
}

/// Runs futures on a current-thread runtime that a dedicated thread drives.
#[derive(Debug)]
struct Driver {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Driver {
    fn start() -> Result<Driver, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Transaction(format!("cannot start the etcd runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("flotilla-etcd".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| StoreError::Transaction(format!("cannot start the etcd thread: {e}")))?;
        Ok(Driver {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `fut` to completion on the driver's thread and returns its output.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // Every request in `fut` is bounded by a timeout, so this returns; a dropped
        // sender means the runtime has shut down.
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a handle knows between calls.
struct Fence {
    /// The connected client (replaced by [`Store::recover`]).
    client: Client,
    /// `mod_revision` of the writer key as this handle last saw it (see the module docs).
    expected: i64,
    /// The lease of the turn key while this handle holds the turn ([`Store::take_turn`]).
    turn: Option<i64>,
}

/// A [`Store`] in an etcd v3 cluster (see the module docs for the layout and the fence).
pub struct EtcdStore {
    endpoints: Vec<String>,
    options: EtcdOptions,
    /// This handle's identity as a writer (the writer key's value after its commits).
    id: String,
    driver: Driver,
    state: Mutex<Fence>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.options.prefix)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn etcd_err(what: &str) -> impl Fn(etcd_client::Error) -> StoreError + '_ {
    move |e| StoreError::Transaction(format!("etcd {what} failed: {e}"))
}

/// Bounds one request by `timeout`.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result.map_err(etcd_err(what)),
        Err(_) => Err(StoreError::Transaction(format!(
            "etcd {what} did not answer within {timeout:?}"
        ))),
    }
}

/// The end of the range of keys starting with `prefix` (etcd's "prefix end").
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The writer key's `mod_revision` (0 when absent) and value.
async fn read_writer(
    mut kv: KvClient,
    key: Vec<u8>,
    timeout: Duration,
) -> Result<(i64, Vec<u8>), StoreError> {
    let resp = bounded(timeout, "read of the writer key", kv.get(key, None)).await?;
    Ok(resp.kvs().first().map_or((0, Vec::new()), |kv| {
        (kv.mod_revision(), kv.value().to_vec())
    }))
}

pub(crate) fn kv_client(client: &Client) -> KvClient {
    client
        .kv_client()
        .max_decoding_message_size(MAX_RESPONSE_BYTES)
        .max_encoding_message_size(MAX_RESPONSE_BYTES)
}

fn to_u64(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

/// A writer id unlikely to repeat: process id, time, and a per-process counter.
fn writer_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "pid{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (each `HOST:PORT`, or a full
    /// `http://HOST:PORT` URL) and reads the writer key, so that an unreachable cluster is an
    /// error now ([`StoreError::Connect`]) rather than at the first commit.
    pub fn connect(endpoints: &[String], options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        if !options.prefix.ends_with('/') {
            return Err(StoreError::Transaction(format!(
                "the etcd key prefix must end with '/': {:?}",
                options.prefix
            )));
        }
        let driver = Driver::start()?;
        let connect_err = |cause: String| StoreError::Connect {
            endpoints: endpoints.join(","),
            cause,
        };
        let client = driver
            .run(Self::new_client(endpoints.to_vec(), options.timeout))
            .map_err(|e| connect_err(e.to_string()))?;
        let writer_key = format!("{}meta/writer", options.prefix).into_bytes();
        let (expected, _) = driver
            .run(read_writer(kv_client(&client), writer_key, options.timeout))
            .map_err(|e| connect_err(e.to_string()))?;
        Ok(EtcdStore {
            endpoints: endpoints.to_vec(),
            options,
            id: writer_id(),
            driver,
            state: Mutex::new(Fence {
                client,
                expected,
                turn: None,
            }),
        })
    }

    async fn new_client(endpoints: Vec<String>, timeout: Duration) -> Result<Client, StoreError> {
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout);
        bounded(timeout, "connect", Client::connect(urls, Some(options))).await
    }

    fn records_prefix(&self) -> String {
        format!("{}records/", self.options.prefix)
    }

    fn writer_key(&self) -> Vec<u8> {
        format!("{}meta/writer", self.options.prefix).into_bytes()
    }

    fn turn_key(&self) -> Vec<u8> {
        format!("{}meta/turn", self.options.prefix).into_bytes()
    }

    fn fence(&self) -> std::sync::MutexGuard<'_, Fence> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `ops` (then the writer key's put) as one transaction guarded by the fence; on
    /// success moves the fence to the new revision and returns it.
    fn fenced_txn(&self, mut ops: Vec<TxnOp>) -> Result<u64, StoreError> {
        let mut fence = self.fence();
        let writer_key = self.writer_key();
        ops.push(TxnOp::put(writer_key.clone(), self.id.clone(), None));
        // Nobody else holds the turn: it is absent, or ours.
        let turn = match fence.turn {
            Some(_) => Compare::value(self.turn_key(), CompareOp::Equal, self.id.clone()),
            None => Compare::version(self.turn_key(), CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(writer_key.clone(), CompareOp::Equal, fence.expected),
                turn,
            ])
            .and_then(ops)
            .or_else([TxnOp::get(writer_key, None)]);
        let mut kv = kv_client(&fence.client);
        let timeout = self.options.timeout;
        let resp = self
            .driver
            .run(async move { bounded(timeout, "transaction", kv.txn(txn)).await })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        if resp.succeeded() {
            fence.expected = revision;
            return Ok(to_u64(revision));
        }
        // The writer key moved: read its revision from the else branch for the message.
        let found = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                etcd_client::TxnOpResponse::Get(get) => {
                    Some(get.kvs().first().map_or(0, |kv| kv.mod_revision()))
                }
                _ => None,
            })
            .unwrap_or(revision);
        Err(StoreError::Conflict {
            expected: to_u64(fence.expected),
            found: to_u64(found),
        })
    }
}

/// Every record under `prefix` (keys without it), read page by page at one revision,
/// which it returns: one consistent snapshot.
pub(crate) async fn load_at(
    mut kv: KvClient,
    prefix: Vec<u8>,
    timeout: Duration,
) -> Result<(i64, Vec<(String, Vec<u8>)>), StoreError> {
    let end = prefix_end(&prefix);
    let mut out = Vec::new();
    let mut from = prefix.clone();
    // The first page fixes the revision every later page reads at: one snapshot.
    let mut at = 0;
    loop {
        let options = GetOptions::new()
            .with_range(end.clone())
            .with_limit(LOAD_PAGE)
            .with_revision(at);
        let mut resp = bounded(timeout, "range read", kv.get(from.clone(), Some(options))).await?;
        if at == 0 {
            at = resp.header().map_or(0, |h| h.revision());
        }
        let more = resp.more();
        let kvs = resp.take_kvs();
        if let Some(last) = kvs.last() {
            from = last.key().to_vec();
            from.push(0);
        }
        let empty = kvs.is_empty();
        for kv in kvs {
            let (key, value) = kv.into_key_value();
            let key = String::from_utf8(key[prefix.len()..].to_vec()).map_err(|e| {
                StoreError::Transaction(format!("a record key in etcd is not UTF-8: {e}"))
            })?;
            out.push((key, value));
        }
        if !more || empty {
            return Ok((at, out));
        }
    }
}

/// What [`crate::etcd_follow`] needs of a store.
impl EtcdStore {
    pub(crate) fn prefix(&self) -> &str {
        &self.options.prefix
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.options.timeout
    }

    /// The connected client (a cheap clone sharing its channel).
    pub(crate) fn client(&self) -> Client {
        self.fence().client.clone()
    }

    /// The runtime the client lives on.
    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        self.driver.handle.clone()
    }

    /// Runs `fut` in the background on the store's runtime.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.driver.handle.spawn(fut);
    }
}

impl Store for EtcdStore {
    fn load(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = self.records_prefix().into_bytes();
        let kv = kv_client(&self.fence().client);
        let timeout = self.options.timeout;
        self.driver.run(async move {
            load_at(kv, prefix, timeout)
                .await
                .map(|(_, records)| records)
        })
    }

    fn commit(&self, batch: &[Mutation]) -> Result<u64, StoreError> {
        // etcd refuses a transaction that touches a key twice, so later changes of a key
        // replace earlier ones here (the result the batch has applied in order).
        let mut last: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
        for m in batch {
            match m {
                Mutation::Put { key, value } => last.insert(key, Some(value)),
                Mutation::Delete { key } => last.insert(key, None),
            };
        }
        let prefix = self.records_prefix();
        let ops_count = last.len() + 1;
        let bytes: usize = last
            .iter()
            .map(|(k, v)| prefix.len() + k.len() + v.map_or(0, <[u8]>::len) + OP_OVERHEAD)
            .sum::<usize>()
            + self.writer_key().len()
            + self.id.len()
            + OP_OVERHEAD;
        if ops_count > self.options.max_txn_ops || bytes > self.options.max_request_bytes {
            return Err(StoreError::BatchTooLarge {
                ops: ops_count,
                bytes,
                max_ops: self.options.max_txn_ops,
                max_bytes: self.options.max_request_bytes,
            });
        }
        let ops = last
            .into_iter()
            .map(|(key, value)| {
                let key = format!("{prefix}{key}");
                match value {
                    Some(v) => TxnOp::put(key, v.to_vec(), None),
                    None => TxnOp::delete(key, None),
                }
            })
            .collect();
        self.fenced_txn(ops)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let kv = kv_client(&self.fence().client);
        let (revision, _) =
            self.driver
                .run(read_writer(kv, self.writer_key(), self.options.timeout))?;
        Ok(to_u64(revision))
    }

    fn wipe(&self) -> Result<(), StoreError> {
        let prefix = self.records_prefix();
        let range = DeleteOptions::new().with_range(prefix_end(prefix.as_bytes()));
        self.fenced_txn(vec![TxnOp::delete(prefix, Some(range))])
            .map(|_| ())
    }

    fn follow(&self, after: u64, sink: tokio::sync::mpsc::Sender<crate::Followed>) -> bool {
        crate::etcd_follow::spawn_follow(self, self.client(), after, sink);
        true
    }

    fn caught_up(&self, revision: u64) {
        self.fence().expected = i64::try_from(revision).unwrap_or(i64::MAX);
    }

    /// Creates `<prefix>meta/turn` (this store's id, on a lease of [`TURN_TTL`], so a
    /// holder that dies frees it) if nobody holds it, reading the writer key's revision in
    /// the same transaction.
    fn take_turn(&self) -> Result<Option<u64>, StoreError> {
        let mut fence = self.fence();
        if fence.turn.is_some() {
            return Ok(Some(to_u64(fence.expected)));
        }
        let timeout = self.options.timeout;
        let (turn_key, writer_key, id) = (self.turn_key(), self.writer_key(), self.id.clone());
        let client = fence.client.clone();
        let taken = self.driver.run(async move {
            let mut leases = client.lease_client();
            let ttl = i64::try_from(TURN_TTL.as_secs()).unwrap_or(2);
            let lease = bounded(timeout, "lease grant", leases.grant(ttl, None))
                .await?
                .id();
            let txn = Txn::new()
                .when([Compare::version(turn_key.clone(), CompareOp::Equal, 0)])
                .and_then([
                    TxnOp::put(
                        turn_key,
                        id,
                        Some(etcd_client::PutOptions::new().with_lease(lease)),
                    ),
                    TxnOp::get(writer_key, None),
                ]);
            let resp = bounded(timeout, "turn", kv_client(&client).txn(txn)).await?;
            if !resp.succeeded() {
                let _ = leases.revoke(lease).await;
                return Ok(None);
            }
            let writer = resp.op_responses().into_iter().find_map(|r| match r {
                etcd_client::TxnOpResponse::Get(get) => {
                    Some(get.kvs().first().map_or(0, |kv| kv.mod_revision()))
                }
                _ => None,
            });
            Ok(Some((lease, writer.unwrap_or(0))))
        })?;
        Ok(taken.map(|(lease, writer)| {
            fence.turn = Some(lease);
            to_u64(writer)
        }))
    }

    fn release_turn(&self) {
        let mut fence = self.fence();
        let Some(lease) = fence.turn.take() else {
            return;
        };
        let mut leases = fence.client.lease_client();
        let timeout = self.options.timeout;
        // If this fails the lease ends by itself within TURN_TTL.
        let _ = self.driver.run(async move {
            bounded(timeout, "lease revoke", leases.revoke(lease)).await?;
            Ok(())
        });
    }

    /// Reconnects, settles the fence after a commit whose answer was lost (see the module
    /// docs), and proves that etcd takes writes with a put and a delete of a scratch key
    /// outside the records (`<prefix>meta/probe/<id>`).
    fn recover(&self) -> Result<(), StoreError> {
        let mut fence = self.fence();
        let timeout = self.options.timeout;
        let client = self
            .driver
            .run(Self::new_client(self.endpoints.clone(), timeout))?;
        let (revision, writer) =
            self.driver
                .run(read_writer(kv_client(&client), self.writer_key(), timeout))?;
        fence.client = client;
        if revision != fence.expected {
            if writer != self.id.as_bytes() {
                return Err(StoreError::Conflict {
                    expected: to_u64(fence.expected),
                    found: to_u64(revision),
                });
            }
            // Our own commit landed although its answer was lost.
            fence.expected = revision;
        }
        let mut kv = kv_client(&fence.client);
        let probe = format!("{}meta/probe/{}", self.options.prefix, self.id);
        self.driver.run(async move {
            bounded(
                timeout,
                "probe write",
                kv.put(probe.clone(), vec![0u8; 1024], None),
            )
            .await?;
            bounded(timeout, "probe delete", kv.delete(probe, None)).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
