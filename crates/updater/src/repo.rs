//! TUF repositories with `tough`: generating keys and a root, publishing versions (images,
//! migrations, `manifest.json`), and loading a repository as a client.
//!
//! The client side enforces everything TUF promises: signatures and thresholds from the trusted
//! root, expiry (`ExpirationEnforcement::Safe`), version rollback against a persistent per-node
//! datastore of the last trusted metadata, size limits on every metadata file, and length +
//! sha256 of every target while streaming it.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use jiff::Timestamp;
use semver::Version;
use tough::editor::RepositoryEditor;
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root};
use tough::{
    DefaultTransport, ExpirationEnforcement, Limits, Repository, RepositoryLoader, TargetName,
};
use url::Url;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, Update};

/// Size limits for metadata: small, so an "endless data" attack stops early.
pub const LIMITS: Limits = Limits {
    max_root_size: 1 << 20,
    max_targets_size: 4 << 20,
    max_timestamp_size: 64 << 10,
    max_snapshot_size: 1 << 20,
    max_root_updates: 1024,
};

/// Largest `manifest.json` or migration the client accepts.
pub const MAX_SMALL_TARGET: usize = 4 << 20;

fn perr(e: impl std::fmt::Display) -> Error {
    Error::Publish(e.to_string())
}

/// Generates `n` ed25519 keys (`key-1.pk8` …, PKCS#8 DER) and a `root.json` that trusts all of
/// them for every role with the given threshold, signed by all of them.
///
/// # Errors
/// IO or signing failures.
pub async fn generate_keys(
    dir: &Path,
    n: usize,
    threshold: u64,
    expires: Timestamp,
) -> Result<Vec<PathBuf>> {
    use aws_lc_rs::signature::Ed25519KeyPair;
    use tough::sign::Sign;
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut paths = Vec::new();
    let mut keys = std::collections::HashMap::new();
    let mut ids: Vec<Decoded<Hex>> = Vec::new();
    for i in 1..=n {
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(perr)?;
        let path = dir.join(format!("key-{i}.pk8"));
        std::fs::write(&path, doc.as_ref()).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(perr)?;
        let key = pair.tuf_key();
        let id = key.key_id().map_err(perr)?;
        ids.push(id.clone());
        keys.insert(id, key);
        paths.push(path);
    }
    let threshold = NonZeroU64::new(threshold).ok_or_else(|| perr("threshold must be > 0"))?;
    let role = RoleKeys {
        keyids: ids,
        threshold,
        _extra: std::collections::HashMap::new(),
    };
    let roles = [
        RoleType::Root,
        RoleType::Snapshot,
        RoleType::Targets,
        RoleType::Timestamp,
    ]
    .into_iter()
    .map(|r| (r, role.clone()))
    .collect();
    let root = Root {
        spec_version: "1.0.0".into(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires,
        keys,
        roles,
        _extra: std::collections::HashMap::new(),
    };
    let sources: Vec<Box<dyn KeySource>> = paths
        .iter()
        .map(|p| Box::new(LocalKeySource { path: p.clone() }) as Box<dyn KeySource>)
        .collect();
    let signed = SignedRole::new(root.clone(), &KeyHolder::Root(root), &sources, &rng)
        .await
        .map_err(perr)?;
    let root_path = dir.join("root.json");
    std::fs::write(&root_path, signed.buffer()).map_err(|source| Error::Write {
        path: root_path,
        source,
    })?;
    Ok(paths)
}

/// One publish step.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    /// Repository directory: `metadata/` and `targets/` are written here; the plain-named
    /// targets are kept in `staging/` and the metadata version counter in `publish-state.json`.
    pub repo: PathBuf,
    /// The trusted root.
    pub root: PathBuf,
    /// Signing keys (PKCS#8 files).
    pub keys: Vec<PathBuf>,
    /// A new image to add: (archive, update entry; the image name is filled in).
    pub image: Option<(PathBuf, Update)>,
    /// Migrations to add: (from, to, file).
    pub migrations: Vec<(Version, Version, PathBuf)>,
    /// Lower `max_version` of every update to this (pull a release).
    pub max_version: Option<Version>,
    /// Expiry of targets, snapshot and timestamp.
    pub expires: Timestamp,
}

