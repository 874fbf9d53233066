//! ECS Anywhere: SSM hybrid activations (CreateActivation, DescribeActivations,
//! DeleteActivation), an external node's registration with one
//! (`FlotillaAgentV1.RegisterExternalInstance`), the rotation of its credentials
//! (`FlotillaAgentV1.RotateNodeCredentials`), their revocation when its container instance
//! is deregistered, and the lookup the API's SigV4 verifier makes for a node key.
//!
//! ## Secrets
//! An activation code is shown once, in CreateActivation's answer; the record keeps its
//! SHA-256 and a registration compares hashes. A node's secret access key is shown once
//! too (in RegisterExternalInstance's or RotateNodeCredentials' answer) and is not
//! stored: SigV4 is a symmetric MAC, so a verifier must be able to recompute the secret,
//! and flotilla derives it as `HMAC-SHA256(server secret, "flotilla-node-key|" + access
//! key id + "|" + nonce)`, the server secret being the state's random 256-bit key (the
//! one that signs page tokens) and the nonce a random value kept in the node's record
//! beside the secret's SHA-256 (checked on every derivation). Whoever can read the
//! whole store (meta record included) can therefore derive node secrets, as whoever can
//! read it can read everything else; a leaked node record alone cannot.
//!
//! ## Limits
//! See the constants: activations per account and region, registrations per activation,
//! expiry, node key lifetime and the grace of a rotated-away key.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use model::agent::{
    NODE_ACCESS_KEY_PREFIX, NodeCredentials, RegisterExternalInstanceRequest,
    RegisterExternalInstanceResponse, RotateNodeCredentialsResponse,
};
use model::wire_ssm::{
    Activation, CreateActivationRequest, CreateActivationResult, DeleteActivationRequest,
    DeleteActivationResult, DescribeActivationsRequest, DescribeActivationsResult,
};
use sha2::{Digest, Sha256};

use crate::engine::Ctx;
use crate::error::EcsError;
use crate::state::{
    ActivationRecord, AnywhereRecord, Change, DiscoveryRecord, ManagedNodeRecord, NodeKey, Record,
    Scope, State,
};

/// Default `RegistrationLimit`.
pub const DEFAULT_REGISTRATION_LIMIT: i64 = 1;
/// Largest `RegistrationLimit` (SSM's).
pub const MAX_REGISTRATION_LIMIT: i64 = 1000;
/// Default lifetime of an activation: 24 hours (SSM's).
pub const DEFAULT_ACTIVATION_SECS: f64 = 24.0 * 3600.0;
/// Longest lifetime of an activation: 30 days (SSM's).
pub const MAX_ACTIVATION_SECS: f64 = 30.0 * 24.0 * 3600.0;
/// Most activations one account keeps in one region (expired ones count until deleted).
pub const MAX_ACTIVATIONS: usize = 1000;
/// Most managed nodes one account has in one region.
pub const MAX_MANAGED_NODES: usize = 10_000;
/// Most tags on an activation.
pub const MAX_TAGS: usize = 50;
/// Most filters in one DescribeActivations, and most values in one filter.
pub const MAX_FILTERS: usize = 10;
/// Most values of one DescribeActivations filter.
pub const MAX_FILTER_VALUES: usize = 100;
/// Largest DescribeActivations page (and the default).
pub const MAX_RESULTS: i32 = 50;
/// How long a node key is accepted after it was issued, unless rotated first: 7 days.
/// The agent rotates every [`ROTATE_AFTER_SECS`].
pub const NODE_KEY_LIFETIME_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// When the agent rotates its key: 12 hours after it was issued.
pub const ROTATE_AFTER_SECS: f64 = 12.0 * 3600.0;
/// How long a rotated-away key is still accepted: 15 minutes.
pub const ROTATION_GRACE_SECS: f64 = 15.0 * 60.0;
/// Length of an activation code (SSM's codes are 20 characters).
pub const ACTIVATION_CODE_LEN: usize = 20;

