//! ELBv2 operation routing: `Action` → [`ElbOperation`] → one `match` that parses the
//! parameters (one `parse_*` per input shape), runs the operation in
//! `controlplane::ops::elbv2` as a read or a write, and writes the result's XML.

use controlplane::ops::elbv2::certificates::{
    self, CertificateInput, DescribeListenerCertificates, ListenerCertificate,
};
use controlplane::ops::elbv2::listeners::{
    self, ActionInput, ConditionInput, CreateListener, CreateRule, DescribeListeners,
    DescribeRules, ModifyListener, ModifyRule, RuleView,
};
use controlplane::ops::elbv2::load_balancers::{self, CreateLoadBalancer, DescribeLoadBalancers};
use controlplane::ops::elbv2::target_groups::{
    self, CreateTargetGroup, DescribeTargetGroups, HealthCheckInput, TargetGroupView, TargetInput,
};
use controlplane::ops::elbv2::{ElbError, ElbWritten, tags, validation};
use controlplane::state::elb::{
    Action, ActionKind, Condition, ElbTag, ListenerRecord, LoadBalancerRecord,
};
use controlplane::{ControlPlane, Ctx, Scope, State};
use time::OffsetDateTime;
use time::macros::format_description;

use super::query::Params;
use super::xml::Xml;
use crate::dispatch::{Call, write_own_errors};

macro_rules! operations {
    ($($op:ident),* $(,)?) => {
        /// The ELBv2 operations flotilla serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ElbOperation {
            $(
                #[doc = concat!("`", stringify!($op), "`.")]
                $op,
            )*
        }

        impl ElbOperation {
            /// The operation an `Action` names.
            pub fn from_name(name: &str) -> Option<ElbOperation> {
                match name {
                    $(stringify!($op) => Some(ElbOperation::$op),)*
                    _ => None,
                }
            }

            /// Its `Action` name.
            pub fn name(self) -> &'static str {
                match self {
                    $(ElbOperation::$op => stringify!($op),)*
                }
            }
        }
    };
}

operations!(
    CreateLoadBalancer,
    DescribeLoadBalancers,
    DeleteLoadBalancer,
    CreateTargetGroup,
    DescribeTargetGroups,
    ModifyTargetGroup,
    DeleteTargetGroup,
    DescribeTargetGroupAttributes,
    ModifyTargetGroupAttributes,
    RegisterTargets,
    DeregisterTargets,
    DescribeTargetHealth,
    CreateListener,
    DescribeListeners,
    ModifyListener,
    DeleteListener,
    CreateRule,
    DescribeRules,
    ModifyRule,
    DeleteRule,
    AddTags,
    RemoveTags,
    DescribeTags,
    AddListenerCertificates,
    RemoveListenerCertificates,
    DescribeListenerCertificates,
);

/// [`write_own_errors`] in the caller's scope.
async fn write<Req: Clone + Send + 'static, Resp: Send + 'static>(
    cp: &ControlPlane,
    call: &Call,
    req: Req,
    op: fn(&State, &mut Ctx, Req) -> ElbWritten<Resp>,
) -> Result<Resp, ElbError> {
    write_own_errors(cp, call.scope.clone(), req, op).await
}

fn read<Req, Resp>(
    cp: &ControlPlane,
    call: &Call,
    req: Req,
    op: fn(&State, &Scope, Req) -> Result<Resp, ElbError>,
) -> Result<Resp, ElbError> {
    cp.read(|state| op(state, &call.scope, req))
}

