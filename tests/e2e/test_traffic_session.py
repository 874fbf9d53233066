"""The README's Cloud Map and ELBv2 sessions (tests/e2e/traffic_session.sh) with the real
AWS CLI, and a check that the script runs exactly the README's commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_support import cli_env
from test_cli_session import split_steps

SCRIPT = Path(__file__).resolve().parent / "traffic_session.sh"
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands(section: str) -> list[str]:
    """The `aws …` commands of the first ```sh block under `## {section}`, continuation
    lines joined, trailing comments dropped, whitespace collapsed."""
    text = README.read_text()
    body = text.split(f"## {section}", 1)[1]
    block = body.split("```sh", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if "aws " in line:
            commands.append(" ".join(line.split()))
    return commands


def test_the_script_runs_the_readme_commands():
    script = " ".join(re.sub(r"\\\n\s*", " ", SCRIPT.read_text()).split())
    for section in ["Service discovery (Cloud Map API)", "Load balancers (ELBv2 API)"]:
        commands = readme_commands(section)
        assert len(commands) >= 7, f"{section}: {commands}"
        for c in commands:
            # Assignments and loops as the README writes them; the command itself verbatim.
            command = c[c.index("aws "):].rstrip(")")
            assert command in script, f"README command not in {SCRIPT.name}: {command}"


@pytest.fixture
def session(server, reset, tmp_path):
    if shutil.which("aws") is None:
        pytest.fail("the AWS CLI (`aws`) is not installed: pip install awscli", pytrace=False)
    env = cli_env(ECS_ENDPOINT=server.endpoint)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        env.pop(k)
    r = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert r.returncode == 0, f"traffic_session.sh failed ({r.returncode}):\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    return split_steps(r.stdout)


def test_the_cloud_map_and_elbv2_sessions(session):
    s = session
    ids = s["cloud-map"][0]
    assert ids["namespace"].startswith("ns-") and ids["service"].startswith("srv-")
    ops = s["register-instances"]
    assert len(ops) == 3 and all(o["OperationId"] for o in ops)
    found = s["discover-instances"][0]["Instances"]
    # task-2 is UNHEALTHY: DiscoverInstances answers the healthy ones.
    health = {i["InstanceId"]: i["HealthStatus"] for i in found}
    assert health == {"task-1": "HEALTHY", "task-3": "HEALTHY"}
    assert {i["Attributes"]["AWS_INSTANCE_IPV4"] for i in found} == {"10.0.0.1", "10.0.0.3"}
    assert s["delete-service-in-use"] == [{"Error": "ResourceInUse"}]

    arns = s["elbv2"][0]
    assert ":loadbalancer/app/web/" in arns["lb"] and ":targetgroup/api/" in arns["tg"]
    [rule] = s["create-rule"][0]["Rules"]
    assert rule["Priority"] == "10"
    assert rule["Conditions"][0]["Field"] == "path-pattern"
    assert rule["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "503"
    targets = s["describe-target-health"][0]["TargetHealthDescriptions"]
    assert {(t["Target"]["Id"], t["Target"]["Port"]) for t in targets} == {
        ("i-0123456789abcdef0", 8080), ("i-0123456789abcdef1", 9000)}
    # No node has those instance ids: the checks never decide, the targets stay initial.
    assert {t["TargetHealth"]["State"] for t in targets} == {"initial"}
    rules = s["describe-rules"][0]["Rules"]
    assert [r["Priority"] for r in rules] == ["10", "default"]
    assert s["delete-target-group-in-use"] == [{"Error": "ResourceInUse"}]
    assert "clusterArns" in s["list-clusters"][0]
