//! The netfilter rules that publish tasks' ports, as data: which rules the node needs
//! ([`base_rules`]), which a task needs ([`task_rules`]), and which rules found in a
//! chain belong to which task of this node ([`owned_task_rules`]). Pure; `crate::iptables`
//! applies them.
//!
//! Layout (all in the agent's network namespace):
//!
//! ```text
//! nat  PREROUTING  -m addrtype --dst-type LOCAL -j FLOTILLA-PORTS     (traffic from outside)
//! nat  OUTPUT      -m addrtype --dst-type LOCAL -j FLOTILLA-PORTS     (the node itself, 127.0.0.1 too)
//! nat  FLOTILLA-PORTS  -p tcp --dport H -m comment "flotilla:<node>:<task>" -j DNAT --to IP:C
//! nat  POSTROUTING -j FLOTILLA-POSTROUTING
//! nat  FLOTILLA-POSTROUTING -s CIDR ! -o BRIDGE -j MASQUERADE          (tasks' egress)
//!                           -o BRIDGE --src-type LOCAL -j MASQUERADE  (node → task, 127.0.0.1 hairpin)
//!                           -s CIDR -o BRIDGE --ctstate DNAT -j MASQUERADE (task → published port)
//! filter FORWARD -j FLOTILLA-FORWARD;  FLOTILLA-FORWARD -i/-o BRIDGE -j ACCEPT
//! ```
//!
//! Every per-task rule carries the comment `flotilla:<node-tag>:<task-id>`, so the agent
//! can find (and remove) the rules of tasks that are gone, and never touches another
//! node's rules when several agents share a namespace.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ipam::Ipv4Cidr;

/// The nat chain holding the DNAT rules of published ports.
pub const PORTS_CHAIN: &str = "FLOTILLA-PORTS";
/// The nat chain holding the masquerade rules.
pub const POSTROUTING_CHAIN: &str = "FLOTILLA-POSTROUTING";
/// The filter chain accepting forwarded bridge traffic.
pub const FORWARD_CHAIN: &str = "FLOTILLA-FORWARD";

/// A transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` / `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A published port: traffic to the node's `host_port` goes to the task's `container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on every node address.
    pub host_port: u16,
    /// Port in the task's namespace.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// An iptables table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `nat`.
    Nat,
    /// `filter`.
    Filter,
}

impl Table {
    /// The `-t` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Nat => "nat",
            Table::Filter => "filter",
        }
    }
}

/// Where a rule goes in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// First (`-I chain 1`): jumps from built-in chains, ahead of other software's rules.
    First,
    /// Last (`-A`).
    Last,
}

/// One rule: `iptables -t TABLE -A CHAIN SPEC…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its table.
    pub table: Table,
    /// Its chain.
    pub chain: &'static str,
    /// Where it is inserted when missing.
    pub position: Position,
    /// The match and target, as iptables arguments.
    pub spec: Vec<String>,
}

