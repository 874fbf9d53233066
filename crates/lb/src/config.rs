//! The load balancer's input: a plain, serde-able [`LbConfig`] (listeners, their rules, target
//! groups and their targets), its limits as constants, and [`LbConfig::validate`].
//!
//! This module owns the *shape* of what the data plane does and nothing else: no I/O, no
//! clocks. `flotilla server --lb-listen` builds an `LbConfig` from the control plane's ELBv2
//! records; tests build one by hand. Field names follow ELBv2 where there is one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Most listeners one load balancer has (ALB: 50).
pub const MAX_LISTENERS: usize = 50;
/// Most rules one listener has, the default action aside (ALB: 100).
pub const MAX_RULES_PER_LISTENER: usize = 100;
/// Highest rule priority (ALB: 1..=50000); priorities are unique within a listener.
pub const MAX_RULE_PRIORITY: u32 = 50_000;
/// Most condition values in one rule, all conditions together (ALB: 5).
pub const MAX_CONDITION_VALUES_PER_RULE: usize = 5;
/// Longest path-pattern / host-header / header value pattern, in bytes (ALB: 128).
pub const MAX_PATTERN_LEN: usize = 128;
/// Most target groups one forward action splits over (ALB: 5).
pub const MAX_FORWARD_TARGET_GROUPS: usize = 5;
/// Highest weight of a target group in a forward action (ALB: 0..=999).
pub const MAX_FORWARD_WEIGHT: u32 = 999;
/// Most target groups one load balancer knows.
pub const MAX_TARGET_GROUPS: usize = 100;
/// Most targets in one target group (ALB: 1000 per group).
pub const MAX_TARGETS_PER_GROUP: usize = 1000;
/// Longest fixed-response body, in bytes (ALB: 1024).
pub const MAX_FIXED_RESPONSE_BODY: usize = 1024;
/// Longest deregistration delay, in seconds (ALB: 0..=3600).
pub const MAX_DEREGISTRATION_DELAY_SECS: u64 = 3600;
/// Shortest non-zero slow start, in seconds (ALB: 30..=900, or 0 for off).
pub const MIN_SLOW_START_SECS: u64 = 30;
/// Longest slow start, in seconds.
pub const MAX_SLOW_START_SECS: u64 = 900;
/// Longest stickiness duration, in seconds (ALB: 1 s ..= 7 days).
pub const MAX_STICKINESS_SECS: u64 = 604_800;
/// Shortest health check interval, in milliseconds. ALB's floor is 5 s; ours is lower so that
/// tests (and impatient operators) converge quickly. The control plane converts seconds.
pub const MIN_HEALTH_INTERVAL_MS: u64 = 50;
/// Longest health check interval, in milliseconds (ALB: 300 s).
pub const MAX_HEALTH_INTERVAL_MS: u64 = 300_000;
/// Healthy / unhealthy thresholds lie in `1..=MAX_HEALTH_THRESHOLD` (ALB: 2..=10).
pub const MAX_HEALTH_THRESHOLD: u32 = 10;
/// Outlier detection's consecutive-failure thresholds lie in `1..=MAX_OUTLIER_THRESHOLD`.
pub const MAX_OUTLIER_THRESHOLD: u32 = 1000;
/// Longest outlier ejection, in milliseconds (one hour).
pub const MAX_EJECTION_MS: u64 = 3_600_000;
/// Highest gRPC status code a [`ProtocolVersion::Grpc`] group's matcher may name (ELBv2:
/// `GrpcCode` values lie in 0..=99).
pub const MAX_GRPC_CODE: u16 = 99;

/// Most certificates one HTTPS listener serves, the default one included (ALB: 25 besides
/// the default).
pub const MAX_CERTIFICATES_PER_LISTENER: usize = 26;
/// Longest PEM certificate chain of one [`TlsCertificate`], in bytes (ACM's chain limit,
/// 2 MiB, plus its certificate limit, 32 KiB).
pub const MAX_CHAIN_PEM_BYTES: usize = 2 * 1024 * 1024 + 32 * 1024;
/// Longest PEM private key, in bytes (ACM: 5 KiB).
pub const MAX_KEY_PEM_BYTES: usize = 5 * 1024;

/// Everything one load balancer does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbConfig {
    /// The ports it listens on, each with its rules.
    pub listeners: Vec<ListenerConfig>,
    /// Target groups by name; actions refer to them by name.
    pub target_groups: BTreeMap<String, TargetGroupConfig>,
}

