//! The dependency rule of the workspace, checked from the `Cargo.toml`s: internal
//! dependencies point one way (toward `model`), the pure crates never pull in an
//! async runtime, a web framework or a database, and the test support crate is only
//! ever a dev-dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// For each crate, the internal crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("durable", &[]),
    ("store", &[]),
    ("scheduler", &["model"]),
    ("controlplane", &["model", "store", "scheduler"]),
    ("ecs-api", &["model", "controlplane"]),
    ("runtime", &["model"]),
    ("network", &["durable"]),
    (
        "agent",
        &[
            "model",
            "runtime",
            "scheduler",
            "network",
            "durable",
            "lb",
            "host-api",
        ],
    ),
    ("updater", &["model", "durable"]),
    (
        "host-api",
        &["model", "store", "updater", "durable", "runtime"],
    ),
    ("devcluster", &["durable"]),
    // Service-discovery DNS: fed a plain snapshot, so no internal dependency.
    ("dns", &[]),
    // The load balancer's data plane: fed a plain config, so no internal dependency.
    ("lb", &[]),
    // The rolling OS updater's decisions: fed a plain snapshot in the model's typed
    // statuses.
    ("rollout", &["model"]),
    // Test support: a [dev-dependencies] entry only (see DEV_ONLY).
    ("testkit", &["model", "store", "controlplane"]),
    (
        "flotilla",
        &[
            "model",
            "store",
            "scheduler",
            "controlplane",
            "ecs-api",
            "runtime",
            "agent",
            "updater",
            "host-api",
            "devcluster",
            "dns",
            "lb",
            "rollout",
            "durable",
        ],
    ),
];

/// Crates that do IO or bring a runtime; pure crates must not depend on them.
const IO_CRATES: &[&str] = &[
    "tokio",
    "axum",
    "hyper",
    "reqwest",
    "redb",
    "tonic",
    "containerd-client",
    "rusqlite",
];
const PURE: &[&str] = &["model", "scheduler", "rollout"];

/// Internal crates for tests only: any crate may list them under `[dev-dependencies]`,
/// none under `[dependencies]` (so they never reach a binary).
const DEV_ONLY: &[&str] = &["testkit"];

/// The crate names listed in `section` (`[dependencies]`, `[dev-dependencies]`).
fn dependencies(manifest: &str, section: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == section;
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once(['=', '.']) {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn internal_dependencies_point_toward_model() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let internal: BTreeSet<&str> = allowed.keys().copied().collect();
    let mut seen = 0;
    for entry in std::fs::read_dir(crates_dir).expect("read crates/") {
        let dir = entry.expect("entry").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_owned();
        let Some(ok) = allowed.get(name.as_str()) else {
            panic!(
                "crate {name} is not in the dependency rule; add it to ALLOWED in {}",
                file!()
            );
        };
        seen += 1;
        for dep in dependencies(&manifest, "[dependencies]") {
            assert!(
                !DEV_ONLY.contains(&dep.as_str()),
                "{name} must list {dep} under [dev-dependencies], not [dependencies] (it is for tests only)"
            );
            if internal.contains(dep.as_str()) {
                assert!(
                    ok.contains(&dep.as_str()),
                    "{name} must not depend on {dep} (dependencies point toward model)"
                );
            }
            if PURE.contains(&name.as_str()) {
                assert!(
                    !IO_CRATES.contains(&dep.as_str()),
                    "{name} is pure and must not depend on {dep}"
                );
            }
        }
    }
    assert!(seen >= 5, "found only {seen} crates");
}

#[test]
fn the_rule_reads_dev_dependencies_apart() {
    let manifest = "[dependencies]\nmodel.workspace = true\n\n[dev-dependencies]\ntestkit = { path = \"../testkit\" }\n";
    assert_eq!(
        dependencies(manifest, "[dependencies]"),
        BTreeSet::from(["model".to_owned()])
    );
    assert_eq!(
        dependencies(manifest, "[dev-dependencies]"),
        BTreeSet::from(["testkit".to_owned()])
    );
}
