//! The ELBv2 records: load balancers, target groups (with their registered targets),
//! listeners and listener rules, their ARNs, and [`ElbState`], the maps that hold them.
//!
//! Unlike the ECS records these are flotilla's own shapes, not generated wire shapes:
//! the ELBv2 API speaks the query protocol with XML answers, and `ecs-api`'s `elbv2`
//! module writes each record's XML itself.
//!
//! Every map is keyed by ([`Scope`], name or id), so one account and region's resources
//! are a contiguous range and regions never see each other. Store keys are
//! `elb-lb|<account>|<region>|<name>`, `elb-tg|…|<name>`, `elb-listener|…|<id>` and
//! `elb-rule|…|<id>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::Scope;

/// Key of an ELBv2 record: its scope and its name (load balancers, target groups) or
/// id (listeners, rules).
pub type ElbKey = (Scope, String);

/// A tag on an ELBv2 resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElbTag {
    /// The key.
    pub key: String,
    /// The value (ELBv2 allows none).
    pub value: Option<String>,
}

/// A load balancer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Its name (unique in the scope).
    pub name: String,
    /// 16 hex digits, the last part of its ARN.
    pub id: String,
    /// `application` or `network`.
    pub lb_type: String,
    /// `internet-facing` or `internal`.
    pub scheme: String,
    /// `ipv4` or `dualstack`.
    pub ip_address_type: String,
    /// The VPC, when the caller named subnets (flotilla has no VPCs: shown as given).
    pub vpc_id: Option<String>,
    /// Subnet ids as given.
    pub subnets: Vec<String>,
    /// Security group ids as given.
    pub security_groups: Vec<String>,
    /// Epoch seconds.
    pub created_time: f64,
    /// Its tags.
    pub tags: Vec<ElbTag>,
}

/// The ARN prefix of every ELBv2 resource in `scope`.
fn arn_prefix(scope: &Scope) -> String {
    format!(
        "arn:aws:elasticloadbalancing:{}:{}:",
        scope.region, scope.account
    )
}

/// `app` or `net`, as ARNs spell a load balancer type.
pub fn short_type(lb_type: &str) -> &'static str {
    if lb_type == "network" { "net" } else { "app" }
}

impl LoadBalancerRecord {
    /// `arn:aws:elasticloadbalancing:<region>:<account>:loadbalancer/app/<name>/<id>`.
    pub fn arn(&self) -> String {
        format!(
            "{}loadbalancer/{}/{}/{}",
            arn_prefix(&self.scope),
            short_type(&self.lb_type),
            self.name,
            self.id
        )
    }

    /// `<name>-<id>.<region>.elb.flotilla.local`: the name the load balancer will be
    /// reached by. It resolves nowhere yet (the DNS data plane lands separately).
    pub fn dns_name(&self) -> String {
        format!(
            "{}-{}.{}.elb.flotilla.local",
            self.name, self.id, self.scope.region
        )
    }

    /// The record's key.
    pub fn key(&self) -> ElbKey {
        (self.scope.clone(), self.name.clone())
    }
}

/// How the data plane checks a target group's targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Whether checks run.
    pub enabled: bool,
    /// `HTTP` or `TCP`.
    pub protocol: String,
    /// A port number, or `traffic-port` (the target's own port).
    pub port: String,
    /// The path of HTTP checks.
    pub path: Option<String>,
    /// Seconds between checks.
    pub interval_seconds: u32,
    /// Seconds a check may take.
    pub timeout_seconds: u32,
    /// Consecutive successes that make a target healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a target unhealthy.
    pub unhealthy_threshold: u32,
    /// Codes that count as success (`200`, `200-299`, `200,202`): HTTP codes
    /// (`Matcher.HttpCode`), or gRPC codes (`Matcher.GrpcCode`, e.g. `12`, `0-99`) when
    /// the group's protocol version is `GRPC`.
    pub matcher: Option<String>,
}

/// A registered target: an instance id or an IP address, and a port.
///
/// Besides what RegisterTargets gave, a target carries its life in the group: which ECS
/// task registered it (ECS services register and deregister their tasks themselves),
/// when its draining ends once deregistered, and the health the data plane last
/// observed. The three are `serde(default)` so records written before them load.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    /// Instance id or IP address.
    pub id: String,
    /// The port traffic goes to.
    pub port: u16,
    /// The availability zone, when given.
    pub availability_zone: Option<String>,
    /// The ARN of the ECS task this target is, when an ECS service registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    /// Set once deregistered: epoch milliseconds when draining ends (the group's
    /// `deregistration_delay.timeout_seconds` after deregistration). A draining target
    /// takes no new requests; past this time it counts as gone (readers skip it, the
    /// next write of the group drops it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_until_ms: Option<u64>,
    /// What the data plane's health checks last observed; `None` until it reports
    /// (`initial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ObservedHealth>,
}

