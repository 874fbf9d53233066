//! What the agent keeps on disk so that a restart (even `kill -9`) loses nothing: its
//! container instance ARN and, per task, the ids of the containers it created. The file
//! is replaced atomically (write to a temporary file, fsync, rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// One task the node holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalTask {
    /// Container name → runtime container id.
    pub containers: BTreeMap<String, String>,
    /// The last status the control plane acknowledged from us, as spelled on the wire
    /// (the method of the same name reads it typed).
    pub reported: Option<String>,
}

impl LocalTask {
    /// The last status the control plane acknowledged from us, typed.
    pub fn reported(&self) -> Option<model::lifecycle::TaskStatus> {
        self.reported.as_deref().and_then(|s| s.parse().ok())
    }
}

/// The agent's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// The container instance ARN, once registered.
    pub container_instance_arn: Option<String>,
    /// The cluster it is registered in.
    pub cluster: Option<String>,
    /// Tasks by ARN.
    pub tasks: BTreeMap<String, LocalTask>,
}

/// The state file of a data directory.
pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent-state.json")
}

fn err(path: &Path, e: impl std::fmt::Display) -> AgentError {
    AgentError::State {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl LocalState {
    /// Loads the state (empty when there is no file yet).
    pub fn load(data_dir: &Path) -> Result<LocalState, AgentError> {
        let path = state_path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LocalState::default()),
            Err(e) => Err(err(&path, e)),
        }
    }

    /// Writes the state atomically.
    pub fn save(&self, data_dir: &Path) -> Result<(), AgentError> {
        let path = state_path(data_dir);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| err(&path, e))?;
        durable::write(&path, &bytes, durable::PUBLIC_FILE_MODE).map_err(|e| err(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LocalState::load(dir.path()).unwrap(), LocalState::default());
        let mut s = LocalState {
            container_instance_arn: Some("arn:x".into()),
            ..Default::default()
        };
        s.tasks.insert(
            "t".into(),
            LocalTask {
                containers: [("a".into(), "t-0".into())].into(),
                reported: None,
            },
        );
        s.save(dir.path()).unwrap();
        assert_eq!(LocalState::load(dir.path()).unwrap(), s);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(state_path(dir.path()), b"{not json").unwrap();
        assert!(LocalState::load(dir.path()).is_err());
    }
}
