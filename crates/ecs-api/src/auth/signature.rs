//! The SigV4 signing math: the canonical request (headers the client listed, query,
//! body hash), the string to sign and the HMAC-SHA256 key chain.

use axum::http::{HeaderMap, Method, Uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::SigV4Header;
use crate::error::{ApiError, quote};

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn canonical_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_query(uri: &Uri) -> String {
    let Some(q) = uri.query() else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(k, false), uri_encode(v, false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The SigV4 signature of a request, computed from the headers the client signed.
pub fn compute_signature(
    secret: &str,
    auth: &SigV4Header,
    amz_date: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiError> {
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| v.to_str().map(canonical_header_value))
            .collect::<Result<_, _>>()
            .map_err(|_| {
                ApiError::IncompleteSignature(format!("signed header {} is not ASCII", quote(name)))
            })?;
        if values.is_empty() {
            return Err(ApiError::IncompleteSignature(format!(
                "signed header {} is missing from the request",
                quote(name)
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    // The body is always hashed: a client-supplied `x-amz-content-sha256` must match it,
    // or the signature would cover the header but not the body it claims to describe.
    let payload_hash = hex::encode(Sha256::digest(body));
    if let Some(claimed) = headers.get("x-amz-content-sha256") {
        let claimed = claimed.to_str().unwrap_or("");
        if claimed != "UNSIGNED-PAYLOAD" && !claimed.eq_ignore_ascii_case(&payload_hash) {
            return Err(ApiError::InvalidSignature(
                "The x-amz-content-sha256 header does not match the SHA-256 of the request body."
                    .into(),
            ));
        }
    }
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        uri_encode(path, true),
        canonical_query(uri),
        auth.signed_headers.join(";"),
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    Ok(hex::encode(hmac(&k_signing, string_to_sign.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the AWS SigV4 documentation ("GET iam ListUsers").
    #[test]
    fn matches_the_aws_documentation_example() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "iam.amazonaws.com".parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let auth = SigV4Header {
            access_key: "AKIDEXAMPLE".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "iam".into(),
            signed_headers: vec!["content-type".into(), "host".into(), "x-amz-date".into()],
            signature: String::new(),
        };
        let uri: Uri = "/?Action=ListUsers&Version=2010-05-08".parse().unwrap();
        let sig = compute_signature(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &auth,
            "20150830T123600Z",
            &Method::GET,
            &uri,
            &headers,
            b"",
        )
        .unwrap();
        assert_eq!(
            sig,
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }
}
