//! `flotilla server --lb-listen IP`: runs the ELBv2 load balancers' data plane (crate
//! `lb`) inside the server, fed from the control plane, with target health flowing back.
//!
//! One [`lb::Lb`] per application load balancer, its listeners bound on the
//! `--lb-listen` address at the listener's port. [`to_plans`] is the pure conversion of
//! the control plane's ELBv2 records into `lb`'s config; [`serve`] starts the task that
//! keeps the running load balancers equal to it: after every committed batch that
//! touches an ELBv2 record or a container instance (everything again when the change
//! feed lags), and every [`REFRESH_EVERY`] (draining deadlines pass, listeners that could
//! not bind are tried again). About once a second the same task reads every load
//! balancer's [`lb::Lb::target_health`] and writes what differs from the stored health
//! through [`controlplane::ops::elbv2::health::report_health`], so DescribeTargetHealth
//! shows `healthy` / `unhealthy` (with ELBv2's reason codes). Every
//! [`metrics::PUBLISH_EVERY`] (`--lb-metrics-interval`) it publishes the application load
//! balancers' CloudWatch metrics (`AWS/ApplicationELB`: request counts, status codes,
//! target response times, host counts) through the control plane's CloudWatch store
//! ([`metrics`]), so alarms — and the ECS deployments that name them — can watch them.
//!
//! The conversion's rules, where the two models differ:
//! - `application` load balancers' HTTP and HTTPS listeners are served as `lb`'s HTTP and
//!   HTTPS listeners (an HTTPS listener's certificates and keys come from ACM's records, the
//!   default first; its security policy picks the lowest TLS version: see
//!   `controlplane::ops::elbv2::certificates`), `network` load balancers' TCP listeners as
//!   TCP listeners (each connection spliced to one target; no rules); other protocols
//!   (TLS, UDP) are left out;
//! - an `ip` target is its address; an `instance` target is the private IP of the
//!   container instance (same account and region, not INACTIVE) whose EC2 instance id is
//!   the target's id: the `flotilla.private-ip` attribute its agent registered. A target
//!   that does not resolve is left out (it stays `initial`), and of two targets of a
//!   group that resolve to one address the first is kept;
//! - a draining target is `lb`'s `Draining` until its deadline; a drained one is left out;
//! - health checks: seconds become milliseconds; checks always go to the target's own
//!   port (`lb` has no separate health check port); a `TCP` check is a TCP connect;
//! - a target group's `ProtocolVersion` is `lb`'s: `HTTP2` and `GRPC` groups are reached
//!   over HTTP/2 cleartext (h2c, prior knowledge), and a `GRPC` group's check is a gRPC
//!   call whose matcher holds gRPC codes (`Matcher.GrpcCode`, `12` when none is stored);
//! - stickiness is served for `lb_cookie` (`source_ip` is not: no stickiness); a forward
//!   action's own group stickiness is not served;
//! - a forward whose weights are all 0 answers 503; a rule whose http-header name is not
//!   an HTTP token (no request can match it) is left out.
//!
//! A listener port that cannot be bound (in use, privileged) is logged once and tried
//! again at every refresh; the load balancer's other listeners serve meanwhile. A config
//! `lb` refuses (beyond its limits) is logged, and the previous one keeps serving.
//! Each request is logged by `lb` at `info` under the tracing target `lb::access`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use controlplane::ControlPlane;
use controlplane::ops::elbv2::health::{HealthReport, MAX_HEALTH_REPORTS, report_health};
use controlplane::state::elb::ObservedHealth;
use controlplane::state::{Change, DiscoveryRecord, Record, Scope, State};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

pub mod metrics;
mod plan;
#[cfg(test)]
mod tests;

pub use plan::{LbKey, LbListen, LbPlan, parse_lb_listen, to_plans, unhealthy_reason};

/// How often the running load balancers are compared with the records even without a
/// change (draining deadlines, listeners that could not bind).
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// How often target health is read and its changes reported.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// A target's health as the data plane sees it: (scope, group, id, port) → health.
type Observed = BTreeMap<(Scope, String, String, u16), ObservedHealth>;

/// The health `lb` reports for the running load balancers' targets: healthy or
/// unhealthy (initial, draining and unused ones are not reported). A group served by
/// several load balancers is healthy where any of them sees it healthy.
fn observe<'a>(running: impl Iterator<Item = (&'a lb::Lb, &'a LbPlan)>) -> Observed {
    let mut out = Observed::new();
    for (lb, plan) in running {
        for h in lb.target_health() {
            let Some((id, port)) = plan.targets.get(&(h.group.clone(), h.target)) else {
                continue;
            };
            let health = match h.state {
                lb::HealthState::Healthy => ObservedHealth {
                    healthy: true,
                    reason: None,
                    description: None,
                    since_ms: 0,
                },
                lb::HealthState::Unhealthy => {
                    let (reason, description) = unhealthy_reason(h.reason.as_deref());
                    ObservedHealth {
                        healthy: false,
                        reason: Some(reason.into()),
                        description: Some(description.into()),
                        since_ms: 0,
                    }
                }
                _ => continue,
            };
            let key = (plan.key.0.clone(), h.group.clone(), id.clone(), *port);
            match out.get(&key) {
                Some(seen) if seen.healthy || !health.healthy => {}
                _ => {
                    out.insert(key, health);
                }
            }
        }
    }
    out
}

