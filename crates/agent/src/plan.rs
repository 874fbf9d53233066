//! The agent's reconcile decision, as a pure function of what the control plane wants
//! (the assignment) and what the node has (supervised tasks, persisted records,
//! containers the runtime reports).

use std::collections::{BTreeMap, BTreeSet};

use model::agent::TaskAssignment;
use model::lifecycle::TaskStatus;

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the task's containers and supervise them.
    Start(String),
    /// The task's containers exist already (the agent restarted): supervise them
    /// without starting anything.
    Adopt(String),
    /// Ask the task's supervisor to stop it.
    Stop(String),
    /// The control plane no longer lists a task the agent still holds a record of, and no
    /// supervisor runs it: drop the record (its containers are left to GC).
    Forget(String),
}

/// What the node has, for [`plan`].
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Tasks a supervisor is running now, and whether it was already asked to stop.
    pub supervised: BTreeMap<String, bool>,
    /// Tasks with a persisted record (their containers were created).
    pub recorded: BTreeSet<String>,
}

/// Decides what to do so that the node converges on the assignment.
pub fn plan(assignment: &[TaskAssignment], observed: &Observed) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut assigned = BTreeSet::new();
    for a in assignment {
        let Some(arn) = a.task.task_arn.as_deref().map(str::to_owned) else {
            continue;
        };
        assigned.insert(arn.clone());
        let wants_running = a.task.desired() == Some(TaskStatus::Running);
        match observed.supervised.get(&arn) {
            Some(stopping) => {
                if !wants_running && !stopping {
                    actions.push(Action::Stop(arn));
                }
            }
            None if observed.recorded.contains(&arn) => {
                // Known containers: watch them again (a stop request is honoured by the
                // supervisor once it runs).
                actions.push(Action::Adopt(arn.clone()));
                if !wants_running {
                    actions.push(Action::Stop(arn));
                }
            }
            None if wants_running => actions.push(Action::Start(arn)),
            // Desired STOPPED and never started here: the supervisor reports it stopped.
            None => actions.push(Action::Adopt(arn)),
        }
    }
    for arn in &observed.recorded {
        if !assigned.contains(arn) && !observed.supervised.contains_key(arn) {
            actions.push(Action::Forget(arn.clone()));
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::wire;

    fn a(arn: &str, desired: &str) -> TaskAssignment {
        TaskAssignment {
            task: wire::Task {
                task_arn: Some(arn.into()),
                desired_status: Some(desired.into()),
                ..Default::default()
            },
            task_definition: wire::TaskDefinition::default(),
            service_connect: None,
        }
    }

    #[test]
    fn new_tasks_start_and_known_ones_are_left_alone() {
        let mut o = Observed::default();
        assert_eq!(
            plan(&[a("t1", "RUNNING")], &o),
            vec![Action::Start("t1".into())]
        );
        o.supervised.insert("t1".into(), false);
        assert!(plan(&[a("t1", "RUNNING")], &o).is_empty(), "idempotent");
    }

    #[test]
    fn desired_stopped_stops_once() {
        let mut o = Observed::default();
        o.supervised.insert("t1".into(), false);
        assert_eq!(
            plan(&[a("t1", "STOPPED")], &o),
            vec![Action::Stop("t1".into())]
        );
        o.supervised.insert("t1".into(), true);
        assert!(plan(&[a("t1", "STOPPED")], &o).is_empty());
    }

    #[test]
    fn after_a_restart_recorded_tasks_are_adopted_not_restarted() {
        let mut o = Observed::default();
        o.recorded.insert("t1".into());
        assert_eq!(
            plan(&[a("t1", "RUNNING")], &o),
            vec![Action::Adopt("t1".into())]
        );
        assert_eq!(
            plan(&[a("t1", "STOPPED")], &o),
            vec![Action::Adopt("t1".into()), Action::Stop("t1".into())]
        );
    }

    #[test]
    fn records_the_control_plane_forgot_are_dropped() {
        let mut o = Observed::default();
        o.recorded.insert("gone".into());
        assert_eq!(plan(&[], &o), vec![Action::Forget("gone".into())]);
        o.supervised.insert("gone".into(), true);
        assert!(plan(&[], &o).is_empty(), "its supervisor finishes first");
    }
}
