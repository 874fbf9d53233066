"""Fargate on the dev cluster's own nodes (issue 14): `flotilla dev cluster up --nodes 3
--fargate-nodes 2 --fargate-spot-nodes 2` starts 3 EC2 nodes and 4 nodes of the Fargate
pool "dev". A FARGATE service of 4 tasks runs on the two regular pool nodes only, each
task with its own address in its ENI attachment, reachable from the host and from a task
on the other pool node; ListContainerInstances shows only the EC2 nodes; a task size
outside the Fargate table gets AWS's error; a FARGATE_SPOT service's task on a reclaimed
(drained) spot node is interrupted (`SpotInterruption`) and replaced on the other one.
A Fargate task's root is an unprivileged uid on its node (its own user namespace).
"""

from __future__ import annotations

import ipaddress
import subprocess

import botocore.exceptions
import pytest

from cluster_support import Cluster, container_pid, dev_cluster, http_get, leftovers, service_tasks, wait_for

NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-dev"]}}


@pytest.fixture(scope="module")
def fg():
    yield from dev_cluster("fg", "flotilla-fargate-test", "--nodes", "3", "--fargate-nodes", "2",
                           "--fargate-spot-nodes", "2", "--agent-timeout", "25s", "--instance-lost-after", "25s")


def nodes_of(c: Cluster, kind: str) -> list[dict]:
    return [n for n in c.status()["nodes"] if n["kind"] == kind]


def register_fargate_httpd(c: Cluster, family: str) -> str:
    return c.ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{
            "name": "web", "image": "127.0.0.1:5000/httpd:latest", "essential": True,
            "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            "linuxParameters": {"initProcessEnabled": True}, "stopTimeout": 5,
        }])["taskDefinition"]["taskDefinitionArn"]


def eni_ip(task: dict) -> str | None:
    for a in task.get("attachments") or []:
        if a["type"] == "ElasticNetworkInterface" and a["status"] == "ATTACHED":
            for d in a["details"]:
                if d["name"] == "privateIPv4Address":
                    return d["value"]
    return None


def node_of_ip(c: Cluster, ip: str) -> int:
    """The pool node whose task subnet (10.<100 + subnet % 100>.<node>.0/24) holds `ip`."""
    subnet = int(c.status()["nodes"][0]["ip"].split(".")[2])
    address = ipaddress.ip_address(ip)
    for n in c.status()["nodes"]:
        if address in ipaddress.ip_network(f"10.{100 + subnet % 100}.{n['index']}.0/24"):
            return n["index"]
    raise AssertionError(f"{ip} is in no pool node's task subnet")


def stable(c: Cluster, service: str, count: int) -> list[dict] | None:
    svc = c.ecs.describe_services(cluster="default", services=[service])["services"][0]
    tasks = service_tasks(c.ecs, service)
    ok = (len(svc["deployments"]) == 1 and svc["runningCount"] == count and len(tasks) == count
          and all(t["lastStatus"] == "RUNNING" and eni_ip(t) for t in tasks))
    return tasks if ok else None


def test_pool_nodes_are_not_container_instances(fg: Cluster):
    ec2 = {n["container_instance_arn"] for n in nodes_of(fg, "EC2")}
    pool = nodes_of(fg, "FARGATE") + nodes_of(fg, "FARGATE_SPOT")
    assert len(ec2) == 3 and len(pool) == 4
    assert all(n["container_instance_arn"] and "/fargate-pool.dev/" in n["container_instance_arn"] for n in pool), pool
    listed = fg.ecs.list_container_instances(cluster="default")["containerInstanceArns"]
    assert set(listed) == ec2


