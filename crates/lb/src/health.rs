//! Target health: the per-target state machine ([`HealthCell`], with thresholds), the active
//! HTTP checker task that feeds it ([`spawn_checker`]), and the public report
//! ([`TargetHealth`], what `DescribeTargetHealth` comes to show).
//!
//! A new target starts [`HealthState::Initial`] and takes traffic only once it has passed
//! `healthy_threshold` consecutive checks. ALB does the same for a target registered into a
//! group that already has healthy ones; we always do it, because sending traffic to a target
//! nobody has checked yet turns a slow-starting task into client-visible 502s. The cost: a
//! group whose targets are all new answers 503 for about `healthy_threshold × interval`.
//! The first check runs as soon as a target is registered. Passive failures (a connection
//! error while proxying) count as failed checks.
//!
//! A check speaks the group's [`ProtocolVersion`]: HTTP/1.1, or HTTP/2 with prior knowledge
//! (h2c) for `Http2` and `Grpc` groups. A `Grpc` group's check is a gRPC call, as ELBv2's:
//! `POST path` with `content-type: application/grpc`, `te: trailers` and one empty
//! message (a 5-byte frame of length 0, which an empty protobuf request such as
//! `grpc.health.v1.HealthCheckRequest` decodes from); it passes when the `grpc-status` of
//! the answer (in its trailers, or its headers for a trailers-only answer) is one the
//! matcher names (gRPC codes, ELBv2's `Matcher.GrpcCode`). ELBv2's default, path
//! `/AWS.ALB/healthcheck` and code `12` (UNIMPLEMENTED), passes any running gRPC server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{
    HealthCheckConfig, HealthCheckProtocol, ProtocolVersion, parse_grpc_matcher, parse_matcher,
};

/// A target's state as reported by [`crate::Lb::target_health`] (ELBv2's `TargetHealth.State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Registered, not yet passed `healthy_threshold` checks: takes no traffic.
    Initial,
    /// Takes traffic.
    Healthy,
    /// Failed `unhealthy_threshold` consecutive checks: takes no traffic.
    Unhealthy,
    /// Deregistered, draining: no new requests, those in flight complete.
    Draining,
    /// Not in use: its group is referenced by no listener, or its draining has ended.
    Unused,
}

/// One target's health, as ELBv2's `DescribeTargetHealth` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// The target.
    pub target: SocketAddr,
    /// Its target group.
    pub group: String,
    /// Its state.
    pub state: HealthState,
    /// ELBv2's reason code (`Target.ResponseCodeMismatch`, …), `None` when healthy.
    pub reason: Option<String>,
}

/// The checked part of a target's health: Initial, Healthy or Unhealthy.
#[derive(Debug)]
pub(crate) struct HealthCell {
    inner: Mutex<CellInner>,
    /// `inner.healthy_since` as nanoseconds after [`epoch`] plus one, 0 for `None`: what
    /// every proxied request reads, without taking the lock.
    healthy_at: AtomicU64,
}

/// A fixed instant of this process, the origin of [`HealthCell::healthy_at`].
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[derive(Debug, Clone)]
struct CellInner {
    state: HealthState,
    passes: u32,
    failures: u32,
    reason: Option<String>,
    healthy_since: Option<Instant>,
}

impl HealthCell {
    pub(crate) fn new() -> HealthCell {
        // Fixed before any `healthy_since` exists, so none predates it.
        epoch();
        HealthCell {
            inner: Mutex::new(CellInner {
                state: HealthState::Initial,
                passes: 0,
                failures: 0,
                reason: Some("Elb.InitialHealthChecking".into()),
                healthy_since: None,
            }),
            healthy_at: AtomicU64::new(0),
        }
    }

