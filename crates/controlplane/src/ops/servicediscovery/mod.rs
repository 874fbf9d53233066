//! The Cloud Map API (`servicediscovery`, `Route53AutoNaming_v20170314.*`) as pure
//! functions of the state, like the ECS operations: reads are
//! `fn(&State, &Scope, Request) -> Result<Response, SdError>` (listings also take the
//! time, for their page tokens), writes `fn(&State, &mut Ctx, Request) -> SdWritten<Response>`.
//!
//! ## Design
//! - **Records** live in [`Discovery`](crate::state::Discovery): namespaces (private DNS
//!   and HTTP), services, registered instances, and one operation record per
//!   asynchronous call.
//! - **Asynchronous calls complete at once.** CreatePrivateDnsNamespace,
//!   CreateHttpNamespace, DeleteNamespace, UpdateService, RegisterInstance and
//!   DeregisterInstance answer an `OperationId`, as in AWS; the change is already made
//!   when they answer, and GetOperation shows the operation `SUCCESS` with its targets.
//! - **Custom health.** An instance of a service with `HealthCheckCustomConfig` starts
//!   `HEALTHY` (or as its `AWS_INIT_HEALTH_STATUS` attribute says), as in AWS;
//!   UpdateInstanceCustomHealthStatus changes it at once (AWS waits about 30 s).
//!   Instances of other services show `UNKNOWN` and DiscoverInstances ignores its
//!   health filter for them, as AWS does.
//! - **DNS** is served by a separate data plane: [`dns::dns_snapshot`] is the plain
//!   view of the private DNS namespaces it is fed.
//! - Errors are [`SdError`], one variant per Cloud Map error code.
//!
//! ## Limits
//! Checked where input enters (AWS's defaults, [Cloud Map quotas]):
//! - namespaces per account and region: [`MAX_NAMESPACES`] (50);
//! - services per namespace: [`MAX_SERVICES_PER_NAMESPACE`] (1,000; AWS has no quota of
//!   its own for this, flotilla bounds it);
//! - instances per service: [`MAX_INSTANCES_PER_SERVICE`] (1,000) and per namespace:
//!   [`MAX_INSTANCES_PER_NAMESPACE`] (2,000);
//! - attributes per instance: [`MAX_ATTRIBUTES`] (30), keys up to 255 and values up to
//!   1,024 characters; tags per resource: [`MAX_TAGS`] (200);
//! - names: private DNS namespace names are DNS names of at most 253 characters (labels
//!   of at most 63), HTTP namespace names at most 1,024 printable characters, service
//!   names at most 127 characters (DNS labels), instance ids at most 64 characters
//!   (`[0-9a-zA-Z_/:.@-]`). Exceeding a quota answers `ResourceLimitExceeded`; a bad
//!   value `InvalidInput`.
//!
//! [Cloud Map quotas]: https://docs.aws.amazon.com/cloud-map/latest/dg/cloud-map-limits.html
//!
//! ## Current limitations
//! - Public DNS namespaces, Route 53 health checks (`HealthCheckConfig`), namespace
//!   updates and service attributes are not implemented (answered `InvalidInput`).
//! - A namespace name is unique per account and region, whatever its type or VPC (AWS
//!   allows the same private DNS name in different VPCs).
//! - Operation records are kept until their namespace or service is deleted, at most
//!   [`MAX_OPERATIONS`] per account and region (then the oldest are dropped; AWS keeps
//!   them for a while too).

pub mod dns;
pub mod instances;
pub mod namespaces;
pub mod operations;
pub mod services;
pub mod tags;

use model::wire_sd;

use crate::engine::Ctx;
use crate::error::EcsError;
use crate::state::{
    Change, DiscoveryRecord, Record, Scope, SdNamespaceRecord, SdOperationRecord, SdServiceRecord,
    State,
};

/// Most namespaces in one account and region (AWS's default quota).
pub const MAX_NAMESPACES: usize = 50;
/// Most services in one namespace (flotilla's bound; AWS has no quota for it).
pub const MAX_SERVICES_PER_NAMESPACE: usize = 1_000;
/// Most instances registered with one service (AWS's default quota).
pub const MAX_INSTANCES_PER_SERVICE: usize = 1_000;
/// Most instances registered in one namespace (AWS's default quota).
pub const MAX_INSTANCES_PER_NAMESPACE: usize = 2_000;
/// Most attributes of one instance (AWS's limit).
pub const MAX_ATTRIBUTES: usize = 30;
/// Most tags of one namespace or service.
pub const MAX_TAGS: usize = 200;
/// Most operation records kept per account and region: the oldest go first.
pub const MAX_OPERATIONS: usize = 10_000;

