//! `flotilla host probe-registered`: the boot health check of a node booted by the host
//! layer — "this node is registered with the control plane, its agent is connected, and
//! it runs this slot's version". A slot whose agent cannot join never passes, so the
//! boot step marks it failed and the next boot falls back to the other slot.
//!
//! Put it in a node image's `image.toml`:
//!
//! ```toml
//! [health]
//! command = ["{slot}/bin/flotilla", "host", "probe-registered",
//!            "--socket", "{socket}", "--slot", "{slot}", "--instance-id", "{node-id}"]
//! timeout-secs = 120
//! ```
//!
//! The control plane endpoint and cluster come from the node's own settings
//! (`settings.ecs.endpoint`, `settings.ecs.cluster`), read on the host API socket.

use std::path::PathBuf;

use agent::client::Client;
use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Arguments of `flotilla host probe-registered`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The host API socket (for `settings.ecs`).
    #[arg(long)]
    pub socket: PathBuf,
    /// The slot being checked (its `image.toml` gives the version the instance must show
    /// as its `flotilla.os-version` attribute).
    #[arg(long)]
    pub slot: PathBuf,
    /// The node's id, registered as the instance's `ec2InstanceId`.
    #[arg(long)]
    pub instance_id: String,
    /// Region (part of the SigV4 scope).
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    pub region: String,
}

/// The attribute every host-layer node's agent registers with: its slot's OS version.
pub const OS_VERSION_ATTRIBUTE: &str = "flotilla.os-version";

const ECS: &str = "AmazonEC2ContainerServiceV20141113";

/// Why an instance does not pass, or `None` when it does.
fn failing(instance: &Value, version: &str) -> Option<String> {
    if instance["agentConnected"] != true {
        return Some("its agent is not connected".into());
    }
    let shown = instance["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == OS_VERSION_ATTRIBUTE)
        .and_then(|a| a["value"].as_str());
    match shown {
        Some(v) if v == version => None,
        Some(v) => Some(format!(
            "it shows {OS_VERSION_ATTRIBUTE}={v}, not {version}"
        )),
        None => Some(format!("it shows no {OS_VERSION_ATTRIBUTE} attribute")),
    }
}

/// Runs the probe: exit 0 when healthy, an error saying why not otherwise.
///
/// # Errors
/// The node is not (yet) registered and connected on this slot's version, or the host
/// API or the control plane cannot be reached.
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(probe(args))
}

async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let version = updater::image::read_meta(&args.slot)
        .with_context(|| format!("reading the slot's image.toml in {}", args.slot.display()))?
        .version;
    let settings = host_api::client::Client::new(&args.socket)
        .get_json("/settings?prefix=settings.ecs")
        .await
        .context("reading settings.ecs on the host API")?;
    let Some(endpoint) = settings["ecs"]["endpoint"].as_str() else {
        bail!("settings.ecs.endpoint is not set: this node has no control plane to join");
    };
    let cluster = settings["ecs"]["cluster"].as_str().unwrap_or("default");
    let client = Client::new(endpoint, &args.region, super::logs::credentials())?;
    let mut token: Option<String> = None;
    // At most 100 pages of 100: the control plane's own limit on instances per cluster
    // is far below.
    for _ in 0..100 {
        let list: Value = client
            .call(
                &format!("{ECS}.ListContainerInstances"),
                &json!({"cluster": cluster, "maxResults": 100, "nextToken": token}),
            )
            .await?;
        let arns = list["containerInstanceArns"].clone();
        if arns.as_array().is_some_and(|a| !a.is_empty()) {
            let described: Value = client
                .call(
                    &format!("{ECS}.DescribeContainerInstances"),
                    &json!({"cluster": cluster, "containerInstances": arns}),
                )
                .await?;
            if let Some(instance) = described["containerInstances"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["ec2InstanceId"] == args.instance_id.as_str())
            {
                return match failing(instance, &version) {
                    None => Ok(()),
                    Some(why) => bail!(
                        "node {} is registered in cluster {cluster}, but {why}",
                        args.instance_id
                    ),
                };
            }
        }
        token = list["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    bail!(
        "node {} is not registered in cluster {cluster} at {endpoint}",
        args.instance_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connected_instance_on_this_version_passes() {
        let instance = |connected: bool, version: Option<&str>| {
            let attrs: Vec<Value> = version
                .map(|v| json!({"name": OS_VERSION_ATTRIBUTE, "value": v}))
                .into_iter()
                .collect();
            json!({"agentConnected": connected, "attributes": attrs})
        };
        assert_eq!(failing(&instance(true, Some("1.1.0")), "1.1.0"), None);
        assert!(
            failing(&instance(false, Some("1.1.0")), "1.1.0")
                .unwrap()
                .contains("not connected")
        );
        // The old slot's agent, still shown connected, does not make the new slot healthy.
        assert!(
            failing(&instance(true, Some("1.0.0")), "1.1.0")
                .unwrap()
                .contains("not 1.1.0")
        );
        assert!(failing(&instance(true, None), "1.1.0").is_some());
    }
}
