//! Amazon CloudWatch (`monitoring`), the metric alarms ECS deployments watch, in both
//! protocols botocore's model offers ([`Protocol`]): AWS JSON 1.0 on `POST /`
//! (`X-Amz-Target: GraniteServiceVersion20100801.<Operation>`, what the AWS CLI and boto3
//! 1.43 pick) and Smithy RPC v2 CBOR on
//! `POST /service/GraniteServiceVersion20100801/operation/<Operation>` ([`cbor`], what
//! clients that prefer it, such as newer SDKs, send). SigV4 service name `monitoring`.
//! Served: PutMetricAlarm, DescribeAlarms, DeleteAlarms, SetAlarmState, PutMetricData,
//! ListMetrics, GetMetricStatistics, GetMetricData;
//! CloudWatch's other operations answer `UnsupportedOperation`, a name CloudWatch does
//! not have `UnknownOperationException`.
//!
//! ## Design
//! As SSM's: [`dispatch`] names the operation ([`CwOperation`]) and sends it, in one
//! `match`, to its pure function in `controlplane::ops::cloudwatch`, a read on the
//! published state or a write through the single writer. Errors are
//! [`CwError`](controlplane::ops::cloudwatch::CwError)s carried by
//! [`ApiError::CloudWatch`](crate::ApiError::CloudWatch). CloudWatch is
//! `awsQueryCompatible`: every error answer carries `__type` (the error shape's name)
//! and, for CloudWatch's own errors, `x-amzn-query-error: <Code>;Sender`, the classic
//! code clients report. Every answer of a request routed here, an authentication
//! failure included, is in the request's protocol.

pub mod cbor;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use controlplane::ops::cloudwatch::{self, CwError, CwWritten};
use controlplane::{ControlPlane, Ctx, State};
use model::wire::Required;
use model::wire_cw::{CwOperation, UNSUPPORTED_OPERATIONS};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dispatch::{Call, parse_json, write_own_errors};
use crate::error::{ApiError, bounded_message};

pub use model::wire_cw::TARGET_PREFIX;

/// `Content-Type` of AWS JSON 1.0 answers.
pub const JSON_CT: &str = "application/x-amz-json-1.0";

/// The protocol a request came in, which its answer goes back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AWS JSON 1.0 on `POST /`.
    Json,
    /// Smithy RPC v2 CBOR on `POST /service/…/operation/…`.
    Cbor,
}

impl Protocol {
    fn parse<T: DeserializeOwned + Required>(self, body: &[u8]) -> Result<T, ApiError> {
        match self {
            Protocol::Json => parse_json_body(body),
            Protocol::Cbor => cbor::parse(body),
        }
    }

    fn encode<T: Serialize>(self, resp: &T) -> Result<Vec<u8>, ApiError> {
        match self {
            Protocol::Json => crate::dispatch::encode(resp),
            Protocol::Cbor => cbor::encode(resp),
        }
    }

    /// The answer of an operation without output: an empty object.
    fn empty(self) -> Vec<u8> {
        match self {
            Protocol::Json => b"{}".to_vec(),
            Protocol::Cbor => cbor::EMPTY_MAP.to_vec(),
        }
    }

    /// The HTTP answer in this protocol.
    pub fn answer(self, result: Result<Vec<u8>, ApiError>) -> Response {
        match self {
            Protocol::Json => answer_with(result, JSON_CT, json_error_body),
            Protocol::Cbor => cbor::answer(result),
        }
    }
}

/// Parses a JSON request body into `T` (also the last step of [`cbor::parse`]): a body
/// that is not an object is a `SerializationException`, a member of the wrong type a
/// `ValidationError` naming it, a required member that is absent `MissingParameter`.
pub fn parse_json_body<T: DeserializeOwned + Required>(json: &[u8]) -> Result<T, ApiError> {
    let req: T = parse_json(json).map_err(|e| match e {
        ApiError::InvalidParameter(m) => ApiError::from(CwError::Validation(m)),
        other => other,
    })?;
    if let Some(field) = req.missing_required() {
        return Err(
            CwError::MissingParameter(format!("The parameter {field} is required.")).into(),
        );
    }
    Ok(req)
}

