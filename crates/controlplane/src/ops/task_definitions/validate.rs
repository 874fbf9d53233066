//! RegisterTaskDefinition's checks and normalisation: each container (names, images,
//! ports, health checks, mounts, limits), the task-level sizes (Fargate's table), and
//! the `dependsOn` graph (no cycles).

use std::collections::BTreeSet;

use model::size;
use model::wire::{self, Compatibility, NetworkMode};

use crate::error::{EcsError, client, invalid};
use crate::ops::attributes::compile_query;
use crate::ops::common::{check_len, is_valid_name};

fn container_error(name: &str, msg: impl std::fmt::Display) -> EcsError {
    client(format!("Invalid setting for container '{name}': {msg}"))
}

fn validate_health_check(name: &str, hc: &wire::HealthCheck) -> Result<(), EcsError> {
    let cmd = hc.command.as_deref().unwrap_or(&[]);
    match cmd.first().map(String::as_str) {
        Some("CMD" | "CMD-SHELL") if cmd.len() >= 2 => {}
        Some("NONE") => {}
        _ => {
            return Err(container_error(
                name,
                "healthCheck.command must start with CMD, CMD-SHELL or NONE, followed by the command.",
            ));
        }
    }
    let ranges = [
        ("interval", hc.interval, 5, 300),
        ("timeout", hc.timeout, 2, 120),
        ("retries", hc.retries, 1, 10),
        ("startPeriod", hc.start_period, 0, 300),
    ];
    for (field, value, lo, hi) in ranges {
        if let Some(v) = value
            && !(lo..=hi).contains(&v)
        {
            return Err(container_error(
                name,
                format!("healthCheck.{field} must be between {lo} and {hi}, got {v}."),
            ));
        }
    }
    Ok(())
}

