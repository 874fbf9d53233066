//! The service controller, driven as a pure function: a hand-built [`State`] with a cluster,
//! three instances in different zones and a task definition; a loop of
//! `reconcile_service` and a simulated agent (SubmitTaskStateChange) until nothing moves;
//! assertions at every step and at the end. One test runs the real [`ControlPlane`] with
//! the runner.

use std::collections::{BTreeMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use controlplane::controllers::service::{
    MAX_EVENTS, ServiceOutcome, failure_threshold, reconcile_service,
};
use controlplane::controllers::{RunnerConfig, spawn_controllers_with};
use controlplane::ops::{agent, clusters, instances, protection, services, task_definitions};
use controlplane::state::{MemberKey, Record, ServiceKey, TaskRecord};
use controlplane::{Change, ControlPlane, State};
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::{self, T0, World, req, scope, submit};
use testkit::wait;

/// How the simulated agent treats tasks of a task definition.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// PENDING → RUNNING, and stays up.
    Healthy,
    /// PENDING → RUNNING, then exits 1 on the next step.
    CrashAfterStart,
    /// PENDING → STOPPED (the image cannot be pulled, say).
    FailToStart,
}

/// A [`World`] with a service `web` in cluster `c` and a simulated agent.
struct Harness {
    world: World,
    behaviour: BTreeMap<String, Behaviour>,
    /// Every (running+pending+stopping) and healthy count seen after each reconcile.
    trace: Vec<(usize, usize)>,
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
    fn new(zones: &[&str]) -> Harness {
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
    fn add_instance(&mut self, zone: &str) -> String {
        let id = format!("i-{zone}-{}", self.state.instances.len());
        self.world.add_instance("c", &id, zone, 4096, 4096)
    }

    /// Registers a revision of `family` whose tasks stay healthy; returns its ARN.
    fn register(&mut self, family: &str, memory: i64) -> String {
        let arn = self.world.register(family, memory);
        self.behaviour.insert(arn.clone(), Behaviour::Healthy);
        arn
    }

    fn create_service(&mut self, body: Value) {
        let mut body = body;
        body["cluster"] = json!("c");
        body["serviceName"] = json!("web");
        let _: wire::CreateServiceResponse = self.write(services::create, req(body));
    }

    fn update_service(&mut self, body: Value) {
        let mut body = body;
        body["cluster"] = json!("c");
        body["service"] = json!("web");
        let _: wire::UpdateServiceResponse = self.write(services::update, req(body));
    }

    fn key(&self) -> ServiceKey {
        ServiceKey::new(&scope(), "c", "web")
    }

    /// One reconcile pass; records the counts it leaves behind.
    fn reconcile(&mut self) -> ServiceOutcome {
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

    fn tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.state
            .tasks
            .values()
            .map(|t| &**t)
            .filter(|t| t.task.group.as_deref() == Some("service:web"))
    }

    /// The agent reports `task` in `status`; its container exited with `exit`, if given.
    fn agent_report(&mut self, task: &TaskRecord, status: &str, exit: Option<i32>) {
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
    fn agent_step(&mut self) -> bool {
        let tasks: Vec<TaskRecord> = self.tasks().filter(|t| alive(t)).cloned().collect();
        let mut moved = false;
        for t in tasks {
            let def = t.task.task_definition_arn.clone().unwrap_or_default();
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
    fn settle(&mut self, mut check: impl FnMut(&Harness)) -> usize {
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

    fn service(&self) -> wire::Service {
        let rec = self.state.services.get(&self.key()).expect("service");
        services::describe_one(&self.state, rec, false)
    }

    fn events(&self) -> Vec<String> {
        self.service()
            .events
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| e.message)
            .collect()
    }

    fn running_by_zone(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for t in self.tasks().filter(|t| {
            t.task.last_status.as_deref() == Some("RUNNING")
                && t.task.desired_status.as_deref() == Some("RUNNING")
        }) {
            *m.entry(t.task.availability_zone.clone().unwrap_or_default())
                .or_default() += 1;
        }
        m
    }

    fn instance_id_in(&self, zone: &str) -> String {
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

fn alive(t: &TaskRecord) -> bool {
    t.task.last_status.as_deref() != Some("STOPPED")
}

/// The ServicesStable waiter's acceptor: exactly one deployment, running == desired.
fn stable(s: &wire::Service) -> bool {
    s.deployments.as_ref().map(Vec::len) == Some(1) && s.running_count == s.desired_count
}

#[test]
fn desired_count_is_reached_and_spread_over_zones() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 6}));
    h.settle(|_| {});
    let s = h.service();
    assert!(stable(&s), "{s:?}");
    assert_eq!(s.running_count, Some(6));
    assert_eq!(
        h.running_by_zone().values().copied().collect::<Vec<_>>(),
        [2, 2, 2]
    );
    let d = &s.deployments.as_ref().unwrap()[0];
    assert_eq!(
        d.rollout_state,
        Some(wire::DeploymentRolloutState::Completed)
    );
    assert_eq!(d.running_count, Some(6));
    let events = h.events();
    assert_eq!(events[0], "(service web) has reached a steady state.");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("(service web) has started 6 tasks: (task "))
    );
    assert!(events.iter().any(|e| e.contains("deployment completed.")));
    for t in h.tasks() {
        assert!(
            t.task
                .started_by
                .as_deref()
                .unwrap()
                .starts_with("ecs-svc/")
        );
    }
}