/// Runs one operation and returns its `<XxxResult>` content.
pub async fn dispatch(
    cp: &ControlPlane,
    call: &Call,
    op: ElbOperation,
    p: &Params,
) -> Result<String, ElbError> {
    let mut x = Xml::default();
    match op {
        ElbOperation::CreateLoadBalancer => {
            let lb = write(
                cp,
                call,
                parse_create_load_balancer(p)?,
                load_balancers::create,
            )
            .await?;
            x.list("LoadBalancers", &[lb], load_balancer);
        }
        ElbOperation::DescribeLoadBalancers => {
            let page = read(
                cp,
                call,
                parse_describe_load_balancers(p)?,
                load_balancers::describe,
            )?;
            x.list("LoadBalancers", &page.load_balancers, load_balancer)
                .opt("NextMarker", page.next_marker.as_deref());
        }
        ElbOperation::DeleteLoadBalancer => {
            write(
                cp,
                call,
                p.required("LoadBalancerArn")?,
                load_balancers::delete,
            )
            .await?;
        }
        ElbOperation::CreateTargetGroup => {
            let tg = write(
                cp,
                call,
                parse_create_target_group(p)?,
                target_groups::create,
            )
            .await?;
            let view = TargetGroupView {
                group: tg,
                load_balancer_arns: Vec::new(),
            };
            x.list("TargetGroups", &[view], target_group);
        }
        ElbOperation::DescribeTargetGroups => {
            let page = read(
                cp,
                call,
                parse_describe_target_groups(p)?,
                target_groups::describe,
            )?;
            x.list("TargetGroups", &page.target_groups, target_group)
                .opt("NextMarker", page.next_marker.as_deref());
        }
        ElbOperation::ModifyTargetGroup => {
            let req = (p.required("TargetGroupArn")?, parse_health_check(p)?);
            let view = write(cp, call, req, target_groups::modify).await?;
            x.list("TargetGroups", &[view], target_group);
        }
        ElbOperation::DeleteTargetGroup => {
            write(
                cp,
                call,
                p.required("TargetGroupArn")?,
                target_groups::delete,
            )
            .await?;
        }
        ElbOperation::DescribeTargetGroupAttributes => {
            let attrs = read(
                cp,
                call,
                p.required("TargetGroupArn")?,
                target_groups::describe_attributes,
            )?;
            attributes(&mut x, attrs);
        }
        ElbOperation::ModifyTargetGroupAttributes => {
            let mut attrs = Vec::new();
            for a in p.structures("Attributes")? {
                attrs.push((a.required("Key")?, a.get("Value").unwrap_or_default()));
            }
            let req = (p.required("TargetGroupArn")?, attrs);
            let attrs = write(cp, call, req, target_groups::modify_attributes).await?;
            attributes(&mut x, attrs);
        }
        ElbOperation::RegisterTargets => {
            let req = (p.required("TargetGroupArn")?, parse_targets(p)?);
            write(cp, call, req, target_groups::register).await?;
        }
        ElbOperation::DeregisterTargets => {
            let req = (p.required("TargetGroupArn")?, parse_targets(p)?);
            write(cp, call, req, target_groups::deregister).await?;
        }
        ElbOperation::DescribeTargetHealth => {
            // The server's clock decides whether a deregistered target still drains.
            let now_ms = (cp.now().max(0.0) * 1000.0) as u64;
            let req = (p.required("TargetGroupArn")?, parse_targets(p)?, now_ms);
            let health = read(cp, call, req, target_groups::describe_health)?;
            x.list("TargetHealthDescriptions", &health, |x, h| {
                x.open("Target")
                    .text("Id", &h.target.id)
                    .text("Port", &h.target.port.to_string())
                    .opt("AvailabilityZone", h.target.availability_zone.as_deref())
                    .close("Target")
                    .text("HealthCheckPort", &h.health_check_port)
                    .open("TargetHealth")
                    .text("State", h.state)
                    .opt("Reason", h.reason.as_deref())
                    .opt("Description", h.description.as_deref())
                    .close("TargetHealth");
            });
        }
        ElbOperation::CreateListener => {
            let l = write(cp, call, parse_create_listener(p)?, listeners::create).await?;
            x.list("Listeners", &[l], listener);
        }
        ElbOperation::DescribeListeners => {
            let req = DescribeListeners {
                load_balancer_arn: p.get("LoadBalancerArn"),
                arns: p.list("ListenerArns")?,
                marker: p.get("Marker"),
                page_size: p.int("PageSize")?,
            };
            let page = read(cp, call, req, listeners::describe)?;
            x.list("Listeners", &page.listeners, listener)
                .opt("NextMarker", page.next_marker.as_deref());
        }
        ElbOperation::ModifyListener => {
            let req = ModifyListener {
                arn: p.required("ListenerArn")?,
                port: p.int("Port")?,
                protocol: p.get("Protocol"),
                default_actions: parse_actions(p, "DefaultActions")?,
                certificates: Some(parse_certificates(p)?).filter(|c| !c.is_empty()),
                ssl_policy: p.get("SslPolicy"),
            };
            let l = write(cp, call, req, listeners::modify).await?;
            x.list("Listeners", &[l], listener);
        }
        ElbOperation::DeleteListener => {
            write(cp, call, p.required("ListenerArn")?, listeners::delete).await?;
        }
        ElbOperation::CreateRule => {
            let req = CreateRule {
                listener_arn: p.required("ListenerArn")?,
                priority: Some(p.int("Priority")?.ok_or_else(|| {
                    validation("1 validation error detected: Value null at 'priority' failed to satisfy constraint: Member must not be null")
                })?),
                conditions: parse_conditions(p)?,
                actions: parse_actions(p, "Actions")?,
                tags: parse_tags(p)?,
            };
            let r = write(cp, call, req, listeners::create_rule).await?;
            x.list("Rules", &[r], rule);
        }
        ElbOperation::DescribeRules => {
            let req = DescribeRules {
                listener_arn: p.get("ListenerArn"),
                arns: p.list("RuleArns")?,
                marker: p.get("Marker"),
                page_size: p.int("PageSize")?,
            };
            let page = read(cp, call, req, listeners::describe_rules)?;
            x.list("Rules", &page.rules, rule)
                .opt("NextMarker", page.next_marker.as_deref());
        }
        ElbOperation::ModifyRule => {
            let req = ModifyRule {
                arn: p.required("RuleArn")?,
                conditions: parse_conditions(p)?,
                actions: parse_actions(p, "Actions")?,
            };
            let r = write(cp, call, req, listeners::modify_rule).await?;
            x.list("Rules", &[r], rule);
        }
        ElbOperation::DeleteRule => {
            write(cp, call, p.required("RuleArn")?, listeners::delete_rule).await?;
        }
        ElbOperation::AddTags => {
            let req = (p.list("ResourceArns")?, parse_tags(p)?);
            write(cp, call, req, tags::add).await?;
        }
        ElbOperation::RemoveTags => {
            let req = (p.list("ResourceArns")?, p.list("TagKeys")?);
            write(cp, call, req, tags::remove).await?;
        }
        ElbOperation::DescribeTags => {
            let described = read(cp, call, p.list("ResourceArns")?, tags::describe)?;
            x.list("TagDescriptions", &described, |x, (arn, tags)| {
                x.text("ResourceArn", arn);
                tag_list(x, tags);
            });
        }
        ElbOperation::AddListenerCertificates => {
            let req = (p.required("ListenerArn")?, parse_certificates(p)?);
            let added = write(cp, call, req, certificates::add).await?;
            x.list("Certificates", &added, listener_certificate);
        }
        ElbOperation::RemoveListenerCertificates => {
            let req = (p.required("ListenerArn")?, parse_certificates(p)?);
            write(cp, call, req, certificates::remove).await?;
        }
        ElbOperation::DescribeListenerCertificates => {
            let req = DescribeListenerCertificates {
                listener_arn: p.required("ListenerArn")?,
                marker: p.get("Marker"),
                page_size: p.int("PageSize")?,
            };
            let page = read(cp, call, req, certificates::describe)?;
            x.list("Certificates", &page.certificates, listener_certificate)
                .opt("NextMarker", page.next_marker.as_deref());
        }
    }
    Ok(x.finish())
}

