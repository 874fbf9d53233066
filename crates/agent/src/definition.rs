//! What a task definition asks of the runtime: the task's containers with RunTask's
//! overrides applied, in `dependsOn` start order, and each one's [`ContainerSpec`]
//! (command, environment, user, cpu and memory, ulimits, volumes, network, resolv.conf,
//! `/etc/hosts` of Service Connect tasks, labels). Apart from creating volume directories
//! and writing resolv.conf files ([`crate::task_dns`]), no IO: the supervisor acts on the
//! result (it writes a Service Connect task's hosts file before asking for the specs).

use std::collections::BTreeMap;
use std::path::PathBuf;

use model::agent::TaskAssignment;
use model::wire;
use runtime::types::{
    BindMount, ContainerId, ContainerSpec, IdMapping, ImageRef, Resources, Ulimit,
};

use crate::error::TaskError;
use crate::supervisor::Shared;

/// Label carrying the task ARN on every container the agent creates.
pub const TASK_LABEL: &str = "flotilla.task-arn";
/// Label carrying the container's name in its task definition.
pub const NAME_LABEL: &str = "flotilla.container-name";

/// The task's containers with their overrides applied ([`model::overrides`], the rules
/// the control plane reserves resources by), in start order (`dependsOn` first).
pub fn containers_in_start_order(a: &TaskAssignment) -> Vec<wire::ContainerDefinition> {
    let defs: Vec<wire::ContainerDefinition> =
        model::overrides::apply(&a.task_definition, a.task.overrides.as_ref())
            .container_definitions
            .unwrap_or_default();
    // Topological order by dependsOn (definitions were validated acyclic-free of self
    // references; a cycle falls back to definition order for the rest).
    let mut ordered: Vec<wire::ContainerDefinition> = Vec::new();
    let mut left = defs;
    while !left.is_empty() {
        let ready = left.iter().position(|c| {
            c.depends_on
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .all(|d| ordered.iter().any(|o| o.name == d.container_name))
        });
        ordered.push(left.remove(ready.unwrap_or(0)));
    }
    ordered
}

/// The runtime container id of a task's container.
pub fn container_id(task_id: &str, index: usize) -> Result<ContainerId, runtime::Error> {
    ContainerId::new(format!("{task_id}-{index}"))
}

/// The node path a task's volume `volume` names (`host.sourcePath`), if any. A FARGATE
/// task never gets one, whatever its definition says (the control plane refuses such
/// definitions already; this is the node's own guard): its volumes are task-private
/// directories under the agent's data dir.
fn host_source_path(a: &TaskAssignment, volumes: &[wire::Volume], volume: &str) -> Option<PathBuf> {
    if a.task.launch_type == Some(wire::LaunchType::Fargate) {
        return None;
    }
    volumes
        .iter()
        .find(|v| v.name.as_deref() == Some(volume))
        .and_then(|v| v.host.as_ref()?.source_path.clone())
        .map(PathBuf::from)
}

/// The ids every FARGATE task's containers run as on the node: container uid/gid
/// `0..65536` are node ids `1_000_000_000..1_000_065_536`, far above any node user's, so
/// root in a Fargate container is an unprivileged user on the pool node. All Fargate
/// tasks share the range (one remapped snapshot per image, not one per task).
pub const FARGATE_ID_MAPPING: IdMapping = IdMapping {
    host_base: 1_000_000_000,
    size: IdMapping::MAX_SIZE,
};

/// The user namespace a task's containers get: [`FARGATE_ID_MAPPING`] for a FARGATE task,
/// none (the node's ids, as ECS's EC2 launch type) otherwise.
pub fn user_namespace(a: &TaskAssignment) -> Option<IdMapping> {
    (a.task.launch_type == Some(wire::LaunchType::Fargate)).then_some(FARGATE_ID_MAPPING)
}