/// Checks a container definition and fills in ECS's defaults.
fn normalise_container(
    c: &mut wire::ContainerDefinition,
    mode: NetworkMode,
    volumes: &BTreeSet<String>,
    task_memory: Option<u32>,
) -> Result<(), EcsError> {
    let name = c.name.clone().unwrap_or_default();
    // ECS's own words for a container without a name or an image.
    if name.is_empty() {
        return Err(client("Container.name should not be null or empty."));
    }
    if c.image.as_deref().is_none_or(str::is_empty) {
        return Err(client("Container.image should not be null or empty."));
    }
    if name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(client(format!(
            "Container name {name:?} is invalid: up to 255 letters, numbers, hyphens and underscores are allowed."
        )));
    }
    match c.image.as_deref() {
        Some(i) if !i.trim().is_empty() && !i.contains(char::is_whitespace) => {}
        _ => {
            return Err(container_error(
                &name,
                "image is required and cannot contain spaces.",
            ));
        }
    }
    if c.memory.is_none() && c.memory_reservation.is_none() && task_memory.is_none() {
        return Err(container_error(
            &name,
            "at least one of 'memory' or 'memoryReservation' must be specified (or memory at task level).",
        ));
    }
    if let Some(m) = c.memory {
        if m < 6 {
            return Err(container_error(
                &name,
                format!("memory must be at least 6 MiB, got {m}."),
            ));
        }
        if c.memory_reservation.is_some_and(|r| r > m) {
            return Err(container_error(
                &name,
                "memoryReservation must not be greater than memory.",
            ));
        }
    }
    if c.memory_reservation.is_some_and(|r| r < 6) {
        return Err(container_error(
            &name,
            "memoryReservation must be at least 6 MiB.",
        ));
    }
    if c.cpu.is_some_and(|v| !(0..=196_608).contains(&v)) {
        return Err(container_error(
            &name,
            "cpu must be between 0 and 196608 units.",
        ));
    }
    let mut seen_ports = BTreeSet::new();
    for pm in c.port_mappings.get_or_insert_with(Vec::new) {
        let cp = pm.container_port.unwrap_or(-1);
        if !(0..=65535).contains(&cp) {
            return Err(container_error(
                &name,
                format!("portMappings.containerPort must be between 0 and 65535, got {cp}."),
            ));
        }
        pm.protocol.get_or_insert(wire::TransportProtocol::Tcp);
        match mode {
            NetworkMode::Host | NetworkMode::Awsvpc => {
                if pm.host_port.is_some_and(|h| h != cp) {
                    return Err(container_error(
                        &name,
                        format!(
                            "portMappings.hostPort must be omitted or equal containerPort ({cp}) in {mode} network mode."
                        ),
                    ));
                }
                pm.host_port = Some(cp);
            }
            NetworkMode::Bridge => {
                let hp = *pm.host_port.get_or_insert(0);
                if !(0..=65535).contains(&hp) {
                    return Err(container_error(
                        &name,
                        format!("portMappings.hostPort must be between 0 and 65535, got {hp}."),
                    ));
                }
            }
            NetworkMode::None => {
                return Err(container_error(
                    &name,
                    "portMappings are not allowed in none network mode.",
                ));
            }
        }
        let host = pm.host_port.unwrap_or(0);
        if host > 0 && !seen_ports.insert((host, pm.protocol)) {
            return Err(container_error(
                &name,
                format!("host port {host} is mapped twice."),
            ));
        }
    }
    if c.links.as_ref().is_some_and(|l| !l.is_empty()) && mode != NetworkMode::Bridge {
        return Err(container_error(
            &name,
            "links are only supported in bridge network mode.",
        ));
    }
    // The agent writes these into the container's /etc/resolv.conf.
    for s in c.dns_servers.as_deref().unwrap_or(&[]) {
        model::resolv::dns_server(s).map_err(|e| container_error(&name, e))?;
    }
    for d in c.dns_search_domains.as_deref().unwrap_or(&[]) {
        model::resolv::search_domain(d).map_err(|e| container_error(&name, e))?;
    }
    for mp in c.mount_points.get_or_insert_with(Vec::new) {
        let src = mp.source_volume.as_deref().unwrap_or("");
        if !volumes.contains(src) {
            return Err(container_error(
                &name,
                format!("mountPoints.sourceVolume {src:?} is not a volume of the task definition."),
            ));
        }
        if !mp
            .container_path
            .as_deref()
            .is_some_and(|p| p.starts_with('/'))
        {
            return Err(container_error(
                &name,
                "mountPoints.containerPath must be an absolute path.",
            ));
        }
    }
    for u in c.ulimits.as_deref().unwrap_or(&[]) {
        if u.name.is_none() {
            return Err(container_error(&name, "ulimits[].name is required."));
        }
        if u.soft_limit.unwrap_or(0) > u.hard_limit.unwrap_or(0) {
            return Err(container_error(
                &name,
                "ulimits[].softLimit must not exceed hardLimit.",
            ));
        }
    }
    if let Some(hc) = &c.health_check {
        validate_health_check(&name, hc)?;
    }
    if c.stop_timeout.is_some_and(|t| t < 0) || c.start_timeout.is_some_and(|t| t < 0) {
        return Err(container_error(
            &name,
            "startTimeout and stopTimeout must not be negative.",
        ));
    }
    if let Some(lc) = &c.log_configuration
        && lc.log_driver.is_none()
    {
        return Err(container_error(
            &name,
            "logConfiguration.logDriver is required.",
        ));
    }
    c.essential.get_or_insert(true);
    c.cpu.get_or_insert(0);
    c.environment.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    Ok(())
}

