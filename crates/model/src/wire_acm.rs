//! The few AWS Certificate Manager (`acm`) shapes flotilla serves: importing certificates
//! for HTTPS listeners and reading them back (ImportCertificate, DescribeCertificate,
//! ListCertificates, GetCertificate, DeleteCertificate, ListTagsForCertificate).
//! Hand-written from botocore's `acm/2015-12-08/service-2.json` (JSON 1.1,
//! `X-Amz-Target: CertificateManager.<Operation>`, PascalCase members) for just these
//! operations; the rest of ACM (requesting, renewing, exporting) is not served.
//!
//! Blob members (`Certificate`, `PrivateKey`, `CertificateChain` of ImportCertificate) are
//! base64 text on the wire and stay so here; the control plane decodes them.

use serde::{Deserialize, Serialize};

use crate::wire::{Required, Timestamp};

/// The `X-Amz-Target` prefix of ACM operations.
pub const TARGET_PREFIX: &str = "CertificateManager";

/// The ACM operations flotilla serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmOperation {
    /// Imports (or re-imports) a certificate with its private key and chain.
    ImportCertificate,
    /// One certificate's details.
    DescribeCertificate,
    /// Lists certificates, with paging.
    ListCertificates,
    /// The certificate and chain in PEM (never the key).
    GetCertificate,
    /// Deletes a certificate no listener uses.
    DeleteCertificate,
    /// A certificate's tags.
    ListTagsForCertificate,
}

impl AcmOperation {
    /// Every served operation.
    pub const ALL: [AcmOperation; 6] = [
        AcmOperation::ImportCertificate,
        AcmOperation::DescribeCertificate,
        AcmOperation::ListCertificates,
        AcmOperation::GetCertificate,
        AcmOperation::DeleteCertificate,
        AcmOperation::ListTagsForCertificate,
    ];

    /// The operation's name as `X-Amz-Target` spells it.
    pub fn name(self) -> &'static str {
        match self {
            AcmOperation::ImportCertificate => "ImportCertificate",
            AcmOperation::DescribeCertificate => "DescribeCertificate",
            AcmOperation::ListCertificates => "ListCertificates",
            AcmOperation::GetCertificate => "GetCertificate",
            AcmOperation::DeleteCertificate => "DeleteCertificate",
            AcmOperation::ListTagsForCertificate => "ListTagsForCertificate",
        }
    }

    /// Looks an operation up by name.
    pub fn from_name(name: &str) -> Option<AcmOperation> {
        AcmOperation::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// A tag (`Key` 1–128, `Value` 0–256 characters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// ImportCertificate input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportCertificateRequest {
    /// The certificate to replace (re-import), if any.
    pub certificate_arn: Option<String>,
    /// The PEM certificate, base64 (a blob).
    pub certificate: Option<String>,
    /// The PEM private key, base64 (a blob).
    pub private_key: Option<String>,
    /// The PEM intermediates, base64 (a blob).
    pub certificate_chain: Option<String>,
    /// Tags (not allowed on a re-import, as in ACM).
    pub tags: Option<Vec<Tag>>,
}

impl Required for ImportCertificateRequest {
    fn missing_required(&self) -> Option<&'static str> {
        if self.certificate.is_none() {
            Some("Certificate")
        } else if self.private_key.is_none() {
            Some("PrivateKey")
        } else {
            None
        }
    }
}

/// ImportCertificate output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportCertificateResponse {
    /// The certificate's ARN.
    pub certificate_arn: String,
}

/// The input of the operations that name one certificate (Describe, Get, Delete,
/// ListTagsFor).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateArnRequest {
    /// The certificate's ARN.
    pub certificate_arn: Option<String>,
}

impl Required for CertificateArnRequest {
    fn missing_required(&self) -> Option<&'static str> {
        self.certificate_arn.is_none().then_some("CertificateArn")
    }
}

