//! The host API server: HTTP/1.1 on a Unix socket.
//!
//! Every request is parsed into one [`HostAction`] by [`parse_request`] and executed by
//! [`dispatch`] — one routing `match` for the whole surface (Firecracker's `parsed_request`
//! shape). Handlers are short calls into the datastore, services and updater modules.
//!
//! | route | action |
//! | --- | --- |
//! | `GET /` (`?prefix=`) | settings + os |
//! | `GET /settings` (`?keys=a,b` or `?prefix=`) | live settings |
//! | `PATCH /settings?tx=` | merge a JSON document into a pending transaction (204) |
//! | `PATCH /settings/keypair?tx=` | `{"request_payload": ["k=v", …]}` (204) |
//! | `GET /tx?tx=`, `GET /tx/list`, `DELETE /tx?tx=` | inspect / drop transactions |
//! | `POST /tx/commit?tx=` | commit; changed keys (422 if nothing pending) |
//! | `POST /tx/apply` (`?keys=`) | re-render + restart affected services (204) |
//! | `POST /tx/commit_and_apply?tx=` | both; changed keys (400: a refused sysctl rolled back; 502: committed but not applied — [`HostState::commit_and_apply`]) |
//! | `GET /os` | running image |
//! | `GET /updates/status` | update state machine (404 before the first command) |
//! | `POST /actions/{refresh-updates,prepare-update,activate-update,deactivate-update}` | async update commands (204; 409 wrong state, 423 busy) |
//! | `POST /actions/rollback` | boot the other slot next |
//! | `POST /actions/reboot` | stop the node's software; the init runs `flotilla host boot` again |
//!
//! The default transaction name is `default`. Request bodies are limited to
//! [`crate::limits::MAX_BODY_BYTES`] (413).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::UnixListener;
use updater::node::{Node, UpdateConfig};
use updater::status::UpdateCommand;

use crate::datastore::Datastore;
use crate::error::{Error, Result};
use crate::services::{self, Paths, Restarter, Service};
use crate::settings;

/// Transaction used by the host itself at startup (seed generation, user-data).
pub const LAUNCH_TX: &str = "flotilla-launch";

/// One parsed request.
#[derive(Debug, Clone, PartialEq)]
pub enum HostAction {
    /// `GET /`.
    GetModel {
        /// Dotted-key prefix filter.
        prefix: Option<String>,
    },
    /// `GET /settings`.
    GetSettings {
        /// Exact keys.
        keys: Option<Vec<String>>,
        /// Prefix filter.
        prefix: Option<String>,
    },
    /// `PATCH /settings`.
    PatchSettings {
        /// Transaction.
        tx: String,
        /// Settings document.
        body: Value,
    },
    /// `PATCH /settings/keypair`.
    PatchKeyPairs {
        /// Transaction.
        tx: String,
        /// `key=value` strings.
        pairs: Vec<String>,
    },
    /// `GET /tx`.
    GetTx {
        /// Transaction.
        tx: String,
    },
    /// `GET /tx/list`.
    ListTx,
    /// `DELETE /tx`.
    DeleteTx {
        /// Transaction.
        tx: String,
    },
    /// `POST /tx/commit`.
    Commit {
        /// Transaction.
        tx: String,
    },
    /// `POST /tx/apply`.
    Apply {
        /// Only services affected by these keys; all when `None`.
        keys: Option<Vec<String>>,
    },
    /// `POST /tx/commit_and_apply`.
    CommitAndApply {
        /// Transaction.
        tx: String,
    },
    /// `GET /os`.
    GetOs {
        /// Field-name prefix.
        prefix: Option<String>,
    },
    /// `GET /updates/status`.
    UpdateStatus,
    /// `POST /actions/…-update(s)`.
    Update(UpdateCommand),
    /// `POST /actions/rollback`.
    Rollback,
    /// `POST /actions/reboot`.
    Reboot,
}

/// What a successful action returns.
#[derive(Debug, Clone, PartialEq)]
pub enum HostResponse {
    /// 200 with a JSON body.
    Json(Value),
    /// 204.
    NoContent,
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn json_body(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("body is not JSON: {e}")))
}

