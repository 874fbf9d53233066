//! The task operations as pure functions: a hand-built [`State`], a request, a seeded
//! [`Ctx`]; assertions on the answer and on the state after applying the changes.

use controlplane::State;
use controlplane::engine::Written;
use controlplane::ops::{clusters, instances, task_definitions, tasks};
use model::wire;
use serde_json::json;
use testkit::ecs::{self, Op, T0, req};

/// Runs a write op at [`T0`] with `seed` and applies its changes, like the writer does.
fn write<Req, Resp>(state: &mut State, seed: u64, op: Op<Req, Resp>, r: Req) -> Resp {
    ecs::write(state, &mut ecs::ctx(T0, seed), op, r)
}

/// Runs a write op at [`T0`] (seed 7) on `state` without applying its changes.
fn try_write<Req, Resp>(state: &State, op: Op<Req, Resp>, r: Req) -> Written<Resp> {
    op(state, &mut ecs::ctx(T0, 7), r)
}

fn cluster_with_instances(instances: &[(&str, i64, i64, &str)]) -> State {
    let mut s = State::default();
    write(
        &mut s,
        1,
        clusters::create_cluster,
        req(json!({"clusterName": "c"})),
    );
    for (i, (id, cpu, mem, az)) in instances.iter().enumerate() {
        let mut body = ecs::instance("c", id, az, *cpu, *mem);
        body["totalResources"]
            .as_array_mut()
            .expect("resources")
            .push(json!({"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}));
        write(&mut s, 10 + i as u64, instances::register, req(body));
    }
    s
}

fn register(s: &mut State, family: &str, memory: i64, host_port: Option<i32>) {
    let mut body = ecs::task_definition(family, memory);
    if let Some(p) = host_port {
        body["containerDefinitions"][0]["portMappings"] =
            json!([{"containerPort": 80, "hostPort": p}]);
    }
    write(s, 2, task_definitions::register, req(body));
}

fn run(s: &mut State, seed: u64, body: serde_json::Value) -> wire::RunTaskResponse {
    write(s, seed, tasks::run_task, req(body))
}

#[test]
fn run_task_never_overcommits_memory_and_reports_why() {
    let mut s = cluster_with_instances(&[("i-1", 1024, 512, "a")]);
    register(&mut s, "web", 200, None);
    let r = run(
        &mut s,
        3,
        json!({"cluster": "c", "taskDefinition": "web", "count": 3}),
    );
    assert_eq!(r.tasks.unwrap().len(), 2);
    let failures = r.failures.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].reason.as_deref(), Some("RESOURCE:MEMORY"));
    assert!(
        failures[0]
            .arn
            .as_deref()
            .unwrap()
            .contains(":container-instance/c/")
    );
}

#[test]
fn static_host_ports_are_exclusive_and_reserved_ports_respected() {
    let mut s = cluster_with_instances(&[("i-1", 4096, 4096, "a")]);
    register(&mut s, "web", 64, Some(8080));
    assert_eq!(
        run(&mut s, 3, json!({"cluster": "c", "taskDefinition": "web"}))
            .tasks
            .unwrap()
            .len(),
        1
    );
    let second = run(&mut s, 4, json!({"cluster": "c", "taskDefinition": "web"}));
    assert!(second.tasks.unwrap().is_empty());
    assert_eq!(
        second.failures.unwrap()[0].reason.as_deref(),
        Some("RESOURCE:PORTS")
    );
    register(&mut s, "ssh", 64, Some(22));
    let r = run(&mut s, 5, json!({"cluster": "c", "taskDefinition": "ssh"}));
    assert_eq!(
        r.failures.unwrap()[0].reason.as_deref(),
        Some("RESOURCE:PORTS")
    );
}

#[test]
fn dynamic_host_ports_are_distinct_and_shown_in_network_bindings() {
    let mut s = cluster_with_instances(&[("i-1", 4096, 4096, "a")]);
    register(&mut s, "web", 64, Some(0));
    let r = run(
        &mut s,
        3,
        json!({"cluster": "c", "taskDefinition": "web", "count": 5}),
    );
    let mut ports: Vec<i32> = r
        .tasks
        .unwrap()
        .iter()
        .map(|t| {
            t.containers.as_ref().unwrap()[0]
                .network_bindings
                .as_ref()
                .unwrap()[0]
                .host_port
                .unwrap()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5);
    assert!(
        ports.iter().all(|p| (32768..=60999).contains(p)),
        "{ports:?}"
    );
}

#[test]
fn member_of_and_distinct_instance_constraints_hold() {
    let mut s = cluster_with_instances(&[
        ("i-1", 4096, 4096, "a"),
        ("i-2", 4096, 4096, "b"),
        ("i-3", 4096, 4096, "b"),
    ]);
    register(&mut s, "web", 64, None);
    let r = run(
        &mut s,
        3,
        json!({"cluster": "c", "taskDefinition": "web", "count": 3,
               "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone == b"},
                                        {"type": "distinctInstance"}]}),
    );
    let placed = r.tasks.unwrap();
    assert_eq!(placed.len(), 2, "only two instances are in zone b");
    assert!(
        placed
            .iter()
            .all(|t| t.availability_zone.as_deref() == Some("b"))
    );
    assert_ne!(
        placed[0].container_instance_arn,
        placed[1].container_instance_arn
    );
    assert_eq!(
        r.failures.unwrap().len(),
        2,
        "one failure per reason: MemberOf and DistinctInstance"
    );
}

