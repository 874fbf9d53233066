//! Tags on every taggable resource: TagResource, UntagResource, ListTagsForResource.

use model::arn::{Arn, ResourceType};
use model::status::ClusterStatus;
use model::wire;

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::common::{merge_tags, validate_tags};
use crate::state::{Change, MemberKey, Record, Scope, ServiceKey, State, TaskRecord};

fn not_found() -> EcsError {
    EcsError::ResourceNotFound("The specified resource could not be found.".into())
}

/// The record an ARN names, as a [`Record`] so its tags can be edited generically.
fn lookup(state: &State, scope: &Scope, arn: &str) -> Result<Record, EcsError> {
    let parsed = Arn::parse(arn)
        .ok_or_else(|| invalid(format!("resourceArn {arn:?} is not a valid ECS ARN.")))?;
    if parsed.region != scope.region || parsed.account != scope.account {
        return Err(match parsed.resource_type {
            ResourceType::Cluster => EcsError::ClusterNotFound,
            _ => not_found(),
        });
    }
    let split2 = |r: &str| r.split_once('/').map(|(a, b)| (a.to_owned(), b.to_owned()));
    let r = parsed.resource.as_str();
    let found = match parsed.resource_type {
        ResourceType::Cluster => {
            return state
                .cluster(scope, r)
                .filter(|c| c.cluster.status() == Some(ClusterStatus::Active))
                .map(|c| Record::Cluster(c.clone()))
                .ok_or(EcsError::ClusterNotFound);
        }
        ResourceType::TaskDefinition => r.rsplit_once(':').and_then(|(f, rev)| {
            let rev: i32 = rev.parse().ok()?;
            state
                .task_definitions
                .get(&(scope.clone(), f.to_owned(), rev))
                .map(|t| Record::TaskDefinition(t.clone()))
        }),
        ResourceType::ContainerInstance => split2(r).and_then(|(c, id)| {
            state
                .instances
                .get(&MemberKey::new(scope, &c, &id))
                .map(|i| Record::Instance(i.clone()))
        }),
        ResourceType::Task => split2(r).and_then(|(c, id)| {
            state
                .tasks
                .get(&MemberKey::new(scope, &c, &id))
                .map(|t| Record::Task(TaskRecord::clone(t)))
        }),
        ResourceType::Service => split2(r).and_then(|(c, n)| {
            state
                .services
                .get(&ServiceKey::new(scope, &c, &n))
                .map(|s| Record::Service(s.clone()))
        }),
        ResourceType::CapacityProvider => state
            .capacity_providers
            .get(&(scope.clone(), r.to_owned()))
            .filter(|p| p.provider.status == Some(wire::CapacityProviderStatus::Active))
            .map(|p| Record::CapacityProvider(p.clone())),
        ResourceType::TaskSet | ResourceType::Container => None,
    };
    found.ok_or_else(not_found)
}

fn tags_of(record: &mut Record) -> Result<&mut Vec<wire::Tag>, EcsError> {
    Ok(match record {
        Record::Cluster(c) => c.cluster.tags.get_or_insert_with(Vec::new),
        Record::TaskDefinition(t) => &mut t.tags,
        Record::Instance(i) => i.instance.tags.get_or_insert_with(Vec::new),
        Record::Task(t) => t.task.tags.get_or_insert_with(Vec::new),
        Record::Service(s) => s.service.tags.get_or_insert_with(Vec::new),
        Record::CapacityProvider(p) => p.provider.tags.get_or_insert_with(Vec::new),
        Record::Setting(_)
        | Record::Meta(_)
        | Record::Discovery(_)
        | Record::LoadBalancer(_)
        | Record::TargetGroup(_)
        | Record::Listener(_)
        | Record::ListenerRule(_)
        | Record::ServiceDeployment(_)
        | Record::ServiceRevision(_) => {
            return Err(invalid("This resource cannot be tagged."));
        }
    })
}

/// TagResource: adds or overwrites tags.
pub fn tag_resource(
    state: &State,
    ctx: &mut Ctx,
    req: wire::TagResourceRequest,
) -> Written<wire::TagResourceResponse> {
    let arn = req
        .resource_arn
        .ok_or_else(|| invalid("resourceArn is required."))?;
    let new = req.tags.ok_or_else(|| invalid("tags is required."))?;
    validate_tags(&new)?;
    let mut record = lookup(state, &ctx.scope, &arn)?;
    let tags = tags_of(&mut record)?;
    let merged = merge_tags(tags, &new);
    validate_tags(&merged)?;
    *tags = merged;
    Ok((wire::TagResourceResponse {}, vec![Change::Put(record)]))
}

/// UntagResource: removes tags by key (absent keys are ignored).
pub fn untag_resource(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UntagResourceRequest,
) -> Written<wire::UntagResourceResponse> {
    let arn = req
        .resource_arn
        .ok_or_else(|| invalid("resourceArn is required."))?;
    let keys = req
        .tag_keys
        .ok_or_else(|| invalid("tagKeys is required."))?;
    let mut record = lookup(state, &ctx.scope, &arn)?;
    tags_of(&mut record)?.retain(|t| !t.key.as_ref().is_some_and(|k| keys.contains(k)));
    Ok((wire::UntagResourceResponse {}, vec![Change::Put(record)]))
}

/// ListTagsForResource.
pub fn list_tags_for_resource(
    state: &State,
    scope: &Scope,
    req: wire::ListTagsForResourceRequest,
) -> Result<wire::ListTagsForResourceResponse, EcsError> {
    let arn = req
        .resource_arn
        .ok_or_else(|| invalid("resourceArn is required."))?;
    // ListTagsForResource declares no ResourceNotFoundException (TagResource and
    // UntagResource do): an ARN naming nothing is a bad parameter here.
    let mut record = lookup(state, scope, &arn).map_err(|e| match e {
        EcsError::ResourceNotFound(_) => {
            invalid(format!("resourceArn {arn:?} names no existing resource."))
        }
        other => other,
    })?;
    Ok(wire::ListTagsForResourceResponse {
        tags: Some(tags_of(&mut record)?.clone()),
    })
}
