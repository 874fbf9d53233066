//! The ELBv2 (Elastic Load Balancing v2) operations, as pure functions of the state like
//! every ECS operation: reads are `fn(&State, &Scope, Request) -> Result<Response,
//! ElbError>`, writes `fn(&State, &mut Ctx, Request) -> ElbWritten<Response>`.
//!
//! ## Background
//! The ELBv2 API (`elasticloadbalancing`, version 2015-12-01) manages load balancers,
//! their listeners and rules, and target groups. `ecs-api`'s `elbv2` module speaks its
//! query protocol and XML; this module decides. The data plane (crate `lb`, run by
//! `flotilla server --lb-listen`) is configured from these records: listeners, rules
//! and target groups with their targets, and reports target health back.
//!
//! ## Design
//! - Errors are [`ElbError`], one variant per ELBv2 error code, apart from ECS's
//!   `EcsError`: the codes differ (`LoadBalancerNotFound`, `ValidationError`, …).
//! - Records: [`crate::state::elb`]. Targets live on their target group's record, so
//!   RegisterTargets is one record write.
//! - A listener's default actions are stored on the listener; its *default rule*
//!   (what DescribeRules shows with priority `default`) has an id of its own, kept on
//!   the listener. It cannot be deleted (`OperationNotPermitted`); ModifyRule on it
//!   changes the listener's default actions.
//! - Target health: the control plane has no health checker. A target is `unused`
//!   while no listener or rule forwards to its group, else `initial`
//!   (`Elb.RegistrationInProgress`) until the data plane (`flotilla server
//!   --lb-listen`, crate `lb`) reports what it observes through [`health::report_health`]
//!   (`healthy`, or `unhealthy` with a reason). DeregisterTargets does not remove a
//!   target at once: it drains (`draining`) for the group's deregistration delay, then
//!   counts as gone (the next write of the group drops it).
//!
//! ## Limits (AWS's default quotas, per account and region)
//! | what | limit |
//! | --- | --- |
//! | load balancers | [`MAX_LOAD_BALANCERS`] (50) |
//! | target groups | [`MAX_TARGET_GROUPS`] (3000) |
//! | listeners per load balancer | [`MAX_LISTENERS_PER_LB`] (50) |
//! | rules per load balancer (default rules aside) | [`MAX_RULES_PER_LB`] (100) |
//! | targets per target group | [`MAX_TARGETS_PER_GROUP`] (1000) |
//! | tags per resource | [`MAX_TAGS`] (50) |
//! | conditions values per rule | [`MAX_CONDITION_VALUES`] (5) |
//! | target groups per forward action | [`MAX_TARGET_GROUPS_PER_ACTION`] (5) |
//! | names or ARNs per Describe call | [`MAX_DESCRIBE_NAMES`] (20) |
//! | page size | 1–[`MAX_PAGE_SIZE`] (400) |
//! | certificates per HTTPS listener, the default included | [`certificates::MAX_CERTIFICATES_PER_LISTENER`] (26) |
//!
//! ## HTTPS listeners
//! Application load balancers take `HTTPS` listeners with one default ACM certificate
//! (`ops::acm`) and more for SNI (AddListenerCertificates); [`certificates`] has the
//! security policies and how each maps onto the data plane's TLS versions. Target groups
//! stay HTTP: TLS ends at the load balancer.
//!
//! ## Current limitations
//! HTTPS target groups, mutual TLS, redirect and authenticate actions, gateway
//! load balancers, `lambda`/`alb` targets, query-string/method/source-IP conditions and
//! SetRulePriorities are refused or not served. Markers (page tokens) are the next
//! item's name or id, not signed: they only ever range over the caller's own scope.

pub mod certificates;
pub mod health;
pub mod listeners;
pub mod load_balancers;
pub mod tags;
pub mod target_groups;

use crate::EcsError;
use crate::state::elb::{
    ElbTag, ListenerRecord, LoadBalancerRecord, RuleRecord, TargetGroupRecord,
};
use crate::state::{Scope, State};

