//! The node as the control plane sees it: resources (CPU units = cores × 1024, memory
//! minus a reserve, reserved ports), the dynamic port range, attributes and a stable id.

use std::path::Path;

use model::wire;

/// Host ports ECS reserves on every instance (SSH, Docker, the ECS agent's own).
pub const DEFAULT_RESERVED_PORTS: &[u16] = &[22, 2375, 2376, 51678, 51679];

/// What the node offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// A stable id for the node (from `/etc/machine-id`, else the hostname).
    pub instance_id: String,
    /// CPU units (1024 per core).
    pub cpu_units: i64,
    /// Memory MiB offered to tasks (total minus `reserved_memory_mib`).
    pub memory_mib: i64,
    /// Ports tasks may not bind.
    pub reserved_ports: Vec<u16>,
    /// The kernel's ephemeral port range (`ip_local_port_range`), for dynamic host ports.
    pub port_range: (u16, u16),
}

/// Parses `/proc/meminfo`'s `MemTotal` (kB) into MiB.
pub fn parse_meminfo_total_mib(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// Parses `ip_local_port_range` (`"32768\t60999"`).
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(str::parse::<u16>);
    let (first, last) = (it.next()?.ok()?, it.next()?.ok()?);
    (first <= last).then_some((first, last))
}

impl HostInfo {
    /// Reads the node's facts from `/proc` and `/etc`, reserving `reserved_memory_mib`.
    pub fn probe(reserved_memory_mib: i64, id_override: Option<&str>) -> HostInfo {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| parse_meminfo_total_mib(&m))
            .unwrap_or(1024);
        let port_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| parse_port_range(&s))
            .unwrap_or((32768, 60999));
        let instance_id = id_override.map_or_else(stable_id, str::to_owned);
        HostInfo {
            instance_id,
            cpu_units: i64::try_from(cores).unwrap_or(1) * 1024,
            memory_mib: (total - reserved_memory_mib).max(0),
            reserved_ports: DEFAULT_RESERVED_PORTS.to_vec(),
            port_range,
        }
    }

    /// `totalResources` for RegisterContainerInstance.
    pub fn resources(&self) -> Vec<wire::Resource> {
        let int = |name: &str, v: i64| wire::Resource {
            name: Some(name.into()),
            r#type: Some("INTEGER".into()),
            integer_value: Some(i32::try_from(v).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        let ports = |name: &str, p: &[u16]| wire::Resource {
            name: Some(name.into()),
            r#type: Some("STRINGSET".into()),
            string_set_value: Some(p.iter().map(ToString::to_string).collect()),
            ..Default::default()
        };
        vec![
            int("CPU", self.cpu_units),
            int("MEMORY", self.memory_mib),
            ports("PORTS", &self.reserved_ports),
            ports("PORTS_UDP", &[]),
        ]
    }
}

fn stable_id() -> String {
    let from_file = |p: &str| {
        std::fs::read_to_string(Path::new(p))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    match from_file("/etc/machine-id") {
        Some(id) => format!("i-{}", &id[..id.len().min(17)]),
        None => from_file("/etc/hostname").unwrap_or_else(|| "flotilla-node".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_meminfo_total_mib("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24000)
        );
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("garbage"), None);
    }

    #[test]
    fn resources_follow_the_ecs_shape() {
        let h = HostInfo {
            instance_id: "i-1".into(),
            cpu_units: 2048,
            memory_mib: 3000,
            reserved_ports: vec![22],
            port_range: (1, 2),
        };
        let r = h.resources();
        assert_eq!(r[0].name.as_deref(), Some("CPU"));
        assert_eq!(r[0].integer_value, Some(2048));
        assert_eq!(r[1].integer_value, Some(3000));
        assert_eq!(
            r[2].string_set_value.as_deref(),
            Some(&["22".to_owned()][..])
        );
    }
}
