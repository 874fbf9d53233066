"""Services end-to-end on a real 3-node `flotilla dev cluster`: spread, rolling update
(`aws ecs wait services-stable`), circuit breaker + rollback, draining, node loss
(`kill -9` of a node's agent, containerd, shims and containers), and a server `kill -9` in
the middle of a deployment. The tests run in file order on one cluster: each leaves the
service steady on 2 tasks per node for the next."""

from __future__ import annotations

import math
import os
import subprocess
import time

from cluster_support import (BIN, Cluster, Sampler, leftovers, per_node, service_tasks, task_answers, wait_for, register_httpd)

SERVICE = "web"
DESIRED = 6
MIN_HEALTHY_PERCENT = 100
MAX_PERCENT = 200
# Liveness grace period the fixture starts the server with (--instance-lost-after).
LOST_AFTER = 25
# Bridge networking: every task must answer on its node's address at its reported host port.
REQUIRE_HOST_PORTS = True


def register_web(c: Cluster, version: int) -> str:
    return register_httpd(c, SERVICE, version, health_check=True)


def describe_service(c: Cluster) -> dict:
    return c.ecs.describe_services(cluster="default", services=[SERVICE])["services"][0]


def running(c: Cluster) -> list[dict]:
    return [t for t in service_tasks(c.ecs, SERVICE) if t["lastStatus"] == "RUNNING"]


def steady_on_every_node(c: Cluster, taskdef: str) -> list[dict] | None:
    """The service's tasks when it is steady: one deployment, DESIRED running tasks of
    `taskdef`, two per node."""
    svc = describe_service(c)
    tasks = service_tasks(c.ecs, SERVICE)
    ok = (len(svc["deployments"]) == 1 and svc["runningCount"] == DESIRED and len(tasks) == DESIRED
          and all(t["lastStatus"] == "RUNNING" and t["taskDefinitionArn"] == taskdef for t in tasks)
          and sorted(per_node(c, tasks).values()) == [2, 2, 2])
    return tasks if ok else None


def wait_stable(c: Cluster, attempts: int = 120) -> None:
    c.ecs.get_waiter("services_stable").wait(cluster="default", services=[SERVICE],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": attempts})


MIN_RUNNING = math.ceil(DESIRED * MIN_HEALTHY_PERCENT / 100)
MAX_ALIVE = DESIRED * MAX_PERCENT // 100
REVISIONS: dict[str, str] = {}


def test_up_twice_starts_no_second_copy(cluster: Cluster):
    before = cluster.status()
    assert before["server_healthy"]
    assert all(n["agent_connected"] and n["containerd"]["running"] and n["agent"]["running"] for n in before["nodes"])
    assert [n["zone"] for n in before["nodes"]] == ["dev-1", "dev-2", "dev-3"]
    cluster.up()
    after = cluster.status()
    pids = lambda s: [s["server"]["pid"]] + [n[k]["pid"] for n in s["nodes"] for k in ("containerd", "agent")]  # noqa: E731
    assert pids(after) == pids(before)
    # Exactly one server, three containerds, three agents for this cluster on the host.
    cmds = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmds.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode())
        except OSError:
            pass
    mine = [c for c in cmds if cluster.dir in c]
    assert sum(" server " in c for c in mine) == 1, mine
    assert sum(c.startswith("containerd --config") for c in mine) == 3, mine
    assert sum(" agent " in c for c in mine) == 3, mine


