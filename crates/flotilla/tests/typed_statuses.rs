//! Statuses are typed outside `model`: no string literal spelling a status
//! (`"RUNNING"`, `"ACTIVE"`, `"PRIMARY"`, …) in the code of any crate but `model`, which
//! owns the spellings (`model::lifecycle::TaskStatus`, `model::status`) and the typed
//! getters and setters of the wire shapes (`task.last()`, `service.set_status(…)`).
//!
//! Every `.rs` file under `crates/*/src` is read, except `crates/model` and the test
//! support crate `testkit`; comments, `#[cfg(test)]` items (inline, or a `mod x;` file)
//! and `tests/` directories are test code or prose and are skipped. A literal is flagged
//! when it is exactly a status spelling — comparing one (`== Some("STOPPED")`,
//! `matches!(s, Some("ACTIVE"))`), writing one (`Some("RUNNING".into())`) or passing one
//! around alike; a message that merely mentions a status inside a longer string is fine.
//! The spellings come from `model` itself, so a status added there is checked here too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use model::lifecycle::TaskStatus;
use model::status::{ClusterStatus, DeploymentStatus, InstanceStatus, ServiceStatus};

/// Crates whose sources are not checked: `model` spells the statuses; `testkit` is test
/// support (a dev-dependency only, see `dependencies.rs`).
const UNCHECKED_CRATES: &[&str] = &["model", "testkit"];

/// Status literals allowed where a typed status cannot be used, with the reason. Each
/// entry must still occur (a stale entry fails the test).
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "crates/devcluster/src/ecs.rs",
        "ACTIVE",
        "devcluster drives the server over HTTP and links no flotilla crate (dependencies.rs); \
     the literal is a ListContainerInstances request parameter",
    ),
    ("crates/devcluster/src/ecs.rs", "DRAINING", "as above"),
];

/// Every status spelling `model` knows.
fn status_spellings() -> BTreeSet<&'static str> {
    let mut all: BTreeSet<&'static str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
    all.extend(ClusterStatus::ALL.iter().map(|s| s.as_str()));
    all.extend(InstanceStatus::ALL.iter().map(|s| s.as_str()));
    all.extend(ServiceStatus::ALL.iter().map(|s| s.as_str()));
    all.extend(DeploymentStatus::ALL.iter().map(|s| s.as_str()));
    all
}

/// A token of Rust source, as far as this check cares.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An identifier or keyword.
    Ident(String),
    /// A string literal's contents (escapes left as written).
    Str(String),
    /// One punctuation character.
    Punct(char),
}

