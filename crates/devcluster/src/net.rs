//! The cluster's network, made with `ip` and `nft`: a host bridge holding the host side
//! address (`10.213.<subnet>.1/24`), one network namespace per node joined to it by a
//! veth pair (`eth0` inside, `10.213.<subnet>.<10+i>`, default route via the host), and
//! the NAT that lets every node reach the host's loopback registries under their usual
//! `127.0.0.1:5000` names. Every step is idempotent; removal ignores what is already gone.

use std::path::Path;

use crate::error::Result;
use crate::host::{self, netns_path, run};
use crate::spec::{self, ClusterSpec};

/// True when the host has a network interface `name`.
#[must_use]
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// True when network namespace `name` exists.
#[must_use]
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Third octets of the `10.213.X.0/24` subnets already holding an address on the host.
#[must_use]
pub fn subnets_in_use() -> Vec<u8> {
    run("ip", &["-o", "-4", "addr", "show"], None)
        .map(|out| parse_subnets(&out))
        .unwrap_or_default()
}

fn parse_subnets(ip_addr_output: &str) -> Vec<u8> {
    ip_addr_output
        .split_whitespace()
        .filter_map(|word| {
            let rest = word.strip_prefix("10.213.")?;
            rest.split('.').next()?.parse().ok()
        })
        .collect()
}

/// Creates (or completes) the host bridge and the host's NAT rules for the registries.
pub fn ensure_host(spec: &ClusterSpec) -> Result<()> {
    let br = spec.bridge();
    if !link_exists(&br) {
        run("ip", &["link", "add", &br, "type", "bridge"], None)?;
    }
    let addr = format!("{}/24", spec.host_ip());
    run("ip", &["addr", "replace", &addr, "dev", &br], None)?;
    run("ip", &["link", "set", &br, "up"], None)?;
    // Packets from the nodes to the host address on the registry ports are DNAT'd to
    // 127.0.0.1, which the kernel accepts only with route_localnet on the bridge.
    host::write_sysctl(&format!("/proc/sys/net/ipv4/conf/{br}/route_localnet"), "1")?;
    run("nft", &["-f", "-"], Some(&spec::host_nft_script(spec)))?;
    Ok(())
}

/// Creates (or completes) node `i`'s namespace, veth pair, addresses, routes, sysctls
/// and registry NAT.
pub fn ensure_node(spec: &ClusterSpec, i: u8) -> Result<()> {
    let ns = spec.netns(i);
    let veth = spec.host_veth(i);
    if !netns_exists(&ns) {
        run("ip", &["netns", "add", &ns], None)?;
    }
    run("ip", &["-n", &ns, "link", "set", "lo", "up"], None)?;
    if !link_exists(&veth) {
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
            None,
        )?;
    }
    run(
        "ip",
        &["link", "set", &veth, "master", &spec.bridge(), "up"],
        None,
    )?;
    let addr = format!("{}/24", spec.node_ip(i));
    run(
        "ip",
        &["-n", &ns, "addr", "replace", &addr, "dev", "eth0"],
        None,
    )?;
    run("ip", &["-n", &ns, "link", "set", "eth0", "up"], None)?;
    let gw = spec.host_ip().to_string();
    run(
        "ip",
        &["-n", &ns, "route", "replace", "default", "via", &gw],
        None,
    )?;
    // The Fargate pool nodes' task subnets, straight to each node over the bridge (and
    // from the host), so awsvpc tasks reach each other as in one VPC.
    for (j, cidr) in spec.task_routes().filter(|(j, _)| *j != i) {
        let via = spec.node_ip(j).to_string();
        run(
            "ip",
            &["-n", &ns, "route", "replace", &cidr, "via", &via],
            None,
        )?;
    }
    if let Some(cidr) = spec.task_cidr(i) {
        let via = spec.node_ip(i).to_string();
        run(
            "ip",
            &[
                "route",
                "replace",
                &cidr,
                "via",
                &via,
                "dev",
                &spec.bridge(),
            ],
            None,
        )?;
    }
    // route_localnet: 127.0.0.1:5000 is DNAT'd out of eth0 (then masqueraded); forwarding:
    // a node routes for the tasks behind its own bridge, like a real machine.
    run(
        "ip",
        &[
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.conf.all.route_localnet=1",
            "net.ipv4.conf.eth0.route_localnet=1",
            "net.ipv4.ip_forward=1",
        ],
        None,
    )?;
    run(
        "ip",
        &["netns", "exec", &ns, "nft", "-f", "-"],
        Some(&spec::node_nft_script(spec)),
    )?;
    Ok(())
}

/// Removes node `i`'s namespace and veth pair (its processes must be gone).
pub fn remove_node(spec: &ClusterSpec, i: u8) -> Result<()> {
    let ns = spec.netns(i);
    if netns_exists(&ns) {
        run("ip", &["netns", "delete", &ns], None)?;
    }
    delete_link(&spec.host_veth(i))
}

/// Deletes interface `name` if it exists. A veth vanishes by itself shortly after its
/// peer's namespace is deleted, so "already gone" is success.
fn delete_link(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    match run("ip", &["link", "delete", name], None) {
        Err(_) if !link_exists(name) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Removes the host bridge and the host's nftables table.
pub fn remove_host(spec: &ClusterSpec) -> Result<()> {
    delete_link(&spec.bridge())?;
    let table = spec.host_nft_table();
    if run("nft", &["list", "table", "ip", &table], None).is_ok() {
        run("nft", &["delete", "table", "ip", &table], None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_read_from_ip_addr() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\n\
                   7: fld-dev    inet 10.213.0.1/24 scope global fld-dev\n\
                   9: fld-ci    inet 10.213.17.1/24 scope global fld-ci\n\
                   4: eth0    inet 10.2.13.5/24 brd 10.2.13.255 scope global eth0\n";
        assert_eq!(parse_subnets(out), vec![0, 17]);
    }
}
