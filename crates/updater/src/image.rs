//! Node images: a gzip-compressed tar archive holding one version of the node's software.
//!
//! Layout inside the archive:
//!
//! | path | what |
//! | --- | --- |
//! | `os-release` | `PRETTY_NAME`, `VARIANT_ID`, `VERSION_ID`, `BUILD_ID` (read by `GET /os`) |
//! | `image.toml` | [`ImageMeta`]: version, how to start the agent, how to probe health |
//! | `bin/flotilla` | the flotilla binary of this version |
//! | `etc/containerd/config.toml` | containerd configuration shipped with the image |
//! | `share/flotilla/root.json` | the TUF trusted root the node uses for its next update |
//! | `SHA256SUMS` | sha256 of every other file; checked after unpacking |
//!
//! The archive as a whole is a TUF target (length + sha256 in signed metadata); `SHA256SUMS`
//! additionally lets `flotilla host boot` detect a slot that was corrupted on disk.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `image.toml`: what the boot step needs to know about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageMeta {
    /// Semver version of this image.
    #[serde(default)]
    pub version: String,
    /// Variant (`flotilla-node`).
    #[serde(default)]
    pub variant: String,
    /// CPU architecture.
    #[serde(default)]
    pub arch: String,
    /// How to run the node agent.
    #[serde(default)]
    pub agent: Option<CommandSpec>,
    /// How to decide that a boot is healthy.
    #[serde(default)]
    pub health: Option<HealthSpec>,
    /// How to run host and bootstrap containers.
    #[serde(default)]
    pub containers: Option<ContainersSpec>,
}

/// `[containers]` of `image.toml`: how host and bootstrap containers run.
///
/// * `runtime = "containerd"`: through containerd (the `runtime` crate), in their own
///   namespace on the socket `flotilla host boot --containerd-socket` names;
/// * `runtime = "command"`, or no `runtime` and a non-empty `command`: the runner command
///   (`command` + `TYPE NAME SOURCE`), a fallback for images and tests without containerd;
/// * no `[containers]` at all, or neither: containerd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainersSpec {
    /// The runner's argv (`runtime = "command"`).
    #[serde(default)]
    pub command: Vec<String>,
    /// Which runtime runs the containers; see the type's documentation for the default.
    #[serde(default)]
    pub runtime: Option<ContainersRuntime>,
}

/// The `runtime` of `[containers]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainersRuntime {
    /// The runner command.
    Command,
    /// containerd through the runtime crate.
    Containerd,
}

impl ContainersSpec {
    /// The runner command to use, or `None` when containers run through containerd.
    /// `runtime = "command"` without a command gives an empty one (an error when a container
    /// is started).
    #[must_use]
    pub fn runner(&self) -> Option<&[String]> {
        match self.runtime {
            Some(ContainersRuntime::Containerd) => None,
            // Explicitly asked for: an empty command is reported when a container starts.
            Some(ContainersRuntime::Command) => Some(self.command.as_slice()),
            None => (!self.command.is_empty()).then_some(self.command.as_slice()),
        }
    }
}

/// A command line; `{slot}`, `{data}`, `{node}` and `{run}` are replaced by the node's paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CommandSpec {
    /// argv.
    pub command: Vec<String>,
}

/// Boot health probe: a command that exits 0 once the node is healthy (for the real agent:
/// "this node is registered with the control plane").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HealthSpec {
    /// argv of the probe.
    pub command: Vec<String>,
    /// Give up after this many seconds (default 60).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// What goes into a new image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The metadata (version, variant, arch filled in).
    pub meta: ImageMeta,
    /// The flotilla binary to ship.
    pub binary: Option<PathBuf>,
    /// The TUF root to ship.
    pub root_json: Option<PathBuf>,
    /// A directory whose files are added as-is (scripts, extra config).
    pub overlay: Option<PathBuf>,
}

const CONTAINERD_CONFIG: &str = "version = 2\nroot = \"/var/lib/flotilla/containerd\"\nstate = \"/run/flotilla/containerd\"\n\n[grpc]\naddress = \"/run/flotilla/containerd/containerd.sock\"\n";

/// sha256 via aws-lc (optimised C even in debug builds: slots hold a 200+ MB binary).
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn collect_overlay(
    dir: &Path,
    rel: &Path,
    out: &mut BTreeMap<String, (Vec<u8>, u32)>,
) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in rd {
        let entry = entry.map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let name = rel.join(entry.file_name());
        if path.is_dir() {
            collect_overlay(&path, &name, out)?;
        } else {
            let mode = file_mode(&path);
            out.insert(name.to_string_lossy().into_owned(), (read(&path)?, mode));
        }
    }
    Ok(())
}

fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o777)
}