/// An HTTPS listener's certificates and protocol versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerTls {
    /// 1..=[`MAX_CERTIFICATES_PER_LISTENER`] certificates. The first is the default: a
    /// client whose SNI name no certificate covers (or that sends none) gets it; otherwise
    /// the first certificate covering the name wins.
    pub certificates: Vec<TlsCertificate>,
    /// The lowest TLS version accepted.
    #[serde(default)]
    pub min_version: TlsVersion,
}

/// A certificate with its chain and private key, in PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsCertificate {
    /// The certificate, then its intermediates (at most [`MAX_CHAIN_PEM_BYTES`]).
    pub chain_pem: String,
    /// The private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), at most [`MAX_KEY_PEM_BYTES`].
    pub key_pem: String,
}

impl std::fmt::Debug for TlsCertificate {
    /// Leaves the private key out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("chain_pem_bytes", &self.chain_pem.len())
            .finish_non_exhaustive()
    }
}

/// The lowest TLS version an HTTPS listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// HTTP/1.1 and h2c prior knowledge: rules, retries, access log (an ALB listener).
    #[default]
    Http,
    /// Plain TCP: each connection is spliced to one target of the default action's group
    /// (a network load balancer's `TCP` listener). No rules; the default action must forward.
    Tcp,
    /// TLS (rustls; ALPN `h2` and `http/1.1`), then what [`ListenerProtocol::Http`] does.
    /// Its certificates are the listener's [`ListenerConfig::tls`].
    Https,
}

/// One listening socket and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerConfig {
    /// Address and port to bind. Two listeners may not share one.
    pub bind: SocketAddr,
    /// HTTP (the default), HTTPS or TCP.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Certificates and TLS versions: set for an HTTPS listener, and only for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Rules, tried by ascending `priority`; the first whose conditions all hold wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// What to do when no rule matches.
    pub default_action: Action,
}

/// A listener rule: all `conditions` must hold (an empty list always holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleConfig {
    /// 1..=[`MAX_RULE_PRIORITY`]; lower is tried first.
    pub priority: u32,
    /// Conditions, ANDed. Within one condition the values are ORed (as in ALB).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What to do with a matching request.
    pub action: Action,
}

/// One rule condition. Patterns take `*` (any run of characters) and `?` (one character).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum Condition {
    /// The path (without the query), case-sensitive, e.g. `/api/*`.
    PathPattern {
        /// Patterns, ORed.
        values: Vec<String>,
    },
    /// The `Host` header (or the HTTP/2 `:authority`), without the port, case-insensitive.
    HostHeader {
        /// Patterns, ORed.
        values: Vec<String>,
    },
    /// Any value of the header `name` matches one of the patterns, case-insensitive.
    HttpHeader {
        /// Header name.
        name: String,
        /// Patterns, ORed.
        values: Vec<String>,
    },
    /// The request method, exactly (e.g. `GET`).
    HttpRequestMethod {
        /// Methods, ORed.
        values: Vec<String>,
    },
}

impl Condition {
    fn values(&self) -> &[String] {
        match self {
            Condition::PathPattern { values }
            | Condition::HostHeader { values }
            | Condition::HttpHeader { values, .. }
            | Condition::HttpRequestMethod { values } => values,
        }
    }
}

/// What a rule (or the default) does with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    /// Forward to one of these target groups, chosen at random by weight.
    Forward {
        /// The groups and their weights.
        target_groups: Vec<WeightedTargetGroup>,
    },
    /// Answer directly.
    FixedResponse {
        /// Status code, 200..=599.
        status: u16,
        /// `Content-Type`; `text/plain` when absent.
        #[serde(default)]
        content_type: Option<String>,
        /// Body, at most [`MAX_FIXED_RESPONSE_BODY`] bytes.
        #[serde(default)]
        body: String,
    },
}

impl Action {
    /// Forward everything to one target group.
    pub fn forward(group: impl Into<String>) -> Action {
        Action::Forward {
            target_groups: vec![WeightedTargetGroup {
                name: group.into(),
                weight: 1,
            }],
        }
    }

    /// A fixed response.
    pub fn fixed(status: u16, body: impl Into<String>) -> Action {
        Action::FixedResponse {
            status,
            content_type: None,
            body: body.into(),
        }
    }
}

