//! `nextToken`s: the operation, filters, last key and issue time a token carries, signed
//! with HMAC-SHA256 under the state's secret, and the checks a token must pass to be
//! accepted (signature, operation, filters, age).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::PageRequest;
use crate::error::{EcsError, invalid};

/// How long a token stays valid (seconds).
pub const TOKEN_LIFETIME: f64 = 24.0 * 3600.0;

#[derive(Serialize, Deserialize)]
struct TokenBody {
    op: String,
    f: String,
    last: String,
    at: f64,
}

fn mac(secret: &str, body: &[u8]) -> Result<Vec<u8>, EcsError> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| EcsError::Server(format!("paging key unusable: {e}")))?;
    m.update(body);
    Ok(m.finalize().into_bytes().to_vec())
}

pub(super) fn bad_token() -> EcsError {
    invalid("The nextToken is invalid or has expired; start the listing again without a nextToken.")
}

pub(super) fn decode(req: &PageRequest<'_>, token: &str) -> Result<String, EcsError> {
    let (body_b64, mac_b64) = token.split_once('.').ok_or_else(bad_token)?;
    let body = URL_SAFE_NO_PAD.decode(body_b64).map_err(|_| bad_token())?;
    let given = URL_SAFE_NO_PAD.decode(mac_b64).map_err(|_| bad_token())?;
    let mut m = Hmac::<Sha256>::new_from_slice(req.secret.as_bytes())
        .map_err(|e| EcsError::Server(format!("paging key unusable: {e}")))?;
    m.update(&body);
    m.verify_slice(&given).map_err(|_| bad_token())?;
    let t: TokenBody = serde_json::from_slice(&body).map_err(|_| bad_token())?;
    if t.op != req.operation
        || t.f != req.filters
        || req.now - t.at > TOKEN_LIFETIME
        || t.at - req.now > 300.0
    {
        return Err(bad_token());
    }
    Ok(t.last)
}

pub(super) fn encode(req: &PageRequest<'_>, last: &str) -> Result<String, EcsError> {
    let body = serde_json::to_vec(&TokenBody {
        op: req.operation.to_owned(),
        f: req.filters.to_owned(),
        last: last.to_owned(),
        at: req.now,
    })
    .map_err(|e| EcsError::Server(e.to_string()))?;
    let sig = mac(req.secret, &body)?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&body),
        URL_SAFE_NO_PAD.encode(sig)
    ))
}
