//! Issue 10 ("Hardening"): retention of STOPPED tasks and INACTIVE records (the pure
//! decision, and the runner on the real writer with a controlled clock), and RunTask's
//! `clientToken` refusing a reuse with other parameters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use controlplane::controllers::reconcile_service;
use controlplane::engine::Clock;
use controlplane::ops::{clusters, instances, services, task_definitions, tasks};
use controlplane::retention::{RetentionConfig, Sightings, expired, spawn_retention};
use controlplane::state::{MetaRecord, Record, ServiceKey, TaskRecord};
use controlplane::{Change, ControlPlane, State};
use model::wire;
use serde_json::{Value, json};
use testkit::ecs::{self, T0, World, req, scope};
use testkit::wait;

const HOUR: f64 = 3600.0;

/// Cluster `c` with one instance and task definition `web:1`, and a paging secret.
fn world() -> World {
    let mut w = World::new();
    w.apply(&[Change::Put(Record::Meta(MetaRecord {
        paging_secret: "00ff".into(),
    }))]);
    w.create_cluster("c");
    w.add_instance("c", "i-1", "a", 100_000, 100_000);
    w.register("web", 32);
    w
}

/// What these tests ask of a [`World`] beyond what testkit gives.
trait Retention {
    /// ListTasks with `body`, at `now`.
    fn list(&self, body: Value) -> Vec<String>;
    /// Runs retention's decision at `now` and applies it; returns what it deleted, as
    /// store keys.
    fn expire(&mut self, config: &RetentionConfig, sightings: &Sightings) -> Vec<String>;
}

impl Retention for World {
    fn list(&self, body: Value) -> Vec<String> {
        tasks::list(&self.state, &scope(), self.now, req(body))
            .expect("list")
            .task_arns
            .unwrap()
    }

    fn expire(&mut self, config: &RetentionConfig, sightings: &Sightings) -> Vec<String> {
        let changes = expired(&self.state, self.now, config, sightings);
        assert!(
            changes.iter().all(|c| matches!(c, Change::Delete(_))),
            "retention only deletes"
        );
        self.apply(&changes);
        changes
            .iter()
            .map(|c| match c {
                Change::Put(r) | Change::Delete(r) => r.store_key(),
            })
            .collect()
    }
}

fn hour_retention() -> RetentionConfig {
    RetentionConfig {
        stopped_task: Duration::from_secs(3600),
        inactive: Duration::from_secs(3600),
        ..RetentionConfig::default()
    }
}

fn id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

#[test]
fn stopped_tasks_are_deleted_after_the_retention_not_before() {
    let mut w = world();
    let arns = w.run(json!({"cluster": "c", "taskDefinition": "web", "count": 3}));
    w.now += 10.0;
    w.stop(&arns[0]);
    w.stop(&arns[1]);
    let config = hour_retention();
    let seen = Sightings::default();

    w.now = T0 + 10.0 + HOUR - 1.0;
    assert!(
        w.expire(&config, &seen).is_empty(),
        "kept for at least an hour"
    );
    assert_eq!(
        w.list(json!({"cluster": "c", "desiredStatus": "STOPPED"}))
            .len(),
        2
    );

    w.now = T0 + 10.0 + HOUR;
    let gone = w.expire(&config, &seen);
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(
        w.list(json!({"cluster": "c", "desiredStatus": "STOPPED"}))
            .is_empty()
    );
    assert_eq!(
        w.list(json!({"cluster": "c", "family": "web"})),
        vec![arns[2].clone()],
        "the running task stays"
    );
    let described = tasks::describe(
        &w.state,
        &scope(),
        req(json!({"cluster": "c", "tasks": [arns[0], arns[2]]})),
    )
    .unwrap();
    assert_eq!(described.tasks.unwrap().len(), 1);
    assert_eq!(
        described.failures.unwrap()[0].reason.as_deref(),
        Some("MISSING")
    );
    // The derived indexes forgot them too.
    assert!(w.state.derived.stopped.is_empty());
    assert_eq!(w.state.derived.definition_refs.values().sum::<u32>(), 1);
    assert!(w.expire(&config, &seen).is_empty(), "nothing more to do");
}

