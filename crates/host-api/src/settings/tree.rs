//! The settings tree: [`Settings`] and its tables, with list and map size limits.
//!
//! Every field is optional (a document may set any subset), unknown keys are rejected and JSON
//! keys are kebab-case, as in Bottlerocket's models.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::values::*;

/// `deserialize_with` for an optional list of at most `MAX` entries.
fn max_list<'de, D, T, const MAX: usize>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let v = Option::<Vec<T>>::deserialize(d)?;
    if let Some(v) = &v {
        check_count::<D::Error>(v.len(), MAX)?;
    }
    Ok(v)
}

/// `deserialize_with` for a required list of at most `MAX` entries.
fn max_list_req<'de, D, T, const MAX: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let v = Vec::<T>::deserialize(d)?;
    check_count::<D::Error>(v.len(), MAX)?;
    Ok(v)
}

/// `deserialize_with` for an optional map of at most `MAX` entries.
fn max_map<'de, D, K, V, const MAX: usize>(d: D) -> Result<Option<BTreeMap<K, V>>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Deserialize<'de> + Ord,
    V: Deserialize<'de>,
{
    let v = Option::<BTreeMap<K, V>>::deserialize(d)?;
    if let Some(v) = &v {
        check_count::<D::Error>(v.len(), MAX)?;
    }
    Ok(v)
}

fn check_count<E: serde::de::Error>(len: usize, max: usize) -> Result<(), E> {
    if len > max {
        return Err(E::custom(format!("at most {max} entries, got {len}")));
    }
    Ok(())
}

/// `deserialize_with` for `settings.dns.search-list`: at most 6 domains whose `search` line
/// (domains joined by spaces) is at most 256 characters.
fn search_list<'de, D>(d: D) -> Result<Option<Vec<DnsName>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    let v = max_list::<D, DnsName, { crate::limits::MAX_SEARCH_DOMAINS }>(d)?;
    if let Some(v) = &v {
        let len = v.iter().map(|n| n.as_str().len()).sum::<usize>() + v.len().saturating_sub(1);
        if len > crate::limits::MAX_SEARCH_LIST_LEN {
            return Err(D::Error::custom(format!(
                "the search list must be at most {} characters in all, got {len}",
                crate::limits::MAX_SEARCH_LIST_LEN
            )));
        }
    }
    Ok(v)
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
    pub motd: Option<Motd>,
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
    pub endpoint: Option<HttpUrl>,
    /// Cluster to register in (`--cluster`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterName>,
    /// Node attributes (`--attributes k=v,…`), at most 64.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_map::<_, _, _, { crate::limits::MAX_INSTANCE_ATTRIBUTES }>"
    )]
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
    pub sysctl: Option<BTreeMap<SysctlKey, SysctlValue>>,
}

/// `settings.container-registry`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistrySettings {
    /// Pull-through mirrors, at most 64.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_list::<_, _, { crate::limits::MAX_REGISTRY_ENTRIES }>"
    )]
    pub mirrors: Option<Vec<RegistryMirror>>,
    /// Credentials per registry, at most 64.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_list::<_, _, { crate::limits::MAX_REGISTRY_ENTRIES }>"
    )]
    pub credentials: Option<Vec<RegistryCredential>>,
}

/// One mirror list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryMirror {
    /// Registry being mirrored.
    pub registry: RegistryName,
    /// Mirror endpoints, tried in order, at most 16.
    #[serde(deserialize_with = "max_list_req::<_, _, { crate::limits::MAX_MIRROR_ENDPOINTS }>")]
    pub endpoint: Vec<HttpUrl>,
}

/// One credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegistryCredential {
    /// Registry.
    pub registry: RegistryName,
    /// User name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<RegistryUser>,
    /// Password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Password>,
    /// `base64(user:password)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Base64>,
}

/// `settings.dns`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DnsSettings {
    /// Resolver addresses, at most 3.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_list::<_, _, { crate::limits::MAX_NAME_SERVERS }>"
    )]
    pub name_servers: Option<Vec<IpAddr>>,
    /// Search domains (RFC 1123), at most 6 and 256 characters in all.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "search_list"
    )]
    pub search_list: Option<Vec<DnsName>>,
}

/// `settings.ntp`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NtpSettings {
    /// NTP servers, at most 16.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_list::<_, _, { crate::limits::MAX_TIME_SERVERS }>"
    )]
    pub time_servers: Option<Vec<NtpServer>>,
}

/// `settings.updates`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpdatesSettings {
    /// TUF metadata directory URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_base_url: Option<RepoUrl>,
    /// TUF targets directory URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets_base_url: Option<RepoUrl>,
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
    pub source: Option<ImageRef>,
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
    pub source: Option<ImageRef>,
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

#[cfg(test)]
mod tests {
    use crate::settings::validate;
    use serde_json::{Value, json};

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
    fn list_lengths_are_bounded() {
        for (doc, key) in [
            (
                json!({"dns": {"name-servers": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]}}),
                "settings.dns.name-servers",
            ),
            (
                json!({"dns": {"search-list": ["a", "b", "c", "d", "e", "f", "g"]}}),
                "settings.dns.search-list",
            ),
            (
                json!({"dns": {"search-list": vec![format!("{}.{}", "a".repeat(63), "b".repeat(63)); 3]}}),
                "settings.dns.search-list",
            ),
            (
                json!({"ntp": {"time-servers": vec!["t.example"; 17]}}),
                "settings.ntp.time-servers",
            ),
            (
                json!({"container-registry": {"mirrors": [{"registry": "r", "endpoint": vec!["http://m"; 17]}]}}),
                "settings.container-registry.mirrors[0].endpoint",
            ),
        ] {
            let e = validate(&doc).unwrap_err();
            assert!(
                e.to_string().starts_with(key) && e.to_string().contains("at most"),
                "{e}"
            );
        }
        let attrs: serde_json::Map<String, Value> =
            (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        let e = validate(&json!({"ecs": {"instance-attributes": attrs}})).unwrap_err();
        assert!(
            e.to_string().contains("settings.ecs.instance-attributes"),
            "{e}"
        );
    }

    #[test]
    fn legitimate_values_still_pass() {
        validate(&json!({
            "ecs": {"endpoint": "10.0.0.1:8080", "cluster": "prod_1"},
            "dns": {"name-servers": ["10.0.0.2", "fd00::53", "1.1.1.1"],
                    "search-list": ["corp.example", "example.", "svc"]},
            "ntp": {"time-servers": ["169.254.169.123", "2.amazon.pool.ntp.org", "ntp://[fd00::1]:123", "https://time.example/"]},
            "kernel": {"sysctl": {"net.ipv4.ip_local_port_range": "32768\t60999", "kernel.core_pattern": "|/bin/false %p"}},
            "updates": {"metadata-base-url": "/srv/my repo/metadata", "targets-base-url": "file:///srv/repo/targets"},
            "container-registry": {
                "mirrors": [{"registry": "docker.io", "endpoint": ["https://mirror.example:5000/v2?x=1"]}],
                "credentials": [{"registry": "*", "username": "AWS", "password": "p@ss w\"ord'$", "auth": "dTpw"}]},
            "host-containers": {"admin": {"source": "registry.local:5000/admin@sha256:abc", "user-data": "aGk="}},
            "motd": "line 1\n\tline 2",
        }))
        .unwrap();
    }
}
