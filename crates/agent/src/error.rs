//! The agent's errors, of two kinds.
//!
//! * [`AgentError`]: what can stop the agent itself (the control plane unreachable at
//!   registration, an unwritable data directory, ...).
//! * How a task or a container ends: [`TaskEnd`] (with [`TaskError`], why a task did not
//!   start) and [`ContainerError`]. These never stop the agent; they are reported on the
//!   task. [`TaskEnd::ecs`] and [`ContainerError::ecs`] are the one place they become
//!   ECS's words: each is one exhaustive `match` with no fallback arm, so a new variant
//!   does not compile until it has a stop code and a reason.
//!
//! | how it ended | `stopCode` | `stoppedReason` |
//! | --- | --- | --- |
//! | [`TaskError::InvalidImage`], [`TaskError::Pull`] | `TaskFailedToStart` | `CannotPullContainerError: …` |
//! | [`TaskError::RecordContainers`], [`TaskError::Spec`], [`TaskError::Volume`], [`TaskError::ResolvConf`], [`TaskError::ServiceConnect`], [`TaskError::Create`] | `TaskFailedToStart` | `CannotCreateContainerError: …` |
//! | [`TaskError::Network`], [`TaskError::Start`], [`TaskError::NoHealthCheck`], [`TaskError::DependencyFailed`], [`TaskError::DependencyTimeout`] | `TaskFailedToStart` | `CannotStartContainerError: …` |
//! | [`TaskError::StoppedWhileWaiting`], [`TaskEnd::StoppedBeforeStart`] | the control plane's (set by StopTask) | `Task stopped while/before …` |
//! | [`TaskEnd::StopRequested`] | the control plane's (set by StopTask) | StopTask's `reason` |
//! | [`TaskEnd::EssentialContainerExited`], [`TaskEnd::AllContainersExited`], [`TaskEnd::ContainersLost`] | `EssentialContainerExited` | `Essential container in task exited: …` and the like |
//!
//! | container | `reason` |
//! | --- | --- |
//! | [`ContainerError::OutOfMemory`] | `OutOfMemoryError: Container killed due to memory usage` |
//! | [`ContainerError::Wait`], [`ContainerError::Stop`] | the runtime's error |
//!
//! The agent does not send the stop code: `SubmitTaskStateChange` has no such field, and
//! the control plane derives it (`TaskFailedToStart` for a task that never ran,
//! `EssentialContainerExited` for one that did, unless a StopTask set one first). The
//! table's stop code is what that derivation gives (for [`TaskEnd::ContainersLost`], when
//! the task had reported RUNNING); the agent logs it, and `tests/agent_fake_runtime.rs`
//! checks the control plane's side of it.

use std::fmt;
use std::time::Duration;

use model::wire::TaskStopCode;

/// The agent could not go on.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory or its state file could not be read or written.
    #[error("agent state in {path}: {message}")]
    State {
        /// The file or directory.
        path: String,
        /// What failed.
        message: String,
    },
    /// The agent was configured wrongly (a bad `--endpoint`).
    #[error("{0}")]
    Config(String),
    /// The control plane refused a request or could not be reached.
    #[error("control plane: {0}")]
    ControlPlane(String),
    /// The control plane answered with an ECS error.
    #[error("{code}: {message}")]
    Api {
        /// `__type`.
        code: ApiCode,
        /// `message`.
        message: String,
    },
    /// The node's task networking could not be opened (bad `--bridge-cidr`, unreadable
    /// state).
    #[error("task networking: {0}")]
    Network(String),
    /// The container runtime failed in a way that stops the agent.
    #[error("container runtime: {0}")]
    Runtime(#[from] runtime::Error),
}

/// An error code (`__type`) the control plane answered with. The ones the agent acts on
/// have their own variant; any other is kept as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCode {
    /// `InvalidParameterException`: the request names something the control plane does
    /// not know (an instance it forgot, a task that is gone). At registration the agent
    /// registers anew; a report is given up.
    InvalidParameter,
    /// `ClusterNotFoundException`: the cluster is gone; a report is given up.
    ClusterNotFound,
    /// Any other code (`HTTP error` when the answer carried none).
    Other(String),
}

