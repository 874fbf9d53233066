//! Reading a container's records across its rotated files: the last N
//! ([`read_tail`]), or everything after a [`LogPosition`] within a byte budget
//! ([`read_from`]), the position surviving rotation.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::record::parse_record;
use super::rotation::log_files;
use crate::error::{Error, Result};
use crate::types::LogLine;

/// Reads a container's log records across rotated files; `tail` keeps only the last N.
///
/// # Errors
/// [`Error::Io`] when a file exists but cannot be read.
pub fn read_tail(live: &Path, tail: Option<usize>) -> Result<Vec<LogLine>> {
    let mut lines: std::collections::VecDeque<LogLine> = std::collections::VecDeque::new();
    for p in log_files(live) {
        let f = match File::open(&p) {
            Ok(f) => f,
            // rotated away between listing and opening
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open log file", p, e)),
        };
        for l in BufReader::new(f).split(b'\n') {
            let l = l.map_err(|e| Error::io("read log file", &p, e))?;
            if let Some(rec) = parse_record(&String::from_utf8_lossy(&l)) {
                lines.push_back(rec);
                if tail.is_some_and(|t| lines.len() > t) {
                    lines.pop_front();
                }
            }
        }
    }
    Ok(lines.into())
}

/// Where reading a container's log stopped: the file (by inode, so a rotation that renames
/// it does not lose the place) and the byte offset just after the last record read.
/// Inodes of deleted files are soon reused, so the file is also recognised by a
/// fingerprint of its first record (which carries a nanosecond timestamp).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogPosition {
    /// Inode of the log file.
    pub file: u64,
    /// [`head_fingerprint`] of the file (0 when it had no complete record yet).
    pub head: u64,
    /// Byte offset in it.
    pub offset: u64,
}

/// FNV-1a of the file's first line (0 without a complete one): tells a log file apart
/// from a later one that got the same inode.
#[must_use]
pub fn head_fingerprint(path: &Path) -> u64 {
    let Ok(f) = File::open(path) else { return 0 };
    let mut first = Vec::new();
    match BufReader::new(f.take(64 * 1024)).read_until(b'\n', &mut first) {
        Ok(n) if n > 0 && first.last() == Some(&b'\n') => fnv1a(&first),
        _ => 0,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Which of a container's records one read takes (see [`read_from`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogRead {
    /// Where to start: after this position, or from the start when `None`.
    pub from: Option<LogPosition>,
    /// Without `from`: only the last `tail` records, if given.
    pub tail: Option<usize>,
    /// At most about this many bytes of records ([`record_cost`]), at least one record.
    pub max_bytes: usize,
}

/// Records read from a [`LogPosition`] by [`read_from`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogChunk {
    /// The records, oldest first.
    pub lines: Vec<LogLine>,
    /// Where to resume; `None` only when there is no log file yet and none was asked for.
    pub next: Option<LogPosition>,
    /// Output beyond `next` was already there but did not fit in `max_bytes`.
    pub more: bool,
}

/// What a record costs against a read's byte budget (text plus a fixed allowance for the
/// timestamp and framing).
#[must_use]
pub fn record_cost(line: &LogLine) -> usize {
    line.message.len() + line.timestamp.len() + 32
}

