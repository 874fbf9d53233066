//! The crate's file writes, through the workspace's one durable write ([`durable::write`]):
//! atomic, fsync'd, directory fsync'd; errors name the path.

use std::path::Path;

use crate::error::{Error, Result};

/// Replaces `path` with `bytes` atomically and durably (mode 0644).
///
/// # Errors
/// Any IO failure, naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    durable::write(path, bytes, durable::PUBLIC_FILE_MODE).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}
