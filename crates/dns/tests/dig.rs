//! The server against real `dig` (Debian `dnsutils`) on loopback: every test skips, saying
//! so, when `dig` is not installed.

use std::net::{Ipv4Addr, SocketAddr};

use dns::{DnsServer, Instance, Namespace, RecordType, Service, Snapshot};

fn have_dig() -> bool {
    let found = std::process::Command::new("dig").arg("-v").output().is_ok();
    if !found {
        eprintln!("skipping: dig not installed (apt-get install dnsutils)");
    }
    found
}

/// Runs `dig @addr -p port <args>` and returns its stdout.
async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=5", "+tries=1"])
        .args(args)
        .output()
        .await
        .expect("dig runs");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn instance(id: &str, last: u8, port: u16, healthy: bool) -> Instance {
    Instance {
        id: id.into(),
        ipv4: Ipv4Addr::new(10, 1, 0, last),
        port: Some(port),
        healthy,
    }
}

fn corp(instances: Vec<Instance>) -> Snapshot {
    Snapshot {
        namespaces: vec![Namespace {
            name: "corp.local".into(),
            services: vec![
                Service {
                    name: "web".into(),
                    ttl: 42,
                    record_types: vec![RecordType::A, RecordType::Srv],
                    instances,
                },
                Service {
                    name: "db".into(),
                    ttl: 300,
                    record_types: vec![RecordType::Srv],
                    instances: vec![instance("db-1", 100, 5432, true)],
                },
            ],
        }],
    }
}

fn three() -> Vec<Instance> {
    vec![
        instance("t1", 1, 8080, true),
        instance("t2", 2, 8081, false),
        instance("t3", 3, 8082, true),
    ]
}

