//! Attributes of container instances: PutAttributes, DeleteAttributes, ListAttributes;
//! and evaluating cluster-query-language filters against an instance.

use std::collections::BTreeMap;

use model::lifecycle::TaskStatus;
use model::status::InstanceStatus;
use model::wire;
use scheduler::query::{MAX_EXPRESSION_LEN, Query, QueryTarget};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::common::{active_cluster, check_len};
use crate::ops::instances::{MAX_CUSTOM_ATTRIBUTES, Usage, count_custom, find, validate_attribute};
use crate::paging::{PageRequest, paginate};
use crate::state::{Change, InstanceRecord, MemberKey, Record, Scope, State};

/// Most levels a cluster-query expression may nest: `(`s and `not`/`!` prefixes that
/// are open at once. The query parser recurses once (or three times, for a `(`) per
/// level, so without a bound a 2000-byte expression of `(`s or `!`s overflows a
/// worker thread's stack and aborts the server; real expressions nest a few levels.
pub const MAX_QUERY_NESTING: usize = 32;

/// An upper bound of how deeply `source` nests (see [`MAX_QUERY_NESTING`]): open
/// parentheses plus the `not`/`!` prefixes waiting for their operand in every open
/// parenthesis. Quoted values are skipped; `!=` and `!~` are operators, not prefixes.
/// It may count an operator such as `!in` as a prefix, never the other way round.
pub fn query_nesting(source: &str) -> usize {
    let bytes = source.as_bytes();
    // Prefixes pending in each open parenthesis (and their sum), and in the current one.
    let (mut open, mut open_sum, mut pending, mut max) = (Vec::new(), 0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => {
                open.push(pending);
                open_sum += pending;
                pending = 0;
            }
            b')' => {
                // The parenthesis was the operand of the prefixes before it.
                open_sum -= open.pop().unwrap_or(0);
                pending = 0;
            }
            b'!' if !matches!(bytes.get(i + 1), Some(b'=' | b'~')) => pending += 1,
            q @ (b'"' | b'\'') => {
                let end = bytes[i + 1..].iter().position(|b| *b == q);
                i = end.map_or(bytes.len(), |e| i + 1 + e);
                pending = 0;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' => {
                let start = i;
                while i + 1 < bytes.len()
                    && (bytes[i + 1].is_ascii_alphanumeric() || bytes[i + 1] == b'_')
                {
                    i += 1;
                }
                let word = &source[start..=i];
                if word.eq_ignore_ascii_case("not") {
                    pending += 1;
                } else if !["and", "or", "in", "exists"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    pending = 0;
                }
            }
            _ => {}
        }
        max = max.max(open.len() + open_sum + pending);
        i += 1;
    }
    max
}

/// Parses a `filter`/`expression` with a message that names the field; refuses one
/// nested deeper than [`MAX_QUERY_NESTING`] before it reaches the recursive parser.
pub fn compile_filter(source: &str) -> Result<Query, EcsError> {
    compile_query("filter", source)
}

