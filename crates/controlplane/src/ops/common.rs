//! Helpers every area shares: resolving identifiers (names, ids, ARNs) and checking tags.

use model::arn::{Arn, ResourceType, is_arn};
use model::status::ClusterStatus;
use model::wire;

use crate::error::{EcsError, invalid};
use crate::state::{ClusterRecord, Scope, State};

/// The cluster ECS uses when a request names none.
pub const DEFAULT_CLUSTER: &str = "default";

/// Whether `s` is 1–255 letters, digits, hyphens and underscores (cluster, family and
/// service names).
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses an ARN and checks it is of `kind` and in `scope`.
pub fn parse_arn_in_scope(s: &str, kind: ResourceType, scope: &Scope) -> Option<Arn> {
    let arn = Arn::parse(s)?;
    (arn.resource_type == kind && arn.region == scope.region && arn.account == scope.account)
        .then_some(arn)
}

/// The cluster name a request's `cluster` member names (a name or an ARN; none means
/// `default`). A malformed or foreign ARN names no cluster.
pub fn cluster_name(scope: &Scope, ident: Option<&str>) -> Result<String, EcsError> {
    let ident = ident.unwrap_or(DEFAULT_CLUSTER);
    if is_arn(ident) {
        return parse_arn_in_scope(ident, ResourceType::Cluster, scope)
            .map(|a| a.resource)
            .ok_or(EcsError::ClusterNotFound);
    }
    Ok(ident.to_owned())
}

/// The ACTIVE cluster a request names, or `ClusterNotFoundException`.
pub fn active_cluster<'a>(
    state: &'a State,
    scope: &Scope,
    ident: Option<&str>,
) -> Result<&'a ClusterRecord, EcsError> {
    let name = cluster_name(scope, ident)?;
    match state.cluster(scope, &name) {
        Some(c) if c.cluster.status() == Some(ClusterStatus::Active) => Ok(c),
        _ => Err(EcsError::ClusterNotFound),
    }
}

/// The id of a task or container instance named by id or ARN
/// (`…:task/<cluster>/<id>`; the old `…:task/<id>` form is accepted too). Returns the
/// cluster the ARN names, if it names one.
pub fn member_id(
    scope: &Scope,
    kind: ResourceType,
    ident: &str,
) -> Option<(Option<String>, String)> {
    if !is_arn(ident) {
        let ok = !ident.is_empty()
            && ident.len() <= 64
            && ident
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        return ok.then(|| (None, ident.to_owned()));
    }
    let arn = parse_arn_in_scope(ident, kind, scope)?;
    match arn.resource.split_once('/') {
        Some((cluster, id)) => Some((Some(cluster.to_owned()), id.to_owned())),
        None => Some((None, arn.resource.clone())),
    }
}

/// ECS's tag rules: at most 50 per resource, keys 1–128 and values 0–256 characters,
/// and the `aws:` prefix reserved.
pub fn validate_tags(tags: &[wire::Tag]) -> Result<(), EcsError> {
    if tags.len() > 50 {
        return Err(invalid(
            "Too many tags: a resource can have at most 50 tags.",
        ));
    }
    for t in tags {
        if let Some(problem) = tag_problem(t.key.as_deref(), t.value.as_deref(), false) {
            return Err(invalid(problem));
        }
    }
    Ok(())
}

/// What is wrong with one tag, if anything, by the rules every AWS API here shares:
/// a key of 1–128 characters not starting with `aws:`, a value of at most 256
/// characters (required when `value_required`).
pub fn tag_problem(key: Option<&str>, value: Option<&str>, value_required: bool) -> Option<String> {
    let key = key.unwrap_or("");
    if key.is_empty() || key.chars().count() > 128 {
        return Some("Tag keys must be between 1 and 128 characters long.".to_owned());
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Some(format!("Tag key {key:?} uses the reserved prefix 'aws:'."));
    }
    match value {
        None if value_required => Some(format!("Tag {key:?} has no Value.")),
        Some(v) if v.chars().count() > 256 => Some(format!(
            "The value of tag {key:?} is longer than 256 characters."
        )),
        _ => None,
    }
}

/// `existing` with `new` merged in (a key present in both takes the new value).
pub fn merge_tags(existing: &[wire::Tag], new: &[wire::Tag]) -> Vec<wire::Tag> {
    let mut out: Vec<wire::Tag> = existing
        .iter()
        .filter(|t| !new.iter().any(|n| n.key == t.key))
        .cloned()
        .collect();
    out.extend(new.iter().cloned());
    out
}

/// Checks a count of items against ECS's limit for a list member.
pub fn check_len<T>(items: &[T], max: usize, field: &str) -> Result<(), EcsError> {
    if items.len() > max {
        return Err(invalid(format!(
            "{field} can have at most {max} items, got {}.",
            items.len()
        )));
    }
    Ok(())
}

/// The `failures[]` entry of a Describe* for an identifier that names nothing: reason
/// MISSING, with the ARN as given, or the ARN the resource would have (`resource` is
/// the part after `<kind>/`, e.g. `<cluster>/<id>`).
pub fn missing(
    scope: &Scope,
    ident: String,
    kind: ResourceType,
    resource: impl FnOnce(&str) -> String,
) -> wire::Failure {
    wire::Failure {
        arn: Some(if is_arn(&ident) {
            ident
        } else {
            scope.arn(kind, resource(&ident))
        }),
        reason: Some("MISSING".into()),
        detail: None,
    }
}
