//! Clusters: CreateCluster, DeleteCluster, DescribeClusters, ListClusters, UpdateCluster,
//! UpdateClusterSettings, PutClusterCapacityProviders.

use std::collections::BTreeMap;
use std::ops::Bound;

use model::arn::ResourceType;
use model::lifecycle::TaskStatus;
use model::status::{ClusterStatus, InstanceStatus, ServiceStatus};
use model::wire::{self, ClusterField};

use crate::engine::{Ctx, Written};
use crate::error::{EcsError, invalid};
use crate::ops::common::{
    DEFAULT_CLUSTER, active_cluster, check_len, cluster_name, is_valid_name, missing, validate_tags,
};
use crate::paging::{PageRequest, counted, paginate, start_after};
use crate::state::{Change, ClusterKey, ClusterRecord, Record, Scope, State};

/// The capacity providers every cluster may use without creating them.
pub const BUILT_IN_CAPACITY_PROVIDERS: &[&str] = &["FARGATE", "FARGATE_SPOT"];

fn validate_settings(settings: &[wire::ClusterSetting]) -> Result<(), EcsError> {
    for s in settings {
        if s.name.is_none() {
            return Err(invalid("settings[].name is required."));
        }
        match s.value.as_deref() {
            Some("enabled" | "disabled" | "enhanced") => {}
            other => {
                return Err(invalid(format!(
                    "settings[].value for containerInsights must be enabled, disabled or enhanced, got {other:?}."
                )));
            }
        }
    }
    Ok(())
}

/// A cluster's capacity providers and default strategy: each provider FARGATE,
/// FARGATE_SPOT or an ACTIVE provider of the account (CreateCapacityProvider), listed
/// once; the strategy names only listed providers ([`crate::capacity::check_strategy`]).
fn validate_capacity_providers(
    state: &State,
    scope: &Scope,
    providers: &[String],
    strategy: &[wire::CapacityProviderStrategyItem],
) -> Result<(), EcsError> {
    check_len(providers, 20, "capacityProviders")?;
    for (i, p) in providers.iter().enumerate() {
        if !BUILT_IN_CAPACITY_PROVIDERS.contains(&p.as_str())
            && crate::capacity::active_provider(state, scope, p).is_none()
        {
            return Err(invalid(format!(
                "The specified capacity provider {p} was not found: create it with CreateCapacityProvider, or use FARGATE or FARGATE_SPOT."
            )));
        }
        if providers[..i].contains(p) {
            return Err(invalid(format!(
                "capacityProviders names {p} more than once."
            )));
        }
    }
    crate::capacity::check_strategy(strategy, providers, "defaultCapacityProviderStrategy")
}

/// The capacity providers `removed` from a cluster that are still in use there: named by
/// an ACTIVE or DRAINING service's strategy, or by a task not yet STOPPED.
fn in_use<'a>(state: &State, rec: &ClusterRecord, removed: &[&'a String]) -> Option<&'a str> {
    let scope = &rec.scope;
    let by_service = |name: &str| {
        state.services_in(scope, &rec.name).any(|s| {
            matches!(
                s.service.status(),
                Some(ServiceStatus::Active | ServiceStatus::Draining)
            ) && s
                .service
                .capacity_provider_strategy
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|i| i.capacity_provider.as_deref() == Some(name))
        })
    };
    let by_task = |name: &str| {
        state.tasks_in(scope, &rec.name).any(|t| {
            t.task.last() != Some(TaskStatus::Stopped)
                && t.task.capacity_provider_name.as_deref() == Some(name)
        })
    };
    removed
        .iter()
        .find(|p| by_service(p) || by_task(p))
        .map(|p| p.as_str())
}

fn default_settings() -> Vec<wire::ClusterSetting> {
    vec![wire::ClusterSetting {
        name: Some(wire::ClusterSettingName::ContainerInsights),
        value: Some("disabled".into()),
    }]
}

