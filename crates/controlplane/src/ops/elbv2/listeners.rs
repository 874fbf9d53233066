//! Listeners and their rules: CreateListener, DescribeListeners, ModifyListener,
//! DeleteListener, CreateRule, DescribeRules, ModifyRule, DeleteRule; and the actions
//! and conditions they carry.

use super::certificates::{
    CertificateInput, DEFAULT_SSL_POLICY, check_ssl_policy, default_certificate,
};
use super::{
    ElbError, ElbWritten, MAX_CONDITION_VALUES, MAX_DESCRIBE_NAMES, MAX_LISTENERS_PER_LB,
    MAX_RULES_PER_LB, MAX_TARGET_GROUPS_PER_ACTION, RuleRef, listener_by_arn, load_balancer_by_arn,
    new_id, page, page_size, rule_by_arn, shorten, target_group_by_arn, validate_port,
    validate_tags, validation,
};
use crate::Ctx;
use crate::state::elb::{
    Action, ActionKind, Condition, ElbTag, ListenerRecord, RuleRecord, WeightedTargetGroup,
    in_scope,
};
use crate::state::{Change, Record, Scope, State};

/// An action as given.
#[derive(Debug, Clone, Default)]
pub struct ActionInput {
    /// `Type`: `forward` or `fixed-response`.
    pub action_type: String,
    /// `Order`.
    pub order: Option<i64>,
    /// `TargetGroupArn` (forward to one group).
    pub target_group_arn: Option<String>,
    /// `ForwardConfig.TargetGroups`: (ARN, weight).
    pub forward_groups: Option<Vec<(String, Option<i64>)>>,
    /// `ForwardConfig.TargetGroupStickinessConfig`: (enabled, duration seconds).
    pub forward_stickiness: Option<(bool, Option<i64>)>,
    /// `FixedResponseConfig`: (status code, content type, message body).
    pub fixed_response: Option<(String, Option<String>, Option<String>)>,
}

/// A condition as given.
#[derive(Debug, Clone, Default)]
pub struct ConditionInput {
    /// `Field`: `path-pattern`, `host-header`, `http-header`.
    pub field: String,
    /// `Values` (the older form for path and host).
    pub values: Vec<String>,
    /// `PathPatternConfig.Values`.
    pub path_pattern: Option<Vec<String>>,
    /// `HostHeaderConfig.Values`.
    pub host_header: Option<Vec<String>>,
    /// `HttpHeaderConfig`: (name, values).
    pub http_header: Option<(String, Vec<String>)>,
}

