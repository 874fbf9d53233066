//! Attributes of container instances: PutAttributes, DeleteAttributes, ListAttributes;
//! and evaluating cluster-query-language filters against an instance.

use std::collections::BTreeMap;

use model::wire;
use scheduler::query::{Query, QueryTarget};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::common::{active_cluster, check_len};
use crate::ops::instances::{MAX_CUSTOM_ATTRIBUTES, Usage, count_custom, find, validate_attribute};
use crate::paging::{PageRequest, paginate};
use crate::state::{Change, InstanceRecord, Record, Scope, State};

/// Parses a `filter`/`expression` with a message that names the field.
pub fn compile_filter(source: &str) -> Result<Query, EcsError> {
    Query::parse(source).map_err(|e| {
        invalid(format!(
            "filter {source:?} is not a valid cluster query: {e}"
        ))
    })
}

struct InstanceTarget<'a> {
    attributes: BTreeMap<&'a str, Option<&'a str>>,
    rec: &'a InstanceRecord,
    groups: Vec<&'a str>,
    running: u64,
}

impl QueryTarget for InstanceTarget<'_> {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).copied()
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.rec.instance.ec2_instance_id.as_deref()
    }
    fn agent_connected(&self) -> bool {
        self.rec.instance.agent_connected.unwrap_or(false)
    }
    fn agent_version(&self) -> Option<&str> {
        self.rec
            .instance
            .version_info
            .as_ref()
            .and_then(|v| v.agent_version.as_deref())
    }
    fn registered_at(&self) -> Option<i64> {
        #[allow(clippy::cast_possible_truncation)]
        self.rec.instance.registered_at.map(|t| t as i64)
    }
    fn running_tasks_count(&self) -> u64 {
        self.running
    }
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.groups.iter().any(|g| pred(g))
    }
}

/// Whether an instance satisfies a compiled filter.
pub fn instance_matches(
    state: &State,
    rec: &InstanceRecord,
    usage: Option<&Usage>,
    query: &Query,
) -> bool {
    let attributes = rec
        .instance
        .attributes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|a| Some((a.name.as_deref()?, a.value.as_deref())))
        .collect();
    let groups = if query.depends_on_tasks() {
        state
            .tasks_in(&rec.scope, &rec.cluster)
            .filter(|t| {
                t.instance_id.as_deref() == Some(rec.id.as_str())
                    && t.task.last_status.as_deref() != Some("STOPPED")
            })
            .filter_map(|t| t.task.group.as_deref())
            .collect()
    } else {
        Vec::new()
    };
    let running = usage.map_or(0, |u| u64::try_from(u.running).unwrap_or(0));
    query.matches(&InstanceTarget {
        attributes,
        rec,
        groups,
        running,
    })
}

fn target_instance<'a>(
    state: &'a State,
    scope: &Scope,
    cluster: &str,
    a: &wire::Attribute,
) -> Result<&'a InstanceRecord, EcsError> {
    if a.target_type
        .is_some_and(|t| t != wire::TargetType::ContainerInstance)
    {
        return Err(invalid(
            "attributes[].targetType must be container-instance.",
        ));
    }
    let target = a
        .target_id
        .as_deref()
        .ok_or_else(|| invalid("attributes[].targetId is required."))?;
    find(state, scope, cluster, target)
        .filter(|r| r.instance.status.as_deref() != Some("INACTIVE"))
        .ok_or_else(|| {
            EcsError::TargetNotFound(format!(
                "attributes[].targetId {target} could not be found in the cluster."
            ))
        })
}

fn shown(a: &wire::Attribute, rec: &InstanceRecord) -> wire::Attribute {
    wire::Attribute {
        name: a.name.clone(),
        value: a.value.clone(),
        target_type: Some(wire::TargetType::ContainerInstance),
        target_id: rec.instance.container_instance_arn.clone(),
    }
}

