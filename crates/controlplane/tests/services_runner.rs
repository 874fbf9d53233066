//! The service controller with the real [`ControlPlane`], store and runner rather than
//! as a pure function: the runner drives a service to a steady state, and a control
//! plane reopened from the store mid-rollout resumes without duplicate tasks.

mod service_harness;

use std::sync::Arc;
use std::time::Duration;

use controlplane::controllers::service::reconcile_service;
use controlplane::controllers::{RunnerConfig, spawn_controllers_with};
use controlplane::ops::{agent, clusters, instances, services, task_definitions};
use controlplane::state::ServiceKey;
use controlplane::{ControlPlane, State};
use model::wire;
use serde_json::json;
use testkit::ecs::{self, T0, req, scope, submit};
use testkit::wait;

use service_harness::stable;

/// Runs an operation through the real writer; it must succeed.
async fn w<Req: Clone + Send + 'static, Resp: Send + 'static>(
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
