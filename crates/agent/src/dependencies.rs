//! `dependsOn` conditions: whether a container may start, given what its dependencies
//! have done so far. Pure; the supervisor observes the containers and asks.
//!
//! ECS's rules: `START` — the dependency has been started; `COMPLETE` — it has exited
//! (any code); `SUCCESS` — it has exited with code 0; `HEALTHY` — its health check has
//! passed. A condition that can no longer hold (a `SUCCESS` dependency exited non-zero, a
//! `HEALTHY` one exited or turned UNHEALTHY) fails the task at once instead of waiting for
//! the container's `startTimeout`.

use model::wire::{ContainerCondition, HealthStatus};

/// What a dependency has done so far, as the supervisor observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Started and still running, with its current health (UNKNOWN without a check).
    Running(HealthStatus),
    /// Exited with this code.
    Exited(i32),
}

/// The answer for one dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The condition holds.
    Met,
    /// Not yet; look again later.
    Wait,
    /// It can never hold; the reason says why.
    Failed(String),
}

/// Whether `condition` on dependency `name` holds given `observed`.
pub fn verdict(name: &str, condition: ContainerCondition, observed: Observed) -> Verdict {
    use ContainerCondition as C;
    match (condition, observed) {
        (C::Start, _) | (C::Complete, Observed::Exited(_)) | (C::Success, Observed::Exited(0)) => {
            Verdict::Met
        }
        (C::Healthy, Observed::Running(HealthStatus::Healthy)) => Verdict::Met,
        (C::Complete | C::Success, Observed::Running(_))
        | (C::Healthy, Observed::Running(HealthStatus::Unknown)) => Verdict::Wait,
        (C::Success, Observed::Exited(code)) => Verdict::Failed(format!(
            "dependency {name} exited with code {code} (condition SUCCESS needs 0)"
        )),
        (C::Healthy, Observed::Running(HealthStatus::Unhealthy)) => Verdict::Failed(format!(
            "dependency {name} is UNHEALTHY (condition HEALTHY)"
        )),
        (C::Healthy, Observed::Exited(code)) => Verdict::Failed(format!(
            "dependency {name} exited with code {code} before it was HEALTHY"
        )),
    }
}

/// Folds the verdicts of all of a container's dependencies: the first failure, else
/// `Wait` while any waits, else `Met`.
pub fn all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
    let mut waiting = false;
    for v in verdicts {
        match v {
            Verdict::Failed(_) => return v,
            Verdict::Wait => waiting = true,
            Verdict::Met => {}
        }
    }
    if waiting { Verdict::Wait } else { Verdict::Met }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerCondition as C;
    use HealthStatus as H;

    #[test]
    fn start_is_met_once_started() {
        assert_eq!(
            verdict("a", C::Start, Observed::Running(H::Unknown)),
            Verdict::Met
        );
        assert_eq!(verdict("a", C::Start, Observed::Exited(1)), Verdict::Met);
    }

    #[test]
    fn complete_waits_for_any_exit_and_success_for_a_clean_one() {
        assert_eq!(
            verdict("a", C::Complete, Observed::Running(H::Healthy)),
            Verdict::Wait
        );
        assert_eq!(verdict("a", C::Complete, Observed::Exited(7)), Verdict::Met);
        assert_eq!(
            verdict("a", C::Success, Observed::Running(H::Unknown)),
            Verdict::Wait
        );
        assert_eq!(verdict("a", C::Success, Observed::Exited(0)), Verdict::Met);
        assert!(matches!(
            verdict("init", C::Success, Observed::Exited(3)),
            Verdict::Failed(r) if r.contains("init") && r.contains("code 3")
        ));
    }

    #[test]
    fn healthy_waits_for_a_passing_check_and_fails_when_it_cannot_come() {
        assert_eq!(
            verdict("db", C::Healthy, Observed::Running(H::Unknown)),
            Verdict::Wait
        );
        assert_eq!(
            verdict("db", C::Healthy, Observed::Running(H::Healthy)),
            Verdict::Met
        );
        assert!(matches!(
            verdict("db", C::Healthy, Observed::Running(H::Unhealthy)),
            Verdict::Failed(r) if r.contains("UNHEALTHY")
        ));
        assert!(matches!(
            verdict("db", C::Healthy, Observed::Exited(0)),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn all_reports_the_first_failure_then_waits_then_meets() {
        assert_eq!(all([Verdict::Met, Verdict::Met]), Verdict::Met);
        assert_eq!(all([Verdict::Met, Verdict::Wait]), Verdict::Wait);
        assert_eq!(
            all([Verdict::Wait, Verdict::Failed("x".into()), Verdict::Met]),
            Verdict::Failed("x".into())
        );
        assert_eq!(all([]), Verdict::Met);
    }
}
