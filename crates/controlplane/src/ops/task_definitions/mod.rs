//! Task definitions: RegisterTaskDefinition, DeregisterTaskDefinition,
//! DeleteTaskDefinitions, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies; and what a definition reserves on an instance.
//! [`validate`] holds RegisterTaskDefinition's checks.

use model::arn::{ResourceType, is_arn};
use model::size;
use model::wire::{self, Compatibility, NetworkMode, TaskDefinitionStatus};

mod validate;

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, client, invalid};
use crate::ops::common::{check_len, parse_arn_in_scope, validate_tags};
use crate::paging::{PageRequest, counted, counted_in_order, paginate};
use crate::state::{Change, Record, Scope, State, TaskDefinitionRecord};
use scheduler::snapshot::HostPort;

/// Finds a task definition named by `family` (latest ACTIVE revision), `family:revision`
/// or ARN.
pub fn resolve<'a>(
    state: &'a State,
    scope: &Scope,
    ident: &str,
) -> Option<&'a TaskDefinitionRecord> {
    let family_rev = if is_arn(ident) {
        parse_arn_in_scope(ident, ResourceType::TaskDefinition, scope)?.resource
    } else {
        ident.to_owned()
    };
    match family_rev.rsplit_once(':') {
        Some((family, rev)) => {
            let rev: i32 = rev.parse().ok()?;
            state
                .task_definitions
                .get(&(scope.clone(), family.to_owned(), rev))
        }
        None => state
            .revisions(scope, &family_rev)
            .filter(|r| r.definition.status == Some(TaskDefinitionStatus::Active))
            .last(),
    }
}

/// The network mode of a definition (`bridge` when it names none, as on EC2).
pub fn network_mode(def: &wire::TaskDefinition) -> NetworkMode {
    def.network_mode.unwrap_or(NetworkMode::Bridge)
}

/// What one task of a definition reserves: (cpu units, memory MiB).
pub fn reservation(def: &wire::TaskDefinition) -> (i64, i64) {
    let containers = def.container_definitions.as_deref().unwrap_or(&[]);
    let cpu = def
        .cpu
        .as_deref()
        .and_then(|c| size::parse_cpu(c).ok())
        .map_or_else(
            || {
                containers
                    .iter()
                    .map(|c| i64::from(c.cpu.unwrap_or(0)))
                    .sum()
            },
            i64::from,
        );
    let memory = def
        .memory
        .as_deref()
        .and_then(|m| size::parse_memory(m).ok())
        .map_or_else(
            || {
                containers
                    .iter()
                    .map(|c| i64::from(c.memory.or(c.memory_reservation).unwrap_or(0)))
                    .sum()
            },
            i64::from,
        );
    (cpu, memory)
}

/// Host ports a task of this definition binds: (static ports, protocols of the
/// dynamic ones, in port-mapping order).
pub fn host_ports(def: &wire::TaskDefinition) -> (Vec<HostPort>, Vec<wire::TransportProtocol>) {
    let mode = network_mode(def);
    let (mut fixed, mut dynamic) = (Vec::new(), Vec::new());
    if matches!(mode, NetworkMode::None | NetworkMode::Awsvpc) {
        return (fixed, dynamic);
    }
    for c in def.container_definitions.as_deref().unwrap_or(&[]) {
        for pm in c.port_mappings.as_deref().unwrap_or(&[]) {
            let protocol = pm.protocol.unwrap_or(wire::TransportProtocol::Tcp);
            let host = if mode == NetworkMode::Host {
                pm.container_port
            } else {
                pm.host_port
            };
            match host.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
                Some(port) => fixed.push(HostPort { port, protocol }),
                None => dynamic.push(protocol),
            }
        }
    }
    (fixed, dynamic)
}

