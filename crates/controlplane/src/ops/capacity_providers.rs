//! Capacity providers: CreateCapacityProvider, DescribeCapacityProviders,
//! UpdateCapacityProvider, DeleteCapacityProvider.
//!
//! A provider is account- and region-wide, as in ECS, and names a node group in its
//! `autoScalingGroupArn` (see [`crate::capacity`]). The built-in FARGATE and FARGATE_SPOT
//! providers are described but not stored; they cannot run tasks yet. Managed scaling
//! settings are kept and shown but nothing acts on them yet.

use std::ops::Bound;

use model::arn::{ResourceType, is_arn};
use model::status::ClusterStatus;
use model::wire::{
    self, CapacityProviderStatus as Status, CapacityProviderUpdateStatus as UpdateStatus,
};

use crate::capacity::{is_fargate, node_group_of};
use crate::engine::{Ctx, Written};
use crate::error::{EcsError, client, invalid};
use crate::ops::clusters::BUILT_IN_CAPACITY_PROVIDERS;
use crate::ops::common::{check_len, is_valid_name, missing, parse_arn_in_scope, validate_tags};
use crate::paging::{PageRequest, counted, paginate};
use crate::state::{CapacityProviderRecord, Change, ClusterKey, Record, Scope, State};

/// The most providers one DescribeCapacityProviders page holds (ECS: `maxResults` 1–10).
pub const DESCRIBE_PAGE_LIMIT: i32 = 10;

/// ECS's name rules: 1–255 letters, digits, `_` and `-`, not starting with `aws`, `ecs`
/// or `fargate` (any case).
fn check_name(name: &str) -> Result<(), EcsError> {
    if !is_valid_name(name) {
        return Err(invalid(format!(
            "name {name:?} is invalid: up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed."
        )));
    }
    let lower = name.to_ascii_lowercase();
    if ["aws", "ecs", "fargate"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(invalid(format!(
            "name {name:?} is invalid: a capacity provider name can't be prefixed with \"aws\", \"ecs\", or \"fargate\"."
        )));
    }
    Ok(())
}

/// `managedScaling` with ECS's defaults filled in (status DISABLED, target capacity 100,
/// steps 1 to 10000, warm-up 300 s), checked against ECS's ranges.
fn managed_scaling(m: Option<wire::ManagedScaling>) -> Result<wire::ManagedScaling, EcsError> {
    let m = m.unwrap_or_default();
    let out = wire::ManagedScaling {
        status: Some(m.status.unwrap_or(wire::ManagedScalingStatus::Disabled)),
        target_capacity: Some(m.target_capacity.unwrap_or(100)),
        minimum_scaling_step_size: Some(m.minimum_scaling_step_size.unwrap_or(1)),
        maximum_scaling_step_size: Some(m.maximum_scaling_step_size.unwrap_or(10_000)),
        instance_warmup_period: Some(m.instance_warmup_period.unwrap_or(300)),
    };
    let check = |v: Option<i32>, lo: i32, hi: i32, field: &str| {
        if v.is_some_and(|v| !(lo..=hi).contains(&v)) {
            return Err(invalid(format!(
                "managedScaling.{field} must be between {lo} and {hi}."
            )));
        }
        Ok(())
    };
    check(out.target_capacity, 1, 100, "targetCapacity")?;
    check(
        out.minimum_scaling_step_size,
        1,
        10_000,
        "minimumScalingStepSize",
    )?;
    check(
        out.maximum_scaling_step_size,
        1,
        10_000,
        "maximumScalingStepSize",
    )?;
    check(
        out.instance_warmup_period,
        0,
        10_000,
        "instanceWarmupPeriod",
    )?;
    if out.minimum_scaling_step_size > out.maximum_scaling_step_size {
        return Err(invalid(
            "managedScaling.minimumScalingStepSize cannot be greater than maximumScalingStepSize.",
        ));
    }
    Ok(out)
}

