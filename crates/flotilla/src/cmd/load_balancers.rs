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
//! shows `healthy` / `unhealthy` (with ELBv2's reason codes).
//!
//! The conversion's rules, where the two models differ:
//! - only `application` load balancers and their HTTP listeners are served (`lb` is an
//!   HTTP proxy; `network` load balancers' TCP listeners are left out);
//! - an `ip` target is its address; an `instance` target is the private IP of the
//!   container instance (same account and region, not INACTIVE) whose EC2 instance id is
//!   the target's id: the `flotilla.private-ip` attribute its agent registered. A target
//!   that does not resolve is left out (it stays `initial`), and of two targets of a
//!   group that resolve to one address the first is kept;
//! - a draining target is `lb`'s `Draining` until its deadline; a drained one is left out;
//! - health checks: seconds become milliseconds; checks always go to the target's own
//!   port (`lb` has no separate health check port); a `TCP` check of an HTTP group is an
//!   HTTP `GET /` that passes on any answer from 200 to 499;
//! - stickiness is served for `lb_cookie` (`source_ip` is not: no stickiness); a forward
//!   action's own group stickiness is not served;
//! - a forward whose weights are all 0 answers 503; a rule whose http-header name is not
//!   an HTTP token (no request can match it) is left out.
//!
//! A listener port that cannot be bound (in use, privileged) is logged once and tried
//! again at every refresh; the load balancer's other listeners serve meanwhile. A config
//! `lb` refuses (beyond its limits) is logged, and the previous one keeps serving.
//! Each request is logged by `lb` at `info` under the tracing target `lb::access`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use controlplane::ControlPlane;
use controlplane::ops::elbv2::health::{HealthReport, MAX_HEALTH_REPORTS, report_health};
use controlplane::ops::instances::PRIVATE_IP_ATTRIBUTE;
use controlplane::state::elb::{
    Action, ActionKind, Condition, ListenerRecord, LoadBalancerRecord, ObservedHealth,
    TargetGroupRecord, in_scope,
};
use controlplane::state::{Change, Record, Scope, State};
use model::status::InstanceStatus;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// How often the running load balancers are compared with the records even without a
/// change (draining deadlines, listeners that could not bind).
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// How often target health is read and its changes reported.
pub const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// `--lb-listen`'s value: the address listeners listen on, `None` for `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbListen(pub Option<IpAddr>);

/// Parses `--lb-listen`: an IP address, or `off` (no data plane).
pub fn parse_lb_listen(s: &str) -> Result<LbListen, String> {
    if s == "off" {
        return Ok(LbListen(None));
    }
    s.parse()
        .map(|ip| LbListen(Some(ip)))
        .map_err(|_| format!("{s:?} is neither an IP address nor `off`"))
}

/// Which load balancer a plan is: its scope, name and id (a load balancer deleted and
/// created again under its name is another one).
pub type LbKey = (Scope, String, String);

/// One load balancer's data plane as the records describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct LbPlan {
    /// Which load balancer.
    pub key: LbKey,
    /// What `lb` runs.
    pub config: lb::LbConfig,
    /// The registered target (id, port) behind each (group name, address) of `config`:
    /// how `lb`'s health reports find their way back to the records.
    pub targets: BTreeMap<(String, SocketAddr), TargetId>,
}

/// The private IP of every container instance that has one and is not INACTIVE, by
/// (scope, EC2 instance id); the first wins when an instance id is in several clusters.
fn instance_ips(state: &State) -> HashMap<(Scope, String), IpAddr> {
    let mut out = HashMap::new();
    for rec in state.instances.values() {
        let ci = &rec.instance;
        if ci.status() == Some(InstanceStatus::Inactive) {
            continue;
        }
        let Some(ec2_id) = &ci.ec2_instance_id else {
            continue;
        };
        let ip = ci
            .attributes
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|a| a.name.as_deref() == Some(PRIVATE_IP_ATTRIBUTE))
            .and_then(|a| a.value.as_deref())
            .and_then(|v| v.parse::<IpAddr>().ok());
        if let Some(ip) = ip {
            out.entry((rec.scope.clone(), ec2_id.clone())).or_insert(ip);
        }
    }
    out
}

