//! `flotilla logs TASK [--follow]`: a task's container output, read through the control
//! plane (`FlotillaV1.GetTaskLogs`, which asks the node's agent over the agent's own
//! connection; see `docs/agent.md`). Requests are SigV4-signed like the AWS CLI's.

use std::io::Write;
use std::time::Duration;

use agent::client::{Client, Credentials};
use anyhow::Context;
use model::lifecycle::TaskStatus;
use model::logs::{
    GetTaskLogsRequest, GetTaskLogsResponse, LogEvent, MAX_LOG_WAIT_SECONDS, USER_TARGET_PREFIX,
};

/// Arguments of `flotilla logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The task (id or ARN).
    pub task: String,
    /// The task's cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Only this container's output (default: every container's, each line prefixed with
    /// the container's name when there are several).
    #[arg(long)]
    pub container: Option<String>,
    /// Keep printing new output until the task stops (or Ctrl-C).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Start with only the last N lines of each container.
    #[arg(long)]
    pub tail: Option<u32>,
    #[command(flatten)]
    pub api: ControlPlaneArgs,
}

/// Where the control plane is, for the commands that call it as a user would
/// (`flotilla logs`, `flotilla updater`).
#[derive(Debug, Clone, clap::Args)]
pub struct ControlPlaneArgs {
    /// Control plane URL.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL_ECS",
        default_value = "http://127.0.0.1:8080"
    )]
    pub endpoint: String,
    /// Region (part of the SigV4 scope, as for the AWS CLI).
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    pub region: String,
}

impl ControlPlaneArgs {
    /// A client signing with the credentials the AWS CLI would use.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn client(&self) -> Result<Client, agent::AgentError> {
        Client::new(&self.endpoint, &self.region, credentials())
    }
}

/// Credentials as the AWS CLI finds them: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
/// else the `AWS_PROFILE` (or `default`) section of `~/.aws/credentials`, else a
/// placeholder key (enough for servers started without `--credentials`).
pub(crate) fn credentials() -> Credentials {
    if std::env::var("AWS_ACCESS_KEY_ID").is_ok_and(|v| !v.is_empty()) {
        return Credentials::from_env();
    }
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".aws/credentials"))
        });
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    file.and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| profile_credentials(&text, &profile))
        .unwrap_or_else(Credentials::local)
}

/// The keys of `[profile]` in an AWS credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
        } else if in_profile && let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_owned()),
                "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
    })
}

/// Writes events as the containers wrote them: stdout records to stdout, stderr records
/// to stderr, prefixed with `<container> | ` when `prefix`.
fn print(events: &[LogEvent], prefix: bool) -> std::io::Result<()> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for e in events {
        let w: &mut dyn Write = if e.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if prefix {
            write!(w, "{} | ", e.container_name)?;
        }
        w.write_all(e.message.as_bytes())?;
        if !e.partial {
            w.write_all(b"\n")?;
        }
    }
    out.flush()?;
    err.flush()
}

/// Runs `flotilla logs`.
pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(logs(args))
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let target = format!("{USER_TARGET_PREFIX}.GetTaskLogs");
    let mut token: Option<String> = None;
    loop {
        let req = GetTaskLogsRequest {
            cluster: Some(args.cluster.clone()),
            task: Some(args.task.clone()),
            container_name: args.container.clone(),
            tail: args.tail,
            next_token: token.clone(),
            wait_seconds: Some(if args.follow { MAX_LOG_WAIT_SECONDS } else { 0 }),
        };
        // Errors print as `<Code>: <message>` (AgentError's Display), one line.
        let resp: GetTaskLogsResponse = client.call(&target, &req).await?;
        let prefix = args.container.is_none() && resp.containers.len() > 1;
        match print(&resp.events, prefix) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r.context("cannot write the output")?,
        }
        token = Some(resp.next_forward_token);
        if resp.has_more {
            continue;
        }
        if !args.follow
            || (resp.task_status == TaskStatus::Stopped.as_str() && resp.events.is_empty())
        {
            return Ok(());
        }
        if resp.events.is_empty() {
            // The agent answered before the wait ran out without output: the task has
            // not started its containers yet, or they just exited and the control plane
            // does not know it yet. Ask again shortly.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_profile_of_a_credentials_file() {
        let text = "[default]\naws_access_key_id = AKD\naws_secret_access_key = sd\n\n[ci]\naws_access_key_id=AKC\naws_secret_access_key=sc\n";
        let c = profile_credentials(text, "ci").unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("AKC", "sc")
        );
        let c = profile_credentials(text, "default").unwrap();
        assert_eq!(c.access_key_id, "AKD");
        assert!(profile_credentials(text, "nope").is_none());
    }
}
