//! Pagination for every List operation: `maxResults` and signed `nextToken`s.
//!
//! A token records which operation and which filters it belongs to, the last key
//! returned, and when it was issued, and is signed with HMAC-SHA256 under a secret kept
//! in the store. A token that was altered, made up, issued for another operation or other
//! filters, or is older than a day is refused with `InvalidParameterException`, as ECS
//! does. Listing resumes *after* the last key, so records created or deleted between
//! pages never cause a repeat or a skip of the others.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{EcsError, invalid};

/// How long a token stays valid (seconds).
pub const TOKEN_LIFETIME: f64 = 24.0 * 3600.0;

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Where the next page starts, if there is one.
    pub next_token: Option<String>,
}

/// The parameters every paginated listing shares.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    /// Signing secret (hex) from the state's metadata.
    pub secret: &'a str,
    /// Current time, epoch seconds.
    pub now: f64,
    /// Operation name, e.g. `ListTasks`.
    pub operation: &'a str,
    /// A canonical string of the request's filters.
    pub filters: &'a str,
    /// `maxResults` from the request.
    pub max_results: Option<i32>,
    /// The largest `maxResults` the operation allows (and its default).
    pub limit: i32,
    /// `nextToken` from the request.
    pub next_token: Option<&'a str>,
    /// Whether items come in descending key order.
    pub descending: bool,
}

impl<'a> PageRequest<'a> {
    /// The usual listing: ascending keys, at most 100 items a page.
    pub fn ascending(
        secret: &'a str,
        now: f64,
        operation: &'a str,
        filters: &'a str,
        max_results: Option<i32>,
        next_token: Option<&'a str>,
    ) -> PageRequest<'a> {
        PageRequest {
            secret,
            now,
            operation,
            filters,
            max_results,
            limit: 100,
            next_token,
            descending: false,
        }
    }
}

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

fn bad_token() -> EcsError {
    invalid("The nextToken is invalid or has expired; start the listing again without a nextToken.")
}

fn decode(req: &PageRequest<'_>, token: &str) -> Result<String, EcsError> {
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

fn encode(req: &PageRequest<'_>, last: &str) -> Result<String, EcsError> {
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

/// Cuts one page out of `items`, which must come sorted by key in the direction
/// `req.descending` says.
pub fn paginate<T>(
    req: &PageRequest<'_>,
    items: impl IntoIterator<Item = (String, T)>,
) -> Result<Page<T>, EcsError> {
    let max = match req.max_results {
        None => req.limit,
        Some(n) if (1..=req.limit).contains(&n) => n,
        Some(n) => {
            return Err(invalid(format!(
                "maxResults must be between 1 and {}, got {n}.",
                req.limit
            )));
        }
    };
    let max = usize::try_from(max).unwrap_or(1);
    let after = match req.next_token {
        Some(t) if !t.is_empty() => Some(decode(req, t)?),
        _ => None,
    };
    let mut iter = items.into_iter().filter(|(k, _)| match &after {
        None => true,
        Some(last) if req.descending => k.as_str() < last.as_str(),
        Some(last) => k.as_str() > last.as_str(),
    });
    let mut page = Vec::with_capacity(max.min(128));
    let mut last_key = None;
    for (k, item) in iter.by_ref() {
        page.push(item);
        last_key = Some(k);
        if page.len() == max {
            break;
        }
    }
    let next_token = match (iter.next(), last_key) {
        (Some(_), Some(last)) => Some(encode(req, &last)?),
        _ => None,
    };
    Ok(Page {
        items: page,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(token: Option<&'a str>, max: Option<i32>) -> PageRequest<'a> {
        PageRequest {
            secret: "s3cr3t",
            now: 1000.0,
            operation: "ListClusters",
            filters: "",
            max_results: max,
            limit: 100,
            next_token: token,
            descending: false,
        }
    }

    fn items(n: usize) -> Vec<(String, usize)> {
        (0..n).map(|i| (format!("k{i:04}"), i)).collect()
    }

    #[test]
    fn walks_every_item_once() {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = paginate(&req(token.as_deref(), Some(7)), items(30)).unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(page.items);
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn no_token_on_an_exact_last_page() {
        let page = paginate(&req(None, Some(5)), items(5)).unwrap();
        assert_eq!(page.items.len(), 5);
        assert!(page.next_token.is_none());
    }

    #[test]
    fn forged_tampered_and_foreign_tokens_are_refused() {
        let page = paginate(&req(None, Some(2)), items(5)).unwrap();
        let token = page.next_token.unwrap();
        for bad in [
            "garbage",
            "a.b",
            &format!("{token}x"),
            &token.replacen('e', "f", 1),
        ] {
            if bad == token {
                continue;
            }
            let err = paginate(&req(Some(bad), None), items(5)).unwrap_err();
            assert_eq!(err.code(), "InvalidParameterException", "{bad}");
        }
        let mut other = req(Some(&token), None);
        other.operation = "ListTasks";
        assert!(paginate(&other, items(5)).is_err());
        let mut late = req(Some(&token), None);
        late.now += TOKEN_LIFETIME + 1.0;
        assert!(paginate(&late, items(5)).is_err());
    }

    #[test]
    fn max_results_is_bounded() {
        assert!(paginate(&req(None, Some(0)), items(1)).is_err());
        assert!(paginate(&req(None, Some(101)), items(1)).is_err());
    }
}
