//! Hosts files: the `/etc/hosts` a Service Connect task's containers get, written in
//! place so bind mounts see changes.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::MAX_DNS_NAME_LEN;

/// Whether `name` may be written into a hosts file as an alias: a host name of letters,
/// digits, `-`, `_` and dots, at most [`MAX_DNS_NAME_LEN`] bytes.
pub fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DNS_NAME_LEN
        && !name.starts_with(['.', '-'])
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A Service Connect task's `/etc/hosts`: loopback names, then one line per alias.
pub fn render_hosts(aliases: &[(String, Ipv4Addr)]) -> String {
    let mut out = String::from(
        "# Written by the flotilla agent (Service Connect client aliases).\n\
         127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
    );
    for (name, ip) in aliases {
        out.push_str(&format!("{ip} {name}\n"));
    }
    out
}

/// Task `task_id`'s hosts file.
pub fn hosts_path(data_dir: &Path, task_id: &str) -> PathBuf {
    data_dir.join("hosts").join(task_id)
}

/// Writes `content` into the file at `path` in place: created if missing, else truncated
/// and rewritten (same inode, so a bind mount of it sees the new content).
pub fn write_in_place(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(durable::PUBLIC_FILE_MODE)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_data()
}

/// Removes the hosts files of every task but those in `live` (task ids): after a restart,
/// those of tasks that ended while the agent was down.
pub fn remove_hosts_except(data_dir: &Path, live: &BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("hosts")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !live.contains(&name) {
            remove_hosts(data_dir, &name);
        }
    }
}

/// Removes task `task_id`'s hosts file (none is fine).
pub fn remove_hosts(data_dir: &Path, task_id: &str) {
    let path = hosts_path(data_dir, task_id);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(task = task_id, path = %path.display(), error = %e, "could not remove the task's hosts file");
        }
    }
}
