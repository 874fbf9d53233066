//! Black-box tests of the host layer through the real `flotilla` binary: `host boot`,
//! `host serve`, `apiclient`, `os keygen/build-image/publish`.
//!
//! A "node" is a directory (slots A/B, partition flags, data, run). The node image carries a
//! fake agent (a shell script that "registers" by touching `run/agent-registered`, or never
//! does in the bad image), a container runner script and the health probe in `image.toml`.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

fn flotilla(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("FLOTILLA_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = flotilla(args);
    assert!(
        out.status.success(),
        "flotilla {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    testkit::wait::until(what, timeout, Duration::from_millis(25), f)
}

const GOOD_AGENT: &str = "#!/bin/sh\n# stand-in for `flotilla agent`: registers at once\nRUN=$1; shift\necho \"$@\" > \"$RUN/agent-args\"\necho agent >> \"$RUN/order.log\"\ntouch \"$RUN/agent-registered\"\necho $$ > \"$RUN/agent.pid\"\nexec sleep 1000\n";
const BAD_AGENT: &str = "#!/bin/sh\n# a broken agent: never registers\nRUN=$1\necho broken-agent >> \"$RUN/order.log\"\nexit 1\n";
const RUNNER: &str = "#!/bin/sh\n# container runner stand-in: TYPE NAME SOURCE\necho \"$1 $2\" >> \"$FLOTILLA_RUN/order.log\"\nif [ \"$1\" = host ]; then exec sleep 1000; fi\ncase \"$3\" in fail*) exit 1;; esac\nexit 0\n";

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let fx = Fx {
            dir: tempfile::tempdir().unwrap(),
        };
        ok(&["os", "keygen", "--out", fx.s("keys")]);
        std::fs::create_dir_all(fx.p("proc-sys/vm")).unwrap();
        fx
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn s(&self, s: &str) -> &'static str {
        Box::leak(self.p(s).display().to_string().into_boxed_str())
    }
    fn node(&self) -> &'static str {
        self.s("node")
    }
    fn socket(&self) -> &'static str {
        self.s("api.sock")
    }
    /// Builds an image; `good` decides whether its agent ever becomes healthy.
    fn image(&self, version: &str, good: bool, with_binary: bool) -> &'static str {
        let overlay = self.p(&format!("overlay-{version}"));
        std::fs::create_dir_all(overlay.join("bin")).unwrap();
        std::fs::write(
            overlay.join("bin/fake-agent"),
            if good { GOOD_AGENT } else { BAD_AGENT },
        )
        .unwrap();
        std::fs::write(overlay.join("bin/run-container"), RUNNER).unwrap();
        let meta = self.p(&format!("meta-{version}.toml"));
        std::fs::write(
            &meta,
            "[agent]\ncommand = [\"sh\", \"{slot}/bin/fake-agent\", \"{run}\"]\n\n[health]\ncommand = [\"test\", \"-f\", \"{run}/agent-registered\"]\ntimeout-secs = 3\n\n[containers]\ncommand = [\"sh\", \"{slot}/bin/run-container\"]\n",
        )
        .unwrap();
        let out = self.s(&format!("node-{version}.tar.gz"));
        let mut args = vec![
            "os",
            "build-image",
            "--version",
            version,
            "--out",
            out,
            "--root-json",
            self.s("keys/root.json"),
            "--overlay",
            Box::leak(overlay.display().to_string().into_boxed_str()),
            "--meta",
            Box::leak(meta.display().to_string().into_boxed_str()),
        ];
        if !with_binary {
            args.push("--no-binary");
        }
        ok(&args);
        out
    }
    fn publish(&self, image: &str, extra: &[&str]) {
        let mut args = vec![
            "os",
            "publish",
            "--repo",
            self.s("repo"),
            "--root",
            self.s("keys/root.json"),
            "--key",
            self.s("keys/key-1.pk8"),
            "--image",
            image,
        ];
        args.extend_from_slice(extra);
        ok(&args);
    }
    fn install(&self, version: &str) {
        let img = self.image(version, true, false);
        ok(&[
            "host",
            "install",
            "--node-root",
            self.node(),
            "--image",
            img,
        ]);
    }
    fn boot_cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.args([
            "host",
            "boot",
            "--node-root",
            self.node(),
            "--socket",
            self.socket(),
            "--proc-sys",
            self.s("proc-sys"),
        ])
        .env("FLOTILLA_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    }
    /// Starts `host boot` and waits until it is healthy (or exits).
    fn boot(&self) -> Booted {
        // the marker of the previous boot must not count for this one
        let _ = std::fs::remove_file(self.p("node/run/boot-successful"));
        let child = self.boot_cmd().spawn().unwrap();
        let mut b = Booted { child: Some(child) };
        let marker = self.p("node/run/boot-successful");
        poll("boot to finish", Duration::from_secs(30), || {
            if marker.exists() {
                return Some(());
            }
            let exited = b
                .child
                .as_mut()
                .map(|c| c.try_wait().unwrap().is_some())
                .unwrap_or(true);
            exited.then_some(())
        });
        b
    }
    fn api(&self, args: &[&str]) -> Output {
        let mut a = vec!["apiclient", "--socket", self.socket()];
        a.extend_from_slice(args);
        flotilla(&a)
    }
    fn api_ok(&self, args: &[&str]) -> String {
        let out = self.api(args);
        assert!(
            out.status.success(),
            "apiclient {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn api_json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.api_ok(args)).unwrap()
    }
    fn flags(&self) -> Value {
        serde_json::from_str(&ok(&["host", "flags", "--node-root", self.node()])).unwrap()
    }
    /// Bootstrap containers in order first; then host containers and the agent (which start
    /// side by side, so their relative order is not fixed).
    fn assert_order(&self, bootstrap: &[&str]) {
        let want = bootstrap.len() + 2;
        let order = poll(
            "host container and agent started",
            Duration::from_secs(10),
            || {
                let o = self.order();
                (o.len() >= want).then_some(o)
            },
        );
        assert!(order.len() >= bootstrap.len(), "{order:?}");
        assert_eq!(&order[..bootstrap.len()], bootstrap, "{order:?}");
        let mut rest = order[bootstrap.len()..].to_vec();
        rest.sort();
        assert_eq!(rest, ["agent", "host admin"], "{order:?}");
    }
    fn order(&self) -> Vec<String> {
        std::fs::read_to_string(self.p("node/run/order.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
    fn use_repo(&self) {
        let md = format!(
            "updates.metadata-base-url={}",
            self.p("repo/metadata").display()
        );
        let tg = format!(
            "updates.targets-base-url={}",
            self.p("repo/targets").display()
        );
        self.api_ok(&["set", &md, &tg, "updates.ignore-waves=true"]);
    }
}

struct Booted {
    child: Option<Child>,
}

impl Booted {
    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
    /// Waits for the boot process to exit (after `apiclient reboot` or a failed boot).
    fn wait(mut self) -> Output {
        self.child.take().unwrap().wait_with_output().unwrap()
    }
    fn stop(mut self) -> Output {
        let child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

fn write_user_data(fx: &Fx, text: &str) {
    std::fs::write(fx.p("node/user-data.toml"), text).unwrap();
}

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
    assert_eq!(fx.api_json(&["-u", "/os"])["version_id"], "1.0.0");
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
    let mut serve = Command::new(BIN)
        .args([
            "host",
            "serve",
            "--socket",
            fx.socket(),
            "--data-dir",
            data,
            "--proc-sys",
            fx.s("proc-sys"),
        ])
        .spawn()
        .unwrap();
    poll("socket", Duration::from_secs(10), || {
        fx.p("api.sock").exists().then_some(())
    });
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
        let c = Command::new(BIN)
            .args([
                "host",
                "serve",
                "--socket",
                fx.socket(),
                "--data-dir",
                data,
                "--proc-sys",
                fx.s("proc-sys"),
            ])
            .env("FLOTILLA_TEST_SLOW_COMMIT_MS", "100")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        poll("socket", Duration::from_secs(10), || {
            fx.p("api.sock").exists().then_some(())
        });
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

fn update_to(fx: &Fx, version: &str) -> Value {
    fx.use_repo();
    let check = fx.api_json(&["update", "check"]);
    assert_eq!(check["update_state"], "Available", "{check}");
    assert_eq!(check["chosen_update"]["version"], version);
    let status = fx.api_json(&["update", "apply"]);
    assert_eq!(status["update_state"], "Ready", "{status}");
    assert_eq!(
        fx.api_json(&["-u", "/updates/status"])["update_state"],
        "Ready"
    );
    status
}

#[test]
fn good_update_goes_a_to_b_and_os_reports_the_new_version() {
    let fx = Fx::new();
    fx.install("1.0.0");
    let migration = fx.p("add-attr.json");
    std::fs::write(&migration, r#"{"ops":[{"op":"add","key":"settings.ecs.instance-attributes.migrated","value":"1.1.0"}]}"#).unwrap();
    // the new image carries the real flotilla binary
    let img = fx.image("1.1.0", true, true);
    fx.publish(
        img,
        &[
            "--migration",
            &format!("1.0.0:1.1.0:{}", migration.display()),
        ],
    );
    let b = fx.boot();
    assert_eq!(fx.api_json(&["-u", "/os"])["version_id"], "1.0.0");
    // no status before the first command
    let out = fx.api(&["-u", "/updates/status"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("404"));
    update_to(&fx, "1.1.0");
    fx.api_ok(&["reboot"]);
    assert!(b.wait().status.success());
    let b = fx.boot();
    assert_eq!(fx.api_json(&["-u", "/os"])["version_id"], "1.1.0");
    let flags = fx.flags();
    assert_eq!(flags["active"], "b");
    assert_eq!(flags["b"]["successful"], true);
    assert!(
        fx.p("node/slots/b/bin/flotilla").exists(),
        "image ships the binary"
    );
    let attrs = fx.api_json(&["get", "ecs.instance-attributes"]);
    assert_eq!(
        attrs["settings"]["ecs"]["instance-attributes"]["migrated"], "1.1.0",
        "migration ran at boot"
    );
    // the shipped binary runs
    let v = Command::new(fx.p("node/slots/b/bin/flotilla"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(v.status.success());
    // manual rollback to A
    fx.api_ok(&["update", "rollback"]);
    fx.api_ok(&["reboot"]);
    assert!(b.wait().status.success());
    let b = fx.boot();
    assert_eq!(fx.api_json(&["-u", "/os"])["version_id"], "1.0.0");
    let attrs = fx.api_json(&["get", "ecs"]);
    assert!(
        attrs["settings"]["ecs"]
            .get("instance-attributes")
            .is_none(),
        "migration reversed: {attrs}"
    );
    b.stop();
}

#[test]
fn bad_image_fails_health_and_the_node_returns_to_a_by_itself() {
    let fx = Fx::new();
    fx.install("1.0.0");
    let img = fx.image("1.1.0", false, false);
    fx.publish(img, &[]);
    let b = fx.boot();
    update_to(&fx, "1.1.0");
    fx.api_ok(&["reboot"]);
    assert!(b.wait().status.success());
    // boot into B: the agent never registers, the health probe times out, boot fails
    let out = fx.boot().wait();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("health probe"), "{err}");
    let flags = fx.flags();
    assert_eq!(
        (
            flags["active"].as_str(),
            flags["b"]["successful"].as_bool(),
            flags["b"]["tries_left"].as_u64()
        ),
        (Some("b"), Some(false), Some(0))
    );
    // next boot falls back to A without anyone doing anything
    let b = fx.boot();
    assert_eq!(fx.flags()["active"], "a");
    assert_eq!(fx.api_json(&["-u", "/os"])["version_id"], "1.0.0");
    b.stop();
}

#[test]
fn update_cancel_before_reboot_keeps_a() {
    let fx = Fx::new();
    fx.install("1.0.0");
    let img = fx.image("1.1.0", true, false);
    fx.publish(img, &[]);
    let b = fx.boot();
    update_to(&fx, "1.1.0");
    let s = fx.api_json(&["update", "cancel"]);
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(s["active_partition"]["next_to_boot"], true);
    // activate/deactivate state errors are 409 with a message
    let out = fx.api(&["update", "cancel"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("409"));
    fx.api_ok(&["reboot"]);
    assert!(b.wait().status.success());
    let b = fx.boot();
    assert_eq!(fx.api_json(&["-u", "/os"])["version_id"], "1.0.0");
    b.stop();
}

#[test]
fn tampered_repository_is_refused_through_the_cli_and_node_is_unchanged() {
    let fx = Fx::new();
    fx.install("1.0.0");
    let img = fx.image("1.1.0", true, false);
    fx.publish(img, &[]);
    // arbitrary software: flip a byte of the published image
    let target = std::fs::read_dir(fx.p("repo/targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.to_string_lossy()
                .ends_with("flotilla-node-1.1.0-x86_64.tar.gz")
        })
        .unwrap();
    let mut bytes = std::fs::read(&target).unwrap();
    let n = bytes.len() - 10;
    bytes[n] ^= 1;
    std::fs::write(&target, bytes).unwrap();
    let b = fx.boot();
    fx.use_repo();
    let check = fx.api_json(&["update", "check"]);
    assert_eq!(check["update_state"], "Available");
    let out = fx.api(&["update", "apply"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TUF target") && err.contains("flotilla-node-1.1.0"),
        "{err}"
    );
    let st = fx.api_json(&["-u", "/updates/status"]);
    assert_eq!(st["update_state"], "Available");
    assert_eq!(st["most_recent_command"]["cmd_status"], "Failed");
    assert_eq!(fx.flags()["b"]["tries_left"], 0);
    fx.api_ok(&["reboot"]);
    assert!(b.wait().status.success());
    let b = fx.boot();
    assert_eq!(fx.api_json(&["-u", "/os"])["version_id"], "1.0.0");
    b.stop();
}

#[test]
fn failing_migration_at_boot_is_fail_safe_and_the_node_falls_back() {
    let fx = Fx::new();
    fx.install("1.0.0");
    write_user_data(&fx, "[settings]\nmotd = \"keep me\"\n");
    let migration = fx.p("broken.json");
    std::fs::write(
        &migration,
        r#"{"ops":[{"op":"rename","from":"settings.does-not-exist","to":"settings.motd"}]}"#,
    )
    .unwrap();
    let img = fx.image("1.1.0", true, false);
    fx.publish(
        img,
        &[
            "--migration",
            &format!("1.0.0:1.1.0:{}", migration.display()),
        ],
    );
    let b = fx.boot();
    update_to(&fx, "1.1.0");
    fx.api_ok(&["reboot"]);
    assert!(b.wait().status.success());
    let out = fx.boot().wait();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migrating datastore 1.0.0 -> 1.1.0") && err.contains("does-not-exist"),
        "{err}"
    );
    // the datastore is untouched and the next boot is back on A
    let b = fx.boot();
    assert_eq!(fx.flags()["active"], "a");
    assert_eq!(fx.api_json(&["-u", "/os"])["version_id"], "1.0.0");
    assert_eq!(fx.api_json(&["get", "motd"])["settings"]["motd"], "keep me");
    b.stop();
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

#[test]
fn publisher_waves_hold_an_update_back_and_a_pulled_release_rolls_back() {
    let fx = Fx::new();
    // the node runs 1.1.0
    let img = fx.image("1.1.0", true, false);
    ok(&["host", "install", "--node-root", fx.node(), "--image", img]);
    let policy = fx.p("waves.toml");
    std::fs::write(
        &policy,
        "[[waves]]\nstart-after = \"1h\"\nfleet-percentage = 1\n\n[[waves]]\nstart-after = \"4h\"\nfleet-percentage = 5\n\n[[waves]]\nstart-after = \"1d\"\nfleet-percentage = 100\n",
    )
    .unwrap();
    let img12 = fx.image("1.2.0", true, false);
    fx.publish(img12, &["--wave-policy", fx.s("waves.toml")]);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fx.p("repo/staging/manifest.json")).unwrap())
            .unwrap();
    let keys: Vec<&String> = manifest["updates"][0]["waves"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, ["0", "102", "20"]); // JSON object order; seeds 0, 20, 102
    let b = fx.boot();
    let md = format!(
        "updates.metadata-base-url={}",
        fx.p("repo/metadata").display()
    );
    let tg = format!(
        "updates.targets-base-url={}",
        fx.p("repo/targets").display()
    );
    fx.api_ok(&[
        "set",
        &md,
        &tg,
        "updates.seed=0",
        "updates.ignore-waves=false",
    ]);
    let s = fx.api_json(&["update", "check"]);
    assert_eq!(s["update_state"], "Idle", "wave opens in an hour: {s}");
    assert_eq!(s["available_updates"], serde_json::json!(["1.2.0"]));
    fx.api_ok(&["set", "updates.ignore-waves=true"]);
    let s = fx.api_json(&["update", "check"]);
    assert_eq!(s["chosen_update"]["version"], "1.2.0");
    // 1.2.0 is pulled: max_version lowered to 1.0.0, and 1.0.0 published. A node above the
    // max rolls back to the newest version at or below it.
    let img10 = fx.image("1.0.0", true, false);
    fx.publish(img10, &["--max-version", "1.0.0"]);
    let s = fx.api_json(&["update", "check"]);
    assert_eq!(s["update_state"], "Available", "{s}");
    assert_eq!(s["chosen_update"]["version"], "1.0.0");
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
