//! Pure conversion from a [`ContainerSpec`] plus the image's config to an OCI runtime
//! spec (`config.json` as runc reads it), and the resource math behind it (ECS cpu units →
//! cgroup shares, MiB → bytes, ulimit names, stop signals). No IO: unit-tested.
//!
//! The defaults mirror containerd's `oci.populateDefaultUnixSpec` (namespaces, the
//! standard `/proc`, `/dev`, `/sys` mounts, masked paths, the Docker default capability
//! set), so a container behaves as under `ctr run` / Docker.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::image::ImageConfig;
use crate::types::{ContainerSpec, NetworkMode, Resources};

/// Smallest hard or soft memory limit accepted, as Docker and ECS do (6 MiB).
pub const MIN_MEMORY_MIB: u64 = 6;
/// Smallest cgroup v1 cpu share value the kernel accepts.
pub const MIN_CPU_SHARES: u64 = 2;
/// Largest cgroup v1 cpu share value the kernel accepts.
pub const MAX_CPU_SHARES: u64 = 262_144;
/// `PATH` used when neither image nor spec sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability Linux has (up to `CAP_CHECKPOINT_RESTORE`, 5.9), indexed by number.
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities in a capability bit set (`CapBnd` of `/proc/PID/status`).
#[must_use]
pub fn caps_in_set(set: u64) -> Vec<&'static str> {
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| (set >> i) & 1 == 1)
        .map(|(_, c)| *c)
        .collect()
}

/// The capabilities a privileged container gets: every one in this process's bounding set
/// (as containerd's `WithAllCurrentCapabilities`): runc cannot grant one the host lacks,
/// e.g. inside a container without `CAP_SYS_RESOURCE`. All of them if it cannot be read.
#[must_use]
pub fn privileged_caps() -> Vec<&'static str> {
    let set = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    caps_in_set(set)
}

/// Resolved cgroup values for one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupLimits {
    /// `cpu.shares`; `None` leaves the kernel default (1024).
    pub cpu_shares: Option<u64>,
    /// `memory.limit_in_bytes` (and the same for memory+swap: no swap).
    pub memory_limit_bytes: Option<i64>,
    /// `memory.soft_limit_in_bytes`.
    pub memory_reservation_bytes: Option<i64>,
}

/// Maps ECS resources to cgroup values.
///
/// cpu: `0`/`1` become 2 (the kernel minimum, as the ECS agent does), values above
/// 262144 are clamped. memory: MiB → bytes; both limits must be ≥ 6 MiB and the soft
/// limit must not exceed the hard one.
///
/// # Errors
/// [`Error::InvalidSpec`] for limits below the minimum or soft > hard.
pub fn cgroup_limits(container: &str, r: &Resources) -> Result<CgroupLimits> {
    let bad = |reason: String| Error::InvalidSpec {
        container: container.to_owned(),
        reason,
    };
    let mib = |v: u64, what: &str| -> Result<i64> {
        if v < MIN_MEMORY_MIB {
            return Err(bad(format!(
                "{what} {v} MiB is below the minimum of {MIN_MEMORY_MIB} MiB"
            )));
        }
        v.checked_mul(1024 * 1024)
            .and_then(|b| i64::try_from(b).ok())
            .ok_or_else(|| bad(format!("{what} {v} MiB is too large")))
    };
    let memory_limit_bytes = r.memory_hard_mib.map(|v| mib(v, "memory")).transpose()?;
    let memory_reservation_bytes = r
        .memory_soft_mib
        .map(|v| mib(v, "memoryReservation"))
        .transpose()?;
    if let (Some(h), Some(s)) = (memory_limit_bytes, memory_reservation_bytes)
        && s > h
    {
        return Err(bad(
            "memoryReservation must not be greater than memory".to_owned()
        ));
    }
    let cpu_shares = r
        .cpu_units
        .map(|u| u64::from(u).clamp(MIN_CPU_SHARES, MAX_CPU_SHARES));
    Ok(CgroupLimits {
        cpu_shares,
        memory_limit_bytes,
        memory_reservation_bytes,
    })
}

/// Parses a signal name or number (`SIGTERM`, `TERM`, `term`, `15`).
///
/// # Errors
/// [`Error::InvalidSpec`] for unknown names and out-of-range numbers.
pub fn parse_signal(container: &str, s: &str) -> Result<u32> {
    const NAMES: &[(&str, u32)] = &[
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("PWR", 30),
        ("SYS", 31),
    ];
    let t = s.trim();
    if let Ok(n) = t.parse::<u32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    } else {
        let upper = t.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
            return Ok(*n);
        }
    }
    Err(Error::InvalidSpec {
        container: container.to_owned(),
        reason: format!("unknown stop signal {s:?}"),
    })
}