/// Parses method + URI + body into an action.
///
/// # Errors
/// [`Error::NoRoute`] or [`Error::BadRequest`].
pub fn parse_request(method: &Method, uri: &Uri, body: &[u8]) -> Result<HostAction> {
    let q = query_map(uri);
    let tx = || q.get("tx").cloned().unwrap_or_else(|| "default".to_owned());
    let list = |k: &str| {
        q.get(k).map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(settings::full_key)
                .collect::<Vec<_>>()
        })
    };
    let prefix = |root: bool| {
        q.get("prefix").map(|p| {
            if root || p.starts_with("os") {
                p.clone()
            } else {
                settings::full_key(p)
            }
        })
    };
    let action = match (method.as_str(), uri.path()) {
        ("GET", "/") => HostAction::GetModel {
            prefix: prefix(true),
        },
        ("GET", "/settings") => HostAction::GetSettings {
            keys: list("keys"),
            prefix: prefix(false),
        },
        ("PATCH", "/settings") => HostAction::PatchSettings {
            tx: tx(),
            body: json_body(body)?,
        },
        ("PATCH", "/settings/keypair") => {
            let v = json_body(body)?;
            let pairs = v
                .get("request_payload")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Error::BadRequest("expected {\"request_payload\": [\"k=v\", ...]}".into())
                })?
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| Error::InvalidKeyPair(p.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            HostAction::PatchKeyPairs { tx: tx(), pairs }
        }
        ("GET", "/tx") => HostAction::GetTx { tx: tx() },
        ("GET", "/tx/list") => HostAction::ListTx,
        ("DELETE", "/tx") => HostAction::DeleteTx { tx: tx() },
        ("POST", "/tx/commit") => HostAction::Commit { tx: tx() },
        ("POST", "/tx/apply") => HostAction::Apply { keys: list("keys") },
        ("POST", "/tx/commit_and_apply") => HostAction::CommitAndApply { tx: tx() },
        ("GET", "/os") => HostAction::GetOs {
            prefix: q.get("prefix").cloned(),
        },
        ("GET", "/updates/status") => HostAction::UpdateStatus,
        ("POST", "/actions/refresh-updates") => HostAction::Update(UpdateCommand::Refresh),
        ("POST", "/actions/prepare-update") => HostAction::Update(UpdateCommand::Prepare),
        ("POST", "/actions/activate-update") => HostAction::Update(UpdateCommand::Activate),
        ("POST", "/actions/deactivate-update") => HostAction::Update(UpdateCommand::Deactivate),
        ("POST", "/actions/rollback") => HostAction::Rollback,
        ("POST", "/actions/reboot") => HostAction::Reboot,
        (m, p) => {
            return Err(Error::NoRoute {
                method: m.to_owned(),
                path: p.to_owned(),
            });
        }
    };
    Ok(action)
}

/// Guesses the JSON type of a `key=value` value as Bottlerocket's apiclient does (bool, then
/// integer, then float, else string); a JSON list or object (`["a","b"]`) is taken as such.
#[must_use]
pub fn guess_value(v: &str) -> Value {
    if (v.starts_with('[') || v.starts_with('{'))
        && let Ok(j) = serde_json::from_str::<Value>(v)
    {
        return j;
    }
    if let Ok(b) = v.parse::<bool>() {
        return Value::Bool(b);
    }
    if let Ok(n) = v.parse::<u64>() {
        return Value::from(n);
    }
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        return Value::from(f);
    }
    Value::String(v.to_owned())
}

