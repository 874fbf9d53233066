//! Services: what a committed setting affects, how its configuration is rendered, and how the
//! service is restarted.
//!
//! A service is rendered config file(s) plus a restart action. Which service a key affects is
//! decided by its longest matching prefix ([`affected`]), like Bottlerocket's
//! `affected-services` metadata inherited from the nearest ancestor key. Rendering is a pure
//! function of the settings ([`render`]); [`apply`] writes the files atomically, writes sysctls
//! under the configured `/proc/sys` root, and asks a [`Restarter`] to restart each service.
//!
//! Values are validated by [`crate::settings`] for the file they are rendered into, and
//! escaped again on render (defence in depth): TOML strings by [`toml_str`], `agent.env`
//! values by [`env_quote`], words of unquoted formats (`resolv.conf`, `chrony.conf`) only if
//! [`conf_word`] accepts them. Files holding secrets (`containerd/registries.toml`, the
//! container files with user-data) are written mode 0600.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::settings::{Settings, SysctlKey, SysctlValue};

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

/// `s` between double quotes, each character written by `put`.
fn quoted(s: &str, mut put: impl FnMut(&mut String, char)) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        put(&mut out, c);
    }
    out.push('"');
    out
}

/// A TOML basic string (quotes included): `"` and `\` escaped, every control character
/// escaped (`\n`, `\t`, `\r` or `\uXXXX`, DEL and C1 included), so a value can never end the
/// string or the line.
#[must_use]
pub fn toml_str(s: &str) -> String {
    quoted(s, |out, c| match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
        c => out.push(c),
    })
}

/// A value for a `KEY=value` line read by systemd's `EnvironmentFile=` or sourced by a POSIX
/// shell: double-quoted, with `"`, `\`, `$` and `` ` `` backslash-escaped (both read these
/// four escapes the same way, and nothing is expanded). Control characters are dropped:
/// validation refuses them, and dropping whatever got past it keeps the value on its line.
#[must_use]
pub fn env_quote(s: &str) -> String {
    quoted(s, |out, c| match c {
        '"' | '\\' | '$' | '`' => {
            out.push('\\');
            out.push(c);
        }
        c if c.is_control() => {}
        c => out.push(c),
    })
}

/// `s` if it is safe as one word of a line-based configuration file (`resolv.conf`,
/// `chrony.conf`), which has no quoting: non-empty printable ASCII without spaces or the
/// comment characters `#`, `;` and `!`. Validation guarantees this for every value rendered so;
/// anything else is left out of the file (and logged) rather than written.
#[must_use]
pub fn conf_word(s: &str) -> Option<&str> {
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '#' | ';' | '!'));
    if !ok {
        tracing::warn!(value = ?s, "not rendered: not a single configuration word");
    }
    ok.then_some(s)
}

/// One rendered configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Path relative to the etc root.
    pub path: PathBuf,
    /// Content.
    pub content: String,
    /// File mode: 0600 for files that hold secrets (registry credentials, container
    /// user-data), 0644 otherwise.
    pub mode: u32,
}

fn file(path: &str, content: String, mode: u32) -> RenderedFile {
    RenderedFile {
        path: PathBuf::from(path),
        content,
        mode,
    }
}

