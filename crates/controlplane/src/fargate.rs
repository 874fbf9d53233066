//! Fargate on flotilla's own nodes: the **Fargate pool** and the rules of the FARGATE
//! launch type (see `docs/fargate.md`).
//!
//! - **The pool.** A node whose agent runs with `--fargate-pool NAME` registers into the
//!   pseudo-cluster [`pool_cluster`]`(NAME)` (`fargate-pool.NAME`). No cluster record
//!   exists for it and its name is not a valid cluster name (`.`), so no ECS call on a
//!   cluster ever sees its instances: ListContainerInstances and
//!   DescribeContainerInstances of every cluster leave them out, and EC2 placement (which
//!   only looks at the cluster's own instances) never uses them. Only the agent-facing
//!   calls accept a pool name ([`agent_cluster`]). Every pool of an account and region
//!   serves every cluster there: a Fargate task is placed among the instances of all of
//!   them ([`pool_snapshot`]).
//! - **A Fargate task** belongs to its cluster (`task/<cluster>/<id>`) and holds
//!   resources on a pool instance: its record names the pool in
//!   [`TaskRecord::pool`](crate::state::TaskRecord::pool), so the per-instance usage
//!   index, PollTasks and the wake-ups find it under the pool instance's key.
//! - **Validation** ([`validate_launch`]): `awsvpc` with a `networkConfiguration`,
//!   `requiresCompatibilities` naming FARGATE, a task size of the Fargate table,
//!   `platformVersion`, `ephemeralStorage`, nothing privileged, no host paths.
//! - **The shape** ([`shape_task`]): `launchType` FARGATE, `platformVersion`,
//!   `platformFamily`, `capacityProviderName`, no `containerInstanceArn`, and an ENI
//!   attachment PRECREATED at once (the agent's `ReportNetwork` makes it ATTACHED with the
//!   task's address, `ops::agent::report_network`).

use std::borrow::Cow;

use model::status::{ClusterStatus, InstanceStatus as RecordStatus};
use model::wire::{self, Compatibility, NetworkMode};
use scheduler::PlacementSpec;
use scheduler::spec::{SpreadField, Strategy};

use crate::error::{EcsError, client, invalid};
use crate::ops::common::{active_cluster, cluster_name, is_valid_name, member_id};
use crate::state::{ClusterRecord, InstanceRecord, MemberKey, Scope, State, TaskRecord};

/// The prefix of a pool's pseudo-cluster name. `.` is not allowed in cluster names, so
/// no cluster can be named like a pool.
pub const POOL_PREFIX: &str = "fargate-pool.";

/// The platform version `LATEST` (and no `platformVersion`) resolves to.
pub const LATEST_PLATFORM_VERSION: &str = "1.4.0";

/// The Linux platform versions a task may name (1.0.0–1.2.0 are retired on AWS; 1.3.0
/// still runs there, and here it runs as 1.4.0 does).
pub const PLATFORM_VERSIONS: &[&str] = &["1.4.0", "1.3.0"];

/// `platformFamily` of every Fargate task here (no Windows pool).
pub const PLATFORM_FAMILY: &str = "Linux";

/// The capacity provider a FARGATE launch-type task shows.
pub const FARGATE_PROVIDER: &str = "FARGATE";

/// The capacity provider of spot Fargate capacity.
pub const FARGATE_SPOT_PROVIDER: &str = "FARGATE_SPOT";

/// ECS's limits of `ephemeralStorage.sizeInGiB` on Fargate (the default is 20 GiB).
pub const EPHEMERAL_STORAGE_GIB: std::ops::RangeInclusive<i32> = 21..=200;

/// ECS's limits of `awsvpcConfiguration`: subnets and security groups per task.
pub const MAX_SUBNETS: usize = 16;
/// See [`MAX_SUBNETS`].
pub const MAX_SECURITY_GROUPS: usize = 5;

/// The attribute that makes a pool node spot capacity (`flotilla agent --fargate-spot`):
/// only FARGATE_SPOT tasks run there, and draining it is the pool reclaiming it
/// ([`spot_interruptions`]).
pub const SPOT_ATTRIBUTE: &str = "flotilla.fargate-spot";

/// The `stoppedReason` of a task interrupted by a spot reclaim (ECS's).
pub const SPOT_INTERRUPTED: &str = "Your Spot Task was interrupted.";

/// The `failures[].reason` ECS gives a Fargate task it has no capacity for.
pub const CAPACITY_UNAVAILABLE: &str = "Capacity is unavailable at this time. Please try again later or in a different availability zone";