/// A built-in Fargate provider as DescribeCapacityProviders lists it.
fn built_in(scope: &Scope, name: &str) -> wire::CapacityProvider {
    wire::CapacityProvider {
        capacity_provider_arn: Some(scope.arn(ResourceType::CapacityProvider, name)),
        name: Some(name.to_owned()),
        status: Some(Status::Active),
        tags: Some(vec![]),
        r#type: Some(if name == "FARGATE" {
            wire::CapacityProviderType::Fargate
        } else {
            wire::CapacityProviderType::FargateSpot
        }),
        ..Default::default()
    }
}

/// The provider name a `capacityProvider` member gives (a name or an ARN of `scope`).
fn provider_name(scope: &Scope, ident: &str) -> Option<String> {
    if is_arn(ident) {
        parse_arn_in_scope(ident, ResourceType::CapacityProvider, scope).map(|a| a.resource)
    } else {
        Some(ident.to_owned())
    }
}

fn not_found(name: &str) -> EcsError {
    client(format!(
        "The specified capacity provider {name} does not exist. Specify a valid name or ARN and try again."
    ))
}

/// The ACTIVE record a request names, or ClientException.
fn active_record<'a>(
    state: &'a State,
    scope: &Scope,
    ident: &str,
) -> Result<&'a CapacityProviderRecord, EcsError> {
    let name = provider_name(scope, ident).ok_or_else(|| not_found(ident))?;
    crate::capacity::active_provider(state, scope, &name).ok_or_else(|| not_found(&name))
}

/// The ACTIVE clusters of `scope` that list `name` among their capacity providers.
fn clusters_using<'a>(
    state: &'a State,
    scope: &Scope,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    let scope = scope.clone();
    state
        .clusters
        .range((
            Bound::Included(ClusterKey::new(&scope, "")),
            Bound::Unbounded,
        ))
        .take_while(move |(k, _)| k.scope == scope)
        .map(|(_, c)| c)
        .filter(|c| c.cluster.status() == Some(ClusterStatus::Active))
        .filter(move |c| {
            c.cluster
                .capacity_providers
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|p| p == name)
        })
        .map(|c| c.name.as_str())
}

/// CreateCapacityProvider: a provider for a node group (`autoScalingGroupArn`).
pub fn create(
    state: &State,
    ctx: &mut Ctx,
    req: wire::CreateCapacityProviderRequest,
) -> Written<wire::CreateCapacityProviderResponse> {
    let name = req.name.ok_or_else(|| invalid("name is required."))?;
    check_name(&name)?;
    if req.cluster.is_some() || req.managed_instances_provider.is_some() {
        return Err(EcsError::UnsupportedFeature(
            "Amazon ECS Managed Instances capacity providers are not available in flotilla.".into(),
        ));
    }
    let asg = req
        .auto_scaling_group_provider
        .ok_or_else(|| invalid("autoScalingGroupProvider is required."))?;
    let arn = asg
        .auto_scaling_group_arn
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("autoScalingGroupProvider.autoScalingGroupArn is required."))?;
    let group = node_group_of(&arn);
    if is_arn(&arn) && group == arn {
        return Err(invalid(format!(
            "autoScalingGroupProvider.autoScalingGroupArn {arn:?} is not an Auto Scaling group ARN (…:autoScalingGroupName/<name>)."
        )));
    }
    if group.is_empty() || group.len() > 255 || group.chars().any(char::is_whitespace) {
        return Err(invalid(format!(
            "autoScalingGroupProvider.autoScalingGroupArn {arn:?} names no node group: give an Auto Scaling group ARN or a node group name of 1-255 characters without spaces."
        )));
    }
    let tags = req.tags.unwrap_or_default();
    validate_tags(&tags)?;
    let scaling = managed_scaling(asg.managed_scaling)?;
    if crate::capacity::active_provider(state, &ctx.scope, &name).is_some() {
        return Err(client(
            "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.",
        ));
    }
    let scope = ctx.scope.clone();
    if state
        .capacity_providers
        .values()
        .filter(|p| p.scope == scope && p.provider.status == Some(Status::Active))
        .filter_map(|p| p.provider.auto_scaling_group_provider.as_ref())
        .filter_map(|a| a.auto_scaling_group_arn.as_deref())
        .any(|a| node_group_of(a) == group)
    {
        return Err(client(
            "The specified Auto Scaling group ARN is already being used by another capacity provider. Specify a unique Auto Scaling group ARN and try again.",
        ));
    }
    let provider = wire::CapacityProvider {
        capacity_provider_arn: Some(ctx.arn(ResourceType::CapacityProvider, name.clone())),
        name: Some(name.clone()),
        status: Some(Status::Active),
        auto_scaling_group_provider: Some(wire::AutoScalingGroupProvider {
            auto_scaling_group_arn: Some(arn),
            managed_scaling: Some(scaling),
            managed_termination_protection: Some(
                asg.managed_termination_protection
                    .unwrap_or(wire::ManagedTerminationProtection::Disabled),
            ),
            managed_draining: Some(
                asg.managed_draining
                    .unwrap_or(wire::ManagedDraining::Enabled),
            ),
        }),
        tags: Some(tags),
        r#type: Some(wire::CapacityProviderType::Ec2Autoscaling),
        ..Default::default()
    };
    let rec = CapacityProviderRecord {
        scope,
        name,
        provider: provider.clone(),
        scaling: Default::default(),
    };
    Ok((
        wire::CreateCapacityProviderResponse {
            capacity_provider: Some(provider),
        },
        vec![Change::Put(Record::CapacityProvider(rec))],
    ))
}

