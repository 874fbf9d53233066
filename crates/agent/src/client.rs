//! The control plane's API as the agent uses it: a few ECS operations and the flotilla
//! agent protocol, JSON over HTTP, every request SigV4-signed (`aws-sigv4`, the AWS SDK's
//! own signer) with the node's credentials, exactly as the AWS CLI signs its requests.
//!
//! A client may know several endpoints (servers sharing one etcd store, any of which
//! answers any call): it sends every call to the current one and, when that one cannot
//! be reached or answers that it is unavailable (502, 503, 504 without an API error),
//! moves on to the next and sends the call again, trying each endpoint once per call.
//! Every call the agent makes may be repeated: state changes and reports carry the
//! state they report, registration re-adopts the same instance, polls only read.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use model::agent::{
    AGENT_TARGET_PREFIX, PollTasksRequest, PollTasksResponse, ReportHealthRequest,
    ReportHealthResponse,
};
use model::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{AgentError, ApiCode};

/// The access key a client signs with.
#[derive(Clone)]
pub struct Credentials {
    /// Access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The key used when none is configured: a server started without `--credentials`
    /// accepts any signature, so local setups need no key at all.
    pub fn local() -> Credentials {
        Credentials {
            access_key_id: "flotilla-local".into(),
            secret_access_key: "flotilla-local".into(),
        }
    }

    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` when both are set, else [`Credentials::local`].
    pub fn from_env() -> Credentials {
        match (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Ok(id), Ok(secret)) if !id.is_empty() => Credentials {
                access_key_id: id,
                secret_access_key: secret,
            },
            _ => Credentials::local(),
        }
    }
}

/// The most endpoints one client may be given.
pub const MAX_ENDPOINTS: usize = 16;

/// The endpoints of an `--endpoint` value: one URL or several separated by commas
/// (servers sharing one store), without trailing slashes. Refused when empty, when
/// one is not an `http://` or `https://` URL, or when there are over [`MAX_ENDPOINTS`].
pub fn parse_endpoints(value: &str) -> Result<Vec<String>, AgentError> {
    let endpoints: Vec<String> = value
        .split(',')
        .map(|e| e.trim().trim_end_matches('/').to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if endpoints.is_empty() {
        return Err(AgentError::Config("--endpoint names no URL".into()));
    }
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(AgentError::Config(format!(
            "--endpoint names {} URLs; at most {MAX_ENDPOINTS}",
            endpoints.len()
        )));
    }
    if let Some(bad) = endpoints
        .iter()
        .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
    {
        return Err(AgentError::Config(format!(
            "--endpoint {bad:?} is not an http:// or https:// URL"
        )));
    }
    Ok(endpoints)
}

/// A client of one control plane (one or several servers), in one region. Its clones
/// share their credentials — [`Client::set_credentials`] (an external node's rotated
/// key) changes them for all — and the endpoint they send to.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Arc<[String]>,
    /// Index into `endpoints` of the one calls go to now.
    current: Arc<AtomicUsize>,
    region: String,
    credentials: std::sync::Arc<std::sync::RwLock<Credentials>>,
}

