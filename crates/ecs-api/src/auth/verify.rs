//! Identifying a request's caller: the region and service of the credential scope, the
//! headers a signature must cover, the signing time and clock skew, and the signature
//! recomputed and compared (or, without credentials, only the region read).

use axum::http::{HeaderMap, Method, Uri};
use time::PrimitiveDateTime;
use time::macros::format_description;

use super::{
    Credentials, DEFAULT_REGION, MAX_SKEW_SECONDS, SigV4Header, compute_signature,
    parse_authorization,
};
use crate::error::{ApiError, quote};

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Region from the credential scope.
    pub region: String,
    /// Account the caller acts in.
    pub account: String,
}

/// Whether `region` can name a region: it goes into every ARN, so a `:` or a space
/// would make ARNs that no longer parse.
pub fn is_valid_region(region: &str) -> bool {
    (1..=32).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_region(region: &str) -> Result<(), ApiError> {
    if is_valid_region(region) {
        Ok(())
    } else {
        Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not {}: lowercase letters, digits and hyphens.",
            quote(region)
        )))
    }
}

/// Which service a request's credential scope must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeService {
    /// This signing name (`ecs`, `elasticloadbalancing`, `servicediscovery`): the
    /// service the request was routed to ([`crate::service::AwsService`]).
    Named(&'static str),
    /// Any service: flotilla's own endpoints (`POST /admin/reset`), for which no
    /// AWS client has a service name of its own.
    Any,
}

