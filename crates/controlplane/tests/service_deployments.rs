//! Service deployments and revisions (ListServiceDeployments, DescribeServiceDeployments,
//! DescribeServiceRevisions, StopServiceDeployment): their status through a rollout, a
//! circuit-breaker rollback (with and without rollback), a stop with rollback, a
//! deployment replaced by a newer one, paging and filters, unknown ARNs, the history
//! bound, and a restart. Driven through the shared [`service_harness`].

mod service_harness;

use std::sync::Arc;

use controlplane::ops::service_deployments as sd;
use controlplane::service_deployments::MAX_HISTORY_PER_SERVICE;
use controlplane::{ControlPlane, EcsError};
use model::wire::{
    self, ServiceDeploymentRollbackMonitorsStatus as Monitor, ServiceDeploymentStatus as Status,
};
use serde_json::{Value, json};
use store::MemStore;
use testkit::ecs::{req, scope};

use service_harness::{Behaviour, Harness, stable};

fn list(h: &Harness, extra: Value) -> wire::ListServiceDeploymentsResponse {
    let mut body = json!({"cluster": "c", "service": "web"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    sd::list(&h.state, &scope(), h.now, req(body)).unwrap()
}

fn briefs(h: &Harness) -> Vec<wire::ServiceDeploymentBrief> {
    list(h, json!({"maxResults": 100}))
        .service_deployments
        .unwrap()
}

fn describe(h: &Harness, arn: &str) -> wire::ServiceDeployment {
    let r = sd::describe_deployments(
        &h.state,
        &scope(),
        req(json!({"serviceDeploymentArns": [arn]})),
    )
    .unwrap();
    assert_eq!(r.failures.unwrap(), vec![]);
    r.service_deployments.unwrap().remove(0)
}

fn revision(h: &Harness, arn: &str) -> wire::ServiceRevision {
    let r = sd::describe_revisions(
        &h.state,
        &scope(),
        req(json!({"serviceRevisionArns": [arn]})),
    )
    .unwrap();
    assert_eq!(r.failures.unwrap(), vec![]);
    r.service_revisions.unwrap().remove(0)
}

/// The newest service deployment, described.
fn newest(h: &Harness) -> wire::ServiceDeployment {
    let arn = briefs(h)[0].service_deployment_arn.clone().unwrap();
    describe(h, &arn)
}

fn stop(h: &mut Harness, arn: &str, stop_type: Option<&str>) -> Result<(), EcsError> {
    let mut body = json!({"serviceDeploymentArn": arn});
    if let Some(t) = stop_type {
        body["stopType"] = json!(t);
    }
    h.try_write(sd::stop, req(body)).map(|_| ())
}

fn breaker(rollback: bool) -> Value {
    json!({"deploymentCircuitBreaker": {"enable": true, "rollback": rollback}})
}

#[test]
fn create_and_update_are_service_deployments_with_revisions() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3}));
    let first = newest(&h);
    assert_eq!(first.status, Some(Status::Pending));
    assert!(first.started_at.is_none());
    let arn = first.service_deployment_arn.clone().unwrap();
    assert!(
        arn.starts_with(&format!(
            "arn:aws:ecs:{}:000000000000:service-deployment/c/web/",
            scope().region
        )),
        "{arn}"
    );
    assert_eq!(first.source_service_revisions.as_deref(), Some(&[][..]));
    h.reconcile();
    assert_eq!(newest(&h).status, Some(Status::InProgress));
    h.settle(|_| {});
    assert!(stable(&h.service()));
    let first = describe(&h, &arn);
    assert_eq!(first.status, Some(Status::Successful), "{first:#?}");
    assert!(first.finished_at.is_some() && first.started_at.is_some());
    let target = first.target_service_revision.clone().unwrap();
    assert_eq!(
        (
            target.requested_task_count,
            target.running_task_count,
            target.pending_task_count
        ),
        (Some(3), Some(3), Some(0))
    );
    let breaker = first.deployment_circuit_breaker.clone().unwrap();
    assert_eq!(breaker.status, Some(Monitor::Disabled));
    assert_eq!(breaker.threshold, Some(10));
    let rev = revision(&h, target.arn.as_deref().unwrap());
    assert!(
        rev.service_revision_arn
            .as_deref()
            .unwrap()
            .starts_with(&format!(
                "arn:aws:ecs:{}:000000000000:service-revision/c/web/",
                scope().region
            ))
    );
    assert_eq!(rev.task_definition, h.service().task_definition);
    assert_eq!(rev.service_arn, h.service().service_arn);
    let images = rev.container_images.unwrap();
    assert_eq!(images.len(), 1);
    assert!(images[0].image.is_some() && images[0].container_name.is_some());

    let v2 = h.register("web", 256);
    h.update_service(json!({"taskDefinition": v2}));
    h.reconcile();
    let second = newest(&h);
    assert_ne!(second.service_deployment_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(second.status, Some(Status::InProgress));
    let sources = second.source_service_revisions.clone().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].arn, target.arn);
    assert_eq!(sources[0].running_task_count, Some(3));
    let rev2 = revision(
        &h,
        second
            .target_service_revision
            .unwrap()
            .arn
            .as_deref()
            .unwrap(),
    );
    assert_eq!(rev2.task_definition.as_deref(), Some(v2.as_str()));
    h.settle(|_| {});
    let second = newest(&h);
    assert_eq!(second.status, Some(Status::Successful));
    assert_eq!(
        second.source_service_revisions.unwrap()[0].running_task_count,
        Some(0)
    );
    // DescribeServices names the current service deployment and revisions.
    let shown = controlplane::ops::services::describe(
        &h.state,
        &scope(),
        req(json!({"cluster": "c", "services": ["web"]})),
    )
    .unwrap()
    .services
    .unwrap()
    .remove(0);
    assert_eq!(
        shown.current_service_deployment,
        second.service_deployment_arn
    );
    let current = shown.current_service_revisions.unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].arn, rev2.service_revision_arn);
    assert_eq!(current[0].running_task_count, Some(3));
    let all = briefs(&h);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].service_deployment_arn.as_deref(), Some(arn.as_str()));
    // The first one is frozen as it finished.
    assert_eq!(describe(&h, &arn), first);
}