/// [`compile_filter`] for any member (`field` names it in the message, which quotes at
/// most the first 100 characters of the expression).
pub fn compile_query(field: &str, source: &str) -> Result<Query, EcsError> {
    let shown: String = source.chars().take(100).collect();
    let shown = if shown.len() < source.len() {
        format!("{shown:?}…")
    } else {
        format!("{shown:?}")
    };
    // Longer expressions are refused by the parser before it recurses.
    let nesting = if source.len() <= MAX_EXPRESSION_LEN {
        query_nesting(source)
    } else {
        0
    };
    if nesting > MAX_QUERY_NESTING {
        return Err(invalid(format!(
            "{field} {shown} is not a valid cluster query: it nests {nesting} levels deep; the limit is {MAX_QUERY_NESTING}."
        )));
    }
    Query::parse(source)
        .map_err(|e| invalid(format!("{field} {shown} is not a valid cluster query: {e}")))
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
                    && t.task.last() != Some(TaskStatus::Stopped)
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
        .filter(|r| r.instance.status() != Some(InstanceStatus::Inactive))
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

/// Removes each of `attributes` (by name) from its container instance and, with `put`,
/// adds it back with its new value.
fn edit_attributes(
    state: &State,
    ctx: &Ctx,
    cluster: Option<&str>,
    attributes: Option<Vec<wire::Attribute>>,
    put: bool,
) -> Result<(Vec<wire::Attribute>, Vec<Change>), EcsError> {
    let cluster = active_cluster(state, &ctx.scope, cluster)?;
    let attributes = attributes.ok_or_else(|| invalid("attributes is required."))?;
    check_len(&attributes, 10, "attributes")?;
    let mut edited: BTreeMap<String, InstanceRecord> = BTreeMap::new();
    let mut out = Vec::new();
    for a in &attributes {
        let rec = target_instance(state, &ctx.scope, &cluster.name, a)?;
        let rec = edited.entry(rec.id.clone()).or_insert_with(|| rec.clone());
        let list = rec.instance.attributes.get_or_insert_with(Vec::new);
        list.retain(|x| x.name != a.name);
        if put {
            list.push(wire::Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
                ..Default::default()
            });
        }
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
    let (attributes, changes) =
        edit_attributes(state, ctx, req.cluster.as_deref(), req.attributes, true)?;
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
    let (attributes, changes) =
        edit_attributes(state, ctx, req.cluster.as_deref(), req.attributes, false)?;
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
    // The attributes of one instance that the filters select, keyed `<id>\0<name>`
    // (in key order: an instance's attributes sorted by name).
    let of_instance = |rec: &InstanceRecord| {
        let mut attrs: Vec<(String, wire::Attribute)> = rec
            .instance
            .attributes
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter(|a| {
                req.attribute_name
                    .as_ref()
                    .is_none_or(|n| a.name.as_ref() == Some(n))
                    && req
                        .attribute_value
                        .as_ref()
                        .is_none_or(|v| a.value.as_ref() == Some(v))
            })
            .map(|a| {
                let key = format!("{}\u{0}{}", rec.id, a.name.as_deref().unwrap_or(""));
                (key, shown(a, rec))
            })
            .collect();
        attrs.sort_by(|a, b| a.0.cmp(&b.0));
        attrs
    };
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
        // From the instance of the last key on (its attributes up to that key are
        // dropped by the page).
        |after| {
            let from = after
                .map(|k| k.split('\u{0}').next().unwrap_or(k))
                .unwrap_or("");
            let start = MemberKey::new(scope, &cluster.name, from);
            Ok(crate::paging::counted(state.instances.range(start..))
                .take_while(|(k, _)| k.scope == *scope && k.cluster == cluster.name)
                .map(|(_, rec)| rec)
                .filter(|rec| rec.instance.status() != Some(InstanceStatus::Inactive))
                .flat_map(of_instance))
        },
    )?;
    Ok(wire::ListAttributesResponse {
        attributes: Some(page.items),
        next_token: page.next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_open_parentheses_and_pending_prefixes() {
        assert_eq!(query_nesting("agentConnected == true"), 0);
        assert_eq!(query_nesting("(agentConnected == true)"), 1);
        assert_eq!(query_nesting("((a == b))"), 2);
        assert_eq!(query_nesting("not not not a == b"), 3);
        assert_eq!(query_nesting("!!a == b"), 2);
        // Flat expressions stay flat, however long.
        let flat = vec!["(attribute:a != b)"; 80].join(" and ");
        assert_eq!(query_nesting(&flat), 1);
        assert_eq!(query_nesting(&vec!["not a == b"; 100].join(" or ")), 1);
        // Operators are not prefixes; quoted values are skipped.
        assert_eq!(query_nesting("a != b and c !~ d*"), 0);
        assert_eq!(query_nesting("attribute:x == '((((((('"), 0);
        // Prefixes of an outer parenthesis stay pending inside it.
        assert_eq!(query_nesting("not (not (not (a == b)))"), 6);
        assert_eq!(
            query_nesting(&("(".repeat(900) + "a == b" + &")".repeat(900))),
            900
        );
        assert_eq!(query_nesting(&"!".repeat(1900)), 1900);
    }

    /// Fuzz finding: a filter of a few hundred `(` (or ~2000 `!`) within the 2000-byte
    /// expression limit overflowed the query parser's stack and aborted the server.
    #[test]
    fn deeply_nested_filters_are_refused_not_parsed() {
        for source in [
            "(".repeat(900) + "agentConnected == true" + &")".repeat(900),
            "!".repeat(1970) + "agentConnected == true",
            "not ".repeat(490) + "agentConnected == true",
            "!(".repeat(650) + "agentConnected == true" + &")".repeat(650),
        ] {
            let e = compile_filter(&source).unwrap_err();
            assert_eq!(e.code(), "InvalidParameterException");
            assert!(e.to_string().contains("nests"), "{e}");
            assert!(
                e.to_string().len() < 300,
                "the message quotes the whole filter: {e}"
            );
        }
        let ok = "(".repeat(MAX_QUERY_NESTING)
            + "agentConnected == true"
            + &")".repeat(MAX_QUERY_NESTING);
        assert!(compile_filter(&ok).is_ok());
        assert!(
            compile_filter(
                "not (attribute:ecs.instance-type =~ t3.* and !(runningTasksCount > 3))"
            )
            .is_ok()
        );
    }

    #[test]
    fn a_long_filter_is_quoted_shortly() {
        let e = compile_filter(&"x".repeat(100_000)).unwrap_err();
        assert!(e.to_string().len() < 300, "{e}");
    }
}
