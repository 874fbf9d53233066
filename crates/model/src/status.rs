//! Typed statuses of the ECS records, and typed access to the status strings of the wire
//! shapes.
//!
//! botocore declares these statuses as plain strings, so [`wire`] keeps them
//! as `Option<String>` (what is stored and sent is exactly what ECS shows). Code outside
//! `model` reads and writes them only through the typed getters and setters here — e.g.
//! [`wire::Task::last`] and [`wire::Task::set_desired`] with a [`TaskStatus`], or
//! [`wire::Service::status`] with a [`ServiceStatus`] — never by comparing string literals
//! (`crates/flotilla/tests/typed_statuses.rs` enforces it).
//!
//! A getter answers `None` both for an absent status and for a spelling this version does
//! not know; the raw field is still there for the rare caller that must tell them apart.

use std::fmt;
use std::str::FromStr;

use crate::lifecycle::TaskStatus;
use crate::wire;

/// Defines a status enum with `ALL`, `as_str`, `Display`, `FromStr` and `From<_> for
/// String`, from its variants and their wire spellings.
macro_rules! status_enum {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$vdoc:meta])* $variant:ident => $wire:literal, )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            /// Every status, in the order ECS documents them.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        format!(
                            "{s:?} is not a {} (expected one of {})",
                            stringify!($name),
                            all.join(", ")
                        )
                    })
            }
        }

        impl From<$name> for String {
            fn from(s: $name) -> String {
                s.as_str().to_owned()
            }
        }
    };
}

