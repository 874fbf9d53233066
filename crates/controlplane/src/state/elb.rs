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
    /// HTTP codes that count as success (`200`, `200-299`, `200,202`).
    pub matcher: Option<String>,
}

/// A registered target: an instance id or an IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    /// Instance id or IP address.
    pub id: String,
    /// The port traffic goes to.
    pub port: u16,
    /// The availability zone, when given.
    pub availability_zone: Option<String>,
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
    /// `HTTP` (application) or `TCP` (network).
    pub protocol: String,
    /// What requests no rule matches get.
    pub default_actions: Vec<Action>,
    /// The id of its default rule (what DescribeRules shows for the default actions).
    pub default_rule_id: String,
    /// Its tags.
    pub tags: Vec<ElbTag>,
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
