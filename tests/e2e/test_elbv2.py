"""The ELBv2 API (query protocol, XML) on the same endpoint as ECS: boto3's `elbv2`
client and the real `aws elbv2` CLI, routed by the SigV4 credential scope's service."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import e2e_support
from e2e_support import AUTH_KEY, AUTH_SECRET, boto_client, cli_env, error_of

NS = "{http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/}"


def _check_xml(shape, elem, path: str, errors: list) -> None:
    """Checks one XML element against its botocore shape: only members the model knows,
    `member` items in lists, scalars of the model's type and enum."""
    kind = shape.type_name
    if kind == "structure":
        names = {m.serialization.get("name", n): m for n, m in shape.members.items()}
        for child in elem:
            tag = child.tag.replace(NS, "")
            if tag not in names:
                errors.append(f"{path}: unknown member {tag}")
            else:
                _check_xml(names[tag], child, f"{path}.{tag}", errors)
    elif kind == "list":
        for i, child in enumerate(elem):
            if child.tag.replace(NS, "") != "member":
                errors.append(f"{path}[{i}]: list item is <{child.tag}>, not <member>")
            _check_xml(shape.member, child, f"{path}[{i}]", errors)
    else:
        text = elem.text or ""
        if len(elem):
            errors.append(f"{path}: a {kind} with child elements")
        elif kind in ("integer", "long") and not text.lstrip("-").isdigit():
            errors.append(f"{path}: {text!r} is not an integer")
        elif kind == "boolean" and text not in ("true", "false"):
            errors.append(f"{path}: {text!r} is not a boolean")
        elif kind == "timestamp" and not text.endswith("Z"):
            errors.append(f"{path}: {text!r} is not an ISO 8601 UTC timestamp")
        elif kind == "string" and shape.enum and text not in shape.enum:
            errors.append(f"{path}: {text!r} is not one of {shape.enum}")


def _validate_elbv2(http_response, model, **_kwargs) -> None:
    """Every ELBv2 answer is checked against botocore's model (botocore's parser drops
    what it does not know, so the raw XML is checked)."""
    root = ET.fromstring(http_response.content)
    if http_response.status_code >= 400:
        code = root.find(f"{NS}Error/{NS}Code").text
        assert root.tag == f"{NS}ErrorResponse" and code, http_response.content
        assert http_response.status_code < 500, http_response.content
        return
    assert root.tag == f"{NS}{model.name}Response", root.tag
    assert root.find(f"{NS}ResponseMetadata/{NS}RequestId").text
    if model.output_shape is None:
        return
    wrapper = model.output_shape.serialization.get("resultWrapper", f"{model.name}Result")
    result = root.find(f"{NS}{wrapper}")
    assert result is not None, http_response.content
    errors: list = []
    _check_xml(model.output_shape, result, model.name, errors)
    assert not errors, f"{model.name} answer violates botocore's ELBv2 model: {errors}"


def elbv2_client(endpoint: str, region: str = "us-east-1", key: str = "AKIDEXAMPLE", secret: str = "dummy-secret"):
    client = boto_client("elbv2", endpoint, region, key, secret)
    client.meta.events.register("after-call", _validate_elbv2)
    return client


@pytest.fixture
def elbv2(server, reset):
    return elbv2_client(server.endpoint)


@pytest.fixture
def aws_cli(server, reset, tmp_path):
    """`aws_cli("elbv2", "describe-load-balancers", ...)` -> parsed JSON (or None), with
    `AWS_ENDPOINT_URL` pointing at the server: one endpoint for every service."""
    return e2e_support.aws_cli(cli_env(AWS_ENDPOINT_URL=server.endpoint), cwd=tmp_path)


