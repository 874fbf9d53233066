"""ECS Anywhere's API against the real server, driven over HTTP without containerd:
SSM's activation operations (boto3's `ssm` client on the one endpoint, its answers
checked against botocore's SSM model), an external node's bootstrap
(`FlotillaAgentV1.RegisterExternalInstance`) and its own key beside the server's
`--credentials` keys (the agent protocol signed with it, as `flotilla agent
--activation-id …` does; tests/agent/test_anywhere.py runs the real agent), EXTERNAL
placement, and the key refused once the instance is deregistered.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from e2e_support import AUTH_KEY, AUTH_SECRET, boto_client, error_of, identity_document, resources
from shape_check import shape_errors


def ssm_client(endpoint, key=AUTH_KEY, secret=AUTH_SECRET):
    c = boto_client("ssm", endpoint, "us-east-1", key, secret)
    model = c.meta.service_model
    problems = []

    def check(http_response, parsed, model, **_):
        if http_response.status_code == 200 and model.output_shape is not None:
            shape_errors(model.output_shape, json.loads(http_response.content or b"{}"), model.name, problems)

    c.meta.events.register("after-call.ssm", check)
    c.problems = problems  # type: ignore[attr-defined]
    assert model.service_name == "ssm"
    return c


def bootstrap(endpoint, activation_id, code):
    """The unsigned bootstrap call: (status, JSON answer)."""
    req = urllib.request.Request(
        endpoint, method="POST",
        data=json.dumps({"activationId": activation_id, "activationCode": code}).encode(),
        headers={"X-Amz-Target": "FlotillaAgentV1.RegisterExternalInstance", "Content-Type": "application/x-amz-json-1.1"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_activations_are_created_listed_limited_and_deleted(server, reset):
    ssm = ssm_client(server.endpoint)
    a = ssm.create_activation(IamRole="ecsAnywhereRole", RegistrationLimit=2, DefaultInstanceName="edge",
                              Tags=[{"Key": "team", "Value": "ops"}])
    assert len(a["ActivationCode"]) == 20 and len(a["ActivationId"]) == 36
    b = ssm.create_activation(IamRole="otherRole")
    listed = ssm.describe_activations()["ActivationList"]
    assert {x["ActivationId"] for x in listed} == {a["ActivationId"], b["ActivationId"]}
    one = ssm.describe_activations(Filters=[{"FilterKey": "IamRole", "FilterValues": ["ecsAnywhereRole"]}])["ActivationList"]
    assert [(x["RegistrationLimit"], x["RegistrationsCount"], x["Expired"]) for x in one] == [(2, 0, False)]
    assert one[0]["Tags"] == [{"Key": "team", "Value": "ops"}]
    page = ssm.describe_activations(MaxResults=1)
    rest = ssm.describe_activations(MaxResults=1, NextToken=page["NextToken"])
    assert len(page["ActivationList"]) == len(rest["ActivationList"]) == 1 and "NextToken" not in rest
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ssm.create_activation(IamRole="r", RegistrationLimit=1001)
    assert error_of(e)[0] == "ValidationException"
    with pytest.raises(ssm.exceptions.InvalidFilter):
        ssm.describe_activations(Filters=[{"FilterKey": "Nope", "FilterValues": ["x"]}])
    ssm.delete_activation(ActivationId=b["ActivationId"])
    with pytest.raises(ssm.exceptions.InvalidActivation):
        ssm.delete_activation(ActivationId=b["ActivationId"])
    with pytest.raises(ssm.exceptions.InvalidActivationId):
        ssm.delete_activation(ActivationId="not-an-id")
    assert ssm.problems == []  # type: ignore[attr-defined]


def test_a_node_key_works_beside_credentials_for_agent_operations_until_deregistration(auth_server):
    ssm = ssm_client(auth_server.endpoint)
    ecs = boto_client("ecs", auth_server.endpoint, "us-east-1", AUTH_KEY, AUTH_SECRET)
    ecs.create_cluster(clusterName="edge")
    act = ssm.create_activation(IamRole="ecsAnywhereRole")
    status, v = bootstrap(auth_server.endpoint, act["ActivationId"], "X" * 20)
    assert (status, v["__type"]) == (400, "InvalidActivation"), v
    status, node = bootstrap(auth_server.endpoint, act["ActivationId"], act["ActivationCode"])
    assert status == 200, node
    mi, key = node["managedInstanceId"], node["credentials"]
    assert mi.startswith("mi-") and len(mi) == 20 and key["accessKeyId"].startswith("FLTN")
    status, v = bootstrap(auth_server.endpoint, act["ActivationId"], act["ActivationCode"])
    assert (status, v["__type"]) == (400, "InvalidActivation") and "limit" in v["message"], v

    node_ecs = boto_client("ecs", auth_server.endpoint, "us-east-1", key["accessKeyId"], key["secretAccessKey"])
    ci = node_ecs.register_container_instance(cluster="edge", instanceIdentityDocument=identity_document("i-claimed"),
                                              totalResources=resources())["containerInstance"]
    assert ci["ec2InstanceId"] == mi, ci
    assert "ecs.capability.external" in {a["name"] for a in ci["attributes"]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        node_ecs.list_clusters()
    assert error_of(e)[0] == "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecs.register_container_instance(cluster="edge", totalResources=resources(),
                                        attributes=[{"name": "ecs.capability.external"}])
    assert error_of(e)[0] == "InvalidParameterException"

    ecs.register_task_definition(family="edge", containerDefinitions=[{"name": "main", "image": "busybox", "memory": 32}])
    r = ecs.run_task(cluster="edge", taskDefinition="edge", launchType="EXTERNAL", count=2)
    assert [t["containerInstanceArn"] for t in r["tasks"]] == [ci["containerInstanceArn"]] * 2, r
    r = ecs.run_task(cluster="edge", taskDefinition="edge")
    assert r["tasks"] == [] and len(r["failures"]) == 1, r

    ecs.deregister_container_instance(cluster="edge", containerInstance=ci["containerInstanceArn"], force=True)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        node_ecs.discover_poll_endpoint(containerInstance=ci["containerInstanceArn"], cluster="edge")
    assert error_of(e)[0] == "UnrecognizedClientException"
    mine = ssm.describe_activations(Filters=[{"FilterKey": "ActivationIds", "FilterValues": [act["ActivationId"]]}])
    assert [a["RegistrationsCount"] for a in mine["ActivationList"]] == [1]
    assert ssm.problems == []  # type: ignore[attr-defined]
