//! The HTTP server: `POST /` (every AWS API flotilla speaks, routed by the SigV4
//! credential scope's service ([`AwsService`]): ECS with the agent protocol
//! `FlotillaAgentV1.*` and flotilla's own `FlotillaV1.*`, ELBv2 ([`crate::elbv2`]),
//! Cloud Map ([`crate::servicediscovery`]), SSM's activations ([`crate::ssm`], with the
//! external nodes of [`crate::anywhere`]), CloudWatch in JSON 1.0
//! ([`crate::cloudwatch`])), `POST /service/{prefix}/operation/{operation}` (Smithy RPC
//! v2 CBOR: CloudWatch), `GET /healthz`, `POST /admin/reset`.
//!
//! `POST /admin/reset` (served only with [`ApiConfig::allow_reset`]) wipes every
//! account's state, so when credentials are configured it needs a valid SigV4
//! signature from a listed key, like any request (the credential scope may name any
//! service); otherwise it is answered 403 in the AWS error shape. [`serve_with`] (in
//! [`connections`]) runs the accept loop with its timeouts and connection cap.

pub mod connections;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use controlplane::{ControlPlane, Scope};
use model::agent::{AGENT_TARGET_PREFIX, AgentOperation};
use model::logs::{USER_TARGET_PREFIX, UserOperation};
use model::wire::{Operation, TARGET_PREFIX};
use model::wire_sd::OperationName as SdOperation;
use model::wire_ssm::SsmOperation;

use crate::agent::dispatch_agent;
use crate::auth::{Credentials, ScopeService, Verifier};
use crate::dispatch::{Call, dispatch};
use crate::error::{ApiError, bounded_message};
use crate::service::{AwsService, SERVICE_DISCOVERY_TARGET_PREFIX};

pub use connections::{ServeLimits, serve_with};

/// How the API behaves.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Account id in ARNs (unless a credentials entry names its own).
    pub account_id: String,
    /// Whether `POST /admin/reset` is served.
    pub allow_reset: bool,
    /// When set, every request must be signed with one of these keys.
    pub credentials: Option<Credentials>,
}

#[derive(Clone)]
struct App {
    cp: ControlPlane,
    config: Arc<ApiConfig>,
    /// Relays node requests to the server the node's agent polls ([`crate::relay`]).
    relay: reqwest::Client,
}

/// The API's routes over a control plane.
pub fn router(cp: ControlPlane, config: ApiConfig) -> Router {
    Router::new()
        .route("/", post(ecs))
        .route("/service/{prefix}/operation/{operation}", post(rpc_v2_cbor))
        .route("/healthz", get(healthz))
        .route("/admin/reset", post(reset))
        .with_state(App {
            cp,
            config: Arc::new(config),
            relay: crate::relay::client(),
        })
}

/// Serves `router` on `listener` with the default [`ServeLimits`] until `shutdown`
/// resolves, then waits for the requests in progress to be answered.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeLimits::default(), shutdown).await
}

fn now() -> (i64, f64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.as_secs_f64(),
    )
}

/// A request as every AWS route reads it: the parts SigV4 signs, and the body, or the
/// error it could not be read with (over the size limit, or cut off), which each
/// protocol answers in its own error shape rather than with axum's plain-text rejection.
struct Incoming {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, ApiError>,
}

impl<S: Send + Sync> FromRequest<S> for Incoming {
    type Rejection = Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Infallible> {
        let (parts, body) = req.into_parts();
        let (method, uri, headers) = (
            parts.method.clone(),
            parts.uri.clone(),
            parts.headers.clone(),
        );
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|rejection| {
                ApiError::UnreadableBody(rejection.status(), rejection.body_text())
            });
        Ok(Self {
            method,
            uri,
            headers,
            body,
        })
    }
}

impl Incoming {
    /// The body, or the error it could not be read with.
    fn body(&self) -> Result<&[u8], ApiError> {
        self.body.as_deref().map_err(Clone::clone)
    }
}

