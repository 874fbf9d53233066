"""Service Connect on a real 3-node dev cluster: a 3-task httpd service `web` offers its
port mapping `http` as the client alias `web:8080` in the HTTP namespace `sc.test`; a
client service's task (busybox, bridge networking) calls `http://web:8080/` from inside
its own container (its mount and network namespaces: its /etc/hosts, its routes) through
its node's Service Connect proxy, which spreads the calls over web's tasks on every node.
The calls keep succeeding, none failing, through a rolling deploy of `web`. A TCP echo
service whose port mapping has no appProtocol (TCP, as in ECS) is proxied per connection,
also through a deploy.
The tests run in file order on one cluster."""

from __future__ import annotations

import subprocess
import time

import boto3
import pytest

from cluster_support import REGION, Cluster, container_pid, service_tasks, wait_for

NAMESPACE = "sc.test"
STATE: dict[str, str] = {}
# busybox-static's wget crashes with -T (its timeout option): `timeout` bounds it instead.
WGET = ("timeout", "5", "wget", "-q", "-O", "-", "http://web:8080/")


def register_web(c: Cluster, version: int) -> str:
    container = {
        "name": "web",
        "image": "127.0.0.1:5000/httpd:latest",
        "memory": 32,
        "essential": True,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp", "name": "http",
                          "appProtocol": "http"}],
        "environment": [{"name": "VERSION", "value": str(version)}],
        "linuxParameters": {"initProcessEnabled": True},
        "stopTimeout": 5,
    }
    return c.ecs.register_task_definition(family="scweb", networkMode="bridge",
                                          containerDefinitions=[container])["taskDefinition"]["taskDefinitionArn"]


def running(c: Cluster, service: str, taskdef: str | None = None) -> list[dict]:
    return [t for t in service_tasks(c.ecs, service)
            if t["lastStatus"] == "RUNNING" and taskdef in (None, t["taskDefinitionArn"])]


def in_client(c: Cluster, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Runs argv inside the client task's container: its mount and network namespaces."""
    task = running(c, "client")[0]
    node = c.node_of_instance()[task["containerInstanceArn"]]
    pid = container_pid(c, node, task["taskArn"])
    assert pid, "the client task's container is running"
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", "--", *argv],
                          capture_output=True, text=True, timeout=timeout)


def test_1_a_client_task_reaches_web_by_its_alias(cluster: Cluster):
    sd = boto3.client("servicediscovery", endpoint_url=cluster.endpoint, region_name=REGION,
                      aws_access_key_id="dev", aws_secret_access_key="dev")
    op = sd.create_http_namespace(Name=NAMESPACE)["OperationId"]
    wait_for(lambda: sd.get_operation(OperationId=op)["Operation"]["Status"] == "SUCCESS", "the namespace")
    STATE["v1"] = register_web(cluster, 1)
    STATE["v2"] = register_web(cluster, 2)
    web = cluster.ecs.create_service(
        cluster="default", serviceName="web", taskDefinition=STATE["v1"], desiredCount=3,
        serviceConnectConfiguration={"enabled": True, "namespace": NAMESPACE, "services": [
            {"portName": "http", "clientAliases": [{"port": 8080, "dnsName": "web"}]}]},
    )["service"]
    deployment = web["deployments"][0]
    assert deployment["serviceConnectConfiguration"]["namespace"].startswith("arn:aws:servicediscovery:")
    assert deployment["serviceConnectResources"][0]["discoveryName"] == "http"
    client_def = cluster.ecs.register_task_definition(family="scclient", networkMode="bridge", containerDefinitions=[{
        "name": "client", "image": "127.0.0.1:5000/busybox:latest", "memory": 32, "essential": True,
        "command": ["sleep", "100000"], "linuxParameters": {"initProcessEnabled": True}, "stopTimeout": 2,
    }])["taskDefinition"]["taskDefinitionArn"]
    cluster.ecs.create_service(cluster="default", serviceName="client", taskDefinition=client_def,
                               desiredCount=1,
                               serviceConnectConfiguration={"enabled": True, "namespace": NAMESPACE})
    wait_for(lambda: len(running(cluster, "web", STATE["v1"])) == 3 and running(cluster, "client"),
             "3 web tasks and the client running", deadline=120)
    # The client's /etc/hosts names the alias; the call through it answers.
    hosts = in_client(cluster, "cat", "/etc/hosts").stdout
    assert any(line.split()[1:] == ["web"] for line in hosts.splitlines() if line.strip()), hosts
    wait_for(lambda: in_client(cluster, *WGET).stdout.strip()
             == "flotilla httpd ok", "http://web:8080/ from inside the client task", deadline=60)


LOOP = """
ok=0; fail=0
while [ ! -e /tmp/stop ]; do
  if timeout 10 wget -q -O /dev/null http://web:8080/; then ok=$((ok+1)); else fail=$((fail+1)); fi
done
echo "$ok $fail"
"""


