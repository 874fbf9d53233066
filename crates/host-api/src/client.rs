//! A small client for the host API socket, used by `flotilla apiclient` and by tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::error::{Error, Result};

/// Talks HTTP/1.1 to the host API over its Unix socket (one connection per request).
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client for the socket at `socket`.
    #[must_use]
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    /// The socket path.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request; returns status and body whatever the status. Bodies larger than
    /// [`crate::limits::MAX_RESPONSE_BYTES`] are refused.
    ///
    /// # Errors
    /// Connection or protocol failures.
    pub async fn raw(
        &self,
        method: &str,
        uri: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>)> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| Error::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let has_body = body.is_some();
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost");
        let req = if has_body {
            req.header("content-type", "application/json")
        } else {
            req
        };
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Error::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let bytes =
            http_body_util::Limited::new(resp.into_body(), crate::limits::MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| Error::Http(format!("reading the response: {e}")))?
                .to_bytes();
        Ok((status, bytes.to_vec()))
    }

    /// Sends one request and fails with [`Error::Status`] (carrying the server's message) on a
    /// non-2xx answer.
    ///
    /// # Errors
    /// Transport errors or an error status.
    pub async fn call(&self, method: &str, uri: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>> {
        let (status, bytes) = self.raw(method, uri, body).await?;
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err(Error::Status {
                status,
                body: String::from_utf8_lossy(&bytes).trim().to_owned(),
            })
        }
    }

    /// GET returning JSON.
    ///
    /// # Errors
    /// As [`Client::call`], or a non-JSON body.
    pub async fn get_json(&self, uri: &str) -> Result<Value> {
        let b = self.call("GET", uri, None).await?;
        serde_json::from_slice(&b).map_err(|e| Error::Http(format!("bad JSON from {uri}: {e}")))
    }

    /// PATCHes a settings document into a fresh private transaction and commits + applies it.
    /// Returns the changed keys.
    ///
    /// # Errors
    /// Validation (400 naming the key) or apply failures.
    pub async fn set_doc(&self, doc: &Value, tx_prefix: &str) -> Result<Value> {
        let tx = format!("{tx_prefix}-{:08x}", rand::random::<u32>());
        self.call(
            "PATCH",
            &format!("/settings?tx={tx}"),
            Some(doc.to_string().into_bytes()),
        )
        .await?;
        let out = self
            .call("POST", &format!("/tx/commit_and_apply?tx={tx}"), None)
            .await;
        if out.is_err() {
            let _ = self.call("DELETE", &format!("/tx?tx={tx}"), None).await;
        }
        serde_json::from_slice(&out?).map_err(|e| Error::Http(e.to_string()))
    }

    /// Bottlerocket's `wait_request`: remember `most_recent_command.timestamp`, POST the action
    /// (retrying while the server answers 423), then poll `/updates/status` until a command of type `cmd` with a new timestamp is recorded.
    /// Returns the final status; fails with the command's stderr if it failed.
    ///
    /// # Errors
    /// The POST was refused (409/404/423), the command failed, or `timeout` passed.
    pub async fn wait_update(&self, action: &str, cmd: &str, timeout: Duration) -> Result<Value> {
        let before = match self.raw("GET", "/updates/status", None).await? {
            (200, b) => serde_json::from_slice::<Value>(&b)
                .ok()
                .and_then(|v| v.pointer("/most_recent_command/timestamp").cloned()),
            _ => None,
        };
        let deadline = Instant::now() + timeout;
        // 423: the previous command is still finishing (it releases the lock just after
        // recording its status); retry until the deadline.
        loop {
            match self.call("POST", &format!("/actions/{action}"), None).await {
                Err(Error::Status { status: 423, .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        loop {
            if let (200, b) = self.raw("GET", "/updates/status", None).await?
                && let Ok(v) = serde_json::from_slice::<Value>(&b)
            {
                let mrc = &v["most_recent_command"];
                let ts = mrc.get("timestamp").cloned();
                if mrc["cmd_type"] == cmd && ts.is_some() && ts != before {
                    if mrc["cmd_status"] == "Success" {
                        return Ok(v);
                    }
                    return Err(Error::Status {
                        status: 500,
                        body: format!(
                            "update {cmd} failed: {}",
                            mrc["stderr"].as_str().unwrap_or("unknown error")
                        ),
                    });
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Http(format!("timed out waiting for update {cmd}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