/// Authenticates a request routed to `service` (its credential scope must name that
/// service) and builds its [`Call`].
fn caller(app: &App, service: AwsService, req: &Incoming) -> Result<Call, ApiError> {
    let Incoming {
        method,
        uri,
        headers,
        ..
    } = req;
    let body = req.body()?;
    let (now_secs, now) = now();
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    // An external node's own key: verified against the keys the control plane issued.
    let (caller, node) = if crate::anywhere::node_key(headers).is_some() {
        let (caller, node) = crate::anywhere::authenticate_node(
            &app.cp,
            (now_secs, now),
            service,
            method,
            uri,
            headers,
            body,
        )?;
        (caller, Some(node))
    } else {
        let verifier = Verifier {
            credentials: app.config.credentials.as_ref(),
            default_account: &app.config.account_id,
            now: now_secs,
            service: ScopeService::Named(service.signing_name()),
        };
        (verifier.authenticate(method, uri, headers, body)?, None)
    };
    Ok(Call {
        scope: Scope::new(caller.account, caller.region),
        now,
        advertised: format!("http://{host}"),
        node,
    })
}

/// What a service routed by `X-Amz-Target` under one `prefix` (Cloud Map, SSM,
/// CloudWatch in JSON 1.0) needs before its dispatch: the body, the target's operation
/// name and the verified caller, failing in that order.
fn targeted<'r>(
    app: &App,
    service: AwsService,
    prefix: &str,
    req: &'r Incoming,
) -> Result<(Call, &'r str, &'r [u8]), ApiError> {
    let body = req.body()?;
    let name = target_operation(&req.headers, prefix).ok_or(ApiError::MissingTarget)?;
    Ok((caller(app, service, req)?, name, body))
}

/// The operation `name` names in a protocol's table (`from_name`), or `UnknownOperation`.
fn named<O>(name: &str, from_name: fn(&str) -> Option<O>) -> Result<O, ApiError> {
    from_name(name).ok_or_else(|| ApiError::UnknownOperation(name.to_owned()))
}

/// The target's operation name after `prefix.`, or `None`.
fn target_operation<'a>(headers: &'a HeaderMap, prefix: &str) -> Option<&'a str> {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())?
        .split_once('.')
        .filter(|(p, name)| *p == prefix && !name.is_empty())
        .map(|(_, name)| name)
}

/// The ECS API (JSON 1.1) with flotilla's agent and user targets; `body` is `req`'s, read.
async fn handle(app: &App, req: &Incoming, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let target = req
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::MissingTarget)?;
    let (prefix, name) = target
        .split_once('.')
        .filter(|(_, name)| !name.is_empty())
        .ok_or(ApiError::MissingTarget)?;
    if prefix != TARGET_PREFIX && prefix != AGENT_TARGET_PREFIX && prefix != USER_TARGET_PREFIX {
        return Err(ApiError::MissingTarget);
    }
    // ECS Anywhere's bootstrap: the activation in the body authenticates it.
    if prefix == AGENT_TARGET_PREFIX && name == crate::anywhere::BOOTSTRAP_OPERATION {
        let region = crate::anywhere::unverified_region(&req.headers)?;
        return crate::anywhere::register_external_instance(
            &app.cp,
            &region,
            &app.config.account_id,
            body,
        )
        .await;
    }
    let call = caller(app, AwsService::Ecs, req)?;
    // An external node's key serves the agent's operations only, and its registration
    // is an external instance's; no other key may register one.
    let rewritten;
    let body = match &call.node {
        Some(node) => {
            crate::anywhere::check_node_operation(node, prefix, name)?;
            if prefix == TARGET_PREFIX && name == "RegisterContainerInstance" {
                rewritten = crate::anywhere::node_registration(node, body)?;
                &rewritten[..]
            } else {
                body
            }
        }
        None => {
            if prefix == TARGET_PREFIX && name == "RegisterContainerInstance" {
                crate::anywhere::refuse_external_claim(body)?;
            }
            body
        }
    };
    if prefix == AGENT_TARGET_PREFIX {
        let op = named(name, AgentOperation::from_name)?;
        return dispatch_agent(&app.cp, &call, op, body).await;
    }
    if prefix == USER_TARGET_PREFIX {
        let op = named(name, UserOperation::from_name)?;
        return crate::logs::dispatch_user(&app.cp, &call, op, body).await;
    }
    let op = named(name, Operation::from_name)?;
    tracing::debug!(operation = op.name(), region = %call.scope.region, "request");
    dispatch(&app.cp, &call, op, body).await
}

