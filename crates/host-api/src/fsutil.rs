//! Atomic file replacement with an explicit file mode.
//!
//! `updater::fsutil::write_atomic` creates files with the process umask (usually 0644), which
//! is wrong for files holding secrets (the datastore holds registry passwords; the rendered
//! `registries.toml` too). [`write_atomic_mode`] creates the temporary file with the wanted mode
//! from the start (`O_CREAT|O_EXCL`, then `fchmod` to undo the umask), so the content is never
//! readable by others, not even between the write and the rename.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of files that may hold secrets (datastore documents, rendered credentials).
pub const SECRET_FILE_MODE: u32 = 0o600;

/// Mode of directories holding such files.
pub const SECRET_DIR_MODE: u32 = 0o700;

/// Mode of ordinary rendered configuration.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Writes `bytes` to `path` atomically with file mode `mode`: a sibling temporary file created
/// with `mode`, fsync, rename over `path`, fsync of the directory. A crash leaves the old or the
/// new content; the file never exists with a broader mode.
///
/// # Errors
/// Any IO failure.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
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
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Makes the rename durable; the swap itself is atomic either way.
        let _ = d.sync_all();
    }
    Ok(())
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

    #[test]
    fn file_gets_exactly_the_mode_and_replaces_a_broader_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/secret.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic_mode(&p, b"new", SECRET_FILE_MODE).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // no temporary file left behind
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
