//! Host-port reservations: before a task's ports are published, the agent binds each
//! host port on all addresses of the node and keeps the socket open while the task runs.
//! A port something else already holds fails the task with a clear reason instead of
//! silently shadowing it; a port the agent holds cannot be taken by anything else later.
//! (The sockets never see traffic: the DNAT rules redirect it before local delivery.)

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use crate::error::NetworkError;
use crate::rules::{PortMapping, Protocol};

/// An open socket holding one host port.
#[derive(Debug)]
pub enum HeldPort {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A bound UDP socket.
    Udp(UdpSocket),
}

/// Binds every host port of `ports` (in the caller's network namespace); on the first
/// failure, releases what was bound and says which port.
pub fn hold(ports: &[PortMapping]) -> Result<Vec<HeldPort>, NetworkError> {
    let mut held = Vec::new();
    for p in ports {
        match bind_retrying(p) {
            Ok(socket) => held.push(socket),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(NetworkError::PortInUse {
                    port: p.host_port,
                    protocol: p.protocol.as_str(),
                });
            }
            Err(e) => {
                return Err(NetworkError::PortReservation {
                    port: p.host_port,
                    protocol: p.protocol.as_str(),
                    message: e.to_string(),
                });
            }
        }
    }
    Ok(held)
}

/// How long a port found in use is tried again before the task fails: a port this
/// process just released can still be held for a moment by a child forked from another
/// thread (an `iptables` run) between its fork and its exec, which closes the copy.
const IN_USE_GRACE: Duration = Duration::from_millis(250);

/// Binds `p`'s host port, trying again for [`IN_USE_GRACE`] while it is in use.
fn bind_retrying(p: &PortMapping) -> std::io::Result<HeldPort> {
    let addr = (Ipv4Addr::UNSPECIFIED, p.host_port);
    let give_up = Instant::now() + IN_USE_GRACE;
    loop {
        let bound = match p.protocol {
            Protocol::Tcp => TcpListener::bind(addr).map(HeldPort::Tcp),
            Protocol::Udp => UdpSocket::bind(addr).map(HeldPort::Udp),
        };
        match bound {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_bound_elsewhere_is_refused_by_name() {
        let other = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = other.local_addr().unwrap().port();
        let err = hold(&[PortMapping {
            host_port: port,
            container_port: 80,
            protocol: Protocol::Tcp,
        }])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("host port {port}/tcp is already in use on this instance")
        );
        drop(other);
        let held = hold(&[PortMapping {
            host_port: port,
            container_port: 80,
            protocol: Protocol::Tcp,
        }])
        .unwrap();
        assert!(
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_err(),
            "a held port cannot be taken"
        );
        drop(held);
    }
}
