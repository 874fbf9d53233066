"""Shared helpers of the end-to-end tests: starting `flotilla server`, validating
responses against botocore's ECS model, boto3 clients, and small builders.

Kept out of conftest.py so that tests import them by a name no other test directory's
conftest can shadow.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.config import Config

from shape_check import PROTOCOL_ERRORS, shape_errors
from support import BIN, free_port, healthz


DATA = Path(__file__).resolve().parent / "data"


ACCOUNT = "000000000000"


TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"


JSON_CT = "application/x-amz-json-1.1"


# Keys of the --credentials server.
AUTH_KEY, AUTH_SECRET = "AKIDFLOTILLATEST", "flotilla-secret-1"


OTHER_KEY, OTHER_SECRET, OTHER_ACCOUNT = "AKIDOTHERACCOUNT", "flotilla-secret-2", "123456789012"




def flotilla_bin() -> Path:
    if not BIN.is_file() or not os.access(BIN, os.X_OK):
        pytest.fail(
            f"flotilla binary not found at {BIN}: build it with `cargo build -p flotilla` "
            "or point $FLOTILLA_BIN at one",
            pytrace=False,
        )
    return BIN


@dataclass
class Server:
    endpoint: str
    proc: subprocess.Popen
    data_dir: Path
    log: Path

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def reset(self) -> None:
        url = self.endpoint + "/admin/reset"
        req = urllib.request.Request(url, data=b"", method="POST", headers=signed_admin_headers(url))
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
            assert json.loads(r.read()) == {"status": "ok"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def signed_admin_headers(url: str, key: str = AUTH_KEY, secret: str = AUTH_SECRET) -> dict:
    """SigV4 headers for an empty `POST url` to flotilla's own endpoints (`/admin/reset`).

    A server with `--credentials` wants /admin/reset signed by a listed key (the scope's
    service may be any; "flotilla" here); a server without accepts any signature.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method="POST", url=url, data=b"")
    SigV4Auth(Credentials(key, secret), "flotilla", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def start_server(
    tmp: Path,
    extra_args: list[str] = (),
    name: str = "server",
    deadline: float = 30.0,
    allow_reset: bool = True,
    data_dir: Path | None = None,
) -> Server:
    """Starts `flotilla server` on a free loopback port (a new data dir unless one is given)
    and waits for /healthz; fails the test with the server's output if it does not come up."""
    binary = flotilla_bin()
    last_log = ""
    for _attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        data = data_dir or Path(tempfile.mkdtemp(prefix=f"{name}-data-", dir=tmp))
        log = tmp / f"{name}-{port}.log"
        endpoint = f"http://127.0.0.1:{port}"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(binary), "server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data), *(["--allow-reset"] if allow_reset else []), *extra_args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
            )
        server = Server(endpoint, proc, data, log)
        end = time.monotonic() + deadline
        while time.monotonic() < end and proc.poll() is None and not healthz(endpoint):
            time.sleep(0.05)
        if proc.poll() is None and healthz(endpoint):
            return server
        server.stop()
        last_log = server.log_text()
        if proc.returncode is None or "cannot listen" not in last_log:
            break
    pytest.fail(f"flotilla server did not become healthy within {deadline}s; its output:\n{last_log}", pytrace=False)


@dataclass
class ModelValidator:
    """Checks raw ECS JSON responses against botocore's service model.

    botocore's parser silently drops members it does not know, so the raw body is
    checked, not the parsed response.
    """

    model: object = field(default_factory=lambda: botocore.session.get_session().get_service_model("ecs"))
    violations: list = field(default_factory=list)
    checked: int = 0

    def check_value(self, shape, value, path: str, errors: list) -> None:
        shape_errors(shape, value, path, errors)

    def check_response(self, operation: str, status: int, headers, body: bytes) -> list:
        errors = []
        if not any(k.lower() == "x-amzn-requestid" and v for k, v in headers.items()):
            errors.append("no x-amzn-RequestId header")
        if status >= 500:
            errors.append(f"HTTP {status} (server error): {body[:500]!r}")
        ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if ctype != JSON_CT:
            errors.append(f"Content-Type is {ctype!r}, expected {JSON_CT}")
        try:
            doc = json.loads(body)
        except ValueError as e:
            return errors + [f"body is not JSON ({e}): {body[:200]!r}"]
        if not isinstance(doc, dict):
            return errors + [f"body is not a JSON object: {body[:200]!r}"]
        op = self.model.operation_model(operation)
        if status == 200:
            if op.output_shape is not None:
                self.check_value(op.output_shape, doc, operation + "Response", errors)
            elif doc:
                errors.append(f"{operation} has no output but the body is {doc!r}")
        else:
            code = doc.get("__type")
            if not isinstance(code, str) or not code:
                errors.append(f"error body has no __type: {doc!r}")
            else:
                declared = {s.name for s in op.error_shapes}
                if code not in declared and code not in PROTOCOL_ERRORS:
                    errors.append(f"error {code} is not an error {operation} declares ({sorted(declared)})")
            if not isinstance(doc.get("message"), str) or not doc.get("message"):
                errors.append(f"error body has no message: {doc!r}")
            extra = set(doc) - {"__type", "message", "resourceIds"}
            if extra:
                errors.append(f"error body has unexpected members {sorted(extra)}")
        return errors

    def hook(self, http_response, model, **_kwargs) -> None:
        """botocore `after-call.ecs` handler."""
        self.checked += 1
        errors = self.check_response(model.name, http_response.status_code, http_response.headers, http_response.content)
        if errors:
            self.violations.append((model.name, errors))
            raise AssertionError(f"{model.name} response violates the botocore ECS model:\n  " + "\n  ".join(errors))


NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)


_BOTOCORE = None


def _botocore_session():
    """One botocore session for every client: loading the ECS model once saves ~0.15 s a client."""
    global _BOTOCORE
    if _BOTOCORE is None:
        _BOTOCORE = botocore.session.Session()
        # Keep the user's ~/.aws and AWS_* variables out of the tests.
        _BOTOCORE.set_config_variable("config_file", os.devnull)
        _BOTOCORE.set_config_variable("credentials_file", os.devnull)
    return _BOTOCORE


def boto_client(service: str, endpoint: str, region: str, key: str, secret: str):
    """A boto3 client of `service` for a test server at `endpoint`: the shared botocore
    session, no retries."""
    return boto3.Session(botocore_session=_botocore_session()).client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=NO_RETRY,
    )


def make_client(endpoint: str, validator: ModelValidator, region: str = "us-east-1", key: str = "AKIDEXAMPLE", secret: str = "dummy-secret"):
    client = boto_client("ecs", endpoint, region, key, secret)
    client.meta.events.register("after-call.ecs", validator.hook)
    return client


def invalid_parameter(ecs, op, **kwargs) -> str:
    """Calls `op(**kwargs)`, which must fail with InvalidParameterException; the message."""
    with pytest.raises(ecs.exceptions.InvalidParameterException) as e:
        op(**kwargs)
    return error_of(e)[1]


def error_of(excinfo) -> tuple[str, str]:
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def cli_env(**extra: str) -> dict:
    """The environment for a run of the real AWS CLI against a test server: the caller's,
    without its `AWS_*` settings and config files, with dummy keys in us-east-1, plus
    `extra` (e.g. `AWS_ENDPOINT_URL=...`)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_ACCESS_KEY_ID": "dev",
        "AWS_SECRET_ACCESS_KEY": "dev",
        "AWS_DEFAULT_REGION": "us-east-1",
    } | extra


def aws_cli(env: dict, endpoint: str | None = None, cwd: Path | None = None):
    """The real AWS CLI as a test's function, run in `env` (see `cli_env`): `run(*args,
    ok=True)` runs `aws ARGS [--endpoint-url ENDPOINT] --output json` and returns its JSON
    output (None when it prints nothing); with `ok=False` it asserts that the command
    failed and returns its stderr. Fails the test at once when `aws` is not installed."""
    if shutil.which("aws") is None:
        pytest.fail("the AWS CLI (`aws`) is not installed: pip install awscli", pytrace=False)
    endpoint_args = ["--endpoint-url", endpoint] if endpoint else []

    def run(*args: str, ok: bool = True):
        r = subprocess.run(
            ["aws", *args, *endpoint_args, "--output", "json"],
            env=env, capture_output=True, text=True, timeout=60, cwd=cwd,
        )
        if ok:
            assert r.returncode == 0, f"aws {' '.join(args)} failed:\n{r.stderr[-2000:]}"
            return json.loads(r.stdout) if r.stdout.strip() else None
        assert r.returncode != 0, f"aws {' '.join(args)} should have failed:\n{r.stdout[-2000:]}"
        return r.stderr

    return run


def identity_document(instance_id: str, az: str = "us-east-1a", instance_type: str = "t3.large") -> str:
    return json.dumps({"instanceId": instance_id, "availabilityZone": az, "instanceType": instance_type})


def resources(cpu: int = 2048, memory: int = 4096, ports: list[str] | None = None) -> list[dict]:
    return [
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ports or ["22", "2375", "2376", "51678", "51679"]},
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
    ]


def register_instance(ecs, cluster: str, instance_id: str, cpu: int = 2048, memory: int = 4096, **kw) -> dict:
    return ecs.register_container_instance(
        cluster=cluster,
        instanceIdentityDocument=identity_document(instance_id, **kw),
        totalResources=resources(cpu, memory),
    )["containerInstance"]


def container(name: str = "app", memory: int = 128, cpu: int = 128, **kw) -> dict:
    return {"name": name, "image": "public.ecr.aws/docker/library/busybox:latest", "memory": memory, "cpu": cpu, "essential": True, **kw}


def register_taskdef(ecs, family: str = "web", memory: int = 128, cpu: int = 128, **kw) -> dict:
    return ecs.register_task_definition(family=family, containerDefinitions=[container(memory=memory, cpu=cpu)], **kw)["taskDefinition"]


def paginate_all(ecs, operation: str, result_key: str, page_size: int, **kwargs) -> tuple[list, int]:
    """Every item of a boto3 paginator, and the number of pages it took."""
    items, pages = [], 0
    for page in ecs.get_paginator(operation).paginate(PaginationConfig={"PageSize": page_size}, **kwargs):
        pages += 1
        assert len(page[result_key]) <= page_size
        items.extend(page[result_key])
    return items, pages
