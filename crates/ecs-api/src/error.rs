//! [`ApiError`]: everything that can go wrong between the socket and the control
//! plane, and how each is shown on the wire.
//!
//! Every `message` sent is at most [`MAX_MESSAGE_BYTES`] long ([`bounded_message`]): a
//! message that quotes a megabyte of input does not send it back. Messages built here
//! quote input with [`quote`], which keeps a short prefix.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use controlplane::EcsError;
use controlplane::ops::acm::AcmError;
use controlplane::ops::anywhere::SsmError;
use controlplane::ops::cloudwatch::CwError;
use controlplane::ops::servicediscovery::SdError;

/// A request failed. Each variant maps to one HTTP status and one `__type`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The operation itself failed (validation, not found, …).
    #[error(transparent)]
    Ecs(#[from] EcsError),
    /// A Cloud Map (`servicediscovery`) operation failed; its own error codes.
    #[error(transparent)]
    Discovery(#[from] SdError),
    /// An SSM activation operation (or an external node's registration) failed; SSM's
    /// own error codes.
    #[error(transparent)]
    Ssm(#[from] SsmError),
    /// An ACM operation failed; ACM's own error codes.
    #[error(transparent)]
    Acm(#[from] AcmError),
    /// A CloudWatch operation failed; CloudWatch's own error codes (answered in CBOR by
    /// [`crate::cloudwatch`]).
    #[error(transparent)]
    CloudWatch(#[from] CwError),
    /// The caller is authenticated but may not do this: an external node's credentials
    /// used for anything but the agent's operations, or in another region.
    #[error("{0}")]
    AccessDenied(String),
    /// No `X-Amz-Target` header, or one without the ECS prefix.
    #[error(
        "Missing or invalid X-Amz-Target header: expected AmazonEC2ContainerServiceV20141113.<Operation>."
    )]
    MissingTarget,
    /// The target names no ECS operation.
    #[error("Unknown operation {}.", quote(.0))]
    UnknownOperation(String),
    /// The SigV4 credential scope names a service flotilla does not serve (answered as
    /// AWS answers a scope for the wrong service: `InvalidSignatureException`).
    #[error(
        "Credential should be scoped to correct service: 'ecs', 'elasticloadbalancing', 'servicediscovery', 'ssm', 'acm' or 'monitoring', not {}.",
        quote(.0)
    )]
    UnknownService(String),
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
    /// The request needs a node whose agent polls another server (`peer`, `host:port`):
    /// the request is relayed there whole; `here` is the answer when it cannot be (the
    /// request was relayed already, or the peer does not answer).
    #[error("{here}")]
    Relay {
        /// The server the agent polls.
        peer: String,
        /// This server's own answer.
        here: Box<ApiError>,
    },
}

impl ApiError {
    /// HTTP status and `__type` of this error. One exhaustive match, no fallback.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Ecs(e) if e.is_server_fault() => {
                (StatusCode::INTERNAL_SERVER_ERROR, e.code())
            }
            ApiError::Ecs(e) => (StatusCode::BAD_REQUEST, e.code()),
            ApiError::Discovery(e) if e.is_server_fault() => {
                (StatusCode::INTERNAL_SERVER_ERROR, e.code())
            }
            ApiError::Discovery(e) => (StatusCode::BAD_REQUEST, e.code()),
            ApiError::Ssm(e) if e.is_server_fault() => {
                (StatusCode::INTERNAL_SERVER_ERROR, e.code())
            }
            ApiError::Ssm(e) => (StatusCode::BAD_REQUEST, e.code()),
            ApiError::Acm(e) if e.is_server_fault() => {
                (StatusCode::INTERNAL_SERVER_ERROR, e.code())
            }
            ApiError::Acm(e) => (StatusCode::BAD_REQUEST, e.code()),
            ApiError::CloudWatch(e) => (
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
                e.code(),
            ),
            ApiError::AccessDenied(_) => (StatusCode::BAD_REQUEST, "AccessDeniedException"),
            ApiError::MissingTarget | ApiError::UnknownOperation(_) => {
                (StatusCode::BAD_REQUEST, "UnknownOperationException")
            }
            ApiError::UnknownService(_) => (StatusCode::BAD_REQUEST, "InvalidSignatureException"),
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
            ApiError::Relay { here, .. } => here.status_and_code(),
        }
    }
}

/// Longest `message` an error answer carries, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// How many characters of a quoted input value a message keeps.
pub const MAX_QUOTED_CHARS: usize = 64;
const ELLIPSIS: &str = "…";

/// `s` quoted (as `{:?}` does) for an error message: at most its first
/// [`MAX_QUOTED_CHARS`] characters, ending in `…` inside the quotes when it was longer.
pub fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => {
            let quoted = format!("{:?}", &s[..cut]);
            format!("{}{ELLIPSIS}\"", &quoted[..quoted.len() - 1])
        }
    }
}

/// `message` as it goes on the wire: unchanged when it is at most
/// [`MAX_MESSAGE_BYTES`] long. A longer one (some message quoted a large input) first
/// has every quoted run (`"…"`, `` `…` ``) cut to [`MAX_QUOTED_CHARS`] characters, so
/// that what follows the quote survives, and is then cut to [`MAX_MESSAGE_BYTES`] on a
/// character boundary, ending in `…`.
pub fn bounded_message(message: &str) -> Cow<'_, str> {
    if message.len() <= MAX_MESSAGE_BYTES {
        return Cow::Borrowed(message);
    }
    let shortened = shorten_quotes(message);
    if shortened.len() <= MAX_MESSAGE_BYTES {
        return Cow::Owned(shortened);
    }
    let mut cut = MAX_MESSAGE_BYTES - ELLIPSIS.len();
    while !shortened.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}{ELLIPSIS}", &shortened[..cut]))
}

