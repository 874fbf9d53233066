//! Network namespace handles: a namespace is created by a thread that
//! `unshare(CLONE_NEWNET)`s and bind-mounts its `/proc/thread-self/ns/net` onto a file
//! under the agent's data directory (so several agents on one host never share names),
//! entered by threads that `setns` into that file, and removed by unmounting it.

use std::fs::File;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use crate::error::NetworkError;

fn ns_error(path: &Path, message: impl std::fmt::Display) -> NetworkError {
    NetworkError::Namespace {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Whether `path` is a live namespace handle (an nsfs bind mount).
pub fn exists(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Creates a fresh, empty network namespace held by `path`.
pub fn create(path: &Path) -> Result<(), NetworkError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ns_error(dir, e))?;
    }
    File::create(path).map_err(|e| ns_error(path, e))?;
    let target = path.to_owned();
    let made = std::thread::spawn(move || -> Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind mount: {e}"))
    })
    .join()
    .map_err(|_| ns_error(path, "the namespace thread panicked"))?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(ns_error(path, e));
    }
    Ok(())
}

/// Removes the handle (the namespace goes away once nothing else holds it); a missing
/// handle is not an error.
pub fn remove(path: &Path) -> Result<(), NetworkError> {
    if exists(path) {
        umount2(path, MntFlags::MNT_DETACH).map_err(|e| ns_error(path, format!("umount: {e}")))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ns_error(path, e)),
    }
}

/// Runs `f` on a thread inside the namespace held by `path` (the caller's namespace when
/// `path` is `None`: the thread inherits it).
pub fn run_in<T: Send + 'static>(
    path: Option<&Path>,
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    let handle = match path {
        Some(p) => Some((p.to_owned(), File::open(p).map_err(|e| ns_error(p, e))?)),
        None => None,
    };
    std::thread::spawn(move || {
        if let Some((p, file)) = handle {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| ns_error(&p, format!("setns: {e}")))?;
        }
        f()
    })
    .join()
    .map_err(|_| NetworkError::Netlink("a namespace worker thread panicked".into()))?
}