impl ApiCode {
    /// The code as the wire spells it.
    pub fn from_wire(code: &str) -> ApiCode {
        match code {
            "InvalidParameterException" => ApiCode::InvalidParameter,
            "ClusterNotFoundException" => ApiCode::ClusterNotFound,
            other => ApiCode::Other(other.to_owned()),
        }
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            ApiCode::InvalidParameter => "InvalidParameterException",
            ApiCode::ClusterNotFound => "ClusterNotFoundException",
            ApiCode::Other(code) => code,
        }
    }
}

impl fmt::Display for ApiCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error names ECS puts in front of a stopped reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsErrorName {
    /// The image could not be pulled.
    CannotPullContainerError,
    /// A container could not be created.
    CannotCreateContainerError,
    /// A container could not be started.
    CannotStartContainerError,
    /// The kernel's OOM killer ended the container.
    OutOfMemoryError,
}

impl EcsErrorName {
    /// The name as ECS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            EcsErrorName::CannotPullContainerError => "CannotPullContainerError",
            EcsErrorName::CannotCreateContainerError => "CannotCreateContainerError",
            EcsErrorName::CannotStartContainerError => "CannotStartContainerError",
            EcsErrorName::OutOfMemoryError => "OutOfMemoryError",
        }
    }
}

impl fmt::Display for EcsErrorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a task did not start. The message is the detail after the ECS error name (see
/// [`TaskEnd::reason`]).
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A container's `image` is not a valid reference (checked before pulling).
    #[error("{source}")]
    InvalidImage {
        /// The container.
        container: String,
        /// [`runtime::Error::InvalidImageRef`].
        source: runtime::Error,
    },
    /// Pulling a container's image failed (registry unreachable, image or tag missing,
    /// credentials refused, a broken image, ...).
    #[error("{source}")]
    Pull {
        /// The container.
        container: String,
        /// What `pull_image` returned.
        source: runtime::Error,
    },
    /// The task's container ids could not be recorded in the state file (they must be,
    /// before anything is created, for a restarted agent to find the containers).
    #[error("{0}")]
    RecordContainers(Box<AgentError>),
    /// A container definition does not translate into a runtime spec (its image or id).
    #[error("{source}")]
    Spec {
        /// The container.
        container: String,
        /// Why the runtime refused it.
        source: runtime::Error,
    },
    /// A container's volume directory could not be created on the node.
    #[error("volume {volume}: {path}: {source}")]
    Volume {
        /// The volume's name.
        volume: String,
        /// Its directory on the node.
        path: String,
        /// Why it could not be created.
        source: std::io::Error,
    },
    /// A container's `/etc/resolv.conf` could not be made: a `dnsServers` or
    /// `dnsSearchDomains` value the control plane now refuses (a definition registered
    /// before it did), or the file could not be written.
    #[error("{container}: /etc/resolv.conf: {why}")]
    ResolvConf {
        /// The container.
        container: String,
        /// What is wrong.
        why: String,
    },
    /// A Service Connect task's client aliases could not be made ready: its namespace's
    /// routes did not come, its `/etc/hosts` could not be written, or the alias addresses
    /// could not be set up (see [`crate::service_connect`]).
    #[error("Service Connect: {0}")]
    ServiceConnect(crate::service_connect::ServiceConnectError),
    /// `create_container` failed (a missing entrypoint, a bad spec, containerd).
    #[error("{source}")]
    Create {
        /// The container.
        container: String,
        /// What `create_container` returned.
        source: runtime::Error,
    },
    /// The task's networking could not be set up (a host port in use, the subnet full).
    #[error("{0}")]
    Network(network::NetworkError),
    /// `start_container` failed.
    #[error("{container}: {source}")]
    Start {
        /// The container.
        container: String,
        /// What `start_container` returned.
        source: runtime::Error,
    },
    /// A `HEALTHY` dependency has no health check (the control plane refuses such
    /// definitions; one registered before that rule still fails here).
    #[error("{container}: dependsOn {dependency} HEALTHY, but {dependency} has no health check")]
    NoHealthCheck {
        /// The waiting container.
        container: String,
        /// Its dependency.
        dependency: String,
    },
    /// A `dependsOn` condition can no longer hold (see [`crate::dependencies`]).
    #[error("{container}: {why}")]
    DependencyFailed {
        /// The waiting container.
        container: String,
        /// Which dependency did what.
        why: String,
    },
    /// The conditions did not hold within the container's `startTimeout`.
    #[error(
        "{container}: dependsOn conditions not met within startTimeout ({}s)",
        timeout.as_secs()
    )]
    DependencyTimeout {
        /// The waiting container.
        container: String,
        /// Its `startTimeout`.
        timeout: Duration,
    },
    /// A StopTask came while a container waited for its dependencies.
    #[error("Task stopped while {container} waited for its dependencies.")]
    StoppedWhileWaiting {
        /// The waiting container.
        container: String,
    },
}

