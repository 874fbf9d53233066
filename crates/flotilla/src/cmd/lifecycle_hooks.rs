//! `flotilla server`'s lifecycle hook runner: calls the webhooks of blue/green, LINEAR
//! and CANARY deployments' `deploymentConfiguration.lifecycleHooks` and stores their
//! answers.
//!
//! The service controller records an invocation when a deployment reaches a stage
//! with hooks and holds the deployment there; this task, after every committed batch
//! that touches a service and every [`POLL_EVERY`], reads the calls due
//! ([`due_calls`]), POSTs each webhook its event as JSON (the Lambda event ECS sends,
//! see [`controlplane::ops::lifecycle_hooks`]), reads the answer
//! (`{"hookStatus": …, "callBackDelay": …}`, at most [`MAX_ANSWER_BYTES`]) and writes it
//! back through [`report_hook_result`]. At most [`MAX_IN_FLIGHT`] calls run at once, one
//! per invocation; each has [`CALL_TIMEOUT`] for the whole exchange. Redirects are not
//! followed (a 3xx answer fails the hook). flotilla calls whatever host the URL names,
//! loopback and private addresses included: the webhook is the operator's own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use controlplane::ControlPlane;
use controlplane::ops::lifecycle_hooks::{
    HookAnswer, HookCall, HookResult, due_calls, report_hook_result,
};
use controlplane::state::{Change, Record};
use tokio::sync::broadcast::error::RecvError;

/// How often due calls are looked for without a change (IN_PROGRESS callbacks).
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// Time a webhook has to answer (connect, request and answer together).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most webhook calls in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Largest answer read; a longer one fails the hook.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

fn touches_services(changes: &[Change]) -> bool {
    changes.iter().any(|c| match c {
        Change::Put(r) | Change::Delete(r) => matches!(r, Record::Service(_)),
    })
}

/// POSTs `call`'s event to its webhook and reads what it came to.
pub async fn call_webhook(client: &reqwest::Client, call: &HookCall) -> HookAnswer {
    let sent = client
        .post(&call.url)
        .header("content-type", "application/json")
        .body(call.body.to_string())
        .send()
        .await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => return HookAnswer::Unreachable(format!("the call failed: {e}")),
    };
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return HookAnswer::Failed(format!(
                        "the webhook's answer is longer than {MAX_ANSWER_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return HookAnswer::Unreachable(format!("the answer broke off: {e}")),
        }
    }
    HookAnswer::from_response(status, &body)
}

/// The HTTP client the runner calls webhooks with.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "flotilla/",
            env!("CARGO_PKG_VERSION"),
            " lifecycle-hooks"
        ))
        .build()?)
}

/// Calls every due webhook not already in flight (up to [`MAX_IN_FLIGHT`]), each in its
/// own task that stores the answer.
fn dispatch(cp: &ControlPlane, client: &reqwest::Client, in_flight: &Arc<Mutex<HashSet<String>>>) {
    let now = cp.now();
    let due = cp.read(|s| due_calls(s, now));
    for call in due {
        let key = format!("{:?}|{}", call.service, call.execution_id);
        {
            let mut flying = in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if flying.len() >= MAX_IN_FLIGHT || !flying.insert(key.clone()) {
                continue;
            }
        }
        let (cp, client, in_flight) = (cp.clone(), client.clone(), in_flight.clone());
        tokio::spawn(async move {
            tracing::info!(service = %call.service.name, url = %call.url,
                execution = %call.execution_id, "calling a lifecycle hook");
            let answer = call_webhook(&client, &call).await;
            tracing::info!(service = %call.service.name, url = %call.url,
                execution = %call.execution_id, answer = ?answer, "lifecycle hook answered");
            let result = HookResult {
                service: call.service.clone(),
                execution_id: call.execution_id.clone(),
                attempt: call.attempt,
                answer,
            };
            let scope = call.service.scope.clone();
            if let Err(e) = cp
                .write(scope, move |s, ctx| {
                    report_hook_result(s, ctx, result.clone())
                })
                .await
            {
                tracing::warn!(error = %e, "a lifecycle hook's answer was not stored");
            }
            in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        });
    }
}

