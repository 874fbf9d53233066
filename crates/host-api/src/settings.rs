//! The typed settings tree.
//!
//! Every field is optional (a document may set any subset), unknown keys are rejected and JSON
//! keys are kebab-case, as in Bottlerocket's models. Field-level rules live in small validated
//! newtypes ([`Identifier`], [`SysctlKey`], …) that run during deserialisation, so a document
//! that deserialises is valid. [`validate`] turns a JSON value into [`Settings`] and reports the
//! first problem with the full dotted key (`settings.ecs.cluster: invalid type: …`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

macro_rules! validated_string {
    ($(#[$m:meta])* $name:ident, $check:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl $name {
            /// The validated text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn chars_ok(s: &str, what: &str, max: usize, ok: fn(char) -> bool) -> Result<(), String> {
    if s.is_empty() || s.len() > max {
        return Err(format!("{what} must be 1 to {max} characters, got {s:?}"));
    }
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        return Err(format!("{what} {s:?} contains invalid character {c:?}"));
    }
    Ok(())
}

validated_string!(
    /// Host/bootstrap container name: ASCII alphanumerics and `-`, at most 76 characters.
    Identifier,
    |s| chars_ok(s, "identifier", 76, |c| c.is_ascii_alphanumeric() || c == '-')
);

validated_string!(
    /// Kernel sysctl key, e.g. `net.ipv4.ip_forward`: `[a-zA-Z0-9./_-]{1,128}`, no `..`, not
    /// starting with `.` or `/`.
    SysctlKey,
    |s| {
        chars_ok(s, "sysctl key", 128, |c| c.is_ascii_alphanumeric() || "./_-".contains(c))?;
        if s.contains("..") || s.starts_with('.') || s.starts_with('/') {
            return Err(format!("sysctl key {s:?} must not contain '..' or start with '.' or '/'"));
        }
        Ok(())
    }
);

validated_string!(
    /// Node attribute name: `[a-zA-Z0-9._/-]{1,128}`.
    AttributeKey,
    |s| chars_ok(s, "attribute key", 128, |c| c.is_ascii_alphanumeric() || "._/-".contains(c))
);

validated_string!(
    /// Node attribute value: 1–128 of `[a-zA-Z0-9.@:_/\- ]`, no leading/trailing space.
    AttributeValue,
    |s| {
        chars_ok(s, "attribute value", 128, |c| c.is_ascii_alphanumeric() || ".@:_/\\- ".contains(c))?;
        if s.starts_with(' ') || s.ends_with(' ') {
            return Err(format!("attribute value {s:?} has leading or trailing space"));
        }
        Ok(())
    }
);

validated_string!(
    /// ECS cluster name: 1–255 letters, digits, `-` and `_`.
    ClusterName,
    |s| chars_ok(s, "cluster name", 255, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
);

validated_string!(
    /// A URL; `http://` is assumed when the scheme is missing. Absolute paths are accepted as
    /// `file://` URLs (update repositories on a local or shared filesystem).
    Url,
    |s| {
        if s.starts_with('/') {
            return Ok(());
        }
        let parsed = url::Url::parse(s).or_else(|_| url::Url::parse(&format!("http://{s}")));
        match parsed {
            Ok(u) if u.scheme() == "file" || u.has_host() => Ok(()),
            Ok(_) => Err(format!("URL {s:?} has no host")),
            Err(e) => Err(format!("invalid URL {s:?}: {e}")),
        }
    }
);

validated_string!(
    /// Go-style duration such as `30s`, `1h30m`, `500ms`.
    GoDuration,
    |s| {
        let mut rest = s;
        if rest.is_empty() {
            return Err("empty duration".into());
        }
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            if num_len == 0 {
                return Err(format!("invalid duration {s:?}"));
            }
            rest = &rest[num_len..];
            let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
                .into_iter()
                .find(|u| rest.starts_with(u))
                .ok_or_else(|| format!("invalid duration {s:?}: unknown unit"))?;
            rest = &rest[unit.len()..];
        }
        Ok(())
    }
);

validated_string!(
    /// `latest`, or a semver version with an optional leading `v`.
    FriendlyVersion,
    |s| {
        if s == "latest" {
            return Ok(());
        }
        semver::Version::parse(s.trim_start_matches('v'))
            .map(|_| ())
            .map_err(|e| format!("version {s:?}: {e}"))
    }
);

validated_string!(
    /// Base64 text (standard alphabet, padded).
    Base64,
    |s| {
        let ok = s.len() % 4 == 0
            && s.trim_end_matches('=').chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
            && s.len() - s.trim_end_matches('=').len() <= 2;
        if ok { Ok(()) } else { Err(format!("{s:?} is not valid base64")) }
    }
);

validated_string!(
    /// A registry host name such as `docker.io` or `registry.local:5000`, or `*`.
    RegistryName,
    |s| chars_ok(s, "registry", 253, |c| c.is_ascii_alphanumeric() || ".-:*_".contains(c))
);

impl FriendlyVersion {
    /// `None` for `latest`.
    #[must_use]
    pub fn version(&self) -> Option<semver::Version> {
        if self.0 == "latest" {
            None
        } else {
            semver::Version::parse(self.0.trim_start_matches('v')).ok()
        }
    }
}

/// The update seed, in `[0, 2048)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Seed(u32);

impl TryFrom<u32> for Seed {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        if v < updater::manifest::MAX_SEED {
            Ok(Seed(v))
        } else {
            Err(format!(
                "seed must be below {}, got {v}",
                updater::manifest::MAX_SEED
            ))
        }
    }
}

