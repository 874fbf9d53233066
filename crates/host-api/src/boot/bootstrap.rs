//! Step 7 of the boot: bootstrap containers, run to completion in name order through the
//! supervisor's container backend (containerd, or the image's runner command). An
//! `essential` one that fails stops the boot; a `once` one switches its own mode to `off`.

use serde_json::json;

use super::{Containers, Supervisor, boot_err};
use crate::containers::{Desired, Kind};
use crate::error::{Error, Result};
use crate::server::{HostState, LAUNCH_TX};
use crate::settings::BootstrapMode;

pub(super) fn run_bootstrap_containers(state: &HostState, sup: &Supervisor) -> Result<()> {
    let s = state.settings()?;
    for (name, bc) in s.bootstrap_containers.clone().unwrap_or_default() {
        let mode = bc.mode.unwrap_or(BootstrapMode::Off);
        if mode == BootstrapMode::Off {
            continue;
        }
        let d = Desired {
            kind: Kind::Bootstrap,
            name: name.to_string(),
            source: bc
                .source
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            superpowered: true,
            user_data: bc.user_data.as_ref().map(|u| u.as_str().to_owned()),
        };
        let key = format!("bootstrap-{name}");
        let status = match &sup.containers {
            Containers::Runner(runner) => {
                let (argv, env) = sup.runner_command(runner, &d);
                let mut child = sup.spawn(&key, &argv, &env).map_err(Error::Boot)?;
                let status = child.wait().map_err(boot_err)?;
                if status.success() {
                    0
                } else {
                    status.code().unwrap_or(-1)
                }
            }
            Containers::Containerd(engine) => {
                let log = sup.logs.join(format!("{key}.log"));
                match engine.run_to_completion(&d, &log) {
                    Ok(code) => code,
                    // Could not even run (bad image, containerd down): a failure like any other.
                    Err(e) if bc.essential.unwrap_or(false) => {
                        return Err(Error::Boot(format!(
                            "essential bootstrap container {name} failed: {e}"
                        )));
                    }
                    Err(e) => {
                        tracing::error!(%name, error = %e, "bootstrap container could not run");
                        -1
                    }
                }
            }
        };
        tracing::info!(%name, exit_code = status, "bootstrap container finished");
        if status != 0 && bc.essential.unwrap_or(false) {
            return Err(Error::Boot(format!(
                "essential bootstrap container {name} failed (exit code {status}); see run/logs/{key}.log"
            )));
        }
        if mode == BootstrapMode::Once {
            let patch = json!({"bootstrap-containers": {name.as_str(): {"mode": "off"}}});
            state.patch_and_commit(LAUNCH_TX, &patch)?;
        }
    }
    Ok(())
}
