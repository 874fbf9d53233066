//! Processes run inside a running container (health checks): the exec's OCI process
//! (the container's, with other args and environment), its output through a FIFO the
//! runtime reads to EOF (the last [`EXEC_OUTPUT_MAX`] bytes kept), a timeout that kills
//! it, and a missing program reported as exit code 127 as a shell would.
//!
//! Why a FIFO: with `file://` stdio the shim may still be copying output after the exit
//! is reported, and under load output was lost; EOF on a FIFO says the shim has copied
//! everything. The FIFO is a [`Fifo`], removed when dropped, so every way out of an exec
//! (errors included) removes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{DeleteProcessRequest, ExecProcessRequest, StartRequest};
use nix::sys::stat::Mode;
use prost_types::Any;

use super::containers::is_missing_entrypoint;
use super::{ContainerdRuntime, unique};
use crate::error::{Error, Result};
use crate::types::{ContainerId, ContainerState, ExecResult, ExecSpec};

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// How much of an exec's output is kept (its end).
const EXEC_OUTPUT_MAX: usize = 4096;

/// A named pipe on disk (mode 0600), removed when dropped.
#[derive(Debug)]
struct Fifo {
    path: PathBuf,
}

impl Fifo {
    fn create(path: PathBuf) -> Result<Self> {
        nix::unistd::mkfifo(&path, Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(|e| Error::io("mkfifo", &path, e.into()))?;
        Ok(Self { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "remove exec output FIFO");
        }
    }
}

/// The exec's OCI process: the container's own (user, cwd, capabilities, rlimits), with
/// `exec`'s args, no terminal, and `exec`'s environment over the container's.
fn exec_process(container_spec: &serde_json::Value, exec: &ExecSpec) -> serde_json::Value {
    let mut process = container_spec.get("process").cloned().unwrap_or_default();
    process["args"] = serde_json::json!(exec.args);
    process["terminal"] = serde_json::json!(false);
    if !exec.environment.is_empty() {
        let mut env: Vec<String> = process["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        env.retain(|kv| {
            let k = kv.split('=').next().unwrap_or_default();
            !exec.environment.contains_key(k)
        });
        env.extend(exec.environment.iter().map(|(k, v)| format!("{k}={v}")));
        process["env"] = serde_json::json!(env);
    }
    process
}

impl ContainerdRuntime {
    /// Runs `exec` in the running container `id` and collects its exit code and output.
    pub(super) async fn exec_in(&self, id: &ContainerId, exec: &ExecSpec) -> Result<ExecResult> {
        let (c, state) = self.container_state(id).await?;
        if !matches!(state, ContainerState::Running { .. }) {
            return Err(Error::WrongState {
                id: id.to_string(),
                state: state.to_string(),
                operation: "exec",
            });
        }
        if exec.args.is_empty() {
            return Err(Error::InvalidSpec {
                container: id.to_string(),
                reason: "exec needs a command".into(),
            });
        }
        let spec: serde_json::Value = c
            .spec
            .as_ref()
            .and_then(|a| serde_json::from_slice(&a.value).ok())
            .unwrap_or_default();
        let process = exec_process(&spec, exec);
        let exec_id = unique("exec");
        let dir = self.cfg.state_dir.join("exec");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create exec dir", &dir, e))?;
        let fifo = Fifo::create(dir.join(format!("{id}-{exec_id}.fifo")))?;
        let receiver = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(fifo.path())
            .map_err(|e| Error::io("open exec output", fifo.path(), e))?;
        let uri = fifo.path().to_string_lossy().into_owned();
        let eerr = |source| Error::Exec {
            id: id.to_string(),
            source,
        };
        self.tasks()
            .exec(self.req(ExecProcessRequest {
                container_id: id.to_string(),
                stdin: String::new(),
                stdout: uri.clone(),
                stderr: uri,
                terminal: false,
                spec: Some(Any {
                    type_url: PROCESS_TYPE_URL.to_owned(),
                    value: serde_json::to_vec(&process).unwrap_or_default(),
                }),
                exec_id: exec_id.clone(),
            }))
            .await
            .map_err(eerr)?;
        let delete = || async {
            let _ = self
                .tasks()
                .delete_process(self.req(DeleteProcessRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.clone(),
                }))
                .await;
        };
        let this = self.clone();
        let (wid, weid) = (id.clone(), exec_id.clone());
        let mut waiter = tokio::spawn(async move { this.wait_exec(&wid, &weid).await });
        if let Err(e) = self
            .tasks()
            .start(self.req(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.clone(),
            }))
            .await
        {
            waiter.abort();
            delete().await;
            // A missing program is the check's failure, not the node's: report it as a
            // shell would (127).
            if is_missing_entrypoint(e.message()) {
                return Ok(ExecResult {
                    exit_code: Some(127),
                    output: e.message().to_owned(),
                });
            }
            return Err(eerr(e));
        }
        // The shim opened the FIFO's write ends during Start; read until it closes them.
        let mut reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut receiver = receiver;
            let mut kept: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = receiver.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * EXEC_OUTPUT_MAX {
                    kept.drain(..kept.len() - EXEC_OUTPUT_MAX);
                }
            }
            kept
        });
        let exit_code: Result<Option<i32>> =
            if let Ok(joined) = tokio::time::timeout(exec.timeout, &mut waiter).await {
                match joined {
                    Ok(Ok((code, _))) => Ok(Some(i32::try_from(code).unwrap_or(i32::MAX))),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::Timeout {
                        id: id.to_string(),
                        operation: "exec",
                        timeout: exec.timeout,
                    }),
                }
            } else {
                match self.kill(id, &exec_id, 9, false).await {
                    Ok(()) => {
                        let _ = tokio::time::timeout(Duration::from_secs(10), waiter).await;
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            };
        // EOF comes once the shim has copied everything; bounded in case a process the
        // check started in the background keeps the pipe open.
        let bytes = match tokio::time::timeout(Duration::from_secs(2), &mut reader).await {
            Ok(Ok(b)) => b,
            _ => {
                reader.abort();
                Vec::new()
            }
        };
        delete().await;
        drop(fifo);
        let exit_code = exit_code?;
        let start = bytes.len().saturating_sub(EXEC_OUTPUT_MAX);
        Ok(ExecResult {
            exit_code,
            output: String::from_utf8_lossy(&bytes[start..]).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_is_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.fifo");
        let fifo = Fifo::create(path.clone()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        // A second FIFO at the same path is refused, and the refusal removes nothing.
        assert!(Fifo::create(path.clone()).is_err());
        assert!(path.exists());
        drop(fifo);
        assert!(!path.exists());
    }

    #[test]
    fn exec_process_keeps_the_containers_and_overrides_env() {
        let spec = serde_json::json!({"process": {
            "args": ["sleep", "1000"], "terminal": true, "cwd": "/srv",
            "env": ["PATH=/bin", "MODE=prod"], "user": {"uid": 7, "gid": 7}
        }});
        let exec = ExecSpec {
            args: vec!["true".into()],
            environment: [("MODE".to_owned(), "check".to_owned())].into(),
            timeout: Duration::from_secs(1),
        };
        let p = exec_process(&spec, &exec);
        assert_eq!(p["args"], serde_json::json!(["true"]));
        assert_eq!(p["terminal"], false);
        assert_eq!(p["cwd"], "/srv");
        assert_eq!(p["user"]["uid"], 7);
        assert_eq!(p["env"], serde_json::json!(["PATH=/bin", "MODE=check"]));
    }
}
