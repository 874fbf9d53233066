"""Fixtures for the multi-node tests: a real 3-node `flotilla dev cluster` (one network
namespace, containerd and agent per node, one server), the local registry with the test
images, boto3 and the AWS CLI against its endpoint. Needs root (CI runs as root).
"""

from __future__ import annotations

import pytest

from cluster_support import dev_cluster


@pytest.fixture(scope="module")
def cluster():
    # Liveness: the agents long-poll for 20 s, so 25 s is the shortest safe grace period.
    yield from dev_cluster("ct", "flotilla-cluster-test",
                           "--nodes", "3", "--agent-timeout", "25s", "--instance-lost-after", "25s")
