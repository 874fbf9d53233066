//! A fake cluster and clock for stepping through decisions, like a scheduler harness:
//! build nodes and services, call [`Harness::step`] to decide and carry out the action
//! the way the IO layer would (recording it in the state), advance the time, and change
//! the cluster between steps (tasks stop, nodes boot).

use jiff::{SignedDuration, Timestamp};

use crate::decide::{Action, Decision, decide};
use crate::policy::Policy;
use crate::snapshot::{Node, NodeStatus, ServiceHealth, Snapshot, TaskOnNode, UpdateView};
use crate::state::State;

pub const OLD: &str = "1.0.0";
pub const NEW: &str = "1.1.0";

pub fn arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:000000000000:container-instance/prod/{id}")
}

/// A connected ACTIVE node on [`OLD`] offered [`NEW`], with no tasks.
pub fn node(id: &str, zone: &str) -> Node {
    Node {
        arn: arn(id),
        instance_id: id.to_owned(),
        zone: zone.to_owned(),
        status: NodeStatus::Active,
        agent_connected: true,
        os_version: Some(OLD.to_owned()),
        update: UpdateView::Available {
            version: NEW.to_owned(),
        },
        tasks: Vec::new(),
    }
}

pub fn service(name: &str, desired: i32, running: i32) -> ServiceHealth {
    ServiceHealth {
        name: name.to_owned(),
        desired_count: desired,
        running_count: running,
        minimum_healthy_percent: Some(100),
        deployments: 1,
        rollout_in_progress: false,
    }
}

pub struct Harness {
    pub snapshot: Snapshot,
    pub state: State,
    pub policy: Policy,
    pub now: Timestamp,
    /// Every action carried out, in order.
    pub actions: Vec<Action>,
}

impl Harness {
    pub fn new(nodes: Vec<Node>) -> Harness {
        Harness {
            snapshot: Snapshot {
                nodes,
                services: Vec::new(),
            },
            state: State::new(),
            policy: Policy::default(),
            now: "2026-03-02T12:00:00Z".parse().unwrap(),
            actions: Vec::new(),
        }
    }

    pub fn node_mut(&mut self, id: &str) -> &mut Node {
        let arn = arn(id);
        self.snapshot
            .nodes
            .iter_mut()
            .find(|n| n.arn == arn)
            .expect("node")
    }

    pub fn decide(&self) -> Decision {
        decide(&self.snapshot, &self.state, &self.policy, self.now)
    }

    /// Decides; an action is carried out on the fake cluster and recorded.
    pub fn step(&mut self) -> Decision {
        let decision = self.decide();
        if let Decision::Act(action) = &decision {
            self.carry_out(action);
            self.state.record(action, self.now);
            self.actions.push(action.clone());
        }
        decision
    }

    /// Steps until the decision is not an action; returns it.
    pub fn settle(&mut self) -> Decision {
        for _ in 0..100 {
            let d = self.step();
            if !matches!(d, Decision::Act(_)) {
                return d;
            }
        }
        panic!("no settled decision after 100 steps: {:?}", self.actions);
    }

    pub fn advance(&mut self, secs: i64) {
        self.now += SignedDuration::from_secs(secs);
    }

    /// A service task of `service` running on node `id`.
    pub fn run_service_task(&mut self, id: &str, service: &str) {
        let n = self.node_mut(id);
        let arn = format!("task-{}-{}", n.instance_id, n.tasks.len());
        n.tasks.push(TaskOnNode {
            arn,
            group: format!("service:{service}"),
            last_status: Some(model::lifecycle::TaskStatus::Running),
        });
    }

    /// A standalone task running on node `id`.
    pub fn run_standalone_task(&mut self, id: &str) {
        let n = self.node_mut(id);
        let arn = format!("task-{}-{}", n.instance_id, n.tasks.len());
        n.tasks.push(TaskOnNode {
            arn,
            group: "family:batch".into(),
            last_status: Some(model::lifecycle::TaskStatus::Running),
        });
    }

    /// Every task on node `id` stops (ECS replaced them elsewhere).
    pub fn stop_tasks(&mut self, id: &str) {
        for t in &mut self.node_mut(id).tasks {
            t.last_status = Some(model::lifecycle::TaskStatus::Stopped);
        }
    }

    /// Node `id` finishes booting on `version`.
    pub fn boot(&mut self, id: &str, version: &str) {
        let n = self.node_mut(id);
        n.agent_connected = true;
        n.os_version = Some(version.to_owned());
        // A node that just booted has run no update command since (404): the updater
        // does not ask a node in progress to refresh.
        n.update = UpdateView::NoUpdate;
    }

    /// The tasks on the draining node `id` stop, and it goes through the rest of its
    /// update: Apply, Reboot, a boot into [`NEW`], Activate, Complete (each step asserted).
    pub fn finish_drained_node(&mut self, id: &str) {
        self.stop_tasks(id);
        assert!(matches!(self.step(), Decision::Act(Action::Apply { .. })));
        assert!(matches!(self.step(), Decision::Act(Action::Reboot { .. })));
        self.boot(id, NEW);
        assert!(matches!(
            self.step(),
            Decision::Act(Action::Activate { .. })
        ));
        assert!(matches!(
            self.step(),
            Decision::Act(Action::Complete { .. })
        ));
    }

    /// Updates every node, booting each into [`NEW`] after its reboot; returns the
    /// order nodes were drained in.
    pub fn run_to_done(&mut self) -> Vec<String> {
        for _ in 0..200 {
            match self.step() {
                Decision::Done => return self.drained(),
                Decision::Act(Action::Reboot { instance_id, .. }) => self.boot(&instance_id, NEW),
                Decision::Act(Action::Drain { instance_id, .. }) => self.stop_tasks(&instance_id),
                Decision::Act(_) => {}
                other => panic!("unexpected {other:?} after {:?}", self.actions),
            }
        }
        panic!("not done after 200 steps")
    }

    /// Instance ids, in the order they were drained.
    pub fn drained(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::Drain { .. }))
            .map(|a| a.instance_id().to_owned())
            .collect()
    }

    /// What the IO layer does for each action, as far as the snapshot shows it.
    fn carry_out(&mut self, action: &Action) {
        let Some(node) = self
            .snapshot
            .nodes
            .iter_mut()
            .find(|n| n.arn == action.node())
        else {
            return;
        };
        match action {
            Action::Drain { .. } => node.status = NodeStatus::Draining,
            Action::Apply { version, .. } => {
                node.update = UpdateView::Ready {
                    version: version.clone(),
                };
            }
            Action::Reboot { .. } => {
                node.agent_connected = false;
                node.update = UpdateView::Unknown;
            }
            Action::Activate { .. } | Action::GiveBack { .. } | Action::Halt { .. } => {
                node.status = NodeStatus::Active;
            }
            Action::Complete { .. } | Action::Skip { .. } => {}
        }
    }
}
