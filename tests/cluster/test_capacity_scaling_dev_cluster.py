"""Managed scaling on the dev cluster (issue 14): a capacity provider with managed
scaling over node group "blue" grows the group from 1 to 3 real nodes when a service
needs them (the server runs its scaling hook, `flotilla dev cluster scale … grow`), and
back to 1 when the service scales in: the nodes to remove are set DRAINING first, then
removed (`… remove`) and deregistered. No task is lost on the way.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

from cluster_support import BIN, Cluster, dev_cluster, leftovers, service_tasks, wait_for

GROUP = "blue"
SERVICE = "wide"


@pytest.fixture(scope="module")
def sc():
    yield from dev_cluster("sc", "flotilla-scaling-test",
                           "--nodes", "1", "--agent-timeout", "25s", "--instance-lost-after", "25s")


def group_nodes(c: Cluster) -> list[dict]:
    return [n for n in c.status()["nodes"] if n.get("group") == GROUP]


def instances(c: Cluster) -> dict[str, dict]:
    """ec2InstanceId -> container instance, of every ACTIVE or DRAINING instance."""
    out = {}
    for status in ("ACTIVE", "DRAINING"):
        arns = c.ecs.list_container_instances(cluster="default", status=status)["containerInstanceArns"]
        if arns:
            for ci in c.ecs.describe_container_instances(cluster="default", containerInstances=arns)["containerInstances"]:
                out[ci["ec2InstanceId"]] = ci
    return out


def scale(c: Cluster, *args: str) -> subprocess.CompletedProcess:
    """`flotilla dev cluster scale` as the server's hook runs it."""
    return subprocess.run([str(BIN), "dev", "cluster", "scale", "--name", c.name, "--dir", c.dir, *args],
                          capture_output=True, text=True, timeout=120)


def test_scale_adds_a_node_of_the_group_by_hand(sc: Cluster):
    out = scale(sc, "grow", GROUP, "1")
    assert out.returncode == 0 and "added node" in out.stdout, out.stdout + out.stderr
    nodes = group_nodes(sc)
    assert len(nodes) == 1 and nodes[0]["agent_connected"], nodes
    ci = instances(sc)[nodes[0]["instance_id"]]
    assert {"name": "flotilla.node-group", "value": GROUP} in [
        {"name": a["name"], "value": a.get("value")} for a in ci["attributes"]]
    bad = scale(sc, "grow", "a b", "1")
    assert bad.returncode != 0 and "node group" in bad.stderr


def test_managed_scaling_grows_the_group_then_drains_and_shrinks_it(sc: Cluster):
    node = instances(sc)[group_nodes(sc)[0]["instance_id"]]
    cpu = next(r["integerValue"] for r in node["registeredResources"] if r["name"] == "CPU")
    sc.ecs.create_capacity_provider(name=GROUP, autoScalingGroupProvider={
        "autoScalingGroupArn": GROUP,
        "managedScaling": {"status": "ENABLED", "targetCapacity": 100, "minimumScalingStepSize": 1,
                           "maximumScalingStepSize": 10, "instanceWarmupPeriod": 0},
        "managedTerminationProtection": "ENABLED", "managedDraining": "ENABLED"})
    sc.ecs.put_cluster_capacity_providers(cluster="default", capacityProviders=[GROUP],
                                          defaultCapacityProviderStrategy=[{"capacityProvider": GROUP, "weight": 1}])
    # Each task takes over half a node's CPU: one task per node.
    taskdef = sc.ecs.register_task_definition(family=SERVICE, containerDefinitions=[{
        "name": "sleep", "image": "127.0.0.1:5000/busybox:latest", "memory": 16, "cpu": cpu * 6 // 10,
        "command": ["sleep", "3600"], "essential": True}])["taskDefinition"]["taskDefinitionArn"]
    sc.ecs.create_service(cluster="default", serviceName=SERVICE, taskDefinition=taskdef, desiredCount=3,
                          capacityProviderStrategy=[{"capacityProvider": GROUP, "weight": 1}])

    def three_running():
        tasks = [t for t in service_tasks(sc.ecs, SERVICE) if t["lastStatus"] == "RUNNING"]
        return tasks if len(group_nodes(sc)) == 3 and len(tasks) == 3 else None

    tasks = wait_for(three_running, "the group to grow to 3 nodes and run the 3 tasks", deadline=180)
    assert all(t["capacityProviderName"] == GROUP for t in tasks)
    assert len({t["containerInstanceArn"] for t in tasks}) == 3

    # Scale in, watching every instance's status: each removed one must be seen
    # DRAINING before it disappears, and the kept task must keep running.
    seen: dict[str, set[str]] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                for iid, ci in instances(sc).items():
                    seen.setdefault(iid, set()).add(ci["status"])
            except Exception:  # noqa: BLE001 - a failed sample is skipped
                pass
            stop.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        sc.ecs.update_service(cluster="default", service=SERVICE, desiredCount=1)
        wait_for(lambda: len(group_nodes(sc)) == 1, "the group to shrink back to 1 node", deadline=180)
    finally:
        stop.set()
        watcher.join(timeout=10)
    kept = group_nodes(sc)[0]["instance_id"]
    running = [t for t in service_tasks(sc.ecs, SERVICE) if t["lastStatus"] == "RUNNING"]
    assert len(running) == 1 and instances(sc)[kept]["containerInstanceArn"] == running[0]["containerInstanceArn"]
    now = instances(sc)
    removed = [iid for iid in seen if iid not in now]
    assert len(removed) == 2, seen
    for iid in removed:
        assert "DRAINING" in seen[iid], f"{iid} was removed without being drained first: {seen[iid]}"
    # Tasks were only stopped by the scale-in, never lost with a node.
    stopped = service_tasks(sc.ecs, SERVICE, "STOPPED")
    assert len(stopped) == 2, [t["stoppedReason"] for t in stopped]
    assert all(t.get("stopCode") == "ServiceSchedulerInitiated" for t in stopped), [t.get("stoppedReason") for t in stopped]


def test_down_leaves_nothing(sc: Cluster):
    sc.cli("down")
    assert not leftovers(sc)
