"""The node agent running real containers through containerd, driven with boto3.

Each test registers what it runs; images come from the local registry built by
scripts/build-test-images.sh (busybox, memhog, bad-entrypoint).
"""

from __future__ import annotations

import subprocess
import time

from support import wait_for

BUSYBOX = "127.0.0.1:5000/busybox:latest"


def register(ecs, family, containers, **kw):
    return ecs.register_task_definition(family=family, containerDefinitions=containers, **kw)["taskDefinition"]["taskDefinitionArn"]


def run(ecs, family, **kw):
    r = ecs.run_task(cluster="default", taskDefinition=family, **kw)
    assert r["failures"] == [], r["failures"]
    return [t["taskArn"] for t in r["tasks"]]


def describe(ecs, arns):
    return ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]


def wait_stopped(ecs, arns, delay=1):
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": delay, "MaxAttempts": 60})
    return describe(ecs, arns)


def wait_running(ecs, arns):
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return describe(ecs, arns)


def container(task, name):
    return next(c for c in task["containers"] if c["name"] == name)


def test_a_task_that_exits_3_is_stopped_with_exit_code_3(ecs, agent):
    register(ecs, "exit3", [{"name": "main", "image": BUSYBOX, "memory": 32, "command": ["sh", "-c", "echo hi; exit 3"]}])
    [arn] = run(ecs, "exit3")
    [t] = wait_stopped(ecs, [arn])
    assert container(t, "main")["exitCode"] == 3
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["pullStartedAt"] <= t["pullStoppedAt"] <= t["startedAt"] <= t["stoppedAt"]


