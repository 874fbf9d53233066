//! The update state machine behind `GET /updates/status` (Bottlerocket's `thar-be-updates`):
//! `Idle → Available → Staged → Ready`, driven by four commands.
//!
//! | command | allowed from | on success |
//! | --- | --- | --- |
//! | refresh | any | Idle/Available: `Available` if an update is chosen, else `Idle`; Staged/Ready: unchanged |
//! | prepare | Available, Staged (needs `chosen_update`) | `Staged` |
//! | activate | Staged (needs `staging_partition`) | `Ready` |
//! | deactivate | Ready | `Staged` |
//!
//! A failed command leaves the state as it was (except a failed refresh from Idle/Available,
//! which means "no update": `Idle`) and is recorded in `most_recent_command`. The transitions are
//! pure functions on [`UpdateStatus`]; the host API persists the value and serialises commands
//! with a lock.

use jiff::Timestamp;
use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The four states, serialised exactly as Bottlerocket does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateState {
    /// No update chosen.
    Idle,
    /// An update is chosen and may be prepared.
    Available,
    /// The chosen image is written to the inactive slot.
    Staged,
    /// The staged slot boots next.
    Ready,
}

impl std::fmt::Display for UpdateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpdateState::Idle => "Idle",
            UpdateState::Available => "Available",
            UpdateState::Staged => "Staged",
            UpdateState::Ready => "Ready",
        })
    }
}

/// The commands (`/actions/refresh-updates` etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateCommand {
    /// Re-read the repository and choose an update.
    Refresh,
    /// Download and stage the chosen update.
    Prepare,
    /// Boot the staged slot next.
    Activate,
    /// Undo activate.
    Deactivate,
}

impl std::fmt::Display for UpdateCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpdateCommand::Refresh => "refresh",
            UpdateCommand::Prepare => "prepare",
            UpdateCommand::Activate => "activate",
            UpdateCommand::Deactivate => "deactivate",
        })
    }
}

/// Outcome of the most recent command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandStatus {
    /// It worked.
    Success,
    /// It failed; see `stderr`.
    Failed,
    /// Still running or interrupted.
    Unknown,
}

/// `{arch, version, variant}` of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateImage {
    /// CPU architecture.
    pub arch: String,
    /// Version.
    pub version: Version,
    /// Variant.
    pub variant: String,
}

/// A slot's image and whether it boots next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedImage {
    /// The image.
    pub image: UpdateImage,
    /// Whether the boot selector picks this slot next.
    pub next_to_boot: bool,
}

/// `most_recent_command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// Which command.
    pub cmd_type: UpdateCommand,
    /// How it ended.
    pub cmd_status: CommandStatus,
    /// When it ended.
    pub timestamp: Timestamp,
    /// 0 on success.
    pub exit_status: u32,
    /// The error message on failure.
    pub stderr: String,
}

/// The JSON document of `GET /updates/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// Current state.
    pub update_state: UpdateState,
    /// All versions the repository offers for this variant, highest first.
    pub available_updates: Vec<Version>,
    /// The update that `prepare` would stage.
    pub chosen_update: Option<UpdateImage>,
    /// The running slot's image.
    pub active_partition: Option<StagedImage>,
    /// The other slot's image once staged.
    pub staging_partition: Option<StagedImage>,
    /// Last command and its outcome.
    pub most_recent_command: Option<CommandResult>,
}

impl UpdateStatus {
    /// Status of a node that just booted `active`.
    #[must_use]
    pub fn new(active: UpdateImage) -> Self {
        UpdateStatus {
            update_state: UpdateState::Idle,
            available_updates: Vec::new(),
            chosen_update: None,
            active_partition: Some(StagedImage {
                image: active,
                next_to_boot: true,
            }),
            staging_partition: None,
            most_recent_command: None,
        }
    }

    /// Checks that `cmd` may run now (before doing any work).
    ///
    /// # Errors
    /// [`Error::Disallowed`], [`Error::NoChosenUpdate`] or [`Error::NoStagedImage`].
    pub fn check_allowed(&self, cmd: UpdateCommand) -> Result<()> {
        use UpdateState::{Available, Idle, Ready, Staged};
        let ok = match (cmd, self.update_state) {
            (UpdateCommand::Refresh, _)
            | (UpdateCommand::Prepare, Available | Staged)
            | (UpdateCommand::Activate, Staged)
            | (UpdateCommand::Deactivate, Ready) => true,
            (UpdateCommand::Prepare, Idle | Ready)
            | (UpdateCommand::Activate, Idle | Available | Ready)
            | (UpdateCommand::Deactivate, Idle | Available | Staged) => false,
        };
        if !ok {
            return Err(Error::Disallowed {
                cmd: cmd.to_string(),
                state: self.update_state.to_string(),
            });
        }
        match cmd {
            UpdateCommand::Prepare if self.chosen_update.is_none() => Err(Error::NoChosenUpdate),
            UpdateCommand::Activate if self.staging_partition.is_none() => {
                Err(Error::NoStagedImage)
            }
            UpdateCommand::Refresh
            | UpdateCommand::Prepare
            | UpdateCommand::Activate
            | UpdateCommand::Deactivate => Ok(()),
        }
    }

