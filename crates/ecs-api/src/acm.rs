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

use controlplane::ControlPlane;
use controlplane::ops::acm::{self, AcmError};
use model::wire::Required;
use model::wire_acm::AcmOperation;
use serde::de::DeserializeOwned;

use crate::dispatch::{Call, ParseBody, encode, null_member, parse_as, write_json};
use crate::error::ApiError;

pub use model::wire_acm::TARGET_PREFIX;

/// A body that is not a JSON object is a `SerializationException`; a member of the wrong
/// type, or a required member that is absent, a `ValidationException` naming it.
impl ParseBody for AcmError {
    fn parse_body<T: DeserializeOwned + Required>(body: &[u8]) -> Result<T, ApiError> {
        parse_as(body, AcmError::Validation, null_member)
    }
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
        AcmOperation::ImportCertificate => {
            write_json(cp, call, body, acm::import_certificate).await
        }
        AcmOperation::DescribeCertificate => {
            let req = AcmError::parse_body(body)?;
            encode(&cp.read(|s| acm::describe_certificate(s, scope, call.now, req))?)
        }
        AcmOperation::ListCertificates => {
            let req = AcmError::parse_body(body)?;
            encode(&cp.read(|s| acm::list_certificates(s, scope, call.now, req))?)
        }
        AcmOperation::GetCertificate => {
            let req = AcmError::parse_body(body)?;
            encode(&cp.read(|s| acm::get_certificate(s, scope, req))?)
        }
        AcmOperation::ListTagsForCertificate => {
            let req = AcmError::parse_body(body)?;
            encode(&cp.read(|s| acm::list_tags_for_certificate(s, scope, req))?)
        }
        AcmOperation::DeleteCertificate => {
            write_json(cp, call, body, acm::delete_certificate).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testing::rejected;
    use model::wire_acm::{
        CertificateArnRequest, ImportCertificateRequest, ListCertificatesRequest,
    };

    #[test]
    fn missing_members_are_validation_errors() {
        let m = rejected(
            AcmError::parse_body::<ImportCertificateRequest>(br#"{"Certificate":"eA=="}"#),
            "ValidationException",
        );
        assert!(m.contains("PrivateKey"), "{m}");
        rejected(
            AcmError::parse_body::<CertificateArnRequest>(b"{}"),
            "ValidationException",
        );
        rejected(
            AcmError::parse_body::<CertificateArnRequest>(b"[1]"),
            "SerializationException",
        );
    }

    #[test]
    fn an_unknown_status_filter_is_a_validation_error() {
        let m = rejected(
            AcmError::parse_body::<ListCertificatesRequest>(
                br#"{"CertificateStatuses":["ISSUED","NOPE"]}"#,
            ),
            "ValidationException",
        );
        assert!(m.contains("CertificateStatuses"), "{m}");
        let ok: ListCertificatesRequest =
            AcmError::parse_body(br#"{"CertificateStatuses":["EXPIRED"]}"#).unwrap();
        assert_eq!(
            ok.certificate_statuses,
            Some(vec![model::wire_acm::CertificateStatus::Expired])
        );
    }
}
