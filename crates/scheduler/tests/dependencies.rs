//! The dependency rule from the design notes: the scheduler is pure, so its
//! manifest names no runtime, server, storage or other IO crate (firecracker's
//! `verify_dependencies.rs` does the same for its crates).

const ALLOWED: &[&str] = &["model", "serde", "rand", "regex", "thiserror"];

#[test]
fn scheduler_depends_only_on_pure_crates() {
    let manifest = include_str!("../Cargo.toml");
    let mut section = "";
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[dependencies]" || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, _)) = line.split_once('=') {
            found.push(name.trim().to_string());
        }
    }
    assert!(!found.is_empty(), "no [dependencies] parsed");
    for name in &found {
        assert!(
            ALLOWED.contains(&name.as_str()),
            "scheduler must not depend on `{name}`"
        );
    }
}
