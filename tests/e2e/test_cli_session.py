"""The README's first session (tests/e2e/cli_session.sh) with the real AWS CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_support import cli_env

SCRIPT = Path(__file__).resolve().parent / "cli_session.sh"


def split_steps(stdout: str) -> dict[str, list]:
    """`### name` markers followed by one or more JSON documents -> {name: [docs]}."""
    steps: dict[str, list] = {}
    current, buf = None, []

    def flush():
        if current is None:
            return
        text = "\n".join(buf).strip()
        dec, docs, i = json.JSONDecoder(), [], 0
        while i < len(text):
            doc, i = dec.raw_decode(text, i)
            docs.append(doc)
            while i < len(text) and text[i].isspace():
                i += 1
        steps[current] = docs

    for line in stdout.splitlines():
        if line.startswith("### "):
            flush()
            current, buf = line[4:].split("#")[0].strip(), []
        else:
            buf.append(line)
    flush()
    return steps


@pytest.fixture
def session(server, reset, tmp_path):
    if shutil.which("aws") is None:
        pytest.fail("the AWS CLI (`aws`) is not installed: pip install awscli", pytrace=False)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_")
    } | {
        # Keep the user's ~/.aws out of it.
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "ECS_ENDPOINT": server.endpoint,
    }
    r = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, f"cli_session.sh failed ({r.returncode}):\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    return split_steps(r.stdout)


def test_script_is_strict_and_takes_the_endpoint():
    text = SCRIPT.read_text()
    assert "set -euo pipefail" in text
    assert '${1:-${ECS_ENDPOINT' in text
    assert "file://$HERE/data/taskdef.json" in text


def test_first_session(session, client_factory):
    s = session
    cluster = s["create-cluster"][0]["cluster"]
    assert cluster["clusterName"] == "demo"
    assert cluster["status"] == "ACTIVE"
    # The region comes from the CLI's signature (AWS_DEFAULT_REGION), not the URL.
    assert cluster["clusterArn"] == "arn:aws:ecs:eu-west-1:000000000000:cluster/demo"

    td = s["register-task-definition"][0]
    assert td["taskDefinition"]["taskDefinitionArn"] == "arn:aws:ecs:eu-west-1:000000000000:task-definition/web:1"
    assert td["taskDefinition"]["status"] == "ACTIVE"
    assert td["taskDefinition"]["containerDefinitions"][0]["portMappings"][0]["containerPort"] == 80
    assert td["tags"] == [{"key": "team", "value": "platform"}]

    ci = s["register-container-instance"][0]["containerInstance"]
    assert ci["ec2InstanceId"] == "i-0123456789abcdef0"
    assert ci["status"] == "ACTIVE"
    attrs = {a["name"]: a.get("value") for a in ci["attributes"]}
    assert attrs["ecs.instance-type"] == "t3.large"
    assert attrs["ecs.availability-zone"] == "us-east-1a"

    task_arn = s["run-task"][0]
    assert task_arn.startswith("arn:aws:ecs:eu-west-1:000000000000:task/demo/")

    pending = s["describe-tasks"][0]
    assert pending["failures"] == []
    [t] = pending["tasks"]
    assert t["taskArn"] == task_arn
    assert t["lastStatus"] == "PENDING"
    assert t["desiredStatus"] == "RUNNING"
    assert t["containerInstanceArn"] == ci["containerInstanceArn"]
    assert t["startedBy"] == "first-session"
    # A dynamic host port was chosen for the bridge-mode mapping.
    [binding] = t["containers"][0]["networkBindings"]
    assert binding["containerPort"] == 80 and 32768 <= binding["hostPort"] <= 60999

    assert s["list-tasks"][0]["taskArns"] == [task_arn]

    stopped = s["stop-task"][0]["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["stoppedReason"] == "first session over"

    [after] = s["describe-tasks-after-stop"][0]["tasks"]
    assert after["lastStatus"] == "STOPPED"
    assert after["stoppedReason"] == "first session over"
    assert after["stopCode"] == "UserInitiated"

    assert s["list-tasks-stopped"][0]["taskArns"] == [task_arn]

    expected = {f"arn:aws:ecs:eu-west-1:000000000000:cluster/{n}" for n in ["demo", *(f"extra-{i}" for i in range(1, 7))]}
    assert [d for d in s["create-more-clusters"]] == [f"extra-{i}" for i in range(1, 7)]

    # --page-size: the CLI walks every page itself; each cluster exactly once.
    everything = s["list-clusters-page-size"][0]["clusterArns"]
    assert sorted(everything) == sorted(expected)
    assert len(everything) == len(expected)

    # --max-items: pages of at most 3, continued with NextToken, each cluster exactly once.
    pages = s["list-clusters-max-items"]
    assert len(pages) == 3  # 7 clusters, 3 per page
    seen = []
    for i, page in enumerate(pages):
        assert len(page["clusterArns"]) <= 3
        assert ("NextToken" in page) == (i < len(pages) - 1)
        seen.extend(page["clusterArns"])
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))

    # What the CLI did is really in the server, and in its region only.
    eu = client_factory("eu-west-1")
    [t] = eu.list_tasks(cluster="demo", desiredStatus="STOPPED")["taskArns"]
    [task] = eu.describe_tasks(cluster="demo", tasks=[t])["tasks"]
    assert task["stoppedReason"] == "first session over"
    us = client_factory("us-east-1")
    assert us.list_clusters()["clusterArns"] == []


def test_the_endpoint_can_come_from_the_environment(server, client_factory):
    """`AWS_ENDPOINT_URL_ECS` (as the README suggests) works instead of --endpoint-url."""
    client_factory("us-east-1").create_cluster(clusterName="from-env")
    env = cli_env(AWS_ENDPOINT_URL_ECS=server.endpoint)
    r = subprocess.run(["aws", "ecs", "list-clusters", "--output", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["clusterArns"] == ["arn:aws:ecs:us-east-1:000000000000:cluster/from-env"]