#[test]
fn reconcile_is_idempotent_and_steady_state_is_not_repeated() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3}));
    h.settle(|_| {});
    let before = h.events().len();
    for _ in 0..5 {
        h.now += 60.0;
        let mut ctx = h.ctx();
        let (out, changes) = reconcile_service(&h.state, &mut ctx, &h.key()).unwrap();
        assert!(changes.is_empty(), "{out:?}");
    }
    assert_eq!(h.events().len(), before);
    // Six hours later ECS says it again, once.
    h.now += 6.0 * 3600.0;
    h.reconcile();
    h.reconcile();
    assert_eq!(h.events().len(), before + 1);
    assert_eq!(h.events()[0], "(service web) has reached a steady state.");
}

#[test]
fn rolling_deploy_respects_min_and_max_percent_at_every_step() {
    for (min, max, desired) in [(100, 200, 4), (50, 100, 4), (50, 150, 6), (0, 100, 3)] {
        let mut h = Harness::new(&["a", "b", "c"]);
        h.create_service(json!({"taskDefinition": "web", "desiredCount": desired,
            "deploymentConfiguration": {"minimumHealthyPercent": min, "maximumPercent": max}}));
        h.settle(|_| {});
        assert!(stable(&h.service()));
        let v2 = h.register("web", 256);
        h.update_service(json!({"taskDefinition": v2}));
        let (lo, hi) = ((desired * min + 99) / 100, desired * max / 100);
        h.trace.clear();
        h.settle(|h| {
            let (alive, healthy) = *h.trace.last().unwrap();
            assert!(alive <= hi as usize, "{min}/{max}: {alive} tasks > {hi}");
            assert!(
                healthy >= lo as usize,
                "{min}/{max}: {healthy} healthy < {lo}"
            );
        });
        let s = h.service();
        assert!(stable(&s), "{min}/{max}: {s:?}");
        let deployments = s.deployments.unwrap();
        assert_eq!(deployments.len(), 1);
        assert_eq!(deployments[0].task_definition.as_deref(), Some(v2.as_str()));
        assert_eq!(
            deployments[0].rollout_state,
            Some(wire::DeploymentRolloutState::Completed)
        );
        assert!(
            h.tasks()
                .filter(|t| alive(t))
                .all(|t| t.task.task_definition_arn.as_deref() == Some(v2.as_str()))
        );
        let stopped_by_scheduler = h
            .tasks()
            .filter(|t| t.task.stop_code == Some(wire::TaskStopCode::ServiceSchedulerInitiated))
            .count();
        assert_eq!(stopped_by_scheduler, desired as usize, "{min}/{max}");
    }
}

#[test]
fn force_new_deployment_replaces_every_task() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    h.settle(|_| {});
    let first: HashSet<String> = h.tasks().map(|t| t.id.clone()).collect();
    h.update_service(json!({"forceNewDeployment": true}));
    h.settle(|_| {});
    assert!(stable(&h.service()));
    let now_running: HashSet<String> = h
        .tasks()
        .filter(|t| alive(t))
        .map(|t| t.id.clone())
        .collect();
    assert!(first.is_disjoint(&now_running));
}

#[test]
fn crashing_revision_trips_the_circuit_breaker_and_rolls_back() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3,
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}}}));
    h.settle(|_| {});
    let good = h.service().task_definition.unwrap();
    let good_tasks: HashSet<String> = h.tasks().map(|t| t.id.clone()).collect();
    let bad = h.register("web", 64);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.update_service(json!({"taskDefinition": bad}));
    let bad_id = h.service().deployments.unwrap()[0].id.clone().unwrap();
    let mut tripped = None;
    h.settle(|h| {
        let s = h.service();
        if tripped.is_none()
            && let Some(d) = s
                .deployments
                .unwrap()
                .into_iter()
                .find(|d| d.id.as_deref() == Some(bad_id.as_str()))
            && d.rollout_state == Some(wire::DeploymentRolloutState::Failed)
        {
            tripped = Some(d);
        }
    });
    let failed = tripped.unwrap_or_else(|| panic!("not FAILED: {:#?}", h.service().deployments));
    // Three tasks crash per round, so the count passes the threshold of 10 by up to 2.
    assert_eq!(failure_threshold(3), 10);
    assert!(
        (10..=12).contains(&failed.failed_tasks.unwrap()),
        "{failed:?}"
    );
    assert_eq!(
        failed.rollout_state_reason.as_deref(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    let s = h.service();
    assert!(stable(&s), "{s:?}");
    assert_eq!(s.task_definition.as_deref(), Some(good.as_str()));
    let d = &s.deployments.as_ref().unwrap()[0];
    assert_eq!(d.task_definition.as_deref(), Some(good.as_str()));
    assert_eq!(
        d.rollout_state,
        Some(wire::DeploymentRolloutState::Completed)
    );
    // The good tasks were never touched (min 100 %): the rollback keeps them.
    let alive_now: HashSet<String> = h
        .tasks()
        .filter(|t| alive(t))
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(alive_now, good_tasks);
    let events = h.events();
    assert!(
        events.iter().any(|e| e.starts_with(&format!(
            "(service web) (deployment {bad_id}) deployment failed: tasks failed to start"
        ))),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e.contains("rolling back")),
        "{events:#?}"
    );
}

#[test]
fn tasks_that_never_start_trip_the_breaker_too() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 30,
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}}}));
    h.settle(|_| {});
    let good = h.service().task_definition.unwrap();
    let bad = h.register("web", 64);
    h.behaviour.insert(bad.clone(), Behaviour::FailToStart);
    h.update_service(json!({"taskDefinition": bad}));
    let mut failed = 0;
    h.settle(|h| {
        for d in h.service().deployments.unwrap() {
            if d.rollout_state == Some(wire::DeploymentRolloutState::Failed) {
                failed = d.failed_tasks.unwrap();
            }
        }
    });
    // ceil(0.5 × 30) = 15 failures (30 started at once, so up to 30 counted).
    assert_eq!(failure_threshold(30), 15);
    assert!((15..=30).contains(&failed), "{failed}");
    let s = h.service();
    assert!(stable(&s));
    assert_eq!(s.task_definition, Some(good));
    assert!(
        h.tasks()
            .filter(|t| t.task.stop_code == Some(wire::TaskStopCode::TaskFailedToStart))
            .count()
            >= 15
    );
}

