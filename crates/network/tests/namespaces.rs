//! Task networking on real namespaces, veths, a bridge and iptables. Each test runs on a
//! thread that first moves into a fresh network namespace of its own — a throwaway
//! "node" — so nothing touches the machine's network, and it also proves that everything
//! works relative to the caller's namespace (as for an agent started with
//! `ip netns exec`). Needs root: `cargo test -p network -- --include-ignored`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use network::rules::{PORTS_CHAIN, Table, owned_task_rules};
use network::{
    Mode, NetworkConfig, NetworkError, PortMapping, Protocol, TaskNetworks, TaskRequest, iptables,
    links, netns,
};
use nix::sched::{CloneFlags, setns, unshare};

/// Runs `f` on a new thread inside a new network namespace with `lo` up.
fn on_a_fresh_node(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare (are we root?)");
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
        f();
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn networks(dir: &Path, cidr: &str) -> TaskNetworks {
    let mut cfg = NetworkConfig::new(dir);
    cfg.subnet = cidr.parse().unwrap();
    TaskNetworks::open(cfg).unwrap()
}

fn tcp(host_port: u16, container_port: u16) -> PortMapping {
    PortMapping {
        host_port,
        container_port,
        protocol: Protocol::Tcp,
    }
}

fn bridge_task(task: &str, ports: Vec<PortMapping>) -> TaskRequest {
    TaskRequest {
        task: task.into(),
        mode: Mode::Bridge,
        ports,
    }
}

/// Serves `connections` TCP connections on `port` inside the namespace `ns`, answering
/// each with `reply`; returns once it listens.
fn serve_tcp_in(ns: &Path, port: u16, reply: &'static str, connections: usize) {
    let file = std::fs::File::open(ns).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
        ready_tx.send(()).unwrap();
        for _ in 0..connections {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(reply.as_bytes()).unwrap();
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

/// Answers one UDP datagram on `port` inside `ns` with `reply`.
fn serve_udp_in(ns: &Path, port: u16, reply: &'static str) {
    let file = std::fs::File::open(ns).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let (_, from) = socket.recv_from(&mut buf).unwrap();
        socket.send_to(reply.as_bytes(), from).unwrap();
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn ask_udp(addr: SocketAddr) -> String {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(b"ping", addr).unwrap();
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn owned_rules(n: &TaskNetworks) -> Vec<String> {
    let listing = iptables::list(Table::Nat, PORTS_CHAIN).unwrap();
    owned_task_rules(&listing, n.node_tag())
        .into_iter()
        .map(|(task, _)| task)
        .collect()
}

fn our_links() -> Vec<String> {
    let mut l = links::links_with_prefix("fl").unwrap();
    l.retain(|n| n != "flotilla0");
    l.extend(links::links_with_prefix("fp").unwrap());
    l
}

#[test]
#[ignore = "needs root"]
fn two_bridge_tasks_serve_through_published_ports_and_teardown_leaves_nothing() {
    on_a_fresh_node(|| {
        let dir = tempfile::tempdir().unwrap();
        let n = networks(dir.path(), "10.77.0.0/24");
        let a = n
            .setup(&bridge_task(
                "task-a",
                vec![
                    tcp(18080, 8080),
                    PortMapping {
                        host_port: 15353,
                        container_port: 5353,
                        protocol: Protocol::Udp,
                    },
                ],
            ))
            .unwrap();
        let b = n
            .setup(&bridge_task("task-b", vec![tcp(18081, 8080)]))
            .unwrap();
        let (ip_a, ip_b) = (a.ipv4.unwrap(), b.ipv4.unwrap());
        assert_ne!(ip_a, ip_b, "each task has its own address");
        assert!(a.mac.is_some());
        assert!(netns::exists(&a.netns) && netns::exists(&b.netns));

        serve_tcp_in(&a.netns, 8080, "hello from a", 3);
        serve_tcp_in(&b.netns, 8080, "hello from b", 2);
        serve_udp_in(&a.netns, 5353, "udp from a");
        let gateway = a.gateway.unwrap();
        // From the node: loopback, another node address, and the task's own address.
        assert_eq!(
            fetch((Ipv4Addr::LOCALHOST, 18080).into()).unwrap(),
            "hello from a"
        );
        assert_eq!(fetch((gateway, 18080).into()).unwrap(), "hello from a");
        assert_eq!(fetch((ip_a, 8080).into()).unwrap(), "hello from a");
        assert_eq!(
            fetch((Ipv4Addr::LOCALHOST, 18081).into()).unwrap(),
            "hello from b"
        );
        assert_eq!(fetch((gateway, 18081).into()).unwrap(), "hello from b");
        assert_eq!(ask_udp((Ipv4Addr::LOCALHOST, 15353).into()), "udp from a");
        assert_eq!(owned_rules(&n).len(), 3, "one DNAT rule per mapping");

        n.teardown("task-a").unwrap();
        n.teardown("task-b").unwrap();
        n.teardown("task-b").unwrap(); // idempotent
        assert!(owned_rules(&n).is_empty(), "no rules left");
        assert!(our_links().is_empty(), "no veth left: {:?}", our_links());
        assert!(
            !a.netns.exists() && !b.netns.exists(),
            "no namespace handle left"
        );
        assert!(n.tasks().is_empty());
        assert!(
            fetch((Ipv4Addr::LOCALHOST, 18080).into()).is_err(),
            "the published port no longer answers"
        );
        assert!(
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, 18080)).is_ok(),
            "the host port is free again"
        );
    });
}

/// The MAC address of link `name` in the calling thread's namespace (`ip -o link`).
fn mac_of(name: &str) -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "ip link show {name}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "link/ether").unwrap();
    words[at + 1].to_owned()
}

#[test]
#[ignore = "needs root"]
fn the_bridge_keeps_its_mac_when_a_task_goes_so_the_others_still_answer() {
    on_a_fresh_node(|| {
        let dir = tempfile::tempdir().unwrap();
        let n = networks(dir.path(), "10.78.0.0/24");
        let a = n
            .setup(&bridge_task("task-a", vec![tcp(18090, 8080)]))
            .unwrap();
        let b = n
            .setup(&bridge_task("task-b", vec![tcp(18091, 8080)]))
            .unwrap();
        let bridge = n.config().bridge.clone();
        let expected: String = links::bridge_mac(a.gateway.unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(mac_of(&bridge), expected, "the bridge has its own MAC");

        serve_tcp_in(&a.netns, 8080, "hello from a", 2);
        serve_tcp_in(&b.netns, 8080, "hello from b", 2);
        // Both tasks learn the gateway's MAC by answering once.
        assert_eq!(
            fetch((Ipv4Addr::LOCALHOST, 18090).into()).unwrap(),
            "hello from a"
        );
        assert_eq!(
            fetch((Ipv4Addr::LOCALHOST, 18091).into()).unwrap(),
            "hello from b"
        );
        // Remove the task whose veth has the lowest MAC: a bridge without a MAC of its
        // own had taken that one and would change it now.
        let (gone, stays, port, reply) =
            if mac_of(&n.veth_name("task-a")) < mac_of(&n.veth_name("task-b")) {
                ("task-a", "task-b", 18091, "hello from b")
            } else {
                ("task-b", "task-a", 18090, "hello from a")
            };
        n.teardown(gone).unwrap();
        assert_eq!(mac_of(&bridge), expected, "the bridge's MAC did not change");
        assert_eq!(
            fetch((Ipv4Addr::LOCALHOST, port).into()).unwrap(),
            reply,
            "{stays} still answers on its published port"
        );
        n.teardown(stays).unwrap();
    });
}

#[test]
#[ignore = "needs root"]
fn a_host_port_in_use_fails_the_setup_by_name_and_leaves_nothing() {
    on_a_fresh_node(|| {
        let dir = tempfile::tempdir().unwrap();
        let n = networks(dir.path(), "10.78.0.0/24");
        let squatter = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 18090)).unwrap();
        let err = n
            .setup(&bridge_task("task-c", vec![tcp(18091, 80), tcp(18090, 80)]))
            .unwrap_err();
        assert!(matches!(err, NetworkError::PortInUse { port: 18090, .. }));
        assert_eq!(
            err.to_string(),
            "host port 18090/tcp is already in use on this instance"
        );
        assert!(n.tasks().is_empty());
        assert!(n.attachment("task-c").is_none());
        assert!(!n.netns_path("task-c").exists());
        assert!(our_links().is_empty());
        assert!(owned_rules(&n).is_empty());
        assert!(
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, 18091)).is_ok(),
            "the other port was released"
        );
        drop(squatter);
        // Another test's `iptables` child may briefly hold a copy of the squatter's
        // socket (between its fork and exec): wait, with a deadline, until it is free.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while TcpListener::bind((Ipv4Addr::UNSPECIFIED, 18090)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "18090 never came free"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // With the port free, the same task sets up and gets the first address.
        let ok = n
            .setup(&bridge_task("task-c", vec![tcp(18090, 80)]))
            .unwrap();
        assert_eq!(ok.ipv4, Some(Ipv4Addr::new(10, 78, 0, 2)));
        n.teardown("task-c").unwrap();
    });
}

