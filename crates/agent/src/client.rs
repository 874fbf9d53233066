//! The control plane's API as the agent uses it: a few ECS operations and the flotilla
//! agent protocol, JSON over HTTP.

use std::time::Duration;

use model::agent::{
    AGENT_TARGET_PREFIX, PollTasksRequest, PollTasksResponse, ReportHealthRequest,
    ReportHealthResponse,
};
use model::wire;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::AgentError;

/// A client of one control plane, in one region.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    region: String,
}

impl Client {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:8080`) acting in `region`.
    pub fn new(endpoint: &str, region: &str) -> Result<Client, AgentError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| AgentError::ControlPlane(e.to_string()))?;
        Ok(Client {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: region.to_owned(),
        })
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: &str,
        req: &Req,
    ) -> Result<Resp, AgentError> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=flotilla-agent/20260101/{}/ecs/aws4_request, SignedHeaders=host, Signature=00",
            self.region
        );
        let resp = self
            .http
            .post(&self.endpoint)
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.1")
            .header("authorization", auth)
            .json(req)
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
                code: v["__type"].as_str().unwrap_or("HTTP error").to_owned(),
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

    /// FlotillaAgentV1.PollTasks (long poll; also the heartbeat).
    pub async fn poll_tasks(
        &self,
        req: &PollTasksRequest,
    ) -> Result<PollTasksResponse, AgentError> {
        self.call(&format!("{AGENT_TARGET_PREFIX}.PollTasks"), req)
            .await
    }
}
