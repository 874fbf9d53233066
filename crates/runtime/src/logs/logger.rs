//! The `binary://` logger process that containerd's shim runs for a container (see the
//! module docs of [`crate::logs`]): its URI, its arguments, and the process itself,
//! pumping the container's stdout and stderr into a rotating log file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::record::{MAX_LINE, format_record, now_rfc3339};
use super::rotation::{RotatingWriter, RotationPolicy, log_path};
use crate::types::LogStream;

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
