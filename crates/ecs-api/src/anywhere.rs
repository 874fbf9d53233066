//! ECS Anywhere at the edge: an external node's bootstrap call, its own credentials,
//! and what they may do.
//!
//! - **Bootstrap.** `FlotillaAgentV1.RegisterExternalInstance` is the one call whose
//!   signature is not verified: the node holds no key yet. Its body carries the SSM
//!   activation id and code, which authenticate it ([`register_external_instance`]);
//!   only the region of its credential scope is read. The answer carries the node's
//!   managed-instance id (`mi-…`) and its own access key.
//! - **Node keys.** A request signed with a key of the node shape (`FLTN…`,
//!   [`model::agent::NODE_ACCESS_KEY_PREFIX`]) is verified against the keys the control
//!   plane issued ([`authenticate_node`]), whether or not the server was started with
//!   `--credentials`: an unknown, revoked (its instance was deregistered) or expired
//!   key is `UnrecognizedClientException`. A node key acts in its node's account and
//!   region only, for ECS's agent operations ([`NODE_ECS_OPERATIONS`]) and flotilla's
//!   `FlotillaAgentV1.*`: anything else is `AccessDeniedException`.
//! - **Registration.** A node's RegisterContainerInstance is rewritten so that the
//!   instance is what ECS shows for an external instance: `ec2InstanceId` is the node's
//!   `mi-` id and it carries `ecs.capability.external` ([`node_registration`]); a
//!   registration signed with any other key may not claim that attribute
//!   ([`refuse_external_claim`]).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, Uri};
use controlplane::ControlPlane;
use controlplane::ops::anywhere::{self, SsmError};
use controlplane::placement::EXTERNAL_CAPABILITY;
use model::agent::{AGENT_TARGET_PREFIX, RegisterExternalInstanceRequest};
use model::wire::{self, TARGET_PREFIX};

use crate::auth::{
    Caller, Credentials, DEFAULT_REGION, KeyEntry, ScopeService, Verifier, is_valid_region,
    parse_authorization,
};
use crate::dispatch::{Call, encode, parse_json};
use crate::error::{ApiError, quote};
use crate::service::AwsService;

/// The ECS operations a node key may call besides `FlotillaAgentV1.*`: the ones ECS's
/// own agent calls.
pub const NODE_ECS_OPERATIONS: [&str; 5] = [
    "RegisterContainerInstance",
    "SubmitTaskStateChange",
    "SubmitContainerStateChange",
    "SubmitAttachmentStateChanges",
    "DiscoverPollEndpoint",
];

/// The bootstrap operation's name (after `FlotillaAgentV1.`).
pub const BOOTSTRAP_OPERATION: &str = "RegisterExternalInstance";

/// The access key a request is signed with, when it has the shape of a node key.
pub fn node_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let auth = parse_authorization(value).ok()?;
    anywhere::is_node_key(&auth.access_key).then_some(auth.access_key)
}

/// Authenticates a request signed with a node key: the key must be one the control
/// plane issued and has not revoked, the signature must verify with its secret, the
/// service must be ECS and the region the node's. Returns the caller and the node's
/// `mi-` id.
#[allow(clippy::too_many_arguments)]
pub fn authenticate_node(
    cp: &ControlPlane,
    (now_secs, now): (i64, f64),
    service: AwsService,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Caller, String), ApiError> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::MissingAuthentication)?;
    let auth = parse_authorization(value)?;
    let node = cp
        .read(|s| anywhere::node_auth(s, &auth.access_key, now))
        .ok_or(ApiError::UnrecognizedClient)?;
    let mut keys = BTreeMap::new();
    keys.insert(
        auth.access_key.clone(),
        KeyEntry {
            secret: node.secret.clone(),
            account: Some(node.scope.account.to_string()),
        },
    );
    let credentials = Credentials { keys };
    let verifier = Verifier {
        credentials: Some(&credentials),
        default_account: &node.scope.account,
        now: now_secs,
        service: ScopeService::Named(service.signing_name()),
    };
    let caller = verifier.authenticate(method, uri, headers, body)?;
    if service != AwsService::Ecs {
        return Err(ApiError::AccessDenied(format!(
            "The credentials of external node {} serve only the ECS agent's operations, not {}.",
            node.node_id,
            service.signing_name()
        )));
    }
    if caller.region != node.scope.region {
        return Err(ApiError::AccessDenied(format!(
            "The credentials of external node {} act only in {}, not {}.",
            node.node_id,
            node.scope.region,
            quote(&caller.region)
        )));
    }
    Ok((caller, node.node_id))
}

