//! The server's state and the operations on it that span the datastore and the services:
//! [`HostState`] (opening the datastore, tolerant loading of the live settings, apply,
//! `commit_and_apply` with its sysctl roll-back), what `/os` reports, the update settings.
//! Blocking: the dispatcher calls these through `spawn_blocking`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use updater::node::{Node, UpdateConfig};

use crate::datastore::Datastore;
use crate::error::{Error, Result};
use crate::services::{self, Paths, Restarter, Service};
use crate::settings;

use super::LAUNCH_TX;

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
    /// Opens the datastore (creating it at the running image's version), logs every stored key
    /// that no longer validates (dropped from the typed view, see [`settings::load`]; the
    /// server starts all the same) and generates the update seed if there is none in effect
    /// (committed, so it is stable for the node's life).
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
        let loaded = settings::load(&ds.live()?);
        for d in &loaded.dropped {
            tracing::warn!(
                key = %d.key,
                reason = %d.reason,
                "stored setting no longer valid: left out, its default is in effect \
                 (listed under `dropped` by GET /); set a valid value to replace it"
            );
        }
        ensure_seed(&ds, &loaded.settings)?;
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

    pub(super) fn ds(&self) -> Result<std::sync::MutexGuard<'_, Datastore>> {
        self.ds.lock().map_err(|_| Error::Datastore {
            path: self.cfg.data_dir.clone(),
            message: "datastore lock poisoned".into(),
        })
    }

    /// The live settings as loaded: in effect, typed and as JSON, and the stored keys left out
    /// because they no longer validate ([`settings::load`]).
    ///
    /// # Errors
    /// Datastore failures.
    pub fn load(&self) -> Result<settings::Loaded> {
        Ok(settings::load(&self.ds()?.live()?))
    }

    /// The live settings in effect, typed (stored keys that no longer validate left out).
    ///
    /// # Errors
    /// Datastore failures.
    pub fn settings(&self) -> Result<settings::Settings> {
        Ok(self.load()?.settings)
    }

    /// The node, for update actions.
    ///
    /// # Errors
    /// [`Error::NoNode`] for a bare settings server.
    pub fn node(&self) -> Result<Node> {
        self.cfg.node.clone().ok_or(Error::NoNode)
    }

    /// Takes the lock that serialises update commands and rollbacks.
    ///
    /// # Errors
    /// [`updater::Error::Locked`] (423) while another command holds it.
    pub fn try_update_lock(&self) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        self.update_lock
            .clone()
            .try_lock_owned()
            .map_err(|_| Error::Update(updater::Error::Locked))
    }

    /// Asks the boot step to stop everything and exit (`POST /actions/reboot`).
    pub fn request_reboot(&self) {
        let _ = self.reboot_tx.send(true);
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

    /// Where and how to look for updates, from the settings in effect; `None` until both
    /// repository URLs are set.
    ///
    /// # Errors
    /// Datastore failures.
    pub fn update_config(&self) -> Result<Option<UpdateConfig>> {
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

    /// What `GET /os` reports: the running slot's `os-release`, or this binary for a bare
    /// settings server. Reads a file: blocking.
    #[must_use]
    pub fn os(&self) -> Value {
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

/// Commits a random seed in `[0, 2048)` if no `settings.updates.seed` is in effect: unset, or
/// stored but no longer valid (then the new seed replaces it).
fn ensure_seed(ds: &Datastore, in_effect: &settings::Settings) -> Result<()> {
    if in_effect.updates.as_ref().and_then(|u| u.seed).is_some() {
        return Ok(());
    }
    let seed = rand::random_range(0..updater::manifest::MAX_SEED);
    ds.patch(LAUNCH_TX, &json!({"updates": {"seed": seed}}))?;
    ds.commit(LAUNCH_TX)?;
    Ok(())
}