/// An SSM activation operation (or a registration with one) failed. The variant is
/// the `__type` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsmError {
    /// A member fails the model's constraints (length, range, pattern).
    #[error("{0}")]
    Validation(String),
    /// The parameters are valid one by one but not together, or a limit is reached.
    #[error("{0}")]
    InvalidParameters(String),
    /// The activation id is not an activation id.
    #[error("{0}")]
    InvalidActivationId(String),
    /// No such activation, the code does not match, it expired or is used up.
    #[error("{0}")]
    InvalidActivation(String),
    /// An unknown filter key.
    #[error("{0}")]
    InvalidFilter(String),
    /// A `NextToken` this server did not issue for this listing.
    #[error("{0}")]
    InvalidNextToken(String),
    /// The server failed (the store could not commit, …).
    #[error("{0}")]
    Internal(String),
}

impl SsmError {
    /// The wire error code (`__type`). One exhaustive match, no fallback.
    pub fn code(&self) -> &'static str {
        match self {
            SsmError::Validation(_) => "ValidationException",
            SsmError::InvalidParameters(_) => "InvalidParameters",
            SsmError::InvalidActivationId(_) => "InvalidActivationId",
            SsmError::InvalidActivation(_) => "InvalidActivation",
            SsmError::InvalidFilter(_) => "InvalidFilter",
            SsmError::InvalidNextToken(_) => "InvalidNextToken",
            SsmError::Internal(_) => "InternalServerError",
        }
    }

    /// Whether the server, not the client, is at fault (HTTP 500).
    pub fn is_server_fault(&self) -> bool {
        matches!(self, SsmError::Internal(_))
    }
}

impl From<EcsError> for SsmError {
    /// The writer's own failures are server faults; the shared paging machinery's
    /// refusals are a bad token.
    fn from(e: EcsError) -> SsmError {
        if e.is_server_fault() {
            SsmError::Internal(e.to_string())
        } else {
            SsmError::InvalidNextToken(e.to_string())
        }
    }
}

/// What an SSM write returns: its answer and the changes it decided.
pub type SsmWritten<T> = crate::engine::Written<T, SsmError>;

fn put(r: AnywhereRecord) -> Change {
    Change::Put(Record::Discovery(DiscoveryRecord::Anywhere(r)))
}

fn delete(r: AnywhereRecord) -> Change {
    Change::Delete(Record::Discovery(DiscoveryRecord::Anywhere(r)))
}

