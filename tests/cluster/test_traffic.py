"""Traffic through a load balancer while flotilla moves tasks, on a real 3-node dev cluster.

A 6-task httpd service (bridge networking, dynamic host ports) sits behind an ALB whose
listener runs in the server process (`flotilla server --lb-listen`, the host side of the
dev cluster) and forwards to an `instance` target group. A bounded load (4 keep-alive
clients for the whole phase, loopback only) runs through the listener while a rolling
deploy, a scale-in 6 -> 3, a node drain, a blue/green deploy (to a second target group,
held by a PAUSE lifecycle hook until ContinueServiceDeployment, production listener rule
switched at once) and a `kill -9` of a node happen. Every phase but the last must see 0
failed requests; the kill may fail only requests in flight to the dead node, and none
once the health checks have removed it. Counts and latencies are printed (pytest -s
shows them). The tests run in file order on one cluster.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field

from cluster_support import CREDS, Cluster, service_tasks, wait_for, register_httpd
from support import free_port

SERVICE = "web"
# Deregistration delay of the target group: a task the service stops takes no new
# requests for this long before it is asked to stop.
DRAIN_SECS = 5
INTERVAL_SECS = 5
STATE: dict[str, str] = {}


def elbv2(c: Cluster, *args: str) -> dict:
    env = {**os.environ, **CREDS, "AWS_ENDPOINT_URL": c.endpoint}
    out = subprocess.run(["aws", "elbv2", *args, "--output", "json"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, f"aws elbv2 {' '.join(args)}: {out.stderr}"
    return json.loads(out.stdout) if out.stdout.strip() else {}


def register_web(c: Cluster, version: int) -> str:
    return register_httpd(c, SERVICE, version)


def target_health(c: Cluster, tg: str | None = None) -> list[dict]:
    return elbv2(c, "describe-target-health", "--target-group-arn", tg or STATE["live"])["TargetHealthDescriptions"]


def healthy_targets(c: Cluster) -> list[dict]:
    return [t for t in target_health(c) if t["TargetHealth"]["State"] == "healthy"]


def steady(c: Cluster, desired: int, taskdef: str) -> bool:
    """One deployment of `desired` RUNNING tasks of `taskdef`, each a healthy target of the
    live group (STATE["live"]), nothing else in it but draining targets."""
    svc = c.ecs.describe_services(cluster="default", services=[SERVICE])["services"][0]
    tasks = service_tasks(c.ecs, SERVICE)
    return (len(svc["deployments"]) == 1 and svc["runningCount"] == desired and len(tasks) == desired
            and all(t["lastStatus"] == "RUNNING" and t["taskDefinitionArn"] == taskdef for t in tasks)
            and len(healthy_targets(c)) == desired
            and all(t["TargetHealth"]["State"] in ("healthy", "draining") for t in target_health(c)))


def health_args() -> list[str]:
    return ["--protocol", "HTTP", "--port", "8080", "--target-type", "instance", "--vpc-id", "vpc-dev",
            "--health-check-path", "/", "--health-check-interval-seconds", str(INTERVAL_SECS),
            "--health-check-timeout-seconds", "2", "--healthy-threshold-count", "2", "--unhealthy-threshold-count", "2"]


def target_group(c: Cluster, name: str) -> str:
    arn = elbv2(c, "create-target-group", "--name", name, *health_args())["TargetGroups"][0]["TargetGroupArn"]
    elbv2(c, "modify-target-group-attributes", "--target-group-arn", arn,
          "--attributes", f"Key=deregistration_delay.timeout_seconds,Value={DRAIN_SECS}")
    return arn


@dataclass
class Load:
    """`clients` threads, each sending GET / over one keep-alive connection to the
    listener for as long as the phase lasts (a failed connection is reopened); every
    answer other than 200 "flotilla httpd ok", and every connection error, is a failure."""
    port: int
    clients: int = 4
    ok: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _client(self) -> None:
        conn = None
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/")
                r = conn.getresponse()
                body = r.read().decode(errors="replace").strip()
                if r.status != 200 or body != "flotilla httpd ok":
                    raise RuntimeError(f"HTTP {r.status}: {body[:80]}")
                with self._lock:
                    self.ok += 1
                    self.latencies_ms.append((time.monotonic() - start) * 1000)
            except Exception as e:  # noqa: BLE001 - every failure is counted
                with self._lock:
                    self.failures.append((time.monotonic(), repr(e)[:160]))
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.05)
        if conn is not None:
            conn.close()

    def __enter__(self) -> "Load":
        for _ in range(self.clients):
            t = threading.Thread(target=self._client, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def report(self, phase: str) -> str:
        lat = sorted(self.latencies_ms) or [0.0]
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
        line = (f"[{phase}] {self.ok} ok, {len(self.failures)} failed; latency p50 {p(0.5):.1f} ms, "
                f"p99 {p(0.99):.1f} ms, max {lat[-1]:.1f} ms")
        print(line)
        return line


def test_1_a_service_behind_a_load_balancer_answers_through_its_listener(cluster: Cluster):
    STATE["port"] = str(free_port())
    lb = elbv2(cluster, "create-load-balancer", "--name", "web")["LoadBalancers"][0]
    STATE["tg"] = STATE["live"] = target_group(cluster, "web")
    listener = elbv2(cluster, "create-listener", "--load-balancer-arn", lb["LoadBalancerArn"], "--protocol", "HTTP",
                     "--port", STATE["port"], "--default-actions", f"Type=forward,TargetGroupArn={STATE['tg']}")
    STATE["listener"] = listener["Listeners"][0]["ListenerArn"]
    STATE["v1"] = register_web(cluster, 1)
    cluster.ecs.create_service(
        cluster="default", serviceName=SERVICE, taskDefinition=STATE["v1"], desiredCount=6,
        placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        loadBalancers=[{"targetGroupArn": STATE["tg"], "containerName": "web", "containerPort": 8080}],
        healthCheckGracePeriodSeconds=30,
        deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200},
    )
    wait_for(lambda: steady(cluster, 6, STATE["v1"]), "6 tasks healthy behind the load balancer", deadline=120)
    svc = cluster.ecs.describe_services(cluster="default", services=[SERVICE])["services"][0]
    assert svc["loadBalancers"] == [{"targetGroupArn": STATE["tg"], "containerName": "web", "containerPort": 8080}]
    # Every target is a node's instance id at the task's host port.
    tasks = service_tasks(cluster.ecs, SERVICE)
    bound = {(b["hostPort"]) for t in tasks for c in t["containers"] for b in c.get("networkBindings") or []}
    assert {t["Target"]["Port"] for t in target_health(cluster)} == bound
    with Load(int(STATE["port"])) as load:
        wait_for(lambda: load.ok >= 200, "200 answers through the listener", deadline=30)
    load.report("steady")
    assert not load.failures, load.failures[:5]


def run_phase(cluster: Cluster, phase: str, change, done, deadline: float = 180) -> Load:
    with Load(int(STATE["port"])) as load:
        wait_for(lambda: load.ok >= 20, "traffic to flow", deadline=30)
        change()
        wait_for(done, f"{phase} to finish", deadline=deadline, interval=0.5)
        # Keep the load on until every drained task has stopped.
        wait_for(lambda: not [t for t in service_tasks(cluster.ecs, SERVICE, "STOPPED") if t["lastStatus"] != "STOPPED"],
                 "stopping tasks to stop", deadline=60, interval=0.5)
    load.report(phase)
    return load


def test_2_a_rolling_deploy_fails_no_request(cluster: Cluster):
    STATE["v2"] = register_web(cluster, 2)
    load = run_phase(
        cluster, "rolling deploy",
        lambda: cluster.ecs.update_service(cluster="default", service=SERVICE, taskDefinition=STATE["v2"]),
        lambda: steady(cluster, 6, STATE["v2"]))
    assert load.ok > 100
    assert not load.failures, load.failures[:5]
    events = " | ".join(e["message"] for e in cluster.ecs.describe_services(cluster="default", services=[SERVICE])["services"][0]["events"])
    assert "has begun draining connections" in events, events


def test_3_a_scale_in_fails_no_request(cluster: Cluster):
    load = run_phase(
        cluster, "scale-in 6 -> 3",
        lambda: cluster.ecs.update_service(cluster="default", service=SERVICE, desiredCount=3),
        lambda: steady(cluster, 3, STATE["v2"]))
    assert not load.failures, load.failures[:5]
    cluster.ecs.update_service(cluster="default", service=SERVICE, desiredCount=6)
    wait_for(lambda: steady(cluster, 6, STATE["v2"]), "6 tasks again", deadline=120)


def test_4_a_node_drain_fails_no_request(cluster: Cluster):
    node1 = next(n for n in cluster.status()["nodes"] if n["index"] == 1)["container_instance_arn"]

    def drained() -> bool:
        tasks = service_tasks(cluster.ecs, SERVICE)
        return steady(cluster, 6, STATE["v2"]) and not [t for t in tasks if t["containerInstanceArn"] == node1]

    load = run_phase(
        cluster, "node drain",
        lambda: cluster.ecs.update_container_instances_state(cluster="default", containerInstances=[node1], status="DRAINING"),
        drained)
    assert not load.failures, load.failures[:5]
    cluster.ecs.update_container_instances_state(cluster="default", containerInstances=[node1], status="ACTIVE")


def test_5_a_blue_green_deploy_paused_by_a_hook_fails_no_request(cluster: Cluster):
    green = target_group(cluster, "web-green")
    rules = elbv2(cluster, "describe-rules", "--listener-arn", STATE["listener"])["Rules"]
    production = next(r["RuleArn"] for r in rules if r["IsDefault"])
    STATE["v3"] = register_web(cluster, 3)

    def live_group() -> str:
        rule = next(r for r in elbv2(cluster, "describe-rules", "--listener-arn", STATE["listener"])["Rules"] if r["IsDefault"])
        groups = rule["Actions"][0]["ForwardConfig"]["TargetGroups"]
        return max(groups, key=lambda g: g.get("Weight", 1))["TargetGroupArn"]

    # A PAUSE hook after test traffic shifted: the deployment waits, production on blue,
    # until ContinueServiceDeployment (boto3, as a user would send it).
    paused: dict[str, str] = {}

    def awaiting_action() -> bool:
        listed = cluster.ecs.list_service_deployments(cluster="default", service=SERVICE,
                                                      status=["IN_PROGRESS"])["serviceDeployments"]
        if not listed:
            return False
        arn = listed[0]["serviceDeploymentArn"]
        d = cluster.ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]
        waiting = [h for h in d.get("lifecycleHookDetails") or [] if h["status"] == "AWAITING_ACTION"]
        if waiting:
            paused.update(arn=arn, hook=waiting[0]["hookId"], stage=d.get("lifecycleStage", ""))
        return bool(waiting)

    def continued_and_switched() -> bool:
        if "continued" not in paused:
            if not awaiting_action():
                return False
            assert paused["stage"] == "POST_TEST_TRAFFIC_SHIFT", paused
            assert live_group() == STATE["tg"], "production stays on blue while the hook holds it"
            cluster.ecs.continue_service_deployment(serviceDeploymentArn=paused["arn"], hookId=paused["hook"],
                                                    action="CONTINUE")
            paused["continued"] = "yes"
        if live_group() != green:
            return False
        STATE["live"] = green
        return steady(cluster, 6, STATE["v3"])

    load = run_phase(
        cluster, "blue/green deploy",
        lambda: cluster.ecs.update_service(
            cluster="default", service=SERVICE, taskDefinition=STATE["v3"],
            loadBalancers=[{"targetGroupArn": STATE["tg"], "containerName": "web", "containerPort": 8080,
                            "advancedConfiguration": {"alternateTargetGroupArn": green, "productionListenerRule": production,
                                                      "roleArn": "arn:aws:iam::123456789012:role/ecsInfrastructure"}}],
            deploymentConfiguration={"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0,
                                     "minimumHealthyPercent": 100, "maximumPercent": 200,
                                     "lifecycleHooks": [{"targetType": "PAUSE",
                                                         "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}]}),
        continued_and_switched)
    assert not load.failures, load.failures[:5]
    assert paused.get("continued"), "the deployment was never seen paused"
    events = " | ".join(e["message"] for e in cluster.ecs.describe_services(cluster="default", services=[SERVICE])["services"][0]["events"])
    assert "production traffic shifted" in events, events
    d = cluster.ecs.describe_service_deployments(serviceDeploymentArns=[paused["arn"]])["serviceDeployments"][0]
    assert d["status"] == "SUCCESSFUL", d
    assert [h["status"] for h in d["lifecycleHookDetails"]] == ["SUCCEEDED"], d["lifecycleHookDetails"]
    # Nothing is left in the blue group once its tasks have drained.
    wait_for(lambda: not target_health(cluster, STATE["tg"]), "the blue group to empty", deadline=60)


def test_6_kill_9_of_a_node_fails_only_requests_in_flight_to_it(cluster: Cluster):
    node = next(n for n in cluster.status()["nodes"] if n["index"] == 2)
    on_node = [t for t in service_tasks(cluster.ecs, SERVICE) if t["containerInstanceArn"] == node["container_instance_arn"]]
    assert on_node, "node 2 runs none of the service's tasks"
    with Load(int(STATE["port"])) as load:
        wait_for(lambda: load.ok >= 20, "traffic to flow", deadline=30)
        killed_at = time.monotonic()
        cluster.crash_node(2)
        # The health checks find the dead targets unhealthy within
        # unhealthy_threshold x interval (+ a check's timeout).
        removed_by = killed_at + 2 * INTERVAL_SECS + 2 + 1
        wait_for(lambda: time.monotonic() > removed_by + 5 and load.ok > 0, "traffic after the kill", deadline=60)
    load.report("kill -9 of node 2")
    late = [f for f in load.failures if f[0] > removed_by]
    print(f"[kill -9 of node 2] {len(load.failures)} failed in all, {len(late)} after the health checks removed it")
    assert len(load.failures) <= load.clients, load.failures[:5]
    assert not late, late[:5]
    # The node comes back (as after a reboot) for whatever runs next.
    cluster.up()
