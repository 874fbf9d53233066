//! There is one way to replace a file's content in flotilla: `durable::write` (atomic,
//! fsync'd, directory fsync'd, created with its final mode). This test reads every source
//! file of the workspace and fails if another rename-based write appears; the few renames
//! that are not file writes are listed with the reason they are different.

use std::path::{Path, PathBuf};

/// Renames that are not "replace a file's content" (file, reason).
const ALLOWED: &[(&str, &str)] = &[
    ("durable/src/lib.rs", "the one durable write itself"),
    (
        "runtime/src/logs/rotation.rs",
        "log rotation moves a full log file aside (no content is replaced)",
    ),
    (
        "updater/src/image.rs",
        "installs a whole unpacked image directory into a slot",
    ),
    (
        "host-api/src/datastore.rs",
        "swaps the datastore's `current` symlink to a migrated version directory",
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn durable_write_is_the_only_rename_based_file_write() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/");
    let mut files = Vec::new();
    sources(crates, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let this_file = Path::new(file!()).file_name().expect("name");
    let mut offenders = Vec::new();
    for file in files {
        if file.file_name() == Some(this_file) {
            continue;
        }
        let rel = file
            .strip_prefix(crates)
            .expect("under crates/")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).expect("read source");
        if !text.contains("fs::rename(") {
            continue;
        }
        if !ALLOWED.iter().any(|(allowed, _)| rel == *allowed) {
            offenders.push(rel);
        }
    }
    assert!(
        offenders.is_empty(),
        "these files replace a file by hand instead of calling durable::write: {offenders:?}"
    );
}