/// The pseudo-cluster of pool `name`.
pub fn pool_cluster(name: &str) -> String {
    format!("{POOL_PREFIX}{name}")
}

/// Whether `cluster` is a pool's pseudo-cluster with a valid pool name.
pub fn is_pool(cluster: &str) -> bool {
    cluster.strip_prefix(POOL_PREFIX).is_some_and(is_valid_name)
}

/// The record a pool stands in for a cluster in the agent-facing calls: never stored.
fn pool_record(scope: &Scope, name: &str) -> ClusterRecord {
    ClusterRecord {
        scope: scope.clone(),
        name: name.to_owned(),
        cluster: wire::Cluster {
            cluster_arn: Some(scope.arn(model::arn::ResourceType::Cluster, name)),
            cluster_name: Some(name.to_owned()),
            status: Some(ClusterStatus::Active.into()),
            ..Default::default()
        },
        updater: None,
    }
}

/// The cluster an agent-facing call names: [`active_cluster`], or the pool the name
/// (`fargate-pool.NAME`) stands for. Only the calls an agent makes (registration, polls,
/// state reports) take it; every other call refuses a pool name as a cluster that does
/// not exist.
///
/// # Errors
///
/// As [`active_cluster`].
pub fn agent_cluster<'a>(
    state: &'a State,
    scope: &Scope,
    ident: Option<&str>,
) -> Result<Cow<'a, ClusterRecord>, EcsError> {
    let name = cluster_name(scope, ident)?;
    if is_pool(&name) {
        return Ok(Cow::Owned(pool_record(scope, &name)));
    }
    active_cluster(state, scope, ident).map(Cow::Borrowed)
}

/// The instances of every pool of `scope` (any status), in key order: one range of the
/// instance map.
pub fn pool_instances<'a>(
    state: &'a State,
    scope: &Scope,
) -> impl Iterator<Item = &'a InstanceRecord> + 'a {
    let start = MemberKey::new(scope, POOL_PREFIX, "");
    let scope = scope.clone();
    state
        .instances
        .range(start..)
        .take_while(move |(k, _)| k.scope == scope && k.cluster.starts_with(POOL_PREFIX))
        .map(|(_, v)| v)
}

/// Whether a pool node is spot capacity ([`SPOT_ATTRIBUTE`] `true`).
pub fn is_spot(instance: &InstanceRecord) -> bool {
    instance.attribute(SPOT_ATTRIBUTE) == Some("true")
}

/// The scheduler's view of the pools of `scope` (instances that are not INACTIVE), with
/// the records in the same order: what a Fargate task is placed on. `spot` chooses the
/// spot nodes (FARGATE_SPOT tasks) or the others (FARGATE tasks): the two sets are
/// disjoint, so placing the two kinds separately never books a node twice.
pub fn pool_snapshot<'a>(
    state: &'a State,
    scope: &Scope,
    per_task: bool,
    spot: bool,
) -> crate::placement::Snapshot<'a> {
    let records = pool_instances(state, scope)
        .filter(|i| i.instance.status() != Some(RecordStatus::Inactive) && is_spot(i) == spot)
        .collect();
    crate::placement::snapshot_of(state, records, per_task)
}

/// A task placed on pool `pool`, named by its ARN (`task/<cluster>/<id>`: a pool node
/// reports on tasks of any cluster). A bare id, or a task of another pool, is none.
pub fn find_pool_task<'a>(
    state: &'a State,
    scope: &Scope,
    pool: &str,
    ident: &str,
) -> Option<&'a TaskRecord> {
    let (Some(cluster), id) = member_id(scope, model::arn::ResourceType::Task, ident)? else {
        return None;
    };
    state
        .tasks
        .get(&MemberKey::new(scope, &cluster, &id))
        .map(|t| &**t)
        .filter(|t| t.pool.as_deref() == Some(pool))
}

/// The concrete platform version a request's `platformVersion` names (`LATEST` or none:
/// [`LATEST_PLATFORM_VERSION`]).
///
/// # Errors
///
/// `InvalidParameterException` for a version Fargate does not have.
pub fn resolve_platform_version(requested: Option<&str>) -> Result<String, EcsError> {
    match requested {
        None | Some("LATEST") => Ok(LATEST_PLATFORM_VERSION.to_owned()),
        Some(v) if PLATFORM_VERSIONS.contains(&v) => Ok(v.to_owned()),
        Some(_) => Err(invalid("The specified platform version does not exist.")),
    }
}