#[test]
fn bad_placement_input_names_the_field() {
    let mut s = cluster_with_instances(&[("i-1", 4096, 4096, "a")]);
    register(&mut s, "web", 64, None);
    let e = try_write(&s, tasks::run_task, req(json!({"cluster": "c", "taskDefinition": "web", "placementStrategy": [{"type": "binpack", "field": "disk"}]})))
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    assert!(e.to_string().contains("binpack"), "{e}");
    let e = try_write(
        &s,
        tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "web", "count": 11})),
    )
    .unwrap_err();
    assert!(e.to_string().contains("count"), "{e}");
    let e = try_write(
        &s,
        tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "nope"})),
    )
    .unwrap_err();
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        ("ClientException", "TaskDefinition not found.")
    );
}

#[test]
fn stopping_a_task_releases_its_resources() {
    let mut s = cluster_with_instances(&[("i-1", 1024, 256, "a")]);
    register(&mut s, "web", 200, Some(8080));
    let t = run(&mut s, 3, json!({"cluster": "c", "taskDefinition": "web"}))
        .tasks
        .unwrap()
        .remove(0);
    assert!(
        run(&mut s, 4, json!({"cluster": "c", "taskDefinition": "web"}))
            .tasks
            .unwrap()
            .is_empty()
    );
    let stopped: wire::StopTaskResponse = write(
        &mut s,
        5,
        tasks::stop_task,
        req(json!({"cluster": "c", "task": t.task_arn, "reason": "done here"})),
    );
    let st = stopped.task.unwrap();
    assert_eq!(
        st.last_status.as_deref(),
        Some("STOPPED"),
        "no agent took it over, so it stops at once"
    );
    assert_eq!(st.stopped_reason.as_deref(), Some("done here"));
    assert_eq!(st.stop_code, Some(wire::TaskStopCode::UserInitiated));
    assert_eq!(
        run(&mut s, 6, json!({"cluster": "c", "taskDefinition": "web"}))
            .tasks
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn run_task_is_idempotent_on_client_token_and_deterministic_per_seed() {
    let mut s = cluster_with_instances(&[("i-1", 4096, 4096, "a"), ("i-2", 4096, 4096, "b")]);
    register(&mut s, "web", 64, None);
    let a = run(
        &mut s,
        3,
        json!({"cluster": "c", "taskDefinition": "web", "clientToken": "tok", "count": 2}),
    );
    let b = run(
        &mut s,
        4,
        json!({"cluster": "c", "taskDefinition": "web", "clientToken": "tok", "count": 2}),
    );
    let arns = |r: &wire::RunTaskResponse| {
        r.tasks
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.task_arn.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(arns(&a), arns(&b));
    let fresh = s.clone();
    let x = try_write(
        &fresh,
        tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "web", "count": 4})),
    )
    .unwrap()
    .0;
    let y = try_write(
        &fresh,
        tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "web", "count": 4})),
    )
    .unwrap()
    .0;
    assert_eq!(arns(&x), arns(&y), "same seed, same state: same plan");
}

