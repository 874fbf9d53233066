//! Host and bootstrap containers: what `settings.host-containers.*` and
//! `settings.bootstrap-containers.*` become, and who runs them.
//!
//! Two backends, chosen by the slot's `image.toml` ([`updater::image::ContainersSpec`]):
//!
//! * **containerd** (the default): each container is a [`ContainerSpec`] run by the `runtime`
//!   crate's [`runtime::ContainerdRuntime`] in the host's own containerd namespaces
//!   ([`DEFAULT_NAMESPACE`] for host containers, `<namespace>-bootstrap` for bootstrap
//!   containers), never in the agent's task namespace. The pure part lives here
//!   ([`container_spec`], [`config_digest`]); the engine that keeps containerd in line with the
//!   settings (adoption after a host-layer restart, restart on change, back-off) lives in
//!   [`engine`].
//! * **runner command** (`[containers] command`, a fallback for images without containerd):
//!   `boot::Supervisor` runs it as a child process, as before.
//!
//! What a container gets (like Bottlerocket's `host-ctr`):
//!
//! | | every container | `superpowered` (and every bootstrap container) |
//! | --- | --- | --- |
//! | network | host | host |
//! | PID namespace | own | host |
//! | capabilities | Docker's default set | all |
//! | devices | none but the defaults | all, host `/dev` at `/dev` |
//! | host root | — | `/` at [`ROOTFS`] |
//! | API socket | `--socket` at [`API_SOCKET`]; the restart-proof one in [`API_DIR`] | same |
//! | storage | `DATA/{host,bootstrap}-containers/NAME` at `/.bottlerocket/{host,bootstrap}-containers/current` (with `user-data`, decoded) | same |
//! | environment | `FLOTILLA_CONTAINER_{TYPE,NAME,SOURCE,USER_DATA}`, `FLOTILLA_API_SOCKET` | same |

pub mod engine;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runtime::{BindMount, ContainerId, ContainerSpec, ImageRef, NetworkMode};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// containerd socket used when `flotilla host boot` is given none.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// containerd namespace of host containers (bootstrap containers: `<namespace>-bootstrap`).
pub const DEFAULT_NAMESPACE: &str = "flotilla-host";
/// Container label: `host` or `bootstrap`.
pub const LABEL_KIND: &str = "flotilla.host/kind";
/// Container label: the settings name of the container.
pub const LABEL_NAME: &str = "flotilla.host/name";
/// Container label: [`config_digest`] of the spec it was created from.
pub const LABEL_DIGEST: &str = "flotilla.host/config-digest";
/// Where the API socket (`--socket`) is bind-mounted in every container, as in Bottlerocket.
/// A bind mount holds the socket file itself, so this one goes stale when the host layer
/// restarts while the container keeps running; [`API_DIR`] does not.
pub const API_SOCKET: &str = "/run/api.sock";
/// Directory (bind-mounted from `DATA/host-api/`) holding a second listener of the API,
/// `api.sock`, re-created by every host-layer start: the path `FLOTILLA_API_SOCKET` names.
pub const API_DIR: &str = "/.flotilla/api";
/// Where a superpowered container sees the host's root file system.
pub const ROOTFS: &str = "/.bottlerocket/rootfs";

/// Which kind of container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `settings.host-containers.<name>`: long-running, supervised.
    Host,
    /// `settings.bootstrap-containers.<name>`: run to completion at boot.
    Bootstrap,
}

impl Kind {
    /// `host` / `bootstrap`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Bootstrap => "bootstrap",
        }
    }
}

/// How to reach containerd (`flotilla host boot --containerd-*`).
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// containerd's gRPC socket.
    pub socket: PathBuf,
    /// Namespace of host containers; bootstrap containers use `<namespace>-bootstrap`.
    pub namespace: String,
    /// The `flotilla-runtime-logger` binary containerd's shim runs for container output.
    pub logger: PathBuf,
}

impl ContainerdOptions {
    /// Defaults: [`DEFAULT_SOCKET`], [`DEFAULT_NAMESPACE`], the logger next to this binary.
    #[must_use]
    pub fn new() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            logger: std::env::current_exe()
                .map(|e| e.with_file_name("flotilla-runtime-logger"))
                .unwrap_or_else(|_| PathBuf::from("flotilla-runtime-logger")),
        }
    }
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// The host paths containers see.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The API socket (`--socket`), mounted at [`API_SOCKET`].
    pub api_socket: PathBuf,
    /// `DATA/host-api/`: the stable second listener, mounted at [`API_DIR`].
    pub api_dir: PathBuf,
    /// The node's persistent data directory (storage of each container under it).
    pub data: PathBuf,
}

