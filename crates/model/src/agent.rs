//! The flotilla agent protocol: what a node agent asks the control plane besides the
//! ECS operations it shares with the real ECS agent (RegisterContainerInstance,
//! SubmitTaskStateChange, SubmitContainerStateChange).
//!
//! It travels like an ECS operation — `POST /`, SigV4-signed, JSON — with
//! `X-Amz-Target: FlotillaAgentV1.<Operation>`, so the agent opens every connection
//! and needs no inbound port.
//!
//! `PollTasks` is a long poll: the agent sends the digest of the assignment it last
//! saw; the server answers at once when the assignment differs, or when it changes
//! within `waitSeconds`, or with the same digest when the wait runs out. Each poll is
//! also the agent's heartbeat. An agent that sends `omitUnchanged` gets that last answer
//! without its tasks (`unchanged`), so an idle poll costs the server no encoding.

use serde::{Deserialize, Serialize};

use crate::wire;

/// The `X-Amz-Target` prefix of agent operations.
pub const AGENT_TARGET_PREFIX: &str = "FlotillaAgentV1";

/// Longest wait a poll may ask for, in seconds.
pub const MAX_WAIT_SECONDS: u32 = 20;

/// Every agent operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOperation {
    /// Long-poll for the tasks assigned to an instance; doubles as the heartbeat.
    PollTasks,
    /// Report containers' health-check results (ECS's state-change calls carry none).
    ReportHealth,
    /// Report an `awsvpc` task's address (see [`ReportNetworkRequest`]).
    ReportNetwork,
    /// Answer a log request handed over in `PollTasks` (see [`crate::logs`]).
    PutLogs,
    /// The Service Connect routes of namespaces (see [`GetServiceConnectRoutesRequest`]).
    GetServiceConnectRoutes,
    /// Answer a host API call handed over in `PollTasks` (see [`crate::host`]).
    PutHostAnswer,
    /// ECS Anywhere: exchange an SSM activation for a managed-instance id and the
    /// node's own credentials (see [`RegisterExternalInstanceRequest`]).
    RegisterExternalInstance,
    /// ECS Anywhere: replace the calling node's credentials with new ones (see
    /// [`RotateNodeCredentialsRequest`]).
    RotateNodeCredentials,
}

impl AgentOperation {
    /// Looks an operation up by name.
    pub fn from_name(name: &str) -> Option<AgentOperation> {
        match name {
            "PollTasks" => Some(AgentOperation::PollTasks),
            "ReportHealth" => Some(AgentOperation::ReportHealth),
            "ReportNetwork" => Some(AgentOperation::ReportNetwork),
            "PutLogs" => Some(AgentOperation::PutLogs),
            "GetServiceConnectRoutes" => Some(AgentOperation::GetServiceConnectRoutes),
            "PutHostAnswer" => Some(AgentOperation::PutHostAnswer),
            "RegisterExternalInstance" => Some(AgentOperation::RegisterExternalInstance),
            "RotateNodeCredentials" => Some(AgentOperation::RotateNodeCredentials),
            _ => None,
        }
    }
}

/// `PollTasks` input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollTasksRequest {
    /// Cluster name or ARN.
    pub cluster: Option<String>,
    /// The polling instance (id or ARN).
    pub container_instance: Option<String>,
    /// Digest of the last assignment the agent saw; absent on the first poll.
    pub known_digest: Option<String>,
    /// How long to wait for a change (0–20 s).
    pub wait_seconds: Option<u32>,
    /// When the assignment is still `knownDigest`, answer briefly: no `tasks`, and
    /// `unchanged` set (the agent keeps what it holds). A server that predates this
    /// ignores it and answers in full; absent or false, answers are always in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omit_unchanged: Option<bool>,
}

/// One task the instance must hold, with everything needed to run it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAssignment {
    /// The task as DescribeTasks shows it (desiredStatus says run or stop).
    pub task: wire::Task,
    /// Its task definition.
    pub task_definition: wire::TaskDefinition,
    /// Service Connect, when the task belongs to a service deployment with
    /// `serviceConnectConfiguration` enabled: the agent gives its containers the
    /// namespace's client aliases (see [`GetServiceConnectRoutesRequest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect: Option<TaskServiceConnect>,
}

/// A task's Service Connect settings, as the agent needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskServiceConnect {
    /// The Cloud Map namespace's ARN: the task reaches every client alias of it.
    pub namespace: String,
}

/// `PollTasks` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollTasksResponse {
    /// Digest of `tasks`; send it back as `knownDigest`.
    pub digest: String,
    /// Every task on the instance that the control plane does not yet know as STOPPED.
    pub tasks: Vec<TaskAssignment>,
    /// Whether the instance is DRAINING (or INACTIVE): no new work is coming.
    pub draining: bool,
    /// Log reads to answer with `PutLogs` (see [`crate::logs`]); a poll returns at once
    /// when one is queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_requests: Vec<crate::logs::LogRequest>,
    /// Host API calls to answer with `PutHostAnswer` (see [`crate::host`]); a poll
    /// returns at once when one is queued.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_requests: Vec<crate::host::HostRequest>,
    /// The brief answer to `omitUnchanged`: the assignment is still `knownDigest`, and
    /// `tasks` is left out (empty) — keep the tasks of the last full answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// One container's health, as its health check last decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerHealth {
    /// Container name in the task definition.
    pub container_name: String,
    /// HEALTHY, UNHEALTHY or UNKNOWN.
    pub health_status: wire::HealthStatus,
}

