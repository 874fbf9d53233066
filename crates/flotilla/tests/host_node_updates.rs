//! Black-box tests of OS updates on a node through the real `flotilla` binary: `os
//! keygen/build-image/publish` make a signed repository, `apiclient update …` stages an
//! image into slot B, and `host boot` moves between the slots — a good update, a bad image
//! and a failing migration that fall back to A, a cancelled update, a tampered repository,
//! publisher waves and a pulled release. The fake node is in [`host_support`].

mod host_support;

use std::process::Command;

use serde_json::Value;

use host_support::{Booted, Fx, install, write_user_data};

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

/// A node on 1.0.0 and a repository offering 1.1.0 (an image whose agent registers if
/// `good`).
fn published(good: bool) -> Fx {
    let fx = Fx::new();
    fx.install("1.0.0");
    let img = fx.image("1.1.0", good, false);
    fx.publish(img, &[]);
    fx
}

/// [`published`], booted, with 1.1.0 staged ([`update_to`]).
fn staged(good: bool) -> (Fx, Booted) {
    let fx = published(good);
    let b = fx.boot();
    update_to(&fx, "1.1.0");
    (fx, b)
}

/// `apiclient reboot` (the boot process exits cleanly), then a boot into B that fails;
/// its stderr.
fn reboot_into_failing_b(fx: &Fx, b: Booted) -> String {
    fx.api_ok(&["reboot"]);
    assert!(b.wait().status.success());
    fx.failed_boot()
}

/// The next boot, which must be back on slot A and 1.0.0.
fn boot_back_on_a(fx: &Fx) -> Booted {
    let b = fx.boot();
    assert_eq!(fx.flags()["active"], "a");
    assert_eq!(fx.os_version(), "1.0.0");
    b
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
    assert_eq!(fx.os_version(), "1.0.0");
    // no status before the first command
    let out = fx.api(&["-u", "/updates/status"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("404"));
    update_to(&fx, "1.1.0");
    let b = fx.reboot(b);
    assert_eq!(fx.os_version(), "1.1.0");
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
    let b = fx.reboot(b);
    assert_eq!(fx.os_version(), "1.0.0");
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
    let (fx, b) = staged(false);
    // boot into B: the agent never registers, the health probe times out, boot fails
    let err = reboot_into_failing_b(&fx, b);
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
    let b = boot_back_on_a(&fx);
    b.stop();
}

#[test]
fn update_cancel_before_reboot_keeps_a() {
    let (fx, b) = staged(true);
    let s = fx.api_json(&["update", "cancel"]);
    assert_eq!(s["update_state"], "Staged");
    assert_eq!(s["active_partition"]["next_to_boot"], true);
    // activate/deactivate state errors are 409 with a message
    let out = fx.api(&["update", "cancel"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("409"));
    let b = fx.reboot(b);
    assert_eq!(fx.os_version(), "1.0.0");
    b.stop();
}

#[test]
fn tampered_repository_is_refused_through_the_cli_and_node_is_unchanged() {
    let fx = published(true);
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
    let b = fx.reboot(b);
    assert_eq!(fx.os_version(), "1.0.0");
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
    let err = reboot_into_failing_b(&fx, b);
    assert!(
        err.contains("migrating datastore 1.0.0 -> 1.1.0") && err.contains("does-not-exist"),
        "{err}"
    );
    // the datastore is untouched and the next boot is back on A
    let b = boot_back_on_a(&fx);
    assert_eq!(fx.api_json(&["get", "motd"])["settings"]["motd"], "keep me");
    b.stop();
}

#[test]
fn publisher_waves_hold_an_update_back_and_a_pulled_release_rolls_back() {
    let fx = Fx::new();
    // the node runs 1.1.0
    let img = fx.image("1.1.0", true, false);
    install(fx.node(), img);
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
    let (md, tg) = fx.repo_settings();
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
