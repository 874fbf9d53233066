"""Several servers on a local etcd, with real agents (issue 15): `flotilla dev cluster up
--servers 3 --store etcd` starts a 3-member etcd and 3 servers; every agent is given all
three endpoints. A service deployment is started, then the leader and server 1 (the
agents' first endpoint) are `kill -9`'d while it is in progress: another server takes
the lead, the agents move to a live server and stay connected, the deployment finishes
without a duplicate task, and every server answers the same afterwards.
"""

from __future__ import annotations

import os
import subprocess

import boto3
import pytest

from cluster_support import (BIN, CREDS, REGION, Cluster, Sampler, dev_cluster, leftovers, register_httpd, service_tasks,
                             wait_for)
from support import need_root_and_binaries

SERVICE = "ha"
DESIRED = 4


@pytest.fixture(scope="module")
def ha_cluster():
    need_root_and_binaries("the dev cluster needs root (network namespaces, containerd, cgroups)")
    if not os.path.exists("/usr/bin/etcd"):
        pytest.fail("etcd is missing: scripts/setup.sh installs Debian's etcd-server")
    yield from dev_cluster("ha", "flotilla-ha-test", "--nodes", "2", "--servers", "3", "--store", "etcd",
                           "--agent-timeout", "25s", "--instance-lost-after", "25s")


def ecs_at(endpoint: str):
    return boto3.client("ecs", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="dev", aws_secret_access_key="dev")


def roles(c: Cluster) -> dict[int, str | None]:
    """server number -> its /healthz body (None when it does not answer)."""
    return {s["index"]: s["health"] for s in c.status()["servers"]}


def one_leader(c: Cluster) -> int | None:
    """The number of the one server that says it leads, when exactly one does."""
    leaders = [k for k, h in roles(c).items() if h == "ok: leader"]
    return leaders[0] if len(leaders) == 1 else None


def test_up_starts_three_servers_on_a_three_member_etcd(ha_cluster: Cluster):
    status = ha_cluster.status()
    assert status["store"] == "etcd"
    assert [m["running"] for m in status["etcd"]] == [True, True, True]
    assert len(status["servers"]) == 3
    leader = wait_for(lambda: one_leader(ha_cluster), "one leader among the servers")
    followers = [h for k, h in roles(ha_cluster).items() if k != leader]
    assert all(h and h.startswith("ok: follower of") for h in followers), followers
    # Any server answers any call, and they agree.
    instances = {s["endpoint"]: sorted(ecs_at(s["endpoint"]).list_container_instances(cluster="default")["containerInstanceArns"])
                 for s in status["servers"]}
    assert len(set(map(tuple, instances.values()))) == 1, instances
    assert len(next(iter(instances.values()))) == 2


