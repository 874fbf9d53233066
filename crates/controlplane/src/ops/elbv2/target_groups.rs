//! Target groups and their targets: CreateTargetGroup, DescribeTargetGroups,
//! ModifyTargetGroup, DeleteTargetGroup, Describe/ModifyTargetGroupAttributes,
//! RegisterTargets, DeregisterTargets, DescribeTargetHealth.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{
    ElbError, ElbWritten, MAX_DESCRIBE_NAMES, MAX_TARGET_GROUPS, MAX_TARGETS_PER_GROUP,
    load_balancer_by_arn, new_id, page, page_size, shorten, target_group_by_arn, validate_name,
    validate_port, validate_tags, validation,
};
use crate::Ctx;
use crate::state::elb::{ElbTag, HealthCheck, Target, TargetGroupRecord, in_scope};
use crate::state::{Change, Record, Scope, State};

/// Health check settings as given (absent members keep their value, or AWS's default).
#[derive(Debug, Clone, Default)]
pub struct HealthCheckInput {
    /// `HealthCheckEnabled`.
    pub enabled: Option<bool>,
    /// `HealthCheckProtocol`.
    pub protocol: Option<String>,
    /// `HealthCheckPort`.
    pub port: Option<String>,
    /// `HealthCheckPath`.
    pub path: Option<String>,
    /// `HealthCheckIntervalSeconds`.
    pub interval_seconds: Option<i64>,
    /// `HealthCheckTimeoutSeconds`.
    pub timeout_seconds: Option<i64>,
    /// `HealthyThresholdCount`.
    pub healthy_threshold: Option<i64>,
    /// `UnhealthyThresholdCount`.
    pub unhealthy_threshold: Option<i64>,
    /// `Matcher.HttpCode` (groups of protocol version `HTTP1` and `HTTP2`).
    pub matcher: Option<String>,
    /// `Matcher.GrpcCode` (groups of protocol version `GRPC`).
    pub grpc_code: Option<String>,
}

/// CreateTargetGroup's input.
#[derive(Debug, Clone, Default)]
pub struct CreateTargetGroup {
    /// `Name`.
    pub name: String,
    /// `Protocol` (`HTTP` or `TCP`; required unless the target type is `lambda`).
    pub protocol: Option<String>,
    /// `ProtocolVersion` of an HTTP group: `HTTP1` (the default), `HTTP2` or `GRPC`.
    pub protocol_version: Option<String>,
    /// `Port`.
    pub port: Option<i64>,
    /// `VpcId`.
    pub vpc_id: Option<String>,
    /// `TargetType`: `instance` (default) or `ip`.
    pub target_type: Option<String>,
    /// Health check settings.
    pub health_check: HealthCheckInput,
    /// `Tags`.
    pub tags: Vec<ElbTag>,
}