/// Validates actions: exactly one terminal action (forward or fixed-response), target
/// groups that exist and whose protocol fits the listener.
fn resolve_actions(
    state: &State,
    scope: &Scope,
    protocol: &str,
    inputs: Vec<ActionInput>,
) -> Result<Vec<Action>, ElbError> {
    if inputs.len() != 1 {
        return Err(ElbError::InvalidLoadBalancerAction(
            "Exactly one action (forward or fixed-response) must be specified".into(),
        ));
    }
    let mut out = Vec::new();
    for a in inputs {
        let order = match a.order {
            None => None,
            Some(n) if (1..=50_000).contains(&n) => u32::try_from(n).ok(),
            Some(n) => {
                return Err(validation(format!(
                    "Order must be from 1 to 50000, not {n}"
                )));
            }
        };
        let kind = match a.action_type.as_str() {
            "forward" => {
                let (groups, single) = match (a.target_group_arn, a.forward_groups) {
                    (Some(arn), None) => (vec![(arn, None)], true),
                    (None, Some(groups)) => (groups, false),
                    (Some(arn), Some(groups)) => {
                        if groups.len() != 1 || groups[0].0 != arn {
                            return Err(ElbError::InvalidLoadBalancerAction(
                                "TargetGroupArn and ForwardConfig name different target groups"
                                    .into(),
                            ));
                        }
                        (groups, false)
                    }
                    (None, None) => {
                        return Err(ElbError::InvalidLoadBalancerAction(
                            "A forward action needs a TargetGroupArn or a ForwardConfig".into(),
                        ));
                    }
                };
                if groups.is_empty() || groups.len() > MAX_TARGET_GROUPS_PER_ACTION {
                    return Err(ElbError::InvalidLoadBalancerAction(format!(
                        "A forward action names 1 to {MAX_TARGET_GROUPS_PER_ACTION} target groups"
                    )));
                }
                let mut target_groups = Vec::new();
                // TLS ends at an HTTPS listener: its groups are HTTP ones.
                let group_protocol = if protocol == "HTTPS" {
                    "HTTP"
                } else {
                    protocol
                };
                for (arn, weight) in groups {
                    let tg = target_group_by_arn(state, scope, &arn)?;
                    if tg.protocol != group_protocol {
                        return Err(ElbError::InvalidConfigurationRequest(format!(
                            "Target group '{}' has protocol {} and cannot be used by a {protocol} listener",
                            tg.name, tg.protocol
                        )));
                    }
                    if target_groups
                        .iter()
                        .any(|g: &WeightedTargetGroup| g.arn == arn)
                    {
                        return Err(validation(
                            "A target group can be named only once per action",
                        ));
                    }
                    let weight = match weight {
                        None => None,
                        Some(w) if (0..=999).contains(&w) => u32::try_from(w).ok(),
                        Some(w) => {
                            return Err(validation(format!(
                                "Weight must be from 0 to 999, not {w}"
                            )));
                        }
                    };
                    target_groups.push(WeightedTargetGroup { arn, weight });
                }
                let stickiness = match a.forward_stickiness {
                    None => None,
                    Some((enabled, d)) => {
                        let d = match d {
                            None => None,
                            Some(d) if (1..=604_800).contains(&d) => u32::try_from(d).ok(),
                            Some(d) => {
                                return Err(validation(format!(
                                    "DurationSeconds must be from 1 to 604800, not {d}"
                                )));
                            }
                        };
                        Some((enabled, d))
                    }
                };
                ActionKind::Forward {
                    target_groups,
                    stickiness,
                    single,
                }
            }
            "fixed-response" => {
                let (status_code, content_type, message_body) =
                    a.fixed_response.ok_or_else(|| {
                        ElbError::InvalidLoadBalancerAction(
                            "A fixed-response action needs a FixedResponseConfig".into(),
                        )
                    })?;
                let code_ok = status_code.len() == 3
                    && status_code.bytes().all(|b| b.is_ascii_digit())
                    && matches!(status_code.as_bytes()[0], b'2' | b'4' | b'5');
                if !code_ok {
                    return Err(validation("StatusCode must be a 2XX, 4XX or 5XX code"));
                }
                if message_body.as_ref().is_some_and(|b| b.len() > 1024) {
                    return Err(validation("MessageBody must be at most 1024 characters"));
                }
                if let Some(ct) = &content_type {
                    let allowed = [
                        "text/plain",
                        "text/css",
                        "text/html",
                        "application/javascript",
                        "application/json",
                    ];
                    if !allowed.contains(&ct.as_str()) {
                        return Err(validation(format!(
                            "ContentType must be one of {}",
                            allowed.join(", ")
                        )));
                    }
                }
                ActionKind::FixedResponse {
                    status_code,
                    content_type,
                    message_body,
                }
            }
            other => {
                return Err(ElbError::InvalidLoadBalancerAction(format!(
                    "Action type '{}' is not supported: forward or fixed-response",
                    shorten(other)
                )));
            }
        };
        out.push(Action { order, kind });
    }
    Ok(out)
}

fn resolve_conditions(inputs: Vec<ConditionInput>) -> Result<Vec<Condition>, ElbError> {
    if inputs.is_empty() {
        return Err(validation("A rule needs at least one condition"));
    }
    let mut out = Vec::new();
    let mut total = 0;
    for c in inputs {
        let pick = |config: Option<Vec<String>>, values: Vec<String>| match config {
            Some(v) if values.is_empty() => Ok(v),
            None => Ok(values),
            Some(_) => Err(validation(
                "Specify either Values or the condition's Config, not both",
            )),
        };
        let cond = match c.field.as_str() {
            "path-pattern" => Condition::PathPattern(pick(c.path_pattern, c.values)?),
            "host-header" => Condition::HostHeader(pick(c.host_header, c.values)?),
            "http-header" => {
                let (name, values) = c.http_header.ok_or_else(|| {
                    validation("An http-header condition needs an HttpHeaderConfig")
                })?;
                if name.is_empty()
                    || name.len() > 40
                    || name.eq_ignore_ascii_case("host")
                    || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                {
                    return Err(validation(
                        "HttpHeaderName must be 1-40 token characters and not Host",
                    ));
                }
                Condition::HttpHeader { name, values }
            }
            other => {
                return Err(validation(format!(
                    "Condition field '{}' is not supported: path-pattern, host-header or http-header",
                    shorten(other)
                )));
            }
        };
        let values = match &cond {
            Condition::PathPattern(v) | Condition::HostHeader(v) => v,
            Condition::HttpHeader { values, .. } => values,
        };
        if values.is_empty() {
            return Err(validation("A condition needs at least one value"));
        }
        if values.iter().any(|v| v.is_empty() || v.len() > 128) {
            return Err(validation("Condition values must be 1-128 characters"));
        }
        total += values.len();
        out.push(cond);
    }
    if total > MAX_CONDITION_VALUES {
        return Err(validation(format!(
            "A rule can have at most {MAX_CONDITION_VALUES} condition values"
        )));
    }
    Ok(out)
}

