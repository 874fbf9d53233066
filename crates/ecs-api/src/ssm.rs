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

use controlplane::ops::anywhere::{self, SsmError, SsmWritten};
use controlplane::{ControlPlane, Ctx, State};
use model::wire::Required;
use model::wire_ssm::SsmOperation;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dispatch::{Call, encode, parse_as, write_own_errors};
use crate::error::ApiError;

pub use model::wire_ssm::TARGET_PREFIX;

/// Parses a request body into `T`: a body that is not a JSON object is a
/// `SerializationException`; a member of the wrong type, or a required member that is
/// absent, a `ValidationException` naming it.
pub fn parse<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
    parse_as(body, SsmError::Validation, |field| {
        format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        )
    })
}

async fn written<Req, Resp>(
    cp: &ControlPlane,
    call: &Call,
    body: &[u8],
    op: fn(&State, &mut Ctx, Req) -> SsmWritten<Resp>,
) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned + Required + Clone + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let req: Req = parse(body)?;
    encode(&write_own_errors(cp, call.scope.clone(), req, op).await?)
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
            written(cp, call, body, anywhere::create_activation).await
        }
        SsmOperation::DescribeActivations => {
            let req = parse(body)?;
            encode(&cp.read(|s| anywhere::describe_activations(s, &call.scope, call.now, req))?)
        }
        SsmOperation::DeleteActivation => {
            written(cp, call, body, anywhere::delete_activation).await
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
            parse::<CreateActivationRequest>(body),
            "ValidationException",
        );
        assert!(m.contains("RegistrationLimit"), "{m}");
        let m = rejected(
            parse::<DeleteActivationRequest>(b"{}"),
            "ValidationException",
        );
        assert!(m.contains("ActivationId"), "{m}");
        rejected(
            parse::<CreateActivationRequest>(b"[1]"),
            "SerializationException",
        );
    }
}
