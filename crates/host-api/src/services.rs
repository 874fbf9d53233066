//! Services: what a committed setting affects, how its configuration is rendered, and how the
//! service is restarted.
//!
//! A service is rendered config file(s) plus a restart action. Which service a key affects is
//! decided by its longest matching prefix ([`affected`]), like Bottlerocket's
//! `affected-services` metadata inherited from the nearest ancestor key. Rendering is a pure
//! function of the settings ([`render`]); [`apply`] writes the files atomically, writes sysctls
//! under the configured `/proc/sys` root, and asks a [`Restarter`] to restart each service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::settings::Settings;

/// The services the host layer manages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// The node agent (`flotilla agent`), configured from `settings.ecs`.
    Agent,
    /// Kernel sysctls, written to `/proc/sys`.
    Sysctl,
    /// containerd registry mirrors and credentials.
    Containerd,
    /// The resolver (`resolv.conf`).
    Dns,
    /// Time sync (`chrony.conf`).
    Ntp,
    /// The updater's configuration (no restart).
    Updates,
    /// Host containers (admin, control).
    HostContainers,
    /// Bootstrap containers (take effect at the next boot).
    BootstrapContainers,
    /// `/etc/motd`.
    Motd,
}

impl Service {
    /// Every service, in apply order.
    pub const ALL: [Service; 9] = [
        Service::Sysctl,
        Service::Dns,
        Service::Ntp,
        Service::Containerd,
        Service::Updates,
        Service::Motd,
        Service::BootstrapContainers,
        Service::HostContainers,
        Service::Agent,
    ];

    /// Kebab-case name (used in config files and restart-command tables).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Service::Agent => "agent",
            Service::Sysctl => "sysctl",
            Service::Containerd => "containerd",
            Service::Dns => "dns",
            Service::Ntp => "ntp",
            Service::Updates => "updates",
            Service::HostContainers => "host-containers",
            Service::BootstrapContainers => "bootstrap-containers",
            Service::Motd => "motd",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const PREFIXES: [(&str, Service); 9] = [
    ("settings.ecs", Service::Agent),
    ("settings.kernel.sysctl", Service::Sysctl),
    ("settings.container-registry", Service::Containerd),
    ("settings.dns", Service::Dns),
    ("settings.ntp", Service::Ntp),
    ("settings.updates", Service::Updates),
    ("settings.host-containers", Service::HostContainers),
    (
        "settings.bootstrap-containers",
        Service::BootstrapContainers,
    ),
    ("settings.motd", Service::Motd),
];

/// The services affected by a set of changed dotted keys.
#[must_use]
pub fn affected<'a>(keys: impl IntoIterator<Item = &'a String>) -> BTreeSet<Service> {
    let mut out = BTreeSet::new();
    for k in keys {
        for (p, s) in PREFIXES {
            if k == p || k.starts_with(&format!("{p}.")) {
                out.insert(s);
            }
        }
    }
    out
}