impl Layout {
    /// Persistent storage of one container: `DATA/{host,bootstrap}-containers/NAME`.
    #[must_use]
    pub fn storage(&self, kind: Kind, name: &str) -> PathBuf {
        self.data
            .join(format!("{}-containers", kind.as_str()))
            .join(name)
    }

    /// The second API listener's socket path.
    #[must_use]
    pub fn stable_api_socket(&self) -> PathBuf {
        self.api_dir.join("api.sock")
    }
}

/// One container as the settings describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Host or bootstrap.
    pub kind: Kind,
    /// Settings name (`[A-Za-z0-9-]{1,76}`): the container id.
    pub name: String,
    /// Image reference.
    pub source: String,
    /// Privileged with the host's root and PID namespace.
    pub superpowered: bool,
    /// Base64 user-data, as set.
    pub user_data: Option<String>,
}

/// The host containers the settings want running (`enabled = true`), by name.
#[must_use]
pub fn desired_host_containers(s: &crate::settings::Settings) -> Vec<Desired> {
    s.host_containers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, hc)| hc.enabled.unwrap_or(false))
        .map(|(name, hc)| Desired {
            kind: Kind::Host,
            name: name.to_string(),
            source: hc
                .source
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            superpowered: hc.superpowered.unwrap_or(false),
            user_data: hc.user_data.as_ref().map(|u| u.as_str().to_owned()),
        })
        .collect()
}

/// The environment every container gets (both backends; `api_socket` is the path as the
/// container sees it).
#[must_use]
pub fn container_env(d: &Desired, api_socket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FLOTILLA_CONTAINER_TYPE", d.kind.as_str().to_owned()),
        ("FLOTILLA_CONTAINER_NAME", d.name.clone()),
        ("FLOTILLA_CONTAINER_SOURCE", d.source.clone()),
        (
            "FLOTILLA_CONTAINER_USER_DATA",
            d.user_data.clone().unwrap_or_default(),
        ),
        ("FLOTILLA_API_SOCKET", api_socket.to_owned()),
    ]
}

fn bind(host: impl Into<PathBuf>, container: &str, read_only: bool) -> BindMount {
    BindMount {
        host_path: host.into(),
        container_path: container.to_owned(),
        read_only,
    }
}

/// The containerd spec of one container (pure). Bootstrap containers are always
/// superpowered, as in Bottlerocket (they exist to prepare the host).
///
/// # Errors
/// [`Error::Container`] for a name containerd does not accept or a bad image reference.
pub fn container_spec(d: &Desired, layout: &Layout) -> Result<ContainerSpec> {
    let err = |source| Error::Container {
        name: d.name.clone(),
        source,
    };
    let id = ContainerId::new(d.name.clone()).map_err(err)?;
    let image = ImageRef::parse(&d.source).map_err(err)?;
    let mut spec = ContainerSpec::new(id, image);
    let api = format!("{API_DIR}/api.sock");
    spec.environment = container_env(d, &api)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    spec.network = NetworkMode::Host;
    let storage = format!("/.bottlerocket/{}-containers/current", d.kind.as_str());
    spec.mounts = vec![
        bind(&layout.api_socket, API_SOCKET, false),
        bind(&layout.api_dir, API_DIR, true),
        bind(layout.storage(d.kind, &d.name), &storage, false),
    ];
    if d.superpowered || d.kind == Kind::Bootstrap {
        spec.privileged = true;
        spec.host_pid = true;
        spec.mounts.push(bind("/dev", "/dev", false));
        spec.mounts.push(bind("/", ROOTFS, false));
    }
    spec.labels = BTreeMap::from([
        (LABEL_KIND.to_owned(), d.kind.as_str().to_owned()),
        (LABEL_NAME.to_owned(), d.name.clone()),
    ]);
    let digest = config_digest(&spec);
    spec.labels.insert(LABEL_DIGEST.to_owned(), digest);
    Ok(spec)
}

