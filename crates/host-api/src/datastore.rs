//! The settings datastore: live settings plus named pending transactions, on disk.
//!
//! ```text
//! DATA/datastore/
//!   current -> v1.1.0_k3j2h1      symlink; the version is the prefix before `_`
//!   v1.1.0_k3j2h1/
//!     live.json                   the whole committed settings document
//!     pending/<tx>.json           one document per open transaction
//! ```
//!
//! Bottlerocket stores one file per key; flotilla stores one document per tree so that a
//! commit is a single `rename(2)`: a crash (even `kill -9`) at any moment leaves either the old
//! or the new `live.json`, never a mix. The pending file is removed after the rename; if the
//! process dies in between, the transaction is still pending and committing it again is a no-op.
//!
//! Migrations (see `updater::migration`) run on a copy of the version directory; the `current`
//! link is switched atomically once they all succeeded.
//!
//! The documents hold secrets (registry passwords), so every file is written mode 0600 and
//! every directory is 0700 ([`durable`]); [`Datastore::open`] tightens the modes of a
//! datastore written by an older version. Pending transactions are bounded in number and size
//! ([`crate::limits`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::Rng;
use semver::Version;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::limits;
use crate::settings;
use durable::{SECRET_DIR_MODE, SECRET_FILE_MODE};

/// Handle on a datastore directory. Not internally locked: the server wraps it in a mutex.
#[derive(Debug, Clone)]
pub struct Datastore {
    dir: PathBuf,
}

fn ds_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Datastore {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn rand_suffix() -> String {
    let mut rng = rand::rng();
    (0..10)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)]))
        .collect()
}

/// Checks a transaction name: 1–64 of `[A-Za-z0-9_-]`.
///
/// # Errors
/// [`Error::BadRequest`].
pub fn check_tx(tx: &str) -> Result<()> {
    if tx.is_empty()
        || tx.len() > 64
        || !tx
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::BadRequest(format!(
            "transaction name {tx:?} must be 1-64 of [A-Za-z0-9_-]"
        )));
    }
    Ok(())
}

fn write_atomic(path: &Path, v: &Value) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| ds_err(path, e))?;
    durable::write(path, &bytes, SECRET_FILE_MODE).map_err(|e| ds_err(path, e))?;
    if let Ok(hook) = std::env::var("FLOTILLA_TEST_SLOW_COMMIT_MS")
        && let Ok(ms) = hook.parse::<u64>()
    {
        // Test hook: widens the window between the live rename and the pending removal so that
        // the crash test can land a kill -9 inside a commit.
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    Ok(())
}

/// Size of a document as compact JSON.
fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Checks a document against a key-count and byte limit.
fn check_size(what: &str, v: &Value, max_keys: usize, max_bytes: usize) -> Result<()> {
    let keys = settings::flatten(v, "settings.").len();
    if keys > max_keys {
        return Err(Error::TooLarge(format!(
            "{what} would hold {keys} keys; the limit is {max_keys}"
        )));
    }
    let bytes = json_len(v);
    if bytes > max_bytes {
        return Err(Error::TooLarge(format!(
            "{what} would be {bytes} bytes of JSON; the limit is {max_bytes}"
        )));
    }
    Ok(())
}

/// Sets the mode of `path` if it exists.
fn chmod_if_exists(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ds_err(path, e)),
    }
}

/// Removes the value at `path` and the parents this leaves empty (only those on the path).
fn remove_key(doc: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(m) = doc.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        m.remove(first);
        return;
    }
    if let Some(child) = m.get_mut(first) {
        remove_key(child, rest);
        if child.as_object().is_some_and(Map::is_empty) {
            m.remove(first);
        }
    }
}

fn read_doc(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ds_err(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ds_err(path, e)),
    }
}

impl Datastore {
    /// Opens `DATA/datastore`, creating an empty one at `version` if there is none.
    ///
    /// # Errors
    /// IO failures.
    pub fn open(data_dir: &Path, version: &Version) -> Result<Self> {
        let dir = data_dir.join("datastore");
        let ds = Datastore { dir };
        durable::create_dir_mode(&ds.dir, SECRET_DIR_MODE).map_err(|e| ds_err(&ds.dir, e))?;
        if std::fs::read_link(ds.current_link()).is_err() {
            let name = format!("v{version}_{}", rand_suffix());
            ds.create_vdir(&ds.dir.join(&name))?;
            ds.point_current_at(&name)?;
        }
        ds.tighten_modes()?;
        Ok(ds)
    }

