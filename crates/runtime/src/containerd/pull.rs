//! Pulling an image, client-side, the way `ctr image pull` does it (containerd 1.6 has no
//! Transfer service): the pull policy's cache decision, then manifest, config and layers
//! from the registry ([`crate::registry`]) streamed into the Content service under a lease
//! with `containerd.io/gc.ref.*` labels, layers unpacked with Snapshots Prepare → Diff
//! Apply → Commit under their chain IDs, and the image record created (or updated) last.

use std::collections::HashMap;
use std::time::SystemTime;

use containerd_client::services::v1::snapshots::CommitSnapshotRequest;
use containerd_client::services::v1::{
    ApplyRequest, CreateImageRequest, Image, Info as ContentInfo, InfoRequest, UpdateImageRequest,
    UpdateRequest, WriteAction, WriteContentRequest, diff_client::DiffClient,
};
use containerd_client::types::Descriptor as CdDescriptor;
use futures_util::StreamExt as _;
use prost_types::FieldMask;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::{
    ContainerdRuntime, LABEL_LAST_USED, LABEL_MANAGED, LABEL_PULLED_AT, lookup, unique, unix_secs,
};
use crate::error::{Error, Result};
use crate::image::{self, ConfigBlob, Descriptor, Index, Manifest};
use crate::registry::{FetchedManifest, RegistryClient, Session};
use crate::types::{ImageInfo, ImageRef, PullPolicy, RegistryAuth};

/// Size of the pieces a blob is written to the content store in.
const CHUNK: usize = 1024 * 1024;