    /// Mirrors `c.healthy_since` into `healthy_at` (called with the lock held).
    fn publish(&self, c: &CellInner) {
        let at = c.healthy_since.map_or(0, |t| {
            u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX - 1)
                + 1
        });
        self.healthy_at.store(at, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CellInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a check result (`Err(reason)` for a failure) against the thresholds.
    pub(crate) fn record(&self, result: Result<(), String>, healthy: u32, unhealthy: u32) {
        let mut c = self.lock();
        match result {
            Ok(()) => {
                c.failures = 0;
                c.passes = c.passes.saturating_add(1);
                if c.state != HealthState::Healthy && c.passes >= healthy {
                    c.state = HealthState::Healthy;
                    c.reason = None;
                    c.healthy_since = Some(Instant::now());
                }
            }
            Err(reason) => {
                c.passes = 0;
                c.failures = c.failures.saturating_add(1);
                if c.state != HealthState::Unhealthy && c.failures >= unhealthy {
                    c.state = HealthState::Unhealthy;
                    c.healthy_since = None;
                }
                if c.state != HealthState::Healthy {
                    c.reason = Some(reason);
                }
            }
        }
        self.publish(&c);
    }

    /// Health checks are off: healthy at once.
    pub(crate) fn set_unchecked(&self) {
        let mut c = self.lock();
        if c.state != HealthState::Healthy {
            c.state = HealthState::Healthy;
            c.healthy_since = Some(Instant::now());
        }
        c.reason = None;
        self.publish(&c);
    }

    /// When it became healthy, `None` if it is not.
    pub(crate) fn healthy_since(&self) -> Option<Instant> {
        match self.healthy_at.load(Ordering::Acquire) {
            0 => None,
            at => Some(epoch() + Duration::from_nanos(at - 1)),
        }
    }

    pub(crate) fn report(&self) -> (HealthState, Option<String>) {
        let c = self.lock();
        (c.state, c.reason.clone())
    }
}

/// One HTTP client of the checks (pooled connections).
type CheckClient = Client<HttpConnector, Full<Bytes>>;

/// The clients health checks go through: HTTP/1.1, and HTTP/2 with prior knowledge.
#[derive(Clone)]
pub(crate) struct CheckClients {
    http1: CheckClient,
    http2: CheckClient,
}

impl CheckClients {
    /// Clients on the current runtime.
    pub(crate) fn new() -> CheckClients {
        CheckClients {
            http1: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            http2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(HttpConnector::new()),
        }
    }
}

/// What a target's checker runs: its group's check, over its group's protocol version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckSettings {
    /// The check.
    pub(crate) check: HealthCheckConfig,
    /// What the targets speak.
    pub(crate) protocol_version: ProtocolVersion,
}

/// The gRPC message a gRPC check sends: not compressed, 0 bytes long.
const EMPTY_GRPC_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];

/// Runs a check against `addr` every `interval_ms` (the first at once), feeding `cell`,
/// re-reading its settings from `settings` whenever they change; ends when `settings`'
/// sender is dropped (or the task is aborted).
pub(crate) fn spawn_checker(
    addr: SocketAddr,
    cell: Arc<HealthCell>,
    mut settings: watch::Receiver<CheckSettings>,
    clients: CheckClients,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let s = settings.borrow_and_update().clone();
            let c = &s.check;
            if !c.enabled {
                cell.set_unchecked();
                if settings.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let result = check_once(&clients, addr, &s).await;
            cell.record(result, c.healthy_threshold, c.unhealthy_threshold);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(c.interval_ms)) => {}
                changed = settings.changed() => if changed.is_err() { return },
            }
        }
    })
}

/// One check: `Ok` if the status (or gRPC status) matches (or, for TCP, the connection
/// opens), else ELBv2's reason code.
async fn check_once(
    clients: &CheckClients,
    addr: SocketAddr,
    s: &CheckSettings,
) -> Result<(), String> {
    let c = &s.check;
    let timeout = Duration::from_millis(c.timeout_ms);
    if c.protocol == HealthCheckProtocol::Tcp {
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("Target.FailedHealthChecks".to_string()),
            Err(_) => Err("Target.Timeout".to_string()),
        };
    }
    let attempt = async {
        match s.protocol_version {
            ProtocolVersion::Http1 => http_check(&clients.http1, addr, c, true).await,
            ProtocolVersion::Http2 => http_check(&clients.http2, addr, c, false).await,
            ProtocolVersion::Grpc => grpc_check(&clients.http2, addr, c).await,
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err("Target.Timeout".to_string()))
}

