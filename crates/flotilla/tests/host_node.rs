//! Black-box tests of the host layer through the real `flotilla` binary: `host boot`,
//! `host serve`, `apiclient` — first boot and user-data, settings and their commits, the
//! boot supervisor, stored values refused at startup. Updates between images are in
//! `host_node_updates.rs`; the fake node both use is in [`host_support`].

mod host_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use host_support::{BIN, Fx, poll, write_user_data};

const USER_DATA: &str = r#"
[settings.ecs]
cluster = "prod"
endpoint = "http://127.0.0.1:9"
instance-attributes = { tier = "web" }

[settings.kernel.sysctl]
"vm.max_map_count" = "262144"

[settings.bootstrap-containers.b-second]
source = "example/setup:2"
mode = "always"

[settings.bootstrap-containers.a-first]
source = "example/setup:1"
mode = "once"
essential = true

[settings.host-containers.admin]
enabled = true
source = "example/admin:1"
superpowered = true

[settings.host-containers.control]
enabled = false
source = "example/control:1"
"#;

#[test]
fn first_boot_applies_user_data_then_bootstrap_containers_in_order_then_agent() {
    let fx = Fx::new();
    fx.install("1.0.0");
    write_user_data(&fx, USER_DATA);
    let mut b = fx.boot();
    assert!(b.running(), "boot should be up and healthy");
    fx.assert_order(&["bootstrap a-first", "bootstrap b-second"]);
    let args = std::fs::read_to_string(fx.p("node/run/agent-args")).unwrap();
    assert!(
        args.contains("--cluster prod")
            && args.contains("--attributes tier=web")
            && args.contains("--endpoint http://127.0.0.1:9")
            && args.contains(&format!(
                "--instance-id {}",
                std::fs::read_to_string(fx.p("node/data/node-id"))
                    .unwrap()
                    .trim()
            )),
        "{args}"
    );
    assert_eq!(
        std::fs::read_to_string(fx.p("proc-sys/vm/max_map_count")).unwrap(),
        "262144\n"
    );
    let s = fx.api_json(&["get", "ecs.cluster"]);
    assert_eq!(s["settings"]["ecs"]["cluster"], "prod");
    // `once` bootstrap container switched itself off
    assert_eq!(
        fx.api_json(&["get", "bootstrap-containers.a-first.mode"])["settings"]["bootstrap-containers"]
            ["a-first"]["mode"],
        "off"
    );
    assert_eq!(fx.os_version(), "1.0.0");
    // changing the cluster restarts the agent with the new cluster
    fx.api_ok(&["set", "ecs.cluster=blue"]);
    poll(
        "agent restarted with new cluster",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(fx.p("node/run/agent-args"))
                .ok()
                .filter(|a| a.contains("--cluster blue"))
        },
    );
    // reboot: the boot process exits, the next boot keeps settings and skips the `once` container
    fx.api_ok(&["reboot"]);
    let out = b.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = fx.boot();
    fx.assert_order(&["bootstrap b-second"]);
    assert_eq!(
        fx.api_json(&["get", "ecs.cluster"])["settings"]["ecs"]["cluster"],
        "blue"
    );
    b.stop();
}

#[test]
fn bad_user_data_stops_first_boot_with_nothing_applied() {
    for (ud, want) in [
        ("[settings.ecs\ncluster = \"x\"\n", "TOML syntax error"),
        ("[settings.ecs]\nclustr = \"x\"\n", "clustr"),
        ("[settings.ecs]\ncluster = 42\n", "settings.ecs.cluster"),
        (
            "[settings.kernel.sysctl]\n\"vm.max_map_count\" = 5\n",
            "settings.kernel.sysctl",
        ),
        // a value that would inject a line into resolv.conf (issue 10)
        (
            "[settings.dns]\nsearch-list = [\"a.example\\nnameserver 6.6.6.6\"]\n",
            "settings.dns.search-list",
        ),
    ] {
        let fx = Fx::new();
        fx.install("1.0.0");
        write_user_data(&fx, ud);
        let flags_before = fx.flags();
        let out = fx.boot().wait();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "boot must fail for {ud:?}");
        assert!(
            stderr.contains("user-data") || stderr.contains(want),
            "{stderr}"
        );
        assert!(
            stderr.contains(want),
            "message should name {want:?}: {stderr}"
        );
        assert!(
            !fx.p("node/data/datastore").exists(),
            "no datastore left behind"
        );
        assert!(fx.order().is_empty(), "nothing started");
        assert!(!fx.p("proc-sys/vm/max_map_count").exists());
        assert_eq!(fx.flags(), flags_before);
    }
}