/// [running, pending] tasks of the cluster per capacity provider that placed them (the
/// providers the cluster lists first, at 0 when they run nothing): flotilla's addition
/// to `STATISTICS`, as `capacityProvider.<name>.runningTasksCount` and
/// `….pendingTasksCount`.
fn provider_task_counts(state: &State, rec: &ClusterRecord) -> BTreeMap<String, [usize; 2]> {
    let mut counts: BTreeMap<String, [usize; 2]> = rec
        .cluster
        .capacity_providers
        .iter()
        .flatten()
        .map(|p| (p.clone(), [0, 0]))
        .collect();
    for t in state.tasks_in(&rec.scope, &rec.name) {
        let Some(provider) = t.task.capacity_provider_name.as_deref() else {
            continue;
        };
        let slot = match t.task.last() {
            Some(TaskStatus::Running) => 0,
            Some(TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating) => 1,
            _ => continue,
        };
        counts.entry(provider.to_owned()).or_insert([0, 0])[slot] += 1;
    }
    counts
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The cluster as DescribeClusters shows it: live counts, and the optional parts only
/// when `include` asks for them.
pub fn describe_one(state: &State, rec: &ClusterRecord, include: &[ClusterField]) -> wire::Cluster {
    let mut c = rec.cluster.clone();
    let scope = &rec.scope;
    let counts = state.counts(scope, &rec.name);
    let n = |v: i64| usize::try_from(v).unwrap_or(0);
    let (running, pending) = (n(counts.running), n(counts.pending));
    let (running_fargate, pending_fargate) = (n(counts.running_fargate), n(counts.pending_fargate));
    let instances = state
        .instances_in(scope, &rec.name)
        .filter(|i| {
            matches!(
                i.instance.status(),
                Some(InstanceStatus::Active | InstanceStatus::Draining)
            )
        })
        .count();
    // [active, draining] services, EC2-side and Fargate-side (launch type FARGATE or a
    // strategy of FARGATE/FARGATE_SPOT only).
    let (mut ec2_services, mut fargate_services) = ([0usize; 2], [0usize; 2]);
    for s in state.services_in(scope, &rec.name) {
        let fargate = s.service.launch_type == Some(wire::LaunchType::Fargate)
            || s.service
                .capacity_provider_strategy
                .as_deref()
                .is_some_and(crate::capacity::is_fargate_strategy);
        let side = if fargate {
            &mut fargate_services
        } else {
            &mut ec2_services
        };
        match s.service.status() {
            Some(ServiceStatus::Active) => side[0] += 1,
            Some(ServiceStatus::Draining) => side[1] += 1,
            _ => {}
        }
    }
    let active_services = ec2_services[0] + fargate_services[0];
    c.registered_container_instances_count = Some(count(instances));
    c.running_tasks_count = Some(count(running));
    c.pending_tasks_count = Some(count(pending));
    c.active_services_count = Some(count(active_services));
    let kv = |name: &str, v: usize| wire::KeyValuePair {
        name: Some(name.into()),
        value: Some(v.to_string()),
    };
    c.statistics = Some(if include.contains(&ClusterField::Statistics) {
        let mut stats = vec![
            kv("runningEC2TasksCount", running - running_fargate),
            kv("runningFargateTasksCount", running_fargate),
            kv("pendingEC2TasksCount", pending - pending_fargate),
            kv("pendingFargateTasksCount", pending_fargate),
            kv("activeEC2ServiceCount", ec2_services[0]),
            kv("activeFargateServiceCount", fargate_services[0]),
            kv("drainingEC2ServiceCount", ec2_services[1]),
            kv("drainingFargateServiceCount", fargate_services[1]),
        ];
        for (provider, [running, pending]) in provider_task_counts(state, rec) {
            stats.push(kv(
                &format!("capacityProvider.{provider}.runningTasksCount"),
                running,
            ));
            stats.push(kv(
                &format!("capacityProvider.{provider}.pendingTasksCount"),
                pending,
            ));
        }
        stats
    } else {
        Vec::new()
    });
    if !include.contains(&ClusterField::Tags) {
        c.tags = None;
    }
    if !include.contains(&ClusterField::Settings) {
        c.settings = None;
    }
    if !include.contains(&ClusterField::Configurations) {
        c.configuration = None;
    }
    if !include.contains(&ClusterField::Attachments) {
        c.attachments = None;
        c.attachments_status = None;
    }
    c
}

/// CreateCluster: idempotent on the name (an ACTIVE cluster of that name is returned as is).
pub fn create_cluster(
    state: &State,
    ctx: &mut Ctx,
    req: wire::CreateClusterRequest,
) -> Written<wire::CreateClusterResponse> {
    let name = req
        .cluster_name
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
    if !is_valid_name(&name) {
        return Err(invalid(format!(
            "clusterName {name:?} is invalid: up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed."
        )));
    }
    let tags = req.tags.unwrap_or_default();
    validate_tags(&tags)?;
    let settings = req.settings.unwrap_or_else(default_settings);
    validate_settings(&settings)?;
    let providers = req.capacity_providers.unwrap_or_default();
    let strategy = req.default_capacity_provider_strategy.unwrap_or_default();
    validate_capacity_providers(state, &ctx.scope, &providers, &strategy)?;
    if let Some(existing) = state
        .cluster(&ctx.scope, &name)
        .filter(|c| c.cluster.status() == Some(ClusterStatus::Active))
    {
        let all = [
            ClusterField::Tags,
            ClusterField::Settings,
            ClusterField::Configurations,
        ];
        return Ok((
            wire::CreateClusterResponse {
                cluster: Some(describe_one(state, existing, &all)),
            },
            vec![],
        ));
    }
    let cluster = wire::Cluster {
        cluster_arn: Some(ctx.arn(ResourceType::Cluster, name.clone())),
        cluster_name: Some(name.clone()),
        status: Some(ClusterStatus::Active.into()),
        tags: Some(tags),
        settings: Some(settings),
        configuration: req.configuration,
        capacity_providers: Some(providers),
        default_capacity_provider_strategy: Some(strategy),
        service_connect_defaults: req.service_connect_defaults.map(|d| {
            wire::ClusterServiceConnectDefaults {
                namespace: d.namespace,
            }
        }),
        attachments: Some(vec![]),
        ..Default::default()
    };
    let rec = ClusterRecord {
        scope: ctx.scope.clone(),
        name,
        cluster,
        updater: None,
    };
    let all = [
        ClusterField::Tags,
        ClusterField::Settings,
        ClusterField::Configurations,
        ClusterField::Attachments,
    ];
    let shown = describe_one(state, &rec, &all);
    Ok((
        wire::CreateClusterResponse {
            cluster: Some(shown),
        },
        vec![Change::Put(Record::Cluster(rec))],
    ))
}

/// DeleteCluster: refuses while instances, services or unstopped tasks remain.
pub fn delete_cluster(
    state: &State,
    ctx: &mut Ctx,
    req: wire::DeleteClusterRequest,
) -> Written<wire::DeleteClusterResponse> {
    let rec = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let scope = &ctx.scope;
    if state.instances_in(scope, &rec.name).any(|i| {
        matches!(
            i.instance.status(),
            Some(InstanceStatus::Active | InstanceStatus::Draining)
        )
    }) {
        return Err(EcsError::ClusterContainsContainerInstances);
    }
    if state.services_in(scope, &rec.name).any(|s| {
        matches!(
            s.service.status(),
            Some(ServiceStatus::Active | ServiceStatus::Draining)
        )
    }) {
        return Err(EcsError::ClusterContainsServices);
    }
    if state
        .tasks_in(scope, &rec.name)
        .any(|t| t.task.last() != Some(TaskStatus::Stopped))
    {
        return Err(EcsError::ClusterContainsTasks);
    }
    let mut rec = rec.clone();
    rec.cluster.set_status(ClusterStatus::Inactive);
    let shown = describe_one(state, &rec, &[]);
    Ok((
        wire::DeleteClusterResponse {
            cluster: Some(shown),
        },
        vec![Change::Put(Record::Cluster(rec))],
    ))
}

/// DescribeClusters: unknown clusters come back in `failures` with reason MISSING.
pub fn describe_clusters(
    state: &State,
    scope: &Scope,
    req: wire::DescribeClustersRequest,
) -> Result<wire::DescribeClustersResponse, EcsError> {
    let idents = req
        .clusters
        .unwrap_or_else(|| vec![DEFAULT_CLUSTER.to_owned()]);
    check_len(&idents, 100, "clusters")?;
    let include = req.include.unwrap_or_default();
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for ident in idents {
        let found = cluster_name(scope, Some(&ident))
            .ok()
            .and_then(|n| state.cluster(scope, &n));
        match found {
            Some(rec) => clusters.push(describe_one(state, rec, &include)),
            None => failures.push(missing(scope, ident, ResourceType::Cluster, |i| {
                i.to_owned()
            })),
        }
    }
    Ok(wire::DescribeClustersResponse {
        clusters: Some(clusters),
        failures: Some(failures),
    })
}

/// ListClusters: ACTIVE clusters' ARNs, in name order. A page ranges over the index of
/// ACTIVE clusters from the last name it returned, so every page costs the same.
pub fn list_clusters(
    state: &State,
    scope: &Scope,
    now: f64,
    req: wire::ListClustersRequest,
) -> Result<wire::ListClustersResponse, EcsError> {
    let page = paginate(
        &PageRequest::ascending(
            &state.meta.paging_secret,
            now,
            "ListClusters",
            "",
            req.max_results,
            req.next_token.as_deref(),
        ),
        |after| {
            let start = start_after(
                after.map(|name| ClusterKey::new(scope, name)),
                ClusterKey::new(scope, ""),
            );
            Ok(counted(
                state
                    .derived
                    .active_clusters
                    .range((start, Bound::Unbounded)),
            )
            .take_while(move |k| k.scope == *scope)
            .filter_map(|key| state.clusters.get(key))
            .map(|c| {
                (
                    c.name.clone(),
                    c.cluster.cluster_arn.clone().unwrap_or_default(),
                )
            }))
        },
    )?;
    Ok(wire::ListClustersResponse {
        cluster_arns: Some(page.items),
        next_token: page.next_token,
    })
}

fn updated(
    state: &State,
    ctx: &Ctx,
    cluster: Option<&str>,
    f: impl FnOnce(&mut wire::Cluster) -> Result<(), EcsError>,
) -> Result<(wire::Cluster, Vec<Change>), EcsError> {
    let mut rec = active_cluster(state, &ctx.scope, cluster)?.clone();
    f(&mut rec.cluster)?;
    let all = [
        ClusterField::Tags,
        ClusterField::Settings,
        ClusterField::Configurations,
    ];
    let shown = describe_one(state, &rec, &all);
    Ok((shown, vec![Change::Put(Record::Cluster(rec))]))
}

fn merge_settings(current: &mut wire::Cluster, new: Vec<wire::ClusterSetting>) {
    let mut settings = current.settings.take().unwrap_or_default();
    for s in new {
        settings.retain(|x| x.name != s.name);
        settings.push(s);
    }
    current.settings = Some(settings);
}

/// UpdateCluster: settings, execute-command configuration, Service Connect defaults.
pub fn update_cluster(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UpdateClusterRequest,
) -> Written<wire::UpdateClusterResponse> {
    if req.cluster.is_none() {
        return Err(invalid("cluster is required."));
    }
    let settings = req.settings.unwrap_or_default();
    validate_settings(&settings)?;
    let (cluster, changes) = updated(state, ctx, req.cluster.as_deref(), |c| {
        merge_settings(c, settings);
        if let Some(conf) = req.configuration {
            c.configuration = Some(conf);
        }
        if let Some(d) = req.service_connect_defaults {
            c.service_connect_defaults = Some(wire::ClusterServiceConnectDefaults {
                namespace: d.namespace,
            });
        }
        Ok(())
    })?;
    Ok((
        wire::UpdateClusterResponse {
            cluster: Some(cluster),
        },
        changes,
    ))
}

/// UpdateClusterSettings.
pub fn update_cluster_settings(
    state: &State,
    ctx: &mut Ctx,
    req: wire::UpdateClusterSettingsRequest,
) -> Written<wire::UpdateClusterSettingsResponse> {
    let settings = req
        .settings
        .ok_or_else(|| invalid("settings is required."))?;
    validate_settings(&settings)?;
    let (cluster, changes) = updated(state, ctx, req.cluster.as_deref(), |c| {
        merge_settings(c, settings);
        Ok(())
    })?;
    Ok((
        wire::UpdateClusterSettingsResponse {
            cluster: Some(cluster),
        },
        changes,
    ))
}

/// PutClusterCapacityProviders: replaces the providers and the default strategy. A
/// provider still in use in the cluster (a service's strategy, a task) cannot be
/// removed: ResourceInUseException, as in ECS.
pub fn put_cluster_capacity_providers(
    state: &State,
    ctx: &mut Ctx,
    req: wire::PutClusterCapacityProvidersRequest,
) -> Written<wire::PutClusterCapacityProvidersResponse> {
    let providers = req
        .capacity_providers
        .ok_or_else(|| invalid("capacityProviders is required."))?;
    let strategy = req
        .default_capacity_provider_strategy
        .ok_or_else(|| invalid("defaultCapacityProviderStrategy is required."))?;
    validate_capacity_providers(state, &ctx.scope, &providers, &strategy)?;
    let current = active_cluster(state, &ctx.scope, req.cluster.as_deref())?;
    let old = current.cluster.capacity_providers.as_deref().unwrap_or(&[]);
    let removed: Vec<&String> = old.iter().filter(|p| !providers.contains(p)).collect();
    if let Some(p) = in_use(state, current, &removed) {
        return Err(EcsError::ResourceInUse(format!(
            "The specified capacity provider {p} is in use and cannot be removed."
        )));
    }
    let (cluster, changes) = updated(state, ctx, req.cluster.as_deref(), |c| {
        c.capacity_providers = Some(providers);
        c.default_capacity_provider_strategy = Some(strategy);
        Ok(())
    })?;
    Ok((
        wire::PutClusterCapacityProvidersResponse {
            cluster: Some(cluster),
        },
        changes,
    ))
}
