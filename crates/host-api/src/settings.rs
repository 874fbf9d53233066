//! The typed settings tree and the JSON documents that hold it.
//!
//! Every field is optional (a document may set any subset), unknown keys are rejected and JSON
//! keys are kebab-case, as in Bottlerocket's models. Field-level rules live in small validated
//! newtypes ([`Identifier`], [`SysctlKey`], …) that run during deserialisation, so a document
//! that deserialises is valid. [`validate`] turns a JSON value into [`Settings`] and reports the
//! first problem with the full dotted key (`settings.ecs.cluster: invalid type: …`).
//!
//! * `values` — the validated newtypes (re-exported here);
//! * `tree` — [`Settings`] and its tables (re-exported here);
//! * `load` — [`load`]: the *stored* settings, tolerantly: a stored value that no longer
//!   validates is dropped from the typed view and reported, never fatal;
//! * this file — [`validate`] (strict, for every write) and the pure document functions the
//!   API uses: [`flatten`], [`merge`], [`filter_prefix`], and the views `GET /settings`
//!   ([`select`]) and `GET /` ([`model`]) answer with.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::Error;

mod load;
mod tree;
mod values;

pub use load::{Dropped, Loaded, load, newly_invalid};
pub use tree::*;
pub use values::*;

/// Deserialises a settings document (the object *under* `settings`), reporting the first
/// problem with its full dotted key.
///
/// # Errors
/// [`Error::InvalidSettings`].
pub fn validate(doc: &Value) -> Result<Settings, Error> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            "settings".to_owned()
        } else {
            format!("settings.{path}")
        };
        Error::InvalidSettings {
            key,
            message: e.into_inner().to_string(),
        }
    })
}

/// Quotes a key segment if it contains a dot.
#[must_use]
pub fn quote_segment(s: &str) -> String {
    if s.contains('.') {
        format!("\"{s}\"")
    } else {
        s.to_owned()
    }
}

/// The dotted key of a path under `settings` (`settings.kernel.sysctl."vm.max_map_count"`);
/// `settings` for the empty path.
#[must_use]
pub fn dotted_key(path: &[String]) -> String {
    let mut key = String::from("settings");
    for seg in path {
        key.push('.');
        key.push_str(&quote_segment(seg));
    }
    key
}

/// The leaves of a document with their paths: every value that is not a non-empty object
/// (lists are leaves, as in [`flatten`]).
#[must_use]
pub fn leaves(doc: &Value) -> Vec<(Vec<String>, &Value)> {
    fn walk<'a>(v: &'a Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => out.push((path.clone(), v)),
        }
    }
    let mut out = Vec::new();
    if let Value::Object(m) = doc {
        for (k, child) in m {
            walk(child, &mut vec![k.clone()], &mut out);
        }
    }
    out
}

/// Flattens a document into `dotted.key → leaf value` (arrays are leaves).
#[must_use]
pub fn flatten(doc: &Value, prefix: &str) -> BTreeMap<String, Value> {
    leaves(doc)
        .into_iter()
        .map(|(path, v)| {
            let key: Vec<String> = path.iter().map(|s| quote_segment(s)).collect();
            (format!("{prefix}{}", key.join(".")), v.clone())
        })
        .collect()
}

/// Deep-merges `patch` into `base` (objects merge key-wise, everything else replaces).
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Keeps only the keys of a `settings`-rooted flattened view that start with `prefix`
/// (string prefix on the dotted key, `settings.` implied), and rebuilds the nested tree.
#[must_use]
pub fn filter_prefix(doc: &Value, root: &str, prefix: &str) -> Value {
    let mut out = Value::Object(Map::new());
    for (path, v) in leaves(doc) {
        let key: Vec<String> = path.iter().map(|s| quote_segment(s)).collect();
        if format!("{root}.{}", key.join(".")).starts_with(prefix) {
            let mut full = vec![root.to_owned()];
            full.extend(path);
            let _ = updater::migration::set(&mut out, &full, v.clone());
        }
    }
    out
}