/// Maps an ECS ulimit name (`nofile`) or OCI name (`RLIMIT_NOFILE`) to the OCI name.
///
/// # Errors
/// [`Error::InvalidSpec`] for names Linux does not have.
pub fn rlimit_name(container: &str, name: &str) -> Result<String> {
    const KNOWN: &[&str] = &[
        "CORE",
        "CPU",
        "DATA",
        "FSIZE",
        "LOCKS",
        "MEMLOCK",
        "MSGQUEUE",
        "NICE",
        "NOFILE",
        "NPROC",
        "RSS",
        "RTPRIO",
        "RTTIME",
        "SIGPENDING",
        "STACK",
        "AS",
    ];
    let upper = name.trim().to_ascii_uppercase();
    let short = upper.strip_prefix("RLIMIT_").unwrap_or(&upper);
    if KNOWN.contains(&short) {
        Ok(format!("RLIMIT_{short}"))
    } else {
        Err(Error::InvalidSpec {
            container: container.to_owned(),
            reason: format!("unknown ulimit {name:?}"),
        })
    }
}

/// Parses `root`, `uid` or `uid:gid`. Names other than `root` would need the image's
/// `/etc/passwd` and are rejected.
///
/// # Errors
/// [`Error::InvalidSpec`] for user names and malformed values.
pub fn parse_user(container: &str, user: &str) -> Result<(u32, u32)> {
    let bad = || Error::InvalidSpec {
        container: container.to_owned(),
        reason: format!(
            "user {user:?}: only numeric uid[:gid] (or root) is supported, not user names"
        ),
    };
    let id = |s: &str| -> Result<u32> {
        match s {
            "root" => Ok(0),
            _ => s.parse().map_err(|_| bad()),
        }
    };
    match user.trim().split_once(':') {
        Some((u, g)) => Ok((id(u)?, id(g)?)),
        None if user.trim().is_empty() => Ok((0, 0)),
        None => Ok((id(user.trim())?, 0)),
    }
}

/// The process argv: spec entry point (or the image's) followed by spec command (or the
/// image's Cmd, which an overridden entry point clears, as in Docker).
///
/// # Errors
/// [`Error::InvalidSpec`] when the result is empty.
pub fn process_args(spec: &ContainerSpec, image: &ImageConfig) -> Result<Vec<String>> {
    let entry = spec
        .entry_point
        .clone()
        .or_else(|| image.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&spec.command, &spec.entry_point) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone().unwrap_or_default(),
    };
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::InvalidSpec {
            container: spec.id.to_string(),
            reason: "no entryPoint or command, and the image sets none".to_owned(),
        });
    }
    Ok(args)
}

/// Image env overlaid with spec env (spec wins), `PATH` defaulted, in `K=V` form.
#[must_use]
pub fn process_env(spec: &ContainerSpec, image: &ImageConfig) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for kv in image.env.iter().flatten() {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        env.insert(k.to_owned(), v.to_owned());
    }
    for (k, v) in &spec.environment {
        env.insert(k.clone(), v.clone());
    }
    env.entry("PATH".to_owned())
        .or_insert_with(|| DEFAULT_PATH.to_owned());
    env.entry("HOSTNAME".to_owned())
        .or_insert_with(|| hostname(spec));
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn hostname(spec: &ContainerSpec) -> String {
    spec.hostname
        .clone()
        .unwrap_or_else(|| spec.id.as_str().chars().take(63).collect())
}

/// The stop signal: spec, else image `StopSignal`, else SIGTERM.
///
/// # Errors
/// [`Error::InvalidSpec`] for unknown signals.
pub fn stop_signal(spec: &ContainerSpec, image: &ImageConfig) -> Result<u32> {
    match spec.stop_signal.as_deref().or(image.stop_signal.as_deref()) {
        Some(s) => parse_signal(spec.id.as_str(), s),
        None => Ok(15),
    }
}

/// Where the init binary is bind-mounted when `init_process` is set.
pub const INIT_PATH: &str = "/sbin/flotilla-init";