/// The observations that differ from the stored health of an active target.
fn changed(state: &State, observed: Observed) -> Vec<HealthReport> {
    observed
        .into_iter()
        .filter(|((scope, group, id, port), h)| {
            let Some(tg) = state.elb.target_groups.get(&(scope.clone(), group.clone())) else {
                return false;
            };
            tg.targets
                .iter()
                .find(|t| t.is(id, *port) && t.is_active())
                .is_some_and(|t| {
                    t.health
                        .as_ref()
                        .is_none_or(|s| s.healthy != h.healthy || s.reason != h.reason)
                })
        })
        .map(
            |((scope, target_group, target_id, port), health)| HealthReport {
                scope,
                target_group,
                target_id,
                port,
                health,
            },
        )
        .collect()
}

/// Whether `changes` may change a load balancer's plan: its ELBv2 records, the instances
/// its `instance` targets resolve through, and the ACM certificates its HTTPS listeners
/// serve (a re-import reaches the listeners at once, not at the next refresh).
fn touches_load_balancing(changes: &[Change]) -> bool {
    changes.iter().any(|c| match c {
        Change::Put(r) | Change::Delete(r) => matches!(
            r,
            Record::LoadBalancer(_)
                | Record::TargetGroup(_)
                | Record::Listener(_)
                | Record::ListenerRule(_)
                | Record::Instance(_)
                | Record::Discovery(DiscoveryRecord::Acm(_))
        ),
    })
}

/// A running load balancer.
struct Running {
    lb: lb::Lb,
    /// The plan last applied (or refused).
    plan: LbPlan,
    /// Listeners left out because they could not bind.
    unbound: BTreeSet<SocketAddr>,
}

/// Applies `plan` to `existing` (or starts a load balancer for it), leaving out the
/// listeners that cannot bind; logs a listener's bind failure once (those in
/// `unbound_before` were logged already) and a refused config.
fn apply(
    existing: Option<&lb::Lb>,
    plan: &LbPlan,
    unbound_before: &BTreeSet<SocketAddr>,
) -> (Option<lb::Lb>, BTreeSet<SocketAddr>) {
    let name = &plan.key.1;
    let mut config = plan.config.clone();
    let mut unbound = BTreeSet::new();
    loop {
        let result = match existing {
            Some(lb) => lb.update(config.clone()).map(|()| None),
            None => lb::Lb::start(config.clone()).map(Some),
        };
        match result {
            Ok(started) => {
                for addr in unbound_before.difference(&unbound) {
                    if config.listeners.iter().any(|l| l.bind == *addr) {
                        tracing::info!(load_balancer = %name, %addr, "the listener is listening now");
                    }
                }
                return (started, unbound);
            }
            Err(lb::LbError::Bind { addr, source }) => {
                if !unbound_before.contains(&addr) {
                    tracing::warn!(load_balancer = %name, %addr, error = %source,
                        "cannot listen; the listener is tried again every {REFRESH_EVERY:?}");
                }
                let before = config.listeners.len();
                config.listeners.retain(|l| l.bind != addr);
                unbound.insert(addr);
                if config.listeners.len() == before {
                    return (None, unbound);
                }
            }
            Err(lb::LbError::Config(e)) => {
                tracing::warn!(load_balancer = %name, error = %e,
                    "the data plane refused the load balancer's config; the previous one is served");
                return (None, unbound);
            }
            Err(e) => {
                tracing::warn!(load_balancer = %name, error = %e,
                    "the data plane could not start; tried again every {REFRESH_EVERY:?}");
                return (None, unbound);
            }
        }
    }
}

/// The running load balancers, kept equal to the records.
struct DataPlane {
    cp: ControlPlane,
    listen: IpAddr,
    running: BTreeMap<LbKey, Running>,
    /// Each running load balancer's traffic at the previous metrics publish.
    published: BTreeMap<LbKey, lb::TrafficSnapshot>,
}

