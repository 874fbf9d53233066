//! A node on disk and the four update commands.
//!
//! ```text
//! NODE/
//!   partition.json          A/B flags (the "partition table")
//!   slots/a/  slots/b/      unpacked node images (the "partitions")
//!   data/                   persistent: host datastore, TUF datastore, cached migrations
//!     tuf/                  last trusted root/timestamp/snapshot (rollback protection)
//!     migrations/           manifest.json, index.json and migration files for the next boot
//!   run/                    volatile (cleared at every boot): update status, reboot marker
//! ```
//!
//! `refresh`/`prepare` are async because they talk to the repository; the flag flips are plain
//! functions. Every command re-reads what it needs from disk, so commands can run from the host
//! API server or from the CLI alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use semver::Version;

use crate::error::{Error, Result};
use crate::image::{self, ImageMeta};
use crate::manifest::{self, Manifest, Policy};
use crate::migration::Migration;
use crate::partition::{PartitionState, Slot};
use crate::repo::{self, RepoSource};
use crate::status::{UpdateCommand, UpdateImage, UpdateStatus};

/// Paths of one node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node root directory.
    pub root: PathBuf,
}

/// The update settings the commands need (from `settings.updates`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    /// `settings.updates.metadata-base-url`.
    pub metadata_base_url: String,
    /// `settings.updates.targets-base-url`.
    pub targets_base_url: String,
    /// `settings.updates.seed`.
    pub seed: u32,
    /// `settings.updates.ignore-waves`.
    pub ignore_waves: bool,
    /// `settings.updates.version-lock` (`None` = latest).
    pub version_lock: Option<Version>,
}

fn rd(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Read {
        path: path.to_owned(),
        source,
    }
}

fn wr(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_owned(),
        source,
    }
}

impl Node {
    /// A node rooted at `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Node { root: root.into() }
    }

    /// `partition.json`.
    #[must_use]
    pub fn partition_path(&self) -> PathBuf {
        self.root.join("partition.json")
    }

    /// A slot's directory.
    #[must_use]
    pub fn slot_dir(&self, slot: Slot) -> PathBuf {
        self.root.join("slots").join(slot.name())
    }

    /// Persistent data (the host API's `--data-dir`).
    #[must_use]
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Volatile runtime directory.
    #[must_use]
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The update status file.
    #[must_use]
    pub fn status_path(&self) -> PathBuf {
        self.run_dir().join("update-status.json")
    }

    /// tough's datastore.
    #[must_use]
    pub fn tuf_datastore(&self) -> PathBuf {
        self.data_dir().join("tuf")
    }

    /// Cached migrations for the next boot.
    #[must_use]
    pub fn migrations_dir(&self) -> PathBuf {
        self.data_dir().join("migrations")
    }

    /// Installs an image into slot A of an empty node (the factory install).
    ///
    /// # Errors
    /// A bad image or IO failure.
    pub fn install(&self, archive: &Path) -> Result<ImageMeta> {
        let mut f = std::fs::File::open(archive).map_err(rd(archive))?;
        let meta = image::unpack_image(&mut f, &self.slot_dir(Slot::A), None)?;
        std::fs::create_dir_all(self.data_dir()).map_err(wr(&self.root))?;
        PartitionState::fresh(Slot::A).write(&self.partition_path())?;
        Ok(meta)
    }

    /// Reads the partition table.
    ///
    /// # Errors
    /// Missing or malformed.
    pub fn partition(&self) -> Result<PartitionState> {
        if !self.partition_path().exists() {
            return Err(Error::Node(format!(
                "{} has no partition.json; install an image first (flotilla host install)",
                self.root.display()
            )));
        }
        PartitionState::load(&self.partition_path())
    }

    /// Metadata of a slot's image.
    ///
    /// # Errors
    /// Missing or malformed `image.toml`.
    pub fn slot_meta(&self, slot: Slot) -> Result<ImageMeta> {
        image::read_meta(&self.slot_dir(slot))
    }

    /// The running image as `{arch, version, variant}`.
    ///
    /// # Errors
    /// Node not installed or bad metadata.
    pub fn active_image(&self) -> Result<UpdateImage> {
        let meta = self.slot_meta(self.partition()?.active)?;
        to_image(&meta)
    }

    /// The trusted TUF root shipped in the running image.
    ///
    /// # Errors
    /// When the image has no root.
    pub fn trusted_root(&self) -> Result<Vec<u8>> {
        let p = self
            .slot_dir(self.partition()?.active)
            .join("share/flotilla/root.json");
        std::fs::read(&p).map_err(rd(&p))
    }

    /// The persisted status, if any command ran since boot.
    ///
    /// # Errors
    /// A malformed status file.
    pub fn load_status(&self) -> Result<Option<UpdateStatus>> {
        let p = self.status_path();
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Parse {
                    path: p,
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(rd(&p)(e)),
        }
    }

    /// Persists the status atomically.
    ///
    /// # Errors
    /// IO failure.
    pub fn write_status(&self, s: &UpdateStatus) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(s).map_err(|e| Error::Parse {
            path: self.status_path(),
            message: e.to_string(),
        })?;
        crate::fsutil::write_atomic(&self.status_path(), &bytes)
    }

    /// Status to start a command from: the persisted one, or a fresh `Idle` one.
    ///
    /// # Errors
    /// Node not installed.
    pub fn current_status(&self) -> Result<UpdateStatus> {
        match self.load_status()? {
            Some(s) => Ok(s),
            None => Ok(UpdateStatus::new(self.active_image()?)),
        }
    }
}