/// Publishes: updates `manifest.json`, re-signs all roles with the next version number and
/// writes `metadata/` and `targets/`. Returns the new metadata version.
///
/// # Errors
/// IO, manifest or signing failures.
pub async fn publish(spec: &PublishSpec) -> Result<u64> {
    let staging = spec.repo.join("staging");
    let wr = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Write { path, source }
    };
    std::fs::create_dir_all(&staging).map_err(wr(&staging))?;
    let state_path = spec.repo.join("publish-state.json");
    let prev: u64 = std::fs::read(&state_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["version"].as_u64())
        .unwrap_or(0);
    let version = prev + 1;
    let manifest_path = staging.join("manifest.json");
    let mut manifest = match std::fs::read(&manifest_path) {
        Ok(b) => Manifest::from_json(&b)?,
        Err(_) => Manifest::default(),
    };
    if let Some((img, update)) = &spec.image {
        let name = format!(
            "{}-{}-{}.tar.gz",
            update.variant, update.version, update.arch
        );
        stage(img, &staging.join(&name))?;
        let mut update = update.clone();
        update.images.insert("root".into(), name);
        manifest.add_update(update);
    }
    for (from, to, file) in &spec.migrations {
        let base = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| perr("migration path has no file name"))?;
        let name = format!("migrate_{to}_{base}");
        stage(file, &staging.join(&name))?;
        let list = manifest
            .migrations
            .entry((from.clone(), to.clone()))
            .or_default();
        if !list.contains(&name) {
            list.push(name);
        }
    }
    if let Some(max) = &spec.max_version {
        for u in &mut manifest.updates {
            u.max_version = max.clone();
        }
    }
    manifest.validate()?;
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(perr)?;
    crate::fsutil::write_atomic(&manifest_path, &bytes)?;

    let mut editor = RepositoryEditor::new(&spec.root).await.map_err(perr)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&staging)
        .map_err(wr(&staging))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Not the temporary files of a write a crash interrupted (`.NAME.tmp.…`).
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    // Each staged file hashed once: the editor signs the digest, `link_targets` names the
    // file by it.
    let mut staged = Vec::with_capacity(files.len());
    for file in files {
        let (name, target) = RepositoryEditor::build_target(&file).await.map_err(perr)?;
        let sha256 = hex::encode(&target.hashes.sha256);
        editor.add_target(name, target).map_err(perr)?;
        staged.push((file, sha256));
    }
    let v = NonZeroU64::new(version).ok_or_else(|| perr("version overflow"))?;
    editor
        .targets_version(v)
        .map_err(perr)?
        .targets_expires(spec.expires)
        .map_err(perr)?
        .snapshot_version(v)
        .snapshot_expires(spec.expires)
        .timestamp_version(v)
        .timestamp_expires(spec.expires);
    let keys: Vec<Box<dyn KeySource>> = spec
        .keys
        .iter()
        .map(|p| Box::new(LocalKeySource { path: p.clone() }) as Box<dyn KeySource>)
        .collect();
    let signed = editor.sign(&keys).await.map_err(perr)?;
    let metadata = spec.repo.join("metadata");
    let targets = spec.repo.join("targets");
    std::fs::create_dir_all(&metadata).map_err(wr(&metadata))?;
    std::fs::create_dir_all(&targets).map_err(wr(&targets))?;
    link_targets(&staged, &targets)?;
    signed.write(&metadata).await.map_err(perr)?;
    crate::fsutil::write_atomic(
        &state_path,
        format!("{{\"version\": {version}}}").as_bytes(),
    )?;
    Ok(version)
}

/// Copies `from` into the staging directory as `to`, through [`durable::copy`]: a file
/// republished under the same name is a new file and never rewrites one that `targets/`
/// links to.
fn stage(from: &Path, to: &Path) -> Result<()> {
    durable::copy(from, to, durable::PUBLIC_FILE_MODE).map_err(|source| Error::Write {
        path: to.to_owned(),
        source,
    })
}

/// Puts each staged file (with its sha256, hex) into `targets/` under its
/// consistent-snapshot name (`<sha256>.<name>`), as a hard link where the file system
/// allows (a node image is hundreds of megabytes), else a copy. A staged file is never
/// written in place ([`stage`] replaces it with a new file), so a link can never change
/// under a published target. tough's own `link_targets` makes symbolic links, which would
/// follow a republished staged file.
fn link_targets(staged: &[(PathBuf, String)], targets: &Path) -> Result<()> {
    for (file, sha256) in staged {
        let name = file
            .file_name()
            .ok_or_else(|| perr("staged path has no file name"))?
            .to_string_lossy();
        let to = targets.join(format!("{sha256}.{name}"));
        if to.exists() {
            continue;
        }
        std::fs::hard_link(file, &to)
            .or_else(|_| std::fs::copy(file, &to).map(|_| ()))
            .map_err(|source| Error::Write { path: to, source })?;
    }
    Ok(())
}

