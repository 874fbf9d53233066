"""Every implemented ECS operation through boto3, with assertions on behaviour.

Each client here validates every response against botocore's ECS model (conftest).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading

import pytest
from botocore.exceptions import ClientError, WaiterError

from e2e_support import (
    ACCOUNT,
    container,
    error_of,
    invalid_parameter,
    paginate_all,
    register_instance,
    register_taskdef,
)
from support import wait_for

ARN = f"arn:aws:ecs:us-east-1:{ACCOUNT}"
FAST = {"Delay": 1, "MaxAttempts": 20}


@pytest.fixture
def cluster(ecs):
    """A cluster `c1` with one container instance (2048 CPU, 4096 MiB) and task definition `web:1`."""
    ecs.create_cluster(clusterName="c1")
    ci = register_instance(ecs, "c1", "i-00000000000000001")
    td = register_taskdef(ecs, "web")
    return {"name": "c1", "arn": f"{ARN}:cluster/c1", "instance": ci, "taskdef": td}


def run_one(ecs, cluster="c1", taskdef="web", **kw) -> dict:
    r = ecs.run_task(cluster=cluster, taskDefinition=taskdef, **kw)
    assert r["failures"] == [], r["failures"]
    [task] = r["tasks"]
    return task


def stats(cluster_desc: dict) -> dict:
    return {kv["name"]: kv["value"] for kv in cluster_desc["statistics"]}


# --------------------------------------------------------------------------------------
# Clusters
# --------------------------------------------------------------------------------------


def test_create_cluster_is_idempotent_and_defaults(ecs):
    a = ecs.create_cluster(clusterName="prod", tags=[{"key": "env", "value": "prod"}])["cluster"]
    assert a["clusterArn"] == f"{ARN}:cluster/prod"
    assert a["status"] == "ACTIVE"
    assert a["registeredContainerInstancesCount"] == 0
    assert a["tags"] == [{"key": "env", "value": "prod"}]
    assert a["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    b = ecs.create_cluster(clusterName="prod")["cluster"]
    assert b["clusterArn"] == a["clusterArn"]
    assert b["tags"] == a["tags"]  # the second call did not replace the cluster
    assert ecs.list_clusters()["clusterArns"] == [a["clusterArn"]]
    # No name: the `default` cluster.
    d = ecs.create_cluster()["cluster"]
    assert d["clusterName"] == "default"


def test_create_cluster_rejects_bad_names(ecs):
    with pytest.raises(ClientError) as e:
        ecs.create_cluster(clusterName="bad name!")
    code, msg = error_of(e)
    assert code == "InvalidParameterException"
    assert "clusterName" in msg


def test_unknown_cluster_is_cluster_not_found(ecs):
    for call in (
        lambda: ecs.delete_cluster(cluster="nope"),
        lambda: ecs.list_tasks(cluster="nope"),
        lambda: ecs.run_task(cluster="nope", taskDefinition="web"),
        lambda: ecs.list_container_instances(cluster="nope"),
        lambda: ecs.describe_services(cluster="nope", services=["s"]),
        lambda: ecs.update_cluster_settings(cluster="nope", settings=[{"name": "containerInsights", "value": "enabled"}]),
    ):
        with pytest.raises(ecs.exceptions.ClusterNotFoundException) as e:
            call()
        assert error_of(e) == ("ClusterNotFoundException", "Cluster not found.")


def test_describe_clusters_failures_and_counts(ecs, cluster):
    r = ecs.describe_clusters(clusters=["c1", "ghost", f"{ARN}:cluster/ghost2"])
    assert [c["clusterName"] for c in r["clusters"]] == ["c1"]
    assert r["failures"] == [
        {"arn": f"{ARN}:cluster/ghost", "reason": "MISSING"},
        {"arn": f"{ARN}:cluster/ghost2", "reason": "MISSING"},
    ]
    c = r["clusters"][0]
    assert c["registeredContainerInstancesCount"] == 1
    assert c["pendingTasksCount"] == 0 and c["runningTasksCount"] == 0
    ecs.run_task(cluster="c1", taskDefinition="web", count=2)
    c = ecs.describe_clusters(clusters=[cluster["arn"]])["clusters"][0]
    assert c["pendingTasksCount"] == 2
    assert c["runningTasksCount"] == 0
    # Without `include` the optional parts are absent.
    assert "tags" not in c and "settings" not in c
    assert c.get("statistics", []) == []


def test_describe_clusters_include(ecs, cluster):
    ecs.tag_resource(resourceArn=cluster["arn"], tags=[{"key": "k", "value": "v"}])
    ecs.run_task(cluster="c1", taskDefinition="web")
    c = ecs.describe_clusters(clusters=["c1"], include=["STATISTICS", "TAGS", "SETTINGS"])["clusters"][0]
    assert c["tags"] == [{"key": "k", "value": "v"}]
    assert c["settings"] == [{"name": "containerInsights", "value": "disabled"}]
    s = stats(c)
    assert s["pendingEC2TasksCount"] == "1"
    assert s["runningEC2TasksCount"] == "0"
    assert s["runningFargateTasksCount"] == "0"


def test_delete_cluster_refusals(ecs, cluster):
    with pytest.raises(ecs.exceptions.ClusterContainsContainerInstancesException):
        ecs.delete_cluster(cluster="c1")
    task = run_one(ecs)
    ecs.deregister_container_instance(cluster="c1", containerInstance=cluster["instance"]["containerInstanceArn"], force=True)
    with pytest.raises(ecs.exceptions.ClusterContainsTasksException) as e:
        ecs.delete_cluster(cluster="c1")
    assert "Tasks" in error_of(e)[1]
    ecs.stop_task(cluster="c1", task=task["taskArn"])
    gone = ecs.delete_cluster(cluster="c1")["cluster"]
    assert gone["status"] == "INACTIVE"
    assert ecs.list_clusters()["clusterArns"] == []
    # An INACTIVE cluster is still described (as INACTIVE), and its name can be reused.
    assert ecs.describe_clusters(clusters=["c1"])["clusters"][0]["status"] == "INACTIVE"
    assert ecs.create_cluster(clusterName="c1")["cluster"]["status"] == "ACTIVE"


def test_delete_cluster_refused_while_services_are_active(ecs):
    ecs.create_cluster(clusterName="svc")
    register_taskdef(ecs, "web")
    ecs.create_service(cluster="svc", serviceName="api", taskDefinition="web", desiredCount=0)
    with pytest.raises(ecs.exceptions.ClusterContainsServicesException):
        ecs.delete_cluster(cluster="svc")
    ecs.delete_service(cluster="svc", service="api")
    assert ecs.delete_cluster(cluster="svc")["cluster"]["status"] == "INACTIVE"


def test_update_cluster_and_settings_and_capacity_providers(ecs):
    ecs.create_cluster(clusterName="u")
    c = ecs.update_cluster_settings(cluster="u", settings=[{"name": "containerInsights", "value": "enabled"}])["cluster"]
    assert c["settings"] == [{"name": "containerInsights", "value": "enabled"}]
    c = ecs.update_cluster(
        cluster="u",
        configuration={"executeCommandConfiguration": {"logging": "DEFAULT"}},
        settings=[{"name": "containerInsights", "value": "enhanced"}],
    )["cluster"]
    assert c["configuration"]["executeCommandConfiguration"]["logging"] == "DEFAULT"
    assert c["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.update_cluster_settings(cluster="u", settings=[{"name": "containerInsights", "value": "sometimes"}])
    assert "settings" in error_of(e)[1]
    c = ecs.put_cluster_capacity_providers(
        cluster="u",
        capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1, "base": 1}],
    )["cluster"]
    assert c["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    assert c["defaultCapacityProviderStrategy"] == [{"capacityProvider": "FARGATE", "weight": 1, "base": 1}]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.put_cluster_capacity_providers(
            cluster="u", capacityProviders=["FARGATE"], defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT"}]
        )
    assert "defaultCapacityProviderStrategy" in error_of(e)[1]


# --------------------------------------------------------------------------------------
# Task definitions
# --------------------------------------------------------------------------------------


def test_task_definition_revisions_and_resolution(ecs):
    r1 = ecs.register_task_definition(family="app", containerDefinitions=[container()], tags=[{"key": "a", "value": "1"}])
    td1 = r1["taskDefinition"]
    assert td1["revision"] == 1
    assert td1["taskDefinitionArn"] == f"{ARN}:task-definition/app:1"
    assert td1["status"] == "ACTIVE"
    assert td1["networkMode"] == "bridge"
    assert td1["containerDefinitions"][0]["essential"] is True
    assert isinstance(td1["registeredAt"], dt.datetime)
    assert r1["tags"] == [{"key": "a", "value": "1"}]
    td2 = register_taskdef(ecs, "app", memory=256)
    assert td2["revision"] == 2
    # family -> latest ACTIVE; family:rev; full ARN.
    assert ecs.describe_task_definition(taskDefinition="app")["taskDefinition"]["revision"] == 2
    assert ecs.describe_task_definition(taskDefinition="app:1")["taskDefinition"]["containerDefinitions"][0]["memory"] == 128
    assert ecs.describe_task_definition(taskDefinition=td2["taskDefinitionArn"])["taskDefinition"]["revision"] == 2
    with_tags = ecs.describe_task_definition(taskDefinition="app:1", include=["TAGS"])
    assert with_tags["tags"] == [{"key": "a", "value": "1"}]
    assert "tags" not in ecs.describe_task_definition(taskDefinition="app:1")
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.describe_task_definition(taskDefinition="app:9")
    assert error_of(e) == ("ClientException", "Unable to describe task definition.")
    with pytest.raises(ecs.exceptions.ClientException):
        ecs.describe_task_definition(taskDefinition="nothing")


def test_deregister_then_delete_task_definition(ecs):
    register_taskdef(ecs, "app")
    register_taskdef(ecs, "app")
    # Deleting an ACTIVE revision fails (per item, not as an error).
    r = ecs.delete_task_definitions(taskDefinitions=["app:1"])
    assert r["taskDefinitions"] == []
    assert r["failures"][0]["arn"] == "app:1" and "ACTIVE" in r["failures"][0]["reason"]
    td = ecs.deregister_task_definition(taskDefinition="app:2")["taskDefinition"]
    assert td["status"] == "INACTIVE"
    assert isinstance(td["deregisteredAt"], dt.datetime)
    # The family now resolves to the latest ACTIVE revision, 1.
    assert ecs.describe_task_definition(taskDefinition="app")["taskDefinition"]["revision"] == 1
    # An INACTIVE revision is still described by family:rev but cannot be run.
    assert ecs.describe_task_definition(taskDefinition="app:2")["taskDefinition"]["status"] == "INACTIVE"
    with pytest.raises(ClientError) as e:
        ecs.deregister_task_definition(taskDefinition="app")
    assert error_of(e) == ("ClientException", "Revision is missing.")  # ECS's words
    r = ecs.delete_task_definitions(taskDefinitions=["app:2", "app:7"])
    assert [t["status"] for t in r["taskDefinitions"]] == ["DELETE_IN_PROGRESS"]
    assert [f["arn"] for f in r["failures"]] == ["app:7"]
    listed = ecs.list_task_definitions(status="DELETE_IN_PROGRESS")["taskDefinitionArns"]
    assert listed == [f"{ARN}:task-definition/app:2"]


def test_list_task_definitions_status_sort_prefix(ecs):
    for fam in ("alpha", "alpha", "beta", "alpha"):
        register_taskdef(ecs, fam)
    ecs.deregister_task_definition(taskDefinition="alpha:2")
    arns = ecs.list_task_definitions()["taskDefinitionArns"]
    assert arns == [f"{ARN}:task-definition/{x}" for x in ("alpha:1", "alpha:3", "beta:1")]
    desc = ecs.list_task_definitions(sort="DESC")["taskDefinitionArns"]
    assert desc == list(reversed(arns))
    assert ecs.list_task_definitions(familyPrefix="alpha")["taskDefinitionArns"] == arns[:2]
    assert ecs.list_task_definitions(status="INACTIVE")["taskDefinitionArns"] == [f"{ARN}:task-definition/alpha:2"]
    # Families: ALL by default; ACTIVE/INACTIVE by whether an ACTIVE revision is left.
    assert ecs.list_task_definition_families()["families"] == ["alpha", "beta"]
    ecs.deregister_task_definition(taskDefinition="beta:1")
    assert ecs.list_task_definition_families(status="ACTIVE")["families"] == ["alpha"]
    assert ecs.list_task_definition_families(status="INACTIVE")["families"] == ["beta"]
    assert ecs.list_task_definition_families(familyPrefix="b")["families"] == ["beta"]


def test_task_definition_validation_names_the_field(ecs):
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family="x", containerDefinitions=[{"name": "a", "image": "busybox"}])
    assert "memory" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family="bad family", containerDefinitions=[container()])
    assert "family" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family="x", containerDefinitions=[container("a"), container("a")])
    assert "unique" in error_of(e)[1]
    # A wrong enum value is caught by the server's parser and the member named.
    with pytest.raises(ClientError) as e:
        ecs.register_task_definition(family="x", containerDefinitions=[container()], networkMode="sideways")
    code, msg = error_of(e)
    assert code == "InvalidParameterException" and "networkMode" in msg


def test_depends_on_conditions_that_could_never_hold_are_refused(ecs):
    def dep(name, on, condition, **kw):
        return container(name, dependsOn=[{"containerName": on, "condition": condition}], **kw)

    # COMPLETE/SUCCESS wait for an exit, which an essential container must not do.
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family="d", containerDefinitions=[container("init"), dep("app", "init", "SUCCESS")])
    assert "'init' is essential" in error_of(e)[1]
    # HEALTHY needs a health check on the dependency.
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family="d", containerDefinitions=[container("db"), dep("app", "db", "HEALTHY")])
    assert "'db' has no healthCheck" in error_of(e)[1]
    # A cycle could never start.
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family="d", containerDefinitions=[dep("a", "b", "START"), dep("b", "a", "START")])
    assert "cycle" in error_of(e)[1] and "a, b" in error_of(e)[1]
    # The same conditions on fitting dependencies are accepted.
    ok = ecs.register_task_definition(family="d", containerDefinitions=[
        container("init", essential=False),
        container("db", healthCheck={"command": ["CMD-SHELL", "true"]}),
        container("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}, {"containerName": "db", "condition": "HEALTHY"}]),
    ])["taskDefinition"]
    assert [d["condition"] for d in ok["containerDefinitions"][2]["dependsOn"]] == ["SUCCESS", "HEALTHY"]


def test_fargate_size_validation(ecs):
    fargate = dict(requiresCompatibilities=["FARGATE"], networkMode="awsvpc")
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family="f", containerDefinitions=[container(memory=128, cpu=0)], cpu="256", memory="4096", **fargate)
    assert "No Fargate configuration exists for given values: 256 CPU, 4096 memory" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.register_task_definition(family="f", containerDefinitions=[container()], cpu="256", memory="512", requiresCompatibilities=["FARGATE"])
    assert "awsvpc" in error_of(e)[1]
    ok = ecs.register_task_definition(family="f", containerDefinitions=[container()], cpu="0.25 vCPU", memory="0.5GB", **fargate)["taskDefinition"]
    assert (ok["cpu"], ok["memory"]) == ("256", "512")
    assert "FARGATE" in ok["compatibilities"]
    assert ok["requiresCompatibilities"] == ["FARGATE"]


# --------------------------------------------------------------------------------------
# Container instances and attributes
# --------------------------------------------------------------------------------------


def test_register_and_reregister_container_instance(ecs):
    ecs.create_cluster(clusterName="c")
    a = register_instance(ecs, "c", "i-aaaaaaaaaaaaaaaaa", instance_type="t3.large")
    assert a["containerInstanceArn"].startswith(f"{ARN}:container-instance/c/")
    assert a["status"] == "ACTIVE" and a["agentConnected"] is True
    remaining = {r["name"]: r for r in a["remainingResources"]}
    assert remaining["CPU"]["integerValue"] == 2048 and remaining["MEMORY"]["integerValue"] == 4096
    again = register_instance(ecs, "c", "i-aaaaaaaaaaaaaaaaa")
    assert again["containerInstanceArn"] == a["containerInstanceArn"]
    assert again["version"] > a["version"]
    other = register_instance(ecs, "c", "i-bbbbbbbbbbbbbbbbb")
    assert other["containerInstanceArn"] != a["containerInstanceArn"]
    assert sorted(ecs.list_container_instances(cluster="c")["containerInstanceArns"]) == sorted(
        [a["containerInstanceArn"], other["containerInstanceArn"]]
    )
    d = ecs.describe_container_instances(cluster="c", containerInstances=[a["containerInstanceArn"], "0123abcd"])
    assert [x["ec2InstanceId"] for x in d["containerInstances"]] == ["i-aaaaaaaaaaaaaaaaa"]
    assert d["failures"] == [{"arn": "0123abcd", "reason": "MISSING"}]
    # The agent sees ClientException for an unknown cluster, as on AWS.
    with pytest.raises(ecs.exceptions.ClientException) as e:
        register_instance(ecs, "nope", "i-ccccccccccccccccc")
    assert error_of(e)[1] == "Cluster not found."
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.register_container_instance(cluster="c", totalResources=[{"name": "FLUX", "type": "INTEGER", "integerValue": 1}])
    assert "totalResources" in error_of(e)[1]


def test_list_container_instances_filter_and_status(ecs):
    ecs.create_cluster(clusterName="c")
    large = register_instance(ecs, "c", "i-00000000000000001", instance_type="t3.large", az="us-east-1a")
    small = register_instance(ecs, "c", "i-00000000000000002", instance_type="t3.small", az="us-east-1b")
    other = register_instance(ecs, "c", "i-00000000000000003", instance_type="m5.xlarge", az="us-east-1c")

    def listed(**kw):
        return set(ecs.list_container_instances(cluster="c", **kw)["containerInstanceArns"])

    arn = lambda i: i["containerInstanceArn"]  # noqa: E731
    assert listed(filter="attribute:ecs.instance-type == t3.large") == {arn(large)}
    assert listed(filter="attribute:ecs.instance-type =~ t3.*") == {arn(large), arn(small)}
    assert listed(filter="attribute:ecs.availability-zone in [us-east-1a, us-east-1c]") == {arn(large), arn(other)}
    assert listed(filter="attribute:ecs.instance-type != t3.large and ec2InstanceId != i-00000000000000003") == {arn(small)}
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.list_container_instances(cluster="c", filter="attribute:ecs.instance-type = t3.large")
    assert "filter" in error_of(e)[1]

    r = ecs.update_container_instances_state(cluster="c", containerInstances=[arn(small), "deadbeef"], status="DRAINING")
    assert [c["status"] for c in r["containerInstances"]] == ["DRAINING"]
    assert r["failures"] == [{"arn": "deadbeef", "reason": "MISSING"}]
    assert listed(status="DRAINING") == {arn(small)}
    assert listed(status="ACTIVE") == {arn(large), arn(other)}
    assert listed() == {arn(large), arn(small), arn(other)}
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.update_container_instances_state(cluster="c", containerInstances=[arn(small)], status="REGISTERING")
    gone = ecs.deregister_container_instance(cluster="c", containerInstance=arn(other))["containerInstance"]
    assert gone["status"] == "INACTIVE"
    assert arn(other) not in listed()


def test_filters_over_tasks_on_instances(ecs, cluster):
    other = register_instance(ecs, "c1", "i-00000000000000002")
    ecs.start_task(cluster="c1", taskDefinition="web", containerInstances=[other["containerInstanceArn"]], group="batch")
    arn = cluster["instance"]["containerInstanceArn"]
    assert ecs.list_container_instances(cluster="c1", filter="task:group == batch")["containerInstanceArns"] == [other["containerInstanceArn"]]
    assert ecs.list_container_instances(cluster="c1", filter="task:group != batch")["containerInstanceArns"] == [arn]
    assert ecs.list_container_instances(cluster="c1", filter="runningTasksCount == 0")["containerInstanceArns"] != []


def test_deregister_instance_with_tasks_needs_force(ecs, cluster):
    run_one(ecs)
    arn = cluster["instance"]["containerInstanceArn"]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.deregister_container_instance(cluster="c1", containerInstance=arn)
    assert ecs.deregister_container_instance(cluster="c1", containerInstance=arn, force=True)["containerInstance"]["status"] == "INACTIVE"


def test_attributes_put_delete_list(ecs, cluster):
    arn = cluster["instance"]["containerInstanceArn"]
    put = ecs.put_attributes(
        cluster="c1",
        attributes=[
            {"name": "stack", "value": "prod", "targetId": arn},
            {"name": "gpu", "targetId": arn, "targetType": "container-instance"},
        ],
    )["attributes"]
    assert [(a["name"], a.get("value"), a["targetId"], a["targetType"]) for a in put] == [
        ("stack", "prod", arn, "container-instance"),
        ("gpu", None, arn, "container-instance"),
    ]
    names = {a["name"] for a in ecs.list_attributes(cluster="c1", targetType="container-instance")["attributes"]}
    assert {"stack", "gpu", "ecs.instance-type", "ecs.os-type"} <= names
    only = ecs.list_attributes(cluster="c1", targetType="container-instance", attributeName="stack", attributeValue="prod")["attributes"]
    assert [(a["name"], a["value"], a["targetId"]) for a in only] == [("stack", "prod", arn)]
    # The filter language sees custom attributes.
    assert ecs.list_container_instances(cluster="c1", filter="attribute:stack == prod")["containerInstanceArns"] == [arn]
    assert ecs.list_container_instances(cluster="c1", filter="attribute:gpu exists")["containerInstanceArns"] == [arn]
    ecs.delete_attributes(cluster="c1", attributes=[{"name": "stack", "targetId": arn}])
    assert ecs.list_attributes(cluster="c1", targetType="container-instance", attributeName="stack")["attributes"] == []
    with pytest.raises(ecs.exceptions.TargetNotFoundException) as e:
        ecs.put_attributes(cluster="c1", attributes=[{"name": "x", "value": "y", "targetId": "ffffffff"}])
    assert "ffffffff" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.TargetNotFoundException):
        ecs.delete_attributes(cluster="c1", attributes=[{"name": "x", "targetId": "ffffffff"}])
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.put_attributes(cluster="c1", attributes=[{"name": "bad name!", "targetId": arn}])
    assert "attribute name" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.AttributeLimitExceededException):
        ecs.put_attributes(cluster="c1", attributes=[{"name": f"a{i}", "value": "v", "targetId": arn} for i in range(10)])


# --------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------


def test_run_task_placement_and_counts(ecs, cluster):
    r = ecs.run_task(cluster="c1", taskDefinition="web", count=3, startedBy="me", group="g1")
    assert r["failures"] == []
    assert len(r["tasks"]) == 3
    for t in r["tasks"]:
        assert t["lastStatus"] == "PENDING" and t["desiredStatus"] == "RUNNING"
        assert t["clusterArn"] == cluster["arn"]
        assert t["taskDefinitionArn"] == cluster["taskdef"]["taskDefinitionArn"]
        assert t["containerInstanceArn"] == cluster["instance"]["containerInstanceArn"]
        assert t["startedBy"] == "me" and t["group"] == "g1"
        assert t["launchType"] == "EC2"
        assert t["availabilityZone"] == "us-east-1a"
    ci = ecs.describe_container_instances(cluster="c1", containerInstances=[cluster["instance"]["containerInstanceArn"]])["containerInstances"][0]
    remaining = {x["name"]: x.get("integerValue") for x in ci["remainingResources"]}
    assert remaining["MEMORY"] == 4096 - 3 * 128 and remaining["CPU"] == 2048 - 3 * 128
    assert ci["pendingTasksCount"] == 3


def test_run_task_failures(ecs, cluster):
    register_taskdef(ecs, "huge", memory=8192)
    r = ecs.run_task(cluster="c1", taskDefinition="huge")
    assert r["tasks"] == []
    assert r["failures"] == [{"arn": cluster["instance"]["containerInstanceArn"], "reason": "RESOURCE:MEMORY"}]
    assert "count" in invalid_parameter(ecs, ecs.run_task, cluster="c1", taskDefinition="web", count=11)
    with pytest.raises(ecs.exceptions.ClientException):
        ecs.run_task(cluster="c1", taskDefinition="ghost")
    assert "startedBy" in invalid_parameter(ecs, ecs.run_task, cluster="c1", taskDefinition="web", startedBy="not valid!")
    overrides = {"containerOverrides": [{"name": "nope", "memory": 64}]}
    assert "nope" in invalid_parameter(ecs, ecs.run_task, cluster="c1", taskDefinition="web", overrides=overrides)
    # A cluster without instances.
    ecs.create_cluster(clusterName="empty")
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.run_task(cluster="empty", taskDefinition="web")
    assert "Container Instances" in error_of(e)[1]


def test_run_task_capacity_provider_strategy(ecs, cluster):
    # A provider the cluster does not have is a bad parameter...
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.run_task(cluster="c1", taskDefinition="web", capacityProviderStrategy=[{"capacityProvider": "nope", "weight": 1}])
    assert "capacityProviderStrategy" in error_of(e)[1]
    # ...and FARGATE, even when associated, must not silently run on the EC2 instances:
    # an EC2-only definition is refused as ECS refuses it (docs/fargate.md).
    ecs.put_cluster_capacity_providers(cluster="c1", capacityProviders=["FARGATE"], defaultCapacityProviderStrategy=[])
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.run_task(cluster="c1", taskDefinition="web", capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
    assert "launch_type FARGATE" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.run_task(cluster="c1", taskDefinition="web", launchType="FARGATE")
    assert ecs.list_tasks(cluster="c1")["taskArns"] == []


def test_run_task_fills_the_instance_then_fails(ecs, cluster):
    register_taskdef(ecs, "big", memory=1500, cpu=10)
    first = ecs.run_task(cluster="c1", taskDefinition="big", count=3)
    assert len(first["tasks"]) == 2  # 2 * 1500 <= 4096 < 3 * 1500
    assert [f["reason"] for f in first["failures"]] == ["RESOURCE:MEMORY"]
    # Stopping a task releases its memory.
    ecs.stop_task(cluster="c1", task=first["tasks"][0]["taskArn"])
    assert len(ecs.run_task(cluster="c1", taskDefinition="big")["tasks"]) == 1


def test_run_task_member_of_constraint(ecs, cluster):
    small = register_instance(ecs, "c1", "i-00000000000000002", instance_type="t3.small")
    only_small = [{"type": "memberOf", "expression": "attribute:ecs.instance-type == t3.small"}]
    r = ecs.run_task(cluster="c1", taskDefinition="web", count=10, placementConstraints=only_small)
    assert r["failures"] == []
    assert {t["containerInstanceArn"] for t in r["tasks"]} == {small["containerInstanceArn"]}
    r = ecs.run_task(cluster="c1", taskDefinition="web", placementConstraints=[{"type": "memberOf", "expression": "attribute:ecs.instance-type == m9.huge"}])
    assert r["tasks"] == [] and r["failures"]


def test_run_task_distinct_instance_constraint(ecs, cluster):
    register_instance(ecs, "c1", "i-00000000000000002")
    r = ecs.run_task(cluster="c1", taskDefinition="web", count=3, placementConstraints=[{"type": "distinctInstance"}])
    assert len(r["tasks"]) == 2
    assert len({t["containerInstanceArn"] for t in r["tasks"]}) == 2
    assert r["failures"]


def test_run_task_invalid_placement_is_refused(ecs, cluster):
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.run_task(cluster="c1", taskDefinition="web", placementConstraints=[{"type": "memberOf", "expression": "attribute:x = y"}])
    assert "expression" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.run_task(cluster="c1", taskDefinition="web", placementStrategy=[{"type": "binpack", "field": "nonsense"}])
    assert "field" in error_of(e)[1]


def test_static_host_ports_conflict(ecs, cluster):
    ci = cluster["instance"]["containerInstanceArn"]
    ecs.register_task_definition(family="tcp", containerDefinitions=[container(portMappings=[{"containerPort": 80, "hostPort": 8080}])])
    ecs.register_task_definition(family="udp", containerDefinitions=[container(portMappings=[{"containerPort": 53, "hostPort": 53, "protocol": "udp"}])])
    ecs.register_task_definition(family="ssh", containerDefinitions=[container(portMappings=[{"containerPort": 22, "hostPort": 22}])])
    r = ecs.run_task(cluster="c1", taskDefinition="tcp", count=2)
    assert len(r["tasks"]) == 1 and r["failures"] == [{"arn": ci, "reason": "RESOURCE:PORTS"}]
    r = ecs.run_task(cluster="c1", taskDefinition="udp", count=2)
    assert len(r["tasks"]) == 1 and r["failures"] == [{"arn": ci, "reason": "RESOURCE:PORTS_UDP"}]
    # Port 22 is reserved by the instance's registered PORTS.
    assert ecs.run_task(cluster="c1", taskDefinition="ssh")["failures"] == [{"arn": ci, "reason": "RESOURCE:PORTS"}]
    [d] = ecs.describe_container_instances(cluster="c1", containerInstances=[ci])["containerInstances"]
    remaining = {x["name"]: x.get("stringSetValue") for x in d["remainingResources"]}
    assert "8080" in remaining["PORTS"] and remaining["PORTS_UDP"] == ["53"]


def test_run_task_client_token_is_idempotent(ecs, cluster):
    a = ecs.run_task(cluster="c1", taskDefinition="web", clientToken="tok-1")["tasks"]
    b = ecs.run_task(cluster="c1", taskDefinition="web", clientToken="tok-1")["tasks"]
    assert [t["taskArn"] for t in a] == [t["taskArn"] for t in b]
    assert len(ecs.list_tasks(cluster="c1")["taskArns"]) == 1


def test_start_task(ecs, cluster):
    arn = cluster["instance"]["containerInstanceArn"]
    r = ecs.start_task(cluster="c1", taskDefinition="web", containerInstances=[arn, "0000dead"], startedBy="starter")
    assert [t["containerInstanceArn"] for t in r["tasks"]] == [arn]
    assert r["tasks"][0]["startedBy"] == "starter"
    assert r["failures"] == [{"arn": "0000dead", "reason": "MISSING"}]
    ecs.update_container_instances_state(cluster="c1", containerInstances=[arn], status="DRAINING")
    r = ecs.start_task(cluster="c1", taskDefinition="web", containerInstances=[arn])
    assert r["tasks"] == []
    # The failure names the instance that was refused, and why.
    assert [f.get("arn") for f in r["failures"]] == [arn], r["failures"]
    assert "DRAINING" in r["failures"][0]["reason"]


def test_stop_task_records_the_reason(ecs, cluster):
    t = run_one(ecs)
    stopped = ecs.stop_task(cluster="c1", task=t["taskArn"], reason="because")["task"]
    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["stoppedReason"] == "because"
    [d] = ecs.describe_tasks(cluster="c1", tasks=[t["taskArn"]])["tasks"]
    assert d["lastStatus"] == "STOPPED" and d["stoppedReason"] == "because" and d["stopCode"] == "UserInitiated"
    assert all(c["lastStatus"] == "STOPPED" for c in d["containers"])
    assert isinstance(d["stoppedAt"], dt.datetime)
    # Stopping again changes nothing.
    again = ecs.stop_task(cluster="c1", task=t["taskArn"], reason="other")["task"]
    assert again["stoppedReason"] == "because"
    # By bare id too; unknown tasks are InvalidParameterException.
    t2 = run_one(ecs)
    ecs.stop_task(cluster="c1", task=t2["taskArn"].rsplit("/", 1)[1])
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.stop_task(cluster="c1", task="0123456789abcdef")


def test_propagate_tags_from_the_task_definition(ecs, cluster):
    ecs.tag_resource(resourceArn=cluster["taskdef"]["taskDefinitionArn"], tags=[{"key": "team", "value": "web"}])
    t = run_one(ecs, propagateTags="TASK_DEFINITION", tags=[{"key": "run", "value": "1"}])
    [d] = ecs.describe_tasks(cluster="c1", tasks=[t["taskArn"]], include=["TAGS"])["tasks"]
    assert {x["key"]: x["value"] for x in d["tags"]} == {"team": "web", "run": "1"}
    plain = run_one(ecs, tags=[{"key": "run", "value": "2"}])
    assert ecs.list_tags_for_resource(resourceArn=plain["taskArn"])["tags"] == [{"key": "run", "value": "2"}]


def test_describe_tasks_missing_and_tags(ecs, cluster):
    t = run_one(ecs, tags=[{"key": "job", "value": "nightly"}])
    r = ecs.describe_tasks(cluster="c1", tasks=[t["taskArn"], "feedface"])
    assert r["failures"] == [{"arn": f"{ARN}:task/c1/feedface", "reason": "MISSING"}]
    assert "tags" not in r["tasks"][0]
    tagged = ecs.describe_tasks(cluster="c1", tasks=[t["taskArn"]], include=["TAGS"])["tasks"][0]
    assert tagged["tags"] == [{"key": "job", "value": "nightly"}]


def test_list_tasks_filters(ecs, cluster):
    register_taskdef(ecs, "batch")
    second = register_instance(ecs, "c1", "i-00000000000000002")
    web = run_one(ecs, startedBy="alice")
    batch = ecs.start_task(cluster="c1", taskDefinition="batch", containerInstances=[second["containerInstanceArn"]], startedBy="bob")["tasks"][0]
    gone = run_one(ecs, taskdef="batch")
    ecs.stop_task(cluster="c1", task=gone["taskArn"])

    def listed(**kw):
        return set(ecs.list_tasks(cluster="c1", **kw)["taskArns"])

    assert listed() == {web["taskArn"], batch["taskArn"]}
    assert listed(family="web") == {web["taskArn"]}
    assert listed(family="batch") == {batch["taskArn"]}
    assert listed(startedBy="bob") == {batch["taskArn"]}
    # RunTask placed `web` on either instance; `batch` was started on the second.
    on_second = {t["taskArn"] for t in (web, batch) if t["containerInstanceArn"] == second["containerInstanceArn"]}
    on_first = {t["taskArn"] for t in (web, batch) if t["containerInstanceArn"] == cluster["instance"]["containerInstanceArn"]}
    assert batch["taskArn"] in on_second
    assert listed(containerInstance=second["containerInstanceArn"]) == on_second
    assert listed(containerInstance=second["containerInstanceArn"].rsplit("/", 1)[1]) == on_second
    assert listed(containerInstance=cluster["instance"]["containerInstanceArn"]) == on_first
    assert listed(desiredStatus="STOPPED") == {gone["taskArn"]}
    assert listed(family="batch", desiredStatus="STOPPED") == {gone["taskArn"]}
    assert listed(launchType="FARGATE") == set()


def test_regions_are_separate(client_factory):
    eu, us = client_factory("eu-west-1"), client_factory("us-east-1")
    c = eu.create_cluster(clusterName="euro")["cluster"]
    assert c["clusterArn"] == f"arn:aws:ecs:eu-west-1:{ACCOUNT}:cluster/euro"
    assert us.list_clusters()["clusterArns"] == []
    r = us.describe_clusters(clusters=["euro"])
    assert r["clusters"] == [] and r["failures"][0]["reason"] == "MISSING"
    with pytest.raises(us.exceptions.ClusterNotFoundException):
        us.list_tasks(cluster="euro")
    # An eu-west-1 ARN does not name a cluster in us-east-1 either.
    with pytest.raises(us.exceptions.ClusterNotFoundException):
        us.list_tasks(cluster=c["clusterArn"])
    # The same name can exist in both regions, independently.
    assert us.create_cluster(clusterName="euro")["cluster"]["clusterArn"] == f"{ARN}:cluster/euro"
    td = eu.register_task_definition(family="x", containerDefinitions=[container()])["taskDefinition"]
    assert td["taskDefinitionArn"].startswith("arn:aws:ecs:eu-west-1:")
    assert us.list_task_definitions()["taskDefinitionArns"] == []


# --------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------


def test_tags_on_cluster_task_definition_task(ecs, cluster):
    task = run_one(ecs)
    td_arn = cluster["taskdef"]["taskDefinitionArn"]
    for arn in (cluster["arn"], td_arn, task["taskArn"], cluster["instance"]["containerInstanceArn"]):
        assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == []
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
        ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "3"}])
        tags = {t["key"]: t["value"] for t in ecs.list_tags_for_resource(resourceArn=arn)["tags"]}
        assert tags == {"a": "3", "b": "2"}, arn
        ecs.untag_resource(resourceArn=arn, tagKeys=["a", "zzz"])
        assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "b", "value": "2"}], arn
    assert ecs.describe_task_definition(taskDefinition=td_arn, include=["TAGS"])["tags"] == [{"key": "b", "value": "2"}]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.tag_resource(resourceArn=cluster["arn"], tags=[{"key": "aws:reserved", "value": "x"}])
    assert "aws:" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.list_tags_for_resource(resourceArn=f"{ARN}:cluster/ghost")
    # ListTagsForResource declares no ResourceNotFoundException; TagResource does.
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.list_tags_for_resource(resourceArn=f"{ARN}:task/c1/0123456789abcdef")
    assert "resourceArn" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.ResourceNotFoundException):
        ecs.tag_resource(resourceArn=f"{ARN}:task/c1/0123456789abcdef", tags=[{"key": "a", "value": "b"}])
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.tag_resource(resourceArn="not-an-arn", tags=[{"key": "a", "value": "b"}])
    assert "resourceArn" in error_of(e)[1]


# --------------------------------------------------------------------------------------
# Account settings
# --------------------------------------------------------------------------------------


def test_account_settings(ecs):
    root = f"arn:aws:iam::{ACCOUNT}:root"
    user = f"arn:aws:iam::{ACCOUNT}:user/alice"
    pages = ecs.get_paginator("list_account_settings").paginate(effectiveSettings=True)
    eff = {s["name"]: s for page in pages for s in page["settings"]}
    assert eff["containerInsights"]["value"] == "disabled"
    assert eff["containerInsights"]["type"] == "aws_managed"
    assert eff["taskLongArnFormat"]["value"] == "enabled"
    assert ecs.list_account_settings()["settings"] == []

    s = ecs.put_account_setting_default(name="containerInsights", value="enabled")["setting"]
    assert s == {"name": "containerInsights", "value": "enabled", "principalArn": root, "type": "user"}
    u = ecs.put_account_setting(name="containerInsights", value="enhanced", principalArn=user)["setting"]
    assert u["principalArn"] == user and u["value"] == "enhanced"
    # alice's own setting wins; bob inherits the account default.
    alice = ecs.list_account_settings(name="containerInsights", principalArn=user, effectiveSettings=True)["settings"]
    assert [x["value"] for x in alice] == ["enhanced"]
    bob = ecs.list_account_settings(name="containerInsights", principalArn=f"arn:aws:iam::{ACCOUNT}:user/bob", effectiveSettings=True)["settings"]
    assert [x["value"] for x in bob] == ["enabled"]
    assert ecs.list_account_settings(principalArn=user)["settings"] == [u]
    assert [x["value"] for x in ecs.list_account_settings(name="containerInsights", value="enhanced", principalArn=user)["settings"]] == ["enhanced"]

    d = ecs.delete_account_setting(name="containerInsights", principalArn=user)["setting"]
    assert d["value"] == "enhanced"
    alice = ecs.list_account_settings(name="containerInsights", principalArn=user, effectiveSettings=True)["settings"]
    assert [x["value"] for x in alice] == ["enabled"]
    # The root's own setting is the account default (as on AWS): what PutAccountSettingDefault
    # set is listed for the root, changed by PutAccountSetting without a principal, and deleted
    # by DeleteAccountSetting without one.
    assert ecs.list_account_settings(name="containerInsights")["settings"] == [s]
    ecs.put_account_setting(name="containerInsights", value="disabled")
    bob = ecs.list_account_settings(name="containerInsights", principalArn=f"arn:aws:iam::{ACCOUNT}:user/bob", effectiveSettings=True)["settings"]
    assert [x["value"] for x in bob] == ["disabled"]
    d = ecs.delete_account_setting(name="containerInsights")["setting"]
    assert d["principalArn"] == root and d["value"] == "disabled"
    eff = ecs.list_account_settings(name="containerInsights", effectiveSettings=True)["settings"]
    assert [(x["value"], x["type"]) for x in eff] == [("disabled", "aws_managed")]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.delete_account_setting(name="containerInsights")
    assert "containerInsights" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.put_account_setting(name="containerInsights", value="maybe")
    assert "value" in error_of(e)[1]
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.put_account_setting(name="taskLongArnFormat", value="enabled", principalArn="arn:aws:iam::999999999999:user/x")
    assert "principalArn" in error_of(e)[1]


# --------------------------------------------------------------------------------------
# Agent-facing operations, waiters
# --------------------------------------------------------------------------------------


def test_discover_poll_endpoint(ecs, server, cluster):
    r = ecs.discover_poll_endpoint(cluster="c1", containerInstance=cluster["instance"]["containerInstanceArn"])
    host = server.endpoint.removeprefix("http://")
    assert r["endpoint"] == f"http://{host}" and r["telemetryEndpoint"] == f"http://{host}"
    # DiscoverPollEndpoint declares no ClusterNotFoundException: the agent gets ClientException.
    with pytest.raises(ecs.exceptions.ClientException) as e:
        ecs.discover_poll_endpoint(cluster="nope")
    assert error_of(e)[1] == "Cluster not found."



def test_task_state_changes_and_waiters(ecs, cluster):
    task = run_one(ecs)
    arn = task["taskArn"]
    name = task["containers"][0]["name"]
    # tasks_running fails fast (STOPPED is a failure acceptor) only later; here it must succeed
    # once the agent reports RUNNING.
    ack = ecs.submit_task_state_change(
        cluster="c1", task=arn, status="RUNNING",
        containers=[{"containerName": name, "status": "RUNNING", "runtimeId": "abc123"}],
        pullStartedAt=dt.datetime.now(dt.timezone.utc), pullStoppedAt=dt.datetime.now(dt.timezone.utc),
    )
    assert ack["acknowledgment"] == "ACK"
    ecs.get_waiter("tasks_running").wait(cluster="c1", tasks=[arn], WaiterConfig=FAST)
    [t] = ecs.describe_tasks(cluster="c1", tasks=[arn])["tasks"]
    assert t["lastStatus"] == "RUNNING" and isinstance(t["startedAt"], dt.datetime)
    assert t["containers"][0]["lastStatus"] == "RUNNING" and t["containers"][0]["runtimeId"] == "abc123"
    c = ecs.describe_clusters(clusters=["c1"])["clusters"][0]
    assert (c["runningTasksCount"], c["pendingTasksCount"]) == (1, 0)

    # A backwards report (PENDING after RUNNING) is acknowledged and ignored.
    assert ecs.submit_task_state_change(cluster="c1", task=arn, status="PENDING")["acknowledgment"] == "ACK"
    assert ecs.describe_tasks(cluster="c1", tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"

    ecs.submit_container_state_change(cluster="c1", task=arn, containerName=name, status="STOPPED", exitCode=3, reason="exited")
    ecs.submit_task_state_change(cluster="c1", task=arn, status="STOPPED", reason="Essential container in task exited")
    ecs.get_waiter("tasks_stopped").wait(cluster="c1", tasks=[arn], WaiterConfig=FAST)
    [t] = ecs.describe_tasks(cluster="c1", tasks=[arn])["tasks"]
    assert t["lastStatus"] == "STOPPED" and t["desiredStatus"] == "STOPPED"
    assert t["stopCode"] == "EssentialContainerExited"
    assert t["stoppedReason"] == "Essential container in task exited"
    assert t["containers"][0]["exitCode"] == 3 and t["containers"][0]["reason"] == "exited"
    # RUNNING after STOPPED is ignored too.
    ecs.submit_task_state_change(cluster="c1", task=arn, status="RUNNING")
    assert ecs.describe_tasks(cluster="c1", tasks=[arn])["tasks"][0]["lastStatus"] == "STOPPED"
    # ...and the tasks_running waiter now fails instead of hanging.
    with pytest.raises(WaiterError):
        ecs.get_waiter("tasks_running").wait(cluster="c1", tasks=[arn], WaiterConfig=FAST)
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.submit_task_state_change(cluster="c1", task=arn, status="EXPLODED")
    assert "status" in error_of(e)[1]


def test_waiter_polls_until_the_agent_reports(ecs, client_factory, cluster):
    """tasks_running started while the task is PENDING succeeds once the agent reports RUNNING."""
    arn = run_one(ecs)["taskArn"]
    waiter_client = client_factory()
    polls = []
    waiter_client.meta.events.register("after-call.ecs.DescribeTasks", lambda parsed, **_: polls.append(parsed["tasks"][0]["lastStatus"]))
    outcome = {}

    def wait():
        try:
            waiter_client.get_waiter("tasks_running").wait(cluster="c1", tasks=[arn], WaiterConfig=FAST)
            outcome["ok"] = True
        except Exception as e:  # noqa: BLE001 - reported below
            outcome["error"] = e

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    wait_for(lambda: polls, "the waiter's first DescribeTasks", deadline=10, interval=0.05, retry_errors=True)
    assert polls[0] == "PENDING" and thread.is_alive()
    ecs.submit_task_state_change(cluster="c1", task=arn, status="RUNNING")
    thread.join(timeout=15)
    assert not thread.is_alive(), "the waiter did not finish"
    assert outcome == {"ok": True}
    assert polls[-1] == "RUNNING" and len(polls) >= 2


def test_stop_task_on_a_running_task_waits_for_the_agent(ecs, cluster):
    arn = run_one(ecs)["taskArn"]
    ecs.submit_task_state_change(cluster="c1", task=arn, status="RUNNING")
    r = ecs.stop_task(cluster="c1", task=arn, reason="scale in")["task"]
    assert (r["lastStatus"], r["desiredStatus"]) == ("RUNNING", "STOPPED")
    ecs.submit_task_state_change(cluster="c1", task=arn, status="STOPPED")
    ecs.get_waiter("tasks_stopped").wait(cluster="c1", tasks=[arn], WaiterConfig=FAST)
    [t] = ecs.describe_tasks(cluster="c1", tasks=[arn])["tasks"]
    assert t["stoppedReason"] == "scale in" and t["stopCode"] == "UserInitiated"


def test_submit_attachment_state_changes(ecs, cluster):
    r = ecs.submit_attachment_state_changes(cluster="c1", attachments=[{"attachmentArn": f"{ARN}:attachment/x", "status": "ATTACHED"}])
    assert r["acknowledgment"] == "ACK"
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.submit_attachment_state_changes(cluster="nope", attachments=[])


# --------------------------------------------------------------------------------------
# Services
# --------------------------------------------------------------------------------------


@pytest.fixture
def no_instances(ecs):
    """A cluster `c1` with task definition `web:1` and no container instances: a service
    controller, if one runs, can place nothing, so services stay without tasks."""
    ecs.create_cluster(clusterName="c1")
    return {"taskdef": register_taskdef(ecs, "web")}


def test_services_lifecycle(ecs, no_instances):
    cluster = no_instances
    s = ecs.create_service(cluster="c1", serviceName="api", taskDefinition="web", desiredCount=2, tags=[{"key": "t", "value": "v"}])["service"]
    assert s["serviceArn"] == f"{ARN}:service/c1/api"
    assert s["status"] == "ACTIVE" and s["desiredCount"] == 2
    [dep] = s["deployments"]
    assert dep["status"] == "PRIMARY" and dep["taskDefinition"] == cluster["taskdef"]["taskDefinitionArn"]
    assert s["deploymentConfiguration"]["maximumPercent"] == 200
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.create_service(cluster="c1", serviceName="api", taskDefinition="web")
    assert "idempotent" in error_of(e)[1]

    d = ecs.describe_services(cluster="c1", services=["api", "ghost"], include=["TAGS"])
    assert [x["serviceName"] for x in d["services"]] == ["api"]
    assert d["services"][0]["tags"] == [{"key": "t", "value": "v"}]
    assert d["failures"] == [{"arn": f"{ARN}:service/c1/ghost", "reason": "MISSING"}]
    assert ecs.list_services(cluster="c1")["serviceArns"] == [s["serviceArn"]]
    assert ecs.list_services(cluster="c1", schedulingStrategy="DAEMON")["serviceArns"] == []

    td2 = register_taskdef(ecs, "web", memory=64)
    u = ecs.update_service(cluster="c1", service="api", taskDefinition="web:2", desiredCount=3)["service"]
    assert u["desiredCount"] == 3 and u["taskDefinition"] == td2["taskDefinitionArn"]
    assert [(x["status"], x["taskDefinition"]) for x in u["deployments"]] == [
        ("PRIMARY", td2["taskDefinitionArn"]),
        ("ACTIVE", cluster["taskdef"]["taskDefinitionArn"]),
    ]
    assert u["deployments"][0]["desiredCount"] == 3
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.update_service(cluster="c1", service="api", deploymentConfiguration={"maximumPercent": 50})
    assert "maximumPercent" in error_of(e)[1]

    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.delete_service(cluster="c1", service="api")
    assert "scaled" in error_of(e)[1]
    gone = ecs.delete_service(cluster="c1", service="api", force=True)["service"]
    assert gone["status"] == "INACTIVE" and gone["desiredCount"] == 0
    assert ecs.list_services(cluster="c1")["serviceArns"] == []
    ecs.get_waiter("services_inactive").wait(cluster="c1", services=["api"], WaiterConfig=FAST)
    with pytest.raises(ecs.exceptions.ServiceNotActiveException):
        ecs.update_service(cluster="c1", service="api", desiredCount=1)
    # The name is free again.
    assert ecs.create_service(cluster="c1", serviceName="api", taskDefinition="web")["service"]["status"] == "ACTIVE"


def test_unknown_service(ecs, cluster):
    with pytest.raises(ecs.exceptions.ServiceNotFoundException) as e:
        ecs.update_service(cluster="c1", service="ghost", desiredCount=1)
    assert error_of(e)[0] == "ServiceNotFoundException"
    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ecs.delete_service(cluster="c1", service="ghost")
    assert "TaskDefinition" in invalid_parameter(ecs, ecs.create_service, cluster="c1", serviceName="x", taskDefinition="ghost")
    message = invalid_parameter(ecs, ecs.create_service, cluster="c1", serviceName="x", taskDefinition="web", desiredCount=-1)
    assert "desiredCount" in message


def test_service_counts_follow_its_tasks(ecs, cluster):
    ecs.create_service(cluster="c1", serviceName="api", taskDefinition="web", desiredCount=1)
    # A service controller starts the task itself; without one, start it in the
    # service's group by hand.
    try:
        [arn] = wait_for(lambda: ecs.list_tasks(cluster="c1", serviceName="api")["taskArns"], "the controller's task", deadline=2, interval=0.05, retry_errors=True)
    except AssertionError:
        arn = run_one(ecs, group="service:api")["taskArn"]
    t = {"taskArn": arn}
    s = ecs.describe_services(cluster="c1", services=["api"])["services"][0]
    assert (s["pendingCount"], s["runningCount"]) == (1, 0)
    assert ecs.list_tasks(cluster="c1", serviceName="api")["taskArns"] == [t["taskArn"]]
    ecs.submit_task_state_change(cluster="c1", task=t["taskArn"], status="RUNNING")
    s = ecs.describe_services(cluster="c1", services=["api"])["services"][0]
    assert (s["pendingCount"], s["runningCount"]) == (0, 1)
    ecs.get_waiter("services_stable").wait(cluster="c1", services=["api"], WaiterConfig=FAST)


# --------------------------------------------------------------------------------------
# Paginators
# --------------------------------------------------------------------------------------


def assert_once(items: list, expected) -> None:
    assert len(items) == len(set(items)), "an item came back twice"
    assert set(items) == set(expected)


def test_paginate_clusters(ecs):
    names = [f"c{i:02d}" for i in range(23)]
    for n in names:
        ecs.create_cluster(clusterName=n)
    items, pages = paginate_all(ecs, "list_clusters", "clusterArns", 5)
    assert pages == 5
    assert_once(items, [f"{ARN}:cluster/{n}" for n in names])


def test_paginate_task_definitions_and_families(ecs):
    for i in range(7):
        register_taskdef(ecs, f"fam{i}")
        register_taskdef(ecs, f"fam{i}")
    items, pages = paginate_all(ecs, "list_task_definitions", "taskDefinitionArns", 4)
    assert pages == 4
    assert_once(items, [f"{ARN}:task-definition/fam{i}:{r}" for i in range(7) for r in (1, 2)])
    desc, _ = paginate_all(ecs, "list_task_definitions", "taskDefinitionArns", 3, sort="DESC")
    assert desc == list(reversed(items))
    fams, pages = paginate_all(ecs, "list_task_definition_families", "families", 2)
    assert pages == 4
    assert_once(fams, [f"fam{i}" for i in range(7)])


def test_paginate_tasks_and_instances(ecs):
    ecs.create_cluster(clusterName="c1")
    instances = [register_instance(ecs, "c1", f"i-{i:017d}", memory=8192)["containerInstanceArn"] for i in range(12)]
    register_taskdef(ecs, "web", memory=32, cpu=1)
    tasks = []
    for _ in range(3):
        tasks += [t["taskArn"] for t in ecs.run_task(cluster="c1", taskDefinition="web", count=10)["tasks"]]
    assert len(tasks) == 30
    items, pages = paginate_all(ecs, "list_tasks", "taskArns", 7, cluster="c1")
    assert pages == 5
    assert_once(items, tasks)
    items, pages = paginate_all(ecs, "list_container_instances", "containerInstanceArns", 5, cluster="c1")
    assert pages == 3
    assert_once(items, instances)
    # Attributes: every instance has the same built-in ones plus one custom.
    for arn in instances:
        ecs.put_attributes(cluster="c1", attributes=[{"name": "slot", "value": arn[-4:], "targetId": arn}])
    attrs, pages = paginate_all(ecs, "list_attributes", "attributes", 4, cluster="c1", targetType="container-instance", attributeName="slot")
    assert pages == 3
    assert_once([(a["targetId"], a["value"]) for a in attrs], [(arn, arn[-4:]) for arn in instances])
    everything, _ = paginate_all(ecs, "list_attributes", "attributes", 9, cluster="c1", targetType="container-instance")
    keys = [(a["targetId"], a["name"]) for a in everything]
    assert len(keys) == len(set(keys)) and len(keys) > 12 * 4


def test_paginate_services(ecs):
    ecs.create_cluster(clusterName="c1")
    register_taskdef(ecs, "web")
    arns = [ecs.create_service(cluster="c1", serviceName=f"svc{i}", taskDefinition="web")["service"]["serviceArn"] for i in range(11)]
    items, pages = paginate_all(ecs, "list_services", "serviceArns", 3, cluster="c1")
    assert pages == 4
    assert_once(items, arns)


def test_paginate_account_settings(ecs):
    items, pages = paginate_all(ecs, "list_account_settings", "settings", 3, effectiveSettings=True)
    names = [s["name"] for s in items]
    model_names = ecs.meta.service_model.shape_for("SettingName").enum
    assert pages == -(-len(names) // 3)
    assert len(names) == len(set(names))
    assert set(names) <= set(model_names) and len(names) >= 10


def test_pages_neither_repeat_nor_skip_when_items_change_between_pages(ecs):
    for i in range(6):
        ecs.create_cluster(clusterName=f"m{i}")
    first = ecs.list_clusters(maxResults=3)
    assert first["clusterArns"] == [f"{ARN}:cluster/m{i}" for i in range(3)]
    ecs.create_cluster(clusterName="a-before")  # sorts before the cursor: not in later pages
    ecs.create_cluster(clusterName="z-after")  # sorts after it: in a later page
    ecs.delete_cluster(cluster="m4")
    rest = ecs.list_clusters(maxResults=3, nextToken=first["nextToken"])
    assert rest["clusterArns"] == [f"{ARN}:cluster/{n}" for n in ("m3", "m5", "z-after")]
    assert "nextToken" not in rest


def test_forged_and_tampered_next_tokens(ecs):
    for i in range(5):
        ecs.create_cluster(clusterName=f"c{i}")
    token = ecs.list_clusters(maxResults=2)["nextToken"]
    assert ecs.list_clusters(maxResults=2, nextToken=token)["clusterArns"] == [f"{ARN}:cluster/c2", f"{ARN}:cluster/c3"]
    body, sig = token.split(".", 1)
    raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["last"] = "c0"  # rewind the listing
    forged_body = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    bad_tokens = [
        "garbage",
        f"{forged_body}.{sig}",  # tampered body, old signature
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # tampered signature
        base64.b64encode(b'{"last":"c0"}').decode(),
    ]
    for bad in bad_tokens:
        with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
            ecs.list_clusters(nextToken=bad)
        assert "nextToken" in error_of(e)[1]
    # A token of one listing does not work for another.
    register_taskdef(ecs, "web")
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.list_task_definitions(nextToken=token)
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        ecs.list_clusters(maxResults=101)
    assert "maxResults" in error_of(e)[1]


def test_unsupported_operations_say_so(ecs, cluster):
    with pytest.raises(ecs.exceptions.UnsupportedFeatureException) as e:
        ecs.execute_command(cluster="default", task="t", command="sh", interactive=True)
    assert "ExecuteCommand" in error_of(e)[1]


# --------------------------------------------------------------------------------------
# Service deployments and revisions
# --------------------------------------------------------------------------------------


def test_service_deployments_and_revisions(ecs, no_instances):
    ecs.create_service(cluster="c1", serviceName="api", taskDefinition="web", desiredCount=1)
    [first] = ecs.list_service_deployments(cluster="c1", service="api")["serviceDeployments"]
    assert first["serviceDeploymentArn"].startswith(f"{ARN}:service-deployment/c1/api/")
    assert first["status"] in ("PENDING", "IN_PROGRESS")
    assert first["targetServiceRevisionArn"].startswith(f"{ARN}:service-revision/c1/api/")
    td2 = register_taskdef(ecs, "web", memory=64)
    ecs.update_service(cluster="c1", service="api", taskDefinition="web:2")
    page = ecs.list_service_deployments(cluster="c1", service=f"{ARN}:service/c1/api", maxResults=1)
    [second] = page["serviceDeployments"]
    assert second["serviceDeploymentArn"] != first["serviceDeploymentArn"]
    rest = ecs.list_service_deployments(cluster="c1", service="api", nextToken=page["nextToken"])
    assert [d["serviceDeploymentArn"] for d in rest["serviceDeployments"]] == [first["serviceDeploymentArn"]]
    assert "nextToken" not in rest
    # The first was replaced before it finished.
    stopped = ecs.list_service_deployments(cluster="c1", service="api", status=["STOPPED"])
    assert [d["serviceDeploymentArn"] for d in stopped["serviceDeployments"]] == [first["serviceDeploymentArn"]]
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert ecs.list_service_deployments(cluster="c1", service="api", createdAt={"after": future})["serviceDeployments"] == []

    unknown = f"{ARN}:service-deployment/c1/api/nope"
    d = ecs.describe_service_deployments(serviceDeploymentArns=[second["serviceDeploymentArn"], unknown])
    assert d["failures"] == [{"arn": unknown, "reason": "MISSING"}]
    [sd] = d["serviceDeployments"]
    assert sd["serviceArn"] == f"{ARN}:service/c1/api" and sd["clusterArn"] == f"{ARN}:cluster/c1"
    assert [s["arn"] for s in sd["sourceServiceRevisions"]] == [first["targetServiceRevisionArn"]]
    assert sd["targetServiceRevision"]["requestedTaskCount"] == 1
    assert sd["deploymentCircuitBreaker"]["status"] == "DISABLED"
    r = ecs.describe_service_revisions(serviceRevisionArns=[sd["targetServiceRevision"]["arn"]])
    [rev] = r["serviceRevisions"]
    assert rev["taskDefinition"] == td2["taskDefinitionArn"]
    assert rev["containerImages"][0]["containerName"]
    with pytest.raises(ecs.exceptions.InvalidParameterException):
        ecs.describe_service_revisions(serviceRevisionArns=[unknown] * 21)
    [svc] = ecs.describe_services(cluster="c1", services=["api"])["services"]
    assert svc["currentServiceDeployment"] == second["serviceDeploymentArn"]
    assert sd["targetServiceRevision"]["arn"] in [r["arn"] for r in svc["currentServiceRevisions"]]

    ecs.stop_service_deployment(serviceDeploymentArn=second["serviceDeploymentArn"], stopType="ROLLBACK")
    [after] = ecs.describe_service_deployments(serviceDeploymentArns=[second["serviceDeploymentArn"]])["serviceDeployments"]
    assert after["status"] in ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
    with pytest.raises(ecs.exceptions.ServiceDeploymentNotFoundException):
        ecs.stop_service_deployment(serviceDeploymentArn=unknown)
    with pytest.raises(ClientError) as e:
        ecs.stop_service_deployment(serviceDeploymentArn=first["serviceDeploymentArn"])
    assert error_of(e)[0] == "ConflictException"
    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ecs.list_service_deployments(cluster="c1", service="ghost")