def test_down_of_a_missing_cluster_is_fine():
    name = f"nx{os.getpid() % 100000}"
    out = subprocess.run([str(BIN), "dev", "cluster", "down", "--name", name], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "nothing to do" in out.stdout
    out = subprocess.run([str(BIN), "dev", "cluster", "status", "--name", name], capture_output=True, text=True)
    assert out.returncode != 0 and f'no dev cluster named "{name}"' in out.stderr


def test_1_six_httpd_tasks_spread_over_the_nodes(cluster: Cluster):
    REVISIONS["v1"] = register_web(cluster, 1)
    cluster.ecs.create_service(
        cluster="default", serviceName=SERVICE, taskDefinition=REVISIONS["v1"], desiredCount=DESIRED,
        placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        deploymentConfiguration={
            "minimumHealthyPercent": MIN_HEALTHY_PERCENT, "maximumPercent": MAX_PERCENT,
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        },
    )
    tasks = wait_for(lambda: steady_on_every_node(cluster, REVISIONS["v1"]), "6 tasks, 2 per node", deadline=90)
    assert per_node(cluster, tasks) == {1: 2, 2: 2, 3: 2}
    for t in tasks:
        wait_for(lambda t=t: task_answers(cluster, t, REQUIRE_HOST_PORTS), f"task {t['taskArn']} to answer", deadline=30)


def test_2_rolling_update_keeps_min_healthy(cluster: Cluster):
    REVISIONS["v2"] = register_web(cluster, 2)
    with Sampler(cluster.ecs, SERVICE) as sampler:
        cluster.ecs.update_service(cluster="default", service=SERVICE, taskDefinition=REVISIONS["v2"])
        out = cluster.aws("wait", "services-stable", "--cluster", "default", "--services", SERVICE)
        assert out.returncode == 0, out.stderr
        tasks = wait_for(lambda: steady_on_every_node(cluster, REVISIONS["v2"]), "all tasks on revision 2", deadline=90)
    assert sampler.running, "the sampler saw nothing"
    assert min(sampler.running) >= MIN_RUNNING, f"running dropped to {min(sampler.running)}"
    assert max(sampler.alive) <= MAX_ALIVE, f"{max(sampler.alive)} tasks alive at once"
    svc = describe_service(cluster)
    assert svc["deployments"][0]["taskDefinition"] == REVISIONS["v2"]
    assert svc["deployments"][0]["rolloutState"] == "COMPLETED"
    for t in tasks:
        wait_for(lambda t=t: task_answers(cluster, t, REQUIRE_HOST_PORTS), f"task {t['taskArn']} to answer", deadline=30)


def test_3_crashing_revision_trips_the_circuit_breaker_and_rolls_back(cluster: Cluster):
    crash = cluster.ecs.register_task_definition(
        family=SERVICE, networkMode="bridge",
        containerDefinitions=[{"name": "web", "image": "127.0.0.1:5000/busybox:latest", "memory": 32,
                               "essential": True, "command": ["sh", "-c", "echo crashing; exit 1"]}],
    )["taskDefinition"]["taskDefinitionArn"]
    with Sampler(cluster.ecs, SERVICE) as sampler:
        cluster.ecs.update_service(cluster="default", service=SERVICE, taskDefinition=crash)

        def rolled_back():
            svc = describe_service(cluster)
            events = " | ".join(e["message"] for e in svc["events"])
            primary = svc["deployments"][0]
            return svc if ("circuit breaker" in events and "rolling back" in events
                           and primary["taskDefinition"] == REVISIONS["v2"]) else None

        svc = wait_for(rolled_back, "the circuit breaker to trip and roll back", deadline=120)
        wait_stable(cluster)
        wait_for(lambda: steady_on_every_node(cluster, REVISIONS["v2"]), "revision 2 steady again", deadline=90)
    events = [e["message"] for e in svc["events"]]
    assert any("deployment failed: tasks failed to start" in e and "circuit breaker threshold" in e for e in events), events
    assert "circuit breaker" in (svc["deployments"][0].get("rolloutStateReason") or "") or any("rolling back" in e for e in events)
    crashed = [t for t in service_tasks(cluster.ecs, SERVICE, "STOPPED") if t["taskDefinitionArn"] == crash]
    failed = [t for t in crashed if t.get("stopCode") in ("EssentialContainerExited", "TaskFailedToStart")]
    # ECS's threshold for 6 tasks: min(max(10, ceil(0.5 x 6)), 200) = 10 failed tasks.
    assert len(failed) >= 10, f"only {len(failed)} crashed tasks: {[(t.get('stopCode'), t.get('stoppedReason')) for t in crashed]}"
    assert not any(t["lastStatus"] != "STOPPED" for t in service_tasks(cluster.ecs, SERVICE) if t["taskDefinitionArn"] == crash)
    assert min(sampler.running) >= MIN_RUNNING, f"running dropped to {min(sampler.running)}"


def test_4_draining_a_node_moves_its_tasks(cluster: Cluster):
    node1 = next(n for n in cluster.status()["nodes"] if n["index"] == 1)["container_instance_arn"]
    before_on_node1 = {t["taskArn"] for t in running(cluster) if t["containerInstanceArn"] == node1}
    assert len(before_on_node1) == 2
    with Sampler(cluster.ecs, SERVICE) as sampler:
        cluster.ecs.update_container_instances_state(cluster="default", containerInstances=[node1], status="DRAINING")

        def moved():
            tasks = service_tasks(cluster.ecs, SERVICE)
            svc = describe_service(cluster)
            counts = per_node(cluster, tasks)
            ci = cluster.ecs.describe_container_instances(cluster="default", containerInstances=[node1])["containerInstances"][0]
            return (counts[1] == 0 and counts[2] + counts[3] == DESIRED and svc["runningCount"] == DESIRED
                    and len(svc["deployments"]) == 1 and all(t["lastStatus"] == "RUNNING" for t in tasks)
                    and ci["status"] == "DRAINING" and ci["runningTasksCount"] == 0)

        wait_for(moved, "node 1's tasks to move to nodes 2 and 3 and stop there", deadline=120)
    assert min(sampler.running) >= MIN_RUNNING, f"running dropped to {min(sampler.running)}"
    placed_on_node1 = {arn for arn, ci, _ in sampler.seen_on if ci == node1} - before_on_node1
    assert not placed_on_node1, f"tasks placed on the draining node: {placed_on_node1}"
    cluster.ecs.update_container_instances_state(cluster="default", containerInstances=[node1], status="ACTIVE")
    # Zone rebalancing brings the spread back to 2 per node.
    wait_for(lambda: steady_on_every_node(cluster, REVISIONS["v2"]), "2 tasks per node again", deadline=150)


def test_5_a_dead_node_is_replaced_within_the_grace_period(cluster: Cluster):
    node2 = next(n for n in cluster.status()["nodes"] if n["index"] == 2)
    lost = {t["taskArn"] for t in running(cluster) if t["containerInstanceArn"] == node2["container_instance_arn"]}
    assert len(lost) == 2
    killed_at = time.monotonic()
    cluster.crash_node(2)

    def replaced():
        stopped = [t for t in service_tasks(cluster.ecs, SERVICE, "STOPPED") if t["taskArn"] in lost]
        if len(stopped) != len(lost) or any(t["lastStatus"] != "STOPPED" for t in stopped):
            return None
        now_running = running(cluster)
        counts = per_node(cluster, now_running)
        return stopped if (len(now_running) == DESIRED and counts[2] == 0) else None

    stopped = wait_for(replaced, "the lost tasks to be replaced on nodes 1 and 3", deadline=LOST_AFTER + 30, interval=0.5)
    elapsed = time.monotonic() - killed_at
    print(f"node 2 lost: tasks replaced {elapsed:.1f}s after kill -9 (grace {LOST_AFTER}s)")
    for t in stopped:
        assert node2["container_instance_arn"] in t["stoppedReason"] and "stopped reporting" in t["stoppedReason"], t["stoppedReason"]
    # `up` brings the node back as if it had rebooted; rebalancing gives it tasks again.
    cluster.up()
    st = cluster.status()
    back = next(n for n in st["nodes"] if n["index"] == 2)
    assert back["agent_connected"] and back["containerd"]["running"] and back["agent"]["running"]
    assert back["container_instance_arn"] == node2["container_instance_arn"], "the node re-registered as a new instance"
    tasks = wait_for(lambda: steady_on_every_node(cluster, REVISIONS["v2"]), "2 tasks per node again", deadline=150)
    # The rebooted node's new tasks are reachable (what its dead tasks left behind, such
    # as port rules, is gone).
    for t in tasks:
        wait_for(lambda t=t: task_answers(cluster, t, REQUIRE_HOST_PORTS), f"task {t['taskArn']} to answer", deadline=30)


def test_6_server_restart_mid_deployment_resumes_without_duplicates(cluster: Cluster):
    REVISIONS["v3"] = register_web(cluster, 3)
    old = {t["taskArn"] for t in running(cluster)}
    with Sampler(cluster.ecs, SERVICE) as sampler:
        cluster.ecs.update_service(cluster="default", service=SERVICE, taskDefinition=REVISIONS["v3"])

        def mid_deployment():
            tasks = service_tasks(cluster.ecs, SERVICE)
            new = [t for t in tasks if t["taskDefinitionArn"] == REVISIONS["v3"]]
            still_old = [t for t in tasks if t["taskArn"] in old]
            return bool(new) and len(still_old) > 0

        wait_for(mid_deployment, "the deployment to start new tasks", deadline=30, interval=0.1)
        server_pid = cluster.status()["server"]["pid"]
        os.kill(server_pid, 9)
        wait_for(lambda: not cluster.status()["server"]["running"], "the server to die")
        cluster.up()
        assert cluster.status()["server"]["pid"] != server_pid
        wait_stable(cluster)
        tasks = wait_for(lambda: steady_on_every_node(cluster, REVISIONS["v3"]), "revision 3 on every node", deadline=120)
    assert max(sampler.alive) <= MAX_ALIVE, f"{max(sampler.alive)} tasks alive at once"
    assert min(sampler.running) >= MIN_RUNNING, f"running dropped to {min(sampler.running)}"
    every_v3 = [t for t in service_tasks(cluster.ecs, SERVICE) + service_tasks(cluster.ecs, SERVICE, "STOPPED")
                if t["taskDefinitionArn"] == REVISIONS["v3"]]
    assert len(every_v3) == DESIRED, f"{len(every_v3)} tasks of revision 3 were started (duplicates)"
    for t in tasks:
        wait_for(lambda t=t: task_answers(cluster, t, REQUIRE_HOST_PORTS), f"task {t['taskArn']} to answer", deadline=30)


def test_6b_bad_deploy_right_after_stable_then_node_loss_heals(cluster: Cluster):
    """A new 6-task service (breaker + rollback) is deployed; right after `services-stable`
    returns (its deployment is steady but not yet COMPLETED: the 40 s rule), a revision
    whose container exits after 1 s is deployed, and a node dies. The breaker trips and
    rolls back to the steady deployment; the service ends with one deployment and 6
    RUNNING tasks of the good revision, none on the dead node, and the waiter returns."""
    name = "flaky"
    good = cluster.ecs.register_task_definition(
        family=name, networkMode="bridge",
        containerDefinitions=[{"name": "web", "image": "127.0.0.1:5000/httpd:latest", "memory": 32,
                               "essential": True, "stopTimeout": 2,
                               "portMappings": [{"containerPort": 8080, "hostPort": 0}]}],
    )["taskDefinition"]["taskDefinitionArn"]
    cluster.ecs.create_service(
        cluster="default", serviceName=name, taskDefinition=good, desiredCount=DESIRED,
        deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200,
                                 "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
    out = cluster.aws("wait", "services-stable", "--cluster", "default", "--services", name)
    assert out.returncode == 0, out.stderr
    first = cluster.ecs.describe_services(cluster="default", services=[name])["services"][0]
    assert first["deployments"][0]["rolloutState"] == "IN_PROGRESS", "the scenario needs a not-yet-COMPLETED deployment"
    crash = cluster.ecs.register_task_definition(
        family=name, networkMode="bridge",
        containerDefinitions=[{"name": "web", "image": "127.0.0.1:5000/busybox:latest", "memory": 32,
                               "essential": True, "command": ["sh", "-c", "sleep 1; exit 1"]}],
    )["taskDefinition"]["taskDefinitionArn"]
    cluster.ecs.update_service(cluster="default", service=name, taskDefinition=crash)
    node3 = next(n for n in cluster.status()["nodes"] if n["index"] == 3)["container_instance_arn"]
    cluster.crash_node(3)

    def healed():
        svc = cluster.ecs.describe_services(cluster="default", services=[name])["services"][0]
        tasks = service_tasks(cluster.ecs, name)
        ok = (len(svc["deployments"]) == 1 and svc["deployments"][0]["taskDefinition"] == good
              and svc["runningCount"] == DESIRED and len(tasks) == DESIRED
              and all(t["lastStatus"] == "RUNNING" and t["taskDefinitionArn"] == good
                      and t["containerInstanceArn"] != node3 for t in tasks))
        return svc if ok else None

    svc = wait_for(healed, "the service to roll back and replace the dead node's tasks", deadline=LOST_AFTER + 150, interval=1)
    events = " | ".join(e["message"] for e in svc["events"])
    assert "deployment failed" in events and "rolling back" in events, events
    out = cluster.aws("wait", "services-stable", "--cluster", "default", "--services", name)
    assert out.returncode == 0, out.stderr
    # Leave the cluster as the next test expects: node 3 back, this service gone.
    cluster.up()
    cluster.ecs.delete_service(cluster="default", service=name, force=True)
    wait_for(lambda: not service_tasks(cluster.ecs, name), "the flaky service's tasks to stop", deadline=90)


def test_7_down_leaves_nothing(cluster: Cluster):
    cluster.cli("down")
    assert leftovers(cluster) == []
    again = cluster.cli("down")
    assert "nothing to do" in again.stdout