#[test]
fn breaker_without_rollback_leaves_the_deployment_failed_and_stops_launching() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": false}}}));
    h.settle(|_| {});
    let bad = h.register("web", 64);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.update_service(json!({"taskDefinition": bad}));
    h.settle(|_| {});
    let s = h.service();
    let d = &s.deployments.as_ref().unwrap()[0];
    assert_eq!(d.status.as_deref(), Some("PRIMARY"));
    assert_eq!(d.rollout_state, Some(wire::DeploymentRolloutState::Failed));
    assert!(d.failed_tasks.unwrap() >= 10, "{d:?}");
    assert_eq!(s.deployments.as_ref().unwrap().len(), 2, "not stable");
    assert_eq!(s.running_count, Some(2), "the old tasks still serve");
}

#[test]
fn draining_instance_tasks_are_replaced_first_then_stopped() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3}));
    h.settle(|_| {});
    // A standalone task on the instance that drains is left alone.
    let drained = h.instance_id_in("a");
    let _: wire::StartTaskResponse = h.write(
        controlplane::ops::tasks::start_task,
        req(json!({"cluster": "c", "taskDefinition": "web", "containerInstances": [drained]})),
    );
    let _: wire::UpdateContainerInstancesStateResponse = h.write(
        instances::update_state,
        req(json!({"cluster": "c", "containerInstances": [drained], "status": "DRAINING"})),
    );
    let on_drained: Vec<String> = h
        .tasks()
        .filter(|t| t.instance_id.as_deref() == Some(drained.as_str()))
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(on_drained.len(), 1);
    h.trace.clear();
    h.settle(|h| {
        let (_, healthy) = *h.trace.last().unwrap();
        assert!(healthy >= 3, "min healthy 100 % held while draining");
        // Nothing new lands on the draining instance.
        assert!(h.tasks().filter(|t| alive(t)).all(|t| {
            t.instance_id.as_deref() != Some(drained.as_str()) || on_drained.contains(&t.id)
        }));
    });
    assert!(stable(&h.service()));
    let replaced = h
        .state
        .tasks
        .values()
        .find(|t| t.id == on_drained[0])
        .unwrap();
    assert_eq!(replaced.task.last_status.as_deref(), Some("STOPPED"));
    assert!(
        replaced
            .task
            .stopped_reason
            .as_deref()
            .unwrap()
            .contains("is draining")
    );
    let standalone = h
        .state
        .tasks
        .values()
        .find(|t| t.task.group.as_deref() == Some("family:web"))
        .unwrap();
    assert_eq!(standalone.task.desired_status.as_deref(), Some("RUNNING"));
    assert_eq!(h.running_by_zone().get("a"), None);
}

#[test]
fn a_deployment_that_cannot_move_says_so_once() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 100}}));
    h.settle(|_| {});
    let v2 = h.register("web", 64);
    h.update_service(json!({"taskDefinition": v2}));
    h.settle(|_| {});
    let s = h.service();
    assert_eq!(s.deployments.as_ref().unwrap().len(), 2, "stuck");
    let stuck: Vec<String> = h
        .events()
        .into_iter()
        .filter(|e| e.contains("was unable to stop or start tasks during a deployment"))
        .collect();
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    // Lowering the minimum lets it through.
    h.update_service(json!({"deploymentConfiguration": {"minimumHealthyPercent": 50}}));
    h.settle(|_| {});
    assert!(stable(&h.service()));
}

#[test]
fn draining_with_lower_min_healthy_stops_first() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2,
        "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 100}}));
    h.settle(|_| {});
    let drained = h.instance_id_in("a");
    let _: wire::UpdateContainerInstancesStateResponse = h.write(
        instances::update_state,
        req(json!({"cluster": "c", "containerInstances": [drained], "status": "DRAINING"})),
    );
    // max 100 %: no room to start first, so the task stops first.
    h.now += 1.0;
    let out = h.reconcile();
    assert_eq!((out.started.len(), out.stopped.len()), (0, 1));
    h.settle(|h| assert!(h.trace.last().unwrap().0 <= 2));
    assert!(stable(&h.service()));
    assert_eq!(h.running_by_zone().get("b"), Some(&2));
}

#[test]
fn scale_in_keeps_zones_balanced_and_honours_protection() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 6}));
    h.settle(|_| {});
    // Protect both tasks in zone a.
    let zone_a: Vec<String> = h
        .tasks()
        .filter(|t| t.task.availability_zone.as_deref() == Some("a"))
        .map(|t| t.id.clone())
        .collect();
    let r: wire::UpdateTaskProtectionResponse = h.write(
        protection::update,
        req(json!({"cluster": "c", "tasks": zone_a, "protectionEnabled": true, "expiresInMinutes": 60})),
    );
    assert_eq!(r.protected_tasks.unwrap().len(), 2);
    h.update_service(json!({"desiredCount": 3}));
    h.settle(|_| {});
    assert!(stable(&h.service()));
    for id in &zone_a {
        let t = h.state.tasks.values().find(|t| t.id == *id).unwrap();
        assert_eq!(t.task.last_status.as_deref(), Some("RUNNING"), "protected");
    }
    // Zones a, b, c keep 2, and the other two zones share the remaining one task:
    // with a protected, the best balance is {a: 2, b: 1, c: 0} or {a: 2, b: 0, c: 1}.
    let by_zone = h.running_by_zone();
    assert_eq!(by_zone.get("a"), Some(&2));
    assert_eq!(by_zone.values().sum::<usize>(), 3);
    assert!(h.tasks().filter(|t| !alive(t)).all(|t| {
        t.task
            .stopped_reason
            .as_deref()
            .unwrap()
            .starts_with("Scaling activity")
    }));

    // Without protection, 6 → 3 leaves one per zone.
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 6}));
    h.settle(|_| {});
    h.update_service(json!({"desiredCount": 3}));
    h.settle(|_| {});
    assert_eq!(
        h.running_by_zone().values().copied().collect::<Vec<_>>(),
        [1, 1, 1]
    );
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("(service web) has stopped 3 running tasks: (task "))
    );
}

