//! Real TUF repositories written by `updater::repo::publish`, consumed by the node update
//! commands; and the TUF spec's attacks, each of which must be refused with the node unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use semver::Version;
use updater::image::{ImageMeta, ImageSpec};
use updater::manifest::Update;
use updater::node::{self, Node, UpdateConfig};
use updater::partition::Slot;
use updater::repo::{self, PublishSpec};

struct Fixture {
    dir: tempfile::TempDir,
    keys: Vec<PathBuf>,
}

impl Fixture {
    async fn new(nkeys: usize, threshold: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = repo::generate_keys(&dir.path().join("keys"), nkeys, threshold, in_days(30))
            .await
            .unwrap();
        Fixture { dir, keys }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }
    fn root(&self) -> PathBuf {
        self.p("keys/root.json")
    }
    fn image(&self, version: &str) -> PathBuf {
        let out = self.p(&format!("img-{version}.tar.gz"));
        if !out.exists() {
            let spec = ImageSpec {
                meta: ImageMeta {
                    version: version.into(),
                    variant: "flotilla-node".into(),
                    arch: "x86_64".into(),
                    ..ImageMeta::default()
                },
                binary: None,
                root_json: Some(self.root()),
                overlay: None,
            };
            updater::image::build_image(&spec, &out).unwrap();
        }
        out
    }
    fn node(&self) -> Node {
        let n = Node::new(self.p("node"));
        if !n.partition_path().exists() {
            n.install(&self.image("1.0.0")).unwrap();
        }
        n
    }
    async fn publish(
        &self,
        repo_dir: &str,
        version: &str,
        waves: BTreeMap<u32, Timestamp>,
        expires: Timestamp,
    ) {
        let spec = PublishSpec {
            repo: self.p(repo_dir),
            root: self.root(),
            keys: self.keys.clone(),
            image: Some((
                self.image(version),
                Update {
                    variant: "flotilla-node".into(),
                    arch: "x86_64".into(),
                    version: Version::parse(version).unwrap(),
                    max_version: Version::parse(version).unwrap(),
                    waves,
                    images: BTreeMap::new(),
                },
            )),
            migrations: vec![],
            max_version: None,
            expires,
        };
        repo::publish(&spec).await.unwrap();
    }
    /// [`Fixture::cfg`] with waves ignored: the update is due at once.
    fn cfg_ignoring_waves(&self, repo_dir: &str) -> UpdateConfig {
        UpdateConfig {
            ignore_waves: true,
            ..self.cfg(repo_dir)
        }
    }

    fn cfg(&self, repo_dir: &str) -> UpdateConfig {
        UpdateConfig {
            metadata_base_url: self.p(repo_dir).join("metadata").display().to_string(),
            targets_base_url: self.p(repo_dir).join("targets").display().to_string(),
            seed: 100,
            ignore_waves: false,
            version_lock: None,
        }
    }
}

fn in_days(n: i64) -> Timestamp {
    Timestamp::now()
        .checked_add(SignedDuration::from_hours(24 * n))
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn find(dir: &Path, suffix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.display()))
}

/// Snapshot of what must not change when an attack is refused.
fn node_state(n: &Node) -> (String, bool) {
    (
        std::fs::read_to_string(n.partition_path()).unwrap(),
        n.slot_dir(Slot::B).join("image.toml").exists(),
    )
}

async fn refresh_and_prepare(n: &Node, cfg: &UpdateConfig) -> Result<(), String> {
    let (_, chosen) = node::refresh(n, cfg, Timestamp::now())
        .await
        .map_err(|e| e.to_string())?;
    let chosen = chosen.ok_or("no update chosen")?;
    node::prepare(n, cfg, &chosen)
        .await
        .map_err(|e| e.to_string())
}

/// The error of a refresh and prepare that must fail.
async fn refused(n: &Node, cfg: &UpdateConfig) -> String {
    refresh_and_prepare(n, cfg).await.unwrap_err()
}