/// Turns `key=value` pairs into one settings document. A value whose guessed type the schema
/// refuses is retried as a string (so `ecs.cluster=123` is the cluster named "123").
///
/// # Errors
/// Malformed pairs or keys, or values the schema refuses either way.
pub fn pairs_to_doc(pairs: &[String]) -> Result<Value> {
    let mut doc = Value::Object(Map::new());
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Error::InvalidKeyPair(p.clone()))?;
        let key = settings::full_key(k.trim());
        let path =
            updater::migration::split_key(&key).map_err(|_| Error::InvalidKeyPair(p.clone()))?;
        // A key nests one object per segment: bound the depth before building it.
        if path.len() > crate::limits::MAX_KEY_SEGMENTS {
            return Err(Error::BadRequest(format!(
                "key {:?}… has more than {} segments",
                key.chars().take(64).collect::<String>(),
                crate::limits::MAX_KEY_SEGMENTS
            )));
        }
        let Some(("settings", rest)) = path.split_first().map(|(a, b)| (a.as_str(), b)) else {
            return Err(Error::InvalidKeyPair(p.clone()));
        };
        if rest.is_empty() {
            return Err(Error::InvalidKeyPair(p.clone()));
        }
        let mut single = Value::Object(Map::new());
        let guessed = guess_value(v);
        updater::migration::set(&mut single, rest, guessed.clone())
            .map_err(Error::InvalidKeyPair)?;
        if settings::validate(&single).is_err() && !guessed.is_string() {
            single = Value::Object(Map::new());
            updater::migration::set(&mut single, rest, Value::String(v.to_owned()))
                .map_err(Error::InvalidKeyPair)?;
        }
        settings::validate(&single)?;
        settings::merge(&mut doc, &single);
    }
    Ok(doc)
}

/// Static configuration of a host API server.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Persistent data directory (holds `datastore/`).
    pub data_dir: PathBuf,
    /// Where rendered files and sysctls go.
    pub paths: Paths,
    /// The node (slots, partition flags) for `/os` and update actions; `None` for a bare
    /// settings server.
    pub node: Option<Node>,
}

/// Shared server state.
pub struct HostState {
    ds: std::sync::Mutex<Datastore>,
    cfg: HostConfig,
    restarter: Arc<dyn Restarter>,
    update_lock: Arc<tokio::sync::Mutex<()>>,
    apply_lock: std::sync::Mutex<()>,
    reboot_tx: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl HostState {
    /// Opens the datastore (creating it at the running image's version) and generates the
    /// update seed if unset (committed, so it is stable for the node's life).
    ///
    /// # Errors
    /// Datastore failures.
    pub fn new(cfg: HostConfig, restarter: Arc<dyn Restarter>) -> Result<Arc<Self>> {
        let version = cfg
            .node
            .as_ref()
            .and_then(|n| n.active_image().ok())
            .map_or_else(|| semver::Version::new(0, 0, 0), |i| i.version);
        let ds = Datastore::open(&cfg.data_dir, &version)?;
        ensure_seed(&ds)?;
        let (reboot_tx, _) = tokio::sync::watch::channel(false);
        Ok(Arc::new(HostState {
            ds: std::sync::Mutex::new(ds),
            cfg,
            restarter,
            update_lock: Arc::new(tokio::sync::Mutex::new(())),
            apply_lock: std::sync::Mutex::new(()),
            reboot_tx,
        }))
    }

    fn ds(&self) -> Result<std::sync::MutexGuard<'_, Datastore>> {
        self.ds.lock().map_err(|_| Error::Datastore {
            path: self.cfg.data_dir.clone(),
            message: "datastore lock poisoned".into(),
        })
    }

    /// The live settings, typed.
    ///
    /// # Errors
    /// Datastore failures.
    pub fn settings(&self) -> Result<settings::Settings> {
        settings::validate(&self.ds()?.live()?)
    }

    /// Patches `doc` into transaction `tx` and commits it (no apply), under the same lock as
    /// API requests. Used by the host itself (first-boot steps, bootstrap `once` → `off`).
    ///
    /// # Errors
    /// Validation or datastore failures.
    pub fn patch_and_commit(&self, tx: &str, doc: &Value) -> Result<Vec<String>> {
        let ds = self.ds()?;
        ds.patch(tx, doc)?;
        ds.commit(tx)
    }