fn check_protocol(lb_type: &str, protocol: &str) -> Result<(), ElbError> {
    let served: &[&str] = if lb_type == "network" {
        &["TCP"]
    } else {
        &["HTTP", "HTTPS"]
    };
    if served.contains(&protocol) {
        Ok(())
    } else {
        Err(ElbError::UnsupportedProtocol(format!(
            "Protocol '{}' is not supported on a {lb_type} load balancer: flotilla serves {} only",
            shorten(protocol),
            served.join(" and ")
        )))
    }
}

/// An HTTPS listener's default certificate and policy, from what was given (`None`: keep
/// `current`); other protocols take neither.
fn tls_settings(
    state: &State,
    scope: &Scope,
    protocol: &str,
    certificates: Option<&[CertificateInput]>,
    ssl_policy: Option<&str>,
    current: (&[String], Option<&str>),
) -> Result<(Vec<String>, Option<String>), ElbError> {
    if protocol != "HTTPS" {
        if certificates.is_some_and(|c| !c.is_empty()) || ssl_policy.is_some() {
            return Err(ElbError::InvalidConfigurationRequest(
                "Certificates and SslPolicy can only be given for HTTPS listeners".into(),
            ));
        }
        return Ok((Vec::new(), None));
    }
    let certificates = match certificates {
        Some(given) => {
            let default = default_certificate(state, scope, given)?;
            // The listener's SNI certificates stay; the default one leads.
            let mut all = vec![default.clone()];
            all.extend(current.0.iter().skip(1).filter(|c| **c != default).cloned());
            all
        }
        None if !current.0.is_empty() => current.0.to_vec(),
        None => {
            return Err(validation(
                "A certificate must be specified for HTTPS listeners",
            ));
        }
    };
    let policy = match ssl_policy.or(current.1) {
        Some(p) => check_ssl_policy(p)?,
        None => DEFAULT_SSL_POLICY.to_owned(),
    };
    Ok((certificates, Some(policy)))
}

/// CreateListener's input.
#[derive(Debug, Clone, Default)]
pub struct CreateListener {
    /// `LoadBalancerArn`.
    pub load_balancer_arn: String,
    /// `Protocol`.
    pub protocol: Option<String>,
    /// `Port`.
    pub port: Option<i64>,
    /// `DefaultActions`.
    pub default_actions: Vec<ActionInput>,
    /// `Tags`.
    pub tags: Vec<ElbTag>,
    /// `Certificates` (HTTPS: exactly one, the default).
    pub certificates: Vec<CertificateInput>,
    /// `SslPolicy` (HTTPS; default [`DEFAULT_SSL_POLICY`]).
    pub ssl_policy: Option<String>,
}

/// CreateListener: one listener per port of a load balancer.
pub fn create(state: &State, ctx: &mut Ctx, req: CreateListener) -> ElbWritten<ListenerRecord> {
    let lb = load_balancer_by_arn(state, &ctx.scope, &req.load_balancer_arn)?;
    let protocol = req.protocol.unwrap_or_else(|| {
        if lb.lb_type == "network" {
            "TCP"
        } else {
            "HTTP"
        }
        .to_owned()
    });
    check_protocol(&lb.lb_type, &protocol)?;
    let port = validate_port(
        "Port",
        req.port
            .ok_or_else(|| validation("A listener port must be specified"))?,
    )?;
    validate_tags(&req.tags)?;
    let (certificates, ssl_policy) = tls_settings(
        state,
        &ctx.scope,
        &protocol,
        Some(&req.certificates),
        req.ssl_policy.as_deref(),
        (&[], None),
    )?;
    let default_actions = resolve_actions(state, &ctx.scope, &protocol, req.default_actions)?;
    let siblings: Vec<&ListenerRecord> = in_scope(&state.elb.listeners, &ctx.scope)
        .filter(|l| l.lb_id == lb.id)
        .collect();
    if siblings.iter().any(|l| l.port == port) {
        return Err(ElbError::DuplicateListener);
    }
    if siblings.len() >= MAX_LISTENERS_PER_LB {
        return Err(ElbError::TooManyListeners);
    }
    let record = ListenerRecord {
        scope: ctx.scope.clone(),
        id: new_id(ctx),
        lb_name: lb.name.clone(),
        lb_id: lb.id.clone(),
        lb_type: lb.lb_type.clone(),
        port,
        protocol,
        default_actions,
        default_rule_id: new_id(ctx),
        tags: req.tags,
        certificates,
        ssl_policy,
    };
    Ok((record.clone(), vec![Change::Put(Record::Listener(record))]))
}

