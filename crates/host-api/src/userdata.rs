//! User-data: a TOML document whose `[settings]` table has the same shape as the settings tree
//! (`[settings.ecs] cluster = "…"`, `[settings.kernel.sysctl] "vm.max_map_count" = "262144"`).
//! Read at first boot, and by `apiclient apply` at any time. A JSON document
//! (`{"settings": {…}}`) is accepted too.

use serde_json::Value;

use crate::error::{Error, Result};

/// Parses user-data into the settings document (the object under `settings`) and validates it
/// completely, so that nothing is applied unless everything is valid.
///
/// # Errors
/// [`Error::UserData`] for syntax errors or a missing `[settings]` table (with line/column from
/// the TOML parser), [`Error::InvalidSettings`] for unknown keys or wrong types (with the full
/// dotted key).
pub fn parse(source_name: &str, text: &str) -> Result<Value> {
    let err = |message: String| Error::UserData {
        source_name: source_name.to_owned(),
        message,
    };
    let doc: Value = match toml::from_str::<toml::Table>(text) {
        Ok(t) => serde_json::to_value(t).map_err(|e| err(e.to_string()))?,
        Err(toml_err) => {
            if text.trim_start().starts_with('{') {
                serde_json::from_str(text)
                    .map_err(|e| err(format!("not valid TOML or JSON: {e}")))?
            } else {
                return Err(err(format!(
                    "TOML syntax error: {}",
                    toml_err.to_string().trim()
                )));
            }
        }
    };
    let Value::Object(mut top) = doc else {
        return Err(err("expected a table".into()));
    };
    let settings = top
        .remove("settings")
        .ok_or_else(|| err("no [settings] table".into()))?;
    if let Some(k) = top.keys().next() {
        return Err(err(format!(
            "unknown top-level key {k:?}; everything goes under [settings]"
        )));
    }
    if !settings.is_object() {
        return Err(err("settings must be a table".into()));
    }
    crate::settings::validate(&settings)?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_user_data() {
        let v = parse(
            "ud",
            "[settings.ecs]\ncluster = \"prod\"\n[settings.kernel.sysctl]\n\"vm.max_map_count\" = \"262144\"\n",
        )
        .unwrap();
        assert_eq!(v["ecs"]["cluster"], "prod");
        assert_eq!(v["kernel"]["sysctl"]["vm.max_map_count"], "262144");
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("ud", "[settings.ecs\ncluster = 1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("TOML syntax error") && e.contains("line"), "{e}");
    }

    #[test]
    fn unknown_key_and_wrong_type_are_named() {
        let e = parse("ud", "[settings.ecs]\nclustr = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.ecs") && e.contains("clustr"), "{e}");
        let e = parse("ud", "[settings.ecs]\ncluster = 42\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.ecs.cluster"), "{e}");
        let e = parse("ud", "[other]\nx = 1\n").unwrap_err().to_string();
        assert!(e.contains("settings"), "{e}");
    }

    #[test]
    fn user_data_values_get_the_same_validation_as_the_api() {
        for (ud, key) in [
            (
                "[settings.dns]\nsearch-list = [\"a.example\\nnameserver 6.6.6.6\"]\n",
                "settings.dns.search-list",
            ),
            (
                "[settings.ntp]\ntime-servers = [\"t.example\\nserver evil\"]\n",
                "settings.ntp.time-servers",
            ),
            (
                "[settings.ecs]\nendpoint = \"http://cp\\nFLOTILLA_CLUSTER=x\"\n",
                "settings.ecs.endpoint",
            ),
            (
                "[settings.kernel.sysctl]\n\"vm.max_map_count\" = \"1\\n2\"\n",
                "settings.kernel.sysctl",
            ),
        ] {
            let e = parse("ud", ud).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidSettings { key: k, .. } if k.starts_with(key)),
                "{ud}: {e}"
            );
        }
    }
}