    /// Records the outcome of a command.
    pub fn record(
        &mut self,
        cmd: UpdateCommand,
        outcome: std::result::Result<(), String>,
        now: Timestamp,
    ) {
        let (cmd_status, exit_status, stderr) = match outcome {
            Ok(()) => (CommandStatus::Success, 0, String::new()),
            Err(e) => (CommandStatus::Failed, 1, e),
        };
        self.most_recent_command = Some(CommandResult {
            cmd_type: cmd,
            cmd_status,
            timestamp: now,
            exit_status,
            stderr,
        });
    }

    /// A refresh succeeded with this list and choice.
    pub fn refreshed(&mut self, available: Vec<Version>, chosen: Option<UpdateImage>) {
        self.available_updates = available;
        match self.update_state {
            UpdateState::Idle | UpdateState::Available => {
                self.update_state = if chosen.is_some() {
                    UpdateState::Available
                } else {
                    UpdateState::Idle
                };
                self.chosen_update = chosen;
            }
            UpdateState::Staged | UpdateState::Ready => {}
        }
    }

    /// A refresh failed: from Idle/Available that means "no update".
    pub fn refresh_failed(&mut self) {
        match self.update_state {
            UpdateState::Idle | UpdateState::Available => {
                self.update_state = UpdateState::Idle;
                self.chosen_update = None;
            }
            UpdateState::Staged | UpdateState::Ready => {}
        }
    }

    /// `prepare` wrote the chosen image to the inactive slot.
    pub fn prepared(&mut self) {
        if let Some(img) = self.chosen_update.clone() {
            self.staging_partition = Some(StagedImage {
                image: img,
                next_to_boot: false,
            });
            self.update_state = UpdateState::Staged;
        }
    }

    /// `activate` flipped the boot flags.
    pub fn activated(&mut self) {
        self.set_next_to_boot(true);
        self.update_state = UpdateState::Ready;
    }

    /// `deactivate` flipped them back.
    pub fn deactivated(&mut self) {
        self.set_next_to_boot(false);
        self.update_state = UpdateState::Staged;
    }

    fn set_next_to_boot(&mut self, staging: bool) {
        if let Some(s) = &mut self.staging_partition {
            s.next_to_boot = staging;
        }
        if let Some(a) = &mut self.active_partition {
            a.next_to_boot = !staging;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(v: &str) -> UpdateImage {
        UpdateImage {
            arch: "x86_64".into(),
            version: Version::parse(v).unwrap(),
            variant: "flotilla-node".into(),
        }
    }

    #[test]
    fn full_cycle_idle_available_staged_ready_and_back() {
        let mut s = UpdateStatus::new(img("1.0.0"));
        assert!(matches!(
            s.check_allowed(UpdateCommand::Prepare),
            Err(Error::Disallowed { .. })
        ));
        s.refreshed(vec![Version::new(1, 1, 0)], Some(img("1.1.0")));
        assert_eq!(s.update_state, UpdateState::Available);
        s.check_allowed(UpdateCommand::Prepare).unwrap();
        s.prepared();
        assert_eq!(s.update_state, UpdateState::Staged);
        s.check_allowed(UpdateCommand::Activate).unwrap();
        s.activated();
        assert_eq!(s.update_state, UpdateState::Ready);
        assert!(s.staging_partition.as_ref().unwrap().next_to_boot);
        assert!(!s.active_partition.as_ref().unwrap().next_to_boot);
        // refresh in Ready leaves the state alone
        s.refreshed(vec![], None);
        assert_eq!(s.update_state, UpdateState::Ready);
        s.check_allowed(UpdateCommand::Deactivate).unwrap();
        s.deactivated();
        assert_eq!(s.update_state, UpdateState::Staged);
        assert!(s.active_partition.as_ref().unwrap().next_to_boot);
    }

    #[test]
    fn disallowed_commands() {
        let s = UpdateStatus::new(img("1.0.0"));
        for c in [UpdateCommand::Activate, UpdateCommand::Deactivate] {
            assert!(matches!(s.check_allowed(c), Err(Error::Disallowed { .. })));
        }
        let mut s2 = s.clone();
        s2.update_state = UpdateState::Available;
        assert!(matches!(
            s2.check_allowed(UpdateCommand::Prepare),
            Err(Error::NoChosenUpdate)
        ));
    }

    #[test]
    fn failed_refresh_means_no_update() {
        let mut s = UpdateStatus::new(img("1.0.0"));
        s.refreshed(vec![Version::new(1, 1, 0)], Some(img("1.1.0")));
        s.refresh_failed();
        assert_eq!(s.update_state, UpdateState::Idle);
        assert!(s.chosen_update.is_none());
    }

    #[test]
    fn json_shape_matches_bottlerocket() {
        let mut s = UpdateStatus::new(img("1.0.0"));
        s.record(
            UpdateCommand::Refresh,
            Ok(()),
            "2026-01-01T00:00:00Z".parse().unwrap(),
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["update_state"], "Idle");
        assert_eq!(v["active_partition"]["image"]["version"], "1.0.0");
        assert_eq!(v["most_recent_command"]["cmd_type"], "refresh");
        assert_eq!(v["most_recent_command"]["cmd_status"], "Success");
        assert!(v["chosen_update"].is_null());
        assert!(v["staging_partition"].is_null());
    }
}