#[test]
fn a_task_asked_to_stop_that_its_agent_has_not_stopped_is_never_deleted() {
    let mut w = world();
    let arn = w
        .run(json!({"cluster": "c", "taskDefinition": "web"}))
        .remove(0);
    w.report(&arn, "RUNNING");
    w.stop(&arn);
    let t = &w.state.tasks.values().next().unwrap().task;
    assert_eq!(
        (t.desired_status.as_deref(), t.last_status.as_deref()),
        (Some("STOPPED"), Some("RUNNING"))
    );
    w.now += 30.0 * 24.0 * HOUR;
    assert!(
        w.expire(&hour_retention(), &Sightings::default())
            .is_empty()
    );
    assert_eq!(w.state.tasks.len(), 1);
    // Once the agent reports it STOPPED, the hour starts.
    w.report(&arn, "STOPPED");
    w.now += HOUR - 1.0;
    assert!(
        w.expire(&hour_retention(), &Sightings::default())
            .is_empty()
    );
    w.now += 1.0;
    assert_eq!(w.expire(&hour_retention(), &Sightings::default()).len(), 1);
    assert!(w.state.tasks.is_empty());
}

#[test]
fn retention_deletes_at_most_a_batch_oldest_first() {
    let mut w = world();
    let mut stopped = Vec::new();
    for i in 0..25 {
        let arn = w
            .run(json!({"cluster": "c", "taskDefinition": "web"}))
            .remove(0);
        w.now += 1.0;
        w.stop(&arn);
        stopped.push((i, arn));
    }
    w.now += 2.0 * HOUR;
    let config = RetentionConfig {
        batch: 10,
        ..hour_retention()
    };
    let mut rounds = Vec::new();
    loop {
        let gone = w.expire(&config, &Sightings::default());
        if gone.is_empty() {
            break;
        }
        rounds.push(gone);
    }
    assert_eq!(rounds.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let first: Vec<String> = rounds[0]
        .iter()
        .map(|k| k.rsplit('|').next().unwrap().to_owned())
        .collect();
    let oldest: Vec<String> = stopped[..10]
        .iter()
        .map(|(_, a)| id_of(a).to_owned())
        .collect();
    assert_eq!(first, oldest, "oldest first");
}

/// A service whose new deployment's tasks fail to start, with the circuit breaker on:
/// the failed tasks feed `failedTasks`. Retention must neither delete a failed task the
/// controller has not counted yet nor change what the controller decides once it has.
#[test]
fn deleting_expired_stopped_tasks_cannot_change_a_service_controller_decision() {
    let mut w = world();
    let _: wire::CreateServiceResponse = w.write(
        services::create,
        req(json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web",
            "desiredCount": 4,
            "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": false}}})),
    );
    let key = ServiceKey::new(&scope(), "c", "web");
    let reconcile = |w: &mut World| {
        let mut ctx = w.ctx();
        let (_, changes) = reconcile_service(&w.state, &mut ctx, &key).expect("reconcile");
        w.apply(&changes);
        changes.len()
    };
    let service_tasks = |w: &World| -> Vec<TaskRecord> {
        w.state
            .tasks
            .values()
            .filter(|t| t.task.group.as_deref() == Some("service:web"))
            .map(|t| TaskRecord::clone(t))
            .collect()
    };
    assert!(reconcile(&mut w) > 0);
    // Every task fails to start (PENDING → STOPPED): the agent reports them.
    for t in service_tasks(&w) {
        w.report(t.task.task_arn.as_deref().unwrap(), "STOPPED");
    }
    assert!(
        service_tasks(&w)
            .iter()
            .all(|t| t.task.stop_code == Some(wire::TaskStopCode::TaskFailedToStart))
    );
    let failed = |w: &World| {
        w.state.services[&key].service.deployments.as_ref().unwrap()[0]
            .failed_tasks
            .unwrap_or(0)
    };
    assert_eq!(failed(&w), 0, "not counted yet");

    // An hour later, before the controller ran: the failures are not in the stored count
    // yet, so the tasks stay.
    w.now += 2.0 * HOUR;
    assert!(
        w.expire(&hour_retention(), &Sightings::default())
            .is_empty(),
        "uncounted failures are kept"
    );

    // The controller counts them (and starts replacements, which fail too, and so on);
    // then nothing is left for it to do until time passes.
    reconcile(&mut w);
    assert_eq!(failed(&w), 4);
    for t in service_tasks(&w) {
        if t.task.last_status.as_deref() != Some("STOPPED") {
            w.report(t.task.task_arn.as_deref().unwrap(), "STOPPED");
        }
    }
    reconcile(&mut w);
    let counted = failed(&w);
    assert_eq!(counted, 8);
    assert_eq!(reconcile(&mut w), 0, "quiet");

    // What the controller would decide next, with and without the expired tasks.
    w.now += 2.0 * HOUR;
    let before = w.state.clone();
    let gone = w.expire(&hour_retention(), &Sightings::default());
    assert_eq!(gone.len(), 8, "{gone:?}");
    let decide = |s: &State| {
        let mut ctx = ecs::ctx(w.now, 99);
        let (outcome, changes) = reconcile_service(s, &mut ctx, &key).expect("reconcile");
        (outcome, format!("{changes:?}"))
    };
    assert_eq!(decide(&before), decide(&w.state));
    assert_eq!(failed(&w), counted, "the stored count stays");
}

