"""Helpers of the dev-cluster tests: the `flotilla dev cluster` CLI, what a cluster leaves
on the host, per-node task counts, HTTP checks, and a background sampler of task counts.
Polls with deadlines, never sleeps as synchronisation."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3

import support
from support import BIN, REPO as ROOT

REGION = "us-east-1"
CREDS = {"AWS_ACCESS_KEY_ID": "dev", "AWS_SECRET_ACCESS_KEY": "dev", "AWS_DEFAULT_REGION": REGION}

def dev_cluster(name: str, dir_prefix: str, *up_args: str):
    """A module fixture's body: brings a dev cluster up (`name` + this process's id, under
    `/tmp/<dir_prefix>-<pid>`) after building the test images, yields it, then takes it
    down and checks that nothing of it is left on the host. Needs root."""
    support.need_root_and_binaries("the dev cluster needs root (network namespaces, containerd, cgroups)")
    subprocess.run([str(ROOT / "scripts/build-test-images.sh")], check=True, capture_output=True)
    c = Cluster(name=f"{name}{os.getpid() % 100000}", dir=f"/tmp/{dir_prefix}-{os.getpid()}")
    c.up(*up_args)
    yield c
    # Whatever the tests did, leave nothing behind (down is idempotent).
    c.cli("down", check=False)
    left = leftovers(c)
    assert not left, f"dev cluster down left: {left}"


# A dev cluster is slow to move: a minute by default, a failed probe (a node's port not
# answering yet) is "not yet".
wait_for = functools.partial(support.wait_for, deadline=60.0, interval=0.25, retry_errors=True)


@dataclass
class Cluster:
    name: str
    dir: str
    endpoint: str = ""
    _ecs: object = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(BIN), "dev", "cluster", *args, "--name", self.name, "--dir", self.dir]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def up(self, *args: str) -> subprocess.CompletedProcess:
        out = self.cli("up", *args)
        self.endpoint = self.status()["endpoint"]
        return out

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json").stdout)

    @property
    def ecs(self):
        if self._ecs is None:
            self._ecs = boto3.client("ecs", endpoint_url=self.endpoint, region_name=REGION,
                                     aws_access_key_id="dev", aws_secret_access_key="dev")
        return self._ecs

    def aws(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        env = {**os.environ, **CREDS, "AWS_ENDPOINT_URL_ECS": self.endpoint}
        return subprocess.run(["aws", "ecs", *args], capture_output=True, text=True, env=env, timeout=timeout)

    def node_of_instance(self) -> dict[str, int]:
        """container instance ARN -> node number."""
        return {n["container_instance_arn"]: n["index"] for n in self.status()["nodes"] if n["container_instance_arn"]}

    def node_pids(self, i: int) -> set[int]:
        """Every process of node i: its network namespace's and its cgroups' (the test
        finds them itself rather than trusting the code under test)."""
        ns = f"flotilla-{self.name}-{i}"
        pids = set(int(p) for p in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split())
        for mount in cgroup_mounts():
            root = Path(mount) / f"flotilla-dev-{self.name}-{i}"
            for procs in root.rglob("cgroup.procs") if root.exists() else []:
                pids.update(int(p) for p in procs.read_text().split())
        return pids

    def crash_node(self, i: int) -> None:
        """kill -9 node i's agent, containerd, shims and containers: a dead machine."""
        end = time.monotonic() + 15
        while pids := self.node_pids(i):
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            assert time.monotonic() < end, f"node {i} processes survive kill -9: {pids}"
            time.sleep(0.05)


def cgroup_mounts() -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            out.append(fields[4])
    return out


def leftovers(c: Cluster) -> list[str]:
    """Everything of cluster `c` still on the host."""
    left = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"netns {l.split()[0]}" for l in netns.splitlines() if l.startswith(f"flotilla-{c.name}-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left += [f"link {m}" for m in re.findall(rf"\d+: (fld-{c.name}[^:@]*)", links)]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    left += [f"nft {t}" for t in tables.splitlines() if f"flotilla_dev_{c.name}" in t]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if c.dir in cmd and state != "Z":
                left.append(f"process {pid} {cmd[:120]}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split(" ")[4].startswith(c.dir):
            left.append(f"mount {line.split(' ')[4]}")
    for mount in cgroup_mounts():
        for i in range(1, 10):
            if (Path(mount) / f"flotilla-dev-{c.name}-{i}").exists():
                left.append(f"cgroup {mount}/flotilla-dev-{c.name}-{i}")
    if Path(c.dir).exists():
        left.append(f"dir {c.dir}")
    if Path(f"/run/flotilla-dev-clusters/{c.name}").exists():
        left.append("pointer file")
    return left


def describe_all(ecs, arns: list[str]) -> list[dict]:
    out = []
    for k in range(0, len(arns), 100):
        out += ecs.describe_tasks(cluster="default", tasks=arns[k:k + 100])["tasks"]
    return out


def service_tasks(ecs, service: str, desired: str = "RUNNING") -> list[dict]:
    arns = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster="default", serviceName=service, desiredStatus=desired):
        arns += page["taskArns"]
    return describe_all(ecs, arns)


def per_node(c: Cluster, tasks: list[dict]) -> dict[int, int]:
    nodes = c.node_of_instance()
    counts = {n: 0 for n in nodes.values()}
    for t in tasks:
        counts[nodes[t["containerInstanceArn"]]] += 1
    return counts


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=3) as r:  # noqa: S310 - test-only URL
        return r.read().decode()