#[test]
fn circuit_breaker_rollback_shows_rollback_statuses() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3,
        "deploymentConfiguration": breaker(true)}));
    h.settle(|_| {});
    let good_rev = newest(&h).target_service_revision.unwrap().arn.unwrap();
    let bad = h.register("web", 64);
    h.behaviour.insert(bad.clone(), Behaviour::CrashAfterStart);
    h.update_service(json!({"taskDefinition": bad}));
    let arn = newest(&h).service_deployment_arn.unwrap();
    let mut seen = Vec::new();
    h.settle(|h| {
        let s = describe(h, &arn).status.unwrap();
        if seen.last() != Some(&s) {
            seen.push(s);
        }
    });
    assert_eq!(
        seen,
        [
            Status::InProgress,
            Status::RollbackInProgress,
            Status::RollbackSuccessful
        ]
    );
    let d = describe(&h, &arn);
    let rollback = d.rollback.clone().unwrap();
    assert_eq!(
        rollback.service_revision_arn.as_deref(),
        Some(good_rev.as_str())
    );
    assert_eq!(
        rollback.reason.as_deref(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    let b = d.deployment_circuit_breaker.unwrap();
    assert_eq!(b.status, Some(Monitor::Triggered));
    assert!(b.failure_count.unwrap() >= 10, "{b:?}");
    assert!(d.finished_at.is_some());
    assert!(stable(&h.service()));
}

#[test]
fn circuit_breaker_without_rollback_stops_the_deployment() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 3,
        "deploymentConfiguration": breaker(false)}));
    h.settle(|_| {});
    let bad = h.register("web", 64);
    h.behaviour.insert(bad.clone(), Behaviour::FailToStart);
    h.update_service(json!({"taskDefinition": bad}));
    let arn = newest(&h).service_deployment_arn.unwrap();
    for _ in 0..200 {
        h.now += 1.0;
        h.reconcile();
        h.agent_step();
        if describe(&h, &arn).status == Some(Status::Stopped) {
            break;
        }
    }
    let d = describe(&h, &arn);
    assert_eq!(d.status, Some(Status::Stopped), "{d:#?}");
    assert!(d.stopped_at.is_some());
    assert_eq!(
        d.status_reason.as_deref(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    assert_eq!(
        d.deployment_circuit_breaker.unwrap().status,
        Some(Monitor::Triggered)
    );
}

#[test]
fn stop_service_deployment_rolls_back_to_the_previous_revision() {
    let mut h = Harness::new(&["a", "b", "c"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    let first = newest(&h).service_deployment_arn.unwrap();
    // The first deployment has nothing to roll back to.
    h.reconcile();
    let e = stop(&mut h, &first, None).unwrap_err();
    assert_eq!(e.code(), "ConflictException", "{e}");
    h.settle(|_| {});
    let good = h.service().task_definition.unwrap();
    let e = stop(&mut h, &first, None).unwrap_err();
    assert_eq!(e.code(), "ConflictException", "{e}");
    let v2 = h.register("web", 256);
    h.update_service(json!({"taskDefinition": v2}));
    h.reconcile();
    let arn = newest(&h).service_deployment_arn.unwrap();
    let e = stop(&mut h, &arn, Some("ABORT")).unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    stop(&mut h, &arn, Some("ROLLBACK")).unwrap();
    assert_eq!(describe(&h, &arn).status, Some(Status::RollbackRequested));
    // Asking again while it rolls back changes nothing.
    stop(&mut h, &arn, None).unwrap();
    h.reconcile();
    let d = describe(&h, &arn);
    assert_eq!(
        d.status,
        Some(Status::RollbackInProgress),
        "{d:#?} {:#?}",
        h.service().deployments
    );
    h.settle(|_| {});
    let d = describe(&h, &arn);
    assert_eq!(d.status, Some(Status::RollbackSuccessful), "{d:#?}");
    let rollback = d.rollback.unwrap();
    assert_eq!(
        rollback.reason.as_deref(),
        Some(controlplane::service_deployments::STOP_ROLLBACK_REASON)
    );
    let first_rev = describe(&h, &first).target_service_revision.unwrap().arn;
    assert_eq!(rollback.service_revision_arn, first_rev);
    let s = h.service();
    assert!(stable(&s), "{s:?}");
    assert_eq!(s.task_definition.as_deref(), Some(good.as_str()));
    assert!(
        h.events().iter().any(|e| e.contains("rolling back")),
        "{:#?}",
        h.events()
    );
    // Finished: a stop is refused; an unknown one is not found.
    let e = stop(&mut h, &arn, None).unwrap_err();
    assert_eq!(e.code(), "ConflictException");
    let unknown = format!("{}x", &arn[..arn.len() - 1]);
    let e = stop(&mut h, &unknown, None).unwrap_err();
    assert_eq!(e.code(), "ServiceDeploymentNotFoundException");
}

#[test]
fn a_deployment_replaced_by_a_newer_one_is_stopped() {
    let mut h = Harness::new(&["a", "b"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 2}));
    h.settle(|_| {});
    let v2 = h.register("web", 256);
    h.update_service(json!({"taskDefinition": v2}));
    h.reconcile();
    let replaced = newest(&h).service_deployment_arn.unwrap();
    let v3 = h.register("web", 200);
    h.update_service(json!({"taskDefinition": v3}));
    let d = describe(&h, &replaced);
    assert_eq!(d.status, Some(Status::Stopped));
    assert!(d.stopped_at.is_some());
    let third = newest(&h);
    assert_eq!(third.source_service_revisions.unwrap().len(), 2);
    h.settle(|_| {});
    assert_eq!(newest(&h).status, Some(Status::Successful));
}

#[test]
fn listing_pages_newest_first_and_filters() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    h.settle(|_| {});
    let t_first_done = h.now;
    for _ in 0..25 {
        h.now += 10.0;
        h.update_service(json!({"forceNewDeployment": true}));
    }
    h.settle(|_| {});
    let all = briefs(&h);
    assert_eq!(all.len(), 26);
    let created: Vec<f64> = all.iter().map(|b| b.created_at.unwrap()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    // Default page: 20, then the rest.
    let p1 = list(&h, json!({}));
    assert_eq!(p1.service_deployments.as_ref().unwrap().len(), 20);
    let p2 = list(&h, json!({"nextToken": p1.next_token.unwrap()}));
    assert_eq!(p2.service_deployments.as_ref().unwrap().len(), 6);
    assert!(p2.next_token.is_none());
    let mut walked: Vec<_> = p1.service_deployments.unwrap();
    walked.extend(p2.service_deployments.unwrap());
    assert_eq!(walked, all);
    for bad in [0, 101] {
        let e = sd::list(
            &h.state,
            &scope(),
            h.now,
            req(json!({"cluster": "c", "service": "web", "maxResults": bad})),
        )
        .unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException");
    }
    // Filters.
    let ok = list(&h, json!({"status": ["SUCCESSFUL"], "maxResults": 100}));
    assert_eq!(ok.service_deployments.unwrap().len(), 2);
    let stopped = list(&h, json!({"status": ["STOPPED"], "maxResults": 100}));
    assert_eq!(stopped.service_deployments.unwrap().len(), 24);
    let later = list(
        &h,
        json!({"createdAt": {"after": t_first_done + 5.0, "before": t_first_done + 35.0}}),
    );
    assert_eq!(later.service_deployments.unwrap().len(), 3);
    // By the service's ARN, too; unknown services and clusters.
    let svc_arn = h.service().service_arn.unwrap();
    assert_eq!(
        list(&h, json!({"service": svc_arn, "maxResults": 100}))
            .service_deployments
            .unwrap()
            .len(),
        26
    );
    let e = sd::list(
        &h.state,
        &scope(),
        h.now,
        req(json!({"cluster": "c", "service": "nope"})),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ServiceNotFoundException");
    let e = sd::list(
        &h.state,
        &scope(),
        h.now,
        req(json!({"cluster": "x", "service": "web"})),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ClusterNotFoundException");
}

#[test]
fn unknown_arns_are_failures_and_at_most_twenty() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    let known = newest(&h).service_deployment_arn.unwrap();
    let unknown = "arn:aws:ecs:eu-west-1:000000000000:service-deployment/c/web/nope";
    let r = sd::describe_deployments(
        &h.state,
        &scope(),
        req(json!({"serviceDeploymentArns": [known, unknown, "garbage"]})),
    )
    .unwrap();
    assert_eq!(r.service_deployments.unwrap().len(), 1);
    let failures = r.failures.unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].arn.as_deref(), Some(unknown));
    assert_eq!(failures[0].reason.as_deref(), Some("MISSING"));
    let r = sd::describe_revisions(
        &h.state,
        &scope(),
        req(json!({"serviceRevisionArns": [
            "arn:aws:ecs:eu-west-1:000000000000:service-revision/c/web/1"]})),
    )
    .unwrap();
    assert_eq!(r.service_revisions.unwrap().len(), 0);
    assert_eq!(r.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
    let many: Vec<String> = (0..21).map(|i| format!("{unknown}{i}")).collect();
    let e = sd::describe_deployments(
        &h.state,
        &scope(),
        req(json!({"serviceDeploymentArns": many})),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let e = sd::describe_revisions(
        &h.state,
        &scope(),
        req(json!({"serviceRevisionArns": many})),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
}

#[test]
fn history_is_bounded_oldest_finished_first() {
    let mut h = Harness::new(&["a"]);
    h.create_service(json!({"taskDefinition": "web", "desiredCount": 1}));
    let first = newest(&h).service_deployment_arn.unwrap();
    let n = MAX_HISTORY_PER_SERVICE + 10;
    for _ in 0..n {
        h.now += 1.0;
        h.update_service(json!({"forceNewDeployment": true}));
        h.reconcile();
    }
    let key = h.key();
    let deployments = h.state.service_history.deployments_of(&key).count();
    let revisions = h.state.service_history.revisions_of(&key).count();
    assert_eq!(deployments, MAX_HISTORY_PER_SERVICE);
    assert!(revisions <= MAX_HISTORY_PER_SERVICE, "{revisions}");
    let r = sd::describe_deployments(
        &h.state,
        &scope(),
        req(json!({"serviceDeploymentArns": [first]})),
    )
    .unwrap();
    assert_eq!(r.failures.unwrap().len(), 1, "the oldest went first");
    // The newest (unfinished) one and its revision are kept.
    let last = newest(&h);
    revision(
        &h,
        last.target_service_revision
            .unwrap()
            .arn
            .as_deref()
            .unwrap(),
    );
    h.settle(|_| {});
    assert_eq!(
        newest(&h).status,
        Some(Status::Successful),
        "the kept deployment still completes"
    );
}

#[tokio::test]
async fn history_survives_a_restart() {
    let store = Arc::new(MemStore::new());
    let sc = scope();
    let before = {
        let cp = ControlPlane::open(store.clone()).unwrap();
        cp.write(sc.clone(), |s, ctx| {
            controlplane::ops::clusters::create_cluster(s, ctx, req(json!({"clusterName": "c"})))
        })
        .await
        .unwrap();
        cp.write(sc.clone(), |s, ctx| {
            controlplane::ops::task_definitions::register(
                s,
                ctx,
                req(testkit::ecs::task_definition("web", 128)),
            )
        })
        .await
        .unwrap();
        cp.write(sc.clone(), |s, ctx| {
            controlplane::ops::services::create(
                s,
                ctx,
                req(
                    json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web",
                    "desiredCount": 0}),
                ),
            )
        })
        .await
        .unwrap();
        let l: wire::ListServiceDeploymentsResponse = cp.read(|s| {
            sd::list(s, &sc, 0.0, req(json!({"cluster": "c", "service": "web"}))).unwrap()
        });
        let arn = l.service_deployments.unwrap()[0]
            .service_deployment_arn
            .clone()
            .unwrap();
        cp.read(|s| {
            sd::describe_deployments(s, &sc, req(json!({"serviceDeploymentArns": [arn]}))).unwrap()
        })
    };
    let cp = ControlPlane::open(store).unwrap();
    let d = before.service_deployments.clone().unwrap().remove(0);
    let after = cp.read(|s| {
        sd::describe_deployments(
            s,
            &sc,
            req(json!({"serviceDeploymentArns": [d.service_deployment_arn.clone().unwrap()]})),
        )
        .unwrap()
    });
    assert_eq!(after, before);
    let rev = d.target_service_revision.unwrap().arn.unwrap();
    let r = cp.read(|s| {
        sd::describe_revisions(s, &sc, req(json!({"serviceRevisionArns": [rev]}))).unwrap()
    });
    assert_eq!(r.service_revisions.unwrap().len(), 1);
}
