//! Request parsing: method + URI + body → one [`HostAction`] ([`parse_request`]), and the
//! `key=value` form of settings (`apiclient set`, `PATCH /settings/keypair`:
//! [`pairs_to_doc`]). Pure: no IO, no state.

use std::collections::BTreeMap;

use axum::http::{Method, Uri};
use serde_json::{Map, Value};
use updater::status::UpdateCommand;

use crate::error::{Error, Result};
use crate::settings;

/// One parsed request.
#[derive(Debug, Clone, PartialEq)]
pub enum HostAction {
    /// `GET /`.
    GetModel {
        /// Dotted-key prefix filter.
        prefix: Option<String>,
    },
    /// `GET /settings`.
    GetSettings {
        /// Exact keys.
        keys: Option<Vec<String>>,
        /// Prefix filter.
        prefix: Option<String>,
    },
    /// `PATCH /settings`.
    PatchSettings {
        /// Transaction.
        tx: String,
        /// Settings document.
        body: Value,
    },
    /// `PATCH /settings/keypair`.
    PatchKeyPairs {
        /// Transaction.
        tx: String,
        /// `key=value` strings.
        pairs: Vec<String>,
    },
    /// `GET /tx`.
    GetTx {
        /// Transaction.
        tx: String,
    },
    /// `GET /tx/list`.
    ListTx,
    /// `DELETE /tx`.
    DeleteTx {
        /// Transaction.
        tx: String,
    },
    /// `POST /tx/commit`.
    Commit {
        /// Transaction.
        tx: String,
    },
    /// `POST /tx/apply`.
    Apply {
        /// Only services affected by these keys; all when `None`.
        keys: Option<Vec<String>>,
    },
    /// `POST /tx/commit_and_apply`.
    CommitAndApply {
        /// Transaction.
        tx: String,
    },
    /// `GET /os`.
    GetOs {
        /// Field-name prefix.
        prefix: Option<String>,
    },
    /// `GET /updates/status`.
    UpdateStatus,
    /// `POST /actions/…-update(s)`.
    Update(UpdateCommand),
    /// `POST /actions/rollback`.
    Rollback,
    /// `POST /actions/reboot`.
    Reboot,
}

/// What a successful action returns.
#[derive(Debug, Clone, PartialEq)]
pub enum HostResponse {
    /// 200 with a JSON body.
    Json(Value),
    /// 204.
    NoContent,
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn json_body(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("body is not JSON: {e}")))
}

/// Parses method + URI + body into an action.
///
/// # Errors
/// [`Error::NoRoute`] or [`Error::BadRequest`].
pub fn parse_request(method: &Method, uri: &Uri, body: &[u8]) -> Result<HostAction> {
    let q = query_map(uri);
    let tx = || q.get("tx").cloned().unwrap_or_else(|| "default".to_owned());
    let list = |k: &str| {
        q.get(k).map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(settings::full_key)
                .collect::<Vec<_>>()
        })
    };
    let prefix = |root: bool| {
        q.get("prefix").map(|p| {
            if root || p.starts_with("os") {
                p.clone()
            } else {
                settings::full_key(p)
            }
        })
    };
    let action = match (method.as_str(), uri.path()) {
        ("GET", "/") => HostAction::GetModel {
            prefix: prefix(true),
        },
        ("GET", "/settings") => HostAction::GetSettings {
            keys: list("keys"),
            prefix: prefix(false),
        },
        ("PATCH", "/settings") => HostAction::PatchSettings {
            tx: tx(),
            body: json_body(body)?,
        },
        ("PATCH", "/settings/keypair") => {
            let v = json_body(body)?;
            let pairs = v
                .get("request_payload")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Error::BadRequest("expected {\"request_payload\": [\"k=v\", ...]}".into())
                })?
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| Error::InvalidKeyPair(p.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            HostAction::PatchKeyPairs { tx: tx(), pairs }
        }
        ("GET", "/tx") => HostAction::GetTx { tx: tx() },
        ("GET", "/tx/list") => HostAction::ListTx,
        ("DELETE", "/tx") => HostAction::DeleteTx { tx: tx() },
        ("POST", "/tx/commit") => HostAction::Commit { tx: tx() },
        ("POST", "/tx/apply") => HostAction::Apply { keys: list("keys") },
        ("POST", "/tx/commit_and_apply") => HostAction::CommitAndApply { tx: tx() },
        ("GET", "/os") => HostAction::GetOs {
            prefix: q.get("prefix").cloned(),
        },
        ("GET", "/updates/status") => HostAction::UpdateStatus,
        ("POST", "/actions/refresh-updates") => HostAction::Update(UpdateCommand::Refresh),
        ("POST", "/actions/prepare-update") => HostAction::Update(UpdateCommand::Prepare),
        ("POST", "/actions/activate-update") => HostAction::Update(UpdateCommand::Activate),
        ("POST", "/actions/deactivate-update") => HostAction::Update(UpdateCommand::Deactivate),
        ("POST", "/actions/rollback") => HostAction::Rollback,
        ("POST", "/actions/reboot") => HostAction::Reboot,
        (m, p) => {
            return Err(Error::NoRoute {
                method: m.to_owned(),
                path: p.to_owned(),
            });
        }
    };
    Ok(action)
}

