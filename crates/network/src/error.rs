//! [`NetworkError`]: why a task's networking could not be set up or torn down. Each
//! variant's message is written for the task's `stoppedReason`.

/// A step of task networking failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A host port the task publishes is bound by something else on this node. The task
    /// cannot start here; nothing of it is left behind.
    #[error("host port {port}/{protocol} is already in use on this instance")]
    PortInUse {
        /// The host port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: &'static str,
    },
    /// A host port could not be reserved for another reason than being in use.
    #[error("cannot reserve host port {port}/{protocol}: {message}")]
    PortReservation {
        /// The host port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// What failed.
        message: String,
    },
    /// Every address of the bridge subnet is leased.
    #[error("no free address left in the task subnet {subnet} (--bridge-cidr)")]
    SubnetFull {
        /// The subnet.
        subnet: String,
    },
    /// A network namespace could not be created, entered or removed.
    #[error("network namespace {path}: {message}")]
    Namespace {
        /// The namespace handle.
        path: String,
        /// What failed.
        message: String,
    },
    /// A netlink request (links, addresses, routes) failed.
    #[error("netlink: {0}")]
    Netlink(String),
    /// An `iptables` command failed.
    #[error("iptables {args}: {message}")]
    Iptables {
        /// Its arguments.
        args: String,
        /// Its stderr, or why it could not run.
        message: String,
    },
    /// The persisted network state could not be read or written.
    #[error("network state {path}: {message}")]
    State {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A kernel setting (sysctl) could not be written.
    #[error("sysctl {path}: {message}")]
    Sysctl {
        /// The /proc/sys file.
        path: String,
        /// What failed.
        message: String,
    },
}
