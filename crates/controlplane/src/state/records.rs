//! The stored records (one per cluster, task definition revision, container instance,
//! task, service, account setting, plus server metadata), the [`Record`] enum that is the
//! unit of persistence, and [`Change`], one decided change to the state.

use model::shared_str::SharedStr;
use model::wire;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::discovery::DiscoveryRecord;
use super::keys::*;

/// A cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Its name.
    pub name: String,
    /// As DescribeClusters shows it (counts and statistics are filled in at describe time).
    pub cluster: wire::Cluster,
    /// The OS updater's state document and lease (`ops::updater_state`); absent until an
    /// updater first writes it, and in records stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updater: Option<UpdaterDocument>,
}

/// The OS updater's state for one cluster (`FlotillaV1.PutUpdaterState`): an opaque
/// JSON document, its revision and who holds the lease to change it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdaterDocument {
    /// The document (JSON text, at most `model::updater_state::MAX_UPDATER_DOCUMENT_BYTES`).
    pub document: String,
    /// 1 for the first put, then +1 with each.
    pub revision: u64,
    /// Who holds the lease (`None` once given up).
    pub holder: Option<String>,
    /// When the lease ends (epoch seconds).
    pub lease_expires_at: f64,
}

/// One revision of a task definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Family name.
    pub family: String,
    /// Revision number (1, 2, …).
    pub revision: i32,
    /// As DescribeTaskDefinition shows it.
    pub definition: wire::TaskDefinition,
    /// Tags of this revision.
    pub tags: Vec<wire::Tag>,
}

/// A registered container instance (a node running `flotilla agent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Cluster name.
    pub cluster: String,
    /// Container instance id (the last part of its ARN).
    pub id: String,
    /// As DescribeContainerInstances shows it.
    pub instance: wire::ContainerInstance,
    /// Epoch seconds of the agent's last sign of life.
    pub last_heartbeat: f64,
}

/// What a task holds on its container instance while it is not STOPPED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// CPU units.
    pub cpu: i64,
    /// Memory MiB.
    pub memory: i64,
    /// TCP host ports.
    pub ports_tcp: Vec<u16>,
    /// UDP host ports.
    pub ports_udp: Vec<u16>,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Cluster name (shared with the cluster's other tasks).
    pub cluster: SharedStr,
    /// Task id (the last part of its ARN).
    pub id: String,
    /// As DescribeTasks shows it.
    pub task: wire::Task,
    /// Resources held on the instance until the task is STOPPED.
    pub reservation: Reservation,
    /// The container instance id it was placed on (shared with the instance's other
    /// tasks).
    pub instance_id: Option<SharedStr>,
    /// RunTask's idempotency token.
    pub client_token: Option<String>,
    /// Digest of the RunTask request that came with `client_token`: a retry with the
    /// same token must repeat the same request (else `ConflictException`, as ECS).
    /// Absent on tasks stored before it existed (their token then matches any request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token_fingerprint: Option<String>,
    /// Whether an agent has taken the task over (reported a state for it).
    pub agent_acknowledged: bool,
    /// Set when its service deregistered it from its load balancers to stop it: the stop
    /// it gets once their deregistration delay has passed (no new requests reach it
    /// meanwhile, those in flight complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_stop: Option<PendingStop>,
    /// The Fargate pool (its pseudo-cluster, `crate::fargate::pool_cluster`) whose
    /// instance `instance_id` is: a FARGATE task belongs to its cluster but holds
    /// resources on a pool instance. `None` for a task on its cluster's own instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

#[cfg(test)]
impl TaskRecord {
    /// A bare task for unit tests: `id` of `cluster` in `scope`, with a default wire
    /// shape and reservation, on no instance, without client token, pending stop or pool,
    /// not yet acknowledged; tests set what they need over it.
    pub(crate) fn bare(scope: Scope, cluster: &str, id: &str) -> TaskRecord {
        TaskRecord {
            scope,
            cluster: cluster.into(),
            id: id.into(),
            task: wire::Task::default(),
            reservation: Reservation::default(),
            instance_id: None,
            client_token: None,
            client_token_fingerprint: None,
            agent_acknowledged: false,
            pending_stop: None,
            pool: None,
        }
    }
}

/// A stop the service controller decided but holds back while the task drains from its
/// load balancers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingStop {
    /// Epoch seconds when draining ends and the stop is requested.
    pub at: f64,
    /// Its `stoppedReason`.
    pub reason: String,
}