/// Hex SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Whether two strings are equal, in time that depends only on their lengths.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// HMAC-SHA256 of `message` under the state's server secret.
fn server_mac(state: &State, message: &str) -> [u8; 32] {
    let key = hex::decode(&state.meta.paging_secret).unwrap_or_default();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The secret access key of node key `access_key_id` with `nonce` (see the module docs):
/// 40 characters, as AWS's secret keys have.
fn derive_secret(state: &State, access_key_id: &str, nonce: &str) -> String {
    let mac = server_mac(state, &format!("flotilla-node-key|{access_key_id}|{nonce}"));
    let mut s = base64::engine::general_purpose::STANDARD_NO_PAD.encode(mac);
    s.truncate(40);
    s
}

fn check_len(what: &str, value: Option<&str>, max: usize) -> Result<(), SsmError> {
    match value {
        Some(v) if v.chars().count() > max => Err(SsmError::Validation(format!(
            "1 validation error detected: Value at '{what}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        ))),
        _ => Ok(()),
    }
}

/// SSM's name pattern (`DefaultInstanceName`, tag keys and values): letters, digits,
/// spaces and `_.:/=+-@`.
fn check_pattern(what: &str, value: &str) -> Result<(), SsmError> {
    let ok = value
        .chars()
        .all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(SsmError::Validation(format!(
            "1 validation error detected: Value at '{what}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([\\p{{L}}\\p{{Z}}\\p{{N}}_.:/=+\\-@]*)$"
        )))
    }
}

/// Whether `id` has the shape of an activation id (a lower-case UUID).
pub fn is_activation_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// CreateActivation: a new activation; the answer carries its code, which is not kept.
pub fn create_activation(
    state: &State,
    ctx: &mut Ctx,
    req: CreateActivationRequest,
) -> SsmWritten<CreateActivationResult> {
    let role = req.iam_role.unwrap_or_default();
    if role.is_empty() {
        return Err(SsmError::Validation(
            "1 validation error detected: Value at 'iamRole' failed to satisfy constraint: Member must not be empty".into(),
        ));
    }
    check_len("iamRole", Some(&role), 64)?;
    check_len("description", req.description.as_deref(), 256)?;
    check_len(
        "defaultInstanceName",
        req.default_instance_name.as_deref(),
        256,
    )?;
    if let Some(n) = &req.default_instance_name {
        check_pattern("defaultInstanceName", n)?;
    }
    let limit = req.registration_limit.unwrap_or(DEFAULT_REGISTRATION_LIMIT);
    if !(1..=MAX_REGISTRATION_LIMIT).contains(&limit) {
        return Err(SsmError::Validation(format!(
            "1 validation error detected: Value '{limit}' at 'registrationLimit' failed to satisfy constraint: Member must have value between 1 and {MAX_REGISTRATION_LIMIT}"
        )));
    }
    let expires = req
        .expiration_date
        .unwrap_or(ctx.now + DEFAULT_ACTIVATION_SECS);
    if !expires.is_finite() || expires <= ctx.now {
        return Err(SsmError::InvalidParameters(
            "ExpirationDate must be in the future.".into(),
        ));
    }
    if expires > ctx.now + MAX_ACTIVATION_SECS {
        return Err(SsmError::InvalidParameters(
            "ExpirationDate can be at most 30 days from now.".into(),
        ));
    }
    let tags = req.tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(SsmError::InvalidParameters(format!(
            "An activation can have at most {MAX_TAGS} tags, got {}.",
            tags.len()
        )));
    }
    for t in &tags {
        if t.key.is_empty() {
            return Err(SsmError::Validation(
                "1 validation error detected: Value at 'tags.member.key' failed to satisfy constraint: Member must have length greater than or equal to 1".into(),
            ));
        }
        check_len("tags.member.key", Some(&t.key), 128)?;
        check_len("tags.member.value", Some(&t.value), 256)?;
        check_pattern("tags.member.key", &t.key)?;
        check_pattern("tags.member.value", &t.value)?;
    }
    let here = state
        .discovery
        .anywhere
        .activations
        .values()
        .filter(|a| a.scope == ctx.scope)
        .count();
    if here >= MAX_ACTIVATIONS {
        return Err(SsmError::InvalidParameters(format!(
            "This account already has {here} activations in this region, the most flotilla keeps ({MAX_ACTIVATIONS}); delete some and try again."
        )));
    }
    let id = loop {
        let id = ctx.new_uuid();
        if !state.discovery.anywhere.activations.contains_key(&id) {
            break id;
        }
    };
    let nonce = ctx.new_id();
    let mac = server_mac(state, &format!("flotilla-activation|{id}|{nonce}"));
    let code = code_from(&mac);
    let activation = Activation {
        activation_id: Some(id.clone()),
        description: req.description,
        default_instance_name: req.default_instance_name,
        iam_role: Some(role),
        registration_limit: Some(limit),
        registrations_count: Some(0),
        expiration_date: Some(expires),
        expired: Some(false),
        created_date: Some(ctx.now),
        tags: (!tags.is_empty()).then_some(tags),
    };
    let record = ActivationRecord {
        scope: ctx.scope.clone(),
        id: id.clone(),
        activation,
        code_sha256: sha256_hex(&code),
        registrations: 0,
    };
    Ok((
        CreateActivationResult {
            activation_id: id,
            activation_code: code,
        },
        vec![put(AnywhereRecord::Activation(record))],
    ))
}

/// An activation code from MAC bytes: [`ACTIVATION_CODE_LEN`] characters of
/// `A–Z a–z 0–9` (about 119 bits).
fn code_from(mac: &[u8; 32]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut n = u128::from_be_bytes(mac[..16].try_into().unwrap_or([0; 16]));
    let mut out = String::with_capacity(ACTIVATION_CODE_LEN);
    for _ in 0..ACTIVATION_CODE_LEN {
        out.push(char::from(ALPHABET[(n % 62) as usize]));
        n /= 62;
    }
    out
}

/// An activation as DescribeActivations shows it at `now`.
fn shown(r: &ActivationRecord, now: f64) -> Activation {
    let mut a = r.activation.clone();
    a.registrations_count = Some(r.registrations);
    a.expired = Some(a.expiration_date.is_some_and(|e| e <= now));
    a
}

/// DescribeActivations: one scope's activations in id order, filtered, a page at a time.
pub fn describe_activations(
    state: &State,
    scope: &Scope,
    now: f64,
    req: DescribeActivationsRequest,
) -> Result<DescribeActivationsResult, SsmError> {
    let filters = req.filters.unwrap_or_default();
    if filters.len() > MAX_FILTERS {
        return Err(SsmError::InvalidFilter(format!(
            "At most {MAX_FILTERS} filters are allowed, got {}.",
            filters.len()
        )));
    }
    let mut parsed: Vec<(&str, Vec<String>)> = Vec::with_capacity(filters.len());
    for f in &filters {
        let key = f.filter_key.as_deref().unwrap_or("");
        if !matches!(key, "ActivationIds" | "DefaultInstanceName" | "IamRole") {
            return Err(SsmError::InvalidFilter(format!(
                "Filter key {key:?} is not valid; valid keys are ActivationIds, DefaultInstanceName and IamRole."
            )));
        }
        let values = f.filter_values.clone().unwrap_or_default();
        if values.len() > MAX_FILTER_VALUES {
            return Err(SsmError::InvalidFilter(format!(
                "A filter can have at most {MAX_FILTER_VALUES} values, got {}.",
                values.len()
            )));
        }
        parsed.push((key, values));
    }
    let max = match req.max_results {
        None => None,
        Some(n) if (1..=i64::from(MAX_RESULTS)).contains(&n) => i32::try_from(n).ok(),
        Some(n) => {
            return Err(SsmError::Validation(format!(
                "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and {MAX_RESULTS}"
            )));
        }
    };
    let matches = |a: &ActivationRecord| {
        parsed.iter().all(|(key, values)| {
            let v = match *key {
                "ActivationIds" => Some(a.id.as_str()),
                "DefaultInstanceName" => a.activation.default_instance_name.as_deref(),
                _ => a.activation.iam_role.as_deref(),
            };
            values.is_empty() || v.is_some_and(|v| values.iter().any(|x| x == v))
        })
    };
    let canonical = serde_json::to_string(&filters).unwrap_or_default();
    let mut request = crate::paging::PageRequest::ascending(
        &state.meta.paging_secret,
        now,
        "DescribeActivations",
        &canonical,
        max,
        req.next_token.as_deref(),
    );
    request.limit = MAX_RESULTS;
    let page = crate::paging::paginate(&request, |after| {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.to_owned()),
            None => std::ops::Bound::Unbounded,
        };
        Ok(state
            .discovery
            .anywhere
            .activations
            .range((start, std::ops::Bound::Unbounded))
            .filter(|(_, a)| a.scope == *scope && matches(a))
            .map(|(k, a)| (k.clone(), shown(a, now))))
    })?;
    Ok(DescribeActivationsResult {
        activation_list: page.items,
        next_token: page.next_token,
    })
}

