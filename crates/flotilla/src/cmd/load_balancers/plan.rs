//! The pure half of `--lb-listen`: the control plane's ELBv2 records turned into one
//! [`lb::LbConfig`] per application load balancer ([`to_plans`]; the rules are in the
//! parent module's doc), and `--lb-listen`'s value.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use controlplane::ops::elbv2::certificates::tls13_only;
use controlplane::ops::instances::PRIVATE_IP_ATTRIBUTE;
use controlplane::state::elb::{
    Action, ActionKind, Condition, ListenerRecord, LoadBalancerRecord, TargetGroupRecord, in_scope,
};
use controlplane::state::{Scope, State};
use model::status::InstanceStatus;

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

/// ELBv2's `ProtocolVersion` as `lb`'s (HTTP1 when absent, as for TCP groups, or unknown).
fn protocol_version(tg: &TargetGroupRecord) -> lb::ProtocolVersion {
    match tg.protocol_version.as_deref() {
        Some("HTTP2") => lb::ProtocolVersion::Http2,
        Some("GRPC") => lb::ProtocolVersion::Grpc,
        _ => lb::ProtocolVersion::Http1,
    }
}

/// ELBv2's health check settings as `lb`'s. A GRPC group's matcher holds gRPC codes
/// (`Matcher.GrpcCode`), and its checks are gRPC calls.
fn health_check(tg: &TargetGroupRecord) -> lb::HealthCheckConfig {
    let hc = &tg.health_check;
    let http = hc.protocol == "HTTP";
    let grpc = protocol_version(tg) == lb::ProtocolVersion::Grpc;
    lb::HealthCheckConfig {
        enabled: hc.enabled,
        protocol: if hc.protocol == "TCP" {
            lb::HealthCheckProtocol::Tcp
        } else {
            lb::HealthCheckProtocol::Http
        },
        path: hc
            .path
            .clone()
            .filter(|_| http)
            .unwrap_or_else(|| "/".into()),
        interval_ms: u64::from(hc.interval_seconds) * 1000,
        timeout_ms: u64::from(hc.timeout_seconds) * 1000,
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: hc.unhealthy_threshold,
        matcher: match (http, grpc) {
            (true, false) => hc.matcher.clone().unwrap_or_else(|| "200".into()),
            (true, true) => hc.matcher.clone().unwrap_or_else(|| "12".into()),
            // Not read by TCP checks; valid for the group's version.
            (false, false) => "200-499".into(),
            (false, true) => "0-99".into(),
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
        protocol_version: protocol_version(tg),
        health_check: health_check(tg),
        deregistration_delay_secs: (tg.deregistration_delay_ms() / 1000)
            .min(lb::config::MAX_DEREGISTRATION_DELAY_SECS),
        slow_start_secs: num("slow_start.duration_seconds").unwrap_or(0),
        stickiness,
        outlier_detection: None,
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
            tls: None,
            bind: SocketAddr::new(listen, l.port),
            protocol: match l.protocol.as_str() {
                "TCP" => lb::ListenerProtocol::Tcp,
                "HTTPS" => lb::ListenerProtocol::Https,
                _ => lb::ListenerProtocol::Http,
            },
            rules,
            default_action: self.action(&l.default_actions),
        }
    }

    /// An HTTPS listener's certificates (PEM, from ACM's records; the default first) and
    /// lowest TLS version (from its security policy). `None` when none of its
    /// certificates is there (ACM refuses to delete a certificate in use, so only a
    /// damaged store gets here).
    fn tls(&self, l: &ListenerRecord) -> Option<lb::ListenerTls> {
        let certificates: Vec<lb::TlsCertificate> = l
            .certificates
            .iter()
            .filter_map(|arn| self.state.discovery.acm.by_arn(&self.scope, arn))
            .map(|c| lb::TlsCertificate {
                chain_pem: match &c.chain_pem {
                    Some(chain) => format!("{}\n{chain}", c.certificate_pem.trim_end()),
                    None => c.certificate_pem.clone(),
                },
                key_pem: c.private_key_pem.clone(),
            })
            .collect();
        let tls13 = l.ssl_policy.as_deref().is_some_and(tls13_only);
        (!certificates.is_empty()).then_some(lb::ListenerTls {
            certificates,
            min_version: if tls13 {
                lb::TlsVersion::Tls13
            } else {
                lb::TlsVersion::Tls12
            },
        })
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
        .filter(|l| l.lb_id == lb.id && served_protocols(lb).contains(&l.protocol.as_str()))
        .collect();
    listeners.sort_by_key(|l| l.port);
    for l in listeners {
        let mut config = b.listener(l, listen);
        if config.protocol == lb::ListenerProtocol::Https {
            let Some(tls) = b.tls(l) else {
                continue;
            };
            config.tls = Some(tls);
        }
        b.plan.config.listeners.push(config);
    }
    b.plan
}

/// The listener protocols `lb` serves for a load balancer: `HTTP` and `HTTPS` for an
/// application load balancer, `TCP` for a network one.
fn served_protocols(lb: &LoadBalancerRecord) -> &'static [&'static str] {
    if lb.lb_type == "network" {
        &["TCP"]
    } else {
        &["HTTP", "HTTPS"]
    }
}

/// Every application and network load balancer's plan, its listeners bound on `listen`
/// (rules in the module doc). `now_ms` decides which deregistered targets still drain.
pub fn to_plans(state: &State, listen: IpAddr, now_ms: u64) -> Vec<LbPlan> {
    let ips = instance_ips(state);
    state
        .elb
        .load_balancers
        .values()
        .filter(|lb| lb.lb_type == "application" || lb.lb_type == "network")
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
