//! [`ApiError`]: everything that can go wrong between the socket and the control
//! plane, and how each is shown on the wire.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use controlplane::EcsError;

/// A request failed. Each variant maps to one HTTP status and one `__type`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The operation itself failed (validation, not found, …).
    #[error(transparent)]
    Ecs(#[from] EcsError),
    /// No `X-Amz-Target` header, or one without the ECS prefix.
    #[error(
        "Missing or invalid X-Amz-Target header: expected AmazonEC2ContainerServiceV20141113.<Operation>."
    )]
    MissingTarget,
    /// The target names no ECS operation.
    #[error("Unknown operation {0:?}.")]
    UnknownOperation(String),
    /// The body is not JSON (or not a JSON object).
    #[error("{0}")]
    Serialization(String),
    /// The body is JSON but a member has the wrong type or an unknown enum value.
    #[error("{0}")]
    InvalidParameter(String),
    /// A required member is absent.
    #[error("{0} is required.")]
    MissingParameter(&'static str),
    /// Credentials are configured and the request carries no signature.
    #[error("Missing Authentication Token")]
    MissingAuthentication,
    /// The `Authorization` header is malformed.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The access key id is not in the credentials file.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// The signature does not match, or the request is too old or too new.
    #[error("{0}")]
    InvalidSignature(String),
    /// The body could not be read: larger than the server accepts, or cut off.
    #[error("The request body could not be read: {1}")]
    UnreadableBody(StatusCode, String),
}

impl ApiError {
    /// HTTP status and `__type` of this error. One exhaustive match, no fallback.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Ecs(e) if e.is_server_fault() => {
                (StatusCode::INTERNAL_SERVER_ERROR, e.code())
            }
            ApiError::Ecs(e) => (StatusCode::BAD_REQUEST, e.code()),
            ApiError::MissingTarget | ApiError::UnknownOperation(_) => {
                (StatusCode::BAD_REQUEST, "UnknownOperationException")
            }
            ApiError::Serialization(_) => (StatusCode::BAD_REQUEST, "SerializationException"),
            ApiError::InvalidParameter(_) | ApiError::MissingParameter(_) => {
                (StatusCode::BAD_REQUEST, "InvalidParameterException")
            }
            ApiError::MissingAuthentication => {
                (StatusCode::FORBIDDEN, "MissingAuthenticationTokenException")
            }
            ApiError::IncompleteSignature(_) => {
                (StatusCode::BAD_REQUEST, "IncompleteSignatureException")
            }
            ApiError::UnrecognizedClient => {
                (StatusCode::BAD_REQUEST, "UnrecognizedClientException")
            }
            ApiError::InvalidSignature(_) => (StatusCode::BAD_REQUEST, "InvalidSignatureException"),
            ApiError::UnreadableBody(status, _) if *status == StatusCode::PAYLOAD_TOO_LARGE => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
            ),
            ApiError::UnreadableBody(..) => (StatusCode::BAD_REQUEST, "SerializationException"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({ "__type": code, "message": self.to_string() });
        let mut resp = (status, body.to_string()).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_faults_are_500_and_client_faults_400() {
        let (s, c) = ApiError::Ecs(EcsError::Server("disk".into())).status_and_code();
        assert_eq!(
            (s, c),
            (StatusCode::INTERNAL_SERVER_ERROR, "ServerException")
        );
        let (s, c) = ApiError::Ecs(EcsError::ClusterNotFound).status_and_code();
        assert_eq!(
            (s, c),
            (StatusCode::BAD_REQUEST, "ClusterNotFoundException")
        );
        assert_eq!(
            ApiError::MissingAuthentication.status_and_code().0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ApiError::UnknownOperation("X".into()).status_and_code().1,
            "UnknownOperationException"
        );
        let big = ApiError::UnreadableBody(
            StatusCode::PAYLOAD_TOO_LARGE,
            "length limit exceeded".into(),
        );
        assert_eq!(
            big.status_and_code(),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException"
            )
        );
    }
}
