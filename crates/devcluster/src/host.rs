//! The host's moving parts, as the cluster needs them: running commands, daemons and
//! their pid files, finding every process of a node (by network namespace and by cgroup)
//! and killing it, mounts under a directory, and cgroup trees. Parsing is pure and
//! unit-tested; the rest reads `/proc` and `/sys` directly.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// True when this process runs as root.
#[must_use]
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// True when `program` is an executable on `PATH`.
#[must_use]
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
    })
}

/// Fails with [`Error::MissingProgram`] for the first `(program, hint)` not on `PATH`.
pub fn require_programs(programs: &[(&str, &str)]) -> Result<()> {
    for (program, hint) in programs {
        if !on_path(program) {
            return Err(Error::MissingProgram {
                program: (*program).to_owned(),
                hint: (*hint).to_owned(),
            });
        }
    }
    Ok(())
}

/// Runs `program args…`, optionally feeding `stdin`; returns its stdout, or
/// [`Error::Command`] with its stderr when it fails.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let line = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let failed = |stderr: String| Error::Command {
        command: line.clone(),
        stderr,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(failed(if stderr.is_empty() {
            out.status.to_string()
        } else {
            stderr
        }))
    }
}

/// Writes `value` into a sysctl file under `/proc/sys` of this process's namespace.
pub fn write_sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(Error::io("cannot write", path))
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// True when `pid` exists and is not a zombie.
#[must_use]
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_state(&stat))
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// The state letter of a `/proc/<pid>/stat` line (after the parenthesised command name,
/// which may itself hold spaces and parentheses).
fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// `pid`'s command line, arguments joined by spaces.
#[must_use]
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .split('\0')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The pid recorded in `pid_file`, if that process is alive and its command line
/// contains `marker` (a path only this daemon has: a recycled pid is not mistaken for it).
#[must_use]
pub fn running_pid(pid_file: &Path, marker: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (process_alive(pid) && cmdline(pid).is_some_and(|c| c.contains(marker))).then_some(pid)
}

/// Starts `program args…` in the background, in its own process group (a Ctrl-C of the
/// CLI does not reach it), inside network namespace `netns` when given (`nsenter`, so
/// it keeps the host's mount namespace: its mounts and cgroups are the host's), with
/// stdout and stderr appended to `log`, and records its pid in `pid_file`.
pub fn spawn_daemon(
    netns: Option<&str>,
    program: &Path,
    args: &[String],
    log: &Path,
    pid_file: &Path,
) -> Result<u32> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io("cannot open", log))?;
    let err = out.try_clone().map_err(Error::io("cannot open", log))?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", netns_path(ns).display()))
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    };
    let child = cmd
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(Error::io("cannot start", program))?;
    let pid = child.id();
    std::fs::write(pid_file, format!("{pid}\n")).map_err(Error::io("cannot write", pid_file))?;
    Ok(pid)
}

/// The bind-mounted file of network namespace `name` (as `ip netns` makes them).
#[must_use]
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every live process whose network namespace is the one bound at `netns_file`.
#[must_use]
pub fn pids_in_netns(netns_file: &Path) -> BTreeSet<u32> {
    let Ok(target) = std::fs::metadata(netns_file) else {
        return BTreeSet::new();
    };
    let inode = format!("net:[{}]", target.ino());
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|link| link.as_os_str() == inode.as_str())
                && process_alive(*pid)
        })
        .collect()
}

/// Where the cgroup file systems are mounted (every v1 hierarchy and the v2 one).
#[must_use]
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| {
            parse_mountinfo(&info)
                .into_iter()
                .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
                .map(|m| m.mount_point)
                .collect()
        })
        .unwrap_or_default()
}

/// The cgroup directories of `parent` (e.g. `/flotilla-dev-dev-1`) in every hierarchy.
#[must_use]
pub fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let rel = parent.trim_start_matches('/');
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

fn walk_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk_dirs(&e.path(), out);
            }
        }
    }
    out.push(dir.to_owned());
}

