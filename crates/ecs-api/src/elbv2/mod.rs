//! The ELBv2 API (Elastic Load Balancing v2, `elasticloadbalancing`, version
//! 2015-12-01) over the query protocol.
//!
//! ## Background
//! `aws elbv2 …` and boto3's `elbv2` client send `POST /` with a form-encoded body
//! (`Action=CreateLoadBalancer&Version=2015-12-01&Name=web&Tags.member.1.Key=team…`),
//! signed with SigV4 for the service `elasticloadbalancing`, and expect XML answers
//! (`<CreateLoadBalancerResponse xmlns=…><CreateLoadBalancerResult>…`) and XML errors
//! (`<ErrorResponse><Error><Type>Sender</Type><Code>LoadBalancerNotFound</Code>…`).
//! `server.rs` routes such requests here by the credential scope's service
//! ([`crate::service::AwsService`]).
//!
//! ## Design
//! The same shape as the ECS path: [`query`] decodes the body into [`query::Params`];
//! [`dispatch`] names the operation ([`dispatch::ElbOperation`]), parses its input in
//! one `parse_*` per shape, runs the pure operation of `controlplane::ops::elbv2` as a
//! read or a write, and writes the result with [`xml`]. Every failure is an
//! [`xml::ElbFailure`], mapped to status and code in one exhaustive `match`.
//!
//! ## Layout
//! - [`query`]: form decoding, `member.N` lists, nested structures.
//! - [`xml`]: the XML writer (escaping), the answer and error documents.
//! - [`dispatch`]: the operations, their parsers and their XML.
//!
//! ## Current limitations
//! The shapes are written by hand from botocore's model (`elbv2/2015-12-01`), for the
//! operations and members flotilla serves; other operations answer `InvalidAction`.

pub mod dispatch;
pub mod query;
pub mod xml;

use axum::response::Response;
use controlplane::ControlPlane;
use controlplane::ops::elbv2::validation;

use crate::dispatch::Call;
use crate::error::ApiError;
use dispatch::ElbOperation;
use query::Params;
use xml::ElbFailure;

/// The API version this module speaks.
pub const VERSION: &str = "2015-12-01";

async fn run(
    cp: &ControlPlane,
    call: &Call,
    body: &[u8],
) -> Result<(ElbOperation, String), ElbFailure> {
    let params = Params::parse(body);
    let action = params
        .get("Action")
        .ok_or(ApiError::UnknownOperation(String::new()))?;
    let op = ElbOperation::from_name(&action).ok_or(ApiError::UnknownOperation(action))?;
    if let Some(v) = params.get("Version").filter(|v| v != VERSION) {
        return Err(validation(format!(
            "Version '{}' is not supported: {VERSION}",
            controlplane::ops::elbv2::shorten(&v)
        ))
        .into());
    }
    tracing::debug!(operation = op.name(), region = %call.scope.region, "elbv2 request");
    let result = dispatch::dispatch(cp, call, op, &params).await?;
    Ok((op, result))
}

/// Answers one ELBv2 request: `call` is the authenticated caller and the body, or
/// what went wrong before (an unreadable body, a bad signature).
pub async fn handle(
    cp: &ControlPlane,
    call: Result<(Call, &[u8]), ApiError>,
    request_id: &str,
) -> Response {
    let result = match call {
        Ok((call, body)) => run(cp, &call, body).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok((op, result)) => xml::ok_response(xml::response(op.name(), &result, request_id)),
        Err(e) => {
            if e.status_and_code().0.is_server_error() {
                let message = e.to_string();
                tracing::error!(error = %crate::error::bounded_message(&message), "elbv2 request failed");
            }
            e.into_response(request_id)
        }
    }
}