def test_cli_session_lb_target_group_listener_rule_targets_tags(aws_cli):
    lb = aws_cli("elbv2", "create-load-balancer", "--name", "web", "--tags", "Key=team,Value=blue")["LoadBalancers"][0]
    assert lb["LoadBalancerArn"].startswith("arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/")
    lb_id = lb["LoadBalancerArn"].rsplit("/", 1)[1]
    assert len(lb_id) == 16
    assert lb["DNSName"] == f"web-{lb_id}.us-east-1.elb.flotilla.local"
    assert lb["State"]["Code"] == "active" and lb["Type"] == "application"

    tg = aws_cli("elbv2", "create-target-group", "--name", "api", "--protocol", "HTTP", "--port", "8080", "--vpc-id", "vpc-1")["TargetGroups"][0]
    assert tg["HealthCheckPath"] == "/" and tg["HealthCheckIntervalSeconds"] == 30 and tg["Matcher"] == {"HttpCode": "200"}
    tg_arn = tg["TargetGroupArn"]

    listener = aws_cli(
        "elbv2", "create-listener", "--load-balancer-arn", lb["LoadBalancerArn"], "--protocol", "HTTP", "--port", "80",
        "--default-actions", f"Type=forward,TargetGroupArn={tg_arn}",
    )["Listeners"][0]
    assert listener["Port"] == 80
    rule = aws_cli(
        "elbv2", "create-rule", "--listener-arn", listener["ListenerArn"], "--priority", "10",
        "--conditions", "Field=path-pattern,Values=/api/*",
        "--actions", "Type=fixed-response,FixedResponseConfig={StatusCode=503,ContentType=text/plain,MessageBody=down}",
    )["Rules"][0]
    assert rule["Priority"] == "10" and rule["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "503"
    rules = aws_cli("elbv2", "describe-rules", "--listener-arn", listener["ListenerArn"])["Rules"]
    assert [r["Priority"] for r in rules] == ["10", "default"]
    assert rules[1]["IsDefault"] is True

    aws_cli("elbv2", "register-targets", "--target-group-arn", tg_arn, "--targets", "Id=i-0123456789abcdef0", "Id=i-0123456789abcdef1,Port=9000")
    health = aws_cli("elbv2", "describe-target-health", "--target-group-arn", tg_arn)["TargetHealthDescriptions"]
    assert sorted((h["Target"]["Port"], h["TargetHealth"]["State"]) for h in health) == [(8080, "initial"), (9000, "initial")]

    aws_cli("elbv2", "add-tags", "--resource-arns", tg_arn, "--tags", "Key=env,Value=prod")
    tags = aws_cli("elbv2", "describe-tags", "--resource-arns", lb["LoadBalancerArn"], tg_arn)["TagDescriptions"]
    assert [d["Tags"] for d in tags] == [[{"Key": "team", "Value": "blue"}], [{"Key": "env", "Value": "prod"}]]

    err = aws_cli("elbv2", "delete-target-group", "--target-group-arn", tg_arn, ok=False)
    assert "ResourceInUse" in err
    err = aws_cli("elbv2", "create-load-balancer", "--name", "web", "--type", "network", ok=False)
    assert "DuplicateLoadBalancerName" in err
    # The same endpoint still serves ECS.
    assert aws_cli("ecs", "list-clusters") == {"clusterArns": []}

    aws_cli("elbv2", "delete-load-balancer", "--load-balancer-arn", lb["LoadBalancerArn"])
    aws_cli("elbv2", "delete-target-group", "--target-group-arn", tg_arn)
    assert aws_cli("elbv2", "describe-load-balancers")["LoadBalancers"] == []
    assert aws_cli("elbv2", "describe-target-groups")["TargetGroups"] == []


def test_boto3_full_cycle_with_weighted_rules_and_errors(elbv2):
    lb = elbv2.create_load_balancer(Name="shop", Scheme="internal")["LoadBalancers"][0]
    lb_arn = lb["LoadBalancerArn"]
    blue = elbv2.create_target_group(Name="blue", Protocol="HTTP", Port=80, TargetType="ip", HealthCheckPath="/health")["TargetGroups"][0]["TargetGroupArn"]
    green = elbv2.create_target_group(Name="green", Protocol="HTTP", Port=80, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb_arn, Protocol="HTTP", Port=8080,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404", "MessageBody": "<none & nothing>"}}],
    )["Listeners"][0]
    l_arn = listener["ListenerArn"]
    assert l_arn.startswith(lb_arn.replace(":loadbalancer/", ":listener/") + "/")
    assert listener["DefaultActions"][0]["FixedResponseConfig"]["MessageBody"] == "<none & nothing>"

    # Unused until a listener forwards to the group.
    elbv2.register_targets(TargetGroupArn=blue, Targets=[{"Id": "10.0.0.5"}, {"Id": "10.0.0.6", "Port": 8081}])
    states = [h["TargetHealth"]["State"] for h in elbv2.describe_target_health(TargetGroupArn=blue)["TargetHealthDescriptions"]]
    assert states == ["unused", "unused"]

    rule = elbv2.create_rule(
        ListenerArn=l_arn, Priority=5,
        Conditions=[
            {"Field": "host-header", "HostHeaderConfig": {"Values": ["shop.example.com"]}},
            {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Canary", "Values": ["1"]}},
        ],
        Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": blue, "Weight": 90}, {"TargetGroupArn": green, "Weight": 10}]}}],
    )["Rules"][0]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]}
    assert weights == {blue: 90, green: 10}
    states = [h["TargetHealth"]["State"] for h in elbv2.describe_target_health(TargetGroupArn=blue)["TargetHealthDescriptions"]]
    assert states == ["initial", "initial"]
    described = elbv2.describe_target_groups(LoadBalancerArn=lb_arn)["TargetGroups"]
    assert sorted(t["TargetGroupName"] for t in described) == ["blue", "green"]
    assert all(t["LoadBalancerArns"] == [lb_arn] for t in described)

    with pytest.raises(ClientError) as e:
        elbv2.create_rule(ListenerArn=l_arn, Priority=5, Conditions=[{"Field": "path-pattern", "Values": ["/x"]}], Actions=[{"Type": "forward", "TargetGroupArn": blue}])
    assert error_of(e)[0] == "PriorityInUse"
    elbv2.modify_rule(RuleArn=rule["RuleArn"], Conditions=[{"Field": "path-pattern", "Values": ["/beta/*"]}])
    assert elbv2.describe_rules(RuleArns=[rule["RuleArn"]])["Rules"][0]["Conditions"][0]["Values"] == ["/beta/*"]

    attrs = elbv2.modify_target_group_attributes(
        TargetGroupArn=blue, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "30"}, {"Key": "stickiness.enabled", "Value": "true"}]
    )["Attributes"]
    attrs = {a["Key"]: a["Value"] for a in attrs}
    assert attrs["deregistration_delay.timeout_seconds"] == "30" and attrs["stickiness.type"] == "lb_cookie"
    with pytest.raises(ClientError) as e:
        elbv2.modify_target_group_attributes(TargetGroupArn=blue, Attributes=[{"Key": "stickiness.type", "Value": "magic"}])
    assert error_of(e)[0] == "ValidationError"
    tg = elbv2.modify_target_group(TargetGroupArn=blue, HealthCheckIntervalSeconds=10, HealthCheckTimeoutSeconds=3)["TargetGroups"][0]
    assert (tg["HealthCheckIntervalSeconds"], tg["HealthCheckTimeoutSeconds"], tg["HealthCheckPath"]) == (10, 3, "/health")

    elbv2.modify_listener(ListenerArn=l_arn, Port=9090)
    assert elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"][0]["Port"] == 9090

    # Errors, in AWS's codes.
    for call, code in [
        (lambda: elbv2.create_target_group(Name="blue", Protocol="HTTP", Port=81), "DuplicateTargetGroupName"),
        (lambda: elbv2.describe_load_balancers(Names=["nope"]), "LoadBalancerNotFound"),
        (lambda: elbv2.describe_target_groups(TargetGroupArns=[blue.replace("/blue/", "/nope/")]), "TargetGroupNotFound"),
        (lambda: elbv2.delete_target_group(TargetGroupArn=green), "ResourceInUse"),
        (lambda: elbv2.create_load_balancer(Name="-bad-"), "ValidationError"),
        (lambda: elbv2.create_listener(LoadBalancerArn=lb_arn, Protocol="HTTP", Port=9090, DefaultActions=[{"Type": "forward", "TargetGroupArn": blue}]), "DuplicateListener"),
        (lambda: elbv2.delete_rule(RuleArn=elbv2.describe_rules(ListenerArn=l_arn)["Rules"][-1]["RuleArn"]), "OperationNotPermitted"),
    ]:
        with pytest.raises(ClientError) as e:
            call()
        assert error_of(e)[0] == code
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    elbv2.delete_rule(RuleArn=rule["RuleArn"])
    elbv2.deregister_targets(TargetGroupArn=blue, Targets=[{"Id": "10.0.0.5"}])
    elbv2.delete_listener(ListenerArn=l_arn)
    elbv2.delete_target_group(TargetGroupArn=green)
    elbv2.delete_target_group(TargetGroupArn=blue)
    elbv2.delete_load_balancer(LoadBalancerArn=lb_arn)
    assert elbv2.describe_load_balancers()["LoadBalancers"] == []