fn edit_attributes(
    state: &State,
    ctx: &Ctx,
    cluster: Option<&str>,
    attributes: Option<Vec<wire::Attribute>>,
    mut edit: impl FnMut(&mut Vec<wire::Attribute>, &wire::Attribute),
) -> Result<(Vec<wire::Attribute>, Vec<Change>), EcsError> {
    let cluster = active_cluster(state, &ctx.scope, cluster)?;
    let attributes = attributes.ok_or_else(|| invalid("attributes is required."))?;
    check_len(&attributes, 10, "attributes")?;
    let mut edited: BTreeMap<String, InstanceRecord> = BTreeMap::new();
    let mut out = Vec::new();
    for a in &attributes {
        let rec = target_instance(state, &ctx.scope, &cluster.name, a)?;
        let rec = edited.entry(rec.id.clone()).or_insert_with(|| rec.clone());
        edit(rec.instance.attributes.get_or_insert_with(Vec::new), a);
        out.push(shown(a, rec));
    }
    let mut changes = Vec::new();
    for (_, mut rec) in edited {
        if count_custom(rec.instance.attributes.as_deref().unwrap_or(&[])) > MAX_CUSTOM_ATTRIBUTES {
            return Err(EcsError::AttributeLimitExceeded(format!(
                "You can apply up to {MAX_CUSTOM_ATTRIBUTES} custom attributes for each resource."
            )));
        }
        rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
        changes.push(Change::Put(Record::Instance(rec)));
    }
    Ok((out, changes))
}

/// PutAttributes: adds or replaces attributes on container instances.
pub fn put(
    state: &State,
    ctx: &mut Ctx,
    req: wire::PutAttributesRequest,
) -> Written<wire::PutAttributesResponse> {
    for a in req.attributes.as_deref().unwrap_or(&[]) {
        validate_attribute(a)?;
    }
    let (attributes, changes) = edit_attributes(
        state,
        ctx,
        req.cluster.as_deref(),
        req.attributes,
        |list, a| {
            list.retain(|x| x.name != a.name);
            list.push(wire::Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
                ..Default::default()
            });
        },
    )?;
    Ok((
        wire::PutAttributesResponse {
            attributes: Some(attributes),
        },
        changes,
    ))
}

/// DeleteAttributes: removes attributes (by name) from container instances.
pub fn delete(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeleteAttributesRequest,
) -> Written<wire::DeleteAttributesResponse> {
    let (attributes, changes) = edit_attributes(
        state,
        ctx,
        req.cluster.as_deref(),
        req.attributes,
        |list, a| {
            list.retain(|x| x.name != a.name);
        },
    )?;
    Ok((
        wire::DeleteAttributesResponse {
            attributes: Some(attributes),
        },
        changes,
    ))
}

/// ListAttributes: the attributes of a cluster's container instances, optionally of
/// one name (and value).
pub fn list(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListAttributesRequest,
) -> Result<wire::ListAttributesResponse, EcsError> {
    let cluster = active_cluster(state, scope, req.cluster.as_deref())?;
    if req.target_type != Some(wire::TargetType::ContainerInstance) {
        return Err(invalid(
            "targetType is required and must be container-instance.",
        ));
    }
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(invalid(
            "attributeValue can only be given together with attributeName.",
        ));
    }
    let mut items = Vec::new();
    for rec in state.instances_in(scope, &cluster.name) {
        if rec.instance.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        for a in rec.instance.attributes.as_deref().unwrap_or(&[]) {
            if req
                .attribute_name
                .as_ref()
                .is_some_and(|n| a.name.as_ref() != Some(n))
            {
                continue;
            }
            if req
                .attribute_value
                .as_ref()
                .is_some_and(|v| a.value.as_ref() != Some(v))
            {
                continue;
            }
            let key = format!("{}\u{0}{}", rec.id, a.name.as_deref().unwrap_or(""));
            items.push((key, shown(a, rec)));
        }
    }
    let filters = format!(
        "{}|{}|{}",
        cluster.name,
        req.attribute_name.as_deref().unwrap_or(""),
        req.attribute_value.as_deref().unwrap_or("")
    );
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListAttributes",
            &filters,
            req.max_results,
            req.next_token.as_deref(),
        ),
        items,
    )?;
    Ok(wire::ListAttributesResponse {
        attributes: Some(page.items),
        next_token: page.next_token,
    })
}
