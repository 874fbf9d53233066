"""Task sets of a service with the EXTERNAL deployment controller, through boto3 against
the real server: create-task-set, describe-task-sets, update-task-set,
update-service-primary-task-set and delete-task-set, with the service controller starting
each set's share of tasks (the agent's reports are sent by hand: the instance has no agent).

Every answer is validated against botocore's ECS model (conftest)."""

from __future__ import annotations

import pytest

from e2e_support import error_of, register_instance, register_taskdef
from support import wait_for


@pytest.fixture
def external(ecs):
    """Cluster `c1` with one instance, task definitions `web:1` and `web:2`, and the
    EXTERNAL service `api` of 2 tasks."""
    ecs.create_cluster(clusterName="c1")
    register_instance(ecs, "c1", "i-00000000000000001")
    register_taskdef(ecs, "web")
    register_taskdef(ecs, "web")
    s = ecs.create_service(cluster="c1", serviceName="api", desiredCount=2, deploymentController={"type": "EXTERNAL"})["service"]
    assert s["deployments"] == [] and "taskDefinition" not in s
    return s


def one_set(ecs, set_id: str) -> dict:
    [ts] = ecs.describe_task_sets(cluster="c1", service="api", taskSets=[set_id])["taskSets"]
    return ts


def tasks_of(ecs, set_id: str) -> list[dict]:
    """The set's tasks, those asked to stop included."""
    arns = [a for desired in ("RUNNING", "STOPPED")
            for a in ecs.list_tasks(cluster="c1", serviceName="api", desiredStatus=desired)["taskArns"]]
    if not arns:
        return []
    return [t for t in ecs.describe_tasks(cluster="c1", tasks=arns)["tasks"] if t.get("startedBy") == set_id]


def test_task_sets_through_boto3(ecs, external):
    blue = ecs.create_task_set(cluster="c1", service="api", taskDefinition="web:1", externalId="blue", scale={"value": 100.0, "unit": "PERCENT"})["taskSet"]
    assert blue["status"] == "ACTIVE" and blue["computedDesiredCount"] == 2
    assert blue["taskSetArn"].endswith(f":task-set/c1/api/{blue['id']}")
    # The controller starts the set's two tasks (PENDING: no agent runs them); report them RUNNING.
    started = wait_for(lambda: len(tasks_of(ecs, blue["id"])) == 2 and tasks_of(ecs, blue["id"]), "blue's tasks", deadline=20)
    for t in started:
        ecs.submit_task_state_change(cluster="c1", task=t["taskArn"], status="RUNNING")
    wait_for(lambda: one_set(ecs, blue["id"])["stabilityStatus"] == "STEADY_STATE", "blue steady", deadline=20)
    assert one_set(ecs, blue["id"])["runningCount"] == 2

    green = ecs.create_task_set(cluster="c1", service="api", taskDefinition="web:2")["taskSet"]
    assert green["scale"] == {"value": 0.0, "unit": "PERCENT"} and green["computedDesiredCount"] == 0
    g = ecs.update_task_set(cluster="c1", service="api", taskSet=green["id"], scale={"value": 50.0, "unit": "PERCENT"})["taskSet"]
    assert g["computedDesiredCount"] == 1

    p = ecs.update_service_primary_task_set(cluster="c1", service="api", primaryTaskSet=green["taskSetArn"])["taskSet"]
    assert p["status"] == "PRIMARY"
    assert one_set(ecs, blue["id"])["status"] == "ACTIVE"
    s = ecs.describe_services(cluster="c1", services=["api"])["services"][0]
    assert s["taskDefinition"].endswith(":task-definition/web:2")
    assert {ts["id"] for ts in s["taskSets"]} == {blue["id"], green["id"]}

    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.delete_task_set(cluster="c1", service="api", taskSet=blue["id"])
    d = ecs.delete_task_set(cluster="c1", service="api", taskSet=blue["id"], force=True)["taskSet"]
    assert d["status"] == "DRAINING"
    # Its tasks are asked to stop; once the "agent" says they stopped, the set is gone.
    wait_for(lambda: [t["desiredStatus"] for t in tasks_of(ecs, blue["id"])] == ["STOPPED", "STOPPED"],
             "blue's tasks asked to stop", deadline=20)
    for t in tasks_of(ecs, blue["id"]):
        ecs.submit_task_state_change(cluster="c1", task=t["taskArn"], status="STOPPED")
    wait_for(
        lambda: [ts["id"] for ts in ecs.describe_task_sets(cluster="c1", service="api")["taskSets"]] == [green["id"]],
        "blue gone",
        deadline=20,
    )
    r = ecs.describe_task_sets(cluster="c1", service="api", taskSets=[blue["id"]])
    assert r["taskSets"] == [] and r["failures"][0]["reason"] == "MISSING"


def test_task_set_errors(ecs, external):
    with pytest.raises(ecs.exceptions.TaskSetNotFoundException):
        ecs.update_task_set(cluster="c1", service="api", taskSet="ecs-svc/1", scale={"value": 1.0, "unit": "PERCENT"})
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.create_task_set(cluster="c1", service="api", taskDefinition="web:1", scale={"value": 150.0, "unit": "PERCENT"})
    assert "scale" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ecs.create_task_set(cluster="c1", service="nope", taskDefinition="web:1")
    ecs.create_service(cluster="c1", serviceName="rolling", taskDefinition="web:1", desiredCount=0)
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.create_task_set(cluster="c1", service="rolling", taskDefinition="web:1")
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.create_service(cluster="c1", serviceName="x", taskDefinition="web:1", deploymentController={"type": "EXTERNAL"})
    assert "taskDefinition" in error_of(e)[1]