impl Target {
    /// A freshly registered target: no task, not draining, not checked yet.
    pub fn new(id: impl Into<String>, port: u16, availability_zone: Option<String>) -> Target {
        Target {
            id: id.into(),
            port,
            availability_zone,
            registered_by: None,
            draining_until_ms: None,
            health: None,
        }
    }

    /// Whether this is the target `id:port`.
    pub fn is(&self, id: &str, port: u16) -> bool {
        self.id == id && self.port == port
    }

    /// Deregistered, still draining at `now_ms`.
    pub fn is_draining(&self, now_ms: u64) -> bool {
        self.draining_until_ms.is_some_and(|until| now_ms < until)
    }

    /// Deregistered and done draining at `now_ms`: as good as gone.
    pub fn is_drained(&self, now_ms: u64) -> bool {
        self.draining_until_ms.is_some_and(|until| now_ms >= until)
    }

    /// Registered and not deregistered: takes requests once healthy.
    pub fn is_active(&self) -> bool {
        self.draining_until_ms.is_none()
    }

    /// Whether the data plane last saw it healthy.
    pub fn is_healthy(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.healthy)
    }

    /// Whether the data plane last saw it unhealthy.
    pub fn is_unhealthy(&self) -> bool {
        self.health.as_ref().is_some_and(|h| !h.healthy)
    }
}

/// A target's health as the data plane (crate `lb`) last observed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObservedHealth {
    /// Healthy (passed `healthy_threshold` checks in a row) or unhealthy (failed
    /// `unhealthy_threshold` in a row).
    pub healthy: bool,
    /// ELBv2's reason code when unhealthy (`Target.ResponseCodeMismatch`,
    /// `Target.Timeout`, `Target.FailedHealthChecks`).
    pub reason: Option<String>,
    /// A one-line description of the last failure.
    pub description: Option<String>,
    /// Epoch milliseconds of the report.
    pub since_ms: u64,
}

/// A target group and the targets registered with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Its name (unique in the scope).
    pub name: String,
    /// 16 hex digits, the last part of its ARN.
    pub id: String,
    /// `HTTP` or `TCP`.
    pub protocol: String,
    /// The default port of its targets.
    pub port: u16,
    /// The VPC as given.
    pub vpc_id: Option<String>,
    /// `instance` or `ip`.
    pub target_type: String,
    /// `HTTP1` for HTTP groups.
    pub protocol_version: Option<String>,
    /// `ipv4`.
    pub ip_address_type: String,
    /// Health check settings.
    pub health_check: HealthCheck,
    /// Attributes (`deregistration_delay.timeout_seconds`, `stickiness.*`, …), every
    /// one present with its default.
    pub attributes: BTreeMap<String, String>,
    /// Registered targets, in order.
    pub targets: Vec<Target>,
    /// Its tags.
    pub tags: Vec<ElbTag>,
}

impl TargetGroupRecord {
    /// `deregistration_delay.timeout_seconds`, in milliseconds (AWS's 300 s when unset
    /// or unreadable).
    pub fn deregistration_delay_ms(&self) -> u64 {
        self.attributes
            .get("deregistration_delay.timeout_seconds")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(300)
            .saturating_mul(1000)
    }

    /// Drops the targets whose draining ended by `now_ms`; every write of a group calls
    /// it, so drained targets never pile up.
    pub fn prune_drained(&mut self, now_ms: u64) {
        self.targets.retain(|t| !t.is_drained(now_ms));
    }

    /// The targets that still count at `now_ms` (active or draining).
    pub fn live_targets(&self, now_ms: u64) -> impl Iterator<Item = &Target> {
        self.targets.iter().filter(move |t| !t.is_drained(now_ms))
    }

    /// `arn:aws:elasticloadbalancing:<region>:<account>:targetgroup/<name>/<id>`.
    pub fn arn(&self) -> String {
        format!(
            "{}targetgroup/{}/{}",
            arn_prefix(&self.scope),
            self.name,
            self.id
        )
    }

    /// The record's key.
    pub fn key(&self) -> ElbKey {
        (self.scope.clone(), self.name.clone())
    }
}

/// A target group an action forwards to, with its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedTargetGroup {
    /// The target group's ARN.
    pub arn: String,
    /// 0–999; `None` when the caller gave none (treated as 1).
    pub weight: Option<u32>,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionKind {
    /// Send the request to one of the target groups, by weight.
    Forward {
        /// The groups (at least one).
        target_groups: Vec<WeightedTargetGroup>,
        /// Whether the group choice sticks to a client, and for how many seconds.
        stickiness: Option<(bool, Option<u32>)>,
        /// Whether the caller named a single group with `TargetGroupArn` (echoed so).
        single: bool,
    },
    /// Answer the request directly.
    FixedResponse {
        /// `2XX`, `4XX` or `5XX`.
        status_code: String,
        /// The content type, when given.
        content_type: Option<String>,
        /// The body, when given.
        message_body: Option<String>,
    },
}