pub(super) fn validate_definition(
    req: &mut wire::RegisterTaskDefinitionRequest,
) -> Result<(Option<String>, Option<String>), EcsError> {
    let family = req.family.clone().unwrap_or_default();
    if !is_valid_name(&family) {
        return Err(client(format!(
            "family {family:?} is invalid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
        )));
    }
    let requires = req.requires_compatibilities.clone().unwrap_or_default();
    let fargate = requires.contains(&Compatibility::Fargate);
    let mode = req.network_mode.unwrap_or(NetworkMode::Bridge);
    if fargate && mode != NetworkMode::Awsvpc {
        return Err(client(
            "Tasks using the Fargate launch type must use the awsvpc network mode.",
        ));
    }
    let cpu = req
        .cpu
        .as_deref()
        .map(size::parse_cpu)
        .transpose()
        .map_err(|e| client(e.to_string()))?;
    let memory = req
        .memory
        .as_deref()
        .map(size::parse_memory)
        .transpose()
        .map_err(|e| client(e.to_string()))?;
    if fargate {
        match (cpu, memory) {
            (Some(c), Some(m)) => size::check_fargate(c, m).map_err(|e| client(e.to_string()))?,
            _ => {
                return Err(client(
                    "Fargate requires that 'cpu' and 'memory' be defined at the task level.",
                ));
            }
        }
    } else if let Some(c) = cpu {
        size::check_ec2_cpu(c).map_err(|e| client(e.to_string()))?;
    }
    let mut volumes = BTreeSet::new();
    for v in req.volumes.as_deref().unwrap_or(&[]) {
        let name = v.name.clone().unwrap_or_default();
        if !is_valid_name(&name) || !volumes.insert(name.clone()) {
            return Err(client(format!(
                "volumes[].name {name:?} is invalid or used twice."
            )));
        }
        if v.host
            .as_ref()
            .and_then(|h| h.source_path.as_deref())
            .is_some_and(|p| !p.starts_with('/'))
        {
            return Err(client(format!(
                "volume {name:?}: host.sourcePath must be an absolute path."
            )));
        }
    }
    let containers = req.container_definitions.get_or_insert_with(Vec::new);
    if containers.is_empty() {
        return Err(client(
            "containerDefinitions must contain at least one container.",
        ));
    }
    check_len(containers, 10, "containerDefinitions")?;
    let mut names = BTreeSet::new();
    for c in containers.iter_mut() {
        normalise_container(c, mode, &volumes, memory)?;
        let name = c.name.clone().unwrap_or_default();
        if !names.insert(name.clone()) {
            return Err(client(format!(
                "Container names must be unique within a task definition: {name:?} appears twice."
            )));
        }
    }
    if !containers.iter().any(|c| c.essential == Some(true)) {
        return Err(client(
            "At least one essential container is required in a task definition.",
        ));
    }
    for c in containers.iter() {
        for d in c.depends_on.as_deref().unwrap_or(&[]) {
            let dep = d.container_name.as_deref().unwrap_or("");
            if !names.contains(dep) || Some(dep) == c.name.as_deref() {
                return Err(client(format!(
                    "Container '{}' dependsOn {dep:?}, which is not another container of this task definition.",
                    c.name.as_deref().unwrap_or("")
                )));
            }
            let Some(condition) = d.condition else {
                return Err(client("dependsOn[].condition is required."));
            };
            let target = containers.iter().find(|t| t.name.as_deref() == Some(dep));
            let cname = c.name.as_deref().unwrap_or("");
            if matches!(
                condition,
                wire::ContainerCondition::Complete | wire::ContainerCondition::Success
            ) && target.is_some_and(|t| t.essential != Some(false))
            {
                return Err(client(format!(
                    "Container '{cname}' dependsOn '{dep}' with condition {}, but '{dep}' is essential: an essential container cannot be waited on to exit.",
                    condition.as_str()
                )));
            }
            if condition == wire::ContainerCondition::Healthy
                && target.is_some_and(|t| t.health_check.is_none())
            {
                return Err(client(format!(
                    "Container '{cname}' dependsOn '{dep}' with condition HEALTHY, but '{dep}' has no healthCheck."
                )));
            }
        }
        for link in c.links.as_deref().unwrap_or(&[]) {
            let target = link.split(':').next().unwrap_or("");
            if !names.contains(target) {
                return Err(client(format!(
                    "links: {target:?} is not a container of this task definition."
                )));
            }
        }
    }
    if let Some(cycle) = dependency_cycle(containers) {
        return Err(client(format!(
            "The dependsOn of containers {} form a cycle: none of them could ever start.",
            cycle.join(", ")
        )));
    }
    check_total(
        containers,
        memory.map(i64::from),
        |c| c.memory,
        |sum, m| {
            format!("The sum of container memory ({sum} MiB) exceeds the task memory ({m} MiB).")
        },
    )?;
    check_total(
        containers,
        cpu.map(i64::from),
        |c| c.cpu,
        |sum, c| format!("The sum of container cpu ({sum}) exceeds the task cpu ({c})."),
    )?;
    let constraints = req.placement_constraints.as_deref().unwrap_or(&[]);
    check_len(constraints, 10, "placementConstraints")?;
    for (i, c) in constraints.iter().enumerate() {
        if c.r#type.is_none() {
            return Err(invalid(format!(
                "placementConstraints[{i}].type is required."
            )));
        }
        // Checked here, as ECS does, not first when a task is placed: a definition whose
        // expression cannot be parsed could never run anywhere.
        let field = format!("placementConstraints[{i}].expression");
        match c.expression.as_deref().filter(|e| !e.trim().is_empty()) {
            Some(e) => {
                compile_query(&field, e)?;
            }
            None => return Err(invalid(format!("{field} is required for memberOf."))),
        }
    }
    Ok((cpu.map(|c| c.to_string()), memory.map(|m| m.to_string())))
}

