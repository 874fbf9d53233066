//! `flotilla updater status` (every node with its update and phase, the halt, the last
//! events) and the dry-run plan's printing.

use comfy_table::Table;
use rollout::{Plan, Snapshot, State, WindowStatus};

use super::Target;
use super::observe::{self, Refresh};
use super::store;

/// Arguments of `flotilla updater status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// How many of the last events to print (the control plane keeps the last 200).
    #[arg(long, default_value_t = 20)]
    events: usize,
}

/// Prints the cluster's nodes as the updater sees them, its halt and last events.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let ecs = args.target.client()?;
    let stored = store::read(&ecs).await?;
    let state = stored.doc.state;
    let snapshot = observe::snapshot(&ecs, &state, Refresh::WhenMissing).await?;
    println!("{}", nodes_table(&snapshot, &state));
    match &state.halt {
        Some(halt) => println!(
            "\nHALTED at {} on node {} (target {}): {}\n  resume with: flotilla updater resume --cluster {}",
            halt.at, halt.instance_id, halt.target_version, halt.reason, args.target.cluster
        ),
        None => println!("\nnot halted"),
    }
    match &stored.lease {
        Some((holder, until)) => println!(
            "updater {holder} is running (lease until {})",
            until.strftime("%H:%M:%S UTC")
        ),
        None => println!("no updater is running"),
    }
    let events = &stored.doc.events[stored.doc.events.len().saturating_sub(args.events)..];
    if !events.is_empty() {
        println!("\nlast events:");
        for e in events {
            println!(
                "  {}  {:<10} {:<9} {}",
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.node.as_deref().unwrap_or("-"),
                e.what,
                e.why
            );
        }
    }
    Ok(())
}

fn nodes_table(snapshot: &Snapshot, state: &State) -> Table {
    let mut table = Table::new();
    table.set_header([
        "node",
        "zone",
        "status",
        "OS version",
        "update available",
        "phase",
    ]);
    for node in rollout::rollout_order(&snapshot.nodes) {
        let phase = if let Some(p) = state.in_progress.get(&node.arn) {
            format!(
                "{} since {}",
                p.phase.name(),
                p.phase.since().strftime("%H:%M:%S")
            )
        } else if state.halt.as_ref().is_some_and(|h| h.node == node.arn) {
            "halted".to_owned()
        } else if let Some(s) = state.skipped.get(&node.arn) {
            format!("skipped: {}", s.reason)
        } else if let Some(u) = state.updated.get(&node.arn) {
            format!(
                "updated to {} at {}",
                u.to_version,
                u.at.strftime("%Y-%m-%d %H:%M")
            )
        } else {
            "-".to_owned()
        };
        let status = if node.agent_connected {
            node.status.as_str().to_owned()
        } else {
            format!("{} (disconnected)", node.status.as_str())
        };
        table.add_row([
            node.name().to_owned(),
            node.zone.clone(),
            status,
            node.os_version.clone().unwrap_or_else(|| "?".into()),
            node.update.describe(),
            phase,
        ]);
    }
    table
}

/// Prints a dry run's plan.
pub fn print_plan(plan: &Plan) {
    let mut table = Table::new();
    table.set_header(["node", "zone", "OS version", "target", "plan"]);
    for e in &plan.entries {
        table.add_row([
            e.instance_id.clone(),
            e.zone.clone(),
            e.os_version.clone().unwrap_or_else(|| "?".into()),
            e.target_version.clone().unwrap_or_else(|| "-".into()),
            e.disposition.describe(),
        ]);
    }
    println!("{table}");
    match &plan.gate {
        Ok(()) => println!("health gate: open"),
        Err(reason) => println!("health gate: closed ({reason})"),
    }
    match plan.window {
        None => {}
        Some(WindowStatus::Open { closes_at }) => {
            println!("maintenance window: open until {closes_at}");
        }
        Some(WindowStatus::Closed { opens_at: Some(at) }) => {
            println!("maintenance window: closed, opens at {at}");
        }
        Some(WindowStatus::Closed { opens_at: None }) => {
            println!("maintenance window: closed, never opens again");
        }
    }
    if let Some(halt) = &plan.halt {
        println!(
            "HALTED on node {}: {} (nothing starts until `flotilla updater resume`)",
            halt.instance_id, halt.reason
        );
    }
    for note in &plan.notes {
        println!("note: {note}");
    }
}