/// Translates a container definition into the runtime's spec.
pub fn container_spec(
    shared: &Shared,
    a: &TaskAssignment,
    task_id: &str,
    index: usize,
    c: &wire::ContainerDefinition,
) -> Result<ContainerSpec, TaskError> {
    let name = c.name.clone().unwrap_or_default();
    let spec_error = |source| TaskError::Spec {
        container: name.clone(),
        source,
    };
    let image = ImageRef::parse(c.image.as_deref().unwrap_or("")).map_err(spec_error)?;
    let id = container_id(task_id, index).map_err(spec_error)?;
    let mut spec = ContainerSpec::new(id, image);
    spec.entry_point.clone_from(&c.entry_point);
    spec.command.clone_from(&c.command);
    spec.environment = c
        .environment
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|kv| Some((kv.name.clone()?, kv.value.clone().unwrap_or_default())))
        .collect();
    spec.working_directory.clone_from(&c.working_directory);
    spec.user.clone_from(&c.user);
    spec.hostname.clone_from(&c.hostname);
    spec.read_only_root = c.readonly_root_filesystem.unwrap_or(false);
    spec.resources = Resources {
        cpu_units: c.cpu.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0),
        memory_hard_mib: c.memory.and_then(|v| u64::try_from(v).ok()),
        memory_soft_mib: c.memory_reservation.and_then(|v| u64::try_from(v).ok()),
    };
    spec.ulimits = c
        .ulimits
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter_map(|u| {
            Some(Ulimit {
                name: u.name?.as_str().to_owned(),
                soft: u64::try_from(u.soft_limit?).ok()?,
                hard: u64::try_from(u.hard_limit?).ok()?,
            })
        })
        .collect();
    spec.user_namespace = user_namespace(a);
    let volumes = a.task_definition.volumes.as_deref().unwrap_or(&[]);
    for mp in c.mount_points.as_deref().unwrap_or(&[]) {
        let volume = mp.source_volume.clone().unwrap_or_default();
        let host_path = host_source_path(a, volumes, &volume)
            .unwrap_or_else(|| shared.data_dir.join("volumes").join(task_id).join(&volume));
        let volume_error = |source| TaskError::Volume {
            path: host_path.display().to_string(),
            volume: volume.clone(),
            source,
        };
        std::fs::create_dir_all(&host_path).map_err(volume_error)?;
        // A task-private volume (every volume of a Fargate task) belongs to the
        // container's root, mapped.
        if let Some(map) = spec.user_namespace {
            std::os::unix::fs::chown(&host_path, Some(map.host_base), Some(map.host_base))
                .map_err(volume_error)?;
        }
        spec.mounts.push(BindMount {
            host_path,
            container_path: mp.container_path.clone().unwrap_or_default(),
            read_only: mp.read_only.unwrap_or(false),
        });
    }
    spec.network = crate::task_network::container_network(shared, a, task_id);
    let mode = crate::task_network::mode(a);
    let resolv = crate::task_dns::resolv_conf(c, mode, &shared.task_dns, || {
        crate::task_dns::node_resolv_conf(mode.is_none())
    })
    .and_then(|conf| {
        conf.map(|conf| crate::task_dns::write(&shared.data_dir, task_id, index, &conf))
            .transpose()
            .map_err(|e| e.to_string())
    })
    .map_err(|why| TaskError::ResolvConf {
        container: name.clone(),
        why,
    })?;
    if let Some(host_path) = resolv {
        spec.mounts.push(BindMount {
            host_path,
            container_path: "/etc/resolv.conf".into(),
            read_only: true,
        });
    }
    // Service Connect: the client aliases (see [`crate::service_connect`]); the file is
    // rewritten in place when they change, so the mount follows.
    if a.service_connect.is_some() {
        spec.mounts.push(BindMount {
            host_path: crate::service_connect::hosts_path(&shared.data_dir, task_id),
            container_path: "/etc/hosts".into(),
            read_only: true,
        });
    }
    spec.labels = BTreeMap::from([
        (
            TASK_LABEL.to_owned(),
            a.task.task_arn.as_deref().unwrap_or_default().to_owned(),
        ),
        (NAME_LABEL.to_owned(), name),
    ]);
    Ok(spec)
}

#[cfg(test)]
mod fargate_tests {
    use super::*;

    #[test]
    fn a_fargate_task_never_gets_a_host_path() {
        let volumes = vec![wire::Volume {
            name: Some("v".into()),
            host: Some(wire::HostVolumeProperties {
                source_path: Some("/etc".into()),
            }),
            ..Default::default()
        }];
        let mut a = TaskAssignment {
            task: wire::Task::default(),
            task_definition: wire::TaskDefinition::default(),
            service_connect: None,
        };
        assert_eq!(
            host_source_path(&a, &volumes, "v"),
            Some(PathBuf::from("/etc"))
        );
        a.task.launch_type = Some(wire::LaunchType::Fargate);
        assert_eq!(host_source_path(&a, &volumes, "v"), None);
    }

    #[test]
    fn only_a_fargate_task_gets_a_user_namespace() {
        let mut a = TaskAssignment {
            task: wire::Task::default(),
            task_definition: wire::TaskDefinition::default(),
            service_connect: None,
        };
        assert_eq!(user_namespace(&a), None);
        a.task.launch_type = Some(wire::LaunchType::Ec2);
        assert_eq!(user_namespace(&a), None);
        a.task.launch_type = Some(wire::LaunchType::External);
        assert_eq!(user_namespace(&a), None);
        a.task.launch_type = Some(wire::LaunchType::Fargate);
        let map = user_namespace(&a).unwrap();
        assert_eq!(map.host_id(0), Some(1_000_000_000));
        assert_eq!(map.size, 65_536);
    }
}
