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
//!
//! # Layout
//! - `record`: one record of the format, written and parsed.
//! - `rotation`: the rotation policy, the rotating writer and a container's log files.
//! - `read`: reading records across rotated files (a tail, or from a [`LogPosition`]).
//! - `follow`: following a log as it grows ([`LogFollower`]).
//! - `logger`: the `binary://` logger process and the URI that starts it.

mod follow;
mod logger;
mod read;
mod record;
mod rotation;

pub use follow::{LogFollower, follow};
pub use logger::{LoggerArgs, is_logger_invocation, logger_uri, query_escape, run_logger};
pub use read::{
    LogChunk, LogPosition, LogRead, head_fingerprint, read_from, read_tail, record_cost,
};
pub use record::{MAX_LINE, format_record, parse_record};
pub use rotation::{RotatingWriter, RotationPolicy, log_files, log_path, numbered};
