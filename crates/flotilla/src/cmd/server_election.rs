//! Several `flotilla server`s on one etcd: the controllers run on the elected leader only.
//!
//! Every server answers every request (its writer commits through etcd, its state follows
//! the others' commits: `controlplane::engine`), but agent liveness, retention, the service
//! controllers and the lifecycle hooks' runner must act once, so they run on the server that
//! `store::Election` made leader, and stop the moment it is not. `GET /healthz` shows each
//! server's role.
//!
//! Liveness needs to know which agents any server heard from (an agent long-polls one
//! server): each server publishes what it heard in its presence record every
//! [`PRESENCE_EVERY`], and the leader merges every server's record into its own before its
//! liveness check reads it.

use std::time::Duration;

use controlplane::ControlPlane;
use controlplane::state::{MemberKey, Scope};
use store::{Election, Leadership};

/// How often a server publishes the agents it heard from (and the leader reads the others').
pub const PRESENCE_EVERY: Duration = Duration::from_secs(2);

/// One heard agent in a presence record: account, region, cluster, instance id, when.
type Heard = (String, String, String, String, f64);

/// Follows `election`: starts the controllers (`start`) when this server becomes leader,
/// aborts them when it stops being leader, publishes presence and keeps the role shown
/// by `/healthz` current. Runs until the election ends.
pub async fn lead_when_elected(
    cp: ControlPlane,
    election: Election,
    start: impl Fn() -> Vec<tokio::task::JoinHandle<()>>,
) {
    let mut leadership = election.leadership();
    let mut running: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut presence = tokio::time::interval(PRESENCE_EVERY);
    presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = leadership.borrow_and_update().clone();
        match &now {
            Leadership::Leader if running.is_empty() => {
                tracing::info!("this server is the leader: its controllers start");
                running = start();
            }
            Leadership::Follower { leader } if !running.is_empty() => {
                tracing::warn!(leader = ?leader, "this server is no longer the leader: its controllers stop");
                for handle in running.drain(..) {
                    handle.abort();
                }
            }
            _ => {}
        }
        cp.set_role(Some(match &now {
            Leadership::Leader => "leader".to_owned(),
            Leadership::Follower { leader } => {
                format!("follower of {}", leader.as_deref().unwrap_or("(none yet)"))
            }
        }));
        tokio::select! {
            changed = leadership.changed() => if changed.is_err() { return },
            _ = presence.tick() => exchange_presence(&cp, &election, now.is_leader()).await,
        }
    }
}

/// Publishes the agents this server heard from; the leader also merges every server's.
async fn exchange_presence(cp: &ControlPlane, election: &Election, leader: bool) {
    let heard: Vec<Heard> = cp
        .last_seen()
        .into_iter()
        .map(|(k, at)| (k.scope.account, k.scope.region, k.cluster, k.id, at))
        .collect();
    let published = serde_json::to_vec(&heard)
        .map_err(|e| e.to_string())
        .map(|bytes| election.publish(bytes));
    match published {
        Ok(fut) => {
            if let Err(e) = fut.await {
                tracing::warn!(error = %e, "cannot publish this server's presence");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot encode this server's presence"),
    }
    if !leader {
        return;
    }
    match election.members().await {
        Ok(members) => {
            for (name, bytes) in members {
                match serde_json::from_slice::<Vec<Heard>>(&bytes) {
                    Ok(heard) => cp.merge_heard(heard.into_iter().map(
                        |(account, region, cluster, id, at)| {
                            (
                                MemberKey {
                                    scope: Scope::new(&account, &region),
                                    cluster,
                                    id,
                                },
                                at,
                            )
                        },
                    )),
                    Err(e) => {
                        tracing::warn!(server = name, error = %e, "unreadable presence record; skipped");
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the other servers' presence"),
    }
}