impl DataPlane {
    fn refresh(&mut self) {
        let now_ms = (self.cp.now().max(0.0) * 1000.0) as u64;
        let listen = self.listen;
        let plans = self.cp.read(|s| to_plans(s, listen, now_ms));
        let wanted: BTreeSet<&LbKey> = plans.iter().map(|p| &p.key).collect();
        self.running.retain(|key, _| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::info!(load_balancer = %key.1, "the load balancer stops");
            }
            keep
        });
        for plan in plans {
            match self.running.get_mut(&plan.key) {
                Some(r) if r.plan == plan && r.unbound.is_empty() => {}
                Some(r) => {
                    let (_, unbound) = apply(Some(&r.lb), &plan, &r.unbound);
                    r.plan = plan;
                    r.unbound = unbound;
                }
                None => {
                    let (started, unbound) = apply(None, &plan, &BTreeSet::new());
                    // A refused config still gets a (silent) load balancer, so that the
                    // refusal is logged once, not at every refresh.
                    let lb = match started {
                        Some(lb) => lb,
                        None => match lb::Lb::start(lb::LbConfig::default()) {
                            Ok(lb) => lb,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot start a load balancer");
                                continue;
                            }
                        },
                    };
                    tracing::info!(load_balancer = %plan.key.1, "the load balancer starts");
                    self.running
                        .insert(plan.key.clone(), Running { lb, plan, unbound });
                }
            }
        }
    }

    /// Writes the health changes `lb` observed since the stored health.
    async fn report(&self) {
        let observed = observe(self.running.values().map(|r| (&r.lb, &r.plan)));
        if observed.is_empty() {
            return;
        }
        let reports = self.cp.read(|s| changed(s, observed));
        for chunk in reports.chunks(MAX_HEALTH_REPORTS) {
            let chunk = chunk.to_vec();
            for r in &chunk {
                tracing::info!(
                    target_group = %r.target_group, target = %format!("{}:{}", r.target_id, r.port),
                    healthy = r.health.healthy, reason = r.health.reason.as_deref().unwrap_or("-"),
                    "target health changed"
                );
            }
            let scope = chunk[0].scope.clone();
            let written = self
                .cp
                .write_as(scope, move |s, ctx| report_health(s, ctx, chunk.clone()))
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, "target health was not stored");
            }
        }
    }

    /// Publishes every application load balancer's CloudWatch metrics of the period
    /// since the previous publish ([`metrics`]): one write per account and region.
    async fn publish(&mut self) {
        let wanted: Vec<(LbKey, metrics::LbDimensions)> = self.cp.read(|s| {
            self.running
                .iter()
                .filter_map(|(key, r)| {
                    let names = r.plan.config.target_groups.keys();
                    Some((key.clone(), metrics::dimensions(s, key, names)?))
                })
                .collect()
        });
        let mut published = BTreeMap::new();
        let mut by_scope: BTreeMap<Scope, Vec<model::wire_cw::MetricDatum>> = BTreeMap::new();
        for (key, dims) in wanted {
            let Some(r) = self.running.get(&key) else {
                continue;
            };
            let after = r.lb.traffic();
            let serving = &r.plan.config.target_groups;
            let mut hosts = metrics::hosts(&r.lb.target_health());
            hosts.retain(|g, _| serving.contains_key(g));
            for g in serving.keys() {
                hosts.entry(g.clone()).or_default();
            }
            let data = metrics::datapoints(&metrics::LbPeriod {
                load_balancer: &dims.load_balancer,
                groups: &dims.groups,
                before: self.published.get(&key),
                after: &after,
                hosts: &hosts,
            });
            by_scope.entry(key.0.clone()).or_default().extend(data);
            published.insert(key, after);
        }
        self.published = published;
        for (scope, data) in by_scope {
            if data.is_empty() {
                continue;
            }
            let n = data.len();
            let written = self
                .cp
                .write_as(scope.clone(), move |s, ctx| {
                    controlplane::ops::cloudwatch::publish_metric_data(
                        s,
                        ctx,
                        metrics::NAMESPACE,
                        &data,
                    )
                })
                .await;
            match written {
                Ok(()) => {
                    tracing::debug!(account = %scope.account, region = %scope.region, datapoints = n, "load balancer metrics published");
                }
                Err(e) => {
                    tracing::warn!(account = %scope.account, region = %scope.region, error = %e, "load balancer metrics were not published");
                }
            }
        }
    }
}

/// Starts the data plane: load balancers' listeners on `listen`, kept equal to the
/// records until the process ends (module doc), their CloudWatch metrics published every
/// `metrics_every` ([`metrics::PUBLISH_EVERY`] but in tests). Call inside the server's
/// runtime.
pub fn serve(cp: ControlPlane, listen: IpAddr, metrics_every: Duration) {
    let mut changes = cp.watch_changes();
    let mut dp = DataPlane {
        cp,
        listen,
        running: BTreeMap::new(),
        published: BTreeMap::new(),
    };
    tracing::info!(%listen, "serving the load balancers' listeners");
    tokio::spawn(async move {
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        let mut health = tokio::time::interval(HEALTH_EVERY);
        // The first publish one period after the start: it covers a whole period.
        let mut publish =
            tokio::time::interval_at(tokio::time::Instant::now() + metrics_every, metrics_every);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = changes.recv() => {
                    match batch {
                        Ok(batch) if !touches_load_balancing(&batch) => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => return,
                    }
                    // One refresh covers every batch already queued.
                    loop {
                        match changes.try_recv() {
                            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Closed) => return,
                        }
                    }
                    dp.refresh();
                }
                _ = refresh.tick() => dp.refresh(),
                _ = health.tick() => dp.report().await,
                _ = publish.tick() => dp.publish().await,
            }
        }
    });
}
