//! The credentials file: the access keys a verifying server knows, with their secrets
//! and accounts.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// One access key of the credentials file.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyEntry {
    /// The secret access key.
    pub secret: String,
    /// The account this key acts in (the server's `--account-id` when absent).
    pub account: Option<String>,
}

/// The credentials file: `[keys.<ACCESS_KEY_ID>] secret = "…" account = "…"`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Credentials {
    /// Keys by access key id.
    pub keys: BTreeMap<String, KeyEntry>,
}

impl Credentials {
    /// Reads a credentials file (TOML).
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
        let creds: Credentials = toml::from_str(&text)
            .map_err(|e| format!("credentials file {} is invalid: {e}", path.display()))?;
        if creds.keys.is_empty() {
            return Err(format!("credentials file {} lists no keys", path.display()));
        }
        Ok(creds)
    }
}
