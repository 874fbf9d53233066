//! Host and bootstrap containers through containerd, black-box: the real `flotilla host boot`
//! (an image without a runner command), the repo's private containerd
//! (`scripts/start-containerd.sh`) and a test image built from the local registry's busybox.
//!
//! The image's entrypoint runs the container's user-data as a shell script, so each test
//! says what its containers do (write what they see into their persistent storage,
//! `NODE/data/{host,bootstrap}-containers/NAME`, which the test reads). Every test uses its
//! own containerd namespaces. Needs root and containerd: `#[ignore]`d, run by
//! `scripts/test.sh` (`--include-ignored`).

mod host_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use host_support::{BIN, boot_command, build_image, install, ok, terminate};

const IMAGE: &str = "127.0.0.1:5000/flotilla-host-test:latest";
/// The test image's entrypoint: run the user-data (base64 of a shell script).
const ENTRYPOINT: &str =
    "echo \"$FLOTILLA_CONTAINER_USER_DATA\" | base64 -d > /tmp/script && exec sh /tmp/script";
const AGENT: &str = "#!/bin/sh\nRUN=$1; shift\necho \"$@\" > \"$RUN/agent-args\"\ntouch \"$RUN/agent-registered\"\nexec sleep 1000\n";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The private containerd's socket; test images pushed; the logger binary built.
fn infrastructure() -> &'static (PathBuf, PathBuf) {
    static INFRA: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    INFRA.get_or_init(|| {
        let socket = sh("scripts/start-containerd.sh");
        let socket = PathBuf::from(socket.trim().lines().last().unwrap());
        sh("scripts/build-test-images.sh");
        let entry = ENTRYPOINT.replace('\'', "'\\''");
        sh(&format!(
            "set -e; W=/tmp/flotilla-host-test-image; mkdir -p $W; exec 9>$W.lock; flock 9; \
             rm -rf $W/oci; \
             skopeo copy --quiet --src-tls-verify=false docker://127.0.0.1:5000/busybox:latest oci:$W/oci:busybox; \
             umoci config --image $W/oci:busybox --tag hostctr --clear config.cmd \
               --config.entrypoint sh --config.entrypoint -c --config.entrypoint '{entry}'; \
             skopeo copy --quiet --dest-tls-verify=false oci:$W/oci:hostctr docker://{IMAGE}"
        ));
        let logger = Path::new(BIN).with_file_name("flotilla-runtime-logger");
        if !logger.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-p", "runtime", "--bin", "flotilla-runtime-logger"])
                .current_dir(repo_root())
                .status()
                .unwrap();
            assert!(st.success() && logger.exists(), "building the logger");
        }
        (socket, logger)
    })
}

/// Standard base64 with padding (what `settings.*.user-data` holds).
fn b64(text: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    testkit::wait::until(what, timeout, Duration::from_millis(50), f)
}

/// A script for a host container: records what it sees in its storage, then runs until
/// SIGTERM. `tag` tells configurations apart.
fn host_script(tag: &str, marker: &Path) -> String {
    format!(
        "S=/.bottlerocket/host-containers/current\n\
         echo {tag} >> $S/starts\n\
         grep CapEff /proc/self/status | cut -f2 > $S/caps\n\
         if [ -e /.bottlerocket/rootfs{marker} ]; then echo yes; else echo no; fi > $S/rootfs\n\
         if [ -d /proc/{pid} ]; then echo yes; else echo no; fi > $S/hostpid\n\
         if [ -S /run/api.sock ] && [ -S \"$FLOTILLA_API_SOCKET\" ]; then echo yes; else echo no; fi > $S/sock\n\
         trap 'exit 0' TERM\n\
         while :; do sleep 1; done\n",
        marker = marker.display(),
        pid = std::process::id(),
    )
}

struct Node {
    dir: tempfile::TempDir,
    ns: String,
    boot: Option<Child>,
}

