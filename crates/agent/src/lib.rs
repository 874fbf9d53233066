//! # agent — a flotilla node
//!
//! ## Background
//! `flotilla agent` turns a machine into a container instance of a cluster, like the ECS
//! agent: it registers the node's resources, learns which tasks the control plane placed
//! on it, runs them as real containers through a [`runtime::ContainerRuntime`]
//! (containerd on real nodes) and reports their state. It opens every connection
//! itself; the node needs no inbound port.
//!
//! ## Design
//! - **Level-triggered.** The agent long-polls `FlotillaAgentV1.PollTasks` for the whole
//!   assignment of its instance (every task not yet known STOPPED, with its definition)
//!   and [`plan::plan`] — a pure function — compares it with what the node holds and
//!   decides: start a task, adopt a task whose containers already run (after a restart),
//!   stop a task, or forget one. The poll doubles as the heartbeat.
//! - **One supervisor per task** ([`supervisor`]): pulls, creates and starts the
//!   containers, reports RUNNING, waits for exits or a stop request, stops the rest when an
//!   essential container exits, reports STOPPED with exit codes and reasons (ECS's
//!   `CannotPullContainerError`, `OutOfMemoryError`, …). Reports use the ECS operation
//!   `SubmitTaskStateChange` and are retried until acknowledged; the control plane ignores
//!   repeats, so retries are safe.
//! - **Nothing is lost on restart.** The instance ARN and each task's container ids are
//!   written to `<data-dir>/agent-state.json` (atomically) *before* containers start;
//!   containers carry the task ARN as a label. A restarted agent re-registers as the same
//!   instance, finds its containers still running, and waits on them again — no task is
//!   restarted or duplicated.
//!
//! ## Layout
//! - [`client`]: the control plane's API as the agent uses it.
//! - [`definition`]: what a task definition asks of the runtime (start order, specs).
//! - [`dependencies`]: whether a container's `dependsOn` conditions hold (pure).
//! - [`health`]: container health checks (state machine + check loop).
//! - [`host`]: the node's resources and attributes.
//! - [`local_state`]: what the agent persists.
//! - [`logs`]: answering log requests (`flotilla logs`) from the node's log files.
//! - [`plan`]: the pure reconcile decision.
//! - [`error`]: what stops the agent, and how tasks and containers end, in ECS's words.
//! - [`supervisor`]: running one task.
//! - [`task_network`]: a task's networking (bridge, awsvpc, none) through the `network`
//!   crate.
//! - [`task_dns`]: the `/etc/resolv.conf` a task's containers get (`dnsServers`,
//!   `dnsSearchDomains`, the agent's `--task-dns`).
//! - [`service_connect`]: ECS Service Connect on the node (client aliases: routes, alias
//!   addresses, the node's proxy, the `/etc/hosts` of Service Connect tasks).
//! - [`host_calls`]: the host API calls the control plane relays to this node
//!   (`--host-api-socket`), answered with `PutHostAnswer`.
//! - [`anywhere`]: ECS Anywhere: joining with an SSM activation, the node's own
//!   credentials (saved 0600, rotated every 12 h), exiting when they are revoked.
//! - [`run`]: the main loop.
//!
//! ## Security
//! Every request is SigV4-signed ([`client::Credentials`], from `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY`), so a server started with `--credentials` admits only nodes
//! holding a key; the region of the signature is the region the node registers in. An
//! external node (ECS Anywhere) signs with the key its activation got it ([`anywhere`]).
//!
//! ## Current limitations
//! - Task networking is IPv4 only, with one agent per network namespace (see the
//!   `network` crate).

pub mod anywhere;
pub mod client;
pub mod definition;
pub mod dependencies;
pub mod error;
pub mod health;
pub mod host;
pub mod host_calls;
pub mod local_state;
pub mod logs;
pub mod plan;
pub mod run;
pub mod service_connect;
pub mod supervisor;
pub mod task_dns;
pub mod task_network;

pub use error::AgentError;
pub use run::{AgentConfig, run};