#[test]
fn apiclient_reports_server_errors_with_nonzero_exit() {
    let fx = Fx::new();
    let data = fx.s("data");
    let mut serve = fx.serve_cmd(data).spawn().unwrap();
    fx.wait_for_socket();
    let out = fx.api(&["set", "ecs.bogus=1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("settings.ecs.bogus"), "{err}");
    // the server's own 400 naming the key
    let out = fx.api(&[
        "-u",
        "/settings?tx=x",
        "-m",
        "PATCH",
        "-d",
        r#"{"ecs":{"cluster":false}}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("settings.ecs.cluster") && err.contains("400"),
        "{err}"
    );
    // keys with or without the settings. prefix, values typed by the schema
    fx.api_ok(&[
        "set",
        "settings.motd=hi",
        "ecs.cluster=123",
        "updates.seed=5",
    ]);
    let v = fx.api_json(&["get", "settings.ecs", "motd"]);
    assert_eq!(v["settings"]["ecs"]["cluster"], "123");
    assert_eq!(v["settings"]["motd"], "hi");
    fx.api_ok(&["set", "--json", r#"{"settings": {"motd": "json"}}"#]);
    assert_eq!(fx.api_json(&["-u", "/settings?keys=motd"])["motd"], "json");
    // apply TOML from stdin
    let mut child = Command::new(BIN)
        .args(["apiclient", "--socket", fx.socket(), "apply"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"[settings.dns]\nname-servers = [\"10.1.1.1\"]\n")
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        std::fs::read_to_string(fx.p("data/etc/resolv.conf")).unwrap(),
        "nameserver 10.1.1.1\n"
    );
    // bad TOML to apply: non-zero, message
    std::fs::write(
        fx.p("bad.toml"),
        "[settings.dns]\nname-servers = \"nope\"\n",
    )
    .unwrap();
    let out = fx.api(&["apply", fx.s("bad.toml")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("settings.dns.name-servers"));
    // update actions without a node: clear error
    let out = fx.api(&["update", "check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("node"));
    let _ = serve.kill();
    let _ = serve.wait();
}

#[test]
fn kill_9_during_commit_leaves_old_or_new_settings_never_a_mix() {
    let fx = Fx::new();
    let data = fx.s("data");
    let start = || {
        let _ = std::fs::remove_file(fx.p("api.sock"));
        let c = fx
            .serve_cmd(data)
            .env("FLOTILLA_TEST_SLOW_COMMIT_MS", "100")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        fx.wait_for_socket();
        c
    };
    let mut server = start();
    fx.api_ok(&[
        "set",
        "motd=v0",
        "ecs.cluster=v0",
        "dns.search-list=[\"v0\"]",
    ]);
    let mut seen_new = 0;
    for i in 1..=8u64 {
        let v = format!("v{i}");
        let mut setter = Command::new(BIN)
            .args([
                "apiclient",
                "--socket",
                fx.socket(),
                "set",
                &format!("motd={v}"),
                &format!("ecs.cluster={v}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // wait until this transaction's pending document exists, then kill at a varying
        // point inside the (slowed) commit sequence
        poll("pending tx", Duration::from_secs(10), || {
            let pend = std::fs::read_dir(fx.p("data/datastore/current/pending")).ok()?;
            (pend.count() > 0).then_some(())
        });
        std::thread::sleep(Duration::from_millis(30 * i));
        let _ = Command::new("kill")
            .arg("-9")
            .arg(server.id().to_string())
            .status();
        let _ = server.wait();
        let _ = setter.wait();
        server = start();
        let live = fx.api_json(&["-u", "/settings"]);
        let motd = live["motd"].as_str().unwrap().to_owned();
        assert_eq!(
            live["ecs"]["cluster"],
            motd.as_str(),
            "mixed settings after kill -9: {live}"
        );
        if motd == v {
            seen_new += 1;
        }
        // whatever was pending is either committed or still pending, never partially applied
    }
    eprintln!("{seen_new}/8 commits landed before the kill");
    let _ = server.kill();
    let _ = server.wait();
}

/// A sysctl the kernel refuses (here: unknown) is logged at boot and does not stop it: the node
/// comes up healthy and the API that can fix the value is there.
#[test]
fn refused_sysctl_in_user_data_does_not_stop_the_boot() {
    let fx = Fx::new();
    fx.install("1.0.0");
    write_user_data(
        &fx,
        "[settings.kernel.sysctl]\n\"nosuch.knob\" = \"1\"\n\"vm.max_map_count\" = \"262144\"\n",
    );
    let mut b = fx.boot();
    assert!(b.running(), "boot should be up and healthy");
    assert_eq!(
        std::fs::read_to_string(fx.p("proc-sys/vm/max_map_count")).unwrap(),
        "262144\n"
    );
    // a later sysctl change reports the refused key truthfully: committed, not applied
    let out = fx.api(&["set", "kernel.sysctl.\"vm.max_map_count\"=1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuch.knob") && err.contains("committed but not applied"),
        "{err}"
    );
    b.stop();
}

#[test]
fn crashed_agent_is_restarted_by_the_boot_supervisor() {
    let fx = Fx::new();
    fx.install("1.0.0");
    let b = fx.boot();
    let pid_file = fx.p("node/run/agent.pid");
    let first = poll("agent pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|p| !p.trim().is_empty())
    });
    let status = Command::new("kill")
        .arg("-9")
        .arg(first.trim())
        .status()
        .unwrap();
    assert!(status.success());
    let second = poll("agent restarted", Duration::from_secs(15), || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|p| !p.trim().is_empty() && p != &first)
    });
    assert_ne!(first, second);
    let log = std::fs::read_to_string(fx.p("node/run/order.log")).unwrap();
    assert_eq!(log.matches("agent").count(), 2, "{log}");
    b.stop();
}

/// Every stored record must be survivable at startup. The live datastore holds values an
/// older version accepted and this one refuses (written here by hand among good ones): the
/// node boots all the same, the good values are in effect, each bad key is left out (logged and
/// listed by `apiclient get` under `dropped`, without its value), and a pending transaction
/// holding such a value is refused at commit with a 400 naming the key.
#[test]
fn stored_values_refused_now_do_not_stop_the_boot_and_are_reported() {
    let fx = Fx::new();
    fx.install("1.0.0");
    write_user_data(
        &fx,
        "[settings]\nmotd = \"hello\"\n[settings.ecs]\ncluster = \"prod\"\nendpoint = \"http://127.0.0.1:9\"\n",
    );
    fx.boot().stop();
    let live_path = fx.p("node/data/datastore/current/live.json");
    let mut live: Value =
        serde_json::from_str(&std::fs::read_to_string(&live_path).unwrap()).unwrap();
    live["ecs"]["endpoint"] = "http://admin:hunter2@127.0.0.1:9".into();
    live["ntp"] = serde_json::json!({"time-servers": ["ntp://time.example/path"]});
    live["dns"] =
        serde_json::json!({"name-servers": ["10.0.0.53"], "search-list": ["corp_x.example"]});
    std::fs::write(&live_path, serde_json::to_vec(&live).unwrap()).unwrap();

    let mut b = fx.boot();
    assert!(b.running(), "boot should be up and healthy");
    let args = std::fs::read_to_string(fx.p("node/run/agent-args")).unwrap();
    assert!(
        args.contains("--cluster prod") && !args.contains("--endpoint"),
        "{args}"
    );
    assert_eq!(
        std::fs::read_to_string(fx.p("node/etc/resolv.conf")).unwrap(),
        "nameserver 10.0.0.53\n"
    );
    let model = fx.api_json(&["get"]);
    assert_eq!(model["settings"]["motd"], "hello");
    assert_eq!(model["settings"]["ecs"]["cluster"], "prod");
    let dropped = model["dropped"].as_object().unwrap();
    assert_eq!(
        dropped.keys().collect::<Vec<_>>(),
        [
            "settings.dns.search-list",
            "settings.ecs.endpoint",
            "settings.ntp.time-servers"
        ],
        "{model}"
    );
    assert!(!model.to_string().contains("hunter2"), "{model}");
    let ntp = fx.api_json(&["get", "ntp"]);
    assert!(
        ntp["dropped"]["settings.ntp.time-servers"]
            .as_str()
            .unwrap()
            .contains("only a host and port"),
        "{ntp}"
    );
    // the node can still be configured; a valid value replaces a dropped one
    fx.api_ok(&["set", "motd=changed", "ecs.endpoint=http://127.0.0.1:10"]);
    poll(
        "agent restarted with the new endpoint",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(fx.p("node/run/agent-args"))
                .ok()
                .filter(|a| a.contains("--endpoint http://127.0.0.1:10"))
        },
    );
    // a pending transaction stored with a refused value: 400 naming the key, nothing committed
    std::fs::write(
        fx.p("node/data/datastore/current/pending/old.json"),
        br#"{"motd": "old", "dns": {"search-list": ["a_b.example"]}}"#,
    )
    .unwrap();
    let out = fx.api(&["-u", "/tx/commit_and_apply?tx=old", "-m", "POST"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("settings.dns.search-list") && err.contains("400"),
        "{err}"
    );
    assert_eq!(fx.api_json(&["get", "motd"])["settings"]["motd"], "changed");
    assert!(b.running());
    let out = b.stop();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("stored setting no longer valid") && log.contains("settings.ntp.time-servers"),
        "{log}"
    );
    assert!(!log.contains("hunter2"), "{log}");
}