/// How a task ended: everything a supervisor reports as STOPPED.
#[derive(Debug, thiserror::Error)]
pub enum TaskEnd {
    /// It did not start.
    #[error("{0}")]
    FailedToStart(#[from] TaskError),
    /// A StopTask came before the supervisor started anything.
    #[error("Task stopped before it started.")]
    StoppedBeforeStart,
    /// After an agent restart, the task's recorded containers were gone.
    #[error("Task stopped: its containers were not found on the node after an agent restart.")]
    ContainersLost,
    /// An essential container exited; the others were stopped.
    #[error("Essential container in task exited: {container}")]
    EssentialContainerExited {
        /// The container that exited.
        container: String,
    },
    /// Every container exited (none of them essential).
    #[error("All containers of the task exited.")]
    AllContainersExited,
    /// The control plane asked for the stop (StopTask, a service scaling in).
    #[error("{}", reason.as_deref().unwrap_or("Task stopped by the control plane."))]
    StopRequested {
        /// The StopTask's reason, when it gave one.
        reason: Option<String>,
    },
}

impl TaskEnd {
    /// The one table from how a task ended to ECS: the stop code the task gets and the
    /// error name its `stoppedReason` starts with. `None` as the stop code: the control
    /// plane's own, set when it asked for the stop (`UserInitiated`,
    /// `ServiceSchedulerInitiated`).
    pub fn ecs(&self) -> (Option<TaskStopCode>, Option<EcsErrorName>) {
        use EcsErrorName as N;
        use TaskError as E;
        use TaskStopCode::{EssentialContainerExited, TaskFailedToStart};
        match self {
            TaskEnd::FailedToStart(E::InvalidImage { .. } | E::Pull { .. }) => {
                (Some(TaskFailedToStart), Some(N::CannotPullContainerError))
            }
            TaskEnd::FailedToStart(
                E::RecordContainers(_)
                | E::Spec { .. }
                | E::Volume { .. }
                | E::ResolvConf { .. }
                | E::ServiceConnect(_)
                | E::Create { .. },
            ) => (Some(TaskFailedToStart), Some(N::CannotCreateContainerError)),
            TaskEnd::FailedToStart(
                E::Network(_)
                | E::Start { .. }
                | E::NoHealthCheck { .. }
                | E::DependencyFailed { .. }
                | E::DependencyTimeout { .. },
            ) => (Some(TaskFailedToStart), Some(N::CannotStartContainerError)),
            TaskEnd::FailedToStart(E::StoppedWhileWaiting { .. })
            | TaskEnd::StoppedBeforeStart
            | TaskEnd::StopRequested { .. } => (None, None),
            TaskEnd::ContainersLost
            | TaskEnd::EssentialContainerExited { .. }
            | TaskEnd::AllContainersExited => (Some(EssentialContainerExited), None),
        }
    }

    /// The task's `stoppedReason`: the ECS error name, if any, then the message.
    pub fn reason(&self) -> String {
        match self.ecs().1 {
            Some(name) => format!("{name}: {self}"),
            None => self.to_string(),
        }
    }
}

/// Why a container ended other than by exiting on its own, for its `reason`.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The kernel's OOM killer ended it (it exceeded its hard memory limit).
    #[error("Container killed due to memory usage")]
    OutOfMemory,
    /// Waiting for its exit failed; its exit code is unknown.
    #[error("{0}")]
    Wait(runtime::Error),
    /// Stopping it failed and its state could not be read afterwards.
    #[error("{0}")]
    Stop(runtime::Error),
}

impl ContainerError {
    /// The one table from container ends to the ECS error name its `reason` starts with.
    pub fn ecs(&self) -> Option<EcsErrorName> {
        match self {
            ContainerError::OutOfMemory => Some(EcsErrorName::OutOfMemoryError),
            ContainerError::Wait(_) | ContainerError::Stop(_) => None,
        }
    }

