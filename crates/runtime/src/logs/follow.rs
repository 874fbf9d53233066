//! Following a container's log: the last records, then new ones as the logger writes
//! them, across rotations (polling the files).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::read::read_tail;
use super::record::parse_record;
use crate::error::{Error, Result};
use crate::types::LogLine;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::format_record;
    use crate::logs::rotation::rotating;
    use crate::types::LogStream;

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
}
