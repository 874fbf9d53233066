//! `flotilla apiclient`: command-line client of the host API, shaped like Bottlerocket's
//! `apiclient`. Prints response bodies on stdout; on error prints the server's message on
//! stderr and exits non-zero.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use host_api::client::Client;
use serde_json::Value;

/// Arguments of `flotilla apiclient`.
#[derive(Debug, clap::Args)]
pub struct ApiclientArgs {
    /// Host API socket.
    #[arg(
        long,
        short = 's',
        visible_alias = "socket-path",
        env = "FLOTILLA_API_SOCKET",
        default_value = "/run/flotilla/api.sock",
        global = true
    )]
    socket: PathBuf,
    /// Raw request: URI to call (e.g. `/os`).
    #[arg(short = 'u', long = "uri")]
    uri: Option<String>,
    /// Raw request: HTTP method.
    #[arg(short = 'm', long = "method", default_value = "GET")]
    method: String,
    /// Raw request: body.
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    #[command(subcommand)]
    command: Option<ApiCommand>,
}

#[derive(Debug, clap::Subcommand)]
enum ApiCommand {
    /// Show settings (and os); KEY filters by prefix, `settings.` optional. A KEY starting with
    /// `/` is fetched as a URI.
    Get {
        /// Key prefixes.
        keys: Vec<String>,
    },
    /// Change settings: `key=value …` (the `settings.` prefix is optional) or `--json DOC`.
    Set {
        /// JSON settings document (with or without the top-level `settings` key).
        #[arg(long, short = 'j')]
        json: Option<String>,
        /// `key=value` pairs; quote dotted segments: `kernel.sysctl."vm.max_map_count"=262144`.
        pairs: Vec<String>,
    },
    /// Apply TOML (or JSON) user-data from files, or stdin when none or `-` is given.
    Apply {
        /// Files, or `-` for stdin.
        sources: Vec<String>,
    },
    /// Check for, apply or cancel node updates.
    Update {
        #[command(subcommand)]
        command: UpdateCmd,
    },
    /// Reboot the node (the boot step then switches slots if an update is ready).
    Reboot,
}

#[derive(Debug, clap::Subcommand)]
enum UpdateCmd {
    /// Refresh the repository and print the update status.
    Check,
    /// Download and stage the chosen update, then mark it to boot next.
    Apply {
        /// Run `check` first and stop when nothing is available.
        #[arg(long, short = 'c')]
        check: bool,
        /// Reboot after applying.
        #[arg(long, short = 'r')]
        reboot: bool,
    },
    /// Undo `apply` before rebooting.
    Cancel,
    /// Boot the other (previous) slot next.
    Rollback,
}

fn print_json(bytes: &[u8]) {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        Err(_) if bytes.is_empty() => {}
        Err(_) => println!("{}", String::from_utf8_lossy(bytes)),
    }
}

fn merge_into(base: &mut Value, v: Value) {
    host_api::settings::merge(base, &v);
}

/// Runs `flotilla apiclient`.
///
/// # Errors
/// The server's message on any error status.
pub fn run(args: ApiclientArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: ApiclientArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.socket);
    if let Some(uri) = &args.uri {
        let body = args.data.clone().map(String::into_bytes);
        let out = client.call(&args.method.to_uppercase(), uri, body).await?;
        print_json(&out);
        return Ok(());
    }
    let Some(command) = args.command else {
        anyhow::bail!("nothing to do: give a subcommand or -u URI (see --help)");
    };
    match command {
        ApiCommand::Get { keys } => {
            if keys.is_empty() {
                print_json(&client.call("GET", "/", None).await?);
                return Ok(());
            }
            let mut out = Value::Object(serde_json::Map::new());
            for k in keys {
                if k.starts_with('/') {
                    print_json(&client.call("GET", &k, None).await?);
                    return Ok(());
                }
                let prefix = if k == "os" || k.starts_with("os.") {
                    k
                } else {
                    host_api::settings::full_key(&k)
                };
                let q: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("prefix", &prefix)
                    .finish();
                merge_into(&mut out, client.get_json(&format!("/?{q}")).await?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ApiCommand::Set { json, pairs } => {
            let doc = match json {
                Some(j) => {
                    anyhow::ensure!(
                        pairs.is_empty(),
                        "give either --json or key=value pairs, not both"
                    );
                    let v: Value = serde_json::from_str(&j).context("--json is not valid JSON")?;
                    match v {
                        Value::Object(mut m) if m.len() == 1 && m.contains_key("settings") => {
                            m.remove("settings").unwrap_or_default()
                        }
                        other => other,
                    }
                }
                None => {
                    anyhow::ensure!(!pairs.is_empty(), "nothing to set");
                    host_api::server::pairs_to_doc(&pairs)?
                }
            };
            client.set_doc(&doc, "apiclient-set").await?;
        }
        ApiCommand::Apply { sources } => {
            let sources = if sources.is_empty() {
                vec!["-".to_owned()]
            } else {
                sources
            };
            let mut doc = Value::Object(serde_json::Map::new());
            for src in sources {
                let (name, text) = if src == "-" {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading stdin")?;
                    ("stdin".to_owned(), s)
                } else {
                    let path = src.strip_prefix("file://").unwrap_or(&src);
                    (
                        src.clone(),
                        std::fs::read_to_string(path).with_context(|| format!("reading {src}"))?,
                    )
                };
                merge_into(&mut doc, host_api::userdata::parse(&name, &text)?);
            }
            client.set_doc(&doc, "apiclient-apply").await?;
        }
        ApiCommand::Update { command } => match command {
            UpdateCmd::Check => {
                let v = client
                    .wait_update("refresh-updates", "refresh", Duration::from_secs(60))
                    .await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            UpdateCmd::Apply { check, reboot } => {
                if check {
                    let v = client
                        .wait_update("refresh-updates", "refresh", Duration::from_secs(60))
                        .await?;
                    match v["update_state"].as_str() {
                        Some("Idle") => {
                            eprintln!("No updates available.");
                            return Ok(());
                        }
                        Some("Ready") => {
                            eprintln!(
                                "An update is already applied; reboot to use it, or cancel it."
                            );
                            return Ok(());
                        }
                        _ => {}
                    }
                }
                client
                    .wait_update("prepare-update", "prepare", Duration::from_secs(600))
                    .await?;
                let v = client
                    .wait_update("activate-update", "activate", Duration::from_secs(30))
                    .await?;
                if reboot {
                    client.call("POST", "/actions/reboot", None).await?;
                } else {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    eprintln!("Update applied; it takes effect at the next reboot.");
                }
            }
            UpdateCmd::Cancel => {
                let v = client
                    .wait_update("deactivate-update", "deactivate", Duration::from_secs(30))
                    .await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            UpdateCmd::Rollback => {
                client.call("POST", "/actions/rollback", None).await?;
                eprintln!("The other slot boots next; reboot to switch.");
            }
        },
        ApiCommand::Reboot => {
            client.call("POST", "/actions/reboot", None).await?;
        }
    }
    Ok(())
}
