//! What the agent's in-process tests share (`agent_fake_runtime.rs`, `anywhere.rs`): a
//! control plane on an in-memory store served on loopback ([`Env`]), ECS calls to it, and
//! an agent configuration pointing at it ([`config`]). Each test file uses what it needs
//! of it, hence `dead_code` is allowed here.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::AgentConfig;
use controlplane::ControlPlane;
use ecs_api::{ApiConfig, router, serve};
use runtime::types::{GcPolicy, PullPolicy};
use serde_json::{Value, json};
use store::MemStore;

/// ECS's `X-Amz-Target` prefix.
pub const ECS: &str = "AmazonEC2ContainerServiceV20141113";

/// A served control plane with one cluster, `c`.
pub struct Env {
    pub endpoint: String,
    http: reqwest::Client,
}

impl Env {
    pub async fn start() -> Env {
        let cp = ControlPlane::open(Arc::new(MemStore::new())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = router(
            cp,
            ApiConfig {
                account_id: "000000000000".into(),
                ..Default::default()
            },
        );
        tokio::spawn(serve(listener, app, std::future::pending()));
        let env = Env {
            endpoint,
            http: reqwest::Client::new(),
        };
        env.ecs("CreateCluster", json!({"clusterName": "c"})).await;
        env
    }

    /// POSTs `body` to `target`, signed (unverified) for `service`: status and JSON body,
    /// whatever the status.
    pub async fn post(&self, service: &str, target: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(&self.endpoint)
            .header("x-amz-target", target)
            .header("content-type", "application/x-amz-json-1.1")
            .header("authorization", format!("AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// An ECS operation that must succeed; its answer.
    pub async fn ecs(&self, op: &str, body: Value) -> Value {
        let (status, v) = self.post("ecs", &format!("{ECS}.{op}"), body).await;
        assert!((200..300).contains(&status), "{op}: {v}");
        v
    }

    /// The task `arn` of cluster `c`, as DescribeTasks shows it.
    pub async fn task(&self, arn: &str) -> Value {
        self.ecs("DescribeTasks", json!({"cluster": "c", "tasks": [arn]}))
            .await["tasks"][0]
            .clone()
    }

    /// Polls the task until its `lastStatus` is `status` (at most 15 s).
    pub async fn wait_status(&self, arn: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let t = self.task(arn).await;
            if t["lastStatus"] == status {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "task never reached {status}: {t}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// An agent of cluster `c` on `env`, keeping its state in `dir`, as instance
/// `instance_id`, with Service Connect addresses from `service_connect_cidr`.
pub fn config(
    env: &Env,
    dir: &std::path::Path,
    instance_id: &str,
    service_connect_cidr: &str,
) -> AgentConfig {
    AgentConfig {
        endpoint: env.endpoint.clone(),
        region: "us-east-1".into(),
        credentials: agent::client::Credentials::local(),
        cluster: "c".into(),
        data_dir: dir.to_path_buf(),
        attributes: Default::default(),
        reserved_memory_mib: 0,
        instance_id: Some(instance_id.into()),
        default_stop_timeout: Duration::from_secs(2),
        pull_policy: PullPolicy::Default,
        gc: GcPolicy::default(),
        bridge_cidr: None,
        advertise_ip: None,
        task_dns: Vec::new(),
        service_connect_cidr: service_connect_cidr.parse().unwrap(),
        host_api_socket: None,
        activation: None,
    }
}
