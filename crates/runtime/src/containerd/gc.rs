//! Garbage collection on containerd: gathers the facts [`crate::gc::plan`] decides on
//! (containers with their states, images with their last-used labels), carries the plan
//! out through the ordinary remove calls (which re-check use), then removes stale active
//! snapshots no container owns. containerd's own GC then collects the content and layer
//! snapshots nothing references any more.

use std::collections::HashSet;
use std::time::SystemTime;

use containerd_client::services::v1::snapshots::{Kind as SnapshotKind, ListSnapshotsRequest};

use super::{ContainerdRuntime, LABEL_LAST_USED, LABEL_PULLED_AT, parse_unix_secs, query, ts};
use crate::error::Result;
use crate::gc::{self, GcImage};
use crate::types::{GcPolicy, GcReport, ImageRef};

impl ContainerdRuntime {
    /// One GC pass at `now` (see the module docs).
    pub(super) async fn collect_garbage(
        &self,
        policy: &GcPolicy,
        now: SystemTime,
    ) -> Result<GcReport> {
        let containers = self.list().await?;
        let gc_images: Vec<GcImage> = self
            .image_records()
            .await?
            .iter()
            .map(|i| GcImage {
                name: i.name.clone(),
                last_used: parse_unix_secs(i.labels.get(LABEL_LAST_USED))
                    .or_else(|| parse_unix_secs(i.labels.get(LABEL_PULLED_AT))),
            })
            .collect();
        let plan = gc::plan(&containers, &gc_images, policy, now);
        let mut report = GcReport::default();
        for id in plan.containers {
            match self.remove(&id).await {
                Ok(()) => report.containers.push(id),
                Err(e) => tracing::warn!(%id, error = %e, "gc: remove container"),
            }
        }
        for name in plan.images {
            let Ok(r) = ImageRef::parse(&name) else {
                continue;
            };
            // delete_image re-checks use, so a container created meanwhile keeps it.
            match self.delete_image(&r).await {
                Ok(()) => report.images.push(name),
                Err(e) => tracing::info!(image = %name, error = %e, "gc: keep image"),
            }
        }
        for key in self.orphan_snapshots(policy, now).await? {
            self.remove_snapshot_quiet(&key).await;
            report.snapshots.push(key);
        }
        tracing::info!(
            containers = report.containers.len(),
            images = report.images.len(),
            snapshots = report.snapshots.len(),
            "garbage collection done"
        );
        Ok(report)
    }

    /// Active snapshots with no container: leftovers of creates or extractions that died
    /// half-way. Only ones older than the container age, so in-flight work is safe.
    async fn orphan_snapshots(&self, policy: &GcPolicy, now: SystemTime) -> Result<Vec<String>> {
        let known: HashSet<String> = self
            .list()
            .await?
            .into_iter()
            .map(|c| c.id.to_string())
            .collect();
        let mut stream = self
            .snapshots()
            .list(self.req(ListSnapshotsRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                filters: Vec::new(),
            }))
            .await
            .map_err(query("snapshots"))?
            .into_inner();
        let mut orphans = Vec::new();
        while let Some(batch) = stream.message().await.map_err(query("snapshots"))? {
            for s in batch.info {
                let active = s.kind == SnapshotKind::Active as i32;
                let old = ts(s.created_at.as_ref())
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|d| d >= policy.stopped_container_age);
                if active && old && !known.contains(&s.name) {
                    orphans.push(s.name);
                }
            }
        }
        Ok(orphans)
    }
}