/// RegisterTaskDefinition: validates, normalises and stores a new revision.
pub fn register(
    state: &State,
    ctx: &mut Ctx,
    mut req: wire::RegisterTaskDefinitionRequest,
) -> Written<wire::RegisterTaskDefinitionResponse> {
    let (cpu, memory) = validate::validate_definition(&mut req)?;
    let tags = req.tags.take().unwrap_or_default();
    validate_tags(&tags)?;
    let family = req.family.clone().unwrap_or_default();
    let revision = state
        .revisions(&ctx.scope, &family)
        .map(|r| r.revision)
        .max()
        .unwrap_or(0)
        + 1;
    let mode = req.network_mode.unwrap_or(NetworkMode::Bridge);
    let requires = req.requires_compatibilities.clone().unwrap_or_default();
    let mut compatibilities = vec![Compatibility::Ec2, Compatibility::External];
    let fargate_ok = mode == NetworkMode::Awsvpc
        && matches!((&cpu, &memory), (Some(c), Some(m)) if size::check_fargate(c.parse().unwrap_or(0), m.parse().unwrap_or(0)).is_ok());
    if fargate_ok {
        compatibilities.push(Compatibility::Fargate);
    }
    let definition = wire::TaskDefinition {
        task_definition_arn: Some(
            ctx.arn(ResourceType::TaskDefinition, format!("{family}:{revision}")),
        ),
        container_definitions: req.container_definitions,
        family: Some(family.clone()),
        task_role_arn: req.task_role_arn,
        execution_role_arn: req.execution_role_arn,
        network_mode: Some(mode),
        revision: Some(revision),
        volumes: Some(req.volumes.unwrap_or_default()),
        status: Some(TaskDefinitionStatus::Active),
        requires_attributes: Some(vec![]),
        placement_constraints: Some(req.placement_constraints.unwrap_or_default()),
        compatibilities: Some(compatibilities),
        runtime_platform: req.runtime_platform,
        requires_compatibilities: (!requires.is_empty()).then_some(requires),
        cpu,
        memory,
        inference_accelerators: req.inference_accelerators,
        pid_mode: req.pid_mode,
        ipc_mode: req.ipc_mode,
        proxy_configuration: req.proxy_configuration,
        registered_at: Some(ctx.now),
        registered_by: Some(format!("arn:aws:iam::{}:root", ctx.scope.account)),
        ephemeral_storage: req.ephemeral_storage,
        enable_fault_injection: req.enable_fault_injection,
        ..Default::default()
    };
    let rec = TaskDefinitionRecord {
        scope: ctx.scope.clone(),
        family,
        revision,
        definition: definition.clone(),
        tags: tags.clone(),
    };
    Ok((
        wire::RegisterTaskDefinitionResponse {
            task_definition: Some(definition),
            // As on ECS, the answer has `tags` only when the definition has some.
            tags: (!tags.is_empty()).then_some(tags),
        },
        vec![Change::Put(Record::TaskDefinition(rec))],
    ))
}

fn not_found() -> EcsError {
    client("Unable to describe task definition.")
}

/// Why [`resolve_revision`] found nothing.
enum Unresolved {
    /// The identifier names no revision (`family`, or an ARN without `:revision`).
    NoRevision,
    /// The revision is not a number.
    BadRevision(String),
    /// No such revision (or an ARN of another account or region).
    Missing,
}

impl From<Unresolved> for EcsError {
    /// DeregisterTaskDefinition's answers, in ECS's words.
    fn from(u: Unresolved) -> EcsError {
        match u {
            Unresolved::NoRevision => client("Revision is missing."),
            Unresolved::BadRevision(rev) => {
                invalid(format!("Invalid revision number. Number: {rev}"))
            }
            Unresolved::Missing => not_found(),
        }
    }
}

fn resolve_revision<'a>(
    state: &'a State,
    scope: &Scope,
    ident: &str,
) -> Result<&'a TaskDefinitionRecord, Unresolved> {
    let family_rev = if is_arn(ident) {
        parse_arn_in_scope(ident, ResourceType::TaskDefinition, scope)
            .map(|a| a.resource)
            .ok_or(Unresolved::Missing)?
    } else {
        ident.to_owned()
    };
    let Some((_, rev)) = family_rev.rsplit_once(':') else {
        return Err(Unresolved::NoRevision);
    };
    if rev.parse::<i32>().is_err() {
        return Err(Unresolved::BadRevision(rev.to_owned()));
    }
    resolve(state, scope, &family_rev).ok_or(Unresolved::Missing)
}

/// DeregisterTaskDefinition: marks one revision INACTIVE.
pub fn deregister(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeregisterTaskDefinitionRequest,
) -> Written<wire::DeregisterTaskDefinitionResponse> {
    let ident = req
        .task_definition
        .ok_or_else(|| invalid("taskDefinition is required."))?;
    let mut rec = resolve_revision(state, &ctx.scope, &ident)?.clone();
    if rec.definition.status == Some(TaskDefinitionStatus::DeleteInProgress) {
        return Err(client("The specified task definition is being deleted."));
    }
    if rec.definition.status == Some(TaskDefinitionStatus::Active) {
        rec.definition.status = Some(TaskDefinitionStatus::Inactive);
        rec.definition.deregistered_at = Some(ctx.now);
    }
    let def = rec.definition.clone();
    Ok((
        wire::DeregisterTaskDefinitionResponse {
            task_definition: Some(def),
        },
        vec![Change::Put(Record::TaskDefinition(rec))],
    ))
}