/// DeleteActivation: the activation goes; nodes registered with it stay (as in SSM).
pub fn delete_activation(
    state: &State,
    ctx: &mut Ctx,
    req: DeleteActivationRequest,
) -> SsmWritten<DeleteActivationResult> {
    let id = req.activation_id.unwrap_or_default();
    if !is_activation_id(&id) {
        return Err(SsmError::InvalidActivationId(format!(
            "{:?} is not a valid activation id.",
            id.chars().take(64).collect::<String>()
        )));
    }
    let rec = state
        .discovery
        .anywhere
        .activations
        .get(&id)
        .filter(|a| a.scope == ctx.scope)
        .ok_or_else(|| SsmError::InvalidActivation(format!("Activation {id} does not exist.")))?;
    Ok((
        DeleteActivationResult {},
        vec![delete(AnywhereRecord::Activation(rec.clone()))],
    ))
}

/// The scope an activation id belongs to, if there is one (the bootstrap call is not
/// signed with a known key, so its account comes from its activation).
pub fn activation_scope(state: &State, activation_id: &str) -> Option<Scope> {
    state
        .discovery
        .anywhere
        .activations
        .get(activation_id)
        .map(|a| a.scope.clone())
}

/// Whether `code` is the code of activation `activation_id`: a read-only check the API
/// makes before it queues a registration, so that a stream of guesses (the bootstrap
/// call is not signed) never reaches the single writer. The write checks again.
pub fn code_matches(state: &State, activation_id: &str, code: &str) -> bool {
    state
        .discovery
        .anywhere
        .activations
        .get(activation_id)
        .is_some_and(|a| same(&sha256_hex(code), &a.code_sha256))
}