/// Whether `name` is an HTTP header name (a token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn condition(c: &Condition) -> Option<lb::Condition> {
    Some(match c {
        Condition::PathPattern(values) => lb::Condition::PathPattern {
            values: values.clone(),
        },
        Condition::HostHeader(values) => lb::Condition::HostHeader {
            values: values.clone(),
        },
        Condition::HttpHeader { name, values } => {
            if !is_token(name) {
                return None;
            }
            lb::Condition::HttpHeader {
                name: name.clone(),
                values: values.clone(),
            }
        }
    })
}

/// The group an ARN names, in `scope`.
fn group_by_arn<'a>(state: &'a State, scope: &Scope, arn: &str) -> Option<&'a TargetGroupRecord> {
    let name = arn.strip_prefix("arn:")?.split('/').nth(1)?;
    state
        .elb
        .target_groups
        .get(&(scope.clone(), name.to_owned()))
        .filter(|g| g.arn() == arn)
}

/// ELBv2's health check settings as `lb`'s.
fn health_check(tg: &TargetGroupRecord) -> lb::HealthCheckConfig {
    let hc = &tg.health_check;
    let http = hc.protocol == "HTTP";
    lb::HealthCheckConfig {
        enabled: hc.enabled,
        path: hc
            .path
            .clone()
            .filter(|_| http)
            .unwrap_or_else(|| "/".into()),
        interval_ms: u64::from(hc.interval_seconds) * 1000,
        timeout_ms: u64::from(hc.timeout_seconds) * 1000,
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: hc.unhealthy_threshold,
        matcher: if http {
            hc.matcher.clone().unwrap_or_else(|| "200".into())
        } else {
            "200-499".into()
        },
    }
}

/// A registered target: its id and port.
pub type TargetId = (String, u16);

/// A target group as `lb` runs it, with the registered target behind each address.
fn target_group(
    tg: &TargetGroupRecord,
    ips: &HashMap<(Scope, String), IpAddr>,
    now_ms: u64,
) -> (lb::TargetGroupConfig, Vec<(SocketAddr, TargetId)>) {
    let attr = |k: &str| tg.attributes.get(k).map(String::as_str);
    let num = |k: &str| attr(k).and_then(|v| v.parse::<u64>().ok());
    let mut targets: Vec<lb::TargetConfig> = Vec::new();
    let mut behind = Vec::new();
    for t in tg.live_targets(now_ms) {
        let ip = if tg.target_type == "ip" {
            t.id.parse::<IpAddr>().ok()
        } else {
            ips.get(&(tg.scope.clone(), t.id.clone())).copied()
        };
        let Some(ip) = ip else { continue };
        let addr = SocketAddr::new(ip, t.port);
        let state = match t.draining_until_ms {
            Some(until_unix_ms) => lb::TargetState::Draining { until_unix_ms },
            None => lb::TargetState::Active,
        };
        match targets.iter().position(|c| c.addr == addr) {
            None => {
                targets.push(lb::TargetConfig { addr, state });
                behind.push((addr, (t.id.clone(), t.port)));
            }
            // One address, two targets: an active one beats a draining one.
            Some(i)
                if targets[i].state != lb::TargetState::Active
                    && state == lb::TargetState::Active =>
            {
                targets[i].state = state;
                behind[i].1 = (t.id.clone(), t.port);
            }
            Some(_) => {}
        }
    }
    let stickiness = (attr("stickiness.enabled") == Some("true")
        && attr("stickiness.type") == Some("lb_cookie"))
    .then(|| lb::Stickiness::LbCookie {
        duration_secs: num("stickiness.lb_cookie.duration_seconds")
            .unwrap_or(86_400)
            .clamp(1, lb::config::MAX_STICKINESS_SECS),
    });
    let config = lb::TargetGroupConfig {
        targets,
        health_check: health_check(tg),
        deregistration_delay_secs: (tg.deregistration_delay_ms() / 1000)
            .min(lb::config::MAX_DEREGISTRATION_DELAY_SECS),
        slow_start_secs: num("slow_start.duration_seconds").unwrap_or(0),
        stickiness,
        algorithm: match attr("load_balancing.algorithm.type") {
            Some("least_outstanding_requests") => lb::Algorithm::LeastOutstandingRequests,
            _ => lb::Algorithm::RoundRobin,
        },
    };
    (config, behind)
}

/// Builds one load balancer's plan; the groups its actions forward to are added as met.
struct PlanBuilder<'a> {
    state: &'a State,
    ips: &'a HashMap<(Scope, String), IpAddr>,
    now_ms: u64,
    scope: Scope,
    plan: LbPlan,
}

