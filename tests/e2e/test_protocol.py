"""The wire protocol with raw HTTP: malformed input, routing, headers, SigV4.

Every raw answer is checked with the same model validator as the boto3 clients, so an
error body must carry `__type` and `message`, a request id, and never be a 5xx.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import botocore.auth
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from e2e_support import (
    ACCOUNT,
    AUTH_KEY,
    AUTH_SECRET,
    JSON_CT,
    OTHER_ACCOUNT,
    OTHER_KEY,
    OTHER_SECRET,
    TARGET_PREFIX,
    error_of,
    start_server,
)

IMPLEMENTED = (
    "CreateCluster DeleteCluster DescribeClusters ListClusters UpdateCluster UpdateClusterSettings "
    "PutClusterCapacityProviders RegisterTaskDefinition DeregisterTaskDefinition DeleteTaskDefinitions "
    "DescribeTaskDefinition ListTaskDefinitions ListTaskDefinitionFamilies RegisterContainerInstance "
    "DeregisterContainerInstance DescribeContainerInstances ListContainerInstances UpdateContainerInstancesState "
    "PutAttributes DeleteAttributes ListAttributes RunTask StartTask StopTask DescribeTasks ListTasks "
    "CreateService UpdateService DeleteService DescribeServices ListServices TagResource UntagResource "
    "ListServiceDeployments DescribeServiceDeployments DescribeServiceRevisions StopServiceDeployment "
    "CreateTaskSet DescribeTaskSets UpdateTaskSet UpdateServicePrimaryTaskSet DeleteTaskSet "
    "CreateCapacityProvider DescribeCapacityProviders UpdateCapacityProvider DeleteCapacityProvider "
    "ListServicesByNamespace "
    "ListTagsForResource PutAccountSetting PutAccountSettingDefault DeleteAccountSetting ListAccountSettings "
    "DiscoverPollEndpoint SubmitTaskStateChange SubmitContainerStateChange SubmitAttachmentStateChanges"
).split()


def post(endpoint: str, target: str | None, body: bytes | str = b"{}", headers: dict | None = None) -> requests.Response:
    h = {"Content-Type": JSON_CT}
    if target is not None:
        h["X-Amz-Target"] = target if "." in target else f"{TARGET_PREFIX}.{target}"
    h.update(headers or {})
    return requests.post(endpoint + "/", data=body, headers=h, timeout=10)


def checked(validator, op: str, r: requests.Response) -> dict:
    """Validates a raw answer to `op` like the boto3 hook does, and returns its JSON."""
    errors = validator.check_response(op, r.status_code, r.headers, r.content)
    assert not errors, f"{op} -> {r.status_code} {r.text[:300]}: {errors}"
    return r.json()


def assert_error(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers.get("x-amzn-RequestId"), "no request id"
    assert r.headers.get("Content-Type") == JSON_CT
    body = r.json()
    assert body["__type"] == code, body
    assert isinstance(body.get("message"), str) and body["message"]
    assert r.headers.get("X-Amzn-Errortype") == code
    return body


# --------------------------------------------------------------------------------------
# Routing and malformed requests
# --------------------------------------------------------------------------------------


def test_malformed_json_is_a_serialization_error(endpoint, reset):
    for body in (b"{not json", b'{"clusterName": ', b"[1, 2]", b'"just a string"', b"\xff\xfe\x00garbage", b"null"):
        r = post(endpoint, "CreateCluster", body)
        b = assert_error(r, 400, "SerializationException")
        assert "JSON" in b["message"]


def test_oversized_body_is_refused_in_the_protocols_shape(endpoint, reset, validator):
    big = json.dumps({"clusterName": "big", "tags": [{"key": "k", "value": "v" * (3 << 20)}]})
    r = post(endpoint, "CreateCluster", big)
    b = assert_error(r, 413, "RequestEntityTooLargeException")
    assert "limit" in b["message"]
    checked(validator, "CreateCluster", r)
    # The server is still there, and nothing was created.
    assert checked(validator, "ListClusters", post(endpoint, "ListClusters"))["clusterArns"] == []


def test_unknown_operation(endpoint, reset):
    r = post(endpoint, "LaunchRocket")
    b = assert_error(r, 400, "UnknownOperationException")
    assert "LaunchRocket" in b["message"]


def test_missing_or_foreign_target_header(endpoint, reset):
    raw_targets = [None, "", "AmazonEC2ContainerServiceV20141113", f"{TARGET_PREFIX}.", "DynamoDB_20120810.ListTables", "ListClusters"]
    for target in raw_targets:
        headers = {"Content-Type": JSON_CT}
        if target is not None:
            headers["X-Amz-Target"] = target
        r = requests.post(endpoint + "/", data=b"{}", headers=headers, timeout=10)
        b = assert_error(r, 400, "UnknownOperationException")
        assert "X-Amz-Target" in b["message"], (target, b)


def test_wrong_member_types_name_the_member(endpoint, reset, validator):
    cases = [
        ("CreateCluster", {"clusterName": 5}, "clusterName"),
        ("RunTask", {"taskDefinition": "web", "count": "three"}, "count"),
        ("ListClusters", {"maxResults": "ten"}, "maxResults"),
        ("DescribeClusters", {"clusters": "c1"}, "clusters"),
        ("DescribeClusters", {"include": ["EVERYTHING"]}, "include"),
        ("RegisterTaskDefinition", {"family": "f", "containerDefinitions": [{"name": "a", "memory": "lots"}]}, "containerDefinitions[0].memory"),
        ("CreateCluster", {"tags": [{"key": 1}]}, "tags[0].key"),
        ("ListTasks", {"desiredStatus": "SLEEPING"}, "desiredStatus"),
    ]
    for op, body, member in cases:
        r = post(endpoint, op, json.dumps(body))
        b = checked(validator, op, r)
        assert r.status_code == 400 and b["__type"] == "InvalidParameterException", (op, b)
        assert member in b["message"], (op, member, b["message"])


def test_missing_required_members_are_named(endpoint, reset, validator):
    for op, member in (("RunTask", "taskDefinition"), ("DescribeTasks", "tasks"), ("StopTask", "task"), ("CreateService", "serviceName"),
                       ("TagResource", "resourceArn"), ("ListAttributes", "targetType")):
        r = post(endpoint, op, b"{}")
        b = checked(validator, op, r)
        assert r.status_code == 400 and b["__type"] == "InvalidParameterException", (op, b)
        assert member in b["message"], (op, b["message"])


def test_empty_body_is_an_empty_request(endpoint, reset, validator):
    r = post(endpoint, "ListClusters", b"")
    assert r.status_code == 200
    assert checked(validator, "ListClusters", r) == {"clusterArns": []}


def test_request_ids_and_content_type_on_every_answer(endpoint, reset):
    answers = [
        post(endpoint, "ListClusters"),
        post(endpoint, "CreateCluster", b"{bad"),
        post(endpoint, "Nope"),
        post(endpoint, None),
        post(endpoint, "DescribeTasks", b'{"cluster": "ghost", "tasks": ["x"]}'),
    ]
    ids = [a.headers.get("x-amzn-RequestId") for a in answers]
    assert all(ids), ids
    assert len(set(ids)) == len(ids), "request ids must be unique"
    assert all(a.headers.get("Content-Type") == JSON_CT for a in answers)
    assert answers[0].status_code == 200


def test_unsupported_operations_answer_unsupported_feature(endpoint, reset):
    for op in ("ExecuteCommand", "CreateDaemon", "DescribeDaemonDeployments"):
        b = assert_error(post(endpoint, op), 400, "UnsupportedFeatureException")
        assert op in b["message"]


def test_no_input_makes_a_500_or_drops_the_connection(endpoint, reset, validator):
    """Every implemented operation, fed junk: always a 4xx (or 200) with a JSON answer."""
    junk = [
        b"{}",
        b'{"cluster": 1}',
        b'{"cluster": "ghost"}',
        b'{"cluster": "arn:aws:ecs:us-east-1:000000000000:cluster/"}',
        b'{"cluster": "arn:aws:ecs:"}',
        b'{"cluster": "' + b"x" * 5000 + b'"}',
        b'{"maxResults": 99999999999999999999}',
        b'{"nextToken": "\\u0000"}',
        b'{"unknownMember": {"deep": [1, 2, {"x": null}]}}',
        b"[" * 2000 + b"]" * 2000,
        b'{"tasks": [], "services": [], "containerInstances": [], "taskDefinitions": [], "attributes": []}',
        b'{"taskDefinition": "web:-1", "family": "", "containerDefinitions": []}',
        b'{"resourceArn": "arn:aws:ecs:us-east-1:000000000000:task/", "tags": [], "tagKeys": []}',
    ]
    for op in IMPLEMENTED:
        for body in junk:
            r = post(endpoint, op, body)
            assert r.status_code < 500, (op, body[:80], r.status_code, r.text[:300])
            checked(validator, op, r)
    assert requests.get(endpoint + "/healthz", timeout=5).status_code == 200


def test_other_methods_and_paths_are_not_500(endpoint, reset):
    for method, path in (("GET", "/"), ("PUT", "/"), ("POST", "/nothing-here"), ("DELETE", "/admin/reset")):
        r = requests.request(method, endpoint + path, timeout=5)
        assert 400 <= r.status_code < 500, (method, path, r.status_code)
    h = requests.get(endpoint + "/healthz", timeout=5)
    assert h.status_code == 200


def test_reset_wipes_state(endpoint, server, reset, validator):
    r = post(endpoint, "CreateCluster", b'{"clusterName": "before-reset"}')
    assert r.status_code == 200
    server.reset()
    assert checked(validator, "ListClusters", post(endpoint, "ListClusters"))["clusterArns"] == []


def test_reset_is_404_without_allow_reset(server_tmp):
    s = start_server(server_tmp, name="no-reset", allow_reset=False)
    try:
        r = requests.post(s.endpoint + "/admin/reset", timeout=5)
        assert r.status_code == 404
        assert requests.get(s.endpoint + "/healthz", timeout=5).status_code == 200
    finally:
        s.stop()


def test_region_comes_from_the_credential_scope_without_credentials(endpoint, reset, validator):
    auth = "AWS4-HMAC-SHA256 Credential=ANYKEY/20260101/ap-south-1/ecs/aws4_request, SignedHeaders=host, Signature=00"
    r = post(endpoint, "CreateCluster", b'{"clusterName": "r"}', headers={"Authorization": auth})
    assert checked(validator, "CreateCluster", r)["cluster"]["clusterArn"] == f"arn:aws:ecs:ap-south-1:{ACCOUNT}:cluster/r"
    # Unsigned requests (allowed without --credentials) land in us-east-1.
    r = post(endpoint, "CreateCluster", b'{"clusterName": "u"}')
    assert checked(validator, "CreateCluster", r)["cluster"]["clusterArn"] == f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/u"


def test_the_region_must_be_a_region_name(endpoint, reset, validator):
    """The region goes into every ARN: one with a colon or a space would make ARNs that do not parse."""
    for region in ("us-east-1:evil", "EVIL REGION", "x" * 40):
        auth = f"AWS4-HMAC-SHA256 Credential=ANYKEY/20260101/{region}/ecs/aws4_request, SignedHeaders=host, Signature=00"
        r = post(endpoint, "CreateCluster", b'{"clusterName": "r"}', headers={"Authorization": auth})
        b = assert_error(r, 400, "InvalidSignatureException")
        assert "region" in b["message"], b
    assert checked(validator, "ListClusters", post(endpoint, "ListClusters"))["clusterArns"] == []


# --------------------------------------------------------------------------------------
# The --credentials server
# --------------------------------------------------------------------------------------


def signed(endpoint: str, op: str, body: dict, key: str, secret: str, region: str = "us-east-1") -> AWSRequest:
    req = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=json.dumps(body).encode(),
        headers={"Content-Type": JSON_CT, "X-Amz-Target": f"{TARGET_PREFIX}.{op}"},
    )
    SigV4Auth(Credentials(key, secret), "ecs", region).add_auth(req)
    return req


def send(req: AWSRequest, data: bytes | None = None) -> requests.Response:
    return requests.post(req.url, data=req.body if data is None else data, headers=dict(req.headers.items()), timeout=10)


def test_listed_key_works_and_its_account_is_in_arns(auth_client_factory):
    mine = auth_client_factory(AUTH_KEY, AUTH_SECRET)
    c = mine.create_cluster(clusterName="a")["cluster"]
    assert c["clusterArn"] == f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/a"
    other = auth_client_factory(OTHER_KEY, OTHER_SECRET, region="eu-west-1")
    o = other.create_cluster(clusterName="a")["cluster"]
    assert o["clusterArn"] == f"arn:aws:ecs:eu-west-1:{OTHER_ACCOUNT}:cluster/a"
    td = other.register_task_definition(family="f", containerDefinitions=[{"name": "c", "image": "busybox", "memory": 16}])
    assert td["taskDefinition"]["taskDefinitionArn"] == f"arn:aws:ecs:eu-west-1:{OTHER_ACCOUNT}:task-definition/f:1"
    # Accounts are separate.
    assert mine.list_clusters()["clusterArns"] == [c["clusterArn"]]
    assert auth_client_factory(OTHER_KEY, OTHER_SECRET, region="us-east-1").list_clusters()["clusterArns"] == []


def test_unknown_key_is_unrecognized_client(auth_client_factory):
    c = auth_client_factory("AKIDNOBODYKNOWS", "whatever")
    with pytest.raises(c.exceptions.ClientError) as e:
        c.list_clusters()
    assert error_of(e)[0] == "UnrecognizedClientException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_wrong_secret_is_invalid_signature(auth_client_factory):
    c = auth_client_factory(AUTH_KEY, "not-the-secret")
    with pytest.raises(c.exceptions.ClientError) as e:
        c.list_clusters()
    code, msg = error_of(e)
    assert code == "InvalidSignatureException"
    assert "signature" in msg.lower()


def test_old_signatures_are_refused(auth_client_factory, monkeypatch):
    c = auth_client_factory()
    real = botocore.auth.get_current_datetime

    def skewed(minutes):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: real(remove_tzinfo) - dt.timedelta(minutes=minutes))

    skewed(20)
    with pytest.raises(c.exceptions.ClientError) as e:
        c.list_clusters()
    code, msg = error_of(e)
    assert code == "InvalidSignatureException"
    assert "15 min" in msg
    skewed(-20)  # from the future
    with pytest.raises(c.exceptions.ClientError) as e:
        c.list_clusters()
    assert error_of(e)[0] == "InvalidSignatureException"
    skewed(10)  # within the 15 minutes allowed
    assert c.list_clusters()["clusterArns"] == []


def test_unsigned_is_missing_authentication_token(auth_server, validator):
    r = post(auth_server.endpoint, "ListClusters")
    assert_error(r, 403, "MissingAuthenticationTokenException")
    checked(validator, "ListClusters", r)


def test_tampered_body_and_malformed_authorization(auth_server, validator):
    req = signed(auth_server.endpoint, "CreateCluster", {"clusterName": "ok"}, AUTH_KEY, AUTH_SECRET)
    r = send(req, data=json.dumps({"clusterName": "evil"}).encode())
    assert_error(r, 400, "InvalidSignatureException")
    # The same request untampered passes.
    r = send(req)
    assert checked(validator, "CreateCluster", r)["cluster"]["clusterName"] == "ok"
    headers = dict(req.headers.items())
    headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=garbage"
    r = requests.post(req.url, data=req.body, headers=headers, timeout=10)
    assert_error(r, 400, "IncompleteSignatureException")
    checked(validator, "CreateCluster", r)


def test_a_signed_content_hash_must_match_the_body(auth_server, validator):
    """A signed x-amz-content-sha256 header may not stand in for the body it describes."""
    body = json.dumps({"clusterName": "good"}).encode()
    req = AWSRequest(
        method="POST",
        url=auth_server.endpoint + "/",
        data=body,
        headers={"Content-Type": JSON_CT, "X-Amz-Target": f"{TARGET_PREFIX}.CreateCluster", "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()},
    )
    SigV4Auth(Credentials(AUTH_KEY, AUTH_SECRET), "ecs", "us-east-1").add_auth(req)
    assert "x-amz-content-sha256" in req.headers["Authorization"]
    r = send(req, data=json.dumps({"clusterName": "evil"}).encode())
    b = assert_error(r, 400, "InvalidSignatureException")
    assert "x-amz-content-sha256" in b["message"]
    r = send(req)
    assert checked(validator, "CreateCluster", r)["cluster"]["clusterName"] == "good"


def test_signatures_must_be_scoped_to_ecs(auth_server):
    req = AWSRequest(method="POST", url=auth_server.endpoint + "/", data=b"{}", headers={"Content-Type": JSON_CT, "X-Amz-Target": f"{TARGET_PREFIX}.ListClusters"})
    SigV4Auth(Credentials(AUTH_KEY, AUTH_SECRET), "s3", "us-east-1").add_auth(req)
    b = assert_error(send(req), 400, "InvalidSignatureException")
    assert "'ecs'" in b["message"]


def test_signed_region_is_used(auth_client_factory):
    c = auth_client_factory(region="ap-northeast-1").create_cluster(clusterName="tokyo")["cluster"]
    assert c["clusterArn"] == f"arn:aws:ecs:ap-northeast-1:{ACCOUNT}:cluster/tokyo"