impl Client {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:8080`, or several such URLs
    /// separated by commas, see [`parse_endpoints`]) acting in `region`, signing with
    /// `credentials`.
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: Credentials,
    ) -> Result<Client, AgentError> {
        let endpoints = parse_endpoints(endpoint)?;
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if endpoints.iter().all(|e| e.starts_with("http://")) {
            // No TLS to verify: do not load the platform's CA certificates, which a
            // minimal container (the updater running as an ECS task) does not have.
            builder = builder.tls_certs_only([]);
        }
        let http = builder.build().map_err(|e| {
            AgentError::ControlPlane(format!(
                "cannot build the HTTP client: {}",
                runtime::error_chain(&e)
            ))
        })?;
        Ok(Client {
            http,
            endpoints: endpoints.into(),
            current: Arc::new(AtomicUsize::new(0)),
            region: region.to_owned(),
            credentials: std::sync::Arc::new(std::sync::RwLock::new(credentials)),
        })
    }

    /// Signs every later request (of this client and its clones) with `credentials`.
    pub fn set_credentials(&self, credentials: Credentials) {
        *self
            .credentials
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = credentials;
    }

    /// The access key id requests are signed with now.
    pub fn access_key_id(&self) -> String {
        self.credentials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .access_key_id
            .clone()
    }

    /// The endpoint calls go to now.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`) for a POST of `body` to
    /// `endpoint` with `headers`, signed now.
    fn signature_headers(
        &self,
        endpoint: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, AgentError> {
        let identity = {
            let c = self
                .credentials
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            aws_credential_types::Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                None,
                None,
                "flotilla",
            )
            .into()
        };
        let bad = |e: &dyn std::fmt::Display| AgentError::ControlPlane(format!("signing: {e}"));
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ecs")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| bad(&e))?
            .into();
        let request = SignableRequest::new(
            "POST",
            endpoint,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| bad(&e))?;
        let (instructions, _) = sign(request, &params).map_err(|e| bad(&e))?.into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// Calls operation `target` (`<prefix>.<Op>`) with `req` and decodes the answer;
    /// API errors come back as [`AgentError::Api`] with the wire code. An endpoint that
    /// cannot be reached or is unavailable hands the call to the next one (see the
    /// module's doc); the last one's failure is returned when none answered.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: &str,
        req: &Req,
    ) -> Result<Resp, AgentError> {
        let body = serde_json::to_vec(req)
            .map_err(|e| AgentError::ControlPlane(format!("{target}: {e}")))?;
        let mut tried = 0;
        loop {
            let index = self.current.load(Ordering::Relaxed);
            let endpoint = &self.endpoints[index % self.endpoints.len()];
            match self.call_once(endpoint, target, &body).await {
                Attempt::Answered(resp) => return resp,
                Attempt::Unavailable(err) => {
                    tried += 1;
                    if tried >= self.endpoints.len() {
                        return Err(err);
                    }
                    // Another call may have moved on already: move only from `index`.
                    let next = (index + 1) % self.endpoints.len();
                    if self
                        .current
                        .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                    {
                        tracing::warn!(
                            "{endpoint} is unavailable ({err}); calling {} instead",
                            self.endpoints[next]
                        );
                    }
                }
            }
        }
    }

    /// One try of a call at `endpoint`.
    async fn call_once<Resp: DeserializeOwned>(
        &self,
        endpoint: &str,
        target: &str,
        body: &[u8],
    ) -> Attempt<Resp> {
        let unavailable = |e: &dyn std::fmt::Display| {
            Attempt::Unavailable(AgentError::ControlPlane(format!("{target}: {e}")))
        };
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let mut request = self.http.post(endpoint);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        match self.signature_headers(endpoint, &headers, body) {
            Ok(signed) => {
                for (k, v) in signed {
                    request = request.header(k, v);
                }
            }
            Err(e) => return Attempt::Answered(Err(e)),
        }
        let resp = match request.body(body.to_vec()).send().await {
            Ok(resp) => resp,
            Err(e) => return unavailable(&e),
        };
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(body) => body,
            Err(e) => return unavailable(&e),
        };
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let Some(code) = v["__type"].as_str() else {
                let err = format!("status {status}");
                if matches!(status.as_u16(), 502..=504) {
                    return unavailable(&err);
                }
                return Attempt::Answered(Err(AgentError::Api {
                    code: ApiCode::from_wire("HTTP error"),
                    message: err,
                }));
            };
            return Attempt::Answered(Err(AgentError::Api {
                code: ApiCode::from_wire(code),
                message: v["message"]
                    .as_str()
                    .map_or_else(|| format!("status {status}"), str::to_owned),
            }));
        }
        Attempt::Answered(
            serde_json::from_slice(&body)
                .map_err(|e| AgentError::ControlPlane(format!("{target}: bad answer: {e}"))),
        )
    }

    fn ecs(op: &str) -> String {
        format!("{}.{op}", wire::TARGET_PREFIX)
    }

    /// RegisterContainerInstance.
    pub async fn register(
        &self,
        req: &wire::RegisterContainerInstanceRequest,
    ) -> Result<wire::ContainerInstance, AgentError> {
        let resp: wire::RegisterContainerInstanceResponse = self
            .call(&Self::ecs("RegisterContainerInstance"), req)
            .await?;
        resp.container_instance.ok_or_else(|| {
            AgentError::ControlPlane("RegisterContainerInstance returned no instance".into())
        })
    }

    /// SubmitTaskStateChange.
    pub async fn submit_task_state_change(
        &self,
        req: &wire::SubmitTaskStateChangeRequest,
    ) -> Result<(), AgentError> {
        let _: wire::SubmitTaskStateChangeResponse =
            self.call(&Self::ecs("SubmitTaskStateChange"), req).await?;
        Ok(())
    }

    /// SubmitContainerStateChange.
    pub async fn submit_container_state_change(
        &self,
        req: &wire::SubmitContainerStateChangeRequest,
    ) -> Result<(), AgentError> {
        let _: wire::SubmitContainerStateChangeResponse = self
            .call(&Self::ecs("SubmitContainerStateChange"), req)
            .await?;
        Ok(())
    }

    /// FlotillaAgentV1.ReportHealth.
    pub async fn report_health(&self, req: &ReportHealthRequest) -> Result<(), AgentError> {
        let _: ReportHealthResponse = self
            .call(&format!("{AGENT_TARGET_PREFIX}.ReportHealth"), req)
            .await?;
        Ok(())
    }

    /// FlotillaAgentV1.ReportNetwork (an `awsvpc` task's address).
    pub async fn report_network(
        &self,
        req: &model::agent::ReportNetworkRequest,
    ) -> Result<(), AgentError> {
        let _: model::agent::ReportNetworkResponse = self
            .call(&format!("{AGENT_TARGET_PREFIX}.ReportNetwork"), req)
            .await?;
        Ok(())
    }

    /// FlotillaAgentV1.PollTasks (long poll; also the heartbeat).
    pub async fn poll_tasks(
        &self,
        req: &PollTasksRequest,
    ) -> Result<PollTasksResponse, AgentError> {
        self.call(&format!("{AGENT_TARGET_PREFIX}.PollTasks"), req)
            .await
    }

    /// FlotillaAgentV1.GetServiceConnectRoutes: the routes of Service Connect namespaces
    /// (see [`crate::service_connect`]).
    pub async fn get_service_connect_routes(
        &self,
        req: &model::agent::GetServiceConnectRoutesRequest,
    ) -> Result<model::agent::GetServiceConnectRoutesResponse, AgentError> {
        self.call(
            &format!("{AGENT_TARGET_PREFIX}.GetServiceConnectRoutes"),
            req,
        )
        .await
    }

    /// FlotillaAgentV1.PutLogs: the answer to a log request (see [`crate::logs`]).
    pub async fn put_logs(&self, req: &model::logs::PutLogsRequest) -> Result<(), AgentError> {
        let _: model::logs::PutLogsResponse = self
            .call(&format!("{AGENT_TARGET_PREFIX}.PutLogs"), req)
            .await?;
        Ok(())
    }

    /// FlotillaAgentV1.PutHostAnswer (the answer to a host API call, see
    /// [`crate::host_calls`]).
    pub async fn put_host_answer(
        &self,
        req: &model::host::PutHostAnswerRequest,
    ) -> Result<(), AgentError> {
        let _: model::host::PutHostAnswerResponse = self
            .call(&format!("{AGENT_TARGET_PREFIX}.PutHostAnswer"), req)
            .await?;
        Ok(())
    }
}

/// How one try of a call at one endpoint went.
enum Attempt<Resp> {
    /// The endpoint answered (an API error included): the call's result.
    Answered(Result<Resp, AgentError>),
    /// The endpoint could not be reached or said it is unavailable.
    Unavailable(AgentError),
}
