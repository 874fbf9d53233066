"""Fixtures for the node-agent end-to-end tests: a private containerd, the local
registry with test images (scripts/build-test-images.sh), `flotilla server` and
`flotilla agent` as real processes, and a boto3 client. Needs root (CI runs as root).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest

from support import BIN, REPO as ROOT, free_port, healthz, need_root_and_binaries, wait_for


def _ctr(sock: str, *args: str) -> str:
    return subprocess.run(["ctr", "--address", sock, "-n", "flotilla", *args], capture_output=True, text=True).stdout


def _teardown_containerd(base: Path, sock: str) -> None:
    """Kills every container, stops containerd and unmounts what its shims left."""
    for task in _ctr(sock, "tasks", "ls", "-q").split():
        _ctr(sock, "tasks", "kill", "-s", "SIGKILL", task)
    deadline = time.monotonic() + 10
    while _ctr(sock, "tasks", "ls", "-q").split() and time.monotonic() < deadline:
        for task in _ctr(sock, "tasks", "ls", "-q").split():
            _ctr(sock, "tasks", "rm", "-f", task)
        time.sleep(0.1)
    for c in _ctr(sock, "containers", "ls", "-q").split():
        _ctr(sock, "containers", "rm", c)
    pid_file = base / "containerd.pid"
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not Path(f"/proc/{pid}").exists(), "containerd to exit", deadline=10)
        except (ProcessLookupError, ValueError):
            pass
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if str(base) in line.split()[1]]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def containerd():
    need_root_and_binaries("the agent tests need root (containerd, runc, cgroups)")
    # Outside pytest's tmp dirs: those are deleted while shims may still hold mounts.
    base = Path(f"/tmp/flotilla-e2e-containerd-{os.getpid()}")
    out = subprocess.run([str(ROOT / "scripts/start-containerd.sh"), str(base)], check=True, capture_output=True, text=True)
    sock = out.stdout.strip().splitlines()[-1]
    subprocess.run([str(ROOT / "scripts/build-test-images.sh")], check=True, capture_output=True)
    yield sock
    _teardown_containerd(base, sock)


class Proc:
    def __init__(self, args: list[str], log: Path):
        self.args, self.log = args, log
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "ab"))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory, containerd):
    tmp = tmp_path_factory.mktemp("server")
    port = free_port()
    p = Proc([str(BIN), "server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp / "data"), "--agent-timeout", "4", "--instance-lost-after", "600"], tmp / "server.log")
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthz(endpoint), "the server")
    yield endpoint
    p.stop()


@pytest.fixture(scope="session")
def ecs(server):
    return boto3.client("ecs", endpoint_url=server, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t")


@pytest.fixture(scope="session")
def agent(tmp_path_factory, server, containerd, ecs):
    tmp = tmp_path_factory.mktemp("agent")
    ecs.create_cluster(clusterName="default")
    p = Proc(
        [str(BIN), "agent", "--endpoint", server, "--cluster", "default", "--data-dir", str(tmp / "data"),
         "--containerd-socket", containerd, "--instance-id", "i-e2e-agent", "--attributes", "role=e2e"],
        tmp / "agent.log",
    )
    wait_for(lambda: ecs.list_container_instances(cluster="default")["containerInstanceArns"], "the agent to register")
    yield p
    p.stop()
