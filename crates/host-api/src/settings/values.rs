//! Validated string newtypes of the settings tree: every field-level rule (URLs, host names,
//! image references, sysctl keys and values, passwords, …) and the checks they share.
//!
//! Each type checks its value in `TryFrom<String>`, which serde runs while deserialising, so a
//! value of one of these types is valid for the file or command line it is rendered into.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

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
    len_ok(s, what, 1, max)?;
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        return Err(format!("{what} {s:?} contains invalid character {c:?}"));
    }
    Ok(())
}

/// Length in bytes within `min..=max`. The value is not echoed when it is too long.
fn len_ok(s: &str, what: &str, min: usize, max: usize) -> Result<(), String> {
    if s.len() < min || s.len() > max {
        return Err(if s.len() > max {
            format!("{what} must be at most {max} bytes, got {}", s.len())
        } else {
            format!("{what} must be {min} to {max} bytes, got {s:?}")
        });
    }
    Ok(())
}

/// No control characters (C0, DEL, C1) other than those in `allowed`.
fn no_control(s: &str, what: &str, allowed: &[char]) -> Result<(), String> {
    match s.chars().find(|c| c.is_control() && !allowed.contains(c)) {
        Some(c) => Err(format!(
            "{what} must not contain control character {c:?} (line breaks would start a new \
             line in the rendered file)"
        )),
        None => Ok(()),
    }
}

/// Values that become a separate argv word of a command (agent, container runner) must not
/// look like an option.
fn no_leading_dash(s: &str, what: &str) -> Result<(), String> {
    if s.starts_with('-') {
        return Err(format!("{what} {s:?} must not start with '-'"));
    }
    Ok(())
}

/// An RFC 1123 host name: dot-separated labels of 1–63 letters, digits and `-`, not starting
/// or ending with `-`, at most 253 characters, optionally with a trailing dot.
fn hostname(s: &str, what: &str) -> Result<(), String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || s.len() > 253 {
        return Err(format!("{what} must be 1 to 253 characters, got {s:?}"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{what} {s:?} is not a valid host name (RFC 1123: labels of 1-63 letters, digits \
                 and '-', not starting or ending with '-')"
            ));
        }
    }
    Ok(())
}

/// Characters RFC 3986 allows in a URL (unreserved, reserved and `%`). No spaces, quotes,
/// backslashes, control characters or non-ASCII.
fn url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

/// Checks a URL strictly: length, RFC 3986 characters only, parsed by the `url` crate
/// (`http://` assumed without `://`), scheme in `schemes`, a host unless `file`, no
/// credentials.
fn check_url(s: &str, what: &str, schemes: &[&str]) -> Result<url::Url, String> {
    len_ok(s, what, 1, crate::limits::MAX_URL_LEN)?;
    if let Some(c) = s.chars().find(|c| !url_char(*c)) {
        return Err(format!("{what} {s:?} contains invalid character {c:?}"));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{what} {s:?} must start with a letter or digit"));
    }
    let parsed = if s.contains("://") {
        url::Url::parse(s)
    } else {
        url::Url::parse(&format!("http://{s}"))
    }
    .map_err(|e| format!("invalid {what} {s:?}: {e}"))?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(format!(
            "{what} {s:?}: scheme must be one of {}",
            schemes.join(", ")
        ));
    }
    if parsed.scheme() != "file" && !parsed.has_host() {
        return Err(format!("{what} {s:?} has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "{what} must not carry credentials (use settings.container-registry.credentials)"
        ));
    }
    Ok(parsed)
}