/// Cuts the content of every quoted run longer than [`MAX_QUOTED_CHARS`] characters.
/// A `"` run honours backslash escapes (as `{:?}` writes them); a run left open runs
/// to the end of the message.
fn shorten_quotes(message: &str) -> String {
    let mut out = String::with_capacity(MAX_MESSAGE_BYTES);
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let mut escaped = false;
        let mut closed = false;
        for (kept, d) in chars.by_ref().enumerate() {
            if d == c && !escaped {
                closed = true;
                break;
            }
            escaped = c == '"' && d == '\\' && !escaped;
            if kept < MAX_QUOTED_CHARS {
                out.push(d);
            } else if kept == MAX_QUOTED_CHARS {
                out.push_str(ELLIPSIS);
            }
        }
        if closed {
            out.push(c);
        }
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = self.to_string();
        let body = serde_json::json!({ "__type": code, "message": bounded_message(&message) });
        error_response(status, code, "application/x-amz-json-1.1", body.to_string())
    }
}

/// An error answer in any protocol: `body` (of `content_type`) with `status`, and the
/// wire `code` in `x-amzn-errortype` too, as AWS sends it.
pub fn error_response(
    status: StatusCode,
    code: &'static str,
    content_type: &'static str,
    body: String,
) -> Response {
    let mut resp = (status, body).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    headers.insert("x-amzn-errortype", HeaderValue::from_static(code));
    resp
}

/// Assertions on how errors are answered, for the protocols' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Asserts that `result` failed with the wire code `code`; returns the error's
    /// message.
    #[track_caller]
    pub(crate) fn rejected<T: std::fmt::Debug>(result: Result<T, ApiError>, code: &str) -> String {
        let e = result.unwrap_err();
        assert_eq!(e.status_and_code().1, code, "{e}");
        e.to_string()
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

    #[test]
    fn cloud_map_and_ssm_errors_keep_their_own_codes() {
        for (e, status, code) in [
            (
                ApiError::from(SdError::ResourceInUse("x".into())),
                StatusCode::BAD_REQUEST,
                "ResourceInUse",
            ),
            (
                SdError::Internal("disk".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
            ),
            (
                SsmError::InvalidActivation("x".into()).into(),
                StatusCode::BAD_REQUEST,
                "InvalidActivation",
            ),
            (
                SsmError::Internal("disk".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
            ),
        ] {
            assert_eq!(e.status_and_code(), (status, code), "{e}");
        }
    }

    #[test]
    fn short_messages_are_unchanged() {
        let m = r#"clusterName "a b" is invalid: up to 255 letters."#;
        assert_eq!(bounded_message(m), m);
        assert!(matches!(bounded_message(m), Cow::Borrowed(_)));
    }

    #[test]
    fn long_quoted_input_keeps_a_prefix_and_the_rest_of_the_message() {
        let huge = "A".repeat(1 << 20);
        let m = format!("Invalid value for count: invalid type: string {huge:?}, expected i32");
        let b = bounded_message(&m);
        assert!(b.len() <= MAX_MESSAGE_BYTES, "{}", b.len());
        assert_eq!(
            b,
            format!(
                "Invalid value for count: invalid type: string \"{}…\", expected i32",
                "A".repeat(MAX_QUOTED_CHARS)
            )
        );
        let m = format!("unknown variant `{huge}`, expected one of `EC2`, `FARGATE`");
        let b = bounded_message(&m);
        assert!(b.ends_with("…`, expected one of `EC2`, `FARGATE`"), "{b}");
        // Escaped quotes inside a Debug-quoted run do not end it.
        let m = format!("name {:?} is invalid", format!("x\"{huge}"));
        let b = bounded_message(&m);
        assert!(b.ends_with("…\" is invalid"), "{b}");
        assert!(b.len() < 200, "{b}");
    }

    #[test]
    fn long_unquoted_messages_are_cut_on_a_char_boundary() {
        for filler in ["x", "é", "😀"] {
            let m = filler.repeat(5000);
            let b = bounded_message(&m);
            assert!(b.len() <= MAX_MESSAGE_BYTES && b.len() > MAX_MESSAGE_BYTES - 8);
            assert!(b.ends_with('…'));
        }
        // An unclosed quote runs to the end and is cut too.
        let m = format!("bad \"{}", "y".repeat(5000));
        assert_eq!(
            bounded_message(&m),
            format!("bad \"{}…", "y".repeat(MAX_QUOTED_CHARS))
        );
    }

    #[test]
    fn quote_keeps_a_short_prefix() {
        assert_eq!(quote("abc"), "\"abc\"");
        let q = quote(&"é".repeat(1000));
        assert_eq!(q, format!("\"{}…\"", "é".repeat(MAX_QUOTED_CHARS)));
        let e = ApiError::UnknownOperation("Z".repeat(100_000));
        assert!(e.to_string().len() < 100, "{e}");
    }

    #[tokio::test]
    async fn the_wire_message_is_bounded() {
        let e = ApiError::InvalidParameter("q".repeat(1 << 20));
        let resp = e.into_response();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["__type"], "InvalidParameterException");
        assert!(v["message"].as_str().unwrap().len() <= MAX_MESSAGE_BYTES);
    }
}