def test_a_deployment_finishes_after_the_leader_and_the_agents_server_die(ha_cluster: Cluster):
    c = ha_cluster
    servers = {s["index"]: s["endpoint"] for s in c.status()["servers"]}
    v1 = register_httpd(c, SERVICE, 1, health_check=True)
    via2 = ecs_at(servers[2])
    via2.create_service(cluster="default", serviceName=SERVICE, taskDefinition=v1, desiredCount=DESIRED,
                        deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 100})
    via2.get_waiter("services_stable").wait(cluster="default", services=[SERVICE],
                                            WaiterConfig={"Delay": 1, "MaxAttempts": 120})

    v2 = register_httpd(c, SERVICE, 2, health_check=True)
    old_leader = wait_for(lambda: one_leader(c), "one leader")
    victims = sorted({old_leader, 1})
    survivor = next(k for k in servers if k not in victims)
    api = ecs_at(servers[survivor])
    pids = {s["index"]: s["process"]["pid"] for s in c.status()["servers"]}
    with Sampler(api, SERVICE) as sampler:
        api.update_service(cluster="default", service=SERVICE, taskDefinition=v2)
        wait_for(lambda: any(t["taskDefinitionArn"] == v2 for t in service_tasks(api, SERVICE)),
                 "the deployment to start a task of revision 2", deadline=60, interval=0.1)
        for k in victims:
            os.kill(pids[k], 9)
        wait_for(lambda: all(roles(c)[k] is None for k in victims), "the killed servers to be gone")
        new_leader = wait_for(lambda: one_leader(c), "a new leader", deadline=30)
        assert new_leader not in victims

        last = {}

        def finished():
            svc = api.describe_services(cluster="default", services=[SERVICE])["services"][0]
            tasks = service_tasks(api, SERVICE)
            last["seen"] = ([(d["status"], d["rolloutState"], d["runningCount"]) for d in svc["deployments"]],
                            [(t["lastStatus"], t["taskDefinitionArn"][-1]) for t in tasks], roles(c))
            done = (len(svc["deployments"]) == 1 and svc["deployments"][0]["rolloutState"] == "COMPLETED"
                    and svc["runningCount"] == DESIRED and len(tasks) == DESIRED
                    and all(t["lastStatus"] == "RUNNING" and t["taskDefinitionArn"] == v2 for t in tasks))
            return tasks if done else None

        try:
            tasks = wait_for(finished, "the deployment to finish on the new leader", deadline=180)
        except AssertionError as e:
            raise AssertionError(f"{e}; last seen: {last.get('seen')}") from None
    # Both agents moved to a live server: still connected, and their tasks report RUNNING.
    instances = api.describe_container_instances(
        cluster="default", containerInstances=api.list_container_instances(cluster="default")["containerInstanceArns"])
    assert [ci["agentConnected"] for ci in instances["containerInstances"]] == [True, True]
    every_v2 = [t for t in service_tasks(api, SERVICE) + service_tasks(api, SERVICE, "STOPPED")
                if t["taskDefinitionArn"] == v2]
    assert len(every_v2) == DESIRED, f"{len(every_v2)} tasks of revision 2 were started (duplicates)"
    assert len({t["taskArn"] for t in tasks}) == DESIRED
    assert max(sampler.alive) <= DESIRED, f"{max(sampler.alive)} tasks alive at once (maximumPercent 100)"

    # `up` brings the killed servers back; every server then answers the same.
    c.up()
    wait_for(lambda: all(h for h in roles(c).values()) and one_leader(c), "three healthy servers, one leader")

    def views():
        seen = set()
        for endpoint in servers.values():
            svc = ecs_at(endpoint).describe_services(cluster="default", services=[SERVICE])["services"][0]
            seen.add((svc["taskDefinition"], svc["runningCount"], tuple(d["id"] for d in svc["deployments"])))
        return seen

    # A restarted server loads the state from etcd and follows it from there.
    wait_for(lambda: len(views()) == 1, "every server to give the same answer", deadline=30)
    assert views() == {(v2, DESIRED, tuple(d["id"] for d in api.describe_services(
        cluster="default", services=[SERVICE])["services"][0]["deployments"]))}


def test_logs_are_read_through_any_server(ha_cluster: Cluster):
    """A log read can only reach an agent through the server it polls; the others relay
    it there (the agents polled the survivor, the restarted servers relay)."""
    c = ha_cluster
    task = service_tasks(ecs_at(c.endpoint), SERVICE)[0]["taskArn"]

    def read_through(endpoint: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN), "logs", task, "--endpoint", endpoint, "--tail", "5"],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **CREDS})

    for s in c.status()["servers"]:
        out = wait_for(lambda s=s: (r := read_through(s["endpoint"])).returncode == 0 and r,
                       f"the task's logs through {s['endpoint']}", deadline=30)
        assert "not connected" not in out.stderr, out.stderr


def test_down_leaves_nothing(ha_cluster: Cluster):
    ha_cluster.cli("down")
    assert not leftovers(ha_cluster)