    fn create_vdir(&self, vdir: &Path) -> Result<()> {
        durable::create_dir_mode(vdir, SECRET_DIR_MODE).map_err(|e| ds_err(vdir, e))?;
        let pending = vdir.join("pending");
        durable::create_dir_mode(&pending, SECRET_DIR_MODE).map_err(|e| ds_err(&pending, e))
    }

    /// Makes the current version's documents 0600 and its directories 0700 (a datastore
    /// written before this was enforced had 0644 files).
    fn tighten_modes(&self) -> Result<()> {
        let vdir = self.vdir()?;
        chmod_if_exists(&vdir, SECRET_DIR_MODE)?;
        chmod_if_exists(&vdir.join("pending"), SECRET_DIR_MODE)?;
        chmod_if_exists(&vdir.join("live.json"), SECRET_FILE_MODE)?;
        for tx in self.list_tx()? {
            chmod_if_exists(&self.pending_path(&tx)?, SECRET_FILE_MODE)?;
        }
        Ok(())
    }

    fn current_link(&self) -> PathBuf {
        self.dir.join("current")
    }

    fn point_current_at(&self, name: &str) -> Result<()> {
        let tmp = self.dir.join(format!(".current.{}", rand_suffix()));
        std::os::unix::fs::symlink(name, &tmp).map_err(|e| ds_err(&tmp, e))?;
        std::fs::rename(&tmp, self.current_link()).map_err(|e| ds_err(&tmp, e))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn current_name(&self) -> Result<String> {
        let target =
            std::fs::read_link(self.current_link()).map_err(|e| ds_err(&self.current_link(), e))?;
        Ok(target.to_string_lossy().into_owned())
    }

    fn vdir(&self) -> Result<PathBuf> {
        Ok(self.dir.join(self.current_name()?))
    }

    /// The datastore's version (which image's schema it follows).
    ///
    /// # Errors
    /// Broken `current` link.
    pub fn version(&self) -> Result<Version> {
        let name = self.current_name()?;
        let v = name
            .trim_start_matches('v')
            .split('_')
            .next()
            .unwrap_or_default();
        Version::parse(v).map_err(|e| ds_err(&self.current_link(), e))
    }

    /// The committed settings (the object under `settings`), `{}` if none.
    ///
    /// # Errors
    /// IO or parse failures.
    pub fn live(&self) -> Result<Value> {
        Ok(read_doc(&self.vdir()?.join("live.json"))?.unwrap_or_else(|| Value::Object(Map::new())))
    }

    /// Whether anything was ever committed.
    ///
    /// # Errors
    /// IO failures.
    pub fn has_live(&self) -> Result<bool> {
        Ok(self.vdir()?.join("live.json").exists())
    }

    fn pending_path(&self, tx: &str) -> Result<PathBuf> {
        check_tx(tx)?;
        Ok(self.vdir()?.join("pending").join(format!("{tx}.json")))
    }

    /// The pending settings of a transaction (`{}` if none).
    ///
    /// # Errors
    /// Bad name or IO failures.
    pub fn pending(&self, tx: &str) -> Result<Value> {
        Ok(read_doc(&self.pending_path(tx)?)?.unwrap_or_else(|| Value::Object(Map::new())))
    }

    /// Open transactions.
    ///
    /// # Errors
    /// IO failures.
    pub fn list_tx(&self) -> Result<Vec<String>> {
        let dir = self.vdir()?.join("pending");
        let mut out: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".json")
                        .map(str::to_owned)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        Ok(out)
    }