/// The headers every verified signature must cover, as AWS requires: `host` (or a
/// signature could be replayed against another endpoint), the timestamp header, and
/// `x-amz-target` whenever the request has one (or a signature made for
/// `DescribeClusters` would pass for `DeleteCluster`, the body being the same).
fn check_signed_headers(
    auth: &SigV4Header,
    headers: &HeaderMap,
    time_header: &SigningTime,
) -> Result<(), ApiError> {
    let required = [
        ("host", "Host", true),
        (time_header.name, time_header.shown, true),
        (
            "x-amz-target",
            "X-Amz-Target",
            headers.contains_key("x-amz-target"),
        ),
    ];
    for (name, shown, needed) in required {
        if needed
            && !auth
                .signed_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
        {
            return Err(ApiError::InvalidSignature(format!(
                "'{shown}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    Ok(())
}

/// When a request was signed, from the header it says so in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SigningTime {
    /// Lower-case header name (`x-amz-date` or `date`).
    name: &'static str,
    /// The name as AWS's messages spell it.
    shown: &'static str,
    /// `YYYYMMDDTHHMMSSZ`, as the string to sign carries it.
    basic: String,
    /// Epoch seconds.
    epoch: i64,
}

/// The signing time: `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`) when present, else `Date`
/// (that form, or an HTTP date such as `Mon, 09 Sep 2011 23:36:00 GMT`), as AWS reads it.
fn signing_time(headers: &HeaderMap) -> Result<SigningTime, ApiError> {
    let basic_fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    let http_fmt = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let (name, shown) = if headers.contains_key("x-amz-date") {
        ("x-amz-date", "X-Amz-Date")
    } else if headers.contains_key(http::header::DATE) {
        ("date", "Date")
    } else {
        return Err(ApiError::IncompleteSignature(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .into(),
        ));
    };
    let value = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed = PrimitiveDateTime::parse(value, &basic_fmt)
        .ok()
        .or_else(|| (name == "date").then(|| PrimitiveDateTime::parse(value, &http_fmt).ok())?);
    let Some(at) = parsed else {
        return Err(ApiError::IncompleteSignature(format!(
            "{shown} {} is not of the form YYYYMMDDTHHMMSSZ.",
            quote(value)
        )));
    };
    let basic = at.format(&basic_fmt).map_err(|_| {
        ApiError::IncompleteSignature(format!("{shown} {} is out of range.", quote(value)))
    })?;
    Ok(SigningTime {
        name,
        shown,
        basic,
        epoch: at.assume_utc().unix_timestamp(),
    })
}

/// Identifies the caller of a request: parses the signature and, when `credentials`
/// is given, verifies it against `now` (epoch seconds). The credential scope must
/// name `ecs` ([`Verifier`] chooses otherwise).
pub fn authenticate(
    credentials: Option<&Credentials>,
    default_account: &str,
    now: i64,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Caller, ApiError> {
    let verifier = Verifier {
        credentials,
        default_account,
        now,
        service: ScopeService::Named("ecs"),
    };
    verifier.authenticate(method, uri, headers, body)
}

/// Verifies requests: [`authenticate`] with every choice spelled out.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    /// The keys; `None` accepts any signature (only the region is read).
    pub credentials: Option<&'a Credentials>,
    /// The account of keys that name none.
    pub default_account: &'a str,
    /// The server's time, epoch seconds.
    pub now: i64,
    /// What the credential scope must name.
    pub service: ScopeService,
}

impl Verifier<'_> {
    /// Identifies the caller of a request; see the module documentation.
    pub fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Caller, ApiError> {
        let header = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let Some(creds) = self.credentials else {
            let region = header
                .and_then(|h| parse_authorization(h).ok())
                .map_or_else(|| DEFAULT_REGION.to_owned(), |a| a.region);
            check_region(&region)?;
            return Ok(Caller {
                region,
                account: self.default_account.to_owned(),
            });
        };
        let auth = parse_authorization(header.ok_or(ApiError::MissingAuthentication)?)?;
        check_region(&auth.region)?;
        let key = creds
            .keys
            .get(&auth.access_key)
            .ok_or(ApiError::UnrecognizedClient)?;
        let wanted = match self.service {
            ScopeService::Named(name) => Some(name),
            ScopeService::Any => None,
        };
        if let Some(wanted) = wanted.filter(|w| auth.service != *w) {
            return Err(ApiError::InvalidSignature(format!(
                "Credential should be scoped to correct service: '{wanted}', not {}.",
                quote(&auth.service)
            )));
        }
        let signed_at = signing_time(headers)?;
        check_signed_headers(&auth, headers, &signed_at)?;
        let now = self.now;
        if (now - signed_at.epoch).abs() > MAX_SKEW_SECONDS {
            return Err(ApiError::InvalidSignature(format!(
                "Signature expired or not yet valid: signed at {}, the server's time is {now} (Unix); the difference may be at most 15 min.",
                signed_at.basic
            )));
        }
        if !signed_at.basic.starts_with(&auth.date) {
            return Err(ApiError::InvalidSignature(format!(
                "The credential scope date does not match {}.",
                signed_at.shown
            )));
        }
        let expected = compute_signature(
            &key.secret,
            &auth,
            &signed_at.basic,
            method,
            uri,
            headers,
            body,
        )?;
        let given = hex::decode(&auth.signature).unwrap_or_default();
        let matches = hex::decode(&expected).is_ok_and(|e| {
            e.len() == given.len()
                && e.iter().zip(&given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if !matches {
            return Err(ApiError::InvalidSignature(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
            ));
        }
        Ok(Caller {
            region: auth.region,
            account: key
                .account
                .clone()
                .unwrap_or_else(|| self.default_account.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::auth::KeyEntry;

    fn signed_request(service: &str, body: &[u8], content_sha: Option<&str>) -> (HeaderMap, i64) {
        let now = 1_764_000_000; // 2025-11-24T16:00:00Z
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("x-amz-date", "20251124T160000Z".parse().unwrap());
        let mut signed = vec!["host".to_owned(), "x-amz-date".to_owned()];
        if let Some(h) = content_sha {
            headers.insert("x-amz-content-sha256", h.parse().unwrap());
            signed.insert(1, "x-amz-content-sha256".to_owned());
        }
        let mut auth = SigV4Header {
            access_key: "K".into(),
            date: "20251124".into(),
            region: "us-east-1".into(),
            service: service.into(),
            signed_headers: signed,
            signature: String::new(),
        };
        let uri: Uri = "/".parse().unwrap();
        auth.signature = compute_signature(
            "s",
            &auth,
            "20251124T160000Z",
            &Method::POST,
            &uri,
            &headers,
            body,
        )
        .unwrap();
        headers.insert("authorization", auth.to_string().parse().unwrap());
        (headers, now)
    }

    fn creds() -> Credentials {
        let mut keys = BTreeMap::new();
        keys.insert(
            "K".to_owned(),
            KeyEntry {
                secret: "s".into(),
                account: None,
            },
        );
        Credentials { keys }
    }

    #[test]
    fn a_content_hash_header_must_match_the_body() {
        let body = br#"{"clusterName":"good"}"#;
        let sha = hex::encode(Sha256::digest(body));
        let (headers, now) = signed_request("ecs", body, Some(&sha));
        assert!(post_root(Some(&creds()), "0", now, &headers, body).is_ok());
        let evil = br#"{"clusterName":"evil"}"#;
        let e = post_root(Some(&creds()), "0", now, &headers, evil).unwrap_err();
        assert_eq!(e.status_and_code().1, "InvalidSignatureException");
        assert!(e.to_string().contains("x-amz-content-sha256"), "{e}");
    }

    const NOW: i64 = 1_764_000_000; // 2025-11-24T16:00:00Z

    /// `host`, `x-amz-date` of [`NOW`] and, when given, `x-amz-target`.
    fn base_headers(target: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("x-amz-date", "20251124T160000Z".parse().unwrap());
        if let Some(t) = target {
            headers.insert("x-amz-target", t.parse().unwrap());
        }
        headers
    }

    /// Signs `headers` with key `K`/`s`, covering exactly `signed`.
    fn sign_with(mut headers: HeaderMap, signed: &[&str], service: &str, body: &[u8]) -> HeaderMap {
        let time = signing_time(&headers).unwrap();
        let mut auth = SigV4Header {
            access_key: "K".into(),
            date: time.basic[..8].to_owned(),
            region: "us-east-1".into(),
            service: service.into(),
            signed_headers: signed.iter().map(|h| (*h).to_owned()).collect(),
            signature: String::new(),
        };
        auth.signature = compute_signature(
            "s",
            &auth,
            &time.basic,
            &Method::POST,
            &"/".parse().unwrap(),
            &headers,
            body,
        )
        .unwrap();
        headers.insert("authorization", auth.to_string().parse().unwrap());
        headers
    }

    /// [`authenticate`] of a `POST /` carrying `headers` and `body`.
    fn post_root(
        credentials: Option<&Credentials>,
        default_account: &str,
        now: i64,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Caller, ApiError> {
        authenticate(
            credentials,
            default_account,
            now,
            &Method::POST,
            &"/".parse().unwrap(),
            headers,
            body,
        )
    }

    fn verify(headers: &HeaderMap, body: &[u8]) -> Result<Caller, ApiError> {
        post_root(Some(&creds()), "0", NOW, headers, body)
    }

    #[test]
    fn a_signature_that_leaves_out_the_target_cannot_be_replayed_for_another_operation() {
        let body = br#"{"cluster":"prod"}"#;
        let describe = "AmazonEC2ContainerServiceV20141113.DescribeClusters";
        let signed = sign_with(
            base_headers(Some(describe)),
            &["host", "x-amz-date"],
            "ecs",
            body,
        );
        let mut replayed = signed.clone();
        replayed.insert(
            "x-amz-target",
            "AmazonEC2ContainerServiceV20141113.DeleteCluster"
                .parse()
                .unwrap(),
        );
        for headers in [&signed, &replayed] {
            let e = verify(headers, body).unwrap_err();
            assert_eq!(e.status_and_code().1, "InvalidSignatureException");
            assert_eq!(
                e.to_string(),
                "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization."
            );
        }
        // Covering the target, the signature holds for the operation it was made for only.
        let signed = sign_with(
            base_headers(Some(describe)),
            &["host", "x-amz-date", "x-amz-target"],
            "ecs",
            body,
        );
        assert!(verify(&signed, body).is_ok());
        let mut replayed = signed;
        replayed.insert(
            "x-amz-target",
            "AmazonEC2ContainerServiceV20141113.DeleteCluster"
                .parse()
                .unwrap(),
        );
        let e = verify(&replayed, body).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn host_and_the_timestamp_must_be_signed() {
        let target = Some("AmazonEC2ContainerServiceV20141113.ListClusters");
        let cases = [
            (&["x-amz-date", "x-amz-target"][..], "'Host'"),
            (&["host", "x-amz-target"][..], "'X-Amz-Date'"),
            (&["x-amz-target"][..], "'Host'"),
        ];
        for (signed, missing) in cases {
            let headers = sign_with(base_headers(target), signed, "ecs", b"{}");
            let e = verify(&headers, b"{}").unwrap_err();
            assert_eq!(
                e.status_and_code().1,
                "InvalidSignatureException",
                "{signed:?}"
            );
            assert!(e.to_string().starts_with(missing), "{signed:?}: {e}");
        }
        // Names are compared without regard to case, as clients may write them.
        let headers = sign_with(
            base_headers(target),
            &["Host", "X-Amz-Date", "X-Amz-Target"],
            "ecs",
            b"{}",
        );
        assert!(verify(&headers, b"{}").is_ok());
    }

    #[test]
    fn a_date_header_may_carry_the_time() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("date", "Mon, 24 Nov 2025 16:00:00 GMT".parse().unwrap());
        let signed = sign_with(headers.clone(), &["date", "host"], "ecs", b"{}");
        assert_eq!(verify(&signed, b"{}").unwrap().region, "us-east-1");
        let unsigned_date = sign_with(headers.clone(), &["host"], "ecs", b"{}");
        let e = verify(&unsigned_date, b"{}").unwrap_err();
        assert!(e.to_string().starts_with("'Date' must be"), "{e}");
        headers.remove("date");
        headers.insert("authorization", "AWS4-HMAC-SHA256 Credential=K/20251124/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00".parse().unwrap());
        let e = verify(&headers, b"{}").unwrap_err();
        assert_eq!(e.status_and_code().1, "IncompleteSignatureException");
        assert!(e.to_string().contains("'X-Amz-Date' or a 'Date'"), "{e}");
    }

    #[test]
    fn admin_requests_may_name_any_service() {
        let headers = sign_with(base_headers(None), &["host", "x-amz-date"], "flotilla", b"");
        let uri: Uri = "/admin/reset".parse().unwrap();
        let any = Verifier {
            credentials: Some(&creds()),
            default_account: "0",
            now: NOW,
            service: ScopeService::Any,
        };
        // Signed for `/`, so the path differs: refused; then signed for the path itself.
        assert!(
            any.authenticate(&Method::POST, &uri, &headers, b"")
                .is_err()
        );
        let root: Uri = "/".parse().unwrap();
        assert!(
            any.authenticate(&Method::POST, &root, &headers, b"")
                .is_ok()
        );
        let ecs_only = Verifier {
            service: ScopeService::Named("ecs"),
            ..any
        };
        let e = ecs_only
            .authenticate(&Method::POST, &root, &headers, b"")
            .unwrap_err();
        assert!(e.to_string().contains("'ecs'"), "{e}");
    }

    #[test]
    fn messages_quote_only_a_prefix_of_the_input() {
        let long = "9".repeat(100_000);
        let auth = |service: &str, region: &str| {
            format!("AWS4-HMAC-SHA256 Credential=K/20251124/{region}/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
                .parse()
                .unwrap()
        };
        let mut long_date = base_headers(None);
        long_date.insert("x-amz-date", long.parse().unwrap());
        long_date.insert("authorization", auth("ecs", "us-east-1"));
        let mut long_service = base_headers(None);
        long_service.insert("authorization", auth(&long, "us-east-1"));
        let mut long_region = base_headers(None);
        long_region.insert("authorization", auth("ecs", &long));
        for headers in [long_date, long_service, long_region] {
            let e = verify(&headers, b"").unwrap_err();
            assert!(e.to_string().len() < 200, "{e}");
            assert!(e.to_string().contains("999…\""), "{e}");
        }
    }

    #[test]
    fn the_scope_must_name_ecs() {
        let (headers, now) = signed_request("s3", b"{}", None);
        let e = post_root(Some(&creds()), "0", now, &headers, b"{}").unwrap_err();
        assert_eq!(e.status_and_code().1, "InvalidSignatureException");
        assert!(e.to_string().contains("'ecs'"), "{e}");
    }

    #[test]
    fn regions_must_be_region_names() {
        assert!(
            is_valid_region("us-east-1")
                && is_valid_region("us-gov-west-1")
                && is_valid_region("cn-north-1")
        );
        for bad in ["", "us-east-1:evil", "EVIL REGION", "ü", &"x".repeat(33)] {
            assert!(!is_valid_region(bad), "{bad}");
        }
        let mut headers = HeaderMap::new();
        let auth = "AWS4-HMAC-SHA256 Credential=K/20261123/us-east-1:x/ecs/aws4_request, SignedHeaders=host, Signature=00";
        headers.insert("authorization", auth.parse().unwrap());
        let e = post_root(None, "0", 0, &headers, b"{}").unwrap_err();
        assert_eq!(e.status_and_code().1, "InvalidSignatureException");
    }

    #[test]
    fn without_credentials_any_signature_is_accepted_and_the_region_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=K/20261123/ap-south-1/ecs/aws4_request, SignedHeaders=host, Signature=00".parse().unwrap(),
        );
        let c = post_root(None, "000000000000", 0, &headers, b"{}").unwrap();
        assert_eq!(c.region, "ap-south-1");
        let none = post_root(None, "1", 0, &HeaderMap::new(), b"").unwrap();
        assert_eq!(none.region, DEFAULT_REGION);
    }
}