/// `Certificates.member.N.{CertificateArn,IsDefault}`.
fn parse_certificates(p: &Params) -> Result<Vec<CertificateInput>, ElbError> {
    p.structures("Certificates")?
        .iter()
        .map(|c| {
            Ok(CertificateInput {
                arn: c.required("CertificateArn")?,
                is_default: c.bool("IsDefault")?,
            })
        })
        .collect()
}

fn listener_certificate(x: &mut Xml, c: &ListenerCertificate) {
    x.text("CertificateArn", &c.arn)
        .text("IsDefault", if c.is_default { "true" } else { "false" });
}

// ---- parsing -------------------------------------------------------------------------

/// `Tags.member.N.{Key,Value}`.
pub fn parse_tags(p: &Params) -> Result<Vec<ElbTag>, ElbError> {
    p.structures("Tags")?
        .into_iter()
        .map(|t| {
            Ok(ElbTag {
                key: t.required("Key")?,
                value: t.get("Value"),
            })
        })
        .collect()
}

fn parse_create_load_balancer(p: &Params) -> Result<CreateLoadBalancer, ElbError> {
    let mut subnets = p.list("Subnets")?;
    for m in p.structures("SubnetMappings")? {
        subnets.push(m.required("SubnetId")?);
    }
    Ok(CreateLoadBalancer {
        name: p.required("Name")?,
        lb_type: p.get("Type"),
        scheme: p.get("Scheme"),
        ip_address_type: p.get("IpAddressType"),
        subnets,
        security_groups: p.list("SecurityGroups")?,
        tags: parse_tags(p)?,
    })
}