/// Guesses the JSON type of a `key=value` value as Bottlerocket's apiclient does (bool, then
/// integer, then float, else string); a JSON list or object (`["a","b"]`) is taken as such.
#[must_use]
pub fn guess_value(v: &str) -> Value {
    if (v.starts_with('[') || v.starts_with('{'))
        && let Ok(j) = serde_json::from_str::<Value>(v)
    {
        return j;
    }
    if let Ok(b) = v.parse::<bool>() {
        return Value::Bool(b);
    }
    if let Ok(n) = v.parse::<u64>() {
        return Value::from(n);
    }
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        return Value::from(f);
    }
    Value::String(v.to_owned())
}

/// Turns `key=value` pairs into one settings document. A value whose guessed type the schema
/// refuses is retried as a string (so `ecs.cluster=123` is the cluster named "123").
///
/// # Errors
/// Malformed pairs or keys, or values the schema refuses either way.
pub fn pairs_to_doc(pairs: &[String]) -> Result<Value> {
    let mut doc = Value::Object(Map::new());
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Error::InvalidKeyPair(p.clone()))?;
        let key = settings::full_key(k.trim());
        let path =
            updater::migration::split_key(&key).map_err(|_| Error::InvalidKeyPair(p.clone()))?;
        // A key nests one object per segment: bound the depth before building it.
        if path.len() > crate::limits::MAX_KEY_SEGMENTS {
            return Err(Error::BadRequest(format!(
                "key {:?}… has more than {} segments",
                key.chars().take(64).collect::<String>(),
                crate::limits::MAX_KEY_SEGMENTS
            )));
        }
        let Some(("settings", rest)) = path.split_first().map(|(a, b)| (a.as_str(), b)) else {
            return Err(Error::InvalidKeyPair(p.clone()));
        };
        if rest.is_empty() {
            return Err(Error::InvalidKeyPair(p.clone()));
        }
        let mut single = Value::Object(Map::new());
        let guessed = guess_value(v);
        updater::migration::set(&mut single, rest, guessed.clone())
            .map_err(Error::InvalidKeyPair)?;
        if settings::validate(&single).is_err() && !guessed.is_string() {
            single = Value::Object(Map::new());
            updater::migration::set(&mut single, rest, Value::String(v.to_owned()))
                .map_err(Error::InvalidKeyPair)?;
        }
        settings::validate(&single)?;
        settings::merge(&mut doc, &single);
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(m: &str, u: &str, body: &str) -> Result<HostAction> {
        parse_request(
            &Method::from_bytes(m.as_bytes()).unwrap(),
            &u.parse().unwrap(),
            body.as_bytes(),
        )
    }

    #[test]
    fn parses_every_route() {
        assert_eq!(
            parse("GET", "/settings?prefix=ecs", "").unwrap(),
            HostAction::GetSettings {
                keys: None,
                prefix: Some("settings.ecs".into())
            }
        );
        assert_eq!(
            parse("PATCH", "/settings?tx=t", "{\"motd\":\"x\"}").unwrap(),
            HostAction::PatchSettings {
                tx: "t".into(),
                body: json!({"motd": "x"})
            }
        );
        assert_eq!(
            parse("POST", "/tx/commit", "").unwrap(),
            HostAction::Commit {
                tx: "default".into()
            }
        );
        assert_eq!(
            parse("POST", "/tx/apply?keys=ecs.cluster", "").unwrap(),
            HostAction::Apply {
                keys: Some(vec!["settings.ecs.cluster".into()])
            }
        );
        assert_eq!(
            parse("POST", "/actions/prepare-update", "").unwrap(),
            HostAction::Update(UpdateCommand::Prepare)
        );
        assert_eq!(
            parse("DELETE", "/tx?tx=a", "").unwrap(),
            HostAction::DeleteTx { tx: "a".into() }
        );
        assert!(matches!(
            parse("GET", "/nope", ""),
            Err(Error::NoRoute { .. })
        ));
        assert!(matches!(
            parse("PATCH", "/settings", "{bad"),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn keypairs_guess_types_and_fall_back_to_string() {
        let d = pairs_to_doc(&[
            "ecs.cluster=123".into(),
            "settings.updates.ignore-waves=true".into(),
            "updates.seed=7".into(),
            r#"kernel.sysctl."net.ipv4.ip_forward"=1"#.into(),
        ])
        .unwrap();
        assert_eq!(
            d,
            json!({"ecs": {"cluster": "123"}, "updates": {"ignore-waves": true, "seed": 7},
            "kernel": {"sysctl": {"net.ipv4.ip_forward": "1"}}})
        );
        assert!(matches!(
            pairs_to_doc(&["novalue".into()]),
            Err(Error::InvalidKeyPair(_))
        ));
        let e = pairs_to_doc(&["ecs.bogus=1".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}
