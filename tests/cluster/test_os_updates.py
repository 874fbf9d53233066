"""Nodes booted by the host layer, updated by the rolling OS updater, on a real 3-node
`flotilla dev cluster up --os-repo` (each node: `flotilla host boot` from a node image in
slot A, its agent started from the slot's own binary, its host API reached by the control
plane over the agent's connection).

In file order, on one cluster booted from 1.0.0 with a 6-task service:
1. publish 1.1.0; a standalone task on node 3 makes the updater skip that node; every other
   node moves to 1.1.0 while the service never drops below its minimum healthy percent;
   once the standalone task is gone, node 3 follows;
2. publish 1.2.0 whose agent cannot join: the first node tried falls back to 1.1.0 by
   itself, the updater halts naming it and why, the other nodes stay on 1.1.0; pulling
   1.2.0 (`--max-version 1.1.0`) and resuming finishes with nothing left to update;
3. publish 1.3.0 in waves: the nodes whose seed is in a wave not open yet are left alone.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from cluster_support import BIN, CREDS, Cluster, Sampler, leftovers, service_tasks, wait_for
from support import need_root_and_binaries, run_checked

SERVICE = "web"
DESIRED = 6
MIN_HEALTHY_PERCENT = 100

# The node image's own agent and the boot health check: registered, connected, on this
# slot's version (docs/updater.md).
GOOD_NODE = """
[agent]
command = ["{slot}/bin/flotilla", "agent"]

[health]
command = ["{slot}/bin/flotilla", "host", "probe-registered", "--socket", "{socket}", "--slot", "{slot}", "--instance-id", "{node-id}"]
timeout-secs = 60
"""
# A release whose agent never starts: the node cannot join, the boot health check fails.
BAD_NODE = """
[agent]
command = ["/bin/false"]

