//! CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer.

use super::{
    ElbError, ElbWritten, MAX_DESCRIBE_NAMES, MAX_LOAD_BALANCERS, load_balancer_by_arn, new_id,
    page, page_size, validate_name, validate_tags, validation,
};
use crate::Ctx;
use crate::state::elb::{ElbTag, LoadBalancerRecord, in_scope};
use crate::state::{Change, Record, Scope, State};

/// CreateLoadBalancer's input.
#[derive(Debug, Clone, Default)]
pub struct CreateLoadBalancer {
    /// `Name`.
    pub name: String,
    /// `Type`: `application` (default) or `network`.
    pub lb_type: Option<String>,
    /// `Scheme`: `internet-facing` (default) or `internal`.
    pub scheme: Option<String>,
    /// `IpAddressType`: `ipv4` (default) or `dualstack`.
    pub ip_address_type: Option<String>,
    /// `Subnets`.
    pub subnets: Vec<String>,
    /// `SecurityGroups`.
    pub security_groups: Vec<String>,
    /// `Tags`.
    pub tags: Vec<ElbTag>,
}

fn one_of(member: &str, value: Option<String>, allowed: &[&str]) -> Result<String, ElbError> {
    let v = value.unwrap_or_else(|| allowed[0].to_owned());
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(validation(format!(
            "{member} '{}' is not supported: expected one of {}",
            super::shorten(&v),
            allowed.join(", ")
        )))
    }
}

/// CreateLoadBalancer: a new load balancer, `active` at once (there is nothing to
/// provision). Creating one with the name and settings of an existing one answers that
/// one, as AWS does; other settings are `DuplicateLoadBalancerName`.
pub fn create(
    state: &State,
    ctx: &mut Ctx,
    req: CreateLoadBalancer,
) -> ElbWritten<LoadBalancerRecord> {
    validate_name("LoadBalancerName", &req.name)?;
    if req.name.starts_with("internal-") {
        return Err(validation(
            "LoadBalancerName must not begin with 'internal-'",
        ));
    }
    let lb_type = one_of("Type", req.lb_type, &["application", "network"])?;
    let scheme = one_of("Scheme", req.scheme, &["internet-facing", "internal"])?;
    let ip_address_type = one_of("IpAddressType", req.ip_address_type, &["ipv4", "dualstack"])?;
    validate_tags(&req.tags)?;
    if let Some(existing) = state
        .elb
        .load_balancers
        .get(&(ctx.scope.clone(), req.name.clone()))
    {
        if existing.lb_type == lb_type && existing.scheme == scheme {
            return Ok((existing.clone(), Vec::new()));
        }
        return Err(ElbError::DuplicateLoadBalancerName(req.name));
    }
    if in_scope(&state.elb.load_balancers, &ctx.scope).count() >= MAX_LOAD_BALANCERS {
        return Err(ElbError::TooManyLoadBalancers);
    }
    let record = LoadBalancerRecord {
        scope: ctx.scope.clone(),
        name: req.name,
        id: new_id(ctx),
        lb_type,
        scheme,
        ip_address_type,
        vpc_id: (!req.subnets.is_empty()).then(|| "vpc-flotilla".to_owned()),
        subnets: req.subnets,
        security_groups: req.security_groups,
        created_time: ctx.now,
        tags: req.tags,
    };
    Ok((
        record.clone(),
        vec![Change::Put(Record::LoadBalancer(record))],
    ))
}

/// DescribeLoadBalancers' input.
#[derive(Debug, Clone, Default)]
pub struct DescribeLoadBalancers {
    /// `LoadBalancerArns`.
    pub arns: Vec<String>,
    /// `Names`.
    pub names: Vec<String>,
    /// `Marker`.
    pub marker: Option<String>,
    /// `PageSize`.
    pub page_size: Option<i64>,
}

/// A page of load balancers and the next page's marker.
#[derive(Debug, Clone, Default)]
pub struct LoadBalancerPage {
    /// The load balancers, by name.
    pub load_balancers: Vec<LoadBalancerRecord>,
    /// `NextMarker`.
    pub next_marker: Option<String>,
}

/// DescribeLoadBalancers: the named ones (every one must exist), or a page of all.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: DescribeLoadBalancers,
) -> Result<LoadBalancerPage, ElbError> {
    let size = page_size(req.page_size)?;
    if !req.arns.is_empty() && !req.names.is_empty() {
        return Err(validation(
            "Specify either LoadBalancerArns or Names, not both",
        ));
    }
    if req.arns.len() > MAX_DESCRIBE_NAMES || req.names.len() > MAX_DESCRIBE_NAMES {
        return Err(validation(format!(
            "At most {MAX_DESCRIBE_NAMES} load balancers can be named"
        )));
    }
    let items: Vec<(String, LoadBalancerRecord)> = if !req.arns.is_empty() {
        let mut out = Vec::new();
        for arn in &req.arns {
            let lb = load_balancer_by_arn(state, scope, arn)?;
            out.push((lb.name.clone(), lb.clone()));
        }
        out
    } else if !req.names.is_empty() {
        let mut out = Vec::new();
        for name in &req.names {
            let lb = state
                .elb
                .load_balancers
                .get(&(scope.clone(), name.clone()))
                .ok_or(ElbError::LoadBalancerNotFound)?;
            out.push((lb.name.clone(), lb.clone()));
        }
        out
    } else {
        in_scope(&state.elb.load_balancers, scope)
            .map(|lb| (lb.name.clone(), lb.clone()))
            .collect()
    };
    let (load_balancers, next_marker) = page(items, req.marker.as_deref(), size);
    Ok(LoadBalancerPage {
        load_balancers,
        next_marker,
    })
}

/// DeleteLoadBalancer: the load balancer with its listeners and their rules. Deleting
/// one that does not exist succeeds, as in AWS.
pub fn delete(state: &State, ctx: &mut Ctx, arn: String) -> ElbWritten<()> {
    let lb = match load_balancer_by_arn(state, &ctx.scope, &arn) {
        Ok(lb) => lb,
        Err(ElbError::LoadBalancerNotFound) => return Ok(((), Vec::new())),
        Err(e) => return Err(e),
    };
    let mut changes = Vec::new();
    for l in in_scope(&state.elb.listeners, &ctx.scope).filter(|l| l.lb_id == lb.id) {
        for r in in_scope(&state.elb.rules, &ctx.scope).filter(|r| r.listener_id == l.id) {
            changes.push(Change::Delete(Record::ListenerRule(r.clone())));
        }
        changes.push(Change::Delete(Record::Listener(l.clone())));
    }
    changes.push(Change::Delete(Record::LoadBalancer(lb.clone())));
    Ok(((), changes))
}