def test_a_fargate_service_runs_on_the_pool_with_reachable_addresses(fg: Cluster):
    taskdef = register_fargate_httpd(fg, "fgweb")
    fg.ecs.create_service(cluster="default", serviceName="fgweb", taskDefinition=taskdef, desiredCount=4,
                          launchType="FARGATE", networkConfiguration=NETWORK)
    tasks = wait_for(lambda: stable(fg, "fgweb", 4), "4 FARGATE tasks running", deadline=120)
    regular = {n["index"] for n in nodes_of(fg, "FARGATE")}
    ips = [eni_ip(t) for t in tasks]
    assert len(set(ips)) == 4, ips
    on = {ip: node_of_ip(fg, ip) for ip in ips}
    assert set(on.values()) <= regular, f"FARGATE tasks outside the regular pool nodes: {on}"
    assert len(set(on.values())) == 2, f"not spread over both pool nodes: {on}"
    for t in tasks:
        assert t["launchType"] == "FARGATE" and t["capacityProviderName"] == "FARGATE"
        assert t["platformVersion"] and t["platformFamily"] == "Linux"
        assert not t.get("containerInstanceArn"), t.get("containerInstanceArn")
    # Each address answers from the host …
    for ip in ips:
        wait_for(lambda ip=ip: http_get(f"http://{ip}:8080/").strip() == "flotilla httpd ok", f"{ip} to answer")
    # … and from a task on the other pool node, through its own network namespace.
    a = tasks[0]
    node_a = on[eni_ip(a)]
    b_ip = next(ip for ip, n in on.items() if n != node_a)
    pid = container_pid(fg, node_a, a["taskArn"])
    assert pid, "the task's container is not running on its node"
    out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "curl", "-fsS", "-m", "3", f"http://{b_ip}:8080/"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "flotilla httpd ok", out.stderr
    # Root in a Fargate container is an unprivileged uid on the node: its own user namespace.
    with open(f"/proc/{pid}/uid_map") as f:
        assert f.read().split() == ["0", "1000000000", "65536"]
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert all(int(u) >= 1_000_000_000 for u in uids), uids


def test_an_oversized_fargate_task_gets_awss_error(fg: Cluster):
    taskdef = register_fargate_httpd(fg, "fgbig")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fg.ecs.run_task(cluster="default", taskDefinition=taskdef, launchType="FARGATE", networkConfiguration=NETWORK,
                        overrides={"cpu": "256", "memory": "4096"})
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "No Fargate configuration exists for given values: 256 CPU, 4096 memory" in str(e.value)
    # A size of the table that no pool node has room for: a failure, not a task.
    out = fg.ecs.run_task(cluster="default", taskDefinition=taskdef, launchType="FARGATE",
                          networkConfiguration=NETWORK, overrides={"cpu": "16384", "memory": "122880"})
    assert not out["tasks"] and out["failures"], out


def test_a_spot_interruption_replaces_the_task_on_another_spot_node(fg: Cluster):
    taskdef = register_fargate_httpd(fg, "fgspot")
    fg.ecs.put_cluster_capacity_providers(cluster="default", capacityProviders=["FARGATE", "FARGATE_SPOT"],
                                          defaultCapacityProviderStrategy=[])
    fg.ecs.create_service(cluster="default", serviceName="fgspot", taskDefinition=taskdef, desiredCount=2,
                          capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
                          networkConfiguration=NETWORK)
    tasks = wait_for(lambda: stable(fg, "fgspot", 2), "2 FARGATE_SPOT tasks running", deadline=120)
    spot = {n["index"]: n for n in nodes_of(fg, "FARGATE_SPOT")}
    assert all(t["capacityProviderName"] == "FARGATE_SPOT" and node_of_ip(fg, eni_ip(t)) in spot for t in tasks)
    victim = tasks[0]
    reclaimed = node_of_ip(fg, eni_ip(victim))
    # The pool reclaims the node: drained, its tasks are interrupted.
    fg.ecs.update_container_instances_state(cluster="fargate-pool.dev", status="DRAINING",
                                            containerInstances=[spot[reclaimed]["container_instance_arn"]])

    def interrupted():
        t = fg.ecs.describe_tasks(cluster="default", tasks=[victim["taskArn"]])["tasks"][0]
        return t if t["lastStatus"] == "STOPPED" else None

    stopped = wait_for(interrupted, "the spot task to be interrupted", deadline=60)
    assert stopped["stopCode"] == "SpotInterruption" and stopped["stoppedReason"] == "Your Spot Task was interrupted."
    replaced = wait_for(lambda: stable(fg, "fgspot", 2), "the service to replace its task", deadline=120)
    assert victim["taskArn"] not in {t["taskArn"] for t in replaced}
    assert all(node_of_ip(fg, eni_ip(t)) != reclaimed for t in replaced), "a task still runs on the reclaimed node"


def test_down_leaves_nothing(fg: Cluster):
    fg.cli("down")
    assert not leftovers(fg)