/// The default attributes of a target group (AWS's).
pub fn default_attributes() -> BTreeMap<String, String> {
    [
        ("deregistration_delay.timeout_seconds", "300"),
        ("slow_start.duration_seconds", "0"),
        ("stickiness.enabled", "false"),
        ("stickiness.type", "lb_cookie"),
        ("stickiness.lb_cookie.duration_seconds", "86400"),
        ("load_balancing.algorithm.type", "round_robin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The protocol versions an HTTP target group may have (ELBv2's `ProtocolVersion`).
pub const PROTOCOL_VERSIONS: [&str; 3] = ["HTTP1", "HTTP2", "GRPC"];

/// The health check path of a `GRPC` group when none is given (ELBv2's).
pub const GRPC_HEALTH_CHECK_PATH: &str = "/AWS.ALB/healthcheck";

/// The `Matcher.GrpcCode` of a `GRPC` group when none is given (ELBv2's: 12, UNIMPLEMENTED,
/// what a gRPC server answers for a method it lacks).
pub const DEFAULT_GRPC_CODE: &str = "12";

/// Whether `m` is an ELBv2 code matcher (`a`, `a,b`, `a-b`, and mixes) of codes in
/// `lo..=hi`.
fn is_code_matcher(m: &str, lo: u16, hi: u16) -> bool {
    !m.is_empty()
        && m.split(',').all(|part| {
            let mut codes = part.split('-');
            let ok = codes
                .by_ref()
                .take(2)
                .all(|code| code.parse::<u16>().is_ok_and(|c| (lo..=hi).contains(&c)));
            ok && codes.next().is_none()
        })
}

fn in_range(member: &str, v: Option<i64>, current: u32, lo: i64, hi: i64) -> Result<u32, ElbError> {
    match v {
        None => Ok(current),
        Some(n) if (lo..=hi).contains(&n) => Ok(u32::try_from(n).unwrap_or(current)),
        Some(n) => Err(validation(format!(
            "{member} must be between {lo} and {hi}, not {n}"
        ))),
    }
}

/// `input` applied over `hc`, validated; `grpc`: the group's protocol version is `GRPC`
/// (its matcher holds gRPC codes, `Matcher.GrpcCode`, else HTTP codes, `Matcher.HttpCode`:
/// one or the other, as in ELBv2).
fn apply_health_check(
    mut hc: HealthCheck,
    input: HealthCheckInput,
    grpc: bool,
) -> Result<HealthCheck, ElbError> {
    if let Some(e) = input.enabled {
        hc.enabled = e;
    }
    if let Some(p) = input.protocol {
        if p != "HTTP" && p != "TCP" {
            return Err(ElbError::UnsupportedProtocol(format!(
                "HealthCheckProtocol '{}' is not supported: HTTP or TCP",
                shorten(&p)
            )));
        }
        if p == "TCP" {
            hc.path = None;
            hc.matcher = None;
        }
        hc.protocol = p;
    }
    if let Some(p) = input.port {
        if p != "traffic-port" {
            let n: i64 = p.parse().map_err(|_| {
                validation("HealthCheckPort must be a port number or 'traffic-port'")
            })?;
            validate_port("HealthCheckPort", n)?;
        }
        hc.port = p;
    }
    if let Some(p) = input.path {
        if !p.starts_with('/') || p.len() > 1024 {
            return Err(validation(
                "HealthCheckPath must begin with '/' and be at most 1024 characters",
            ));
        }
        hc.path = Some(p);
    }
    hc.interval_seconds = in_range(
        "HealthCheckIntervalSeconds",
        input.interval_seconds,
        hc.interval_seconds,
        5,
        300,
    )?;
    hc.timeout_seconds = in_range(
        "HealthCheckTimeoutSeconds",
        input.timeout_seconds,
        hc.timeout_seconds,
        2,
        120,
    )?;
    hc.healthy_threshold = in_range(
        "HealthyThresholdCount",
        input.healthy_threshold,
        hc.healthy_threshold,
        2,
        10,
    )?;
    hc.unhealthy_threshold = in_range(
        "UnhealthyThresholdCount",
        input.unhealthy_threshold,
        hc.unhealthy_threshold,
        2,
        10,
    )?;
    if input.matcher.is_some() && grpc {
        return Err(validation(
            "Matcher HttpCode cannot be specified for a target group whose protocol version is GRPC; use Matcher GrpcCode",
        ));
    }
    if input.grpc_code.is_some() && !grpc {
        return Err(validation(
            "Matcher GrpcCode can be specified only for a target group whose protocol version is GRPC",
        ));
    }
    if let Some(m) = input.matcher {
        if !is_code_matcher(&m, 200, 499) {
            return Err(validation(
                "Matcher HttpCode must be codes from 200 to 499, e.g. '200', '200,202' or '200-299'",
            ));
        }
        hc.matcher = Some(m);
    }
    if let Some(m) = input.grpc_code {
        if !is_code_matcher(&m, 0, 99) {
            return Err(validation(
                "Matcher GrpcCode must be codes from 0 to 99, e.g. '12', '0,12' or '0-99'",
            ));
        }
        hc.matcher = Some(m);
    }
    if hc.timeout_seconds >= hc.interval_seconds {
        return Err(validation(
            "HealthCheckTimeoutSeconds must be smaller than HealthCheckIntervalSeconds",
        ));
    }
    Ok(hc)
}

/// CreateTargetGroup. The same name with the same settings answers the existing group,
/// as AWS does; other settings are `DuplicateTargetGroupName`.
pub fn create(
    state: &State,
    ctx: &mut Ctx,
    req: CreateTargetGroup,
) -> ElbWritten<TargetGroupRecord> {
    validate_name("TargetGroupName", &req.name)?;
    let target_type = req.target_type.unwrap_or_else(|| "instance".to_owned());
    if target_type != "instance" && target_type != "ip" {
        return Err(validation(format!(
            "TargetType '{}' is not supported: instance or ip",
            shorten(&target_type)
        )));
    }
    let protocol = req
        .protocol
        .ok_or_else(|| validation("A protocol must be specified"))?;
    if protocol != "HTTP" && protocol != "TCP" {
        return Err(ElbError::UnsupportedProtocol(format!(
            "Protocol '{}' is not supported: HTTP or TCP",
            shorten(&protocol)
        )));
    }
    let port = validate_port(
        "Port",
        req.port
            .ok_or_else(|| validation("A port must be specified"))?,
    )?;
    validate_tags(&req.tags)?;
    let http = protocol == "HTTP";
    // The protocol version is an HTTP group's; a TCP group splices bytes (none shown).
    let protocol_version = if http {
        let v = req.protocol_version.unwrap_or_else(|| "HTTP1".to_owned());
        if !PROTOCOL_VERSIONS.contains(&v.as_str()) {
            return Err(ElbError::UnsupportedProtocol(format!(
                "ProtocolVersion '{}' is not supported: HTTP1, HTTP2 or GRPC",
                shorten(&v)
            )));
        }
        Some(v)
    } else {
        None
    };
    let grpc = protocol_version.as_deref() == Some("GRPC");
    let defaults = HealthCheck {
        enabled: true,
        protocol: protocol.clone(),
        port: "traffic-port".to_owned(),
        path: http.then(|| if grpc { GRPC_HEALTH_CHECK_PATH } else { "/" }.to_owned()),
        interval_seconds: 30,
        timeout_seconds: if http { 5 } else { 10 },
        healthy_threshold: 5,
        unhealthy_threshold: 2,
        matcher: http.then(|| if grpc { DEFAULT_GRPC_CODE } else { "200" }.to_owned()),
    };
    let health_check = apply_health_check(defaults, req.health_check, grpc)?;
    if let Some(existing) = state
        .elb
        .target_groups
        .get(&(ctx.scope.clone(), req.name.clone()))
    {
        let same = existing.protocol == protocol
            && existing.protocol_version == protocol_version
            && existing.port == port
            && existing.target_type == target_type
            && existing.vpc_id == req.vpc_id
            && existing.health_check == health_check;
        if same {
            return Ok((existing.clone(), Vec::new()));
        }
        return Err(ElbError::DuplicateTargetGroupName(req.name));
    }
    if in_scope(&state.elb.target_groups, &ctx.scope).count() >= MAX_TARGET_GROUPS {
        return Err(ElbError::TooManyTargetGroups);
    }
    let record = TargetGroupRecord {
        scope: ctx.scope.clone(),
        name: req.name,
        id: new_id(ctx),
        protocol,
        port,
        vpc_id: req.vpc_id,
        target_type,
        protocol_version,
        ip_address_type: "ipv4".to_owned(),
        health_check,
        attributes: default_attributes(),
        targets: Vec::new(),
        tags: req.tags,
    };
    Ok((
        record.clone(),
        vec![Change::Put(Record::TargetGroup(record))],
    ))
}

/// A target group as DescribeTargetGroups shows it: the record and the load balancers
/// whose listeners or rules forward to it.
#[derive(Debug, Clone)]
pub struct TargetGroupView {
    /// The record.
    pub group: TargetGroupRecord,
    /// `LoadBalancerArns`.
    pub load_balancer_arns: Vec<String>,
}

/// The ARNs of the load balancers whose listeners or rules forward to `tg_arn`.
pub fn users(state: &State, scope: &Scope, tg_arn: &str) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    for l in in_scope(&state.elb.listeners, scope) {
        let in_rules = in_scope(&state.elb.rules, scope)
            .filter(|r| r.listener_id == l.id)
            .flat_map(|r| r.actions.iter())
            .any(|a| a.target_group_arns().any(|t| t == tg_arn));
        if in_rules
            || l.default_actions
                .iter()
                .any(|a| a.target_group_arns().any(|t| t == tg_arn))
        {
            out.insert(l.lb_arn());
        }
    }
    out.into_iter().collect()
}

fn view(state: &State, scope: &Scope, tg: &TargetGroupRecord) -> TargetGroupView {
    TargetGroupView {
        load_balancer_arns: users(state, scope, &tg.arn()),
        group: tg.clone(),
    }
}

/// DescribeTargetGroups' input.
#[derive(Debug, Clone, Default)]
pub struct DescribeTargetGroups {
    /// `LoadBalancerArn`.
    pub load_balancer_arn: Option<String>,
    /// `TargetGroupArns`.
    pub arns: Vec<String>,
    /// `Names`.
    pub names: Vec<String>,
    /// `Marker`.
    pub marker: Option<String>,
    /// `PageSize`.
    pub page_size: Option<i64>,
}

/// A page of target groups.
#[derive(Debug, Clone, Default)]
pub struct TargetGroupPage {
    /// The groups, by name.
    pub target_groups: Vec<TargetGroupView>,
    /// `NextMarker`.
    pub next_marker: Option<String>,
}

/// DescribeTargetGroups: by ARNs, by names, by load balancer, or a page of all.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: DescribeTargetGroups,
) -> Result<TargetGroupPage, ElbError> {
    let size = page_size(req.page_size)?;
    let given = usize::from(!req.arns.is_empty())
        + usize::from(!req.names.is_empty())
        + usize::from(req.load_balancer_arn.is_some());
    if given > 1 {
        return Err(validation(
            "Specify at most one of LoadBalancerArn, TargetGroupArns and Names",
        ));
    }
    if req.arns.len() > MAX_DESCRIBE_NAMES || req.names.len() > MAX_DESCRIBE_NAMES {
        return Err(validation(format!(
            "At most {MAX_DESCRIBE_NAMES} target groups can be named"
        )));
    }
    let mut items: Vec<(String, TargetGroupView)> = Vec::new();
    if !req.arns.is_empty() {
        for arn in &req.arns {
            let tg = target_group_by_arn(state, scope, arn)?;
            items.push((tg.name.clone(), view(state, scope, tg)));
        }
    } else if !req.names.is_empty() {
        for name in &req.names {
            let tg = state
                .elb
                .target_groups
                .get(&(scope.clone(), name.clone()))
                .ok_or(ElbError::TargetGroupNotFound)?;
            items.push((tg.name.clone(), view(state, scope, tg)));
        }
    } else if let Some(lb_arn) = &req.load_balancer_arn {
        let lb = load_balancer_by_arn(state, scope, lb_arn)?.arn();
        items = in_scope(&state.elb.target_groups, scope)
            .map(|tg| (tg.name.clone(), view(state, scope, tg)))
            .filter(|(_, v)| v.load_balancer_arns.contains(&lb))
            .collect();
    } else {
        items = in_scope(&state.elb.target_groups, scope)
            .map(|tg| (tg.name.clone(), view(state, scope, tg)))
            .collect();
    }
    let (target_groups, next_marker) = page(items, req.marker.as_deref(), size);
    Ok(TargetGroupPage {
        target_groups,
        next_marker,
    })
}

/// ModifyTargetGroup: changes the health check settings.
pub fn modify(
    state: &State,
    ctx: &mut Ctx,
    (arn, input): (String, HealthCheckInput),
) -> ElbWritten<TargetGroupView> {
    let mut tg = target_group_by_arn(state, &ctx.scope, &arn)?.clone();
    tg.prune_drained(ctx.now_ms());
    let grpc = tg.protocol_version.as_deref() == Some("GRPC");
    tg.health_check = apply_health_check(tg.health_check.clone(), input, grpc)?;
    let v = view(state, &ctx.scope, &tg);
    Ok((v, vec![Change::Put(Record::TargetGroup(tg))]))
}

/// DeleteTargetGroup: refused with `ResourceInUse` while a listener or rule forwards to
/// it. Deleting one that does not exist succeeds, as in AWS.
pub fn delete(state: &State, ctx: &mut Ctx, arn: String) -> ElbWritten<()> {
    let tg = match target_group_by_arn(state, &ctx.scope, &arn) {
        Ok(tg) => tg,
        Err(ElbError::TargetGroupNotFound) => return Ok(((), Vec::new())),
        Err(e) => return Err(e),
    };
    if let Some(lb) = users(state, &ctx.scope, &arn).first() {
        return Err(ElbError::ResourceInUse(format!(
            "Target group '{arn}' is currently in use by a listener or a rule of load balancer '{lb}'"
        )));
    }
    Ok(((), vec![Change::Delete(Record::TargetGroup(tg.clone()))]))
}

/// DescribeTargetGroupAttributes: every attribute, with its default when never set.
pub fn describe_attributes(
    state: &State,
    scope: &Scope,
    arn: String,
) -> Result<BTreeMap<String, String>, ElbError> {
    Ok(target_group_by_arn(state, scope, &arn)?.attributes.clone())
}

fn check_attribute(key: &str, value: &str) -> Result<(), ElbError> {
    let int = |lo: i64, hi: i64| {
        value
            .parse::<i64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .map(|_| ())
            .ok_or_else(|| {
                validation(format!(
                    "Attribute '{key}' must be an integer from {lo} to {hi}, not '{}'",
                    shorten(value)
                ))
            })
    };
    match key {
        "deregistration_delay.timeout_seconds" => int(0, 3600),
        "slow_start.duration_seconds" => {
            int(0, 900)?;
            if value != "0" && value.parse::<i64>().is_ok_and(|n| n < 30) {
                return Err(validation(
                    "Attribute 'slow_start.duration_seconds' must be 0 or from 30 to 900",
                ));
            }
            Ok(())
        }
        "stickiness.enabled" => match value {
            "true" | "false" => Ok(()),
            _ => Err(validation(
                "Attribute 'stickiness.enabled' must be true or false",
            )),
        },
        "stickiness.type" => match value {
            "lb_cookie" | "source_ip" => Ok(()),
            _ => Err(validation(
                "Attribute 'stickiness.type' must be lb_cookie or source_ip",
            )),
        },
        "stickiness.lb_cookie.duration_seconds" => int(1, 604_800),
        "load_balancing.algorithm.type" => match value {
            "round_robin" | "least_outstanding_requests" => Ok(()),
            _ => Err(validation(
                "Attribute 'load_balancing.algorithm.type' must be round_robin or least_outstanding_requests",
            )),
        },
        _ => Err(validation(format!(
            "Target group attribute key '{}' is not recognized",
            shorten(key)
        ))),
    }
}

/// ModifyTargetGroupAttributes: sets the given attributes; answers them all.
pub fn modify_attributes(
    state: &State,
    ctx: &mut Ctx,
    (arn, attributes): (String, Vec<(String, String)>),
) -> ElbWritten<BTreeMap<String, String>> {
    let mut tg = target_group_by_arn(state, &ctx.scope, &arn)?.clone();
    tg.prune_drained(ctx.now_ms());
    if attributes.is_empty() {
        return Err(validation("Attributes must name at least one attribute"));
    }
    for (k, v) in attributes {
        check_attribute(&k, &v)?;
        tg.attributes.insert(k, v);
    }
    let out = tg.attributes.clone();
    Ok((out, vec![Change::Put(Record::TargetGroup(tg))]))
}

/// A target as given: its id and, optionally, a port and zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetInput {
    /// `Id`.
    pub id: String,
    /// `Port` (the group's port when absent).
    pub port: Option<i64>,
    /// `AvailabilityZone`.
    pub availability_zone: Option<String>,
}

