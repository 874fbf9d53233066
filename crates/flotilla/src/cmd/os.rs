//! `flotilla os …`: building node images and publishing them in a TUF repository.
//!
//! ```text
//! flotilla os keygen --out keys/                       # key-1.pk8 + root.json
//! flotilla os build-image --version 1.1.0 --root-json keys/root.json --out node-1.1.0.tar.gz
//! flotilla os publish --repo repo/ --root keys/root.json --key keys/key-1.pk8 \
//!     --image node-1.1.0.tar.gz --wave 0=2026-11-25T12:00:00Z
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use semver::Version;
use updater::image::{ImageMeta, ImageSpec};
use updater::manifest::{Update, WaveSpec};

/// Arguments of `flotilla os`.
#[derive(Debug, clap::Args)]
pub struct OsArgs {
    #[command(subcommand)]
    command: OsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum OsCommand {
    /// Generate ed25519 signing keys and a root.json trusting them.
    Keygen {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Number of keys.
        #[arg(long, default_value_t = 1)]
        keys: usize,
        /// Signatures required for every role.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        /// Root expiry in days.
        #[arg(long, default_value_t = 365)]
        expires_in_days: i64,
    },
    /// Build a node image archive (tar.gz with the flotilla binary, containerd config, version).
    BuildImage(BuildImageArgs),
    /// Add an image and/or migrations to a TUF repository and re-sign it.
    Publish(PublishArgs),
}

#[derive(Debug, clap::Args)]
struct BuildImageArgs {
    /// Image version (semver).
    #[arg(long)]
    version: String,
    /// Output archive.
    #[arg(long)]
    out: PathBuf,
    /// Variant.
    #[arg(long, default_value = "flotilla-node")]
    variant: String,
    /// Architecture.
    #[arg(long, default_value = std::env::consts::ARCH)]
    arch: String,
    /// flotilla binary to ship [default: this executable].
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Do not ship a flotilla binary.
    #[arg(long, conflicts_with = "binary")]
    no_binary: bool,
    /// TUF root the node will trust for its next updates.
    #[arg(long)]
    root_json: Option<PathBuf>,
    /// Directory whose files are added to the image as-is.
    #[arg(long)]
    overlay: Option<PathBuf>,
    /// TOML with `[agent]`, `[health]` and `[containers]` tables (see docs/host.md).
    #[arg(long)]
    meta: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    /// Repository directory (metadata/ and targets/ are written there).
    #[arg(long)]
    repo: PathBuf,
    /// Trusted root.json.
    #[arg(long)]
    root: PathBuf,
    /// Signing key (repeat for thresholds above 1).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Image archive to add (version/variant/arch read from it).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Wave `SEED=RFC3339` (repeatable): seeds from SEED on open at that time.
    #[arg(long = "wave")]
    waves: Vec<String>,
    /// Wave policy TOML (`[[waves]] start-after = "1h"`, `fleet-percentage = 5`), relative to
    /// --release-time.
    #[arg(long)]
    wave_policy: Option<PathBuf>,
    /// Release time for --wave-policy [default: now].
    #[arg(long)]
    release_time: Option<Timestamp>,
    /// Migration `FROM:TO:FILE` (repeatable).
    #[arg(long = "migration")]
    migrations: Vec<String>,
    /// Set every update's max_version (pull a bad release).
    #[arg(long)]
    max_version: Option<Version>,
    /// Expiry of targets/snapshot/timestamp as RFC 3339.
    #[arg(long, conflicts_with = "expires_in_days")]
    expires: Option<Timestamp>,
    /// Expiry in days from now.
    #[arg(long, default_value_t = 7)]
    expires_in_days: i64,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyFile {
    waves: Vec<PolicyWave>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PolicyWave {
    start_after: String,
    fleet_percentage: u32,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MetaFile {
    agent: Option<updater::image::CommandSpec>,
    health: Option<updater::image::HealthSpec>,
    containers: Option<updater::image::ContainersSpec>,
}

/// Parses a wave offset such as `1h`, `4 hours`, `1d` or `2 days` (days are 24 hours).
fn parse_offset(s: &str) -> anyhow::Result<SignedDuration> {
    let span: jiff::Span = s
        .parse()
        .with_context(|| format!("start-after {s:?} is not a duration such as 1h or 2d"))?;
    span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .with_context(|| format!("start-after {s:?}"))
}

fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// Runs `flotilla os`.
///
/// # Errors
/// Any failure, with context.
pub fn run(args: OsArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match args.command {
        OsCommand::Keygen {
            out,
            keys,
            threshold,
            expires_in_days,
        } => {
            let expires = Timestamp::now().checked_add(days(expires_in_days))?;
            let paths =
                rt.block_on(updater::repo::generate_keys(&out, keys, threshold, expires))?;
            for p in paths {
                println!("{}", p.display());
            }
            println!("{}", out.join("root.json").display());
            Ok(())
        }
        OsCommand::BuildImage(a) => {
            let extra: MetaFile = match &a.meta {
                Some(p) => toml::from_str(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?,
                )
                .with_context(|| format!("parsing {}", p.display()))?,
                None => MetaFile::default(),
            };
            let binary = if a.no_binary {
                None
            } else {
                Some(match a.binary {
                    Some(b) => b,
                    None => std::env::current_exe().context("locating this executable")?,
                })
            };
            let spec = ImageSpec {
                meta: ImageMeta {
                    version: a.version,
                    variant: a.variant,
                    arch: a.arch,
                    agent: extra.agent,
                    health: extra.health,
                    containers: extra.containers,
                },
                binary,
                root_json: a.root_json,
                overlay: a.overlay,
            };
            let sha = updater::image::build_image(&spec, &a.out)?;
            println!("{}  {}", sha, a.out.display());
            Ok(())
        }
        OsCommand::Publish(a) => publish(&rt, a),
    }
}

fn publish(rt: &tokio::runtime::Runtime, a: PublishArgs) -> anyhow::Result<()> {
    let expires = match a.expires {
        Some(t) => t,
        None => Timestamp::now().checked_add(days(a.expires_in_days))?,
    };
    let image = match &a.image {
        Some(path) => {
            let mut f =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let meta = updater::image::read_archive_meta(&mut f)?;
            let version = Version::parse(&meta.version)?;
            let mut waves = BTreeMap::new();
            for w in &a.waves {
                let (seed, time) = w.split_once('=').context("--wave must be SEED=RFC3339")?;
                waves.insert(
                    seed.parse::<u32>().context("wave seed")?,
                    time.parse::<Timestamp>().context("wave time")?,
                );
            }
            if let Some(p) = &a.wave_policy {
                let pf: PolicyFile = toml::from_str(&std::fs::read_to_string(p)?)?;
                let specs = pf
                    .waves
                    .iter()
                    .map(|w| {
                        Ok(WaveSpec {
                            start_after: parse_offset(&w.start_after)?,
                            fleet_percentage: w.fleet_percentage,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                waves.extend(updater::manifest::waves_from_policy(
                    a.release_time.unwrap_or_else(Timestamp::now),
                    &specs,
                )?);
            }
            Some((
                path.clone(),
                Update {
                    variant: meta.variant.clone(),
                    arch: meta.arch.clone(),
                    max_version: version.clone(),
                    version,
                    waves,
                    images: BTreeMap::new(),
                },
            ))
        }
        None => None,
    };
    let migrations = a
        .migrations
        .iter()
        .map(|m| {
            let mut it = m.splitn(3, ':');
            match (it.next(), it.next(), it.next()) {
                (Some(f), Some(t), Some(p)) => {
                    Ok((Version::parse(f)?, Version::parse(t)?, PathBuf::from(p)))
                }
                _ => anyhow::bail!("--migration must be FROM:TO:FILE, got {m:?}"),
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = updater::repo::PublishSpec {
        repo: a.repo.clone(),
        root: a.root,
        keys: a.keys,
        image,
        migrations,
        max_version: a.max_version,
        expires,
    };
    let v = rt.block_on(updater::repo::publish(&spec))?;
    println!("published metadata version {v} to {}", a.repo.display());
    Ok(())
}
