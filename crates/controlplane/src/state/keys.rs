//! The keys of the control plane's records: every key starts with a [`Scope`] (account
//! + region), then names the cluster and the member, as named fields.

use model::arn::{Arn, ResourceType};
use model::shared_str::SharedStr;
use serde::{Deserialize, Serialize};

/// The account and region a request acts in; the first part of every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// 12-digit AWS account id (shared: every record of the account holds the same).
    pub account: SharedStr,
    /// Region, from the request's SigV4 credential scope.
    pub region: SharedStr,
}

impl Scope {
    /// A scope.
    pub fn new(account: impl Into<SharedStr>, region: impl Into<SharedStr>) -> Scope {
        Scope {
            account: account.into(),
            region: region.into(),
        }
    }

    /// The ARN of a resource in this scope.
    pub fn arn(&self, kind: ResourceType, resource: impl Into<String>) -> String {
        Arn::new(&self.region, &self.account, kind, resource).to_string()
    }
}

/// Key of a cluster. Keys order by their fields in declaration order, so one scope's
/// clusters are a contiguous range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterKey {
    /// Where it lives.
    pub scope: Scope,
    /// The cluster's name.
    pub name: String,
}

impl ClusterKey {
    /// The key of cluster `name` in `scope`.
    pub fn new(scope: &Scope, name: &str) -> ClusterKey {
        ClusterKey {
            scope: scope.clone(),
            name: name.to_owned(),
        }
    }
}

/// Key of a container instance or task: a member of a cluster, by id. Keys order by
/// scope, cluster, id, so one cluster's members are a contiguous range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberKey {
    /// Where it lives.
    pub scope: Scope,
    /// The cluster's name.
    pub cluster: String,
    /// The container instance or task id (the last part of its ARN).
    pub id: String,
}

impl MemberKey {
    /// The key of member `id` of `cluster` in `scope`.
    pub fn new(scope: &Scope, cluster: &str, id: &str) -> MemberKey {
        MemberKey {
            scope: scope.clone(),
            cluster: cluster.to_owned(),
            id: id.to_owned(),
        }
    }
}

/// Key of a service. Keys order by scope, cluster, name, so one cluster's services are a
/// contiguous range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Where it lives.
    pub scope: Scope,
    /// The cluster's name.
    pub cluster: String,
    /// The service's name.
    pub name: String,
}

impl ServiceKey {
    /// The key of service `name` of `cluster` in `scope`.
    pub fn new(scope: &Scope, cluster: &str, name: &str) -> ServiceKey {
        ServiceKey {
            scope: scope.clone(),
            cluster: cluster.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// Key of a task definition: scope, family, revision.
pub type TaskDefKey = (Scope, String, i32);
/// Key of an account setting: scope, principal ARN, setting name.
pub type SettingKey = (Scope, String, String);
/// Key of a capacity provider: scope, name.
pub type CapacityProviderKey = (Scope, String);