/// Every live process in the cgroup tree `parent`, in any hierarchy.
#[must_use]
pub fn pids_in_cgroup(parent: &str) -> BTreeSet<u32> {
    let mut dirs = Vec::new();
    for root in cgroup_dirs(parent) {
        walk_dirs(&root, &mut dirs);
    }
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .filter(|pid| process_alive(*pid))
        .collect()
}

/// Removes the cgroup tree `parent` in every hierarchy (deepest first). Its processes
/// must be gone; a cgroup that stays busy is retried for a few seconds.
pub fn remove_cgroup_tree(parent: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut dirs = Vec::new();
        for root in cgroup_dirs(parent) {
            walk_dirs(&root, &mut dirs);
        }
        if dirs.is_empty() {
            return Ok(());
        }
        let mut last_err = None;
        for d in &dirs {
            if let Err(e) = std::fs::remove_dir(d)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                last_err = Some((d.clone(), e));
            }
        }
        match last_err {
            None => return Ok(()),
            Some((d, e)) if Instant::now() > deadline => {
                return Err(Error::Leftover(format!(
                    "cgroup {} not removed: {e}",
                    d.display()
                )));
            }
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// SIGKILLs whatever `find` returns until it returns nothing, for at most `limit`.
pub fn kill_until_gone(
    what: &str,
    limit: Duration,
    find: impl Fn() -> BTreeSet<u32>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let pids = find();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Leftover(format!(
                "{what}: processes {pids:?} survive SIGKILL"
            )));
        }
        for pid in pids {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------------------

/// One line of `/proc/self/mountinfo`, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted (octal escapes decoded).
    pub mount_point: PathBuf,
    /// File system type (`overlay`, `cgroup2`, `nsfs`, …).
    pub fstype: String,
}

/// Parses `/proc/<pid>/mountinfo`.
#[must_use]
pub fn parse_mountinfo(info: &str) -> Vec<MountEntry> {
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = fields.get(4)?;
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape_octal(mount_point)),
                fstype: (*fstype).to_owned(),
            })
        })
        .collect()
}

/// Decodes mountinfo's `\040`-style escapes (space, tab, newline, backslash).
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..=i + 3]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let digit = |k: usize| u32::from(bytes[i + k] - b'0');
            let v = digit(1) * 64 + digit(2) * 8 + digit(3);
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or under `dir`, deepest first.
#[must_use]
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = parse_mountinfo(&info)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// Lazily unmounts everything at or under `dir` (stacked mounts included).
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    for _ in 0..10 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let left = mounts_under(dir);
    if left.is_empty() {
        Ok(())
    } else {
        Err(Error::Leftover(format!(
            "mounts remain under {}: {left:?}",
            dir.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_skips_odd_command_names() {
        assert_eq!(stat_state("42 (containerd) S 1 42 42 0"), Some('S'));
        assert_eq!(stat_state("42 (a) b (c)) Z 1 42"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn mountinfo_is_parsed_with_escapes() {
        let info = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    37 1 0:31 / /sys/fs/cgroup/memory rw shared:12 - cgroup cgroup rw,memory\n\
                    38 1 0:32 / /run/netns/x rw - nsfs nsfs rw\n";
        let m = parse_mountinfo(info);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[1].fstype, "cgroup");
        assert_eq!(m[2].mount_point, PathBuf::from("/run/netns/x"));
    }

    #[test]
    fn this_process_is_alive_and_has_a_cmdline() {
        let me = std::process::id();
        assert!(process_alive(me));
        assert!(cmdline(me).is_some_and(|c| !c.is_empty()));
        assert!(!process_alive(u32::MAX));
    }

    #[test]
    fn running_pid_checks_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("x.pid");
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        assert!(running_pid(&pid_file, "no-such-marker-in-a-test-cmdline").is_none());
        assert!(running_pid(&dir.path().join("missing.pid"), "").is_none());
        assert_eq!(running_pid(&pid_file, ""), Some(std::process::id()));
    }

    #[test]
    fn commands_report_stderr() {
        assert_eq!(run("sh", &["-c", "echo hi"], None).unwrap(), "hi\n");
        assert_eq!(run("cat", &[], Some("in")).unwrap(), "in");
        let err = run("sh", &["-c", "echo nope >&2; exit 3"], None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
