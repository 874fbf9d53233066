//! User-namespace remapping of an image's root file system. A container in its own user
//! namespace ([`IdMapping`]) sees the node's files through the mapping, so root-owned
//! image files must be owned by the range's first id on the node. The runtime keeps one
//! committed snapshot `<top chain id>-remap-<base>-<size>` per image and mapping whose
//! files are shifted into the range, and prepares each such container's writable snapshot
//! on it — containerd's Go client calls this `WithRemappedSnapshot`. The shift runs once
//! per image and mapping (a copy-up of every file on overlayfs); later containers of the
//! image start as fast as any other.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use containerd_client::services::v1::snapshots::CommitSnapshotRequest;
use containerd_client::services::v1::{AddResourceRequest, Resource, leases_client::LeasesClient};
use containerd_client::types::Mount;
use nix::mount::{MntFlags, MsFlags};
use tonic::{Code, Status};

use super::{ContainerdRuntime, unique};
use crate::error::{Error, Result};
use crate::types::IdMapping;

impl ContainerdRuntime {
    /// The committed snapshot a container of `id` in user namespace `map` is prepared on:
    /// the image's top chain `chain` shifted into the range, made under `lease` when it
    /// does not exist yet. The lease also holds an existing one, so containerd's GC cannot
    /// take it between this call and the container's own snapshot.
    pub(super) async fn remapped_parent(
        &self,
        id: &str,
        chain: &str,
        map: IdMapping,
        lease: &str,
    ) -> Result<String> {
        let cerr = |source: Status| Error::CreateContainer {
            id: id.to_owned(),
            source,
        };
        let name = format!("{chain}-remap-{}-{}", map.host_base, map.size);
        LeasesClient::new(self.channel.clone())
            .add_resource(self.req(AddResourceRequest {
                id: lease.to_owned(),
                resource: Some(Resource {
                    id: name.clone(),
                    r#type: format!("snapshots/{}", self.cfg.snapshotter),
                }),
            }))
            .await
            .map_err(cerr)?;
        if self.snapshot_exists(&name).await? {
            return Ok(name);
        }
        let staging = unique(&format!("{name}-staging"));
        let mounts = self
            .prepare_snapshot(&staging, chain, lease)
            .await
            .map_err(cerr)?;
        let dir = std::env::temp_dir().join(unique("flotilla-remap"));
        let shifted = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || shift_mounted(&mounts, &dir, map))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        };
        let files = match shifted {
            Ok(n) => n,
            Err(e) => {
                self.remove_snapshot_quiet(&staging).await;
                return Err(Error::io(
                    "shift the image's ids into the user namespace",
                    dir,
                    e,
                ));
            }
        };
        let committed = self
            .snapshots()
            .commit(self.req_lease(
                CommitSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    name: name.clone(),
                    key: staging.clone(),
                    labels: Default::default(),
                },
                lease,
            ))
            .await;
        match committed {
            Ok(_) => {
                tracing::info!(%id, snapshot = %name, files, "remapped the image for a user namespace");
            }
            // Another create of the same image and mapping committed first: use theirs.
            Err(s) if s.code() == Code::AlreadyExists => self.remove_snapshot_quiet(&staging).await,
            Err(s) => {
                self.remove_snapshot_quiet(&staging).await;
                return Err(cerr(s));
            }
        }
        Ok(name)
    }
}

/// Mounts a snapshot's `mounts` on a new directory `dir`, shifts its ids, unmounts and
/// removes `dir`; the number of files shifted.
fn shift_mounted(mounts: &[Mount], dir: &Path, map: IdMapping) -> std::io::Result<u64> {
    let [m] = mounts else {
        return Err(std::io::Error::other(format!(
            "expected one mount for the snapshot, got {}",
            mounts.len()
        )));
    };
    std::fs::create_dir_all(dir)?;
    let result = match Mounted::mount(m, dir.to_path_buf()) {
        // Unmounted when `_mounted` drops, at the end of this arm.
        Ok(_mounted) => shift_ids(dir, map),
        Err(e) => Err(e.into()),
    };
    let _ = std::fs::remove_dir(dir);
    result
}