/// DescribeCapacityProviders: the named providers (unknown ones in `failures`), or every
/// provider of the account and region, FARGATE and FARGATE_SPOT included, in name order
/// and paged (`maxResults` 1–10). Tags only with `include: ["TAGS"]`.
pub fn describe(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::DescribeCapacityProvidersRequest,
) -> Result<wire::DescribeCapacityProvidersResponse, EcsError> {
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&wire::CapacityProviderField::Tags);
    let shown = |mut p: wire::CapacityProvider| {
        if !with_tags {
            p.tags = None;
        }
        p
    };
    let lookup = |name: &str| -> Option<wire::CapacityProvider> {
        if is_fargate(name) {
            return Some(built_in(scope, name));
        }
        state
            .capacity_providers
            .get(&(scope.clone(), name.to_owned()))
            .map(|r| r.provider.clone())
    };
    if let Some(idents) = req.capacity_providers.filter(|i| !i.is_empty()) {
        check_len(&idents, 100, "capacityProviders")?;
        let (mut found, mut failures) = (Vec::new(), Vec::new());
        for ident in idents {
            match provider_name(scope, &ident).and_then(|n| lookup(&n)) {
                Some(p) => found.push(shown(p)),
                None => failures.push(missing(scope, ident, ResourceType::CapacityProvider, |i| {
                    i.to_owned()
                })),
            }
        }
        return Ok(wire::DescribeCapacityProvidersResponse {
            capacity_providers: Some(found),
            failures: Some(failures),
            next_token: None,
        });
    }
    let mut page_req = PageRequest::ascending(
        &state.meta.paging_secret,
        now,
        "DescribeCapacityProviders",
        if with_tags { "TAGS" } else { "" },
        req.max_results,
        req.next_token.as_deref(),
    );
    page_req.limit = DESCRIBE_PAGE_LIMIT;
    let page = paginate(&page_req, |after| {
        let after = after.unwrap_or("");
        let start = (scope.clone(), after.to_owned());
        // A page needs at most its size plus one of the stored providers after `after`
        // (and the two built-in ones): merged and sorted, the first of them are exact.
        let stored = counted(
            state
                .capacity_providers
                .range((Bound::Excluded(start), Bound::Unbounded)),
        )
        .take_while(|(k, _)| k.0 == *scope)
        .take(usize::try_from(DESCRIBE_PAGE_LIMIT).unwrap_or(10) + 1)
        .map(|(_, r)| (r.name.clone(), r.provider.clone()));
        let mut items: Vec<(String, wire::CapacityProvider)> = BUILT_IN_CAPACITY_PROVIDERS
            .iter()
            .filter(|n| **n > after)
            .map(|n| ((*n).to_owned(), built_in(scope, n)))
            .chain(stored)
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(items)
    })?;
    Ok(wire::DescribeCapacityProvidersResponse {
        capacity_providers: Some(page.items.into_iter().map(shown).collect()),
        failures: Some(vec![]),
        next_token: page.next_token,
    })
}

