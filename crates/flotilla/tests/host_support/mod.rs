//! What the host-layer tests share (`host_node*.rs`, `host_containers.rs`): the
//! `flotilla` binary run as a command (`os build-image`, `host install`, `host boot`), and
//! the fake node of the `host_node*` tests — a [`Fx`] directory with keys, images, a TUF
//! repository and the node (slots A/B, partition flags, data, run), booted as [`Booted`].
//!
//! The node image carries a fake agent (a shell script that "registers" by touching
//! `run/agent-registered`, or never does in the bad image), a container runner script and
//! the health probe in `image.toml`. Each test file uses what it needs of it, hence
//! `dead_code` is allowed here.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// `flotilla args…` (logging at `warn`), its output.
pub fn flotilla(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("FLOTILLA_LOG", "warn")
        .output()
        .unwrap()
}

/// `flotilla args…`, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = flotilla(args);
    assert!(
        out.status.success(),
        "flotilla {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    testkit::wait::until(what, timeout, Duration::from_millis(25), f)
}

/// `flotilla os build-image` of `version` into `out`, signed for `root_json`, from
/// `overlay` and `meta`; `with_binary`: the image carries the flotilla binary.
pub fn build_image(
    version: &str,
    out: &str,
    root_json: &str,
    overlay: &str,
    meta: &str,
    with_binary: bool,
) {
    let mut args = vec![
        "os",
        "build-image",
        "--version",
        version,
        "--out",
        out,
        "--root-json",
        root_json,
        "--overlay",
        overlay,
        "--meta",
        meta,
    ];
    if !with_binary {
        args.push("--no-binary");
    }
    ok(&args);
}

/// `flotilla host install` of `image` into slot A of the node at `node_root`.
pub fn install(node_root: &str, image: &str) {
    ok(&[
        "host",
        "install",
        "--node-root",
        node_root,
        "--image",
        image,
    ]);
}

/// `flotilla host boot` of the node at `node_root`, its API on `socket`, sysctls under
/// `proc_sys`; not started.
pub fn boot_command(node_root: &str, socket: &str, proc_sys: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "host",
        "boot",
        "--node-root",
        node_root,
        "--socket",
        socket,
        "--proc-sys",
        proc_sys,
    ]);
    c
}

/// SIGTERM to `child`; waits for it to exit.
pub fn terminate(child: Child) -> Output {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait_with_output().unwrap()
}

const GOOD_AGENT: &str = "#!/bin/sh\n# stand-in for `flotilla agent`: registers at once\nRUN=$1; shift\necho \"$@\" > \"$RUN/agent-args\"\necho agent >> \"$RUN/order.log\"\ntouch \"$RUN/agent-registered\"\necho $$ > \"$RUN/agent.pid\"\nexec sleep 1000\n";
const BAD_AGENT: &str = "#!/bin/sh\n# a broken agent: never registers\nRUN=$1\necho broken-agent >> \"$RUN/order.log\"\nexit 1\n";
const RUNNER: &str = "#!/bin/sh\n# container runner stand-in: TYPE NAME SOURCE\necho \"$1 $2\" >> \"$FLOTILLA_RUN/order.log\"\nif [ \"$1\" = host ]; then exec sleep 1000; fi\ncase \"$3\" in fail*) exit 1;; esac\nexit 0\n";