/// Cloud Map (JSON 1.1, `Route53AutoNaming_v20170314.*`).
async fn handle_service_discovery(app: &App, req: &Incoming) -> Result<Vec<u8>, ApiError> {
    let service = AwsService::ServiceDiscovery;
    let (call, name, body) = targeted(app, service, SERVICE_DISCOVERY_TARGET_PREFIX, req)?;
    let op = named(name, SdOperation::from_name)?;
    tracing::debug!(operation = op.name(), region = %call.scope.region, "servicediscovery request");
    crate::servicediscovery::dispatch(&app.cp, &call, op, body).await
}

/// SSM's activation operations (JSON 1.1, `AmazonSSM.*`), for ECS Anywhere.
async fn handle_ssm(app: &App, req: &Incoming) -> Result<Vec<u8>, ApiError> {
    let (call, name, body) = targeted(app, AwsService::Ssm, crate::ssm::TARGET_PREFIX, req)?;
    let op = named(name, SsmOperation::from_name)?;
    tracing::debug!(operation = op.name(), region = %call.scope.region, "ssm request");
    crate::ssm::dispatch(&app.cp, &call, op, body).await
}

/// ACM's certificate operations (JSON 1.1, `CertificateManager.*`), for HTTPS listeners.
async fn handle_acm(app: &App, req: &Incoming) -> Result<Vec<u8>, ApiError> {
    let (call, name, body) = targeted(app, AwsService::Acm, crate::acm::TARGET_PREFIX, req)?;
    let op = named(name, model::wire_acm::AcmOperation::from_name)?;
    tracing::debug!(operation = op.name(), region = %call.scope.region, "acm request");
    crate::acm::dispatch(&app.cp, &call, op, body).await
}

/// CloudWatch in AWS JSON 1.0 (`GraniteServiceVersion20100801.*`), what the AWS CLI
/// and boto3 speak to it.
async fn handle_cloudwatch(app: &App, req: &Incoming) -> Result<Vec<u8>, ApiError> {
    let prefix = crate::cloudwatch::TARGET_PREFIX;
    let (call, name, body) = targeted(app, AwsService::CloudWatch, prefix, req)?;
    let protocol = crate::cloudwatch::Protocol::Json;
    crate::cloudwatch::dispatch(&app.cp, &call, protocol, name, body).await
}

/// A JSON 1.1 answer (ECS, Cloud Map, SSM): the body, or the error in `__type` shape.
fn json_answer(result: Result<Vec<u8>, ApiError>) -> Response {
    match result {
        Ok(json) => (
            StatusCode::OK,
            [(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.1"),
            )],
            json,
        )
            .into_response(),
        Err(e) => {
            if e.status_and_code().0.is_server_error() {
                let message = e.to_string();
                tracing::error!(error = %bounded_message(&message), "request failed");
            }
            e.into_response()
        }
    }
}