#[test]
fn protection_expires_by_time_alone() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    h.settle(|_| {});
    let ids: Vec<String> = h.tasks().map(|t| t.id.clone()).collect();
    let _: wire::UpdateTaskProtectionResponse = h.write(
        protection::update,
        req(json!({"cluster": "c", "tasks": ids, "protectionEnabled": true, "expiresInMinutes": 10})),
    );
    let got = protection::get(&h.state, &scope(), h.now, req(json!({"cluster": "c"}))).unwrap();
    assert_eq!(got.protected_tasks.unwrap().len(), 2);
    h.update_service(json!({"desiredCount": 1}));
    h.settle(|_| {});
    assert_eq!(h.service().running_count, Some(2), "both protected");
    h.now += 600.0;
    h.settle(|_| {});
    assert_eq!(h.service().running_count, Some(1));
    assert!(stable(&h.service()));
    let got = protection::get(&h.state, &scope(), h.now, req(json!({"cluster": "c"}))).unwrap();
    assert!(got.protected_tasks.unwrap().is_empty());
}

#[test]
fn protection_is_validated_like_ecs() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    h.settle(|_| {});
    let svc_task = h.tasks().next().unwrap().id.clone();
    let _: wire::RunTaskResponse = h.write(
        controlplane::ops::tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "web"})),
    );
    let standalone = h
        .state
        .tasks
        .values()
        .find(|t| t.task.group.as_deref() == Some("family:web"))
        .unwrap()
        .id
        .clone();
    let mut ctx = h.ctx();
    let too_long = protection::update(
        &h.state,
        &mut ctx,
        req(
            json!({"cluster": "c", "tasks": [svc_task], "protectionEnabled": true, "expiresInMinutes": 2881}),
        ),
    );
    assert_eq!(too_long.unwrap_err().code(), "InvalidParameterException");
    let r: wire::UpdateTaskProtectionResponse = h.write(
        protection::update,
        req(json!({"cluster": "c", "tasks": [svc_task, standalone, "nope"], "protectionEnabled": true})),
    );
    let p = r.protected_tasks.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].expiration_date, Some(h.now + 120.0 * 60.0));
    let reasons: Vec<String> = r
        .failures
        .unwrap()
        .into_iter()
        .filter_map(|f| f.reason)
        .collect();
    assert_eq!(reasons, ["TASK_NOT_VALID", "MISSING"]);
    let r: wire::UpdateTaskProtectionResponse = h.write(
        protection::update,
        req(json!({"cluster": "c", "tasks": [svc_task], "protectionEnabled": false})),
    );
    assert_eq!(
        r.protected_tasks.unwrap()[0].protection_enabled,
        Some(false)
    );
}

#[test]
fn daemon_runs_one_task_per_instance_including_new_ones() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "schedulingStrategy": "DAEMON"}));
    h.settle(|_| {});
    let s = h.service();
    assert!(stable(&s), "{s:?}");
    assert_eq!(s.desired_count, Some(3));
    let per_instance = |h: &Harness| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for t in h.tasks().filter(|t| alive(t)) {
            *m.entry(t.instance_id.clone().unwrap()).or_default() += 1;
        }
        m
    };
    assert!(per_instance(&h).values().all(|n| *n == 1));
    h.add_instance("d");
    h.settle(|_| {});
    let s = h.service();
    assert!(stable(&s));
    assert_eq!(s.desired_count, Some(4));
    assert_eq!(per_instance(&h).len(), 4);
    // A new revision replaces the daemon instance by instance, never two on one.
    let v2 = h.register("web", 64);
    h.update_service(json!({"taskDefinition": v2}));
    h.settle(|h| assert!(per_instance(h).values().all(|n| *n == 1)));
    assert!(stable(&h.service()));
    assert!(
        h.tasks()
            .filter(|t| alive(t))
            .all(|t| t.task.task_definition_arn.as_deref() == Some(v2.as_str()))
    );
    // Draining an instance stops its daemon and the desired count follows.
    let drained = h.instance_id_in("a");
    let _: wire::UpdateContainerInstancesStateResponse = h.write(
        instances::update_state,
        req(json!({"cluster": "c", "containerInstances": [drained], "status": "DRAINING"})),
    );
    h.settle(|_| {});
    assert_eq!(h.service().desired_count, Some(3));
    assert!(stable(&h.service()));
}

#[test]
fn delete_with_force_drains_to_inactive() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 4}));
    h.settle(|_| {});
    let _: wire::DeleteServiceResponse = h.write(
        services::delete,
        req(json!({"cluster": "c", "service": "web", "force": true})),
    );
    assert_eq!(h.service().status.as_deref(), Some("DRAINING"));
    h.settle(|_| {});
    let s = h.service();
    assert_eq!(s.status.as_deref(), Some("INACTIVE"));
    assert!(h.tasks().all(|t| !alive(t)));
    // Nothing more to do for an INACTIVE service.
    assert!(h.reconcile().is_empty());
}

