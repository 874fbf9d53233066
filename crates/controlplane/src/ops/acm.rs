//! The ACM (AWS Certificate Manager) operations flotilla serves, for HTTPS listeners:
//! ImportCertificate, DescribeCertificate, ListCertificates, GetCertificate,
//! DeleteCertificate, ListTagsForCertificate. Pure functions of the state like every
//! other operation; `ecs-api`'s `acm` module speaks the wire (JSON 1.1,
//! `CertificateManager.*`).
//!
//! ## Design
//! - Errors are [`AcmError`], one variant per ACM error code used.
//! - Records: [`crate::state::CertificateRecord`] (certificate, chain and private key as
//!   PEM, plus the X.509 fields read at import), carried in `Discovery::acm`.
//! - Import checks what ACM checks: the certificate is one PEM X.509 certificate, the key
//!   an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1) whose public key is the
//!   certificate's (checked by loading both as a rustls `CertifiedKey` with the `ring`
//!   provider), the chain PEM certificates. A mismatch or garbage is a
//!   `ValidationException`. An expired certificate imports, and shows `EXPIRED`.
//! - `Status` is computed when read: `EXPIRED` past `NotAfter`, else `ISSUED`.
//! - `InUseBy` is every listener (of the same account and region) whose certificates
//!   name it; DeleteCertificate refuses a used one (`ResourceInUseException`).
//!
//! ## Limits
//! | what | limit |
//! | --- | --- |
//! | certificate (decoded) | [`MAX_CERTIFICATE_BYTES`] (32 KiB, ACM's) |
//! | private key (decoded) | [`MAX_PRIVATE_KEY_BYTES`] (5 KiB, ACM's) |
//! | chain (decoded) | [`MAX_CHAIN_BYTES`] (2 MiB, ACM's; the server's 2 MB request body limit binds first) |
//! | certificates in the chain | [`MAX_CHAIN_CERTIFICATES`] |
//! | certificates per account and region | [`MAX_CERTIFICATES`] |
//! | tags per certificate | [`MAX_TAGS`] (50) |
//! | ListCertificates page | 1–[`MAX_ITEMS`] |
//!
//! ## Current limitations
//! Only imported certificates: RequestCertificate (validation), renewal, export, private
//! CAs, AddTagsToCertificate/RemoveTagsFromCertificate, and ListCertificates' `Includes`
//! filters are not served. NextTokens are the last listed certificate's id, not signed:
//! they only ever range over the caller's own scope.

use base64::Engine as _;
use model::wire_acm::{
    self, CertificateArnRequest, CertificateDetail, CertificateStatus, CertificateSummary,
    DescribeCertificateResponse, GetCertificateResponse, ImportCertificateRequest,
    ImportCertificateResponse, ListCertificatesRequest, ListCertificatesResponse,
    ListTagsForCertificateResponse,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::EcsError;
use crate::engine::{Ctx, Written};
use crate::state::elb::in_scope as elb_in_scope;
use crate::state::{
    CertificateFields, CertificateRecord, Change, DiscoveryRecord, Record, Scope, State,
};

/// Largest certificate, decoded (ACM: 32 KiB).
pub const MAX_CERTIFICATE_BYTES: usize = 32 * 1024;
/// Largest private key, decoded (ACM: 5 KiB).
pub const MAX_PRIVATE_KEY_BYTES: usize = 5 * 1024;
/// Largest chain, decoded (ACM: 2 MiB).
pub const MAX_CHAIN_BYTES: usize = 2 * 1024 * 1024;
/// Most certificates in one chain.
pub const MAX_CHAIN_CERTIFICATES: usize = 20;
/// Most certificates per account and region.
pub const MAX_CERTIFICATES: usize = 1000;
/// Most tags per certificate (ACM: 50).
pub const MAX_TAGS: usize = 50;
/// Largest ListCertificates page, and the default (ACM: 1–1000).
pub const MAX_ITEMS: usize = 1000;

/// An ACM operation failed. The variant is the `__type` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcmError {
    /// The certificate, key or chain is not what ACM accepts (garbage, a mismatched key,
    /// over a size limit), or a member fails the model's constraints.
    #[error("{0}")]
    Validation(String),
    /// A parameter is not valid on its own (a bad NextToken, a member of the wrong type).
    #[error("{0}")]
    InvalidParameter(String),
    /// Not a certificate ARN.
    #[error("{0}")]
    InvalidArn(String),
    /// No such certificate.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The certificate is used by a listener.
    #[error("{0}")]
    ResourceInUse(String),
    /// Over [`MAX_CERTIFICATES`].
    #[error("{0}")]
    LimitExceeded(String),
    /// Over [`MAX_TAGS`].
    #[error("{0}")]
    TooManyTags(String),
    /// A tag key or value is not valid.
    #[error("{0}")]
    InvalidTag(String),
    /// The server failed (the store could not commit, …).
    #[error("{0}")]
    Internal(String),
}