/// Splits Rust source into tokens with their line numbers, dropping comments,
/// whitespace, numbers, char literals and lifetimes.
fn tokens(src: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    // Advances past chars[from..to], counting lines.
    let count_lines =
        |from: usize, to: usize| chars[from..to].iter().filter(|&&c| c == '\n').count();
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let (start, mut depth) = (i, 0);
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count_lines(start, i);
        } else if c == '"' {
            let (start, at) = (i, line);
            i += 1;
            let mut text = String::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    text.push(chars[i]);
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    text.push(ch);
                }
                i += 1;
            }
            i += 1;
            line += count_lines(start, i.min(chars.len()));
            out.push((Token::Str(text), at));
        } else if c == '\'' {
            // A char literal ('x', '\n', '\'', '"') or a lifetime/label ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ident_char(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Raw (and byte/C) strings: r"…", r#"…"#, br"…", b"…", c"…".
            let raw = matches!(word.as_str(), "r" | "br" | "cr");
            let hashes = chars[i..].iter().take_while(|&&h| h == '#').count();
            if (raw && chars.get(i + hashes) == Some(&'"'))
                || (matches!(word.as_str(), "b" | "c") && chars.get(i) == Some(&'"'))
            {
                if !raw {
                    continue; // the '"' branch reads the rest as a normal string
                }
                let (start, at) = (i, line);
                i += hashes + 1;
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let body_start = i;
                while i < chars.len() && !chars[i..].starts_with(&close) {
                    i += 1;
                }
                let text: String = chars[body_start..i.min(chars.len())].iter().collect();
                i += close.len();
                line += count_lines(start, i.min(chars.len()));
                out.push((Token::Str(text), at));
            } else if word.chars().next().is_some_and(|f| f.is_ascii_digit()) {
                // A number: nothing to check.
            } else {
                out.push((Token::Ident(word), line));
            }
        } else {
            out.push((Token::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// What one file's non-test code holds: its string literals, and the `mod x;`
/// declarations marked `#[cfg(test)]` (those files are test code).
#[derive(Debug, Default)]
struct Scan {
    literals: Vec<(String, usize)>,
    test_modules: Vec<String>,
}

fn is_cfg_test(toks: &[(Token, usize)], i: usize) -> bool {
    let pattern = [
        Token::Punct('#'),
        Token::Punct('['),
        Token::Ident("cfg".into()),
        Token::Punct('('),
        Token::Ident("test".into()),
        Token::Punct(')'),
        Token::Punct(']'),
    ];
    toks.len() >= i + pattern.len()
        && toks[i..i + pattern.len()]
            .iter()
            .zip(&pattern)
            .all(|((t, _), p)| t == p)
}

/// The index just after the bracketed group opening at `i` (`[`, `{` or `(`).
fn skip_group(toks: &[(Token, usize)], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i].0 {
            Token::Punct('[' | '{' | '(') => depth += 1,
            Token::Punct(']' | '}' | ')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

fn scan(src: &str) -> Scan {
    let toks = tokens(src);
    let mut scan = Scan::default();
    let mut i = 0;
    while i < toks.len() {
        if is_cfg_test(&toks, i) {
            // Skip the attribute, any further attributes, then the item: up to its `;`
            // or through its `{ … }` body.
            i += 7;
            while matches!(toks.get(i), Some((Token::Punct('#'), _))) {
                i = skip_group(&toks, i + 1);
            }
            if let (
                Some((Token::Ident(m), _)),
                Some((Token::Ident(name), _)),
                Some((Token::Punct(';'), _)),
            ) = (toks.get(i), toks.get(i + 1), toks.get(i + 2))
                && m == "mod"
            {
                scan.test_modules.push(name.clone());
            }
            while i < toks.len() {
                match toks[i].0 {
                    Token::Punct(';') => {
                        i += 1;
                        break;
                    }
                    Token::Punct('{') => {
                        i = skip_group(&toks, i);
                        break;
                    }
                    _ => i += 1,
                }
            }
            continue;
        }
        if let (Token::Str(s), line) = &toks[i] {
            scan.literals.push((s.clone(), *line));
        }
        i += 1;
    }
    scan
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "tests") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The files a `#[cfg(test)] mod name;` in `file` refers to.
fn module_files(file: &Path, name: &str) -> [PathBuf; 2] {
    let dir = file.parent().unwrap_or(Path::new("."));
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let base = if matches!(stem, "mod" | "lib" | "main") {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    [
        base.join(format!("{name}.rs")),
        base.join(name).join("mod.rs"),
    ]
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/flotilla is two levels below the workspace root")
        .to_path_buf()
}

#[test]
fn no_status_literal_outside_model() {
    let root = workspace_root();
    let statuses = status_spellings();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !UNCHECKED_CRATES.contains(&name.as_str()) {
            rust_files(&entry.path().join("src"), &mut files);
        }
    }
    files.sort();
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut scans: BTreeMap<PathBuf, Scan> = BTreeMap::new();
    for f in &files {
        let src = std::fs::read_to_string(f).expect("readable source");
        scans.insert(f.clone(), scan(&src));
    }
    let test_files: BTreeSet<PathBuf> = scans
        .iter()
        .flat_map(|(f, s)| s.test_modules.iter().flat_map(|m| module_files(f, m)))
        .collect();
    let mut allowed_seen = BTreeSet::new();
    let mut found = Vec::new();
    for (f, s) in &scans {
        if test_files.contains(f) {
            continue;
        }
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        for (lit, line) in &s.literals {
            if !statuses.contains(lit.as_str()) {
                continue;
            }
            if let Some(a) = ALLOWED.iter().find(|(p, l, _)| *p == rel && l == lit) {
                allowed_seen.insert(*a);
                continue;
            }
            found.push(format!("{rel}:{line}: \"{lit}\""));
        }
    }
    assert!(
        found.is_empty(),
        "status spelled as a string literal outside model ({} places); use the typed \
         statuses (model::lifecycle::TaskStatus, model::status) and the wire shapes' typed \
         getters and setters instead:\n{}",
        found.len(),
        found.join("\n")
    );
    let stale: Vec<_> = ALLOWED
        .iter()
        .filter(|a| !allowed_seen.contains(a))
        .collect();
    assert!(
        stale.is_empty(),
        "allowed literals no longer there: {stale:?}"
    );
}

#[test]
fn the_scanner_sees_code_literals_only() {
    let src = r####"
//! "RUNNING" in a doc comment
/// "STOPPED" in a doc comment
fn f(t: &Task) -> bool {
    let quote = '"'; let esc = '\''; let lifetime: &'static str = "x";
    /* "ACTIVE" in a /* nested */ block comment */
    let raw = r#"PRIMARY"#;
    let message = format!("{} is not ACTIVE", t.name);
    t.last_status.as_deref() == Some("STOPPED")
}
#[cfg(test)]
mod tests {
    fn g() { assert_eq!(s, "DRAINING"); }
}
#[cfg(test)]
mod more;
fn h() -> &'static str { "INACTIVE" }
"####;
    let s = scan(src);
    let statuses = status_spellings();
    let found: Vec<(&str, usize)> = s
        .literals
        .iter()
        .filter(|(l, _)| statuses.contains(l.as_str()))
        .map(|(l, n)| (l.as_str(), *n))
        .collect();
    assert_eq!(
        found,
        [("PRIMARY", 7), ("STOPPED", 9), ("INACTIVE", 17)],
        "{:?}",
        s.literals
    );
    assert_eq!(s.test_modules, ["more"]);
    assert_eq!(
        module_files(Path::new("crates/x/src/a/b.rs"), "tests")[0],
        Path::new("crates/x/src/a/b/tests.rs")
    );
    assert_eq!(
        module_files(Path::new("crates/x/src/a/mod.rs"), "tests")[0],
        Path::new("crates/x/src/a/tests.rs")
    );
}