/// DescribeCertificate's `Certificate`: what flotilla knows of an imported certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateDetail {
    /// Its ARN.
    pub certificate_arn: String,
    /// The subject's common name (or the first SAN when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// The DNS subject alternative names.
    pub subject_alternative_names: Vec<String>,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// The subject's distinguished name.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// When it was imported first.
    pub created_at: Timestamp,
    /// When it was imported last.
    pub imported_at: Timestamp,
    /// `ISSUED`, or `EXPIRED` past `NotAfter`.
    pub status: CertificateStatus,
    /// Validity start.
    pub not_before: Timestamp,
    /// Validity end.
    pub not_after: Timestamp,
    /// `RSA_2048`, `EC_prime256v1`, …
    pub key_algorithm: String,
    /// The signature algorithm (`SHA256WITHRSA`, `SHA256WITHECDSA`, …).
    pub signature_algorithm: String,
    /// The ARNs of the listeners that use it.
    pub in_use_by: Vec<String>,
    /// Always `IMPORTED`.
    #[serde(rename = "Type")]
    pub cert_type: String,
    /// `INELIGIBLE`: imported certificates are not renewed.
    pub renewal_eligibility: String,
}

/// DescribeCertificate output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeCertificateResponse {
    /// The certificate.
    pub certificate: CertificateDetail,
}

/// ACM's `CertificateStatus`. An imported certificate is `ISSUED`, or `EXPIRED` past
/// its `NotAfter`; the others are the statuses of certificates ACM issues itself, which a
/// ListCertificates filter may name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CertificateStatus {
    /// Requested, waiting for domain validation.
    PendingValidation,
    /// Valid.
    #[default]
    Issued,
    /// Not in use (ACM-issued certificates).
    Inactive,
    /// Past `NotAfter`.
    Expired,
    /// Domain validation did not finish in time.
    ValidationTimedOut,
    /// Revoked.
    Revoked,
    /// Issuing failed.
    Failed,
}

/// ListCertificates input (`Includes`, `SortBy`, `SortOrder` are accepted and ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListCertificatesRequest {
    /// Only these statuses.
    pub certificate_statuses: Option<Vec<CertificateStatus>>,
    /// Accepted, ignored.
    pub includes: Option<serde_json::Value>,
    /// Where the previous page stopped.
    pub next_token: Option<String>,
    /// Page size (1–1000).
    pub max_items: Option<i64>,
    /// Accepted, ignored.
    pub sort_by: Option<String>,
    /// Accepted, ignored.
    pub sort_order: Option<String>,
}

impl Required for ListCertificatesRequest {
    fn missing_required(&self) -> Option<&'static str> {
        None
    }
}

/// One certificate of a ListCertificates page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CertificateSummary {
    /// Its ARN.
    pub certificate_arn: String,
    /// The domain name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// The subject alternative names.
    pub subject_alternative_name_summaries: Vec<String>,
    /// `ISSUED` or `EXPIRED`.
    pub status: CertificateStatus,
    /// Always `IMPORTED`.
    #[serde(rename = "Type")]
    pub cert_type: String,
    /// `RSA_2048`, `EC_prime256v1`, …
    pub key_algorithm: String,
    /// Whether a listener uses it.
    pub in_use: bool,
    /// Validity start.
    pub not_before: Timestamp,
    /// Validity end.
    pub not_after: Timestamp,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was imported last.
    pub imported_at: Timestamp,
}

/// ListCertificates output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListCertificatesResponse {
    /// The page.
    pub certificate_summary_list: Vec<CertificateSummary>,
    /// Where the next page starts, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// GetCertificate output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetCertificateResponse {
    /// The certificate, PEM.
    pub certificate: String,
    /// The chain, PEM, when one was imported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_chain: Option<String>,
}

/// ListTagsForCertificate output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListTagsForCertificateResponse {
    /// The tags.
    pub tags: Vec<Tag>,
}

/// An empty output (DeleteCertificate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}
