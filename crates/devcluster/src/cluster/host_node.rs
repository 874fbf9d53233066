//! A node booted by the host layer (`up --os-repo`): instead of a bare agent, the node
//! runs an init loop — `flotilla host boot` again whenever it exits, as systemd's
//! `Restart=always` does on a real node — and the host layer starts the agent from the
//! running slot's own binary, with its settings rendered from the node's user-data.
//!
//! On first boot the node directory gets the cluster's node image in slot A
//! (`flotilla host install`), its identity (`data/node-id` = the instance id the dev
//! cluster expects) and a user-data file naming the control plane, the cluster, the
//! node's zone and the TUF repository. The agent's per-node flags (containerd socket,
//! runc root, cgroup parent, task DNS, log shipper) travel as `FLOTILLA_AGENT_*`
//! environment variables through the host layer, which passes its environment on.

use std::net::IpAddr;
use std::path::Path;

use super::mkdir;
use crate::error::{Error, Result};
use crate::host;
use crate::spec::{ClusterSpec, ECS_CLUSTER, OsSpec, REGION};

/// The init loop: boot, and boot again when the boot step exits (a reboot, a failed
/// boot health check, a crash), one second later.
const INIT_LOOP: &str = r#"while :; do
  "$0" host boot --node-root "$1" --socket "$2" --user-data "$1/user-data.toml" --containerd-socket "$3"
  echo "flotilla-init: host boot exited with status $?; booting again"
  sleep 1
done"#;

/// Node `i`'s user-data: the control plane, the cluster, the node's attributes, and
/// where updates come from.
#[must_use]
pub fn user_data(spec: &ClusterSpec, i: u8, os: &OsSpec) -> String {
    let repo = os.repo.display();
    format!(
        r#"[settings.ecs]
endpoint = "{endpoint}"
cluster = "{ECS_CLUSTER}"

[settings.ecs.instance-attributes]
"ecs.availability-zone" = "{zone}"
"flotilla.dev-node" = "{i}"

[settings.updates]
metadata-base-url = "file://{repo}/metadata"
targets-base-url = "file://{repo}/targets"
"#,
        endpoint = spec.endpoint(),
        zone = ClusterSpec::zone(i),
    )
}

/// Installs the node image into slot A of a new node, with its identity and user-data.
/// A node already installed is left as it is (its slots, flags and settings are its
/// own now).
fn install(spec: &ClusterSpec, i: u8, bin: &Path, os: &OsSpec) -> Result<bool> {
    let root = spec.host_root(i);
    if root.join("partition.json").exists() {
        return Ok(false);
    }
    mkdir(&root.join("data"))?;
    let node_id = root.join("data").join("node-id");
    std::fs::write(&node_id, spec.instance_id(i)).map_err(Error::io("cannot write", &node_id))?;
    let ud = root.join("user-data.toml");
    std::fs::write(&ud, user_data(spec, i, os)).map_err(Error::io("cannot write", &ud))?;
    host::run(
        &bin.to_string_lossy(),
        &[
            "host",
            "install",
            "--node-root",
            &root.to_string_lossy(),
            "--image",
            &os.image.to_string_lossy(),
        ],
        None,
    )?;
    Ok(true)
}

/// Installs node `i` if new and starts its init loop in the node's network namespace.
/// Returns what it did.
pub(super) fn start(
    spec: &ClusterSpec,
    i: u8,
    bin: &Path,
    task_dns: Option<IpAddr>,
    os: &OsSpec,
    log: &Path,
    pid_file: &Path,
) -> Result<String> {
    let installed = install(spec, i, bin, os)?;
    let mut args: Vec<String> = vec![
        format!("AWS_DEFAULT_REGION={REGION}"),
        format!(
            "FLOTILLA_AGENT_CONTAINERD_SOCKET={}",
            spec.containerd_socket(i).display()
        ),
        format!("FLOTILLA_AGENT_RUNC_ROOT={}", spec.runc_root(i).display()),
        format!("FLOTILLA_AGENT_CGROUP_PARENT={}", spec.cgroup_parent(i)),
        format!(
            "FLOTILLA_AGENT_LOGGER={}",
            bin.with_file_name("flotilla-runtime-logger").display()
        ),
    ];
    args.extend(task_dns.map(|ip| format!("FLOTILLA_AGENT_TASK_DNS={ip}")));
    args.extend([
        "sh".to_owned(),
        "-c".to_owned(),
        INIT_LOOP.to_owned(),
        bin.to_string_lossy().into_owned(),
        spec.host_root(i).to_string_lossy().into_owned(),
        spec.host_socket(i).to_string_lossy().into_owned(),
        spec.containerd_socket(i).to_string_lossy().into_owned(),
    ]);
    mkdir(&spec.runc_root(i))?;
    let pid = host::spawn_daemon(Some(&spec.netns(i)), Path::new("env"), &args, log, pid_file)?;
    Ok(if installed {
        format!("installed {}, host layer {pid}", os.image.display())
    } else {
        format!("host layer {pid}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_names_the_control_plane_zone_and_repository() {
        let spec = ClusterSpec {
            subnet: 9,
            port: 8090,
            ..ClusterSpec::bare("os", "/tmp/c".into(), 3)
        };
        let os = OsSpec {
            repo: "/srv/repo".into(),
            image: "/srv/node.tar.gz".into(),
        };
        let doc: toml::Value = toml::from_str(&user_data(&spec, 2, &os)).unwrap();
        let ecs = &doc["settings"]["ecs"];
        assert_eq!(ecs["endpoint"].as_str(), Some(spec.endpoint().as_str()));
        assert_eq!(ecs["cluster"].as_str(), Some(ECS_CLUSTER));
        assert_eq!(
            ecs["instance-attributes"]["ecs.availability-zone"].as_str(),
            Some(ClusterSpec::zone(2).as_str())
        );
        assert_eq!(
            doc["settings"]["updates"]["metadata-base-url"].as_str(),
            Some("file:///srv/repo/metadata")
        );
    }
}
