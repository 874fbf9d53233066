//! The operator's choices: how many nodes may be out at once, what to do with
//! standalone tasks, when new nodes may start (the maintenance window), and how long to
//! wait for a node.

use std::str::FromStr;

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::error::Error;

/// How the rollout runs.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Nodes updated at the same time (at least 1).
    pub max_unavailable: usize,
    /// What to do with a node that runs standalone (non-service) tasks.
    pub standalone_tasks: StandalonePolicy,
    /// When new nodes may start; `None` = always.
    pub window: Option<Window>,
    /// How long a rebooted node may take to come back (and an activated node to show
    /// ACTIVE) before the rollout halts.
    pub node_timeout: SignedDuration,
    /// How long service tasks may take to leave a draining node before the node is put
    /// back ACTIVE and skipped.
    pub drain_timeout: SignedDuration,
    /// After how long a skipped node is tried again; `None` = not in this run.
    pub retry_skipped_after: Option<SignedDuration>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_unavailable: 1,
            standalone_tasks: StandalonePolicy::Skip,
            window: None,
            node_timeout: SignedDuration::from_mins(10),
            drain_timeout: SignedDuration::from_mins(30),
            retry_skipped_after: None,
        }
    }
}

impl Policy {
    /// Checks the values that have a floor.
    ///
    /// # Errors
    /// [`Error::MaxUnavailableZero`].
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_unavailable == 0 {
            return Err(Error::MaxUnavailableZero);
        }
        Ok(())
    }
}

/// What to do with a node that runs standalone tasks (tasks no service will replace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandalonePolicy {
    /// Leave the node for later (reported), go on with the others.
    Skip,
    /// Drain the node and wait until those tasks have stopped by themselves.
    Wait,
}

/// A maintenance window: it opens at each time the cron expression matches (UTC) and
/// stays open for `length`. New nodes are started only while it is open.
#[derive(Debug, Clone)]
pub struct Window {
    spec: String,
    cron: Cron,
    length: SignedDuration,
}

/// Whether a window is open at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStatus {
    /// Open until `closes_at`.
    Open {
        /// When this opening ends.
        closes_at: Timestamp,
    },
    /// Closed; it opens next at `opens_at` (`None`: the expression never matches again).
    Closed {
        /// The next opening.
        opens_at: Option<Timestamp>,
    },
}

impl FromStr for Window {
    type Err = Error;

    /// Parses `CRON/DURATION`: `0 2 * * */3h` opens at 02:00 UTC every day for 3 hours.
    /// The duration is after the last `/` (cron steps like `*/15` keep theirs).
    fn from_str(spec: &str) -> Result<Window, Error> {
        let (cron, duration) = spec.rsplit_once('/').ok_or_else(|| Error::WindowShape {
            spec: spec.to_owned(),
        })?;
        let bad_duration = || Error::WindowDuration {
            spec: spec.to_owned(),
            duration: duration.to_owned(),
        };
        let length: SignedDuration = duration.trim().parse().map_err(|_| bad_duration())?;
        if length <= SignedDuration::ZERO {
            return Err(bad_duration());
        }
        if cron.trim().is_empty() {
            return Err(Error::WindowShape {
                spec: spec.to_owned(),
            });
        }
        let cron = Cron::from_str(cron.trim()).map_err(|e| Error::WindowCron {
            spec: spec.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Window {
            spec: spec.to_owned(),
            cron,
            length,
        })
    }
}

impl Window {
    /// The window as written.
    #[must_use]
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Whether the window is open at `now`: the last opening at or before `now` started
    /// less than the window's length ago.
    #[must_use]
    pub fn status(&self, now: Timestamp) -> WindowStatus {
        let zoned = now.to_zoned(TimeZone::UTC);
        if let Ok(opened) = self.cron.find_previous_occurrence(&zoned, true) {
            let closes_at = opened.timestamp().checked_add(self.length);
            if let Ok(closes_at) = closes_at
                && now < closes_at
            {
                return WindowStatus::Open { closes_at };
            }
        }
        let opens_at = self
            .cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp());
        WindowStatus::Closed { opens_at }
    }
}
