//! IP address management for the node's bridge subnet: which task holds which address.
//! Pure (no IO): [`Ipam`] is a value the caller persists (`crate::state`), so a restarted
//! agent keeps every task's address and never hands out one that is still in use.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 subnet such as `172.31.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// A subnet from its network address and prefix length; host bits must be zero and
    /// the prefix must leave room for a gateway and at least one task (`/8`–`/30`).
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Ipv4Cidr, String> {
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "prefix /{prefix} must be between /8 and /30 (a gateway and at least one task)"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(network) & !mask != 0 {
            return Err(format!(
                "{network}/{prefix} has host bits set; the network is {}/{prefix}",
                Ipv4Addr::from(u32::from(network) & mask)
            ));
        }
        Ok(Ipv4Cidr { network, prefix })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The bridge's own address: the first host address (`.1`), every task's gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The broadcast address (last of the subnet).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | (u32::MAX >> self.prefix))
    }

    /// Whether `ip` lies in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }

    /// Addresses tasks may get: everything but network, gateway and broadcast.
    fn task_range(&self) -> std::ops::RangeInclusive<u32> {
        (u32::from(self.gateway()) + 1)..=(u32::from(self.broadcast()) - 1)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Ipv4Cidr, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR block like 172.31.0.0/16"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|e| format!("{s:?}: bad IPv4 address: {e}"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|e| format!("{s:?}: bad prefix length: {e}"))?;
        Ipv4Cidr::new(ip, prefix).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Ipv4Cidr, String> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

/// The subnet and its leases (task id → address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipam {
    subnet: Ipv4Cidr,
    leases: BTreeMap<String, Ipv4Addr>,
    /// The address given out last: the next allocation starts after it.
    #[serde(default)]
    last: Option<Ipv4Addr>,
}

impl Ipam {
    /// An empty pool over `subnet`.
    pub fn new(subnet: Ipv4Cidr) -> Ipam {
        Ipam {
            subnet,
            leases: BTreeMap::new(),
            last: None,
        }
    }

    /// The pool's subnet.
    pub fn subnet(&self) -> Ipv4Cidr {
        self.subnet
    }

    /// Gives `task` an address: the one it already holds, else the next free one after
    /// the address given out last (wrapping around), as Docker's sequential allocator
    /// does. A just-released address is not handed out again at once: the node's
    /// neighbour (ARP) cache still maps it to the old task's veth for up to a minute,
    /// and a new task behind it would be unreachable until that entry expires.
    /// `None` when the subnet is full.
    pub fn allocate(&mut self, task: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.leases.get(task) {
            return Some(*ip);
        }
        let used: std::collections::BTreeSet<u32> =
            self.leases.values().map(|ip| u32::from(*ip)).collect();
        let range = self.subnet.task_range();
        let after = self
            .last
            .map(u32::from)
            .filter(|l| range.contains(l))
            .unwrap_or(*range.start() - 1);
        let ip = (after + 1..=*range.end())
            .chain(range.clone())
            .find(|candidate| !used.contains(candidate))
            .map(Ipv4Addr::from)?;
        self.leases.insert(task.to_owned(), ip);
        self.last = Some(ip);
        Some(ip)
    }

    /// The address `task` holds.
    pub fn lease(&self, task: &str) -> Option<Ipv4Addr> {
        self.leases.get(task).copied()
    }

    /// Returns `task`'s address to the pool; `None` when it held none.
    pub fn release(&mut self, task: &str) -> Option<Ipv4Addr> {
        self.leases.remove(task)
    }

    /// Every task holding an address.
    pub fn tasks(&self) -> impl Iterator<Item = &str> {
        self.leases.keys().map(String::as_str)
    }