#[test]
fn silent_agents_are_disconnected_and_their_tasks_lost_after_the_grace() {
    use controlplane::ops::agent_channel::check_liveness;
    let mut s = cluster_with_instances(&[("i-1", 4096, 4096, "a"), ("i-2", 4096, 4096, "b")]);
    register(&mut s, "web", 64, None);
    run(
        &mut s,
        3,
        json!({"cluster": "c", "taskDefinition": "web", "count": 4, "placementStrategy": [{"type": "spread", "field": "instanceId"}]}),
    );
    let keys: Vec<_> = s.instances.keys().cloned().collect();
    let registered_at = T0;
    // i-1 keeps polling; i-2 went silent at registration.
    let seen: std::collections::HashMap<_, _> = [(keys[0].clone(), registered_at + 100.0)]
        .into_iter()
        .collect();
    let check = |s: &State, at: f64| {
        let mut ctx = ecs::ctx(at, 1);
        check_liveness(s, &mut ctx, &seen, 30.0, 60.0).unwrap().1
    };
    assert!(
        check(&s, registered_at + 20.0).is_empty(),
        "nobody is silent yet"
    );
    let changes = check(&s, registered_at + 45.0);
    assert_eq!(
        changes.len(),
        1,
        "only i-2 is disconnected, nothing lost yet"
    );
    for c in &changes {
        s.apply(c);
    }
    let silent = &s.instances[&keys[1]];
    assert_eq!(silent.instance.agent_connected, Some(false));
    assert_eq!(s.instances[&keys[0]].instance.agent_connected, Some(true));
    let changes = check(&s, registered_at + 90.0);
    for c in &changes {
        s.apply(c);
    }
    let lost: Vec<_> = s
        .tasks
        .values()
        .filter(|t| t.task.last_status.as_deref() == Some("STOPPED"))
        .collect();
    assert_eq!(lost.len(), 2, "the two tasks on i-2 are lost");
    assert!(
        lost.iter()
            .all(|t| t.instance_id.as_deref() == Some(keys[1].id.as_str()))
    );
    assert!(
        lost[0]
            .task
            .stopped_reason
            .as_deref()
            .unwrap()
            .contains("stopped reporting")
    );
    assert!(check(&s, registered_at + 95.0).is_empty(), "idempotent");
}

#[test]
fn re_registration_keeps_resources_and_refuses_a_foreign_cluster() {
    let mut s = cluster_with_instances(&[("i-1", 1024, 512, "a")]);
    write(
        &mut s,
        1,
        clusters::create_cluster,
        req(json!({"clusterName": "other"})),
    );
    let arn = s
        .instances
        .values()
        .next()
        .unwrap()
        .instance
        .container_instance_arn
        .clone()
        .unwrap();
    let again: wire::RegisterContainerInstanceResponse = write(
        &mut s,
        2,
        instances::register,
        req(json!({"cluster": "c", "containerInstanceArn": arn})),
    );
    let ci = again.container_instance.unwrap();
    assert_eq!(ci.container_instance_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(
        instances::integer_resource(ci.registered_resources.as_deref().unwrap(), "CPU"),
        1024
    );
    let e = try_write(
        &s,
        instances::register,
        req(json!({"cluster": "other", "containerInstanceArn": arn})),
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
}