/// DescribeListeners' input.
#[derive(Debug, Clone, Default)]
pub struct DescribeListeners {
    /// `LoadBalancerArn`.
    pub load_balancer_arn: Option<String>,
    /// `ListenerArns`.
    pub arns: Vec<String>,
    /// `Marker`.
    pub marker: Option<String>,
    /// `PageSize`.
    pub page_size: Option<i64>,
}

/// A page of listeners.
#[derive(Debug, Clone, Default)]
pub struct ListenerPage {
    /// The listeners, by port.
    pub listeners: Vec<ListenerRecord>,
    /// `NextMarker`.
    pub next_marker: Option<String>,
}

/// DescribeListeners: by ARNs or of one load balancer (one of the two is required).
pub fn describe(
    state: &State,
    scope: &Scope,
    req: DescribeListeners,
) -> Result<ListenerPage, ElbError> {
    let size = page_size(req.page_size)?;
    if req.arns.len() > MAX_DESCRIBE_NAMES {
        return Err(validation(format!(
            "At most {MAX_DESCRIBE_NAMES} listeners can be named"
        )));
    }
    let mut items: Vec<(String, ListenerRecord)> =
        match (&req.load_balancer_arn, req.arns.is_empty()) {
            (Some(_), false) | (None, true) => {
                return Err(validation(
                    "Specify either a load balancer ARN or listener ARNs",
                ));
            }
            (None, false) => {
                let mut out = Vec::new();
                for arn in &req.arns {
                    let l = listener_by_arn(state, scope, arn)?;
                    out.push((format!("{:05}", l.port), l.clone()));
                }
                out
            }
            (Some(lb_arn), true) => {
                let lb = load_balancer_by_arn(state, scope, lb_arn)?;
                in_scope(&state.elb.listeners, scope)
                    .filter(|l| l.lb_id == lb.id)
                    .map(|l| (format!("{:05}", l.port), l.clone()))
                    .collect()
            }
        };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (listeners, next_marker) = page(items, req.marker.as_deref(), size);
    Ok(ListenerPage {
        listeners,
        next_marker,
    })
}

/// ModifyListener's input.
#[derive(Debug, Clone, Default)]
pub struct ModifyListener {
    /// `ListenerArn`.
    pub arn: String,
    /// `Port`.
    pub port: Option<i64>,
    /// `Protocol`.
    pub protocol: Option<String>,
    /// `DefaultActions` (unchanged when empty).
    pub default_actions: Vec<ActionInput>,
    /// `Certificates`: the new default certificate (unchanged when `None`).
    pub certificates: Option<Vec<CertificateInput>>,
    /// `SslPolicy` (unchanged when `None`).
    pub ssl_policy: Option<String>,
}

/// ModifyListener: port, protocol, default actions, default certificate, security policy.
/// Leaving HTTPS drops the certificates; going to HTTPS needs one.
pub fn modify(state: &State, ctx: &mut Ctx, req: ModifyListener) -> ElbWritten<ListenerRecord> {
    let mut l = listener_by_arn(state, &ctx.scope, &req.arn)?.clone();
    if let Some(p) = req.protocol {
        check_protocol(&l.lb_type, &p)?;
        // Going from HTTP to HTTPS (or back) changes which groups fit only in name: both
        // forward to HTTP groups.
        l.protocol = p;
    }
    let (certificates, ssl_policy) = tls_settings(
        state,
        &ctx.scope,
        &l.protocol,
        req.certificates.as_deref(),
        req.ssl_policy.as_deref(),
        if l.protocol == "HTTPS" {
            (&l.certificates, l.ssl_policy.as_deref())
        } else {
            (&[], None)
        },
    )?;
    l.certificates = certificates;
    l.ssl_policy = ssl_policy;
    if let Some(p) = req.port {
        let port = validate_port("Port", p)?;
        let taken = in_scope(&state.elb.listeners, &ctx.scope)
            .any(|o| o.lb_id == l.lb_id && o.id != l.id && o.port == port);
        if taken {
            return Err(ElbError::DuplicateListener);
        }
        l.port = port;
    }
    if !req.default_actions.is_empty() {
        l.default_actions = resolve_actions(state, &ctx.scope, &l.protocol, req.default_actions)?;
    }
    Ok((l.clone(), vec![Change::Put(Record::Listener(l))]))
}