/// A target group in a forward action, with its weight (0..=[`MAX_FORWARD_WEIGHT`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedTargetGroup {
    /// Target group name (a key of [`LbConfig::target_groups`]).
    pub name: String,
    /// Relative weight; 0 sends it nothing.
    pub weight: u32,
}

/// How a target group picks a target among its routable ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// In turn (ALB's default).
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight.
    LeastOutstandingRequests,
}

/// What a target group's targets speak (ELBv2's target group `ProtocolVersion`).
///
/// Only HTTP listeners look at it; a TCP listener splices bytes whatever the group's
/// version, so any version is valid behind one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolVersion {
    /// HTTP/1.1 keep-alive connections, pooled (ELBv2's `HTTP1`, the default).
    #[default]
    Http1,
    /// HTTP/2 cleartext with prior knowledge (h2c): one multiplexed connection per target
    /// (ELBv2's `HTTP2`). Clients may speak HTTP/1.1 or HTTP/2 to the listener.
    Http2,
    /// As [`ProtocolVersion::Http2`], and health checks are gRPC calls whose
    /// `grpc-status` the matcher holds gRPC codes for (ELBv2's `GRPC`).
    Grpc,
}

impl ProtocolVersion {
    /// Whether requests go to the targets over HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, ProtocolVersion::Http2 | ProtocolVersion::Grpc)
    }
}

/// A target group: where requests go, and how its targets are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetGroupConfig {
    /// The targets.
    pub targets: Vec<TargetConfig>,
    /// What the targets speak: HTTP/1.1 (the default), HTTP/2 (h2c), or gRPC over h2c.
    #[serde(default)]
    pub protocol_version: ProtocolVersion,
    /// Active health checks.
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    /// How long a deregistered target drains (0..=[`MAX_DEREGISTRATION_DELAY_SECS`]). The
    /// control plane uses it to compute [`TargetState::Draining::until_unix_ms`]; the data
    /// plane only reads `until_unix_ms`.
    #[serde(default = "default_deregistration_delay")]
    pub deregistration_delay_secs: u64,
    /// Seconds over which a newly healthy target's share ramps up linearly; 0 is off.
    #[serde(default)]
    pub slow_start_secs: u64,
    /// Sticky sessions; `None` is off.
    #[serde(default)]
    pub stickiness: Option<Stickiness>,
    /// Target selection.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Passive health: eject targets whose requests fail (see [`crate::outlier`]). `None`
    /// (the default, what every ELBv2 group gets) is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

/// Outlier detection settings (Envoy's names where it has them); see [`crate::outlier`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutlierDetection {
    /// Requests in a row that got no response (connection refused, reset or timed out)
    /// that eject a target, 1..=[`MAX_OUTLIER_THRESHOLD`].
    pub consecutive_connect_failures: u32,
    /// 5xx responses in a row (failures without a response count too) that eject a
    /// target, 1..=[`MAX_OUTLIER_THRESHOLD`].
    pub consecutive_5xx: u32,
    /// How long a first ejection lasts, in milliseconds; each ejection that follows
    /// soon after the last one lasts twice as long as it.
    pub base_ejection_ms: u64,
    /// The longest an ejection lasts, in milliseconds: `base_ejection_ms..=`[`MAX_EJECTION_MS`].
    pub max_ejection_ms: u64,
    /// The most targets of the group ejected at once, as a percentage (0..=100).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    /// A connection failure, or 5 5xx responses in a row, eject for 10 s (doubling up to
    /// 5 min); at most half the group is ejected.
    fn default() -> Self {
        OutlierDetection {
            consecutive_connect_failures: 1,
            consecutive_5xx: 5,
            base_ejection_ms: 10_000,
            max_ejection_ms: 300_000,
            max_ejection_percent: 50,
        }
    }
}

fn default_deregistration_delay() -> u64 {
    300
}

impl TargetGroupConfig {
    /// A group of active targets with the default health check and no stickiness.
    pub fn new(targets: impl IntoIterator<Item = SocketAddr>) -> TargetGroupConfig {
        TargetGroupConfig {
            targets: targets
                .into_iter()
                .map(|addr| TargetConfig {
                    addr,
                    state: TargetState::Active,
                })
                .collect(),
            protocol_version: ProtocolVersion::Http1,
            health_check: HealthCheckConfig::default(),
            deregistration_delay_secs: default_deregistration_delay(),
            slow_start_secs: 0,
            stickiness: None,
            algorithm: Algorithm::RoundRobin,
            outlier_detection: None,
        }
    }
}