impl AcmError {
    /// The wire error code (`__type`). One exhaustive match, no fallback.
    pub fn code(&self) -> &'static str {
        match self {
            AcmError::Validation(_) => "ValidationException",
            AcmError::InvalidParameter(_) => "InvalidParameterException",
            AcmError::InvalidArn(_) => "InvalidArnException",
            AcmError::ResourceNotFound(_) => "ResourceNotFoundException",
            AcmError::ResourceInUse(_) => "ResourceInUseException",
            AcmError::LimitExceeded(_) => "LimitExceededException",
            AcmError::TooManyTags(_) => "TooManyTagsException",
            AcmError::InvalidTag(_) => "InvalidTagException",
            AcmError::Internal(_) => "InternalFailure",
        }
    }

    /// Whether the server, not the client, is at fault (HTTP 500).
    pub fn is_server_fault(&self) -> bool {
        matches!(self, AcmError::Internal(_))
    }
}

impl From<EcsError> for AcmError {
    /// Only the writer's own failures reach here: server faults.
    fn from(e: EcsError) -> AcmError {
        AcmError::Internal(e.to_string())
    }
}

/// What an ACM write returns: its answer and the changes it decided.
pub type AcmWritten<T> = Written<T, AcmError>;

fn put(r: CertificateRecord) -> Change {
    Change::Put(Record::Discovery(DiscoveryRecord::Acm(r)))
}

/// Decodes a blob member (base64 on the wire), at most `max` bytes once decoded.
fn blob(what: &str, b64: &str, max: usize) -> Result<Vec<u8>, AcmError> {
    // Base64 is 4 characters per 3 bytes: a longer text decodes to more than `max`.
    if b64.len() > max.div_ceil(3) * 4 + 4 {
        return Err(AcmError::Validation(format!(
            "{what} must be at most {max} bytes"
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| AcmError::Validation(format!("{what} is not valid base64")))?;
    if bytes.is_empty() || bytes.len() > max {
        return Err(AcmError::Validation(format!(
            "{what} must be 1 to {max} bytes"
        )));
    }
    Ok(bytes)
}

/// The PEM certificates of `pem`, at most `max`.
fn pem_certificates(
    what: &str,
    pem: &[u8],
    max: usize,
) -> Result<Vec<CertificateDer<'static>>, AcmError> {
    let mut out = Vec::new();
    for c in CertificateDer::pem_slice_iter(pem) {
        if out.len() == max {
            return Err(AcmError::Validation(format!(
                "The {what} holds more than {max} certificates"
            )));
        }
        out.push(c.map_err(|e| AcmError::Validation(format!("Could not parse the {what}: {e}")))?);
    }
    if out.is_empty() {
        return Err(AcmError::Validation(format!(
            "Could not parse the {what}: it holds no PEM certificate"
        )));
    }
    Ok(out)
}

/// ACM's key algorithm name of a certificate's public key.
fn key_algorithm(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA_{}", rsa.key_size()),
        Ok(PublicKey::EC(ec)) => match ec.key_size() {
            256 => "EC_prime256v1".into(),
            384 => "EC_secp384r1".into(),
            521 => "EC_secp521r1".into(),
            n => format!("EC_{n}"),
        },
        _ => cert.public_key().algorithm.algorithm.to_id_string(),
    }
}

/// ACM's name of a signature algorithm OID.
fn signature_algorithm(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.5" => "SHA1WITHRSA",
        "1.2.840.113549.1.1.11" => "SHA256WITHRSA",
        "1.2.840.113549.1.1.12" => "SHA384WITHRSA",
        "1.2.840.113549.1.1.13" => "SHA512WITHRSA",
        "1.2.840.10045.4.3.2" => "SHA256WITHECDSA",
        "1.2.840.10045.4.3.3" => "SHA384WITHECDSA",
        "1.2.840.10045.4.3.4" => "SHA512WITHECDSA",
        other => other,
    }
    .to_owned()
}