/// What `GET /settings` answers, from the settings in effect (`doc`, the object under
/// `settings`): with `keys`, each key and everything under it; otherwise with `prefix`, every
/// key whose dotted name starts with it (a string prefix); otherwise all of `doc`. Keys and
/// the prefix are full dotted keys (`settings.ecs.cluster`, see [`full_key`]).
#[must_use]
pub fn select(doc: &Value, keys: Option<&[String]>, prefix: Option<&str>) -> Value {
    if let Some(keys) = keys {
        let mut out = Value::Object(Map::new());
        for (path, v) in leaves(doc) {
            let k = dotted_key(&path);
            if keys
                .iter()
                .any(|want| k == *want || k.starts_with(&format!("{want}.")))
            {
                let _ = updater::migration::set(&mut out, &path, v.clone());
            }
        }
        return out;
    }
    match prefix {
        Some(p) => filter_prefix(doc, "settings", p)
            .get("settings")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new())),
        None => doc.clone(),
    }
}

/// What `GET /` answers: `{"settings": …, "os": …}` from the settings in effect and the
/// running image, plus `"dropped": {dotted key: why}` when stored keys were left out of the
/// typed view ([`Loaded::dropped`]). With `prefix` (a dotted-key prefix such as `settings.ecs`
/// or `os.version`), only the settings keys, `os` fields and dropped keys it selects; a part
/// left empty is omitted. A dropped key is also shown for a prefix *under* it (the dropped
/// `settings.ntp` for `settings.ntp.time-servers`).
///
/// # Errors
/// [`Error::BadRequest`] for an empty prefix.
pub fn model(loaded: &Loaded, os: &Value, prefix: Option<&str>) -> Result<Value, Error> {
    let dropped = loaded.report();
    let Some(p) = prefix else {
        let mut out = json!({"settings": loaded.doc, "os": os});
        if !dropped.is_empty() {
            out["dropped"] = Value::Object(dropped);
        }
        return Ok(out);
    };
    if p.is_empty() {
        return Err(Error::BadRequest("empty prefix".into()));
    }
    let mut out = filter_prefix(&loaded.doc, "settings", p);
    let os: Map<String, Value> = os
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| format!("os.{k}").starts_with(p))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !os.is_empty() {
        out["os"] = Value::Object(os);
    }
    let dropped: Map<String, Value> = dropped
        .into_iter()
        .filter(|(k, _)| k.starts_with(p) || p.starts_with(&format!("{k}.")))
        .collect();
    if !dropped.is_empty() {
        out["dropped"] = Value::Object(dropped);
    }
    Ok(out)
}

