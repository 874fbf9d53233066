//! Leases and snapshots: the containerd storage primitives that pulls (layer unpacking)
//! and container creation (the writable snapshot) share.
//!
//! containerd garbage-collects, after any deletion in any namespace, every object nothing
//! references. A lease is such a reference for objects still being assembled: what is
//! created under it survives until the lease is deleted (or expires, an hour later, should
//! the agent die first).

use std::collections::HashMap;

use containerd_client::services::v1::snapshots::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{CreateRequest, DeleteRequest, leases_client::LeasesClient};
use containerd_client::types::Mount;
use tonic::{Code, Status};

use super::{ContainerdRuntime, lookup, query, unique};
use crate::error::Result;

impl ContainerdRuntime {
    /// Whether a snapshot (committed layer or active container snapshot) exists.
    pub(super) async fn snapshot_exists(&self, key: &str) -> Result<bool> {
        let r = self
            .snapshots()
            .stat(self.req(StatSnapshotRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await;
        Ok(lookup(r, || format!("snapshot {key}"))?.is_some())
    }

    /// A lease protecting what is created under it from containerd's GC until deleted
    /// (or for an hour, should we die first).
    pub(super) async fn create_lease(&self, prefix: &str) -> Result<String> {
        let lease = unique(prefix);
        let expire = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        let expire = expire
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        LeasesClient::new(self.channel.clone())
            .create(self.req(CreateRequest {
                id: lease.clone(),
                labels: HashMap::from([("containerd.io/gc.expire".to_owned(), expire)]),
            }))
            .await
            .map_err(query("create lease"))?;
        Ok(lease)
    }

    /// Releases a lease; what it protected is from now on kept only by references.
    pub(super) async fn delete_lease(&self, lease: &str) {
        if let Err(e) = LeasesClient::new(self.channel.clone())
            .delete(self.req(DeleteRequest {
                id: lease.to_owned(),
                sync: false,
            }))
            .await
        {
            tracing::warn!(lease, error = %e.message(), "delete lease");
        }
    }

    /// Prepares an active snapshot `key` on top of `parent` (empty: none), under `lease`,
    /// and returns its mounts.
    pub(super) async fn prepare_snapshot(
        &self,
        key: &str,
        parent: &str,
        lease: &str,
    ) -> Result<Vec<Mount>, Status> {
        Ok(self
            .snapshots()
            .prepare(self.req_lease(
                PrepareSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    key: key.to_owned(),
                    parent: parent.to_owned(),
                    labels: HashMap::new(),
                },
                lease,
            ))
            .await?
            .into_inner()
            .mounts)
    }

    /// Removes a snapshot if it exists; failures are logged, not returned (callers are
    /// cleaning up after something else).
    pub(super) async fn remove_snapshot_quiet(&self, key: &str) {
        if let Err(e) = self
            .snapshots()
            .remove(self.req(RemoveSnapshotRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: key.to_owned(),
            }))
            .await
            && e.code() != Code::NotFound
        {
            tracing::warn!(key, error = %e.message(), "remove snapshot");
        }
    }
}
