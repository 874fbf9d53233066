//! The control plane's API as the agent uses it: a few ECS operations and the flotilla
//! agent protocol, JSON over HTTP, every request SigV4-signed (`aws-sigv4`, the AWS SDK's
//! own signer) with the node's credentials, exactly as the AWS CLI signs its requests.

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

/// A client of one control plane, in one region. Its clones share their credentials:
/// [`Client::set_credentials`] (an external node's rotated key) changes them for all.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: std::sync::Arc<std::sync::RwLock<Credentials>>,
}

impl Client {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:8080`) acting in `region`,
    /// signing with `credentials`.
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: Credentials,
    ) -> Result<Client, AgentError> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(60));
        if endpoint.starts_with("http://") {
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
            endpoint: endpoint.trim_end_matches('/').to_owned(),
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

    /// The SigV4 headers (`authorization`, `x-amz-date`) for a POST of `body` with
    /// `headers`, signed now.
    fn signature_headers(
        &self,
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
            &self.endpoint,
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
    /// API errors come back as [`AgentError::Api`] with the wire code.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: &str,
        req: &Req,
    ) -> Result<Resp, AgentError> {
        let body = serde_json::to_vec(req)
            .map_err(|e| AgentError::ControlPlane(format!("{target}: {e}")))?;
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let mut request = self.http.post(&self.endpoint);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        for (k, v) in self.signature_headers(&headers, &body)? {
            request = request.header(k, v);
        }
        let resp = request
            .body(body)
            .send()
            .await
            .map_err(|e| AgentError::ControlPlane(format!("{target}: {e}")))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| AgentError::ControlPlane(format!("{target}: {e}")))?;
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(AgentError::Api {
                code: ApiCode::from_wire(v["__type"].as_str().unwrap_or("HTTP error")),
                message: v["message"]
                    .as_str()
                    .map_or_else(|| format!("status {status}"), str::to_owned),
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| AgentError::ControlPlane(format!("{target}: bad answer: {e}")))
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
