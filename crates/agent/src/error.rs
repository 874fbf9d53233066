//! [`AgentError`]: what can stop the agent itself (a task's failure never does: it is
//! reported on the task).

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
    /// The control plane refused a request or could not be reached.
    #[error("control plane: {0}")]
    ControlPlane(String),
    /// The control plane answered with an ECS error.
    #[error("{code}: {message}")]
    Api {
        /// `__type`.
        code: String,
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