/// UpdateCapacityProvider: managed scaling, termination protection and draining.
pub fn update(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UpdateCapacityProviderRequest,
) -> Written<wire::UpdateCapacityProviderResponse> {
    let ident = req.name.ok_or_else(|| invalid("name is required."))?;
    if is_fargate(&ident) {
        return Err(invalid(
            "The FARGATE and FARGATE_SPOT capacity providers are reserved and can't be updated.",
        ));
    }
    if req.managed_instances_provider.is_some() {
        return Err(EcsError::UnsupportedFeature(
            "Amazon ECS Managed Instances capacity providers are not available in flotilla.".into(),
        ));
    }
    let update = req
        .auto_scaling_group_provider
        .ok_or_else(|| invalid("autoScalingGroupProvider is required."))?;
    let mut rec = active_record(state, &ctx.scope, &ident)?.clone();
    let asg = rec
        .provider
        .auto_scaling_group_provider
        .get_or_insert_with(Default::default);
    if let Some(m) = update.managed_scaling {
        // Members left out keep their values.
        let old = asg.managed_scaling.clone().unwrap_or_default();
        asg.managed_scaling = Some(managed_scaling(Some(wire::ManagedScaling {
            status: m.status.or(old.status),
            target_capacity: m.target_capacity.or(old.target_capacity),
            minimum_scaling_step_size: m
                .minimum_scaling_step_size
                .or(old.minimum_scaling_step_size),
            maximum_scaling_step_size: m
                .maximum_scaling_step_size
                .or(old.maximum_scaling_step_size),
            instance_warmup_period: m.instance_warmup_period.or(old.instance_warmup_period),
        }))?);
    }
    if let Some(p) = update.managed_termination_protection {
        asg.managed_termination_protection = Some(p);
    }
    if let Some(d) = update.managed_draining {
        asg.managed_draining = Some(d);
    }
    rec.provider.update_status = Some(UpdateStatus::UpdateComplete);
    rec.provider.update_status_reason = None;
    Ok((
        wire::UpdateCapacityProviderResponse {
            capacity_provider: Some(rec.provider.clone()),
        },
        vec![Change::Put(Record::CapacityProvider(rec))],
    ))
}

/// DeleteCapacityProvider. As in ECS, a provider still associated with a cluster is not
/// deleted: the answer (and the record) show `updateStatus` DELETE_FAILED with the
/// reason. Otherwise it becomes INACTIVE (DELETE_COMPLETE) at once: there is no Auto
/// Scaling group to detach. FARGATE and FARGATE_SPOT are reserved.
pub fn delete(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeleteCapacityProviderRequest,
) -> Written<wire::DeleteCapacityProviderResponse> {
    let ident = req
        .capacity_provider
        .ok_or_else(|| invalid("capacityProvider is required."))?;
    if req.cluster.is_some() {
        return Err(EcsError::UnsupportedFeature(
            "Amazon ECS Managed Instances capacity providers are not available in flotilla.".into(),
        ));
    }
    if provider_name(&ctx.scope, &ident).is_some_and(|n| is_fargate(&n)) {
        return Err(invalid(
            "The FARGATE and FARGATE_SPOT capacity providers are reserved and can't be deleted.",
        ));
    }
    let mut rec = active_record(state, &ctx.scope, &ident)?.clone();
    let using: Vec<&str> = clusters_using(state, &ctx.scope, &rec.name).collect();
    if using.is_empty() {
        rec.provider.status = Some(Status::Inactive);
        rec.provider.update_status = Some(UpdateStatus::DeleteComplete);
        rec.provider.update_status_reason = None;
    } else {
        rec.provider.update_status = Some(UpdateStatus::DeleteFailed);
        rec.provider.update_status_reason = Some(format!(
            "The capacity provider cannot be deleted because it is associated with cluster: {}. \
             Remove the capacity provider from the cluster and try again.",
            using.join(", ")
        ));
    }
    Ok((
        wire::DeleteCapacityProviderResponse {
            capacity_provider: Some(rec.provider.clone()),
        },
        vec![Change::Put(Record::CapacityProvider(rec))],
    ))
}