fn parse_describe_load_balancers(p: &Params) -> Result<DescribeLoadBalancers, ElbError> {
    Ok(DescribeLoadBalancers {
        arns: p.list("LoadBalancerArns")?,
        names: p.list("Names")?,
        marker: p.get("Marker"),
        page_size: p.int("PageSize")?,
    })
}

fn parse_health_check(p: &Params) -> Result<HealthCheckInput, ElbError> {
    Ok(HealthCheckInput {
        enabled: p.bool("HealthCheckEnabled")?,
        protocol: p.get("HealthCheckProtocol"),
        port: p.get("HealthCheckPort"),
        path: p.get("HealthCheckPath"),
        interval_seconds: p.int("HealthCheckIntervalSeconds")?,
        timeout_seconds: p.int("HealthCheckTimeoutSeconds")?,
        healthy_threshold: p.int("HealthyThresholdCount")?,
        unhealthy_threshold: p.int("UnhealthyThresholdCount")?,
        matcher: p.structure("Matcher").and_then(|m| m.get("HttpCode")),
        grpc_code: p.structure("Matcher").and_then(|m| m.get("GrpcCode")),
    })
}

fn parse_create_target_group(p: &Params) -> Result<CreateTargetGroup, ElbError> {
    Ok(CreateTargetGroup {
        name: p.required("Name")?,
        protocol: p.get("Protocol"),
        protocol_version: p.get("ProtocolVersion"),
        port: p.int("Port")?,
        vpc_id: p.get("VpcId"),
        target_type: p.get("TargetType"),
        health_check: parse_health_check(p)?,
        tags: parse_tags(p)?,
    })
}

fn parse_describe_target_groups(p: &Params) -> Result<DescribeTargetGroups, ElbError> {
    Ok(DescribeTargetGroups {
        load_balancer_arn: p.get("LoadBalancerArn"),
        arns: p.list("TargetGroupArns")?,
        names: p.list("Names")?,
        marker: p.get("Marker"),
        page_size: p.int("PageSize")?,
    })
}

fn parse_targets(p: &Params) -> Result<Vec<TargetInput>, ElbError> {
    p.structures("Targets")?
        .into_iter()
        .map(|t| {
            Ok(TargetInput {
                id: t.required("Id")?,
                port: t.int("Port")?,
                availability_zone: t.get("AvailabilityZone"),
            })
        })
        .collect()
}

/// `<key>.member.N`: actions.
pub fn parse_actions(p: &Params, key: &str) -> Result<Vec<ActionInput>, ElbError> {
    p.structures(key)?
        .into_iter()
        .map(|a| {
            let forward = a.structure("ForwardConfig");
            let forward_groups = match &forward {
                None => None,
                Some(f) => Some(
                    f.structures("TargetGroups")?
                        .into_iter()
                        .map(|g| Ok((g.required("TargetGroupArn")?, g.int("Weight")?)))
                        .collect::<Result<Vec<_>, ElbError>>()?,
                ),
            };
            let forward_stickiness = match forward
                .as_ref()
                .and_then(|f| f.structure("TargetGroupStickinessConfig"))
            {
                None => None,
                Some(s) => Some((
                    s.bool("Enabled")?.unwrap_or(false),
                    s.int("DurationSeconds")?,
                )),
            };
            let fixed_response = match a.structure("FixedResponseConfig") {
                None => None,
                Some(f) => Some((
                    f.required("StatusCode")?,
                    f.get("ContentType"),
                    f.get("MessageBody"),
                )),
            };
            Ok(ActionInput {
                action_type: a.required("Type")?,
                order: a.int("Order")?,
                target_group_arn: a.get("TargetGroupArn"),
                forward_groups,
                forward_stickiness,
                fixed_response,
            })
        })
        .collect()
}

