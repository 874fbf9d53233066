//! The `AWS4-HMAC-SHA256` `Authorization` header, parsed into its credential scope,
//! signed header names and signature.

use crate::error::ApiError;

/// The parts of an `AWS4-HMAC-SHA256` Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Header {
    /// Access key id.
    pub access_key: String,
    /// `YYYYMMDD` of the scope.
    pub date: String,
    /// Region of the scope.
    pub region: String,
    /// Service of the scope.
    pub service: String,
    /// Lower-case header names, in the client's order.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

impl std::fmt::Display for SigV4Header {
    /// The header as a client sends it, `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
    /// Signature=…`: what [`parse_authorization`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
            self.access_key,
            self.date,
            self.region,
            self.service,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// Parses `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
pub fn parse_authorization(value: &str) -> Result<SigV4Header, ApiError> {
    let bad =
        |m: &str| ApiError::IncompleteSignature(format!("Authorization header is malformed: {m}"));
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(|| bad("only AWS4-HMAC-SHA256 is supported"))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| bad("no Credential"))?;
    let fields: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = fields[..] else {
        return Err(bad(
            "Credential must be <key>/<date>/<region>/<service>/aws4_request",
        ));
    };
    if terminator != "aws4_request" || region.is_empty() || access_key.is_empty() {
        return Err(bad(
            "Credential must be <key>/<date>/<region>/<service>/aws4_request",
        ));
    }
    Ok(SigV4Header {
        access_key: access_key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed
            .ok_or_else(|| bad("no SignedHeaders"))?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: signature.ok_or_else(|| bad("no Signature"))?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_credential_scope() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=KEY/20261123/eu-west-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=KEY/2026, Signature=x").is_err());
        assert!(parse_authorization("Basic Zm9vOmJhcg==").is_err());
    }

    #[test]
    fn displays_as_the_header_it_parses_from() {
        let value = "AWS4-HMAC-SHA256 Credential=KEY/20261123/eu-west-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        let a = parse_authorization(value).unwrap();
        assert_eq!(a.to_string(), value);
        assert_eq!(parse_authorization(&a.to_string()).unwrap(), a);
    }
}