/// Renders `os-release` for an image.
#[must_use]
pub fn os_release(meta: &ImageMeta, build_id: &str) -> String {
    format!(
        "NAME=flotilla\nPRETTY_NAME=\"flotilla node {v} ({var})\"\nVARIANT_ID={var}\nVERSION_ID={v}\nBUILD_ID={build_id}\n",
        v = meta.version,
        var = meta.variant
    )
}

/// Builds a node image archive at `out`. Returns the sha256 (hex) of the archive.
///
/// # Errors
/// Unreadable inputs, an invalid version, or a write failure.
pub fn build_image(spec: &ImageSpec, out: &Path) -> Result<String> {
    semver::Version::parse(&spec.meta.version)
        .map_err(|e| Error::Image(format!("version {:?}: {e}", spec.meta.version)))?;
    let mut files: BTreeMap<String, (Vec<u8>, u32)> = BTreeMap::new();
    files.insert(
        "etc/containerd/config.toml".into(),
        (CONTAINERD_CONFIG.as_bytes().to_vec(), 0o644),
    );
    if let Some(bin) = &spec.binary {
        files.insert("bin/flotilla".into(), (read(bin)?, 0o755));
    }
    if let Some(root) = &spec.root_json {
        files.insert("share/flotilla/root.json".into(), (read(root)?, 0o644));
    }
    if let Some(dir) = &spec.overlay {
        collect_overlay(dir, Path::new(""), &mut files)?;
    }
    let meta_toml =
        toml::to_string(&spec.meta).map_err(|e| Error::Image(format!("image.toml: {e}")))?;
    files.insert("image.toml".into(), (meta_toml.into_bytes(), 0o644));
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for (name, (bytes, _)) in &files {
        ctx.update(name.as_bytes());
        ctx.update(bytes);
    }
    let build_id = hex::encode(&ctx.finish().as_ref()[..4]);
    files.insert(
        "os-release".into(),
        (os_release(&spec.meta, &build_id).into_bytes(), 0o644),
    );
    let sums: String = files
        .iter()
        .map(|(name, (bytes, _))| format!("{}  {name}\n", sha256_hex(bytes)))
        .collect();
    files.insert("SHA256SUMS".into(), (sums.into_bytes(), 0o644));

    let werr = |source| Error::Write {
        path: out.to_owned(),
        source,
    };
    let file = std::fs::File::create(out).map_err(werr)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    // Metadata first, so readers (`read_archive_meta`) stop after a few hundred bytes.
    let first = ["image.toml", "os-release", "SHA256SUMS"];
    let ordered = first
        .iter()
        .filter_map(|n| files.get_key_value(*n))
        .chain(files.iter().filter(|(n, _)| !first.contains(&n.as_str())));
    for (name, (bytes, mode)) in ordered {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes.as_slice())
            .map_err(werr)?;
    }
    let gz = tar.into_inner().map_err(werr)?;
    let mut file = gz.finish().map_err(werr)?;
    file.flush().map_err(werr)?;
    file.sync_all().map_err(werr)?;
    let bytes = read(out)?;
    Ok(sha256_hex(&bytes))
}