/// Turns a setting (`file:///…`, `http://…` or a plain absolute path) into a directory URL.
///
/// # Errors
/// When it does not parse.
pub fn dir_url(s: &str) -> Result<Url> {
    let mut s = s.to_owned();
    if s.starts_with('/') {
        s = format!("file://{s}");
    }
    if !s.ends_with('/') {
        s.push('/');
    }
    Url::parse(&s).map_err(|e| Error::Url {
        url: s.clone(),
        message: e.to_string(),
    })
}

/// Where to load a repository from.
#[derive(Debug, Clone)]
pub struct RepoSource {
    /// Metadata base URL (directory).
    pub metadata: Url,
    /// Targets base URL (directory).
    pub targets: Url,
}

/// Loads (refreshes) the repository, verifying the whole TUF client workflow. `datastore` keeps
/// the last trusted root/timestamp/snapshot so that older metadata is refused later.
///
/// # Errors
/// [`Error::TufMetadata`] naming the failed check.
pub async fn load(root: &[u8], src: &RepoSource, datastore: &Path) -> Result<Repository> {
    std::fs::create_dir_all(datastore).map_err(|source| Error::Write {
        path: datastore.to_owned(),
        source,
    })?;
    RepositoryLoader::new(&root, src.metadata.clone(), src.targets.clone())
        .transport(DefaultTransport::default())
        .datastore(datastore)
        .limits(LIMITS)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await
        .map_err(|source| Error::TufMetadata {
            source: Box::new(source),
        })
}

fn target_name(name: &str) -> Result<TargetName> {
    TargetName::new(name).map_err(|source| Error::TufTarget {
        name: name.to_owned(),
        source: Box::new(source),
    })
}

/// Reads a small target fully (verified).
///
/// # Errors
/// Not listed, too large, or failed verification.
pub async fn read_small(repo: &Repository, name: &str) -> Result<Vec<u8>> {
    let tn = target_name(name)?;
    let terr = |source| Error::TufTarget {
        name: name.to_owned(),
        source: Box::new(source),
    };
    let mut stream = repo
        .read_target(&tn)
        .await
        .map_err(terr)?
        .ok_or_else(|| Error::TargetMissing(name.to_owned()))?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.map_err(terr)?);
        if out.len() > MAX_SMALL_TARGET {
            return Err(Error::Image(format!(
                "{name} is larger than {MAX_SMALL_TARGET} bytes"
            )));
        }
    }
    Ok(out)
}

/// Streams a target into `dest` (verified; the file is removed if verification fails).
///
/// # Errors
/// Not listed or failed verification.
pub async fn save(repo: &Repository, name: &str, dest: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let tn = target_name(name)?;
    let terr = |source| Error::TufTarget {
        name: name.to_owned(),
        source: Box::new(source),
    };
    let werr = |source| Error::Write {
        path: dest.to_owned(),
        source,
    };
    let mut stream = repo
        .read_target(&tn)
        .await
        .map_err(terr)?
        .ok_or_else(|| Error::TargetMissing(name.to_owned()))?;
    let mut f = tokio::fs::File::create(dest).await.map_err(werr)?;
    let result = async {
        while let Some(chunk) = stream.next().await {
            f.write_all(&chunk.map_err(terr)?).await.map_err(werr)?;
        }
        f.sync_all().await.map_err(werr)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

/// Reads and parses the signed `manifest.json`.
///
/// # Errors
/// Verification or parse failure.
pub async fn manifest(repo: &Repository) -> Result<Manifest> {
    Manifest::from_json(&read_small(repo, "manifest.json").await?)
}

/// sha256 (hex) of each listed target, for caching migrations locally.
#[must_use]
pub fn target_sha256s(repo: &Repository) -> BTreeMap<String, String> {
    repo.all_targets()
        .map(|(n, t)| (n.raw().to_owned(), hex::encode(&t.hashes.sha256)))
        .collect()
}