/// One target: an address and whether it takes new requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetConfig {
    /// Where the target listens (plain HTTP/1.1, or h2c: see [`TargetGroupConfig::protocol_version`]).
    pub addr: SocketAddr,
    /// Registered, or draining.
    #[serde(default)]
    pub state: TargetState,
}

/// A target's registration state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TargetState {
    /// Registered: takes requests once healthy.
    #[default]
    Active,
    /// Deregistered: takes no new requests; requests in flight complete. Reported as
    /// `draining` until `until_unix_ms`, `unused` after.
    Draining {
        /// Milliseconds since the Unix epoch when draining ends.
        until_unix_ms: u64,
    },
}

/// Sticky sessions with a load-balancer-generated cookie (`AWSALB`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Stickiness {
    /// ALB's `lb_cookie`.
    LbCookie {
        /// Cookie lifetime, 1..=[`MAX_STICKINESS_SECS`].
        duration_secs: u64,
    },
}

/// Active HTTP health check of every target of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckConfig {
    /// Off: targets count as healthy as soon as registered.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `GET path` and the matcher (HTTP, the default), or a TCP connect (TCP: `path` and
    /// `matcher` are not used). An HTTP check goes over the group's protocol version: a
    /// [`ProtocolVersion::Grpc`] group's is a gRPC call (`POST path`, see
    /// [`crate::health`]).
    #[serde(default)]
    pub protocol: HealthCheckProtocol,
    /// Path to `GET` (or, in a gRPC group, to `POST`), starting with `/`.
    pub path: String,
    /// Time between checks of one target.
    pub interval_ms: u64,
    /// A check with no answer within this long fails; less than `interval_ms`.
    pub timeout_ms: u64,
    /// Consecutive passes that make a target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a target unhealthy.
    pub unhealthy_threshold: u32,
    /// What passes, ALB syntax (`200`, `200,202`, `200-299`): HTTP status codes in
    /// 200..=499, or, in a [`ProtocolVersion::Grpc`] group, gRPC status codes in
    /// 0..=[`MAX_GRPC_CODE`] (ELBv2's `Matcher.GrpcCode`, e.g. `0`, `0-99`, `0,12`).
    pub matcher: String,
}

/// How a health check probes a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckProtocol {
    /// An HTTP `GET` whose status the matcher accepts.
    #[default]
    Http,
    /// A TCP connection that opens within the timeout.
    Tcp,
}

fn yes() -> bool {
    true
}

impl HealthCheckConfig {
    /// The defaults of a [`ProtocolVersion::Grpc`] group: [`HealthCheckConfig::default`]
    /// with ELBv2's gRPC path (`/AWS.ALB/healthcheck`) and matcher (`12`, UNIMPLEMENTED:
    /// what a gRPC server answers for a method it does not have, so a running server
    /// passes).
    pub fn grpc_default() -> Self {
        HealthCheckConfig {
            path: "/AWS.ALB/healthcheck".into(),
            matcher: "12".into(),
            ..HealthCheckConfig::default()
        }
    }
}

impl Default for HealthCheckConfig {
    /// ALB's defaults for HTTP target groups, but with a 5 s interval and threshold 2.
    fn default() -> Self {
        HealthCheckConfig {
            enabled: true,
            protocol: HealthCheckProtocol::Http,
            path: "/".into(),
            interval_ms: 5_000,
            timeout_ms: 2_000,
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            matcher: "200".into(),
        }
    }
}

/// A config that [`LbConfig::validate`] refused: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid load balancer config at {at}: {message}")]
pub struct ConfigError {
    /// Where, e.g. `listeners[0].rules[2].conditions[0]`.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

fn err(at: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        at: at.into(),
        message: message.into(),
    }
}

/// Parses an ALB status matcher (`200`, `200,202`, `200-299`) into inclusive ranges.
pub fn parse_matcher(matcher: &str) -> Result<Vec<(u16, u16)>, String> {
    parse_ranges(matcher, 200..=499, "status code")
}

