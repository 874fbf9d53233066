//! The Cloud Map API (`servicediscovery`): AWS's JSON 1.1 protocol with
//! `X-Amz-Target: Route53AutoNaming_v20170314.<Operation>`, PascalCase members
//! ([`model::wire_sd`], generated from botocore's model), SigV4 service name
//! `servicediscovery`.
//!
//! ## Design
//! The same shape as the ECS API: [`dispatch`] sends the operation
//! ([`OperationName`](model::wire_sd::OperationName), named by the server) in one `match`
//! to its pure function in `controlplane::ops::servicediscovery`, run as a read on the
//! published state or as a write through the single writer. Errors are
//! [`SdError`](controlplane::ops::servicediscovery::SdError)s (Cloud Map's own codes:
//! `NamespaceNotFound`, `ResourceInUse`, `InvalidInput`, …) carried by
//! [`ApiError::Discovery`](crate::ApiError::Discovery); a body that is not JSON is a
//! `SerializationException`, a member of the wrong type or a missing required member an
//! `InvalidInput`.
//!
//! ## DiscoverInstances and the `data-` host prefix
//! botocore's model gives DiscoverInstances (and DiscoverInstancesRevision) the endpoint
//! host prefix `data-`: against AWS the call goes to `data-servicediscovery.<region>…`.
//! botocore (1.43) prepends it to a custom endpoint too, even an IP address:
//! `--endpoint-url http://127.0.0.1:8080` sends DiscoverInstances to
//! `http://data-127.0.0.1:8080/`, which does not resolve. Turn the prefix off in the
//! client: `AWS_DISABLE_HOST_PREFIX_INJECTION=true` (or `disable_host_prefix_injection =
//! true` in the profile) for the CLI and boto3, `Config(inject_host_prefix=False)` in
//! boto3 code; or give the server a host name whose `data-` twin resolves to it too. The
//! server serves the call whatever the `Host`.

pub mod dispatch;

pub use dispatch::dispatch;
pub use model::wire_sd::TARGET_PREFIX;
