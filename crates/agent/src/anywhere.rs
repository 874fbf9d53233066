//! ECS Anywhere on the node: an external machine joins with an SSM activation
//! (`flotilla agent --activation-id ID --activation-code CODE`) instead of keys.
//!
//! 1. **Bootstrap.** With no node credentials in its data directory yet, the agent
//!    calls `FlotillaAgentV1.RegisterExternalInstance` with the activation id and code
//!    (the activation authenticates that one call). The answer is its managed-instance
//!    id (`mi-…`) and its own access key, written at once to
//!    `<data-dir>/node-credentials.json`, mode 0600, through `durable` (the one durable
//!    file write). A restarted agent uses the file and does not spend another
//!    registration of the activation; the activation flags are then not needed.
//! 2. **Signing.** From then on every call is signed with the node's key; the agent
//!    registers as a container instance whose `ec2InstanceId` is the `mi-` id, which
//!    the control plane marks external (`ecs.capability.external`).
//! 3. **Rotation.** [`ROTATE_AFTER`] after a key was issued (12 h) the agent asks for a
//!    new one (`FlotillaAgentV1.RotateNodeCredentials`), saves it, then signs with it;
//!    a failed rotation is retried every [`ROTATION_RETRY`]. The control plane accepts
//!    the old key for 15 more minutes, and any key for at most 7 days after it was
//!    issued.
//! 4. **Revocation.** Deregistering the container instance revokes the key: the next
//!    call is refused (`UnrecognizedClientException`) and the agent exits with an error
//!    ([`is_refusal`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model::agent::{
    AGENT_TARGET_PREFIX, RegisterExternalInstanceRequest, RegisterExternalInstanceResponse,
    RotateNodeCredentialsRequest, RotateNodeCredentialsResponse,
};
use serde::{Deserialize, Serialize};

use crate::client::{Client, Credentials};
use crate::error::{AgentError, ApiCode};

/// The node credentials file of a data directory.
pub const CREDENTIALS_FILE: &str = "node-credentials.json";
/// How long after a key was issued the agent rotates it.
pub const ROTATE_AFTER: Duration = Duration::from_secs(12 * 3600);
/// How soon a failed rotation is tried again.
pub const ROTATION_RETRY: Duration = Duration::from_secs(60);

/// An SSM activation, from `--activation-id` and `--activation-code`.
#[derive(Clone, PartialEq, Eq)]
pub struct Activation {
    /// `ActivationId`.
    pub id: String,
    /// `ActivationCode`.
    pub code: String,
}

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What an external node keeps: who it is and its current key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeIdentity {
    /// `mi-…`.
    pub managed_instance_id: String,
    /// The account it acts in.
    pub account: String,
    /// The region it acts in.
    pub region: String,
    /// Its access key id.
    pub access_key_id: String,
    /// Its secret access key.
    pub secret_access_key: String,
    /// When the key was received (epoch seconds, the node's clock).
    pub issued_at: f64,
    /// When the control plane stops accepting the key (epoch seconds).
    pub expiration: f64,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("managed_instance_id", &self.managed_instance_id)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// The key, as the client signs with it.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The node credentials file of `data_dir`.
pub fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CREDENTIALS_FILE)
}

fn state_err(path: &Path, e: impl std::fmt::Display) -> AgentError {
    AgentError::State {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The node's saved identity, if it has one.
pub fn load(data_dir: &Path) -> Result<Option<NodeIdentity>, AgentError> {
    let path = credentials_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| state_err(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_err(&path, e)),
    }
}

/// Saves the node's identity, readable by its owner only (0600).
pub fn save(data_dir: &Path, identity: &NodeIdentity) -> Result<(), AgentError> {
    let path = credentials_path(data_dir);
    let bytes = serde_json::to_vec_pretty(identity).map_err(|e| state_err(&path, e))?;
    durable::write(&path, &bytes, durable::SECRET_FILE_MODE).map_err(|e| state_err(&path, e))
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty() && h.len() <= 256).then(|| h.to_owned())
}

