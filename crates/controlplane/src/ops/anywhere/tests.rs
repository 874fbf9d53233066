//! The activation rules (limits, expiry, codes kept only as hashes), a node's
//! registration, rotation and revocation, and EXTERNAL placement, as pure functions.

use model::wire;
use model::wire_ssm::{DescribeActivationsFilter, Tag};

use super::*;
use crate::ops::test_support::{apply, scope, state};
use crate::state::State;

const NOW: f64 = 1_000_000.0;

fn create(state: &mut State, req: CreateActivationRequest) -> CreateActivationResult {
    let mut ctx = Ctx::new(scope(), NOW, 7);
    let (r, changes) = create_activation(state, &mut ctx, req).unwrap();
    apply(state, &changes);
    r
}

fn role() -> CreateActivationRequest {
    CreateActivationRequest {
        iam_role: Some("ecsAnywhereRole".into()),
        ..Default::default()
    }
}

fn register_with(
    state: &mut State,
    id: &str,
    code: &str,
    now: f64,
    seed: u64,
) -> Result<RegisterExternalInstanceResponse, SsmError> {
    let mut ctx = Ctx::new(scope(), now, seed);
    let (r, changes) = register_external_instance(
        state,
        &mut ctx,
        RegisterExternalInstanceRequest {
            activation_id: id.into(),
            activation_code: code.into(),
            hostname: Some("rack-1".into()),
        },
    )?;
    apply(state, &changes);
    Ok(r)
}

#[test]
fn an_activation_keeps_only_the_hash_of_its_code() {
    let mut state = state();
    let r = create(&mut state, role());
    assert!(is_activation_id(&r.activation_id), "{}", r.activation_id);
    assert_eq!(r.activation_code.len(), ACTIVATION_CODE_LEN);
    let rec = &state.discovery.anywhere.activations[&r.activation_id];
    assert_eq!(rec.code_sha256, sha256_hex(&r.activation_code));
    assert!(code_matches(&state, &r.activation_id, &r.activation_code));
    assert!(!code_matches(
        &state,
        &r.activation_id,
        "A".repeat(20).as_str()
    ));
    let stored = serde_json::to_string(rec).unwrap();
    assert!(!stored.contains(&r.activation_code), "{stored}");
    // Defaults: one registration, 24 hours.
    assert_eq!(rec.activation.registration_limit, Some(1));
    assert_eq!(
        rec.activation.expiration_date,
        Some(NOW + DEFAULT_ACTIVATION_SECS)
    );
    // Two activations get different codes.
    let other = create(&mut state, role());
    assert_ne!(other.activation_code, r.activation_code);
}

#[test]
fn create_activation_checks_its_limits() {
    let mut state = state();
    let mut ctx = Ctx::new(scope(), NOW, 1);
    let with = |f: &dyn Fn(&mut CreateActivationRequest)| {
        let mut r = role();
        f(&mut r);
        r
    };
    let cases: Vec<(CreateActivationRequest, &str)> = vec![
        (
            with(&|r| r.registration_limit = Some(0)),
            "ValidationException",
        ),
        (
            with(&|r| r.registration_limit = Some(1001)),
            "ValidationException",
        ),
        (
            with(&|r| r.iam_role = Some(String::new())),
            "ValidationException",
        ),
        (
            with(&|r| r.iam_role = Some("r".repeat(65))),
            "ValidationException",
        ),
        (
            with(&|r| r.expiration_date = Some(NOW - 1.0)),
            "InvalidParameters",
        ),
        (
            with(&|r| r.expiration_date = Some(NOW + MAX_ACTIVATION_SECS + 1.0)),
            "InvalidParameters",
        ),
        (
            with(&|r| r.default_instance_name = Some("a;b".into())),
            "ValidationException",
        ),
        (
            with(&|r| {
                r.tags = Some(
                    (0..=MAX_TAGS)
                        .map(|i| Tag {
                            key: format!("k{i}"),
                            value: "v".into(),
                        })
                        .collect(),
                );
            }),
            "InvalidParameters",
        ),
    ];
    for (req, code) in cases {
        let e = create_activation(&state, &mut ctx, req.clone()).unwrap_err();
        assert_eq!(e.code(), code, "{req:?}: {e}");
    }
    let ok = with(&|r| {
        r.registration_limit = Some(MAX_REGISTRATION_LIMIT);
        r.expiration_date = Some(NOW + MAX_ACTIVATION_SECS);
    });
    let (_, changes) = create_activation(&state, &mut ctx, ok).unwrap();
    apply(&mut state, &changes);
    assert_eq!(state.discovery.anywhere.activations.len(), 1);
}