/// Whether node `node` may call `prefix.name`: the agent's operations only.
pub fn check_node_operation(node: &str, prefix: &str, name: &str) -> Result<(), ApiError> {
    let allowed = prefix == AGENT_TARGET_PREFIX
        || (prefix == TARGET_PREFIX && NODE_ECS_OPERATIONS.contains(&name));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::AccessDenied(format!(
            "External node {node} is not authorized to perform: {}; its credentials serve only the agent's operations.",
            quote(&format!("{prefix}.{name}"))
        )))
    }
}

fn has_external_claim(req: &wire::RegisterContainerInstanceRequest) -> bool {
    req.attributes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .any(|a| a.name.as_deref() == Some(EXTERNAL_CAPABILITY))
}

/// A RegisterContainerInstance body signed with an ordinary key: it may not make the
/// instance external (only a node registered through an activation is one).
pub fn refuse_external_claim(body: &[u8]) -> Result<(), ApiError> {
    // A body that does not parse is refused by the operation itself, with its message.
    match parse_json::<wire::RegisterContainerInstanceRequest>(body) {
        Ok(req) if has_external_claim(&req) => Err(ApiError::InvalidParameter(format!(
            "The attribute {EXTERNAL_CAPABILITY} is set by flotilla on instances registered through an SSM activation (flotilla agent --activation-id); it cannot be given."
        ))),
        _ => Ok(()),
    }
}

/// Node `node`'s RegisterContainerInstance body, made an external instance's: its
/// identity document's `instanceId` is the node's `mi-` id (whatever the node sent)
/// and it carries `ecs.capability.external`.
pub fn node_registration(node: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let mut req: wire::RegisterContainerInstanceRequest = parse_json(body)?;
    let mut doc: serde_json::Map<String, serde_json::Value> =
        match req.instance_identity_document.as_deref() {
            None | Some("") => serde_json::Map::new(),
            Some(s) => serde_json::from_str(s).map_err(|e| {
                ApiError::InvalidParameter(format!(
                    "instanceIdentityDocument is not a valid identity document: {e}"
                ))
            })?,
        };
    doc.insert("instanceId".into(), node.into());
    req.instance_identity_document = Some(serde_json::Value::Object(doc).to_string());
    if !has_external_claim(&req) {
        req.attributes
            .get_or_insert_with(Vec::new)
            .push(wire::Attribute {
                name: Some(EXTERNAL_CAPABILITY.into()),
                ..Default::default()
            });
    }
    encode(&req)
}

/// The region of a request's credential scope, read without verifying its signature
/// (the bootstrap call), or the default region when it has none.
pub fn unverified_region(headers: &HeaderMap) -> Result<String, ApiError> {
    let region = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_authorization(v).ok())
        .map_or_else(|| DEFAULT_REGION.to_owned(), |a| a.region);
    if is_valid_region(&region) {
        Ok(region)
    } else {
        Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not {}.",
            quote(&region)
        )))
    }
}