#[tokio::test]
async fn good_update_is_staged_in_the_inactive_slot_and_boots_once() {
    let f = Fixture::new(1, 1).await;
    f.publish("repo", "1.1.0", BTreeMap::new(), in_days(7))
        .await;
    let n = f.node();
    let (all, chosen) = node::refresh(&n, &f.cfg("repo"), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(all, [Version::new(1, 1, 0)]);
    let chosen = chosen.unwrap();
    node::prepare(&n, &f.cfg("repo"), &chosen).await.unwrap();
    assert_eq!(n.slot_meta(Slot::B).unwrap().version, "1.1.0");
    let p = n.partition().unwrap();
    assert_eq!(
        (p.b.priority, p.b.tries_left, p.b.successful),
        (0, 1, false)
    );
    node::activate(&n).unwrap();
    let mut p = n.partition().unwrap();
    assert_eq!(p.select_boot().unwrap(), Slot::B);
}

#[tokio::test]
async fn waves_hold_back_until_ignore_waves() {
    let f = Fixture::new(1, 1).await;
    let later = in_days(3);
    f.publish("repo", "1.1.0", BTreeMap::from([(0, later)]), in_days(7))
        .await;
    let n = f.node();
    let (_, chosen) = node::refresh(&n, &f.cfg("repo"), Timestamp::now())
        .await
        .unwrap();
    assert!(chosen.is_none(), "wave has not started");
    let (_, chosen) = node::refresh(&n, &f.cfg("repo"), later).await.unwrap();
    assert!(chosen.is_some(), "wave started");
    let cfg = UpdateConfig {
        ignore_waves: true,
        ..f.cfg("repo")
    };
    let (_, chosen) = node::refresh(&n, &cfg, Timestamp::now()).await.unwrap();
    assert!(chosen.is_some());
}

#[tokio::test]
async fn attack_arbitrary_software_tampered_image_is_refused() {
    let f = Fixture::new(1, 1).await;
    f.publish("repo", "1.1.0", BTreeMap::new(), in_days(7))
        .await;
    let n = f.node();
    let before = node_state(&n);
    let target = find(&f.p("repo/targets"), "flotilla-node-1.1.0-x86_64.tar.gz");
    let mut bytes = std::fs::read(&target).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&target, bytes).unwrap();
    let cfg = UpdateConfig {
        ignore_waves: true,
        ..f.cfg("repo")
    };
    let err = refresh_and_prepare(&n, &cfg).await.unwrap_err();
    assert!(
        err.contains("TUF target") && err.contains("flotilla-node-1.1.0"),
        "{err}"
    );
    let (part, _) = node_state(&n);
    assert_eq!(
        part.replace(' ', ""),
        before.0.replace(' ', ""),
        "flags unchanged except clearing the unused slot"
    );
    assert!(!n.partition().unwrap().b.will_boot());
}

#[tokio::test]
async fn attack_wrongly_signed_metadata_is_refused() {
    let f = Fixture::new(1, 1).await;
    let evil = Fixture::new(1, 1).await;
    // the attacker builds a complete, self-consistent repository with their own keys
    evil.publish("repo", "1.1.0", BTreeMap::new(), in_days(7))
        .await;
    let n = f.node();
    let before = node_state(&n);
    let err = refused(&n, &evil.cfg_ignoring_waves("repo")).await;
    assert!(err.contains("TUF repository refused"), "{err}");
    assert_eq!(node_state(&n), before);
}

#[tokio::test]
async fn attack_rollback_to_older_metadata_is_refused() {
    let f = Fixture::new(1, 1).await;
    f.publish("repo", "1.1.0", BTreeMap::new(), in_days(7))
        .await;
    copy_dir(&f.p("repo"), &f.p("old"));
    f.publish("repo", "1.2.0", BTreeMap::new(), in_days(7))
        .await;
    let n = f.node();
    let cfg = UpdateConfig {
        ignore_waves: true,
        ..f.cfg("repo")
    };
    node::refresh(&n, &cfg, Timestamp::now()).await.unwrap();
    let before = node_state(&n);
    // a mirror now serves the older (validly signed, unexpired) metadata
    let err = refused(&n, &f.cfg_ignoring_waves("old")).await;
    assert!(
        err.contains("TUF repository refused") && err.to_lowercase().contains("version"),
        "{err}"
    );
    assert_eq!(node_state(&n), before);
}

#[tokio::test]
async fn attack_indefinite_freeze_expired_metadata_is_refused() {
    let f = Fixture::new(1, 1).await;
    let expired = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(1))
        .unwrap();
    f.publish("repo", "1.1.0", BTreeMap::new(), expired).await;
    let n = f.node();
    let before = node_state(&n);
    let err = refused(&n, &f.cfg_ignoring_waves("repo")).await;
    assert!(
        err.contains("TUF repository refused") && err.to_lowercase().contains("expired"),
        "{err}"
    );
    assert_eq!(node_state(&n), before);
}

#[tokio::test]
async fn attack_endless_data_is_refused() {
    let f = Fixture::new(1, 1).await;
    f.publish("repo", "1.1.0", BTreeMap::new(), in_days(7))
        .await;
    copy_dir(&f.p("repo"), &f.p("big-image"));
    let n = f.node();
    let before = node_state(&n);
    // 1. an endless timestamp.json
    let ts = f.p("repo/metadata/timestamp.json");
    let mut bytes = std::fs::read(&ts).unwrap();
    bytes.extend(std::iter::repeat_n(b' ', 1 << 20));
    std::fs::write(&ts, bytes).unwrap();
    let err = refused(&n, &f.cfg_ignoring_waves("repo")).await;
    assert!(err.contains("TUF repository refused"), "{err}");
    assert_eq!(node_state(&n), before);
    // 2. an image longer than its signed length
    let target = find(
        &f.p("big-image/targets"),
        "flotilla-node-1.1.0-x86_64.tar.gz",
    );
    let mut img = std::fs::read(&target).unwrap();
    img.extend(vec![0u8; 4 << 20]);
    std::fs::write(&target, img).unwrap();
    let err = refused(&n, &f.cfg_ignoring_waves("big-image")).await;
    assert!(err.contains("TUF target"), "{err}");
    assert!(!n.partition().unwrap().b.will_boot());
}

