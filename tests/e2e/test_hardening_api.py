"""Hardening of the API server (issue 10), against the real binary.

- `POST /admin/reset` on a `--credentials` server needs a signature from a listed key.
- A signature must cover `host`, the timestamp and `X-Amz-Target`: one made for
  DescribeClusters cannot be replayed as DeleteCluster.
- Slow clients (half a header, then nothing) cannot keep others from an answer, even
  beyond the process's open-files limit, and are closed after the header timeout.
- No error message echoes a megabyte of input.
"""

from __future__ import annotations

import json
import resource
import socket
import time

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from e2e_support import (
    AUTH_KEY,
    AUTH_SECRET,
    JSON_CT,
    OTHER_KEY,
    OTHER_SECRET,
    TARGET_PREFIX,
    signed_admin_headers,
    start_server,
)


def target(op: str) -> str:
    return f"{TARGET_PREFIX}.{op}"


def signed(endpoint: str, op: str, body: dict, leave_out: tuple[str, ...] = ()) -> AWSRequest:
    """A request signed by AUTH_KEY whose signature leaves out the headers `leave_out`."""

    class Leaving(SigV4Auth):
        def headers_to_sign(self, request):
            headers = super().headers_to_sign(request)
            for name in leave_out:
                del headers[name]
            return headers

    req = AWSRequest(method="POST", url=endpoint + "/", data=json.dumps(body).encode(), headers={"Content-Type": JSON_CT, "X-Amz-Target": target(op)})
    Leaving(Credentials(AUTH_KEY, AUTH_SECRET), "ecs", "us-east-1").add_auth(req)
    return req


def send(req: AWSRequest, **header_changes) -> requests.Response:
    headers = dict(req.headers.items())
    headers.update(header_changes)
    return requests.post(req.url, data=req.body, headers=headers, timeout=10)


def cluster_names(endpoint: str) -> list[str]:
    r = send(signed(endpoint, "ListClusters", {}))
    assert r.status_code == 200, r.text
    return [a.rsplit("/", 1)[1] for a in r.json()["clusterArns"]]


def test_reset_needs_a_signature_when_credentials_are_configured(auth_server):
    ep = auth_server.endpoint
    auth_server.reset()  # signed by a listed key: works
    assert send(signed(ep, "CreateCluster", {"clusterName": "keep"})).status_code == 200
    url = ep + "/admin/reset"
    refusals = [
        ({}, "MissingAuthenticationTokenException"),
        (signed_admin_headers(url, AUTH_KEY, "not-the-secret"), "InvalidSignatureException"),
        (signed_admin_headers(url, "AKIDNOBODYKNOWS", AUTH_SECRET), "UnrecognizedClientException"),
        (signed_admin_headers(ep + "/", AUTH_KEY, AUTH_SECRET), "InvalidSignatureException"),  # made for another path
    ]
    for headers, code in refusals:
        r = requests.post(url, data=b"", headers=headers, timeout=10)
        assert r.status_code == 403, (code, r.status_code, r.text)
        assert r.headers.get("Content-Type") == JSON_CT
        assert r.json()["__type"] == code, r.text
        assert r.json()["message"]
        assert r.headers.get("x-amzn-RequestId")
    assert cluster_names(ep) == ["keep"]
    # Any listed key may reset; it wipes every account.
    r = requests.post(url, data=b"", headers=signed_admin_headers(url, OTHER_KEY, OTHER_SECRET), timeout=10)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert cluster_names(ep) == []


