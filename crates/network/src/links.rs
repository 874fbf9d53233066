//! Links, addresses and routes over rtnetlink: the node's bridge, a task's veth pair, and
//! the inside of a task's namespace (`lo`, `eth0`, default route).
//!
//! A netlink socket belongs to the namespace it was opened in, so every call here runs on
//! its own thread ([`crate::netns::run_in`]) — inside the task's namespace, or in the
//! caller's (the agent's) namespace — with a small current-thread runtime for rtnetlink.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::NetworkError;
use crate::ipam::Ipv4Cidr;
use crate::netns;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

fn nl(e: impl std::fmt::Display) -> NetworkError {
    NetworkError::Netlink(e.to_string())
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Runs `f` with a netlink handle opened in the namespace held by `ns` (the caller's
/// when `None`).
fn netlink<T, F, Fut>(ns: Option<&Path>, what: &'static str, f: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    with_handle(ns, nl, move |handle| async move {
        f(handle)
            .await
            .map_err(|e| NetworkError::Netlink(format!("{what}: {e}")))
    })
}

/// Runs `f` with a netlink handle opened in the namespace held by `ns` (the caller's
/// when `None`), on a thread of its own with a small current-thread runtime; `setup`
/// makes the error of opening either.
pub(crate) fn with_handle<T, F, Fut>(
    ns: Option<&Path>,
    setup: fn(std::io::Error) -> NetworkError,
    f: F,
) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    netns::run_in(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(setup)?;
        rt.block_on(async move {
            let (connection, handle, _) = rtnetlink::new_connection().map_err(setup)?;
            tokio::spawn(connection);
            f(handle).await
        })
    })
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The index of link `name`, which must exist (it was just made or moved): none fails
/// the request.
async fn existing_index(handle: &Handle, name: &str) -> Result<u32, rtnetlink::Error> {
    index_of(handle, name)
        .await?
        .ok_or(rtnetlink::Error::RequestFailed)
}

/// The bridge's own MAC address: locally administered (`02:…`) and derived from its
/// gateway address, so it never changes. A Linux bridge without an address set takes the
/// lowest MAC of its ports and changes it when that port (a stopped task's veth) goes;
/// the other tasks' ARP entries for the gateway would then point at a MAC nobody owns,
/// and replies to published ports would be lost until the entries expire.
pub fn bridge_mac(gateway: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = gateway.octets();
    [0x02, 0x66, a, b, c, d]
}

/// Creates the bridge (if missing) with a fixed MAC ([`bridge_mac`]) and the subnet's
/// gateway address, and brings it up. A bridge made before the MAC was fixed gets it.
pub fn ensure_bridge(name: &str, subnet: Ipv4Cidr) -> Result<(), NetworkError> {
    let name = name.to_owned();
    let mac = bridge_mac(subnet.gateway()).to_vec();
    netlink(None, "bridge", move |handle| async move {
        let index = match index_of(&handle, &name).await? {
            Some(i) => i,
            None => {
                match handle
                    .link()
                    .add(LinkBridge::new(&name).address(mac.clone()).build())
                    .execute()
                    .await
                {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    Err(e) => return Err(e),
                }
                existing_index(&handle, &name).await?
            }
        };
        if link_address(&handle, index).await?.as_deref() != Some(mac.as_slice()) {
            handle
                .link()
                .set(LinkUnspec::new_with_index(index).address(mac).build())
                .execute()
                .await?;
        }
        address_and_up(&handle, index, subnet.gateway(), subnet.prefix()).await
    })
}

/// The hardware address of link `index`.
async fn link_address(handle: &Handle, index: u32) -> Result<Option<Vec<u8>>, rtnetlink::Error> {
    let mut links = handle.link().get().match_index(index).execute();
    let mut mac = None;
    while let Some(link) = links.try_next().await? {
        for attr in link.attributes {
            if let rtnetlink::packet_route::link::LinkAttribute::Address(bytes) = attr {
                mac = Some(bytes);
            }
        }
    }
    Ok(mac)
}

/// Gives link `index` the address `ip/prefix` (replacing what it had) and brings it up.
async fn address_and_up(
    handle: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), rtnetlink::Error> {
    handle
        .address()
        .add(index, IpAddr::V4(ip), prefix)
        .replace()
        .execute()
        .await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
}