fn json_error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({ "__type": code, "message": message })
        .to_string()
        .into_bytes()
}

/// The HTTP answer: `body` (of `content_type`) or the error (`error_body` of `__type`
/// and the bounded message), with `x-amzn-query-error` for CloudWatch's own errors.
pub fn answer_with(
    result: Result<Vec<u8>, ApiError>,
    content_type: &'static str,
    error_body: fn(&str, &str) -> Vec<u8>,
) -> Response {
    let (status, body, query) = match result {
        Ok(body) => (StatusCode::OK, body, None),
        Err(e) => {
            let (status, code) = e.status_and_code();
            let message = e.to_string();
            if status.is_server_error() {
                tracing::error!(error = %bounded_message(&message), "cloudwatch request failed");
            }
            let query = match &e {
                ApiError::CloudWatch(cw) => Some(format!(
                    "{};{}",
                    cw.query_code(),
                    if cw.is_server_fault() {
                        "Receiver"
                    } else {
                        "Sender"
                    }
                )),
                _ => None,
            };
            (status, error_body(code, &bounded_message(&message)), query)
        }
    };
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    if content_type == cbor::CBOR_CT {
        headers.insert(
            "smithy-protocol",
            HeaderValue::from_static(cbor::SMITHY_PROTOCOL),
        );
    }
    if let Some(q) = query.and_then(|q| HeaderValue::from_str(&q).ok()) {
        headers.insert("x-amzn-query-error", q);
    }
    resp
}

async fn written<Req>(
    cp: &ControlPlane,
    call: &Call,
    protocol: Protocol,
    body: &[u8],
    op: fn(&State, &mut Ctx, Req) -> CwWritten<()>,
) -> Result<Vec<u8>, ApiError>
where
    Req: DeserializeOwned + Required + Clone + Send + 'static,
{
    let req: Req = protocol.parse(body)?;
    write_own_errors(cp, call.scope.clone(), req, op).await?;
    Ok(protocol.empty())
}

/// Runs one CloudWatch operation (`operation`: the target's or the path's last part)
/// and returns the answer body in `protocol`.
pub async fn dispatch(
    cp: &ControlPlane,
    call: &Call,
    protocol: Protocol,
    operation: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let Some(op) = CwOperation::from_name(operation) else {
        if UNSUPPORTED_OPERATIONS.contains(&operation) {
            return Err(CwError::Unsupported(format!(
                "{operation} is not supported by flotilla yet."
            ))
            .into());
        }
        return Err(ApiError::UnknownOperation(operation.to_owned()));
    };
    tracing::debug!(operation = op.name(), region = %call.scope.region, "cloudwatch request");
    let p = protocol;
    match op {
        CwOperation::PutMetricAlarm => {
            written(cp, call, p, body, cloudwatch::put_metric_alarm).await
        }
        CwOperation::DescribeAlarms => {
            let req = p.parse(body)?;
            p.encode(&cp.read(|s| cloudwatch::describe_alarms(s, &call.scope, call.now, req))?)
        }
        CwOperation::DeleteAlarms => written(cp, call, p, body, cloudwatch::delete_alarms).await,
        CwOperation::SetAlarmState => written(cp, call, p, body, cloudwatch::set_alarm_state).await,
        CwOperation::PutMetricData => written(cp, call, p, body, cloudwatch::put_metric_data).await,
        CwOperation::ListMetrics => {
            let req = p.parse(body)?;
            p.encode(&cp.read(|s| cloudwatch::list_metrics(s, &call.scope, call.now, req))?)
        }
        CwOperation::GetMetricStatistics => {
            let req = p.parse(body)?;
            p.encode(
                &cp.read(|s| cloudwatch::get_metric_statistics(s, &call.scope, call.now, req))?,
            )
        }
        CwOperation::GetMetricData => {
            let req = p.parse(body)?;
            p.encode(&cp.read(|s| cloudwatch::get_metric_data(s, &call.scope, call.now, req))?)
        }
    }
}