    /// Resolves when `POST /actions/reboot` was called.
    pub fn reboot_requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.reboot_tx.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }

    fn apply_guard(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.apply_lock.lock().map_err(|_| Error::Apply {
            service: "all".into(),
            message: "apply lock poisoned".into(),
        })
    }

    /// Renders and restarts the given services (all when `None`) and reports what failed;
    /// every service is attempted.
    ///
    /// # Errors
    /// Reading the settings.
    pub fn apply_report(
        &self,
        only: Option<std::collections::BTreeSet<Service>>,
    ) -> Result<services::ApplyReport> {
        // One apply at a time, reading the settings inside the lock: the last apply always
        // renders the last committed state.
        let _guard = self.apply_guard()?;
        let s = self.settings()?;
        let set = only.unwrap_or_else(|| Service::ALL.into_iter().collect());
        Ok(services::apply(
            &set,
            &s,
            &self.cfg.paths,
            self.restarter.as_ref(),
        ))
    }

    /// Renders and restarts the given services (all when `None`).
    ///
    /// # Errors
    /// [`Error::Apply`] naming every failed service (the others were applied).
    pub fn apply(
        &self,
        only: Option<std::collections::BTreeSet<Service>>,
    ) -> Result<services::ApplyReport> {
        self.apply_report(only)?.into_result()
    }

    /// Commits transaction `tx` and applies the services its changed keys affect. Returns the
    /// changed keys.
    ///
    /// Like Bottlerocket, the commit comes first. What happens when applying fails:
    /// * a sysctl key of this transaction that the kernel refuses (unknown key, read-only,
    ///   invalid value) is **rolled back**: put back to its previous value, or removed if it
    ///   had none (compare-and-swap, so a concurrent commit is never undone). The kernel kept
    ///   its old value, so settings and kernel agree again. The rest of the transaction stays
    ///   committed and applied. Answer: [`Error::PartiallyApplied`], **400** naming the keys.
    /// * anything else (a restart command, writing a file, a sysctl committed earlier) leaves
    ///   the keys committed but not in effect. Answer: [`Error::PartiallyApplied`], **502**,
    ///   naming the keys and saying they are committed but not applied.
    ///
    /// # Errors
    /// As above; [`Error::NothingPending`], validation, limits and datastore failures of the
    /// commit (nothing committed).
    pub fn commit_and_apply(&self, tx: &str) -> Result<Vec<String>> {
        // Held across commit, apply and rollback so that no other apply interleaves.
        let _guard = self.apply_guard()?;
        let (old, changed) = {
            let ds = self.ds()?;
            let old = ds.live()?;
            (old, ds.commit(tx)?)
        };
        let affected = services::affected(&changed);
        let s = self.settings()?;
        let mut report = services::apply(&affected, &s, &self.cfg.paths, self.restarter.as_ref());
        if report.failed.is_empty() {
            return Ok(changed);
        }

        let rejected = self.roll_back_refused_sysctls(&old, &changed, &mut report)?;
        Err(partially_applied(&changed, rejected, &report))
    }

    /// Rolls back the sysctl keys of a just-committed transaction that the kernel refused
    /// (compare-and-swap against the committed value), re-renders `sysctl.toml` and runs the
    /// sysctl restart the failure skipped. Updates `report` to what is still failing and
    /// returns the rolled-back keys with the kernel's reason.
    fn roll_back_refused_sysctls(
        &self,
        old: &Value,
        changed: &[String],
        report: &mut services::ApplyReport,
    ) -> Result<Vec<(String, String)>> {
        let new_flat = settings::flatten(&self.ds()?.live()?, "settings.");
        let old_flat = settings::flatten(old, "settings.");
        let mut rejected = Vec::new();
        let mut restores = Vec::new();
        for (k, why) in &report.rejected_sysctls {
            let full = sysctl_key(k);
            if let (true, Some(committed)) = (changed.contains(&full), new_flat.get(&full)) {
                restores.push((
                    full.clone(),
                    committed.clone(),
                    old_flat.get(&full).cloned(),
                ));
                rejected.push((full, why.clone()));
            }
        }
        if restores.is_empty() {
            return Ok(rejected);
        }
        self.ds()?.restore(&restores)?;
        // The kernel kept the refused keys' old values and the other keys were written: only
        // sysctl.toml needs rendering again, then the restart the failure skipped.
        let s = self.settings()?;
        report
            .rejected_sysctls
            .retain(|k, _| !rejected.iter().any(|(full, _)| *full == sysctl_key(k)));
        report.failed.retain(|f| f.service != Service::Sysctl);
        let mut failure = services::write_rendered(Service::Sysctl, &s, &self.cfg.paths).err();
        if failure.is_none() && !report.rejected_sysctls.is_empty() {
            failure = Some(format!(
                "could not write {}",
                report
                    .rejected_sysctls
                    .iter()
                    .map(|(k, why)| format!("{k} ({why})"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if failure.is_none() {
            failure = self.restarter.restart(Service::Sysctl, &s).err();
        }
        if let Some(message) = failure {
            report.failed.push(services::ServiceFailure {
                service: Service::Sysctl,
                message,
            });
        }
        Ok(rejected)
    }

    fn update_config(&self) -> Result<Option<UpdateConfig>> {
        let s = self.settings()?;
        let u = s.updates.unwrap_or_default();
        match (u.metadata_base_url, u.targets_base_url) {
            (Some(m), Some(t)) => Ok(Some(UpdateConfig {
                metadata_base_url: m.to_string(),
                targets_base_url: t.to_string(),
                seed: u.seed.map_or(0, u32::from),
                ignore_waves: u.ignore_waves.unwrap_or(false),
                version_lock: u.version_lock.and_then(|v| v.version()),
            })),
            _ => Ok(None),
        }
    }

    fn os(&self) -> Value {
        let from_node = self.cfg.node.as_ref().and_then(|n| {
            let p = n.partition().ok()?;
            std::fs::read_to_string(n.slot_dir(p.active).join("os-release")).ok()
        });
        let arch = std::env::consts::ARCH;
        match from_node {
            Some(text) => {
                let m = updater::image::parse_os_release(&text);
                let g = |k: &str| m.get(k).cloned().unwrap_or_default();
                json!({"pretty_name": g("PRETTY_NAME"), "variant_id": g("VARIANT_ID"),
                       "version_id": g("VERSION_ID"), "build_id": g("BUILD_ID"), "arch": arch})
            }
            None => json!({"pretty_name": format!("flotilla {}", env!("CARGO_PKG_VERSION")),
                           "variant_id": "flotilla-dev", "version_id": env!("CARGO_PKG_VERSION"),
                           "build_id": "dev", "arch": arch}),
        }
    }
}

/// The dotted key of a sysctl, as [`settings::flatten`] writes it.
fn sysctl_key(k: &str) -> String {
    format!("settings.kernel.sysctl.{}", settings::quote_segment(k))
}

/// The answer of a `commit_and_apply` whose apply failed: names every rolled-back key (with
/// the kernel's reason) and every key committed but not applied (with the service's failure).
fn partially_applied(
    changed: &[String],
    rejected: Vec<(String, String)>,
    report: &services::ApplyReport,
) -> Error {
    let mut parts: Vec<String> = rejected
        .iter()
        .map(|(k, why)| {
            format!(
                "{k}: the kernel refused the value ({why}); rolled back to its previous value, \
                 not committed"
            )
        })
        .collect();
    let mut not_applied = Vec::new();
    for f in &report.failed {
        let of_service = |k: &&String| {
            services::affected([*k]).contains(&f.service) && !rejected.iter().any(|(r, _)| r == *k)
        };
        let keys: Vec<String> =
            if f.service == Service::Sysctl && !report.rejected_sysctls.is_empty() {
                // Sysctls that do not apply, whether from this transaction or committed earlier.
                report
                    .rejected_sysctls
                    .keys()
                    .map(|k| sysctl_key(k))
                    .collect()
            } else {
                changed.iter().filter(of_service).cloned().collect()
            };
        let what = if keys.is_empty() {
            format!("service {}", f.service)
        } else {
            keys.join(", ")
        };
        parts.push(format!(
            "{what}: committed but not applied: service {}: {}",
            f.service, f.message
        ));
        not_applied.push(what);
    }
    if report.failed.is_empty() {
        let others = changed.len() - rejected.len();
        if others > 0 {
            parts.push(format!(
                "the transaction's other {others} changed key(s) were committed and applied"
            ));
        }
    } else {
        parts.push(
            "the settings are live in the datastore; fix the cause and re-apply (POST /tx/apply)"
                .to_owned(),
        );
    }
    Error::PartiallyApplied {
        rejected: rejected.into_iter().map(|(k, _)| k).collect(),
        not_applied,
        message: parts.join("; "),
    }
}

/// Commits a random seed in `[0, 2048)` if `settings.updates.seed` is unset.
fn ensure_seed(ds: &Datastore) -> Result<()> {
    let live = ds.live()?;
    if live.pointer("/updates/seed").is_some() {
        return Ok(());
    }
    let seed = rand::random_range(0..updater::manifest::MAX_SEED);
    ds.patch(LAUNCH_TX, &json!({"updates": {"seed": seed}}))?;
    ds.commit(LAUNCH_TX)?;
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Http(format!("worker panicked: {e}")))?
}

/// Executes one action. The only routing `match`.
///
/// # Errors
/// Whatever the action fails with; the caller maps it to a status with [`Error::status`].
pub async fn dispatch(state: Arc<HostState>, action: HostAction) -> Result<HostResponse> {
    let st = state.clone();
    match action {
        HostAction::GetModel { prefix } => {
            blocking(move || {
                let live = st.ds()?.live()?;
                let mut model = json!({"settings": live, "os": st.os()});
                if let Some(p) = prefix {
                    if p.is_empty() {
                        return Err(Error::BadRequest("empty prefix".into()));
                    }
                    let mut out = settings::filter_prefix(&model["settings"], "settings", &p);
                    let os: Map<String, Value> = model["os"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| format!("os.{k}").starts_with(&p) || p == "os")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    if !os.is_empty() {
                        out["os"] = Value::Object(os);
                    }
                    model = out;
                }
                Ok(HostResponse::Json(model))
            })
            .await
        }
        HostAction::GetSettings { keys, prefix } => {
            blocking(move || {
                let live = st.ds()?.live()?;
                let v = if let Some(keys) = keys {
                    let flat = settings::flatten(&live, "settings.");
                    let mut out = Value::Object(Map::new());
                    for (k, v) in flat {
                        if keys
                            .iter()
                            .any(|want| &k == want || k.starts_with(&format!("{want}.")))
                        {
                            let path =
                                updater::migration::split_key(&k).map_err(Error::BadRequest)?;
                            updater::migration::set(&mut out, &path[1..], v)
                                .map_err(Error::BadRequest)?;
                        }
                    }
                    out
                } else if let Some(p) = prefix {
                    settings::filter_prefix(&live, "settings", &p)
                        .get("settings")
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Map::new()))
                } else {
                    live
                };
                Ok(HostResponse::Json(v))
            })
            .await
        }
        HostAction::PatchSettings { tx, body } => {
            blocking(move || {
                st.ds()?.patch(&tx, &body)?;
                Ok(HostResponse::NoContent)
            })
            .await
        }
        HostAction::PatchKeyPairs { tx, pairs } => {
            blocking(move || {
                let doc = pairs_to_doc(&pairs)?;
                st.ds()?.patch(&tx, &doc)?;
                Ok(HostResponse::NoContent)
            })
            .await
        }
        HostAction::GetTx { tx } => {
            blocking(move || Ok(HostResponse::Json(st.ds()?.pending(&tx)?))).await
        }
        HostAction::ListTx => {
            blocking(move || Ok(HostResponse::Json(json!(st.ds()?.list_tx()?)))).await
        }
        HostAction::DeleteTx { tx } => {
            blocking(move || Ok(HostResponse::Json(json!(st.ds()?.delete_tx(&tx)?)))).await
        }
        HostAction::Commit { tx } => {
            blocking(move || Ok(HostResponse::Json(json!(st.ds()?.commit(&tx)?)))).await
        }
        HostAction::Apply { keys } => {
            blocking(move || {
                let only = keys.map(|k| services::affected(&k));
                st.apply(only)?;
                Ok(HostResponse::NoContent)
            })
            .await
        }
        HostAction::CommitAndApply { tx } => {
            blocking(move || Ok(HostResponse::Json(json!(st.commit_and_apply(&tx)?)))).await
        }
        HostAction::GetOs { prefix } => {
            let os = state.os();
            let v = match prefix {
                Some(p) => Value::Object(
                    os.as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| k.starts_with(&p))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                None => os,
            };
            Ok(HostResponse::Json(v))
        }
        HostAction::UpdateStatus => {
            let node = state.cfg.node.clone().ok_or(Error::NoNode)?;
            blocking(move || match node.load_status()? {
                Some(s) => Ok(HostResponse::Json(
                    serde_json::to_value(s).map_err(|e| Error::Http(e.to_string()))?,
                )),
                None => Err(Error::Update(updater::Error::StatusUninitialized)),
            })
            .await
        }
        HostAction::Update(cmd) => {
            let node = state.cfg.node.clone().ok_or(Error::NoNode)?;
            let guard = state
                .update_lock
                .clone()
                .try_lock_owned()
                .map_err(|_| Error::Update(updater::Error::Locked))?;
            let n2 = node.clone();
            let status = blocking(move || Ok(updater::node::begin(&n2, cmd)?)).await?;
            let cfg = state.update_config()?;
            tokio::spawn(async move {
                let _guard = guard;
                if let Err(e) = updater::node::execute(&node, cfg.as_ref(), cmd, status).await {
                    tracing::error!(error = %e, "recording update status failed");
                }
            });
            Ok(HostResponse::NoContent)
        }
        HostAction::Rollback => {
            let node = state.cfg.node.clone().ok_or(Error::NoNode)?;
            let _guard = state
                .update_lock
                .clone()
                .try_lock_owned()
                .map_err(|_| Error::Update(updater::Error::Locked))?;
            updater::node::rollback(&node)?;
            Ok(HostResponse::NoContent)
        }
        HostAction::Reboot => {
            let _ = state.reboot_tx.send(true);
            Ok(HostResponse::NoContent)
        }
    }
}

async fn handle(
    State(state): State<Arc<HostState>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let result = match parse_request(&method, &uri, &body) {
        Ok(action) => dispatch(state, action).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(HostResponse::Json(v)) => (StatusCode::OK, axum::Json(v)).into_response(),
        Ok(HostResponse::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::debug!(%method, %uri, error = %e, "request failed");
            e.into_response()
        }
    }
}

/// Binds the API socket (removing a stale one) with mode 0660.
///
/// # Errors
/// Bind or chmod failure.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serves the API on `listener` until `shutdown` resolves.
///
/// # Errors
/// Accept-loop IO failures.
pub async fn run(
    listener: UnixListener,
    state: Arc<HostState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::limits::MAX_BODY_BYTES,
        ))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(m: &str, u: &str, body: &str) -> Result<HostAction> {
        parse_request(
            &Method::from_bytes(m.as_bytes()).unwrap(),
            &u.parse().unwrap(),
            body.as_bytes(),
        )
    }

    #[test]
    fn parses_every_route() {
        assert_eq!(
            parse("GET", "/settings?prefix=ecs", "").unwrap(),
            HostAction::GetSettings {
                keys: None,
                prefix: Some("settings.ecs".into())
            }
        );
        assert_eq!(
            parse("PATCH", "/settings?tx=t", "{\"motd\":\"x\"}").unwrap(),
            HostAction::PatchSettings {
                tx: "t".into(),
                body: json!({"motd": "x"})
            }
        );
        assert_eq!(
            parse("POST", "/tx/commit", "").unwrap(),
            HostAction::Commit {
                tx: "default".into()
            }
        );
        assert_eq!(
            parse("POST", "/tx/apply?keys=ecs.cluster", "").unwrap(),
            HostAction::Apply {
                keys: Some(vec!["settings.ecs.cluster".into()])
            }
        );
        assert_eq!(
            parse("POST", "/actions/prepare-update", "").unwrap(),
            HostAction::Update(UpdateCommand::Prepare)
        );
        assert_eq!(
            parse("DELETE", "/tx?tx=a", "").unwrap(),
            HostAction::DeleteTx { tx: "a".into() }
        );
        assert!(matches!(
            parse("GET", "/nope", ""),
            Err(Error::NoRoute { .. })
        ));
        assert!(matches!(
            parse("PATCH", "/settings", "{bad"),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn keypairs_guess_types_and_fall_back_to_string() {
        let d = pairs_to_doc(&[
            "ecs.cluster=123".into(),
            "settings.updates.ignore-waves=true".into(),
            "updates.seed=7".into(),
            r#"kernel.sysctl."net.ipv4.ip_forward"=1"#.into(),
        ])
        .unwrap();
        assert_eq!(
            d,
            json!({"ecs": {"cluster": "123"}, "updates": {"ignore-waves": true, "seed": 7},
            "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}})
        );
        assert!(matches!(
            pairs_to_doc(&["novalue".into()]),
            Err(Error::InvalidKeyPair(_))
        ));
        let e = pairs_to_doc(&["ecs.bogus=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}