#[test]
#[ignore = "needs root"]
fn a_reopened_node_keeps_addresses_adopts_without_recreating_and_cleans_the_gone() {
    on_a_fresh_node(|| {
        let dir = tempfile::tempdir().unwrap();
        let first = networks(dir.path(), "10.79.0.0/24");
        let kept = first
            .setup(&bridge_task("kept", vec![tcp(18100, 80)]))
            .unwrap();
        let gone = first
            .setup(&bridge_task("gone", vec![tcp(18101, 80)]))
            .unwrap();
        let veth = first.veth_name("kept");
        // (/sys/class/net shows the namespace sysfs was mounted in, not this thread's.)
        let ifindex = |name: &str| links::link_index(name).unwrap().expect("the veth exists");
        let before = ifindex(&veth);
        drop(first); // the agent dies; its port sockets close

        let again = networks(dir.path(), "10.79.0.0/24");
        let adopted = again
            .adopt(&bridge_task("kept", vec![tcp(18100, 80)]))
            .unwrap()
            .expect("kept is adopted");
        assert_eq!(adopted, kept, "same namespace, address and MAC");
        assert_eq!(ifindex(&veth), before, "the veth was not recreated");
        assert_eq!(
            owned_rules(&again).iter().filter(|t| *t == "kept").count(),
            1,
            "rules are not duplicated"
        );
        assert!(
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, 18100)).is_err(),
            "the published port is reserved again"
        );
        serve_tcp_in(&adopted.netns, 80, "still here", 1);
        assert_eq!(
            fetch((Ipv4Addr::LOCALHOST, 18100).into()).unwrap(),
            "still here"
        );

        let new = again
            .setup(&bridge_task("new", vec![tcp(18102, 80)]))
            .unwrap();
        assert_ne!(new.ipv4, kept.ipv4, "an address in use is never handed out");
        assert_ne!(
            new.ipv4, gone.ipv4,
            "gone still holds its lease until cleaned"
        );

        let cleaned = again
            .cleanup_except(&BTreeSet::from(["kept".to_owned(), "new".to_owned()]))
            .unwrap();
        assert_eq!(cleaned, vec!["gone".to_owned()]);
        assert!(!gone.netns.exists());
        assert!(!owned_rules(&again).contains(&"gone".to_owned()));
        assert_eq!(links::link_index(&again.veth_name("gone")).unwrap(), None);
        let later = again.setup(&bridge_task("later", vec![])).unwrap();
        let after_new = new.ipv4.map(|ip| Ipv4Addr::from(u32::from(ip) + 1));
        assert_eq!(
            later.ipv4, after_new,
            "addresses are handed out in turn: a just-freed one is not reused at once"
        );
        for t in ["kept", "new", "later"] {
            again.teardown(t).unwrap();
        }
        assert!(our_links().is_empty());
    });
}