/// A fresh node key and its secret.
fn new_key(state: &State, ctx: &mut Ctx) -> (NodeKey, String) {
    const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut n = u128::from_str_radix(&ctx.new_id(), 16).unwrap_or_default();
    let mut id = String::from(NODE_ACCESS_KEY_PREFIX);
    for _ in 0..16 {
        id.push(char::from(BASE32[(n % 32) as usize]));
        n /= 32;
    }
    let nonce = ctx.new_id();
    let secret = derive_secret(state, &id, &nonce);
    let key = NodeKey {
        access_key_id: id,
        nonce,
        secret_sha256: sha256_hex(&secret),
        issued_at: ctx.now,
        expires_at: ctx.now + NODE_KEY_LIFETIME_SECS,
    };
    (key, secret)
}

fn credentials(key: &NodeKey, secret: String) -> NodeCredentials {
    NodeCredentials {
        access_key_id: key.access_key_id.clone(),
        secret_access_key: secret,
        expiration: key.expires_at,
    }
}

/// RegisterExternalInstance: checks the activation (exists in the caller's scope, the
/// code matches, not expired, registration limit not reached), then creates a managed
/// node (`mi-…`) with its own key. The code is compared by hash; the answer is the
/// only place the node's secret ever appears.
pub fn register_external_instance(
    state: &State,
    ctx: &mut Ctx,
    req: RegisterExternalInstanceRequest,
) -> SsmWritten<RegisterExternalInstanceResponse> {
    if !is_activation_id(&req.activation_id) {
        return Err(SsmError::InvalidActivationId(
            "The activation id is not valid: expected a UUID such as 01234567-89ab-cdef-0123-456789abcdef.".into(),
        ));
    }
    if req.activation_code.len() > 250 {
        return Err(SsmError::InvalidActivation(
            "The activation code is longer than 250 characters.".into(),
        ));
    }
    if req.hostname.as_ref().is_some_and(|h| h.len() > 256) {
        return Err(SsmError::Validation(
            "hostname must be at most 256 characters.".into(),
        ));
    }
    let not_valid = || {
        SsmError::InvalidActivation(
            "The activation is not valid: it does not exist in this region, was deleted, or the activation id and code do not match.".into(),
        )
    };
    let act = state
        .discovery
        .anywhere
        .activations
        .get(&req.activation_id)
        .filter(|a| a.scope == ctx.scope)
        .ok_or_else(not_valid)?;
    if !same(&sha256_hex(&req.activation_code), &act.code_sha256) {
        return Err(not_valid());
    }
    if act.activation.expiration_date.is_some_and(|e| e <= ctx.now) {
        return Err(SsmError::InvalidActivation(
            "The activation has expired; create a new one.".into(),
        ));
    }
    let limit = act
        .activation
        .registration_limit
        .unwrap_or(DEFAULT_REGISTRATION_LIMIT);
    if act.registrations >= limit {
        return Err(SsmError::InvalidActivation(format!(
            "The activation's registration limit ({limit}) has been reached; create a new activation."
        )));
    }
    let nodes_here = state
        .discovery
        .anywhere
        .nodes
        .values()
        .filter(|n| n.scope == ctx.scope)
        .count();
    if nodes_here >= MAX_MANAGED_NODES {
        return Err(SsmError::InvalidParameters(format!(
            "This account already has {nodes_here} managed nodes in this region, the most flotilla keeps ({MAX_MANAGED_NODES})."
        )));
    }
    let mi = loop {
        let id = format!("mi-{}", &ctx.new_id()[..17]);
        if !state.discovery.anywhere.nodes.contains_key(&id) {
            break id;
        }
    };
    let (key, secret) = new_key(state, ctx);
    let mut act = act.clone();
    act.registrations += 1;
    let node = ManagedNodeRecord {
        scope: ctx.scope.clone(),
        id: mi.clone(),
        activation_id: act.id.clone(),
        name: act.activation.default_instance_name.clone(),
        hostname: req.hostname,
        registered_at: ctx.now,
        key: key.clone(),
        previous_key: None,
    };
    Ok((
        RegisterExternalInstanceResponse {
            managed_instance_id: mi,
            account: ctx.scope.account.to_string(),
            region: ctx.scope.region.to_string(),
            credentials: credentials(&key, secret),
        },
        vec![
            put(AnywhereRecord::Activation(act)),
            put(AnywhereRecord::Node(node)),
        ],
    ))
}

