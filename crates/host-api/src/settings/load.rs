//! Loading *stored* settings tolerantly: a stored value that no longer validates is dropped
//! from the typed view, never fatal.
//!
//! Every stored record must be survivable at startup. The live document (`live.json`), a
//! pending transaction or a migration's output can hold a value an older version accepted and
//! this one refuses (an NTP URL with a path, an endpoint with `user:pass@`, a search domain with
//! `_`, a key since renamed). Refusing the whole document would fail every read of the typed
//! settings after an update, and with it the boot. [`load`] instead leaves each such key out —
//! the key falls back to its default, as if unset — and says which keys and why
//! ([`Loaded::dropped`]); the rest of the settings are in effect.
//!
//! The stored document itself is not changed: booting the older version again finds the
//! value where it was. New writes are still validated strictly ([`super::validate`]);
//! [`newly_invalid`] is how the datastore refuses a write that would add a dropped key while
//! letting writes to other keys through.

use serde_json::{Map, Value};

use super::{Settings, dotted_key, leaves, validate};
use crate::error::Error;

/// A stored key left out of the typed view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Full dotted key, as [`super::flatten`] writes it (`settings.ntp.time-servers`); a list
    /// is one key. `settings` when the whole document was dropped.
    pub key: String,
    /// The key's path under `settings`.
    pub path: Vec<String>,
    /// Why the value is refused: the validation message, with every string of the stored value
    /// replaced by `<stored value>` (it may be a password or a URL with credentials).
    pub reason: String,
}

/// Stored settings as [`load`] reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// The typed settings in effect.
    pub settings: Settings,
    /// The stored document without the dropped keys: the settings in effect, as JSON.
    pub doc: Value,
    /// The keys left out, in key order.
    pub dropped: Vec<Dropped>,
}

impl Loaded {
    /// `{dotted key: why}` for every dropped key: what `GET /` shows under `dropped`.
    #[must_use]
    pub fn report(&self) -> Map<String, Value> {
        self.dropped
            .iter()
            .map(|d| (d.key.clone(), Value::String(d.reason.clone())))
            .collect()
    }
}

/// Reads a stored settings document (the object under `settings`). A valid document is
/// returned as it is. Otherwise each leaf ([`leaves`]: a value, a list) is validated on its
/// own and dropped if refused — a bad value, an unknown key, a bad map key such as a sysctl
/// name; then whatever still fails only in combination (a map over its entry limit) is
/// dropped as the table the error names. A document that is not an object is dropped whole.
#[must_use]
pub fn load(stored: &Value) -> Loaded {
    if let Ok(settings) = validate(stored) {
        return Loaded {
            settings,
            doc: stored.clone(),
            dropped: Vec::new(),
        };
    }
    let everything = |mut dropped: Vec<Dropped>, reason: String| {
        dropped.push(Dropped {
            key: dotted_key(&[]),
            path: Vec::new(),
            reason,
        });
        Loaded {
            settings: Settings::default(),
            doc: Value::Object(Map::new()),
            dropped,
        }
    };
    if !stored.is_object() {
        return everything(Vec::new(), "expected a table/object of settings".into());
    }
    let mut doc = stored.clone();
    let mut dropped = Vec::new();
    for (path, value) in leaves(stored) {
        let mut single = Value::Object(Map::new());
        if updater::migration::set(&mut single, &path, value.clone()).is_err() {
            continue;
        }
        if let Err(e) = validate(&single) {
            remove_path(&mut doc, &path);
            dropped.push(Dropped {
                key: dotted_key(&path),
                reason: reason(&e, value),
                path,
            });
        }
    }
    // Each round removes a part of `doc` or ends: this terminates.
    loop {
        let e = match serde_path_to_error::deserialize::<_, Settings>(&doc) {
            Ok(settings) => {
                return Loaded {
                    settings,
                    doc,
                    dropped,
                };
            }
            Err(e) => e,
        };
        let path = table_path(&doc, e.path());
        let message = e.into_inner().to_string();
        let Some(value) = remove_path(&mut doc, &path) else {
            return everything(dropped, redact(&message, &doc));
        };
        dropped.push(Dropped {
            key: dotted_key(&path),
            reason: redact(&message, &value),
            path,
        });
    }
}

