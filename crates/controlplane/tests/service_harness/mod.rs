//! The harness the `services_*` tests share: the service controller driven as a pure
//! function. A [`Harness`] is a hand-built [`State`](controlplane::State) (through
//! testkit's [`World`]) with cluster `c`, instances in the zones asked for and task
//! definition `web:1`; a loop of `reconcile_service` and a simulated agent
//! (SubmitTaskStateChange, acting as each revision's [`Behaviour`] says) runs until
//! nothing moves, with assertions at every step and at the end.
//!
//! Each test file uses what it needs of it, hence `dead_code` is allowed here.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

use controlplane::Change;
use controlplane::controllers::service::{ServiceOutcome, reconcile_service};
use controlplane::ops::{agent, services};
use controlplane::state::{MemberKey, Record, ServiceKey, TaskRecord};
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::{World, req, scope};

/// How the simulated agent treats tasks of a task definition.
#[derive(Clone, Copy, PartialEq)]
pub enum Behaviour {
    /// PENDING → RUNNING, and stays up.
    Healthy,
    /// PENDING → RUNNING, then exits 1 on the next step.
    CrashAfterStart,
    /// PENDING → STOPPED (the image cannot be pulled, say).
    FailToStart,
}

/// A [`World`] with a service `web` in cluster `c` and a simulated agent.
pub struct Harness {
    pub world: World,
    pub behaviour: BTreeMap<String, Behaviour>,
    /// Every (running+pending+stopping) and healthy count seen after each reconcile.
    pub trace: Vec<(usize, usize)>,
}

/// The harness is its world (state, clock, seeds) plus the agent's behaviour.
impl Deref for Harness {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl Harness {
    /// Cluster `c`, one instance per zone (`i-<zone>-<n>`), task definition `web:1`.
    pub fn new(zones: &[&str]) -> Harness {
        let mut h = Harness {
            world: World::new(),
            behaviour: BTreeMap::new(),
            trace: Vec::new(),
        };
        h.create_cluster("c");
        for z in zones {
            h.add_instance(z);
        }
        h.register("web", 128);
        h
    }

    /// An instance in `zone` with 4096 CPU units and MiB.
    pub fn add_instance(&mut self, zone: &str) -> String {
        let id = format!("i-{zone}-{}", self.state.instances.len());
        self.world.add_instance("c", &id, zone, 4096, 4096)
    }

    /// Registers a revision of `family` whose tasks stay healthy; returns its ARN.
    pub fn register(&mut self, family: &str, memory: i64) -> String {
        let arn = self.world.register(family, memory);
        self.behaviour.insert(arn.clone(), Behaviour::Healthy);
        arn
    }

    pub fn create_service(&mut self, body: Value) {
        let mut body = body;
        body["cluster"] = json!("c");
        body["serviceName"] = json!("web");
        let _: wire::CreateServiceResponse = self.write(services::create, req(body));
    }

    pub fn update_service(&mut self, body: Value) {
        let mut body = body;
        body["cluster"] = json!("c");
        body["service"] = json!("web");
        let _: wire::UpdateServiceResponse = self.write(services::update, req(body));
    }

    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(&scope(), "c", "web")
    }

    /// One reconcile pass; records the counts it leaves behind.
    pub fn reconcile(&mut self) -> ServiceOutcome {
        let mut ctx = self.ctx();
        let key = self.key();
        let (out, changes) = reconcile_service(&self.state, &mut ctx, &key).expect("reconcile");
        self.apply(&changes);
        let alive = self.tasks().filter(|t| alive(t)).count();
        let healthy = self
            .tasks()
            .filter(|t| {
                t.task.desired_status.as_deref() == Some("RUNNING")
                    && t.task.last_status.as_deref() == Some("RUNNING")
            })
            .count();
        self.trace.push((alive, healthy));
        out
    }