/// Most load balancers per account and region (AWS: 50 application, 50 network).
pub const MAX_LOAD_BALANCERS: usize = 50;
/// Most target groups per account and region (AWS: 3000).
pub const MAX_TARGET_GROUPS: usize = 3000;
/// Most listeners per load balancer (AWS: 50).
pub const MAX_LISTENERS_PER_LB: usize = 50;
/// Most rules per load balancer, default rules aside (AWS: 100).
pub const MAX_RULES_PER_LB: usize = 100;
/// Most targets per target group (AWS: 1000).
pub const MAX_TARGETS_PER_GROUP: usize = 1000;
/// Most tags per resource (AWS: 50).
pub const MAX_TAGS: usize = 50;
/// Most condition values per rule (AWS: 5).
pub const MAX_CONDITION_VALUES: usize = 5;
/// Most target groups one forward action names (AWS: 5).
pub const MAX_TARGET_GROUPS_PER_ACTION: usize = 5;
/// Most names or ARNs one Describe call names (AWS: 20).
pub const MAX_DESCRIBE_NAMES: usize = 20;
/// Largest PageSize (AWS: 400).
pub const MAX_PAGE_SIZE: usize = 400;

/// An ELBv2 operation failed: one variant per ELBv2 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElbError {
    /// Input failed validation; the message names the member.
    #[error("{0}")]
    Validation(String),
    /// A load balancer of that name exists.
    #[error("A load balancer with the same name '{0}' exists, but with different settings")]
    DuplicateLoadBalancerName(String),
    /// A target group of that name exists.
    #[error("A target group with the same name '{0}' exists, but with different settings")]
    DuplicateTargetGroupName(String),
    /// The load balancer already has a listener on that port.
    #[error("A listener already exists on this port for this load balancer")]
    DuplicateListener,
    /// A tag key is given twice.
    #[error("{0}")]
    DuplicateTagKeys(String),
    /// A named load balancer does not exist.
    #[error("One or more load balancers not found")]
    LoadBalancerNotFound,
    /// A named target group does not exist.
    #[error("One or more target groups not found")]
    TargetGroupNotFound,
    /// A named listener does not exist.
    #[error("One or more listeners not found")]
    ListenerNotFound,
    /// A named rule does not exist.
    #[error("One or more rules not found")]
    RuleNotFound,
    /// A tagged resource does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// Another rule of the listener has that priority.
    #[error("The specified priority is in use: {0}")]
    PriorityInUse(u32),
    /// The resource is used by another (a target group by a listener).
    #[error("{0}")]
    ResourceInUse(String),
    /// The operation is not allowed on this resource (deleting a default rule).
    #[error("{0}")]
    OperationNotPermitted(String),
    /// The protocol is not one flotilla serves.
    #[error("{0}")]
    UnsupportedProtocol(String),
    /// The request is well-formed but asks for a configuration that cannot be.
    #[error("{0}")]
    InvalidConfigurationRequest(String),
    /// A target is not valid for its group.
    #[error("{0}")]
    InvalidTarget(String),
    /// An action is not valid (unsupported type, missing config).
    #[error("{0}")]
    InvalidLoadBalancerAction(String),
    /// Over [`MAX_LOAD_BALANCERS`].
    #[error("The maximum number of load balancers ({MAX_LOAD_BALANCERS}) has been reached")]
    TooManyLoadBalancers,
    /// Over [`MAX_TARGET_GROUPS`].
    #[error("The maximum number of target groups ({MAX_TARGET_GROUPS}) has been reached")]
    TooManyTargetGroups,
    /// Over [`MAX_LISTENERS_PER_LB`].
    #[error(
        "The maximum number of listeners per load balancer ({MAX_LISTENERS_PER_LB}) has been reached"
    )]
    TooManyListeners,
    /// Over [`MAX_RULES_PER_LB`].
    #[error("The maximum number of rules per load balancer ({MAX_RULES_PER_LB}) has been reached")]
    TooManyRules,
    /// Over [`MAX_TARGETS_PER_GROUP`].
    #[error(
        "The maximum number of targets per target group ({MAX_TARGETS_PER_GROUP}) has been reached"
    )]
    TooManyTargets,
    /// Over [`MAX_TAGS`].
    #[error("The maximum number of tags per resource ({MAX_TAGS}) has been reached")]
    TooManyTags,
    /// A named ACM certificate does not exist (in the caller's account and region).
    #[error("Certificate '{0}' not found")]
    CertificateNotFound(String),
    /// The named security policy is not one flotilla knows.
    #[error("SSL policy '{0}' not found")]
    SslPolicyNotFound(String),
    /// Over [`certificates::MAX_CERTIFICATES_PER_LISTENER`].
    #[error(
        "The maximum number of certificates per listener ({}) has been reached",
        certificates::MAX_CERTIFICATES_PER_LISTENER
    )]
    TooManyCertificates,
    /// The server failed (the store could not commit).
    #[error("{0}")]
    Internal(String),
}