/// DeleteListener: the listener and its rules.
pub fn delete(state: &State, ctx: &mut Ctx, arn: String) -> ElbWritten<()> {
    let l = listener_by_arn(state, &ctx.scope, &arn)?;
    let mut changes: Vec<Change> = in_scope(&state.elb.rules, &ctx.scope)
        .filter(|r| r.listener_id == l.id)
        .map(|r| Change::Delete(Record::ListenerRule(r.clone())))
        .collect();
    changes.push(Change::Delete(Record::Listener(l.clone())));
    Ok(((), changes))
}

/// A rule as the API shows it: a stored rule or a listener's default rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleView {
    /// `RuleArn`.
    pub arn: String,
    /// `Priority`: the number, or `default`.
    pub priority: String,
    /// `Conditions` (none for the default rule).
    pub conditions: Vec<Condition>,
    /// `Actions`.
    pub actions: Vec<Action>,
    /// `IsDefault`.
    pub is_default: bool,
}

fn rule_view(l: &ListenerRecord, r: &RuleRecord) -> RuleView {
    RuleView {
        arn: l.rule_arn(&r.id),
        priority: r.priority.to_string(),
        conditions: r.conditions.clone(),
        actions: r.actions.clone(),
        is_default: false,
    }
}

fn default_view(l: &ListenerRecord) -> RuleView {
    RuleView {
        arn: l.rule_arn(&l.default_rule_id),
        priority: "default".to_owned(),
        conditions: Vec::new(),
        actions: l.default_actions.clone(),
        is_default: true,
    }
}

fn validate_priority(p: i64) -> Result<u32, ElbError> {
    u32::try_from(p)
        .ok()
        .filter(|p| (1..=50_000).contains(p))
        .ok_or_else(|| validation(format!("Priority must be from 1 to 50000, not {p}")))
}

/// CreateRule's input.
#[derive(Debug, Clone, Default)]
pub struct CreateRule {
    /// `ListenerArn`.
    pub listener_arn: String,
    /// `Priority`.
    pub priority: Option<i64>,
    /// `Conditions`.
    pub conditions: Vec<ConditionInput>,
    /// `Actions`.
    pub actions: Vec<ActionInput>,
    /// `Tags`.
    pub tags: Vec<ElbTag>,
}

/// CreateRule: priorities are unique per listener (`PriorityInUse`).
pub fn create_rule(state: &State, ctx: &mut Ctx, req: CreateRule) -> ElbWritten<RuleView> {
    let l = listener_by_arn(state, &ctx.scope, &req.listener_arn)?;
    if l.lb_type == "network" {
        return Err(ElbError::InvalidConfigurationRequest(
            "Rules are not supported on network load balancer listeners".into(),
        ));
    }
    let priority = validate_priority(
        req.priority
            .ok_or_else(|| validation("A rule priority must be specified"))?,
    )?;
    validate_tags(&req.tags)?;
    let conditions = resolve_conditions(req.conditions)?;
    let actions = resolve_actions(state, &ctx.scope, &l.protocol, req.actions)?;
    if in_scope(&state.elb.rules, &ctx.scope)
        .any(|r| r.listener_id == l.id && r.priority == priority)
    {
        return Err(ElbError::PriorityInUse(priority));
    }
    let on_lb = in_scope(&state.elb.rules, &ctx.scope)
        .filter(|r| {
            state
                .elb
                .listeners
                .get(&(ctx.scope.clone(), r.listener_id.clone()))
                .is_some_and(|o| o.lb_id == l.lb_id)
        })
        .count();
    if on_lb >= MAX_RULES_PER_LB {
        return Err(ElbError::TooManyRules);
    }
    let rule = RuleRecord {
        scope: ctx.scope.clone(),
        id: new_id(ctx),
        listener_id: l.id.clone(),
        priority,
        conditions,
        actions,
        tags: req.tags,
    };
    Ok((
        rule_view(l, &rule),
        vec![Change::Put(Record::ListenerRule(rule))],
    ))
}