/// A mount removed (lazily) on drop.
struct Mounted(PathBuf);

impl Mounted {
    /// Mounts containerd's `m` at `target`: flag options (`ro`, `bind`, `rbind`, `nosuid`,
    /// `nodev`, `noexec`, `rw`) as mount flags, the rest (`lowerdir=…`) as data.
    fn mount(m: &Mount, target: PathBuf) -> nix::Result<Self> {
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for o in &m.options {
            match o.as_str() {
                "rw" => {}
                "ro" => flags |= MsFlags::MS_RDONLY,
                "bind" => flags |= MsFlags::MS_BIND,
                "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
                "nosuid" => flags |= MsFlags::MS_NOSUID,
                "nodev" => flags |= MsFlags::MS_NODEV,
                "noexec" => flags |= MsFlags::MS_NOEXEC,
                other => data.push(other),
            }
        }
        let data = data.join(",");
        nix::mount::mount(
            Some(m.source.as_str()),
            &target,
            Some(m.r#type.as_str()),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )?;
        Ok(Self(target))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.0, MntFlags::MNT_DETACH) {
            tracing::warn!(path = %self.0.display(), error = %e, "unmount remap staging");
        }
    }
}

/// Shifts the owner and group of every file below `root` (itself included, symlinks not
/// followed, one file system) into `map`: id `n` becomes `map.host_base + n`; an id outside
/// the range becomes the range's last id (the container's "nobody", never a node user's
/// id). A file with several hard links is shifted once. Set-user/group-id bits, which
/// `chown` clears, are put back. Returns how many files were shifted.
pub fn shift_ids(root: &Path, map: IdMapping) -> std::io::Result<u64> {
    let last = map.host_base + (map.size - 1);
    let mut linked = HashSet::new();
    let mut count = 0;
    for entry in walkdir::WalkDir::new(root).same_file_system(true) {
        let entry = entry.map_err(std::io::Error::other)?;
        let meta = entry.metadata().map_err(std::io::Error::other)?;
        if meta.nlink() > 1 && !meta.is_dir() && !linked.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let uid = map.host_id(meta.uid()).unwrap_or(last);
        let gid = map.host_id(meta.gid()).unwrap_or(last);
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
        if !meta.file_type().is_symlink() && meta.mode() & 0o6000 != 0 {
            std::fs::set_permissions(
                entry.path(),
                std::fs::Permissions::from_mode(meta.mode() & 0o7777),
            )?;
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (chown to other ids); CI runs as root.
    #[test]
    fn shifts_each_file_once_keeps_setuid_and_does_not_follow_links() {
        if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), "x").unwrap();
        std::fs::hard_link(root.join("bin/busybox"), root.join("bin/sh")).unwrap();
        std::fs::write(root.join("su"), "x").unwrap();
        std::fs::set_permissions(root.join("su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::write(root.join("owned"), "x").unwrap();
        std::os::unix::fs::chown(root.join("owned"), Some(1000), Some(70_000)).unwrap();
        // A symlink out of the tree: the target must stay as it is.
        let outside = t.path().join("outside");
        std::fs::write(&outside, "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();

        let map = IdMapping {
            host_base: 1_000_000_000,
            size: 65_536,
        };
        let n = shift_ids(&root, map).unwrap();
        assert_eq!(n, 6, "root, bin, one of the two links, su, owned, escape");
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!(
            meta("bin/busybox").uid(),
            1_000_000_000,
            "hard link shifted once"
        );
        assert_eq!(meta("bin/sh").uid(), 1_000_000_000);
        assert_eq!(meta("su").mode() & 0o7777, 0o4755, "setuid kept");
        assert_eq!(meta("su").gid(), 1_000_000_000);
        assert_eq!(meta("owned").uid(), 1_000_001_000);
        assert_eq!(
            meta("owned").gid(),
            1_000_065_535,
            "outside the range: the last id"
        );
        assert_eq!(meta("escape").uid(), 1_000_000_000, "the link itself");
        assert_eq!(
            std::fs::metadata(&outside).unwrap().uid(),
            0,
            "its target untouched"
        );
        assert_eq!(meta(".").uid(), 1_000_000_000);
    }
}