#[tokio::test]
async fn attack_mix_and_match_is_refused() {
    let f = Fixture::new(1, 1).await;
    f.publish("repo", "1.1.0", BTreeMap::new(), in_days(7))
        .await;
    let old_targets = std::fs::read(f.p("repo/metadata/1.targets.json")).unwrap();
    f.publish("repo", "1.2.0", BTreeMap::new(), in_days(7))
        .await;
    // serve the new timestamp/snapshot with the old targets metadata under the new name
    std::fs::write(f.p("repo/metadata/2.targets.json"), old_targets).unwrap();
    let n = f.node();
    let before = node_state(&n);
    let err = refused(&n, &f.cfg_ignoring_waves("repo")).await;
    assert!(err.contains("TUF repository refused"), "{err}");
    assert_eq!(node_state(&n), before);
}

#[tokio::test]
async fn attack_wrong_threshold_is_refused() {
    let f = Fixture::new(2, 2).await;
    f.publish("repo", "1.1.0", BTreeMap::new(), in_days(7))
        .await;
    let n = f.node();
    // sanity: with both signatures the repository loads
    node::refresh(
        &n,
        &UpdateConfig {
            ignore_waves: true,
            ..f.cfg("repo")
        },
        Timestamp::now(),
    )
    .await
    .unwrap();
    let before = node_state(&n);
    copy_dir(&f.p("repo"), &f.p("one-sig"));
    // drop one of the two signatures on timestamp.json (threshold 2)
    let ts = f.p("one-sig/metadata/timestamp.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&ts).unwrap()).unwrap();
    v["signatures"].as_array_mut().unwrap().truncate(1);
    std::fs::write(&ts, serde_json::to_vec(&v).unwrap()).unwrap();
    let mut n2 = n.clone();
    n2.root = n.root.clone();
    let err = refused(&n2, &f.cfg_ignoring_waves("one-sig")).await;
    assert!(
        err.contains("TUF repository refused") && err.to_lowercase().contains("threshold"),
        "{err}"
    );
    assert_eq!(node_state(&n), before);
}

#[tokio::test]
async fn missing_migration_chain_refuses_prepare() {
    let f = Fixture::new(1, 1).await;
    f.publish("repo", "1.1.0", BTreeMap::new(), in_days(7))
        .await;
    // a migration exists only for a different range, so 1.0.0 → 1.1.0 still needs none... add one
    // from 1.0.5 so the chain from 1.0.0 is broken
    let mfile = f.p("m.json");
    std::fs::write(&mfile, br#"{"ops":[]}"#).unwrap();
    repo::publish(&PublishSpec {
        repo: f.p("repo"),
        root: f.root(),
        keys: f.keys.clone(),
        image: None,
        migrations: vec![(Version::new(1, 0, 5), Version::new(1, 1, 0), mfile)],
        max_version: None,
        expires: in_days(7),
    })
    .await
    .unwrap();
    let n = f.node();
    let err = refused(&n, &f.cfg_ignoring_waves("repo")).await;
    assert!(err.contains("no migration path"), "{err}");
}

#[tokio::test]
async fn published_targets_are_links_that_a_republish_never_rewrites() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new(1, 1).await;
    let publish_bytes = |bytes: &'static [u8]| {
        let file = f.p("image.tar.gz");
        std::fs::write(&file, bytes).unwrap();
        PublishSpec {
            repo: f.p("repo"),
            root: f.root(),
            keys: f.keys.clone(),
            image: Some((
                file,
                Update {
                    variant: "flotilla-node".into(),
                    arch: "x86_64".into(),
                    version: Version::new(1, 1, 0),
                    max_version: Version::new(1, 1, 0),
                    waves: BTreeMap::new(),
                    images: BTreeMap::new(),
                },
            )),
            migrations: vec![],
            max_version: None,
            expires: in_days(7),
        }
    };
    repo::publish(&publish_bytes(b"first build")).await.unwrap();
    let first = find(&f.p("repo/targets"), "flotilla-node-1.1.0-x86_64.tar.gz");
    let staged = f.p("repo/staging/flotilla-node-1.1.0-x86_64.tar.gz");
    // One copy on disk: the target is the staged file, linked.
    assert_eq!(
        std::fs::metadata(&first).unwrap().ino(),
        std::fs::metadata(&staged).unwrap().ino()
    );
    // The same version published again from a different build: the staged file is replaced,
    // and the target clients may still be fetching keeps its own bytes.
    repo::publish(&publish_bytes(b"second build"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&first).unwrap(), b"first build");
    assert_eq!(std::fs::read(&staged).unwrap(), b"second build");
    let leftovers: Vec<_> = std::fs::read_dir(f.p("repo/staging"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