def test_2_calls_keep_succeeding_through_a_deploy_of_web(cluster: Cluster):
    task = running(cluster, "client")[0]
    node = cluster.node_of_instance()[task["containerInstanceArn"]]
    pid = container_pid(cluster, node, task["taskArn"])
    in_client(cluster, "rm", "-f", "/tmp/stop")
    loop = subprocess.Popen(["nsenter", "-t", str(pid), "-m", "-n", "--", "sh", "-c", LOOP],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        old = {t["taskArn"] for t in running(cluster, "web")}
        started = time.monotonic()
        cluster.ecs.update_service(cluster="default", service="web", taskDefinition=STATE["v2"])

        def deployed() -> bool:
            tasks = service_tasks(cluster.ecs, "web")
            alive_old = [t for t in tasks if t["taskArn"] in old]
            stopping_old = [t for t in service_tasks(cluster.ecs, "web", "STOPPED")
                            if t["taskArn"] in old and t["lastStatus"] != "STOPPED"]
            return (not alive_old and not stopping_old
                    and len(running(cluster, "web", STATE["v2"])) == 3)

        wait_for(deployed, "web's deploy to finish", deadline=240, interval=0.5)
        took = time.monotonic() - started
    finally:
        in_client(cluster, "touch", "/tmp/stop")
        out, err = loop.communicate(timeout=30)
    ok, failed = (int(x) for x in out.split())
    print(f"\nService Connect through a deploy of web ({took:.0f} s): {ok} calls, {failed} failed")
    assert ok >= 100, f"too few calls went through ({ok}): {err}"
    assert failed == 0, f"{failed} of {ok + failed} calls to http://web:8080/ failed during the deploy"
    # Afterwards the alias serves the new tasks only, still answering.
    assert in_client(cluster, *WGET).stdout.strip() == "flotilla httpd ok"


# A TCP server that is not HTTP: each connection reads one line and answers
# "echo-<VERSION> <line>", then closes (busybox nc forks the script per connection).
ECHO_SERVER = ("printf '#!/bin/sh\\nread line\\necho \"echo-$VERSION $line\"\\n' > /tmp/echo.sh"
               " && chmod +x /tmp/echo.sh && exec nc -ll -p 7000 -e /tmp/echo.sh")


def register_echo(c: Cluster, version: int) -> str:
    container = {
        "name": "echo", "image": "127.0.0.1:5000/busybox:latest", "memory": 32, "essential": True,
        "command": ["sh", "-c", ECHO_SERVER],
        # No appProtocol: ECS's TCP; the node proxy copies each connection's bytes.
        "portMappings": [{"containerPort": 7000, "hostPort": 0, "protocol": "tcp", "name": "echo"}],
        "environment": [{"name": "VERSION", "value": str(version)}],
        "linuxParameters": {"initProcessEnabled": True}, "stopTimeout": 2,
    }
    return c.ecs.register_task_definition(family="scecho", networkMode="bridge",
                                          containerDefinitions=[container])["taskDefinition"]["taskDefinitionArn"]


TCP_LOOP = """
ok=0; fail=0
while [ ! -e /tmp/stop ]; do
  case "$(echo ping | timeout 10 nc echo 7000)" in
    "echo-"[12]" ping") ok=$((ok+1));;
    *) fail=$((fail+1));;
  esac
done
echo "$ok $fail"
"""


def test_3_a_tcp_service_without_app_protocol_is_proxied_per_connection(cluster: Cluster):
    """A port mapping with no appProtocol is TCP (as in ECS): a line protocol that is not
    HTTP goes through the alias both ways, and keeps going through a deploy."""
    v1, v2 = register_echo(cluster, 1), register_echo(cluster, 2)
    cluster.ecs.create_service(
        cluster="default", serviceName="echo", taskDefinition=v1, desiredCount=2,
        serviceConnectConfiguration={"enabled": True, "namespace": NAMESPACE, "services": [
            {"portName": "echo", "clientAliases": [{"port": 7000, "dnsName": "echo"}]}]})
    wait_for(lambda: len(running(cluster, "echo", v1)) == 2, "2 echo tasks running", deadline=120)
    wait_for(lambda: in_client(cluster, "sh", "-c", "echo hello | timeout 5 nc echo 7000").stdout.strip()
             == "echo-1 hello", "echo:7000 from inside the client task", deadline=60)

    task = running(cluster, "client")[0]
    pid = container_pid(cluster, cluster.node_of_instance()[task["containerInstanceArn"]], task["taskArn"])
    in_client(cluster, "rm", "-f", "/tmp/stop")
    loop = subprocess.Popen(["nsenter", "-t", str(pid), "-m", "-n", "--", "sh", "-c", TCP_LOOP],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cluster.ecs.update_service(cluster="default", service="echo", taskDefinition=v2)
        wait_for(lambda: len(running(cluster, "echo", v2)) == 2 and not running(cluster, "echo", v1)
                 and not [t for t in service_tasks(cluster.ecs, "echo", "STOPPED")
                          if t["lastStatus"] != "STOPPED"],
                 "echo's deploy to finish", deadline=240, interval=0.5)
    finally:
        in_client(cluster, "touch", "/tmp/stop")
        out, err = loop.communicate(timeout=30)
    ok, failed = (int(x) for x in out.split())
    print(f"\nService Connect (TCP) through a deploy of echo: {ok} connections, {failed} failed")
    assert ok >= 50, f"too few connections went through ({ok}): {err}"
    assert failed == 0, f"{failed} of {ok + failed} connections to echo:7000 failed during the deploy"
    got = in_client(cluster, "sh", "-c", "echo bye | timeout 5 nc echo 7000").stdout.strip()
    assert got == "echo-2 bye", got


@pytest.fixture(autouse=True, scope="module")
def _cleanup(cluster: Cluster):
    yield
    for s in ("client", "web", "echo"):
        try:
            cluster.ecs.delete_service(cluster="default", service=s, force=True)
        except Exception:  # noqa: BLE001 - best effort before the cluster goes down
            pass
