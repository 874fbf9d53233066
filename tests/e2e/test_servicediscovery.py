"""The Cloud Map API (`servicediscovery`) through boto3 and the real AWS CLI.

Every boto3 response is validated against botocore's servicediscovery model (the same
`ModelValidator` the ECS tests use, loaded with the other model). DiscoverInstances
carries the model's `data-` host prefix, which botocore prepends even to an IP endpoint
(`http://data-127.0.0.1:PORT`): the clients here turn it off, as the README says to.
"""

from __future__ import annotations

import functools

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from e2e_support import ACCOUNT, ModelValidator, _botocore_session, aws_cli, cli_env, error_of

REGION = "us-east-1"


@pytest.fixture(scope="module")
def sd_validator() -> ModelValidator:
    return ModelValidator(model=botocore.session.get_session().get_service_model("servicediscovery"))


@pytest.fixture
def sd(server, reset, sd_validator):
    """A validated boto3 servicediscovery client against a freshly reset server."""
    client = boto3.Session(botocore_session=_botocore_session()).client(
        "servicediscovery",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="dummy-secret",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, inject_host_prefix=False),
    )
    client.meta.events.register("after-call.servicediscovery", sd_validator.hook)
    before = len(sd_validator.violations)
    yield client
    assert not sd_validator.violations[before:], sd_validator.violations[before:]


def namespace_of(sd, operation_id: str) -> str:
    op = sd.get_operation(OperationId=operation_id)["Operation"]
    assert op["Status"] == "SUCCESS"
    return op["Targets"]["NAMESPACE"]


def discover(sd, **kw) -> list[str]:
    r = sd.discover_instances(NamespaceName="corp.local", ServiceName="web", **kw)
    return sorted(i["InstanceId"] for i in r["Instances"])


def test_namespace_service_instances_with_boto3(sd):
    op = sd.create_private_dns_namespace(Name="corp.local", Vpc="vpc-0123", CreatorRequestId="ns-1")["OperationId"]
    ns = namespace_of(sd, op)
    got = sd.get_namespace(Id=ns)["Namespace"]
    assert got["Arn"] == f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:namespace/{ns}"
    assert got["Type"] == "DNS_PRIVATE" and got["ServiceCount"] == 0
    assert got["Properties"]["HttpProperties"]["HttpName"] == "corp.local"
    # A retry with the same CreatorRequestId answers the same operation.
    assert sd.create_private_dns_namespace(Name="corp.local", Vpc="vpc-0123", CreatorRequestId="ns-1")["OperationId"] == op
    with pytest.raises(ClientError) as e:
        sd.create_private_dns_namespace(Name="corp.local", Vpc="vpc-0123")
    assert error_of(e)[0] == "NamespaceAlreadyExists"

    svc = sd.create_service(
        Name="web",
        NamespaceId=ns,
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}]},
        HealthCheckCustomConfig={},
        Tags=[{"Key": "team", "Value": "web"}],
    )["Service"]
    sid = svc["Id"]
    assert svc["Arn"] == f"arn:aws:servicediscovery:{REGION}:{ACCOUNT}:service/{sid}"
    with pytest.raises(ClientError) as e:
        sd.create_service(Name="web", NamespaceId=ns)
    assert error_of(e)[0] == "ServiceAlreadyExists"
    assert [s["Id"] for s in sd.list_services(Filters=[{"Name": "NAMESPACE_ID", "Values": [ns], "Condition": "EQ"}])["Services"]] == [sid]
    assert sd.list_tags_for_resource(ResourceARN=svc["Arn"])["Tags"] == [{"Key": "team", "Value": "web"}]

    for n in range(3):
        r = sd.register_instance(
            ServiceId=sid,
            InstanceId=f"task-{n}",
            Attributes={"AWS_INSTANCE_IPV4": f"10.0.0.{n + 1}", "AWS_INSTANCE_PORT": "8080", "version": "v1" if n else "v2"},
        )
        assert sd.get_operation(OperationId=r["OperationId"])["Operation"]["Type"] == "REGISTER_INSTANCE"
    assert sd.get_service(Id=sid)["Service"]["InstanceCount"] == 3
    assert sd.get_instance(ServiceId=sid, InstanceId="task-0")["Instance"]["Attributes"]["AWS_INSTANCE_IPV4"] == "10.0.0.1"
    assert len(sd.list_instances(ServiceId=sid)["Instances"]) == 3

    # Custom health checks start HEALTHY, as in AWS.
    assert discover(sd) == ["task-0", "task-1", "task-2"]
    sd.update_instance_custom_health_status(ServiceId=sid, InstanceId="task-1", Status="UNHEALTHY")
    assert discover(sd) == ["task-0", "task-2"]
    assert discover(sd, HealthStatus="UNHEALTHY") == ["task-1"]
    assert discover(sd, HealthStatus="ALL") == ["task-0", "task-1", "task-2"]
    assert discover(sd, QueryParameters={"version": "v1"}) == ["task-2"]
    health = sd.get_instances_health_status(ServiceId=sid)["Status"]
    assert health == {"task-0": "HEALTHY", "task-1": "UNHEALTHY", "task-2": "HEALTHY"}

    # Errors.
    for call, code in [
        (lambda: sd.get_namespace(Id="ns-doesnotexist0000"), "NamespaceNotFound"),
        (lambda: sd.get_service(Id="srv-doesnotexist000"), "ServiceNotFound"),
        (lambda: sd.get_instance(ServiceId=sid, InstanceId="nope"), "InstanceNotFound"),
        (lambda: sd.get_operation(OperationId="nope"), "OperationNotFound"),
        (lambda: sd.delete_namespace(Id=ns), "ResourceInUse"),
        (lambda: sd.delete_service(Id=sid), "ResourceInUse"),
        (lambda: sd.register_instance(ServiceId=sid, InstanceId="x", Attributes={"AWS_INSTANCE_PORT": "1"}), "InvalidInput"),
        (lambda: sd.discover_instances(NamespaceName="corp.local", ServiceName="nope"), "ServiceNotFound"),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e)[0] == code

    for n in range(3):
        sd.deregister_instance(ServiceId=sid, InstanceId=f"task-{n}")
    assert discover(sd, HealthStatus="ALL") == []
    sd.delete_service(Id=sid)
    op = sd.delete_namespace(Id=ns)["OperationId"]
    assert sd.get_operation(OperationId=op)["Operation"]["Type"] == "DELETE_NAMESPACE"
    assert sd.list_namespaces()["Namespaces"] == []