/// `POST /`: every AWS API, routed by the credential scope's service in one `match`
/// ([`AwsService::of_request`]); each answers in its own protocol's shape.
async fn ecs(State(app): State<App>, req: Incoming) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut resp = match AwsService::of_request(&req.headers) {
        Ok(AwsService::Ecs) => match req.body() {
            Ok(body) => match handle(&app, &req, body).await {
                Err(ApiError::Relay { peer, here }) if !crate::relay::was_relayed(&req.headers) => {
                    match crate::relay::relay(&app.relay, &peer, &req.headers, body).await {
                        Some(answer) => answer,
                        None => json_answer(Err(*here)),
                    }
                }
                result => json_answer(result),
            },
            Err(e) => json_answer(Err(e)),
        },
        Ok(AwsService::ElasticLoadBalancing) => {
            let call = req
                .body()
                .and_then(|body| Ok((caller(&app, AwsService::ElasticLoadBalancing, &req)?, body)));
            crate::elbv2::handle(&app.cp, call, &request_id).await
        }
        Ok(AwsService::ServiceDiscovery) => json_answer(handle_service_discovery(&app, &req).await),
        Ok(AwsService::Ssm) => json_answer(handle_ssm(&app, &req).await),
        Ok(AwsService::Acm) => json_answer(handle_acm(&app, &req).await),
        Ok(AwsService::CloudWatch) => {
            crate::cloudwatch::Protocol::Json.answer(handle_cloudwatch(&app, &req).await)
        }
        Err(e) => json_answer(Err(e)),
    };
    with_request_id(&mut resp, &request_id);
    resp
}

/// `POST /service/{prefix}/operation/{operation}`: Smithy RPC v2 CBOR, the protocol
/// clients speak to CloudWatch (the only such service flotilla serves: another prefix
/// is an unknown operation). Every answer, errors included, is CBOR.
async fn rpc_v2_cbor(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Incoming,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = async {
        let body = req.body()?;
        let Ok(Path((prefix, operation))) = path else {
            return Err(ApiError::MissingTarget);
        };
        if prefix != crate::cloudwatch::TARGET_PREFIX {
            return Err(ApiError::UnknownOperation(format!("{prefix}.{operation}")));
        }
        let call = caller(&app, AwsService::CloudWatch, &req)?;
        let protocol = crate::cloudwatch::Protocol::Cbor;
        crate::cloudwatch::dispatch(&app.cp, &call, protocol, &operation, body).await
    }
    .await;
    let mut resp = crate::cloudwatch::cbor::answer(result);
    with_request_id(&mut resp, &request_id);
    resp
}

fn with_request_id(resp: &mut Response, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
}

async fn reset(State(app): State<App>, req: Incoming) -> Response {
    if !app.config.allow_reset {
        return (
            StatusCode::NOT_FOUND,
            "not found (start the server with --allow-reset to enable /admin/reset)",
        )
            .into_response();
    }
    if app.config.credentials.is_some() {
        let request_id = uuid::Uuid::new_v4().to_string();
        let body = match req.body() {
            Ok(body) => body,
            Err(e) => {
                let mut resp = e.into_response();
                with_request_id(&mut resp, &request_id);
                return resp;
            }
        };
        let verifier = Verifier {
            credentials: app.config.credentials.as_ref(),
            default_account: &app.config.account_id,
            now: now().0,
            service: ScopeService::Any,
        };
        if let Err(e) = verifier.authenticate(&req.method, &req.uri, &req.headers, body) {
            let message = e.to_string();
            tracing::warn!(error = %bounded_message(&message), "POST /admin/reset refused");
            let mut resp = e.into_response();
            *resp.status_mut() = StatusCode::FORBIDDEN;
            with_request_id(&mut resp, &request_id);
            return resp;
        }
    }
    tracing::info!("POST /admin/reset: wiping all state");
    match app.cp.reset().await {
        Ok(()) => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok"}"#,
        )
            .into_response(),
        Err(e) => ApiError::Ecs(e).into_response(),
    }
}

/// `GET /healthz`: `ok` while the control plane can write; 503 with the reason while its
/// state store cannot (a full disk, say) or its writer has stopped.
///
/// With several servers on one store the body also says this server's role: `ok: leader`
/// (its controllers run) or `ok: follower of NAME`.
async fn healthz(State(app): State<App>) -> Response {
    match app.cp.store_health().await {
        Ok(()) => match app.cp.role() {
            None => "ok".into_response(),
            Some(role) => format!("ok: {role}").into_response(),
        },
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {reason}\n"),
        )
            .into_response(),
    }
}