/// sha256 (hex) of everything in `spec` that makes the container what it is (image, argv,
/// environment, mounts, network, privileges, labels but this one). Stored as
/// [`LABEL_DIGEST`]: a running container with the same digest is adopted, any other is
/// replaced.
#[must_use]
pub fn config_digest(spec: &ContainerSpec) -> String {
    let labels: BTreeMap<&String, &String> = spec
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != LABEL_DIGEST)
        .collect();
    let mounts: Vec<_> = spec
        .mounts
        .iter()
        .map(|m| {
            (
                m.host_path.display().to_string(),
                &m.container_path,
                m.read_only,
            )
        })
        .collect();
    let doc = serde_json::json!({
        "v": 1,
        "id": spec.id.as_str(),
        "image": [&spec.image.registry, &spec.image.repository, spec.image.reference()],
        "entry-point": spec.entry_point,
        "command": spec.command,
        "environment": spec.environment,
        "mounts": mounts,
        "network": format!("{:?}", spec.network),
        "privileged": spec.privileged,
        "host-pid": spec.host_pid,
        "labels": labels,
    });
    Sha256::digest(doc.to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates the container's storage directory and writes its decoded user-data there
/// (`user-data`, mode 0600; removed when unset).
///
/// # Errors
/// [`Error::Boot`] on IO failures.
pub fn prepare_storage(d: &Desired, layout: &Layout) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = layout.storage(d.kind, &d.name);
    let io = |e: std::io::Error, p: &Path| Error::Boot(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
    std::fs::create_dir_all(&layout.api_dir).map_err(|e| io(e, &layout.api_dir))?;
    let file = dir.join("user-data");
    match &d.user_data {
        Some(b64) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_else(|_| b64.as_bytes().to_vec());
            updater::fsutil::write_atomic(&file, &bytes)
                .map_err(|e| Error::Boot(format!("{}: {e}", file.display())))?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io(e, &file))?;
        }
        None => {
            let _ = std::fs::remove_file(&file);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            api_socket: "/node/run/api.sock".into(),
            api_dir: "/node/data/host-api".into(),
            data: "/node/data".into(),
        }
    }

    fn desired(superpowered: bool) -> Desired {
        Desired {
            kind: Kind::Host,
            name: "admin".into(),
            source: "127.0.0.1:5000/admin:1".into(),
            superpowered,
            user_data: Some("aGk=".into()),
        }
    }

    fn dest(spec: &ContainerSpec) -> Vec<&str> {
        spec.mounts
            .iter()
            .map(|m| m.container_path.as_str())
            .collect()
    }

    #[test]
    fn plain_host_container() {
        let s = container_spec(&desired(false), &layout()).unwrap();
        assert_eq!(s.id.as_str(), "admin");
        assert!(!s.privileged && !s.host_pid);
        assert_eq!(s.network, NetworkMode::Host);
        assert_eq!(
            dest(&s),
            [
                API_SOCKET,
                API_DIR,
                "/.bottlerocket/host-containers/current"
            ]
        );
        assert_eq!(s.environment["FLOTILLA_CONTAINER_USER_DATA"], "aGk=");
        assert_eq!(
            s.environment["FLOTILLA_API_SOCKET"],
            "/.flotilla/api/api.sock"
        );
        assert_eq!(s.labels[LABEL_KIND], "host");
        assert_eq!(s.labels[LABEL_DIGEST], config_digest(&s));
        assert_eq!(
            s.mounts[2].host_path,
            PathBuf::from("/node/data/host-containers/admin")
        );
    }

    #[test]
    fn superpowered_and_bootstrap_get_the_host() {
        let s = container_spec(&desired(true), &layout()).unwrap();
        assert!(s.privileged && s.host_pid);
        assert!(dest(&s).contains(&ROOTFS) && dest(&s).contains(&"/dev"));
        let mut b = desired(false);
        b.kind = Kind::Bootstrap;
        let s = container_spec(&b, &layout()).unwrap();
        assert!(s.privileged && dest(&s).contains(&ROOTFS));
        assert!(dest(&s).contains(&"/.bottlerocket/bootstrap-containers/current"));
    }

    #[test]
    fn digest_changes_with_config_only() {
        let a = container_spec(&desired(false), &layout()).unwrap();
        let again = container_spec(&desired(false), &layout()).unwrap();
        assert_eq!(a.labels[LABEL_DIGEST], again.labels[LABEL_DIGEST]);
        let mut d = desired(false);
        d.user_data = Some("aG8=".into());
        let ud = container_spec(&d, &layout()).unwrap();
        assert_ne!(a.labels[LABEL_DIGEST], ud.labels[LABEL_DIGEST]);
        let sp = container_spec(&desired(true), &layout()).unwrap();
        assert_ne!(a.labels[LABEL_DIGEST], sp.labels[LABEL_DIGEST]);
        let mut d = desired(false);
        d.source = "127.0.0.1:5000/admin:2".into();
        let src = container_spec(&d, &layout()).unwrap();
        assert_ne!(a.labels[LABEL_DIGEST], src.labels[LABEL_DIGEST]);
    }

    #[test]
    fn bad_source_is_an_error_naming_the_container() {
        let mut d = desired(false);
        d.source = String::new();
        let e = container_spec(&d, &layout()).unwrap_err();
        assert!(e.to_string().contains("admin"), "{e}");
    }
}
