//! Declarative datastore migrations.
//!
//! Bottlerocket ships migrations as binaries run from a sealed memfd; flotilla ships them as
//! signed JSON documents listing operations on dotted setting keys, so a migration can neither
//! execute code nor touch anything but the datastore copy it is given:
//!
//! ```json
//! {"ops": [
//!   {"op": "add", "key": "settings.ecs.instance-attributes.tier", "value": "web"},
//!   {"op": "rename", "from": "settings.motd", "to": "settings.banner"},
//!   {"op": "remove", "key": "settings.old"}
//! ]}
//! ```
//!
//! Forward applies the ops in order; backward applies their inverses in reverse order (`add` ↔
//! remove, `rename` swapped, `remove` has no inverse and is a no-op backward). A `rename` whose
//! source is missing fails unless `"optional": true`. The boot step runs migrations on a *copy*
//! of the datastore and only switches to it when every migration succeeded.
//!
//! Keys use dots as separators; a segment containing dots is quoted:
//! `settings.kernel.sysctl."net.ipv4.ip_forward"`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// A migration document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    /// Operations, applied in order going forward.
    pub ops: Vec<Op>,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Op {
    /// Set `key` to `value` if unset (forward); remove it (backward).
    Add {
        /// Dotted key.
        key: String,
        /// Value to set.
        value: Value,
    },
    /// Move a value (forward `from → to`, backward `to → from`).
    Rename {
        /// Old key.
        from: String,
        /// New key.
        to: String,
        /// Missing source is not an error.
        #[serde(default)]
        optional: bool,
    },
    /// Delete a key (forward only).
    Remove {
        /// Dotted key.
        key: String,
    },
}

/// Direction of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Upgrading.
    Forward,
    /// Downgrading.
    Backward,
}

/// Splits a dotted key into segments, honouring double-quoted segments.
///
/// # Errors
/// Empty segments or an unterminated quote.
pub fn split_key(key: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = key.chars().peekable();
    let mut quoted_seg = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if cur.is_empty() && !quoted_seg => {
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '"' {
                        closed = true;
                        break;
                    }
                    cur.push(q);
                }
                if !closed {
                    return Err(format!("unterminated quote in key {key:?}"));
                }
                quoted_seg = true;
            }
            '.' => {
                if cur.is_empty() && !quoted_seg {
                    return Err(format!("empty segment in key {key:?}"));
                }
                out.push(std::mem::take(&mut cur));
                quoted_seg = false;
            }
            _ if quoted_seg => return Err(format!("text after quoted segment in key {key:?}")),
            _ => cur.push(c),
        }
    }
    if cur.is_empty() && !quoted_seg {
        return Err(format!("empty segment in key {key:?}"));
    }
    out.push(cur);
    Ok(out)
}

/// Reads the value at a key.
#[must_use]
pub fn get<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, seg| v.get(seg))
}

/// Removes and returns the value at a key, pruning parents left empty.
pub fn take(doc: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let v = {
        let mut cur = &mut *doc;
        for seg in parents {
            cur = cur.get_mut(seg)?;
        }
        cur.as_object_mut()?.remove(last)
    };
    if v.is_some() {
        prune(doc);
    }
    v
}

fn prune(v: &mut Value) {
    if let Value::Object(m) = v {
        for child in m.values_mut() {
            prune(child);
        }
        m.retain(|_, c| !matches!(c, Value::Object(o) if o.is_empty()));
    }
}

/// Sets the value at a key, creating parent objects.
///
/// # Errors
/// When a parent exists and is not an object.
pub fn set(doc: &mut Value, path: &[String], value: Value) -> std::result::Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut cur = doc;
    for seg in parents {
        if !cur.is_object() {
            return Err(format!("{seg}: parent is not a table"));
        }
        cur = cur
            .as_object_mut()
            .map(|m| {
                m.entry(seg.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
            })
            .ok_or_else(|| format!("{seg}: parent is not a table"))?;
    }
    let m = cur
        .as_object_mut()
        .ok_or_else(|| format!("{last}: parent is not a table"))?;
    m.insert(last.clone(), value);
    Ok(())
}