/// Builds the OCI runtime spec (JSON) for a container whose rootfs is mounted at
/// `rootfs` in the bundle and whose cgroup is `cgroups_path`. `init_binary` is the host's
/// static tini, bind-mounted at [`INIT_PATH`] and run as PID 1 when the spec asks for an
/// init process.
///
/// # Errors
/// [`Error::InvalidSpec`] for every rejected input (see the helpers above), and when an
/// init process is asked for but no init binary is available.
pub fn build_oci_spec(
    spec: &ContainerSpec,
    image: &ImageConfig,
    cgroups_path: &str,
    init_binary: Option<&std::path::Path>,
) -> Result<Value> {
    let id = spec.id.as_str();
    let bad = |reason: String| Error::InvalidSpec {
        container: id.to_owned(),
        reason,
    };
    let mut args = process_args(spec, image)?;
    let init = if spec.init_process {
        let Some(init) = init_binary else {
            return Err(bad(
                "initProcessEnabled needs an init binary on the node (apt-get install tini)"
                    .to_owned(),
            ));
        };
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
        Some(init)
    } else {
        None
    };
    let env = process_env(spec, image);
    let cwd = spec
        .working_directory
        .clone()
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(bad(format!("workingDirectory {cwd:?} must be absolute")));
    }
    let (uid, gid) = match spec.user.as_deref().or(image.user.as_deref()) {
        Some(u) => parse_user(id, u)?,
        None => (0, 0),
    };
    let limits = cgroup_limits(id, &spec.resources)?;

    let mut rlimits: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    rlimits.insert("RLIMIT_NOFILE".to_owned(), (1024, 1024));
    for u in &spec.ulimits {
        if u.soft > u.hard {
            return Err(bad(format!(
                "ulimit {}: soft limit {} exceeds hard limit {}",
                u.name, u.soft, u.hard
            )));
        }
        rlimits.insert(rlimit_name(id, &u.name)?, (u.soft, u.hard));
    }
    let rlimits: Vec<Value> = rlimits
        .into_iter()
        .map(|(t, (soft, hard))| json!({"type": t, "soft": soft, "hard": hard}))
        .collect();

    // Privileged containers get a writable /sys (as with Docker's --privileged).
    let sys_access = if spec.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        sys_mount(spec, sys_access),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": [sys_access, "nosuid", "noexec", "nodev"]}),
    ];
    if let Some(init) = init {
        mounts.push(json!({
            "destination": INIT_PATH,
            "type": "bind",
            "source": init,
            "options": ["rbind", "rprivate", "ro"],
        }));
    }
    for m in &spec.mounts {
        if !m.container_path.starts_with('/') {
            return Err(bad(format!(
                "mount destination {:?} must be absolute",
                m.container_path
            )));
        }
        if !m.host_path.is_absolute() {
            return Err(bad(format!(
                "mount source {} must be absolute",
                m.host_path.display()
            )));
        }
        mounts.push(json!({
            "destination": m.container_path,
            "type": "bind",
            "source": m.host_path,
            "options": ["rbind", "rprivate", if m.read_only { "ro" } else { "rw" }],
        }));
    }

    if let Some(map) = spec.user_namespace
        && (map.size == 0
            || map.size > crate::types::IdMapping::MAX_SIZE
            || map.host_base.checked_add(map.size).is_none())
    {
        return Err(bad(format!(
            "user namespace range {}+{} must hold 1..={} ids below 2^32",
            map.host_base,
            map.size,
            crate::types::IdMapping::MAX_SIZE
        )));
    }
    let mut namespaces = Vec::new();
    if !spec.host_pid {
        namespaces.push(json!({"type": "pid"}));
    }
    namespaces.extend([
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ]);
    if spec.user_namespace.is_some() {
        namespaces.push(json!({"type": "user"}));
    }
    match &spec.network {
        NetworkMode::Isolated => namespaces.push(json!({"type": "network"})),
        NetworkMode::Host => {}
        NetworkMode::Join(path) => {
            namespaces.push(json!({"type": "network", "path": path}));
        }
    }

    let mut resources = json!({
        "devices": [{"allow": spec.privileged, "access": "rwm"}],
    });
    if let Some(shares) = limits.cpu_shares {
        resources["cpu"] = json!({"shares": shares});
    }
    if limits.memory_limit_bytes.is_some() || limits.memory_reservation_bytes.is_some() {
        let mut mem = json!({});
        if let Some(l) = limits.memory_limit_bytes {
            mem["limit"] = json!(l);
            mem["swap"] = json!(l);
        }
        if let Some(r) = limits.memory_reservation_bytes {
            mem["reservation"] = json!(r);
        }
        resources["memory"] = mem;
    }

    let caps = if spec.privileged {
        privileged_caps()
    } else {
        DEFAULT_CAPS.to_vec()
    };
    let (masked, readonly): (Value, Value) = if spec.privileged {
        (json!([]), json!([]))
    } else {
        (
            json!([
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi"
            ]),
            json!([
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]),
        )
    };

    let mut oci = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": rlimits,
            "noNewPrivileges": false,
        },
        "root": {"path": "rootfs", "readonly": spec.read_only_root},
        "hostname": hostname(spec),
        "mounts": mounts,
        "linux": {
            "resources": resources,
            "cgroupsPath": cgroups_path,
            "namespaces": namespaces,
            "maskedPaths": masked,
            "readonlyPaths": readonly,
        },
    });
    if let Some(map) = spec.user_namespace {
        let ids = json!([{"containerID": 0, "hostID": map.host_base, "size": map.size}]);
        oci["linux"]["uidMappings"] = ids.clone();
        oci["linux"]["gidMappings"] = ids;
    }
    Ok(oci)
}

/// The container's `/sys`. A sysfs mount needs the network namespace to belong to the
/// container's user namespace; a container in its own user namespace that joins the
/// task's (node-owned) network namespace gets a read-only bind of the node's `/sys`
/// instead, as rootless runtimes do.
fn sys_mount(spec: &ContainerSpec, sys_access: &str) -> Value {
    let joins_node_netns = !matches!(spec.network, NetworkMode::Isolated);
    if spec.user_namespace.is_some() && joins_node_netns {
        json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    } else {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_access]})
    }
}

#[cfg(test)]
mod tests;