    /// The container's `reason`.
    pub fn reason(&self) -> String {
        match self.ecs() {
            Some(name) => format!("{name}: {self}"),
            None => self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_error() -> runtime::Error {
        runtime::types::ImageRef::parse("").unwrap_err()
    }

    fn not_found() -> runtime::Error {
        runtime::Error::ContainerNotFound { id: "t-0".into() }
    }

    #[test]
    fn reasons_read_as_before() {
        let cases: Vec<(TaskEnd, &str)> = vec![
            (
                TaskError::Pull {
                    container: "web".into(),
                    source: image_error(),
                }
                .into(),
                "CannotPullContainerError: invalid image reference \"\": empty reference",
            ),
            (
                TaskError::Volume {
                    volume: "data".into(),
                    path: "/v/data".into(),
                    source: std::io::Error::other("read-only file system"),
                }
                .into(),
                "CannotCreateContainerError: volume data: /v/data: read-only file system",
            ),
            (
                TaskError::ResolvConf {
                    container: "web".into(),
                    why: "dnsServers: \"dns.local\" is not an IP address.".into(),
                }
                .into(),
                "CannotCreateContainerError: web: /etc/resolv.conf: dnsServers: \"dns.local\" is not an IP address.",
            ),
            (
                TaskError::ServiceConnect(crate::service_connect::ServiceConnectError::HostsFile {
                    path: "/d/hosts/t1".into(),
                    source: std::io::Error::other("No space left on device"),
                })
                .into(),
                "CannotCreateContainerError: Service Connect: /etc/hosts: /d/hosts/t1: No space left on device",
            ),
            (
                TaskError::Create {
                    container: "web".into(),
                    source: not_found(),
                }
                .into(),
                "CannotCreateContainerError: container t-0 not found",
            ),
            (
                TaskError::Network(network::NetworkError::PortInUse {
                    port: 8080,
                    protocol: "tcp",
                })
                .into(),
                "CannotStartContainerError: host port 8080/tcp is already in use on this instance",
            ),
            (
                TaskError::DependencyFailed {
                    container: "app".into(),
                    why: "dependency init exited with code 3 (condition SUCCESS needs 0)".into(),
                }
                .into(),
                "CannotStartContainerError: app: dependency init exited with code 3 (condition SUCCESS needs 0)",
            ),
            (
                TaskError::DependencyTimeout {
                    container: "app".into(),
                    timeout: Duration::from_secs(180),
                }
                .into(),
                "CannotStartContainerError: app: dependsOn conditions not met within startTimeout (180s)",
            ),
            (
                TaskError::StoppedWhileWaiting {
                    container: "app".into(),
                }
                .into(),
                "Task stopped while app waited for its dependencies.",
            ),
            (
                TaskEnd::EssentialContainerExited {
                    container: "web".into(),
                },
                "Essential container in task exited: web",
            ),
            (
                TaskEnd::StopRequested { reason: None },
                "Task stopped by the control plane.",
            ),
            (
                TaskEnd::StopRequested {
                    reason: Some("bye".into()),
                },
                "bye",
            ),
        ];
        for (end, reason) in cases {
            assert_eq!(end.reason(), reason);
        }
        assert_eq!(
            TaskEnd::from(TaskError::Start {
                container: "web".into(),
                source: runtime::Error::WrongState {
                    id: "t-0".into(),
                    state: "running".into(),
                    operation: "start",
                },
            })
            .reason(),
            "CannotStartContainerError: web: container t-0 is running: cannot start"
        );
        assert_eq!(
            ContainerError::OutOfMemory.reason(),
            "OutOfMemoryError: Container killed due to memory usage"
        );
        assert_eq!(
            ContainerError::Wait(not_found()).reason(),
            "container t-0 not found"
        );
    }

    #[test]
    fn failures_to_start_are_task_failed_to_start() {
        let failed = TaskEnd::from(TaskError::InvalidImage {
            container: "web".into(),
            source: image_error(),
        });
        assert_eq!(failed.ecs().0, Some(TaskStopCode::TaskFailedToStart));
        let stopped = TaskEnd::from(TaskError::StoppedWhileWaiting {
            container: "app".into(),
        });
        assert_eq!(stopped.ecs(), (None, None));
        assert_eq!(
            TaskEnd::AllContainersExited.ecs().0,
            Some(TaskStopCode::EssentialContainerExited)
        );
    }

    #[test]
    fn api_codes_round_trip() {
        for code in [
            "InvalidParameterException",
            "ClusterNotFoundException",
            "InvalidSignatureException",
        ] {
            assert_eq!(ApiCode::from_wire(code).as_str(), code);
        }
        assert_eq!(
            ApiCode::from_wire("InvalidParameterException"),
            ApiCode::InvalidParameter
        );
    }
}