fn resolve_target(tg: &TargetGroupRecord, t: &TargetInput) -> Result<Target, ElbError> {
    let port = match t.port {
        Some(p) => validate_port("Port", p)?,
        None => tg.port,
    };
    let valid_id = match tg.target_type.as_str() {
        "ip" => t.id.parse::<std::net::IpAddr>().is_ok(),
        _ => {
            !t.id.is_empty()
                && t.id.len() <= 64
                && t.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
    };
    if !valid_id {
        return Err(ElbError::InvalidTarget(format!(
            "The target '{}' is not a valid {} target",
            shorten(&t.id),
            if tg.target_type == "ip" {
                "IP address"
            } else {
                "instance"
            }
        )));
    }
    Ok(Target::new(t.id.clone(), port, t.availability_zone.clone()))
}

/// RegisterTargets: adds targets. Registering an active one again changes nothing;
/// registering one that is draining makes it active again (its draining deadline and
/// observed health cleared: the data plane checks it anew).
pub fn register(
    state: &State,
    ctx: &mut Ctx,
    (arn, targets): (String, Vec<TargetInput>),
) -> ElbWritten<()> {
    let mut tg = target_group_by_arn(state, &ctx.scope, &arn)?.clone();
    tg.prune_drained(ctx.now_ms());
    if targets.is_empty() {
        return Err(validation("Targets must name at least one target"));
    }
    for t in &targets {
        let t = resolve_target(&tg, t)?;
        match tg.targets.iter_mut().find(|x| x.is(&t.id, t.port)) {
            Some(x) if !x.is_active() => {
                x.draining_until_ms = None;
                x.health = None;
            }
            Some(_) => {}
            None => tg.targets.push(t),
        }
    }
    if tg.targets.len() > MAX_TARGETS_PER_GROUP {
        return Err(ElbError::TooManyTargets);
    }
    Ok(((), vec![Change::Put(Record::TargetGroup(tg))]))
}

/// DeregisterTargets: the targets drain for the group's deregistration delay
/// (`draining_until_ms`; a delay of 0 removes them at once). Deregistering one that is
/// already draining changes nothing; naming one that is not registered (or done
/// draining) is `InvalidTarget`, as in AWS.
pub fn deregister(
    state: &State,
    ctx: &mut Ctx,
    (arn, targets): (String, Vec<TargetInput>),
) -> ElbWritten<()> {
    let mut tg = target_group_by_arn(state, &ctx.scope, &arn)?.clone();
    let now_ms = ctx.now_ms();
    tg.prune_drained(now_ms);
    let delay_ms = tg.deregistration_delay_ms();
    for t in &targets {
        let t = resolve_target(&tg, t)?;
        let Some(at) = tg.targets.iter().position(|x| x.is(&t.id, t.port)) else {
            return Err(ElbError::InvalidTarget(format!(
                "The following targets are not registered: '{}:{}'",
                shorten(&t.id),
                t.port
            )));
        };
        if !tg.targets[at].is_active() {
            continue;
        }
        if delay_ms == 0 {
            tg.targets.remove(at);
        } else {
            tg.targets[at].draining_until_ms = Some(now_ms.saturating_add(delay_ms));
        }
    }
    Ok(((), vec![Change::Put(Record::TargetGroup(tg))]))
}

/// One target's health as DescribeTargetHealth shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// The target.
    pub target: Target,
    /// `HealthCheckPort`.
    pub health_check_port: String,
    /// `initial`, `healthy`, `unhealthy`, `unused`, `draining`.
    pub state: &'static str,
    /// The reason code (`Elb.RegistrationInProgress`, `Target.NotInUse`, …); the data
    /// plane's own for an unhealthy target.
    pub reason: Option<Cow<'static, str>>,
    /// The description.
    pub description: Option<Cow<'static, str>>,
}