impl PlanBuilder<'_> {
    /// The action a rule (or a listener's default) takes: its first by `Order`.
    fn action(&mut self, actions: &[Action]) -> lb::Action {
        let Some(a) = actions.iter().min_by_key(|a| a.order.unwrap_or(u32::MAX)) else {
            return lb::Action::fixed(503, "");
        };
        match &a.kind {
            ActionKind::FixedResponse {
                status_code,
                content_type,
                message_body,
            } => lb::Action::FixedResponse {
                status: status_code.parse().unwrap_or(503),
                content_type: content_type.clone(),
                body: message_body.clone().unwrap_or_default(),
            },
            ActionKind::Forward { target_groups, .. } => {
                let mut groups = Vec::new();
                for g in target_groups {
                    let Some(tg) = group_by_arn(self.state, &self.scope, &g.arn) else {
                        continue;
                    };
                    self.add_group(tg);
                    groups.push(lb::WeightedTargetGroup {
                        name: tg.name.clone(),
                        weight: g.weight.unwrap_or(1),
                    });
                }
                if groups.iter().all(|g| g.weight == 0) {
                    lb::Action::fixed(503, "")
                } else {
                    lb::Action::Forward {
                        target_groups: groups,
                    }
                }
            }
        }
    }

    fn add_group(&mut self, tg: &TargetGroupRecord) {
        if self.plan.config.target_groups.contains_key(&tg.name) {
            return;
        }
        let (config, behind) = target_group(tg, self.ips, self.now_ms);
        for (addr, target) in behind {
            self.plan.targets.insert((tg.name.clone(), addr), target);
        }
        self.plan
            .config
            .target_groups
            .insert(tg.name.clone(), config);
    }

    fn listener(&mut self, l: &ListenerRecord, listen: IpAddr) -> lb::ListenerConfig {
        let mut rules: Vec<_> = in_scope(&self.state.elb.rules, &self.scope)
            .filter(|r| r.listener_id == l.id)
            .collect();
        rules.sort_by_key(|r| r.priority);
        let rules = rules
            .into_iter()
            .filter_map(|r| {
                let conditions = r.conditions.iter().map(condition).collect::<Option<_>>()?;
                Some(lb::RuleConfig {
                    priority: r.priority,
                    conditions,
                    action: self.action(&r.actions),
                })
            })
            .collect();
        lb::ListenerConfig {
            bind: SocketAddr::new(listen, l.port),
            rules,
            default_action: self.action(&l.default_actions),
        }
    }
}

fn plan(
    state: &State,
    lb: &LoadBalancerRecord,
    ips: &HashMap<(Scope, String), IpAddr>,
    listen: IpAddr,
    now_ms: u64,
) -> LbPlan {
    let mut b = PlanBuilder {
        state,
        ips,
        now_ms,
        scope: lb.scope.clone(),
        plan: LbPlan {
            key: (lb.scope.clone(), lb.name.clone(), lb.id.clone()),
            config: lb::LbConfig::default(),
            targets: BTreeMap::new(),
        },
    };
    let mut listeners: Vec<&ListenerRecord> = in_scope(&state.elb.listeners, &lb.scope)
        .filter(|l| l.lb_id == lb.id && l.protocol == "HTTP")
        .collect();
    listeners.sort_by_key(|l| l.port);
    for l in listeners {
        let config = b.listener(l, listen);
        b.plan.config.listeners.push(config);
    }
    b.plan
}

/// Every application load balancer's plan, its listeners bound on `listen` (rules in
/// the module doc). `now_ms` decides which deregistered targets still drain.
pub fn to_plans(state: &State, listen: IpAddr, now_ms: u64) -> Vec<LbPlan> {
    let ips = instance_ips(state);
    state
        .elb
        .load_balancers
        .values()
        .filter(|lb| lb.lb_type == "application")
        .map(|lb| plan(state, lb, &ips, listen, now_ms))
        .collect()
}

/// ELBv2's reason code and description for `lb`'s reason of an unhealthy target.
pub fn unhealthy_reason(lb_reason: Option<&str>) -> (&'static str, &'static str) {
    match lb_reason {
        Some("Target.Timeout") => ("Target.Timeout", "Request timed out"),
        Some("Target.ResponseCodeMismatch") => (
            "Target.ResponseCodeMismatch",
            "Health checks failed with a response code the matcher does not accept",
        ),
        _ => ("Target.FailedHealthChecks", "Health checks failed"),
    }
}

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

