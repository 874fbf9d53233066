//! HTTPS listeners end to end: certificates made by the `openssl` CLI (a CA and two server
//! certificates), a rustls client trusting the CA, a loopback backend behind the listener.
//! SNI picks the certificate, ALPN gives HTTP/2, a plaintext client is refused without
//! hurting the next TLS client, and a certificate change reaches new connections.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use common::{Backend, bind, config, group};
use http::{Request, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lb::{Action, Lb, LbConfig, ListenerProtocol, ListenerTls, TlsCertificate, TlsVersion};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and server certificates for `names`, written by `openssl` into `dir`.
struct Pki {
    ca_pem: String,
    /// (certificate PEM, key PEM) per name, in order.
    servers: Vec<(String, String)>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_pki(dir: &Path, names: &[&str]) -> Pki {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=flotilla test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let mut servers = Vec::new();
    for name in names {
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n"),
        )
        .unwrap();
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "30",
                "-extfile",
                &ext,
            ],
        );
        servers.push((
            std::fs::read_to_string(dir.join(&pem)).unwrap(),
            std::fs::read_to_string(dir.join(&key)).unwrap(),
        ));
    }
    Pki {
        ca_pem: std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        servers,
    }
}

fn tls_of(certs: &[&(String, String)]) -> ListenerTls {
    ListenerTls {
        certificates: certs
            .iter()
            .map(|(chain_pem, key_pem)| TlsCertificate {
                chain_pem: chain_pem.clone(),
                key_pem: key_pem.clone(),
            })
            .collect(),
        min_version: TlsVersion::Tls12,
    }
}

/// One HTTPS listener on `127.0.0.1:0` forwarding to `backend`.
fn https_config(backend: &Backend, tls: ListenerTls) -> LbConfig {
    let mut c = config(
        vec![],
        Action::forward("web"),
        vec![("web", group(&[backend]))],
    );
    c.listeners[0].protocol = ListenerProtocol::Https;
    c.listeners[0].tls = Some(tls);
    c
}

