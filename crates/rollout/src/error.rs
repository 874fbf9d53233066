//! The crate's one error type: what can be wrong in the operator's input (a maintenance
//! window, a policy). Decisions themselves never fail: a problem in the cluster is a
//! [`Decision`](crate::Decision) (wait, halt), not an error.

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `--window` is not `CRON/DURATION`.
    #[error("maintenance window {spec:?}: expected CRON/DURATION, e.g. \"0 2 * * */3h\"")]
    WindowShape {
        /// The window as given.
        spec: String,
    },
    /// The cron part of `--window` does not parse.
    #[error("maintenance window {spec:?}: bad cron expression: {reason}")]
    WindowCron {
        /// The window as given.
        spec: String,
        /// The cron parser's message.
        reason: String,
    },
    /// The duration part of `--window` does not parse or is not positive.
    #[error("maintenance window {spec:?}: bad duration {duration:?} (e.g. 3h, 90m, 1h30m)")]
    WindowDuration {
        /// The window as given.
        spec: String,
        /// The duration as given.
        duration: String,
    },
    /// `max_unavailable` is zero.
    #[error("max-unavailable must be at least 1")]
    MaxUnavailableZero,
}
