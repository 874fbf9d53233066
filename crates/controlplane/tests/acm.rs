//! ACM's certificate operations and HTTPS listeners as pure functions: certificates made
//! by the `openssl` CLI, imported, described, used by a listener, and refused to delete
//! while in use.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use controlplane::ops::acm::{self, AcmError};
use controlplane::ops::elbv2::certificates::{
    self, CertificateInput, DescribeListenerCertificates,
};
use controlplane::ops::elbv2::listeners::{self, CreateListener, ModifyListener};
use controlplane::state::elb::ListenerRecord;
use controlplane::state::{DiscoveryRecord, Record};
use model::wire_acm::{
    CertificateArnRequest, CertificateStatus, ImportCertificateRequest, ListCertificatesRequest,
};
use testkit::ecs::{T0, World, scope};
use testkit::elb::http_listener;

/// A CA-signed certificate and its key for each name, PEM.
fn make_certificates(dir: &Path, names: &[&str]) -> Vec<(String, String)> {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("the openssl CLI");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
        "-subj",
        "/CN=test CA",
    ]);
    names
        .iter()
        .map(|name| {
            std::fs::write(
                dir.join("ext"),
                format!("subjectAltName=DNS:{name},DNS:www.{name}\n"),
            )
            .unwrap();
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "k.pem",
                "-out",
                "c.csr",
                "-subj",
                &format!("/CN={name}"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                "c.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "c.pem",
                "-days",
                "1",
                "-extfile",
                "ext",
            ]);
            (
                std::fs::read_to_string(dir.join("c.pem")).unwrap(),
                std::fs::read_to_string(dir.join("k.pem")).unwrap(),
            )
        })
        .collect()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn import(cert: &str, key: &str) -> ImportCertificateRequest {
    ImportCertificateRequest {
        certificate: Some(b64(cert)),
        private_key: Some(b64(key)),
        ..Default::default()
    }
}

fn try_import(w: &mut World, req: ImportCertificateRequest) -> Result<String, AcmError> {
    let mut ctx = w.ctx();
    let (resp, changes) = acm::import_certificate(&w.state, &mut ctx, req)?;
    w.apply(&changes);
    Ok(resp.certificate_arn)
}

fn arn_req(arn: &str) -> CertificateArnRequest {
    CertificateArnRequest {
        certificate_arn: Some(arn.to_owned()),
    }
}

fn try_delete(w: &mut World, arn: &str) -> Result<(), AcmError> {
    let mut ctx = w.ctx();
    let (_, changes) = acm::delete_certificate(&w.state, &mut ctx, arn_req(arn))?;
    w.apply(&changes);
    Ok(())
}

fn https(lb_arn: String, tg_arn: &str, certificate: &str) -> CreateListener {
    CreateListener {
        protocol: Some("HTTPS".into()),
        certificates: vec![CertificateInput {
            arn: certificate.to_owned(),
            is_default: None,
        }],
        ..http_listener(lb_arn, 443, tg_arn)
    }
}

