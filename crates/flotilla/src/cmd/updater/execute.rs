//! Carries out one `rollout::Action` on the cluster: ECS status changes, the host API's
//! update commands (each polled through `GET /updates/status` until its
//! `most_recent_command` says how it ended), the reboot, the halted attribute.

use std::time::Duration;

use anyhow::bail;
use model::host::HostCall;
use model::wire::ContainerInstanceStatus;
use rollout::Action;
use updater::status::{CommandStatus, UpdateCommand, UpdateState};

use super::ecs::Ecs;
use super::observe::{Observed, read_status};

/// How long `prepare` (download + write the slot) may take.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long `activate` (flip the boot flags) may take.
const ACTIVATE_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// Between two reads of a command's progress.
const POLL: Duration = Duration::from_secs(2);

/// Carries out `action`. `Ok(Some(halt))`: the node refused or failed the update; the
/// caller carries out and records that halt instead of `action`.
pub async fn execute(ecs: &Ecs, action: &Action) -> anyhow::Result<Option<Action>> {
    let arn = action.node();
    match action {
        Action::Drain { .. } => {
            ecs.set_status(arn, ContainerInstanceStatus::Draining)
                .await?
        }
        Action::Activate { .. } | Action::GiveBack { .. } => {
            ecs.set_status(arn, ContainerInstanceStatus::Active).await?;
        }
        Action::Apply {
            instance_id,
            version,
            ..
        } => {
            if let Err(reason) = apply(ecs, arn, instance_id, version).await? {
                return Ok(Some(Action::Halt {
                    node: arn.to_owned(),
                    instance_id: instance_id.clone(),
                    target_version: version.clone(),
                    reason,
                }));
            }
        }
        Action::Reboot { instance_id, .. } => match ecs.host(arn, HostCall::Reboot).await {
            Ok(answer) if answer.status == 204 || answer.status == 200 => {}
            Ok(answer) => bail!(
                "node {instance_id} refused to reboot ({}): {}",
                answer.status,
                text(&answer.body)
            ),
            // The node stops its agent as it reboots: a lost answer is expected. If the
            // call never reached it, the node timeout halts the rollout.
            Err(e) => tracing::info!(node = %instance_id, "reboot asked; no answer ({e:#})"),
        },
        Action::Halt {
            instance_id,
            target_version,
            ..
        } => {
            // Back in service on the version it runs (one that booted); marked for others.
            if let Err(e) = ecs.set_status(arn, ContainerInstanceStatus::Active).await {
                tracing::warn!(node = %instance_id, "could not set the halted node ACTIVE: {e:#}");
            }
            ecs.put_halted_attribute(arn, target_version).await?;
        }
        Action::Complete { .. } | Action::Skip { .. } => {}
    }
    Ok(None)
}

/// Prepares (from Available) and activates (from Staged) until the node is Ready.
/// `Ok(Err(reason))`: the node refused or a command failed.
async fn apply(
    ecs: &Ecs,
    arn: &str,
    name: &str,
    version: &str,
) -> anyhow::Result<Result<(), String>> {
    // Available → Staged → Ready: at most two commands.
    for _ in 0..3 {
        let status = match read_status(ecs, arn).await {
            Observed::Status(status) => status,
            // No status, or it went Idle: the decisions see the update withdrawn.
            Observed::NoStatusYet => return Ok(Ok(())),
            Observed::Unreachable => {
                bail!("cannot read the update status of node {name} (see the warning above)")
            }
        };
        let (call, command, timeout) = match status.update_state {
            UpdateState::Ready | UpdateState::Idle => return Ok(Ok(())),
            UpdateState::Available => (
                HostCall::PrepareUpdate,
                UpdateCommand::Prepare,
                PREPARE_TIMEOUT,
            ),
            UpdateState::Staged => (
                HostCall::ActivateUpdate,
                UpdateCommand::Activate,
                ACTIVATE_TIMEOUT,
            ),
        };
        let before = status.most_recent_command.clone();
        if let Err(reason) = run_command(ecs, arn, call, command, before, timeout).await? {
            return Ok(Err(format!(
                "{command} of {version} failed on node {name}: {reason}"
            )));
        }
    }
    Ok(Ok(()))
}

/// Sends one update command and waits for its outcome. `before` is the
/// `most_recent_command` seen before sending, to tell the new outcome from the old.
async fn run_command(
    ecs: &Ecs,
    arn: &str,
    call: HostCall,
    command: UpdateCommand,
    before: Option<updater::status::CommandResult>,
    timeout: Duration,
) -> anyhow::Result<Result<(), String>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = ecs.host(arn, call.clone()).await?;
        match answer.status {
            200 | 204 => break,
            // Another command is running (someone else's refresh): try again.
            423 if tokio::time::Instant::now() < deadline => tokio::time::sleep(POLL).await,
            status => {
                return Ok(Err(format!(
                    "the host API refused it ({status}): {}",
                    text(&answer.body)
                )));
            }
        }
    }
    loop {
        tokio::time::sleep(POLL).await;
        if let Observed::Status(status) = read_status(ecs, arn).await
            && let Some(result) = &status.most_recent_command
            && result.cmd_type == command
            && status.most_recent_command != before
        {
            match result.cmd_status {
                CommandStatus::Success => return Ok(Ok(())),
                CommandStatus::Failed => return Ok(Err(result.stderr.trim().to_owned())),
                CommandStatus::Unknown => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Err(format!("it did not finish within {timeout:?}")));
        }
    }
}

/// A host API body as one line of text (errors are plain text, documents JSON).
fn text(body: &serde_json::Value) -> String {
    match body {
        serde_json::Value::String(s) => s.trim().replace('\n', " "),
        other => other.to_string(),
    }
}