impl From<Seed> for u32 {
    fn from(s: Seed) -> u32 {
        s.0
    }
}

/// Agent log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
    /// Critical.
    Crit,
}

/// When the agent pulls images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullBehavior {
    /// Pull unless cached and recent.
    Default,
    /// Always pull.
    Always,
    /// Pull once per node.
    Once,
    /// Use the cache when present.
    PreferCached,
}

/// When a bootstrap container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootstrapMode {
    /// Never.
    Off,
    /// On the next boot only, then set to `off`.
    Once,
    /// On every boot.
    Always,
}

/// `settings`: the root of the tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Message of the day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub motd: Option<String>,
    /// The node agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsSettings>,
    /// Kernel settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelSettings>,
    /// Container registry mirrors and credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_registry: Option<RegistrySettings>,
    /// Resolver configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSettings>,
    /// Time sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntp: Option<NtpSettings>,
    /// Update repository and policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updates: Option<UpdatesSettings>,
    /// Long-running host containers (admin, control).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_containers: Option<BTreeMap<Identifier, HostContainer>>,
    /// Containers that run to completion before the agent starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap_containers: Option<BTreeMap<Identifier, BootstrapContainer>>,
}

/// `settings.ecs`: how the node agent joins the control plane.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EcsSettings {
    /// Control plane endpoint (`flotilla agent --endpoint`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Url>,
    /// Cluster to register in (`--cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterName>,
    /// Node attributes (`--attributes k=v,…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_attributes: Option<BTreeMap<AttributeKey, AttributeValue>>,
    /// Agent log level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loglevel: Option<LogLevel>,
    /// Whether tasks may run privileged containers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privileged_containers: Option<bool>,
    /// Grace period between SIGTERM and SIGKILL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_stop_timeout: Option<GoDuration>,
    /// Image pull behaviour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_behavior: Option<PullBehavior>,
    /// Memory (MiB) kept back from tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_memory: Option<u16>,
}

/// `settings.kernel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelSettings {
    /// `/proc/sys` values by dotted key; values are strings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctl: Option<BTreeMap<SysctlKey, String>>,
}

/// `settings.container-registry`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistrySettings {
    /// Pull-through mirrors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirrors: Option<Vec<RegistryMirror>>,
    /// Credentials per registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<RegistryCredential>>,
}

/// One mirror list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryMirror {
    /// Registry being mirrored.
    pub registry: RegistryName,
    /// Mirror endpoints, tried in order.
    pub endpoint: Vec<Url>,
}

/// One credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryCredential {
    /// Registry.
    pub registry: RegistryName,
    /// User name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `base64(user:password)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Base64>,
}

/// `settings.dns`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DnsSettings {
    /// Resolver addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_servers: Option<Vec<IpAddr>>,
    /// Search domains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_list: Option<Vec<String>>,
}

/// `settings.ntp`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NtpSettings {
    /// NTP servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_servers: Option<Vec<Url>>,
}

/// `settings.updates`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpdatesSettings {
    /// TUF metadata directory URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_base_url: Option<Url>,
    /// TUF targets directory URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets_base_url: Option<Url>,
    /// Wave seed, generated at first boot when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<Seed>,
    /// `latest` or an exact version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_lock: Option<FriendlyVersion>,
    /// Take updates as soon as published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignore_waves: Option<bool>,
}

/// One host container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostContainer {
    /// Run it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Privileged, host namespaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superpowered: Option<bool>,
    /// Image reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Data handed to the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<Base64>,
}

/// One bootstrap container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootstrapContainer {
    /// Image reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// When to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<BootstrapMode>,
    /// Failure stops the boot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    /// Data handed to the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<Base64>,
}

/// Deserialises a settings document (the object *under* `settings`), reporting the first
/// problem with its full dotted key.
///
/// # Errors
/// [`Error::InvalidSettings`].
pub fn validate(doc: &Value) -> Result<Settings, Error> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            "settings".to_owned()
        } else {
            format!("settings.{path}")
        };
        Error::InvalidSettings {
            key,
            message: e.into_inner().to_string(),
        }
    })
}