/// A Cloud Map operation failed. The variant is the `__type` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdError {
    /// A value failed validation, or the request asks for what flotilla does not do.
    #[error("{0}")]
    InvalidInput(String),
    /// No namespace has that id (or name).
    #[error("{0}")]
    NamespaceNotFound(String),
    /// No service has that id (or name).
    #[error("{0}")]
    ServiceNotFound(String),
    /// The service has no instance with that id.
    #[error("{0}")]
    InstanceNotFound(String),
    /// No operation has that id.
    #[error("{0}")]
    OperationNotFound(String),
    /// A namespace of that name exists.
    #[error("{0}")]
    NamespaceAlreadyExists(String),
    /// The namespace has a service of that name.
    #[error("{0}")]
    ServiceAlreadyExists(String),
    /// The resource still has dependents (services, instances).
    #[error("{0}")]
    ResourceInUse(String),
    /// A quota (see the module documentation) would be exceeded.
    #[error("{0}")]
    ResourceLimitExceeded(String),
    /// A `CreatorRequestId` was used before for another request.
    #[error("{0}")]
    DuplicateRequest(String),
    /// UpdateInstanceCustomHealthStatus on a service without `HealthCheckCustomConfig`.
    #[error("{0}")]
    CustomHealthNotFound(String),
    /// A tagged resource's ARN names nothing.
    #[error("{0}")]
    ResourceNotFound(String),
    /// More than [`MAX_TAGS`] tags.
    #[error("{0}")]
    TooManyTags(String),
    /// The server failed (the store could not commit, …).
    #[error("{0}")]
    Internal(String),
}

impl SdError {
    /// The wire error code (`__type`). One exhaustive match, no fallback.
    pub fn code(&self) -> &'static str {
        match self {
            SdError::InvalidInput(_) => "InvalidInput",
            SdError::NamespaceNotFound(_) => "NamespaceNotFound",
            SdError::ServiceNotFound(_) => "ServiceNotFound",
            SdError::InstanceNotFound(_) => "InstanceNotFound",
            SdError::OperationNotFound(_) => "OperationNotFound",
            SdError::NamespaceAlreadyExists(_) => "NamespaceAlreadyExists",
            SdError::ServiceAlreadyExists(_) => "ServiceAlreadyExists",
            SdError::ResourceInUse(_) => "ResourceInUse",
            SdError::ResourceLimitExceeded(_) => "ResourceLimitExceeded",
            SdError::DuplicateRequest(_) => "DuplicateRequest",
            SdError::CustomHealthNotFound(_) => "CustomHealthNotFound",
            SdError::ResourceNotFound(_) => "ResourceNotFoundException",
            SdError::TooManyTags(_) => "TooManyTagsException",
            SdError::Internal(_) => "InternalFailure",
        }
    }

    /// Whether the server, not the client, is at fault (HTTP 500).
    pub fn is_server_fault(&self) -> bool {
        matches!(self, SdError::Internal(_))
    }
}

impl From<EcsError> for SdError {
    /// The shared machinery (page tokens) answers [`EcsError`]s: a bad token is bad input.
    fn from(e: EcsError) -> SdError {
        if e.is_server_fault() {
            SdError::Internal(e.to_string())
        } else {
            SdError::InvalidInput(e.to_string())
        }
    }
}

/// What a Cloud Map write returns: its answer and the changes it decided.
pub type SdWritten<T> = crate::engine::Written<T, SdError>;

/// Shorthand for an [`SdError::InvalidInput`].
pub fn invalid(msg: impl Into<String>) -> SdError {
    SdError::InvalidInput(msg.into())
}

/// A `Change::Put` of a Cloud Map record.
pub fn put(r: DiscoveryRecord) -> Change {
    Change::Put(Record::Discovery(r))
}

/// A `Change::Delete` of a Cloud Map record.
pub fn delete(r: DiscoveryRecord) -> Change {
    Change::Delete(Record::Discovery(r))
}