validated_string!(
    /// Host/bootstrap container name: ASCII alphanumerics and `-`, at most 76 characters, not
    /// starting with `-` (it is an argv word of the container runner).
    Identifier,
    |s| {
        chars_ok(s, "identifier", 76, |c| c.is_ascii_alphanumeric() || c == '-')?;
        no_leading_dash(s, "identifier")
    }
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
    /// Node attribute name: `[a-zA-Z0-9._/-]{1,128}`, not starting with `-`.
    AttributeKey,
    |s| {
        chars_ok(s, "attribute key", 128, |c| c.is_ascii_alphanumeric() || "._/-".contains(c))?;
        no_leading_dash(s, "attribute key")
    }
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
    /// ECS cluster name: 1–255 letters, digits, `-` and `_`, not starting with `-` (it is the
    /// argv word after the agent's `--cluster`).
    ClusterName,
    |s| {
        chars_ok(s, "cluster name", 255, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')?;
        no_leading_dash(s, "cluster name")
    }
);

validated_string!(
    /// An `http`/`https` URL (`http://` is assumed when the scheme is missing): at most 2048
    /// characters of RFC 3986, parsed by the `url` crate, with a host and no credentials. Used
    /// for `settings.ecs.endpoint` (agent.env, agent argv) and registry mirror endpoints.
    HttpUrl,
    |s| check_url(s, "URL", &["http", "https"]).map(|_| ())
);

validated_string!(
    /// Where an update repository lives: an `http`/`https`/`file` URL checked like
    /// [`HttpUrl`], or an absolute path (at most 4096 bytes, no control characters) taken as a
    /// `file://` location on a local or shared filesystem.
    RepoUrl,
    |s| {
        if s.starts_with('/') {
            len_ok(s, "path", 1, crate::limits::MAX_PATH_LEN)?;
            return no_control(s, "path", &[]);
        }
        check_url(s, "URL", &["http", "https", "file"]).map(|_| ())
    }
);

validated_string!(
    /// A time server: a host name (RFC 1123), an IP address, or a URL with such a host
    /// (`ntp://time.example:123`; only host and port are used). Rendered as
    /// `pool HOST iburst [port N]` in `chrony.conf`.
    NtpServer,
    |s| NtpServer::host_port_of(s).map(|_| ())
);

impl NtpServer {
    fn host_port_of(s: &str) -> Result<(String, Option<u16>), String> {
        let what = "time server";
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok((ip.to_string(), None));
        }
        if !s.contains("://") {
            hostname(s, what)?;
            return Ok((s.to_owned(), None));
        }
        let u = check_url(s, what, &["ntp", "http", "https"])?;
        if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
            return Err(format!(
                "{what} {s:?}: only a host and port are used; remove the path"
            ));
        }
        let host = match u.host() {
            Some(url::Host::Domain(d)) => {
                hostname(d, what)?;
                d.to_owned()
            }
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("{what} {s:?} has no host")),
        };
        Ok((host, u.port()))
    }

    /// The host (name or IP) and explicit port to give chrony.
    #[must_use]
    pub fn host_port(&self) -> Option<(String, Option<u16>)> {
        Self::host_port_of(&self.0).ok()
    }
}

validated_string!(
    /// A DNS search domain: an RFC 1123 host name.
    DnsName,
    |s| hostname(s, "search domain")
);

validated_string!(
    /// A sysctl value: at most 1024 bytes, no control characters except tab (a newline would
    /// write a second value to `/proc/sys`).
    SysctlValue,
    |s| {
        len_ok(s, "sysctl value", 0, crate::limits::MAX_SYSCTL_VALUE_LEN)?;
        no_control(s, "sysctl value", &['\t'])
    }
);

validated_string!(
    /// The message of the day: at most 4096 bytes; newlines and tabs allowed, no other control
    /// characters (no terminal escape sequences).
    Motd,
    |s| {
        len_ok(s, "motd", 0, crate::limits::MAX_MOTD_LEN)?;
        no_control(s, "motd", &['\n', '\t'])
    }
);

validated_string!(
    /// A registry user name: 1–256 bytes, no control characters.
    RegistryUser,
    |s| {
        len_ok(s, "username", 1, crate::limits::MAX_USERNAME_LEN)?;
        no_control(s, "username", &[])
    }
);

validated_string!(
    /// A container image reference (`registry.local:5000/admin:1`, `repo@sha256:…`): 1–512 of
    /// `[A-Za-z0-9._/:@-]`, starting with a letter or digit (it is an argv word of the
    /// container runner).
    ImageRef,
    |s| {
        chars_ok(s, "image reference", crate::limits::MAX_IMAGE_REF_LEN, |c| {
            c.is_ascii_alphanumeric() || "._/:@-".contains(c)
        })?;
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(format!("image reference {s:?} must start with a letter or digit"));
        }
        Ok(())
    }
);

/// A registry password: 1–4096 bytes, no control characters. Its `Debug` form is redacted.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Password(String);

impl TryFrom<String> for Password {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        len_ok(&s, "password", 1, crate::limits::MAX_PASSWORD_LEN)?;
        no_control(&s, "password", &[])?;
        Ok(Self(s))
    }
}

impl From<Password> for String {
    fn from(v: Password) -> String {
        v.0
    }
}