def test_stop_task_stops_within_the_stop_timeout(ecs, agent):
    # sleep as PID 1 ignores SIGTERM: it must be SIGKILLed once stopTimeout (3 s) passes.
    register(ecs, "stubborn", [{"name": "main", "image": BUSYBOX, "memory": 32, "command": ["sleep", "1000"], "stopTimeout": 3}])
    # a shell that exits on SIGTERM stops at once.
    register(ecs, "polite", [{"name": "main", "image": BUSYBOX, "memory": 32, "stopTimeout": 20,
                              "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]}])
    stubborn, polite = run(ecs, "stubborn")[0], run(ecs, "polite")[0]
    wait_running(ecs, [stubborn, polite])
    started = time.monotonic()
    ecs.stop_task(cluster="default", task=stubborn, reason="test over")
    ecs.stop_task(cluster="default", task=polite, reason="test over")
    t_polite = wait_stopped(ecs, [polite], delay=0.2)[0] if False else None  # noqa: F841 (waiter Delay must be int)
    [t_polite] = wait_for(lambda: [t for t in describe(ecs, [polite]) if t["lastStatus"] == "STOPPED"], "polite to stop", deadline=15)
    polite_after = time.monotonic() - started
    [t_stubborn] = wait_for(lambda: [t for t in describe(ecs, [stubborn]) if t["lastStatus"] == "STOPPED"], "stubborn to stop", deadline=30)
    stubborn_after = time.monotonic() - started
    assert container(t_polite, "main")["exitCode"] == 0
    assert polite_after < 10, "SIGTERM was handled, no need to wait for the 20 s timeout"
    assert container(t_stubborn, "main")["exitCode"] == 137, "SIGKILL after the timeout"
    assert 2.5 < stubborn_after < 15
    assert t_stubborn["stopCode"] == "UserInitiated" and t_stubborn["stoppedReason"] == "test over"


def test_an_essential_exit_stops_the_other_containers(ecs, agent):
    register(ecs, "pair", [
        {"name": "main", "image": BUSYBOX, "memory": 32, "command": ["sh", "-c", "sleep 1; exit 0"]},
        {"name": "side", "image": BUSYBOX, "memory": 32, "essential": False, "command": ["sleep", "1000"], "stopTimeout": 2},
    ])
    [arn] = run(ecs, "pair")
    [t] = wait_stopped(ecs, [arn])
    assert container(t, "main")["exitCode"] == 0
    assert container(t, "side")["lastStatus"] == "STOPPED"
    assert container(t, "side")["exitCode"] == 137
    assert "Essential container in task exited" in t["stoppedReason"]


def test_an_oom_kill_is_reported(ecs, agent):
    register(ecs, "hog", [{"name": "main", "image": "127.0.0.1:5000/memhog:latest", "memory": 24}])
    [arn] = run(ecs, "hog")
    [t] = wait_stopped(ecs, [arn])
    assert container(t, "main")["reason"].startswith("OutOfMemoryError"), container(t, "main")


def test_bad_images_fail_to_start_with_the_real_reason(ecs, agent):
    register(ecs, "noimage", [{"name": "main", "image": "127.0.0.1:5000/does-not-exist:1", "memory": 32}])
    register(ecs, "noentry", [{"name": "main", "image": "127.0.0.1:5000/bad-entrypoint:latest", "memory": 32}])
    register(ecs, "noregistry", [{"name": "main", "image": "127.0.0.1:5999/busybox:latest", "memory": 32}])
    arns = run(ecs, "noimage") + run(ecs, "noentry") + run(ecs, "noregistry")
    tasks = {t["taskDefinitionArn"].split("/")[-1].split(":")[0]: t for t in wait_stopped(ecs, arns)}
    for t in tasks.values():
        assert t["stopCode"] == "TaskFailedToStart", t
    assert tasks["noimage"]["stoppedReason"].startswith("CannotPullContainerError")
    assert tasks["noregistry"]["stoppedReason"].startswith("CannotPullContainerError")
    assert "entrypoint" in tasks["noentry"]["stoppedReason"].lower() or "no such file" in tasks["noentry"]["stoppedReason"].lower(), tasks["noentry"]["stoppedReason"]


def test_agent_kill_9_and_restart_keeps_the_same_tasks_and_containers(ecs, agent, containerd):
    register(ecs, "long", [{"name": "main", "image": BUSYBOX, "memory": 32, "command": ["sleep", "1000"], "stopTimeout": 2}])
    arns = run(ecs, "long", count=2)
    before = {t["taskArn"]: container(t, "main")["runtimeId"] for t in wait_running(ecs, arns)}

    def pids():
        out = subprocess.run(["ctr", "--address", containerd, "-n", "flotilla", "tasks", "ls"], capture_output=True, text=True, check=True).stdout
        return {line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if "RUNNING" in line}

    pids_before = {rid: pids()[rid] for rid in before.values()}
    agent.kill9()
    # Disconnected while it is gone (server --agent-timeout 4).
    [ci] = ecs.list_container_instances(cluster="default")["containerInstanceArns"]
    wait_for(lambda: not ecs.describe_container_instances(cluster="default", containerInstances=[ci])["containerInstances"][0]["agentConnected"],
             "agentConnected=false", deadline=20)
    assert all(t["lastStatus"] == "RUNNING" for t in describe(ecs, arns)), "tasks keep running without their agent"
    agent.restart()
    wait_for(lambda: ecs.describe_container_instances(cluster="default", containerInstances=[ci])["containerInstances"][0]["agentConnected"],
             "agentConnected=true", deadline=20)
    assert ecs.list_container_instances(cluster="default")["containerInstanceArns"] == [ci], "same instance"
    after = {t["taskArn"]: (t["lastStatus"], container(t, "main")["runtimeId"]) for t in describe(ecs, arns)}
    assert after == {arn: ("RUNNING", rid) for arn, rid in before.items()}
    assert {rid: pids()[rid] for rid in before.values()} == pids_before, "the same processes, not restarted"
    running = ecs.list_tasks(cluster="default", family="long")["taskArns"]
    assert sorted(running) == sorted(arns), "no duplicate task"
    # The adopted tasks are still under control.
    for arn in arns:
        ecs.stop_task(cluster="default", task=arn)
    for t in wait_stopped(ecs, arns):
        assert container(t, "main")["exitCode"] == 137


def test_health_checks_run_inside_the_container_and_set_task_health(ecs, agent):
    register(ecs, "healthy", [{"name": "main", "image": BUSYBOX, "memory": 32, "command": ["sh", "-c", "touch /tmp/ok; sleep 1000"],
                               "stopTimeout": 1,
                               "healthCheck": {"command": ["CMD-SHELL", "test -f /tmp/ok"], "interval": 5, "timeout": 2, "retries": 1}}])
    register(ecs, "sick", [{"name": "main", "image": BUSYBOX, "memory": 32, "command": ["sleep", "1000"], "stopTimeout": 1,
                            "healthCheck": {"command": ["CMD", "sh", "-c", "exit 1"], "interval": 5, "timeout": 2, "retries": 1}}])
    healthy, sick = run(ecs, "healthy")[0], run(ecs, "sick")[0]
    wait_running(ecs, [healthy, sick])
    [h] = wait_for(lambda: [t for t in describe(ecs, [healthy]) if t["healthStatus"] == "HEALTHY"], "HEALTHY", deadline=30)
    [s] = wait_for(lambda: [t for t in describe(ecs, [sick]) if t["healthStatus"] == "UNHEALTHY"], "UNHEALTHY", deadline=30)
    assert container(h, "main")["healthStatus"] == "HEALTHY"
    assert container(s, "main")["healthStatus"] == "UNHEALTHY"
    for arn in (healthy, sick):
        ecs.stop_task(cluster="default", task=arn)
    wait_stopped(ecs, [healthy, sick])