/// Reads a container's records after `from` (from the oldest file when `None`, or when
/// that file was rotated away), across rotated files, at most `max_bytes` of them (at
/// least one record); with `tail` and no `from`, only the last `tail` records. A trailing
/// line the logger is still writing is left for the next read.
///
/// # Errors
/// [`Error::Io`] when a file exists but cannot be read.
pub fn read_from(
    live: &Path,
    from: Option<LogPosition>,
    tail: Option<usize>,
    max_bytes: usize,
) -> Result<LogChunk> {
    let files: Vec<(PathBuf, u64)> = log_files(live)
        .into_iter()
        .filter_map(|p| fs::metadata(&p).ok().map(|m| (p, m.ino())))
        .collect();
    let same_file = |path: &Path, ino: u64, pos: &LogPosition| {
        ino == pos.file && (pos.offset == 0 || head_fingerprint(path) == pos.head)
    };
    let (start, mut offset) = match from {
        Some(pos) => match files.iter().position(|(p, ino)| same_file(p, *ino, &pos)) {
            Some(i) => (i, pos.offset),
            None => (0, 0),
        },
        None => (0, 0),
    };
    let tail = if from.is_some() { None } else { tail };
    let mut chunk = LogChunk {
        next: from,
        ..LogChunk::default()
    };
    let mut kept: std::collections::VecDeque<LogLine> = std::collections::VecDeque::new();
    let mut used = 0usize;
    'files: for (path, ino) in files.iter().skip(start) {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open log file", path, e)),
        };
        if f.metadata().map_err(|e| Error::io("stat", path, e))?.len() < offset {
            offset = 0; // not the file the position was taken in (inode reused)
        }
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", path, e))?;
        let mut reader = BufReader::new(f);
        let mut pos = offset;
        let mut head = head_fingerprint(path);
        chunk.next = Some(LogPosition {
            file: *ino,
            head,
            offset: pos,
        });
        let mut raw = Vec::new();
        loop {
            raw.clear();
            let n = reader
                .read_until(b'\n', &mut raw)
                .map_err(|e| Error::io("read log file", path, e))?;
            if n == 0 || raw.last() != Some(&b'\n') {
                break; // end of file, or a line still being written
            }
            if head == 0 && pos == 0 {
                head = fnv1a(&raw); // the file's first line was completed meanwhile
            }
            let Some(rec) = parse_record(&String::from_utf8_lossy(&raw[..n - 1])) else {
                pos += n as u64;
                chunk.next = Some(LogPosition {
                    file: *ino,
                    head,
                    offset: pos,
                });
                continue;
            };
            let cost = record_cost(&rec);
            if tail.is_none() && !kept.is_empty() && used + cost > max_bytes {
                chunk.more = true;
                break 'files;
            }
            pos += n as u64;
            chunk.next = Some(LogPosition {
                file: *ino,
                head,
                offset: pos,
            });
            used += cost;
            kept.push_back(rec);
            if let Some(t) = tail {
                while kept.len() > t || (used > max_bytes && kept.len() > 1) {
                    if let Some(dropped) = kept.pop_front() {
                        used -= record_cost(&dropped);
                    }
                }
            }
        }
        offset = 0;
    }
    chunk.lines = kept.into();
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;
    use crate::logs::record::format_record;
    use crate::logs::rotation::{RotatingWriter, RotationPolicy, log_path, numbered, rotating};
    use crate::types::LogStream;

    fn messages(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.message.as_str()).collect()
    }

    fn write_lines(w: &mut RotatingWriter, range: std::ops::Range<u32>) {
        for i in range {
            let rec = format_record(
                "T",
                LogStream::Stdout,
                false,
                format!("line {i:02}").as_bytes(),
            );
            w.write_record(&rec).unwrap();
        }
    }

    #[test]
    fn read_from_resumes_exactly_where_it_stopped_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let live = log_path(dir.path(), "c1");
        assert_eq!(
            read_from(&live, None, None, 1 << 20).unwrap(),
            LogChunk::default()
        );
        let policy = RotationPolicy {
            max_bytes: 200,
            max_files: 3,
        };
        let mut w = RotatingWriter::open(live.clone(), policy).unwrap();
        write_lines(&mut w, 0..5);
        let first = read_from(&live, None, None, 1 << 20).unwrap();
        assert_eq!(
            messages(&first.lines),
            ["line 00", "line 01", "line 02", "line 03", "line 04"]
        );
        assert!(!first.more);
        // Nothing new: same place, no lines.
        let again = read_from(&live, first.next, None, 1 << 20).unwrap();
        assert!(again.lines.is_empty());
        assert_eq!(again.next, first.next);
        // Enough new lines to rotate the file the position points into (200-byte files of
        // ~30-byte records): reading resumes in the renamed file, then the newer ones.
        write_lines(&mut w, 5..12);
        assert!(numbered(&live, 1).exists());
        let next = read_from(&live, first.next, None, 1 << 20).unwrap();
        assert_eq!(
            messages(&next.lines),
            (5..12).map(|i| format!("line {i:02}")).collect::<Vec<_>>()
        );
        // A small budget splits the output; following the positions gives every line once.
        let mut seen = Vec::new();
        let mut pos = None;
        loop {
            let c = read_from(&live, pos, None, 100).unwrap();
            assert!(c.lines.len() <= 2, "{:?}", c.lines);
            seen.extend(c.lines.iter().map(|l| l.message.clone()));
            pos = c.next;
            if !c.more {
                break;
            }
        }
        assert_eq!(
            seen,
            (0..12).map(|i| format!("line {i:02}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn read_from_with_tail_starts_near_the_end_and_leaves_a_half_written_line() {
        let dir = tempfile::tempdir().unwrap();
        let live = log_path(dir.path(), "c1");
        let mut w = RotatingWriter::open(live.clone(), RotationPolicy::default()).unwrap();
        write_lines(&mut w, 0..10);
        let mut f = OpenOptions::new().append(true).open(&live).unwrap();
        f.write_all(b"T stdout F half").unwrap();
        let c = read_from(&live, None, Some(2), 1 << 20).unwrap();
        assert_eq!(messages(&c.lines), ["line 08", "line 09"]);
        assert!(!c.more);
        f.write_all(b" done\n").unwrap();
        let c = read_from(&live, c.next, Some(2), 1 << 20).unwrap();
        assert_eq!(messages(&c.lines), ["half done"]);
    }

    #[test]
    fn read_from_a_position_rotated_away_starts_at_the_oldest_file() {
        let (_dir, live, mut w) = rotating("c1", 100, 2);
        write_lines(&mut w, 0..2);
        let first = read_from(&live, None, None, 1 << 20).unwrap();
        write_lines(&mut w, 2..20);
        let c = read_from(&live, first.next, None, 1 << 20).unwrap();
        let oldest = read_tail(&live, None).unwrap();
        assert_eq!(c.lines, oldest);
        assert!(c.lines.first().is_some_and(|l| l.message != "line 02"));
    }

    #[test]
    fn writer_rotates_and_tail_reads_across_files() {
        let (_dir, live, mut w) = rotating("c1", 200, 3);
        write_lines(&mut w, 0..60);
        let files = log_files(&live);
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(!numbered(&live, 3).exists());
        for f in &files {
            assert!(fs::metadata(f).unwrap().len() <= 200);
        }
        let tail = read_tail(&live, Some(3)).unwrap();
        let msgs: Vec<_> = tail.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(msgs, ["line 57", "line 58", "line 59"]);
        let all = read_tail(&live, None).unwrap();
        // older lines were rotated away, the rest is in order
        assert!(all.len() < 60 && all.len() > 20, "{}", all.len());
        assert_eq!(all.last().unwrap().message, "line 59");
        let nums: Vec<u32> = all
            .iter()
            .map(|l| l.message[5..].parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
