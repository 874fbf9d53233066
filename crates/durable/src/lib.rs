//! # durable — the one way flotilla replaces a file on disk
//!
//! Every file flotilla keeps state in (the agent's task records, a node's IPAM, the host
//! layer's settings datastore and rendered configuration, update partitions, the dev
//! cluster's spec, an update repository's staged targets) is written through [`write`] (or
//! [`copy`], for a file's content), which gives the strongest guarantee any
//! of them needs:
//!
//! - **atomic**: a crash at any point leaves either the old or the new content, never a
//!   mix or an empty file (a sibling temporary file is renamed over the target);
//! - **durable**: the content is fsync'd before the rename and the directory after it, so
//!   a write that returned survives a power loss;
//! - **private from the start**: the temporary file is created with the final mode
//!   (`O_CREAT|O_EXCL`, then an exact `fchmod` past the umask), so a secret is never
//!   readable by others, not even between the write and the rename;
//! - **clean on failure**: a failed write removes its temporary file.
//!
//! Callers serialize first and write second, so a serialization error never reaches the
//! disk. `crates/flotilla/tests/durable_writes.rs` fails if another `rename`-based write
//! appears in the workspace.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of files that may hold secrets (datastore documents, rendered credentials).
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of directories holding such files.
pub const SECRET_DIR_MODE: u32 = 0o700;
/// Mode of ordinary state and configuration files.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Replaces `path` with `bytes`, atomically and durably, the file getting exactly `mode`
/// (see the crate docs). Creates the parent directory if missing.
///
/// # Errors
/// Any IO failure; the target is then unchanged and no temporary file is left.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    replace(path, mode, |f| f.write_all(bytes))
}

/// Replaces `to` with a copy of the file `from`, streamed (a node image is hundreds of
/// megabytes), with the guarantees of [`write`]: `to` is always a new file, never one
/// rewritten in place, so a hard link to the old `to` keeps the old content.
///
/// # Errors
/// Any IO failure, reading `from` included; `to` is then unchanged and no temporary
/// file is left.
pub fn copy(from: &Path, to: &Path, mode: u32) -> std::io::Result<()> {
    let mut source = std::fs::File::open(from)?;
    replace(to, mode, |f| std::io::copy(&mut source, f).map(|_| ()))
}

/// The one replace: a sibling temporary file created with `mode`, filled by `fill`,
/// fsync'd, renamed over `path`, the directory fsync'd; the temporary file removed on any
/// failure.
fn replace(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have removed bits from `mode`; set it exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        fill(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // Makes the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` (and parents) and sets its mode to `mode` (the last component only).
///
/// # Errors
/// Any IO failure.
pub fn create_dir_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_the_content_with_exactly_the_mode_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/secret.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&p, b"new", SECRET_FILE_MODE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode_of(&p), 0o600);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret.json")]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_content_and_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the temp file was written.
        let p = d.path().join("taken");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"x").unwrap();
        assert!(write(&p, b"new", PUBLIC_FILE_MODE).is_err());
        assert!(p.is_dir());
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("taken")]);
    }

    #[test]
    fn a_copy_is_a_new_file_so_a_link_to_the_old_one_keeps_its_content() {
        let d = tempfile::tempdir().unwrap();
        let (from, to, link) = (
            d.path().join("from"),
            d.path().join("to"),
            d.path().join("link"),
        );
        std::fs::write(&to, b"old").unwrap();
        std::fs::hard_link(&to, &link).unwrap();
        std::fs::write(&from, b"new").unwrap();
        copy(&from, &to, PUBLIC_FILE_MODE).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert_eq!(std::fs::read(&link).unwrap(), b"old");
        assert_eq!(mode_of(&to), 0o644);
        // A source that cannot be read leaves the target as it was, and no temp file.
        assert!(copy(&d.path().join("missing"), &to, PUBLIC_FILE_MODE).is_err());
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 3);
    }

    #[test]
    fn creates_missing_parents_and_directories_get_their_mode() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("a/b");
        create_dir_mode(&dir, SECRET_DIR_MODE).unwrap();
        assert_eq!(mode_of(&dir), 0o700);
        write(&d.path().join("x/y/z.toml"), b"k = 1", PUBLIC_FILE_MODE).unwrap();
        assert_eq!(mode_of(&d.path().join("x/y/z.toml")), 0o644);
    }
}