    /// The same leases over a different subnet (the agent was restarted with another
    /// `--bridge-cidr`): leases outside the new subnet are returned so the caller can
    /// tear their tasks' networking down.
    pub fn resubnet(&mut self, subnet: Ipv4Cidr) -> Vec<String> {
        self.subnet = subnet;
        let outside: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, ip)| {
                !subnet.contains(**ip) || !subnet.task_range().contains(&u32::from(**ip))
            })
            .map(|(t, _)| t.clone())
            .collect();
        outside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_refuse_nonsense() {
        let c = cidr("172.31.0.0/16");
        assert_eq!(c.gateway(), Ipv4Addr::new(172, 31, 0, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(172, 31, 255, 255));
        assert!(c.contains(Ipv4Addr::new(172, 31, 9, 9)));
        assert!(!c.contains(Ipv4Addr::new(172, 32, 0, 1)));
        for bad in [
            "172.31.0.0",
            "172.31.0.1/16",
            "10.0.0.0/31",
            "10.0.0.0/4",
            "x/16",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_distinct_skip_gateway_and_are_stable_per_task() {
        let mut ipam = Ipam::new(cidr("10.9.0.0/24"));
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_eq!(
            a,
            Ipv4Addr::new(10, 9, 0, 2),
            "network and gateway are skipped"
        );
        assert_eq!(b, Ipv4Addr::new(10, 9, 0, 3));
        assert_eq!(ipam.allocate("a"), Some(a), "same task, same address");
    }

    #[test]
    fn a_released_address_is_not_given_out_again_before_the_others() {
        let mut ipam = Ipam::new(cidr("10.9.0.0/29"));
        // /29: tasks get .2 to .6.
        assert_eq!(ipam.allocate("a"), Some(Ipv4Addr::new(10, 9, 0, 2)));
        assert_eq!(ipam.release("a"), Some(Ipv4Addr::new(10, 9, 0, 2)));
        let next: Vec<_> = ["b", "c", "d", "e", "f"]
            .iter()
            .map(|t| ipam.allocate(t).unwrap().octets()[3])
            .collect();
        assert_eq!(
            next,
            [3, 4, 5, 6, 2],
            "wraps around only once the rest is used"
        );
        assert_eq!(ipam.allocate("g"), None);
        // The place survives the round trip through the state file.
        ipam.release("d");
        let mut again: Ipam = serde_json::from_str(&serde_json::to_string(&ipam).unwrap()).unwrap();
        assert_eq!(again.allocate("h"), Some(Ipv4Addr::new(10, 9, 0, 5)));
    }

    #[test]
    fn released_addresses_are_reused_and_a_full_subnet_says_so() {
        let mut ipam = Ipam::new(cidr("10.9.0.0/30"));
        // /30: network .0, gateway .1, task .2, broadcast .3.
        assert_eq!(ipam.allocate("a"), Some(Ipv4Addr::new(10, 9, 0, 2)));
        assert_eq!(ipam.allocate("b"), None);
        assert_eq!(ipam.release("a"), Some(Ipv4Addr::new(10, 9, 0, 2)));
        assert_eq!(ipam.allocate("b"), Some(Ipv4Addr::new(10, 9, 0, 2)));
    }

    #[test]
    fn survives_a_round_trip_through_json() {
        let mut ipam = Ipam::new(cidr("172.31.0.0/16"));
        ipam.allocate("a");
        ipam.allocate("b");
        ipam.release("a");
        let back: Ipam = serde_json::from_str(&serde_json::to_string(&ipam).unwrap()).unwrap();
        assert_eq!(back, ipam);
        let mut back = back;
        assert_eq!(
            back.allocate("c"),
            Some(Ipv4Addr::new(172, 31, 0, 4)),
            "the next address after b's, not the just-released one"
        );
        assert_ne!(back.lease("c"), back.lease("b"));
    }

    #[test]
    fn a_new_subnet_names_the_leases_it_no_longer_covers() {
        let mut ipam = Ipam::new(cidr("10.1.0.0/24"));
        ipam.allocate("a");
        assert_eq!(ipam.resubnet(cidr("10.2.0.0/24")), vec!["a".to_owned()]);
        assert!(ipam.resubnet(cidr("10.1.0.0/16")).is_empty());
    }
}