def test_describe_load_balancers_paginates(elbv2):
    for i in range(5):
        elbv2.create_load_balancer(Name=f"lb-{i}")
    pages = list(elbv2.get_paginator("describe_load_balancers").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["LoadBalancers"]) for p in pages] == [2, 2, 1]
    assert [lb["LoadBalancerName"] for p in pages for lb in p["LoadBalancers"]] == [f"lb-{i}" for i in range(5)]


def _post(endpoint: str, body: bytes, service: str | None, content_type="application/x-www-form-urlencoded; charset=utf-8", key="AKIDEXAMPLE", secret="dummy"):
    headers = {"Content-Type": content_type}
    if service is not None:
        req = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=headers)
        SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(req)
        headers = dict(req.headers.items())
    req = urllib.request.Request(endpoint + "/", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_routing_follows_the_credential_scope(server, reset):
    body = b"Action=DescribeLoadBalancers&Version=2015-12-01"
    status, headers, raw = _post(server.endpoint, body, "elasticloadbalancing")
    assert status == 200 and headers["Content-Type"] == "text/xml"
    root = ET.fromstring(raw)
    assert root.tag == f"{NS}DescribeLoadBalancersResponse"
    assert root.find(f"{NS}ResponseMetadata/{NS}RequestId").text == headers["x-amzn-RequestId"]

    # An ELBv2 body signed for `ecs` goes to ECS, which wants an X-Amz-Target.
    status, headers, raw = _post(server.endpoint, body, "ecs")
    assert status == 400
    assert json.loads(raw)["__type"] == "UnknownOperationException"

    # A service flotilla does not serve.
    status, _, raw = _post(server.endpoint, body, "s3")
    assert status == 400 and json.loads(raw)["__type"] == "InvalidSignatureException"
    assert "'elasticloadbalancing'" in json.loads(raw)["message"]

    # Errors in the query protocol's shape.
    status, _, raw = _post(server.endpoint, b"Action=DescribeLoadBalancers&Names.member.1=nope", "elasticloadbalancing")
    assert status == 400
    err = ET.fromstring(raw)
    assert err.tag == f"{NS}ErrorResponse"
    assert [err.find(f"{NS}Error/{NS}{k}").text for k in ("Type", "Code")] == ["Sender", "LoadBalancerNotFound"]
    status, _, raw = _post(server.endpoint, b"Action=SetSecurityGroups", "elasticloadbalancing")
    assert status == 400 and ET.fromstring(raw).find(f"{NS}Error/{NS}Code").text == "InvalidAction"
    # Unsigned form bodies are ELBv2's too.
    status, _, raw = _post(server.endpoint, body, None)
    assert status == 200 and ET.fromstring(raw).tag == f"{NS}DescribeLoadBalancersResponse"


def test_with_credentials_an_elasticloadbalancing_scope_verifies(auth_server):
    auth_server.reset()
    good = elbv2_client(auth_server.endpoint, key=AUTH_KEY, secret=AUTH_SECRET)
    lb = good.create_load_balancer(Name="secure")["LoadBalancers"][0]
    assert ":000000000000:" in lb["LoadBalancerArn"]
    bad = elbv2_client(auth_server.endpoint, key=AUTH_KEY, secret="not-the-secret")
    with pytest.raises(ClientError) as e:
        bad.describe_load_balancers()
    assert error_of(e)[0] == "SignatureDoesNotMatch"
    # A signature made for `ecs` does not verify as ELBv2's, and vice versa: the scope
    # routes, and the route's service is what the signature must name.
    status, _, raw = _post(auth_server.endpoint, b"Action=DescribeLoadBalancers&Version=2015-12-01", "ecs", key=AUTH_KEY, secret=AUTH_SECRET)
    assert status == 400 and json.loads(raw)["__type"] == "UnknownOperationException"
    status, _, raw = _post(auth_server.endpoint, b"Action=DescribeLoadBalancers&Version=2015-12-01", "elasticloadbalancing", key=AUTH_KEY, secret=AUTH_SECRET)
    assert status == 200
    status, _, raw = _post(auth_server.endpoint, b"Action=DescribeLoadBalancers", None)
    assert status == 403 and ET.fromstring(raw).find(f"{NS}Error/{NS}Code").text == "MissingAuthenticationToken"
    good.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])


def test_load_balancers_survive_a_restart(server_tmp):
    from e2e_support import start_server

    first = start_server(server_tmp, name="elbv2-restart")
    try:
        c = elbv2_client(first.endpoint, region="eu-west-1")
        lb = c.create_load_balancer(Name="durable")["LoadBalancers"][0]
        tg = c.create_target_group(Name="durable", Protocol="HTTP", Port=80)["TargetGroups"][0]["TargetGroupArn"]
        c.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Port=80, Protocol="HTTP", DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
        c.register_targets(TargetGroupArn=tg, Targets=[{"Id": "i-0abc"}])
    finally:
        first.stop()
    second = start_server(server_tmp, name="elbv2-restart", data_dir=first.data_dir)
    try:
        c = elbv2_client(second.endpoint, region="eu-west-1")
        assert c.describe_load_balancers(Names=["durable"])["LoadBalancers"][0]["LoadBalancerArn"] == lb["LoadBalancerArn"]
        assert len(c.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]) == 1
        health = c.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        assert [(h["Target"]["Id"], h["TargetHealth"]["State"]) for h in health] == [("i-0abc", "initial")]
    finally:
        second.stop()