    /// Merges `patch` into transaction `tx`, after checking that the pending document is
    /// valid, that live ⊕ pending makes no key invalid ([`settings::newly_invalid`]: keys already
    /// dropped from the typed view and left alone do not block it) and the limits: at most
    /// [`limits::MAX_PENDING_TX`] pending transactions (the host's own launch transaction is
    /// not counted), [`limits::MAX_TX_KEYS`] keys and [`limits::MAX_TX_BYTES`] bytes per
    /// transaction, [`limits::MAX_LIVE_KEYS`] keys and [`limits::MAX_LIVE_BYTES`] bytes for
    /// live ⊕ pending.
    ///
    /// # Errors
    /// [`Error::InvalidSettings`] naming the key; [`Error::TooManyTransactions`];
    /// [`Error::TooLarge`]; IO failures.
    pub fn patch(&self, tx: &str, patch: &Value) -> Result<()> {
        if !patch.is_object() {
            return Err(Error::InvalidSettings {
                key: "settings".into(),
                message: "expected a table/object of settings".into(),
            });
        }
        settings::validate(patch)?;
        let path = self.pending_path(tx)?;
        if tx != crate::server::LAUNCH_TX && !path.exists() {
            let open = self
                .list_tx()?
                .into_iter()
                .filter(|t| t != crate::server::LAUNCH_TX)
                .count();
            if open >= limits::MAX_PENDING_TX {
                return Err(Error::TooManyTransactions {
                    limit: limits::MAX_PENDING_TX,
                });
            }
        }
        let mut pending = self.pending(tx)?;
        settings::merge(&mut pending, patch);
        // The stored part of the transaction is validated again: it may have been written by
        // an older version.
        settings::validate(&pending)?;
        check_size(
            &format!("transaction {tx:?}"),
            &pending,
            limits::MAX_TX_KEYS,
            limits::MAX_TX_BYTES,
        )?;
        let live = self.live()?;
        let mut merged = live.clone();
        settings::merge(&mut merged, &pending);
        check_still_loadable(&live, &merged, &[])?;
        check_live_size(&merged)?;
        write_atomic(&path, &pending)
    }

    /// Puts keys back to their value before a commit: each `(dotted key, committed value,
    /// previous value)` is restored to the previous value (or removed when there was none) if
    /// it still holds the committed value — a compare-and-swap, so a later commit of the same
    /// key is never undone. One atomic write. Returns the keys restored.
    ///
    /// # Errors
    /// Malformed keys; IO failures.
    pub fn restore(&self, keys: &[(String, Value, Option<Value>)]) -> Result<Vec<String>> {
        let before = self.live()?;
        let mut live = before.clone();
        let mut restored = Vec::new();
        for (key, committed, previous) in keys {
            let path = updater::migration::split_key(key).map_err(Error::BadRequest)?;
            let Some(("settings", rest)) = path.split_first().map(|(a, b)| (a.as_str(), b)) else {
                return Err(Error::BadRequest(format!("{key}: not a settings key")));
            };
            if updater::migration::get(&live, rest) != Some(committed) {
                continue;
            }
            match previous {
                Some(v) => updater::migration::set(&mut live, rest, v.clone())
                    .map_err(Error::BadRequest)?,
                None => remove_key(&mut live, rest),
            }
            restored.push(key.clone());
        }
        if !restored.is_empty() {
            // A restored previous value is what was stored before; it may be one that is
            // dropped from the typed view, like any stored value.
            check_still_loadable(&before, &live, &restored)?;
            write_atomic(&self.vdir()?.join("live.json"), &live)?;
        }
        Ok(restored)
    }

    /// Commits `tx`: live := live ⊕ pending in one atomic rename. Returns the keys whose value
    /// changed. The pending document is validated strictly (it may have been stored by an
    /// older version) and live ⊕ pending must make no key invalid ([`settings::newly_invalid`]).
    ///
    /// # Errors
    /// [`Error::InvalidSettings`] naming the key (nothing committed);
    /// [`Error::NothingPending`]; [`Error::TooLarge`]; IO failures.
    pub fn commit(&self, tx: &str) -> Result<Vec<String>> {
        let path = self.pending_path(tx)?;
        let Some(pending) = read_doc(&path)? else {
            return Err(Error::NothingPending { tx: tx.to_owned() });
        };
        // Written by this version's `patch`, or by an older version, or a migration.
        settings::validate(&pending)?;
        let old = self.live()?;
        let mut new = old.clone();
        settings::merge(&mut new, &pending);
        check_still_loadable(&old, &new, &[])?;
        check_live_size(&new)?;
        let before = settings::flatten(&old, "settings.");
        let after = settings::flatten(&new, "settings.");
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        write_atomic(&self.vdir()?.join("live.json"), &new)?;
        std::fs::remove_file(&path).map_err(|e| ds_err(&path, e))?;
        Ok(changed)
    }

