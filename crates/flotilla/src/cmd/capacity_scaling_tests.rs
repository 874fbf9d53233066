//! The runner with a real hook: a shell script that appends its arguments (and the
//! provider and cluster from its environment) to a file.

use std::path::Path;

use controlplane::ops::{capacity_providers, clusters, instances, services, task_definitions};
use controlplane::state::MemberKey;
use model::status::InstanceStatus;
use serde_json::{Value, json};
use testkit::ecs::{control_plane, instance, req, scope, task_definition};

use super::*;

async fn write<Req, Resp>(
    cp: &ControlPlane,
    op: fn(
        &controlplane::State,
        &mut controlplane::Ctx,
        Req,
    ) -> controlplane::engine::Written<Resp>,
    body: Value,
) where
    Req: serde::de::DeserializeOwned + Clone + Send + 'static,
    Resp: Send + 'static,
{
    let r: Req = req(body);
    cp.write(scope(), move |s, ctx| op(s, ctx, r.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Cluster `c` with providers A (group blue, with empty node n1) and B (group green,
/// no node, a service of 1 task waiting), both managed with target 100.
async fn world() -> ControlPlane {
    let cp = control_plane();
    write(&cp, clusters::create_cluster, json!({"clusterName": "c"})).await;
    for (name, group) in [("A", "blue"), ("B", "green")] {
        write(
            &cp,
            capacity_providers::create,
            json!({"name": name, "autoScalingGroupProvider": {"autoScalingGroupArn": group,
                "managedScaling": {"status": "ENABLED", "targetCapacity": 100}}}),
        )
        .await;
    }
    write(
        &cp,
        clusters::put_cluster_capacity_providers,
        json!({"cluster": "c", "capacityProviders": ["A", "B"],
            "defaultCapacityProviderStrategy": []}),
    )
    .await;
    let mut n1 = instance("c", "n1", "a", 1024, 1024);
    n1["attributes"] = json!([{"name": "flotilla.node-group", "value": "blue"}]);
    write(&cp, instances::register, n1).await;
    write(&cp, task_definitions::register, task_definition("web", 128)).await;
    write(
        &cp,
        services::create,
        json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web",
            "desiredCount": 1, "capacityProviderStrategy": [{"capacityProvider": "B", "weight": 1}]}),
    )
    .await;
    cp
}

/// A hook script in `dir` logging to `dir/calls`; `grow` fails (exit 3) while
/// `dir/fail` exists.
fn hook(dir: &Path) -> ScalingHook {
    let script = dir.join("hook.sh");
    let body = format!(
        "#!/bin/sh\n\
         echo \"$FLOTILLA_CAPACITY_PROVIDER $FLOTILLA_CLUSTER $*\" >> {log}\n\
         if [ \"$1\" = grow ] && [ -e {fail} ]; then echo 'no capacity left' >&2; exit 3; fi\n\
         exit 0\n",
        log = dir.join("calls").display(),
        fail = dir.join("fail").display(),
    );
    std::fs::write(&script, body).expect("write the hook");
    format!("/bin/sh {}", script.display())
        .parse()
        .expect("a hook")
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn provider(cp: &ControlPlane, name: &str) -> controlplane::state::CapacityProviderRecord {
    cp.read(|s| s.capacity_providers[&(scope(), name.to_owned())].clone())
}

fn n1_status(cp: &ControlPlane) -> Option<InstanceStatus> {
    cp.read(|s| {
        let id = s
            .instances_in(&scope(), "c")
            .find(|i| i.instance.ec2_instance_id.as_deref() == Some("n1"))
            .map(|i| i.id.clone())
            .expect("n1");
        s.instances[&MemberKey::new(&scope(), "c", &id)]
            .instance
            .status()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_drains_removes_and_grows_through_a_real_hook() {
    let cp = world().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = hook(dir.path());
    std::fs::write(dir.path().join("fail"), "").expect("fail flag");
    let mut runner = Runner::default();

    // Pass 1: A's empty n1 is drained (no hook yet); B's grow fails and shows.
    runner.pass(&cp, Some(&hook)).await;
    assert_eq!(n1_status(&cp), Some(InstanceStatus::Draining));
    assert_eq!(calls(dir.path()), vec!["B c grow green 1"]);
    let reason = provider(&cp, "B")
        .provider
        .update_status_reason
        .expect("a reason");
    assert!(reason.starts_with("Managed scaling: "), "{reason}");
    assert!(
        reason.contains("exit status 3: no capacity left"),
        "{reason}"
    );
    assert_eq!(provider(&cp, "B").scaling.last_scale_out_at, None);

    // Pass 2: n1 is removed (and deregistered); B's grow waits for its backoff.
    std::fs::remove_file(dir.path().join("fail")).expect("unflag");
    runner.pass(&cp, Some(&hook)).await;
    assert_eq!(
        calls(dir.path()),
        vec!["B c grow green 1", "A c remove blue n1"]
    );
    assert_eq!(n1_status(&cp), Some(InstanceStatus::Inactive));

    // After the backoff, the grow succeeds: the warm-up starts and the reason goes.
    runner.backoff.clear();
    runner.pass(&cp, Some(&hook)).await;
    assert_eq!(calls(dir.path()).len(), 3);
    assert_eq!(calls(dir.path())[2], "B c grow green 1");
    let b = provider(&cp, "B");
    assert!(b.scaling.last_scale_out_at.is_some());
    assert_eq!(b.scaling.last_scale_out_count, Some(1));
    assert_eq!(b.provider.update_status_reason, None);

    // Within the warm-up (300 s by default), no second scale-out.
    runner.pass(&cp, Some(&hook)).await;
    assert_eq!(calls(dir.path()).len(), 3);
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("slow.sh");
    std::fs::write(&script, "#!/bin/sh\nsleep 30\n").expect("write");
    let hook: ScalingHook = format!("/bin/sh {}", script.display()).parse().unwrap();
    let call = HookCall {
        args: vec!["grow".into(), "g".into(), "1".into()],
        env: Vec::new(),
    };
    let started = Instant::now();
    let e = hook
        .run_with_timeout(&call, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.contains("timed out"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let missing: ScalingHook = "/nonexistent/hook".parse().unwrap();
    let e = missing.run(&call).await.unwrap_err();
    assert!(e.starts_with("cannot start"), "{e}");
    assert!("  ".parse::<ScalingHook>().is_err());
}

#[test]
fn the_backoff_doubles_to_its_cap() {
    assert_eq!(backoff_after(1), BACKOFF_FIRST);
    assert_eq!(backoff_after(2), BACKOFF_FIRST * 2);
    assert_eq!(backoff_after(3), BACKOFF_FIRST * 4);
    assert_eq!(backoff_after(100), BACKOFF_MAX);
}

#[test]
fn hook_arguments_must_not_read_as_options() {
    assert!(safe_arg("blue"));
    assert!(safe_arg("i-0123456789abcdef0"));
    assert!(!safe_arg("-rf"));
    assert!(!safe_arg(""));
    assert!(!safe_arg("a b"));
    assert!(!safe_arg("blü"));
    assert!(!safe_arg(&"x".repeat(256)));
}
