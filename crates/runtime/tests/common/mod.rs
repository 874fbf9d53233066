//! Shared fixture for the containerd integration tests: starts the private containerd and
//! the local registries (through the repo's scripts, once per test process), and gives each
//! test its own containerd namespace, log and state directories.

#![allow(dead_code, clippy::missing_panics_doc)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use runtime::{
    ContainerId, ContainerRuntime, ContainerSpec, ContainerdConfig, ContainerdRuntime, ExecResult,
    ExecSpec, ExitStatus, ImageRef, PullPolicy, RotationPolicy,
};

pub const REGISTRY: &str = "127.0.0.1:5000";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run_script(name: &str) -> String {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts").join(name))
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

/// Socket of the private containerd, started (and test images built) on first use.
pub fn infrastructure() -> PathBuf {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            let sock = run_script("start-containerd.sh");
            run_script("build-test-images.sh");
            PathBuf::from(sock)
        })
        .clone()
}

pub struct TestEnv {
    pub rt: ContainerdRuntime,
    pub cfg: ContainerdConfig,
    pub dir: PathBuf,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "runtime=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A runtime in namespace `flotilla-test-<name>`, emptied of containers left by an earlier
/// run of the same test.
pub async fn env(name: &str) -> TestEnv {
    env_with(name, RotationPolicy::default()).await
}

pub async fn env_with(name: &str, rotation: RotationPolicy) -> TestEnv {
    let dir = std::env::temp_dir().join(format!("flotilla-runtime-test-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let t = connect_only(name, rotation).await;
    for c in t.rt.list_containers().await.unwrap() {
        let _ = t.rt.stop_container(&c.id, Duration::ZERO).await;
        t.rt.remove_container(&c.id).await.unwrap();
    }
    t
}

/// Like [`env_with`] but touches nothing: a second "agent process" on the same node.
pub async fn connect_only(name: &str, rotation: RotationPolicy) -> TestEnv {
    init_tracing();
    let socket = tokio::task::spawn_blocking(infrastructure).await.unwrap();
    let dir = std::env::temp_dir().join(format!("flotilla-runtime-test-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = ContainerdConfig::new(
        socket.clone(),
        format!("flotilla-test-{name}"),
        dir.join("logs"),
        dir.join("state"),
        env!("CARGO_BIN_EXE_flotilla-runtime-logger"),
    );
    cfg.log_rotation = rotation;
    cfg.log_poll = Duration::from_millis(50);
    // Several private containerds may share this host (and these namespace names): give
    // each its own runc state and cgroup parent.
    let base = socket.parent().unwrap().to_path_buf();
    cfg.runc_root = Some(base.join("runc"));
    cfg.cgroup_parent = format!("/{}", base.file_name().unwrap().to_string_lossy());
    let rt = ContainerdRuntime::connect(cfg.clone()).await.unwrap();
    TestEnv { rt, cfg, dir }
}

pub fn image(name: &str) -> ImageRef {
    ImageRef::parse(&format!("{REGISTRY}/{name}:latest")).unwrap()
}

pub fn id(s: &str) -> ContainerId {
    ContainerId::new(s).unwrap()
}

pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// A busybox spec running `sh -c script`.
pub fn sh(id_: &str, script: &str) -> ContainerSpec {
    let mut s = ContainerSpec::new(id(id_), image("busybox"));
    s.command = Some(strs(&["sh", "-c", script]));
    s
}

/// Pulls (prefer-cached) and creates + starts.
pub async fn run(rt: &ContainerdRuntime, spec: &ContainerSpec) -> u32 {
    rt.pull_image(&spec.image, PullPolicy::PreferCached, None)
        .await
        .unwrap();
    rt.create_container(spec).await.unwrap();
    rt.start_container(&spec.id).await.unwrap()
}

/// Polls `f` until it returns `Some`, failing the test after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `args` in the container (5 s timeout, no extra environment).
pub async fn exec(rt: &ContainerdRuntime, id: &ContainerId, args: &[&str]) -> ExecResult {
    rt.exec(
        id,
        &ExecSpec {
            args: strs(args),
            environment: Default::default(),
            timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap()
}

/// Asks the container's script to finish (it waits for `/tmp/stop`: `touch` it with an
/// exec) and returns how it exited.
pub async fn touch_stop_and_wait(rt: &ContainerdRuntime, id: &ContainerId) -> ExitStatus {
    let waiter = {
        let rt = rt.clone();
        let id = id.clone();
        tokio::spawn(async move { rt.wait_container(&id).await })
    };
    assert!(exec(rt, id, &["touch", "/tmp/stop"]).await.success());
    tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}
