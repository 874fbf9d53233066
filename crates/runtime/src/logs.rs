//! Container log files: the on-disk format, size-based rotation, tail reading and
//! following, and the `binary://` logger process that containerd's shim runs.
//!
//! # Why a `binary://` logger
//! The runc shim (not the agent) owns a container's stdout/stderr pipes. With a
//! `binary://` stdio URI the shim starts our logger (`flotilla-runtime-logger`) as its own
//! child, hands it the pipe read ends as fds 3 and 4, and waits for one byte on fd 5. The
//! logger writes lines to `<log_dir>/<container id>.log` and rotates it itself. Nothing
//! passes through the agent, so an agent crash or `kill -9` neither blocks the container
//! (no full pipe) nor loses output, and rotation keeps working while the agent is down.
//! `file://` URIs were the alternative: simpler, but the shim appends to one file forever,
//! so rotation would need the agent (copy-truncate), which is exactly what must not depend
//! on the agent being alive.
//!
//! # Format
//! One line per record, the CRI log format: `<RFC 3339 nano UTC> <stdout|stderr> <F|P>
//! <text>`; `P` marks a partial line split at [`MAX_LINE`] bytes.
//!
//! # Rotation
//! `<id>.log` is the live file; when writing a line would push it past `max_bytes` it is
//! renamed to `<id>.log.1` (older ones shift up, the oldest beyond `max_files` is
//! deleted) and a new live file is opened. Readers detect rotation by inode change.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::types::{LogLine, LogStream};

/// Longest line written as one record; longer lines are split and marked partial.
pub const MAX_LINE: usize = 16 * 1024;

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

/// Formats one record (with trailing newline).
#[must_use]
pub fn format_record(timestamp: &str, stream: LogStream, partial: bool, msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 48);
    out.extend_from_slice(timestamp.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(msg);
    out.push(b'\n');
    out
}

/// Parses one record (without its newline); `None` for malformed lines.
#[must_use]
pub fn parse_record(line: &str) -> Option<LogLine> {
    let mut it = line.splitn(4, ' ');
    let timestamp = it.next()?.to_owned();
    let stream = match it.next()? {
        "stdout" => LogStream::Stdout,
        "stderr" => LogStream::Stderr,
        _ => return None,
    };
    let partial = match it.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(LogLine {
        timestamp,
        stream,
        partial,
        message: it.next().unwrap_or("").to_owned(),
    })
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
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

/// A running follow of a container's log; dropping it stops the follower task.
#[derive(Debug)]
pub struct LogFollower {
    rx: mpsc::Receiver<LogLine>,
}

impl LogFollower {
    /// Wraps a channel whose sender delivers records (used by [`crate::FakeRuntime`]).
    #[must_use]
    pub fn from_receiver(rx: mpsc::Receiver<LogLine>) -> Self {
        Self { rx }
    }

    /// The next record; waits for new output. `None` once the follower stopped (file
    /// unreadable).
    pub async fn next(&mut self) -> Option<LogLine> {
        self.rx.recv().await
    }
}

/// Follows `live`: first the last `tail` records (all if `None`), then new records as the
/// logger writes them, across rotations. Polls every `poll` (files, not inotify: cheap and
/// robust for the few followers an agent has).
#[must_use]
pub fn follow(live: PathBuf, tail: Option<usize>, poll: Duration) -> LogFollower {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        if let Err(e) = follow_loop(&live, tail, poll, &tx).await {
            tracing::debug!(path = %live.display(), error = %e, "log follower stopped");
        }
    });
    LogFollower { rx }
}