/// Where rendered files and sysctls go.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Root for rendered configuration (a node's `/etc`).
    pub etc: PathBuf,
    /// Root of the sysctl tree (`/proc/sys` on a real node).
    pub proc_sys: PathBuf,
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The files a service's configuration consists of (relative to the etc root) and their
/// content. Pure.
#[must_use]
pub fn render(service: Service, s: &Settings) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    match service {
        Service::Agent => {
            let ecs = s.ecs.clone().unwrap_or_default();
            let mut env = String::new();
            if let Some(e) = &ecs.endpoint {
                env.push_str(&format!("FLOTILLA_ENDPOINT={e}\n"));
            }
            if let Some(c) = &ecs.cluster {
                env.push_str(&format!("FLOTILLA_CLUSTER={c}\n"));
            }
            let attrs = agent_attributes(s);
            if !attrs.is_empty() {
                env.push_str(&format!("FLOTILLA_ATTRIBUTES={attrs}\n"));
            }
            if let Some(l) = ecs.loglevel {
                env.push_str(&format!(
                    "FLOTILLA_LOGLEVEL={}\n",
                    serde_json::to_value(l)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ));
            }
            env.push_str(&format!(
                "FLOTILLA_PRIVILEGED_DISABLED={}\n",
                !ecs.allow_privileged_containers.unwrap_or(false)
            ));
            env.push_str(&format!(
                "FLOTILLA_CONTAINER_STOP_TIMEOUT={}\n",
                ecs.container_stop_timeout
                    .as_ref()
                    .map_or("30s", |d| d.as_str())
            ));
            env.push_str(&format!(
                "FLOTILLA_RESERVED_MEMORY={}\n",
                ecs.reserved_memory.unwrap_or(0)
            ));
            out.push((PathBuf::from("flotilla/agent.env"), env));
        }
        Service::Sysctl => {
            let mut t = String::from("[sysctl]\n");
            for (k, v) in s
                .kernel
                .as_ref()
                .and_then(|k| k.sysctl.as_ref())
                .into_iter()
                .flatten()
            {
                t.push_str(&format!("{} = {}\n", toml_str(k.as_str()), toml_str(v)));
            }
            out.push((PathBuf::from("flotilla/sysctl.toml"), t));
        }
        Service::Containerd => {
            let mut t = String::from("# rendered by flotilla from settings.container-registry\n");
            let reg = s.container_registry.clone().unwrap_or_default();
            for m in reg.mirrors.unwrap_or_default() {
                let eps: Vec<String> = m.endpoint.iter().map(|e| toml_str(e.as_str())).collect();
                t.push_str(&format!(
                    "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.{}]\nendpoint = [{}]\n",
                    toml_str(m.registry.as_str()),
                    eps.join(", ")
                ));
            }
            for c in reg.credentials.unwrap_or_default() {
                t.push_str(&format!(
                    "[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.{}.auth]\n",
                    toml_str(c.registry.as_str())
                ));
                if let Some(u) = &c.username {
                    t.push_str(&format!("username = {}\n", toml_str(u)));
                }
                if let Some(p) = &c.password {
                    t.push_str(&format!("password = {}\n", toml_str(p)));
                }
                if let Some(a) = &c.auth {
                    t.push_str(&format!("auth = {}\n", toml_str(a.as_str())));
                }
            }
            out.push((PathBuf::from("containerd/registries.toml"), t));
        }
        Service::Dns => {
            let dns = s.dns.clone().unwrap_or_default();
            let mut t = String::new();
            for ns in dns.name_servers.unwrap_or_default() {
                t.push_str(&format!("nameserver {ns}\n"));
            }
            let search = dns.search_list.unwrap_or_default();
            if !search.is_empty() {
                t.push_str(&format!("search {}\n", search.join(" ")));
            }
            out.push((PathBuf::from("resolv.conf"), t));
        }
        Service::Ntp => {
            let mut t = String::new();
            for srv in s
                .ntp
                .as_ref()
                .and_then(|n| n.time_servers.clone())
                .unwrap_or_default()
            {
                t.push_str(&format!("pool {srv} iburst\n"));
            }
            out.push((PathBuf::from("chrony.conf"), t));
        }
        Service::Updates => {
            let u = s.updates.clone().unwrap_or_default();
            let mut t = String::new();
            if let Some(m) = &u.metadata_base_url {
                t.push_str(&format!("metadata_base_url = {}\n", toml_str(m.as_str())));
            }
            if let Some(m) = &u.targets_base_url {
                t.push_str(&format!("targets_base_url = {}\n", toml_str(m.as_str())));
            }
            if let Some(seed) = u.seed {
                t.push_str(&format!("seed = {}\n", u32::from(seed)));
            }
            t.push_str(&format!(
                "version_lock = {}\nignore_waves = {}\n",
                toml_str(u.version_lock.as_ref().map_or("latest", |v| v.as_str())),
                u.ignore_waves.unwrap_or(false)
            ));
            out.push((PathBuf::from("flotilla/updates.toml"), t));
        }
        Service::HostContainers => {
            let v = serde_json::to_value(s.host_containers.clone().unwrap_or_default())
                .unwrap_or_default();
            out.push((
                PathBuf::from("flotilla/host-containers.json"),
                v.to_string(),
            ));
        }
        Service::BootstrapContainers => {
            let v = serde_json::to_value(s.bootstrap_containers.clone().unwrap_or_default())
                .unwrap_or_default();
            out.push((
                PathBuf::from("flotilla/bootstrap-containers.json"),
                v.to_string(),
            ));
        }
        Service::Motd => {
            out.push((
                PathBuf::from("motd"),
                format!("{}\n", s.motd.clone().unwrap_or_default()),
            ));
        }
    }
    out
}

