//! TLS of HTTPS listeners: turning a [`ListenerTls`] (PEM certificates and keys) into a
//! rustls [`ServerConfig`], choosing a certificate by the client's SNI name, and the
//! handshake's time bound.
//!
//! - Crypto is rustls's `ring` provider, named explicitly (no process-wide default, no
//!   aws-lc).
//! - ALPN offers `h2` then `http/1.1`, so HTTP/2 clients speak HTTP/2 over TLS; what follows
//!   the handshake is the HTTP listener's path (`proxy::serve`).
//! - Certificate choice ([`SniResolver`]): the first certificate whose names (its DNS
//!   subject alternative names, or its subject CN when it has none) cover the SNI name,
//!   a `*.` wildcard covering exactly one label; else the default (the first).
//! - A handshake has [`HANDSHAKE_TIMEOUT`] to finish; one that fails or times out closes
//!   its own connection only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ListenerTls, TlsCertificate, TlsVersion};

/// How long a client has to complete its TLS handshake before its connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most names one certificate is matched by (DNS SANs beyond this are ignored; ACM allows
/// 100 names per certificate).
const MAX_NAMES_PER_CERTIFICATE: usize = 100;

/// Most certificates one PEM chain holds (the certificate and its intermediates).
const MAX_CERTIFICATES_PER_CHAIN: usize = 20;

/// An HTTPS listener's TLS settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tls of listener {bind}: certificate {index}: {message}")]
pub struct TlsError {
    /// The listener.
    pub bind: SocketAddr,
    /// Which certificate of the listener (0: the default).
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

/// The `ring` crypto provider, which every HTTPS listener uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM chain (certificate first) and key, and checks that the key is the
/// certificate's: the [`CertifiedKey`] rustls serves.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let mut chain = Vec::new();
    for c in CertificateDer::pem_slice_iter(chain_pem) {
        if chain.len() == MAX_CERTIFICATES_PER_CHAIN {
            return Err(format!(
                "more than {MAX_CERTIFICATES_PER_CHAIN} certificates in the chain"
            ));
        }
        chain.push(c.map_err(|e| format!("certificate PEM: {e}"))?);
    }
    if chain.is_empty() {
        return Err("no PEM certificate".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key PEM: {e}"))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not match the certificate's public key".to_string()
        }
        other => format!("private key: {other}"),
    })
}

/// The DNS names a certificate serves: its subject alternative names, else its subject CN.
fn names_of(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .take(MAX_NAMES_PER_CERTIFICATE)
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty()
        && let Some(cn) = parsed.subject().iter_common_name().next()
        && let Ok(cn) = cn.as_str()
    {
        names.push(cn.to_ascii_lowercase());
    }
    names
}

/// Whether certificate name `pattern` (`example.com`, `*.example.com`) covers `host`
/// (lowercase). A wildcard covers exactly one leftmost label.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest.eq_ignore_ascii_case(suffix)),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Picks a listener's certificate by SNI name (see the module documentation).
#[derive(Debug)]
struct SniResolver {
    /// Each certificate with its names; the first is the default.
    certificates: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let chosen = sni.and_then(|host| {
            let host = host.to_ascii_lowercase();
            self.certificates
                .iter()
                .find(|(names, _)| names.iter().any(|n| name_matches(n, &host)))
        });
        chosen
            .or_else(|| self.certificates.first())
            .map(|(_, key)| key.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// Builds the rustls configuration of the HTTPS listener bound to `bind`.
pub fn server_config(bind: SocketAddr, tls: &ListenerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let fail = |index, message: String| TlsError {
        bind,
        index,
        message,
    };
    let mut certificates = Vec::with_capacity(tls.certificates.len());
    for (index, TlsCertificate { chain_pem, key_pem }) in tls.certificates.iter().enumerate() {
        let key =
            certified_key(chain_pem.as_bytes(), key_pem.as_bytes()).map_err(|m| fail(index, m))?;
        let names = key.end_entity_cert().map(names_of).unwrap_or_default();
        certificates.push((names, Arc::new(key)));
    }
    let versions: &[&'static rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| fail(0, e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certificates }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("a.example.com", "a.example.com"));
        assert!(name_matches("A.example.com", "a.example.com"));
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("b.example.com", "a.example.com"));
    }
}
