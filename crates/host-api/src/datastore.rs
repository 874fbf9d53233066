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
//! every directory is 0700 ([`crate::fsutil`]); [`Datastore::open`] tightens the modes of a
//! datastore written by an older version. Pending transactions are bounded in number and size
//! ([`crate::limits`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::Rng;
use semver::Version;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fsutil::{SECRET_DIR_MODE, SECRET_FILE_MODE};
use crate::limits;
use crate::settings;

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
    crate::fsutil::write_atomic_mode(path, &bytes, SECRET_FILE_MODE)
        .map_err(|e| ds_err(path, e))?;
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
        crate::fsutil::create_dir_mode(&ds.dir, SECRET_DIR_MODE).map_err(|e| ds_err(&ds.dir, e))?;
        if std::fs::read_link(ds.current_link()).is_err() {
            let name = format!("v{version}_{}", rand_suffix());
            ds.create_vdir(&ds.dir.join(&name))?;
            ds.point_current_at(&name)?;
        }
        ds.tighten_modes()?;
        Ok(ds)
    }

    fn create_vdir(&self, vdir: &Path) -> Result<()> {
        crate::fsutil::create_dir_mode(vdir, SECRET_DIR_MODE).map_err(|e| ds_err(vdir, e))?;
        let pending = vdir.join("pending");
        crate::fsutil::create_dir_mode(&pending, SECRET_DIR_MODE).map_err(|e| ds_err(&pending, e))
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

    /// Merges `patch` into transaction `tx`, after checking that the pending document and
    /// live+pending are both valid settings and within the limits: at most
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
        check_size(
            &format!("transaction {tx:?}"),
            &pending,
            limits::MAX_TX_KEYS,
            limits::MAX_TX_BYTES,
        )?;
        let mut merged = self.live()?;
        settings::merge(&mut merged, &pending);
        settings::validate(&merged)?;
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
        let mut live = self.live()?;
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
            settings::validate(&live)?;
            write_atomic(&self.vdir()?.join("live.json"), &live)?;
        }
        Ok(restored)
    }

    /// Commits `tx`: live := live ⊕ pending in one atomic rename. Returns the keys whose value
    /// changed.
    ///
    /// # Errors
    /// [`Error::NothingPending`]; IO failures.
    pub fn commit(&self, tx: &str) -> Result<Vec<String>> {
        let path = self.pending_path(tx)?;
        let Some(pending) = read_doc(&path)? else {
            return Err(Error::NothingPending { tx: tx.to_owned() });
        };
        let old = self.live()?;
        let mut new = old.clone();
        settings::merge(&mut new, &pending);
        settings::validate(&new)?;
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
        let keys = read_doc(&path)?
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
                let v = self.pending(&tx)?;
                docs.push((dst.join("pending").join(format!("{tx}.json")), v));
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
mod tests {
    use super::*;
    use serde_json::json;

    fn ds() -> (tempfile::TempDir, Datastore) {
        let d = tempfile::tempdir().unwrap();
        let ds = Datastore::open(d.path(), &Version::new(1, 0, 0)).unwrap();
        (d, ds)
    }

    #[test]
    fn patch_commit_changes_only_what_changed() {
        let (_d, ds) = ds();
        ds.patch("t1", &json!({"ecs": {"cluster": "a"}, "motd": "hi"}))
            .unwrap();
        assert_eq!(ds.live().unwrap(), json!({}));
        assert_eq!(ds.list_tx().unwrap(), ["t1"]);
        let changed = ds.commit("t1").unwrap();
        assert_eq!(changed, ["settings.ecs.cluster", "settings.motd"]);
        ds.patch("t2", &json!({"ecs": {"cluster": "a"}, "motd": "bye"}))
            .unwrap();
        assert_eq!(ds.commit("t2").unwrap(), ["settings.motd"]);
        assert!(matches!(ds.commit("t2"), Err(Error::NothingPending { .. })));
    }

    #[test]
    fn invalid_patch_leaves_nothing_pending() {
        let (_d, ds) = ds();
        assert!(matches!(
            ds.patch("t", &json!({"ecs": {"nope": 1}})),
            Err(Error::InvalidSettings { .. })
        ));
        assert!(ds.list_tx().unwrap().is_empty());
        assert!(ds.patch("../x", &json!({})).is_err());
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn documents_holding_passwords_are_0600_in_0700_dirs() {
        let (d, ds) = ds();
        let creds = json!({"container-registry": {"credentials": [
            {"registry": "r.example", "username": "u", "password": "hunter2"}]}});
        ds.patch("t", &creds).unwrap();
        let vdir = ds.vdir().unwrap();
        assert_eq!(mode(&vdir.join("pending/t.json")), 0o600);
        ds.commit("t").unwrap();
        assert_eq!(mode(&vdir.join("live.json")), 0o600);
        for dir in [
            d.path().join("datastore"),
            vdir.clone(),
            vdir.join("pending"),
        ] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        // a datastore written by an older version (0644/0755) is tightened on open
        use std::os::unix::fs::PermissionsExt;
        let loose = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        loose(&vdir.join("live.json"), 0o644).unwrap();
        loose(&vdir, 0o755).unwrap();
        let ds = Datastore::open(d.path(), &Version::new(1, 0, 0)).unwrap();
        assert_eq!(mode(&vdir.join("live.json")), 0o600);
        assert_eq!(mode(&vdir), 0o700);
        // migration copies keep the modes
        ds.migrate(
            &Version::new(1, 1, 0),
            &[],
            updater::migration::Direction::Forward,
        )
        .unwrap();
        let vdir = ds.vdir().unwrap();
        assert_eq!(mode(&vdir.join("live.json")), 0o600);
        assert_eq!(mode(&vdir), 0o700);
    }

    #[test]
    fn pending_transactions_are_bounded_in_number() {
        let (_d, ds) = ds();
        for i in 0..limits::MAX_PENDING_TX {
            ds.patch(&format!("t{i}"), &json!({"motd": "x"})).unwrap();
        }
        let e = ds.patch("one-more", &json!({"motd": "x"})).unwrap_err();
        assert!(matches!(e, Error::TooManyTransactions { .. }), "{e}");
        assert_eq!(e.status().as_u16(), 429);
        assert!(e.to_string().contains("32"), "{e}");
        // an existing transaction can still grow, and the host's own is not counted
        ds.patch("t0", &json!({"ecs": {"cluster": "c"}})).unwrap();
        ds.patch(crate::server::LAUNCH_TX, &json!({"motd": "y"}))
            .unwrap();
        ds.commit(crate::server::LAUNCH_TX).unwrap();
        // committing or deleting frees a slot
        ds.delete_tx("t1").unwrap();
        ds.patch("one-more", &json!({"motd": "x"})).unwrap();
    }

    #[test]
    fn transactions_are_bounded_in_keys_and_bytes() {
        let (_d, ds) = ds();
        let many: Map<String, Value> = (0..=limits::MAX_TX_KEYS)
            .map(|i| (format!("k{i}"), json!("1")))
            .collect();
        let e = ds
            .patch("t", &json!({"kernel": {"sysctl": many}}))
            .unwrap_err();
        assert!(matches!(e, Error::TooLarge(_)), "{e}");
        assert_eq!(e.status().as_u16(), 413);
        assert!(e.to_string().contains("1025 keys"), "{e}");
        // key count accumulates over patches of the same transaction
        let half: Map<String, Value> = (0..700).map(|i| (format!("a{i}"), json!("1"))).collect();
        ds.patch("t", &json!({"kernel": {"sysctl": half}})).unwrap();
        let half: Map<String, Value> = (0..700).map(|i| (format!("b{i}"), json!("1"))).collect();
        assert!(matches!(
            ds.patch("t", &json!({"kernel": {"sysctl": half}})),
            Err(Error::TooLarge(_))
        ));
        // bytes: 5 host containers with 60 KiB of user-data each
        let ud = "QUFB".repeat(15_000);
        let big: Map<String, Value> = (0..5)
            .map(|i| (format!("c{i}"), json!({"user-data": ud})))
            .collect();
        let e = ds.patch("u", &json!({"host-containers": big})).unwrap_err();
        assert!(e.to_string().contains("bytes"), "{e}");
        assert_eq!(ds.list_tx().unwrap(), ["t"]);
    }

    #[test]
    fn restore_is_a_compare_and_swap() {
        let (_d, ds) = ds();
        ds.patch("t", &json!({"motd": "old"})).unwrap();
        ds.commit("t").unwrap();
        ds.patch(
            "t",
            &json!({"motd": "new", "kernel": {"sysctl": {"a.b": "1"}}}),
        )
        .unwrap();
        ds.commit("t").unwrap();
        let restored = ds
            .restore(&[
                ("settings.motd".into(), json!("new"), Some(json!("old"))),
                ("settings.kernel.sysctl.\"a.b\"".into(), json!("1"), None),
                // does not hold the committed value any more: left alone
                ("settings.updates.ignore-waves".into(), json!(true), None),
            ])
            .unwrap();
        assert_eq!(restored.len(), 2);
        let live = ds.live().unwrap();
        assert_eq!(live["motd"], "old");
        assert!(live.get("kernel").is_none(), "{live}");
    }

    #[test]
    fn delete_tx_drops_pending() {
        let (_d, ds) = ds();
        ds.patch("t", &json!({"motd": "x"})).unwrap();
        assert_eq!(ds.delete_tx("t").unwrap(), ["settings.motd"]);
        assert!(ds.list_tx().unwrap().is_empty());
    }

    #[test]
    fn migrate_switches_version_and_failure_keeps_old() {
        use updater::migration::{Direction, Migration};
        let (_d, ds) = ds();
        ds.patch("t", &json!({"motd": "x"})).unwrap();
        ds.commit("t").unwrap();
        let add = Migration::from_json("m", br#"{"ops":[{"op":"add","key":"settings.ecs.instance-attributes.migrated","value":"yes"}]}"#).unwrap();
        ds.migrate(
            &Version::new(1, 1, 0),
            &[("m".into(), add.clone())],
            Direction::Forward,
        )
        .unwrap();
        assert_eq!(ds.version().unwrap(), Version::new(1, 1, 0));
        assert_eq!(
            ds.live().unwrap()["ecs"]["instance-attributes"]["migrated"],
            "yes"
        );
        let bad = Migration::from_json(
            "bad",
            br#"{"ops":[{"op":"rename","from":"settings.zzz","to":"settings.motd"}]}"#,
        )
        .unwrap();
        assert!(
            ds.migrate(
                &Version::new(1, 2, 0),
                &[("bad".into(), bad)],
                Direction::Forward
            )
            .is_err()
        );
        assert_eq!(ds.version().unwrap(), Version::new(1, 1, 0));
        ds.migrate(
            &Version::new(1, 0, 0),
            &[("m".into(), add)],
            Direction::Backward,
        )
        .unwrap();
        assert_eq!(ds.live().unwrap(), json!({"motd": "x"}));
    }
}