const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// `len` random characters of `[a-z2-7]`, as Cloud Map's ids are made.
pub fn random_chars(ctx: &mut Ctx, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut bits = 0u64;
    let mut left = 0;
    for _ in 0..len {
        if left < 5 {
            bits = ctx.random_u64();
            left = 64;
        }
        out.push(char::from(
            ID_ALPHABET[usize::try_from(bits & 31).unwrap_or(0)],
        ));
        bits >>= 5;
        left -= 5;
    }
    out
}

/// The ARN of a namespace or service: `arn:aws:servicediscovery:<region>:<account>:<kind>/<id>`.
pub fn arn(scope: &Scope, kind: &str, id: &str) -> String {
    format!(
        "arn:aws:servicediscovery:{}:{}:{kind}/{id}",
        scope.region, scope.account
    )
}

/// The id a request's `Id`/`ServiceId`/`NamespaceId` names: the id itself, or the last
/// part of an ARN of `kind` in `scope` (`None` for an ARN of another kind or scope).
pub fn id_of(scope: &Scope, kind: &str, ident: &str) -> Option<String> {
    if !ident.starts_with("arn:") {
        return Some(ident.to_owned());
    }
    let prefix = format!(
        "arn:aws:servicediscovery:{}:{}:{kind}/",
        scope.region, scope.account
    );
    ident
        .strip_prefix(&prefix)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// The service a request names (id or ARN), or `ServiceNotFound`.
pub fn find_service<'a>(
    state: &'a State,
    scope: &Scope,
    ident: &str,
) -> Result<&'a SdServiceRecord, SdError> {
    id_of(scope, "service", ident)
        .and_then(|id| state.discovery.service(scope, &id))
        .ok_or_else(|| SdError::ServiceNotFound(format!("Service not found: {ident}")))
}

/// A required member, or `InvalidInput` naming it.
pub fn required<T>(value: Option<T>, name: &str) -> Result<T, SdError> {
    value.ok_or_else(|| invalid(format!("{name} is required.")))
}

/// `ms` (epoch milliseconds) as 9 characters that sort as the numbers do.
fn sortable_time(ms: u64) -> String {
    const SORTED: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
    (0..9)
        .rev()
        .map(|i| char::from(SORTED[usize::try_from((ms >> (5 * i)) & 31).unwrap_or(0)]))
        .collect()
}

