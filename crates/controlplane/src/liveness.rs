//! Instance liveness: the loop that turns silent agents into disconnected instances
//! and, past the grace period, their tasks into STOPPED ones (which the service
//! controller then replaces elsewhere). The decisions are the pure
//! [`check_liveness`](crate::ops::agent_channel::check_liveness); this module only
//! runs it on a timer.

use std::time::Duration;

use crate::engine::ControlPlane;
use crate::ops::agent_channel::check_liveness;
use crate::state::Scope;

/// How long agents may stay silent.
#[derive(Debug, Clone, Copy)]
pub struct LivenessConfig {
    /// Silence after which an instance shows `agentConnected: false`.
    pub disconnect_after: Duration,
    /// Silence after which the instance's tasks are considered lost and stopped.
    pub lost_after: Duration,
    /// How often to check.
    pub interval: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            disconnect_after: Duration::from_secs(30),
            lost_after: Duration::from_secs(60),
            interval: Duration::from_secs(2),
        }
    }
}

/// Runs the liveness check every `config.interval` until the runtime stops.
pub fn spawn_liveness(cp: ControlPlane, config: LivenessConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let seen = cp.last_seen();
            let (disconnect, lost) = (
                config.disconnect_after.as_secs_f64(),
                config.lost_after.as_secs_f64(),
            );
            match cp
                .write(Scope::new("", ""), move |s, ctx| {
                    check_liveness(s, ctx, &seen, disconnect, lost)
                })
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    changes = n,
                    "liveness: instances disconnected or tasks lost"
                ),
                Err(e) => tracing::warn!(error = %e, "liveness check failed; retrying"),
            }
        }
    })
}
