//! Unit tests of the datastore: transactions and what a commit changes, limits, file modes,
//! migrations, and stored documents this version refuses (written by hand, as an older version
//! or a migration may have left them).

use super::*;
use serde_json::json;

fn ds() -> (tempfile::TempDir, Datastore) {
    let d = tempfile::tempdir().unwrap();
    let ds = Datastore::open(d.path(), &Version::new(1, 0, 0)).unwrap();
    (d, ds)
}

#[test]
fn patch_commit_changes_only_what_changed() {
    let (_d, ds) = ds();
    ds.patch("t1", &json!({"ecs": {"cluster": "a"}, "motd": "hi"}))
        .unwrap();
    assert_eq!(ds.live().unwrap(), json!({}));
    assert_eq!(ds.list_tx().unwrap(), ["t1"]);
    let changed = ds.commit("t1").unwrap();
    assert_eq!(changed, ["settings.ecs.cluster", "settings.motd"]);
    ds.patch("t2", &json!({"ecs": {"cluster": "a"}, "motd": "bye"}))
        .unwrap();
    assert_eq!(ds.commit("t2").unwrap(), ["settings.motd"]);
    assert!(matches!(ds.commit("t2"), Err(Error::NothingPending { .. })));
}

#[test]
fn invalid_patch_leaves_nothing_pending() {
    let (_d, ds) = ds();
    assert!(matches!(
        ds.patch("t", &json!({"ecs": {"nope": 1}})),
        Err(Error::InvalidSettings { .. })
    ));
    assert!(ds.list_tx().unwrap().is_empty());
    assert!(ds.patch("../x", &json!({})).is_err());
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn documents_holding_passwords_are_0600_in_0700_dirs() {
    let (d, ds) = ds();
    let creds = json!({"container-registry": {"credentials": [
        {"registry": "r.example", "username": "u", "password": "hunter2"}]}});
    ds.patch("t", &creds).unwrap();
    let vdir = ds.vdir().unwrap();
    assert_eq!(mode(&vdir.join("pending/t.json")), 0o600);
    ds.commit("t").unwrap();
    assert_eq!(mode(&vdir.join("live.json")), 0o600);
    for dir in [
        d.path().join("datastore"),
        vdir.clone(),
        vdir.join("pending"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    // a datastore written by an older version (0644/0755) is tightened on open
    use std::os::unix::fs::PermissionsExt;
    let loose = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    loose(&vdir.join("live.json"), 0o644).unwrap();
    loose(&vdir, 0o755).unwrap();
    let ds = Datastore::open(d.path(), &Version::new(1, 0, 0)).unwrap();
    assert_eq!(mode(&vdir.join("live.json")), 0o600);
    assert_eq!(mode(&vdir), 0o700);
    // migration copies keep the modes
    ds.migrate(
        &Version::new(1, 1, 0),
        &[],
        updater::migration::Direction::Forward,
    )
    .unwrap();
    let vdir = ds.vdir().unwrap();
    assert_eq!(mode(&vdir.join("live.json")), 0o600);
    assert_eq!(mode(&vdir), 0o700);
}

#[test]
fn pending_transactions_are_bounded_in_number() {
    let (_d, ds) = ds();
    for i in 0..limits::MAX_PENDING_TX {
        ds.patch(&format!("t{i}"), &json!({"motd": "x"})).unwrap();
    }
    let e = ds.patch("one-more", &json!({"motd": "x"})).unwrap_err();
    assert!(matches!(e, Error::TooManyTransactions { .. }), "{e}");
    assert_eq!(e.status().as_u16(), 429);
    assert!(e.to_string().contains("32"), "{e}");
    // an existing transaction can still grow, and the host's own is not counted
    ds.patch("t0", &json!({"ecs": {"cluster": "c"}})).unwrap();
    ds.patch(crate::server::LAUNCH_TX, &json!({"motd": "y"}))
        .unwrap();
    ds.commit(crate::server::LAUNCH_TX).unwrap();
    // committing or deleting frees a slot
    ds.delete_tx("t1").unwrap();
    ds.patch("one-more", &json!({"motd": "x"})).unwrap();
}

#[test]
fn transactions_are_bounded_in_keys_and_bytes() {
    let (_d, ds) = ds();
    let many: Map<String, Value> = (0..=limits::MAX_TX_KEYS)
        .map(|i| (format!("k{i}"), json!("1")))
        .collect();
    let e = ds
        .patch("t", &json!({"kernel": {"sysctl": many}}))
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge(_)), "{e}");
    assert_eq!(e.status().as_u16(), 413);
    assert!(e.to_string().contains("1025 keys"), "{e}");
    // key count accumulates over patches of the same transaction
    let half: Map<String, Value> = (0..700).map(|i| (format!("a{i}"), json!("1"))).collect();
    ds.patch("t", &json!({"kernel": {"sysctl": half}})).unwrap();
    let half: Map<String, Value> = (0..700).map(|i| (format!("b{i}"), json!("1"))).collect();
    assert!(matches!(
        ds.patch("t", &json!({"kernel": {"sysctl": half}})),
        Err(Error::TooLarge(_))
    ));
    // bytes: 5 host containers with 60 KiB of user-data each
    let ud = "QUFB".repeat(15_000);
    let big: Map<String, Value> = (0..5)
        .map(|i| (format!("c{i}"), json!({"user-data": ud})))
        .collect();
    let e = ds.patch("u", &json!({"host-containers": big})).unwrap_err();
    assert!(e.to_string().contains("bytes"), "{e}");
    assert_eq!(ds.list_tx().unwrap(), ["t"]);
}

#[test]
fn restore_is_a_compare_and_swap() {
    let (_d, ds) = ds();
    ds.patch("t", &json!({"motd": "old"})).unwrap();
    ds.commit("t").unwrap();
    ds.patch(
        "t",
        &json!({"motd": "new", "kernel": {"sysctl": {"a.b": "1"}}}),
    )
    .unwrap();
    ds.commit("t").unwrap();
    let restored = ds
        .restore(&[
            ("settings.motd".into(), json!("new"), Some(json!("old"))),
            ("settings.kernel.sysctl.\"a.b\"".into(), json!("1"), None),
            // does not hold the committed value any more: left alone
            ("settings.updates.ignore-waves".into(), json!(true), None),
        ])
        .unwrap();
    assert_eq!(restored.len(), 2);
    let live = ds.live().unwrap();
    assert_eq!(live["motd"], "old");
    assert!(live.get("kernel").is_none(), "{live}");
}

#[test]
fn delete_tx_drops_pending() {
    let (_d, ds) = ds();
    ds.patch("t", &json!({"motd": "x"})).unwrap();
    assert_eq!(ds.delete_tx("t").unwrap(), ["settings.motd"]);
    assert!(ds.list_tx().unwrap().is_empty());
}

#[test]
fn migrate_switches_version_and_failure_keeps_old() {
    use updater::migration::{Direction, Migration};
    let (_d, ds) = ds();
    ds.patch("t", &json!({"motd": "x"})).unwrap();
    ds.commit("t").unwrap();
    let add = Migration::from_json("m", br#"{"ops":[{"op":"add","key":"settings.ecs.instance-attributes.migrated","value":"yes"}]}"#).unwrap();
    ds.migrate(
        &Version::new(1, 1, 0),
        &[("m".into(), add.clone())],
        Direction::Forward,
    )
    .unwrap();
    assert_eq!(ds.version().unwrap(), Version::new(1, 1, 0));
    assert_eq!(
        ds.live().unwrap()["ecs"]["instance-attributes"]["migrated"],
        "yes"
    );
    let bad = Migration::from_json(
        "bad",
        br#"{"ops":[{"op":"rename","from":"settings.zzz","to":"settings.motd"}]}"#,
    )
    .unwrap();
    assert!(
        ds.migrate(
            &Version::new(1, 2, 0),
            &[("bad".into(), bad)],
            Direction::Forward
        )
        .is_err()
    );
    assert_eq!(ds.version().unwrap(), Version::new(1, 1, 0));
    ds.migrate(
        &Version::new(1, 0, 0),
        &[("m".into(), add)],
        Direction::Backward,
    )
    .unwrap();
    assert_eq!(ds.live().unwrap(), json!({"motd": "x"}));
}

/// Writes a live document by hand, as an older version (or a migration) may have left it.
fn store_live(ds: &Datastore, doc: &Value) {
    let path = ds.vdir().unwrap().join("live.json");
    std::fs::write(path, serde_json::to_vec(doc).unwrap()).unwrap();
}

/// A live value refused by this version's rules does not block writes to other keys; it
/// stays stored (and dropped from the typed view) until a valid value replaces it.
#[test]
fn a_stored_value_refused_now_does_not_block_other_writes() {
    let (_d, ds) = ds();
    let bad = json!({"ntp": {"time-servers": ["ntp://t.example/path"]}, "motd": "a"});
    store_live(&ds, &bad);
    ds.patch("t", &json!({"motd": "b"})).unwrap();
    assert_eq!(ds.commit("t").unwrap(), ["settings.motd"]);
    let live = ds.live().unwrap();
    assert_eq!(live["ntp"], bad["ntp"], "the stored value is kept");
    assert_eq!(
        settings::load(&live)
            .dropped
            .iter()
            .map(|d| d.key.as_str())
            .collect::<Vec<_>>(),
        ["settings.ntp.time-servers"]
    );
    // new writes are still strict, naming the key
    let e = ds
        .patch(
            "t",
            &json!({"ntp": {"time-servers": ["ntp://t.example/other"]}}),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidSettings { key, .. } if key.starts_with("settings.ntp.time-servers")),
        "{e}"
    );
    // a valid value replaces it
    ds.patch("t", &json!({"ntp": {"time-servers": ["t.example"]}}))
        .unwrap();
    ds.commit("t").unwrap();
    assert!(settings::load(&ds.live().unwrap()).dropped.is_empty());
}

/// A pending transaction stored with a value refused now (by an older version, or a
/// migration) is refused at commit with the key named; nothing is committed.
#[test]
fn a_stored_pending_value_refused_now_fails_the_commit_naming_the_key() {
    let (_d, ds) = ds();
    ds.patch("t", &json!({"motd": "a"})).unwrap();
    let path = ds.pending_path("t").unwrap();
    std::fs::write(
        &path,
        br#"{"motd": "b", "dns": {"search-list": ["corp_x.example"]}}"#,
    )
    .unwrap();
    let e = ds.commit("t").unwrap_err();
    assert_eq!(e.status().as_u16(), 400);
    assert!(
        matches!(&e, Error::InvalidSettings { key, .. } if key.starts_with("settings.dns.search-list")),
        "{e}"
    );
    assert_eq!(ds.live().unwrap(), json!({}));
    assert_eq!(ds.list_tx().unwrap(), ["t"]);
    // and adding to it is refused the same way; DELETE drops it
    assert!(matches!(
        ds.patch("t", &json!({"motd": "c"})),
        Err(Error::InvalidSettings { .. })
    ));
    assert_eq!(
        ds.delete_tx("t").unwrap(),
        ["settings.dns.search-list", "settings.motd"]
    );
}

/// Pending documents are discarded at boot: one that is not even JSON must not stop it.
#[test]
fn an_unreadable_pending_document_is_discarded() {
    let (_d, ds) = ds();
    ds.patch("t", &json!({"motd": "a"})).unwrap();
    std::fs::write(ds.pending_path("t").unwrap(), b"{not json").unwrap();
    ds.migrate(
        &Version::new(1, 1, 0),
        &[],
        updater::migration::Direction::Forward,
    )
    .unwrap();
    assert!(ds.list_tx().unwrap().is_empty(), "not carried over");
    ds.patch("t", &json!({"motd": "a"})).unwrap();
    std::fs::write(ds.pending_path("t").unwrap(), b"{not json").unwrap();
    ds.discard_pending().unwrap();
    assert!(ds.list_tx().unwrap().is_empty());
}
