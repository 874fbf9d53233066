//! ECS Anywhere end to end, in process: an SSM activation (CreateActivation on the one
//! endpoint), an agent started with it (on the scriptable `FakeRuntime`) joins as an
//! EXTERNAL instance with its own credentials (saved 0600), runs an EXTERNAL task
//! (while EC2 tasks never go there), may call only the agent's operations, rotates its
//! key, and exits with an error once its instance is deregistered, its key refused.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::AgentConfig;
use agent::anywhere::{Activation, NodeIdentity};
use agent::client::{Client, Credentials};
use runtime::fake::FakeRuntime;
use runtime::types::ImageRef;
use serde_json::{Value, json};

mod agent_support;
use agent_support::{ECS, Env, config as base_config};

impl Env {
    async fn ssm(&self, op: &str, body: Value) -> (u16, Value) {
        self.post("ssm", &format!("AmazonSSM.{op}"), body).await
    }

    async fn instances(&self) -> Vec<Value> {
        let l = self
            .ecs("ListContainerInstances", json!({"cluster": "c"}))
            .await;
        let arns = l["containerInstanceArns"].as_array().unwrap().clone();
        if arns.is_empty() {
            return Vec::new();
        }
        self.ecs(
            "DescribeContainerInstances",
            json!({"cluster": "c", "containerInstances": arns}),
        )
        .await["containerInstances"]
            .as_array()
            .unwrap()
            .clone()
    }

    async fn wait_registered(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(i) = self.instances().await.into_iter().next() {
                return i;
            }
            assert!(Instant::now() < deadline, "the agent never registered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn config(env: &Env, dir: &std::path::Path, activation: Option<Activation>) -> AgentConfig {
    AgentConfig {
        activation,
        ..base_config(env, dir, "i-ignored-for-external-nodes", "127.78.0.0/16")
    }
}

type AgentRun = tokio::task::JoinHandle<Result<(), agent::AgentError>>;

fn spawn_agent(
    cfg: AgentConfig,
    fake: &FakeRuntime,
) -> (tokio::sync::oneshot::Sender<()>, AgentRun) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rt: Arc<dyn runtime::ContainerRuntime> = Arc::new(fake.clone());
    let h = tokio::spawn(agent::run(cfg, rt, async {
        let _ = rx.await;
    }));
    (tx, h)
}

/// The node's own client, signing with the key it saved.
fn node_client(env: &Env, id: &NodeIdentity) -> Client {
    Client::new(&env.endpoint, "us-east-1", id.credentials()).unwrap()
}

/// The error a PollTasks of cluster `c` by `client` is refused with: its code, and the
/// whole error when it is not an API error.
async fn refused_poll(client: &Client) -> String {
    let e = client
        .call::<_, Value>(
            "FlotillaAgentV1.PollTasks",
            &json!({"cluster": "c", "waitSeconds": 0}),
        )
        .await
        .unwrap_err();
    code_of(&e)
}

fn code_of(e: &agent::AgentError) -> String {
    match e {
        agent::AgentError::Api { code, .. } => code.as_str().to_owned(),
        other => format!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_node_joins_runs_external_tasks_and_is_refused_after_deregistration() {
    let env = Env::start().await;
    let (status, act) = env
        .ssm(
            "CreateActivation",
            json!({"IamRole": "ecsAnywhereRole", "DefaultInstanceName": "rack-1", "RegistrationLimit": 1}),
        )
        .await;
    assert_eq!(status, 200, "{act}");
    let activation = Activation {
        id: act["ActivationId"].as_str().unwrap().into(),
        code: act["ActivationCode"].as_str().unwrap().into(),
    };
    // A wrong code is refused before any agent runs.
    let (status, v) = env
        .post(
            "ecs",
            "FlotillaAgentV1.RegisterExternalInstance",
            json!({"activationId": activation.id, "activationCode": "wrong-wrong-wrong-wrong"}),
        )
        .await;
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some("InvalidActivation")),
        "{v}"
    );

    // The agent joins as an external instance.
    let fake = FakeRuntime::new();
    fake.add_registry_image(&ImageRef::parse("127.0.0.1:5000/busybox:latest").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (_stop, agent_run) = spawn_agent(config(&env, dir.path(), Some(activation.clone())), &fake);
    let ci = env.wait_registered().await;
    let mi = ci["ec2InstanceId"].as_str().unwrap().to_owned();
    assert!(
        mi.len() == 20 && mi.starts_with("mi-") && mi[3..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{ci}"
    );
    let names: Vec<&str> = ci["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(names.contains(&"ecs.capability.external"), "{ci}");
    assert!(!names.contains(&"ecs.availability-zone"), "{ci}");
    let path = agent::anywhere::credentials_path(dir.path());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let id = agent::anywhere::load(dir.path()).unwrap().unwrap();
    assert_eq!(id.managed_instance_id, mi);
    assert!(id.access_key_id.starts_with("FLTN"), "{id:?}");
    // The activation shows its registration and is used up.
    let (_, d) = env.ssm("DescribeActivations", json!({})).await;
    assert_eq!(d["ActivationList"][0]["RegistrationsCount"], 1, "{d}");
    let other = tempfile::tempdir().unwrap();
    let (_stop2, second) = spawn_agent(config(&env, other.path(), Some(activation.clone())), &fake);
    let e = second.await.unwrap().unwrap_err();
    assert_eq!(code_of(&e), "InvalidActivation", "{e}");
    assert!(!agent::anywhere::credentials_path(other.path()).exists());

    // EXTERNAL tasks run there; EC2 tasks do not.
    env.ecs(
        "RegisterTaskDefinition",
        json!({"family": "edge", "requiresCompatibilities": ["EXTERNAL"], "networkMode": "bridge",
               "containerDefinitions": [{"name": "main", "image": "127.0.0.1:5000/busybox:latest", "memory": 64}]}),
    )
    .await;
    let r = env
        .ecs(
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "edge", "launchType": "EXTERNAL"}),
        )
        .await;
    assert_eq!(r["failures"].as_array().unwrap().len(), 0, "{r}");
    let arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_owned();
    assert_eq!(r["tasks"][0]["launchType"], "EXTERNAL");
    assert_eq!(
        r["tasks"][0]["containerInstanceArn"],
        ci["containerInstanceArn"]
    );
    env.wait_status(&arn, "RUNNING").await;
    let r = env
        .ecs(
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "edge", "launchType": "EC2"}),
        )
        .await;
    assert!(r["tasks"].as_array().unwrap().is_empty(), "{r}");
    assert_eq!(r["failures"].as_array().unwrap().len(), 1, "{r}");

