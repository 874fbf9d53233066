//! One log record in the CRI format: `<RFC 3339 nano UTC> <stdout|stderr> <F|P> <text>`,
//! formatted for writing and parsed for reading.

use crate::types::{LogLine, LogStream};

/// Longest line written as one record; longer lines are split and marked partial.
pub const MAX_LINE: usize = 16 * 1024;

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

pub(super) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
