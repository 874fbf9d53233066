//! Which target a new request (or TCP connection) of a group goes to: the active, healthy,
//! not ejected targets, weighted by slow start, chosen by the group's algorithm
//! ([`crate::balance::pick`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::balance::{self, Candidate};
use crate::config::TargetState;
use crate::proxy::{GroupRt, TargetRt};

/// The targets of a group that may take a new request now, with their balancing weights.
pub(crate) struct Choice<'a> {
    group: &'a GroupRt,
    routable: Vec<&'a TargetRt>,
    cands: Vec<Candidate>,
}

impl<'a> Choice<'a> {
    /// The group's routable targets: active, healthy, and — with outlier detection — not
    /// ejected, unless every healthy one is (then they all serve).
    pub(crate) fn new(group: &'a GroupRt) -> Choice<'a> {
        let slow_start = Duration::from_secs(group.config.slow_start_secs);
        let outliers = group.config.outlier_detection.as_ref();
        // The clock is only needed for slow start and outlier detection.
        let now = (!slow_start.is_zero() || outliers.is_some()).then(Instant::now);
        let ejected_now = |t: &TargetRt| {
            outliers.is_some() && now.is_some_and(|now| t.shared.outlier.is_ejected(now))
        };
        let skip_ejected = outliers.is_some()
            && group.targets.iter().any(|t| {
                t.state == TargetState::Active
                    && t.shared.health.healthy_since().is_some()
                    && !ejected_now(t)
            });
        let mut routable: Vec<&TargetRt> = Vec::with_capacity(group.targets.len());
        let mut cands: Vec<Candidate> = Vec::with_capacity(group.targets.len());
        for t in &group.targets {
            if t.state != TargetState::Active {
                continue;
            }
            let Some(since) = t.shared.health.healthy_since() else {
                continue;
            };
            if skip_ejected && ejected_now(t) {
                continue;
            }
            routable.push(t);
            cands.push(Candidate {
                outstanding: t.shared.outstanding.load(Ordering::Relaxed),
                weight: now.filter(|_| !slow_start.is_zero()).map_or(1.0, |now| {
                    balance::slow_start_weight(now.saturating_duration_since(since), slow_start)
                }),
            });
        }
        Choice {
            group,
            routable,
            cands,
        }
    }

    /// Whether no target may take a request.
    pub(crate) fn is_empty(&self) -> bool {
        self.routable.is_empty()
    }

    /// How many targets may.
    pub(crate) fn len(&self) -> usize {
        self.routable.len()
    }

    /// The routable target at `addr` (a sticky session's), if it is one.
    pub(crate) fn find(&self, addr: SocketAddr) -> Option<&'a TargetRt> {
        self.routable.iter().find(|t| t.addr == addr).copied()
    }

    /// The next target by the group's algorithm, other than `exclude` (a retry's).
    pub(crate) fn pick(&self, exclude: Option<SocketAddr>) -> Option<&'a TargetRt> {
        let group = self.group;
        let counter = group.counter.fetch_add(1, Ordering::Relaxed);
        // Only a target in slow start makes `pick` draw.
        let random = if self.cands.iter().all(|c| c.weight >= 1.0) {
            0.0
        } else {
            rand::random()
        };
        match exclude {
            None => balance::pick(group.config.algorithm, &self.cands, counter, random)
                .map(|i| self.routable[i]),
            Some(x) => {
                let rest: Vec<usize> = (0..self.routable.len())
                    .filter(|&i| self.routable[i].addr != x)
                    .collect();
                let rest_cands: Vec<Candidate> = rest.iter().map(|&i| self.cands[i]).collect();
                balance::pick(group.config.algorithm, &rest_cands, counter, random)
                    .map(|i| self.routable[rest[i]])
            }
        }
    }
}