/// Parses an ELBv2 gRPC code matcher (`0`, `0,12`, `0-99`) into inclusive ranges of
/// codes in 0..=[`MAX_GRPC_CODE`].
pub fn parse_grpc_matcher(matcher: &str) -> Result<Vec<(u16, u16)>, String> {
    parse_ranges(matcher, 0..=MAX_GRPC_CODE, "gRPC code")
}

/// Parses `a`, `a,b`, `a-b` (and mixes) into inclusive ranges of numbers within `allowed`.
fn parse_ranges(
    matcher: &str,
    allowed: std::ops::RangeInclusive<u16>,
    what: &str,
) -> Result<Vec<(u16, u16)>, String> {
    let mut ranges = Vec::new();
    for part in matcher.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|c| allowed.contains(c))
                .ok_or_else(|| {
                    format!(
                        "{s:?} is not a {what} in {}..={}",
                        allowed.start(),
                        allowed.end()
                    )
                })
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("range {part:?} is empty"));
        }
        ranges.push((lo, hi));
    }
    Ok(ranges)
}

/// The sizes and count of an HTTPS listener's certificates (their contents are checked when
/// the listener's TLS configuration is built: [`crate::LbError::Tls`]).
fn validate_tls(tls: &ListenerTls, at: &str) -> Result<(), ConfigError> {
    if tls.certificates.is_empty() || tls.certificates.len() > MAX_CERTIFICATES_PER_LISTENER {
        return Err(err(
            at,
            format!("1..={MAX_CERTIFICATES_PER_LISTENER} certificates"),
        ));
    }
    for (i, c) in tls.certificates.iter().enumerate() {
        if c.chain_pem.len() > MAX_CHAIN_PEM_BYTES {
            return Err(err(
                format!("{at}.certificates[{i}]"),
                format!("chain over {MAX_CHAIN_PEM_BYTES} bytes"),
            ));
        }
        if c.key_pem.len() > MAX_KEY_PEM_BYTES {
            return Err(err(
                format!("{at}.certificates[{i}]"),
                format!("key over {MAX_KEY_PEM_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

fn validate_outlier_detection(o: &OutlierDetection, at: &str) -> Result<(), ConfigError> {
    for t in [o.consecutive_connect_failures, o.consecutive_5xx] {
        if !(1..=MAX_OUTLIER_THRESHOLD).contains(&t) {
            return Err(err(
                at,
                format!("thresholds must be in 1..={MAX_OUTLIER_THRESHOLD}"),
            ));
        }
    }
    if o.base_ejection_ms == 0 || o.base_ejection_ms > o.max_ejection_ms {
        return Err(err(at, "base_ejection_ms must be in 1..=max_ejection_ms"));
    }
    if o.max_ejection_ms > MAX_EJECTION_MS {
        return Err(err(at, format!("max_ejection_ms over {MAX_EJECTION_MS}")));
    }
    if o.max_ejection_percent > 100 {
        return Err(err(at, "max_ejection_percent over 100"));
    }
    Ok(())
}

impl LbConfig {
    /// Checks every limit and reference; the data plane only ever runs a valid config.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listeners.len() > MAX_LISTENERS {
            return Err(err("listeners", format!("more than {MAX_LISTENERS}")));
        }
        if self.target_groups.len() > MAX_TARGET_GROUPS {
            return Err(err(
                "target_groups",
                format!("more than {MAX_TARGET_GROUPS}"),
            ));
        }
        let mut binds = BTreeSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let at = format!("listeners[{i}]");
            if !binds.insert(l.bind) {
                return Err(err(&at, format!("bind {} used twice", l.bind)));
            }
            if l.rules.len() > MAX_RULES_PER_LISTENER {
                return Err(err(
                    format!("{at}.rules"),
                    format!("more than {MAX_RULES_PER_LISTENER}"),
                ));
            }
            let mut priorities = BTreeSet::new();
            for (j, r) in l.rules.iter().enumerate() {
                let at = format!("{at}.rules[{j}]");
                if !(1..=MAX_RULE_PRIORITY).contains(&r.priority) {
                    return Err(err(
                        &at,
                        format!("priority {} not in 1..={MAX_RULE_PRIORITY}", r.priority),
                    ));
                }
                if !priorities.insert(r.priority) {
                    return Err(err(&at, format!("priority {} used twice", r.priority)));
                }
                let count: usize = r.conditions.iter().map(|c| c.values().len()).sum();
                if count > MAX_CONDITION_VALUES_PER_RULE {
                    return Err(err(
                        &at,
                        format!("more than {MAX_CONDITION_VALUES_PER_RULE} condition values"),
                    ));
                }
                for (k, c) in r.conditions.iter().enumerate() {
                    let at = format!("{at}.conditions[{k}]");
                    if c.values().is_empty() {
                        return Err(err(&at, "no values"));
                    }
                    if let Some(v) = c.values().iter().find(|v| v.len() > MAX_PATTERN_LEN) {
                        return Err(err(
                            &at,
                            format!("{v:?} is longer than {MAX_PATTERN_LEN} bytes"),
                        ));
                    }
                    if let Condition::HttpHeader { name, .. } = c
                        && http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    {
                        return Err(err(&at, format!("{name:?} is not a header name")));
                    }
                }
                self.validate_action(&r.action, &format!("{at}.action"))?;
            }
            self.validate_action(&l.default_action, &format!("{at}.default_action"))?;
            match (l.protocol, &l.tls) {
                (ListenerProtocol::Https, None) => {
                    return Err(err(&at, "an HTTPS listener needs its tls settings"));
                }
                (ListenerProtocol::Https, Some(tls)) => validate_tls(tls, &format!("{at}.tls"))?,
                (_, Some(_)) => {
                    return Err(err(&at, "only an HTTPS listener has tls settings"));
                }
                (_, None) => {}
            }
            if l.protocol == ListenerProtocol::Tcp {
                if !l.rules.is_empty() {
                    return Err(err(&at, "a TCP listener has no rules"));
                }
                if !matches!(l.default_action, Action::Forward { .. }) {
                    return Err(err(
                        format!("{at}.default_action"),
                        "a TCP listener can only forward",
                    ));
                }
            }
        }
        for (name, g) in &self.target_groups {
            let at = format!("target_groups[{name:?}]");
            if name.is_empty() || name.len() > 32 {
                return Err(err(&at, "name must be 1..=32 bytes"));
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(&at, "name may hold only letters, digits, '-' and '_'"));
            }
            if g.targets.len() > MAX_TARGETS_PER_GROUP {
                return Err(err(
                    &at,
                    format!("more than {MAX_TARGETS_PER_GROUP} targets"),
                ));
            }
            let mut addrs = BTreeSet::new();
            for t in &g.targets {
                if !addrs.insert(t.addr) {
                    return Err(err(&at, format!("target {} listed twice", t.addr)));
                }
            }
            if g.deregistration_delay_secs > MAX_DEREGISTRATION_DELAY_SECS {
                return Err(err(
                    &at,
                    format!("deregistration_delay_secs over {MAX_DEREGISTRATION_DELAY_SECS}"),
                ));
            }
            if g.slow_start_secs != 0
                && !(MIN_SLOW_START_SECS..=MAX_SLOW_START_SECS).contains(&g.slow_start_secs)
            {
                return Err(err(
                    &at,
                    format!(
                        "slow_start_secs must be 0 or in {MIN_SLOW_START_SECS}..={MAX_SLOW_START_SECS}"
                    ),
                ));
            }
            if let Some(Stickiness::LbCookie { duration_secs }) = g.stickiness
                && !(1..=MAX_STICKINESS_SECS).contains(&duration_secs)
            {
                return Err(err(
                    &at,
                    format!("stickiness duration_secs not in 1..={MAX_STICKINESS_SECS}"),
                ));
            }
            if let Some(o) = &g.outlier_detection {
                validate_outlier_detection(o, &format!("{at}.outlier_detection"))?;
            }
            let h = &g.health_check;
            let at = format!("{at}.health_check");
            if !h.path.starts_with('/') || h.path.len() > 1024 {
                return Err(err(&at, "path must start with '/' (at most 1024 bytes)"));
            }
            if !(MIN_HEALTH_INTERVAL_MS..=MAX_HEALTH_INTERVAL_MS).contains(&h.interval_ms) {
                return Err(err(
                    &at,
                    format!(
                        "interval_ms not in {MIN_HEALTH_INTERVAL_MS}..={MAX_HEALTH_INTERVAL_MS}"
                    ),
                ));
            }
            if h.timeout_ms == 0 || h.timeout_ms >= h.interval_ms {
                return Err(err(&at, "timeout_ms must be in 1..interval_ms"));
            }
            for t in [h.healthy_threshold, h.unhealthy_threshold] {
                if !(1..=MAX_HEALTH_THRESHOLD).contains(&t) {
                    return Err(err(
                        &at,
                        format!("thresholds must be in 1..={MAX_HEALTH_THRESHOLD}"),
                    ));
                }
            }
            // The matcher is read by enabled HTTP checks only: a group whose checks are
            // off (or TCP) may keep the default one whatever its protocol version.
            if h.enabled && h.protocol == HealthCheckProtocol::Http {
                let matcher = match g.protocol_version {
                    ProtocolVersion::Grpc => parse_grpc_matcher(&h.matcher),
                    ProtocolVersion::Http1 | ProtocolVersion::Http2 => parse_matcher(&h.matcher),
                };
                matcher.map_err(|m| err(&at, format!("matcher: {m}")))?;
            }
        }
        Ok(())
    }

    fn validate_action(&self, action: &Action, at: &str) -> Result<(), ConfigError> {
        match action {
            Action::Forward { target_groups } => {
                if target_groups.is_empty() || target_groups.len() > MAX_FORWARD_TARGET_GROUPS {
                    return Err(err(
                        at,
                        format!("forward needs 1..={MAX_FORWARD_TARGET_GROUPS} target groups"),
                    ));
                }
                let mut names = BTreeSet::new();
                for g in target_groups {
                    if !self.target_groups.contains_key(&g.name) {
                        return Err(err(at, format!("unknown target group {:?}", g.name)));
                    }
                    if !names.insert(&g.name) {
                        return Err(err(at, format!("target group {:?} listed twice", g.name)));
                    }
                    if g.weight > MAX_FORWARD_WEIGHT {
                        return Err(err(
                            at,
                            format!("weight {} over {MAX_FORWARD_WEIGHT}", g.weight),
                        ));
                    }
                }
                if target_groups.iter().all(|g| g.weight == 0) {
                    return Err(err(at, "all weights are 0"));
                }
            }
            Action::FixedResponse { status, body, .. } => {
                if !(200..=599).contains(status) {
                    return Err(err(at, format!("status {status} not in 200..=599")));
                }
                if body.len() > MAX_FIXED_RESPONSE_BODY {
                    return Err(err(
                        at,
                        format!("body longer than {MAX_FIXED_RESPONSE_BODY} bytes"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LbConfig {
        let mut target_groups = BTreeMap::new();
        target_groups.insert(
            "web".to_string(),
            TargetGroupConfig::new(["127.0.0.1:9001".parse().unwrap()]),
        );
        LbConfig {
            listeners: vec![ListenerConfig {
                tls: None,
                bind: "127.0.0.1:8000".parse().unwrap(),
                protocol: ListenerProtocol::Http,
                rules: vec![RuleConfig {
                    priority: 1,
                    conditions: vec![Condition::PathPattern {
                        values: vec!["/api/*".into()],
                    }],
                    action: Action::forward("web"),
                }],
                default_action: Action::fixed(404, "no"),
            }],
            target_groups,
        }
    }

    #[test]
    fn sample_is_valid_and_round_trips_through_json() {
        let c = sample();
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<LbConfig>(&json).unwrap(), c);
    }

    #[test]
    fn refuses_unknown_group_and_duplicate_priority() {
        let mut c = sample();
        c.listeners[0].default_action = Action::forward("nope");
        let e = c.validate().unwrap_err();
        assert_eq!(e.at, "listeners[0].default_action");
        assert!(e.message.contains("unknown target group"), "{e}");

        let mut c = sample();
        let r = c.listeners[0].rules[0].clone();
        c.listeners[0].rules.push(r);
        assert!(c.validate().unwrap_err().message.contains("used twice"));
    }

    #[test]
    fn refuses_bad_health_check() {
        let mut c = sample();
        c.target_groups
            .get_mut("web")
            .unwrap()
            .health_check
            .timeout_ms = 10_000;
        assert!(c.validate().is_err());
        let mut c = sample();
        c.target_groups.get_mut("web").unwrap().health_check.matcher = "200-100".into();
        assert!(c.validate().unwrap_err().message.contains("matcher"));
    }

    #[test]
    fn outlier_detection_is_optional_and_checked() {
        // A config written before the field existed still reads, without it.
        let mut json: serde_json::Value = serde_json::to_value(sample()).unwrap();
        assert!(
            json["target_groups"]["web"]
                .get("outlier_detection")
                .is_none()
        );
        json["target_groups"]["web"]
            .as_object_mut()
            .unwrap()
            .remove("outlier_detection");
        let read: LbConfig = serde_json::from_value(json).unwrap();
        assert_eq!(read.target_groups["web"].outlier_detection, None);

        let mut c = sample();
        let web = c.target_groups.get_mut("web").unwrap();
        web.outlier_detection = Some(OutlierDetection::default());
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<LbConfig>(&json).unwrap(), c);
        let partial: OutlierDetection = serde_json::from_str(r#"{"consecutive_5xx": 2}"#).unwrap();
        assert_eq!(partial.consecutive_5xx, 2);
        assert_eq!(partial.base_ejection_ms, 10_000);

        for bad in [
            OutlierDetection {
                consecutive_5xx: 0,
                ..Default::default()
            },
            OutlierDetection {
                base_ejection_ms: 400_000,
                ..Default::default()
            },
            OutlierDetection {
                max_ejection_ms: MAX_EJECTION_MS + 1,
                ..Default::default()
            },
            OutlierDetection {
                max_ejection_percent: 101,
                ..Default::default()
            },
        ] {
            let mut c = sample();
            c.target_groups.get_mut("web").unwrap().outlier_detection = Some(bad);
            let e = c.validate().unwrap_err();
            assert_eq!(e.at, "target_groups[\"web\"].outlier_detection", "{e}");
        }
    }

    #[test]
    fn protocol_version_defaults_to_http1_and_reads_lowercase() {
        let mut json: serde_json::Value = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["target_groups"]["web"]["protocol_version"], "http1");
        json["target_groups"]["web"]
            .as_object_mut()
            .unwrap()
            .remove("protocol_version");
        let read: LbConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            read.target_groups["web"].protocol_version,
            ProtocolVersion::Http1
        );
        for (text, version) in [
            ("http2", ProtocolVersion::Http2),
            ("grpc", ProtocolVersion::Grpc),
        ] {
            json["target_groups"]["web"]["protocol_version"] = text.into();
            let read: LbConfig = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(read.target_groups["web"].protocol_version, version);
            assert!(version.is_http2());
        }
        assert!(!ProtocolVersion::Http1.is_http2());
    }

    #[test]
    fn a_grpc_group_takes_grpc_codes_as_its_matcher() {
        let mut c = sample();
        let web = c.target_groups.get_mut("web").unwrap();
        web.protocol_version = ProtocolVersion::Grpc;
        // HTTP's default matcher is no gRPC code.
        let e = c.validate().unwrap_err();
        assert!(e.message.contains("gRPC code"), "{e}");
        let web = c.target_groups.get_mut("web").unwrap();
        web.health_check = HealthCheckConfig::grpc_default();
        c.validate().unwrap();
        for ok in ["0", "0-99", "0,12", "0-2, 12"] {
            let web = c.target_groups.get_mut("web").unwrap();
            web.health_check.matcher = ok.into();
            c.validate().unwrap();
        }
        for bad in ["100", "-1", "12-0", "ok", ""] {
            let web = c.target_groups.get_mut("web").unwrap();
            web.health_check.matcher = bad.into();
            assert!(c.validate().is_err(), "{bad:?}");
        }
        // With its checks off, a group keeps whatever matcher.
        let web = c.target_groups.get_mut("web").unwrap();
        web.health_check.enabled = false;
        c.validate().unwrap();
        // And an HTTP/2 group takes status codes.
        let web = c.target_groups.get_mut("web").unwrap();
        web.protocol_version = ProtocolVersion::Http2;
        web.health_check = HealthCheckConfig::default();
        c.validate().unwrap();
    }

    #[test]
    fn matcher_parses_alb_syntax() {
        assert_eq!(parse_matcher("200").unwrap(), vec![(200, 200)]);
        assert_eq!(
            parse_matcher("200,202-204").unwrap(),
            vec![(200, 200), (202, 204)]
        );
        assert!(parse_matcher("abc").is_err());
        assert!(parse_matcher("600").is_err());
        assert!(parse_matcher("12").is_err());
        assert_eq!(parse_grpc_matcher("0,12").unwrap(), vec![(0, 0), (12, 12)]);
        assert_eq!(parse_grpc_matcher("0-99").unwrap(), vec![(0, 99)]);
        assert!(parse_grpc_matcher("200").is_err());
    }
}