impl ElbError {
    /// The wire error code. One exhaustive match, no fallback.
    pub fn code(&self) -> &'static str {
        match self {
            ElbError::Validation(_) => "ValidationError",
            ElbError::DuplicateLoadBalancerName(_) => "DuplicateLoadBalancerName",
            ElbError::DuplicateTargetGroupName(_) => "DuplicateTargetGroupName",
            ElbError::DuplicateListener => "DuplicateListener",
            ElbError::DuplicateTagKeys(_) => "DuplicateTagKeys",
            ElbError::LoadBalancerNotFound => "LoadBalancerNotFound",
            ElbError::TargetGroupNotFound => "TargetGroupNotFound",
            ElbError::ListenerNotFound => "ListenerNotFound",
            ElbError::RuleNotFound => "RuleNotFound",
            ElbError::ResourceNotFound(_) => "ResourceNotFound",
            ElbError::PriorityInUse(_) => "PriorityInUse",
            ElbError::ResourceInUse(_) => "ResourceInUse",
            ElbError::OperationNotPermitted(_) => "OperationNotPermitted",
            ElbError::UnsupportedProtocol(_) => "UnsupportedProtocol",
            ElbError::InvalidConfigurationRequest(_) => "InvalidConfigurationRequest",
            ElbError::InvalidTarget(_) => "InvalidTarget",
            ElbError::InvalidLoadBalancerAction(_) => "InvalidLoadBalancerAction",
            ElbError::TooManyLoadBalancers => "TooManyLoadBalancers",
            ElbError::TooManyTargetGroups => "TooManyTargetGroups",
            ElbError::TooManyListeners => "TooManyListeners",
            ElbError::TooManyRules => "TooManyRules",
            ElbError::TooManyTargets => "TooManyTargets",
            ElbError::TooManyTags => "TooManyTags",
            ElbError::CertificateNotFound(_) => "CertificateNotFound",
            ElbError::SslPolicyNotFound(_) => "SSLPolicyNotFound",
            ElbError::TooManyCertificates => "TooManyCertificates",
            ElbError::Internal(_) => "InternalFailure",
        }
    }

    /// Whether the server is at fault (HTTP 500, `<Type>Receiver</Type>`).
    pub fn is_server_fault(&self) -> bool {
        matches!(self, ElbError::Internal(_))
    }
}

impl From<EcsError> for ElbError {
    /// The engine's own failures (the store could not commit, the writer stopped).
    fn from(e: EcsError) -> ElbError {
        if e.is_server_fault() {
            ElbError::Internal(e.to_string())
        } else {
            ElbError::Validation(e.to_string())
        }
    }
}

/// What an ELBv2 write returns: its answer and the changes it decided.
pub type ElbWritten<T> = crate::engine::Written<T, ElbError>;

/// Shorthand for an [`ElbError::Validation`].
pub fn validation(msg: impl Into<String>) -> ElbError {
    ElbError::Validation(msg.into())
}

/// A parsed ELBv2 ARN of this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElbArn {
    /// Region.
    pub region: String,
    /// Account.
    pub account: String,
    /// What it names.
    pub resource: ElbResource,
}