/// `k=v,k=v` for `flotilla agent --attributes`, sorted.
#[must_use]
pub fn agent_attributes(s: &Settings) -> String {
    s.ecs
        .as_ref()
        .and_then(|e| e.instance_attributes.as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Writes each sysctl to `<proc_sys>/<key with . → />`. Every key is attempted; keys that
/// cannot be written (unknown to the kernel, read-only) are reported together.
///
/// # Errors
/// The keys that could not be written, with the reason.
pub fn write_sysctls(s: &Settings, proc_sys: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for (k, v) in s
        .kernel
        .as_ref()
        .and_then(|k| k.sysctl.as_ref())
        .into_iter()
        .flatten()
    {
        let path = proc_sys.join(k.as_str().replace('.', "/"));
        match std::fs::write(&path, format!("{v}\n")) {
            Ok(()) => written.push(path),
            Err(e) => failed.push(format!("{k} ({}): {e}", path.display())),
        }
    }
    if failed.is_empty() {
        Ok(written)
    } else {
        Err(Error::Apply {
            service: Service::Sysctl.to_string(),
            message: format!("could not write {}", failed.join("; ")),
        })
    }
}

/// Restarts services after their configuration changed.
pub trait Restarter: Send + Sync {
    /// Restarts `service`, whose configuration was just rendered from `settings`.
    ///
    /// # Errors
    /// A message describing the failure.
    fn restart(&self, service: Service, settings: &Settings) -> std::result::Result<(), String>;
}

/// Restarts services by running a shell command per service (`sh -c`), with
/// `FLOTILLA_SERVICE` and `FLOTILLA_ETC` in the environment. Services without a command are
/// not restarted.
#[derive(Debug, Clone, Default)]
pub struct CommandRestarter {
    /// Service name → shell command.
    pub commands: BTreeMap<String, String>,
    /// Exported as `FLOTILLA_ETC`.
    pub etc: PathBuf,
}

impl Restarter for CommandRestarter {
    fn restart(&self, service: Service, _settings: &Settings) -> std::result::Result<(), String> {
        let Some(cmd) = self.commands.get(service.name()) else {
            return Ok(());
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("FLOTILLA_SERVICE", service.name())
            .env("FLOTILLA_ETC", &self.etc)
            .output()
            .map_err(|e| format!("running {cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    /// Services re-rendered and restarted, in order.
    pub services: Vec<Service>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// Renders and restarts `services` for `settings`.
///
/// # Errors
/// The first service that failed; earlier services stay applied.
pub fn apply(
    services: &BTreeSet<Service>,
    settings: &Settings,
    paths: &Paths,
    restarter: &dyn Restarter,
) -> Result<ApplyReport> {
    let mut report = ApplyReport::default();
    for service in Service::ALL.into_iter().filter(|s| services.contains(s)) {
        for (rel, content) in render(service, settings) {
            let path = paths.etc.join(rel);
            updater::fsutil::write_atomic(&path, content.as_bytes()).map_err(|e| Error::Apply {
                service: service.to_string(),
                message: e.to_string(),
            })?;
            report.files.push(path);
        }
        if service == Service::Sysctl {
            report
                .files
                .extend(write_sysctls(settings, &paths.proc_sys)?);
        }
        restarter
            .restart(service, settings)
            .map_err(|message| Error::Apply {
                service: service.to_string(),
                message,
            })?;
        report.services.push(service);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn affected_uses_longest_prefix_semantics() {
        let keys = vec![
            "settings.ecs.cluster".to_owned(),
            "settings.kernel.sysctl.\"vm.max_map_count\"".to_owned(),
            "settings.motd".to_owned(),
        ];
        let a: Vec<Service> = affected(&keys).into_iter().collect();
        assert_eq!(a, [Service::Agent, Service::Sysctl, Service::Motd]);
        assert!(affected(&["settings.ecsx".to_owned()]).is_empty());
    }

    #[test]
    fn agent_env_renders_cluster_and_attributes() {
        let s = crate::settings::validate(
            &json!({"ecs": {"cluster": "c1", "endpoint": "http://cp:8080",
            "instance-attributes": {"b": "2", "a": "1"}}}),
        )
        .unwrap();
        let files = render(Service::Agent, &s);
        assert!(files[0].1.contains("FLOTILLA_CLUSTER=c1\n"));
        assert!(files[0].1.contains("FLOTILLA_ATTRIBUTES=a=1,b=2\n"));
    }

    #[test]
    fn apply_writes_sysctls_under_configured_root() {
        let d = tempfile::tempdir().unwrap();
        let proc_sys = d.path().join("proc/sys");
        std::fs::create_dir_all(proc_sys.join("vm")).unwrap();
        let s = crate::settings::validate(
            &json!({"kernel": {"sysctl": {"vm.max_map_count": "262144"}}}),
        )
        .unwrap();
        let paths = Paths {
            etc: d.path().join("etc"),
            proc_sys: proc_sys.clone(),
        };
        let r = apply(
            &[Service::Sysctl].into(),
            &s,
            &paths,
            &CommandRestarter::default(),
        )
        .unwrap();
        assert_eq!(r.services, [Service::Sysctl]);
        assert_eq!(
            std::fs::read_to_string(proc_sys.join("vm/max_map_count")).unwrap(),
            "262144\n"
        );
        // an unknown key is reported, the others are still written
        let s = crate::settings::validate(
            &json!({"kernel": {"sysctl": {"nosuch.table.key": "1", "vm.max_map_count": "5"}}}),
        )
        .unwrap();
        let e = write_sysctls(&s, &proc_sys).unwrap_err().to_string();
        assert!(e.contains("nosuch.table.key"), "{e}");
        assert_eq!(
            std::fs::read_to_string(proc_sys.join("vm/max_map_count")).unwrap(),
            "5\n"
        );
    }
}