/// A service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub name: String,
    /// As DescribeServices shows it.
    pub service: wire::Service,
    /// Ids of the listed deployments that reached a steady state (every desired task
    /// RUNNING, none of another deployment): rollback targets even before their rollout
    /// is COMPLETED (see docs/services.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steady_deployments: Vec<String>,
    /// Blue/green bookkeeping (`deploymentConfiguration.strategy` `BLUE_GREEN`).
    #[serde(default, skip_serializing_if = "BlueGreenRecord::is_empty")]
    pub blue_green: BlueGreenRecord,
    /// Its task sets (`deploymentController` `EXTERNAL` only; `ops/task_sets.rs`), as
    /// DescribeTaskSets shows them but for the live counts. Empty for other services and
    /// in records stored before task sets existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_sets: Vec<wire::TaskSet>,
}

/// Which of its two target groups each deployment of a blue/green (or LINEAR, CANARY)
/// service uses, and how far production traffic has moved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlueGreenRecord {
    /// Deployment id → whether its tasks join the alternate target groups (else the
    /// main ones, `targetGroupArn`). Listed deployments only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alternate: BTreeMap<String, bool>,
    /// The deployment production traffic was last shifted to in full, and when (epoch
    /// seconds): the bake time counts from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shifted: Option<(String, f64)>,
    /// A LINEAR or CANARY shift under way: part of production traffic goes to the green
    /// deployment. `None` when none is (and in records stored before these strategies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shifting: Option<TrafficStep>,
    /// The PRIMARY deployment's lifecycle hook invocations
    /// (`deploymentConfiguration.lifecycleHooks`), one per hook and stage (and traffic
    /// step) reached; empty in records stored before hooks existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookState>,
    /// The lifecycle stage the PRIMARY deployment (its id) was last seen at by the
    /// service controller, as DescribeServiceDeployments' `lifecycleStage` shows it.
    /// Only for a deployment that replaces another one; `None` before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<(String, wire::ServiceDeploymentLifecycleStage)>,
}

impl BlueGreenRecord {
    /// Nothing recorded (a service that never deployed blue/green).
    pub fn is_empty(&self) -> bool {
        self.alternate.is_empty()
            && self.shifted.is_none()
            && self.shifting.is_none()
            && self.hooks.is_empty()
            && self.stage.is_none()
    }
}

/// Where a lifecycle hook invocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HookStatus {
    /// Not called yet.
    Pending,
    /// Called; it answered `IN_PROGRESS` (it is called again at `next_call_at`).
    InProgress,
    /// It answered `SUCCEEDED`.
    Succeeded,
    /// It answered `FAILED`, answered nothing usable, or timed out with the `ROLLBACK`
    /// timeout action: the deployment fails.
    Failed,
    /// It timed out with the `CONTINUE` timeout action: the deployment goes on.
    TimedOut,
}

impl HookStatus {
    /// Whether the hook still has to answer (PENDING or IN_PROGRESS).
    pub fn is_open(self) -> bool {
        matches!(self, HookStatus::Pending | HookStatus::InProgress)
    }
}

