//! OCI / Docker image metadata: manifest, index and config shapes (only the fields the
//! runtime needs), platform selection and layer chain IDs. Pure; unit-tested.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// OCI image manifest media type.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// True for the manifest-list / index media types.
#[must_use]
pub fn is_index(media_type: &str) -> bool {
    media_type == MT_OCI_INDEX || media_type == MT_DOCKER_LIST
}

/// True for single-platform manifest media types.
#[must_use]
pub fn is_manifest(media_type: &str) -> bool {
    media_type == MT_OCI_MANIFEST || media_type == MT_DOCKER_MANIFEST
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Platform (index entries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// Platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`, ...
    pub os: String,
    /// `v8`, ...
    #[serde(default)]
    pub variant: Option<String>,
}

/// Image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Media type, when the manifest states it.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Config blob.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// Image index / manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Index {
    /// Per-platform manifests.
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// The manifest for `os`/`arch` (ignores variants).
    #[must_use]
    pub fn select(&self, os: &str, arch: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
    }
}

/// The `config` part of an image config blob.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `K=V` environment.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// User.
    #[serde(default)]
    pub user: Option<String>,
    /// Stop signal.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// Root filesystem of an image config blob.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct RootFs {
    /// Uncompressed layer digests, base first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// An image config blob.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ConfigBlob {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Runtime defaults.
    #[serde(default)]
    pub config: Option<ImageConfig>,
    /// Layer diff IDs.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// `sha256:<hex>` of `data`.
#[must_use]
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Chain IDs for the layers with these diff IDs: `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])` (OCI image spec, "ChainID").
#[must_use]
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parses_manifest_index_and_config() {
        let idx: Index = serde_json::from_str(
            r#"{"manifests":[
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1","size":1,"platform":{"architecture":"arm64","os":"linux"}},
              {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2","size":2,"platform":{"architecture":"amd64","os":"linux"}}]}"#,
        )
        .unwrap();
        assert_eq!(idx.select("linux", "amd64").unwrap().digest, "sha256:2");
        assert!(idx.select("windows", "amd64").is_none());
        let m: Manifest = serde_json::from_str(
            r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:c","size":3},"layers":[{"mediaType":"l","digest":"sha256:l","size":4}]}"#,
        )
        .unwrap();
        assert_eq!(m.layers.len(), 1);
        let c: ConfigBlob = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["httpd"],"Env":["A=1"],"StopSignal":"SIGINT"},"rootfs":{"type":"layers","diff_ids":["sha256:d"]}}"#,
        )
        .unwrap();
        let cfg = c.config.unwrap();
        assert_eq!(cfg.entrypoint.unwrap(), vec!["httpd".to_owned()]);
        assert_eq!(cfg.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(c.rootfs.diff_ids, vec!["sha256:d".to_owned()]);
        assert!(is_index(MT_DOCKER_LIST) && is_manifest(MT_DOCKER_MANIFEST));
    }
}