/// A new operation record, completed (`SUCCESS`) at `ctx.now`, with its targets. Its id
/// (`[a-z2-7]{32}-[a-z2-7]{8}`, as Cloud Map's) starts with the time, so one scope's
/// records are in creation order.
pub fn operation(
    ctx: &mut Ctx,
    kind: wire_sd::OperationType,
    targets: &[(wire_sd::OperationTargetType, &str)],
) -> SdOperationRecord {
    // Epoch seconds to milliseconds (`as` saturates; `now` is far below 2^53).
    let ms = (ctx.now.max(0.0) * 1000.0) as u64;
    let id = format!(
        "{}{}-{}",
        sortable_time(ms),
        random_chars(ctx, 23),
        random_chars(ctx, 8)
    );
    SdOperationRecord {
        scope: ctx.scope.clone(),
        id: id.clone(),
        operation: wire_sd::Operation {
            id: Some(id),
            owner_account: Some(ctx.scope.account.to_string()),
            r#type: Some(kind),
            status: Some(wire_sd::OperationStatus::Success),
            create_date: Some(ctx.now),
            update_date: Some(ctx.now),
            targets: Some(
                targets
                    .iter()
                    .map(|(t, v)| (t.as_str().to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        },
    }
}

/// One page of a List call over `items` (what follows a key, as `(key, item)`), as
/// [`crate::paging::paginate`]: for the request's `filters` (serialized, so a token is
/// only good for the filters it was made for) and its paging members, `MaxResults` (at
/// most 100) and `NextToken`.
pub fn list_page<T, I>(
    state: &State,
    now: f64,
    operation: &str,
    filters: &impl serde::Serialize,
    (max, next_token): (Option<i32>, Option<&str>),
    items: impl FnOnce(Option<&str>) -> I,
) -> Result<crate::paging::Page<T>, SdError>
where
    I: IntoIterator<Item = (String, T)>,
{
    let canonical = serde_json::to_string(filters).unwrap_or_default();
    let request = crate::paging::PageRequest::ascending(
        &state.meta.paging_secret,
        now,
        operation,
        &canonical,
        max_results(max, 100)?,
        next_token,
    );
    Ok(crate::paging::paginate(&request, |after| Ok(items(after)))?)
}

/// A resource that a Create call makes (a namespace, a service): unique by name, and
/// remembering the `CreatorRequestId` of the call that made it.
pub trait Created {
    /// The `CreatorRequestId` of the call that made it.
    fn creator_request_id(&self) -> Option<&String>;
}

impl Created for SdNamespaceRecord {
    fn creator_request_id(&self) -> Option<&String> {
        self.namespace.creator_request_id.as_ref()
    }
}

impl Created for SdServiceRecord {
    fn creator_request_id(&self) -> Option<&String> {
        self.service.creator_request_id.as_ref()
    }
}

/// How a Create call with `CreatorRequestId` `token` stands with the resources of its
/// kind (`what`: `namespace`, `service`) already there, `same_name` the one of the name it
/// asks for: a retry of the call that made `same_name` (the same token) answers
/// `Ok(Some(same_name))`, to be answered as that call was; another `same_name` answers
/// `exists(same_name)`; a token that made another of `all` answers `DuplicateRequest`;
/// else `Ok(None)`: the resource is new.
pub fn check_create<'a, R: Created>(
    token: Option<&String>,
    same_name: Option<&'a R>,
    mut all: impl Iterator<Item = &'a R>,
    what: &str,
    exists: impl FnOnce(&R) -> SdError,
) -> Result<Option<&'a R>, SdError> {
    if let Some(existing) = same_name {
        if token.is_some() && existing.creator_request_id() == token {
            return Ok(Some(existing));
        }
        return Err(exists(existing));
    }
    match token {
        Some(token) if all.any(|r| r.creator_request_id() == Some(token)) => {
            Err(SdError::DuplicateRequest(format!(
                "CreatorRequestId {token} was already used for another {what}."
            )))
        }
        _ => Ok(None),
    }
}

/// Deletes of the operation records whose `kind` target is `id` (they go with the
/// namespace or service they name).
pub fn delete_operations_of(
    state: &State,
    scope: &Scope,
    kind: wire_sd::OperationTargetType,
    id: &str,
) -> impl Iterator<Item = Change> {
    state
        .discovery
        .operations_in(scope, None)
        .filter(move |o| {
            o.operation
                .targets
                .as_ref()
                .and_then(|t| t.get(kind.as_str()))
                .is_some_and(|target| target == id)
        })
        .cloned()
        .map(|o| delete(DiscoveryRecord::Operation(o)))
}

/// The changes that store `op`: its put, and the deletion of the scope's oldest operation
/// records beyond [`MAX_OPERATIONS`].
pub fn keep_operation(state: &State, op: SdOperationRecord) -> Vec<Change> {
    keep_operation_within(state, op, MAX_OPERATIONS)
}

/// [`keep_operation`] with another bound (tests).
pub fn keep_operation_within(state: &State, op: SdOperationRecord, max: usize) -> Vec<Change> {
    let kept = state.discovery.operations_in(&op.scope, None).count();
    let mut out: Vec<Change> = state
        .discovery
        .operations_in(&op.scope, None)
        .take((kept + 1).saturating_sub(max.max(1)))
        .cloned()
        .map(|o| delete(DiscoveryRecord::Operation(o)))
        .collect();
    out.push(put(DiscoveryRecord::Operation(op)));
    out
}

/// Whether `label` is one label of a name Cloud Map serves over DNS (a private DNS
/// namespace's, a service's): 1–63 letters, digits, hyphens and underscores, neither
/// starting nor ending with a hyphen.
pub fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Checks an optional `Description` (at most 1,024 characters).
pub fn check_description(d: Option<&str>) -> Result<(), SdError> {
    if d.is_some_and(|d| d.chars().count() > 1024) {
        return Err(invalid("Description can be at most 1024 characters long."));
    }
    Ok(())
}

/// Checks an optional `CreatorRequestId` (at most 64 characters).
pub fn check_creator_request_id(id: Option<&str>) -> Result<(), SdError> {
    if id.is_some_and(|d| d.is_empty() || d.chars().count() > 64) {
        return Err(invalid(
            "CreatorRequestId must be between 1 and 64 characters long.",
        ));
    }
    Ok(())
}

/// Checks `MaxResults` against `max` and returns it as the paging layer wants it.
pub fn max_results(n: Option<i32>, max: i32) -> Result<Option<i32>, SdError> {
    match n {
        Some(n) if !(1..=max).contains(&n) => Err(invalid(format!(
            "MaxResults must be between 1 and {max}, got {n}."
        ))),
        other => Ok(other),
    }
}