/// DeleteTaskDefinitions: INACTIVE revisions move to DELETE_IN_PROGRESS; others fail.
pub fn delete(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeleteTaskDefinitionsRequest,
) -> Written<wire::DeleteTaskDefinitionsResponse> {
    let idents = req
        .task_definitions
        .ok_or_else(|| invalid("taskDefinitions is required."))?;
    if idents.is_empty() {
        return Err(invalid(
            "taskDefinitions must name at least one task definition.",
        ));
    }
    check_len(&idents, 10, "taskDefinitions")?;
    let (mut done, mut failures, mut changes) = (Vec::new(), Vec::new(), Vec::new());
    for ident in idents {
        let fail = |reason: &str| wire::Failure {
            arn: Some(ident.clone()),
            reason: Some(reason.into()),
            detail: None,
        };
        match resolve_revision(state, &ctx.scope, &ident) {
            Err(Unresolved::Missing) => failures.push(fail(
                "The specified task definition does not exist. Specify a valid account, family, revision and try again.",
            )),
            Err(Unresolved::NoRevision | Unresolved::BadRevision(_)) => failures.push(fail(
                "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.",
            )),
            Ok(r) if r.definition.status == Some(TaskDefinitionStatus::Active) => failures.push(fail(
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
            )),
            Ok(r) => {
                let mut rec = r.clone();
                if rec.definition.status != Some(TaskDefinitionStatus::DeleteInProgress) {
                    rec.definition.status = Some(TaskDefinitionStatus::DeleteInProgress);
                    rec.definition.delete_requested_at = Some(ctx.now);
                    changes.push(Change::Put(Record::TaskDefinition(rec.clone())));
                }
                done.push(rec.definition);
            }
        }
    }
    Ok((
        wire::DeleteTaskDefinitionsResponse {
            task_definitions: Some(done),
            failures: Some(failures),
        },
        changes,
    ))
}

/// DescribeTaskDefinition.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: wire::DescribeTaskDefinitionRequest,
) -> Result<wire::DescribeTaskDefinitionResponse, EcsError> {
    let ident = req
        .task_definition
        .ok_or_else(|| invalid("taskDefinition is required."))?;
    let rec = resolve(state, scope, &ident).ok_or_else(not_found)?;
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&wire::TaskDefinitionField::Tags);
    Ok(wire::DescribeTaskDefinitionResponse {
        task_definition: Some(rec.definition.clone()),
        tags: with_tags.then(|| rec.tags.clone()),
    })
}

fn sort_key(family: &str, revision: i32) -> String {
    format!("{family}\u{0}{revision:010}")
}

/// The (family, revision) a [`sort_key`] was made of.
fn parse_sort_key(key: &str) -> Result<(String, i32), EcsError> {
    key.split_once('\u{0}')
        .and_then(|(f, r)| Some((f.to_owned(), r.parse().ok()?)))
        .ok_or_else(crate::paging::unreadable_token)
}

/// ListTaskDefinitions: by family then revision, ascending unless `sort` says DESC.
/// A page ranges from the last (family, revision) it returned: over the family's
/// revisions when `familyPrefix` names one, else over the index of revisions of the
/// asked status, so every page costs the same.
pub fn list(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListTaskDefinitionsRequest,
) -> Result<wire::ListTaskDefinitionsResponse, EcsError> {
    use std::ops::Bound::{Excluded, Included};
    let status = req.status.unwrap_or(TaskDefinitionStatus::Active);
    let descending = req.sort == Some(wire::SortOrder::Desc);
    // ECS's familyPrefix is the full family name (not a prefix), as its documentation says.
    let family = req.family_prefix.clone();
    let filters = format!(
        "{status}|{}|{descending}",
        family.clone().unwrap_or_default()
    );
    let arn = |r: &TaskDefinitionRecord| {
        (
            sort_key(&r.family, r.revision),
            r.definition.task_definition_arn.clone().unwrap_or_default(),
        )
    };
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListTaskDefinitions",
            &filters,
            req.max_results,
            req.next_token.as_deref(),
        )
        .with_descending(descending),
        |after| {
            let after = after.map(parse_sort_key).transpose()?;
            let items: Box<dyn Iterator<Item = (String, String)>> = match &family {
                Some(f) => {
                    let key = |rev: i32| (scope.clone(), f.clone(), rev);
                    let (lo, hi) = match (&after, descending) {
                        (Some((_, rev)), false) => (Excluded(key(*rev)), Included(key(i32::MAX))),
                        (Some((_, rev)), true) => (Included(key(i32::MIN)), Excluded(key(*rev))),
                        (None, _) => (Included(key(i32::MIN)), Included(key(i32::MAX))),
                    };
                    let range = state.task_definitions.range((lo, hi));
                    Box::new(
                        counted_in_order(range, descending)
                            .map(|(_, r)| r)
                            .filter(move |r| r.definition.status == Some(status))
                            .map(arn),
                    )
                }
                None => {
                    let st = status.as_str();
                    let key = |f: String, rev: i32| (scope.clone(), st.to_owned(), f, rev);
                    // Every key of this status lies below (scope, "<status>\0", …).
                    let end = (scope.clone(), format!("{st}\u{0}"), String::new(), i32::MIN);
                    let (lo, hi) = match (after, descending) {
                        (Some((f, rev)), false) => (Excluded(key(f, rev)), Excluded(end)),
                        (Some((f, rev)), true) => (
                            Included(key(String::new(), i32::MIN)),
                            Excluded(key(f, rev)),
                        ),
                        (None, _) => (Included(key(String::new(), i32::MIN)), Excluded(end)),
                    };
                    let range = state.derived.definitions_by_status.range((lo, hi));
                    Box::new(
                        counted_in_order(range, descending)
                            .filter_map(|(s, _, f, rev)| {
                                state.task_definitions.get(&(s.clone(), f.clone(), *rev))
                            })
                            .map(arn),
                    )
                }
            };
            Ok(items)
        },
    )?;
    Ok(wire::ListTaskDefinitionsResponse {
        task_definition_arns: Some(page.items),
        next_token: page.next_token,
    })
}