/// Adds `settings.` to a key that lacks it.
#[must_use]
pub fn full_key(key: &str) -> String {
    if key == "settings" || key.starts_with("settings.") {
        key.to_owned()
    } else {
        format!("settings.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_key_is_named() {
        let e = validate(&json!({"ecs": {"clusterr": "x"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.ecs") && e.contains("clusterr"), "{e}");
        let e = validate(&json!({"nope": 1})).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = validate(&json!({"ecs": {"cluster": 5}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.ecs.cluster"), "{e}");
        let e = validate(&json!({"updates": {"seed": 5000}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("settings.updates.seed") && e.contains("2048"),
            "{e}"
        );
        let e = validate(&json!({"kernel": {"sysctl": {"../etc": "1"}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.kernel.sysctl"), "{e}");
        let e = validate(&json!({"host-containers": {"bad_name!": {}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.host-containers"), "{e}");
    }

    #[test]
    fn flatten_quotes_dotted_segments_and_filter_rebuilds() {
        let doc = json!({"kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}, "motd": "hi"});
        let flat = flatten(&doc, "settings.");
        assert!(flat.contains_key("settings.kernel.sysctl.\"net.ipv4.ip_forward\""));
        let f = filter_prefix(&doc, "settings", "settings.kernel");
        assert_eq!(
            f,
            json!({"settings": {"kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}}})
        );
    }

    #[test]
    fn merge_is_deep() {
        let mut a = json!({"ecs": {"cluster": "a", "loglevel": "info"}});
        merge(&mut a, &json!({"ecs": {"cluster": "b"}}));
        assert_eq!(a, json!({"ecs": {"cluster": "b", "loglevel": "info"}}));
    }

    fn live() -> Value {
        json!({"ecs": {"cluster": "prod", "loglevel": "info"},
               "kernel": {"sysctl": {"vm.max_map_count": "262144"}}, "motd": "hi"})
    }

    #[test]
    fn select_by_keys_prefix_or_everything() {
        let doc = live();
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(select(&doc, None, None), doc);
        assert_eq!(
            select(
                &doc,
                Some(&keys(&["settings.motd", "settings.ecs.cluster"])),
                None
            ),
            json!({"ecs": {"cluster": "prod"}, "motd": "hi"})
        );
        // a key selects everything under it, but not a key it merely prefixes
        assert_eq!(
            select(&doc, Some(&keys(&["settings.ecs", "settings.mot"])), None),
            json!({"ecs": {"cluster": "prod", "loglevel": "info"}})
        );
        assert_eq!(
            select(
                &doc,
                Some(&keys(&["settings.kernel.sysctl.\"vm.max_map_count\""])),
                None
            ),
            json!({"kernel": {"sysctl": {"vm.max_map_count": "262144"}}})
        );
        // keys win over a prefix; a prefix is a string prefix of the dotted key
        assert_eq!(
            select(&doc, Some(&keys(&["settings.motd"])), Some("settings.ecs")),
            json!({"motd": "hi"})
        );
        assert_eq!(
            select(&doc, None, Some("settings.ecs.c")),
            json!({"ecs": {"cluster": "prod"}})
        );
        assert_eq!(select(&doc, None, Some("settings.nothing")), json!({}));
    }

    #[test]
    fn model_filters_settings_os_and_dropped_by_prefix() {
        let mut stored = live();
        stored["ntp"] = json!({"time-servers": ["ntp://t.example/path"]});
        let loaded = load(&stored);
        let os = json!({"version_id": "1.0.0", "arch": "x86_64"});
        let all = model(&loaded, &os, None).unwrap();
        assert_eq!(all["settings"], live());
        assert_eq!(all["os"], os);
        let dropped = all["dropped"].as_object().unwrap();
        assert_eq!(
            dropped.keys().collect::<Vec<_>>(),
            ["settings.ntp.time-servers"]
        );
        assert!(
            dropped["settings.ntp.time-servers"]
                .as_str()
                .unwrap()
                .contains("path")
        );
        // nothing dropped: no `dropped` part at all
        assert!(
            model(&load(&live()), &os, None)
                .unwrap()
                .get("dropped")
                .is_none()
        );
        assert_eq!(
            model(&loaded, &os, Some("settings.ecs.cluster")).unwrap(),
            json!({"settings": {"ecs": {"cluster": "prod"}}})
        );
        assert_eq!(
            model(&loaded, &os, Some("os.version")).unwrap(),
            json!({"os": {"version_id": "1.0.0"}})
        );
        assert_eq!(model(&loaded, &os, Some("os")).unwrap()["os"], os);
        // a dropped key shows for a prefix above it and for one under it
        for p in ["settings.ntp", "settings.ntp.time-servers"] {
            let m = model(&loaded, &os, Some(p)).unwrap();
            assert_eq!(
                m.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["dropped"],
                "{p}"
            );
        }
        let whole = load(&json!("not a table"));
        let m = model(&whole, &os, Some("settings.ecs")).unwrap();
        assert!(m["dropped"].get("settings").is_some(), "{m}");
        assert!(matches!(
            model(&loaded, &os, Some("")),
            Err(Error::BadRequest(_))
        ));
    }
}