/// One lifecycle hook invocation of a blue/green (LINEAR, CANARY) deployment: hook
/// `hook` of `deploymentConfiguration.lifecycleHooks` at `stage`. The service controller
/// records it when the deployment reaches the stage and waits until every hook of the
/// stage has SUCCEEDED; the server's hook runner calls the webhook and stores the
/// answer (`ops::lifecycle_hooks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookState {
    /// The execution id (`executionId` of the call), unique within the service:
    /// `{deployment}/{stage}/{step}/{hook}`.
    pub id: String,
    /// The deployment id.
    pub deployment: String,
    /// The lifecycle stage.
    pub stage: wire::DeploymentLifecycleHookStage,
    /// The traffic step, for the PRE_PRODUCTION_TRAFFIC_SHIFT and
    /// PRODUCTION_TRAFFIC_SHIFT stages that LINEAR and CANARY reach once per step: the
    /// step's share of production traffic in tenths of a percent (1000 for the whole of
    /// it). 0 for the other stages.
    #[serde(default)]
    pub step: u32,
    /// Index of the hook in `deploymentConfiguration.lifecycleHooks`.
    pub hook: usize,
    /// The webhook URL (`hookTargetArn`) as it was when the stage was reached; empty
    /// for a PAUSE hook.
    pub target: String,
    /// A `PAUSE` hook (`targetType`): nothing is called; it waits for
    /// ContinueServiceDeployment (shown AWAITING_ACTION while open).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause: bool,
    /// Where it stands.
    pub status: HookStatus,
    /// When the stage was reached (epoch seconds).
    pub started_at: f64,
    /// When the hook is (next) due to be called (epoch seconds).
    pub next_call_at: f64,
    /// When an open hook times out (epoch seconds): `started_at` plus the hook's
    /// `timeoutConfiguration.timeoutInMinutes`.
    pub expires_at: f64,
    /// Whether a timeout lets the deployment go on (`CONTINUE`) rather than fail it
    /// (`ROLLBACK`, the default).
    #[serde(default)]
    pub continue_on_timeout: bool,
    /// Calls answered so far (any answer, an unreachable webhook included).
    #[serde(default)]
    pub attempts: u32,
    /// Calls in a row that got no answer (connection refused, timeout).
    #[serde(default)]
    pub errors: u32,
    /// When it SUCCEEDED, FAILED or TIMED_OUT (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    /// Why it FAILED or TIMED_OUT, or what the last unreachable call saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The hook's configured `hookDetails` until it answers IN_PROGRESS with its own; sent
    /// with each call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_details: Option<serde_json::Value>,
    /// Whether it ended by its timeout (FAILED with the `ROLLBACK` timeout action, or
    /// TIMED_OUT): DescribeServiceDeployments shows TIMED_OUT either way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
}

impl HookState {
    /// How events and reasons name the hook: its webhook URL, or `PAUSE`.
    pub fn label(&self) -> &str {
        if self.pause { "PAUSE" } else { &self.target }
    }
}

/// The step a LINEAR or CANARY traffic shift has reached: the green deployment takes
/// `percent` of production traffic since `since`, the blue side the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficStep {
    /// The green deployment's id.
    pub deployment: String,
    /// Whether its tasks are on the alternate target groups (blue on the main ones),
    /// kept here because the record outlives the deployment's listing (a rollback).
    pub alternate: bool,
    /// Percent of production traffic forwarded to it, above 0 and below 100.
    pub percent: f64,
    /// When that share was written (epoch seconds): the step's bake counts from then.
    pub since: f64,
}

impl ClusterRecord {
    /// The cluster's key.
    pub fn key(&self) -> ClusterKey {
        ClusterKey::new(&self.scope, &self.name)
    }
}

impl InstanceRecord {
    /// The container instance's key.
    pub fn key(&self) -> MemberKey {
        MemberKey::new(&self.scope, &self.cluster, &self.id)
    }

    /// The value of the instance's first attribute named `name`, if it has one.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.instance
            .attributes
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .and_then(|a| a.value.as_deref())
    }
}

impl TaskRecord {
    /// The task's key.
    pub fn key(&self) -> MemberKey {
        MemberKey::new(&self.scope, &self.cluster, &self.id)
    }

    /// The (pseudo-)cluster of the instance the task is placed on: its pool for a
    /// Fargate task, else its own cluster.
    pub fn placed_in(&self) -> &str {
        self.pool.as_deref().unwrap_or(&self.cluster)
    }
}

impl ServiceRecord {
    /// The service's key.
    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(&self.scope, &self.cluster, &self.name)
    }
}

/// An account setting (per principal, or the account default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingRecord {
    /// Where it lives.
    pub scope: Scope,
    /// As ListAccountSettings shows it.
    pub setting: wire::Setting,
}

/// A capacity provider (CreateCapacityProvider): account- and region-wide, by name, as
/// ECS keeps them. flotilla has no Auto Scaling: its `autoScalingGroupArn` names a node
/// group (see [`crate::capacity`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityProviderRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Its name.
    pub name: String,
    /// As DescribeCapacityProviders shows it.
    pub provider: wire::CapacityProvider,
    /// Managed scaling's memory (`crate::managed_scaling`); empty until it first scales
    /// out, and in records stored before it existed.
    #[serde(default, skip_serializing_if = "ScalingRecord::is_empty")]
    pub scaling: ScalingRecord,
}

