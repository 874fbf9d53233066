//! Which changes wake a waiting agent poll. A published change wakes only the polls of
//! the instances it touched (the change feed, see `ecs_api::agent`), so these check that
//! every change a poll must answer still reaches it: a task placed on its instance, its
//! instance's own record (draining), and a reset, which wipes the state without a batch
//! on the feed.

use std::time::{Duration, Instant};

use controlplane::ControlPlane;
use ecs_api::{ApiConfig, router, serve};
use serde_json::{Value, json};
use testkit::ecs;
use testkit::http::{call, cluster_with_instances, post};

async fn start() -> (String, ControlPlane) {
    let cp = ecs::control_plane();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = router(
        cp.clone(),
        ApiConfig {
            account_id: "000000000000".into(),
            allow_reset: true,
            ..Default::default()
        },
    );
    tokio::spawn(serve(listener, app, std::future::pending()));
    (endpoint, cp)
}

/// Polls `instance` at once, then starts a 20-second poll with the digest it got.
async fn waiting_poll(
    http: &reqwest::Client,
    ep: &str,
    instance: &str,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let first = call(
        http,
        ep,
        "FlotillaAgentV1.PollTasks",
        &json!({"cluster": "c", "containerInstance": instance}),
    )
    .await;
    let body = json!({"cluster": "c", "containerInstance": instance,
                      "knownDigest": first["digest"], "waitSeconds": 20});
    let (http, ep) = (http.clone(), ep.to_owned());
    tokio::spawn(async move { post(&http, &ep, "FlotillaAgentV1.PollTasks", &body).await })
}

async fn answered(poll: tokio::task::JoinHandle<(u16, Value)>, what: &str) -> (u16, Value) {
    tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap_or_else(|_| panic!("{what}: the waiting poll did not answer within 5 s"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_wakes_the_instances_poll_and_not_anothers() {
    let (ep, _cp) = start().await;
    let http = reqwest::Client::new();
    let arns = cluster_with_instances(&http, &ep, 2).await;
    let a = waiting_poll(&http, &ep, &arns[0]).await;
    let b = waiting_poll(&http, &ep, &arns[1]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a.is_finished() && !b.is_finished(), "nothing changed yet");
    let started = Instant::now();
    call(
        &http,
        &ep,
        "UpdateContainerInstancesState",
        &json!({"cluster": "c", "containerInstances": [arns[0]], "status": "DRAINING"}),
    )
    .await;
    let (status, v) = answered(a, "draining").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["draining"], true, "{v}");
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "the other instance's poll keeps waiting");
    b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_waiting_poll_sees_the_task_placed_on_its_instance() {
    let (ep, _cp) = start().await;
    let http = reqwest::Client::new();
    let arns = cluster_with_instances(&http, &ep, 12).await;
    let mut polls = Vec::new();
    for arn in &arns {
        polls.push(waiting_poll(&http, &ep, arn).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    call(
        &http,
        &ep,
        "RunTask",
        &json!({"cluster": "c", "taskDefinition": "f", "count": 10,
                "placementStrategy": [{"type": "spread", "field": "instanceId"}]}),
    )
    .await;
    let mut placed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for poll in polls {
        // Polls of the two instances that got no task keep waiting.
        if let Ok(answer) = tokio::time::timeout_at(deadline, poll).await {
            let (status, v) = answer.unwrap();
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["tasks"].as_array().unwrap().len(), 1, "{v}");
            placed += 1;
        }
    }
    assert_eq!(
        placed, 10,
        "each of the 10 instances given a task heard of it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_wakes_waiting_polls() {
    let (ep, _cp) = start().await;
    let http = reqwest::Client::new();
    let arns = cluster_with_instances(&http, &ep, 1).await;
    let poll = waiting_poll(&http, &ep, &arns[0]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "nothing changed yet");
    let started = Instant::now();
    let reset = http.post(format!("{ep}/admin/reset")).send().await.unwrap();
    assert!(reset.status().is_success());
    let (status, v) = answered(poll, "reset").await;
    assert_eq!(status, 400, "the instance is gone: {v}");
    assert!(started.elapsed() < Duration::from_secs(2));
}
