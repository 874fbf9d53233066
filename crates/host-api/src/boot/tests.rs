//! Unit tests of the boot step's supervisor: the agent's command line.

use super::*;
use serde_json::json;

fn supervisor(version: &str) -> Supervisor {
    let meta = ImageMeta {
        version: version.to_owned(),
        agent: Some(updater::image::CommandSpec {
            command: vec!["{slot}/bin/flotilla".into(), "agent".into()],
        }),
        ..ImageMeta::default()
    };
    let vars: BTreeMap<&'static str, String> = [
        ("node-id", "fl-1"),
        ("slot", "/node/slots/a"),
        ("data", "/node/data"),
        ("run", "/node/run"),
        ("socket", "/run/flotilla/api.sock"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    Supervisor {
        meta,
        vars,
        fallback: CommandRestarter {
            commands: BTreeMap::new(),
            etc: "/node/etc".into(),
        },
        children: Mutex::new(BTreeMap::new()),
        started: std::sync::atomic::AtomicBool::new(false),
        logs: "/node/run/logs".into(),
        containers: Containers::Runner(Vec::new()),
    }
}

fn argv(sup: &Supervisor, settings: serde_json::Value) -> Vec<String> {
    let s = crate::settings::validate(&settings).unwrap();
    sup.agent_argv(&s).unwrap()
}

fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

#[test]
fn agent_gets_os_version_attribute_and_host_api_socket() {
    let sup = supervisor("1.2.3");
    let a = argv(&sup, json!({}));
    assert_eq!(a[..2], ["/node/slots/a/bin/flotilla", "agent"]);
    assert_eq!(flag(&a, "--attributes"), Some("flotilla.os-version=1.2.3"));
    assert_eq!(
        flag(&a, "--host-api-socket"),
        Some("/run/flotilla/api.sock")
    );

    // merged after the user's attributes, which cannot override it
    let a = argv(
        &sup,
        json!({"ecs": {"instance-attributes": {
            "tier": "web", "flotilla.os-version": "9.9.9", "az": "a"}}}),
    );
    assert_eq!(
        flag(&a, "--attributes"),
        Some("az=a,tier=web,flotilla.os-version=1.2.3")
    );
    assert_eq!(a.iter().filter(|x| *x == "--attributes").count(), 1);
}

#[test]
fn os_version_attribute_value_is_a_valid_attribute_value() {
    let sup = supervisor("1.2.3+build.7");
    let a = argv(&sup, json!({}));
    assert_eq!(
        flag(&a, "--attributes"),
        Some("flotilla.os-version=1.2.3_build.7")
    );
}