/// One action of a listener's default actions or of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The order among the actions, when given.
    pub order: Option<u32>,
    /// What it does.
    pub kind: ActionKind,
}

impl Action {
    /// The target group ARNs this action forwards to.
    pub fn target_group_arns(&self) -> impl Iterator<Item = &str> {
        let groups: &[WeightedTargetGroup] = match &self.kind {
            ActionKind::Forward { target_groups, .. } => target_groups,
            ActionKind::FixedResponse { .. } => &[],
        };
        groups.iter().map(|g| g.arn.as_str())
    }
}

/// A listener rule's condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// The request path matches one of the patterns (`*` and `?` wildcards).
    PathPattern(Vec<String>),
    /// The Host header matches one of the patterns (case-insensitive).
    HostHeader(Vec<String>),
    /// Header `name` matches one of the values.
    HttpHeader {
        /// The header's name.
        name: String,
        /// The patterns.
        values: Vec<String>,
    },
}

/// A listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Its id (16 hex digits).
    pub id: String,
    /// The load balancer's name.
    pub lb_name: String,
    /// The load balancer's id.
    pub lb_id: String,
    /// The load balancer's type (`application` or `network`).
    pub lb_type: String,
    /// The port it listens on (unique per load balancer).
    pub port: u16,
    /// `HTTP` or `HTTPS` (application) or `TCP` (network).
    pub protocol: String,
    /// What requests no rule matches get.
    pub default_actions: Vec<Action>,
    /// The id of its default rule (what DescribeRules shows for the default actions).
    pub default_rule_id: String,
    /// Its tags.
    pub tags: Vec<ElbTag>,
    /// An HTTPS listener's ACM certificate ARNs: the default one first, then those
    /// AddListenerCertificates added (served by SNI). Empty for other protocols.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    /// An HTTPS listener's security policy (an `ELBSecurityPolicy-*` name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_policy: Option<String>,
}

impl ListenerRecord {
    /// `…:listener/app/<lb-name>/<lb-id>/<id>`.
    pub fn arn(&self) -> String {
        format!(
            "{}listener/{}/{}/{}/{}",
            arn_prefix(&self.scope),
            short_type(&self.lb_type),
            self.lb_name,
            self.lb_id,
            self.id
        )
    }

    /// The load balancer's ARN.
    pub fn lb_arn(&self) -> String {
        format!(
            "{}loadbalancer/{}/{}/{}",
            arn_prefix(&self.scope),
            short_type(&self.lb_type),
            self.lb_name,
            self.lb_id
        )
    }

    /// `…:listener-rule/app/<lb-name>/<lb-id>/<listener-id>/<rule-id>`.
    pub fn rule_arn(&self, rule_id: &str) -> String {
        format!(
            "{}listener-rule/{}/{}/{}/{}/{rule_id}",
            arn_prefix(&self.scope),
            short_type(&self.lb_type),
            self.lb_name,
            self.lb_id,
            self.id
        )
    }

    /// The record's key.
    pub fn key(&self) -> ElbKey {
        (self.scope.clone(), self.id.clone())
    }
}

/// A listener rule other than the default one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Its id (16 hex digits).
    pub id: String,
    /// The listener's id.
    pub listener_id: String,
    /// 1–50000, unique per listener.
    pub priority: u32,
    /// All must match.
    pub conditions: Vec<Condition>,
    /// What a matching request gets.
    pub actions: Vec<Action>,
    /// Its tags.
    pub tags: Vec<ElbTag>,
}

impl RuleRecord {
    /// The record's key.
    pub fn key(&self) -> ElbKey {
        (self.scope.clone(), self.id.clone())
    }
}

/// Every ELBv2 record of the state.
#[derive(Debug, Clone, Default)]
pub struct ElbState {
    /// Load balancers by name.
    pub load_balancers: BTreeMap<ElbKey, LoadBalancerRecord>,
    /// Target groups by name.
    pub target_groups: BTreeMap<ElbKey, TargetGroupRecord>,
    /// Listeners by id.
    pub listeners: BTreeMap<ElbKey, ListenerRecord>,
    /// Rules by id.
    pub rules: BTreeMap<ElbKey, RuleRecord>,
}

/// Iterates the values of one scope's entries of an ELBv2 map.
pub fn in_scope<'a, V>(
    map: &'a BTreeMap<ElbKey, V>,
    scope: &Scope,
) -> impl Iterator<Item = &'a V> + 'a {
    let scope = scope.clone();
    map.range((scope.clone(), String::new())..)
        .take_while(move |((s, _), _)| *s == scope)
        .map(|(_, v)| v)
}
