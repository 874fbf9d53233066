"""Service discovery inside tasks on a real 3-node `flotilla dev cluster`: the server
serves Cloud Map's private DNS namespaces on the bridge address, every agent runs with
`--task-dns <that address>`, so each task's /etc/resolv.conf names it. An ECS bridge
service with `serviceRegistries` is then found by name from inside a task's network
namespace (the host's `dig`, and the task's own resolver): exactly its running tasks, at
their nodes' addresses and host ports, through a rolling deployment and a StopTask.
The tests run in file order on one cluster."""

from __future__ import annotations

import shutil
import subprocess
import urllib.parse

import boto3
import pytest
from botocore.config import Config

from cluster_support import REGION, Cluster, container_pid, service_tasks, wait_for, register_httpd

NAMESPACE = "flotilla.test"
SERVICE = "web"
NAME = f"{SERVICE}.{NAMESPACE}"
TTL = 5
DESIRED = 3
STATE: dict[str, str] = {}


@pytest.fixture(scope="module")
def sd(cluster: Cluster):
    if shutil.which("dig") is None:
        pytest.fail("dig is not installed (Debian package dnsutils; scripts/setup.sh installs it)", pytrace=False)
    # botocore prefixes DiscoverInstances' host with "data-"; the dev cluster has one endpoint.
    return boto3.client("servicediscovery", endpoint_url=cluster.endpoint, region_name=REGION,
                        aws_access_key_id="dev", aws_secret_access_key="dev",
                        config=Config(inject_host_prefix=False))


def register_web(c: Cluster, version: int) -> str:
    return register_httpd(c, SERVICE, version)


def running(c: Cluster, taskdef: str | None = None) -> list[dict]:
    return [t for t in service_tasks(c.ecs, SERVICE)
            if t["lastStatus"] == "RUNNING" and taskdef in (None, t["taskDefinitionArn"])]


def node_ips(c: Cluster) -> dict[str, str]:
    """container instance ARN -> node address."""
    return {n["container_instance_arn"]: n["ip"] for n in c.status()["nodes"] if n["container_instance_arn"]}


def host_port(task: dict) -> int:
    return next(b["hostPort"] for ct in task["containers"] for b in ct.get("networkBindings") or []
                if b["containerPort"] == 8080)


def task_id(task: dict) -> str:
    return task["taskArn"].rsplit("/", 1)[1]


def expected(c: Cluster, tasks: list[dict]) -> tuple[list[str], list[str]]:
    """What `dig +short` answers for the tasks: A (their nodes' addresses) and SRV."""
    ips = node_ips(c)
    a = sorted({ips[t["containerInstanceArn"]] for t in tasks})
    srv = sorted(f"1 1 {host_port(t)} {task_id(t)}.{NAME}." for t in tasks)
    return a, srv


def dns_server(c: Cluster) -> str:
    addr = c.status()["dns"]
    assert addr, "the dev cluster serves no DNS"
    host, port = addr.rsplit(":", 1)
    assert port == "53", addr
    return host


def task_pid(c: Cluster, task: dict) -> int:
    node = c.node_of_instance()[task["containerInstanceArn"]]
    return wait_for(lambda: container_pid(c, node, task["taskArn"]), f"the pid of {task['taskArn']}", deadline=20)


def resolv_conf(pid: int) -> str:
    with open(f"/proc/{pid}/root/etc/resolv.conf") as f:
        return f.read()


def nameservers(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver ")]


def dig_in(netns: str, server: str, qtype: str) -> list[str]:
    """`dig +short` from inside network namespace `netns` (a path)."""
    r = subprocess.run(["nsenter", f"--net={netns}", "dig", "+short", "+tries=1", "+time=2",
                        f"@{server}", NAME, qtype], capture_output=True, text=True, timeout=15)
    assert r.returncode == 0, r.stdout + r.stderr
    return sorted(line for line in r.stdout.splitlines() if line and not line.startswith(";"))


def answers(c: Cluster, server: str) -> tuple[list[str], list[str]]:
    """A (as a set: one address per node) and SRV, asked from inside the network
    namespace of one of the service's running tasks."""
    netns = f"/proc/{task_pid(c, running(c)[0])}/ns/net"
    return sorted(set(dig_in(netns, server, "A"))), dig_in(netns, server, "SRV")


def test_1_every_task_names_the_clusters_dns_server(cluster: Cluster, sd):
    server = dns_server(cluster)
    assert server == urllib.parse.urlparse(cluster.endpoint).hostname, "on the bridge address, like the control plane"
    op = sd.create_private_dns_namespace(Name=NAMESPACE, Vpc="vpc-dev")["OperationId"]
    ns = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
    registry = sd.create_service(
        Name=SERVICE, NamespaceId=ns,
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": TTL}, {"Type": "SRV", "TTL": TTL}]},
    )["Service"]
    STATE["registry"] = registry["Id"]
    STATE["v1"] = register_web(cluster, 1)
    cluster.ecs.create_service(
        cluster="default", serviceName=SERVICE, taskDefinition=STATE["v1"], desiredCount=DESIRED,
        placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        serviceRegistries=[{"registryArn": registry["Arn"], "containerName": "web", "containerPort": 8080}],
    )
    tasks = wait_for(lambda: (t := running(cluster)) and len(t) == DESIRED and t, f"{DESIRED} running tasks", deadline=90)
    for t in tasks:
        text = resolv_conf(task_pid(cluster, t))
        assert nameservers(text) == [server], text


def test_2_dig_in_a_task_sees_exactly_the_running_tasks(cluster: Cluster, sd):
    server = dns_server(cluster)
    want = lambda: expected(cluster, running(cluster))  # noqa: E731
    wait_for(lambda: answers(cluster, server) == want(), "A and SRV to name the running tasks", deadline=30)
    a, srv = answers(cluster, server)
    assert len(srv) == DESIRED and len(a) == DESIRED, (a, srv)  # spread: one task per node
    # Cloud Map's own view agrees (DiscoverInstances through the same endpoint).
    found = sd.discover_instances(NamespaceName=NAMESPACE, ServiceName=SERVICE)["Instances"]
    assert sorted(i["InstanceId"] for i in found) == sorted(task_id(t) for t in running(cluster))


def in_task(pid: int, *cmd: str) -> subprocess.CompletedProcess:
    """Runs `cmd` inside the task's container: its mounts (image, /etc/resolv.conf),
    network, pid, uts and ipc namespaces."""
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", "-p", "-u", "-i", "--", *cmd],
                          capture_output=True, text=True, timeout=15)