/// `FlotillaAgentV1.RegisterExternalInstance` in `region`: the activation (looked up by
/// id, in the account that created it) authenticates the call.
pub async fn register_external_instance(
    cp: &ControlPlane,
    region: &str,
    default_account: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: RegisterExternalInstanceRequest = parse_json(body)?;
    // Guesses are refused on the published state, without a write.
    if anywhere::is_activation_id(&req.activation_id)
        && req.activation_code.len() <= 250
        && !cp.read(|s| anywhere::code_matches(s, &req.activation_id, &req.activation_code))
    {
        return Err(SsmError::InvalidActivation(
            "The activation is not valid: it does not exist in this region, was deleted, or the activation id and code do not match.".into(),
        )
        .into());
    }
    // The activation's account; an unknown id, or one of another region, is answered
    // by the operation (InvalidActivation) in a scope that holds no such activation.
    let scope = cp
        .read(|s| anywhere::activation_scope(s, &req.activation_id))
        .filter(|s| s.region == region)
        .unwrap_or_else(|| controlplane::Scope::new(default_account, region));
    let resp =
        crate::dispatch::write_own_errors(cp, scope, req, anywhere::register_external_instance)
            .await?;
    tracing::info!(node = %resp.managed_instance_id, "external node registered");
    encode(&resp)
}

/// `FlotillaAgentV1.RotateNodeCredentials`: the calling node's new key.
pub async fn rotate_node_credentials(cp: &ControlPlane, call: &Call) -> Result<Vec<u8>, ApiError> {
    let node = call.node.clone().ok_or_else(|| {
        ApiError::AccessDenied(
            "RotateNodeCredentials must be signed with an external node's credentials.".into(),
        )
    })?;
    let resp =
        crate::dispatch::write_own_errors(cp, call.scope.clone(), node, |s, ctx, node: String| {
            anywhere::rotate_node_credentials(s, ctx, &node)
        })
        .await?;
    encode(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_may_call_only_agent_operations() {
        assert!(check_node_operation("mi-1", AGENT_TARGET_PREFIX, "PollTasks").is_ok());
        assert!(check_node_operation("mi-1", TARGET_PREFIX, "SubmitTaskStateChange").is_ok());
        for op in [
            "ListClusters",
            "RunTask",
            "DeregisterContainerInstance",
            "CreateCluster",
        ] {
            let e = check_node_operation("mi-1", TARGET_PREFIX, op).unwrap_err();
            assert_eq!(e.status_and_code().1, "AccessDeniedException", "{op}");
        }
        let e = check_node_operation("mi-1", "FlotillaV1", "GetTaskLogs").unwrap_err();
        assert_eq!(e.status_and_code().1, "AccessDeniedException");
    }

    #[test]
    fn a_node_registration_is_an_external_instance() {
        let body = br#"{"cluster":"c","instanceIdentityDocument":"{\"instanceId\":\"i-forged\",\"region\":\"us-east-1\"}"}"#;
        let out = node_registration("mi-0123456789abcdef0", body).unwrap();
        let req: wire::RegisterContainerInstanceRequest = serde_json::from_slice(&out).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(req.instance_identity_document.as_deref().unwrap()).unwrap();
        assert_eq!(doc["instanceId"], "mi-0123456789abcdef0");
        assert_eq!(doc["region"], "us-east-1");
        assert!(has_external_claim(&req));
        assert_eq!(req.cluster.as_deref(), Some("c"));
        // Others may not claim it.
        let claim = br#"{"attributes":[{"name":"ecs.capability.external"}]}"#;
        let e = refuse_external_claim(claim).unwrap_err();
        assert_eq!(e.status_and_code().1, "InvalidParameterException");
        assert!(refuse_external_claim(br#"{"attributes":[{"name":"x"}]}"#).is_ok());
    }

    #[test]
    fn the_bootstrap_region_comes_from_the_scope() {
        let mut h = HeaderMap::new();
        assert_eq!(unverified_region(&h).unwrap(), DEFAULT_REGION);
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=x/20261123/eu-west-1/ecs/aws4_request, SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert_eq!(unverified_region(&h).unwrap(), "eu-west-1");
    }
}