    // The node's key serves the agent's operations only.
    let node = node_client(&env, &id);
    let e = node
        .call::<_, Value>(&format!("{ECS}.ListClusters"), &json!({}))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "AccessDeniedException", "{e}");
    // A forged node key is unknown.
    let forged = Client::new(
        &env.endpoint,
        "us-east-1",
        Credentials {
            access_key_id: "FLTNAAAAAAAAAAAAAAAA".into(),
            secret_access_key: "x".repeat(40),
        },
    )
    .unwrap();
    assert_eq!(refused_poll(&forged).await, "UnrecognizedClientException");

    // Rotation: a new key works; the old one for a grace period.
    let rotated = agent::anywhere::rotate(&node, other.path(), &id)
        .await
        .unwrap();
    assert_ne!(rotated.access_key_id, id.access_key_id);
    for key in [&rotated, &id] {
        let c = node_client(&env, key);
        let v: Value = c
            .call("FlotillaAgentV1.PollTasks", &json!({"cluster": "c", "containerInstance": ci["containerInstanceArn"], "waitSeconds": 0}))
            .await
            .unwrap();
        assert!(v["digest"].is_string(), "{v}");
    }

    // Deregistration revokes: the agent exits with an error, the key is refused.
    env.ecs(
        "DeregisterContainerInstance",
        json!({"cluster": "c", "containerInstance": ci["containerInstanceArn"], "force": true}),
    )
    .await;
    let e = tokio::time::timeout(Duration::from_secs(30), agent_run)
        .await
        .expect("the agent exits once refused")
        .unwrap()
        .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains("refused the credentials of external node"),
        "{message}"
    );
    assert!(message.contains(&mi), "{message}");
    assert!(!path.exists(), "the revoked key is removed");
    for key in [&rotated, &id] {
        let client = node_client(&env, key);
        assert_eq!(refused_poll(&client).await, "UnrecognizedClientException");
    }
}