/// DescribeTargetHealth: the health of the given targets (or all registered ones, in
/// registration order).
///
/// The control plane does not check health itself; the data plane (crate `lb`, run by
/// `flotilla server --lb-listen`) reports what its checks observe ([`super::health`]).
/// A target is:
/// - `draining` (`Target.DeregistrationInProgress`) from DeregisterTargets until its
///   group's deregistration delay has passed; after that it is gone;
/// - `unused` (`Target.NotInUse`) while no listener or rule forwards to its group;
/// - `initial` (`Elb.RegistrationInProgress`) until the data plane reports it;
/// - `healthy`, or `unhealthy` with the reason the data plane gave.
///
/// Naming a target that is not registered answers `unused` / `Target.NotRegistered`,
/// as AWS does. `now_ms` (epoch milliseconds, the server's clock) decides whether a
/// deregistered target is still draining.
pub fn describe_health(
    state: &State,
    scope: &Scope,
    (arn, targets, now_ms): (String, Vec<TargetInput>, u64),
) -> Result<Vec<TargetHealth>, ElbError> {
    let tg = target_group_by_arn(state, scope, &arn)?;
    let in_use = !users(state, scope, &arn).is_empty();
    let hc_port = |t: &Target| {
        if tg.health_check.port == "traffic-port" {
            t.port.to_string()
        } else {
            tg.health_check.port.clone()
        }
    };
    let registered = |t: &Target| {
        let (state, reason, description): (&'static str, Option<Cow<'static, str>>, _) =
            if t.is_draining(now_ms) {
                (
                    "draining",
                    Some("Target.DeregistrationInProgress".into()),
                    Some("Target deregistration is in progress".into()),
                )
            } else if !in_use {
                (
                    "unused",
                    Some("Target.NotInUse".into()),
                    Some(
                        "Target group is not configured to receive traffic from the load balancer"
                            .into(),
                    ),
                )
            } else {
                match &t.health {
                    None => (
                        "initial",
                        Some("Elb.RegistrationInProgress".into()),
                        Some("Target registration is in progress".into()),
                    ),
                    Some(h) if h.healthy => ("healthy", None, None),
                    Some(h) => (
                        "unhealthy",
                        h.reason.clone().map(Cow::Owned),
                        h.description.clone().map(Cow::Owned),
                    ),
                }
            };
        TargetHealth {
            target: t.clone(),
            health_check_port: hc_port(t),
            state,
            reason,
            description,
        }
    };
    if targets.is_empty() {
        return Ok(tg.live_targets(now_ms).map(registered).collect());
    }
    let mut out = Vec::new();
    for t in &targets {
        let t = resolve_target(tg, t)?;
        match tg.live_targets(now_ms).find(|x| x.is(&t.id, t.port)) {
            Some(found) => out.push(registered(found)),
            None => out.push(TargetHealth {
                health_check_port: hc_port(&t),
                target: t,
                state: "unused",
                reason: Some("Target.NotRegistered".into()),
                description: Some("Target is not registered to the target group".into()),
            }),
        }
    }
    Ok(out)
}