/// `Conditions.member.N`.
pub fn parse_conditions(p: &Params) -> Result<Vec<ConditionInput>, ElbError> {
    p.structures("Conditions")?
        .into_iter()
        .map(|c| {
            let values_of = |key: &str| -> Result<Option<Vec<String>>, ElbError> {
                c.structure(key).map(|s| s.list("Values")).transpose()
            };
            let http_header = match c.structure("HttpHeaderConfig") {
                None => None,
                Some(h) => Some((
                    h.get("HttpHeaderName").unwrap_or_default(),
                    h.list("Values")?,
                )),
            };
            let field = match c.get("Field") {
                Some(f) => f,
                None => return Err(validation("A condition needs a Field")),
            };
            Ok(ConditionInput {
                field,
                values: c.list("Values")?,
                path_pattern: values_of("PathPatternConfig")?,
                host_header: values_of("HostHeaderConfig")?,
                http_header,
            })
        })
        .collect()
}

fn parse_create_listener(p: &Params) -> Result<CreateListener, ElbError> {
    let default_actions = parse_actions(p, "DefaultActions")?;
    if default_actions.is_empty() {
        return Err(validation(
            "1 validation error detected: Value null at 'defaultActions' failed to satisfy constraint: Member must not be null",
        ));
    }
    Ok(CreateListener {
        load_balancer_arn: p.required("LoadBalancerArn")?,
        protocol: p.get("Protocol"),
        port: p.int("Port")?,
        default_actions,
        tags: parse_tags(p)?,
        certificates: parse_certificates(p)?,
        ssl_policy: p.get("SslPolicy"),
    })
}

// ---- XML -----------------------------------------------------------------------------

/// Epoch seconds as ELBv2 writes timestamps (`2026-12-05T01:02:03.456Z`).
pub fn timestamp(epoch: f64) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let nanos = (epoch * 1e9) as i128;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

fn tag_list(x: &mut Xml, tags: &[ElbTag]) {
    x.list("Tags", tags, |x, t| {
        x.text("Key", &t.key).opt("Value", t.value.as_deref());
    });
}

fn load_balancer(x: &mut Xml, lb: &LoadBalancerRecord) {
    x.text("LoadBalancerArn", &lb.arn())
        .text("DNSName", &lb.dns_name())
        .text("CanonicalHostedZoneId", "ZFLOTILLALOCAL")
        .text("CreatedTime", &timestamp(lb.created_time))
        .text("LoadBalancerName", &lb.name)
        .text("Scheme", &lb.scheme)
        .opt("VpcId", lb.vpc_id.as_deref())
        .open("State")
        .text("Code", "active")
        .close("State")
        .text("Type", &lb.lb_type)
        .list("AvailabilityZones", &lb.subnets, |x, s| {
            x.text("SubnetId", s);
        })
        .strings("SecurityGroups", &lb.security_groups)
        .text("IpAddressType", &lb.ip_address_type);
}

fn target_group(x: &mut Xml, v: &TargetGroupView) {
    let tg = &v.group;
    let hc = &tg.health_check;
    x.text("TargetGroupArn", &tg.arn())
        .text("TargetGroupName", &tg.name)
        .text("Protocol", &tg.protocol)
        .text("Port", &tg.port.to_string())
        .opt("VpcId", tg.vpc_id.as_deref())
        .text("HealthCheckProtocol", &hc.protocol)
        .text("HealthCheckPort", &hc.port)
        .text(
            "HealthCheckEnabled",
            if hc.enabled { "true" } else { "false" },
        )
        .text(
            "HealthCheckIntervalSeconds",
            &hc.interval_seconds.to_string(),
        )
        .text("HealthCheckTimeoutSeconds", &hc.timeout_seconds.to_string())
        .text("HealthyThresholdCount", &hc.healthy_threshold.to_string())
        .text(
            "UnhealthyThresholdCount",
            &hc.unhealthy_threshold.to_string(),
        )
        .opt("HealthCheckPath", hc.path.as_deref());
    if let Some(m) = &hc.matcher {
        // A GRPC group's matcher holds gRPC codes.
        let member = if tg.protocol_version.as_deref() == Some("GRPC") {
            "GrpcCode"
        } else {
            "HttpCode"
        };
        x.open("Matcher").text(member, m).close("Matcher");
    }
    x.strings("LoadBalancerArns", &v.load_balancer_arns)
        .text("TargetType", &tg.target_type)
        .opt("ProtocolVersion", tg.protocol_version.as_deref())
        .text("IpAddressType", &tg.ip_address_type);
}