[health]
command = ["{slot}/bin/flotilla", "host", "probe-registered", "--socket", "{socket}", "--slot", "{slot}", "--instance-id", "{node-id}"]
timeout-secs = 15
"""


class Releases:
    """A TUF repository and its keys; builds and publishes node images."""

    def __init__(self, work: Path):
        self.work = work
        self.repo = work / "repo"
        keys = work / "keys"
        run_checked([BIN, "os", "keygen", "--out", keys])
        self.root = keys / "root.json"
        self.key = keys / "key-1.pk8"

    def publish(self, version: str, meta: str = GOOD_NODE, *extra: str) -> None:
        meta_file = self.work / f"node-{version}.toml"
        meta_file.write_text(meta)
        image = self.work / f"node-{version}.tar.gz"
        run_checked([BIN, "os", "build-image", "--version", version, "--out", image,
                     "--meta", meta_file, "--root-json", self.root])
        self.republish("--image", str(image), *extra)

    def republish(self, *args: str) -> None:
        run_checked([BIN, "os", "publish", "--repo", self.repo, "--root", self.root, "--key", self.key, *args])


@pytest.fixture(scope="module")
def os_cluster():
    need_root_and_binaries("the dev cluster needs root (network namespaces, containerd, cgroups)")
    subprocess.run([str(Path(__file__).parents[2] / "scripts/build-test-images.sh")], check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="flotilla-os-test-") as work:
        releases = Releases(Path(work))
        releases.publish("1.0.0")
        c = Cluster(name=f"os{os.getpid() % 100000}", dir=f"/tmp/flotilla-os-cluster-{os.getpid()}")
        c.up("--nodes", "3", "--port", "8097", "--agent-timeout", "25s", "--instance-lost-after", "25s",
             "--os-repo", str(releases.repo))
        c.releases = releases
        yield c
        c.cli("down", check=False)
        left = leftovers(c)
        assert not left, f"dev cluster down left: {left}"


def node_os(c: Cluster, i: int) -> str:
    """`apiclient -u /os` on node i: the version its host layer booted."""
    out = subprocess.run([str(BIN), "apiclient", "-s", f"{c.dir}/nodes/{i}/api.sock", "-u", "/os"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["version_id"]


def instances(c: Cluster) -> dict[int, dict]:
    """node number -> its container instance."""
    by_arn = c.node_of_instance()
    described = c.ecs.describe_container_instances(cluster="default", containerInstances=list(by_arn))
    return {by_arn[ci["containerInstanceArn"]]: ci for ci in described["containerInstances"]}


def attribute(ci: dict, name: str) -> str | None:
    return next((a.get("value") for a in ci["attributes"] if a["name"] == name), None)


def updater(c: Cluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **CREDS, "NO_COLOR": "1"}
    return subprocess.run([str(BIN), "updater", *args, "--endpoint", c.endpoint, "--cluster", "default"],
                          capture_output=True, text=True, env=env, timeout=timeout)


def every_node_on(c: Cluster, version: str) -> bool:
    cis = instances(c)
    return all(node_os(c, i) == version and attribute(cis[i], "flotilla.os-version") == version
               and cis[i]["status"] == "ACTIVE" and cis[i]["agentConnected"] for i in (1, 2, 3))


def test_nodes_boot_through_the_host_layer(os_cluster: Cluster):
    c = os_cluster
    assert every_node_on(c, "1.0.0")
    # The agents were started by the host layer from slot A's own binary.
    for i in (1, 2, 3):
        flags = json.loads(subprocess.run([str(BIN), "host", "flags", "--node-root", f"{c.dir}/nodes/{i}/host"],
                                          check=True, capture_output=True, text=True).stdout)
        assert flags["active"] == "a" and flags["a"]["successful"], flags
        assert (Path(c.dir) / f"nodes/{i}/host/run/boot-successful").exists()


def test_rolling_update_skips_standalone_tasks_and_keeps_the_service_healthy(os_cluster: Cluster):
    c = os_cluster
    c.ecs.register_task_definition(family=SERVICE, containerDefinitions=[{
        "name": "app", "image": "127.0.0.1:5000/busybox:latest", "memory": 32,
        "command": ["sleep", "3600"], "stopTimeout": 2}])
    c.ecs.create_service(cluster="default", serviceName=SERVICE, taskDefinition=SERVICE, desiredCount=DESIRED,
                         deploymentConfiguration={"minimumHealthyPercent": MIN_HEALTHY_PERCENT,
                                                  "maximumPercent": 200},
                         placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}])
    c.ecs.get_waiter("services_stable").wait(cluster="default", services=[SERVICE],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    # A standalone task on node 3: the default policy leaves that node for later.
    node3 = next(arn for arn, i in c.node_of_instance().items() if i == 3)
    standalone = c.ecs.start_task(cluster="default", taskDefinition=SERVICE, containerInstances=[node3])["tasks"][0]
    wait_for(lambda: c.ecs.describe_tasks(cluster="default", tasks=[standalone["taskArn"]])["tasks"][0]["lastStatus"]
             == "RUNNING", "the standalone task to run")

    c.releases.publish("1.1.0")
    plan = updater(c, "run", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "1.1.0" in plan.stdout, plan.stdout

    with Sampler(c.ecs, SERVICE) as sampler:
        first = updater(c, "run", "--once")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "skipped" in first.stdout and "i-flotilla" in first.stdout, first.stdout
    versions = {i: node_os(c, i) for i in (1, 2, 3)}
    assert versions == {1: "1.1.0", 2: "1.1.0", 3: "1.0.0"}, versions
    assert sampler.running, "the sampler saw the service"
    floor = DESIRED * MIN_HEALTHY_PERCENT // 100
    assert min(sampler.running) >= floor, f"running tasks dropped to {min(sampler.running)} (< {floor})"
    # The standalone task was never touched.
    t = c.ecs.describe_tasks(cluster="default", tasks=[standalone["taskArn"]])["tasks"][0]
    assert t["lastStatus"] == "RUNNING" and t["containerInstanceArn"] == node3

    c.ecs.stop_task(cluster="default", task=standalone["taskArn"], reason="done")
    wait_for(lambda: c.ecs.describe_tasks(cluster="default", tasks=[standalone["taskArn"]])["tasks"][0]["lastStatus"]
             == "STOPPED", "the standalone task to stop")
    with Sampler(c.ecs, SERVICE) as sampler:
        second = updater(c, "run", "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    assert every_node_on(c, "1.1.0"), {i: node_os(c, i) for i in (1, 2, 3)}
    assert min(sampler.running) >= floor, f"running tasks dropped to {min(sampler.running)} (< {floor})"
    svc = c.ecs.describe_services(cluster="default", services=[SERVICE])["services"][0]
    assert svc["runningCount"] == DESIRED and len(service_tasks(c.ecs, SERVICE)) == DESIRED
    # Every step is an event a user can read later.
    status = updater(c, "status")
    assert status.returncode == 0, status.stderr
    for step in ("drain", "apply", "reboot", "activate", "skip"):
        assert step in status.stdout, status.stdout


def test_a_release_that_cannot_join_falls_back_and_halts_the_updater(os_cluster: Cluster):
    c = os_cluster
    c.releases.publish("1.2.0", BAD_NODE)
    halted = updater(c, "run", "--once")
    assert halted.returncode != 0, halted.stdout + halted.stderr
    reason = halted.stderr.strip().splitlines()[-1]
    assert "halted on node i-flotilla" in reason and "fell back to 1.1.0" in reason, reason
    # The failed node is back on its working slot by itself; nobody else moved.
    assert every_node_on(c, "1.1.0"), {i: node_os(c, i) for i in (1, 2, 3)}
    status = updater(c, "status")
    assert "fell back to 1.1.0" in status.stdout, status.stdout
    # While halted, nothing starts.
    again = updater(c, "run", "--once")
    assert again.returncode != 0 and "halted" in again.stderr, again.stdout + again.stderr

    # Pull 1.2.0 and resume: nothing is left to update.
    c.releases.republish("--max-version", "1.1.0")
    resumed = updater(c, "resume")
    assert resumed.returncode == 0, resumed.stderr
    done = updater(c, "run", "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    assert every_node_on(c, "1.1.0")
    svc = c.ecs.describe_services(cluster="default", services=[SERVICE])["services"][0]
    assert svc["runningCount"] == DESIRED


def test_nodes_outside_the_open_wave_are_not_updated_yet(os_cluster: Cluster):
    c = os_cluster
    # Nodes 1 and 2 sit before the first wave (their update is due at once); node 3's
    # seed falls in a wave that opens in 10 to 20 days.
    for i, seed in ((1, 10), (2, 20), (3, 1500)):
        subprocess.run([str(BIN), "apiclient", "-s", f"{c.dir}/nodes/{i}/api.sock", "set", f"updates.seed={seed}"],
                       check=True, capture_output=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    at = lambda days: (now + datetime.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    c.releases.publish("1.3.0", GOOD_NODE, "--wave", f"1000={at(10)}", "--wave", f"2000={at(20)}")
    plan = updater(c, "run", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    done = updater(c, "run", "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    versions = {i: node_os(c, i) for i in (1, 2, 3)}
    assert versions == {1: "1.3.0", 2: "1.3.0", 3: "1.1.0"}, versions
    # Node 3 itself says there is nothing for it yet.
    status = json.loads(subprocess.run([str(BIN), "apiclient", "-s", f"{c.dir}/nodes/3/api.sock", "update", "check"],
                                       check=True, capture_output=True, text=True).stdout)
    assert status["update_state"] == "Idle" and not status.get("chosen_update"), status
    svc = c.ecs.describe_services(cluster="default", services=[SERVICE])["services"][0]
    assert svc["runningCount"] == DESIRED


def test_the_updater_runs_as_an_ecs_service_and_survives_draining_its_own_node(os_cluster: Cluster):
    """The updater as a one-task ECS service (host networking; the flotilla binary and the
    libraries it links bind-mounted from the host). Its state lives in the control plane,
    so when it drains the node it runs on, its replacement on another node carries on."""
    c = os_cluster
    updater_family = "os-updater"
    env = [{"name": k, "value": v} for k, v in CREDS.items()]
    c.ecs.register_task_definition(
        family=updater_family, networkMode="host",
        volumes=[{"name": "bin", "host": {"sourcePath": str(BIN.parent)}},
                 {"name": "lib", "host": {"sourcePath": "/lib/x86_64-linux-gnu"}},
                 {"name": "lib64", "host": {"sourcePath": "/lib64"}}],
        containerDefinitions=[{
            "name": "updater", "image": "127.0.0.1:5000/busybox:latest", "memory": 128, "stopTimeout": 10,
            "command": [f"/opt/flotilla/{BIN.name}", "updater", "run", "--endpoint", c.endpoint,
                        "--cluster", "default", "--interval", "5"],
            "environment": env,
            "mountPoints": [{"sourceVolume": "bin", "containerPath": "/opt/flotilla", "readOnly": True},
                            {"sourceVolume": "lib", "containerPath": "/lib/x86_64-linux-gnu", "readOnly": True},
                            {"sourceVolume": "lib64", "containerPath": "/lib64", "readOnly": True}]}])
    c.ecs.create_service(cluster="default", serviceName=updater_family, taskDefinition=updater_family,
                         desiredCount=1)
    c.ecs.get_waiter("services_stable").wait(cluster="default", services=[updater_family],
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    first_node = service_tasks(c.ecs, updater_family)[0]["containerInstanceArn"]
    # The updater holds the cluster's state (a CLI `run` would wait for its lease).
    wait_for(lambda: "is running (lease until" in updater(c, "status").stdout, "the service's updater to take the lease",
             deadline=60, interval=1)

    with Sampler(c.ecs, SERVICE) as sampler:
        c.releases.publish("1.4.0")
        wait_for(lambda: every_node_on(c, "1.4.0"), "every node on 1.4.0, updated by the in-cluster updater",
                 deadline=600, interval=2, retry_errors=True)
    floor = DESIRED * MIN_HEALTHY_PERCENT // 100
    assert min(sampler.running) >= floor, f"running tasks dropped to {min(sampler.running)} (< {floor})"

    # Its first node was updated too, so the updater was moved off it at least once, and a
    # second copy carried on from the stored state.
    stopped = service_tasks(c.ecs, updater_family, desired="STOPPED")
    assert any(t["containerInstanceArn"] == first_node for t in stopped), stopped
    # A node shows 1.4.0 once it is ACTIVE again; the updater records it as updated in its
    # next step, so the third record may come a moment after `every_node_on`.
    def all_three_recorded():
        out = updater(c, "status", "--events", "200")
        return out if out.returncode == 0 and out.stdout.count("updated to 1.4.0") >= 3 else None

    status = wait_for(all_three_recorded, "the updater to record all three nodes updated to 1.4.0",
                      deadline=60, interval=1)
    holders = {line.split("updater ", 1)[1].split(" started", 1)[0]
               for line in status.stdout.splitlines() if " started for cluster default" in line}
    assert len(holders) >= 2, status.stdout

    c.ecs.update_service(cluster="default", service=updater_family, desiredCount=0)
    c.ecs.delete_service(cluster="default", service=updater_family)
    # The stopped updater gave its lease up.
    wait_for(lambda: "no updater is running" in updater(c, "status").stdout, "the lease to be given up",
             deadline=60, interval=1)
