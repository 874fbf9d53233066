"""Fixtures for the multi-node tests: a real 3-node `flotilla dev cluster` (one network
namespace, containerd and agent per node, one server), the local registry with the test
images, boto3 and the AWS CLI against its endpoint. Needs root (CI runs as root).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from cluster_support import ROOT, Cluster, leftovers
from support import need_root_and_binaries


@pytest.fixture(scope="module")
def cluster():
    need_root_and_binaries("the dev cluster needs root (network namespaces, containerd, cgroups)")
    subprocess.run([str(ROOT / "scripts/build-test-images.sh")], check=True, capture_output=True)
    c = Cluster(name=f"ct{os.getpid() % 100000}", dir=f"/tmp/flotilla-cluster-test-{os.getpid()}")
    # Liveness: the agents long-poll for 20 s, so 25 s is the shortest safe grace period.
    c.up("--nodes", "3", "--agent-timeout", "25s", "--instance-lost-after", "25s")
    yield c
    # Whatever the tests did, leave nothing behind (down is idempotent).
    c.cli("down", check=False)
    left = leftovers(c)
    assert not left, f"dev cluster down left: {left}"
