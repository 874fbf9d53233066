//! A minimal OCI distribution (registry v2) client: manifest and blob GETs with the
//! `WWW-Authenticate` dance (Basic, or Bearer tokens fetched with the basic credentials).
//! Plain HTTP is used for loopback registries and those configured as insecure; HTTPS
//! (rustls) otherwise.
//!
//! Errors are classified for the agent: transport failures are
//! [`Error::RegistryUnreachable`], 404 on a manifest is [`Error::ImageNotFound`], 401/403
//! after authenticating is [`Error::RegistryAuth`].

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

use crate::error::{Error, Result, error_chain};
use crate::image::{MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST};
use crate::types::{ImageRef, RegistryAuth};

/// Registry HTTP client shared by pulls.
#[derive(Debug, Clone)]
pub(crate) struct RegistryClient {
    http: reqwest::Client,
    insecure: Vec<String>,
}

/// Per-pull state: which image, credentials, and the Authorization header once known.
pub(crate) struct Session {
    image: ImageRef,
    base: String,
    auth: Option<RegistryAuth>,
    authorization: Option<String>,
}

/// A fetched manifest or index.
pub(crate) struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// Splits a `WWW-Authenticate` value into scheme and `key="value"` parameters.
pub(crate) fn parse_www_authenticate(value: &str) -> (String, Vec<(String, String)>) {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => break,
                    _ => {
                        val.push(c);
                        escaped = false;
                    }
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                val.push(*c);
                chars.next();
            }
        }
        params.push((key.trim().to_ascii_lowercase(), val.trim().to_owned()));
    }
    (scheme.to_ascii_lowercase(), params)
}