/// What managed scaling remembers of a capacity provider between passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScalingRecord {
    /// Epoch seconds of the last scale-out the scaling hook accepted: another waits
    /// until `instanceWarmupPeriod` has passed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_out_at: Option<f64>,
    /// How many instances that scale-out asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_out_count: Option<u32>,
}

impl ScalingRecord {
    /// Whether there is nothing to remember.
    pub fn is_empty(&self) -> bool {
        *self == ScalingRecord::default()
    }
}

impl CapacityProviderRecord {
    /// The capacity provider's key.
    pub fn key(&self) -> CapacityProviderKey {
        (self.scope.clone(), self.name.clone())
    }
}

/// Server-wide facts that must survive restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaRecord {
    /// Hex key that signs pagination tokens.
    pub paging_secret: String,
}

/// Any stored record; the unit of persistence.
// Records are moved, not copied, between the writer and the store; boxing the large
// variants would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "record")]
pub enum Record {
    /// A cluster.
    Cluster(ClusterRecord),
    /// A task definition revision.
    TaskDefinition(TaskDefinitionRecord),
    /// A container instance.
    Instance(InstanceRecord),
    /// A task.
    Task(TaskRecord),
    /// A service.
    Service(ServiceRecord),
    /// An account setting.
    Setting(SettingRecord),
    /// Server metadata.
    Meta(MetaRecord),
    /// A Cloud Map record (`state/discovery.rs`).
    Discovery(DiscoveryRecord),
    /// An ELBv2 load balancer.
    LoadBalancer(super::elb::LoadBalancerRecord),
    /// An ELBv2 target group and its targets.
    TargetGroup(super::elb::TargetGroupRecord),
    /// An ELBv2 listener.
    Listener(super::elb::ListenerRecord),
    /// An ELBv2 listener rule.
    ListenerRule(super::elb::RuleRecord),
    /// A capacity provider.
    CapacityProvider(CapacityProviderRecord),
    /// A service deployment (`state/service_history.rs`).
    ServiceDeployment(super::service_history::ServiceDeploymentRecord),
    /// A service revision (`state/service_history.rs`).
    ServiceRevision(super::service_history::ServiceRevisionRecord),
}

impl Record {
    /// The record's key in the store. Names and ids never contain `|`.
    pub fn store_key(&self) -> String {
        fn k(kind: &str, s: &Scope, rest: &[&str]) -> String {
            let mut out = format!("{kind}|{}|{}", s.account, s.region);
            for r in rest {
                out.push('|');
                out.push_str(r);
            }
            out
        }
        match self {
            Record::Cluster(r) => k("cluster", &r.scope, &[&r.name]),
            Record::TaskDefinition(r) => {
                k("taskdef", &r.scope, &[&r.family, &r.revision.to_string()])
            }
            Record::Instance(r) => k("instance", &r.scope, &[&r.cluster, &r.id]),
            Record::Task(r) => k("task", &r.scope, &[&r.cluster, &r.id]),
            Record::Service(r) => k("service", &r.scope, &[&r.cluster, &r.name]),
            Record::Setting(r) => k(
                "setting",
                &r.scope,
                &[
                    r.setting.principal_arn.as_deref().unwrap_or(""),
                    r.setting.name.map(|n| n.as_str()).unwrap_or(""),
                ],
            ),
            Record::Meta(_) => "meta".to_owned(),
            Record::Discovery(r) => r.store_key(),
            Record::LoadBalancer(r) => k("elb-lb", &r.scope, &[&r.name]),
            Record::TargetGroup(r) => k("elb-tg", &r.scope, &[&r.name]),
            Record::Listener(r) => k("elb-listener", &r.scope, &[&r.id]),
            Record::ListenerRule(r) => k("elb-rule", &r.scope, &[&r.id]),
            Record::CapacityProvider(r) => k("capacity-provider", &r.scope, &[&r.name]),
            Record::ServiceDeployment(r) => k(
                "service-deployment",
                &r.scope,
                &[&r.cluster, &r.service, &r.id],
            ),
            Record::ServiceRevision(r) => k(
                "service-revision",
                &r.scope,
                &[&r.cluster, &r.service, &r.id],
            ),
        }
    }
}

/// One decided change to the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace this record.
    Put(Record),
    /// Remove this record.
    Delete(Record),
}
