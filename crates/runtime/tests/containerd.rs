//! Integration tests against a real containerd + runc + local registries.
//! Run with `cargo test -p runtime -- --include-ignored` (as root, after the apt install
//! listed in docs/runtime.md); the fixture starts containerd and the registries itself.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{env, env_with, exec, id, image, poll, run, sh, strs, touch_stop_and_wait};
use runtime::{
    ContainerId, ContainerRuntime, ContainerSpec, ContainerState, ContainerdRuntime, Error,
    ExecSpec, GcPolicy, HealthCheckCommand, ImageRef, LogStream, PullPolicy, RegistryAuth,
    Resources, RotationPolicy,
};

/// Asserts that `$result` is an `Err` of the variant `$variant`.
macro_rules! assert_err {
    ($result:expr, $variant:path) => {
        assert!(matches!($result, Err($variant { .. })))
    };
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn pull_policies_use_cache_or_registry() {
    let t = env("pull").await;
    let img = image("busybox");
    // A fresh namespace has nothing: the first pull must hit the registry.
    let _ = t.rt.remove_image(&img).await;
    let first =
        t.rt.pull_image(&img, PullPolicy::Default, None)
            .await
            .unwrap();
    assert!(!first.from_cache);
    assert!(first.digest.starts_with("sha256:"));
    let cached =
        t.rt.pull_image(&img, PullPolicy::PreferCached, None)
            .await
            .unwrap();
    assert!(cached.from_cache);
    assert_eq!(cached.digest, first.digest);
    let once = t.rt.pull_image(&img, PullPolicy::Once, None).await.unwrap();
    assert!(once.from_cache);
    let always =
        t.rt.pull_image(&img, PullPolicy::Always, None)
            .await
            .unwrap();
    assert!(!always.from_cache);
    // Concurrent pulls of the same image (two tasks starting at once) both succeed.
    let _ = t.rt.remove_image(&img).await;
    let (a, b) = tokio::join!(
        t.rt.pull_image(&img, PullPolicy::Always, None),
        t.rt.pull_image(&img, PullPolicy::Always, None)
    );
    assert_eq!(a.unwrap().digest, b.unwrap().digest);
    let listed = t.rt.list_images().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|i| i.name == img.to_string() && i.size > 100_000)
    );
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn multi_platform_index_resolves_to_linux_amd64() {
    let t = env("index").await;
    let multi = ImageRef::parse(&format!("{}/multi:latest", common::REGISTRY)).unwrap();
    let amd64 = ImageRef::parse(&format!("{}/multi:amd64", common::REGISTRY)).unwrap();
    let arm64 = ImageRef::parse(&format!("{}/multi:arm64", common::REGISTRY)).unwrap();
    let m =
        t.rt.pull_image(&multi, PullPolicy::Always, None)
            .await
            .unwrap();
    let a =
        t.rt.pull_image(&amd64, PullPolicy::Always, None)
            .await
            .unwrap();
    let r =
        t.rt.pull_image(&arm64, PullPolicy::Always, None)
            .await
            .unwrap();
    assert_eq!(m.digest, a.digest);
    assert_ne!(m.digest, r.digest);
    let mut spec = ContainerSpec::new(id("fromindex"), multi);
    spec.command = Some(strs(&["sh", "-c", "exit 4"]));
    run(&t.rt, &spec).await;
    assert_eq!(t.rt.wait_container(&spec.id).await.unwrap().code, 4);
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn exit_code_is_reported() {
    let t = env("exit").await;
    let mut spec = sh("exit3", "exit 3");
    spec.environment.insert("FOO".into(), "bar".into());
    run(&t.rt, &spec).await;
    let exit = t.rt.wait_container(&spec.id).await.unwrap();
    assert_eq!(exit.code, 3);
    assert!(!exit.oom_killed);
    assert!(exit.exited_at.is_some());
    let info = t.rt.inspect_container(&spec.id).await.unwrap();
    assert_eq!(info.state, ContainerState::Stopped(exit));
    t.rt.remove_container(&spec.id).await.unwrap();
    assert_err!(
        t.rt.inspect_container(&spec.id).await,
        Error::ContainerNotFound
    );
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn lifecycle_state_rules() {
    let t = env("states").await;
    // Created but never started: stop still ends it, remove cleans up.
    let idle = sh("idle", "exit 0");
    t.rt.pull_image(&idle.image, PullPolicy::PreferCached, None)
        .await
        .unwrap();
    let info = t.rt.create_container(&idle).await.unwrap();
    assert_eq!(info.state, ContainerState::Created);
    let exit =
        t.rt.stop_container(&idle.id, Duration::from_secs(1))
            .await
            .unwrap();
    assert_ne!(exit.code, 0);
    t.rt.remove_container(&idle.id).await.unwrap();
    t.rt.remove_container(&idle.id).await.unwrap(); // idempotent

    let busy = sh("busy", "trap 'exit 0' TERM; while true; do sleep 1; done");
    run(&t.rt, &busy).await;
    assert_err!(t.rt.start_container(&busy.id).await, Error::WrongState);
    assert_err!(t.rt.remove_container(&busy.id).await, Error::WrongState);
    t.rt.stop_container(&busy.id, Duration::from_secs(10))
        .await
        .unwrap();
    t.rt.remove_container(&busy.id).await.unwrap();
    assert!(t.rt.list_containers().await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn spec_fields_reach_the_process() {
    let t = env("specfields").await;
    let vol = t.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("in.txt"), "from-host").unwrap();
    let mut spec = sh(
        "fields",
        "echo \"$FOO $(id -u):$(id -g) $(pwd) $(ulimit -n) $(cat /data/in.txt)\"; \
         cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || true",
    );
    spec.environment.insert("FOO".into(), "bar".into());
    spec.user = Some("1000:1000".into());
    spec.working_directory = Some("/tmp".into());
    spec.ulimits.push(runtime::Ulimit {
        name: "nofile".into(),
        soft: 2048,
        hard: 4096,
    });
    spec.mounts.push(runtime::BindMount {
        host_path: vol,
        container_path: "/data".into(),
        read_only: true,
    });
    spec.resources.cpu_units = Some(512);
    spec.resources.memory_hard_mib = Some(64);
    spec.resources.memory_soft_mib = Some(32);
    run(&t.rt, &spec).await;
    assert_eq!(t.rt.wait_container(&spec.id).await.unwrap().code, 0);
    let cg = format!(
        "/sys/fs/cgroup/memory{}/{}/fields",
        t.cfg.cgroup_parent, t.cfg.namespace
    );
    // The cgroup exists until the task is deleted.
    let limit = std::fs::read_to_string(format!("{cg}/memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), (64 * 1024 * 1024).to_string());
    let soft = std::fs::read_to_string(format!("{cg}/memory.soft_limit_in_bytes")).unwrap();
    assert_eq!(soft.trim(), (32 * 1024 * 1024).to_string());
    let shares = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/cpu{}/{}/fields/cpu.shares",
        t.cfg.cgroup_parent, t.cfg.namespace
    ))
    .unwrap();
    assert_eq!(shares.trim(), "512");
    let lines = poll("output", Duration::from_secs(10), || async {
        let l = t.rt.read_logs(&spec.id, None).await.unwrap();
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(lines[0].message, "bar 1000:1000 /tmp 2048 from-host");
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn stop_uses_stop_signal_within_timeout() {
    let t = env("stopterm").await;
    // PID 1 gets no default signal actions, so the program must handle TERM (as real
    // servers do); `sleep` runs as its child.
    let spec = sh("term", "trap 'exit 143' TERM; sleep 1000 & wait $!");
    run(&t.rt, &spec).await;
    poll("running", Duration::from_secs(10), || async {
        matches!(
            t.rt.inspect_container(&spec.id).await.unwrap().state,
            ContainerState::Running { .. }
        )
        .then_some(())
    })
    .await;
    // Let the shell install its trap before signalling.
    poll("trap installed", Duration::from_secs(10), || async {
        let r = exec(&t.rt, &spec.id, &["sh", "-c", "pidof sleep"]).await;
        r.success().then_some(())
    })
    .await;
    let start = Instant::now();
    let exit =
        t.rt.stop_container(&spec.id, Duration::from_secs(20))
            .await
            .unwrap();
    assert_eq!(exit.code, 143);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // Stopping again reports the same exit.
    let again =
        t.rt.stop_container(&spec.id, Duration::from_secs(1))
            .await
            .unwrap();
    assert_eq!(again.code, 143);
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn plain_sleep_with_init_process_stops_on_sigterm() {
    let t = env("stopinit").await;
    let mut spec = ContainerSpec::new(id("sleeper"), image("busybox"));
    spec.command = Some(strs(&["sleep", "1000"]));
    spec.init_process = true;
    run(&t.rt, &spec).await;
    wait_for_sleep(&t.rt, &spec.id, "sleep running under init").await;
    let start = Instant::now();
    let exit =
        t.rt.stop_container(&spec.id, Duration::from_secs(20))
            .await
            .unwrap();
    assert_eq!(
        exit.code, 143,
        "sleep died of SIGTERM forwarded by the init"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn stop_kills_after_timeout_when_signal_ignored() {
    let t = env("stopkill").await;
    let spec = sh("stubborn", "trap '' TERM; while true; do sleep 1; done");
    run(&t.rt, &spec).await;
    // The loop runs only once the trap is installed: a TERM sent earlier would reach a
    // shell that still dies of it.
    wait_for_sleep(&t.rt, &spec.id, "trap installed").await;
    let timeout = Duration::from_secs(2);
    let start = Instant::now();
    let exit = t.rt.stop_container(&spec.id, timeout).await.unwrap();
    assert_eq!(exit.code, 137, "killed by SIGKILL");
    assert_eq!(exit.signal(), Some(9));
    assert!(!exit.oom_killed);
    assert!(start.elapsed() >= timeout);
    assert!(start.elapsed() < timeout + Duration::from_secs(10));
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn memory_limit_below_need_is_oom_killed() {
    let t = env("oom").await;
    let mut spec = ContainerSpec::new(id("hog"), image("memhog"));
    spec.resources = Resources {
        cpu_units: None,
        memory_hard_mib: Some(16),
        memory_soft_mib: None,
    };
    run(&t.rt, &spec).await;
    let exit = t.rt.wait_container(&spec.id).await.unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.code, 137);
    // Re-reading later (e.g. after an agent restart) still says OOM.
    match t.rt.inspect_container(&spec.id).await.unwrap().state {
        ContainerState::Stopped(e) => assert!(e.oom_killed),
        other => panic!("{other:?}"),
    }
    // A limit below the runtime's minimum is refused up front.
    let mut tiny = ContainerSpec::new(id("tiny"), image("memhog"));
    tiny.resources.memory_hard_mib = Some(4);
    assert_err!(t.rt.create_container(&tiny).await, Error::InvalidSpec);
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn health_check_exec_reports_exit_code() {
    let t = env("health").await;
    let spec = sh("svc", "trap 'exit 0' TERM; while true; do sleep 1; done");
    run(&t.rt, &spec).await;
    let check = |cmd: &[&str], secs| {
        HealthCheckCommand::from_ecs(&strs(cmd))
            .unwrap()
            .to_exec(Duration::from_secs(secs))
    };
    let r =
        t.rt.exec(
            &spec.id,
            &check(&["CMD-SHELL", "echo out; echo err >&2; exit 3"], 10),
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(3));
    assert!(
        r.output.contains("out") && r.output.contains("err"),
        "{r:?}"
    );
    let r =
        t.rt.exec(&spec.id, &check(&["CMD", "true"], 10))
            .await
            .unwrap();
    assert!(r.success());
    let start = Instant::now();
    let r =
        t.rt.exec(&spec.id, &check(&["CMD", "sleep", "30"], 1))
            .await
            .unwrap();
    assert_eq!(r.exit_code, None, "timed out");
    assert!(start.elapsed() < Duration::from_secs(15));
    let r =
        t.rt.exec(&spec.id, &check(&["CMD", "/no/such/check"], 5))
            .await
            .unwrap();
    assert!(!r.success());
    // The container is unaffected.
    assert!(matches!(
        t.rt.inspect_container(&spec.id).await.unwrap().state,
        ContainerState::Running { .. }
    ));
    t.rt.stop_container(&spec.id, Duration::from_secs(5))
        .await
        .unwrap();
    assert_err!(
        t.rt.exec(&spec.id, &check(&["CMD", "true"], 5)).await,
        Error::WrongState
    );
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn logs_are_written_rotated_and_followable() {
    let rotation = RotationPolicy {
        max_bytes: 16 * 1024,
        max_files: 3,
    };
    let t = env_with("logs", rotation).await;
    let spec = sh(
        "chatty",
        "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done",
    );
    run(&t.rt, &spec).await;
    assert_eq!(t.rt.wait_container(&spec.id).await.unwrap().code, 0);
    let tail = poll("last lines", Duration::from_secs(20), || async {
        let l = t.rt.read_logs(&spec.id, Some(2)).await.unwrap();
        (l.last().map(|l| l.message.as_str()) == Some("line 2999")).then_some(l)
    })
    .await;
    assert_eq!(tail[0].message, "line 2998");
    assert!(
        tail.iter()
            .all(|l| l.stream == LogStream::Stdout && !l.partial)
    );
    let live = t.cfg.log_dir.join("chatty.log");
    let files = runtime::logs::log_files(&live);
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= rotation.max_bytes);
    }
    // Older lines were rotated away; what is left is contiguous and ends at the end.
    let all = t.rt.read_logs(&spec.id, None).await.unwrap();
    assert!(all.len() < 3001 && all.len() > 500, "{}", all.len());

    // stdout and stderr both land in the log, tagged (their relative order is arrival
    // order at the logger, as with Docker).
    let mixed = sh("mixed", "echo out; echo err >&2");
    run(&t.rt, &mixed).await;
    assert_eq!(t.rt.wait_container(&mixed.id).await.unwrap().code, 0);
    let lines = poll("stdout and stderr", Duration::from_secs(10), || async {
        let l = t.rt.read_logs(&mixed.id, None).await.unwrap();
        (l.len() == 2).then_some(l)
    })
    .await;
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStream::Stdout && l.message == "out")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStream::Stderr && l.message == "err")
    );

    // Follow a container that writes slowly.
    let slow = sh(
        "slow",
        "i=0; while [ $i -lt 5 ]; do echo \"tick $i\"; i=$((i+1)); sleep 0.2; done",
    );
    run(&t.rt, &slow).await;
    let mut f = t.rt.follow_logs(&slow.id, None).await.unwrap();
    for i in 0..5 {
        let l = tokio::time::timeout(Duration::from_secs(10), f.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(l.message, format!("tick {i}"));
    }
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn containers_survive_runtime_restart_and_are_readopted() {
    let t = env("readopt").await;
    let mut spec = sh(
        "survivor",
        "echo started; while [ ! -f /tmp/stop ]; do sleep 0.1; done; echo stopping; exit 7",
    );
    spec.labels
        .insert("task-arn".into(), "arn:aws:ecs:t/1".into());
    run(&t.rt, &spec).await;
    let pid = match t.rt.inspect_container(&spec.id).await.unwrap().state {
        ContainerState::Running { pid } => pid,
        other => panic!("{other:?}"),
    };
    // "kill -9 the agent": drop every handle, including a wait in flight.
    let waiting = {
        let rt = t.rt.clone();
        let id = spec.id.clone();
        tokio::spawn(async move { rt.wait_container(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    waiting.abort();
    let cfg = t.cfg.clone();
    drop(t.rt);

    let rt = ContainerdRuntime::connect(cfg).await.unwrap();
    let found = rt.list_containers().await.unwrap();
    let c = found
        .iter()
        .find(|c| c.labels.get("task-arn").map(String::as_str) == Some("arn:aws:ecs:t/1"))
        .expect("container found by label");
    assert_eq!(c.id, spec.id);
    assert_eq!(
        c.state,
        ContainerState::Running { pid },
        "same process, not restarted"
    );
    let exit = touch_stop_and_wait(&rt, &spec.id).await;
    assert_eq!(exit.code, 7);
    // Logs kept flowing through the restart (the logger belongs to the shim).
    let lines = poll("both log lines", Duration::from_secs(10), || async {
        let l = rt.read_logs(&spec.id, None).await.unwrap();
        (l.len() >= 2).then_some(l)
    })
    .await;
    assert_eq!(lines[0].message, "started");
    assert_eq!(lines[1].message, "stopping");
}

/// The "agent" half of `containers_survive_kill_9_of_the_agent_process`: runs only when
/// that test starts this binary as a child with `FLOTILLA_KILL9_CHILD=1` (otherwise it
/// returns at once). Starts a container, begins waiting on it, says READY, then hangs
/// until it is SIGKILLed.
#[tokio::test]
#[ignore = "needs containerd"]
async fn helper_agent_process_for_kill9() {
    if std::env::var_os("FLOTILLA_KILL9_CHILD").is_none() {
        return;
    }
    let t = common::connect_only("kill9", RotationPolicy::default()).await;
    let spec = sh(
        "victim",
        "i=0; while [ ! -f /tmp/stop ]; do echo \"tick $i\"; i=$((i+1)); sleep 0.1; done; \
         echo done; exit 9",
    );
    let pid = run(&t.rt, &spec).await;
    let rt = t.rt.clone();
    tokio::spawn(async move { rt.wait_container(&id("victim")).await });
    println!("READY {pid}");
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn containers_survive_kill_9_of_the_agent_process() {
    use std::io::BufRead as _;
    let t = env("kill9").await;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_agent_process_for_kill9",
            "--include-ignored",
            "--nocapture",
        ])
        .env("FLOTILLA_KILL9_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(pid) = line.strip_prefix("READY ") {
                let _ = tx.send(pid.trim().parse::<u32>().unwrap());
            }
        }
    });
    let pid = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("child agent ready");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let spec_id = id("victim");
    let c = t.rt.inspect_container(&spec_id).await.unwrap();
    assert_eq!(
        c.state,
        ContainerState::Running { pid },
        "still running, same process"
    );
    // Output keeps flowing with the agent gone.
    let before = t.rt.read_logs(&spec_id, None).await.unwrap().len();
    poll(
        "more output after the kill",
        Duration::from_secs(10),
        || async {
            (t.rt.read_logs(&spec_id, None).await.unwrap().len() > before + 3).then_some(())
        },
    )
    .await;
    let exit = touch_stop_and_wait(&t.rt, &spec_id).await;
    assert_eq!(exit.code, 9);
    let last = poll("final line", Duration::from_secs(10), || async {
        let l = t.rt.read_logs(&spec_id, Some(1)).await.unwrap();
        l.first().filter(|l| l.message == "done").cloned()
    })
    .await;
    assert_eq!(last.stream, LogStream::Stdout);
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn bad_inputs_give_clear_errors() {
    let t = env("errors").await;
    let missing = ImageRef::parse("127.0.0.1:5000/no-such-image:latest").unwrap();
    let e = pull_err(&t.rt, &missing, PullPolicy::Always, None).await;
    assert!(matches!(e, Error::ImageNotFound { .. }), "{e}");
    assert!(e.is_user_error());

    let unreachable = ImageRef::parse("127.0.0.1:1/busybox:latest").unwrap();
    let e = pull_err(&t.rt, &unreachable, PullPolicy::Default, None).await;
    assert!(matches!(e, Error::RegistryUnreachable { .. }), "{e}");

    // Creating from an image never pulled.
    let e = create_err(&t.rt, &ContainerSpec::new(id("nopull"), unreachable)).await;
    assert!(matches!(e, Error::ImageNotPresent { .. }), "{e}");

    let bad = image("bad-entrypoint");
    t.rt.pull_image(&bad, PullPolicy::Default, None)
        .await
        .unwrap();
    let e = create_err(&t.rt, &ContainerSpec::new(id("badentry"), bad)).await;
    match &e {
        Error::EntrypointNotFound { entrypoint, .. } => {
            assert_eq!(entrypoint, "/no/such/entrypoint");
        }
        other => panic!("{other}"),
    }
    // Nothing left behind, and the id is reusable.
    assert!(t.rt.list_containers().await.unwrap().is_empty());
    let ok = sh("badentry", "exit 0");
    run(&t.rt, &ok).await;
    assert_eq!(t.rt.wait_container(&ok.id).await.unwrap().code, 0);
    let e = create_err(&t.rt, &ok).await;
    assert!(matches!(e, Error::ContainerExists { .. }), "{e}");

    // Private registry: refused without credentials, pulled with them.
    let private = ImageRef::parse("127.0.0.1:5001/private/busybox:latest").unwrap();
    let e = pull_err(&t.rt, &private, PullPolicy::Always, None).await;
    assert!(matches!(e, Error::RegistryAuth { .. }), "{e}");
    let e = pull_err(&t.rt, &private, PullPolicy::Always, Some(&auth("wrong"))).await;
    assert!(matches!(e, Error::RegistryAuth { .. }), "{e}");
    let info =
        t.rt.pull_image(&private, PullPolicy::Always, Some(&auth("s3cret")))
            .await
            .unwrap();
    assert!(!info.from_cache);
}

/// Waits (10 s at most) until a `sleep` runs in the container `id`; `what` names it.
async fn wait_for_sleep(rt: &ContainerdRuntime, id: &ContainerId, what: &str) {
    poll(what, Duration::from_secs(10), || async {
        exec(rt, id, &["pidof", "sleep"])
            .await
            .success()
            .then_some(())
    })
    .await;
}

/// A pull that must fail; its error.
async fn pull_err(
    rt: &ContainerdRuntime,
    image: &ImageRef,
    policy: PullPolicy,
    auth: Option<&RegistryAuth>,
) -> Error {
    rt.pull_image(image, policy, auth).await.unwrap_err()
}

/// A create that must fail; its error.
async fn create_err(rt: &ContainerdRuntime, spec: &ContainerSpec) -> Error {
    rt.create_container(spec).await.unwrap_err()
}

/// The private registry's user `flotilla` with `password`.
fn auth(password: &str) -> RegistryAuth {
    RegistryAuth {
        username: "flotilla".into(),
        password: password.into(),
    }
}

#[tokio::test]
#[ignore = "needs containerd"]
async fn gc_removes_stopped_and_unused_but_not_in_use() {
    let t = env("gc").await;
    let done = sh("done", "exit 0");
    run(&t.rt, &done).await;
    t.rt.wait_container(&done.id).await.unwrap();
    let mut web = ContainerSpec::new(id("web"), image("httpd"));
    web.resources.memory_hard_mib = Some(32);
    run(&t.rt, &web).await;
    let hog = image("memhog");
    t.rt.pull_image(&hog, PullPolicy::Default, None)
        .await
        .unwrap();

    // Too young: nothing goes.
    let keep_all = GcPolicy::default();
    let r =
        t.rt.garbage_collect(&keep_all, SystemTime::now())
            .await
            .unwrap();
    assert!(r.containers.is_empty() && r.images.is_empty(), "{r:?}");

    let now_policy = GcPolicy {
        stopped_container_age: Duration::ZERO,
        unused_image_age: Duration::ZERO,
    };
    let r =
        t.rt.garbage_collect(&now_policy, SystemTime::now() + Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(r.containers, vec![done.id.clone()]);
    let mut removed = r.images.clone();
    removed.sort();
    assert_eq!(
        removed,
        vec![image("busybox").to_string(), hog.to_string()],
        "unused images removed, httpd (in use) kept"
    );
    let left: Vec<String> =
        t.rt.list_images()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
    assert_eq!(left, vec![image("httpd").to_string()]);
    assert!(matches!(
        t.rt.inspect_container(&web.id).await.unwrap().state,
        ContainerState::Running { .. }
    ));
    assert_err!(t.rt.remove_image(&image("httpd")).await, Error::ImageInUse);
    assert!(
        !t.cfg.log_dir.join("done.log").exists(),
        "logs removed with the container"
    );
    // The running httpd still serves after GC (its layers were not collected).
    let r =
        t.rt.exec(
            &web.id,
            &ExecSpec {
                args: strs(&["wget", "-q", "-O", "-", "http://127.0.0.1:8080/"]),
                environment: Default::default(),
                timeout: Duration::from_secs(10),
            },
        )
        .await
        .unwrap();
    assert_eq!(r.output.trim(), "flotilla httpd ok", "{r:?}");
    t.rt.stop_container(&web.id, Duration::from_secs(5))
        .await
        .unwrap();
}

/// A Fargate-style container: its own user namespace, in a network namespace it does not
/// own (as an awsvpc task joins the task's). Root inside is uid 1,000,000,000 on the
/// node, the image's files are root's inside, and what it writes to a volume is owned by
/// the mapped uid on the node. A second container of the image reuses the remapped
/// snapshot.
#[tokio::test]
#[ignore = "needs containerd"]
async fn user_namespace_maps_root_to_an_unprivileged_node_uid() {
    use std::os::unix::fs::MetadataExt as _;
    let t = env("userns").await;
    let netns = "flotilla-rt-userns";
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", netns])
        .stderr(std::process::Stdio::null())
        .status();
    assert!(
        std::process::Command::new("ip")
            .args(["netns", "add", netns])
            .status()
            .unwrap()
            .success()
    );
    let map = runtime::IdMapping {
        host_base: 1_000_000_000,
        size: 65_536,
    };
    let vol = t.dir.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(map.host_base), Some(map.host_base)).unwrap();
    for name in ["userns-a", "userns-b"] {
        let mut spec = sh(
            name,
            "set -e; awk '{print $1, $2, $3}' /proc/self/uid_map; id -u; \
             stat -c %u /bin/busybox; echo hi > /data/f; echo hi > /tmp/f; \
             ls /sys/class/net >/dev/null; echo done",
        );
        spec.user_namespace = Some(map);
        spec.network = runtime::NetworkMode::Join(format!("/run/netns/{netns}").into());
        spec.mounts.push(runtime::BindMount {
            host_path: vol.clone(),
            container_path: "/data".into(),
            read_only: false,
        });
        run(&t.rt, &spec).await;
        let status = t.rt.wait_container(&spec.id).await.unwrap();
        let lines = poll("output", Duration::from_secs(10), || async {
            let l = t.rt.read_logs(&spec.id, None).await.unwrap();
            (l.len() >= 4 || status.code != 0).then_some(l)
        })
        .await;
        let out: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(status.code, 0, "{name}: {out:?}");
        assert_eq!(out, ["0 1000000000 65536", "0", "0", "done"], "{name}");
        let owner = std::fs::metadata(vol.join("f")).unwrap();
        assert_eq!((owner.uid(), owner.gid()), (map.host_base, map.host_base));
        t.rt.remove_container(&spec.id).await.unwrap();
    }
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", netns])
        .status();
}