async fn follow_loop(
    live: &Path,
    tail: Option<usize>,
    poll: Duration,
    tx: &mpsc::Sender<LogLine>,
) -> Result<()> {
    // Snapshot: records so far, and where the live file ended when we read it.
    let (mut file, mut ino) = loop {
        match File::open(live) {
            Ok(f) => {
                let ino = f.metadata().map_err(|e| Error::io("stat", live, e))?.ino();
                break (f, ino);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if tx.is_closed() {
                    return Ok(());
                }
                tokio::time::sleep(poll).await;
            }
            Err(e) => return Err(Error::io("open log file", live, e)),
        }
    };
    for l in read_tail(live, tail)? {
        if tx.send(l).await.is_err() {
            return Ok(());
        }
    }
    let end = file
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io("seek", live, e))?;
    let mut pos = end;
    let mut pending: Vec<u8> = Vec::new();
    let mut rotated = false;
    loop {
        // Drain what the current handle has.
        let mut buf = Vec::new();
        file.seek(SeekFrom::Start(pos))
            .map_err(|e| Error::io("seek", live, e))?;
        let n = file
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read log file", live, e))?;
        pos += u64::try_from(n).unwrap_or(0);
        pending.extend_from_slice(&buf);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if let Some(rec) = parse_record(String::from_utf8_lossy(&line[..i]).as_ref())
                && tx.send(rec).await.is_err()
            {
                return Ok(());
            }
        }
        if tx.is_closed() {
            return Ok(());
        }
        if rotated {
            // The old file was drained after the rename was seen: nothing more can land
            // in it (the logger renames only after its last write), so switch.
            if let Ok(f) = File::open(live) {
                ino = f.metadata().map_err(|e| Error::io("stat", live, e))?.ino();
                file = f;
                pos = 0;
                pending.clear();
                rotated = false;
                continue;
            }
        } else if fs::metadata(live).is_ok_and(|m| m.ino() != ino) {
            rotated = true;
            continue;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters and `/` kept).
#[must_use]
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `binary://` stdio URI that makes the shim run `logger` for a container.
/// containerd turns each query `key=value` into the two arguments `key value`.
#[must_use]
pub fn logger_uri(logger: &Path, dir: &Path, policy: RotationPolicy) -> String {
    format!(
        "binary://{}?dir={}&max-bytes={}&max-files={}",
        query_escape(&logger.to_string_lossy()),
        query_escape(&dir.to_string_lossy()),
        policy.max_bytes,
        policy.max_files
    )
}

/// Arguments of the logger process, parsed from `key value` pairs in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerArgs {
    /// Log directory.
    pub dir: PathBuf,
    /// Rotation.
    pub policy: RotationPolicy,
}

