//! Polling with a deadline: tests wait for a condition, never for a fixed time.
//!
//! A probe answers with anything [`Ready`]: `true`, `Some(value)` or `Ok(value)` when the
//! wait is over; `false`, `None` or `Err(why)` when it is not yet. After the deadline the
//! wait panics with what it waited for and the last `why`.

use std::fmt::Display;
use std::time::Duration;

use controlplane::{ControlPlane, State};
use tokio::time::Instant;

/// What a probe answers: ready (with a value), or not yet (with a reason, maybe empty).
pub trait Ready {
    /// What the wait returns once ready.
    type Output;
    /// `Ok` when ready; `Err` with why not, for the panic message, when not yet.
    ///
    /// # Errors
    /// Not ready yet.
    fn ready(self) -> Result<Self::Output, String>;
}

impl Ready for bool {
    type Output = ();
    fn ready(self) -> Result<(), String> {
        if self { Ok(()) } else { Err(String::new()) }
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn ready(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: Display> Ready for Result<T, E> {
    type Output = T;
    fn ready(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// How long a [`until_state`] wait sleeps at most between two looks when nothing changes
/// (time alone can make a condition true: a controlled clock, a retention timer).
pub const STATE_RECHECK: Duration = Duration::from_millis(200);

/// One wait: what for, for how long, until when (on the tokio clock, which is the system
/// clock outside a runtime with paused time).
struct Wait<'a> {
    what: &'a str,
    within: Duration,
    deadline: Instant,
}

impl Wait<'_> {
    fn new(what: &str, within: Duration) -> Wait<'_> {
        Wait {
            what,
            within,
            deadline: Instant::now() + within,
        }
    }

    /// The probe's value once ready; `None` to look again (after at most the time
    /// returned by [`Wait::left`]); panics past the deadline.
    fn look<R: Ready>(&self, answer: R) -> Option<R::Output> {
        match answer.ready() {
            Ok(v) => Some(v),
            Err(why) if Instant::now() >= self.deadline => {
                let (what, within) = (self.what, self.within);
                if why.is_empty() {
                    panic!("timed out after {within:?} waiting for {what}")
                }
                panic!("timed out after {within:?} waiting for {what}: {why}")
            }
            Err(_) => None,
        }
    }

    /// The time left until the deadline.
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Calls `probe` every `every` until it is ready; its value. Blocks the thread (so not
/// for a tokio runtime whose time is paused: its clock would never move).
///
/// # Panics
/// When `probe` is not ready within `within`.
pub fn until<R: Ready>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> R,
) -> R::Output {
    let wait = Wait::new(what, within);
    loop {
        if let Some(v) = wait.look(probe()) {
            return v;
        }
        std::thread::sleep(every.min(wait.left()));
    }
}

/// [`until`] for an async probe, sleeping on the tokio clock.
///
/// # Panics
/// When `probe` is not ready within `within`.
pub async fn until_async<R: Ready>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl AsyncFnMut() -> R,
) -> R::Output {
    let wait = Wait::new(what, within);
    loop {
        if let Some(v) = wait.look(probe().await) {
            return v;
        }
        tokio::time::sleep(every.min(wait.left())).await;
    }
}

/// Looks at the control plane's published state with `check` after every change it
/// publishes (and at least every [`STATE_RECHECK`]) until `check` is ready; its value.
///
/// # Panics
/// When `check` is not ready within `within`, or the control plane stops.
pub async fn until_state<R: Ready>(
    cp: &ControlPlane,
    what: &str,
    within: Duration,
    mut check: impl FnMut(&State) -> R,
) -> R::Output {
    let wait = Wait::new(what, within);
    let mut changes = cp.subscribe();
    loop {
        changes.borrow_and_update();
        if let Some(v) = wait.look(cp.read(&mut check)) {
            return v;
        }
        let nap = STATE_RECHECK.min(wait.left());
        if let Ok(Err(_)) = tokio::time::timeout(nap, changes.changed()).await {
            panic!("the control plane stopped while waiting for {what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_probe_returns_its_value() {
        let mut calls = 0;
        let v = until(
            "the third call",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                calls += 1;
                (calls == 3).then_some(calls)
            },
        );
        assert_eq!(v, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for never: still 42")]
    fn a_probe_that_never_gets_ready_says_why() {
        until(
            "never",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || Err::<(), _>("still 42"),
        );
    }

    #[tokio::test]
    async fn async_probes_are_polled_until_ready() {
        let mut calls = 0;
        until_async(
            "two calls",
            Duration::from_secs(5),
            Duration::ZERO,
            async || {
                calls += 1;
                calls >= 2
            },
        )
        .await;
        assert_eq!(calls, 2);
    }
}