#[test]
fn unplaceable_tasks_say_why_once() {
    let mut h = Harness::new(&["a"]);
    // 4096 MiB per instance, 1000 each: three fit, the rest do not.
    let big = h.register("web", 1000);
    h.create_service(json!({"taskDefinition": big, "desiredCount": 5}));
    h.settle(|_| {});
    let s = h.service();
    assert_eq!(s.running_count, Some(4));
    let events = h.events();
    let unable: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("was unable to place a task because no container instance met all of its requirements"))
        .collect();
    assert_eq!(unable.len(), 1, "{events:#?}");
    assert!(unable[0].contains("RESOURCE:MEMORY"), "{}", unable[0]);
    // A new instance lets the rest in.
    h.add_instance("b");
    h.settle(|_| {});
    assert!(stable(&h.service()));
    assert_eq!(h.service().running_count, Some(5));
}

#[test]
fn scale_out_rebalances_zones() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 4}));
    h.settle(|_| {});
    assert_eq!(h.running_by_zone().get("a"), Some(&4));
    h.add_instance("b");
    h.update_service(json!({"desiredCount": 6}));
    h.trace.clear();
    h.settle(|h| assert!(h.trace.last().unwrap().0 <= 12));
    assert!(stable(&h.service()));
    assert_eq!(
        h.running_by_zone().values().copied().collect::<Vec<_>>(),
        [3, 3]
    );
    assert!(h.events().iter().any(|e| e.contains("rebalancing")));
}

#[test]
fn tasks_failing_health_checks_are_replaced_after_the_grace_period() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(
        json!({"taskDefinition": "web", "desiredCount": 2, "healthCheckGracePeriodSeconds": 300}),
    );
    h.settle(|_| {});
    let sick_id = h.tasks().next().unwrap().id.clone();
    let mut sick = h
        .state
        .tasks
        .values()
        .find(|t| t.id == sick_id)
        .map(|t| TaskRecord::clone(t))
        .unwrap();
    sick.task.health_status = Some(wire::HealthStatus::Unhealthy);
    h.apply(&[Change::Put(Record::Task(sick))]);
    h.now += 1.0;
    let out = h.reconcile();
    assert!(out.stopped.is_empty(), "within the grace period: {out:?}");
    h.now += 300.0;
    h.settle(|_| {});
    let t = h.state.tasks.values().find(|t| t.id == sick_id).unwrap();
    assert_eq!(t.task.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(
        t.task.stopped_reason.as_deref(),
        Some("Task failed container health checks")
    );
    assert!(stable(&h.service()));
    assert_eq!(h.service().deployments.unwrap()[0].failed_tasks, Some(1));
}

#[test]
fn crashed_tasks_are_replaced() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    h.settle(|_| {});
    let victim = h.tasks().next().unwrap().clone();
    h.agent_report(&victim, "STOPPED", Some(137));
    h.settle(|_| {});
    let s = h.service();
    assert!(stable(&s));
    assert_eq!(s.running_count, Some(2));
    assert_eq!(h.tasks().count(), 3);
}

#[test]
fn restart_mid_deployment_does_not_duplicate_tasks() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3}));
    h.settle(|_| {});
    let v2 = h.register("web", 256);
    h.update_service(json!({"taskDefinition": v2}));
    h.now += 1.0;
    let first = h.reconcile();
    assert_eq!(first.started.len(), 3);
    // "Restart": rebuild the state from its records, as the engine loads it from disk.
    let mut records: Vec<Record> = Vec::new();
    records.extend(h.state.clusters.values().cloned().map(Record::Cluster));
    records.extend(
        h.state
            .task_definitions
            .values()
            .cloned()
            .map(Record::TaskDefinition),
    );
    records.extend(h.state.instances.values().cloned().map(Record::Instance));
    records.extend(
        h.state
            .tasks
            .values()
            .map(|t| Record::Task(TaskRecord::clone(t))),
    );
    records.extend(h.state.services.values().cloned().map(Record::Service));
    let mut rebuilt = State::default();
    for r in records {
        rebuilt.apply(&Change::Put(r));
    }
    h.state = rebuilt;
    h.seed = 999;
    let again = h.reconcile();
    assert!(again.started.is_empty(), "{again:?}");
    assert_eq!(h.tasks().filter(|t| alive(t)).count(), 6);
    h.settle(|h| assert!(h.trace.last().unwrap().0 <= 6));
    assert!(stable(&h.service()));
    assert_eq!(h.tasks().filter(|t| alive(t)).count(), 3);
}

#[test]
fn events_are_capped_newest_first() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    h.settle(|_| {});
    for _ in 0..60 {
        let victim = h.tasks().find(|t| alive(t)).unwrap().clone();
        h.agent_report(&victim, "STOPPED", Some(0));
        h.settle(|_| {});
    }
    let s = h.service();
    let events = s.events.unwrap();
    assert_eq!(events.len(), MAX_EVENTS);
    assert!(
        events
            .windows(2)
            .all(|w| w[0].created_at >= w[1].created_at)
    );
    assert_eq!(
        events[0].message.as_deref(),
        Some("(service web) has reached a steady state.")
    );
}

#[test]
fn failure_threshold_is_clamped() {
    assert_eq!(failure_threshold(0), 10);
    assert_eq!(failure_threshold(21), 11);
    assert_eq!(failure_threshold(1000), 200);
}

/// Runs an operation through the real writer; it must succeed.
async fn w<Req: Send + 'static, Resp: Send + 'static>(
    cp: &ControlPlane,
    op: ecs::Op<Req, Resp>,
    r: Req,
) -> Resp {
    submit(cp, op, r).await.expect("write")
}

