//! Tasks, the domain rules the API operations and the controllers share: building a new
//! task from its definition, asking one to stop, marking one STOPPED, the task groups
//! (`service:<name>`, `family:<family>`), scale-in protection and questions about a
//! task's status.
//!
//! RunTask and StartTask ([`ops::tasks`](crate::ops::tasks)) and the service controller
//! ([`controllers::service`](crate::controllers::service)) build tasks with
//! [`build_task`]; StopTask and the controller stop them with [`request_stop`]; the
//! agent's reports and the liveness timer end them with [`mark_stopped`].

use model::arn::ResourceType;
use model::lifecycle::TaskStatus;
use model::wire::{self, LaunchType, NetworkMode, TaskStopCode};
use scheduler::snapshot::HostPort;

use crate::engine::Ctx;
use crate::ops::task_definitions::network_mode;
use crate::state::{ClusterRecord, InstanceRecord, Reservation, TaskDefinitionRecord, TaskRecord};

/// The prefix of a service's task group.
const SERVICE_GROUP_PREFIX: &str = "service:";

/// The group of a service's tasks: `service:<name>`.
pub fn service_group(name: &str) -> String {
    format!("{SERVICE_GROUP_PREFIX}{name}")
}

/// The service a task group belongs to: `<name>` of `service:<name>`, `None` for any
/// other group.
pub fn group_service(group: &str) -> Option<&str> {
    group.strip_prefix(SERVICE_GROUP_PREFIX)
}

/// The group RunTask and StartTask give a task when the request names none:
/// `family:<family>`.
pub fn family_group(family: &str) -> String {
    format!("family:{family}")
}

/// Whether the task's last status is RUNNING.
pub fn is_running(task: &wire::Task) -> bool {
    task.last() == Some(TaskStatus::Running)
}

/// Whether the task has not yet reached RUNNING.
pub fn is_pending(task: &wire::Task) -> bool {
    task.last().is_some_and(TaskStatus::is_pending)
}

/// Whether the task's last status is STOPPED (it holds nothing on its instance any more).
pub fn is_stopped(task: &wire::Task) -> bool {
    task.last() == Some(TaskStatus::Stopped)
}

/// Everything a new task needs besides its definition and instance.
#[derive(Debug, Clone, Default)]
pub struct TaskSpec {
    /// `group` (defaults to `family:<family>`).
    pub group: Option<String>,
    /// `startedBy`.
    pub started_by: Option<String>,
    /// `overrides`.
    pub overrides: Option<wire::TaskOverride>,
    /// Tags of the task.
    pub tags: Vec<wire::Tag>,
    /// `enableExecuteCommand`.
    pub enable_execute_command: bool,
    /// RunTask's `clientToken`.
    pub client_token: Option<String>,
    /// Launch type shown on the task.
    pub launch_type: Option<LaunchType>,
    /// For a task placed in a Fargate pool: what its Fargate shape shows
    /// ([`crate::fargate::shape_task`]).
    pub fargate: Option<FargateSpec>,
}

impl TaskSpec {
    /// The task's group: the one given, else [`family_group`] of `family` (the task
    /// definition's).
    pub fn group_or_family(&self, family: &str) -> String {
        self.group.clone().unwrap_or_else(|| family_group(family))
    }
}

/// What a Fargate task shows besides its pool instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FargateSpec {
    /// The concrete platform version (`LATEST` resolved).
    pub platform_version: String,
    /// `capacityProviderName`: FARGATE or FARGATE_SPOT.
    pub provider: String,
    /// The subnet shown on its ENI attachment (the first of `awsvpcConfiguration`).
    pub subnet: Option<String>,
}