/// The first subnet of an `awsvpc` network configuration (shown on the ENI attachment).
pub fn first_subnet(network: Option<&wire::NetworkConfiguration>) -> Option<String> {
    network?
        .awsvpc_configuration
        .as_ref()?
        .subnets
        .as_deref()?
        .first()
        .cloned()
}

/// Checks a FARGATE launch (RunTask, CreateService) of `def` with `overrides` and
/// `network`, in ECS's order: the definition's compatibility, the network mode and its
/// configuration, the task size (after overrides), ephemeral storage, then what a
/// Fargate task may not ask for (privileged containers, host paths).
///
/// # Errors
///
/// `InvalidParameterException` (`ClientException` for what the definition itself can
/// never do on Fargate) with ECS's wording where it is known.
pub fn validate_launch(
    def: &wire::TaskDefinition,
    overrides: Option<&wire::TaskOverride>,
    network: Option<&wire::NetworkConfiguration>,
) -> Result<(), EcsError> {
    let requires = def.requires_compatibilities.as_deref().unwrap_or(&[]);
    let compatible = def
        .compatibilities
        .as_deref()
        .unwrap_or(&[])
        .contains(&Compatibility::Fargate);
    if !requires.contains(&Compatibility::Fargate) && !compatible {
        return Err(invalid(
            "Task definition does not support launch_type FARGATE.",
        ));
    }
    if def.network_mode != Some(NetworkMode::Awsvpc) {
        return Err(invalid("Fargate only supports network mode 'awsvpc'."));
    }
    check_network(network)?;
    let eff = model::overrides::apply(def, overrides);
    let cpu = eff.cpu.as_deref().map(model::size::parse_cpu).transpose();
    let memory = eff
        .memory
        .as_deref()
        .map(model::size::parse_memory)
        .transpose();
    match (cpu, memory) {
        (Ok(Some(c)), Ok(Some(m))) => {
            model::size::check_fargate(c, m).map_err(|e| invalid(e.to_string()))?;
        }
        (Err(e), _) | (_, Err(e)) => return Err(invalid(e.to_string())),
        _ => {
            return Err(invalid(
                "Fargate requires that 'cpu' and 'memory' be defined at the task level.",
            ));
        }
    }
    let storage = eff
        .ephemeral_storage
        .as_ref()
        .and_then(|s| s.size_in_gi_b)
        .or_else(|| def.ephemeral_storage.as_ref().and_then(|s| s.size_in_gi_b));
    if let Some(gib) = storage
        && !EPHEMERAL_STORAGE_GIB.contains(&gib)
    {
        return Err(invalid(format!(
            "The ephemeral storage size of a Fargate task must be between {} and {} GiB, got {gib}.",
            EPHEMERAL_STORAGE_GIB.start(),
            EPHEMERAL_STORAGE_GIB.end()
        )));
    }
    if let Some(gib) = storage {
        // A size ECS accepts, but no pool node can hold a task to it: refused rather than
        // promised and not kept (see docs/fargate.md, "Isolation").
        return Err(invalid(format!(
            "ephemeralStorage of {gib} GiB cannot be enforced: the Fargate pool's nodes have no per-task disk quota. Leave ephemeralStorage out (the task shares its node's disk) or use the EC2 launch type."
        )));
    }
    check_isolation(def)
}

fn check_network(network: Option<&wire::NetworkConfiguration>) -> Result<(), EcsError> {
    let Some(vpc) = network.and_then(|n| n.awsvpc_configuration.as_ref()) else {
        return Err(invalid(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ));
    };
    let subnets = vpc.subnets.as_deref().unwrap_or(&[]);
    if subnets.is_empty() {
        return Err(invalid("subnets can not be empty."));
    }
    if subnets.len() > MAX_SUBNETS {
        return Err(invalid(format!(
            "subnets can have at most {MAX_SUBNETS} items."
        )));
    }
    if vpc.security_groups.as_deref().unwrap_or(&[]).len() > MAX_SECURITY_GROUPS {
        return Err(invalid(format!(
            "securityGroups can have at most {MAX_SECURITY_GROUPS} items."
        )));
    }
    Ok(())
}

