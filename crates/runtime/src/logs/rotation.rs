//! Size-based rotation: the policy, the writer that rotates `<id>.log` into
//! `<id>.log.1` … as it grows, and the list of a container's log files, oldest first.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Size-based rotation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Rotate when the live file would exceed this many bytes.
    pub max_bytes: u64,
    /// Files kept in total, live one included (≥ 1).
    pub max_files: u32,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

impl RotationPolicy {
    /// Whether a record of `incoming` bytes must go to a fresh file. A record is never
    /// split across files and an empty file always takes the record, however large.
    #[must_use]
    pub fn needs_rotation(&self, current: u64, incoming: u64) -> bool {
        current > 0 && current.saturating_add(incoming) > self.max_bytes
    }

    /// Renames to perform, in order, to rotate `live`: `(from, to)` pairs shifting
    /// `.n-1 → .n` down to `live → .1`. With `max_files == 1` there are none: the live file
    /// is simply truncated (the caller deletes it).
    #[must_use]
    pub fn rename_plan(&self, live: &Path) -> Vec<(PathBuf, PathBuf)> {
        let keep = self.max_files.max(1) - 1;
        let mut plan = Vec::new();
        for i in (1..keep).rev() {
            plan.push((numbered(live, i), numbered(live, i + 1)));
        }
        if keep >= 1 {
            plan.push((live.to_path_buf(), numbered(live, 1)));
        }
        plan
    }
}

/// `live.N`.
#[must_use]
pub fn numbered(live: &Path, n: u32) -> PathBuf {
    let mut s = live.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The live log file of container `id` under `dir`.
#[must_use]
pub fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.log"))
}

/// A log file writer that rotates by size.
#[derive(Debug)]
pub struct RotatingWriter {
    live: PathBuf,
    policy: RotationPolicy,
    file: File,
    size: u64,
}

impl RotatingWriter {
    /// Opens (appending) `live`, creating its directory.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory or file cannot be created.
    pub fn open(live: PathBuf, policy: RotationPolicy) -> Result<Self> {
        if let Some(dir) = live.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io("create log dir", dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&live)
            .map_err(|e| Error::io("open log file", &live, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat log file", &live, e))?
            .len();
        Ok(Self {
            live,
            policy,
            file,
            size,
        })
    }

    /// Writes one record, rotating first if needed.
    ///
    /// # Errors
    /// [`Error::Io`] on write or rename failures.
    pub fn write_record(&mut self, record: &[u8]) -> Result<()> {
        let len = u64::try_from(record.len()).unwrap_or(u64::MAX);
        if self.policy.needs_rotation(self.size, len) {
            self.rotate()?;
        }
        self.file
            .write_all(record)
            .map_err(|e| Error::io("write log file", &self.live, e))?;
        self.size = self.size.saturating_add(len);
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let plan = self.policy.rename_plan(&self.live);
        if plan.is_empty() {
            fs::remove_file(&self.live).map_err(|e| Error::io("remove log file", &self.live, e))?;
        }
        for (from, to) in plan {
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("rotate log file", from, e)),
            }
        }
        let fresh = Self::open(self.live.clone(), self.policy)?;
        *self = fresh;
        Ok(())
    }
}

/// All log files of a container, oldest first (`.N`, …, `.1`, live), existing ones only.
#[must_use]
pub fn log_files(live: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str()))
        && let Ok(rd) = fs::read_dir(dir)
    {
        for e in rd.flatten() {
            let fname = e.file_name();
            let Some(f) = fname.to_str() else { continue };
            if let Some(n) = f
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix('.'))
                .and_then(|r| r.parse::<u32>().ok())
            {
                rotated.push((n, e.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if live.exists() {
        out.push(live.to_path_buf());
    }
    out
}

/// A writer of container `name`'s log in a new directory, rotating at `max_bytes`
/// into at most `max_files` files; the directory lives as long as the first value.
#[cfg(test)]
pub(super) fn rotating(
    name: &str,
    max_bytes: u64,
    max_files: u32,
) -> (tempfile::TempDir, PathBuf, RotatingWriter) {
    let dir = tempfile::tempdir().unwrap();
    let live = log_path(dir.path(), name);
    let policy = RotationPolicy {
        max_bytes,
        max_files,
    };
    let w = RotatingWriter::open(live.clone(), policy).unwrap();
    (dir, live, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_decision() {
        let p = RotationPolicy {
            max_bytes: 100,
            max_files: 3,
        };
        assert!(!p.needs_rotation(0, 1000));
        assert!(!p.needs_rotation(50, 50));
        assert!(p.needs_rotation(50, 51));
    }

    #[test]
    fn rename_plan_shifts_oldest_first() {
        let live = Path::new("/l/c.log");
        let p = RotationPolicy {
            max_bytes: 1,
            max_files: 3,
        };
        assert_eq!(
            p.rename_plan(live),
            vec![
                (PathBuf::from("/l/c.log.1"), PathBuf::from("/l/c.log.2")),
                (PathBuf::from("/l/c.log"), PathBuf::from("/l/c.log.1")),
            ]
        );
        let one = RotationPolicy {
            max_bytes: 1,
            max_files: 1,
        };
        assert!(one.rename_plan(live).is_empty());
    }
}