/// Builds a new task (not yet stored) on `instance`.
pub fn build_task(
    ctx: &mut Ctx,
    cluster: &ClusterRecord,
    def: &TaskDefinitionRecord,
    instance: &InstanceRecord,
    spec: &TaskSpec,
    reservation: Reservation,
    dynamic_ports: &[HostPort],
) -> TaskRecord {
    let id = ctx.new_id();
    // Made once and shared by the task and its containers.
    let task_arn =
        wire::SharedStr::from(ctx.arn(ResourceType::Task, format!("{}/{id}", cluster.name)));
    let d = &def.definition;
    let eff = model::overrides::apply(d, spec.overrides.as_ref());
    let mut dynamic = dynamic_ports.iter().copied();
    let mode = network_mode(d);
    let containers = eff
        .container_definitions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|c| {
            let uuid = ctx.new_uuid();
            let bindings = if mode == NetworkMode::Bridge || mode == NetworkMode::Host {
                c.port_mappings
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .map(|pm| {
                        let host = match pm.host_port {
                            Some(h) if h > 0 => h,
                            _ if mode == NetworkMode::Host => pm.container_port.unwrap_or(0),
                            _ => dynamic.next().map_or(0, |p| i32::from(p.port)),
                        };
                        wire::NetworkBinding {
                            bind_ip: Some("0.0.0.0".into()),
                            container_port: pm.container_port,
                            host_port: Some(host),
                            protocol: pm.protocol,
                            ..Default::default()
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            wire::Container {
                container_arn: Some(ctx.arn(
                    ResourceType::Container,
                    format!("{}/{id}/{uuid}", cluster.name),
                )),
                task_arn: Some(task_arn.clone()),
                name: c.name.as_deref().map(Into::into),
                image: c.image.as_deref().map(Into::into),
                last_status: Some(TaskStatus::Pending.into()),
                network_bindings: Some(bindings),
                network_interfaces: Some(vec![]),
                health_status: c.health_check.as_ref().map(|_| wire::HealthStatus::Unknown),
                cpu: c.cpu.map(|v| v.to_string().into()),
                memory: c.memory.map(|v| v.to_string().into()),
                memory_reservation: c.memory_reservation.map(|v| v.to_string().into()),
                ..Default::default()
            }
        })
        .collect();
    let attr = |name: &str| instance.attribute(name).map(str::to_owned);
    let initial = if mode == NetworkMode::Awsvpc {
        TaskStatus::Provisioning
    } else {
        TaskStatus::Pending
    };
    let task = wire::Task {
        attachments: Some(vec![]),
        attributes: Some(vec![wire::Attribute {
            name: Some("ecs.cpu-architecture".into()),
            value: attr("ecs.cpu-architecture"),
            ..Default::default()
        }]),
        availability_zone: attr("ecs.availability-zone").map(Into::into),
        cluster_arn: cluster.cluster.cluster_arn.as_deref().map(Into::into),
        container_instance_arn: instance
            .instance
            .container_instance_arn
            .as_deref()
            .map(Into::into),
        containers: Some(containers),
        cpu: Some(reservation.cpu.to_string().into()),
        memory: Some(reservation.memory.to_string().into()),
        created_at: Some(ctx.now),
        desired_status: Some(TaskStatus::Running.into()),
        enable_execute_command: Some(spec.enable_execute_command),
        group: Some(spec.group_or_family(&def.family).into()),
        health_status: Some(wire::HealthStatus::Unknown),
        last_status: Some(initial.into()),
        launch_type: Some(spec.launch_type.unwrap_or(LaunchType::Ec2)),
        overrides: Some(
            spec.overrides
                .clone()
                .unwrap_or_else(|| wire::TaskOverride {
                    container_overrides: Some(vec![]),
                    inference_accelerator_overrides: Some(vec![]),
                    ..Default::default()
                }),
        ),
        started_by: spec.started_by.as_deref().map(Into::into),
        tags: Some(spec.tags.clone()),
        task_arn: Some(task_arn),
        task_definition_arn: d.task_definition_arn.as_deref().map(Into::into),
        version: Some(1),
        ..Default::default()
    };
    let mut rec = TaskRecord {
        scope: ctx.scope.clone(),
        cluster: cluster.name.as_str().into(),
        id,
        task,
        reservation,
        instance_id: Some(instance.id.as_str().into()),
        client_token: spec.client_token.clone(),
        client_token_fingerprint: None,
        agent_acknowledged: false,
        pending_stop: None,
        pool: None,
    };
    if let Some(f) = &spec.fargate {
        let attachment = ctx.new_uuid();
        crate::fargate::shape_task(
            &mut rec,
            instance,
            &f.platform_version,
            &f.provider,
            f.subnet.clone(),
            attachment,
        );
    }
    rec
}

/// Asks a task to stop now (StopTask, or the service scheduler): desired STOPPED, with
/// `code` and `reason`. The agent then stops its containers and reports it STOPPED; a
/// task no agent has taken over yet stops at once (there is nothing running to stop).
pub fn request_stop(rec: &mut TaskRecord, code: TaskStopCode, reason: String, now: f64) {
    let t = &mut rec.task;
    t.set_desired(TaskStatus::Stopped);
    t.stopped_reason = Some(reason);
    t.stop_code = Some(code);
    t.stopping_at = Some(now);
    t.version = Some(t.version.unwrap_or(0) + 1);
    if !rec.agent_acknowledged {
        mark_stopped(&mut rec.task, now);
    }
}

/// The task attribute holding the expiry of its scale-in protection (epoch seconds; see
/// [`ops::protection`](crate::ops::protection)).
pub const PROTECTION_ATTRIBUTE: &str = "flotilla.protection-expires-at";

/// When the task's scale-in protection expires (epoch seconds), if it was ever set.
pub fn protection_expiry(task: &wire::Task) -> Option<f64> {
    task.attributes
        .as_deref()?
        .iter()
        .find(|a| a.name.as_deref() == Some(PROTECTION_ATTRIBUTE))?
        .value
        .as_deref()?
        .parse()
        .ok()
}

/// Whether the task is protected from scale-in at `now`.
pub fn is_protected(task: &wire::Task, now: f64) -> bool {
    protection_expiry(task).is_some_and(|e| e > now)
}

/// Marks a task STOPPED now: its containers too, and it releases its reservation.
pub fn mark_stopped(task: &mut wire::Task, now: f64) {
    task.set_last(TaskStatus::Stopped);
    task.set_desired(TaskStatus::Stopped);
    task.stopping_at.get_or_insert(now);
    task.execution_stopped_at.get_or_insert(now);
    task.stopped_at = Some(now);
    for c in task.containers.get_or_insert_with(Vec::new) {
        c.set_last(TaskStatus::Stopped);
    }
    task.version = Some(task.version.unwrap_or(0) + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_groups_round_trip() {
        assert_eq!(service_group("web"), "service:web");
        assert_eq!(group_service(&service_group("web")), Some("web"));
        assert_eq!(group_service(&family_group("web")), None);
        assert_eq!(group_service("service:"), Some(""));
    }

    fn record(acknowledged: bool) -> TaskRecord {
        TaskRecord {
            scope: crate::Scope::new("1", "r"),
            cluster: "c".into(),
            id: "t".into(),
            task: wire::Task {
                last_status: Some(TaskStatus::Running.into()),
                desired_status: Some(TaskStatus::Running.into()),
                containers: Some(vec![wire::Container::default()]),
                version: Some(3),
                ..Default::default()
            },
            reservation: Reservation::default(),
            instance_id: Some("i".into()),
            client_token: None,
            client_token_fingerprint: None,
            agent_acknowledged: acknowledged,
            pending_stop: None,
            pool: None,
        }
    }

    #[test]
    fn a_stop_request_leaves_a_running_task_to_its_agent() {
        let mut r = record(true);
        request_stop(&mut r, TaskStopCode::UserInitiated, "bye".into(), 10.0);
        let t = &r.task;
        assert_eq!(t.desired(), Some(TaskStatus::Stopped));
        assert_eq!(
            t.last(),
            Some(TaskStatus::Running),
            "the agent reports STOPPED"
        );
        assert_eq!(t.stop_code, Some(TaskStopCode::UserInitiated));
        assert_eq!(t.stopped_reason.as_deref(), Some("bye"));
        assert_eq!((t.stopping_at, t.version), (Some(10.0), Some(4)));
    }

    #[test]
    fn a_stop_request_stops_a_task_no_agent_took_over_at_once() {
        let mut r = record(false);
        request_stop(
            &mut r,
            TaskStopCode::ServiceSchedulerInitiated,
            "x".into(),
            10.0,
        );
        let t = &r.task;
        assert!(is_stopped(t));
        assert_eq!(
            t.containers.as_ref().unwrap()[0].last(),
            Some(TaskStatus::Stopped)
        );
        assert_eq!((t.stopped_at, t.version), (Some(10.0), Some(5)));
    }
}