impl Node {
    /// A node with slot A installed (an image without `[containers] command`) and
    /// `user_data`; `ns` is the containerd namespace of its host containers.
    fn new(ns: &str, user_data: &str) -> Node {
        infrastructure();
        let n = Node {
            dir: tempfile::tempdir().unwrap(),
            ns: ns.to_owned(),
            boot: None,
        };
        n.clean();
        let overlay = n.p("overlay/bin");
        std::fs::create_dir_all(&overlay).unwrap();
        std::fs::write(overlay.join("fake-agent"), AGENT).unwrap();
        std::fs::write(
            n.p("meta.toml"),
            "[agent]\ncommand = [\"sh\", \"{slot}/bin/fake-agent\", \"{run}\"]\n\n[health]\ncommand = [\"test\", \"-f\", \"{run}/agent-registered\"]\ntimeout-secs = 20\n",
        )
        .unwrap();
        std::fs::create_dir_all(n.p("proc-sys")).unwrap();
        n.ok(&["os", "keygen", "--out", &n.s("keys")]);
        build_image(
            "1.0.0",
            &n.s("img.tar.gz"),
            &n.s("keys/root.json"),
            &n.s("overlay"),
            &n.s("meta.toml"),
            false,
        );
        install(&n.s("node"), &n.s("img.tar.gz"));
        std::fs::write(n.p("node/user-data.toml"), user_data).unwrap();
        n
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn s(&self, s: &str) -> String {
        self.p(s).display().to_string()
    }
    fn ok(&self, args: &[&str]) -> String {
        ok(args)
    }
    fn api(&self, args: &[&str]) -> String {
        let sock = self.s("api.sock");
        let mut a = vec!["apiclient", "--socket", &sock];
        a.extend_from_slice(args);
        self.ok(&a)
    }
    fn ctr(&self, ns: &str, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&infrastructure().0)
            .args(["-n", ns])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Container ids in namespace `ns`.
    fn containers(&self, ns: &str) -> Vec<String> {
        self.ctr(ns, &["containers", "ls", "-q"])
            .lines()
            .map(str::to_owned)
            .collect()
    }
    /// Pid of the running task `id` in this node's host namespace.
    fn running_pid(&self, id: &str) -> Option<u32> {
        self.ctr(&self.ns, &["tasks", "ls"]).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[0] == id && f[2] == "RUNNING").then(|| f[1].parse().ok())?
        })
    }
    fn storage(&self, kind: &str, name: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.p(&format!("node/data/{kind}-containers/{name}/{file}")))
            .ok()
            .map(|s| s.trim().to_owned())
    }
    fn starts(&self, name: &str) -> Vec<String> {
        self.storage("host", name, "starts")
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
    fn boot_child(&self) -> Child {
        let _ = std::fs::remove_file(self.p("node/run/boot-successful"));
        let (socket, logger) = infrastructure();
        boot_command(&self.s("node"), &self.s("api.sock"), &self.s("proc-sys"))
            .args(["--containerd-namespace", &self.ns])
            .arg("--containerd-socket")
            .arg(socket)
            .arg("--containerd-logger")
            .arg(logger)
            .env("FLOTILLA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.p("boot.log")).unwrap())
            .spawn()
            .unwrap()
    }
    /// Starts `host boot` and waits until it is healthy.
    fn boot(&mut self) {
        let mut child = self.boot_child();
        let marker = self.p("node/run/boot-successful");
        poll("boot to be healthy", Duration::from_secs(60), || {
            if marker.exists() {
                return Some(());
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!("host boot exited ({st}): {}", self.log());
            }
            None
        });
        self.boot = Some(child);
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.p("boot.log")).unwrap_or_default()
    }
    /// SIGTERM to `host boot` (a host-layer restart's first half); waits for it to exit.
    fn stop(&mut self) -> Output {
        terminate(self.boot.take().expect("booted"))
    }
    /// Removes every container of this node's namespaces (left by an earlier run or by this
    /// one: host containers outlive `host boot` by design).
    fn clean(&self) {
        for ns in [self.ns.clone(), format!("{}-bootstrap", self.ns)] {
            for id in self.containers(&ns) {
                self.ctr(&ns, &["tasks", "kill", "-s", "KILL", &id]);
                poll("task deleted", Duration::from_secs(20), || {
                    self.ctr(&ns, &["tasks", "delete", &id]);
                    (!self
                        .ctr(&ns, &["tasks", "ls"])
                        .lines()
                        .any(|l| l.starts_with(&format!("{id} "))))
                    .then_some(())
                });
                self.ctr(&ns, &["containers", "delete", &id]);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.boot.is_some() {
            self.stop();
        }
        self.clean();
    }
}

#[test]
#[ignore = "needs root, containerd and the local registry (scripts/test.sh)"]
fn host_container_runs_in_its_own_namespace_and_survives_a_host_layer_restart() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let ud = format!(
        "[settings.host-containers.admin]\nenabled = true\nsource = \"{IMAGE}\"\nuser-data = \"{}\"\n",
        b64(&host_script("v1", marker.path()))
    );
    let mut n = Node::new("flotilla-host-t-survive", &ud);
    n.boot();
    let pid = poll("admin running", Duration::from_secs(30), || {
        n.running_pid("admin")
    });
    // (1) in its own namespace, not among the agent's tasks
    assert_eq!(n.containers("flotilla-host-t-survive"), ["admin"]);
    assert!(!n.containers("flotilla").contains(&"admin".to_owned()));
    let info: Value =
        serde_json::from_str(&n.ctr(&n.ns, &["containers", "info", "admin"])).unwrap();
    assert_eq!(info["Labels"]["flotilla.host/kind"], "host", "{info}");
    assert_eq!(info["Image"], IMAGE);
    poll("admin wrote its storage", Duration::from_secs(10), || {
        n.storage("host", "admin", "sock")
    });
    assert_eq!(
        n.storage("host", "admin", "sock").unwrap(),
        "yes",
        "API sockets mounted"
    );
    assert_eq!(n.starts("admin"), ["v1"]);

    // (2) the host layer stops: the container keeps running
    let out = n.stop();
    assert!(out.status.success(), "{}", n.log());
    assert_eq!(
        n.running_pid("admin"),
        Some(pid),
        "host container stopped with the host layer"
    );
    // ... and the next start adopts it: same task, not started again
    n.boot();
    assert!(n.log().contains("adopted"), "{}", n.log());
    assert_eq!(n.running_pid("admin"), Some(pid));
    assert_eq!(n.starts("admin"), ["v1"]);
    assert_eq!(n.containers(&n.ns), ["admin"]);
    // the listener containers use (a mounted directory) answers after the restart
    let stable = n.s("node/data/host-api/api.sock");
    let os: Value =
        serde_json::from_str(&n.ok(&["apiclient", "--socket", &stable, "-u", "/os"])).unwrap();
    assert_eq!(os["version_id"], "1.0.0");

    // a host container that exits is started again (with back-off)
    n.ctr(&n.ns, &["tasks", "kill", "-s", "KILL", "admin"]);
    let pid2 = poll(
        "admin restarted after it exited",
        Duration::from_secs(30),
        || n.running_pid("admin").filter(|p| *p != pid),
    );
    assert_ne!(pid2, pid);
    poll("second start recorded", Duration::from_secs(10), || {
        (n.starts("admin").len() == 2).then_some(())
    });
}

#[test]
#[ignore = "needs root, containerd and the local registry (scripts/test.sh)"]
fn settings_change_restarts_only_the_affected_host_container_and_disable_removes_it() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let ud = format!(
        "[settings.host-containers.admin]\nenabled = true\nsource = \"{IMAGE}\"\nuser-data = \"{}\"\n\n\
         [settings.host-containers.control]\nenabled = true\nsource = \"{IMAGE}\"\nuser-data = \"{}\"\n",
        b64(&host_script("admin-v1", marker.path())),
        b64(&host_script("control-v1", marker.path())),
    );
    let mut n = Node::new("flotilla-host-t-change", &ud);
    n.boot();
    let admin = poll("admin running", Duration::from_secs(30), || {
        n.running_pid("admin")
    });
    let control = poll("control running", Duration::from_secs(30), || {
        n.running_pid("control")
    });

    let v2 = format!(
        "host-containers.admin.user-data={}",
        b64(&host_script("admin-v2", marker.path()))
    );
    n.api(&["set", &v2]);
    let admin2 = poll(
        "admin restarted with the new user-data",
        Duration::from_secs(30),
        || {
            (n.starts("admin").last().map(String::as_str) == Some("admin-v2"))
                .then(|| n.running_pid("admin"))
                .flatten()
        },
    );
    assert_ne!(admin2, admin);
    assert_eq!(n.starts("admin"), ["admin-v1", "admin-v2"]);
    assert_eq!(
        n.running_pid("control"),
        Some(control),
        "control must not be restarted"
    );
    assert_eq!(n.starts("control"), ["control-v1"]);

    n.api(&["set", "host-containers.admin.enabled=false"]);
    poll("admin stopped and deleted", Duration::from_secs(30), || {
        (!n.containers(&n.ns).contains(&"admin".to_owned())).then_some(())
    });
    assert_eq!(n.running_pid("admin"), None);
    assert_eq!(n.running_pid("control"), Some(control));
    // re-enabling starts it again
    n.api(&["set", "host-containers.admin.enabled=true"]);
    poll("admin running again", Duration::from_secs(30), || {
        n.running_pid("admin")
    });
}