/// The resource an [`ElbArn`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElbResource {
    /// `loadbalancer/<app|net>/<name>/<id>`.
    LoadBalancer {
        /// Name.
        name: String,
        /// Id.
        id: String,
    },
    /// `targetgroup/<name>/<id>`.
    TargetGroup {
        /// Name.
        name: String,
        /// Id.
        id: String,
    },
    /// `listener/<app|net>/<lb>/<lb-id>/<id>`.
    Listener {
        /// Listener id.
        id: String,
    },
    /// `listener-rule/<app|net>/<lb>/<lb-id>/<listener-id>/<id>`.
    Rule {
        /// Listener id.
        listener_id: String,
        /// Rule id.
        id: String,
    },
}

impl ElbArn {
    /// Parses `arn:aws:elasticloadbalancing:<region>:<account>:<resource>`.
    pub fn parse(arn: &str) -> Option<ElbArn> {
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(_), Some("elasticloadbalancing"), Some(region), Some(account)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let rest = parts.next()?;
        let p: Vec<&str> = rest.split('/').collect();
        let s = |i: usize| p[i].to_owned();
        let resource = match (p.first().copied()?, p.len()) {
            ("loadbalancer", 4) => ElbResource::LoadBalancer {
                name: s(2),
                id: s(3),
            },
            ("targetgroup", 3) => ElbResource::TargetGroup {
                name: s(1),
                id: s(2),
            },
            ("listener", 5) => ElbResource::Listener { id: s(4) },
            ("listener-rule", 6) => ElbResource::Rule {
                listener_id: s(4),
                id: s(5),
            },
            _ => return None,
        };
        Some(ElbArn {
            region: region.to_owned(),
            account: account.to_owned(),
            resource,
        })
    }

    /// Whether it is in `scope`.
    pub fn in_scope(&self, scope: &Scope) -> bool {
        self.region == scope.region && self.account == scope.account
    }
}

/// Validates a load balancer or target group name as AWS does: 1–32 characters,
/// letters, digits and hyphens, neither starting nor ending with a hyphen.
pub fn validate_name(member: &str, name: &str) -> Result<(), ElbError> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(validation(format!(
            "{member} '{}' is invalid: it must be 1-32 letters, digits and hyphens, and must not begin or end with a hyphen",
            shorten(name)
        )))
    }
}

/// Validates a port (1–65535).
pub fn validate_port(member: &str, port: i64) -> Result<u16, ElbError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| validation(format!("{member} must be between 1 and 65535, not {port}")))
}

/// At most 64 characters of `s`, for messages.
pub fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

/// The refusal of `arn` as an ARN of a `kind` (`load balancer`, `rule`, …): a
/// ValidationError quoting it, shortened.
pub fn invalid_arn(kind: &str, arn: &str) -> ElbError {
    validation(format!("'{}' is not a valid {kind} ARN", shorten(arn)))
}

/// A new 16-hex-digit id.
pub fn new_id(ctx: &mut crate::Ctx) -> String {
    format!("{:016x}", ctx.random_u64())
}

/// Validates tags (at most [`MAX_TAGS`], keys 1–128 characters, values up to 256, no
/// `aws:` prefix, no key twice).
pub fn validate_tags(tags: &[ElbTag]) -> Result<(), ElbError> {
    if tags.len() > MAX_TAGS {
        return Err(ElbError::TooManyTags);
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(validation("A tag key must be 1-128 characters long"));
        }
        if t.value.as_deref().is_some_and(|v| v.chars().count() > 256) {
            return Err(validation(
                "A tag value must be at most 256 characters long",
            ));
        }
        if t.key.starts_with("aws:") {
            return Err(validation("Tag keys starting with 'aws:' are reserved"));
        }
        if !seen.insert(t.key.as_str()) {
            return Err(ElbError::DuplicateTagKeys(format!(
                "Duplicate tag key '{}'",
                shorten(&t.key)
            )));
        }
    }
    Ok(())
}

/// Validates a page size (1–[`MAX_PAGE_SIZE`]; absent means the maximum).
pub fn page_size(size: Option<i64>) -> Result<usize, ElbError> {
    match size {
        None => Ok(MAX_PAGE_SIZE),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| validation(format!("PageSize must be between 1 and {MAX_PAGE_SIZE}"))),
    }
}