fn to_image(meta: &ImageMeta) -> Result<UpdateImage> {
    Ok(UpdateImage {
        arch: meta.arch.clone(),
        version: Version::parse(&meta.version)
            .map_err(|e| Error::Image(format!("version {:?}: {e}", meta.version)))?,
        variant: meta.variant.clone(),
    })
}

async fn load_repo(node: &Node, cfg: &UpdateConfig) -> Result<tough::Repository> {
    if cfg.metadata_base_url.is_empty() || cfg.targets_base_url.is_empty() {
        return Err(Error::Url {
            url: String::new(),
            message: "settings.updates.metadata-base-url and targets-base-url must be set".into(),
        });
    }
    let src = RepoSource {
        metadata: repo::dir_url(&cfg.metadata_base_url)?,
        targets: repo::dir_url(&cfg.targets_base_url)?,
    };
    repo::load(&node.trusted_root()?, &src, &node.tuf_datastore()).await
}

/// `refresh`: loads the repository and chooses an update. Returns (all versions of this
/// variant, chosen update).
///
/// # Errors
/// Repository refused or unreadable.
pub async fn refresh(
    node: &Node,
    cfg: &UpdateConfig,
    now: Timestamp,
) -> Result<(Vec<Version>, Option<UpdateImage>)> {
    let current = node.active_image()?;
    let repo = load_repo(node, cfg).await?;
    let manifest = repo::manifest(&repo).await?;
    let policy = Policy {
        variant: current.variant.clone(),
        arch: current.arch.clone(),
        seed: cfg.seed,
        ignore_waves: cfg.ignore_waves,
        version_lock: cfg.version_lock.clone(),
    };
    let mut all: Vec<Version> = manifest
        .updates
        .iter()
        .filter(|u| u.variant == policy.variant && u.arch == policy.arch)
        .map(|u| u.version.clone())
        .collect();
    all.sort_by(|a, b| b.cmp(a));
    let applicable = manifest::applicable_updates(&manifest, &policy, now);
    let chosen =
        manifest::choose_update(&applicable, &current.version, &policy).map(|u| UpdateImage {
            arch: u.arch.clone(),
            version: u.version.clone(),
            variant: u.variant.clone(),
        });
    Ok((all, chosen))
}

/// `prepare`: downloads the chosen image through TUF, writes it to the inactive slot, caches
/// the migrations for the next boot, and marks the slot valid (one try, priority 0).
///
/// # Errors
/// Any TUF refusal, a missing migration chain, a bad image or IO failure. On error the
/// inactive slot is left marked unbootable and the running slot untouched.
pub async fn prepare(node: &Node, cfg: &UpdateConfig, chosen: &UpdateImage) -> Result<()> {
    let current = node.active_image()?;
    let repo = load_repo(node, cfg).await?;
    let manifest_bytes = repo::read_small(&repo, "manifest.json").await?;
    let manifest = Manifest::from_json(&manifest_bytes)?;
    let update = manifest
        .updates
        .iter()
        .find(|u| {
            u.variant == chosen.variant && u.arch == chosen.arch && u.version == chosen.version
        })
        .ok_or_else(|| {
            Error::Manifest(format!("version {} is no longer published", chosen.version))
        })?;
    let migrations = manifest.migrations_between(&current.version, &update.version)?;

    let mut part = node.partition()?;
    let inactive = part.inactive();
    part.clear_inactive();
    part.write(&node.partition_path())?;

    let dl_dir = node.data_dir().join("download");
    std::fs::create_dir_all(&dl_dir).map_err(wr(&dl_dir))?;
    let name = update.root_image()?;
    let archive = dl_dir.join("image.partial");
    repo::save(&repo, name, &archive).await?;
    let unpacked = {
        let mut f = std::fs::File::open(&archive).map_err(rd(&archive))?;
        image::unpack_image(
            &mut f,
            &node.slot_dir(inactive),
            Some(&update.version.to_string()),
        )
    };
    let _ = std::fs::remove_file(&archive);
    let meta = unpacked?;
    if meta.variant != current.variant || meta.arch != current.arch {
        return Err(Error::Image(format!(
            "image is {}/{} but the node is {}/{}",
            meta.variant, meta.arch, current.variant, current.arch
        )));
    }

    // Cache manifest + migrations (verified now) for the boot step.
    let cache = node.migrations_dir();
    std::fs::create_dir_all(&cache).map_err(wr(&cache))?;
    let sums = repo::target_sha256s(&repo);
    let mut index = BTreeMap::new();
    for m in &migrations {
        let bytes = repo::read_small(&repo, m).await?;
        crate::fsutil::write_atomic(&cache.join(m), &bytes)?;
        index.insert(m.clone(), sums.get(m).cloned().unwrap_or_default());
    }
    crate::fsutil::write_atomic(&cache.join("manifest.json"), &manifest_bytes)?;
    let mut old_index = read_index(node);
    old_index.extend(index);
    let idx = serde_json::to_vec_pretty(&old_index).map_err(|e| Error::Image(e.to_string()))?;
    crate::fsutil::write_atomic(&cache.join("index.json"), &idx)?;

    part.mark_inactive_valid();
    part.write(&node.partition_path())?;
    Ok(())
}