    pub fn tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.state
            .tasks
            .values()
            .map(|t| &**t)
            .filter(|t| t.task.group.as_deref() == Some("service:web"))
    }

    /// The agent reports `task` in `status`; its container exited with `exit`, if given.
    pub fn agent_report(&mut self, task: &TaskRecord, status: &str, exit: Option<i32>) {
        let mut body = json!({"cluster": "c", "task": task.id, "status": status});
        if let Some(code) = exit {
            body["containers"] =
                json!([{"containerName": "app", "status": "STOPPED", "exitCode": code}]);
            body["reason"] = json!("Essential container in task exited");
        }
        let _: wire::SubmitTaskStateChangeResponse =
            self.write(agent::submit_task_state_change, req(body));
    }

    /// The simulated agent: one step for every task that is not STOPPED. Returns
    /// whether it reported anything.
    pub fn agent_step(&mut self) -> bool {
        let tasks: Vec<TaskRecord> = self.tasks().filter(|t| alive(t)).cloned().collect();
        let mut moved = false;
        for t in tasks {
            let def = t
                .task
                .task_definition_arn
                .as_deref()
                .unwrap_or_default()
                .to_owned();
            let behaviour = self
                .behaviour
                .get(&def)
                .copied()
                .unwrap_or(Behaviour::Healthy);
            let running = t.task.last_status.as_deref() == Some("RUNNING");
            if t.task.desired_status.as_deref() == Some("STOPPED") {
                self.agent_report(&t, "STOPPED", Some(143));
            } else if !running && behaviour == Behaviour::FailToStart {
                self.agent_report(&t, "STOPPED", None);
            } else if !running {
                self.agent_report(&t, "RUNNING", None);
            } else if behaviour == Behaviour::CrashAfterStart {
                self.agent_report(&t, "STOPPED", Some(1));
            } else {
                continue;
            }
            moved = true;
        }
        moved
    }

    /// reconcile + agent, one second per step, until nothing has changed for a minute
    /// (time alone moves things: tasks count as healthy after 40 s); `check` runs after
    /// every reconcile.
    pub fn settle(&mut self, mut check: impl FnMut(&Harness)) -> usize {
        let mut quiet = 0;
        for step in 0..2000 {
            self.now += 1.0;
            let before = (self.state.tasks.clone(), self.state.services.clone());
            self.reconcile();
            check(self);
            self.agent_step();
            if (self.state.tasks.clone(), self.state.services.clone()) == before {
                quiet += 1;
                if quiet >= 60 {
                    return step;
                }
            } else {
                quiet = 0;
            }
        }
        panic!("the service did not settle in 2000 steps");
    }

    pub fn service(&self) -> wire::Service {
        self.world.service("c", "web")
    }

    pub fn events(&self) -> Vec<String> {
        self.world.service_events("c", "web")
    }

    pub fn running_by_zone(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for t in self.tasks().filter(|t| {
            t.task.last_status.as_deref() == Some("RUNNING")
                && t.task.desired_status.as_deref() == Some("RUNNING")
        }) {
            *m.entry(
                t.task
                    .availability_zone
                    .as_deref()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
        }
        m
    }

    pub fn instance_id_in(&self, zone: &str) -> String {
        self.state
            .instances
            .values()
            .find(|i| {
                i.instance
                    .attributes
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .any(|a| {
                        a.name.as_deref() == Some("ecs.availability-zone")
                            && a.value.as_deref() == Some(zone)
                    })
            })
            .map(|i| i.id.clone())
            .expect("instance in zone")
    }
}

impl Harness {
    /// The node in `zone` is lost: its agent falls silent and liveness stops its tasks.
    pub fn lose_node(&mut self, zone: &str) {
        let lost = self.instance_id_in(zone);
        // Its agent was last heard from long ago; every other agent just now.
        let mut silent = self
            .state
            .instances
            .values()
            .find(|i| i.id == lost)
            .expect("instance")
            .clone();
        silent.last_heartbeat = 0.0;
        self.apply(&[Change::Put(Record::Instance(silent))]);
        let seen: std::collections::HashMap<MemberKey, f64> = self
            .state
            .instances
            .iter()
            .filter(|(_, i)| i.id != lost)
            .map(|(k, _)| (k.clone(), self.now))
            .collect();
        let mut ctx = self.ctx();
        let (_, changes) = controlplane::ops::agent_channel::check_liveness(
            &self.state,
            &mut ctx,
            &seen,
            30.0,
            60.0,
        )
        .expect("liveness");
        self.apply(&changes);
    }

    /// One second: a reconcile pass, then one agent step.
    pub fn step(&mut self) {
        self.now += 1.0;
        self.reconcile();
        self.agent_step();
    }

    /// Tasks meant to run and RUNNING, by task definition.
    pub fn running_of(&self, def: &str) -> usize {
        self.tasks()
            .filter(|t| {
                t.task.desired_status.as_deref() == Some("RUNNING")
                    && t.task.last_status.as_deref() == Some("RUNNING")
                    && t.task.task_definition_arn.as_deref() == Some(def)
            })
            .count()
    }
}

pub fn alive(t: &TaskRecord) -> bool {
    t.task.last_status.as_deref() != Some("STOPPED")
}

/// The ServicesStable waiter's acceptor: exactly one deployment, running == desired.
pub fn stable(s: &wire::Service) -> bool {
    s.deployments.as_ref().map(Vec::len) == Some(1) && s.running_count == s.desired_count
}
