//! Image records once they are in containerd: reading one back (record → manifest →
//! config → chain IDs), whether a cached one is still usable, listing and removing the
//! runtime's images, and the last-used label GC ages them by. Getting them there is
//! `pull`'s job.

use std::collections::HashMap;
use std::time::SystemTime;

use containerd_client::services::v1::{
    DeleteImageRequest, GetImageRequest, Image, ListImagesRequest, ReadContentRequest,
    UpdateImageRequest,
};
use prost_types::FieldMask;

use super::{ContainerdRuntime, LABEL_LAST_USED, LABEL_MANAGED, found, lookup, query, unix_secs};
use crate::error::{Error, Result};
use crate::image::{self, ConfigBlob, Index, Manifest};
use crate::types::{ImageInfo, ImageRef};

impl ContainerdRuntime {
    /// The image record named `name`, if there is one.
    pub(super) async fn get_image(&self, name: &str) -> Result<Option<Image>> {
        let r = self
            .images()
            .get(self.req(GetImageRequest {
                name: name.to_owned(),
            }))
            .await;
        Ok(lookup(r, || format!("image {name}"))?.and_then(|r| r.image))
    }

    /// The records of every image this runtime manages.
    pub(super) async fn image_records(&self) -> Result<Vec<Image>> {
        Ok(self
            .images()
            .list(self.req(ListImagesRequest {
                filters: vec![format!("labels.\"{LABEL_MANAGED}\"==true")],
            }))
            .await
            .map_err(query("images"))?
            .into_inner()
            .images)
    }

    /// Every image this runtime manages, with sizes where its manifest is readable.
    pub(super) async fn managed_images(&self) -> Result<Vec<ImageInfo>> {
        let images = self.image_records().await?;
        let mut out = Vec::with_capacity(images.len());
        for img in &images {
            let manifest = self.image_meta(img).await.ok().map(|(m, _, _)| m);
            out.push(Self::image_info(img, manifest.as_ref(), true));
        }
        Ok(out)
    }

    async fn read_blob(&self, image: &str, digest: &str) -> Result<Vec<u8>> {
        let read_err = |e: tonic::Status| Error::ReadImage {
            image: image.to_owned(),
            detail: format!("read {digest}: {}", e.message()),
        };
        let mut stream = self
            .content()
            .read(self.req(ReadContentRequest {
                digest: digest.to_owned(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(read_err)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(read_err)? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Manifest, config and chain IDs of a stored image.
    pub(super) async fn image_meta(
        &self,
        img: &Image,
    ) -> Result<(Manifest, ConfigBlob, Vec<String>)> {
        let name = img.name.as_str();
        let target = img.target.as_ref().ok_or_else(|| Error::ReadImage {
            image: name.to_owned(),
            detail: "image record has no target".into(),
        })?;
        let json_err = |what: &str, e: serde_json::Error| Error::ReadImage {
            image: name.to_owned(),
            detail: format!("parse {what}: {e}"),
        };
        let mut bytes = self.read_blob(name, &target.digest).await?;
        if image::is_index(&target.media_type) {
            let idx: Index = serde_json::from_slice(&bytes).map_err(|e| json_err("index", e))?;
            let d = idx
                .select("linux", "amd64")
                .ok_or_else(|| Error::ReadImage {
                    image: name.to_owned(),
                    detail: "no linux/amd64 manifest".into(),
                })?;
            bytes = self.read_blob(name, &d.digest).await?;
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| json_err("manifest", e))?;
        let cfg_bytes = self.read_blob(name, &manifest.config.digest).await?;
        let config: ConfigBlob =
            serde_json::from_slice(&cfg_bytes).map_err(|e| json_err("config", e))?;
        let chains = image::chain_ids(&config.rootfs.diff_ids);
        Ok((manifest, config, chains))
    }

    pub(super) fn image_info(
        img: &Image,
        manifest: Option<&Manifest>,
        from_cache: bool,
    ) -> ImageInfo {
        let target = img.target.clone().unwrap_or_default();
        let layers: i64 = manifest.map_or(0, |m| {
            m.config.size + m.layers.iter().map(|l| l.size).sum::<i64>()
        });
        ImageInfo {
            name: img.name.clone(),
            digest: target.digest,
            size: u64::try_from(target.size + layers).unwrap_or(0),
            from_cache,
            labels: img.labels.clone().into_iter().collect(),
        }
    }

    /// A stored image as a pull served from the cache returns it, or
    /// [`Error::ImageNotPresent`] when its layers were garbage-collected meanwhile.
    pub(super) async fn cached(&self, img: &Image) -> Result<ImageInfo> {
        let (manifest, _, chains) = self.image_meta(img).await?;
        if let Some(top) = chains.last()
            && !self.snapshot_exists(top).await?
        {
            return Err(Error::ImageNotPresent {
                image: format!("{} (layers not unpacked)", img.name),
            });
        }
        Ok(Self::image_info(img, Some(&manifest), true))
    }

    /// Sets the image's last-used label to now (a container was just created from it).
    pub(super) async fn touch_image(&self, name: &str) {
        let labels = HashMap::from([(LABEL_LAST_USED.to_owned(), unix_secs(SystemTime::now()))]);
        if let Err(e) = self
            .images()
            .update(self.req(UpdateImageRequest {
                image: Some(Image {
                    name: name.to_owned(),
                    labels,
                    ..Image::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec![format!("labels.{LABEL_LAST_USED}")],
                }),
                source_date_epoch: None,
            }))
            .await
        {
            tracing::warn!(image = name, error = %e.message(), "update image last-used label");
        }
    }

    /// Removes an image no container uses; a missing image is not an error.
    pub(super) async fn delete_image(&self, image: &ImageRef) -> Result<()> {
        let name = image.to_string();
        let users = self.container_records(format!("image=={name}")).await?;
        if let Some(c) = users.into_iter().find(|c| c.image == name) {
            return Err(Error::ImageInUse {
                image: name,
                container: c.id,
            });
        }
        let deleted = self
            .images()
            .delete(self.req(DeleteImageRequest {
                name: name.clone(),
                sync: true,
                target: None,
            }))
            .await;
        match found(deleted) {
            Ok(Some(_)) => {
                tracing::info!(image = %name, "image removed");
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(source) => Err(Error::RemoveImage {
                image: name,
                source,
            }),
        }
    }
}