/// Checks a certificate, its key and chain as ACM's import does, and reads the fields
/// DescribeCertificate shows.
pub fn check_certificate(
    certificate_pem: &[u8],
    private_key_pem: &[u8],
    chain_pem: Option<&[u8]>,
) -> Result<CertificateFields, AcmError> {
    let mut certs = pem_certificates("certificate", certificate_pem, 1)?;
    if let Some(chain) = chain_pem {
        pem_certificates("certificate chain", chain, MAX_CHAIN_CERTIFICATES)?;
    }
    let key = PrivateKeyDer::from_pem_slice(private_key_pem).map_err(|e| {
        AcmError::Validation(format!(
            "The private key is not an unencrypted PEM private key: {e}"
        ))
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let cert = certs.remove(0);
    rustls::sign::CertifiedKey::from_der(vec![cert.clone()], key, &provider).map_err(
        |e| match e {
            rustls::Error::InconsistentKeys(_) => AcmError::Validation(
                "The private key does not match the public key in the certificate".into(),
            ),
            other => AcmError::Validation(format!("The private key is not supported: {other}")),
        },
    )?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| AcmError::Validation(format!("Could not parse the certificate: {e}")))?;
    let sans: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_owned);
    Ok(CertificateFields {
        domain_name: cn.or_else(|| sans.first().cloned()),
        subject_alternative_names: sans,
        serial: parsed.raw_serial_as_string(),
        subject: parsed.subject().to_string(),
        issuer: parsed.issuer().to_string(),
        not_before: parsed.validity().not_before.timestamp() as f64,
        not_after: parsed.validity().not_after.timestamp() as f64,
        key_algorithm: key_algorithm(&parsed),
        signature_algorithm: signature_algorithm(
            &parsed.signature_algorithm.algorithm.to_id_string(),
        ),
    })
}

