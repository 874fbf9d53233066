//! AddTags, RemoveTags, DescribeTags on load balancers, target groups, listeners and
//! rules.

use super::{
    ElbArn, ElbError, ElbResource, ElbWritten, MAX_DESCRIBE_NAMES, RuleRef, invalid_arn,
    listener_by_arn, load_balancer_by_arn, rule_by_arn, target_group_by_arn, validate_tags,
    validation,
};
use crate::Ctx;
use crate::state::elb::ElbTag;
use crate::state::{Change, Record, Scope, State};

/// The record an ARN names, as a [`Record`] whose tags can be edited.
fn lookup(state: &State, scope: &Scope, arn: &str) -> Result<Record, ElbError> {
    let parsed = ElbArn::parse(arn).ok_or_else(|| invalid_arn("resource", arn))?;
    Ok(match parsed.resource {
        ElbResource::LoadBalancer { .. } => {
            Record::LoadBalancer(load_balancer_by_arn(state, scope, arn)?.clone())
        }
        ElbResource::TargetGroup { .. } => {
            Record::TargetGroup(target_group_by_arn(state, scope, arn)?.clone())
        }
        ElbResource::Listener { .. } => {
            Record::Listener(listener_by_arn(state, scope, arn)?.clone())
        }
        ElbResource::Rule { .. } => match rule_by_arn(state, scope, arn)? {
            RuleRef::Rule(r, _) => Record::ListenerRule(r.clone()),
            RuleRef::Default(_) => {
                return Err(validation("Default rules cannot be tagged"));
            }
        },
    })
}

fn tags_of(record: &mut Record) -> &mut Vec<ElbTag> {
    match record {
        Record::LoadBalancer(r) => &mut r.tags,
        Record::TargetGroup(r) => &mut r.tags,
        Record::Listener(r) => &mut r.tags,
        Record::ListenerRule(r) => &mut r.tags,
        other => unreachable!(
            "lookup returns ELBv2 records only, not {}",
            other.store_key()
        ),
    }
}

fn check_arns(arns: &[String]) -> Result<(), ElbError> {
    if arns.is_empty() || arns.len() > MAX_DESCRIBE_NAMES {
        return Err(validation(format!(
            "ResourceArns must name 1 to {MAX_DESCRIBE_NAMES} resources"
        )));
    }
    Ok(())
}

/// AddTags: adds or overwrites tags on every named resource.
pub fn add(
    state: &State,
    ctx: &mut Ctx,
    (arns, tags): (Vec<String>, Vec<ElbTag>),
) -> ElbWritten<()> {
    check_arns(&arns)?;
    if tags.is_empty() {
        return Err(validation("Tags must name at least one tag"));
    }
    validate_tags(&tags)?;
    let mut changes = Vec::new();
    for arn in &arns {
        let mut record = lookup(state, &ctx.scope, arn)?;
        let current = tags_of(&mut record);
        for t in &tags {
            match current.iter_mut().find(|c| c.key == t.key) {
                Some(c) => c.value = t.value.clone(),
                None => current.push(t.clone()),
            }
        }
        validate_tags(current)?;
        changes.push(Change::Put(record));
    }
    Ok(((), changes))
}

/// RemoveTags: removes the keys from every named resource.
pub fn remove(
    state: &State,
    ctx: &mut Ctx,
    (arns, keys): (Vec<String>, Vec<String>),
) -> ElbWritten<()> {
    check_arns(&arns)?;
    let mut changes = Vec::new();
    for arn in &arns {
        let mut record = lookup(state, &ctx.scope, arn)?;
        tags_of(&mut record).retain(|t| !keys.contains(&t.key));
        changes.push(Change::Put(record));
    }
    Ok(((), changes))
}

/// DescribeTags: each named resource's tags, in the order named.
pub fn describe(
    state: &State,
    scope: &Scope,
    arns: Vec<String>,
) -> Result<Vec<(String, Vec<ElbTag>)>, ElbError> {
    check_arns(&arns)?;
    let mut out = Vec::new();
    for arn in arns {
        let mut record = lookup(state, scope, &arn)?;
        let tags = tags_of(&mut record).clone();
        out.push((arn, tags));
    }
    Ok(out)
}
