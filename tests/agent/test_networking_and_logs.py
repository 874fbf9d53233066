"""Task networking and `flotilla logs` on the real agent and containerd.

Networking: `bridge` tasks get their own namespace on the node's `flotilla0` bridge and
their placed host ports DNAT'd to them (reachable on 127.0.0.1:hostPort from the node);
a host port something else holds fails the task with a reason naming the port; `awsvpc`
tasks are reached at their own address, shown as an ElasticNetworkInterface attachment;
`none` tasks have loopback only.

Logs: `flotilla logs TASK` prints a task's output through the control plane (which asks
the node's agent over the agent's own poll), `--tail` limits it, `--follow` streams new
lines until the task stops, and a missing task is a one-line error with exit code != 0.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request

from support import BIN, wait_for
from test_agent_containerd import BUSYBOX, container, describe, register, run, wait_running, wait_stopped

HTTPD = "127.0.0.1:5000/httpd:latest"


def http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode().strip()
    except OSError:
        return None


def host_port(task: dict, container_port: int = 8080) -> int:
    [binding] = [b for b in container(task, "web").get("networkBindings", []) if b["containerPort"] == container_port]
    return binding["hostPort"]


def test_bridge_tasks_are_reached_on_their_dynamic_host_ports(ecs, agent):
    register(ecs, "bridge-web", [{"name": "web", "image": HTTPD, "memory": 32,
                                  "portMappings": [{"containerPort": 8080, "hostPort": 0}]}], networkMode="bridge")
    arns = run(ecs, "bridge-web", count=2)
    tasks = wait_running(ecs, arns)
    ports = [host_port(t) for t in tasks]
    assert len(set(ports)) == 2 and all(p >= 1024 for p in ports), ports
    for p in ports:
        assert wait_for(lambda p=p: http_get(f"http://127.0.0.1:{p}/"), f"port {p} to answer", deadline=15) == "flotilla httpd ok"
    ecs.stop_task(cluster="default", task=arns[0], reason="networking test")
    wait_stopped(ecs, [arns[0]])
    # The stopped task's port is unpublished; the other one still answers.
    wait_for(lambda: http_get(f"http://127.0.0.1:{ports[0]}/") is None, "the stopped task's port to close", deadline=10)
    assert http_get(f"http://127.0.0.1:{ports[1]}/") == "flotilla httpd ok"
    ecs.stop_task(cluster="default", task=arns[1])
    wait_stopped(ecs, [arns[1]])


def test_a_host_port_already_taken_fails_the_task_with_its_number(ecs, agent):
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        register(ecs, "taken-port", [{"name": "web", "image": HTTPD, "memory": 32,
                                      "portMappings": [{"containerPort": 8080, "hostPort": port}]}], networkMode="bridge")
        [arn] = run(ecs, "taken-port")
        [t] = wait_stopped(ecs, [arn])
    assert t["stopCode"] == "TaskFailedToStart", t
    assert f"host port {port}/tcp is already in use" in t["stoppedReason"], t["stoppedReason"]
    # The node keeps working: the same port is free now and a new task publishes it.
    [arn] = run(ecs, "taken-port")
    [t] = wait_running(ecs, [arn])
    assert wait_for(lambda: http_get(f"http://127.0.0.1:{port}/"), "the static port to answer", deadline=15) == "flotilla httpd ok"
    ecs.stop_task(cluster="default", task=arn)
    wait_stopped(ecs, [arn])


def test_awsvpc_tasks_get_their_own_address(ecs, agent):
    register(ecs, "vpc-web", [{"name": "web", "image": HTTPD, "memory": 32,
                               "portMappings": [{"containerPort": 8080}]}], networkMode="awsvpc")
    arns = run(ecs, "vpc-web", count=2)
    wait_running(ecs, arns)

    def addresses():
        ips = []
        for t in describe(ecs, arns):
            eni = [a for a in t.get("attachments", []) if a["type"] == "ElasticNetworkInterface"]
            details = {d["name"]: d["value"] for d in eni[0]["details"]} if eni else {}
            ip = details.get("privateIPv4Address")
            if not ip or eni[0]["status"] != "ATTACHED":
                return None
            assert container(t, "web")["networkInterfaces"][0]["privateIpv4Address"] == ip
            ips.append(ip)
        return ips

    ips = wait_for(addresses, "both tasks' ENI attachments", deadline=15)
    assert len(set(ips)) == 2, ips
    for ip in ips:
        assert ip.startswith("172.31."), ip
        assert wait_for(lambda ip=ip: http_get(f"http://{ip}:8080/"), f"{ip}:8080 to answer", deadline=15) == "flotilla httpd ok"
    for arn in arns:
        ecs.stop_task(cluster="default", task=arn)
    wait_stopped(ecs, arns)


def test_none_mode_has_loopback_only(ecs, agent):
    register(ecs, "no-net", [{"name": "main", "image": BUSYBOX, "memory": 32,
                              "command": ["sh", "-c", "ls /sys/class/net | tr '\\n' ' '; echo; ip -4 addr | grep -c inet"]}],
             networkMode="none")
    [arn] = run(ecs, "no-net")
    [t] = wait_stopped(ecs, [arn])
    assert container(t, "main")["exitCode"] == 0, t
    out = flotilla_logs(agent, arn).stdout.split()
    assert out == ["lo", "1"], out


def flotilla_logs(agent, arn: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t", AWS_DEFAULT_REGION="us-east-1")
    endpoint = agent.args[agent.args.index("--endpoint") + 1]
    return subprocess.run([str(BIN), "logs", arn, "--endpoint", endpoint, *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_logs_print_a_tasks_output_and_tail_limits_it(ecs, agent):
    register(ecs, "talker", [{"name": "main", "image": BUSYBOX, "memory": 32,
                              "command": ["sh", "-c", "echo oops >&2; sleep 1; for i in 1 2 3 4 5; do echo line-$i; done"]}])
    [arn] = run(ecs, "talker")
    wait_stopped(ecs, [arn])
    out = flotilla_logs(agent, arn)
    assert out.returncode == 0, out.stderr
    # Each record goes back to the stream it was written to.
    assert out.stdout.split() == ["line-1", "line-2", "line-3", "line-4", "line-5"], out.stdout
    assert out.stderr.split() == ["oops"], out.stderr
    # The tail counts records of both streams, in the order they were written (stdout
    # and stderr are separate pipes, so the task writes its stderr line well before).
    out = flotilla_logs(agent, arn, "--tail", "2")
    assert (out.stdout.split(), out.stderr.split()) == (["line-4", "line-5"], []), out
    out = flotilla_logs(agent, arn, "--tail", "6")
    assert (out.stdout.split(), out.stderr.split()) == ([f"line-{i}" for i in range(1, 6)], ["oops"]), out


def test_logs_follow_streams_until_the_task_stops(ecs, agent):
    register(ecs, "ticker", [{"name": "main", "image": BUSYBOX, "memory": 32,
                              "command": ["sh", "-c", "for i in $(seq 1 8); do echo tick-$i; sleep 0.5; done"]}])
    [arn] = run(ecs, "ticker")
    wait_running(ecs, [arn])
    started = time.monotonic()
    p = subprocess.Popen([str(BIN), "logs", arn, "--follow", "--endpoint", agent.args[agent.args.index("--endpoint") + 1]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t", AWS_DEFAULT_REGION="us-east-1"))
    first = p.stdout.readline().strip()
    # The first line arrives while the task still runs (streamed, not printed at the end).
    assert first.startswith("tick-"), first
    assert describe(ecs, [arn])[0]["lastStatus"] == "RUNNING"
    # (Not communicate(): it reads the raw pipe and would miss what readline buffered.)
    rest = p.stdout.read()
    assert p.wait(timeout=60) == 0, p.stderr.read()
    lines = [first] + rest.split()
    assert lines == [f"tick-{i}" for i in range(int(first.split('-')[1]), 9)], lines
    assert describe(ecs, [arn])[0]["lastStatus"] == "STOPPED"
    assert time.monotonic() - started < 60


def test_logs_of_a_missing_task_is_a_one_line_error(ecs, agent):
    out = flotilla_logs(agent, "0123456789abcdef0123456789abcdef")
    assert out.returncode != 0
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "not found" in out.stderr.lower() or "InvalidParameter" in out.stderr, out.stderr
