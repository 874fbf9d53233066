//! HTTPS listeners' certificates and security policies: which `SslPolicy` names are
//! accepted and what each means to the data plane, resolving `Certificates` against ACM,
//! and AddListenerCertificates, RemoveListenerCertificates, DescribeListenerCertificates.
//!
//! ## Security policies
//! Every `ELBSecurityPolicy-*` name of [`SSL_POLICIES`] is accepted (the default is
//! [`DEFAULT_SSL_POLICY`]), but the data plane (rustls, `ring` provider) offers only its
//! own modern cipher suites, and only TLS 1.2 and 1.3. So a policy chooses one thing, the
//! lowest TLS version ([`tls13_only`]):
//! - `ELBSecurityPolicy-TLS13-1-3-*`: TLS 1.3 only;
//! - every other policy: TLS 1.2 and 1.3 (policies that also allow TLS 1.0/1.1 get 1.2 as
//!   their floor: rustls does not speak older versions).

use super::{ElbError, ElbWritten, MAX_PAGE_SIZE, listener_by_arn, page, page_size, validation};
use crate::Ctx;
use crate::state::elb::ListenerRecord;
use crate::state::{Change, Record, Scope, State};

/// Most certificates of one HTTPS listener, the default one included (ALB: 25 + 1).
pub const MAX_CERTIFICATES_PER_LISTENER: usize = 26;

/// The policy a listener created without `SslPolicy` gets (ELBv2's default).
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-2016-08";

/// The security policy names accepted (ELBv2's predefined ALB policies).
pub const SSL_POLICIES: [&str; 24] = [
    "ELBSecurityPolicy-2016-08",
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-1-2021-06",
    "ELBSecurityPolicy-TLS13-1-0-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext0-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS-1-0-2015-04",
    "ELBSecurityPolicy-TLS-1-1-2017-01",
    "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-FS-2018-06",
    "ELBSecurityPolicy-FS-1-1-2019-08",
    "ELBSecurityPolicy-FS-1-2-2019-08",
    "ELBSecurityPolicy-FS-1-2-Res-2019-08",
    "ELBSecurityPolicy-FS-1-2-Res-2020-10",
    "ELBSecurityPolicy-2015-05",
];

/// Whether security policy `name` allows TLS 1.3 only (else TLS 1.2 and 1.3).
pub fn tls13_only(name: &str) -> bool {
    name.starts_with("ELBSecurityPolicy-TLS13-1-3-")
}

/// A known security policy name, or `SSLPolicyNotFound`.
pub fn check_ssl_policy(name: &str) -> Result<String, ElbError> {
    if SSL_POLICIES.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(ElbError::SslPolicyNotFound(
            name.chars().take(100).collect(),
        ))
    }
}

/// A certificate as given (`Certificates` member).
#[derive(Debug, Clone, Default)]
pub struct CertificateInput {
    /// `CertificateArn`.
    pub arn: String,
    /// `IsDefault` (only AddListenerCertificates' answers carry it; given, it must not be
    /// true there).
    pub is_default: Option<bool>,
}

/// Checks that `arn` names an ACM certificate of `scope`.
fn check_exists(state: &State, scope: &Scope, arn: &str) -> Result<(), ElbError> {
    if state.discovery.acm.by_arn(scope, arn).is_some() {
        Ok(())
    } else {
        Err(ElbError::CertificateNotFound(
            arn.chars().take(200).collect(),
        ))
    }
}

/// The default certificate of a CreateListener/ModifyListener: exactly one, existing.
pub fn default_certificate(
    state: &State,
    scope: &Scope,
    given: &[CertificateInput],
) -> Result<String, ElbError> {
    match given {
        [one] => {
            check_exists(state, scope, &one.arn)?;
            Ok(one.arn.clone())
        }
        [] => Err(validation(
            "A certificate must be specified for HTTPS listeners",
        )),
        _ => Err(validation(
            "Exactly one default certificate must be specified for an HTTPS listener",
        )),
    }
}

/// A listener certificate as DescribeListenerCertificates shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerCertificate {
    /// `CertificateArn`.
    pub arn: String,
    /// `IsDefault`.
    pub is_default: bool,
}

fn views(l: &ListenerRecord) -> Vec<ListenerCertificate> {
    l.certificates
        .iter()
        .enumerate()
        .map(|(i, arn)| ListenerCertificate {
            arn: arn.clone(),
            is_default: i == 0,
        })
        .collect()
}