impl LoggerArgs {
    /// Parses `dir D max-bytes N max-files N` (pairs in any order; leading dashes allowed).
    ///
    /// # Errors
    /// A message naming the bad or missing argument.
    pub fn parse(args: &[String]) -> std::result::Result<Self, String> {
        let mut dir = None;
        let mut policy = RotationPolicy::default();
        for pair in args.chunks(2) {
            let [k, v] = pair else {
                return Err(format!("argument {:?} has no value", pair.first()));
            };
            match k.trim_start_matches('-') {
                "dir" => dir = Some(PathBuf::from(v)),
                "max-bytes" => {
                    policy.max_bytes = v.parse().map_err(|_| format!("bad max-bytes {v:?}"))?;
                }
                "max-files" => {
                    policy.max_files = v.parse().map_err(|_| format!("bad max-files {v:?}"))?;
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Self {
            dir: dir.ok_or("missing dir")?,
            policy,
        })
    }
}

fn pump(mut input: impl Read, stream: LogStream, out: &Arc<Mutex<RotatingWriter>>) {
    let mut reader = BufReader::with_capacity(64 * 1024, &mut input);
    let mut line = Vec::with_capacity(MAX_LINE);
    loop {
        line.clear();
        // Read up to a newline, but never more than MAX_LINE bytes per record.
        let n = match (&mut reader)
            .take(u64::try_from(MAX_LINE).unwrap_or(u64::MAX))
            .read_until(b'\n', &mut line)
        {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let complete = line.last() == Some(&b'\n');
        let body = if complete { &line[..n - 1] } else { &line[..n] };
        let rec = format_record(&now_rfc3339(), stream, !complete, body);
        if let Ok(mut w) = out.lock()
            && let Err(e) = w.write_record(&rec)
        {
            eprintln!("flotilla-runtime-logger: {e}");
        }
    }
}

/// True when this process was started by containerd's shim as a `binary://` logger:
/// `CONTAINER_ID` and `CONTAINER_NAMESPACE` are set and the arguments (after argv\[0\])
/// are our `key value` pairs. Lets a multi-command binary (`flotilla`) serve as the
/// logger too: `if logs::is_logger_invocation(&args) { exit(logs::run_logger(&args)) }`.
#[must_use]
pub fn is_logger_invocation(args: &[String]) -> bool {
    std::env::var_os("CONTAINER_ID").is_some()
        && std::env::var_os("CONTAINER_NAMESPACE").is_some()
        && LoggerArgs::parse(args).is_ok()
}

/// Entry point of the logger process started by the shim (see the module docs).
/// Returns the process exit code.
#[must_use]
pub fn run_logger(args: &[String]) -> i32 {
    let args = match LoggerArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("flotilla-runtime-logger: {e}");
            return 2;
        }
    };
    let id = std::env::var("CONTAINER_ID").unwrap_or_else(|_| "unknown".to_owned());
    let writer = match RotatingWriter::open(log_path(&args.dir, &id), args.policy) {
        Ok(w) => Arc::new(Mutex::new(w)),
        Err(e) => {
            eprintln!("flotilla-runtime-logger: {e}");
            return 1;
        }
    };
    // When the container exits the shim SIGTERMs the logger and waits up to 12 s for it;
    // dying at once would lose output still in the pipes. Keep a SIGTERM handler installed
    // (through tokio, no `unsafe`) and exit when both pipes reach EOF, which happens as
    // soon as the shim closes its ends.
    let signal_rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    let _term = signal_rt.as_ref().ok().and_then(|rt| {
        rt.block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
        })
    });
    // The shim passes stdout as fd 3, stderr as fd 4 and waits for a byte on fd 5.
    // Re-opening through /proc keeps this crate free of `unsafe` (no from_raw_fd).
    let stdout = File::open("/proc/self/fd/3");
    let stderr = File::open("/proc/self/fd/4");
    if let Ok(mut ready) = OpenOptions::new().write(true).open("/proc/self/fd/5") {
        let _ = ready.write_all(b"1");
    }
    let mut threads = Vec::new();
    for (f, stream) in [(stdout, LogStream::Stdout), (stderr, LogStream::Stderr)] {
        match f {
            Ok(f) => {
                let w = Arc::clone(&writer);
                threads.push(std::thread::spawn(move || pump(f, stream, &w)));
            }
            Err(e) => eprintln!("flotilla-runtime-logger: open {}: {e}", stream.as_str()),
        }
    }
    for t in threads {
        let _ = t.join();
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer of container `name`'s log in a new directory, rotating at `max_bytes`
    /// into at most `max_files` files; the directory lives as long as the first value.
    fn rotating(
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

    #[test]
    fn record_round_trip() {
        let r = format_record("2026-01-01T00:00:00Z", LogStream::Stderr, true, b"a b c");
        assert_eq!(r, b"2026-01-01T00:00:00Z stderr P a b c\n");
        let l = parse_record(std::str::from_utf8(&r[..r.len() - 1]).unwrap()).unwrap();
        assert_eq!(l.stream, LogStream::Stderr);
        assert!(l.partial);
        assert_eq!(l.message, "a b c");
        let l = parse_record("t stdout F ").unwrap();
        assert_eq!(l.message, "");
        assert!(parse_record("t nope F x").is_none());
    }

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
        for i in 0..60 {
            let rec = format_record(
                "T",
                LogStream::Stdout,
                false,
                format!("line {i:02}").as_bytes(),
            );
            w.write_record(&rec).unwrap();
        }
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

    #[tokio::test]
    async fn follow_sees_new_lines_across_rotation() {
        let (_dir, live, mut w) = rotating("c2", 120, 2);
        w.write_record(&format_record("T", LogStream::Stdout, false, b"first"))
            .unwrap();
        let mut f = follow(live.clone(), Some(10), Duration::from_millis(10));
        assert_eq!(f.next().await.unwrap().message, "first");
        for i in 0..10 {
            w.write_record(&format_record(
                "T",
                LogStream::Stderr,
                false,
                format!("n{i}").as_bytes(),
            ))
            .unwrap();
        }
        for i in 0..10 {
            let l = tokio::time::timeout(Duration::from_secs(5), f.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(l.message, format!("n{i}"));
        }
    }

    #[test]
    fn logger_args_and_uri() {
        let uri = logger_uri(
            Path::new("/usr/bin/logger"),
            Path::new("/var/log/a b"),
            RotationPolicy {
                max_bytes: 10,
                max_files: 2,
            },
        );
        assert_eq!(
            uri,
            "binary:///usr/bin/logger?dir=/var/log/a%20b&max-bytes=10&max-files=2"
        );
        let a = LoggerArgs::parse(&["max-files".into(), "2".into(), "dir".into(), "/x".into()])
            .unwrap();
        assert_eq!(a.dir, PathBuf::from("/x"));
        assert_eq!(a.policy.max_files, 2);
        assert!(LoggerArgs::parse(&["dir".into()]).is_err());
        assert!(LoggerArgs::parse(&[]).is_err());
    }
}