#[test]
fn inactive_services_instances_and_clusters_go_after_the_retention() {
    let mut w = world();
    w.create_cluster("old");
    let inst = w.add_instance("old", "i-old", "a", 100_000, 100_000);
    let _: wire::CreateServiceResponse = w.write(
        services::create,
        req(json!({"cluster": "old", "serviceName": "s", "taskDefinition": "web", "desiredCount": 0})),
    );
    let arn = w
        .run(json!({"cluster": "old", "taskDefinition": "web"}))
        .remove(0);
    w.stop(&arn);
    let _: wire::DeleteServiceResponse = w.write(
        services::delete,
        req(json!({"cluster": "old", "service": "s"})),
    );
    let _: wire::DeregisterContainerInstanceResponse = w.write(
        instances::deregister,
        req(json!({"cluster": "old", "containerInstance": inst})),
    );
    let _: wire::DeleteClusterResponse =
        w.write(clusters::delete_cluster, req(json!({"cluster": "old"})));
    assert_eq!(w.state.derived.inactive.len(), 3);

    let config = hour_retention();
    let mut seen = Sightings::default();
    seen.observe(&w.state, w.now);
    w.now += HOUR - 1.0;
    seen.observe(&w.state, w.now);
    assert!(w.expire(&config, &seen).is_empty());

    w.now += 1.0;
    let gone = w.expire(&config, &seen);
    // The service (with its deployment history), the instance and the stopped task go;
    // the cluster waits for them.
    assert_eq!(gone.len(), 5, "{gone:?}");
    assert!(gone.iter().any(|k| k.starts_with("service|")));
    assert!(gone.iter().any(|k| k.starts_with("service-deployment|")));
    assert!(gone.iter().any(|k| k.starts_with("service-revision|")));
    assert!(gone.iter().any(|k| k.starts_with("instance|")));
    assert!(gone.iter().any(|k| k.starts_with("task|")));
    seen.observe(&w.state, w.now);
    assert_eq!(
        w.expire(&config, &seen),
        vec![format!("cluster|000000000000|eu-west-1|old")]
    );
    assert!(w.state.cluster(&scope(), "old").is_none());
    assert!(w.state.derived.inactive.is_empty());
    // The other cluster is untouched.
    assert!(w.state.cluster(&scope(), "c").is_some());
}

#[test]
fn an_inactive_record_made_active_and_inactive_again_starts_its_clock_again() {
    let mut w = world();
    w.create_cluster("x");
    let _: wire::DeleteClusterResponse =
        w.write(clusters::delete_cluster, req(json!({"cluster": "x"})));
    let mut seen = Sightings::default();
    seen.observe(&w.state, w.now);
    w.now += HOUR - 10.0;
    w.create_cluster("x");
    let _: wire::DeleteClusterResponse =
        w.write(clusters::delete_cluster, req(json!({"cluster": "x"})));
    // Not observed in between: the new transition still gets a new clock.
    seen.observe(&w.state, w.now);
    w.now += 20.0;
    assert!(w.expire(&hour_retention(), &seen).is_empty());
    w.now += HOUR;
    assert_eq!(w.expire(&hour_retention(), &seen).len(), 1);
}

