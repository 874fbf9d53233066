//! Service tasks: how many run and where. Desired count reached and spread over zones,
//! steady state said once, scale-in and scale-out keeping zones balanced, task
//! protection (honoured, expiring, validated), daemon services, and tasks that cannot
//! be placed. Driven through the shared [`service_harness`].

mod service_harness;

use std::collections::BTreeMap;

use controlplane::controllers::service::reconcile_service;
use controlplane::ops::{instances, protection};
use model::wire;
use serde_json::json;
use testkit::ecs::{req, scope};

use service_harness::{Harness, alive, stable};

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
            *m.entry(t.instance_id.as_deref().unwrap().to_owned())
                .or_default() += 1;
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
