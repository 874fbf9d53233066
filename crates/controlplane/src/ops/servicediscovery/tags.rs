//! Tags of namespaces and services: TagResource, UntagResource, ListTagsForResource.

use model::wire_sd;

use super::{MAX_TAGS, SdError, SdWritten, invalid, put, required};
use crate::engine::Ctx;
use crate::ops::common::tag_problem;
use crate::state::{DiscoveryRecord, Scope, State};

/// Cloud Map's tag rules: at most [`MAX_TAGS`], keys of 1–128 and values of at most 256
/// characters, the `aws:` prefix reserved.
pub fn validate(tags: &[wire_sd::Tag]) -> Result<(), SdError> {
    if tags.len() > MAX_TAGS {
        return Err(SdError::TooManyTags(format!(
            "A resource can have at most {MAX_TAGS} tags."
        )));
    }
    for t in tags {
        if let Some(problem) = tag_problem(t.key.as_deref(), t.value.as_deref(), true) {
            return Err(invalid(problem));
        }
    }
    Ok(())
}

/// The namespace or service an ARN names, as a record whose tags can be edited.
fn lookup(state: &State, scope: &Scope, arn: &str) -> Result<DiscoveryRecord, SdError> {
    let not_found = || SdError::ResourceNotFound(format!("Resource not found: {arn}"));
    if let Some(id) = arn.strip_prefix(&super::arn(scope, "namespace", "")) {
        return state
            .discovery
            .namespace(scope, id)
            .map(|n| DiscoveryRecord::Namespace(n.clone()))
            .ok_or_else(not_found);
    }
    if let Some(id) = arn.strip_prefix(&super::arn(scope, "service", "")) {
        return state
            .discovery
            .service(scope, id)
            .map(|s| DiscoveryRecord::Service(s.clone()))
            .ok_or_else(not_found);
    }
    if arn.starts_with("arn:") {
        Err(not_found())
    } else {
        Err(invalid(format!(
            "ResourceARN {arn:?} is not a Cloud Map ARN."
        )))
    }
}

fn tags_of(r: &mut DiscoveryRecord) -> Result<&mut Vec<wire_sd::Tag>, SdError> {
    match r {
        DiscoveryRecord::Namespace(n) => Ok(&mut n.tags),
        DiscoveryRecord::Service(s) => Ok(&mut s.tags),
        DiscoveryRecord::Instance(_)
        | DiscoveryRecord::Operation(_)
        | DiscoveryRecord::Anywhere(_)
        | DiscoveryRecord::CloudWatch(_)
        | DiscoveryRecord::Acm(_) => Err(invalid("Only namespaces and services can be tagged.")),
    }
}

/// TagResource: adds or overwrites tags.
pub fn tag_resource(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::TagResourceRequest,
) -> SdWritten<wire_sd::TagResourceResponse> {
    let arn = required(req.resource_arn, "ResourceARN")?;
    let new = required(req.tags, "Tags")?;
    validate(&new)?;
    let mut record = lookup(state, &ctx.scope, &arn)?;
    let tags = tags_of(&mut record)?;
    tags.retain(|t| !new.iter().any(|n| n.key == t.key));
    tags.extend(new);
    validate(tags)?;
    Ok((wire_sd::TagResourceResponse {}, vec![put(record)]))
}

/// UntagResource: removes tags by key (absent keys are ignored).
pub fn untag_resource(
    state: &State,
    ctx: &mut Ctx,
    req: wire_sd::UntagResourceRequest,
) -> SdWritten<wire_sd::UntagResourceResponse> {
    let arn = required(req.resource_arn, "ResourceARN")?;
    let keys = required(req.tag_keys, "TagKeys")?;
    let mut record = lookup(state, &ctx.scope, &arn)?;
    tags_of(&mut record)?.retain(|t| !t.key.as_ref().is_some_and(|k| keys.contains(k)));
    Ok((wire_sd::UntagResourceResponse {}, vec![put(record)]))
}

/// ListTagsForResource.
pub fn list_tags_for_resource(
    state: &State,
    scope: &Scope,
    req: wire_sd::ListTagsForResourceRequest,
) -> Result<wire_sd::ListTagsForResourceResponse, SdError> {
    let arn = required(req.resource_arn, "ResourceARN")?;
    let mut record = lookup(state, scope, &arn)?;
    Ok(wire_sd::ListTagsForResourceResponse {
        tags: Some(tags_of(&mut record)?.clone()),
    })
}