/// What a Fargate task may not ask for: privileged containers, host paths (`host`
/// volumes, Docker volumes, which live on the node), the host's PID or IPC namespace.
fn check_isolation(def: &wire::TaskDefinition) -> Result<(), EcsError> {
    for c in def.container_definitions.as_deref().unwrap_or(&[]) {
        if c.privileged == Some(true) {
            return Err(client(format!(
                "Fargate does not support privileged containers: container {} sets 'privileged'.",
                c.name.as_deref().unwrap_or("")
            )));
        }
    }
    for v in def.volumes.as_deref().unwrap_or(&[]) {
        let name = v.name.as_deref().unwrap_or("");
        if v.host.as_ref().is_some_and(|h| h.source_path.is_some()) {
            return Err(client(format!(
                "Fargate does not support host paths: volume {name} sets host.sourcePath."
            )));
        }
        if v.docker_volume_configuration.is_some() {
            return Err(client(format!(
                "Fargate does not support Docker volumes: volume {name} sets dockerVolumeConfiguration."
            )));
        }
    }
    if def.pid_mode == Some(wire::PidMode::Host) || def.ipc_mode.is_some() {
        return Err(client(
            "Fargate supports neither ipcMode nor the 'host' pidMode.",
        ));
    }
    Ok(())
}

/// Gives a task built on pool instance `instance` the Fargate shape: its pool,
/// `launchType` FARGATE, `platformVersion`, `platformFamily`, `capacityProviderName`
/// (`provider`), no container instance, and its ENI attachment PRECREATED (with the
/// subnet when one is known) until the node reports the address.
pub fn shape_task(
    task: &mut TaskRecord,
    instance: &InstanceRecord,
    platform_version: &str,
    provider: &str,
    subnet: Option<String>,
    attachment_id: String,
) {
    task.pool = Some(instance.cluster.clone());
    let t = &mut task.task;
    t.launch_type = Some(wire::LaunchType::Fargate);
    t.platform_version = Some(platform_version.into());
    t.platform_family = Some(PLATFORM_FAMILY.into());
    t.capacity_provider_name = Some(provider.into());
    t.container_instance_arn = None;
    let details = subnet
        .map(|s| wire::KeyValuePair {
            name: Some("subnetId".into()),
            value: Some(s),
        })
        .into_iter()
        .collect();
    t.attachments = Some(vec![wire::Attachment {
        id: Some(attachment_id),
        r#type: Some(crate::ops::agent::ENI_ATTACHMENT.to_owned()),
        status: Some("PRECREATED".to_owned()),
        details: Some(details),
    }]);
}

/// How a Fargate task is placed in the pool: spread across zones, then across nodes
/// (a Fargate request names no strategy or constraint of its own).
pub fn placement_spec() -> PlacementSpec {
    PlacementSpec::default().or_default_strategies(vec![
        Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".to_owned())),
        Strategy::Spread(SpreadField::InstanceId),
    ])
}

/// The stops a spot pool node's reclaim (its DRAINING) asks for: every task on it that
/// is not stopping yet, with `stopCode` SpotInterruption. The node's agent stops each as
/// any task (SIGTERM, then SIGKILL after the container's `stopTimeout`, at most 120 s
/// on Fargate: ECS's two-minute warning), and a service replaces its tasks elsewhere.
pub fn spot_interruptions(state: &State, instance: &InstanceRecord, now: f64) -> Vec<TaskRecord> {
    if !is_pool(&instance.cluster) || !is_spot(instance) {
        return Vec::new();
    }
    state
        .usage(&instance.scope, &instance.cluster, &instance.id)
        .into_iter()
        .flat_map(|u| u.tasks.iter())
        .filter(|t| t.task.desired() != Some(model::lifecycle::TaskStatus::Stopped))
        .map(|t| {
            let mut rec = TaskRecord::clone(t);
            crate::task::request_stop(
                &mut rec,
                wire::TaskStopCode::SpotInterruption,
                SPOT_INTERRUPTED.to_owned(),
                now,
            );
            rec
        })
        .collect()
}