fn read_index(node: &Node) -> BTreeMap<String, String> {
    std::fs::read(node.migrations_dir().join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The migrations (parsed, checksum-verified) to move the datastore from `from` to `to`, from
/// the local cache written by [`prepare`].
///
/// # Errors
/// No cached manifest (when versions differ), missing chain, or a file that does not match.
pub fn cached_migrations(
    node: &Node,
    from: &Version,
    to: &Version,
) -> Result<Vec<(String, Migration)>> {
    if from == to {
        return Ok(Vec::new());
    }
    let mp = node.migrations_dir().join("manifest.json");
    let manifest = match std::fs::read(&mp) {
        Ok(b) => Manifest::from_json(&b)?,
        Err(_) => Manifest::default(),
    };
    let names = manifest.migrations_between(from, to)?;
    let index = read_index(node);
    let mut out = Vec::new();
    for n in names {
        let p = node.migrations_dir().join(&n);
        let bytes = std::fs::read(&p).map_err(rd(&p))?;
        let sum = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &bytes,
        ));
        if index.get(&n) != Some(&sum) {
            return Err(Error::Migration {
                name: n,
                reason: "cached file does not match its TUF hash".into(),
            });
        }
        let m = Migration::from_json(&n, &bytes)?;
        out.push((n, m));
    }
    Ok(out)
}

/// `activate`: the staged slot boots next (once).
///
/// # Errors
/// Flags do not allow it.
pub fn activate(node: &Node) -> Result<()> {
    let mut p = node.partition()?;
    p.upgrade_to_inactive()?;
    p.write(&node.partition_path())
}

/// `deactivate` / `update cancel`.
///
/// # Errors
/// IO failure.
pub fn deactivate(node: &Node) -> Result<()> {
    let mut p = node.partition()?;
    p.cancel_upgrade();
    p.write(&node.partition_path())
}

/// Manual rollback: boot the other slot next.
///
/// # Errors
/// The other slot is not bootable.
pub fn rollback(node: &Node) -> Result<()> {
    let mut p = node.partition()?;
    p.rollback_to_inactive()?;
    p.write(&node.partition_path())
}

/// Runs one command to completion and returns the new status (already persisted). `Err` only
/// for refusals before any work (wrong state, nothing chosen/staged); failures of the work are
/// recorded in `most_recent_command` instead.
///
/// # Errors
/// [`Error::Disallowed`], [`Error::NoChosenUpdate`], [`Error::NoStagedImage`] or node errors.
pub fn begin(node: &Node, cmd: UpdateCommand) -> Result<UpdateStatus> {
    let status = node.current_status()?;
    status.check_allowed(cmd)?;
    Ok(status)
}

/// Executes a command that [`begin`] allowed, records the outcome and persists the status.
///
/// # Errors
/// Only when the status cannot be written.
pub async fn execute(
    node: &Node,
    cfg: Option<&UpdateConfig>,
    cmd: UpdateCommand,
    mut status: UpdateStatus,
) -> Result<UpdateStatus> {
    let no_cfg = || Error::Url {
        url: String::new(),
        message: "settings.updates is not configured".into(),
    };
    let outcome: Result<()> = match cmd {
        UpdateCommand::Refresh => match cfg {
            Some(cfg) => match refresh(node, cfg, Timestamp::now()).await {
                Ok((all, chosen)) => {
                    status.refreshed(all, chosen);
                    Ok(())
                }
                Err(e) => {
                    status.refresh_failed();
                    Err(e)
                }
            },
            None => {
                status.refresh_failed();
                Err(no_cfg())
            }
        },
        UpdateCommand::Prepare => match (cfg, status.chosen_update.clone()) {
            (Some(cfg), Some(chosen)) => prepare(node, cfg, &chosen)
                .await
                .map(|()| status.prepared()),
            (None, _) => Err(no_cfg()),
            (_, None) => Err(Error::NoChosenUpdate),
        },
        UpdateCommand::Activate => activate(node).map(|()| status.activated()),
        UpdateCommand::Deactivate => deactivate(node).map(|()| status.deactivated()),
    };
    if let Err(e) = &outcome {
        tracing::warn!(%cmd, error = %e, "update command failed");
    }
    status.record(cmd, outcome.map_err(|e| e.to_string()), Timestamp::now());
    node.write_status(&status)?;
    Ok(status)
}