fn enum_name(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The files a service's configuration consists of (relative to the etc root), their content
/// and mode. Pure. Every value is escaped for its file (TOML strings, quoted environment
/// values, JSON) or, where the format has no quoting, rendered only if it is one safe word.
#[must_use]
pub fn render(service: Service, s: &Settings) -> Vec<RenderedFile> {
    use durable::{PUBLIC_FILE_MODE, SECRET_FILE_MODE};
    let mut out = Vec::new();
    match service {
        Service::Agent => {
            let ecs = s.ecs.clone().unwrap_or_default();
            let mut env = String::new();
            let mut var = |k: &str, v: &str| env.push_str(&format!("{k}={}\n", env_quote(v)));
            if let Some(e) = &ecs.endpoint {
                var("FLOTILLA_ENDPOINT", e.as_str());
            }
            if let Some(c) = &ecs.cluster {
                var("FLOTILLA_CLUSTER", c.as_str());
            }
            let attrs = agent_attributes(s);
            if !attrs.is_empty() {
                var("FLOTILLA_ATTRIBUTES", &attrs);
            }
            if let Some(l) = ecs.loglevel {
                var("FLOTILLA_LOGLEVEL", &enum_name(l));
            }
            var(
                "FLOTILLA_PRIVILEGED_DISABLED",
                &(!ecs.allow_privileged_containers.unwrap_or(false)).to_string(),
            );
            var(
                "FLOTILLA_CONTAINER_STOP_TIMEOUT",
                ecs.container_stop_timeout
                    .as_ref()
                    .map_or("30s", |d| d.as_str()),
            );
            var(
                "FLOTILLA_RESERVED_MEMORY",
                &ecs.reserved_memory.unwrap_or(0).to_string(),
            );
            out.push(file("flotilla/agent.env", env, PUBLIC_FILE_MODE));
        }
        Service::Sysctl => {
            let mut t = String::from("[sysctl]\n");
            for (k, v) in sysctls(s) {
                t.push_str(&format!(
                    "{} = {}\n",
                    toml_str(k.as_str()),
                    toml_str(v.as_str())
                ));
            }
            out.push(file("flotilla/sysctl.toml", t, PUBLIC_FILE_MODE));
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
                    t.push_str(&format!("username = {}\n", toml_str(u.as_str())));
                }
                if let Some(p) = &c.password {
                    t.push_str(&format!("password = {}\n", toml_str(p.as_str())));
                }
                if let Some(a) = &c.auth {
                    t.push_str(&format!("auth = {}\n", toml_str(a.as_str())));
                }
            }
            // Holds registry passwords.
            out.push(file("containerd/registries.toml", t, SECRET_FILE_MODE));
        }
        Service::Dns => {
            let dns = s.dns.clone().unwrap_or_default();
            let mut t = String::new();
            for ns in dns.name_servers.unwrap_or_default() {
                if let Some(w) = conf_word(&ns.to_string()) {
                    t.push_str(&format!("nameserver {w}\n"));
                }
            }
            let search: Vec<&str> = dns
                .search_list
                .iter()
                .flatten()
                .filter_map(|d| conf_word(d.as_str()))
                .collect();
            if !search.is_empty() {
                t.push_str(&format!("search {}\n", search.join(" ")));
            }
            out.push(file("resolv.conf", t, PUBLIC_FILE_MODE));
        }
        Service::Ntp => {
            let mut t = String::new();
            for srv in s
                .ntp
                .as_ref()
                .and_then(|n| n.time_servers.clone())
                .unwrap_or_default()
            {
                let Some((host, port)) = srv.host_port() else {
                    continue;
                };
                if let Some(h) = conf_word(&host) {
                    t.push_str(&format!("pool {h} iburst"));
                    if let Some(p) = port {
                        t.push_str(&format!(" port {p}"));
                    }
                    t.push('\n');
                }
            }
            out.push(file("chrony.conf", t, PUBLIC_FILE_MODE));
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
            out.push(file("flotilla/updates.toml", t, PUBLIC_FILE_MODE));
        }
        Service::HostContainers => {
            let v = serde_json::to_value(s.host_containers.clone().unwrap_or_default())
                .unwrap_or_default();
            // user-data may carry secrets (keys, tokens) for the container.
            out.push(file(
                "flotilla/host-containers.json",
                v.to_string(),
                SECRET_FILE_MODE,
            ));
        }
        Service::BootstrapContainers => {
            let v = serde_json::to_value(s.bootstrap_containers.clone().unwrap_or_default())
                .unwrap_or_default();
            out.push(file(
                "flotilla/bootstrap-containers.json",
                v.to_string(),
                SECRET_FILE_MODE,
            ));
        }
        Service::Motd => {
            // Validation allows only newlines and tabs; drop any other control character
            // (terminal escape sequences) that got past it.
            let motd: String = s
                .motd
                .as_ref()
                .map(|m| m.as_str())
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
                .collect();
            out.push(file("motd", format!("{motd}\n"), PUBLIC_FILE_MODE));
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

/// The sysctls the settings set (`settings.kernel.sysctl`), by key.
fn sysctls(s: &Settings) -> impl Iterator<Item = (&SysctlKey, &SysctlValue)> {
    s.kernel
        .as_ref()
        .and_then(|k| k.sysctl.as_ref())
        .into_iter()
        .flatten()
}

/// What [`write_sysctls`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SysctlOutcome {
    /// Files written.
    pub written: Vec<PathBuf>,
    /// Sysctl key (as in the settings, e.g. `vm.max_map_count`) → why it could not be written
    /// (unknown to the kernel, read-only, value refused).
    pub failed: BTreeMap<String, String>,
}

/// Writes each sysctl to `<proc_sys>/<key with . → />`. Every key is attempted; keys that
/// cannot be written are reported together in [`SysctlOutcome::failed`].
#[must_use]
pub fn write_sysctls(s: &Settings, proc_sys: &Path) -> SysctlOutcome {
    let mut out = SysctlOutcome::default();
    for (k, v) in sysctls(s) {
        let path = proc_sys.join(k.as_str().replace('.', "/"));
        match std::fs::write(&path, format!("{v}\n")) {
            Ok(()) => out.written.push(path),
            Err(e) => {
                out.failed
                    .insert(k.to_string(), format!("{}: {e}", path.display()));
            }
        }
    }
    out
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
/// not restarted. The commands come from the host's configuration file, never from settings.
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

/// One service that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceFailure {
    /// The service.
    pub service: Service,
    /// What failed (writing a file, a sysctl, the restart).
    pub message: String,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplyReport {
    /// Services re-rendered and restarted, in order.
    pub services: Vec<Service>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Services that failed, in order (their restart was not attempted, or failed).
    pub failed: Vec<ServiceFailure>,
    /// Sysctl keys the kernel refused (key → reason); the sysctl service is then in
    /// [`ApplyReport::failed`] too.
    pub rejected_sysctls: BTreeMap<String, String>,
}

impl ApplyReport {
    /// `Ok` when every service applied, else [`Error::Apply`] naming every failed service.
    ///
    /// # Errors
    /// [`Error::Apply`].
    pub fn into_result(self) -> Result<ApplyReport> {
        if self.failed.is_empty() {
            return Ok(self);
        }
        Err(apply_error(&self.failed))
    }
}

/// One [`Error::Apply`] for a list of failures.
#[must_use]
pub fn apply_error(failed: &[ServiceFailure]) -> Error {
    let service = failed
        .iter()
        .map(|f| f.service.name())
        .collect::<Vec<_>>()
        .join(", ");
    let message = if let [one] = failed {
        one.message.clone()
    } else {
        failed
            .iter()
            .map(|f| format!("{}: {}", f.service, f.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Error::Apply { service, message }
}

/// Renders `service`'s files and writes them under the etc root (atomically, with their
/// mode). Returns the paths written.
///
/// # Errors
/// The file that could not be written.
pub fn write_rendered(
    service: Service,
    settings: &Settings,
    paths: &Paths,
) -> std::result::Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for f in render(service, settings) {
        let path = paths.etc.join(&f.path);
        durable::write(&path, f.content.as_bytes(), f.mode)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Renders and restarts `services` for `settings`. Every service is attempted: one that fails
/// (a file, a sysctl the kernel refuses, its restart command) is recorded in
/// [`ApplyReport::failed`] and the others still apply.
pub fn apply(
    services: &BTreeSet<Service>,
    settings: &Settings,
    paths: &Paths,
    restarter: &dyn Restarter,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    for service in Service::ALL.into_iter().filter(|s| services.contains(s)) {
        let mut failure = match write_rendered(service, settings, paths) {
            Ok(files) => {
                report.files.extend(files);
                None
            }
            Err(message) => Some(message),
        };
        if failure.is_none() && service == Service::Sysctl {
            let out = write_sysctls(settings, &paths.proc_sys);
            report.files.extend(out.written);
            if !out.failed.is_empty() {
                failure = Some(format!(
                    "could not write {}",
                    out.failed
                        .iter()
                        .map(|(k, why)| format!("{k} ({why})"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
                report.rejected_sysctls.extend(out.failed);
            }
        }
        if failure.is_none()
            && let Err(message) = restarter.restart(service, settings)
        {
            failure = Some(message);
        }
        match failure {
            None => report.services.push(service),
            Some(message) => report.failed.push(ServiceFailure { service, message }),
        }
    }
    report
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
        assert!(files[0].content.contains("FLOTILLA_CLUSTER=\"c1\"\n"));
        assert!(
            files[0]
                .content
                .contains("FLOTILLA_ATTRIBUTES=\"a=1,b=2\"\n")
        );
        assert!(
            files[0]
                .content
                .contains("FLOTILLA_ENDPOINT=\"http://cp:8080\"\n")
        );
    }

    #[test]
    fn env_values_are_quoted_for_systemd_and_sh() {
        assert_eq!(env_quote("plain"), "\"plain\"");
        assert_eq!(env_quote("a\"b\\c$d`e f"), "\"a\\\"b\\\\c\\$d\\`e f\"");
        // control characters can never end the line
        assert_eq!(env_quote("x\nFOO=1\r\u{1b}"), "\"xFOO=1\"");
        // round trip through a real shell
        let v = "http://h/p?a=$HOME&b=`id`\"'\\";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("V={}; printf %s \"$V\"", env_quote(v)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), v);
    }

    #[test]
    fn toml_strings_escape_every_control_character() {
        let nasty = "a\"b\\c\nd\u{7f}e\u{1b}f\u{85}";
        let doc = format!("k = {}\n", toml_str(nasty));
        assert_eq!(doc.lines().count(), 1, "{doc}");
        let t: toml::Table = toml::from_str(&doc).unwrap();
        assert_eq!(t["k"].as_str().unwrap(), nasty);
    }

    #[test]
    fn conf_words_refuse_spaces_controls_and_comments() {
        assert_eq!(conf_word("example.com"), Some("example.com"));
        for bad in ["", "a b", "a\nnameserver 6.6.6.6", "a#b", "x;y", "\u{e9}"] {
            assert_eq!(conf_word(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_rendered_file_holds_only_validated_lines() {
        let s = crate::settings::validate(&json!({
            "ecs": {"endpoint": "https://cp.example:8443/x", "cluster": "c"},
            "dns": {"name-servers": ["10.0.0.2", "fd00::1"], "search-list": ["corp.example", "example."]},
            "ntp": {"time-servers": ["time.example", "ntp://10.1.1.1:1123", "fd00::123"]},
            "motd": "hello\nworld",
            "container-registry": {"credentials": [{"registry": "r.example", "username": "u", "password": "p\"w"}]},
        }))
        .unwrap();
        let dns = &render(Service::Dns, &s)[0];
        assert_eq!(
            dns.content,
            "nameserver 10.0.0.2\nnameserver fd00::1\nsearch corp.example example.\n"
        );
        let ntp = &render(Service::Ntp, &s)[0];
        assert_eq!(
            ntp.content,
            "pool time.example iburst\npool 10.1.1.1 iburst port 1123\npool fd00::123 iburst\n"
        );
        let reg = &render(Service::Containerd, &s)[0];
        assert_eq!(reg.mode, 0o600);
        assert!(
            reg.content.contains("password = \"p\\\"w\"\n"),
            "{}",
            reg.content
        );
        for svc in Service::ALL {
            for f in render(svc, &s) {
                let secret = matches!(
                    svc,
                    Service::Containerd | Service::HostContainers | Service::BootstrapContainers
                );
                assert_eq!(f.mode, if secret { 0o600 } else { 0o644 }, "{svc}");
            }
        }
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
        .into_result()
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
        let out = write_sysctls(&s, &proc_sys);
        assert_eq!(out.failed.keys().collect::<Vec<_>>(), ["nosuch.table.key"]);
        assert_eq!(
            std::fs::read_to_string(proc_sys.join("vm/max_map_count")).unwrap(),
            "5\n"
        );
    }

    #[test]
    fn apply_attempts_every_service_and_reports_each_failure() {
        let d = tempfile::tempdir().unwrap();
        let proc_sys = d.path().join("proc/sys");
        std::fs::create_dir_all(proc_sys.join("vm")).unwrap();
        let s = crate::settings::validate(&json!({
            "kernel": {"sysctl": {"nosuch.key": "1"}}, "motd": "m", "ecs": {"cluster": "c"}
        }))
        .unwrap();
        let paths = Paths {
            etc: d.path().join("etc"),
            proc_sys,
        };
        let restarter = CommandRestarter {
            commands: [("agent".to_owned(), "exit 3".to_owned())].into(),
            etc: paths.etc.clone(),
        };
        let set = [Service::Sysctl, Service::Motd, Service::Agent].into();
        let r = apply(&set, &s, &paths, &restarter);
        assert_eq!(r.services, [Service::Motd]);
        let failed: Vec<Service> = r.failed.iter().map(|f| f.service).collect();
        assert_eq!(failed, [Service::Sysctl, Service::Agent]);
        assert!(r.rejected_sysctls.contains_key("nosuch.key"));
        let e = r.into_result().unwrap_err().to_string();
        assert!(
            e.contains("sysctl, agent") && e.contains("nosuch.key"),
            "{e}"
        );
    }
}
