//! A service's deployment history (`ListServiceDeployments`, `DescribeServiceDeployments`,
//! `DescribeServiceRevisions`): one [`ServiceDeploymentRecord`] per service deployment
//! and one [`ServiceRevisionRecord`] per service revision, each its own stored record,
//! kept by `crate::service_deployments` (at most
//! `crate::service_deployments::MAX_HISTORY_PER_SERVICE` of each per service).

use std::collections::BTreeMap;

use model::wire;
use serde::{Deserialize, Serialize};

use super::keys::{Scope, ServiceKey};

/// One service deployment: the move of a service to a target revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDeploymentRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub service: String,
    /// Its id (the last part of its ARN).
    pub id: String,
    /// Creation order within the service (1, 2, …): newest first in listings.
    pub seq: u64,
    /// The id (`ecs-svc/…`) of the service's deployment it rolls out.
    pub target: String,
    /// The ids of the deployments it replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// During and after a rollback: the id of the deployment it rolled back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
    /// As DescribeServiceDeployments shows it; revision task counts are filled in at
    /// describe time while it is not finished, and frozen here once it is.
    pub deployment: wire::ServiceDeployment,
}

/// One service revision: the service's configuration a deployment rolls out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRevisionRecord {
    /// Where it lives.
    pub scope: Scope,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub service: String,
    /// Its id (the last part of its ARN).
    pub id: String,
    /// Creation order within the service (1, 2, …).
    pub seq: u64,
    /// The id (`ecs-svc/…`) of the service's deployment it describes.
    pub deployment_id: String,
    /// As DescribeServiceRevisions shows it.
    pub revision: wire::ServiceRevision,
}

/// Key of a history record: its service, then its id.
pub type HistoryKey = (ServiceKey, String);

/// Every service's deployments and revisions.
#[derive(Debug, Clone, Default)]
pub struct ServiceHistory {
    /// Service deployments.
    pub deployments: BTreeMap<HistoryKey, ServiceDeploymentRecord>,
    /// Service revisions.
    pub revisions: BTreeMap<HistoryKey, ServiceRevisionRecord>,
}

fn range<'a, T>(
    map: &'a BTreeMap<HistoryKey, T>,
    key: &ServiceKey,
) -> impl Iterator<Item = &'a T> + use<'a, T> {
    let key = key.clone();
    map.range((key.clone(), String::new())..)
        .take_while(move |((k, _), _)| *k == key)
        .map(|(_, v)| v)
}

impl ServiceHistory {
    /// The service deployments of `key`'s service (in id order).
    pub fn deployments_of<'a>(
        &'a self,
        key: &ServiceKey,
    ) -> impl Iterator<Item = &'a ServiceDeploymentRecord> + use<'a> {
        range(&self.deployments, key)
    }

    /// The service revisions of `key`'s service (in id order).
    pub fn revisions_of<'a>(
        &'a self,
        key: &ServiceKey,
    ) -> impl Iterator<Item = &'a ServiceRevisionRecord> + use<'a> {
        range(&self.revisions, key)
    }
}

impl ServiceDeploymentRecord {
    /// Its key.
    pub fn key(&self) -> HistoryKey {
        (
            ServiceKey::new(&self.scope, &self.cluster, &self.service),
            self.id.clone(),
        )
    }
}

impl ServiceRevisionRecord {
    /// Its key.
    pub fn key(&self) -> HistoryKey {
        (
            ServiceKey::new(&self.scope, &self.cluster, &self.service),
            self.id.clone(),
        )
    }
}