def test_list_namespaces_pages_and_filters(sd):
    for n in range(5):
        sd.create_http_namespace(Name=f"apps-{n}")
    sd.create_private_dns_namespace(Name="p.local", Vpc="vpc-1")
    names = []
    for page in sd.get_paginator("list_namespaces").paginate(PaginationConfig={"PageSize": 2}):
        names += [n["Name"] for n in page["Namespaces"]]
    assert sorted(names) == ["apps-0", "apps-1", "apps-2", "apps-3", "apps-4", "p.local"]
    private = sd.list_namespaces(Filters=[{"Name": "TYPE", "Values": ["DNS_PRIVATE"], "Condition": "EQ"}])["Namespaces"]
    assert [n["Name"] for n in private] == ["p.local"]


@pytest.fixture
def aws(server, reset):
    # DiscoverInstances' `data-` host prefix: see the module docstring.
    env = cli_env(AWS_DISABLE_HOST_PREFIX_INJECTION="true")
    return functools.partial(aws_cli(env, server.endpoint), "servicediscovery")


def test_cli_session(aws):
    op = aws("create-private-dns-namespace", "--name", "corp.local", "--vpc", "vpc-1")["OperationId"]
    ns = aws("get-operation", "--operation-id", op)["Operation"]["Targets"]["NAMESPACE"]
    svc = aws(
        "create-service", "--name", "web", "--namespace-id", ns,
        "--dns-config", "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=60}]",
        "--health-check-custom-config", "{}",
    )["Service"]
    for n in range(3):
        aws("register-instance", "--service-id", svc["Id"], "--instance-id", f"i-{n}",
            "--attributes", f"AWS_INSTANCE_IPV4=10.0.0.{n + 1}")
    aws("update-instance-custom-health-status", "--service-id", svc["Id"], "--instance-id", "i-0", "--status", "UNHEALTHY")
    found = aws("discover-instances", "--namespace-name", "corp.local", "--service-name", "web")["Instances"]
    assert sorted(i["InstanceId"] for i in found) == ["i-1", "i-2"]
    assert {i["HealthStatus"] for i in found} == {"HEALTHY"}
    found = aws("discover-instances", "--namespace-name", "corp.local", "--service-name", "web", "--health-status", "ALL")["Instances"]
    assert len(found) == 3
    listed = aws("list-namespaces")["Namespaces"]
    assert [n["Id"] for n in listed] == [ns]
    assert "ResourceInUse" in aws("delete-service", "--id", svc["Id"], ok=False)
    assert "NamespaceNotFound" in aws("get-namespace", "--id", "ns-nope", ok=False)
    for n in range(3):
        aws("deregister-instance", "--service-id", svc["Id"], "--instance-id", f"i-{n}")
    aws("delete-service", "--id", svc["Id"])
    aws("delete-namespace", "--id", ns)
    assert aws("list-namespaces")["Namespaces"] == []