#[test]
fn registration_checks_code_expiry_and_limit() {
    let mut state = state();
    let two = create(
        &mut state,
        CreateActivationRequest {
            registration_limit: Some(2),
            ..role()
        },
    );
    let e = register_with(
        &mut state,
        &two.activation_id,
        "wrong-code-wrong-code",
        NOW,
        1,
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidActivation");
    let e = register_with(&mut state, "not-a-uuid", &two.activation_code, NOW, 1).unwrap_err();
    assert_eq!(e.code(), "InvalidActivationId");
    let a = register_with(&mut state, &two.activation_id, &two.activation_code, NOW, 1).unwrap();
    let b = register_with(&mut state, &two.activation_id, &two.activation_code, NOW, 2).unwrap();
    assert_ne!(a.managed_instance_id, b.managed_instance_id);
    for r in [&a, &b] {
        let mi = &r.managed_instance_id;
        assert!(
            mi.len() == 20
                && mi.starts_with("mi-")
                && mi[3..].bytes().all(|c| c.is_ascii_hexdigit()),
            "{mi}"
        );
        assert!(
            is_node_key(&r.credentials.access_key_id),
            "{}",
            r.credentials.access_key_id
        );
        assert_eq!(r.credentials.secret_access_key.len(), 40);
    }
    assert_eq!(
        state.discovery.anywhere.activations[&two.activation_id].registrations,
        2
    );
    let e =
        register_with(&mut state, &two.activation_id, &two.activation_code, NOW, 3).unwrap_err();
    assert_eq!(e.code(), "InvalidActivation");
    assert!(e.to_string().contains("registration limit (2)"), "{e}");

    let one = create(&mut state, role());
    let later = NOW + DEFAULT_ACTIVATION_SECS;
    let e = register_with(
        &mut state,
        &one.activation_id,
        &one.activation_code,
        later,
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    // Another region does not see the activation.
    let mut ctx = Ctx::new(Scope::new("000000000000", "eu-west-1"), NOW, 1);
    let e = register_external_instance(
        &state,
        &mut ctx,
        RegisterExternalInstanceRequest {
            activation_id: one.activation_id.clone(),
            activation_code: one.activation_code.clone(),
            hostname: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidActivation");
}

#[test]
fn node_secrets_are_derived_not_stored_and_revocation_removes_them() {
    let mut state = state();
    let act = create(&mut state, role());
    let r = register_with(&mut state, &act.activation_id, &act.activation_code, NOW, 5).unwrap();
    let key = &r.credentials.access_key_id;
    let node = &state.discovery.anywhere.nodes[&r.managed_instance_id];
    let stored = serde_json::to_string(node).unwrap();
    assert!(
        !stored.contains(&r.credentials.secret_access_key),
        "{stored}"
    );
    assert_eq!(
        node.key.secret_sha256,
        sha256_hex(&r.credentials.secret_access_key)
    );
    let auth = node_auth(&state, key, NOW + 1.0).unwrap();
    assert_eq!(auth.secret, r.credentials.secret_access_key);
    assert_eq!(auth.scope, scope());
    assert_eq!(auth.node_id, r.managed_instance_id);
    // Expired keys and unknown keys are not accepted.
    assert!(node_auth(&state, key, NOW + NODE_KEY_LIFETIME_SECS).is_none());
    assert!(node_auth(&state, "FLTNAAAAAAAAAAAAAAAA", NOW).is_none());
    // A different server secret derives another secret: the stored hash refuses it.
    let mut other = state.clone();
    other.meta.paging_secret = "ff".repeat(16);
    assert!(node_auth(&other, key, NOW).is_none());
    // Revocation (what deregistration adds) removes the node and its key.
    let changes = revoke_node(&state, &scope(), &r.managed_instance_id);
    assert_eq!(changes.len(), 1);
    let wrong_scope = revoke_node(
        &state,
        &Scope::new("1", "us-east-1"),
        &r.managed_instance_id,
    );
    assert!(wrong_scope.is_empty());
    apply(&mut state, &changes);
    assert!(node_auth(&state, key, NOW + 1.0).is_none());
    assert!(state.discovery.anywhere.keys.is_empty());
}

#[test]
fn rotation_issues_a_new_key_and_keeps_the_old_one_briefly() {
    let mut state = state();
    let act = create(&mut state, role());
    let r = register_with(&mut state, &act.activation_id, &act.activation_code, NOW, 5).unwrap();
    let mut ctx = Ctx::new(scope(), NOW + ROTATE_AFTER_SECS, 9);
    let (rot, changes) = rotate_node_credentials(&state, &mut ctx, &r.managed_instance_id).unwrap();
    apply(&mut state, &changes);
    let old = &r.credentials.access_key_id;
    let new = &rot.credentials.access_key_id;
    assert_ne!(old, new);
    let t = NOW + ROTATE_AFTER_SECS + 1.0;
    assert_eq!(
        node_auth(&state, new, t).unwrap().secret,
        rot.credentials.secret_access_key
    );
    assert!(node_auth(&state, old, t).is_some(), "the grace period");
    assert!(node_auth(&state, old, t + ROTATION_GRACE_SECS).is_none());
    assert!(node_auth(&state, new, t + ROTATION_GRACE_SECS).is_some());
}

#[test]
fn describe_activations_filters_pages_and_shows_counts() {
    let mut state = state();
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = create(
            &mut state,
            CreateActivationRequest {
                default_instance_name: Some(format!("n{}", i % 2)),
                ..role()
            },
        );
        ids.push(r.activation_id);
    }
    let first = describe_activations(
        &state,
        &scope(),
        NOW,
        DescribeActivationsRequest {
            max_results: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(first.activation_list.len(), 2);
    let mut seen: Vec<String> = first
        .activation_list
        .iter()
        .filter_map(|a| a.activation_id.clone())
        .collect();
    let mut token = first.next_token;
    while let Some(t) = token {
        let page = describe_activations(
            &state,
            &scope(),
            NOW,
            DescribeActivationsRequest {
                max_results: Some(2),
                next_token: Some(t),
                ..Default::default()
            },
        )
        .unwrap();
        seen.extend(
            page.activation_list
                .iter()
                .filter_map(|a| a.activation_id.clone()),
        );
        token = page.next_token;
    }
    ids.sort();
    assert_eq!(seen, ids);
    let filtered = describe_activations(
        &state,
        &scope(),
        NOW + DEFAULT_ACTIVATION_SECS,
        DescribeActivationsRequest {
            filters: Some(vec![DescribeActivationsFilter {
                filter_key: Some("DefaultInstanceName".into()),
                filter_values: Some(vec!["n1".into()]),
            }]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(filtered.activation_list.len(), 2);
    assert!(
        filtered
            .activation_list
            .iter()
            .all(|a| a.expired == Some(true))
    );
    let e = describe_activations(
        &state,
        &scope(),
        NOW,
        DescribeActivationsRequest {
            filters: Some(vec![DescribeActivationsFilter {
                filter_key: Some("Nope".into()),
                filter_values: None,
            }]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidFilter");
    let e = describe_activations(
        &state,
        &scope(),
        NOW,
        DescribeActivationsRequest {
            max_results: Some(51),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "ValidationException");
    // Another account sees none of them.
    let other = describe_activations(
        &state,
        &Scope::new("111111111111", "us-east-1"),
        NOW,
        DescribeActivationsRequest::default(),
    )
    .unwrap();
    assert!(other.activation_list.is_empty());
}

#[test]
fn delete_activation_keeps_registered_nodes() {
    let mut state = state();
    let act = create(&mut state, role());
    let r = register_with(&mut state, &act.activation_id, &act.activation_code, NOW, 5).unwrap();
    let mut ctx = Ctx::new(scope(), NOW, 1);
    let (_, changes) = delete_activation(
        &state,
        &mut ctx,
        DeleteActivationRequest {
            activation_id: Some(act.activation_id.clone()),
        },
    )
    .unwrap();
    apply(&mut state, &changes);
    assert!(state.discovery.anywhere.activations.is_empty());
    assert!(node_auth(&state, &r.credentials.access_key_id, NOW).is_some());
    let e = delete_activation(
        &state,
        &mut ctx,
        DeleteActivationRequest {
            activation_id: Some(act.activation_id.clone()),
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "InvalidActivation");
    let e =
        register_with(&mut state, &act.activation_id, &act.activation_code, NOW, 6).unwrap_err();
    assert_eq!(e.code(), "InvalidActivation");
}

/// A cluster with one EC2 and one external instance (1024 CPU, 2048 MiB each) and the
/// task definition `web`: the state, a context, and the two instances' ARNs.
fn mixed_cluster() -> (State, Ctx, String, String) {
    let scope = scope();
    let mut state = state();
    let mut ctx = Ctx::new(scope.clone(), NOW, 1);
    let (_, changes) = crate::ops::clusters::create_cluster(
        &state,
        &mut ctx,
        wire::CreateClusterRequest::default(),
    )
    .unwrap();
    apply(&mut state, &changes);
    let resources = vec![
        wire::Resource {
            name: Some("CPU".into()),
            integer_value: Some(1024),
            ..Default::default()
        },
        wire::Resource {
            name: Some("MEMORY".into()),
            integer_value: Some(2048),
            ..Default::default()
        },
    ];
    let register = |state: &mut State, ctx: &mut Ctx, iid: &str, external: bool| {
        let attributes = external.then(|| {
            vec![wire::Attribute {
                name: Some(crate::placement::EXTERNAL_CAPABILITY.into()),
                ..Default::default()
            }]
        });
        let (r, changes) = crate::ops::instances::register(
            state,
            ctx,
            wire::RegisterContainerInstanceRequest {
                instance_identity_document: Some(
                    serde_json::json!({ "instanceId": iid }).to_string(),
                ),
                total_resources: Some(resources.clone()),
                attributes,
                ..Default::default()
            },
        )
        .unwrap();
        apply(state, &changes);
        r.container_instance
            .unwrap()
            .container_instance_arn
            .unwrap()
    };
    let ec2 = register(&mut state, &mut ctx, "i-0123456789abcdef0", false);
    let external = register(&mut state, &mut ctx, "mi-0123456789abcdef0", true);
    let (_, changes) = crate::ops::task_definitions::register(
        &state,
        &mut ctx,
        serde_json::from_value(serde_json::json!({
            "family": "web",
            "containerDefinitions": [{"name": "web", "image": "nginx", "memory": 128}],
        }))
        .unwrap(),
    )
    .unwrap();
    apply(&mut state, &changes);
    (state, ctx, ec2, external)
}

/// EXTERNAL tasks go only to external instances, EC2 ones never do.
#[test]
fn external_and_ec2_tasks_keep_to_their_instances() {
    let (state, mut ctx, ec2, external) = mixed_cluster();
    let run = |state: &State, ctx: &mut Ctx, launch_type: Option<wire::LaunchType>| {
        let (r, _) = crate::ops::tasks::run_task(
            state,
            ctx,
            wire::RunTaskRequest {
                task_definition: Some("web".into()),
                count: Some(4),
                launch_type,
                ..Default::default()
            },
        )
        .unwrap();
        r.tasks
            .unwrap()
            .into_iter()
            .map(|t| (t.container_instance_arn.unwrap(), t.launch_type))
            .collect::<Vec<_>>()
    };
    for (launch_type, want) in [
        (Some(wire::LaunchType::External), &external),
        (Some(wire::LaunchType::Ec2), &ec2),
        (None, &ec2),
    ] {
        let placed = run(&state, &mut ctx, launch_type);
        assert_eq!(placed.len(), 4, "{launch_type:?}");
        for (arn, lt) in placed {
            assert_eq!(&arn, want, "{launch_type:?}");
            assert_eq!(lt, Some(launch_type.unwrap_or(wire::LaunchType::Ec2)));
        }
    }
}

/// StartTask on an external instance starts an EXTERNAL task there, on an EC2 instance
/// an EC2 one.
#[test]
fn start_task_takes_the_launch_type_of_its_instance() {
    let (state, mut ctx, ec2, external) = mixed_cluster();
    let (r, _) = crate::ops::tasks::start_task(
        &state,
        &mut ctx,
        wire::StartTaskRequest {
            task_definition: Some("web".into()),
            container_instances: Some(vec![external.clone(), ec2.clone()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.failures.unwrap_or_default(), vec![]);
    let placed: Vec<_> = r
        .tasks
        .unwrap()
        .into_iter()
        .map(|t| (t.container_instance_arn.unwrap().into(), t.launch_type))
        .collect();
    assert_eq!(
        placed,
        vec![
            (external, Some(wire::LaunchType::External)),
            (ec2, Some(wire::LaunchType::Ec2)),
        ]
    );
}

/// A service's tasks follow its launch type: an EXTERNAL service's only to external
/// instances, an EC2 service's never there.
#[test]
fn services_place_by_their_launch_type() {
    let (mut state, mut ctx, ec2, external) = mixed_cluster();
    for (name, launch_type, want) in [
        ("edge", Some(wire::LaunchType::External), &external),
        ("core", None, &ec2),
    ] {
        let (_, changes) = crate::ops::services::create(
            &state,
            &mut ctx,
            wire::CreateServiceRequest {
                service_name: Some(name.into()),
                task_definition: Some("web".into()),
                desired_count: Some(3),
                launch_type,
                ..Default::default()
            },
        )
        .unwrap();
        apply(&mut state, &changes);
        let key = crate::state::ServiceKey {
            scope: scope(),
            cluster: "default".into(),
            name: name.into(),
        };
        let (outcome, changes) =
            crate::controllers::reconcile_service(&state, &mut ctx, &key).unwrap();
        apply(&mut state, &changes);
        assert_eq!(outcome.started.len(), 3, "{name}: {outcome:?}");
        for id in &outcome.started {
            let t = state
                .tasks
                .get(&crate::state::MemberKey::new(&scope(), "default", id))
                .unwrap();
            assert_eq!(
                t.task.container_instance_arn.as_deref(),
                Some(want.as_str()),
                "{name}"
            );
        }
    }
}
