"""`dependsOn` conditions on real containers: SUCCESS/COMPLETE wait for the dependency to
exit, HEALTHY for its health check to pass, and a condition that can no longer hold stops
the task with a reason naming it.

Each app container checks a file its dependency writes into a shared task volume only
after a delay: if the app were started in plain start order it would not find the file
and would exit 9.
"""

from __future__ import annotations

from test_agent_containerd import BUSYBOX, container, register, run, wait_stopped

SHARED = {"volumes": [{"name": "shared"}]}
MOUNT = [{"sourceVolume": "shared", "containerPath": "/shared"}]
CHECK_FLAG = ["sh", "-c", "test -f /shared/flag && exit 0 || exit 9"]


def two_containers(ecs, family, first: dict, condition: str):
    app = {"name": "app", "image": BUSYBOX, "memory": 32, "mountPoints": MOUNT, "command": CHECK_FLAG,
           "dependsOn": [{"containerName": first["name"], "condition": condition}]}
    first = {"image": BUSYBOX, "memory": 32, "mountPoints": MOUNT, **first}
    register(ecs, family, [first, app], **SHARED)
    [arn] = run(ecs, family)
    [t] = wait_stopped(ecs, [arn])
    return t


def test_success_waits_for_a_clean_exit_of_the_dependency(ecs, agent):
    t = two_containers(ecs, "dep-success", {"name": "init", "essential": False,
                                            "command": ["sh", "-c", "sleep 1; touch /shared/flag"]}, "SUCCESS")
    assert container(t, "init")["exitCode"] == 0
    assert container(t, "app")["exitCode"] == 0, t


def test_complete_accepts_any_exit_code(ecs, agent):
    t = two_containers(ecs, "dep-complete", {"name": "init", "essential": False,
                                             "command": ["sh", "-c", "sleep 1; touch /shared/flag; exit 4"]}, "COMPLETE")
    assert container(t, "app")["exitCode"] == 0, t


def test_success_fails_the_task_when_the_dependency_exits_non_zero(ecs, agent):
    t = two_containers(ecs, "dep-fails", {"name": "init", "essential": False, "command": ["sh", "-c", "exit 3"]}, "SUCCESS")
    assert t["stopCode"] == "TaskFailedToStart", t
    assert "app" in t["stoppedReason"] and "init exited with code 3" in t["stoppedReason"], t["stoppedReason"]
    assert "exitCode" not in container(t, "app"), "app must never have started"


def test_healthy_waits_for_the_dependency_health_check(ecs, agent):
    db = {"name": "db", "command": ["sh", "-c", "sleep 2; touch /shared/flag; sleep 1000"], "stopTimeout": 1,
          "healthCheck": {"command": ["CMD-SHELL", "test -f /shared/flag"], "interval": 5, "timeout": 2, "retries": 3}}
    t = two_containers(ecs, "dep-healthy", db, "HEALTHY")
    assert container(t, "app")["exitCode"] == 0, t
    assert t["stopCode"] == "EssentialContainerExited"