/// Starts the runner (module doc) until the process ends or the handle is aborted. Call
/// inside the server's runtime. `None` when it cannot run (logged).
pub fn serve(cp: ControlPlane) -> Option<tokio::task::JoinHandle<()>> {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the lifecycle hooks' HTTP client; hooks are not called");
            return None;
        }
    };
    let mut changes = cp.watch_changes();
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    Some(tokio::spawn(async move {
        let mut poll = tokio::time::interval(POLL_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = changes.recv() => match batch {
                    Ok(batch) if !touches_services(&batch) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = poll.tick() => {}
            }
            dispatch(&cp, &client, &in_flight);
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use controlplane::ops::{clusters, services, task_definitions};
    use controlplane::state::{HookState, HookStatus, ServiceKey};
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use model::wire::DeploymentLifecycleHookStage as Stage;
    use serde_json::{Value, json};
    use testkit::ecs::{control_plane, req, scope};

    use super::*;

    /// A webhook on 127.0.0.1 answering `answers` in turn; the URL and the bodies it got.
    async fn webhook(answers: Vec<&'static str>) -> (String, Arc<Mutex<Vec<Value>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let got = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (got, answers) = (got.clone(), answers.clone());
                let svc =
                    hyper::service::service_fn(move |r: hyper::Request<hyper::body::Incoming>| {
                        let (got, answers) = (got.clone(), answers.clone());
                        async move {
                            let body = r.into_body().collect().await.expect("body").to_bytes();
                            got.lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).expect("json"));
                            let answer = answers.lock().unwrap().next().unwrap_or("{}");
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                answer,
                            ))))
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        (format!("http://{addr}/hook"), seen)
    }

    /// Records a PENDING invocation of `url` at `stage` for the service's PRIMARY deployment.
    async fn invoke(cp: &ControlPlane, url: &str, stage: Stage) -> String {
        let url = url.to_owned();
        cp.write(scope(), move |s, ctx| {
            let mut rec = s.services[&key()].clone();
            let deployment = rec.service.deployments.as_ref().expect("deployments")[0]
                .id
                .clone()
                .expect("id");
            let id = format!("{deployment}/{stage}/0/{}", rec.blue_green.hooks.len());
            rec.blue_green.hooks.push(HookState {
                id: id.clone(),
                deployment,
                stage,
                step: 0,
                hook: 0,
                target: url.clone(),
                pause: false,
                status: HookStatus::Pending,
                started_at: ctx.now,
                next_call_at: ctx.now,
                expires_at: ctx.now + 3600.0,
                continue_on_timeout: false,
                attempts: 0,
                errors: 0,
                finished_at: None,
                reason: None,
                hook_details: None,
                timed_out: false,
            });
            Ok((id, vec![Change::Put(Record::Service(rec))]))
        })
        .await
        .expect("stored")
    }

    fn key() -> ServiceKey {
        ServiceKey::new(&scope(), "c", "web")
    }

    async fn status_of(cp: &ControlPlane, id: &str) -> HookStatus {
        for _ in 0..100 {
            let status = cp.read(|s| {
                s.services[&key()]
                    .blue_green
                    .hooks
                    .iter()
                    .find(|h| h.id == id)
                    .map(|h| h.status)
            });
            match status {
                Some(st) if !st.is_open() => return st,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("hook {id} was not answered");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_runner_posts_the_event_and_stores_succeeded_then_failed() {
        let cp = control_plane();
        let _: model::wire::CreateClusterResponse = cp
            .write(scope(), |s, ctx| {
                clusters::create_cluster(s, ctx, req(json!({"clusterName": "c"})))
            })
            .await
            .expect("cluster");
        let _: model::wire::RegisterTaskDefinitionResponse = cp
            .write(scope(), |s, ctx| {
                task_definitions::register(s, ctx, req(testkit::ecs::task_definition("web", 128)))
            })
            .await
            .expect("task definition");
        let _: model::wire::CreateServiceResponse = cp
            .write(scope(), |s, ctx| {
                services::create(
                    s,
                    ctx,
                    req(json!({"cluster": "c", "serviceName": "web",
                    "taskDefinition": "web", "desiredCount": 0})),
                )
            })
            .await
            .expect("service");
        let (url, seen) = webhook(vec![
            r#"{"hookStatus": "SUCCEEDED"}"#,
            r#"{"hookStatus": "FAILED"}"#,
        ])
        .await;
        serve(cp.clone());
        let first = invoke(&cp, &url, Stage::PostTestTrafficShift).await;
        assert_eq!(status_of(&cp, &first).await, HookStatus::Succeeded);
        let second = invoke(&cp, &url, Stage::PreScaleUp).await;
        assert_eq!(status_of(&cp, &second).await, HookStatus::Failed);
        let bodies = seen.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        let service_arn = cp
            .read(|s| s.services[&key()].service.service_arn.clone())
            .expect("arn");
        assert_eq!(bodies[0]["lifecycleStage"], "POST_TEST_TRAFFIC_SHIFT");
        assert_eq!(bodies[0]["executionId"], first.as_str());
        assert_eq!(
            bodies[0]["executionDetails"]["serviceArn"],
            service_arn.as_str()
        );
        assert!(
            bodies[0]["resourceArn"]
                .as_str()
                .unwrap()
                .contains(":service-deployment/c/web/")
        );
        assert_eq!(bodies[1]["lifecycleStage"], "PRE_SCALE_UP");
        let reason = cp.read(|s| {
            s.services[&key()]
                .blue_green
                .hooks
                .iter()
                .find(|h| h.id == second)
                .and_then(|h| h.reason.clone())
        });
        assert_eq!(reason.as_deref(), Some("it answered FAILED"));
    }
}