#[test]
#[ignore = "needs root, containerd and the local registry (scripts/test.sh)"]
fn superpowered_host_container_is_privileged_and_sees_the_host() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let ud = format!(
        "[settings.host-containers.admin]\nenabled = true\nsuperpowered = true\nsource = \"{IMAGE}\"\nuser-data = \"{}\"\n\n\
         [settings.host-containers.control]\nenabled = true\nsuperpowered = false\nsource = \"{IMAGE}\"\nuser-data = \"{}\"\n",
        b64(&host_script("admin", marker.path())),
        b64(&host_script("control", marker.path())),
    );
    let mut n = Node::new("flotilla-host-t-super", &ud);
    n.boot();
    for name in ["admin", "control"] {
        poll(
            "containers recorded what they see",
            Duration::from_secs(30),
            || n.storage("host", name, "sock"),
        );
    }
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_caps = ours
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_owned();
    // superpowered: every capability (as this root test process has), the host's root file
    // system at /.bottlerocket/rootfs and the host's PID namespace
    assert_eq!(n.storage("host", "admin", "caps").unwrap(), host_caps);
    assert_eq!(n.storage("host", "admin", "rootfs").unwrap(), "yes");
    assert_eq!(n.storage("host", "admin", "hostpid").unwrap(), "yes");
    // not superpowered: Docker's default capability set, no host root, own PID namespace
    assert_eq!(
        n.storage("host", "control", "caps").unwrap(),
        "00000000a80425fb"
    );
    assert_eq!(n.storage("host", "control", "rootfs").unwrap(), "no");
    assert_eq!(n.storage("host", "control", "hostpid").unwrap(), "no");
}

