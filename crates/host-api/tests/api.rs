//! Host API over a real Unix socket, server started in-process with `server::run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use host_api::client::Client;
use host_api::server::{HostConfig, HostState};
use host_api::services::{CommandRestarter, Paths};
use serde_json::{Value, json};

struct Server {
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    dir: PathBuf,
}

impl Server {
    async fn start(dir: &Path, restart: BTreeMap<String, String>, proc_sys: PathBuf) -> Server {
        let socket = dir.join("api.sock");
        let cfg = HostConfig {
            data_dir: dir.join("data"),
            paths: Paths {
                etc: dir.join("etc"),
                proc_sys,
            },
            node: None,
        };
        let restarter = Arc::new(CommandRestarter {
            commands: restart,
            etc: dir.join("etc"),
        });
        let state = HostState::new(cfg, restarter).unwrap();
        let listener = host_api::server::bind(&socket).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(host_api::server::run(listener, state, async move {
            let _ = rx.await;
        }));
        Server {
            client: Client::new(socket),
            stop: Some(tx),
            task: Some(task),
            dir: dir.to_owned(),
        }
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

fn proc_sys(dir: &Path) -> PathBuf {
    let p = dir.join("proc-sys");
    std::fs::create_dir_all(p.join("vm")).unwrap();
    std::fs::create_dir_all(p.join("net/ipv4")).unwrap();
    p
}

#[tokio::test]
async fn settings_transactions_over_the_socket() {
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), BTreeMap::new(), proc_sys(d.path())).await;
    let c = &s.client;
    c.call(
        "PATCH",
        "/settings?tx=t1",
        Some(br#"{"ecs":{"cluster":"prod"},"motd":"hello"}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(
        c.get_json("/tx?tx=t1").await.unwrap(),
        json!({"ecs": {"cluster": "prod"}, "motd": "hello"})
    );
    assert_eq!(c.get_json("/tx/list").await.unwrap(), json!(["t1"]));
    // not live yet
    assert!(c.get_json("/settings").await.unwrap().get("motd").is_none());
    let changed = c.get_json_post("/tx/commit?tx=t1").await;
    assert_eq!(changed, json!(["settings.ecs.cluster", "settings.motd"]));
    let live = c.get_json("/settings").await.unwrap();
    assert_eq!(live["ecs"]["cluster"], "prod");
    assert_eq!(
        c.get_json("/settings?prefix=ecs").await.unwrap(),
        json!({"ecs": {"cluster": "prod"}})
    );
    assert_eq!(
        c.get_json("/settings?keys=settings.motd").await.unwrap(),
        json!({"motd": "hello"})
    );
    // nothing pending → 422
    let (status, body) = c.raw("POST", "/tx/commit?tx=t1", None).await.unwrap();
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    // DELETE /tx drops a pending transaction
    c.call(
        "PATCH",
        "/settings?tx=t2",
        Some(br#"{"motd":"bye"}"#.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(
        c.get_json_delete("/tx?tx=t2").await,
        json!(["settings.motd"])
    );
    assert_eq!(c.get_json("/settings").await.unwrap()["motd"], "hello");
    // seed generated and persisted
    let seed = live["updates"]["seed"].as_u64().unwrap();
    assert!(seed < 2048);
    // /os without a node
    assert!(c.get_json("/os").await.unwrap()["version_id"].is_string());
    s.shutdown().await;
}

trait Extra {
    async fn get_json_post(&self, uri: &str) -> Value;
    async fn get_json_delete(&self, uri: &str) -> Value;
}

impl Extra for Client {
    async fn get_json_post(&self, uri: &str) -> Value {
        serde_json::from_slice(&self.call("POST", uri, None).await.unwrap()).unwrap()
    }
    async fn get_json_delete(&self, uri: &str) -> Value {
        serde_json::from_slice(&self.call("DELETE", uri, None).await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn unknown_keys_and_wrong_types_are_400_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), BTreeMap::new(), proc_sys(d.path())).await;
    let c = &s.client;
    for (body, key) in [
        (r#"{"ecs":{"clustr":"x"}}"#, "clustr"),
        (r#"{"ecs":{"cluster":7}}"#, "settings.ecs.cluster"),
        (
            r#"{"kernel":{"sysctl":{"../../etc/passwd":"x"}}}"#,
            "settings.kernel.sysctl",
        ),
        (r#"{"updates":{"seed":99999}}"#, "settings.updates.seed"),
        (r#"{"bogus":true}"#, "bogus"),
    ] {
        let (status, msg) = c
            .raw("PATCH", "/settings?tx=bad", Some(body.as_bytes().to_vec()))
            .await
            .unwrap();
        let msg = String::from_utf8_lossy(&msg);
        assert_eq!(status, 400, "{body}: {msg}");
        assert!(msg.contains(key), "{body}: {msg}");
    }
    // keypair route: same validation
    let (status, msg) = c
        .raw(
            "PATCH",
            "/settings/keypair?tx=bad",
            Some(br#"{"request_payload":["ecs.nope=1"]}"#.to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&msg).contains("nope"));
    // nothing half-written
    assert_eq!(c.get_json("/tx/list").await.unwrap(), json!([]));
    let (status, _) = c.raw("GET", "/no/such/route", None).await.unwrap();
    assert_eq!(status, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn commit_and_apply_restarts_only_affected_services() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("restarts.log");
    let mut restart = BTreeMap::new();
    for svc in [
        "agent",
        "dns",
        "sysctl",
        "ntp",
        "containerd",
        "host-containers",
    ] {
        restart.insert(svc.to_owned(), format!("echo {svc} >> {}", log.display()));
    }
    let ps = proc_sys(d.path());
    let s = Server::start(d.path(), restart, ps.clone()).await;
    let c = &s.client;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    c.set_doc(&json!({"ecs": {"cluster": "blue", "endpoint": "http://cp:8080", "instance-attributes": {"tier": "web"}}}), "t").await.unwrap();
    assert_eq!(read_log(), "agent\n");
    let env = std::fs::read_to_string(s.dir.join("etc/flotilla/agent.env")).unwrap();
    assert!(
        env.contains("FLOTILLA_CLUSTER=\"blue\"")
            && env.contains("FLOTILLA_ATTRIBUTES=\"tier=web\""),
        "{env}"
    );

    // same value again: nothing changed, nothing restarted
    c.set_doc(&json!({"ecs": {"cluster": "blue"}}), "t")
        .await
        .unwrap();
    assert_eq!(read_log(), "agent\n");

    c.set_doc(&json!({"dns": {"name-servers": ["10.0.0.53"]}, "kernel": {"sysctl": {"vm.max_map_count": "262144"}}}), "t").await.unwrap();
    assert_eq!(read_log(), "agent\nsysctl\ndns\n");
    assert_eq!(
        std::fs::read_to_string(ps.join("vm/max_map_count")).unwrap(),
        "262144\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.dir.join("etc/resolv.conf")).unwrap(),
        "nameserver 10.0.0.53\n"
    );

    // POST /tx/apply with keys re-applies just that service
    c.call("POST", "/tx/apply?keys=settings.dns", None)
        .await
        .unwrap();
    assert_eq!(read_log(), "agent\nsysctl\ndns\ndns\n");
    s.shutdown().await;
}

/// A restart that fails after the commit is reported truthfully: 502 (not 500), naming the
/// key and saying it is committed but not applied; and it is indeed committed.
#[tokio::test]
async fn failing_restart_command_is_reported_as_committed_not_applied() {
    let d = tempfile::tempdir().unwrap();
    let restart = BTreeMap::from([(
        "agent".to_owned(),
        "echo agent is broken >&2; exit 3".to_owned(),
    )]);
    let s = Server::start(d.path(), restart, proc_sys(d.path())).await;
    let err = s
        .client
        .set_doc(&json!({"ecs": {"cluster": "x"}, "motd": "m"}), "t")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("agent is broken")
            && err.contains("502")
            && err.contains("settings.ecs.cluster: committed but not applied"),
        "{err}"
    );
    assert!(!err.contains("settings.motd"), "motd applied fine: {err}");
    let live = s.client.get_json("/settings").await.unwrap();
    assert_eq!(live["ecs"]["cluster"], "x");
    assert_eq!(
        std::fs::read_to_string(s.dir.join("etc/motd")).unwrap(),
        "m\n",
        "the other services still apply"
    );
    // POST /tx/apply (nothing committed by that request) stays a plain 500
    let (status, body) = s.client.raw("POST", "/tx/apply", None).await.unwrap();
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    s.shutdown().await;
}

/// Issue 10 (3): a sysctl the kernel refuses used to answer 500 and stay committed. It is
/// rolled back: 400 naming the key, the previous value (or none) is live again, the rest of
/// the transaction is committed and applied.
#[tokio::test]
async fn refused_sysctl_is_rolled_back_and_reported_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let ps = proc_sys(d.path());
    let s = Server::start(d.path(), BTreeMap::new(), ps.clone()).await;
    let c = &s.client;
    // no such sysctl: nothing committed for it
    let (status, body) = set_raw(
        c,
        &json!({"kernel": {"sysctl": {"nosuch.knob": "1"}}, "motd": "kept"}),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("settings.kernel.sysctl.\"nosuch.knob\"")
            && body.contains("rolled back")
            && body.contains("not committed"),
        "{body}"
    );
    let live = c.get_json("/settings").await.unwrap();
    assert!(live.get("kernel").is_none(), "{live}");
    assert_eq!(live["motd"], "kept");
    assert!(
        !std::fs::read_to_string(s.dir.join("etc/flotilla/sysctl.toml"))
            .unwrap()
            .contains("nosuch.knob"),
        "sysctl.toml re-rendered from the restored settings"
    );

    // a key that applied before and now fails goes back to its previous value
    std::fs::write(ps.join("vm/knob"), "0\n").unwrap();
    let (status, _) = set_raw(c, &json!({"kernel": {"sysctl": {"vm.knob": "1"}}})).await;
    assert_eq!(status, 200);
    std::fs::remove_file(ps.join("vm/knob")).unwrap();
    std::fs::create_dir(ps.join("vm/knob")).unwrap(); // writes now fail (EISDIR)
    let (status, body) = set_raw(
        c,
        &json!({"kernel": {"sysctl": {"vm.knob": "2", "vm.max_map_count": "7"}}}),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("vm.knob") && !body.contains("max_map_count\\\""),
        "{body}"
    );
    let live = c.get_json("/settings").await.unwrap();
    assert_eq!(live["kernel"]["sysctl"]["vm.knob"], "1");
    assert_eq!(live["kernel"]["sysctl"]["vm.max_map_count"], "7");
    assert_eq!(
        std::fs::read_to_string(ps.join("vm/max_map_count")).unwrap(),
        "7\n"
    );
    // a refused sysctl committed earlier (commit without apply) is not this transaction's:
    // it is not rolled back, and is reported as committed but not applied (502)
    std::fs::remove_dir(ps.join("vm/knob")).unwrap();
    c.call(
        "PATCH",
        "/settings?tx=old",
        Some(br#"{"kernel":{"sysctl":{"nosuch.other":"1"}}}"#.to_vec()),
    )
    .await
    .unwrap();
    c.call("POST", "/tx/commit?tx=old", None).await.unwrap();
    let (status, body) =
        set_raw(c, &json!({"kernel": {"sysctl": {"vm.max_map_count": "8"}}})).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("settings.kernel.sysctl.\"nosuch.other\": committed but not applied"),
        "{body}"
    );
    let live = c.get_json("/settings").await.unwrap();
    assert_eq!(live["kernel"]["sysctl"]["nosuch.other"], "1");
    assert_eq!(
        std::fs::read_to_string(ps.join("vm/max_map_count")).unwrap(),
        "8\n"
    );
    s.shutdown().await;
}

/// PATCHes into a fresh transaction and commit_and_apply's it; status and body of the latter.
async fn set_raw(c: &Client, doc: &Value) -> (u16, Vec<u8>) {
    let tx = format!("raw-{:08x}", rand_u32());
    let (status, body) = c
        .raw(
            "PATCH",
            &format!("/settings?tx={tx}"),
            Some(doc.to_string().into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    c.raw("POST", &format!("/tx/commit_and_apply?tx={tx}"), None)
        .await
        .unwrap()
}

fn rand_u32() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Issue 10 (1): newlines in settings used to land as extra lines of resolv.conf, chrony.conf
/// and agent.env. Every route refuses them with 400 naming the key, and nothing is rendered.
#[tokio::test]
async fn injected_lines_are_refused_with_400_naming_the_key() {
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), BTreeMap::new(), proc_sys(d.path())).await;
    let c = &s.client;
    for (body, key) in [
        (
            json!({"dns": {"search-list": ["corp.example\nnameserver 6.6.6.6"]}}),
            "settings.dns.search-list",
        ),
        (
            json!({"ntp": {"time-servers": ["time.example iburst\nserver 6.6.6.6"]}}),
            "settings.ntp.time-servers",
        ),
        (
            json!({"ecs": {"endpoint": "http://cp:8080\nFLOTILLA_CLUSTER=evil"}}),
            "settings.ecs.endpoint",
        ),
        (
            json!({"kernel": {"sysctl": {"vm.max_map_count": "1\n2"}}}),
            "settings.kernel.sysctl",
        ),
        (
            json!({"container-registry": {"credentials": [{"registry": "r", "password": "p\"\n[evil]"}]}}),
            "settings.container-registry.credentials[0].password",
        ),
        (json!({"motd": "\u{1b}]0;owned\u{7}"}), "settings.motd"),
    ] {
        let (status, msg) = c
            .raw(
                "PATCH",
                "/settings?tx=inj",
                Some(body.to_string().into_bytes()),
            )
            .await
            .unwrap();
        let msg = String::from_utf8_lossy(&msg);
        assert_eq!(status, 400, "{body}: {msg}");
        assert!(msg.starts_with(key), "{body}: {msg}");
    }
    // the keypair route (apiclient set) too
    let (status, msg) = c
        .raw(
            "PATCH",
            "/settings/keypair?tx=inj",
            Some(
                json!({"request_payload": ["dns.search-list=[\"a.example\\nnameserver 6.6.6.6\"]"]})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&msg));
    assert!(String::from_utf8_lossy(&msg).contains("settings.dns.search-list"));
    assert_eq!(c.get_json("/tx/list").await.unwrap(), json!([]));
    assert!(!s.dir.join("etc/resolv.conf").exists());
    // valid values render one line each, agent.env values quoted
    c.set_doc(
        &json!({"dns": {"search-list": ["corp.example"], "name-servers": ["10.0.0.2"]},
                "ntp": {"time-servers": ["time.example"]},
                "ecs": {"endpoint": "http://cp:8080/x?a=1&b=$c"}}),
        "t",
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(s.dir.join("etc/resolv.conf")).unwrap(),
        "nameserver 10.0.0.2\nsearch corp.example\n"
    );
    assert_eq!(
        std::fs::read_to_string(s.dir.join("etc/chrony.conf")).unwrap(),
        "pool time.example iburst\n"
    );
    let env = std::fs::read_to_string(s.dir.join("etc/flotilla/agent.env")).unwrap();
    assert!(
        env.contains("FLOTILLA_ENDPOINT=\"http://cp:8080/x?a=1&b=\\$c\"\n"),
        "{env}"
    );
    s.shutdown().await;
}

/// Issue 10 (2): registry passwords were stored and rendered mode 0644.
#[tokio::test]
async fn registry_secrets_are_stored_and_rendered_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), BTreeMap::new(), proc_sys(d.path())).await;
    s.client
        .set_doc(
            &json!({"container-registry": {"credentials": [
                {"registry": "r.example", "username": "u", "password": "hunter2"}]},
                "motd": "m"}),
            "t",
        )
        .await
        .unwrap();
    let current = s.dir.join("data/datastore/current");
    let live = current.join("live.json");
    assert!(std::fs::read_to_string(&live).unwrap().contains("hunter2"));
    assert_eq!(mode(&live), 0o600);
    assert_eq!(mode(&std::fs::canonicalize(&current).unwrap()), 0o700);
    assert_eq!(mode(&s.dir.join("data/datastore")), 0o700);
    let reg = s.dir.join("etc/containerd/registries.toml");
    assert!(std::fs::read_to_string(&reg).unwrap().contains("hunter2"));
    assert_eq!(mode(&reg), 0o600);
    // files without secrets stay readable
    assert_eq!(mode(&s.dir.join("etc/motd")), 0o644);
    // a pending transaction holding a password is 0600 too
    s.client
        .call(
            "PATCH",
            "/settings?tx=p",
            Some(
                br#"{"container-registry":{"credentials":[{"registry":"x","password":"pw"}]}}"#
                    .to_vec(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(mode(&current.join("pending/p.json")), 0o600);
    s.shutdown().await;
}

/// Issue 10 (4): pending transactions were unlimited.
#[tokio::test]
async fn pending_transactions_are_limited_with_4xx() {
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), BTreeMap::new(), proc_sys(d.path())).await;
    let c = &s.client;
    for i in 0..host_api::limits::MAX_PENDING_TX {
        c.call(
            "PATCH",
            &format!("/settings?tx=t{i}"),
            Some(br#"{"motd":"x"}"#.to_vec()),
        )
        .await
        .unwrap();
    }
    let (status, msg) = c
        .raw(
            "PATCH",
            "/settings?tx=extra",
            Some(br#"{"motd":"x"}"#.to_vec()),
        )
        .await
        .unwrap();
    let msg = String::from_utf8_lossy(&msg);
    assert_eq!(status, 429, "{msg}");
    assert!(msg.contains("too many pending transactions"), "{msg}");
    c.call("DELETE", "/tx?tx=t0", None).await.unwrap();
    c.call(
        "PATCH",
        "/settings?tx=extra",
        Some(br#"{"motd":"x"}"#.to_vec()),
    )
    .await
    .unwrap();
    // too many keys in one transaction
    let many: serde_json::Map<String, Value> = (0..=host_api::limits::MAX_TX_KEYS)
        .map(|i| (format!("k{i}"), json!("1")))
        .collect();
    let (status, msg) = c
        .raw(
            "PATCH",
            "/settings?tx=t1",
            Some(json!({"kernel": {"sysctl": many}}).to_string().into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&msg));
    assert!(String::from_utf8_lossy(&msg).contains("keys"));
    // a body over the limit is refused before it is read
    let huge = format!(
        r#"{{"motd":"{}"}}"#,
        "x".repeat(host_api::limits::MAX_BODY_BYTES)
    );
    let (status, _) = c
        .raw("PATCH", "/settings?tx=t1", Some(huge.into_bytes()))
        .await
        .unwrap();
    assert_eq!(status, 413);
    // a key of absurd depth is refused, and the server is still there
    let deep = format!("motd{}=1", ".a".repeat(100_000));
    let (status, _) = c
        .raw(
            "PATCH",
            "/settings/keypair?tx=t1",
            Some(json!({"request_payload": [deep]}).to_string().into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(c.get_json("/tx?tx=t1").await.unwrap(), json!({"motd": "x"}));
    s.shutdown().await;
}

#[tokio::test]
async fn settings_survive_a_server_restart() {
    let d = tempfile::tempdir().unwrap();
    let ps = proc_sys(d.path());
    let s = Server::start(d.path(), BTreeMap::new(), ps.clone()).await;
    s.client
        .set_doc(&json!({"ecs": {"cluster": "persist"}, "motd": "m"}), "t")
        .await
        .unwrap();
    let seed = s.client.get_json("/settings").await.unwrap()["updates"]["seed"].clone();
    s.shutdown().await;
    let s = Server::start(d.path(), BTreeMap::new(), ps).await;
    let live = s.client.get_json("/settings").await.unwrap();
    assert_eq!(live["ecs"]["cluster"], "persist");
    assert_eq!(
        live["updates"]["seed"], seed,
        "seed must be stable across restarts"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn socket_is_mode_0660() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), BTreeMap::new(), proc_sys(d.path())).await;
    let mode = std::fs::metadata(s.client.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    s.shutdown().await;
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Writes a harmless real sysctl (`net.ipv4.ip_local_port_range` set to its current value)
/// through `/proc/sys`. Only meaningful as root; skipped otherwise.
#[tokio::test]
async fn real_sysctl_written_to_proc_sys_when_root() {
    let path = Path::new("/proc/sys/net/ipv4/ip_local_port_range");
    if !is_root() || std::fs::OpenOptions::new().write(true).open(path).is_err() {
        eprintln!("skipping: not root or /proc/sys not writable");
        return;
    }
    let current = std::fs::read_to_string(path).unwrap();
    let value = current.split_whitespace().collect::<Vec<_>>().join(" ");
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), BTreeMap::new(), PathBuf::from("/proc/sys")).await;
    s.client
        .set_doc(
            &json!({"kernel": {"sysctl": {"net.ipv4.ip_local_port_range": value}}}),
            "t",
        )
        .await
        .unwrap();
    let after = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        after.split_whitespace().collect::<Vec<_>>(),
        current.split_whitespace().collect::<Vec<_>>()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn concurrent_writers_never_mix_transactions() {
    let d = tempfile::tempdir().unwrap();
    let s = Server::start(d.path(), BTreeMap::new(), proc_sys(d.path())).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let c = s.client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let v = format!("w{i}");
                c.set_doc(&json!({"motd": v, "ecs": {"cluster": v}}), "w")
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(Instant::now() < deadline);
    let live = s.client.get_json("/settings").await.unwrap();
    assert_eq!(live["motd"], live["ecs"]["cluster"]);
    s.shutdown().await;
}

/// Every stored record must be survivable at startup. A datastore written by hand, as an older
/// version may have left it, holds values that version accepted and this one refuses among good
/// ones: the server starts, the good values are in effect (rendered), each bad key is left out,
/// reported under `dropped` by `GET /` without its value, and does not block writes to other
/// keys. A pending transaction holding such a value is refused at commit with a 400 naming the
/// key, and the server goes on.
#[tokio::test]
async fn stored_values_refused_now_are_dropped_and_reported_not_fatal() {
    let d = tempfile::tempdir().unwrap();
    let ps = proc_sys(d.path());
    let ds = d.path().join("data/datastore");
    let vdir = ds.join("v0.0.0_older");
    std::fs::create_dir_all(vdir.join("pending")).unwrap();
    std::os::unix::fs::symlink("v0.0.0_older", ds.join("current")).unwrap();
    let stored = json!({
        "ecs": {"cluster": "prod", "endpoint": "http://admin:hunter2@cp:8080"},
        "dns": {"name-servers": ["10.0.0.53"], "search-list": ["corp_x.example"]},
        "ntp": {"time-servers": ["ntp://time.example/path"]},
        "motd": "welcome",
        "updates": {"seed": 5000},
    });
    std::fs::write(vdir.join("live.json"), serde_json::to_vec(&stored).unwrap()).unwrap();
    std::fs::write(
        vdir.join("pending/old.json"),
        br#"{"motd": "from the old tx", "dns": {"search-list": ["a_b.example"]}}"#,
    )
    .unwrap();

    let s = Server::start(d.path(), BTreeMap::new(), ps).await;
    let c = &s.client;
    c.call("POST", "/tx/apply", None).await.unwrap();
    let etc = |f: &str| std::fs::read_to_string(s.dir.join("etc").join(f)).unwrap();
    let env = etc("flotilla/agent.env");
    assert!(env.contains("FLOTILLA_CLUSTER=\"prod\""), "{env}");
    assert!(
        !env.contains("FLOTILLA_ENDPOINT") && !env.contains("hunter2"),
        "{env}"
    );
    assert_eq!(etc("resolv.conf"), "nameserver 10.0.0.53\n");
    assert!(!etc("chrony.conf").contains("time.example"));
    assert_eq!(etc("motd"), "welcome\n");
    // GET /settings: the settings in effect; the seed out of range was replaced by a new one
    let live = c.get_json("/settings").await.unwrap();
    let seed = live["updates"]["seed"].as_u64().unwrap();
    assert!(seed < 2048, "{live}");
    assert_eq!(
        live,
        json!({"ecs": {"cluster": "prod"}, "dns": {"name-servers": ["10.0.0.53"]},
               "motd": "welcome", "updates": {"seed": seed}})
    );
    // GET /: the dropped keys and why, never the stored value
    let model = c.get_json("/").await.unwrap();
    let dropped = model["dropped"].as_object().unwrap();
    assert_eq!(
        dropped.keys().collect::<Vec<_>>(),
        [
            "settings.dns.search-list",
            "settings.ecs.endpoint",
            "settings.ntp.time-servers"
        ]
    );
    assert!(
        dropped["settings.ecs.endpoint"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{model}"
    );
    assert!(!model.to_string().contains("hunter2"), "{model}");
    assert_eq!(
        c.get_json("/?prefix=settings.ntp").await.unwrap(),
        json!({"dropped": {"settings.ntp.time-servers": dropped["settings.ntp.time-servers"]}})
    );
    // writes to other keys go through; new writes are still strict
    c.set_doc(&json!({"motd": "changed"}), "t").await.unwrap();
    assert_eq!(etc("motd"), "changed\n");
    let (status, body) = c
        .raw(
            "PATCH",
            "/settings?tx=t",
            Some(br#"{"ntp": {"time-servers": ["ntp://x/y"]}}"#.to_vec()),
        )
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("settings.ntp.time-servers"), "{body}");
    // the stale pending transaction: 400 naming the key, nothing committed
    let (status, body) = c.raw("POST", "/tx/commit?tx=old", None).await.unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("settings.dns.search-list"), "{body}");
    let (status, _) = c
        .raw("POST", "/tx/commit_and_apply?tx=old", None)
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(c.get_json("/settings").await.unwrap()["motd"], "changed");
    // a valid value replaces a dropped one, which is then no longer reported
    c.set_doc(&json!({"ntp": {"time-servers": ["time.example"]}}), "t")
        .await
        .unwrap();
    assert_eq!(etc("chrony.conf"), "pool time.example iburst\n");
    let model = c.get_json("/").await.unwrap();
    assert!(
        model["dropped"].get("settings.ntp.time-servers").is_none(),
        "{model}"
    );
    s.shutdown().await;
}
