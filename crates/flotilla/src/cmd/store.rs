//! `flotilla store …`: offline tools for the control plane's state store.
//!
//! `flotilla store copy --from redb:PATH --to etcd://HOST:PORT` copies every record from one
//! store to another (either kind to either kind): the migration from the embedded store
//! to etcd. Run it with the server stopped (redb locks its file, so a running server makes
//! it fail). A non-empty target is refused unless `--force`, which wipes it first.
//!
//! The copy is written in batches (`--batch` records, and at most [`BATCH_BYTES`] each),
//! since a large store does not fit one etcd transaction: a copy that fails half-way leaves
//! a partial target, which the next copy refuses until it is given `--force`.

use anyhow::{Context, bail};
use store::{Mutation, StoreLocation};

/// Largest batch of a copy, in bytes of keys and values (well under etcd's request limit).
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The subcommands of `flotilla store`.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy every record from one store to another (e.g. `--from redb:PATH --to etcd://…`).
    Copy(CopyArgs),
}

/// Arguments of `flotilla store copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The store to read: `redb:PATH` or `etcd://HOST:PORT[,HOST:PORT…]`.
    #[arg(long)]
    pub from: StoreLocation,
    /// The store to write: `redb:PATH` or `etcd://HOST:PORT[,HOST:PORT…]`.
    #[arg(long)]
    pub to: StoreLocation,
    /// Wipe a non-empty target first (otherwise a non-empty target is refused).
    #[arg(long)]
    pub force: bool,
    /// Most records in one commit to the target.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
}

/// Runs a `flotilla store` subcommand.
pub fn run(cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Copy(args) => {
            let copied = copy(&args)?;
            println!("copied {copied} records from {} to {}", args.from, args.to);
            Ok(())
        }
    }
}

/// Copies every record of `args.from` into `args.to`; returns how many.
pub fn copy(args: &CopyArgs) -> anyhow::Result<usize> {
    if args.from == args.to {
        bail!("--from and --to name the same store ({})", args.from);
    }
    let from = args.from.open()?;
    let records = from
        .load()
        .with_context(|| format!("cannot read {}", args.from))?;
    drop(from);
    let to = args.to.open()?;
    let existing = to
        .load()
        .with_context(|| format!("cannot read {}", args.to))?
        .len();
    if existing > 0 {
        if !args.force {
            bail!(
                "the target {} is not empty ({existing} records); pass --force to replace them",
                args.to
            );
        }
        to.wipe()
            .with_context(|| format!("cannot wipe {}", args.to))?;
    }
    let max = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let mut batch = Vec::new();
    let mut bytes = 0;
    let total = records.len();
    for (key, value) in records {
        if !batch.is_empty()
            && (batch.len() >= max || bytes + key.len() + value.len() > BATCH_BYTES)
        {
            to.commit(&batch)
                .with_context(|| format!("cannot write to {}", args.to))?;
            batch.clear();
            bytes = 0;
        }
        bytes += key.len() + value.len();
        batch.push(Mutation::Put { key, value });
    }
    if !batch.is_empty() {
        to.commit(&batch)
            .with_context(|| format!("cannot write to {}", args.to))?;
    }
    Ok(total)
}
