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
//! liveness check reads it. Every server also reads the others' records to learn where
//! each agent polls, so that a log read or host call for an agent polling another server
//! is relayed there (`controlplane::node_broker`).

use std::collections::HashMap;
use std::time::Duration;

use controlplane::ControlPlane;
use controlplane::state::{MemberKey, Scope};
use store::{Election, Leadership};

/// How often a server publishes the agents it heard from (and the leader reads the others').
pub const PRESENCE_EVERY: Duration = Duration::from_secs(2);

/// One heard agent in a presence record: account, region, cluster, instance id, when.
type Heard = (String, String, String, String, f64);

/// An agent another server heard from longer ago than this polls no server now.
const PEER_FRESH_FOR: f64 = 30.0;

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
        .map(|(k, at)| {
            (
                k.scope.account.into(),
                k.scope.region.into(),
                k.cluster,
                k.id,
                at,
            )
        })
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
    let members = match election.members().await {
        Ok(members) => members,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the other servers' presence");
            return;
        }
    };
    let mut records: Vec<(String, Vec<(MemberKey, f64)>)> = Vec::new();
    for (name, bytes) in members {
        match serde_json::from_slice::<Vec<Heard>>(&bytes) {
            Ok(heard) => records.push((
                name,
                heard
                    .into_iter()
                    .map(|(account, region, cluster, id, at)| {
                        let key = MemberKey {
                            scope: Scope::new(&account, &region),
                            cluster,
                            id,
                        };
                        (key, at)
                    })
                    .collect(),
            )),
            Err(e) => {
                tracing::warn!(server = name, error = %e, "unreadable presence record; skipped");
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    cp.node_broker()
        .set_peers(peers(election.name(), &records, now));
    if leader {
        for (_, heard) in records {
            cp.merge_heard(heard);
        }
    }
}

/// Instance → the other server that heard from its agent last (within
/// [`PEER_FRESH_FOR`] of `now`), from every server's presence record.
fn peers(
    own: &str,
    records: &[(String, Vec<(MemberKey, f64)>)],
    now: f64,
) -> HashMap<MemberKey, String> {
    let mut latest: HashMap<&MemberKey, (&str, f64)> = HashMap::new();
    for (name, heard) in records {
        for (key, at) in heard {
            let newer = latest.get(key).is_none_or(|(_, seen)| *at > *seen);
            if newer && now - *at < PEER_FRESH_FOR {
                latest.insert(key, (name.as_str(), *at));
            }
        }
    }
    latest
        .into_iter()
        .filter(|(_, (name, _))| *name != own)
        .map(|(key, (name, _))| (key.clone(), name.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> MemberKey {
        MemberKey {
            scope: Scope::new("000000000000", "us-east-1"),
            cluster: "default".into(),
            id: id.into(),
        }
    }

    #[test]
    fn each_agent_is_relayed_to_the_server_that_heard_it_last() {
        let records = vec![
            (
                "a:1".to_owned(),
                vec![(key("n1"), 100.0), (key("n2"), 90.0)],
            ),
            ("b:1".to_owned(), vec![(key("n2"), 99.0), (key("n3"), 50.0)]),
        ];
        let seen = peers("a:1", &records, 101.0);
        // n1 polls this server (no relay); n2 moved to b; n3 went silent too long ago.
        assert_eq!(seen, HashMap::from([(key("n2"), "b:1".to_owned())]));
        let from_b = peers("b:1", &records, 101.0);
        assert_eq!(from_b, HashMap::from([(key("n1"), "a:1".to_owned())]));
    }
}