def test_a_signature_cannot_be_replayed_for_another_operation(auth_server):
    ep = auth_server.endpoint
    auth_server.reset()
    assert send(signed(ep, "CreateCluster", {"clusterName": "prod"})).status_code == 200
    seen = signed(ep, "DescribeClusters", {"clusters": ["prod"]}, leave_out=("X-Amz-Target",))
    assert "x-amz-target" not in seen.headers["Authorization"]
    for r in (send(seen), send(seen, **{"X-Amz-Target": target("DeleteCluster")})):
        assert r.status_code == 400, r.text
        assert r.json() == {
            "__type": "InvalidSignatureException",
            "message": "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization.",
        }
    assert cluster_names(ep) == ["prod"]
    # Signed in full (as botocore does), the same call works and cannot be retargeted.
    full = signed(ep, "DescribeClusters", {"clusters": ["prod"]})
    assert send(full).status_code == 200
    r = send(full, **{"X-Amz-Target": target("DeleteCluster")})
    assert r.json()["__type"] == "InvalidSignatureException"
    assert cluster_names(ep) == ["prod"]
    r = send(signed(ep, "ListClusters", {}, leave_out=("host",)))
    assert r.json()["message"] == "'Host' must be a 'SignedHeader' in the AWS Authorization."


def slow_client(endpoint: str) -> socket.socket:
    host, port = endpoint.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"POST / HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Amz-Tar")
    return s


def wait_closed(s: socket.socket, deadline: float) -> bool:
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        while s.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_slow_clients_beyond_the_open_files_limit_do_not_starve_the_server(server_tmp):
    # The server inherits an open-files limit of 256; 400 slow clients are more than it
    # could hold. (Before the fix, they held every descriptor and nobody got an answer.)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        s = start_server(server_tmp, ["--header-timeout", "1", "--idle-timeout", "2"], name="slow-clients")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    slow = []
    try:
        for _ in range(400):
            try:
                slow.append(slow_client(s.endpoint))
            except OSError:
                pass  # the listen backlog is full for a moment
        started = time.monotonic()
        r = requests.post(s.endpoint + "/", data=b"{}", headers={"Content-Type": JSON_CT, "X-Amz-Target": target("ListClusters")}, timeout=5)
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < 3
        deadline = time.monotonic() + 5
        still_open = [c for c in slow if not wait_closed(c, deadline)]
        assert not still_open, f"{len(still_open)} of {len(slow)} slow connections are still open"
        assert s.proc.poll() is None, s.log_text()
        assert requests.get(s.endpoint + "/healthz", timeout=5).status_code == 200
        assert "max connections lowered" in s.log_text()
    finally:
        for c in slow:
            c.close()
        s.stop()


def test_a_megabyte_of_input_is_not_echoed(endpoint, reset, validator):
    huge = "Z" * (1 << 20)
    calls = [
        ("RunTask", {"taskDefinition": "web", "count": huge}),
        ("CreateCluster", {"clusterName": huge}),
        ("DescribeClusters", {"clusters": huge}),
        ("TagResource", {"resourceArn": huge, "tags": [{"key": "k", "value": "v"}]}),
    ]
    for op, body in calls:
        r = requests.post(endpoint + "/", data=json.dumps(body), headers={"Content-Type": JSON_CT, "X-Amz-Target": target(op)}, timeout=10)
        assert r.status_code == 400, (op, r.status_code)
        assert len(r.content) < 2048, (op, len(r.content))
        message = r.json()["message"]
        assert len(message.encode()) <= 1024 and "ZZZZ" in message, (op, message)
        assert not validator.check_response(op, r.status_code, r.headers, r.content)
    # A value outside an enum is answered in ECS's words, which name the valid values only.
    body = json.dumps({"taskDefinition": "web", "launchType": huge})
    r = requests.post(endpoint + "/", data=body, headers={"Content-Type": JSON_CT, "X-Amz-Target": target("RunTask")}, timeout=10)
    assert r.status_code == 400 and len(r.content) < 2048
    assert r.json()["message"] == "launch type should be one of [EC2,FARGATE,EXTERNAL,MANAGED_INSTANCES]"
    r = requests.post(endpoint + "/", data=b"{}", headers={"Content-Type": JSON_CT, "X-Amz-Target": target("Y" * 60_000)}, timeout=10)
    assert r.json()["__type"] == "UnknownOperationException"
    assert len(r.content) < 400