/// One page of `items` (already in order): those from `marker` on (a marker is the
/// key of the first item of the page), at most `size`, and the next page's marker.
pub fn page<T: Clone>(
    items: Vec<(String, T)>,
    marker: Option<&str>,
    size: usize,
) -> (Vec<T>, Option<String>) {
    let start = match marker {
        Some(m) => items
            .iter()
            .position(|(k, _)| k.as_str() >= m)
            .unwrap_or(items.len()),
        None => 0,
    };
    let rest = &items[start..];
    let next = rest.get(size).map(|(k, _)| k.clone());
    (
        rest.iter().take(size).map(|(_, v)| v.clone()).collect(),
        next,
    )
}

/// The load balancer an ARN names, in `scope`.
pub fn load_balancer_by_arn<'a>(
    state: &'a State,
    scope: &Scope,
    arn: &str,
) -> Result<&'a LoadBalancerRecord, ElbError> {
    let parsed = ElbArn::parse(arn);
    let Some(ElbResource::LoadBalancer { name, id }) = parsed.as_ref().map(|a| &a.resource) else {
        return Err(invalid_arn("load balancer", arn));
    };
    state
        .elb
        .load_balancers
        .get(&(scope.clone(), name.clone()))
        .filter(|lb| lb.id == *id && parsed.as_ref().is_some_and(|a| a.in_scope(scope)))
        .ok_or(ElbError::LoadBalancerNotFound)
}

/// The target group an ARN names, in `scope`.
pub fn target_group_by_arn<'a>(
    state: &'a State,
    scope: &Scope,
    arn: &str,
) -> Result<&'a TargetGroupRecord, ElbError> {
    match ElbArn::parse(arn) {
        Some(ElbArn {
            resource: ElbResource::TargetGroup { name, id },
            region,
            account,
        }) => state
            .elb
            .target_groups
            .get(&(scope.clone(), name))
            .filter(|tg| tg.id == id && region == scope.region && account == scope.account)
            .ok_or(ElbError::TargetGroupNotFound),
        _ => Err(invalid_arn("target group", arn)),
    }
}

/// The listener an ARN names, in `scope`.
pub fn listener_by_arn<'a>(
    state: &'a State,
    scope: &Scope,
    arn: &str,
) -> Result<&'a ListenerRecord, ElbError> {
    let resource = ElbArn::parse(arn).map(|a| a.resource);
    let Some(ElbResource::Listener { id }) = resource else {
        return Err(invalid_arn("listener", arn));
    };
    // The whole ARN must match: the load balancer's name and id are part of it.
    state
        .elb
        .listeners
        .get(&(scope.clone(), id))
        .filter(|l| l.arn() == arn)
        .ok_or(ElbError::ListenerNotFound)
}

/// A rule an ARN names: a stored rule, or a listener's default rule.
#[derive(Debug, Clone)]
pub enum RuleRef<'a> {
    /// A rule with a priority.
    Rule(&'a RuleRecord, &'a ListenerRecord),
    /// The listener's default rule.
    Default(&'a ListenerRecord),
}

/// The rule an ARN names, in `scope`.
pub fn rule_by_arn<'a>(
    state: &'a State,
    scope: &Scope,
    arn: &str,
) -> Result<RuleRef<'a>, ElbError> {
    let Some(parsed) = ElbArn::parse(arn) else {
        return Err(invalid_arn("rule", arn));
    };
    let ElbResource::Rule { listener_id, id } = &parsed.resource else {
        return Err(invalid_arn("rule", arn));
    };
    if !parsed.in_scope(scope) {
        return Err(ElbError::RuleNotFound);
    }
    let listener = state
        .elb
        .listeners
        .get(&(scope.clone(), listener_id.clone()))
        .filter(|l| l.rule_arn(id) == arn)
        .ok_or(ElbError::RuleNotFound)?;
    if listener.default_rule_id == *id {
        return Ok(RuleRef::Default(listener));
    }
    state
        .elb
        .rules
        .get(&(scope.clone(), id.clone()))
        .filter(|r| r.listener_id == *listener_id)
        .map(|r| RuleRef::Rule(r, listener))
        .ok_or(ElbError::RuleNotFound)
}