fn connector(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn handshake(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    name: &str,
) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// The DER of the certificate the server presented.
fn served_cert(tls: &Tls) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// `GET /` over an HTTP/1.1 connection on `tls`: (version, body, x-forwarded-proto,
/// x-forwarded-port the backend saw).
async fn get_h1(tls: Tls) -> (Version, String, String, String) {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    answer(send.send_request(request()).await.unwrap()).await
}

async fn get_h2(tls: Tls) -> (Version, String, String, String) {
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    answer(send.send_request(request()).await.unwrap()).await
}

fn request() -> Request<Empty<Bytes>> {
    Request::builder()
        .uri("https://a.test/")
        .header("host", "a.test")
        .body(Empty::new())
        .unwrap()
}

async fn answer(resp: http::Response<hyper::body::Incoming>) -> (Version, String, String, String) {
    let version = resp.version();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (proto, port) = (
        header("seen-x-forwarded-proto"),
        header("seen-x-forwarded-port"),
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        version,
        String::from_utf8(body.to_vec()).unwrap(),
        proto,
        port,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_serves_the_backend_picks_certificates_by_sni_and_speaks_h2() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), &["a.test", "b.test"]);
    let (a, b) = (&pki.servers[0], &pki.servers[1]);
    let backend = Backend::start("one").await;
    let lb = Lb::start(https_config(&backend, tls_of(&[a, b]))).unwrap();
    let addr = lb.local_addr(bind()).unwrap();
    let h1 = connector(&pki.ca_pem, &[b"http/1.1"]);

    // HTTP/1.1 over TLS, with the forwarded headers an ALB sets.
    let tls = handshake(addr, &h1, "a.test").await.unwrap();
    assert_eq!(served_cert(&tls), der_of(&a.0));
    let (version, body, proto, port) = get_h1(tls).await;
    assert_eq!((version, body.as_str()), (Version::HTTP_11, "one"));
    assert_eq!(proto, "https");
    assert_eq!(port, addr.port().to_string());

    // SNI picks the second certificate for its name.
    let tls = handshake(addr, &h1, "b.test").await.unwrap();
    assert_eq!(served_cert(&tls), der_of(&b.0));
    assert_eq!(get_h1(tls).await.1, "one");

    // ALPN: an HTTP/2 client speaks HTTP/2.
    let h2 = connector(&pki.ca_pem, &[b"h2", b"http/1.1"]);
    let tls = handshake(addr, &h2, "a.test").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, body, proto, _) = get_h2(tls).await;
    assert_eq!(
        (version, body.as_str(), proto.as_str()),
        (Version::HTTP_2, "one", "https")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_is_refused_and_the_next_tls_client_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), &["a.test"]);
    let backend = Backend::start("one").await;
    let lb = Lb::start(https_config(&backend, tls_of(&[&pki.servers[0]]))).unwrap();
    let addr = lb.local_addr(bind()).unwrap();

    // A TLS connection open across the plaintext attempt keeps working.
    let h1 = connector(&pki.ca_pem, &[b"http/1.1"]);
    let before = handshake(addr, &h1, "a.test").await.unwrap();

    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut got),
    )
    .await
    .expect("the plaintext connection is closed");
    assert!(
        !got.starts_with(b"HTTP/"),
        "a plaintext request got an HTTP answer: {:?}",
        String::from_utf8_lossy(&got)
    );

    assert_eq!(get_h1(before).await.1, "one");
    let after = handshake(addr, &h1, "a.test").await.unwrap();
    assert_eq!(get_h1(after).await.1, "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_change_reaches_new_connections_without_a_rebind() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), &["a.test", "b.test"]);
    let (a, b) = (&pki.servers[0], &pki.servers[1]);
    let backend = Backend::start("one").await;
    let lb = Lb::start(https_config(&backend, tls_of(&[a]))).unwrap();
    let addr = lb.local_addr(bind()).unwrap();
    let h1 = connector(&pki.ca_pem, &[b"http/1.1"]);
    assert!(handshake(addr, &h1, "a.test").await.is_ok());
    assert!(
        handshake(addr, &h1, "b.test").await.is_err(),
        "b.test is not served yet"
    );

    lb.update(https_config(&backend, tls_of(&[b]))).unwrap();
    assert_eq!(
        lb.local_addr(bind()),
        Some(addr),
        "the listener was not rebound"
    );
    let tls = handshake(addr, &h1, "b.test").await.unwrap();
    assert_eq!(served_cert(&tls), der_of(&b.0));
    assert_eq!(get_h1(tls).await.1, "one");
    assert!(
        handshake(addr, &h1, "a.test").await.is_err(),
        "a.test is served no more"
    );
}

#[tokio::test]
async fn bad_certificates_and_mismatched_keys_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), &["a.test", "b.test"]);
    let backend = Backend::start("one").await;
    let mismatched = (pki.servers[0].0.clone(), pki.servers[1].1.clone());
    let err = Lb::start(https_config(&backend, tls_of(&[&mismatched])))
        .err()
        .expect("a key of another certificate is refused");
    assert!(matches!(err, lb::LbError::Tls(_)), "{err}");
    let garbage = ("not a pem".to_string(), pki.servers[0].1.clone());
    assert!(Lb::start(https_config(&backend, tls_of(&[&garbage]))).is_err());
    // An HTTPS listener needs its certificates; TLS 1.3-only is accepted.
    let mut c = https_config(&backend, tls_of(&[&pki.servers[0]]));
    let tls = c.listeners[0].tls.take();
    assert!(c.validate().is_err());
    // … and only an HTTPS listener has them.
    c.listeners[0].protocol = ListenerProtocol::Http;
    c.listeners[0].tls = tls;
    assert!(c.validate().is_err());
    let mut c = https_config(&backend, tls_of(&[&pki.servers[0]]));
    if let Some(t) = c.listeners[0].tls.as_mut() {
        t.min_version = TlsVersion::Tls13;
    }
    assert!(Lb::start(c).is_ok());
}