/// Fails when the containers' `each` values (unset counts as 0) add up to more than the
/// task-level `limit`, with the message `over(sum, limit)`.
fn check_total(
    containers: &[wire::ContainerDefinition],
    limit: Option<i64>,
    each: fn(&wire::ContainerDefinition) -> Option<i32>,
    over: fn(i64, i64) -> String,
) -> Result<(), EcsError> {
    let Some(limit) = limit else { return Ok(()) };
    let sum: i64 = containers
        .iter()
        .map(|c| i64::from(each(c).unwrap_or(0)))
        .sum();
    if sum > limit {
        return Err(client(over(sum, limit)));
    }
    Ok(())
}

/// The containers caught in a `dependsOn` cycle (Kahn's algorithm: whatever can never
/// become ready), or `None` when every container can start.
fn dependency_cycle(containers: &[wire::ContainerDefinition]) -> Option<Vec<String>> {
    let mut left: Vec<&wire::ContainerDefinition> = containers.iter().collect();
    let mut ready: BTreeSet<&str> = BTreeSet::new();
    loop {
        let before = left.len();
        left.retain(|c| {
            let deps_ready = c
                .depends_on
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .all(|d| ready.contains(d.container_name.as_deref().unwrap_or("")));
            if deps_ready {
                ready.insert(c.name.as_deref().unwrap_or(""));
            }
            !deps_ready
        });
        if left.is_empty() {
            return None;
        }
        if left.len() == before {
            return Some(
                left.iter()
                    .map(|c| c.name.clone().unwrap_or_default())
                    .collect(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(extra: serde_json::Value) -> wire::ContainerDefinition {
        let mut c = serde_json::json!({"name": "web", "image": "busybox", "memory": 16});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(c).unwrap()
    }

    fn check(extra: serde_json::Value, mode: NetworkMode) -> Result<(), EcsError> {
        normalise_container(&mut container(extra), mode, &BTreeSet::new(), None)
    }

    #[test]
    fn dns_servers_and_search_domains_are_checked_in_every_network_mode() {
        let good = serde_json::json!({
            "dnsServers": ["10.213.0.1", "fd00::53"],
            "dnsSearchDomains": ["flotilla.test", "corp-1.example"],
        });
        for mode in [
            NetworkMode::Bridge,
            NetworkMode::Host,
            NetworkMode::Awsvpc,
            NetworkMode::None,
        ] {
            check(good.clone(), mode).unwrap();
        }
        for (extra, needle) in [
            (
                serde_json::json!({"dnsServers": ["dns.local"]}),
                "dnsServers: \"dns.local\"",
            ),
            (
                serde_json::json!({"dnsServers": ["10.0.0.2\nnameserver 1.1.1.1"]}),
                "is not an IP address",
            ),
            (
                serde_json::json!({"dnsSearchDomains": ["corp.local."]}),
                "dnsSearchDomains: \"corp.local.\"",
            ),
            (
                serde_json::json!({"dnsSearchDomains": ["a b"]}),
                "is not a domain name",
            ),
        ] {
            let e = check(extra, NetworkMode::Bridge).unwrap_err();
            assert_eq!(e.code(), "ClientException", "{e}");
            let msg = e.to_string();
            assert!(msg.contains("Invalid setting for container 'web'"), "{msg}");
            assert!(msg.contains(needle), "{msg}");
        }
    }
}