fn attributes(x: &mut Xml, attrs: std::collections::BTreeMap<String, String>) {
    let attrs: Vec<(String, String)> = attrs.into_iter().collect();
    x.list("Attributes", &attrs, |x, (k, v)| {
        x.text("Key", k).text("Value", v);
    });
}

fn action(x: &mut Xml, a: &Action) {
    match &a.kind {
        ActionKind::Forward {
            target_groups,
            stickiness,
            single: _,
        } => {
            x.text("Type", "forward");
            if let [only] = target_groups.as_slice() {
                x.text("TargetGroupArn", &only.arn);
            }
            x.opt("Order", a.order.map(|o| o.to_string()).as_deref());
            x.open("ForwardConfig")
                .list("TargetGroups", target_groups, |x, g| {
                    x.text("TargetGroupArn", &g.arn)
                        .text("Weight", &g.weight.unwrap_or(1).to_string());
                });
            if let Some((enabled, duration)) = stickiness {
                x.open("TargetGroupStickinessConfig")
                    .text("Enabled", if *enabled { "true" } else { "false" })
                    .opt(
                        "DurationSeconds",
                        duration.map(|d| d.to_string()).as_deref(),
                    )
                    .close("TargetGroupStickinessConfig");
            }
            x.close("ForwardConfig");
        }
        ActionKind::FixedResponse {
            status_code,
            content_type,
            message_body,
        } => {
            x.text("Type", "fixed-response")
                .opt("Order", a.order.map(|o| o.to_string()).as_deref())
                .open("FixedResponseConfig")
                .opt("MessageBody", message_body.as_deref())
                .text("StatusCode", status_code)
                .opt("ContentType", content_type.as_deref())
                .close("FixedResponseConfig");
        }
    }
}

fn listener(x: &mut Xml, l: &ListenerRecord) {
    x.text("ListenerArn", &l.arn())
        .text("LoadBalancerArn", &l.lb_arn())
        .text("Port", &l.port.to_string())
        .text("Protocol", &l.protocol)
        .list("DefaultActions", &l.default_actions, action);
    if let Some(policy) = &l.ssl_policy {
        // DescribeListeners shows the default certificate only (as ELBv2 does).
        x.text("SslPolicy", policy).list(
            "Certificates",
            &l.certificates[..l.certificates.len().min(1)],
            |x, arn| {
                x.text("CertificateArn", arn);
            },
        );
    }
}

fn condition(x: &mut Xml, c: &Condition) {
    match c {
        Condition::PathPattern(values) => {
            x.text("Field", "path-pattern")
                .strings("Values", values)
                .open("PathPatternConfig")
                .strings("Values", values)
                .close("PathPatternConfig");
        }
        Condition::HostHeader(values) => {
            x.text("Field", "host-header")
                .strings("Values", values)
                .open("HostHeaderConfig")
                .strings("Values", values)
                .close("HostHeaderConfig");
        }
        Condition::HttpHeader { name, values } => {
            x.text("Field", "http-header")
                .open("HttpHeaderConfig")
                .text("HttpHeaderName", name)
                .strings("Values", values)
                .close("HttpHeaderConfig");
        }
    }
}

fn rule(x: &mut Xml, r: &RuleView) {
    x.text("RuleArn", &r.arn)
        .text("Priority", &r.priority)
        .list("Conditions", &r.conditions, condition)
        .list("Actions", &r.actions, action)
        .text("IsDefault", if r.is_default { "true" } else { "false" });
}

#[cfg(test)]
mod tests {
    use super::*;
    use controlplane::state::elb::{HealthCheck, TargetGroupRecord};