#[test]
fn deleted_task_definitions_go_once_unreferenced_but_never_the_newest_revision() {
    let mut w = world();
    w.register("web", 32); // web:2
    w.register("web", 32); // web:3
    let arn = w
        .run(json!({"cluster": "c", "taskDefinition": "web:1"}))
        .remove(0);
    w.stop(&arn);
    for rev in ["web:1", "web:2", "web:3"] {
        let _: wire::DeregisterTaskDefinitionResponse = w.write(
            task_definitions::deregister,
            req(json!({"taskDefinition": rev})),
        );
    }
    let _: wire::DeleteTaskDefinitionsResponse = w.write(
        task_definitions::delete,
        req(json!({"taskDefinitions": ["web:1", "web:2", "web:3"]})),
    );
    let config = RetentionConfig {
        stopped_task: Duration::from_secs(7200),
        ..hour_retention()
    };
    w.now += HOUR;
    let gone = w.expire(&config, &Sightings::default());
    assert_eq!(
        gone,
        vec!["taskdef|000000000000|eu-west-1|web|2".to_owned()],
        "web:1 is still used by a task, web:3 is the newest"
    );
    w.now += HOUR;
    let gone = w.expire(&config, &Sightings::default());
    assert_eq!(gone.len(), 1, "the stopped task");
    let gone = w.expire(&config, &Sightings::default());
    assert_eq!(
        gone,
        vec!["taskdef|000000000000|eu-west-1|web|1".to_owned()]
    );
    assert!(w.expire(&config, &Sightings::default()).is_empty());
    // Revision numbers go on from the newest.
    let next = w.register("web", 32);
    assert!(next.ends_with(":task-definition/web:4"), "{next}");
}

// ----- RunTask clientToken ----------------------------------------------------------------

#[test]
fn a_client_token_reused_with_other_parameters_is_a_conflict() {
    let mut w = world();
    let body = json!({"cluster": "c", "taskDefinition": "web", "count": 2, "clientToken": "tok-1",
        "startedBy": "me"});
    let first = w.run(body.clone());
    assert_eq!(first.len(), 2);
    // The same request again (member order does not matter): the same tasks, no new ones.
    let again = w.run(
        json!({"startedBy": "me", "clientToken": "tok-1", "count": 2,
        "taskDefinition": "web", "cluster": "c"}),
    );
    assert_eq!(again, first);
    assert_eq!(w.state.tasks.len(), 2);
    // The same token with any other parameter: ConflictException naming the tasks.
    for other in [
        json!({"count": 1}),
        json!({"startedBy": "you"}),
        json!({"taskDefinition": "web:1"}),
        json!({"group": "g"}),
        json!({"tags": [{"key": "k", "value": "v"}]}),
    ] {
        let mut body = body.clone();
        for (k, v) in other.as_object().unwrap() {
            body[k] = v.clone();
        }
        let err = w
            .try_write(tasks::run_task, req::<wire::RunTaskRequest>(body.clone()))
            .unwrap_err();
        assert_eq!(err.code(), "ConflictException", "{body}");
        let msg = err.to_string();
        assert!(
            msg.contains("already in use with a different RunTask request"),
            "{msg}"
        );
        assert!(first.iter().all(|a| msg.contains(a.as_str())), "{msg}");
    }
    assert_eq!(w.state.tasks.len(), 2, "nothing was started");
    // Tokens are per cluster (ECS's idempotency type "cluster").
    w.create_cluster("d");
    w.add_instance("d", "i-d", "a", 100_000, 100_000);
    let mut elsewhere = body.clone();
    elsewhere["cluster"] = "d".into();
    assert_eq!(w.run(elsewhere).len(), 2);
}