/// Through the real writer: cluster `c`, an instance of 2048 CPU units and MiB per
/// `(id, zone)`, and task definition `web:1` (64 MiB).
async fn seed_cluster(cp: &ControlPlane, nodes: &[(&str, &str)]) {
    let _: wire::CreateClusterResponse = w(
        cp,
        clusters::create_cluster,
        req(json!({"clusterName": "c"})),
    )
    .await;
    for (id, zone) in nodes {
        let _: wire::RegisterContainerInstanceResponse = w(
            cp,
            instances::register,
            req(ecs::instance("c", id, zone, 2048, 2048)),
        )
        .await;
    }
    let _: wire::RegisterTaskDefinitionResponse = w(
        cp,
        task_definitions::register,
        req(ecs::task_definition("web", 64)),
    )
    .await;
}

/// The real control plane, store and runner: the runner drives a service to a steady
/// state while a simulated agent reports its tasks RUNNING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_drives_a_service_to_steady_state() {
    // Time runs 100 times faster for the control plane, so that "RUNNING for 40 s"
    // takes 0.4 s of the test.
    let start = std::time::Instant::now();
    let clock: controlplane::engine::Clock =
        Arc::new(move || T0 + start.elapsed().as_secs_f64() * 100.0);
    let cp = ecs::control_plane_with_clock(clock.clone());
    let sc = scope();
    seed_cluster(&cp, &[("i-a", "a"), ("i-b", "b")]).await;
    let controllers = spawn_controllers_with(
        cp.clone(),
        RunnerConfig {
            tick: Duration::from_millis(50),
            clock,
            ..RunnerConfig::default()
        },
    );
    let _: wire::CreateServiceResponse = w(
        &cp,
        services::create,
        req(json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web", "desiredCount": 4})),
    )
    .await;

    // The agent: reports every PENDING task RUNNING, woken by every change.
    let agent_cp = cp.clone();
    let agent = tokio::spawn(async move {
        let mut changes = agent_cp.subscribe();
        loop {
            changes.borrow_and_update();
            let pending: Vec<String> = agent_cp.read(|s| {
                s.tasks
                    .values()
                    .filter(|t| t.task.last_status.as_deref() == Some("PENDING"))
                    .map(|t| t.id.clone())
                    .collect()
            });
            for id in pending {
                let _: wire::SubmitTaskStateChangeResponse = w(
                    &agent_cp,
                    agent::submit_task_state_change,
                    req(json!({"cluster": "c", "task": id, "status": "RUNNING"})),
                )
                .await;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });

    let describe = |s: &State| {
        services::describe(s, &sc, req(json!({"cluster": "c", "services": ["web"]})))
            .expect("describe")
            .services
            .unwrap()
            .remove(0)
    };
    let steady = wait::until_state(
        &cp,
        "the runner to reach a steady state",
        Duration::from_secs(20),
        |s| {
            let svc = describe(s);
            let said = svc
                .events
                .as_deref()
                .unwrap_or(&[])
                .first()
                .and_then(|e| e.message.clone())
                == Some("(service web) has reached a steady state.".into());
            (stable(&svc) && svc.running_count == Some(4) && said).then_some(svc)
        },
    )
    .await;
    assert_eq!(steady.pending_count, Some(0));
    // Scale in through the API; the runner follows.
    let _: wire::UpdateServiceResponse = w(
        &cp,
        services::update,
        req(json!({"cluster": "c", "service": "web", "desiredCount": 1})),
    )
    .await;
    // The agent here never confirms stops: tasks no agent acknowledged stop at once;
    // acknowledged ones wait for it. Count what is meant to run.
    wait::until_state(
        &cp,
        "the runner to scale in",
        Duration::from_secs(20),
        |s| {
            s.tasks
                .values()
                .filter(|t| t.task.desired_status.as_deref() == Some("RUNNING"))
                .count()
                == 1
        },
    )
    .await;
    controllers.abort();
    agent.abort();
}

/// A real restart: the runner starts a service's tasks, the control plane goes away
/// mid-rollout (no agent ever reported), and a new one loaded from the same store finds
/// nothing to do twice: no duplicate tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_the_store_resumes_without_duplicates() {
    let store = Arc::new(store::MemStore::new());
    let cp = ControlPlane::open(store.clone()).expect("open");
    seed_cluster(&cp, &[("i-1", "a")]).await;
    let _: wire::CreateServiceResponse = w(
        &cp,
        services::create,
        req(json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web", "desiredCount": 3})),
    )
    .await;
    let count = |cp: &ControlPlane| cp.read(|s| s.tasks.len());
    let controllers = spawn_controllers_with(cp.clone(), RunnerConfig::default());
    wait::until_state(
        &cp,
        "the runner to start the tasks",
        Duration::from_secs(10),
        |s| s.tasks.len() >= 3,
    )
    .await;
    controllers.abort();
    let _ = controllers.await;
    drop(cp);

    let cp = ControlPlane::open(store).expect("reopen");
    assert_eq!(count(&cp), 3);
    let now = controlplane::engine::system_clock()();
    let due = cp.read(|s| controlplane::controllers::services_needing_work(s, now));
    assert!(due.is_empty(), "nothing to redo after a restart: {due:?}");
    let out = cp
        .write(scope(), |s, ctx| {
            reconcile_service(s, ctx, &ServiceKey::new(&scope(), "c", "web"))
        })
        .await
        .expect("reconcile");
    assert!(out.started.is_empty());
    assert_eq!(count(&cp), 3);
}

// ----- the deploy-state matrix (issue: a bad deploy right after a good one) -------------

/// How far the previous deployment got before the bad one is deployed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Previous {
    /// Its rollout COMPLETED (tasks up for more than 40 s).
    Completed,
    /// Steady (what `services-stable` returns on: every task RUNNING, one deployment),
    /// but not yet COMPLETED (the 40 s rule).
    Steady,
    /// Still starting its tasks.
    InProgress,
}

impl Harness {
    /// The node in `zone` is lost: its agent falls silent and liveness stops its tasks.
    fn lose_node(&mut self, zone: &str) {
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
    fn step(&mut self) {
        self.now += 1.0;
        self.reconcile();
        self.agent_step();
    }

    /// Tasks meant to run and RUNNING, by task definition.
    fn running_of(&self, def: &str) -> usize {
        self.tasks()
            .filter(|t| {
                t.task.desired_status.as_deref() == Some("RUNNING")
                    && t.task.last_status.as_deref() == Some("RUNNING")
                    && t.task.task_definition_arn.as_deref() == Some(def)
            })
            .count()
    }
}

/// Runs one cell of the matrix: a 6-task service on 3 zones reaches `previous`, a
/// revision whose tasks exit after starting is deployed, and a node is lost while
/// that deployment is under way (`lose_node_after` steps in). Returns the harness and
/// the good and bad revisions.
fn bad_deploy(
    breaker: bool,
    rollback: bool,
    previous: Previous,
    lose_node_after: usize,
) -> (Harness, String, String) {
    let mut h = Harness::new(&["a", "b", "c"]);
    let good = h.register("web", 128);
    h.create_service(json!({"taskDefinition": good, "desiredCount": 6,
        "deploymentConfiguration": {"deploymentCircuitBreaker":
            {"enable": breaker, "rollback": rollback}}}));
    match previous {
        Previous::Completed => {
            h.settle(|_| {});
        }
        Previous::Steady => {
            for _ in 0..30 {
                if stable(&h.service()) {
                    break;
                }
                h.step();
            }
            let s = h.service();
            assert!(stable(&s), "steady: {s:?}");
            assert_ne!(
                s.deployments.unwrap()[0].rollout_state,
                Some(wire::DeploymentRolloutState::Completed),
                "the 40 s rule keeps it IN_PROGRESS"
            );
        }
        Previous::InProgress => {
            h.now += 1.0;
            h.reconcile();
        }
    }
    let bad = h.register("web", 128);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.update_service(json!({"taskDefinition": bad}));
    for _ in 0..lose_node_after {
        h.step();
    }
    h.lose_node("a");
    (h, good, bad)
}

/// Breaker and rollback on: whatever state the previous deployment was in, and
/// wherever the node loss falls, the service rolls back to the good revision, settles
/// with one deployment and six tasks of it, none on the lost node.
#[test]
fn matrix_breaker_with_rollback_always_converges_on_the_good_revision() {
    for previous in [Previous::Completed, Previous::Steady, Previous::InProgress] {
        for lose_after in [0, 3, 12] {
            let (mut h, good, _bad) = bad_deploy(true, true, previous, lose_after);
            h.settle(|_| {});
            let s = h.service();
            let cell = format!("previous {previous:?}, node lost after {lose_after} steps");
            assert!(stable(&s), "{cell}: {s:?}");
            assert_eq!(s.running_count, Some(6), "{cell}");
            assert_eq!(h.running_of(&good), 6, "{cell}");
            let d = &s.deployments.as_ref().unwrap()[0];
            assert_eq!(d.task_definition.as_deref(), Some(good.as_str()), "{cell}");
            assert_eq!(
                d.rollout_state,
                Some(wire::DeploymentRolloutState::Completed),
                "{cell}"
            );
            let events = h.events();
            assert!(
                events.iter().any(|e| e.contains("deployment failed")),
                "{cell}: {events:?}"
            );
            assert!(
                events.iter().any(|e| e.contains("rolling back")),
                "{cell}: {events:?}"
            );
        }
    }
}

/// Breaker on, rollback off: the bad deployment is FAILED and launches nothing more, yet
/// the service keeps six tasks running — lost ones are replaced with the last revision
/// that did not fail — and both deployments stay listed until the user deploys again.
#[test]
fn matrix_breaker_without_rollback_keeps_desired_count_on_the_last_good_revision() {
    for previous in [Previous::Completed, Previous::Steady, Previous::InProgress] {
        for lose_after in [0, 3, 12] {
            let (mut h, good, bad) = bad_deploy(true, false, previous, lose_after);
            h.settle(|_| {});
            let cell = format!("previous {previous:?}, node lost after {lose_after} steps");
            let s = h.service();
            let ds = s.deployments.clone().unwrap();
            assert_eq!(
                ds[0].task_definition.as_deref(),
                Some(bad.as_str()),
                "{cell}"
            );
            assert_eq!(
                ds[0].rollout_state,
                Some(wire::DeploymentRolloutState::Failed),
                "{cell}"
            );
            assert_eq!(h.running_of(&good), 6, "{cell}: {s:?}");
            assert_eq!(s.running_count, Some(6), "{cell}");
            // Then the user deploys the good revision again: one deployment, stable.
            h.update_service(json!({"taskDefinition": good, "forceNewDeployment": true}));
            h.settle(|_| {});
            assert!(stable(&h.service()), "{cell}");
        }
    }
}

/// Breaker off: nothing declares the bad revision failed, so (as ECS) the controller
/// keeps trying it; old tasks are only replaced by new ones that prove healthy, so the
/// good revision's surviving tasks keep serving, and capacity lost with the node is
/// retried with the new revision at every step.
#[test]
fn matrix_without_breaker_keeps_trying_and_keeps_the_good_tasks() {
    for previous in [Previous::Completed, Previous::Steady, Previous::InProgress] {
        let (mut h, good, bad) = bad_deploy(false, false, previous, 3);
        let cell = format!("previous {previous:?}");
        let mut started_bad = 0;
        for _ in 0..200 {
            let before = h.tasks().count();
            h.now += 1.0;
            h.reconcile();
            started_bad += h.tasks().count() - before;
            // Never fewer alive tasks than desired once the controller has acted.
            let alive = h.tasks().filter(|t| alive(t)).count();
            assert!(alive >= 6, "{cell}: {alive} alive");
            h.agent_step();
        }
        assert!(
            started_bad > 20,
            "{cell}: it keeps retrying ({started_bad})"
        );
        let gone: Vec<_> = h
            .tasks()
            .filter(|t| t.task.task_definition_arn.as_deref() == Some(good.as_str()))
            .filter(|t| t.task.desired_status.as_deref() == Some("STOPPED"))
            .map(|t| t.task.stopped_reason.clone())
            .collect();
        // Tasks of a previous rollout that were still PENDING made way at once (they
        // were not serving); RUNNING ones off the lost node stay.
        let expected = if previous == Previous::InProgress {
            0
        } else {
            4
        };
        assert!(h.running_of(&good) >= expected, "{cell}: {gone:?}");
        assert_eq!(
            h.service().deployments.unwrap()[0]
                .task_definition
                .as_deref(),
            Some(bad.as_str())
        );
    }
}

/// The first deployment of a service fails (nothing to roll back to): it stays the one
/// deployment, FAILED, and keeps relaunching its tasks to hold desiredCount, at most
/// once per FAILED_RELAUNCH_SECS after its last failure.
#[test]
fn a_failed_first_deployment_keeps_trying_throttled() {
    let mut h = Harness::new(&["a", "b", "c"]);
    let bad = h.register("web", 128);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.create_service(json!({"taskDefinition": bad, "desiredCount": 6,
        "deploymentConfiguration": {"deploymentCircuitBreaker":
            {"enable": true, "rollback": true}}}));
    for _ in 0..40 {
        h.step();
    }
    let s = h.service();
    let ds = s.deployments.clone().unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(
        ds[0].rollout_state,
        Some(wire::DeploymentRolloutState::Failed)
    );
    // Throttled: over the next 60 s at most ~2 relaunch rounds of 6.
    let before = h.tasks().count();
    let mut requeue = None;
    for _ in 0..60 {
        h.now += 1.0;
        let out = h.reconcile();
        requeue = requeue.or(out.requeue_after);
        h.agent_step();
    }
    let launched = h.tasks().count() - before;
    assert!(launched > 0, "it keeps trying");
    assert!(launched <= 18, "throttled: {launched} launches in 60 s");
    assert!(requeue.is_some(), "the throttle asks to be woken");
}

/// A stored service beyond the limits (written before they existed) is reported and
/// skipped, not acted on: no task is started, an event says why.
#[test]
fn a_stored_service_beyond_the_limits_is_reported_and_skipped() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    let key = h.key();
    let mut rec = h.state.services.get(&key).unwrap().clone();
    rec.service.desired_count = Some(i32::MAX);
    h.apply(&[Change::Put(Record::Service(rec))]);
    let out = h.reconcile();
    assert!(out.started.is_empty());
    assert!(
        out.events[0].contains("cannot be reconciled: desiredCount 2147483647"),
        "{:?}",
        out.events
    );
    // Said once, not on every pass.
    h.now += 1.0;
    assert!(h.reconcile().events.is_empty());
}

/// CreateService and UpdateService refuse counts beyond ECS's tasks-per-service quota.
#[test]
fn desired_count_beyond_the_quota_is_refused() {
    let mut h = Harness::new(&["a"]);
    let mut ctx = h.ctx();
    let err = services::create(
        &h.state,
        &mut ctx,
        req(
            json!({"cluster": "c", "serviceName": "big", "taskDefinition": "web",
                   "desiredCount": 2147483647}),
        ),
    )
    .unwrap_err();
    assert_eq!(err.code(), "InvalidParameterException");
    assert!(err.to_string().contains("5000"), "{err}");
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    let mut ctx = h.ctx();
    let err = services::update(
        &h.state,
        &mut ctx,
        req(json!({"cluster": "c", "service": "web", "desiredCount": 5001})),
    )
    .unwrap_err();
    assert_eq!(err.code(), "InvalidParameterException");
}

/// A pass starts at most MAX_STARTS_PER_PASS tasks and asks to be run again at once.
#[test]
fn one_pass_starts_a_bounded_number_of_tasks() {
    let mut h = Harness::new(&[]);
    for i in 0..60 {
        let z = ["a", "b", "c"][i % 3];
        h.add_instance(z);
    }
    h.register("tiny", 8);
    h.create_service(json!({"taskDefinition": "tiny", "desiredCount": 1200}));
    let out = h.reconcile();
    let max = usize::try_from(controlplane::limits::MAX_STARTS_PER_PASS).unwrap();
    assert_eq!(out.started.len(), max);
    assert_eq!(out.requeue_after, Some(0.0));
}

/// A rollout's new tasks count as healthy 40 s after they start: the pass that sees them
/// RUNNING asks to be woken then, so no timer needs to poll the service.
#[test]
fn a_pass_asks_to_be_woken_when_tasks_turn_healthy_by_time() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    h.now += 1.0;
    h.reconcile();
    h.agent_step(); // RUNNING at h.now
    let started = h.now;
    h.now += 1.0;
    let out = h.reconcile();
    let after = out.requeue_after.expect("a wake-up for the 40 s rule");
    assert!(
        (h.now + after - (started + 40.0)).abs() < 1e-6,
        "woken at {} for tasks started at {started}",
        h.now + after
    );
}
