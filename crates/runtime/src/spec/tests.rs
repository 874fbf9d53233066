//! Unit tests of the OCI spec builder.

use super::*;
use crate::types::{BindMount, ContainerId, ImageRef, Ulimit};

fn spec() -> ContainerSpec {
    ContainerSpec::new(
        ContainerId::new("t1-web").unwrap(),
        ImageRef::parse("127.0.0.1:5000/busybox").unwrap(),
    )
}

fn image() -> ImageConfig {
    ImageConfig {
        entrypoint: None,
        cmd: Some(vec!["sh".into()]),
        env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
        working_dir: Some("/srv".into()),
        user: None,
        stop_signal: None,
    }
}

/// The spec's mount at `destination`.
fn mount_at<'a>(spec: &'a serde_json::Value, destination: &str) -> &'a serde_json::Value {
    spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == destination)
        .unwrap_or_else(|| panic!("no mount at {destination}"))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn args_follow_docker_override_rules() {
    let mut s = spec();
    let mut img = image();
    img.entrypoint = Some(strs(&["/init"]));
    assert_eq!(process_args(&s, &img).unwrap(), strs(&["/init", "sh"]));
    s.command = Some(strs(&["-c", "exit 3"]));
    assert_eq!(
        process_args(&s, &img).unwrap(),
        strs(&["/init", "-c", "exit 3"])
    );
    s.command = None;
    s.entry_point = Some(strs(&["/bin/echo"]));
    assert_eq!(process_args(&s, &img).unwrap(), strs(&["/bin/echo"]));
    let empty = ImageConfig::default();
    assert!(matches!(
        process_args(&spec(), &empty),
        Err(Error::InvalidSpec { .. })
    ));
}

#[test]
fn env_overlays_image_and_defaults_path() {
    let mut s = spec();
    s.environment.insert("A".into(), "spec".into());
    s.environment.insert("B".into(), "x=y".into());
    let env = process_env(&s, &image());
    assert!(env.contains(&"A=spec".to_owned()));
    assert!(env.contains(&"B=x=y".to_owned()));
    assert!(env.contains(&"PATH=/bin".to_owned()));
    let env = process_env(&spec(), &ImageConfig::default());
    assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
}

#[test]
fn resources_math() {
    let r = Resources {
        cpu_units: Some(0),
        memory_hard_mib: Some(128),
        memory_soft_mib: Some(64),
    };
    let l = cgroup_limits("c", &r).unwrap();
    assert_eq!(l.cpu_shares, Some(2));
    assert_eq!(l.memory_limit_bytes, Some(128 * 1024 * 1024));
    assert_eq!(l.memory_reservation_bytes, Some(64 * 1024 * 1024));
    let l = cgroup_limits(
        "c",
        &Resources {
            cpu_units: Some(1_000_000),
            ..Resources::default()
        },
    )
    .unwrap();
    assert_eq!(l.cpu_shares, Some(MAX_CPU_SHARES));
    assert_eq!(l.memory_limit_bytes, None);
    for bad in [
        Resources {
            memory_hard_mib: Some(4),
            ..Resources::default()
        },
        Resources {
            memory_hard_mib: Some(64),
            memory_soft_mib: Some(128),
            ..Resources::default()
        },
        Resources {
            memory_hard_mib: Some(u64::MAX),
            ..Resources::default()
        },
    ] {
        assert!(matches!(
            cgroup_limits("c", &bad),
            Err(Error::InvalidSpec { .. })
        ));
    }
}

#[test]
fn signals_users_rlimits() {
    assert_eq!(parse_signal("c", "SIGTERM").unwrap(), 15);
    assert_eq!(parse_signal("c", "kill").unwrap(), 9);
    assert_eq!(parse_signal("c", "10").unwrap(), 10);
    assert!(parse_signal("c", "SIGNOPE").is_err());
    assert!(parse_signal("c", "0").is_err());
    assert_eq!(parse_user("c", "1000:1000").unwrap(), (1000, 1000));
    assert_eq!(parse_user("c", "root").unwrap(), (0, 0));
    assert_eq!(parse_user("c", "42").unwrap(), (42, 0));
    assert!(parse_user("c", "nginx").is_err());
    assert_eq!(rlimit_name("c", "nofile").unwrap(), "RLIMIT_NOFILE");
    assert_eq!(rlimit_name("c", "RLIMIT_CORE").unwrap(), "RLIMIT_CORE");
    assert!(rlimit_name("c", "bogus").is_err());
}

