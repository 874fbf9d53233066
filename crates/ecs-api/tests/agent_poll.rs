//! The agent long-poll over real HTTP: a poll waiting on an unchanged assignment
//! returns as soon as a task is placed on the instance, and an agent marked
//! disconnected is connected again by its next poll.

use std::time::{Duration, Instant};

use controlplane::ControlPlane;
use ecs_api::{ApiConfig, router, serve};
use serde_json::{Value, json};
use testkit::ecs;
use testkit::http::{call, cluster_with_instances, loopback};

async fn start() -> (String, ControlPlane) {
    let cp = ecs::control_plane();
    let (listener, endpoint) = loopback().await;
    let app = router(
        cp.clone(),
        ApiConfig {
            account_id: "000000000000".into(),
            ..Default::default()
        },
    );
    tokio::spawn(serve(listener, app, std::future::pending()));
    (endpoint, cp)
}

/// Cluster `c` with one container instance; its ARN.
async fn setup(http: &reqwest::Client, ep: &str) -> String {
    cluster_with_instances(http, ep, 1).await.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_poll_returns_when_a_task_is_placed() {
    let (ep, _cp) = start().await;
    let http = reqwest::Client::new();
    let instance = setup(&http, &ep).await;
    let first = call(
        &http,
        &ep,
        "FlotillaAgentV1.PollTasks",
        &json!({"cluster": "c", "containerInstance": instance}),
    )
    .await;
    assert_eq!(first["tasks"].as_array().unwrap().len(), 0);
    let digest = first["digest"].as_str().unwrap().to_owned();

    let (http2, ep2, inst2) = (http.clone(), ep.clone(), instance.clone());
    let started = Instant::now();
    let waiting = tokio::spawn(async move {
        call(&http2, &ep2, "FlotillaAgentV1.PollTasks", &json!({"cluster": "c", "containerInstance": inst2, "knownDigest": digest, "waitSeconds": 20}))
            .await
    });
    // The poll must still be waiting: nothing changed yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a poll with an unchanged assignment must wait"
    );
    let run = call(
        &http,
        &ep,
        "RunTask",
        &json!({"cluster": "c", "taskDefinition": "f"}),
    )
    .await;
    let task_arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_owned();
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("poll answered promptly")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let tasks = answer["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["task"]["taskArn"], task_arn.as_str());
    assert_eq!(tasks[0]["taskDefinition"]["family"], "f");
    assert_ne!(answer["digest"], first["digest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_reconnects_a_disconnected_agent_and_unknown_instances_are_refused() {
    let (ep, cp) = start().await;
    let http = reqwest::Client::new();
    let instance = setup(&http, &ep).await;
    // Mark it disconnected the way the liveness check does.
    let seen = std::collections::HashMap::new();
    let far_future = controlplane::Scope::new("", "");
    cp.write(far_future, move |s, ctx| {
        ctx.now += 3600.0;
        controlplane::ops::agent_channel::check_liveness(s, ctx, &seen, 30.0, 1e9)
    })
    .await
    .unwrap();
    let describe = |http: reqwest::Client, ep: String, inst: String| async move {
        call(
            &http,
            &ep,
            "DescribeContainerInstances",
            &json!({"cluster": "c", "containerInstances": [inst]}),
        )
        .await["containerInstances"][0]["agentConnected"]
            .clone()
    };
    assert_eq!(
        describe(http.clone(), ep.clone(), instance.clone()).await,
        false
    );
    call(
        &http,
        &ep,
        "FlotillaAgentV1.PollTasks",
        &json!({"cluster": "c", "containerInstance": instance}),
    )
    .await;
    assert_eq!(
        describe(http.clone(), ep.clone(), instance.clone()).await,
        true
    );

    let resp = http
        .post(&ep)
        .header("x-amz-target", "FlotillaAgentV1.PollTasks")
        .body(
            json!({"cluster": "c", "containerInstance": "0123456789abcdef0123456789abcdef"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["__type"], "InvalidParameterException");
    let resp = http
        .post(&ep)
        .header("x-amz-target", "FlotillaAgentV1.Nope")
        .body("{}")
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["__type"], "UnknownOperationException");
}