/// ListTaskDefinitionFamilies: families by status (ACTIVE: has an ACTIVE revision;
/// INACTIVE: has none; ALL, the default). A page ranges over the index of families (of
/// that status) from the last family it returned, or from the prefix.
pub fn list_families(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListTaskDefinitionFamiliesRequest,
) -> Result<wire::ListTaskDefinitionFamiliesResponse, EcsError> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let status = req.status.unwrap_or(wire::TaskDefinitionFamilyStatus::All);
    let prefix = req.family_prefix.clone().unwrap_or_default();
    let filters = format!("{status}|{prefix}");
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListTaskDefinitionFamilies",
            &filters,
            req.max_results,
            req.next_token.as_deref(),
        ),
        |after| {
            let from = match after {
                Some(f) if f >= prefix.as_str() => Excluded(f.to_owned()),
                _ => Included(prefix.clone()),
            };
            let named = |f: &String| f.starts_with(&prefix);
            let items: Box<dyn Iterator<Item = (String, String)>> = match status {
                wire::TaskDefinitionFamilyStatus::All => {
                    let start = from.map(|f| (scope.clone(), f));
                    Box::new(
                        counted(state.derived.families.range((start, Unbounded)))
                            .map(|((s, f), _)| (s, f))
                            .take_while(move |(s, f)| *s == scope && named(f))
                            .map(|(_, f)| (f.clone(), f.clone())),
                    )
                }
                wire::TaskDefinitionFamilyStatus::Active
                | wire::TaskDefinitionFamilyStatus::Inactive => {
                    let active = status == wire::TaskDefinitionFamilyStatus::Active;
                    let start = from.map(|f| (scope.clone(), active, f));
                    Box::new(
                        counted(state.derived.families_by_status.range((start, Unbounded)))
                            .take_while(move |(s, a, f)| s == scope && *a == active && named(f))
                            .map(|(_, _, f)| (f.clone(), f.clone())),
                    )
                }
            };
            Ok(items)
        },
    )?;
    Ok(wire::ListTaskDefinitionFamiliesResponse {
        families: Some(page.items),
        next_token: page.next_token,
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    fn register_with(constraints: serde_json::Value) -> Result<(), EcsError> {
        let req: wire::RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
            "family": "web",
            "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 16}],
            "placementConstraints": constraints,
        }))
        .unwrap();
        let mut ctx = Ctx::new(Scope::new("000000000000", "us-east-1"), 1000.0, 1);
        register(&State::default(), &mut ctx, req).map(|_| ())
    }

    /// Fuzz finding: a definition's memberOf expression was stored unchecked, and a
    /// deeply nested one overflowed the query parser's stack (aborting the server) at
    /// the first RunTask; now it is checked, depth first, when registered.
    #[test]
    fn placement_expressions_are_checked_when_registered() {
        assert!(
            register_with(serde_json::json!([{"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t3.*"}]))
                .is_ok()
        );
        let deep = "(".repeat(900) + "agentConnected == true" + &")".repeat(900);
        for (constraints, needle) in [
            (
                serde_json::json!([{"type": "memberOf", "expression": deep}]),
                "nests 900 levels",
            ),
            (
                serde_json::json!([{"type": "memberOf", "expression": "!".repeat(1990)}]),
                "nests",
            ),
            (
                serde_json::json!([{"type": "memberOf", "expression": "attribute:x = y"}]),
                "placementConstraints[0].expression",
            ),
            (
                serde_json::json!([{"type": "memberOf"}]),
                "placementConstraints[0].expression is required",
            ),
            (
                serde_json::json!([{"expression": "agentConnected == true"}]),
                "placementConstraints[0].type is required",
            ),
        ] {
            let e = register_with(constraints).unwrap_err();
            assert_eq!(e.code(), "InvalidParameterException", "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}