#[test]
#[ignore = "needs root"]
fn a_port_of_a_task_that_went_away_while_no_agent_ran_goes_to_the_new_task() {
    on_a_fresh_node(|| {
        let dir = tempfile::tempdir().unwrap();
        let first = networks(dir.path(), "10.78.0.0/24");
        let old = first
            .setup(&bridge_task("old", vec![tcp(18200, 80)]))
            .unwrap();
        drop(first); // the node "reboots": the task is gone, its record and rules stay
        netns::remove(&old.netns).unwrap();

        let again = networks(dir.path(), "10.78.0.0/24");
        let new = again
            .setup(&bridge_task("new", vec![tcp(18200, 8080)]))
            .unwrap();
        assert_eq!(
            owned_rules(&again),
            vec!["new".to_owned()],
            "the old task's rule for the port would shadow the new one"
        );
        serve_tcp_in(&new.netns, 8080, "the new task", 1);
        assert_eq!(
            fetch((Ipv4Addr::LOCALHOST, 18200).into()).unwrap(),
            "the new task"
        );
        assert_eq!(links::link_index(&again.veth_name("old")).unwrap(), None);
        again.teardown("new").unwrap();
        assert!(our_links().is_empty());
    });
}

#[test]
#[ignore = "needs root"]
fn a_port_left_published_by_a_node_whose_state_is_gone_goes_to_the_new_task() {
    on_a_fresh_node(|| {
        // A node whose agent died with its task and whose data directory was deleted:
        // its rule stays in the shared chain, and no record says whose it is.
        let gone_dir = tempfile::tempdir().unwrap();
        let gone = networks(gone_dir.path(), "10.79.0.0/24");
        gone.setup(&bridge_task("old", vec![tcp(18300, 80)]))
            .unwrap();
        drop(gone);
        drop(gone_dir);

        let dir = tempfile::tempdir().unwrap();
        let n = networks(dir.path(), "10.79.0.0/24");
        let new = n
            .setup(&bridge_task("new", vec![tcp(18300, 8080)]))
            .unwrap();
        let listing = iptables::list(Table::Nat, PORTS_CHAIN).unwrap();
        let on_port: Vec<&str> = listing
            .lines()
            .filter(|l| l.contains("--dport 18300"))
            .collect();
        assert_eq!(on_port.len(), 1, "only the new task's rule: {on_port:?}");
        serve_tcp_in(&new.netns, 8080, "the new task", 1);
        assert_eq!(
            fetch((Ipv4Addr::LOCALHOST, 18300).into()).unwrap(),
            "the new task"
        );
        n.teardown("new").unwrap();
    });
}

