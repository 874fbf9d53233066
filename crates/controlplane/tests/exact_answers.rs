//! ECS's exact answers: the error codes and words ECS uses (and the members it leaves
//! out) where flotilla used to answer in its own.

use controlplane::EcsError;
use controlplane::ops::{account, instances, task_definitions, tasks};
use model::wire::{self, SettingName};
use serde_json::json;
use testkit::ecs::{World, req, scope};

fn world() -> World {
    let mut w = World::new();
    w.create_cluster("c");
    w.add_instance("c", "i-1", "a", 4096, 4096);
    w
}

fn code_and_message(e: &EcsError) -> (&'static str, String) {
    (e.code(), e.to_string())
}

#[test]
fn describing_an_empty_list_is_refused_in_ecs_words() {
    let w = world();
    let e = tasks::describe(
        &w.state,
        &scope(),
        req(json!({"cluster": "c", "tasks": []})),
    )
    .unwrap_err();
    assert_eq!(
        code_and_message(&e),
        ("InvalidParameterException", "Tasks cannot be empty.".into())
    );
    let e = instances::describe(
        &w.state,
        &scope(),
        req(json!({"cluster": "c", "containerInstances": []})),
    )
    .unwrap_err();
    assert_eq!(
        code_and_message(&e),
        (
            "InvalidParameterException",
            "ContainerInstances cannot be empty.".into()
        )
    );
}

#[test]
fn a_container_without_a_name_or_an_image() {
    let mut w = world();
    for container in [
        json!({"image": "busybox", "memory": 32}),
        json!({"name": "", "image": "busybox", "memory": 32}),
    ] {
        let e = w
            .try_write(
                task_definitions::register,
                req(json!({"family": "f", "containerDefinitions": [container]})),
            )
            .unwrap_err();
        assert_eq!(
            code_and_message(&e),
            (
                "ClientException",
                "Container.name should not be null or empty.".into()
            )
        );
    }
    let e = w
        .try_write(
            task_definitions::register,
            req(json!({"family": "f", "containerDefinitions": [{"name": "a", "memory": 32}]})),
        )
        .unwrap_err();
    assert_eq!(
        code_and_message(&e),
        (
            "ClientException",
            "Container.image should not be null or empty.".into()
        )
    );
}

#[test]
fn deregistering_needs_a_revision() {
    let mut w = world();
    let arn = w.register("web", 64);
    let family_arn = arn.rsplit_once(':').unwrap().0.to_owned();
    for ident in ["web", family_arn.as_str()] {
        let e = w
            .try_write(
                task_definitions::deregister,
                req(json!({"taskDefinition": ident})),
            )
            .unwrap_err();
        assert_eq!(
            code_and_message(&e),
            ("ClientException", "Revision is missing.".into()),
            "{ident}"
        );
    }
    let e = w
        .try_write(
            task_definitions::deregister,
            req(json!({"taskDefinition": "web:abc"})),
        )
        .unwrap_err();
    assert_eq!(
        code_and_message(&e),
        (
            "InvalidParameterException",
            "Invalid revision number. Number: abc".into()
        )
    );
    let e = w
        .try_write(
            task_definitions::deregister,
            req(json!({"taskDefinition": "web:9"})),
        )
        .unwrap_err();
    assert_eq!(
        code_and_message(&e),
        (
            "ClientException",
            "Unable to describe task definition.".into()
        )
    );
}

#[test]
fn delete_task_definitions_fails_in_ecs_words() {
    let mut w = world();
    w.register("web", 64);
    let r: wire::DeleteTaskDefinitionsResponse = w.write(
        task_definitions::delete,
        req(json!({"taskDefinitions": ["web:9", "web", "web:1"]})),
    );
    let reasons: Vec<(String, String)> = r
        .failures
        .unwrap()
        .into_iter()
        .map(|f| (f.arn.unwrap(), f.reason.unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("web:9".to_owned(), "The specified task definition does not exist. Specify a valid account, family, revision and try again.".to_owned()),
            ("web".to_owned(), "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.".to_owned()),
            ("web:1".to_owned(), "The specified task definition is still in ACTIVE status. Please deregister the target and try again.".to_owned()),
        ]
    );
}

#[test]
fn empty_tags_are_left_out_of_register_and_run_answers() {
    let mut w = world();
    let r: wire::RegisterTaskDefinitionResponse = w.write(
        task_definitions::register,
        req(testkit::ecs::task_definition("web", 64)),
    );
    assert_eq!(r.tags, None);
    let mut tagged = testkit::ecs::task_definition("tagged", 64);
    tagged["tags"] = json!([{"key": "k", "value": "v"}]);
    let r: wire::RegisterTaskDefinitionResponse = w.write(task_definitions::register, req(tagged));
    assert_eq!(r.tags.map(|t| t.len()), Some(1));

    let r: wire::RunTaskResponse = w.write(
        tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "web"})),
    );
    assert_eq!(r.tasks.unwrap()[0].tags, None);
    let r: wire::RunTaskResponse = w.write(
        tasks::run_task,
        req(json!({"cluster": "c", "taskDefinition": "web", "tags": [{"key": "a", "value": "1"}]})),
    );
    assert_eq!(r.tasks.unwrap()[0].tags.as_ref().map(Vec::len), Some(1));
}

#[test]
fn every_account_setting_takes_the_values_ecs_accepts() {
    let mut w = world();
    for &name in SettingName::ALL {
        if name == SettingName::GuardDutyActivate {
            continue;
        }
        for &value in account::allowed_values(name) {
            let r: wire::PutAccountSettingResponse = w.write(
                account::put,
                req(json!({"name": name.as_str(), "value": value})),
            );
            assert_eq!(r.setting.unwrap().value.as_deref(), Some(value), "{name}");
            let r: wire::PutAccountSettingDefaultResponse = w.write(
                account::put_default,
                req(json!({"name": name.as_str(), "value": value})),
            );
            assert_eq!(r.setting.unwrap().value.as_deref(), Some(value), "{name}");
        }
        let e = w
            .try_write(
                account::put,
                req(json!({"name": name.as_str(), "value": "sometimes"})),
            )
            .unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException");
        let listed = format!("[{}]", account::allowed_values(name).join(","));
        assert!(e.to_string().contains(&listed), "{e}");
    }
    assert_eq!(
        account::allowed_values(SettingName::FargateTaskRetirementWaitPeriod),
        ["0", "7", "14"]
    );
    // guardDutyActivate is read-only in ECS: GuardDuty sets it.
    let e = w
        .try_write(
            account::put,
            req(json!({"name": "guardDutyActivate", "value": "enabled"})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
    let e = w
        .try_write(
            account::put_default,
            req(json!({"name": "guardDutyActivate", "value": "enabled"})),
        )
        .unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
}