status_enum! {
    /// A cluster's `status`. flotilla's clusters are ACTIVE until DeleteCluster makes them
    /// INACTIVE; the other states belong to capacity providers ECS manages.
    ClusterStatus {
        /// Ready to accept tasks.
        Active => "ACTIVE",
        /// Capacity providers are being created.
        Provisioning => "PROVISIONING",
        /// Capacity providers are being deleted.
        Deprovisioning => "DEPROVISIONING",
        /// Creating the capacity providers failed.
        Failed => "FAILED",
        /// Deleted; kept a while for describes, then removed by retention.
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A container instance's `status`: the wire filter enum
    /// ([`wire::ContainerInstanceStatus`]) plus INACTIVE, which a deregistered instance
    /// shows.
    InstanceStatus {
        /// Takes tasks.
        Active => "ACTIVE",
        /// Being drained: takes no new tasks, its service tasks are replaced elsewhere.
        Draining => "DRAINING",
        /// Registration in progress.
        Registering => "REGISTERING",
        /// Deregistration in progress.
        Deregistering => "DEREGISTERING",
        /// Registration failed.
        RegistrationFailed => "REGISTRATION_FAILED",
        /// Deregistered.
        Inactive => "INACTIVE",
    }
}

impl From<wire::ContainerInstanceStatus> for InstanceStatus {
    fn from(s: wire::ContainerInstanceStatus) -> InstanceStatus {
        match s {
            wire::ContainerInstanceStatus::Active => InstanceStatus::Active,
            wire::ContainerInstanceStatus::Draining => InstanceStatus::Draining,
            wire::ContainerInstanceStatus::Registering => InstanceStatus::Registering,
            wire::ContainerInstanceStatus::Deregistering => InstanceStatus::Deregistering,
            wire::ContainerInstanceStatus::RegistrationFailed => InstanceStatus::RegistrationFailed,
        }
    }
}

status_enum! {
    /// A service's `status`.
    ServiceStatus {
        /// Running its tasks.
        Active => "ACTIVE",
        /// Deleted while it still had tasks: they are being stopped.
        Draining => "DRAINING",
        /// Deleted, no task left.
        Inactive => "INACTIVE",
    }
}

status_enum! {
    /// A deployment's `status` in a service's `deployments[]`.
    DeploymentStatus {
        /// The newest deployment: what the service converges on.
        Primary => "PRIMARY",
        /// An older deployment whose tasks are being replaced.
        Active => "ACTIVE",
        /// A deployment whose tasks are all gone.
        Inactive => "INACTIVE",
    }
}

impl From<wire::DesiredStatus> for TaskStatus {
    fn from(s: wire::DesiredStatus) -> TaskStatus {
        match s {
            wire::DesiredStatus::Running => TaskStatus::Running,
            wire::DesiredStatus::Pending => TaskStatus::Pending,
            wire::DesiredStatus::Stopped => TaskStatus::Stopped,
        }
    }
}

fn parse<T: FromStr>(s: Option<&str>) -> Option<T> {
    s.and_then(|s| s.parse().ok())
}

impl wire::Task {
    /// `lastStatus`, typed.
    pub fn last(&self) -> Option<TaskStatus> {
        parse(self.last_status.as_deref())
    }

    /// `desiredStatus`, typed (RUNNING or STOPPED).
    pub fn desired(&self) -> Option<TaskStatus> {
        parse(self.desired_status.as_deref())
    }

    /// Sets `lastStatus`.
    pub fn set_last(&mut self, s: TaskStatus) {
        self.last_status = Some(s.as_str().into());
    }

    /// Sets `desiredStatus`.
    pub fn set_desired(&mut self, s: TaskStatus) {
        self.desired_status = Some(s.as_str().into());
    }
}

impl wire::Container {
    /// `lastStatus`, typed.
    pub fn last(&self) -> Option<TaskStatus> {
        parse(self.last_status.as_deref())
    }

    /// Sets `lastStatus`.
    pub fn set_last(&mut self, s: TaskStatus) {
        self.last_status = Some(s.as_str().into());
    }
}

impl wire::Cluster {
    /// `status`, typed.
    pub fn status(&self) -> Option<ClusterStatus> {
        parse(self.status.as_deref())
    }

    /// Sets `status`.
    pub fn set_status(&mut self, s: ClusterStatus) {
        self.status = Some(s.into());
    }
}

impl wire::ContainerInstance {
    /// `status`, typed.
    pub fn status(&self) -> Option<InstanceStatus> {
        parse(self.status.as_deref())
    }

    /// Sets `status`.
    pub fn set_status(&mut self, s: InstanceStatus) {
        self.status = Some(s.into());
    }
}

impl wire::Service {
    /// `status`, typed.
    pub fn status(&self) -> Option<ServiceStatus> {
        parse(self.status.as_deref())
    }

    /// Sets `status`.
    pub fn set_status(&mut self, s: ServiceStatus) {
        self.status = Some(s.into());
    }
}

impl wire::Deployment {
    /// `status`, typed.
    pub fn status(&self) -> Option<DeploymentStatus> {
        parse(self.status.as_deref())
    }

    /// Sets `status`.
    pub fn set_status(&mut self, s: DeploymentStatus) {
        self.status = Some(s.into());
    }

    /// Whether this is the PRIMARY deployment.
    pub fn is_primary(&self) -> bool {
        self.status() == Some(DeploymentStatus::Primary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T>(all: &[T])
    where
        T: Copy + fmt::Debug + PartialEq + fmt::Display + FromStr<Err = String>,
        String: From<T>,
    {
        for &s in all {
            assert_eq!(s.to_string().parse::<T>(), Ok(s));
            assert_eq!(String::from(s), s.to_string());
        }
        assert!("active".parse::<T>().is_err(), "spellings are exact");
    }

    #[test]
    fn every_status_parses_its_own_spelling() {
        round_trip(ClusterStatus::ALL);
        round_trip(InstanceStatus::ALL);
        round_trip(ServiceStatus::ALL);
        round_trip(DeploymentStatus::ALL);
        for s in wire::ContainerInstanceStatus::ALL {
            assert_eq!(InstanceStatus::from(*s).as_str(), s.as_str());
        }
        for s in wire::DesiredStatus::ALL {
            assert_eq!(TaskStatus::from(*s).as_str(), s.as_str());
        }
    }

    #[test]
    fn getters_read_what_setters_write_and_unknown_spellings_read_as_none() {
        let mut t = wire::Task::default();
        assert_eq!((t.last(), t.desired()), (None, None));
        t.set_last(TaskStatus::Pending);
        t.set_desired(TaskStatus::Running);
        assert_eq!(t.last_status.as_deref(), Some(TaskStatus::Pending.as_str()));
        assert_eq!(
            (t.last(), t.desired()),
            (Some(TaskStatus::Pending), Some(TaskStatus::Running))
        );
        let mut s = wire::Service::default();
        s.set_status(ServiceStatus::Draining);
        assert_eq!(s.status(), Some(ServiceStatus::Draining));
        s.status = Some("SOMETHING_NEW".into());
        assert_eq!(s.status(), None);
        let mut d = wire::Deployment::default();
        assert!(!d.is_primary());
        d.set_status(DeploymentStatus::Primary);
        assert!(d.is_primary());
    }
}