fn https_listener<'a>(
    state: &'a State,
    scope: &Scope,
    arn: &str,
) -> Result<&'a ListenerRecord, ElbError> {
    let l = listener_by_arn(state, scope, arn)?;
    if l.protocol != "HTTPS" {
        return Err(ElbError::InvalidConfigurationRequest(
            "Certificates can only be added to or removed from HTTPS listeners".into(),
        ));
    }
    Ok(l)
}

/// AddListenerCertificates: more certificates, served by SNI. Already present ones are
/// left as they are.
pub fn add(
    state: &State,
    ctx: &mut Ctx,
    (arn, given): (String, Vec<CertificateInput>),
) -> ElbWritten<Vec<ListenerCertificate>> {
    let mut l = https_listener(state, &ctx.scope, &arn)?.clone();
    if given.is_empty() {
        return Err(validation("At least one certificate must be specified"));
    }
    if given.len() > MAX_CERTIFICATES_PER_LISTENER {
        return Err(ElbError::TooManyCertificates);
    }
    for c in &given {
        if c.is_default == Some(true) {
            return Err(validation(
                "A default certificate cannot be added: use ModifyListener",
            ));
        }
        check_exists(state, &ctx.scope, &c.arn)?;
        if !l.certificates.contains(&c.arn) {
            l.certificates.push(c.arn.clone());
        }
    }
    if l.certificates.len() > MAX_CERTIFICATES_PER_LISTENER {
        return Err(ElbError::TooManyCertificates);
    }
    let added: Vec<ListenerCertificate> = views(&l)
        .into_iter()
        .filter(|v| given.iter().any(|g| g.arn == v.arn))
        .collect();
    Ok((added, vec![Change::Put(Record::Listener(l))]))
}

/// RemoveListenerCertificates: the default certificate cannot be removed
/// (`OperationNotPermitted`); one the listener does not have is ignored.
pub fn remove(
    state: &State,
    ctx: &mut Ctx,
    (arn, given): (String, Vec<CertificateInput>),
) -> ElbWritten<()> {
    let mut l = https_listener(state, &ctx.scope, &arn)?.clone();
    if given.is_empty() || given.len() > MAX_CERTIFICATES_PER_LISTENER {
        return Err(validation(format!(
            "1 to {MAX_CERTIFICATES_PER_LISTENER} certificates must be specified"
        )));
    }
    if given.iter().any(|c| l.certificates.first() == Some(&c.arn)) {
        return Err(ElbError::OperationNotPermitted(
            "The default certificate of a listener cannot be removed".into(),
        ));
    }
    l.certificates
        .retain(|c| !given.iter().any(|g| &g.arn == c));
    Ok(((), vec![Change::Put(Record::Listener(l))]))
}

/// DescribeListenerCertificates' input.
#[derive(Debug, Clone, Default)]
pub struct DescribeListenerCertificates {
    /// `ListenerArn`.
    pub listener_arn: String,
    /// `Marker`.
    pub marker: Option<String>,
    /// `PageSize`.
    pub page_size: Option<i64>,
}

/// A page of a listener's certificates.
#[derive(Debug, Clone, Default)]
pub struct CertificatePage {
    /// The certificates, the default first.
    pub certificates: Vec<ListenerCertificate>,
    /// `NextMarker`.
    pub next_marker: Option<String>,
}

/// DescribeListenerCertificates: the default certificate first, then the others in the
/// order they were added.
pub fn describe(
    state: &State,
    scope: &Scope,
    req: DescribeListenerCertificates,
) -> Result<CertificatePage, ElbError> {
    let size = page_size(req.page_size)?.min(MAX_PAGE_SIZE);
    let l = listener_by_arn(state, scope, &req.listener_arn)?;
    let items: Vec<(String, ListenerCertificate)> = views(l)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("{i:03}"), v))
        .collect();
    let (certificates, next_marker) = page(items, req.marker.as_deref(), size);
    Ok(CertificatePage {
        certificates,
        next_marker,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls13_1_3_policies_refuse_tls12() {
        assert!(tls13_only("ELBSecurityPolicy-TLS13-1-3-2021-06"));
        assert!(!tls13_only("ELBSecurityPolicy-TLS13-1-2-2021-06"));
        assert!(!tls13_only(DEFAULT_SSL_POLICY));
        assert!(check_ssl_policy("ELBSecurityPolicy-2016-08").is_ok());
        assert_eq!(
            check_ssl_policy("nope").unwrap_err().code(),
            "SSLPolicyNotFound"
        );
    }
}