/// The index of link `name` in the caller's namespace, if it exists.
pub fn link_index(name: &str) -> Result<Option<u32>, NetworkError> {
    let name = name.to_owned();
    netlink(None, "link lookup", move |handle| async move {
        index_of(&handle, &name).await
    })
}

/// Deletes link `name` (both ends, for a veth); a missing link is not an error.
pub fn delete_link(name: &str) -> Result<(), NetworkError> {
    let name = name.to_owned();
    netlink(None, "delete link", move |handle| async move {
        let Some(index) = index_of(&handle, &name).await? else {
            return Ok(());
        };
        match handle.link().del(index).execute().await {
            Err(e) if errno(&e) != Some(ENODEV) => Err(e),
            _ => Ok(()),
        }
    })
}

/// Names of the links in the caller's namespace that start with `prefix`.
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>, NetworkError> {
    let prefix = prefix.to_owned();
    netlink(None, "list links", move |handle| async move {
        let mut names = Vec::new();
        let mut links = handle.link().get().execute();
        while let Some(link) = links.try_next().await? {
            for attr in link.attributes {
                if let rtnetlink::packet_route::link::LinkAttribute::IfName(n) = attr
                    && n.starts_with(&prefix)
                {
                    names.push(n);
                }
            }
        }
        Ok(names)
    })
}

/// Creates the veth pair `host`/`peer`, attaches `host` to `bridge` and brings it up,
/// and moves `peer` into the namespace held by `netns_path`.
pub fn create_veth(
    host: &str,
    peer: &str,
    bridge: &str,
    netns_path: &Path,
) -> Result<(), NetworkError> {
    let (host, peer, bridge) = (host.to_owned(), peer.to_owned(), bridge.to_owned());
    let ns_file = std::fs::File::open(netns_path).map_err(|e| NetworkError::Namespace {
        path: netns_path.display().to_string(),
        message: e.to_string(),
    })?;
    netlink(None, "veth", move |handle| async move {
        handle
            .link()
            .add(LinkVeth::new(&host, &peer).build())
            .execute()
            .await?;
        let peer_index = existing_index(&handle, &peer).await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(peer_index)
                    .setns_by_fd(ns_file.as_raw_fd())
                    .build(),
            )
            .execute()
            .await?;
        let bridge_index = existing_index(&handle, &bridge).await?;
        let host_index = existing_index(&handle, &host).await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(host_index)
                    .controller(bridge_index)
                    .up()
                    .build(),
            )
            .execute()
            .await
    })
}

/// What the inside of a task's namespace gets.
#[derive(Debug, Clone)]
pub struct Inside {
    /// The veth end moved in (renamed `eth0`), or `None` for loopback only.
    pub peer: Option<String>,
    /// The task's address.
    pub ip: Ipv4Addr,
    /// The subnet (prefix and gateway).
    pub subnet: Ipv4Cidr,
}

/// The interface name tasks see.
pub const TASK_INTERFACE: &str = "eth0";

/// Brings `lo` up and, with a peer, renames it `eth0`, gives it the address, brings it up
/// and routes by default via the bridge. Returns `eth0`'s MAC address. Idempotent: an
/// existing `eth0` is only (re)configured.
pub fn configure_inside(netns_path: &Path, inside: Inside) -> Result<Option<String>, NetworkError> {
    let path: PathBuf = netns_path.to_owned();
    netlink(Some(&path), "task namespace", move |handle| async move {
        handle
            .link()
            .set(LinkUnspec::new_with_name("lo").up().build())
            .execute()
            .await?;
        let Some(peer) = inside.peer else {
            return Ok(None);
        };
        let index = match index_of(&handle, TASK_INTERFACE).await? {
            Some(i) => i,
            None => {
                let i = existing_index(&handle, &peer).await?;
                handle
                    .link()
                    .set(LinkUnspec::new_with_index(i).name(TASK_INTERFACE).build())
                    .execute()
                    .await?;
                i
            }
        };
        address_and_up(&handle, index, inside.ip, inside.subnet.prefix()).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(inside.subnet.gateway())
            .output_interface(index)
            .build();
        handle.route().add(route).replace().execute().await?;
        Ok(link_address(&handle, index).await?.map(|bytes| {
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }))
    })
}
