//! The agent against a real control plane (in-process, on loopback) and the scriptable
//! `FakeRuntime`: tasks placed on the node start and reach RUNNING; StopTask stops
//! them; an essential container's exit stops the task with its exit code; an OOM kill
//! and a missing image are reported in ECS's words; a restarted agent adopts running
//! containers instead of starting them again; the control plane reaches the node's host
//! API (a real `host_api` server on a Unix socket) through the agent's poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::AgentConfig;
use runtime::fake::FakeRuntime;
use runtime::types::{ContainerId, ImageRef};
use serde_json::{Value, json};

mod agent_support;
use agent_support::{Env, config as base_config};

impl Env {
    /// `FlotillaV1.<op>`: status and JSON body, whatever the status.
    async fn flotilla(&self, op: &str, body: Value) -> (u16, Value) {
        self.post("ecs", &format!("FlotillaV1.{op}"), body).await
    }

    /// `FlotillaV1.CallHostApi`, again while the agent's first poll is not open yet.
    async fn host_call(&self, body: Value) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, v) = self.flotilla("CallHostApi", body.clone()).await;
            if v["__type"] != "TargetNotConnectedException" || Instant::now() > deadline {
                return (code, v);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_registered(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let l = self
                .ecs("ListContainerInstances", json!({"cluster": "c"}))
                .await;
            if !l["containerInstanceArns"].as_array().unwrap().is_empty() {
                return l["containerInstanceArns"].clone();
            }
            assert!(Instant::now() < deadline, "the agent never registered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn run(&self, family: &str) -> String {
        let r = self
            .ecs("RunTask", json!({"cluster": "c", "taskDefinition": family}))
            .await;
        assert_eq!(r["failures"].as_array().unwrap().len(), 0, "{r}");
        r["tasks"][0]["taskArn"].as_str().unwrap().to_owned()
    }
}

fn config(env: &Env, dir: &std::path::Path) -> AgentConfig {
    base_config(env, dir, "i-test", "127.77.0.0/16")
}

fn spawn_agent(
    cfg: AgentConfig,
    fake: &FakeRuntime,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rt: Arc<dyn runtime::ContainerRuntime> = Arc::new(fake.clone());
    let h = tokio::spawn(async move {
        agent::run(cfg, rt, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (tx, h)
}

async fn register_defs(env: &Env) {
    env.ecs(
        "RegisterTaskDefinition",
        json!({"family": "app", "containerDefinitions": [
            {"name": "main", "image": "127.0.0.1:5000/busybox:latest", "memory": 64, "command": ["sleep", "1000"]},
            {"name": "side", "image": "127.0.0.1:5000/busybox:latest", "memory": 32, "essential": false, "dependsOn": [{"containerName": "main", "condition": "START"}]}
        ]}),
    )
    .await;
    env.ecs("RegisterTaskDefinition", json!({"family": "missing", "containerDefinitions": [{"name": "x", "image": "127.0.0.1:5000/nope:1", "memory": 32}]})).await;
}

/// The task definitions of [`register_defs`], and an agent on a fake runtime that has the
/// registry's busybox, its state in a fresh directory, once it has registered.
async fn agent_with_defs(
    env: &Env,
) -> (
    FakeRuntime,
    tempfile::TempDir,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    register_defs(env).await;
    let fake = FakeRuntime::new();
    fake.add_registry_image(&ImageRef::parse("127.0.0.1:5000/busybox:latest").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (stop_agent, agent) = spawn_agent(config(env, dir.path()), &fake);
    env.wait_registered().await;
    (fake, dir, stop_agent, agent)
}

/// The container `name` of the task `t` as DescribeTasks shows it.
fn container<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_stop_and_fail_with_ecs_reasons() {
    let env = Env::start().await;
    let (fake, _dir, stop_agent, agent) = agent_with_defs(&env).await;

    // RUNNING, with runtime ids.
    let arn = env.run("app").await;
    let t = env.wait_status(&arn, "RUNNING").await;
    assert_eq!(
        t["containers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["runtimeId"].is_string())
            .count(),
        2
    );
    assert!(t["pullStartedAt"].is_number() && t["startedAt"].is_number());
    let main = ContainerId::new(format!("{}-0", task_id(&arn))).unwrap();
    assert_eq!(
        fake.spec_of(&main).unwrap().resources.memory_hard_mib,
        Some(64)
    );

    // StopTask → STOPPED.
    env.ecs(
        "StopTask",
        json!({"cluster": "c", "task": arn, "reason": "bye"}),
    )
    .await;
    let t = env.wait_status(&arn, "STOPPED").await;
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["stoppedReason"], "bye");

    // Essential container exits with 3 → task STOPPED, exit code recorded.
    let arn = env.run("app").await;
    env.wait_status(&arn, "RUNNING").await;
    fake.exit(
        &ContainerId::new(format!("{}-0", task_id(&arn))).unwrap(),
        3,
        false,
    )
    .unwrap();
    let t = env.wait_status(&arn, "STOPPED").await;
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    let main = container(&t, "main").clone();
    assert_eq!(main["exitCode"], 3);
    assert!(
        t["stoppedReason"]
            .as_str()
            .unwrap()
            .contains("Essential container in task exited")
    );

    // OOM kill.
    let arn = env.run("app").await;
    env.wait_status(&arn, "RUNNING").await;
    fake.exit(
        &ContainerId::new(format!("{}-0", task_id(&arn))).unwrap(),
        137,
        true,
    )
    .unwrap();
    let t = env.wait_status(&arn, "STOPPED").await;
    let main = container(&t, "main").clone();
    assert!(
        main["reason"]
            .as_str()
            .unwrap()
            .starts_with("OutOfMemoryError"),
        "{main}"
    );

    // A missing image fails to start, with the runtime's reason.
    let r = env
        .ecs(
            "RunTask",
            json!({"cluster": "c", "taskDefinition": "missing"}),
        )
        .await;
    let arn = r["tasks"][0]["taskArn"].as_str().unwrap().to_owned();
    let t = env.wait_status(&arn, "STOPPED").await;
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    assert!(
        t["stoppedReason"]
            .as_str()
            .unwrap()
            .starts_with("CannotPullContainerError"),
        "{t}"
    );

    let _ = stop_agent.send(());
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_running_containers() {
    let env = Env::start().await;
    let (fake, dir, stop_agent, agent) = agent_with_defs(&env).await;
    let arn = env.run("app").await;
    let before = env.wait_status(&arn, "RUNNING").await;
    let instance = before["containerInstanceArn"].clone();
    // The agent goes away (its supervisors with it), the containers stay.
    let _ = stop_agent.send(());
    agent.await.unwrap();
    let pulls = fake.remote_pulls().len();

    let (stop_agent, agent) = spawn_agent(config(&env, dir.path()), &fake);
    // Same instance, same task, nothing pulled or started again: the new agent watches the
    // old containers — an exit is still noticed and reported.
    let main = ContainerId::new(format!("{}-0", task_id(&arn))).unwrap();
    assert_eq!(env.wait_registered().await, json!([instance]));
    assert_eq!(env.task(&arn).await["lastStatus"], "RUNNING");
    // Give the new agent's poll a chance to adopt, then end the container.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state =
            std::fs::read_to_string(dir.path().join("agent-state.json")).unwrap_or_default();
        if state.contains(&arn) && fake.remote_pulls().len() == pulls {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fake.exit(&main, 0, false).unwrap();
    let t = env.wait_status(&arn, "STOPPED").await;
    assert_eq!(container(&t, "main")["exitCode"], 0);
    assert_eq!(fake.remote_pulls().len(), pulls, "nothing pulled again");
    let tasks = env
        .ecs(
            "ListTasks",
            json!({"cluster": "c", "desiredStatus": "STOPPED"}),
        )
        .await;
    assert_eq!(
        tasks["taskArns"].as_array().unwrap().len(),
        1,
        "no duplicate task"
    );
    let _ = stop_agent.send(());
    agent.await.unwrap();
}

/// The container's `/etc/resolv.conf` mount, and the file's text.
fn resolv_conf(
    fake: &FakeRuntime,
    arn: &str,
    index: usize,
) -> Option<(std::path::PathBuf, String)> {
    let id = ContainerId::new(format!("{}-{index}", task_id(arn))).unwrap();
    let spec = fake.spec_of(&id).unwrap();
    let m = spec
        .mounts
        .iter()
        .find(|m| m.container_path == "/etc/resolv.conf")?;
    assert!(m.read_only, "{m:?}");
    Some((
        m.host_path.clone(),
        std::fs::read_to_string(&m.host_path).unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_a_resolv_conf_from_task_dns_or_their_dns_servers() {
    let env = Env::start().await;
    env.ecs(
        "RegisterTaskDefinition",
        json!({"family": "dns", "containerDefinitions": [
            {"name": "plain", "image": "127.0.0.1:5000/busybox:latest", "memory": 32},
            {"name": "own", "image": "127.0.0.1:5000/busybox:latest", "memory": 32,
             "dnsServers": ["10.0.0.2"], "dnsSearchDomains": ["flotilla.test"]}
        ]}),
    )
    .await;
    env.ecs(
        "RegisterTaskDefinition",
        json!({"family": "offline", "networkMode": "none", "containerDefinitions": [
            {"name": "x", "image": "127.0.0.1:5000/busybox:latest", "memory": 32}
        ]}),
    )
    .await;
    let fake = FakeRuntime::new();
    fake.add_registry_image(&ImageRef::parse("127.0.0.1:5000/busybox:latest").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&env, dir.path());
    cfg.task_dns = vec!["10.213.0.1".parse().unwrap()];
    let (stop_agent, agent) = spawn_agent(cfg, &fake);
    env.wait_registered().await;

    let arn = env.run("dns").await;
    env.wait_status(&arn, "RUNNING").await;
    let (plain, text) = resolv_conf(&fake, &arn, 0).expect("--task-dns gives a file");
    assert!(
        text.lines()
            .filter(|l| l.starts_with("nameserver"))
            .eq(["nameserver 10.213.0.1"]),
        "{text}"
    );
    let (own, text) = resolv_conf(&fake, &arn, 1).expect("dnsServers give a file");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("nameserver") || l.starts_with("search"))
        .collect();
    assert_eq!(
        lines,
        ["nameserver 10.0.0.2", "search flotilla.test"],
        "{text}"
    );
    assert!(plain.starts_with(dir.path()) && own.starts_with(dir.path()));

    // A task without a network keeps its image's file.
    let offline = env.run("offline").await;
    env.wait_status(&offline, "RUNNING").await;
    assert_eq!(resolv_conf(&fake, &offline, 0), None);

    // The files go with the task.
    env.ecs("StopTask", json!({"cluster": "c", "task": arn}))
        .await;
    env.wait_status(&arn, "STOPPED").await;
    assert!(!plain.exists() && !own.exists());
    assert!(
        !plain.parent().unwrap().exists(),
        "the task's directory too"
    );

    let _ = stop_agent.send(());
    agent.await.unwrap();
}

/// A real host API server (settings datastore on disk) on a Unix socket in `dir`.
fn start_host_api(dir: &std::path::Path) -> std::path::PathBuf {
    let socket = dir.join("api.sock");
    let cfg = host_api::server::HostConfig {
        data_dir: dir.join("data"),
        paths: host_api::services::Paths {
            etc: dir.join("etc"),
            proc_sys: dir.join("proc-sys"),
        },
        node: None,
    };
    let restarter = Arc::new(host_api::services::CommandRestarter {
        commands: Default::default(),
        etc: dir.join("etc"),
    });
    let state = host_api::server::HostState::new(cfg, restarter).unwrap();
    let listener = host_api::server::bind(&socket).unwrap();
    tokio::spawn(host_api::server::run(
        listener,
        state,
        std::future::pending(),
    ));
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_calls_the_nodes_host_api_through_the_agent() {
    let env = Env::start().await;
    let fake = FakeRuntime::new();
    let dir = tempfile::tempdir().unwrap();
    let host_dir = tempfile::tempdir().unwrap();
    let socket = start_host_api(host_dir.path());
    let mut cfg = config(&env, dir.path());
    cfg.host_api_socket = Some(socket.clone());
    let (stop_agent, agent) = spawn_agent(cfg, &fake);
    let instance = env.wait_registered().await[0].as_str().unwrap().to_owned();
    let call = |call: Value| json!({"cluster": "c", "containerInstance": instance, "call": call});

    // A setting written through the control plane is live on the node...
    let (status, set) = env
        .host_call(call(
            json!({"action": "SetSettings", "settings": {"motd": "hello from the control plane"}}),
        ))
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["status"], 200, "{set}");
    let direct = host_api::client::Client::new(&socket)
        .get_json("/settings?keys=settings.motd")
        .await
        .unwrap();
    assert_eq!(direct["motd"], "hello from the control plane", "{direct}");
    // ...and read back the same way.
    let (_, got) = env
        .host_call(call(json!({"action": "GetSettings", "prefix": "motd"})))
        .await;
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(
        got["body"]["settings"]["motd"], "hello from the control plane",
        "{got}"
    );
    // A refused value comes back with the host API's own status and words; nothing is
    // left pending on the node.
    let (_, bad) = env
        .host_call(call(
            json!({"action": "SetSettings", "settings": {"ecs": {"clustr": "x"}}}),
        ))
        .await;
    assert_eq!(bad["status"], 400, "{bad}");
    assert!(bad["body"].as_str().unwrap().contains("clustr"), "{bad}");
    let pending = host_api::client::Client::new(&socket)
        .get_json("/tx/list")
        .await
        .unwrap();
    assert_eq!(pending, json!([]), "the refused transaction was deleted");
    // The host API's status passes through: no update command ran since boot.
    let (_, status) = env
        .host_call(call(json!({"action": "GetUpdateStatus"})))
        .await;
    assert_eq!(status["status"], 404, "{status}");
    // Only the listed calls exist.
    let (code, refused) = env
        .host_call(call(json!({"action": "RunShell", "command": "id"})))
        .await;
    assert_eq!(code, 400, "{refused}");
    let _ = stop_agent.send(());
    agent.await.unwrap();

    // An agent without a host layer says so.
    let (stop_agent, agent) = spawn_agent(config(&env, dir.path()), &fake);
    let deadline = Instant::now() + Duration::from_secs(15);
    let without = loop {
        let (code, v) = env.host_call(call(json!({"action": "GetOs"}))).await;
        if code == 400
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("--host-api-socket"))
        {
            break v;
        }
        assert!(Instant::now() < deadline, "{code} {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(without["__type"], "ClientException", "{without}");
    let _ = stop_agent.send(());
    agent.await.unwrap();
}