impl ContainerdRuntime {
    /// Pulls `image` as `policy` says (ECS's `ECS_IMAGE_PULL_BEHAVIOR`): `Once` and
    /// `PreferCached` may serve a usable cached image; `Default` falls back to one when
    /// the registry fails; `Always` never uses the cache.
    pub(super) async fn pull(
        &self,
        image: &ImageRef,
        policy: PullPolicy,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo> {
        let name = image.to_string();
        let existing = self.get_image(&name).await?;
        let pulled_by_us = existing
            .as_ref()
            .is_some_and(|i| i.labels.contains_key(LABEL_PULLED_AT));
        let use_cache = match policy {
            PullPolicy::PreferCached => existing.is_some(),
            PullPolicy::Once => pulled_by_us,
            PullPolicy::Default | PullPolicy::Always => false,
        };
        if use_cache && let Some(img) = &existing {
            match self.cached(img).await {
                Ok(info) => {
                    tracing::debug!(image = %name, ?policy, "image served from cache");
                    return Ok(info);
                }
                Err(e) => {
                    tracing::info!(image = %name, error = %e, "cached image unusable, pulling")
                }
            }
        }
        match self.pull_remote(image, auth, existing.as_ref()).await {
            Ok(info) => Ok(info),
            Err(e) if policy == PullPolicy::Default && existing.is_some() => {
                let Some(img) = existing.as_ref() else {
                    return Err(e);
                };
                match self.cached(img).await {
                    Ok(info) => {
                        tracing::warn!(image = %name, error = %e, "pull failed, using cached image");
                        Ok(info)
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn pull_remote(
        &self,
        image: &ImageRef,
        auth: Option<&RegistryAuth>,
        existing: Option<&Image>,
    ) -> Result<ImageInfo> {
        let name = image.to_string();
        let proto = |detail: String| Error::RegistryProtocol {
            image: name.clone(),
            detail,
        };
        let mut session = self.registry.session(image, auth);
        let mut fetched = self
            .registry
            .manifest(&mut session, image.reference())
            .await?;
        if image::is_index(&fetched.media_type) {
            let idx: Index = serde_json::from_slice(&fetched.bytes)
                .map_err(|e| proto(format!("parse index: {e}")))?;
            let d = idx
                .select("linux", "amd64")
                .ok_or_else(|| proto("the image has no linux/amd64 manifest".into()))?;
            fetched = self.registry.manifest(&mut session, &d.digest).await?;
        }
        if !image::is_manifest(&fetched.media_type) {
            return Err(proto(format!(
                "unsupported manifest media type {}",
                fetched.media_type
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| proto(format!("parse manifest: {e}")))?;

        let lease = self.create_lease("flotilla-pull").await?;
        let result = self
            .pull_with_lease(&lease, &name, &mut session, &manifest, &fetched, existing)
            .await;
        self.delete_lease(&lease).await;
        result
    }

    async fn pull_with_lease(
        &self,
        lease: &str,
        name: &str,
        session: &mut Session,
        manifest: &Manifest,
        fetched: &FetchedManifest,
        existing: Option<&Image>,
    ) -> Result<ImageInfo> {
        let proto = |detail: String| Error::RegistryProtocol {
            image: name.to_owned(),
            detail,
        };
        // Config: small, fetched whole to learn the diff IDs.
        let resp = self.registry.blob(session, &manifest.config.digest).await?;
        let cfg_bytes = resp
            .bytes()
            .await
            .map_err(|e| RegistryClient::stream_error(session, &e))?
            .to_vec();
        if image::sha256_digest(&cfg_bytes) != manifest.config.digest {
            return Err(proto("config blob digest mismatch".into()));
        }
        let config: ConfigBlob =
            serde_json::from_slice(&cfg_bytes).map_err(|e| proto(format!("parse config: {e}")))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(proto(format!(
                "{} layers but {} diff ids",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let chains = image::chain_ids(diff_ids);
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            let labels =
                HashMap::from([("containerd.io/uncompressed".to_owned(), diff_id.clone())]);
            self.ensure_blob(session, lease, name, layer, labels)
                .await?;
        }
        let mut cfg_labels = HashMap::new();
        if let Some(top) = chains.last() {
            cfg_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{}", self.cfg.snapshotter),
                top.clone(),
            );
        }
        self.write_small(lease, name, &manifest.config, cfg_bytes, cfg_labels)
            .await?;
        let mut m_labels = HashMap::from([(
            "containerd.io/gc.ref.content.config".to_owned(),
            manifest.config.digest.clone(),
        )]);
        for (i, l) in manifest.layers.iter().enumerate() {
            m_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            );
        }
        let target = Descriptor {
            media_type: fetched.media_type.clone(),
            digest: fetched.digest.clone(),
            size: i64::try_from(fetched.bytes.len()).unwrap_or(i64::MAX),
            platform: None,
        };
        self.write_small(lease, name, &target, fetched.bytes.clone(), m_labels)
            .await?;
        self.unpack(lease, name, &manifest.layers, diff_ids).await?;
        let stored = self.register_image(name, &target, existing).await?;
        tracing::info!(image = name, digest = %target.digest, "image pulled");
        Ok(Self::image_info(&stored, Some(manifest), false))
    }

    /// Creates the image record pointing at `target` (or updates `existing`, keeping its
    /// labels), marked managed and pulled now.
    async fn register_image(
        &self,
        name: &str,
        target: &Descriptor,
        existing: Option<&Image>,
    ) -> Result<Image> {
        let mut labels: HashMap<String, String> =
            existing.map(|i| i.labels.clone()).unwrap_or_default();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        let now = unix_secs(SystemTime::now());
        labels.insert(LABEL_PULLED_AT.into(), now.clone());
        labels.entry(LABEL_LAST_USED.into()).or_insert(now);
        let record = Image {
            name: name.to_owned(),
            labels,
            target: Some(CdDescriptor {
                media_type: target.media_type.clone(),
                digest: target.digest.clone(),
                size: target.size,
                annotations: HashMap::new(),
            }),
            created_at: None,
            updated_at: None,
        };
        let rerr = |source| Error::RegisterImage {
            image: name.to_owned(),
            source,
        };
        let update = |record: Image| async move {
            self.images()
                .update(self.req(UpdateImageRequest {
                    image: Some(record),
                    update_mask: None,
                    source_date_epoch: None,
                }))
                .await
                .map(|r| r.into_inner().image)
        };
        let stored = if existing.is_some() {
            update(record).await.map_err(rerr)?
        } else {
            match self
                .images()
                .create(self.req(CreateImageRequest {
                    image: Some(record.clone()),
                    source_date_epoch: None,
                }))
                .await
            {
                Ok(r) => r.into_inner().image,
                // Another pull of the same name won the race: update instead.
                Err(s) if s.code() == Code::AlreadyExists => update(record).await.map_err(rerr)?,
                Err(s) => return Err(rerr(s)),
            }
        };
        stored.ok_or_else(|| Error::ReadImage {
            image: name.to_owned(),
            detail: "containerd returned no image record".into(),
        })
    }

    async fn content_exists(&self, digest: &str) -> Result<bool> {
        let r = self
            .content()
            .info(self.req(InfoRequest {
                digest: digest.to_owned(),
            }))
            .await;
        Ok(lookup(r, || format!("content {digest}"))?.is_some())
    }

    async fn set_content_labels(
        &self,
        image: &str,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.content()
            .update(self.req(UpdateRequest {
                info: Some(ContentInfo {
                    digest: digest.to_owned(),
                    labels: labels.clone(),
                    ..ContentInfo::default()
                }),
                update_mask: Some(FieldMask { paths }),
            }))
            .await
            .map_err(|source| Error::WriteContent {
                image: image.to_owned(),
                digest: digest.to_owned(),
                source,
            })?;
        Ok(())
    }

    /// Streams a blob into the content store (lock-step: one response per request).
    async fn write_content<S>(
        &self,
        lease: &str,
        image: &str,
        desc: &Descriptor,
        labels: HashMap<String, String>,
        mut body: S,
    ) -> Result<()>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes>> + Unpin,
    {
        let werr = |source: Status| Error::WriteContent {
            image: image.to_owned(),
            digest: desc.digest.clone(),
            source,
        };
        let (tx, rx) = mpsc::channel::<WriteContentRequest>(2);
        let reference = unique("flotilla-ingest");
        let base = WriteContentRequest {
            action: WriteAction::Write.into(),
            r#ref: reference,
            total: desc.size,
            expected: desc.digest.clone(),
            offset: 0,
            data: Vec::new(),
            labels: HashMap::new(),
        };
        // The first message must be queued before the call: the server reads it before it
        // sends response headers.
        let _ = tx
            .send(WriteContentRequest {
                action: WriteAction::Stat.into(),
                ..base.clone()
            })
            .await;
        let call = self
            .content()
            .write(self.req_lease(ReceiverStream::new(rx), lease))
            .await;
        let mut responses = match call {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(werr(s)),
        };
        let next = |r: std::result::Result<Option<_>, Status>| -> Result<bool> {
            match r {
                Ok(Some(_)) => Ok(true),
                Ok(None) => Ok(false),
                Err(s) if s.code() == Code::AlreadyExists => Ok(false),
                Err(s) => Err(werr(s)),
            }
        };
        if !next(responses.message().await)? {
            return Ok(()); // already exists
        }
        let mut offset: i64 = 0;
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        loop {
            let chunk = body.next().await.transpose()?;
            let done = chunk.is_none();
            if let Some(c) = chunk {
                buf.extend_from_slice(&c);
            }
            while buf.len() >= CHUNK || (done && !buf.is_empty()) {
                let take = buf.len().min(CHUNK);
                let data: Vec<u8> = buf.drain(..take).collect();
                let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                if tx
                    .send(WriteContentRequest {
                        offset,
                        data,
                        ..base.clone()
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                offset += len;
                if !next(responses.message().await)? {
                    return Ok(());
                }
            }
            if done {
                break;
            }
        }
        let _ = tx
            .send(WriteContentRequest {
                action: WriteAction::Commit.into(),
                offset,
                labels,
                ..base.clone()
            })
            .await;
        next(responses.message().await)?;
        drop(tx);
        Ok(())
    }

    /// Makes sure a layer blob is in the content store (with `labels`), fetching it from
    /// the registry when it is not.
    async fn ensure_blob(
        &self,
        session: &mut Session,
        lease: &str,
        image: &str,
        desc: &Descriptor,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if self.content_exists(&desc.digest).await? {
            return self.set_content_labels(image, &desc.digest, &labels).await;
        }
        let resp = self.registry.blob(session, &desc.digest).await?;
        let stream = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| RegistryClient::stream_error(session, &e)));
        // `session` is borrowed by the closure; collect errors lazily.
        let stream = Box::pin(stream);
        self.write_content(lease, image, desc, labels, stream)
            .await?;
        if !self.content_exists(&desc.digest).await? {
            return Err(Error::RegistryProtocol {
                image: image.to_owned(),
                detail: format!("blob {} was not stored", desc.digest),
            });
        }
        Ok(())
    }

    /// Like [`Self::ensure_blob`] for a blob already in memory (config, manifest).
    async fn write_small(
        &self,
        lease: &str,
        image: &str,
        desc: &Descriptor,
        bytes: Vec<u8>,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if self.content_exists(&desc.digest).await? {
            return self.set_content_labels(image, &desc.digest, &labels).await;
        }
        let body = futures_util::stream::iter([Ok(bytes::Bytes::from(bytes))]);
        self.write_content(lease, image, desc, labels, body).await
    }

    /// Unpacks the layers not unpacked yet into committed snapshots named by chain ID,
    /// checking each against the config's diff ID.
    async fn unpack(
        &self,
        lease: &str,
        image: &str,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<()> {
        let chains = image::chain_ids(diff_ids);
        let mut parent = String::new();
        for ((layer, diff_id), chain) in layers.iter().zip(diff_ids).zip(&chains) {
            if self.snapshot_exists(chain).await? {
                parent.clone_from(chain);
                continue;
            }
            let uerr = |source: Status| Error::UnpackLayer {
                image: image.to_owned(),
                layer: layer.digest.clone(),
                source,
            };
            let key = unique("flotilla-extract");
            let mounts = self
                .prepare_snapshot(&key, &parent, lease)
                .await
                .map_err(uerr)?;
            let applied = DiffClient::new(self.channel.clone())
                .apply(self.req_lease(
                    ApplyRequest {
                        diff: Some(CdDescriptor {
                            media_type: layer.media_type.clone(),
                            digest: layer.digest.clone(),
                            size: layer.size,
                            annotations: HashMap::new(),
                        }),
                        mounts,
                        payloads: HashMap::new(),
                        sync_fs: false,
                    },
                    lease,
                ))
                .await;
            let applied = match applied {
                Ok(a) => a.into_inner().applied.map(|d| d.digest).unwrap_or_default(),
                Err(s) => {
                    self.remove_snapshot_quiet(&key).await;
                    return Err(uerr(s));
                }
            };
            if applied != *diff_id {
                self.remove_snapshot_quiet(&key).await;
                return Err(Error::RegistryProtocol {
                    image: image.to_owned(),
                    detail: format!(
                        "layer {} unpacked to {applied}, config says {diff_id}",
                        layer.digest
                    ),
                });
            }
            match self
                .snapshots()
                .commit(self.req_lease(
                    CommitSnapshotRequest {
                        snapshotter: self.cfg.snapshotter.clone(),
                        name: chain.clone(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    },
                    lease,
                ))
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == Code::AlreadyExists => {
                    self.remove_snapshot_quiet(&key).await;
                }
                Err(s) => {
                    self.remove_snapshot_quiet(&key).await;
                    return Err(uerr(s));
                }
            }
            tracing::debug!(image, layer = %layer.digest, chain = %chain, "layer unpacked");
            parent.clone_from(chain);
        }
        Ok(())
    }
}