fn rule(table: Table, chain: &'static str, position: Position, spec: &[&str]) -> Rule {
    Rule {
        table,
        chain,
        position,
        spec: spec.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The chains flotilla creates: (table, chain).
pub const OWN_CHAINS: [(Table, &str); 3] = [
    (Table::Nat, PORTS_CHAIN),
    (Table::Nat, POSTROUTING_CHAIN),
    (Table::Filter, FORWARD_CHAIN),
];

/// The comment marking a task's rules.
pub fn task_comment(node_tag: &str, task: &str) -> String {
    format!("flotilla:{node_tag}:{task}")
}

/// Rules every node with a bridge needs, once: the jumps into flotilla's chains, egress
/// and hairpin masquerading, and accepting forwarded bridge traffic (a host whose FORWARD
/// policy is DROP, e.g. with Docker installed, would otherwise drop it).
pub fn base_rules(bridge: &str, subnet: Ipv4Cidr) -> Vec<Rule> {
    let cidr = subnet.to_string();
    let local = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", PORTS_CHAIN];
    vec![
        rule(Table::Nat, "PREROUTING", Position::First, &local),
        rule(Table::Nat, "OUTPUT", Position::First, &local),
        rule(
            Table::Nat,
            "POSTROUTING",
            Position::First,
            &["-j", POSTROUTING_CHAIN],
        ),
        rule(
            Table::Nat,
            POSTROUTING_CHAIN,
            Position::Last,
            &["-s", &cidr, "!", "-o", bridge, "-j", "MASQUERADE"],
        ),
        rule(
            Table::Nat,
            POSTROUTING_CHAIN,
            Position::Last,
            &[
                "-o",
                bridge,
                "-m",
                "addrtype",
                "--src-type",
                "LOCAL",
                "-j",
                "MASQUERADE",
            ],
        ),
        rule(
            Table::Nat,
            POSTROUTING_CHAIN,
            Position::Last,
            &[
                "-s",
                &cidr,
                "-o",
                bridge,
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "-j",
                "MASQUERADE",
            ],
        ),
        rule(
            Table::Filter,
            "FORWARD",
            Position::First,
            &["-j", FORWARD_CHAIN],
        ),
        rule(
            Table::Filter,
            FORWARD_CHAIN,
            Position::Last,
            &["-i", bridge, "-j", "ACCEPT"],
        ),
        rule(
            Table::Filter,
            FORWARD_CHAIN,
            Position::Last,
            &["-o", bridge, "-j", "ACCEPT"],
        ),
    ]
}

/// The DNAT rules publishing a task's ports at `ip`.
pub fn task_rules(node_tag: &str, task: &str, ip: Ipv4Addr, ports: &[PortMapping]) -> Vec<Rule> {
    let comment = task_comment(node_tag, task);
    ports
        .iter()
        .map(|p| {
            let proto = p.protocol.as_str();
            rule(
                Table::Nat,
                PORTS_CHAIN,
                Position::Last,
                &[
                    "-p",
                    proto,
                    "-m",
                    proto,
                    "--dport",
                    &p.host_port.to_string(),
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &format!("{ip}:{}", p.container_port),
                ],
            )
        })
        .collect()
}

/// One flotilla rule read back from `iptables -t nat -S FLOTILLA-PORTS`.
struct ListedRule {
    /// Its `flotilla:<node>:<task>` comment.
    comment: String,
    /// Its `-p` and `--dport`, when it has both.
    port: Option<(u16, Protocol)>,
    /// The rule, ready to delete.
    rule: Rule,
}

/// The rules of `listing` that carry a flotilla comment (any node's).
fn listed_rules(listing: &str) -> Vec<ListedRule> {
    let mut found = Vec::new();
    for line in listing.lines() {
        let words = split_words(line);
        if words.first().map(String::as_str) != Some("-A")
            || words.get(1).map(String::as_str) != Some(PORTS_CHAIN)
        {
            continue;
        }
        let after = |flag: &str| {
            words
                .iter()
                .position(|w| w == flag)
                .and_then(|i| words.get(i + 1))
                .map(String::as_str)
        };
        let Some(comment) = after("--comment").filter(|c| c.starts_with("flotilla:")) else {
            continue;
        };
        let protocol = match after("-p") {
            Some("tcp") => Some(Protocol::Tcp),
            Some("udp") => Some(Protocol::Udp),
            _ => None,
        };
        let port = after("--dport").and_then(|p| p.parse::<u16>().ok());
        found.push(ListedRule {
            comment: comment.to_owned(),
            port: port.zip(protocol),
            rule: Rule {
                table: Table::Nat,
                chain: PORTS_CHAIN,
                position: Position::Last,
                spec: words[2..].to_vec(),
            },
        });
    }
    found
}

/// Reads `iptables -t nat -S FLOTILLA-PORTS` output and returns, for each rule of this
/// node (`node_tag`), its task id and the rule (ready to delete).
pub fn owned_task_rules(listing: &str, node_tag: &str) -> Vec<(String, Rule)> {
    let prefix = format!("flotilla:{node_tag}:");
    listed_rules(listing)
        .into_iter()
        .filter_map(|r| Some((r.comment.strip_prefix(&prefix)?.to_owned(), r.rule)))
        .collect()
}

/// Reads `iptables -t nat -S FLOTILLA-PORTS` output and returns the flotilla rules (of any
/// node) that publish one of `ports` — `(host port, protocol)` — except those of
/// `keep_comment`. Once an agent holds a host port, such a rule is a leftover (of a node
/// whose agent died with its tasks, or whose state was deleted): nothing alive holds the
/// port, and the rule would shadow the new task's, which comes after it in the chain.
pub fn rules_on_ports(
    listing: &str,
    ports: &std::collections::BTreeSet<(u16, Protocol)>,
    keep_comment: &str,
) -> Vec<(String, Rule)> {
    listed_rules(listing)
        .into_iter()
        .filter(|r| r.comment != keep_comment && r.port.is_some_and(|p| ports.contains(&p)))
        .map(|r| (r.comment, r.rule))
        .collect()
}

/// Splits an `iptables -S` line into words, honouring double quotes.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for ch in line.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> Ipv4Cidr {
        "172.31.0.0/16".parse().unwrap()
    }

    #[test]
    fn a_task_gets_one_dnat_rule_per_port_tagged_with_node_and_task() {
        let rules = task_rules(
            "n1",
            "t1",
            Ipv4Addr::new(172, 31, 0, 2),
            &[
                PortMapping {
                    host_port: 32768,
                    container_port: 8080,
                    protocol: Protocol::Tcp,
                },
                PortMapping {
                    host_port: 53,
                    container_port: 5353,
                    protocol: Protocol::Udp,
                },
            ],
        );
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].spec.join(" "),
            "-p tcp -m tcp --dport 32768 -m comment --comment flotilla:n1:t1 -j DNAT --to-destination 172.31.0.2:8080"
        );
        assert!(rules[1].spec.join(" ").contains("-p udp -m udp --dport 53"));
        assert!(
            rules
                .iter()
                .all(|r| r.chain == PORTS_CHAIN && r.table == Table::Nat)
        );
    }

    #[test]
    fn base_rules_jump_from_the_builtin_chains_first_and_masquerade_the_subnet() {
        let rules = base_rules("flotilla0", subnet());
        let jumps: Vec<_> = rules
            .iter()
            .filter(|r| r.position == Position::First)
            .map(|r| r.chain)
            .collect();
        assert_eq!(jumps, ["PREROUTING", "OUTPUT", "POSTROUTING", "FORWARD"]);
        assert!(
            rules
                .iter()
                .any(|r| r.spec.join(" ") == "-s 172.31.0.0/16 ! -o flotilla0 -j MASQUERADE")
        );
    }

    #[test]
    fn listed_rules_are_attributed_to_this_nodes_tasks_only() {
        let planned = task_rules(
            "n1",
            "t1",
            Ipv4Addr::new(172, 31, 0, 2),
            &[PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
            }],
        );
        // What `iptables -S` prints: the comment quoted.
        let listing = "-N FLOTILLA-PORTS\n\
            -A FLOTILLA-PORTS -p tcp -m tcp --dport 8080 -m comment --comment \"flotilla:n1:t1\" -j DNAT --to-destination 172.31.0.2:80\n\
            -A FLOTILLA-PORTS -p tcp -m tcp --dport 9090 -m comment --comment \"flotilla:n2:t9\" -j DNAT --to-destination 172.31.0.3:80\n\
            -A FLOTILLA-PORTS -p tcp -m tcp --dport 7070 -j DNAT --to-destination 172.31.0.4:80\n";
        let owned = owned_task_rules(listing, "n1");
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].0, "t1");
        assert_eq!(owned[0].1, planned[0], "parsed back to the planned rule");
    }

    #[test]
    fn leftover_rules_on_a_held_port_are_found_whatever_their_node() {
        let listing = "-N FLOTILLA-PORTS\n\
            -A FLOTILLA-PORTS -p tcp -m tcp --dport 32769 -m comment --comment \"flotilla:old:t0\" -j DNAT --to-destination 172.31.0.9:8080\n\
            -A FLOTILLA-PORTS -p udp -m udp --dport 32769 -m comment --comment \"flotilla:old:t1\" -j DNAT --to-destination 172.31.0.9:53\n\
            -A FLOTILLA-PORTS -p tcp -m tcp --dport 32770 -m comment --comment \"flotilla:old:t2\" -j DNAT --to-destination 172.31.0.9:80\n\
            -A FLOTILLA-PORTS -p tcp -m tcp --dport 32769 -m comment --comment \"flotilla:n1:t1\" -j DNAT --to-destination 172.31.0.2:8080\n\
            -A FLOTILLA-PORTS -p tcp -m tcp --dport 32769 -j DNAT --to-destination 172.31.0.4:80\n";
        let held = [(32769, Protocol::Tcp)].into_iter().collect();
        let found = rules_on_ports(listing, &held, &task_comment("n1", "t1"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "flotilla:old:t0");
        assert_eq!(
            found[0].1.spec.join(" "),
            "-p tcp -m tcp --dport 32769 -m comment --comment flotilla:old:t0 -j DNAT --to-destination 172.31.0.9:8080"
        );
    }
}
