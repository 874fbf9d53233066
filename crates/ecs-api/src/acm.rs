//! The ACM certificate operations (`acm`): AWS's JSON 1.1 protocol with
//! `X-Amz-Target: CertificateManager.<Operation>`, PascalCase members ([`model::wire_acm`],
//! hand-written for these operations), SigV4 service name `acm`. Only what HTTPS
//! listeners need is served: ImportCertificate, DescribeCertificate, ListCertificates,
//! GetCertificate, DeleteCertificate, ListTagsForCertificate; any other ACM operation is
//! an `UnknownOperationException`.
//!
//! ## Design
//! As SSM's: [`dispatch`] sends the operation ([`AcmOperation`], named by the server) in
//! one `match` to its pure function in `controlplane::ops::acm`, a read on the published
//! state or a write through the single writer. Errors are
//! [`AcmError`](controlplane::ops::acm::AcmError)s (ACM's own codes) carried by
//! [`ApiError::Acm`](crate::ApiError::Acm); a body that is not JSON is a
//! `SerializationException`, a member of the wrong type or a missing required member a
//! `ValidationException`.

use controlplane::ops::acm::{self, AcmError, AcmWritten};
use controlplane::{ControlPlane, Ctx, State};
use model::wire::Required;
use model::wire_acm::AcmOperation;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dispatch::{Call, encode, parse_as, write_own_errors};
use crate::error::ApiError;

pub use model::wire_acm::TARGET_PREFIX;

/// Parses a request body into `T`: a body that is not a JSON object is a
/// `SerializationException`; a member of the wrong type, or a required member that is
/// absent, a `ValidationException` naming it.
pub fn parse<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
    parse_as(body, AcmError::Validation, |field| {
        format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        )
    })
}

async fn written<Req, Resp>(
    cp: &ControlPlane,
    call: &Call,
    body: &[u8],
    op: fn(&State, &mut Ctx, Req) -> AcmWritten<Resp>,
) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned + Required + Clone + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let req: Req = parse(body)?;
    encode(&write_own_errors(cp, call.scope.clone(), req, op).await?)
}

/// Runs one ACM operation (the server names it from the part of `X-Amz-Target` after
/// `CertificateManager.`) and returns the JSON response body.
pub async fn dispatch(
    cp: &ControlPlane,
    call: &Call,
    op: AcmOperation,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let scope = &call.scope;
    match op {
        AcmOperation::ImportCertificate => written(cp, call, body, acm::import_certificate).await,
        AcmOperation::DescribeCertificate => {
            let req = parse(body)?;
            encode(&cp.read(|s| acm::describe_certificate(s, scope, call.now, req))?)
        }
        AcmOperation::ListCertificates => {
            let req = parse(body)?;
            encode(&cp.read(|s| acm::list_certificates(s, scope, call.now, req))?)
        }
        AcmOperation::GetCertificate => {
            let req = parse(body)?;
            encode(&cp.read(|s| acm::get_certificate(s, scope, req))?)
        }
        AcmOperation::ListTagsForCertificate => {
            let req = parse(body)?;
            encode(&cp.read(|s| acm::list_tags_for_certificate(s, scope, req))?)
        }
        AcmOperation::DeleteCertificate => written(cp, call, body, acm::delete_certificate).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testing::rejected;
    use model::wire_acm::{CertificateArnRequest, ImportCertificateRequest};

    #[test]
    fn missing_members_are_validation_errors() {
        let m = rejected(
            parse::<ImportCertificateRequest>(br#"{"Certificate":"eA=="}"#),
            "ValidationException",
        );
        assert!(m.contains("PrivateKey"), "{m}");
        rejected(parse::<CertificateArnRequest>(b"{}"), "ValidationException");
        rejected(
            parse::<CertificateArnRequest>(b"[1]"),
            "SerializationException",
        );
    }
}