fn check_tags(tags: &[wire_acm::Tag]) -> Result<(), AcmError> {
    if tags.len() > MAX_TAGS {
        return Err(AcmError::TooManyTags(format!(
            "A certificate can have at most {MAX_TAGS} tags"
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.key.starts_with("aws:") {
            return Err(AcmError::InvalidTag(
                "Tag keys must be 1 to 128 characters and not start with aws:".into(),
            ));
        }
        if t.value.as_ref().is_some_and(|v| v.chars().count() > 256) {
            return Err(AcmError::InvalidTag(
                "Tag values must be at most 256 characters".into(),
            ));
        }
        if !seen.insert(t.key.as_str()) {
            return Err(AcmError::InvalidTag(format!(
                "Tag key {:?} is given twice",
                t.key
            )));
        }
    }
    Ok(())
}

/// The certificate `arn` names in `scope`: `InvalidArnException` when it is no
/// certificate ARN, `ResourceNotFoundException` when there is none.
pub fn certificate_by_arn<'a>(
    state: &'a State,
    scope: &Scope,
    arn: &str,
) -> Result<&'a CertificateRecord, AcmError> {
    let well_formed = arn.starts_with("arn:aws:acm:") && arn.contains(":certificate/");
    if !well_formed {
        return Err(AcmError::InvalidArn(format!(
            "String '{}' is not a valid certificate ARN",
            arn.chars().take(100).collect::<String>()
        )));
    }
    state
        .discovery
        .acm
        .by_arn(scope, arn)
        .ok_or_else(|| AcmError::ResourceNotFound(format!("Could not find certificate {arn}.")))
}

/// The ARNs of the listeners (of `scope`) that use certificate `arn`.
pub fn in_use_by(state: &State, scope: &Scope, arn: &str) -> Vec<String> {
    elb_in_scope(&state.elb.listeners, scope)
        .filter(|l| l.certificates.iter().any(|c| c == arn))
        .map(|l| l.arn())
        .collect()
}

fn status(r: &CertificateRecord, now: f64) -> CertificateStatus {
    if now > r.fields.not_after {
        CertificateStatus::Expired
    } else {
        CertificateStatus::Issued
    }
}

/// ImportCertificate: a new certificate, or a re-import over `CertificateArn` (which keeps
/// its ARN, creation time and tags, as ACM does).
pub fn import_certificate(
    state: &State,
    ctx: &mut Ctx,
    req: ImportCertificateRequest,
) -> AcmWritten<ImportCertificateResponse> {
    let certificate = blob(
        "Certificate",
        req.certificate.as_deref().unwrap_or_default(),
        MAX_CERTIFICATE_BYTES,
    )?;
    let key = blob(
        "PrivateKey",
        req.private_key.as_deref().unwrap_or_default(),
        MAX_PRIVATE_KEY_BYTES,
    )?;
    let chain = match &req.certificate_chain {
        Some(c) => Some(blob("CertificateChain", c, MAX_CHAIN_BYTES)?),
        None => None,
    };
    let fields = check_certificate(&certificate, &key, chain.as_deref())?;
    let text = |what: &str, b: Vec<u8>| {
        String::from_utf8(b).map_err(|_| AcmError::Validation(format!("{what} is not PEM text")))
    };
    let certificate_pem = text("Certificate", certificate)?;
    let private_key_pem = text("PrivateKey", key)?;
    let chain_pem = chain.map(|c| text("CertificateChain", c)).transpose()?;
    let tags = req.tags.unwrap_or_default();
    check_tags(&tags)?;
    let record = match &req.certificate_arn {
        Some(arn) => {
            if !tags.is_empty() {
                return Err(AcmError::InvalidParameter(
                    "Tags cannot be given when re-importing a certificate".into(),
                ));
            }
            let old = certificate_by_arn(state, &ctx.scope, arn)?;
            CertificateRecord {
                certificate_pem,
                chain_pem,
                private_key_pem,
                imported_at: ctx.now,
                fields,
                ..old.clone()
            }
        }
        None => {
            if state.discovery.acm.in_scope(&ctx.scope, None).count() >= MAX_CERTIFICATES {
                return Err(AcmError::LimitExceeded(format!(
                    "The maximum number of certificates ({MAX_CERTIFICATES}) has been reached"
                )));
            }
            let id = loop {
                let id = ctx.new_uuid();
                if !state
                    .discovery
                    .acm
                    .certificates
                    .contains_key(&(ctx.scope.clone(), id.clone()))
                {
                    break id;
                }
            };
            CertificateRecord {
                scope: ctx.scope.clone(),
                id,
                certificate_pem,
                chain_pem,
                private_key_pem,
                tags,
                created_at: ctx.now,
                imported_at: ctx.now,
                fields,
            }
        }
    };
    Ok((
        ImportCertificateResponse {
            certificate_arn: record.arn(),
        },
        vec![put(record)],
    ))
}

/// DescribeCertificate.
pub fn describe_certificate(
    state: &State,
    scope: &Scope,
    now: f64,
    req: CertificateArnRequest,
) -> Result<DescribeCertificateResponse, AcmError> {
    let arn = req.certificate_arn.unwrap_or_default();
    let r = certificate_by_arn(state, scope, &arn)?;
    let f = &r.fields;
    Ok(DescribeCertificateResponse {
        certificate: CertificateDetail {
            certificate_arn: r.arn(),
            domain_name: f.domain_name.clone(),
            subject_alternative_names: f.subject_alternative_names.clone(),
            serial: f.serial.clone(),
            subject: f.subject.clone(),
            issuer: f.issuer.clone(),
            created_at: r.created_at,
            imported_at: r.imported_at,
            status: status(r, now),
            not_before: f.not_before,
            not_after: f.not_after,
            key_algorithm: f.key_algorithm.clone(),
            signature_algorithm: f.signature_algorithm.clone(),
            in_use_by: in_use_by(state, scope, &r.arn()),
            cert_type: "IMPORTED".into(),
            renewal_eligibility: "INELIGIBLE".into(),
        },
    })
}

/// ListCertificates: by id, filtered by status, paged.
pub fn list_certificates(
    state: &State,
    scope: &Scope,
    now: f64,
    req: ListCertificatesRequest,
) -> Result<ListCertificatesResponse, AcmError> {
    let size = match req.max_items {
        None => MAX_ITEMS,
        Some(n) if (1..=MAX_ITEMS as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(AcmError::Validation(format!(
                "MaxItems must be from 1 to {MAX_ITEMS}, not {n}"
            )));
        }
    };
    let statuses = req.certificate_statuses.unwrap_or_default();
    // A token is the last listed certificate's id (a deleted one still pages on).
    if req
        .next_token
        .as_ref()
        .is_some_and(|t| t.is_empty() || t.len() > 64)
    {
        return Err(AcmError::InvalidParameter("NextToken is not valid".into()));
    }
    let mut list = Vec::new();
    let mut next_token = None;
    let matching = state
        .discovery
        .acm
        .in_scope(scope, req.next_token.as_deref())
        .filter(|r| statuses.is_empty() || statuses.contains(&status(r, now)));
    for r in matching {
        if list.len() == size {
            next_token = list
                .last()
                .map(|s: &(String, CertificateSummary)| s.0.clone());
            break;
        }
        let f = &r.fields;
        let arn = r.arn();
        list.push((
            r.id.clone(),
            CertificateSummary {
                in_use: !in_use_by(state, scope, &arn).is_empty(),
                certificate_arn: arn,
                domain_name: f.domain_name.clone(),
                subject_alternative_name_summaries: f.subject_alternative_names.clone(),
                status: status(r, now),
                cert_type: "IMPORTED".into(),
                key_algorithm: f.key_algorithm.clone(),
                not_before: f.not_before,
                not_after: f.not_after,
                created_at: r.created_at,
                imported_at: r.imported_at,
            },
        ));
    }
    Ok(ListCertificatesResponse {
        certificate_summary_list: list.into_iter().map(|(_, s)| s).collect(),
        next_token,
    })
}

/// GetCertificate: the certificate and chain, PEM (never the key).
pub fn get_certificate(
    state: &State,
    scope: &Scope,
    req: CertificateArnRequest,
) -> Result<GetCertificateResponse, AcmError> {
    let r = certificate_by_arn(state, scope, &req.certificate_arn.unwrap_or_default())?;
    Ok(GetCertificateResponse {
        certificate: r.certificate_pem.clone(),
        certificate_chain: r.chain_pem.clone(),
    })
}

/// ListTagsForCertificate.
pub fn list_tags_for_certificate(
    state: &State,
    scope: &Scope,
    req: CertificateArnRequest,
) -> Result<ListTagsForCertificateResponse, AcmError> {
    let r = certificate_by_arn(state, scope, &req.certificate_arn.unwrap_or_default())?;
    Ok(ListTagsForCertificateResponse {
        tags: r.tags.clone(),
    })
}

/// DeleteCertificate: refused while a listener uses it (`ResourceInUseException`).
pub fn delete_certificate(
    state: &State,
    ctx: &mut Ctx,
    req: CertificateArnRequest,
) -> AcmWritten<wire_acm::Empty> {
    let r = certificate_by_arn(state, &ctx.scope, &req.certificate_arn.unwrap_or_default())?;
    let users = in_use_by(state, &ctx.scope, &r.arn());
    if let Some(first) = users.first() {
        return Err(AcmError::ResourceInUse(format!(
            "Certificate {} is in use by {first}",
            r.arn()
        )));
    }
    Ok((
        wire_acm::Empty {},
        vec![Change::Delete(Record::Discovery(DiscoveryRecord::Acm(
            r.clone(),
        )))],
    ))
}