    #[test]
    fn operation_names_round_trip() {
        for name in ["CreateLoadBalancer", "DescribeTargetHealth", "DescribeTags"] {
            assert_eq!(ElbOperation::from_name(name).unwrap().name(), name);
        }
        assert!(ElbOperation::from_name("SetSecurityGroups").is_none());
    }

    #[test]
    fn actions_and_conditions_parse_from_the_cli_form() {
        let body = "Actions.member.1.Type=forward\
            &Actions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn=a\
            &Actions.member.1.ForwardConfig.TargetGroups.member.1.Weight=3\
            &Actions.member.1.ForwardConfig.TargetGroups.member.2.TargetGroupArn=b\
            &Actions.member.1.ForwardConfig.TargetGroupStickinessConfig.Enabled=true\
            &Conditions.member.1.Field=path-pattern\
            &Conditions.member.1.PathPatternConfig.Values.member.1=%2Fapi%2F*\
            &Conditions.member.2.Field=http-header\
            &Conditions.member.2.HttpHeaderConfig.HttpHeaderName=X-Env\
            &Conditions.member.2.HttpHeaderConfig.Values.member.1=blue";
        let p = Params::parse(body.as_bytes());
        let actions = parse_actions(&p, "Actions").unwrap();
        assert_eq!(actions[0].action_type, "forward");
        assert_eq!(
            actions[0].forward_groups,
            Some(vec![("a".into(), Some(3)), ("b".into(), None)])
        );
        assert_eq!(actions[0].forward_stickiness, Some((true, None)));
        let conditions = parse_conditions(&p).unwrap();
        assert_eq!(conditions[0].path_pattern, Some(vec!["/api/*".to_owned()]));
        assert_eq!(
            conditions[1].http_header,
            Some(("X-Env".into(), vec!["blue".into()]))
        );
    }

    #[test]
    fn matchers_read_and_show_http_or_grpc_codes() {
        let p = Params::parse(b"Matcher.GrpcCode=0-2%2C12&HealthCheckPath=%2Fx");
        let hc = parse_health_check(&p).unwrap();
        assert_eq!(hc.grpc_code.as_deref(), Some("0-2,12"));
        assert_eq!(hc.matcher, None);
        let p = Params::parse(b"Matcher.HttpCode=200-299");
        let hc = parse_health_check(&p).unwrap();
        assert_eq!(
            (hc.matcher.as_deref(), hc.grpc_code),
            (Some("200-299"), None)
        );

        let record = |version: &str, matcher: &str| TargetGroupView {
            group: TargetGroupRecord {
                scope: Scope::new("123456789012", "us-east-1"),
                name: "rpc".into(),
                id: "0123456789abcdef".into(),
                protocol: "HTTP".into(),
                port: 50051,
                vpc_id: None,
                target_type: "ip".into(),
                protocol_version: Some(version.into()),
                ip_address_type: "ipv4".into(),
                health_check: HealthCheck {
                    enabled: true,
                    protocol: "HTTP".into(),
                    port: "traffic-port".into(),
                    path: Some("/AWS.ALB/healthcheck".into()),
                    interval_seconds: 30,
                    timeout_seconds: 5,
                    healthy_threshold: 5,
                    unhealthy_threshold: 2,
                    matcher: Some(matcher.into()),
                },
                attributes: Default::default(),
                targets: vec![],
                tags: vec![],
            },
            load_balancer_arns: vec![],
        };
        let mut x = Xml::default();
        target_group(&mut x, &record("GRPC", "12"));
        let doc = x.finish();
        assert!(
            doc.contains("<Matcher><GrpcCode>12</GrpcCode></Matcher>"),
            "{doc}"
        );
        assert!(
            doc.contains("<ProtocolVersion>GRPC</ProtocolVersion>"),
            "{doc}"
        );
        let mut x = Xml::default();
        target_group(&mut x, &record("HTTP2", "200"));
        let doc = x.finish();
        assert!(
            doc.contains("<Matcher><HttpCode>200</HttpCode></Matcher>"),
            "{doc}"
        );
    }

    #[test]
    fn timestamps_have_milliseconds() {
        assert_eq!(timestamp(1_764_000_000.5), "2025-11-24T16:00:00.500Z");
    }
}