pub struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    pub fn new() -> Fx {
        let fx = Fx {
            dir: tempfile::tempdir().unwrap(),
        };
        ok(&["os", "keygen", "--out", fx.s("keys")]);
        std::fs::create_dir_all(fx.p("proc-sys/vm")).unwrap();
        fx
    }
    pub fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    pub fn s(&self, s: &str) -> &'static str {
        Box::leak(self.p(s).display().to_string().into_boxed_str())
    }
    pub fn node(&self) -> &'static str {
        self.s("node")
    }
    pub fn socket(&self) -> &'static str {
        self.s("api.sock")
    }
    /// Builds an image; `good` decides whether its agent ever becomes healthy.
    pub fn image(&self, version: &str, good: bool, with_binary: bool) -> &'static str {
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
        build_image(
            version,
            out,
            self.s("keys/root.json"),
            &overlay.display().to_string(),
            &meta.display().to_string(),
            with_binary,
        );
        out
    }
    pub fn publish(&self, image: &str, extra: &[&str]) {
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
    pub fn install(&self, version: &str) {
        install(self.node(), self.image(version, true, false));
    }
    pub fn boot_cmd(&self) -> Command {
        let mut c = boot_command(self.node(), self.socket(), self.s("proc-sys"));
        c.env("FLOTILLA_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
    /// `host serve` of the datastore under `data`, its API on [`Fx::socket`]; not started.
    pub fn serve_cmd(&self, data: &str) -> Command {
        let mut c = Command::new(BIN);
        c.args([
            "host",
            "serve",
            "--socket",
            self.socket(),
            "--data-dir",
            data,
            "--proc-sys",
            self.s("proc-sys"),
        ]);
        c
    }
    /// Waits for the API socket to appear.
    pub fn wait_for_socket(&self) {
        poll("socket", Duration::from_secs(10), || {
            self.p("api.sock").exists().then_some(())
        });
    }
    /// Starts `host boot` and waits until it is healthy (or exits).
    pub fn boot(&self) -> Booted {
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
    pub fn api(&self, args: &[&str]) -> Output {
        let mut a = vec!["apiclient", "--socket", self.socket()];
        a.extend_from_slice(args);
        flotilla(&a)
    }
    pub fn api_ok(&self, args: &[&str]) -> String {
        let out = self.api(args);
        assert!(
            out.status.success(),
            "apiclient {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    pub fn api_json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.api_ok(args)).unwrap()
    }
    pub fn flags(&self) -> Value {
        serde_json::from_str(&ok(&["host", "flags", "--node-root", self.node()])).unwrap()
    }
    /// Bootstrap containers in order first; then host containers and the agent (which start
    /// side by side, so their relative order is not fixed).
    pub fn assert_order(&self, bootstrap: &[&str]) {
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
    pub fn order(&self) -> Vec<String> {
        std::fs::read_to_string(self.p("node/run/order.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
    /// `apiclient reboot`: the boot process exits cleanly, and the node boots again.
    pub fn reboot(&self, b: Booted) -> Booted {
        self.api_ok(&["reboot"]);
        assert!(b.wait().status.success());
        self.boot()
    }
    /// The OS version the API reports.
    pub fn os_version(&self) -> Value {
        self.api_json(&["-u", "/os"])["version_id"].clone()
    }
    /// A boot that must fail; its stderr.
    pub fn failed_boot(&self) -> String {
        let out = self.boot().wait();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
    /// The settings that point the node at the test repository: (metadata, targets).
    pub fn repo_settings(&self) -> (String, String) {
        let md = format!(
            "updates.metadata-base-url={}",
            self.p("repo/metadata").display()
        );
        let tg = format!(
            "updates.targets-base-url={}",
            self.p("repo/targets").display()
        );
        (md, tg)
    }
    pub fn use_repo(&self) {
        let (md, tg) = self.repo_settings();
        self.api_ok(&["set", &md, &tg, "updates.ignore-waves=true"]);
    }
}

pub struct Booted {
    child: Option<Child>,
}

impl Booted {
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
    /// Waits for the boot process to exit (after `apiclient reboot` or a failed boot).
    pub fn wait(mut self) -> Output {
        self.child.take().unwrap().wait_with_output().unwrap()
    }
    pub fn stop(mut self) -> Output {
        terminate(self.child.take().unwrap())
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            terminate(c);
        }
    }
}

pub fn write_user_data(fx: &Fx, text: &str) {
    std::fs::write(fx.p("node/user-data.toml"), text).unwrap();
}