/// RotateNodeCredentials: node `node_id` (the caller, authenticated by its current key)
/// gets a new key; the key it called with stays valid for [`ROTATION_GRACE_SECS`].
pub fn rotate_node_credentials(
    state: &State,
    ctx: &mut Ctx,
    node_id: &str,
) -> SsmWritten<RotateNodeCredentialsResponse> {
    let node = state
        .discovery
        .anywhere
        .nodes
        .get(node_id)
        .filter(|n| n.scope == ctx.scope)
        .ok_or_else(|| {
            SsmError::InvalidActivation(format!("Managed node {node_id} is not registered."))
        })?;
    let (key, secret) = new_key(state, ctx);
    let mut node = node.clone();
    let mut old = std::mem::replace(&mut node.key, key.clone());
    old.expires_at = old.expires_at.min(ctx.now + ROTATION_GRACE_SECS);
    node.previous_key = Some(old);
    Ok((
        RotateNodeCredentialsResponse {
            managed_instance_id: node.id.clone(),
            credentials: credentials(&key, secret),
        },
        vec![put(AnywhereRecord::Node(node))],
    ))
}

/// The changes that revoke managed node `mi` of `scope` (its record goes, and with it
/// every key it holds): what deregistering its container instance adds.
pub fn revoke_node(state: &State, scope: &Scope, mi: &str) -> Vec<Change> {
    state
        .discovery
        .anywhere
        .nodes
        .get(mi)
        .filter(|n| n.scope == *scope)
        .map(|n| delete(AnywhereRecord::Node(n.clone())))
        .into_iter()
        .collect()
}

/// A node key as the SigV4 verifier needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeAuth {
    /// The node's `mi-` id.
    pub node_id: String,
    /// Where it acts.
    pub scope: Scope,
    /// The secret access key, derived (never stored).
    pub secret: String,
}

impl std::fmt::Debug for NodeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAuth")
            .field("node_id", &self.node_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The node key `access_key_id`, when it is one this server issued, is not revoked and
/// has not expired at `now`: the node and its secret (checked against the stored hash).
pub fn node_auth(state: &State, access_key_id: &str, now: f64) -> Option<NodeAuth> {
    let node = state.discovery.anywhere.node_by_key(access_key_id)?;
    let key = std::iter::once(&node.key)
        .chain(node.previous_key.as_ref())
        .find(|k| k.access_key_id == access_key_id && k.expires_at > now)?;
    let secret = derive_secret(state, &key.access_key_id, &key.nonce);
    same(&sha256_hex(&secret), &key.secret_sha256).then(|| NodeAuth {
        node_id: node.id.clone(),
        scope: node.scope.clone(),
        secret,
    })
}

/// Whether `access_key_id` has the shape of a node key (`FLTN` + 16 of `A–Z2–7`).
pub fn is_node_key(access_key_id: &str) -> bool {
    access_key_id
        .strip_prefix(NODE_ACCESS_KEY_PREFIX)
        .is_some_and(|rest| {
            rest.len() == 16
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        })
}

#[cfg(test)]
mod tests;
