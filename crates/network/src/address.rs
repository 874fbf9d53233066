//! Extra addresses of the node's loopback interface `lo`: the agent's Service Connect alias
//! addresses (`/32`s from its `--service-connect-cidr`), where its proxy listens. Tasks in
//! their own namespace reach them through their default route, via the bridge, to the
//! node, which delivers them locally; `host` tasks share the node's `lo`.
//!
//! [`sync_loopback_addresses`] makes `lo`'s addresses in a range exactly a given set
//! (adding the missing, deleting the others), so it is idempotent and also removes what
//! an agent killed mid-change left. Like [`crate::links`], the netlink socket runs on its
//! own thread, in the caller's namespace.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;

use crate::error::NetworkError;
use crate::ipam::Ipv4Cidr;
use crate::links::with_handle;

/// The loopback interface.
pub const LOOPBACK: &str = "lo";

fn nl(e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Netlink(format!("{LOOPBACK} addresses: {e}"))
}

/// Makes `lo`'s IPv4 addresses inside `range` exactly `wanted` (each a `/32`); addresses
/// outside `range` are left alone, and so are those of `wanted` outside it.
///
/// # Errors
/// A netlink request failed (the agent lacks `CAP_NET_ADMIN`, say).
pub fn sync_loopback_addresses(
    range: Ipv4Cidr,
    wanted: &BTreeSet<Ipv4Addr>,
) -> Result<(), NetworkError> {
    let wanted: BTreeSet<Ipv4Addr> = wanted
        .iter()
        .copied()
        .filter(|ip| range.contains(*ip))
        .collect();
    with_handle(None, nl, move |handle| async move {
        let index = handle
            .link()
            .get()
            .match_name(LOOPBACK.to_owned())
            .execute()
            .try_next()
            .await
            .map_err(nl)?
            .ok_or_else(|| nl("no loopback interface"))?
            .header
            .index;
        let mut present = BTreeSet::new();
        let mut stale = Vec::new();
        let mut addresses = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = addresses.try_next().await.map_err(nl)? {
            let ip = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip))
                | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            let Some(ip) = ip.filter(|ip| range.contains(*ip)) else {
                continue;
            };
            if wanted.contains(&ip) && msg.header.prefix_len == 32 {
                present.insert(ip);
            } else {
                stale.push(msg);
            }
        }
        for msg in stale {
            handle.address().del(msg).execute().await.map_err(nl)?;
        }
        for ip in wanted.difference(&present) {
            handle
                .address()
                .add(index, IpAddr::V4(*ip), 32)
                .replace()
                .execute()
                .await
                .map_err(nl)?;
        }
        Ok(())
    })
}
