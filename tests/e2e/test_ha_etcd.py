"""Several servers on a 3-member etcd (issue 15): writers keep writing through every
server while one server, then the leader, then one etcd member is `kill -9`'d; every
acknowledged write must be readable afterwards through every server, revision numbers
must have no duplicate and no gap, and the controllers must run on at most one server at
any moment (each server's `/healthz` names its role).

Everything listens on 127.0.0.1; the test takes about a minute.
"""

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from e2e_support import boto_client, start_server
from support import free_port, wait_for

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
WRITERS = 16
WRITE_FOR = 30.0


class EtcdMember:
    """One member of a local etcd cluster."""

    def __init__(self, tmp: Path, name: str, client: int, peer: int, cluster: str):
        self.args = [
            ETCD, "--name", name, "--data-dir", str(tmp / f"etcd-{name}"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--max-txn-ops", "16384", "--max-request-bytes", "33554432",
        ]
        self.log = open(tmp / f"etcd-{name}.log", "wb")
        self.endpoint = f"127.0.0.1:{client}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def role(endpoint: str) -> str | None:
    try:
        r = requests.get(endpoint + "/healthz", timeout=1)
        return r.text if r.status_code == 200 else None
    except requests.RequestException:
        return None


@pytest.fixture
def etcd_cluster(tmp_path):
    if not Path(ETCD).exists():
        pytest.fail("etcd is not installed (Debian etcd-server; scripts/test.sh installs it)")
    ports = [(free_port(), free_port()) for _ in range(3)]
    cluster = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
    members = [EtcdMember(tmp_path, f"m{i}", c, p, cluster) for i, (c, p) in enumerate(ports)]
    for m in members:
        m.start()

    def healthy(m: EtcdMember) -> bool:
        try:
            return requests.get(f"http://{m.endpoint}/health", timeout=1).json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    wait_for(lambda: all(healthy(m) for m in members), "a healthy 3-member etcd", deadline=60)
    yield members
    for m in members:
        if m.proc and m.proc.poll() is None:
            m.kill()


def test_writes_survive_killing_a_server_the_leader_and_an_etcd_member(tmp_path, etcd_cluster):
    store = "etcd://" + ",".join(m.endpoint for m in etcd_cluster)
    servers = [start_server(tmp_path, ["--store", store], name=f"ha{i}", deadline=60) for i in range(3)]
    endpoints = [s.endpoint for s in servers]
    wait_for(lambda: sum(1 for e in endpoints if role(e) == "ok: leader") == 1, "one leader", deadline=30)

    acked: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()
    most_leaders = [0]

    def writer(w: int):
        family = f"ha-{w}"
        i = w
        while not stop.is_set():
            endpoint = endpoints[i % len(endpoints)]
            try:
                ecs = boto_client("ecs", endpoint, "us-east-1", "AKIDEXAMPLE", "dummy")
                out = ecs.register_task_definition(
                    family=family, containerDefinitions=[{"name": "app", "image": "busybox", "memory": 64}]
                )
                with lock:
                    acked.append((family, out["taskDefinition"]["revision"]))
            except Exception:  # noqa: BLE001 - a killed server: try the next one
                i += 1
                time.sleep(0.05)

    def watch_leaders():
        while not stop.is_set():
            leaders = sum(1 for e in list(endpoints) if role(e) == "ok: leader")
            most_leaders[0] = max(most_leaders[0], leaders)
            time.sleep(0.1)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    threads.append(threading.Thread(target=watch_leaders))
    for t in threads:
        t.start()
    started = time.monotonic()
    try:
        # 1. A follower dies and comes back.
        time.sleep(5)
        follower = next(i for i, e in enumerate(endpoints) if role(e) != "ok: leader")
        servers[follower].proc.kill()
        servers[follower].proc.wait()
        time.sleep(2)
        servers[follower] = start_server(tmp_path, ["--store", store], name=f"ha{follower}b", deadline=60)
        endpoints[follower] = servers[follower].endpoint
        # 2. The leader dies: another takes over within seconds.
        leader = next(i for i, e in enumerate(endpoints) if role(e) == "ok: leader")
        servers[leader].proc.kill()
        servers[leader].proc.wait()
        killed_at = time.monotonic()
        others = [e for i, e in enumerate(endpoints) if i != leader]
        wait_for(lambda: any(role(e) == "ok: leader" for e in others), "a new leader", deadline=20)
        takeover = time.monotonic() - killed_at
        servers[leader] = start_server(tmp_path, ["--store", store], name=f"ha{leader}b", deadline=60)
        endpoints[leader] = servers[leader].endpoint
        # 3. One etcd member dies (the other two keep a quorum).
        etcd_cluster[0].kill()
        time.sleep(max(0.0, WRITE_FOR - (time.monotonic() - started)))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    assert len(acked) > 100, f"only {len(acked)} writes were acknowledged"
    assert most_leaders[0] == 1, f"{most_leaders[0]} servers said they lead at once"
    assert takeover < 15, f"the new leader took {takeover:.1f}s"
    by_family: dict[str, set[int]] = {}
    for family, revision in acked:
        assert revision not in by_family.setdefault(family, set()), f"{family}:{revision} acknowledged twice"
        by_family[family].add(revision)
    for endpoint in endpoints:
        ecs = boto_client("ecs", endpoint, "us-east-1", "AKIDEXAMPLE", "dummy")

        def holds_all(ecs=ecs):
            for family, revisions in by_family.items():
                arns = []
                for page in ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family):
                    arns += page["taskDefinitionArns"]
                present = sorted(int(a.rsplit(":", 1)[1]) for a in arns if a.split("/")[-1].rsplit(":", 1)[0] == family)
                # No gap and no duplicate, and every acknowledged revision is there.
                if present != list(range(1, len(present) + 1)) or not revisions <= set(present):
                    return False
            return True

        wait_for(holds_all, f"{endpoint} holds every acknowledged write", deadline=30, retry_errors=True)
    print(f"{len(acked)} writes acknowledged in {WRITE_FOR:.0f}s; new leader after {takeover:.1f}s")
    for s in servers:
        s.stop()