    /// Drops a transaction; returns the keys it held.
    ///
    /// # Errors
    /// IO failures.
    pub fn delete_tx(&self, tx: &str) -> Result<Vec<String>> {
        let path = self.pending_path(tx)?;
        // A document that cannot be read is deleted all the same (no keys to report): it must
        // not keep a boot, which discards every pending transaction, from going on.
        let keys = read_doc(&path)
            .ok()
            .flatten()
            .map(|v| settings::flatten(&v, "settings.").into_keys().collect())
            .unwrap_or_default();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(keys),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(keys),
            Err(e) => Err(ds_err(&path, e)),
        }
    }

    /// Drops every pending transaction (done at boot, as Bottlerocket's storewolf does).
    ///
    /// # Errors
    /// IO failures.
    pub fn discard_pending(&self) -> Result<()> {
        for tx in self.list_tx()? {
            self.delete_tx(&tx)?;
        }
        Ok(())
    }

    /// Runs `migrations` on a copy of the current version directory and switches to the copy,
    /// now labelled `to`. On any failure the copy is deleted and the datastore is unchanged.
    ///
    /// # Errors
    /// The failing migration.
    pub fn migrate(
        &self,
        to: &Version,
        migrations: &[(String, updater::migration::Migration)],
        dir: updater::migration::Direction,
    ) -> Result<()> {
        let src = self.vdir()?;
        let name = format!("v{to}_{}", rand_suffix());
        let dst = self.dir.join(&name);
        let result = (|| -> Result<()> {
            self.create_vdir(&dst)?;
            let mut docs: Vec<(PathBuf, Value)> = Vec::new();
            if let Some(v) = read_doc(&src.join("live.json"))? {
                docs.push((dst.join("live.json"), v));
            }
            for tx in self.list_tx()? {
                // An unreadable pending document is not carried over (the boot discards
                // pending transactions right after migrating) instead of failing the migration.
                match self.pending(&tx) {
                    Ok(v) => docs.push((dst.join("pending").join(format!("{tx}.json")), v)),
                    Err(e) => {
                        tracing::warn!(%tx, error = %e, "unreadable pending transaction not migrated")
                    }
                }
            }
            for (path, doc) in docs {
                let mut wrapped = serde_json::json!({ "settings": doc });
                for (mname, m) in migrations {
                    m.apply(mname, &mut wrapped, dir)?;
                }
                let inner = wrapped
                    .get("settings")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new()));
                write_atomic(&path, &inner)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.point_current_at(&name)?;
                let _ = std::fs::remove_dir_all(&src);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dst);
                Err(e)
            }
        }
    }
}

/// Refuses a write from `before` to `after` (live documents) that makes a key invalid
/// ([`settings::newly_invalid`]), naming the first such key: new writes are validated strictly.
/// Keys that were already invalid in `before` and are left as they were do not block the
/// write (they stay dropped from the typed view, see [`settings::load`]), nor do `allowed`.
///
/// # Errors
/// [`Error::InvalidSettings`].
fn check_still_loadable(before: &Value, after: &Value, allowed: &[String]) -> Result<()> {
    match settings::newly_invalid(before, after)
        .into_iter()
        .find(|d| !allowed.contains(&d.key))
    {
        Some(d) => Err(Error::InvalidSettings {
            key: d.key,
            message: d.reason,
        }),
        None => Ok(()),
    }
}

/// Live settings limits ([`limits::MAX_LIVE_KEYS`], [`limits::MAX_LIVE_BYTES`]).
fn check_live_size(v: &Value) -> Result<()> {
    check_size(
        "the live settings",
        v,
        limits::MAX_LIVE_KEYS,
        limits::MAX_LIVE_BYTES,
    )
}

/// Keys of a document, as a set.
#[must_use]
pub fn keys_of(v: &Value) -> BTreeSet<String> {
    settings::flatten(v, "settings.").into_keys().collect()
}

#[cfg(test)]
mod tests;
