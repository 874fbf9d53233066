//! A minimal ECS JSON 1.1 client for the few calls the cluster tooling makes (health,
//! CreateCluster, the nodes' container instances). The server runs without
//! `--credentials`, so any SigV4-shaped header is accepted; its credential scope gives
//! the region.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::spec::{ECS_CLUSTER, REGION};

/// A container instance as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `ec2InstanceId` (the agent's `--instance-id`).
    pub instance_id: String,
    /// `containerInstanceArn`.
    pub arn: String,
    /// `status` (`ACTIVE`, `DRAINING`, …).
    pub status: String,
    /// `agentConnected`.
    pub agent_connected: bool,
    /// `runningTasksCount`.
    pub running_tasks: i64,
}

/// Client of one control plane.
#[derive(Debug)]
pub struct EcsClient {
    http: reqwest::blocking::Client,
    endpoint: String,
}

impl EcsClient {
    /// A client of the control plane at `endpoint` (`http://host:port`).
    pub fn new(endpoint: &str) -> Result<EcsClient> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .map_err(|e| Error::Api(e.to_string()))?;
        Ok(EcsClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        })
    }

    /// True when `GET /healthz` answers `ok`.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/healthz", self.endpoint))
            .timeout(Duration::from_secs(1))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }

    /// `GET /healthz`'s body when it answers 2xx (`ok`, `ok: leader`, `ok: follower of
    /// …`), else `None`.
    #[must_use]
    pub fn health(&self) -> Option<String> {
        let resp = self
            .http
            .get(format!("{}/healthz", self.endpoint))
            .timeout(Duration::from_secs(1))
            .send()
            .ok()
            .filter(|r| r.status().is_success())?;
        Some(resp.text().ok()?.trim().to_owned())
    }

    fn call(&self, op: &str, body: &Value) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("AmazonEC2ContainerServiceV20141113.{op}"))
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=dev/20260101/{REGION}/ecs/aws4_request, SignedHeaders=host, Signature=00"
                ),
            )
            .body(body.to_string())
            .send()
            .map_err(|e| Error::Api(format!("{op}: {e}")))?;
        let status = resp.status();
        let text = resp.text().map_err(|e| Error::Api(format!("{op}: {e}")))?;
        if !status.is_success() {
            return Err(Error::Api(format!("{op}: HTTP {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|e| Error::Api(format!("{op}: {e}")))
    }

    /// Creates the cluster the nodes join (idempotent, as in ECS).
    pub fn create_cluster(&self) -> Result<()> {
        self.call("CreateCluster", &json!({ "clusterName": ECS_CLUSTER }))
            .map(|_| ())
    }

    /// Every container instance of the cluster, any status.
    pub fn instances(&self) -> Result<Vec<Instance>> {
        let mut arns: Vec<Value> = Vec::new();
        for status in ["ACTIVE", "DRAINING"] {
            let mut token: Option<String> = None;
            loop {
                let mut req = json!({ "cluster": ECS_CLUSTER, "status": status });
                if let Some(t) = &token {
                    req["nextToken"] = json!(t);
                }
                let page = self.call("ListContainerInstances", &req)?;
                arns.extend(
                    page["containerInstanceArns"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
                token = page["nextToken"].as_str().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
        }
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let described = self.call(
                "DescribeContainerInstances",
                &json!({ "cluster": ECS_CLUSTER, "containerInstances": chunk }),
            )?;
            for ci in described["containerInstances"]
                .as_array()
                .into_iter()
                .flatten()
            {
                out.push(Instance {
                    instance_id: ci["ec2InstanceId"].as_str().unwrap_or_default().to_owned(),
                    arn: ci["containerInstanceArn"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    status: ci["status"].as_str().unwrap_or_default().to_owned(),
                    agent_connected: ci["agentConnected"].as_bool().unwrap_or(false),
                    running_tasks: ci["runningTasksCount"].as_i64().unwrap_or(0),
                });
            }
        }
        Ok(out)
    }
}