impl Migration {
    /// Parses a migration document.
    ///
    /// # Errors
    /// Malformed JSON or unknown ops.
    pub fn from_json(name: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::Migration {
            name: name.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Applies the migration to one settings document (live or a pending transaction).
    ///
    /// # Errors
    /// A malformed key, a missing non-optional rename source, or a type clash.
    pub fn apply(&self, name: &str, doc: &mut Value, dir: Direction) -> Result<()> {
        let fail = |reason: String| Error::Migration {
            name: name.to_owned(),
            reason,
        };
        let key = |k: &str| split_key(k).map_err(fail);
        let ops: Vec<&Op> = match dir {
            Direction::Forward => self.ops.iter().collect(),
            Direction::Backward => self.ops.iter().rev().collect(),
        };
        for op in ops {
            match (op, dir) {
                (Op::Add { key: k, value }, Direction::Forward) => {
                    let p = key(k)?;
                    if get(doc, &p).is_none() {
                        set(doc, &p, value.clone()).map_err(fail)?;
                    }
                }
                (Op::Add { key: k, .. }, Direction::Backward) => {
                    take(doc, &key(k)?);
                }
                (Op::Rename { from, to, optional }, _) => {
                    let (src, dst) = match dir {
                        Direction::Forward => (from, to),
                        Direction::Backward => (to, from),
                    };
                    let (sp, dp) = (key(src)?, key(dst)?);
                    match take(doc, &sp) {
                        Some(v) => set(doc, &dp, v).map_err(fail)?,
                        None if *optional => {}
                        None => return Err(fail(format!("rename source {src} is not set"))),
                    }
                }
                (Op::Remove { key: k }, Direction::Forward) => {
                    take(doc, &key(k)?);
                }
                (Op::Remove { .. }, Direction::Backward) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn split_keys_with_quotes() {
        assert_eq!(
            split_key(r#"settings.kernel.sysctl."net.ipv4.ip_forward""#).unwrap(),
            ["settings", "kernel", "sysctl", "net.ipv4.ip_forward"]
        );
        assert!(split_key("a..b").is_err());
        assert!(split_key("a.\"b").is_err());
        assert!(split_key("").is_err());
    }

    #[test]
    fn forward_then_backward_is_identity_for_add_and_rename() {
        let m = Migration::from_json(
            "m",
            br#"{"ops":[{"op":"add","key":"settings.ecs.instance-attributes.migrated","value":"yes"},
                        {"op":"rename","from":"settings.motd","to":"settings.banner"}]}"#,
        )
        .unwrap();
        let orig = json!({"settings": {"motd": "hi", "ecs": {"cluster": "c"}}});
        let mut doc = orig.clone();
        m.apply("m", &mut doc, Direction::Forward).unwrap();
        assert_eq!(doc["settings"]["banner"], "hi");
        assert_eq!(
            doc["settings"]["ecs"]["instance-attributes"]["migrated"],
            "yes"
        );
        assert!(doc["settings"].get("motd").is_none());
        m.apply("m", &mut doc, Direction::Backward).unwrap();
        assert_eq!(doc, orig);
    }

    #[test]
    fn missing_rename_source_fails_unless_optional() {
        let m = Migration::from_json(
            "m",
            br#"{"ops":[{"op":"rename","from":"settings.x","to":"settings.y"}]}"#,
        )
        .unwrap();
        let mut doc = json!({"settings": {}});
        assert!(m.apply("m", &mut doc, Direction::Forward).is_err());
        let m2 = Migration::from_json(
            "m",
            br#"{"ops":[{"op":"rename","from":"settings.x","to":"settings.y","optional":true}]}"#,
        )
        .unwrap();
        m2.apply("m", &mut doc, Direction::Forward).unwrap();
    }

    #[test]
    fn unknown_op_is_refused() {
        assert!(Migration::from_json("m", br#"{"ops":[{"op":"exec","cmd":"rm -rf /"}]}"#).is_err());
    }
}