/// Reads `image.toml` from an image archive without unpacking the rest.
///
/// # Errors
/// Not an image archive.
pub fn read_archive_meta(archive: &mut dyn Read) -> Result<ImageMeta> {
    let gz = flate2::read::GzDecoder::new(archive);
    let mut ar = tar::Archive::new(gz);
    let entries = ar
        .entries()
        .map_err(|e| Error::Image(format!("reading archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Image(format!("reading archive: {e}")))?;
        let is_meta = entry.path().is_ok_and(|p| p == Path::new("image.toml"));
        if is_meta {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| Error::Image(format!("image.toml: {e}")))?;
            return toml::from_str(&text).map_err(|e| Error::Image(format!("image.toml: {e}")));
        }
    }
    Err(Error::Image("archive has no image.toml".into()))
}

/// Unpacks an image archive into `dest` (replacing it): unpack into a sibling temp directory,
/// verify `SHA256SUMS` and the expected version, then rename into place.
///
/// # Errors
/// A corrupt archive, unsafe paths, checksum or version mismatch.
pub fn unpack_image(
    archive: &mut dyn Read,
    dest: &Path,
    expected_version: Option<&str>,
) -> Result<ImageMeta> {
    let parent = dest.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(parent).map_err(|source| Error::Write {
        path: parent.to_owned(),
        source,
    })?;
    let tmp = parent.join(format!(
        ".{}.unpack.{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        let gz = flate2::read::GzDecoder::new(archive);
        let mut ar = tar::Archive::new(gz);
        ar.set_preserve_permissions(true);
        // `unpack` refuses entries that would land outside `tmp` (`..`, absolute paths).
        ar.unpack(&tmp)
            .map_err(|e| Error::Image(format!("unpacking archive: {e}")))?;
        let meta = verify_slot(&tmp)?;
        if let Some(v) = expected_version
            && meta.version != v
        {
            return Err(Error::Image(format!(
                "image says version {} but the manifest says {v}",
                meta.version
            )));
        }
        Ok(meta)
    })();
    match result {
        Ok(meta) => {
            let _ = std::fs::remove_dir_all(dest);
            std::fs::rename(&tmp, dest).map_err(|source| Error::Write {
                path: dest.to_owned(),
                source,
            })?;
            Ok(meta)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Checks an unpacked slot against its `SHA256SUMS` and returns its metadata.
///
/// # Errors
/// Missing files or checksum mismatch.
pub fn verify_slot(dir: &Path) -> Result<ImageMeta> {
    let sums = String::from_utf8(read(&dir.join("SHA256SUMS"))?)
        .map_err(|_| Error::Image("SHA256SUMS is not UTF-8".into()))?;
    for line in sums.lines() {
        let Some((sum, name)) = line.split_once("  ") else {
            return Err(Error::Image(format!("bad SHA256SUMS line {line:?}")));
        };
        let got = sha256_hex(&read(&dir.join(name))?);
        if got != sum {
            return Err(Error::Image(format!("{name}: checksum mismatch")));
        }
    }
    read_meta(dir)
}

/// Reads `image.toml` of an unpacked slot.
///
/// # Errors
/// Missing or malformed file.
pub fn read_meta(dir: &Path) -> Result<ImageMeta> {
    let path = dir.join("image.toml");
    let text = String::from_utf8(read(&path)?).map_err(|_| Error::Parse {
        path: path.clone(),
        message: "not UTF-8".into(),
    })?;
    toml::from_str(&text).map_err(|e| Error::Parse {
        path,
        message: e.to_string(),
    })
}

/// Parses an `os-release` file into its key/value pairs (quotes stripped, `#` lines ignored).
#[must_use]
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, version: &str) -> ImageSpec {
        let overlay = dir.join("overlay");
        std::fs::create_dir_all(overlay.join("bin")).unwrap();
        std::fs::write(overlay.join("bin/agent"), "#!/bin/sh\n").unwrap();
        ImageSpec {
            meta: ImageMeta {
                version: version.into(),
                variant: "flotilla-node".into(),
                arch: "x86_64".into(),
                ..ImageMeta::default()
            },
            binary: None,
            root_json: None,
            overlay: Some(overlay),
        }
    }

    #[test]
    fn build_unpack_verify_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("img.tar.gz");
        build_image(&spec(dir.path(), "1.2.3"), &out).unwrap();
        let slot = dir.path().join("slot");
        let meta = unpack_image(
            &mut std::fs::File::open(&out).unwrap(),
            &slot,
            Some("1.2.3"),
        )
        .unwrap();
        assert_eq!(meta.version, "1.2.3");
        let osr = parse_os_release(&std::fs::read_to_string(slot.join("os-release")).unwrap());
        assert_eq!(osr["VERSION_ID"], "1.2.3");
        assert!(slot.join("etc/containerd/config.toml").exists());
        // corrupt a file on disk: verify_slot notices
        std::fs::write(slot.join("bin/agent"), "evil").unwrap();
        assert!(verify_slot(&slot).is_err());
    }

    #[test]
    fn wrong_version_is_refused_and_dest_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("img.tar.gz");
        build_image(&spec(dir.path(), "1.0.0"), &out).unwrap();
        let slot = dir.path().join("slot");
        std::fs::create_dir_all(&slot).unwrap();
        std::fs::write(slot.join("keep"), "x").unwrap();
        assert!(
            unpack_image(
                &mut std::fs::File::open(&out).unwrap(),
                &slot,
                Some("2.0.0")
            )
            .is_err()
        );
        assert!(slot.join("keep").exists());
    }

    #[test]
    fn garbage_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let slot = dir.path().join("slot");
        let mut junk: &[u8] = b"not a tarball";
        assert!(unpack_image(&mut junk, &slot, None).is_err());
        assert!(!slot.exists());
    }

    #[test]
    fn containers_runtime_choice() {
        let meta = |t: &str| -> ImageMeta { toml::from_str(t).unwrap() };
        let runner = meta("[containers]\ncommand = [\"run\"]\n");
        assert_eq!(
            runner.containers.unwrap().runner(),
            Some(&["run".to_owned()][..])
        );
        let forced = meta("[containers]\ncommand = [\"run\"]\nruntime = \"containerd\"\n");
        assert_eq!(forced.containers.unwrap().runner(), None);
        let bare = meta("[containers]\nruntime = \"containerd\"\n");
        assert_eq!(bare.containers.unwrap().runner(), None);
        let empty = meta("[containers]\nruntime = \"command\"\n");
        assert_eq!(empty.containers.unwrap().runner(), Some(&[][..]));
        assert!(toml::from_str::<ImageMeta>("[containers]\nruntime = \"docker\"\n").is_err());
    }
}