async fn start(snapshot: &Snapshot, upstreams: Vec<SocketAddr>) -> DnsServer {
    DnsServer::start("127.0.0.1:0".parse().unwrap(), snapshot, upstreams)
        .await
        .expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lists_exactly_the_healthy_instances_with_the_configured_ttl() {
    if !have_dig() {
        return;
    }
    let server = start(&corp(three()), vec![]).await;
    let short = dig(server.local_addr(), &["web.corp.local", "A", "+short"]).await;
    assert_eq!(sorted_lines(&short), ["10.1.0.1", "10.1.0.3"]);

    let answer = dig(
        server.local_addr(),
        &["web.corp.local", "A", "+noall", "+answer"],
    )
    .await;
    let ttls: Vec<&str> = answer
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(ttls, ["42", "42"], "{answer}");
    let db = dig(
        server.local_addr(),
        &["db.corp.local", "SRV", "+noall", "+answer"],
    )
    .await;
    assert_eq!(db.split_whitespace().nth(1), Some("300"), "{db}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_is_seen_by_the_next_query() {
    if !have_dig() {
        return;
    }
    let server = start(&corp(three()), vec![]).await;
    let before = dig(server.local_addr(), &["web.corp.local", "+short"]).await;
    assert_eq!(sorted_lines(&before), ["10.1.0.1", "10.1.0.3"]);

    let mut instances = three();
    instances.remove(0);
    server.update(&corp(instances)).expect("valid snapshot");
    let after = dig(server.local_addr(), &["web.corp.local", "+short"]).await;
    assert_eq!(sorted_lines(&after), ["10.1.0.3"]);

    // An invalid snapshot is rejected and the served one kept.
    let mut bad = corp(three());
    bad.namespaces[0].services[0].name = "not.a.label".into();
    assert!(server.update(&bad).is_err());
    let kept = dig(server.local_addr(), &["web.corp.local", "+short"]).await;
    assert_eq!(sorted_lines(&kept), ["10.1.0.3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_carries_ports_and_the_targets_a_records_in_additional() {
    if !have_dig() {
        return;
    }
    let server = start(&corp(three()), vec![]).await;
    let out = dig(
        server.local_addr(),
        &["web.corp.local", "SRV", "+noall", "+answer", "+additional"],
    )
    .await;
    let records: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let srv: Vec<String> = records
        .iter()
        .filter(|r| r[3] == "SRV")
        .map(|r| r[4..].join(" "))
        .collect();
    assert_eq!(
        sorted_lines(&srv.join("\n")),
        ["1 1 8080 t1.web.corp.local.", "1 1 8082 t3.web.corp.local."],
        "{out}"
    );
    let additional: Vec<String> = records
        .iter()
        .filter(|r| r[3] == "A")
        .map(|r| format!("{} {}", r[0], r[4]))
        .collect();
    assert_eq!(
        sorted_lines(&additional.join("\n")),
        ["t1.web.corp.local. 10.1.0.1", "t3.web.corp.local. 10.1.0.3"],
        "{out}"
    );
    // The unhealthy task's target name still resolves (a cached SRV may point at it).
    let t2 = dig(server.local_addr(), &["t2.web.corp.local", "+short"]).await;
    assert_eq!(t2.trim(), "10.1.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_is_nxdomain_with_the_soa() {
    if !have_dig() {
        return;
    }
    let server = start(&corp(three()), vec![]).await;
    let out = dig(
        server.local_addr(),
        &["nope.corp.local", "A", "+noall", "+comments", "+authority"],
    )
    .await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("flags: qr aa"), "{out}");
    let soa = out
        .lines()
        .find(|l| l.contains("\tSOA\t"))
        .unwrap_or_else(|| panic!("no SOA in {out}"));
    assert!(soa.starts_with("corp.local."), "{soa}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_answers_like_udp_and_carries_what_udp_truncates() {
    if !have_dig() {
        return;
    }
    let many = (1..=60)
        .map(|i| instance(&format!("task-{i}"), i, 9000, true))
        .collect();
    let server = start(&corp(many), vec![]).await;
    let tcp = dig(server.local_addr(), &["web.corp.local", "+tcp", "+short"]).await;
    assert_eq!(tcp.lines().count(), 60, "{tcp}");
    // Over UDP without EDNS the 60 SRV records and their A records do not fit in 512 bytes.
    let udp = dig(
        server.local_addr(),
        &["web.corp.local", "SRV", "+noedns", "+ignore", "+comments"],
    )
    .await;
    assert!(udp.contains(" tc"), "{udp}");
    let srv = dig(
        server.local_addr(),
        &["web.corp.local", "SRV", "+tcp", "+short"],
    )
    .await;
    assert_eq!(srv.lines().count(), 60);
}

fn upstream_zone() -> Snapshot {
    Snapshot {
        namespaces: vec![Namespace {
            name: "upstream.test".into(),
            services: vec![Service {
                name: "api".into(),
                ttl: 5,
                record_types: vec![RecordType::A],
                instances: vec![instance("u1", 77, 80, true)],
            }],
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_names_are_forwarded_and_refused_without_upstreams() {
    if !have_dig() {
        return;
    }
    let upstream = start(&upstream_zone(), vec![]).await;
    let server = start(&corp(three()), vec![upstream.local_addr()]).await;
    let udp = dig(server.local_addr(), &["api.upstream.test", "+short"]).await;
    assert_eq!(udp.trim(), "10.1.0.77");
    let tcp = dig(
        server.local_addr(),
        &["api.upstream.test", "+tcp", "+short"],
    )
    .await;
    assert_eq!(tcp.trim(), "10.1.0.77");
    let nx = dig(server.local_addr(), &["gone.upstream.test", "+comments"]).await;
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    // Local names are still answered locally, with RA set.
    let local = dig(server.local_addr(), &["web.corp.local", "+comments"]).await;
    assert!(local.contains("flags: qr aa rd ra"), "{local}");

    let lonely = start(&corp(three()), vec![]).await;
    let refused = dig(lonely.local_addr(), &["api.upstream.test", "+comments"]).await;
    assert!(refused.contains("status: REFUSED"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_gives_servfail_after_the_timeout() {
    if !have_dig() {
        return;
    }
    // Bound but never read: the forwarded query gets no answer.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = start(&corp(three()), vec![silent.local_addr().unwrap()]).await;
    let out = dig(server.local_addr(), &["example.com", "+comments"]).await;
    assert!(out.contains("status: SERVFAIL"), "{out}");
}