fn touches_load_balancing(changes: &[Change]) -> bool {
    changes.iter().any(|c| match c {
        Change::Put(r) | Change::Delete(r) => matches!(
            r,
            Record::LoadBalancer(_)
                | Record::TargetGroup(_)
                | Record::Listener(_)
                | Record::ListenerRule(_)
                | Record::Instance(_)
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
                .write(scope, move |s, ctx| {
                    Ok(match report_health(s, ctx, chunk) {
                        Ok((out, changes)) => (Ok(out), changes),
                        Err(e) => (Err(e), Vec::new()),
                    })
                })
                .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "target health was not stored"),
                Err(e) => tracing::warn!(error = %e, "target health was not stored"),
            }
        }
    }
}

/// Starts the data plane: load balancers' listeners on `listen`, kept equal to the
/// records until the process ends (module doc). Call inside the server's runtime.
pub fn serve(cp: ControlPlane, listen: IpAddr) {
    let mut changes = cp.watch_changes();
    let mut dp = DataPlane {
        cp,
        listen,
        running: BTreeMap::new(),
    };
    tracing::info!(%listen, "serving the load balancers' listeners");
    tokio::spawn(async move {
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        let mut health = tokio::time::interval(HEALTH_EVERY);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use controlplane::ops::elbv2::ElbWritten;
    use controlplane::ops::elbv2::listeners::{
        self, ActionInput, ConditionInput, CreateListener, CreateRule,
    };
    use controlplane::ops::elbv2::load_balancers::{self, CreateLoadBalancer};
    use controlplane::ops::elbv2::target_groups::{self, CreateTargetGroup, TargetInput};
    use controlplane::ops::instances;
    use controlplane::{Ctx, State};
    use serde_json::json;
    use testkit::ecs::{self, World};

    use super::*;

    const LISTEN: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn elb<Req, Resp>(
        w: &mut World,
        op: fn(&State, &mut Ctx, Req) -> ElbWritten<Resp>,
        r: Req,
    ) -> Resp {
        let mut ctx = w.ctx();
        let (resp, changes) = op(&w.state, &mut ctx, r).unwrap_or_else(|e| panic!("{e}"));
        w.apply(&changes);
        resp
    }

    fn group(w: &mut World, name: &str, target_type: &str) -> TargetGroupRecord {
        elb(
            w,
            target_groups::create,
            CreateTargetGroup {
                name: name.into(),
                protocol: Some("HTTP".into()),
                port: Some(80),
                target_type: Some(target_type.into()),
                ..Default::default()
            },
        )
    }

    fn targets(ids: &[(&str, Option<i64>)]) -> Vec<TargetInput> {
        ids.iter()
            .map(|(id, port)| TargetInput {
                id: (*id).into(),
                port: *port,
                ..Default::default()
            })
            .collect()
    }

    fn forward(arn: &str) -> ActionInput {
        ActionInput {
            action_type: "forward".into(),
            target_group_arn: Some(arn.into()),
            ..Default::default()
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A load balancer `web` with a listener on 8080: rules by path, host and header
    /// (weighted), a fixed response, and a default forward.
    fn world() -> (World, TargetGroupRecord, TargetGroupRecord) {
        let mut w = World::new();
        let api = group(&mut w, "api", "ip");
        let www = group(&mut w, "www", "instance");
        let lb = elb(
            &mut w,
            load_balancers::create,
            CreateLoadBalancer {
                name: "web".into(),
                ..Default::default()
            },
        );
        let l = elb(
            &mut w,
            listeners::create,
            CreateListener {
                load_balancer_arn: lb.arn(),
                protocol: Some("HTTP".into()),
                port: Some(8080),
                default_actions: vec![forward(&www.arn())],
                tags: vec![],
            },
        );
        let rule = |priority, conditions, action| CreateRule {
            listener_arn: l.arn(),
            priority: Some(priority),
            conditions,
            actions: vec![action],
            tags: vec![],
        };
        elb(
            &mut w,
            listeners::create_rule,
            rule(
                20,
                vec![
                    ConditionInput {
                        field: "host-header".into(),
                        values: vec!["api.example.com".into()],
                        ..Default::default()
                    },
                    ConditionInput {
                        field: "http-header".into(),
                        http_header: Some(("X-Canary".into(), vec!["1".into()])),
                        ..Default::default()
                    },
                ],
                ActionInput {
                    action_type: "forward".into(),
                    forward_groups: Some(vec![(api.arn(), Some(90)), (www.arn(), None)]),
                    ..Default::default()
                },
            ),
        );
        elb(
            &mut w,
            listeners::create_rule,
            rule(
                10,
                vec![ConditionInput {
                    field: "path-pattern".into(),
                    values: vec!["/down/*".into()],
                    ..Default::default()
                }],
                ActionInput {
                    action_type: "fixed-response".into(),
                    fixed_response: Some((
                        "503".into(),
                        Some("text/plain".into()),
                        Some("down".into()),
                    )),
                    ..Default::default()
                },
            ),
        );
        elb(
            &mut w,
            listeners::create_rule,
            rule(
                30,
                vec![ConditionInput {
                    field: "http-header".into(),
                    http_header: Some(("X(1)".into(), vec!["1".into()])),
                    ..Default::default()
                }],
                forward(&api.arn()),
            ),
        );
        (w, api, www)
    }

    #[test]
    fn listeners_rules_and_weights_become_the_lb_config() {
        let (w, _, _) = world();
        let plans = to_plans(&w.state, LISTEN, w.now as u64 * 1000);
        let [plan] = &plans[..] else {
            panic!("one load balancer: {plans:?}")
        };
        assert_eq!(plan.key.1, "web");
        let c = &plan.config;
        c.validate().expect("lb accepts it");
        let [l] = &c.listeners[..] else {
            panic!("one listener")
        };
        assert_eq!(l.bind, addr("127.0.0.1:8080"));
        assert_eq!(l.default_action, lb::Action::forward("www"));
        let priorities: Vec<u32> = l.rules.iter().map(|r| r.priority).collect();
        assert_eq!(
            priorities,
            [10, 20],
            "by priority; the X(1) rule cannot match"
        );
        assert_eq!(
            l.rules[0].conditions,
            [lb::Condition::PathPattern {
                values: vec!["/down/*".into()]
            }]
        );
        assert_eq!(
            l.rules[0].action,
            lb::Action::FixedResponse {
                status: 503,
                content_type: Some("text/plain".into()),
                body: "down".into()
            }
        );
        assert_eq!(
            l.rules[1].conditions,
            [
                lb::Condition::HostHeader {
                    values: vec!["api.example.com".into()]
                },
                lb::Condition::HttpHeader {
                    name: "X-Canary".into(),
                    values: vec!["1".into()]
                }
            ]
        );
        assert_eq!(
            l.rules[1].action,
            lb::Action::Forward {
                target_groups: vec![
                    lb::WeightedTargetGroup {
                        name: "api".into(),
                        weight: 90
                    },
                    lb::WeightedTargetGroup {
                        name: "www".into(),
                        weight: 1
                    },
                ]
            },
            "no weight is 1"
        );
        let names: Vec<&str> = c.target_groups.keys().map(String::as_str).collect();
        assert_eq!(names, ["api", "www"]);
        let hc = &c.target_groups["api"].health_check;
        assert_eq!(
            (
                hc.interval_ms,
                hc.timeout_ms,
                hc.healthy_threshold,
                hc.path.as_str()
            ),
            (30_000, 5_000, 5, "/")
        );
    }

    #[test]
    fn targets_resolve_to_addresses_and_draining_ones_drain() {
        let (mut w, api, www) = world();
        elb(
            &mut w,
            target_groups::modify_attributes,
            (
                api.arn(),
                vec![
                    ("deregistration_delay.timeout_seconds".into(), "30".into()),
                    ("stickiness.enabled".into(), "true".into()),
                    ("slow_start.duration_seconds".into(), "60".into()),
                    (
                        "load_balancing.algorithm.type".into(),
                        "least_outstanding_requests".into(),
                    ),
                ],
            ),
        );
        elb(
            &mut w,
            target_groups::register,
            (
                api.arn(),
                targets(&[
                    ("10.0.0.1", None),
                    ("10.0.0.2", Some(8081)),
                    ("10.0.0.3", None),
                ]),
            ),
        );
        elb(
            &mut w,
            target_groups::deregister,
            (api.arn(), targets(&[("10.0.0.3", None)])),
        );
        // Instance targets: i-1 has a private IP, i-2 none, i-3 is not registered.
        w.create_cluster("c");
        let doc = |id: &str, ip: Option<&str>| {
            let mut d = json!({"instanceId": id});
            if let Some(ip) = ip {
                d["privateIp"] = ip.into();
            }
            ecs::req(
                json!({"cluster": "c", "instanceIdentityDocument": d.to_string(),
                "totalResources": ecs::resources(1024, 1024)}),
            )
        };
        let _: model::wire::RegisterContainerInstanceResponse =
            w.write(instances::register, doc("i-1", Some("10.1.0.1")));
        let _: model::wire::RegisterContainerInstanceResponse =
            w.write(instances::register, doc("i-2", None));
        elb(
            &mut w,
            target_groups::register,
            (
                www.arn(),
                targets(&[("i-1", Some(31000)), ("i-2", None), ("i-3", None)]),
            ),
        );
        let now_ms = w.now as u64 * 1000;
        let plans = to_plans(&w.state, LISTEN, now_ms);
        let c = &plans[0].config;
        c.validate().expect("lb accepts it");
        let api_c = &c.target_groups["api"];
        assert_eq!(
            api_c.targets,
            [
                lb::TargetConfig {
                    addr: addr("10.0.0.1:80"),
                    state: lb::TargetState::Active
                },
                lb::TargetConfig {
                    addr: addr("10.0.0.2:8081"),
                    state: lb::TargetState::Active
                },
                lb::TargetConfig {
                    addr: addr("10.0.0.3:80"),
                    state: lb::TargetState::Draining {
                        until_unix_ms: now_ms + 30_000
                    }
                },
            ]
        );
        assert_eq!(
            (
                api_c.deregistration_delay_secs,
                api_c.slow_start_secs,
                &api_c.stickiness,
                api_c.algorithm
            ),
            (
                30,
                60,
                &Some(lb::Stickiness::LbCookie {
                    duration_secs: 86_400
                }),
                lb::Algorithm::LeastOutstandingRequests
            )
        );
        assert_eq!(
            c.target_groups["www"].targets,
            [lb::TargetConfig {
                addr: addr("10.1.0.1:31000"),
                state: lb::TargetState::Active
            }],
            "only the instance with a private IP"
        );
        assert_eq!(
            plans[0].targets[&("www".to_string(), addr("10.1.0.1:31000"))],
            ("i-1".to_string(), 31000)
        );
        // Past the draining deadline the target is left out.
        let later = to_plans(&w.state, LISTEN, now_ms + 30_000);
        let addrs: Vec<SocketAddr> = later[0].config.target_groups["api"]
            .targets
            .iter()
            .map(|t| t.addr)
            .collect();
        assert_eq!(addrs, [addr("10.0.0.1:80"), addr("10.0.0.2:8081")]);
    }

    #[test]
    fn health_changes_are_reported_against_the_stored_health() {
        let (mut w, api, _) = world();
        elb(
            &mut w,
            target_groups::register,
            (
                api.arn(),
                targets(&[("10.0.0.1", None), ("10.0.0.2", None)]),
            ),
        );
        let key = |id: &str| (ecs::scope(), "api".to_string(), id.to_string(), 80);
        let healthy = ObservedHealth {
            healthy: true,
            reason: None,
            description: None,
            since_ms: 0,
        };
        let (reason, description) = unhealthy_reason(Some("Target.Timeout"));
        let unhealthy = ObservedHealth {
            healthy: false,
            reason: Some(reason.into()),
            description: Some(description.into()),
            since_ms: 0,
        };
        let observed: Observed = [
            (key("10.0.0.1"), healthy.clone()),
            (key("10.0.0.2"), unhealthy.clone()),
            (key("10.0.0.9"), healthy.clone()),
        ]
        .into();
        let reports = changed(&w.state, observed.clone());
        let ids: Vec<&str> = reports.iter().map(|r| r.target_id.as_str()).collect();
        assert_eq!(ids, ["10.0.0.1", "10.0.0.2"], "10.0.0.9 is not registered");
        elb(&mut w, report_health, reports);
        assert!(
            changed(&w.state, observed).is_empty(),
            "nothing new to report"
        );
        let flipped: Observed = [(key("10.0.0.1"), unhealthy)].into();
        assert_eq!(changed(&w.state, flipped).len(), 1);
        assert_eq!(
            unhealthy_reason(Some("Target.FailedHealthChecks")).0,
            "Target.FailedHealthChecks"
        );
        assert_eq!(unhealthy_reason(None).0, "Target.FailedHealthChecks");
    }

    #[test]
    fn lb_listen_is_an_address_or_off() {
        assert_eq!(parse_lb_listen("off"), Ok(LbListen(None)));
        assert_eq!(
            parse_lb_listen("0.0.0.0"),
            Ok(LbListen(Some([0, 0, 0, 0].into())))
        );
        assert!(parse_lb_listen("localhost").is_err());
    }
}