#[test]
#[ignore = "needs root"]
fn awsvpc_tasks_are_reached_at_their_address_and_none_has_only_loopback() {
    on_a_fresh_node(|| {
        let dir = tempfile::tempdir().unwrap();
        let n = networks(dir.path(), "10.80.0.0/24");
        let vpc = n
            .setup(&TaskRequest {
                task: "vpc".into(),
                mode: Mode::Awsvpc,
                ports: vec![tcp(18110, 80)],
            })
            .unwrap();
        let ip = vpc.ipv4.unwrap();
        serve_tcp_in(&vpc.netns, 80, "awsvpc ok", 1);
        assert_eq!(fetch((ip, 80).into()).unwrap(), "awsvpc ok");
        assert!(owned_rules(&n).is_empty(), "awsvpc publishes no ports");

        let none = n
            .setup(&TaskRequest {
                task: "none".into(),
                mode: Mode::None,
                ports: vec![],
            })
            .unwrap();
        assert_eq!(none.ipv4, None);
        let inside = Command::new("nsenter")
            .arg(format!("--net={}", none.netns.display()))
            .args(["ip", "-o", "link", "show"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&inside.stdout);
        assert_eq!(text.lines().count(), 1, "only lo: {text}");
        assert!(text.contains("lo:") && text.contains("UP"), "{text}");

        n.teardown("vpc").unwrap();
        n.teardown("none").unwrap();
        assert!(our_links().is_empty());
        assert!(!vpc.netns.exists() && !none.netns.exists());
    });
}