/// DescribeRules' input.
#[derive(Debug, Clone, Default)]
pub struct DescribeRules {
    /// `ListenerArn`.
    pub listener_arn: Option<String>,
    /// `RuleArns`.
    pub arns: Vec<String>,
    /// `Marker`.
    pub marker: Option<String>,
    /// `PageSize`.
    pub page_size: Option<i64>,
}

/// A page of rules.
#[derive(Debug, Clone, Default)]
pub struct RulePage {
    /// The rules, by priority, the default rule last.
    pub rules: Vec<RuleView>,
    /// `NextMarker`.
    pub next_marker: Option<String>,
}

/// DescribeRules: by ARNs, or every rule of a listener (its default rule last).
pub fn describe_rules(
    state: &State,
    scope: &Scope,
    req: DescribeRules,
) -> Result<RulePage, ElbError> {
    let size = page_size(req.page_size)?;
    let view_of = |r: RuleRef<'_>| match r {
        RuleRef::Rule(r, l) => rule_view(l, r),
        RuleRef::Default(l) => default_view(l),
    };
    let key = |v: &RuleView| {
        v.priority
            .parse::<u32>()
            .map_or_else(|_| "99999".to_owned(), |p| format!("{p:05}"))
    };
    let mut items: Vec<(String, RuleView)> = match (&req.listener_arn, req.arns.is_empty()) {
        (Some(_), false) | (None, true) => {
            return Err(validation("Specify either a listener ARN or rule ARNs"));
        }
        (None, false) => {
            if req.arns.len() > MAX_DESCRIBE_NAMES {
                return Err(validation(format!(
                    "At most {MAX_DESCRIBE_NAMES} rules can be named"
                )));
            }
            let mut out = Vec::new();
            for arn in &req.arns {
                let v = view_of(rule_by_arn(state, scope, arn)?);
                out.push((key(&v), v));
            }
            out
        }
        (Some(arn), true) => {
            let l = listener_by_arn(state, scope, arn)?;
            let mut out: Vec<(String, RuleView)> = in_scope(&state.elb.rules, scope)
                .filter(|r| r.listener_id == l.id)
                .map(|r| rule_view(l, r))
                .map(|v| (key(&v), v))
                .collect();
            let d = default_view(l);
            out.push((key(&d), d));
            out
        }
    };
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (rules, next_marker) = page(items, req.marker.as_deref(), size);
    Ok(RulePage { rules, next_marker })
}

/// ModifyRule's input.
#[derive(Debug, Clone, Default)]
pub struct ModifyRule {
    /// `RuleArn`.
    pub arn: String,
    /// `Conditions` (unchanged when empty).
    pub conditions: Vec<ConditionInput>,
    /// `Actions` (unchanged when empty).
    pub actions: Vec<ActionInput>,
}

/// ModifyRule: conditions and actions. On a default rule only the actions can change
/// (they are the listener's default actions).
pub fn modify_rule(state: &State, ctx: &mut Ctx, req: ModifyRule) -> ElbWritten<RuleView> {
    match rule_by_arn(state, &ctx.scope, &req.arn)? {
        RuleRef::Default(l) => {
            if !req.conditions.is_empty() {
                return Err(ElbError::OperationNotPermitted(
                    "The conditions of a default rule cannot be modified".into(),
                ));
            }
            let mut l = l.clone();
            if !req.actions.is_empty() {
                l.default_actions = resolve_actions(state, &ctx.scope, &l.protocol, req.actions)?;
            }
            Ok((default_view(&l), vec![Change::Put(Record::Listener(l))]))
        }
        RuleRef::Rule(r, l) => {
            let mut r = r.clone();
            if !req.conditions.is_empty() {
                r.conditions = resolve_conditions(req.conditions)?;
            }
            if !req.actions.is_empty() {
                r.actions = resolve_actions(state, &ctx.scope, &l.protocol, req.actions)?;
            }
            Ok((rule_view(l, &r), vec![Change::Put(Record::ListenerRule(r))]))
        }
    }
}

/// DeleteRule: a default rule cannot be deleted (`OperationNotPermitted`).
pub fn delete_rule(state: &State, ctx: &mut Ctx, arn: String) -> ElbWritten<()> {
    match rule_by_arn(state, &ctx.scope, &arn)? {
        RuleRef::Default(_) => Err(ElbError::OperationNotPermitted(
            "Default rules cannot be deleted".into(),
        )),
        RuleRef::Rule(r, _) => Ok(((), vec![Change::Delete(Record::ListenerRule(r.clone()))])),
    }
}
