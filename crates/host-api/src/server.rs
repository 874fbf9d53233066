//! The host API server: HTTP/1.1 on a Unix socket.
//!
//! Every request is parsed into one [`HostAction`] by [`parse_request`] and executed by
//! [`dispatch`] — one routing `match` for the whole surface (Firecracker's `parsed_request`
//! shape). Handlers are short calls into the controller functions — [`HostState`], the
//! datastore, the pure views of [`crate::settings`] and the updater — and every one that
//! touches the disk runs on tokio's blocking pool (`spawn_blocking`), never on the executor.
//!
//! * `request` — parsing ([`parse_request`], [`pairs_to_doc`]), pure;
//! * `state` — [`HostState`]: datastore, tolerant loading, apply, `commit_and_apply`;
//! * this file — [`dispatch`], the HTTP plumbing ([`bind`], [`run`]).
//!
//! | route | action |
//! | --- | --- |
//! | `GET /` (`?prefix=`) | settings in effect + os, and `dropped` stored keys that no longer validate ([`crate::settings::model`]) |
//! | `GET /settings` (`?keys=a,b` or `?prefix=`) | live settings in effect ([`crate::settings::select`]) |
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

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::net::UnixListener;

use crate::error::{Error, Result};
use crate::services;
use crate::settings;

mod request;
mod state;

pub use request::{HostAction, HostResponse, guess_value, pairs_to_doc, parse_request};
pub use state::{HostConfig, HostState};

/// Transaction used by the host itself at startup (seed generation, user-data).
pub const LAUNCH_TX: &str = "flotilla-launch";

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
                let model = settings::model(&st.load()?, &st.os(), prefix.as_deref())?;
                Ok(HostResponse::Json(model))
            })
            .await
        }
        HostAction::GetSettings { keys, prefix } => {
            blocking(move || {
                let view = settings::select(&st.load()?.doc, keys.as_deref(), prefix.as_deref());
                Ok(HostResponse::Json(view))
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
            blocking(move || Ok(HostResponse::Json(os_fields(st.os(), prefix.as_deref())))).await
        }
        HostAction::UpdateStatus => {
            let node = state.node()?;
            blocking(move || match node.load_status()? {
                Some(s) => Ok(HostResponse::Json(
                    serde_json::to_value(s).map_err(|e| Error::Http(e.to_string()))?,
                )),
                None => Err(Error::Update(updater::Error::StatusUninitialized)),
            })
            .await
        }
        HostAction::Update(cmd) => {
            let node = state.node()?;
            let guard = state.try_update_lock()?;
            let n2 = node.clone();
            let (status, cfg) = blocking(move || {
                let status = updater::node::begin(&n2, cmd)?;
                Ok((status, st.update_config()?))
            })
            .await?;
            tokio::spawn(async move {
                let _guard = guard;
                if let Err(e) = updater::node::execute(&node, cfg.as_ref(), cmd, status).await {
                    tracing::error!(error = %e, "recording update status failed");
                }
            });
            Ok(HostResponse::NoContent)
        }
        HostAction::Rollback => {
            let node = state.node()?;
            let guard = state.try_update_lock()?;
            blocking(move || {
                let _guard = guard;
                updater::node::rollback(&node)?;
                Ok(HostResponse::NoContent)
            })
            .await
        }
        HostAction::Reboot => {
            state.request_reboot();
            Ok(HostResponse::NoContent)
        }
    }
}

/// The fields of `/os` whose name starts with `prefix` (all without one).
fn os_fields(os: Value, prefix: Option<&str>) -> Value {
    match prefix {
        Some(p) => Value::Object(
            os.as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>(),
        ),
        None => os,
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