#[test]
fn import_checks_the_certificate_and_key_as_acm_does() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certificates(dir.path(), &["a.test", "b.test"]);
    let (a_cert, a_key) = &certs[0];
    let b_key = &certs[1].1;
    let mut w = World::new();

    let garbage = try_import(&mut w, import("not a certificate", a_key)).unwrap_err();
    assert_eq!(garbage.code(), "ValidationException", "{garbage}");
    let bad_key = try_import(&mut w, import(a_cert, "-----BEGIN NOTHING-----")).unwrap_err();
    assert_eq!(bad_key.code(), "ValidationException", "{bad_key}");
    let mismatch = try_import(&mut w, import(a_cert, b_key)).unwrap_err();
    assert_eq!(mismatch.code(), "ValidationException");
    assert!(
        mismatch.to_string().contains("does not match"),
        "{mismatch}"
    );
    let too_big = ImportCertificateRequest {
        certificate: Some(b64(&"x".repeat(acm::MAX_CERTIFICATE_BYTES + 1))),
        ..import(a_cert, a_key)
    };
    assert_eq!(
        try_import(&mut w, too_big).unwrap_err().code(),
        "ValidationException"
    );
    assert!(w.state.discovery.acm.certificates.is_empty());

    let arn = try_import(&mut w, import(a_cert, a_key)).unwrap();
    assert!(
        arn.starts_with(&format!(
            "arn:aws:acm:{}:{}:certificate/",
            scope().region,
            scope().account
        )),
        "{arn}"
    );
    let d = acm::describe_certificate(&w.state, &scope(), T0, arn_req(&arn))
        .unwrap()
        .certificate;
    assert_eq!(d.domain_name.as_deref(), Some("a.test"));
    assert_eq!(d.subject_alternative_names, ["a.test", "www.a.test"]);
    assert_eq!(
        (d.cert_type.as_str(), d.status),
        ("IMPORTED", CertificateStatus::Issued)
    );
    assert_eq!(d.key_algorithm, "RSA_2048");
    assert!(d.issuer.contains("test CA"), "{}", d.issuer);
    assert!(d.not_after > d.not_before && !d.serial.is_empty());
    assert!(d.in_use_by.is_empty());

    // Expired: imported all the same, shown EXPIRED once past NotAfter.
    let later = d.not_after + 1.0;
    let expired = acm::describe_certificate(&w.state, &scope(), later, arn_req(&arn)).unwrap();
    assert_eq!(expired.certificate.status, CertificateStatus::Expired);
    let listed = acm::list_certificates(
        &w.state,
        &scope(),
        later,
        ListCertificatesRequest {
            certificate_statuses: Some(vec![CertificateStatus::Issued]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(listed.certificate_summary_list.is_empty());

    // GetCertificate gives the certificate back, never the key.
    let got = acm::get_certificate(&w.state, &scope(), arn_req(&arn)).unwrap();
    assert_eq!(got.certificate, *a_cert);
    let unknown = format!("{}0", arn);
    assert_eq!(
        acm::get_certificate(&w.state, &scope(), arn_req(&unknown))
            .unwrap_err()
            .code(),
        "ResourceNotFoundException"
    );
    assert_eq!(
        acm::get_certificate(&w.state, &scope(), arn_req("nope"))
            .unwrap_err()
            .code(),
        "InvalidArnException"
    );
}

#[test]
fn list_certificates_pages() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certificates(dir.path(), &["a.test"]);
    let mut w = World::new();
    for _ in 0..3 {
        try_import(&mut w, import(&certs[0].0, &certs[0].1)).unwrap();
    }
    let page = |token: Option<String>| {
        acm::list_certificates(
            &w.state,
            &scope(),
            T0,
            ListCertificatesRequest {
                max_items: Some(2),
                next_token: token,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let first = page(None);
    assert_eq!(first.certificate_summary_list.len(), 2);
    let second = page(first.next_token.clone());
    assert_eq!(second.certificate_summary_list.len(), 1);
    assert!(second.next_token.is_none());
}

#[test]
fn https_listeners_use_certificates_which_cannot_be_deleted_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certificates(dir.path(), &["a.test", "b.test"]);
    let mut w = World::new();
    let a = try_import(&mut w, import(&certs[0].0, &certs[0].1)).unwrap();
    let b = try_import(&mut w, import(&certs[1].0, &certs[1].1)).unwrap();
    let lb = w.create_load_balancer("web");
    let tg = w.create_target_group("www", "ip");

    // An unknown certificate, none, two defaults, an unknown policy: refused.
    let unknown = format!("{}x", a);
    let e = w
        .try_elb(listeners::create, https(lb.arn(), &tg.arn(), &unknown))
        .unwrap_err();
    assert_eq!(e.code(), "CertificateNotFound");
    let none = CreateListener {
        certificates: vec![],
        ..https(lb.arn(), &tg.arn(), &a)
    };
    assert_eq!(
        w.try_elb(listeners::create, none).unwrap_err().code(),
        "ValidationError"
    );
    let mut two = https(lb.arn(), &tg.arn(), &a);
    two.certificates.push(CertificateInput {
        arn: b.clone(),
        is_default: None,
    });
    assert_eq!(
        w.try_elb(listeners::create, two).unwrap_err().code(),
        "ValidationError"
    );
    let bad_policy = CreateListener {
        ssl_policy: Some("ELBSecurityPolicy-Nope".into()),
        ..https(lb.arn(), &tg.arn(), &a)
    };
    assert_eq!(
        w.try_elb(listeners::create, bad_policy).unwrap_err().code(),
        "SSLPolicyNotFound"
    );
    // Certificates on an HTTP listener: refused.
    let http_with_cert = CreateListener {
        protocol: Some("HTTP".into()),
        ..https(lb.arn(), &tg.arn(), &a)
    };
    assert!(w.try_elb(listeners::create, http_with_cert).is_err());

    let l: ListenerRecord = w.elb(listeners::create, https(lb.arn(), &tg.arn(), &a));
    assert_eq!(l.protocol, "HTTPS");
    assert_eq!(l.certificates, std::slice::from_ref(&a));
    assert_eq!(
        l.ssl_policy.as_deref(),
        Some(certificates::DEFAULT_SSL_POLICY)
    );
    let d = acm::describe_certificate(&w.state, &scope(), T0, arn_req(&a)).unwrap();
    assert_eq!(d.certificate.in_use_by, [l.arn()]);
    let e = try_delete(&mut w, &a).unwrap_err();
    assert_eq!(e.code(), "ResourceInUseException");

    // SNI certificates: added, described (default first), the default not removable.
    let input = |arn: &str| CertificateInput {
        arn: arn.to_owned(),
        is_default: None,
    };
    w.elb(certificates::add, (l.arn(), vec![input(&b)]));
    let page = certificates::describe(
        &w.state,
        &scope(),
        DescribeListenerCertificates {
            listener_arn: l.arn(),
            ..Default::default()
        },
    )
    .unwrap();
    let listed: Vec<(String, bool)> = page
        .certificates
        .iter()
        .map(|c| (c.arn.clone(), c.is_default))
        .collect();
    assert_eq!(listed, [(a.clone(), true), (b.clone(), false)]);
    assert_eq!(
        w.try_elb(certificates::remove, (l.arn(), vec![input(&a)]))
            .unwrap_err()
            .code(),
        "OperationNotPermitted"
    );
    assert_eq!(
        try_delete(&mut w, &b).unwrap_err().code(),
        "ResourceInUseException"
    );
    w.elb(certificates::remove, (l.arn(), vec![input(&b)]));
    try_delete(&mut w, &b).unwrap();

    // A TLS 1.3-only policy is kept; going back to HTTP drops the certificate.
    let modified = w.elb(
        listeners::modify,
        ModifyListener {
            arn: l.arn(),
            ssl_policy: Some("ELBSecurityPolicy-TLS13-1-3-2021-06".into()),
            ..Default::default()
        },
    );
    assert_eq!(modified.certificates, std::slice::from_ref(&a));
    assert!(certificates::tls13_only(
        modified.ssl_policy.as_deref().unwrap()
    ));
    let http = w.elb(
        listeners::modify,
        ModifyListener {
            arn: l.arn(),
            protocol: Some("HTTP".into()),
            ..Default::default()
        },
    );
    assert!(http.certificates.is_empty() && http.ssl_policy.is_none());
    try_delete(&mut w, &a).unwrap();
    assert!(w.state.discovery.acm.certificates.is_empty());
}

#[test]
fn stored_records_load_and_old_listeners_load_without_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certificates(dir.path(), &["a.test"]);
    let mut w = World::new();
    let arn = try_import(&mut w, import(&certs[0].0, &certs[0].1)).unwrap();
    let rec = w
        .state
        .discovery
        .acm
        .by_arn(&scope(), &arn)
        .unwrap()
        .clone();
    let stored =
        serde_json::to_string(&Record::Discovery(DiscoveryRecord::Acm(rec.clone()))).unwrap();
    let loaded: Record = serde_json::from_str(&stored).unwrap();
    assert_eq!(loaded, Record::Discovery(DiscoveryRecord::Acm(rec)));

    let lb = w.create_load_balancer("web");
    let tg = w.create_target_group("www", "ip");
    let l = w.elb(listeners::create, http_listener(lb.arn(), 80, &tg.arn()));
    let mut json = serde_json::to_value(&l).unwrap();
    let fields = json.as_object_mut().unwrap();
    fields.remove("certificates");
    fields.remove("ssl_policy");
    let old: ListenerRecord = serde_json::from_value(json).unwrap();
    assert_eq!(old, l);
}
