"""The response validator itself: it must reject what botocore's model does not allow,
or every other test's model check would be vacuous."""

from __future__ import annotations

import json

import pytest

from e2e_support import JSON_CT, ModelValidator

HEADERS = {"x-amzn-RequestId": "r-1", "Content-Type": JSON_CT}


@pytest.fixture(scope="module")
def v():
    return ModelValidator()


def errors(v, op, doc, status=200, headers=HEADERS):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return v.check_response(op, status, headers, body)


def test_a_valid_response_passes(v):
    doc = {
        "clusters": [{"clusterName": "c", "status": "ACTIVE", "runningTasksCount": 0, "statistics": [{"name": "a", "value": "1"}]}],
        "failures": [{"arn": "x", "reason": "MISSING"}],
    }
    assert errors(v, "DescribeClusters", doc) == []
    task = {"tasks": [{"lastStatus": "RUNNING", "createdAt": 1764000000.25, "stopCode": "UserInitiated", "containers": [{"exitCode": 0}]}]}
    assert errors(v, "DescribeTasks", task) == []


@pytest.mark.parametrize(
    "op, doc, needle",
    [
        ("DescribeClusters", {"clusters": [{"clusterName": "c", "bogus": 1}]}, "bogus"),
        ("DescribeClusters", {"clusters": [{"runningTasksCount": "3"}]}, "runningTasksCount"),
        ("DescribeClusters", {"clusters": [{"runningTasksCount": True}]}, "runningTasksCount"),
        ("DescribeClusters", {"clusters": {"clusterName": "c"}}, "clusters"),
        ("DescribeClusters", {"clusters": [{"clusterName": None}]}, "null"),
        ("DescribeTasks", {"tasks": [{"stopCode": "Exploded"}]}, "stopCode"),
        ("DescribeTasks", {"tasks": [{"createdAt": "2026-11-25T10:00:00Z"}]}, "createdAt"),
        ("DescribeTasks", {"tasks": [{"containers": [{"exitCode": 1.5}]}]}, "exitCode"),
        ("DescribeTaskDefinition", {"taskDefinition": {"status": "WEIRD"}}, "status"),
        ("RegisterContainerInstance", {"containerInstance": {"agentConnected": "yes"}}, "agentConnected"),
    ],
)
def test_model_violations_are_caught(v, op, doc, needle):
    errs = errors(v, op, doc)
    assert errs and any(needle in e for e in errs), errs


def test_protocol_violations_are_caught(v):
    assert any("RequestId" in e for e in errors(v, "ListClusters", {}, headers={"Content-Type": JSON_CT}))
    assert any("Content-Type" in e for e in errors(v, "ListClusters", {}, headers={"x-amzn-RequestId": "r"}))
    assert any("500" in e for e in errors(v, "ListClusters", {"__type": "ServerException", "message": "x"}, status=500))
    assert any("not JSON" in e for e in errors(v, "ListClusters", b"<html>oops</html>"))
    # Error bodies: __type and message required; the code must be one the operation declares.
    assert errors(v, "ListTasks", {"__type": "ClusterNotFoundException", "message": "Cluster not found."}, status=400) == []
    assert any("declares" in e for e in errors(v, "ListClusters", {"__type": "ClusterNotFoundException", "message": "m"}, status=400))
    assert any("__type" in e for e in errors(v, "ListTasks", {"message": "m"}, status=400))
    assert any("message" in e for e in errors(v, "ListTasks", {"__type": "ClientException"}, status=400))


def test_every_boto3_call_of_the_fixtures_is_validated(ecs, validator):
    before = validator.checked
    ecs.list_clusters()
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.list_tasks(cluster="nope")
    assert validator.checked == before + 2