@dataclass
class Sampler:
    """Samples a service's tasks in the background: running (desired and last status
    RUNNING) and alive (not yet STOPPED) counts. Failed samples (server down) are skipped."""
    ecs: object
    service: str
    running: list[int] = field(default_factory=list)
    alive: list[int] = field(default_factory=list)
    seen_on: list[tuple[str, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        wanted = service_tasks(self.ecs, self.service, "RUNNING")
        stopping = service_tasks(self.ecs, self.service, "STOPPED")
        self.running.append(sum(1 for t in wanted if t["lastStatus"] == "RUNNING"))
        # Two listings, one after the other: a task stopped in between is in both.
        latest = {t["taskArn"]: t for t in wanted + stopping}
        self.alive.append(sum(1 for t in latest.values() if t["lastStatus"] != "STOPPED"))
        self.seen_on += [(t["taskArn"], t["containerInstanceArn"], t["lastStatus"]) for t in wanted]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - the server may be down on purpose
                pass
            self._stop.wait(0.2)

    def __enter__(self) -> "Sampler":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


def container_pid(c: Cluster, node: int, task_arn: str) -> int | None:
    """The pid of the task's first container, from the node's own containerd."""
    sock = f"{c.dir}/nodes/{node}/containerd/containerd.sock"
    out = subprocess.run(["ctr", "--address", sock, "-n", "flotilla", "tasks", "ls"], capture_output=True, text=True).stdout
    task_id = task_arn.rsplit("/", 1)[1]
    for line in out.splitlines()[1:]:
        cid, pid, status = line.split()[:3]
        if cid.startswith(task_id + "-") and status == "RUNNING":
            return int(pid)
    return None


def host_port_url(c: Cluster, task: dict) -> str | None:
    """http://<node-ip>:<hostPort>/ of the task's 8080 binding, when the agent reports one."""
    node = c.node_of_instance()[task["containerInstanceArn"]]
    ip = next(n["ip"] for n in c.status()["nodes"] if n["index"] == node)
    for container in task["containers"]:
        for b in container.get("networkBindings") or []:
            if b.get("containerPort") == 8080 and b.get("hostPort"):
                return f"http://{ip}:{b['hostPort']}/"
    return None


def task_answers(c: Cluster, task: dict, require_host_port: bool) -> bool:
    """The task's httpd answers "flotilla httpd ok": from the host on its node's address
    and reported host port when `require_host_port` (bridge networking forwards it), else
    inside the task's own network namespace on 127.0.0.1:8080."""
    if require_host_port:
        url = host_port_url(c, task)
        assert url, f"task {task['taskArn']} reports no host port binding for 8080"
        return http_get(url).strip() == "flotilla httpd ok"
    node = c.node_of_instance()[task["containerInstanceArn"]]
    pid = container_pid(c, node, task["taskArn"])
    if pid is None:
        return False
    out = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "curl", "-fsS", "-m", "3", "http://127.0.0.1:8080/"],
                         capture_output=True, text=True)
    return out.stdout.strip() == "flotilla httpd ok"


def register_httpd(c: Cluster, family: str, version: int, health_check: bool = False) -> str:
    """A revision of `family`: the test httpd (answers "flotilla httpd ok" on 8080, bridge
    networking, a dynamic host port), `VERSION` set to `version`, a 5 s stop timeout, and
    with `health_check` a container health check on that port."""
    container = {
        "name": "web",
        "image": "127.0.0.1:5000/httpd:latest",
        "memory": 32,
        "essential": True,
        "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
        "environment": [{"name": "VERSION", "value": str(version)}],
        "linuxParameters": {"initProcessEnabled": True},
        "stopTimeout": 5,
    }
    if health_check:
        container["healthCheck"] = {
            "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1"],
            "interval": 5, "timeout": 3, "retries": 2, "startPeriod": 0,
        }
    return c.ecs.register_task_definition(family=family, networkMode="bridge", containerDefinitions=[container],
                                          )["taskDefinition"]["taskDefinitionArn"]
