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

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::Rng;
use semver::Version;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
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
    updater::fsutil::write_atomic(path, &bytes).map_err(|e| ds_err(path, e))?;
    if let Ok(hook) = std::env::var("FLOTILLA_TEST_SLOW_COMMIT_MS")
        && let Ok(ms) = hook.parse::<u64>()
    {
        // Test hook: widens the window between the live rename and the pending removal so that
        // the crash test can land a kill -9 inside a commit.
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    Ok(())
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
        if std::fs::read_link(ds.current_link()).is_err() {
            let name = format!("v{version}_{}", rand_suffix());
            let vdir = ds.dir.join(&name);
            std::fs::create_dir_all(vdir.join("pending")).map_err(|e| ds_err(&vdir, e))?;
            ds.point_current_at(&name)?;
        }
        Ok(ds)
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
    /// live+pending are both valid settings.
    ///
    /// # Errors
    /// [`Error::InvalidSettings`] naming the key; IO failures.
    pub fn patch(&self, tx: &str, patch: &Value) -> Result<()> {
        if !patch.is_object() {
            return Err(Error::InvalidSettings {
                key: "settings".into(),
                message: "expected a table/object of settings".into(),
            });
        }
        settings::validate(patch)?;
        let mut pending = self.pending(tx)?;
        settings::merge(&mut pending, patch);
        let mut merged = self.live()?;
        settings::merge(&mut merged, &pending);
        settings::validate(&merged)?;
        write_atomic(&self.pending_path(tx)?, &pending)
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
            std::fs::create_dir_all(dst.join("pending")).map_err(|e| ds_err(&dst, e))?;
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