#[test]
#[ignore = "needs root, containerd and the local registry (scripts/test.sh)"]
fn bootstrap_containers_run_to_completion_and_an_essential_failure_stops_the_boot() {
    let order = tempfile::NamedTempFile::new().unwrap();
    let step = |name: &str, code: u8| {
        b64(&format!(
            "echo {name} >> /.bottlerocket/rootfs{}\n\
             echo ran > /.bottlerocket/bootstrap-containers/current/ran\nexit {code}\n",
            order.path().display()
        ))
    };
    let ud = format!(
        "[settings.bootstrap-containers.b-second]\nsource = \"{IMAGE}\"\nmode = \"always\"\nuser-data = \"{}\"\n\n\
         [settings.bootstrap-containers.a-first]\nsource = \"{IMAGE}\"\nmode = \"once\"\nessential = true\nuser-data = \"{}\"\n\n\
         [settings.bootstrap-containers.c-optional-fails]\nsource = \"{IMAGE}\"\nmode = \"always\"\nuser-data = \"{}\"\n",
        step("b-second", 0),
        step("a-first", 0),
        step("c-optional-fails", 3),
    );
    let mut n = Node::new("flotilla-host-t-boot", &ud);
    n.boot();
    let ran = std::fs::read_to_string(order.path()).unwrap();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        ["a-first", "b-second", "c-optional-fails"]
    );
    assert_eq!(
        n.storage("bootstrap", "a-first", "ran").as_deref(),
        Some("ran")
    );
    // run to completion and deleted; never in the host or the agent namespace
    assert!(n.containers("flotilla-host-t-boot-bootstrap").is_empty());
    assert!(n.containers("flotilla-host-t-boot").is_empty());
    let mode: Value =
        serde_json::from_str(&n.api(&["get", "bootstrap-containers.a-first.mode"])).unwrap();
    assert_eq!(
        mode["settings"]["bootstrap-containers"]["a-first"]["mode"],
        "off"
    );
    assert!(
        std::fs::read_to_string(n.p("node/run/logs/bootstrap-c-optional-fails.log")).is_ok(),
        "bootstrap output kept in run/logs"
    );

    // an essential bootstrap container that fails stops the boot: nothing healthy, no agent
    let fail = format!(
        "bootstrap-containers.b-second.user-data={}",
        step("b-second", 7)
    );
    n.api(&["set", &fail, "bootstrap-containers.b-second.essential=true"]);
    assert!(n.stop().status.success());
    let mut child = n.boot_child();
    let status = poll("boot to fail", Duration::from_secs(60), || {
        child.try_wait().unwrap()
    });
    assert!(!status.success(), "{}", n.log());
    assert!(
        n.log()
            .contains("essential bootstrap container b-second failed"),
        "{}",
        n.log()
    );
    assert!(!n.p("node/run/boot-successful").exists());
    assert!(!n.p("node/run/agent-registered").exists());
    let ran = std::fs::read_to_string(order.path()).unwrap();
    // a-first was `once`: it did not run again; c-optional-fails never ran after b-second
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        ["a-first", "b-second", "c-optional-fails", "b-second"]
    );
}