/// `ReportHealth` input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportHealthRequest {
    /// Cluster name or ARN.
    pub cluster: Option<String>,
    /// Task ARN.
    pub task: Option<String>,
    /// The containers whose health changed.
    pub containers: Vec<ContainerHealth>,
}

/// `ReportHealth` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportHealthResponse {
    /// `ACK`.
    pub acknowledgment: String,
}

// --- Task networking -------------------------------------------------------------------

/// `ReportNetwork` input: the address the agent gave an `awsvpc` task on its node. In ECS
/// the control plane creates the task's ENI and knows its address; in flotilla the node
/// chooses it, so the agent reports it, and the task shows it the ECS way (an
/// `ElasticNetworkInterface` attachment with `privateIPv4Address`, and each container's
/// `networkInterfaces[].privateIpv4Address`). Repeating a report changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportNetworkRequest {
    /// Cluster name or ARN.
    pub cluster: Option<String>,
    /// Task ARN.
    pub task: Option<String>,
    /// The task's IPv4 address.
    pub private_ipv4_address: String,
    /// Its interface's MAC address.
    pub mac_address: Option<String>,
    /// The node's task subnet (CIDR).
    pub subnet: Option<String>,
    /// The task's default gateway.
    pub gateway: Option<String>,
}

/// `ReportNetwork` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportNetworkResponse {
    /// `ACK`.
    pub acknowledgment: String,
}

// --- Service Connect ---------------------------------------------------------------------

/// Most namespaces one `GetServiceConnectRoutes` may ask for.
pub const MAX_ROUTE_NAMESPACES: usize = 10;

/// `GetServiceConnectRoutes` input: the routes of the namespaces the node's Service
/// Connect tasks use. The agent asks again about once a second while it runs such tasks,
/// and before it starts one whose namespace it holds no routes for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetServiceConnectRoutesRequest {
    /// Cluster name or ARN of the asking instance.
    pub cluster: Option<String>,
    /// The asking instance (id or ARN).
    pub container_instance: Option<String>,
    /// Cloud Map namespace ARNs (at most [`MAX_ROUTE_NAMESPACES`]).
    pub namespaces: Vec<String>,
}

/// `GetServiceConnectRoutes` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetServiceConnectRoutesResponse {
    /// One route per client alias of the namespaces asked for (a namespace that no longer
    /// exists has none), in (namespace, dnsName, port) order.
    pub routes: Vec<ServiceConnectRoute>,
}

/// One client alias: the name and port client tasks connect to, and the endpoints behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConnectRoute {
    /// Namespace ARN.
    pub namespace: String,
    /// The alias's `dnsName` (e.g. `web`, or `web.internal`).
    pub dns_name: String,
    /// The alias's port.
    pub port: u16,
    /// The Cloud Map service whose instances serve it (its `discoveryName`).
    pub discovery_name: String,
    /// The offering port mapping's `appProtocol`: how the node proxies the alias. `http`
    /// is proxied per request (HTTP/1.1 to the endpoints); `http2` and `grpc` per request
    /// over HTTP/2 (h2c) to the endpoints; none (ECS's TCP) per connection, the bytes
    /// copied both ways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<wire::ApplicationProtocol>,
    /// The healthy instances: where to connect (`AWS_INSTANCE_IPV4`:`AWS_INSTANCE_PORT`).
    pub endpoints: Vec<ServiceConnectEndpoint>,
}

/// One endpoint of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConnectEndpoint {
    /// IPv4 address.
    pub address: String,
    /// Port.
    pub port: u16,
}

// --- ECS Anywhere (external nodes) ------------------------------------------------------

/// The first characters of every node access key id (`FLTN` + 16 characters of
/// `A–Z2–7`). A request signed with a key of this shape is always verified against the
/// node credentials the control plane issued, even on a server started without
/// `--credentials`, so a revoked node is refused everywhere.
pub const NODE_ACCESS_KEY_PREFIX: &str = "FLTN";

/// `RegisterExternalInstance` input: the bootstrap call of an external node
/// (`flotilla agent --activation-id … --activation-code …`). It is the one call not
/// verified by its SigV4 signature (the node holds no key yet; only the region of its
/// credential scope is read): the activation code in the body authenticates it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterExternalInstanceRequest {
    /// The activation id (`aws ssm create-activation`'s `ActivationId`).
    pub activation_id: String,
    /// The activation code (`ActivationCode`).
    pub activation_code: String,
    /// The node's host name, for the record (at most 256 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// The credentials issued to a node.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    /// The access key id (`FLTN…`).
    pub access_key_id: String,
    /// The secret access key (shown once, in this answer).
    pub secret_access_key: String,
    /// When these credentials stop working unless rotated first (epoch seconds).
    pub expiration: f64,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// `RegisterExternalInstance` output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterExternalInstanceResponse {
    /// The managed-instance id (`mi-` + 17 hex digits): the node's `ec2InstanceId`.
    pub managed_instance_id: String,
    /// The account the node acts in.
    pub account: String,
    /// The region the node acts in (the activation's).
    pub region: String,
    /// The node's own credentials; every later call is signed with them.
    pub credentials: NodeCredentials,
}

/// `RotateNodeCredentials` input (signed with the node's current credentials).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateNodeCredentialsRequest {}

/// `RotateNodeCredentials` output: the new credentials. The previous ones keep working
/// for a short grace period, so a node that loses this answer can retry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotateNodeCredentialsResponse {
    /// The managed-instance id.
    pub managed_instance_id: String,
    /// The new credentials.
    pub credentials: NodeCredentials,
}