/// The node's identity: the saved one, or (with `activation`) a new one from the
/// control plane, saved before it is used. `None` when the node is not external.
pub async fn identity(
    client: &Client,
    data_dir: &Path,
    activation: Option<&Activation>,
) -> Result<Option<NodeIdentity>, AgentError> {
    if let Some(saved) = load(data_dir)? {
        return Ok(Some(saved));
    }
    let Some(activation) = activation else {
        return Ok(None);
    };
    let req = RegisterExternalInstanceRequest {
        activation_id: activation.id.clone(),
        activation_code: activation.code.clone(),
        hostname: hostname(),
    };
    let resp: RegisterExternalInstanceResponse = client
        .call(
            &format!("{AGENT_TARGET_PREFIX}.RegisterExternalInstance"),
            &req,
        )
        .await?;
    let identity = NodeIdentity {
        managed_instance_id: resp.managed_instance_id,
        account: resp.account,
        region: resp.region,
        access_key_id: resp.credentials.access_key_id,
        secret_access_key: resp.credentials.secret_access_key,
        issued_at: now(),
        expiration: resp.credentials.expiration,
    };
    save(data_dir, &identity)?;
    tracing::info!(node = %identity.managed_instance_id, "registered with the activation; node credentials saved");
    Ok(Some(identity))
}

/// Rotates the node's key once: the new key is saved, then signed with.
pub async fn rotate(
    client: &Client,
    data_dir: &Path,
    identity: &NodeIdentity,
) -> Result<NodeIdentity, AgentError> {
    let resp: RotateNodeCredentialsResponse = client
        .call(
            &format!("{AGENT_TARGET_PREFIX}.RotateNodeCredentials"),
            &RotateNodeCredentialsRequest {},
        )
        .await?;
    let next = NodeIdentity {
        access_key_id: resp.credentials.access_key_id,
        secret_access_key: resp.credentials.secret_access_key,
        issued_at: now(),
        expiration: resp.credentials.expiration,
        ..identity.clone()
    };
    save(data_dir, &next)?;
    client.set_credentials(next.credentials());
    tracing::info!(node = %next.managed_instance_id, key = %next.access_key_id, "node credentials rotated");
    Ok(next)
}

/// Rotates the node's key [`ROTATE_AFTER`] after each was issued, for as long as it runs.
pub async fn rotation_loop(client: Client, data_dir: PathBuf, mut identity: NodeIdentity) {
    loop {
        let age = (now() - identity.issued_at).max(0.0);
        let wait = ROTATE_AFTER.saturating_sub(Duration::from_secs_f64(age.min(1e9)));
        tokio::time::sleep(wait).await;
        match rotate(&client, &data_dir, &identity).await {
            Ok(next) => identity = next,
            Err(e) => {
                tracing::warn!(error = %e, "cannot rotate the node credentials; retrying in {ROTATION_RETRY:?}");
                tokio::time::sleep(ROTATION_RETRY).await;
            }
        }
    }
}

/// Whether the control plane refused the node's key itself (revoked when its instance
/// was deregistered, or expired): the agent cannot go on.
pub fn is_refusal(e: &AgentError) -> bool {
    matches!(e, AgentError::Api { code: ApiCode::Other(c), .. }
        if c == "UnrecognizedClientException" || c == "AccessDeniedException")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_identity_is_saved_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let id = NodeIdentity {
            managed_instance_id: "mi-0123456789abcdef0".into(),
            account: "000000000000".into(),
            region: "us-east-1".into(),
            access_key_id: "FLTNAAAAAAAAAAAAAAAA".into(),
            secret_access_key: "s".repeat(40),
            issued_at: 1.0,
            expiration: 2.0,
        };
        save(dir.path(), &id).unwrap();
        let mode = std::fs::metadata(credentials_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load(dir.path()).unwrap(), Some(id.clone()));
        assert!(!format!("{id:?}").contains("sss"), "Debug hides the secret");
    }

    #[test]
    fn only_a_refused_key_is_a_refusal() {
        let api = |c: &str| AgentError::Api {
            code: ApiCode::from_wire(c),
            message: String::new(),
        };
        assert!(is_refusal(&api("UnrecognizedClientException")));
        assert!(is_refusal(&api("AccessDeniedException")));
        assert!(!is_refusal(&api("InvalidParameterException")));
        assert!(!is_refusal(&AgentError::ControlPlane("down".into())));
    }
}
