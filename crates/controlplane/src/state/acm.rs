//! ACM (`acm`) records: imported certificates, with their private keys and chains, kept in
//! [`Acm`] (the `acm` field of [`Discovery`](super::Discovery)).
//!
//! They travel as [`DiscoveryRecord::Acm`](super::DiscoveryRecord), as ECS Anywhere's and
//! CloudWatch's do: the records of an AWS API beside ECS on the one endpoint, riding there
//! keeps the store's record list unchanged. Store keys are `acm-cert|<account>|<region>|<id>`.
//!
//! The private key is stored as imported (PEM), in the server's data directory like every
//! other record: the load balancer needs it to serve TLS (see docs/security.md).

use std::collections::BTreeMap;

use model::wire_acm;
use serde::{Deserialize, Serialize};

use super::keys::Scope;

/// Key of a certificate: scope and id (the UUID at the end of its ARN).
pub type AcmKey = (Scope, String);

/// An imported certificate.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// Where it lives.
    pub scope: Scope,
    /// The UUID at the end of its ARN.
    pub id: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The intermediates, PEM, when imported with some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_pem: Option<String>,
    /// The private key, PEM.
    pub private_key_pem: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<wire_acm::Tag>,
    /// When it was first imported (epoch seconds).
    pub created_at: f64,
    /// When it was last imported (epoch seconds).
    pub imported_at: f64,
    /// What its X.509 fields say.
    #[serde(default)]
    pub fields: CertificateFields,
}

impl std::fmt::Debug for CertificateRecord {
    /// Leaves the private key out of logs and test failures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateRecord")
            .field("scope", &self.scope)
            .field("id", &self.id)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

/// The X.509 fields DescribeCertificate shows, read at import.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificateFields {
    /// The subject CN (or the first SAN).
    pub domain_name: Option<String>,
    /// The DNS subject alternative names.
    pub subject_alternative_names: Vec<String>,
    /// Serial, colon-separated hex.
    pub serial: String,
    /// The subject's distinguished name.
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Validity start (epoch seconds).
    pub not_before: f64,
    /// Validity end (epoch seconds).
    pub not_after: f64,
    /// `RSA_2048`, `EC_prime256v1`, …
    pub key_algorithm: String,
    /// `SHA256WITHRSA`, …
    pub signature_algorithm: String,
}

impl CertificateRecord {
    /// `arn:aws:acm:<region>:<account>:certificate/<id>`.
    pub fn arn(&self) -> String {
        certificate_arn(&self.scope, &self.id)
    }

    /// The record's key.
    pub fn key(&self) -> AcmKey {
        (self.scope.clone(), self.id.clone())
    }

    /// The store key.
    pub fn store_key(&self) -> String {
        format!(
            "acm-cert|{}|{}|{}",
            self.scope.account, self.scope.region, self.id
        )
    }
}

/// The ARN of certificate `id` in `scope`.
pub fn certificate_arn(scope: &Scope, id: &str) -> String {
    format!(
        "arn:aws:acm:{}:{}:certificate/{id}",
        scope.region, scope.account
    )
}

/// Every ACM record of the state.
#[derive(Debug, Clone, Default)]
pub struct Acm {
    /// Certificates by id.
    pub certificates: BTreeMap<AcmKey, CertificateRecord>,
}

impl Acm {
    /// Inserts or replaces a record.
    pub fn put(&mut self, r: CertificateRecord) {
        self.certificates.insert(r.key(), r);
    }

    /// Removes a record.
    pub fn delete(&mut self, r: &CertificateRecord) {
        self.certificates.remove(&r.key());
    }

    /// Every record.
    pub fn records(&self) -> impl Iterator<Item = CertificateRecord> + '_ {
        self.certificates.values().cloned()
    }

    /// A certificate by ARN, in `scope` (an ARN of another scope names none).
    pub fn by_arn(&self, scope: &Scope, arn: &str) -> Option<&CertificateRecord> {
        let prefix = certificate_arn(scope, "");
        let id = arn.strip_prefix(&prefix)?;
        self.certificates.get(&(scope.clone(), id.to_owned()))
    }

    /// One scope's certificates in id order, from just after `after` (or the first).
    pub fn in_scope<'a>(
        &'a self,
        scope: &Scope,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a CertificateRecord> + use<'a> {
        super::discovery::in_scope(&self.certificates, scope, after)
    }
}