def nslookup_addresses(out: str) -> list[str]:
    """The answers' addresses in busybox nslookup's output (after the server's lines)."""
    return [line.split()[1] for line in out.split("Name:", 1)[-1].splitlines() if line.startswith("Address:")]


def test_3_a_task_finds_another_by_name_with_its_own_resolver(cluster: Cluster):
    """The container's own resolver (busybox nslookup, reading the mounted
    /etc/resolv.conf; no server given) finds a peer's per-task name at the peer's node
    address and the service's SRV records, and the peer answers there from the task's
    network."""
    tasks = running(cluster)
    me, peer = tasks[0], tasks[1]
    pid = task_pid(cluster, me)
    peer_ip = node_ips(cluster)[peer["containerInstanceArn"]]

    out = in_task(pid, "/bin/nslookup", f"{task_id(peer)}.{NAME}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Server:\t\t{dns_server(cluster)}" in out.stdout, out.stdout
    assert nslookup_addresses(out.stdout) == [peer_ip], out.stdout
    out = in_task(pid, "/bin/nslookup", "-type=SRV", NAME)
    assert out.returncode == 0, out.stdout + out.stderr
    srv = sorted(line.split("service = ", 1)[1].rstrip(".") for line in out.stdout.splitlines() if "service = " in line)
    assert srv == sorted(f"1 1 {host_port(t)} {task_id(t)}.{NAME}" for t in running(cluster)), out.stdout

    url = f"http://{peer_ip}:{host_port(peer)}/"

    def fetch() -> str:
        r = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "curl", "-fsS", "-m", "3", url],
                           capture_output=True, text=True, timeout=15)
        return r.stdout.strip()

    assert wait_for(lambda: fetch() == "flotilla httpd ok", f"{url} from inside {task_id(me)}", deadline=20)


def test_4_a_rolling_deployment_leaves_exactly_the_new_tasks(cluster: Cluster):
    server = dns_server(cluster)
    old = {task_id(t) for t in running(cluster)}
    STATE["v2"] = register_web(cluster, 2)
    cluster.ecs.update_service(cluster="default", service=SERVICE, taskDefinition=STATE["v2"])
    cluster.ecs.get_waiter("services_stable").wait(cluster="default", services=[SERVICE],
                                                   WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    new = running(cluster, STATE["v2"])
    assert len(new) == DESIRED and not old & {task_id(t) for t in new}
    # Within one TTL of the deployment finishing, the answers are exactly the new tasks.
    wait_for(lambda: answers(cluster, server) == expected(cluster, new), "A and SRV to name the new tasks",
             deadline=TTL)
    for t in new:
        assert nameservers(resolv_conf(task_pid(cluster, t))) == [server]


def test_5_a_stopped_task_leaves_the_answers(cluster: Cluster):
    server = dns_server(cluster)
    victim = running(cluster)[0]
    gone = f"{task_id(victim)}.{NAME}."
    port = host_port(victim)
    cluster.ecs.stop_task(cluster="default", task=victim["taskArn"], reason="dns test")

    def srv_without_victim() -> bool:
        srv = answers(cluster, server)[1]
        return all(not line.endswith(gone) for line in srv) and srv != []

    wait_for(srv_without_victim, "the stopped task to leave the SRV answer", deadline=TTL)
    assert f"1 1 {port} {gone}" not in answers(cluster, server)[1]
    # The service replaces it; the answers follow, again exactly the running tasks.
    wait_for(lambda: (t := running(cluster)) and len(t) == DESIRED and answers(cluster, server) == expected(cluster, t),
             "the replacement to be answered", deadline=60)


def test_6_deleting_the_service_empties_the_name(cluster: Cluster, sd):
    """Asked from a node's own namespace: the tasks go away with the service."""
    server = dns_server(cluster)
    node = f"/run/netns/{cluster.status()['nodes'][0]['netns']}"
    cluster.ecs.delete_service(cluster="default", service=SERVICE, force=True)
    wait_for(lambda: dig_in(node, server, "SRV") == [] and dig_in(node, server, "A") == [], "no instance left",
             deadline=30)
    # The registry, empty now, can go.
    sd.delete_service(Id=STATE["registry"])
