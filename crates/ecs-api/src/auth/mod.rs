//! Who is asking, and in which region: SigV4 `Authorization` headers.
//!
//! The region always comes from the credential scope
//! (`Credential=<key>/<date>/<region>/ecs/aws4_request`), as AWS clients put it there
//! even with `--endpoint-url`. When a credentials file is configured, the signature is
//! recomputed over the request exactly as the client signed it (the headers it listed
//! in `SignedHeaders`, the SHA-256 of the body) and compared; a request more than 15
//! minutes off the server's clock is refused. Without a credentials file any signature
//! is accepted (local development).
//!
//! As AWS does, a verified signature must cover `host`, its timestamp header
//! (`x-amz-date`, or `date`) and, when the request has one, `x-amz-target`: a verifier
//! that let the client leave them out would accept a signature made for one request
//! (`DescribeClusters`) on another (`DeleteCluster` with the same body), or on another
//! endpoint. The credential scope must name the service the request was routed to
//! (`ecs`, `elasticloadbalancing`, `servicediscovery`, `ssm`:
//! [`crate::service::AwsService`]); flotilla's own `POST /admin/reset` takes any service
//! ([`ScopeService`]). Keys the control plane issued to external nodes (ECS Anywhere)
//! are verified beside the credentials file's, by [`crate::anywhere`].
//!
//! The signing math is HMAC-SHA256 from the `hmac`/`sha2` crates. We do not use
//! `aws-sigv4` here: it chooses which headers to sign itself, while a verifier must use
//! exactly the list the client chose.
//!
//! ## Layout
//! - `credentials`: the credentials file ([`Credentials`], [`KeyEntry`]).
//! - `header`: parsing the `Authorization` header ([`SigV4Header`]).
//! - `signature`: the canonical request and the signature over it ([`compute_signature`]).
//! - `verify`: identifying the caller ([`authenticate`], [`Verifier`]): region, scope,
//!   signed headers, clock skew, the signature compared.

mod credentials;
mod header;
mod signature;
mod verify;

pub use credentials::{Credentials, KeyEntry};
pub use header::{SigV4Header, parse_authorization};
pub use signature::compute_signature;
pub use verify::{Caller, ScopeService, Verifier, authenticate, is_valid_region};

/// The region used when a request carries no credential scope at all.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Largest clock difference accepted, in seconds.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;