/// `GET path`, passing when the status is one the matcher names. Over HTTP/1.1 it has a
/// `Host` header; over HTTP/2 the URI's authority is its `:authority`.
async fn http_check(
    client: &CheckClient,
    addr: SocketAddr,
    c: &HealthCheckConfig,
    with_host: bool,
) -> Result<(), String> {
    let ranges = parse_matcher(&c.matcher).unwrap_or_else(|_| vec![(200, 200)]);
    let mut req = Request::get(format!("http://{addr}{}", c.path));
    if with_host {
        req = req.header(header::HOST, addr.to_string());
    }
    let req = req
        .header(header::USER_AGENT, "ELB-HealthChecker/2.0")
        .body(Full::new(Bytes::new()))
        .map_err(|_| "Target.InvalidPath".to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|_| "Target.FailedHealthChecks".to_string())?;
    let status = resp.status().as_u16();
    // Read the body so the connection goes back to the pool.
    let _ = resp.into_body().collect().await;
    if ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
        Ok(())
    } else {
        Err("Target.ResponseCodeMismatch".to_string())
    }
}

/// A gRPC call of `path` with an empty message, passing when its `grpc-status` is one
/// the matcher names.
async fn grpc_check(
    client: &CheckClient,
    addr: SocketAddr,
    c: &HealthCheckConfig,
) -> Result<(), String> {
    let codes = parse_grpc_matcher(&c.matcher).unwrap_or_else(|_| vec![(12, 12)]);
    let req = Request::post(format!("http://{addr}{}", c.path))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .header(header::USER_AGENT, "ELB-HealthChecker/2.0")
        .body(Full::new(Bytes::from_static(EMPTY_GRPC_MESSAGE)))
        .map_err(|_| "Target.InvalidPath".to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|_| "Target.FailedHealthChecks".to_string())?;
    let in_headers = grpc_status(resp.headers());
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|_| "Target.FailedHealthChecks".to_string())?;
    let code = in_headers.or_else(|| body.trailers().and_then(grpc_status));
    match code {
        Some(code) if codes.iter().any(|&(lo, hi)| (lo..=hi).contains(&code)) => Ok(()),
        _ => Err("Target.ResponseCodeMismatch".to_string()),
    }
}

/// The `grpc-status` in `headers`, if there is a valid one.
fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers
        .get("grpc-status")
        .map(HeaderValue::to_str)
        .and_then(Result::ok)
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_status_is_read_when_valid() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", HeaderValue::from_static("12"));
        assert_eq!(grpc_status(&h), Some(12));
        h.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(grpc_status(&h), None);
    }

    #[test]
    fn thresholds() {
        let cell = HealthCell::new();
        assert_eq!(cell.report().0, HealthState::Initial);
        cell.record(Ok(()), 2, 3);
        assert_eq!(cell.report().0, HealthState::Initial);
        assert!(cell.healthy_since().is_none());
        cell.record(Ok(()), 2, 3);
        assert_eq!(cell.report(), (HealthState::Healthy, None));
        assert!(cell.healthy_since().is_some());
        cell.record(Err("Target.Timeout".into()), 2, 3);
        cell.record(Err("Target.Timeout".into()), 2, 3);
        assert_eq!(cell.report().0, HealthState::Healthy);
        cell.record(Err("Target.ResponseCodeMismatch".into()), 2, 3);
        assert_eq!(
            cell.report(),
            (
                HealthState::Unhealthy,
                Some("Target.ResponseCodeMismatch".into())
            )
        );
        cell.record(Ok(()), 2, 3);
        assert_eq!(cell.report().0, HealthState::Unhealthy);
        cell.record(Ok(()), 2, 3);
        assert_eq!(cell.report().0, HealthState::Healthy);
    }
}