/// The keys [`load`] drops from `after` that it did not drop, holding the same stored value,
/// from `before`: what a write from `before` to `after` would newly make invalid. Keys already
/// invalid in `before` and left as they were are not listed (they stay dropped; a write to
/// other keys goes through).
#[must_use]
pub fn newly_invalid(before: &Value, after: &Value) -> Vec<Dropped> {
    let after_l = load(after);
    if after_l.dropped.is_empty() {
        return Vec::new();
    }
    let before_l = load(before);
    let get = |doc: &'_ Value, path: &[String]| updater::migration::get(doc, path).cloned();
    after_l
        .dropped
        .into_iter()
        .filter(|d| {
            !before_l
                .dropped
                .iter()
                .any(|b| b.path == d.path && get(before, &d.path) == get(after, &d.path))
        })
        .collect()
}

/// The reason a single leaf was refused: the message, prefixed with the place inside a list
/// (`[0].endpoint: …`), without the stored value.
fn reason(e: &Error, value: &Value) -> String {
    let text = match e {
        Error::InvalidSettings { key, message } => match key.find('[') {
            Some(i) => format!("{}: {message}", &key[i..]),
            None => message.clone(),
        },
        other => other.to_string(),
    };
    redact(&text, value)
}

/// Replaces every string of `value`, as messages quote it (`"…"`, `` `…` ``), by
/// `<stored value>`.
fn redact(message: &str, value: &Value) -> String {
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) if !s.is_empty() => out.push(s),
            Value::Array(a) => a.iter().for_each(|c| strings(c, out)),
            Value::Object(m) => m.values().for_each(|c| strings(c, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    strings(value, &mut found);
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = message.to_owned();
    for s in found {
        out = out
            .replace(&format!("{s:?}"), "<stored value>")
            .replace(&format!("`{s}`"), "<stored value>");
    }
    out
}

/// The part of `doc` a deserialisation error points at: its map keys up to the first list
/// index, cut to the longest prefix present in `doc`.
fn table_path(doc: &Value, path: &serde_path_to_error::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = doc;
    for seg in path.iter() {
        let serde_path_to_error::Segment::Map { key } = seg else {
            break;
        };
        match cur.get(key) {
            Some(child) => {
                out.push(key.clone());
                cur = child;
            }
            None => break,
        }
    }
    out
}

/// Removes and returns the value at `path` (not the root), and the parents this leaves
/// empty, only those on the path.
fn remove_path(doc: &mut Value, path: &[String]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let m = doc.as_object_mut()?;
    if rest.is_empty() {
        return m.remove(first);
    }
    let child = m.get_mut(first)?;
    let v = remove_path(child, rest);
    if child.as_object().is_some_and(Map::is_empty) {
        m.remove(first);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(l: &Loaded) -> Vec<&str> {
        l.dropped.iter().map(|d| d.key.as_str()).collect()
    }

    #[test]
    fn a_valid_document_loads_as_it_is() {
        let doc = json!({"ecs": {"cluster": "prod"}, "motd": "hi"});
        let l = load(&doc);
        assert_eq!(l.doc, doc);
        assert!(l.dropped.is_empty());
        assert_eq!(l.settings, validate(&doc).unwrap());
    }

    /// Values an older version accepted and this one refuses: each is dropped on its own, the
    /// others stay in effect.
    #[test]
    fn values_refused_now_are_dropped_one_key_at_a_time() {
        let stored = json!({
            "ecs": {"cluster": "prod", "endpoint": "http://user:secret@cp:8080"},
            "ntp": {"time-servers": ["ntp://time.example/path"]},
            "dns": {"search-list": ["corp_x.example"], "name-servers": ["10.0.0.2"]},
            "kernel": {"sysctl": {"vm.max_map_count": "262144", "../etc": "1"}},
            "container-registry": {"credentials": [{"registry": "r", "password": "p\nw"}]},
            "updates": {"seed": 5000, "ignore-waves": true},
            "removed-in-this-version": {"x": 1},
            "motd": "hello",
        });
        let l = load(&stored);
        assert_eq!(
            keys(&l),
            [
                "settings.container-registry.credentials",
                "settings.dns.search-list",
                "settings.ecs.endpoint",
                "settings.kernel.sysctl.\"../etc\"",
                "settings.ntp.time-servers",
                "settings.removed-in-this-version.x",
                "settings.updates.seed",
            ]
        );
        let s = &l.settings;
        assert_eq!(
            s.ecs.as_ref().unwrap().cluster.as_ref().unwrap().as_str(),
            "prod"
        );
        assert!(s.ecs.as_ref().unwrap().endpoint.is_none());
        assert!(s.ntp.is_none());
        assert_eq!(
            s.dns.as_ref().unwrap().name_servers.as_ref().unwrap().len(),
            1
        );
        assert_eq!(s.kernel.as_ref().unwrap().sysctl.as_ref().unwrap().len(), 1);
        assert_eq!(s.updates.as_ref().unwrap().ignore_waves, Some(true));
        assert!(s.updates.as_ref().unwrap().seed.is_none());
        assert_eq!(s.motd.as_ref().unwrap().as_str(), "hello");
        assert_eq!(
            l.doc,
            json!({
                "ecs": {"cluster": "prod"},
                "dns": {"name-servers": ["10.0.0.2"]},
                "kernel": {"sysctl": {"vm.max_map_count": "262144"}},
                "updates": {"ignore-waves": true},
                "motd": "hello",
            })
        );
        // the effective document is itself valid
        assert_eq!(validate(&l.doc).unwrap(), l.settings);
    }

    #[test]
    fn reasons_say_why_without_the_stored_value() {
        let l = load(&json!({
            "ecs": {"endpoint": "http://user:pa ss@cp"},
            "ntp": {"time-servers": ["ntp://time.example/path"]},
            "container-registry": {"mirrors": [{"registry": "r", "endpoint": ["http://u:hunter2@m"]}]},
        }));
        let r = l.report();
        let text = serde_json::to_string(&r).unwrap();
        for secret in ["pa ss", "hunter2", "/path"] {
            assert!(!text.contains(secret), "{text}");
        }
        let ntp = r["settings.ntp.time-servers"].as_str().unwrap();
        assert!(
            ntp.contains("only a host and port") && ntp.starts_with("[0]: "),
            "{ntp}"
        );
        let m = r["settings.container-registry.mirrors"].as_str().unwrap();
        assert!(
            m.starts_with("[0].endpoint") && m.contains("credentials"),
            "{m}"
        );
        assert!(
            r["settings.ecs.endpoint"]
                .as_str()
                .unwrap()
                .contains("<stored value>")
        );
    }

    #[test]
    fn a_table_over_its_entry_limit_is_dropped_as_a_whole() {
        let attrs: Map<String, Value> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
        let l = load(&json!({"ecs": {"cluster": "c", "instance-attributes": attrs}}));
        assert_eq!(keys(&l), ["settings.ecs.instance-attributes"]);
        assert!(
            l.dropped[0].reason.contains("at most 64"),
            "{:?}",
            l.dropped
        );
        assert_eq!(l.doc, json!({"ecs": {"cluster": "c"}}));
    }

    #[test]
    fn a_document_that_is_not_a_table_is_dropped_whole() {
        let l = load(&json!(["not", "settings"]));
        assert_eq!(keys(&l), ["settings"]);
        assert_eq!(l.settings, Settings::default());
        assert_eq!(l.doc, json!({}));
    }

    /// A migration's output is stored like any other document: a bad value it writes is
    /// dropped at load, not fatal.
    #[test]
    fn a_migration_writing_a_bad_value_is_survivable() {
        use updater::migration::{Direction, Migration};
        let m = Migration::from_json(
            "m",
            br#"{"ops":[{"op":"add","key":"settings.dns.search-list","value":["bad_name.example"]}]}"#,
        )
        .unwrap();
        let mut wrapped = json!({"settings": {"motd": "kept"}});
        m.apply("m", &mut wrapped, Direction::Forward).unwrap();
        let l = load(&wrapped["settings"]);
        assert_eq!(keys(&l), ["settings.dns.search-list"]);
        assert_eq!(l.settings.motd.unwrap().as_str(), "kept");
    }

    #[test]
    fn newly_invalid_ignores_keys_already_dropped_and_left_alone() {
        let live = json!({"ntp": {"time-servers": ["ntp://t.example/p"]}, "motd": "a"});
        // a write to another key: nothing newly invalid
        let mut after = live.clone();
        after["motd"] = json!("b");
        assert!(newly_invalid(&live, &after).is_empty());
        // fixing the bad key: nothing newly invalid, nothing dropped any more
        let fixed = json!({"ntp": {"time-servers": ["t.example"]}, "motd": "a"});
        assert!(newly_invalid(&live, &fixed).is_empty());
        assert!(load(&fixed).dropped.is_empty());
        // another bad value for the already-bad key is new
        let worse = json!({"ntp": {"time-servers": ["ntp://t.example/q"]}, "motd": "a"});
        let n = newly_invalid(&live, &worse);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].key, "settings.ntp.time-servers");
        // a valid write that makes a table too large in combination is new
        let attrs: Map<String, Value> = (0..64).map(|i| (format!("k{i}"), json!("v"))).collect();
        let before = json!({"ecs": {"instance-attributes": attrs}});
        let mut after = before.clone();
        after["ecs"]["instance-attributes"]["one-more"] = json!("v");
        let n = newly_invalid(&before, &after);
        assert_eq!(n[0].key, "settings.ecs.instance-attributes");
    }
}