/// Rewrites scheduler failures for a Fargate launch: a user never sees the pool's
/// instances, so every failure is ECS's "capacity unavailable" without an ARN.
pub fn capacity_failure() -> wire::Failure {
    wire::Failure {
        arn: None,
        reason: Some(CAPACITY_UNAVAILABLE.to_owned()),
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fargate_def() -> wire::TaskDefinition {
        wire::TaskDefinition {
            network_mode: Some(NetworkMode::Awsvpc),
            requires_compatibilities: Some(vec![Compatibility::Fargate]),
            compatibilities: Some(vec![Compatibility::Ec2, Compatibility::Fargate]),
            cpu: Some("256".into()),
            memory: Some("512".into()),
            container_definitions: Some(vec![wire::ContainerDefinition {
                name: Some("app".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn network(subnets: &[&str]) -> wire::NetworkConfiguration {
        wire::NetworkConfiguration {
            awsvpc_configuration: Some(wire::AwsVpcConfiguration {
                subnets: Some(subnets.iter().map(|s| (*s).to_owned()).collect()),
                ..Default::default()
            }),
        }
    }

    fn message(r: Result<(), EcsError>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(()) => String::new(),
        }
    }

    #[test]
    fn a_fargate_definition_with_a_network_configuration_passes() {
        assert!(validate_launch(&fargate_def(), None, Some(&network(&["subnet-1"]))).is_ok());
    }

    #[test]
    fn awsvpc_needs_a_network_configuration_and_a_subnet() {
        let m = message(validate_launch(&fargate_def(), None, None));
        assert!(m.contains("Network Configuration must be provided"), "{m}");
        let m = message(validate_launch(&fargate_def(), None, Some(&network(&[]))));
        assert!(m.contains("subnets can not be empty"), "{m}");
        let many: Vec<String> = (0..17).map(|i| format!("subnet-{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(validate_launch(&fargate_def(), None, Some(&network(&many))).is_err());
    }

    #[test]
    fn bridge_and_ec2_only_definitions_are_refused() {
        let net = network(&["subnet-1"]);
        let mut d = fargate_def();
        d.network_mode = Some(NetworkMode::Bridge);
        let m = message(validate_launch(&d, None, Some(&net)));
        assert!(m.contains("awsvpc"), "{m}");
        let mut d = fargate_def();
        d.requires_compatibilities = Some(vec![Compatibility::Ec2]);
        d.compatibilities = Some(vec![Compatibility::Ec2]);
        let m = message(validate_launch(&d, None, Some(&net)));
        assert_eq!(m, "Task definition does not support launch_type FARGATE.");
    }

    #[test]
    fn an_oversized_override_gets_the_fargate_size_error() {
        let o = wire::TaskOverride {
            cpu: Some("256".into()),
            memory: Some("4096".into()),
            ..Default::default()
        };
        let m = message(validate_launch(
            &fargate_def(),
            Some(&o),
            Some(&network(&["s"])),
        ));
        assert!(
            m.contains("No Fargate configuration exists for given values: 256 CPU, 4096 memory"),
            "{m}"
        );
    }

    #[test]
    fn ephemeral_storage_out_of_ecs_range_or_not_enforceable_is_refused() {
        let net = network(&["s"]);
        for (gib, says) in [
            (20, "must be between 21 and 200 GiB"),
            (21, "cannot be enforced"),
            (200, "cannot be enforced"),
            (201, "must be between 21 and 200 GiB"),
        ] {
            let mut d = fargate_def();
            d.ephemeral_storage = Some(wire::EphemeralStorage {
                size_in_gi_b: Some(gib),
            });
            let err = message(validate_launch(&d, None, Some(&net)));
            assert!(err.contains(says), "{gib}: {err}");
        }
        assert!(validate_launch(&fargate_def(), None, Some(&net)).is_ok());
    }

    #[test]
    fn privileged_containers_and_host_paths_are_refused() {
        let net = network(&["s"]);
        let mut d = fargate_def();
        d.container_definitions.as_mut().unwrap()[0].privileged = Some(true);
        assert!(message(validate_launch(&d, None, Some(&net))).contains("privileged"));
        let mut d = fargate_def();
        d.volumes = Some(vec![wire::Volume {
            name: Some("v".into()),
            host: Some(wire::HostVolumeProperties {
                source_path: Some("/etc".into()),
            }),
            ..Default::default()
        }]);
        assert!(message(validate_launch(&d, None, Some(&net))).contains("host paths"));
        let mut d = fargate_def();
        d.pid_mode = Some(wire::PidMode::Host);
        assert!(validate_launch(&d, None, Some(&net)).is_err());
    }

    #[test]
    fn platform_versions_resolve() {
        assert_eq!(
            resolve_platform_version(None).unwrap(),
            LATEST_PLATFORM_VERSION
        );
        assert_eq!(
            resolve_platform_version(Some("LATEST")).unwrap(),
            LATEST_PLATFORM_VERSION
        );
        assert_eq!(resolve_platform_version(Some("1.3.0")).unwrap(), "1.3.0");
        let e = resolve_platform_version(Some("9.9.9")).unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException");
    }

    #[test]
    fn pool_names_are_never_cluster_names() {
        assert!(is_pool(&pool_cluster("a")));
        assert!(!is_pool("fargate-pool"));
        assert!(!is_pool(&pool_cluster("")));
        assert!(!is_valid_name(&pool_cluster("a")));
    }
}