#[test]
fn client_tokens_are_bounded_and_expire_with_their_tasks() {
    let mut w = world();
    for bad in ["", "has space", "tab\there", "é", &"x".repeat(65)] {
        let err = w
            .try_write(
                tasks::run_task,
                req::<wire::RunTaskRequest>(
                    json!({"cluster": "c", "taskDefinition": "web", "clientToken": bad}),
                ),
            )
            .unwrap_err();
        assert_eq!(err.code(), "InvalidParameterException", "{bad:?}");
        assert!(err.to_string().contains("clientToken"), "{err}");
    }
    let longest = "~".repeat(64);
    let body = json!({"cluster": "c", "taskDefinition": "web", "clientToken": longest});
    let first = w.run(body.clone());
    assert_eq!(w.run(body.clone()), first);

    // After 24 hours the token is free again, even while its task is still there.
    w.now += 24.0 * HOUR;
    let second = w.run(body.clone());
    assert_ne!(second, first);
    assert_eq!(w.run(body.clone()), second);

    // Once retention has deleted its tasks, the token is free too.
    for arn in [&first[0], &second[0]] {
        w.stop(arn);
    }
    w.now += HOUR;
    assert_eq!(w.expire(&hour_retention(), &Sightings::default()).len(), 2);
    let mut other = body.clone();
    other["count"] = 1.into();
    other["startedBy"] = "later".into();
    let third = w.run(other);
    assert_eq!(third.len(), 1);
    assert!(!first.contains(&third[0]) && !second.contains(&third[0]));
}

#[test]
fn a_token_s_tasks_expire_together() {
    let mut w = world();
    let arns =
        w.run(json!({"cluster": "c", "taskDefinition": "web", "count": 2, "clientToken": "t"}));
    w.stop(&arns[0]);
    w.now += 2.0 * HOUR;
    assert!(
        w.expire(&hour_retention(), &Sightings::default())
            .is_empty(),
        "its sibling still runs"
    );
    w.stop(&arns[1]);
    w.now += HOUR;
    assert_eq!(w.expire(&hour_retention(), &Sightings::default()).len(), 2);
}

// ----- the runner, on the real writer --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_deletes_expired_records_in_batches_with_a_controlled_clock() {
    let now = Arc::new(AtomicU64::new(T0 as u64));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst) as f64)
    };
    let cp = ecs::control_plane_with_clock(clock);
    let sc = scope();
    // 2,500 STOPPED tasks (stopped at T0) and one that stops an hour later.
    let make = |i: u32, stopped_at: f64| TaskRecord {
        scope: scope(),
        cluster: "c".into(),
        id: format!("{i:032x}"),
        task: wire::Task {
            task_arn: Some(
                sc.arn(model::arn::ResourceType::Task, format!("c/{i:032x}"))
                    .into(),
            ),
            desired_status: Some("STOPPED".into()),
            last_status: Some("STOPPED".into()),
            created_at: Some(stopped_at - 5.0),
            stopped_at: Some(stopped_at),
            ..Default::default()
        },
        reservation: Default::default(),
        instance_id: None,
        client_token: None,
        client_token_fingerprint: None,
        agent_acknowledged: true,
        pending_stop: None,
        pool: None,
    };
    let mut records: Vec<TaskRecord> = (0..2500).map(|i| make(i, T0)).collect();
    records.push(make(9999, T0 + HOUR));
    cp.write(sc.clone(), move |_, _| {
        let changes: Vec<Change> = records
            .iter()
            .map(|t| Change::Put(Record::Task(t.clone())))
            .collect();
        Ok(((), changes))
    })
    .await
    .expect("seed");
    let runner = spawn_retention(
        cp.clone(),
        RetentionConfig {
            interval: Duration::from_millis(20),
            batch: 1000,
            ..hour_retention()
        },
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cp.read(|s| s.tasks.len()), 2501, "nothing has expired yet");

    now.store((T0 + HOUR) as u64, Ordering::SeqCst);
    // (Each commit deletes at most a batch: `retention_deletes_at_most_a_batch_oldest_first`.)
    expired_down_to(&cp, 1).await;
    assert_eq!(
        cp.read(|s| s.tasks.keys().next().map(|k| k.id.clone())),
        Some(format!("{:032x}", 9999)),
        "the one that stopped later stays"
    );
    assert!(cp.read(|s| s.derived.stopped.len()) == 1);
    now.store((T0 + 2.0 * HOUR) as u64, Ordering::SeqCst);
    expired_down_to(&cp, 0).await;
    runner.abort();
}

/// Waits until retention has left at most `left` tasks.
async fn expired_down_to(cp: &ControlPlane, left: usize) {
    let what = format!("retention to leave at most {left} of the tasks");
    wait::until_state(cp, &what, Duration::from_secs(20), |s| {
        match s.tasks.len() {
            n if n <= left => Ok(()),
            n => Err(format!("stuck at {n}")),
        }
    })
    .await;
}