impl RegistryClient {
    /// A client; `insecure` lists registries (host\[:port\]) pulled over plain HTTP.
    pub(crate) fn new(insecure: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, insecure }
    }

    /// Starts a pull session for `image`.
    pub(crate) fn session(&self, image: &ImageRef, auth: Option<&RegistryAuth>) -> Session {
        let plain = image.is_loopback_registry() || self.insecure.contains(&image.registry);
        let scheme = if plain { "http" } else { "https" };
        Session {
            image: image.clone(),
            base: format!(
                "{scheme}://{}/v2/{}",
                image.registry_host(),
                image.repository
            ),
            auth: auth.cloned(),
            authorization: None,
        }
    }

    fn unreachable(s: &Session, e: &reqwest::Error) -> Error {
        Error::RegistryUnreachable {
            registry: s.image.registry.clone(),
            image: s.image.to_string(),
            detail: error_chain(e),
        }
    }

    fn protocol(s: &Session, detail: String) -> Error {
        Error::RegistryProtocol {
            image: s.image.to_string(),
            detail,
        }
    }

    /// GET with authentication; retries once after answering a 401 challenge.
    async fn get(&self, s: &mut Session, url: &str, accept: &str) -> Result<reqwest::Response> {
        let mut challenged = false;
        loop {
            let mut req = self.http.get(url).header(ACCEPT, accept);
            if let Some(a) = &s.authorization {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = req.send().await.map_err(|e| Self::unreachable(s, &e))?;
            let status = resp.status();
            if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.text().await.unwrap_or_default();
            let (Some(challenge), false) = (challenge, challenged) else {
                return Err(Error::RegistryAuth {
                    image: s.image.to_string(),
                    detail: format!("{status}: {}", body.trim()),
                });
            };
            challenged = true;
            s.authorization = Some(self.answer_challenge(s, &challenge).await?);
        }
    }

    async fn answer_challenge(&self, s: &Session, challenge: &str) -> Result<String> {
        let (scheme, params) = parse_www_authenticate(challenge);
        let basic = s.auth.as_ref().map(|a| {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.username, a.password))
        });
        match scheme.as_str() {
            "basic" => basic
                .map(|b| format!("Basic {b}"))
                .ok_or_else(|| Error::RegistryAuth {
                    image: s.image.to_string(),
                    detail:
                        "registry requires credentials (repositoryCredentials) and none were given"
                            .to_owned(),
                }),
            "bearer" => {
                let get = |k: &str| {
                    params
                        .iter()
                        .find(|(pk, _)| pk == k)
                        .map(|(_, v)| v.clone())
                };
                let realm = get("realm")
                    .ok_or_else(|| Self::protocol(s, "bearer challenge without realm".into()))?;
                let scope = get("scope")
                    .unwrap_or_else(|| format!("repository:{}:pull", s.image.repository));
                let mut q = vec![("scope", scope)];
                if let Some(service) = get("service") {
                    q.push(("service", service));
                }
                let url = reqwest::Url::parse_with_params(&realm, &q)
                    .map_err(|e| Self::protocol(s, format!("bad token realm {realm:?}: {e}")))?;
                let mut req = self.http.get(url);
                if let Some(b) = &basic {
                    req = req.header(AUTHORIZATION, format!("Basic {b}"));
                }
                let resp = req.send().await.map_err(|e| Self::unreachable(s, &e))?;
                let status = resp.status();
                if !status.is_success() {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(Error::RegistryAuth {
                        image: s.image.to_string(),
                        detail: format!("token endpoint answered {status}: {}", body.trim()),
                    });
                }
                let v: serde_json::Value = resp
                    .json()
                    .await
                    .map_err(|e| Self::protocol(s, format!("token response: {e}")))?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| Self::protocol(s, "token response without token".into()))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(Self::protocol(
                s,
                format!("unsupported auth scheme {other:?}"),
            )),
        }
    }

    /// Fetches the manifest or index for `reference` (tag or digest).
    pub(crate) async fn manifest(
        &self,
        s: &mut Session,
        reference: &str,
    ) -> Result<FetchedManifest> {
        let url = format!("{}/manifests/{reference}", s.base);
        let accept = [
            MT_OCI_MANIFEST,
            MT_DOCKER_MANIFEST,
            MT_OCI_INDEX,
            MT_DOCKER_LIST,
        ]
        .join(", ");
        let resp = self.get(s, &url, &accept).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            let body = resp.text().await.unwrap_or_default();
            return Err(Error::ImageNotFound {
                image: s.image.to_string(),
                detail: format!("manifest {reference}: {}", body.trim()),
            });
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(Self::protocol(
                s,
                format!("GET {url} answered {status}: {}", body.trim()),
            ));
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Self::unreachable(s, &e))?
            .to_vec();
        let digest = crate::image::sha256_digest(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(Self::protocol(
                s,
                format!("manifest digest {digest} does not match requested {reference}"),
            ));
        }
        let body_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned));
        let media_type = body_type
            .or(header_type)
            .unwrap_or_else(|| MT_OCI_MANIFEST.to_owned());
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Starts downloading a blob; the caller streams the body.
    pub(crate) async fn blob(&self, s: &mut Session, digest: &str) -> Result<reqwest::Response> {
        let url = format!("{}/blobs/{digest}", s.base);
        let resp = self.get(s, &url, "*/*").await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Self::protocol(s, format!("GET {url} answered {status}")));
        }
        Ok(resp)
    }

    /// Turns a transport error while streaming a blob into [`Error::RegistryUnreachable`].
    pub(crate) fn stream_error(s: &Session, e: &reqwest::Error) -> Error {
        Self::unreachable(s, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let (scheme, p) = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://auth.docker.io/token".into()),
                ("service".into(), "registry.docker.io".into()),
                ("scope".into(), "repository:library/busybox:pull".into()),
            ]
        );
        let (scheme, p) = parse_www_authenticate(r#"Basic realm="flotilla-test""#);
        assert_eq!(scheme, "basic");
        assert_eq!(p, vec![("realm".into(), "flotilla-test".into())]);
        let (_, p) = parse_www_authenticate("Bearer realm=x, scope=a");
        assert_eq!(p[1], ("scope".into(), "a".into()));
    }

    /// A registry that wants Bearer tokens from its own token endpoint, which wants Basic
    /// credentials: the Docker Hub / ECR-style flow. Hand-rolled HTTP/1.1, one request per
    /// connection.
    async fn token_registry() -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        let handle = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = req.lines().next().unwrap_or_default().to_owned();
                let auth = req
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("authorization:")
                            .then(|| l[14..].trim().to_owned())
                    })
                    .unwrap_or_default();
                let good_basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("u:p")
                );
                let (status, headers, body) = if line.starts_with("GET /token?") {
                    if auth == good_basic && line.contains("scope=repository%3Aapp%3Apull") {
                        ("200 OK", String::new(), r#"{"token":"t0k"}"#.to_owned())
                    } else {
                        ("401 Unauthorized", String::new(), "{}".to_owned())
                    }
                } else if line.starts_with("GET /v2/app/manifests/v1") {
                    if auth == "Bearer t0k" {
                        (
                            "200 OK",
                            format!("Content-Type: {MT_OCI_MANIFEST}\r\n"),
                            r#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:c","size":1},"layers":[]}"#.to_owned(),
                        )
                    } else {
                        (
                            "401 Unauthorized",
                            format!(
                                "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\",scope=\"repository:app:pull\"\r\n"
                            ),
                            "{}".to_owned(),
                        )
                    }
                } else {
                    ("404 Not Found", String::new(), "{}".to_owned())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn bearer_token_flow_with_basic_credentials() {
        let (addr, server) = token_registry().await;
        let c = RegistryClient::new(Vec::new());
        let image = ImageRef::parse(&format!("{addr}/app:v1")).unwrap();
        let auth = RegistryAuth {
            username: "u".into(),
            password: "p".into(),
        };
        let mut s = c.session(&image, Some(&auth));
        let m = c.manifest(&mut s, "v1").await.unwrap();
        assert_eq!(m.media_type, MT_OCI_MANIFEST);
        assert_eq!(s.authorization.as_deref(), Some("Bearer t0k"));

        let bad = RegistryAuth {
            username: "u".into(),
            password: "wrong".into(),
        };
        let mut s = c.session(&image, Some(&bad));
        assert!(matches!(
            c.manifest(&mut s, "v1").await,
            Err(Error::RegistryAuth { .. })
        ));
        let mut s = c.session(&image, None);
        assert!(matches!(
            c.manifest(&mut s, "v1").await,
            Err(Error::RegistryAuth { .. })
        ));
        let mut s = c.session(&image, Some(&auth));
        assert!(matches!(
            c.manifest(&mut s, "nope").await,
            Err(Error::ImageNotFound { .. })
        ));
        server.abort();
    }

    #[test]
    fn plain_http_only_for_loopback_and_insecure() {
        let c = RegistryClient::new(vec!["reg.lan:5000".into()]);
        let s = c.session(&ImageRef::parse("127.0.0.1:5000/busybox").unwrap(), None);
        assert_eq!(s.base, "http://127.0.0.1:5000/v2/busybox");
        let s = c.session(&ImageRef::parse("reg.lan:5000/a/b").unwrap(), None);
        assert_eq!(s.base, "http://reg.lan:5000/v2/a/b");
        let s = c.session(&ImageRef::parse("busybox").unwrap(), None);
        assert_eq!(s.base, "https://registry-1.docker.io/v2/library/busybox");
    }
}