#[test]
fn full_spec() {
    let mut s = spec();
    s.resources = Resources {
        cpu_units: Some(512),
        memory_hard_mib: Some(64),
        memory_soft_mib: None,
    };
    s.ulimits.push(Ulimit {
        name: "nofile".into(),
        soft: 4096,
        hard: 8192,
    });
    s.mounts.push(BindMount {
        host_path: "/var/data".into(),
        container_path: "/data".into(),
        read_only: true,
    });
    s.network = NetworkMode::Host;
    s.user = Some("1000:100".into());
    let v = build_oci_spec(&s, &image(), "/flotilla/ns/t1-web", None).unwrap();
    assert_eq!(v["process"]["args"], json!(["sh"]));
    assert_eq!(v["process"]["cwd"], json!("/srv"));
    assert_eq!(v["process"]["user"], json!({"uid": 1000, "gid": 100}));
    assert_eq!(v["linux"]["resources"]["cpu"]["shares"], json!(512));
    assert_eq!(
        v["linux"]["resources"]["memory"]["limit"],
        json!(64 * 1024 * 1024)
    );
    assert_eq!(v["linux"]["cgroupsPath"], json!("/flotilla/ns/t1-web"));
    assert_eq!(
        v["process"]["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192}])
    );
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert!(!ns.iter().any(|n| n["type"] == "network"));
    let last = v["mounts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["destination"], json!("/data"));
    assert_eq!(last["options"], json!(["rbind", "rprivate", "ro"]));

    let mut s2 = spec();
    s2.network = NetworkMode::Join("/var/run/netns/x".into());
    s2.working_directory = Some("relative".into());
    assert!(build_oci_spec(&s2, &image(), "/x", None).is_err());
    s2.working_directory = None;
    let v = build_oci_spec(&s2, &image(), "/x", None).unwrap();
    assert!(
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "network", "path": "/var/run/netns/x"}))
    );
    assert!(v["linux"]["resources"].get("memory").is_none());

    let mut s3 = spec();
    s3.init_process = true;
    assert!(build_oci_spec(&s3, &image(), "/x", None).is_err());
    let v = build_oci_spec(
        &s3,
        &image(),
        "/x",
        Some(std::path::Path::new("/usr/bin/tini")),
    )
    .unwrap();
    assert_eq!(v["process"]["args"], json!([INIT_PATH, "--", "sh"]));
    let last = v["mounts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["destination"], json!(INIT_PATH));
    assert_eq!(last["source"], json!("/usr/bin/tini"));
}

#[test]
fn user_namespace_maps_ids_and_binds_sys_when_joining_a_netns() {
    let v = build_oci_spec(&spec(), &image(), "/x", None).unwrap();
    assert!(v["linux"].get("uidMappings").is_none());
    assert!(
        !v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "user"}))
    );

    let mut s = spec();
    s.user_namespace = Some(crate::types::IdMapping {
        host_base: 1_000_000_000,
        size: 65_536,
    });
    s.network = NetworkMode::Join("/run/netns/t1".into());
    let v = build_oci_spec(&s, &image(), "/x", None).unwrap();
    let ids = json!([{"containerID": 0, "hostID": 1_000_000_000u32, "size": 65_536}]);
    assert_eq!(v["linux"]["uidMappings"], ids);
    assert_eq!(v["linux"]["gidMappings"], ids);
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.contains(&json!({"type": "user"})));
    let sys = mount_at(&v, "/sys");
    assert_eq!(sys["type"], "bind");
    assert!(sys["options"].as_array().unwrap().contains(&json!("ro")));

    // Its own network namespace: a real sysfs, as without a user namespace.
    s.network = NetworkMode::Isolated;
    let v = build_oci_spec(&s, &image(), "/x", None).unwrap();
    let sys = mount_at(&v, "/sys");
    assert_eq!(sys["type"], "sysfs");
}

#[test]
fn id_mapping_bounds() {
    let m = crate::types::IdMapping {
        host_base: u32::MAX - 10,
        size: 65_536,
    };
    assert_eq!(m.host_id(0), Some(u32::MAX - 10));
    assert_eq!(m.host_id(11), None, "past u32::MAX");
    assert_eq!(m.host_id(65_536), None, "outside the range");
}

#[test]
fn privileged_and_host_pid() {
    let v = build_oci_spec(&spec(), &image(), "/x", None).unwrap();
    assert_eq!(
        v["process"]["capabilities"]["effective"],
        json!(DEFAULT_CAPS)
    );
    assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], json!(false));
    assert!(!v["linux"]["maskedPaths"].as_array().unwrap().is_empty());
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.contains(&json!({"type": "pid"})));

    let mut s = spec();
    s.privileged = true;
    s.host_pid = true;
    let v = build_oci_spec(&s, &image(), "/x", None).unwrap();
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(v["process"]["capabilities"][set], json!(privileged_caps()));
    }
    assert!(privileged_caps().contains(&"CAP_SYS_ADMIN"));
    assert_eq!(caps_in_set(u64::MAX), ALL_CAPS);
    assert_eq!(ALL_CAPS[21], "CAP_SYS_ADMIN");
    assert_eq!(ALL_CAPS[40], "CAP_CHECKPOINT_RESTORE");
    // bit 24 (CAP_SYS_RESOURCE) missing from the set: left out
    let without = caps_in_set(((1u64 << 41) - 1) & !(1 << 24));
    assert_eq!(without.len(), 40);
    assert!(!without.contains(&"CAP_SYS_RESOURCE"));
    assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], json!(true));
    assert_eq!(v["linux"]["maskedPaths"], json!([]));
    assert_eq!(v["linux"]["readonlyPaths"], json!([]));
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert!(!ns.iter().any(|n| n["type"] == "pid"));
    let sys = mount_at(&v, "/sys");
    assert!(sys["options"].as_array().unwrap().contains(&json!("rw")));
}
