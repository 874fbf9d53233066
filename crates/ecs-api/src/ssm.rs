//! The SSM activation operations (`ssm`): AWS's JSON 1.1 protocol with
//! `X-Amz-Target: AmazonSSM.<Operation>`, PascalCase members ([`model::wire_ssm`],
//! hand-written for these operations), SigV4 service name `ssm`. Only what ECS Anywhere
//! needs is served: CreateActivation, DescribeActivations, DeleteActivation; any other
//! SSM operation is an `UnknownOperationException`.
//!
//! ## Design
//! As Cloud Map's: [`dispatch`] sends the operation ([`SsmOperation`], named by the
//! server) in one `match` to its pure function in `controlplane::ops::anywhere`, a read
//! on the published state or a write through the single writer. Errors are
//! [`SsmError`](controlplane::ops::anywhere::SsmError)s (SSM's own codes:
//! `InvalidActivation`, `InvalidFilter`, `ValidationException`, …) carried by
//! [`ApiError::Ssm`](crate::ApiError::Ssm); a body that is not JSON is a
//! `SerializationException`, a member of the wrong type or a missing required member a
//! `ValidationException`.

use controlplane::ControlPlane;
use controlplane::ops::anywhere::{self, SsmError};
use model::wire::Required;
use model::wire_ssm::SsmOperation;
use serde::de::DeserializeOwned;

use crate::dispatch::{Call, ParseBody, encode, null_member, parse_as, write_json};
use crate::error::ApiError;

pub use model::wire_ssm::TARGET_PREFIX;

/// A body that is not a JSON object is a `SerializationException`; a member of the wrong
/// type, or a required member that is absent, a `ValidationException` naming it.
impl ParseBody for SsmError {
    fn parse_body<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
        parse_as(body, SsmError::Validation, null_member)
    }
}

/// Runs one SSM operation (the server names it from the part of `X-Amz-Target` after
/// `AmazonSSM.`) and returns the JSON response body.
pub async fn dispatch(
    cp: &ControlPlane,
    call: &Call,
    op: SsmOperation,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match op {
        SsmOperation::CreateActivation => {
            write_json(cp, call, body, anywhere::create_activation).await
        }
        SsmOperation::DescribeActivations => {
            let req = SsmError::parse_body(body)?;
            encode(&cp.read(|s| anywhere::describe_activations(s, &call.scope, call.now, req))?)
        }
        SsmOperation::DeleteActivation => {
            write_json(cp, call, body, anywhere::delete_activation).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testing::rejected;
    use model::wire_ssm::{CreateActivationRequest, DeleteActivationRequest};

    #[test]
    fn wrong_types_and_missing_members_are_validation_errors() {
        let body = br#"{"IamRole":"r","RegistrationLimit":"x"}"#;
        let m = rejected(
            SsmError::parse_body::<CreateActivationRequest>(body),
            "ValidationException",
        );
        assert!(m.contains("RegistrationLimit"), "{m}");
        let m = rejected(
            SsmError::parse_body::<DeleteActivationRequest>(b"{}"),
            "ValidationException",
        );
        assert!(m.contains("ActivationId"), "{m}");
        rejected(
            SsmError::parse_body::<CreateActivationRequest>(b"[1]"),
            "SerializationException",
        );
    }
}