/// Quotes a key segment if it contains a dot.
#[must_use]
pub fn quote_segment(s: &str) -> String {
    if s.contains('.') {
        format!("\"{s}\"")
    } else {
        s.to_owned()
    }
}

/// Flattens a document into `dotted.key → leaf value` (arrays are leaves).
#[must_use]
pub fn flatten(doc: &Value, prefix: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    fn walk(v: &Value, key: String, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    walk(child, format!("{key}.{}", quote_segment(k)), out);
                }
            }
            _ => {
                out.insert(key, v.clone());
            }
        }
    }
    if let Value::Object(m) = doc {
        for (k, child) in m {
            walk(child, format!("{prefix}{}", quote_segment(k)), &mut out);
        }
    }
    out
}

/// Deep-merges `patch` into `base` (objects merge key-wise, everything else replaces).
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Keeps only the keys of a `settings`-rooted flattened view that start with `prefix`
/// (string prefix on the dotted key, `settings.` implied), and rebuilds the nested tree.
#[must_use]
pub fn filter_prefix(doc: &Value, root: &str, prefix: &str) -> Value {
    let flat = flatten(doc, &format!("{root}."));
    let mut out = Value::Object(serde_json::Map::new());
    for (k, v) in flat {
        if k.starts_with(prefix)
            && let Ok(path) = updater::migration::split_key(&k)
        {
            let _ = updater::migration::set(&mut out, &path, v);
        }
    }
    out
}

/// Adds `settings.` to a key that lacks it.
#[must_use]
pub fn full_key(key: &str) -> String {
    if key == "settings" || key.starts_with("settings.") {
        key.to_owned()
    } else {
        format!("settings.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_document_deserialises() {
        let s = validate(&json!({
            "ecs": {"cluster": "prod", "endpoint": "http://10.0.0.1:8080",
                    "instance-attributes": {"tier": "web"}, "loglevel": "debug",
                    "container-stop-timeout": "1m30s"},
            "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}},
            "updates": {"seed": 17, "ignore-waves": true, "version-lock": "v1.2.3",
                        "metadata-base-url": "/srv/repo/metadata"},
            "host-containers": {"admin": {"enabled": false, "superpowered": true, "source": "x"}},
            "bootstrap-containers": {"setup": {"source": "y", "mode": "once", "user-data": "aGk="}},
            "dns": {"name-servers": ["10.0.0.2"]},
            "ntp": {"time-servers": ["time.example"]},
            "container-registry": {"mirrors": [{"registry": "docker.io", "endpoint": ["http://m:5000"]}]}
        }))
        .unwrap();
        assert_eq!(s.ecs.unwrap().cluster.unwrap().as_str(), "prod");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = validate(&json!({"ecs": {"clusterr": "x"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.ecs") && e.contains("clusterr"), "{e}");
        let e = validate(&json!({"nope": 1})).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = validate(&json!({"ecs": {"cluster": 5}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.ecs.cluster"), "{e}");
        let e = validate(&json!({"updates": {"seed": 5000}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("settings.updates.seed") && e.contains("2048"),
            "{e}"
        );
        let e = validate(&json!({"kernel": {"sysctl": {"../etc": "1"}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.kernel.sysctl"), "{e}");
        let e = validate(&json!({"host-containers": {"bad_name!": {}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.host-containers"), "{e}");
    }

    #[test]
    fn field_validators() {
        assert!(GoDuration::try_from("1h30m".to_owned()).is_ok());
        assert!(GoDuration::try_from("10x".to_owned()).is_err());
        assert!(Base64::try_from("aGk=".to_owned()).is_ok());
        assert!(Base64::try_from("a".to_owned()).is_err());
        assert!(FriendlyVersion::try_from("latest".to_owned()).is_ok());
        assert!(FriendlyVersion::try_from("banana".to_owned()).is_err());
        assert!(AttributeValue::try_from(" x".to_owned()).is_err());
    }

    #[test]
    fn flatten_quotes_dotted_segments_and_filter_rebuilds() {
        let doc = json!({"kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}, "motd": "hi"});
        let flat = flatten(&doc, "settings.");
        assert!(flat.contains_key("settings.kernel.sysctl.\"net.ipv4.ip_forward\""));
        let f = filter_prefix(&doc, "settings", "settings.kernel");
        assert_eq!(
            f,
            json!({"settings": {"kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}}})
        );
    }

    #[test]
    fn merge_is_deep() {
        let mut a = json!({"ecs": {"cluster": "a", "loglevel": "info"}});
        merge(&mut a, &json!({"ecs": {"cluster": "b"}}));
        assert_eq!(a, json!({"ecs": {"cluster": "b", "loglevel": "info"}}));
    }
}