impl Password {
    /// The password.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

validated_string!(
    /// Go-style duration such as `30s`, `1h30m`, `500ms`.
    GoDuration,
    |s| {
        let mut rest = s;
        if rest.is_empty() {
            return Err("empty duration".into());
        }
        len_ok(s, "duration", 1, crate::limits::MAX_DURATION_LEN)?;
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
        len_ok(s, "version", 1, crate::limits::MAX_VERSION_LEN)?;
        semver::Version::parse(s.trim_start_matches('v'))
            .map(|_| ())
            .map_err(|e| format!("version {s:?}: {e}"))
    }
);

validated_string!(
    /// Base64 text (standard alphabet, padded), at most 64 KiB.
    Base64,
    |s| {
        len_ok(s, "base64 value", 0, crate::limits::MAX_BASE64_LEN)?;
        let ok = s.len() % 4 == 0
            && s.trim_end_matches('=').chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
            && s.len() - s.trim_end_matches('=').len() <= 2;
        if ok {
            Ok(())
        } else {
            Err(format!("{s:?} is not valid base64"))
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::settings::validate;
    use serde_json::json;

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

    /// Every value rendered into a file or an argv is refused when it could inject a line, a
    /// word or an option: (document, key the error must name).

    #[test]
    fn injection_attempts_are_refused_naming_the_key() {
        let long = "a".repeat(5000);
        let cases = [
            (
                json!({"dns": {"search-list": ["corp.example\nnameserver 6.6.6.6"]}}),
                "settings.dns.search-list",
            ),
            (
                json!({"dns": {"search-list": ["a b"]}}),
                "settings.dns.search-list",
            ),
            (
                json!({"dns": {"search-list": ["-bad.example"]}}),
                "settings.dns.search-list",
            ),
            (
                json!({"dns": {"name-servers": ["10.0.0.1\nsearch evil"]}}),
                "settings.dns.name-servers",
            ),
            (
                json!({"ntp": {"time-servers": ["time.example\nserver 6.6.6.6"]}}),
                "settings.ntp.time-servers",
            ),
            (
                json!({"ntp": {"time-servers": ["http://time.example/\nx"]}}),
                "settings.ntp.time-servers",
            ),
            (
                json!({"ntp": {"time-servers": ["ntp://time.example/path"]}}),
                "settings.ntp.time-servers",
            ),
            (
                json!({"ecs": {"endpoint": "http://cp:8080\nFLOTILLA_CLUSTER=evil"}}),
                "settings.ecs.endpoint",
            ),
            (
                json!({"ecs": {"endpoint": "http://cp:8080 --cluster x"}}),
                "settings.ecs.endpoint",
            ),
            (
                json!({"ecs": {"endpoint": "http://cp/\"$(id)\""}}),
                "settings.ecs.endpoint",
            ),
            (
                json!({"ecs": {"endpoint": "ftp://cp"}}),
                "settings.ecs.endpoint",
            ),
            (
                json!({"ecs": {"endpoint": "http://user:secret@cp"}}),
                "settings.ecs.endpoint",
            ),
            (
                json!({"ecs": {"endpoint": "--cluster=x"}}),
                "settings.ecs.endpoint",
            ),
            (
                json!({"ecs": {"endpoint": format!("http://cp/{long}")}}),
                "settings.ecs.endpoint",
            ),
            (
                json!({"ecs": {"cluster": "--endpoint"}}),
                "settings.ecs.cluster",
            ),
            (
                json!({"ecs": {"instance-attributes": {"-x": "1"}}}),
                "settings.ecs.instance-attributes",
            ),
            (
                json!({"ecs": {"container-stop-timeout": "1".repeat(40) + "s"}}),
                "settings.ecs.container-stop-timeout",
            ),
            (
                json!({"kernel": {"sysctl": {"vm.max_map_count": "1\n2"}}}),
                "settings.kernel.sysctl.vm.max_map_count",
            ),
            (
                json!({"kernel": {"sysctl": {"vm.max_map_count": long.clone()}}}),
                "settings.kernel.sysctl.vm.max_map_count",
            ),
            (
                json!({"container-registry": {"credentials": [{"registry": "r", "password": "p\n[x]"}]}}),
                "settings.container-registry.credentials[0].password",
            ),
            (
                json!({"container-registry": {"credentials": [{"registry": "r", "username": "u\u{0}"}]}}),
                "settings.container-registry.credentials[0].username",
            ),
            (
                json!({"container-registry": {"mirrors": [{"registry": "r", "endpoint": ["http://m\"]\n[x]"]}]}}),
                "settings.container-registry.mirrors[0].endpoint",
            ),
            (
                json!({"updates": {"metadata-base-url": "/srv/repo\nseed = 1"}}),
                "settings.updates.metadata-base-url",
            ),
            (
                json!({"updates": {"targets-base-url": "http://r/\n"}}),
                "settings.updates.targets-base-url",
            ),
            (
                json!({"updates": {"version-lock": format!("1.0.0-{long}")}}),
                "settings.updates.version-lock",
            ),
            (json!({"motd": "hi\u{1b}[2J"}), "settings.motd"),
            (json!({"motd": long.clone()}), "settings.motd"),
            (
                json!({"host-containers": {"admin": {"source": "--privileged"}}}),
                "settings.host-containers.admin.source",
            ),
            (
                json!({"host-containers": {"admin": {"source": "img:1 evil"}}}),
                "settings.host-containers.admin.source",
            ),
            (
                json!({"bootstrap-containers": {"b": {"source": "x\ny"}}}),
                "settings.bootstrap-containers.b.source",
            ),
            (
                json!({"host-containers": {"-rf": {}}}),
                "settings.host-containers",
            ),
            (
                json!({"host-containers": {"a": {"user-data": "QUFB".repeat(20000)}}}),
                "settings.host-containers.a.user-data",
            ),
        ];
        for (doc, key) in cases {
            let e = validate(&doc).expect_err(&doc.to_string());
            let Error::InvalidSettings { key: got, message } = &e else {
                panic!("{e}");
            };
            assert!(got.starts_with(key), "{doc}: {e}");
            assert!(
                message.len() < 400,
                "the message must not echo huge values: {message}"
            );
        }
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::try_from("hunter2".to_owned()).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(p.as_str(), "hunter2");
    }
}
