//! Alias addresses: which Service Connect alias has which address of the node's
//! `--service-connect-cidr`, persisted in `<data-dir>/service-connect.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use network::Ipv4Cidr;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

use super::MAX_ROUTES_PER_NODE;

/// An alias: its namespace ARN and `dnsName`.
pub type AliasKey = (String, String);

/// Which alias has which address of the range. Pure; [`AliasAddresses::load`] and
/// [`AliasAddresses::save`] persist it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasAddresses {
    range: Ipv4Cidr,
    assigned: BTreeMap<AliasKey, Ipv4Addr>,
}

/// The persisted form.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AliasFile {
    aliases: Vec<AliasRecord>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AliasRecord {
    namespace: String,
    dns_name: String,
    address: Ipv4Addr,
}

/// Where the assignment is persisted.
pub fn aliases_path(data_dir: &Path) -> PathBuf {
    data_dir.join("service-connect.json")
}

impl AliasAddresses {
    /// No alias has an address yet.
    pub fn new(range: Ipv4Cidr) -> AliasAddresses {
        AliasAddresses {
            range,
            assigned: BTreeMap::new(),
        }
    }

    /// The assignment saved in `data_dir` (none when there is no file). Records outside
    /// `range` (it changed), repeated addresses and those past [`MAX_ROUTES_PER_NODE`]
    /// are dropped.
    pub fn load(data_dir: &Path, range: Ipv4Cidr) -> Result<AliasAddresses, AgentError> {
        let path = aliases_path(data_dir);
        let file: AliasFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AgentError::State {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AliasFile::default(),
            Err(e) => {
                return Err(AgentError::State {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let mut out = AliasAddresses::new(range);
        let mut used = BTreeSet::new();
        for r in file.aliases {
            if out.assigned.len() < MAX_ROUTES_PER_NODE
                && out.assignable(r.address)
                && used.insert(r.address)
            {
                out.assigned.insert((r.namespace, r.dns_name), r.address);
            }
        }
        Ok(out)
    }

    /// Writes the assignment atomically and durably.
    pub fn save(&self, data_dir: &Path) -> Result<(), AgentError> {
        let path = aliases_path(data_dir);
        let file = AliasFile {
            aliases: self
                .assigned
                .iter()
                .map(|((namespace, dns_name), address)| AliasRecord {
                    namespace: namespace.clone(),
                    dns_name: dns_name.clone(),
                    address: *address,
                })
                .collect(),
        };
        let state_error = |e: &dyn std::fmt::Display| AgentError::State {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| state_error(&e))?;
        durable::write(&path, &bytes, durable::PUBLIC_FILE_MODE).map_err(|e| state_error(&e))
    }

    /// Whether `ip` may be given out: in the range, neither its network nor its broadcast
    /// address.
    fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.range.contains(ip) && ip != self.range.network() && ip != self.range.broadcast()
    }

    /// The address of alias `dns_name` of `namespace`: the one it has, else the lowest
    /// free one. `None` when the range is exhausted or [`MAX_ROUTES_PER_NODE`] aliases
    /// have one.
    pub fn assign(&mut self, namespace: &str, dns_name: &str) -> Option<Ipv4Addr> {
        let key = (namespace.to_owned(), dns_name.to_owned());
        if let Some(ip) = self.assigned.get(&key) {
            return Some(*ip);
        }
        if self.assigned.len() >= MAX_ROUTES_PER_NODE {
            return None;
        }
        let used: BTreeSet<Ipv4Addr> = self.assigned.values().copied().collect();
        let first = u32::from(self.range.network()) + 1;
        let last = u32::from(self.range.broadcast()) - 1;
        let ip = (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| !used.contains(ip))?;
        self.assigned.insert(key, ip);
        Some(ip)
    }

    /// The address alias `dns_name` of `namespace` has, if any.
    pub fn get(&self, namespace: &str, dns_name: &str) -> Option<Ipv4Addr> {
        self.assigned
            .get(&(namespace.to_owned(), dns_name.to_owned()))
            .copied()
    }

    /// Keeps only the aliases `keep` accepts (the others' addresses become free).
    pub fn retain(&mut self, keep: impl Fn(&AliasKey) -> bool) {
        self.assigned.retain(|k, _| keep(k));
    }

    /// Every assigned address.
    pub fn addresses(&self) -> BTreeSet<Ipv4Addr> {
        self.assigned.values().copied().collect()
    }
}
