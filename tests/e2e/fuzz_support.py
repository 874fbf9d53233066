"""A bounded fuzzer of flotilla's ECS API, shared by `test_fuzz.py` (a fixed number of
requests in the test suite) and `tools/fuzz_api.py` (a run of N seconds).

What it sends, for every operation of botocore's ECS model (and flotilla's own
`FlotillaAgentV1.*` / `FlotillaV1.*` targets):

- **well-formed requests** generated from the operation's input shape, with identifiers
  drawn from what exists on the server (a setup step creates clusters, task definitions,
  container instances, tasks and a service first; ARNs in answers are harvested), so most
  requests get past parsing and run real logic;
- **mutated requests**: one or more values replaced by boundary numbers (2**31-1, 2**63,
  -1, 1e308, "NaN"), huge strings (up to ~1 MB), unicode, values of the wrong type, deep
  nesting, empty or long lists, unknown or missing members, duplicate keys;
- **raw junk**: random bytes, truncated or non-object JSON, number literals no parser
  holds, wrong or missing `X-Amz-Target`, odd `Authorization` and `Content-Type` headers.

The invariants (see `check_answer`): every request is answered (no dropped connection,
no timeout); every answer is 200, or 4xx with a JSON object carrying `__type` and
`message`; never 5xx; a 200 to an ECS operation validates against botocore's model; the
server process stays alive; and after every batch a control request (DescribeClusters)
answers 200 within `CONTROL_DEADLINE` seconds.

Everything is driven by one `random.Random(seed)`: the same seed against a fresh server
sends the same requests (ids the server makes up, such as task ids, differ).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import re
import string
import time
import urllib.parse
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import botocore.session

from shape_check import PROTOCOL_ERRORS, shape_errors

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113"
AGENT_PREFIX = "FlotillaAgentV1"
USER_PREFIX = "FlotillaV1"
JSON_CT = "application/x-amz-json-1.1"
ACCOUNT = "000000000000"
REGION = "us-east-1"

SEED_ENV = "FLOTILLA_FUZZ_SEED"

# A control request must answer within this many seconds after every batch.
CONTROL_DEADLINE = 2.0
# Any single request must be answered within this many seconds.
REQUEST_TIMEOUT = 15.0
# The server refuses bodies over 2 MiB (axum's default body limit).
BODY_LIMIT = 2 * 1024 * 1024


# flotilla's own targets (not in botocore's model; `agent_request` builds their bodies).
AGENT_OPS = ("PollTasks", "ReportHealth", "ReportNetwork", "PutLogs", "PutHostAnswer",
             "RegisterExternalInstance", "RotateNodeCredentials")
USER_OPS = ("GetTaskLogs", "CallHostApi", "GetUpdaterState", "PutUpdaterState")

# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------

BOUNDARY_INTS = [
    0, 1, -1, 2, 6, 10, 100, 1000, 65535, 65536, 196608,
    2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32, 2**32 - 1,
    2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30,
]
BOUNDARY_FLOATS = [1e308, -1e308, 1.5, -0.0, 5e-324, 0.1, 2.5e9, 1.7976931348623157e308]
NASTY_STRINGS = [
    "", " ", "\t\n", "NaN", "nan", "Infinity", "-Infinity", "null", "true", "0", "-1",
    "2147483647", "9223372036854775808", "1e308", "0x10", "9" * 400,
    "arn:", "arn:aws:ecs", "arn:aws:ecs:::", f"arn:aws:ecs:{REGION}:{ACCOUNT}:",
    f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/", f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/",
    f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/a/b/c/d", f"arn:aws:ecs:{REGION}:{ACCOUNT}:service//",
    f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/:", f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/x",
    f"arn:aws:ecs:eu-west-1:123456789012:cluster/fuzz-a", "arn:aws:iam::000000000000:root",
    "fuzz-web:", "fuzz-web:0", "fuzz-web:-1", "fuzz-web:2147483647", "fuzz-web:99999999999",
    "fuzz-web:1:2", ":1", "a" * 256, "a" * 255, "a" * 64, "a" * 65,
    "\x00", "a\x00b", "\x7f", "\x1b[31m", "é", "ß", "\u202e", "\u200b", "\ufeff", "😀", "😀" * 50,
    "\ud800", "\udfff", "🏳️‍🌈", "Ω≈ç√", "ﷺ", "\u0301" * 20,
    "../../../../etc/passwd", "/dev/zero", "%s%n%x", "${jndi:ldap://x}", "<script>alert(1)</script>",
    "' OR 1=1 --", "*", "?", "a,b", "a;b", "a b", "a/b", "a:b:c", "CMD", "CMD-SHELL",
    "attribute:ecs.instance-type == t3.large", "attribute:ecs.availability-zone in [",
    "(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((",
    "not not not not not not not not not not not not not not not not not not not x",
    "task:group == a or " * 40 + "x",
]
WRONG_TYPES = [None, True, False, 0, -1, 1.5, "", "x", [], {}, [None], [[]], {"": None}, [1, "a", {}], {"a": {"b": [1]}}]


def huge_string(rng: random.Random, max_len: int = 1 << 20) -> str:
    """A long string: 1 KiB to `max_len` characters (log-uniform), ASCII or unicode."""
    n = int(2 ** rng.uniform(10, math.log2(max_len)))
    kind = rng.randrange(4)
    if kind == 0:
        return "a" * n
    if kind == 1:
        return "".join(rng.choice(string.printable) for _ in range(min(n, 4096))) * max(1, n // 4096)
    if kind == 2:
        return ("é😀\u202e" * (n // 3 + 1))[: n // 4]  # multi-byte: keep the body in bounds
    return "x" * (n - 20) + "\x00" + '"\\' + "y" * 17


def unicode_string(rng: random.Random) -> str:
    pool = "aZ09-_.:/ é€😀\u202e\u200b\ufeff\x00\x01\x7f\u0301ﷺ\ud800"
    return "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))


def deep(rng: random.Random, depth: int | None = None):
    """A value nested `depth` levels deep (lists and objects)."""
    depth = depth or rng.choice([20, 127, 128, 129, 300])  # deeper ones are in RAW_JUNK
    v: object = rng.choice([1, "x", None, []])
    for _ in range(depth):
        v = [v] if rng.random() < 0.5 else {"a": v}
    return v


def evil_value(rng: random.Random):
    r = rng.random()
    if r < 0.25:
        return rng.choice(BOUNDARY_INTS)
    if r < 0.33:
        return rng.choice(BOUNDARY_FLOATS)
    if r < 0.58:
        return rng.choice(NASTY_STRINGS)
    if r < 0.63:
        return huge_string(rng, 1 << 16)
    if r < 0.70:
        return unicode_string(rng)
    if r < 0.90:
        return rng.choice(WRONG_TYPES)
    if r < 0.95:
        return deep(rng, rng.choice([5, 50, 127, 129]))
    return [rng.choice(BOUNDARY_INTS + NASTY_STRINGS[:20]) for _ in range(rng.choice([0, 1, 101, 1000]))]


# --------------------------------------------------------------------------------------
# What exists on the server
# --------------------------------------------------------------------------------------

ARN_RE = re.compile(r'arn:aws:ecs:[a-z0-9-]+:\d{12}:(cluster|task-definition|container-instance|task-set|task|service|capacity-provider)/[^"\\\s]+')
TOKEN_RE = re.compile(r'"nextToken"\s*:\s*"([^"\\]+)"')


@dataclass
class Pool:
    """Identifiers known to exist (or to have existed) on the server, by kind."""

    clusters: list = field(default_factory=lambda: ["fuzz-a", "fuzz-b", "default"])
    families: list = field(default_factory=lambda: ["fuzz-web", "fuzz-vpc", "fuzz-host"])
    taskdefs: list = field(default_factory=lambda: ["fuzz-web", "fuzz-web:1", "fuzz-vpc:1", "fuzz-host"])
    instances: list = field(default_factory=list)
    tasks: list = field(default_factory=list)
    services: list = field(default_factory=lambda: ["fuzz-svc", "fuzz-ext"])
    task_sets: list = field(default_factory=list)
    capacity_providers: list = field(default_factory=lambda: ["fuzz-cp"])
    tokens: dict = field(default_factory=dict)  # operation -> nextTokens it answered
    LIMIT = 64

    def add(self, kind: str, value: str, lst: list | None = None) -> None:
        lst = getattr(self, kind) if lst is None else lst
        if value not in lst:
            lst.append(value)
            if len(lst) > self.LIMIT:
                del lst[len(lst) // 2]  # keep the setup's first entries and the newest

    def harvest(self, body: bytes, op: str | None = None) -> None:
        """Remembers the ARNs and page tokens of an answer."""
        text = body[:200_000].decode("utf-8", "replace")
        for m in ARN_RE.finditer(text):
            arn, kind = m.group(0), m.group(1)
            rest = arn.split(":", 5)[5].split("/", 1)[1]
            if kind == "cluster":
                self.add("clusters", arn)
            elif kind == "task-definition":
                self.add("taskdefs", arn)
                self.add("families", rest.rsplit(":", 1)[0])
            elif kind == "container-instance":
                self.add("instances", arn)
            elif kind == "task":
                self.add("tasks", arn)
            elif kind == "service":
                self.add("services", arn)
            elif kind == "task-set":
                self.add("task_sets", arn)
            elif kind == "capacity-provider":
                self.add("capacity_providers", rest)
        if op:
            for m in TOKEN_RE.finditer(text):
                self.add("tokens", m.group(1), self.tokens.setdefault(op, []))

    def any_arn(self, rng: random.Random) -> str:
        kinds = [k for k in ("clusters", "taskdefs", "instances", "tasks", "services") if getattr(self, k)]
        lst = getattr(self, rng.choice(kinds))
        return rng.choice([x for x in lst if x.startswith("arn:")] or lst)


# --------------------------------------------------------------------------------------
# Well-formed requests from the model's shapes
# --------------------------------------------------------------------------------------

def identity_document(rng: random.Random) -> str:
    return json.dumps({
        "instanceId": f"i-{rng.getrandbits(64):016x}"[: rng.choice([19, 19, 19, 5])],
        "availabilityZone": rng.choice(["us-east-1a", "us-east-1b", "us-east-1c"]),
        "instanceType": rng.choice(["t3.large", "m5.xlarge"]),
        "imageId": "ami-fuzz",
    })


def resources(rng: random.Random, cpu: int | None = None, memory: int | None = None) -> list:
    return [
        {"name": "CPU", "type": "INTEGER", "integerValue": cpu if cpu is not None else rng.choice([1024, 4096, 65536])},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory if memory is not None else rng.choice([2048, 16384, 262144])},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "2375", "2376", "51678", "51679"]},
        {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
    ]


def container(rng: random.Random, name: str = "app") -> dict:
    c = {"name": name, "image": rng.choice(["busybox:latest", "127.0.0.1:5000/busybox:latest", "public.ecr.aws/docker/library/busybox:latest"]),
         "memory": rng.choice([16, 32, 64]), "essential": True}
    if rng.random() < 0.5:
        c["cpu"] = rng.choice([0, 10, 128])
    if rng.random() < 0.4:
        c["portMappings"] = [{"containerPort": rng.choice([80, 8080, 443]), "hostPort": 0}]
    if rng.random() < 0.3:
        c["environment"] = [{"name": "K", "value": "v"}]
    if rng.random() < 0.2:
        c["healthCheck"] = {"command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 2, "retries": 1}
    return c


TASK_STATUSES = ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED", "DELETED"]

CLUSTER_QUERIES = [
    "attribute:ecs.instance-type == t3.large", "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
    "runningTasksCount > 0", "agentConnected == true", "task:group == service:fuzz-svc",
    "attribute:ecs.os-type exists", "not(attribute:fuzz == x)", "ec2InstanceId =~ i-*",
    "registeredAt < 2030-01-01T00:00:00Z", "attribute:ecs.instance-type =~ t3.*",
]


def nested_query(rng: random.Random) -> str:
    """A cluster-query expression nested up to a few hundred levels deep, within the
    2000-byte expression limit (a recursive parser must bound its depth)."""
    core = "agentConnected == true"
    room = 2000 - len(core)
    depth = rng.choice([1, 10, 64, 100, 300, 450, 600, 900, 1900])
    kind = rng.randrange(4)
    if kind == 0:
        d = min(depth, room // 2)
        return "(" * d + core + ")" * d
    if kind == 1:
        return "!" * min(depth, room) + core
    if kind == 2:
        return "not " * min(depth, room // 4) + core
    d = min(depth, room // 3)
    return "!(" * d + core + ")" * d


def query(rng: random.Random) -> str:
    return nested_query(rng) if rng.random() < 0.3 else rng.choice(CLUSTER_QUERIES)


class Generator:
    """Generates a request body for an operation from its botocore input shape."""

    def __init__(self, rng: random.Random, model, pool: Pool, now: float | None = None):
        self.rng = rng
        self.now = time.time() if now is None else now  # timestamps are relative to it
        self.model = model
        self.pool = pool
        self.serial = 0
        self.op = ""
        self.focus = "fuzz-a"
        self.hints: dict[str, Callable[[], object]] = self._hints()

    def _new_name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def _pick(self, lst: list, new: Callable[[], str] | None = None) -> str:
        if (not lst or self.rng.random() < 0.1) and new:
            return new()
        if not lst:
            return self.rng.choice(NASTY_STRINGS[:12])
        return self.rng.choice(lst)

    def _some(self, one: Callable[[], object], most: int = 3) -> list:
        return [one() for _ in range(self.rng.randint(0 if self.rng.random() < 0.1 else 1, most))]

    def _in_focus(self, lst: list) -> list:
        """The entries of `lst` in the request's cluster (ARNs name it), else all."""
        mine = [x for x in lst if f"/{self.focus}/" in x]
        return mine if mine and self.rng.random() < 0.9 else lst

    def _cluster(self) -> str:
        r = self.rng
        if r.random() < 0.9:
            return self.focus if r.random() < 0.6 else f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{self.focus}"
        return self._pick(self.pool.clusters, lambda: self._new_name("fuzz-c"))

    def _hints(self) -> dict[str, Callable[[], object]]:
        r, p = self.rng, self.pool
        taskdef = lambda: self._pick(p.taskdefs)  # noqa: E731
        instance = lambda: self._pick(self._in_focus(p.instances))  # noqa: E731
        task = lambda: self._pick(self._in_focus(p.tasks))  # noqa: E731
        service = lambda: self._pick(self._in_focus(p.services), lambda: self._new_name("fuzz-s"))  # noqa: E731
        tag = lambda: {"key": r.choice(["team", "env", "k" * 128, "é"]), "value": r.choice(["fuzz", "", "v" * 256])}  # noqa: E731
        return {
            "cluster": self._cluster,
            "clusters": lambda: self._some(self._cluster),
            "clusterName": lambda: self._pick(p.clusters[:3], lambda: self._new_name("fuzz-c")),
            "taskDefinition": taskdef,
            "taskDefinitions": lambda: self._some(taskdef),
            "family": lambda: self._pick(p.families, lambda: self._new_name("fuzz-f")),
            "familyPrefix": lambda: self._pick(p.families),
            "containerInstance": instance,
            "containerInstanceArn": instance,
            "containerInstances": lambda: self._some(instance),
            "targetId": instance,
            "task": task,
            "tasks": lambda: self._some(task),
            "service": service,
            "serviceName": lambda: self._new_name("fuzz-s") if r.random() < 0.7 else service(),
            "services": lambda: self._some(service),
            "resourceArn": lambda: p.any_arn(r),
            "tags": lambda: [tag() for _ in range(r.choice([0, 1, 2, 50]))],
            "tagKeys": lambda: [r.choice(["team", "env", "x"])],
            "capacityProviders": lambda: r.sample(["FARGATE", "FARGATE_SPOT"], r.randint(0, 2)),
            "capacityProvider": lambda: self._pick(p.capacity_providers) if r.random() < 0.7 else r.choice(["FARGATE", "FARGATE_SPOT"]),
            "taskSet": lambda: self._pick(p.task_sets),
            "primaryTaskSet": lambda: self._pick(p.task_sets),
            "taskSets": lambda: self._some(lambda: self._pick(p.task_sets)),
            "settings": lambda: [{"name": "containerInsights", "value": r.choice(["enabled", "disabled", "enhanced"])}],
            "instanceIdentityDocument": lambda: identity_document(r),
            "totalResources": lambda: resources(r),
            "containerDefinitions": lambda: [container(r, n) for n in ("app", "side")[: r.randint(1, 2)]],
            "containerName": lambda: r.choice(["app", "side"]),
            "image": lambda: "busybox:latest",
            "principalArn": lambda: r.choice([f"arn:aws:iam::{ACCOUNT}:root", f"arn:aws:iam::{ACCOUNT}:user/fuzz", f"arn:aws:iam::{ACCOUNT}:role/fuzz"]),
            "nextToken": lambda: self._pick(p.tokens.get(self.op, [])) if p.tokens.get(self.op) and r.random() < 0.8 else r.choice(["", "x", "eyJ9", "a" * 300]),
            "maxResults": lambda: r.choice([1, 2, 10, 100]),
            "desiredCount": lambda: r.choice([0, 0, 1, 2]),
            "count": lambda: r.choice([1, 1, 2, 3]),
            "expiresInMinutes": lambda: r.choice([1, 60, 2880]),
            "filter": lambda: query(r),
            "expression": lambda: query(r),
            "startedBy": lambda: r.choice(["fuzz", "ecs-svc-123", "a" * 36]),
            "reason": lambda: r.choice(["fuzz", "stop"]),
            "group": lambda: r.choice(["fuzz", "family:fuzz-web", "service:fuzz-svc"]),
            "key": lambda: r.choice(["team", "env", "k" * 128]),
            "value": lambda: r.choice(["enabled", "enabled", "disabled", "v"]),
            "cpu": lambda: r.choice(["256", "1 vCPU", "0.5 vcpu", "1024"]),
            "memory": lambda: r.choice(["512", "1 GB", "2048"]),
            "networkMode": lambda: r.choice(["bridge", "host", "awsvpc", "none"]),
            "executionStoppedAt": lambda: self.now,
            "pullStartedAt": lambda: self.now,
            "pullStoppedAt": lambda: self.now,
        }

    def value(self, shape, name: str = "", depth: int = 0):
        """A value of `shape` for the member `name`: the member's hint when it has one of
        the right type, else generated from the shape (required members always, optional
        ones less often the deeper they are)."""
        r = self.rng
        hint = self.hints.get(name)
        if hint is not None and r.random() < 0.85:
            v = hint()
            if v is not None and self._fits(shape, v):
                return v
        t = shape.type_name
        if t == "structure":
            out = {}
            required = set(shape.required_members)
            for k, m in shape.members.items():
                p_opt = 0.35 if depth < 2 else (0.12 if depth < 4 else 0.0)
                if (k == "cluster" and depth == 0) or k in ("expression", "filter", "type"):
                    p_opt = 0.9  # the members most inputs are about
                if k in required or r.random() < p_opt:
                    out[k] = self.value(m, k, depth + 1)
            return out
        if t == "list":
            n = r.choice([0, 1, 1, 1, 2, 3]) if depth < 5 else 0
            return [self.value(shape.member, name, depth + 1) for _ in range(n)]
        if t == "map":
            n = r.choice([0, 1, 2]) if depth < 5 else 0
            return {f"k{i}": self.value(shape.value, "", depth + 1) for i in range(n)}
        if t == "string":
            if shape.enum:
                return r.choice(shape.enum)
            return r.choice(["fuzz", "a", "x-1", "arn:aws:ecs:us-east-1:000000000000:cluster/fuzz-a", "/data", "v"])
        if t in ("integer", "long"):
            if r.random() < 0.12:
                return r.choice([0, -1, 2**31 - 1, -(2**31)] + ([2**63 - 1] if t == "long" else []))
            return r.choice([0, 1, 2, 5, 10, 30, 100])
        if t in ("double", "float"):
            return r.choice([0.0, 0.5, 1.0, 100.0])
        if t == "boolean":
            return r.random() < 0.5
        if t == "timestamp":
            return round(self.now + r.choice([-3600, 0, 60]), 3)
        if t == "blob":
            return "ZnV6eg=="
        return None

    @staticmethod
    def _fits(shape, v) -> bool:
        """Whether a hint's value has the shape's type (a member name can mean different
        things in different structures)."""
        t = shape.type_name
        if t == "string":
            return isinstance(v, str) and (not shape.enum or v in shape.enum)
        if t == "list":
            return isinstance(v, list) and all(Generator._fits(shape.member, x) for x in v)
        if t == "structure":
            return isinstance(v, dict) and all(k in shape.members and Generator._fits(shape.members[k], x) for k, x in v.items())
        if t in ("integer", "long"):
            return isinstance(v, int) and not isinstance(v, bool)
        if t in ("double", "float", "timestamp"):
            return isinstance(v, (int, float)) and not isinstance(v, bool)
        return True

    def request(self, op: str) -> dict:
        shape = self.model.operation_model(op).input_shape
        self.op = op
        names = [c.rsplit("/", 1)[-1] for c in self.pool.clusters]
        self.focus = "fuzz-a" if self.rng.random() < 0.6 else self.rng.choice(names)
        if shape is None:
            return {}
        body = self.value(shape)
        return self._fix_up(op, body)

    def _fix_up(self, op: str, body: dict) -> dict:
        """Small touches that make generated requests valid more often."""
        r = self.rng
        if op == "RegisterTaskDefinition":
            body["family"] = self._pick(self.pool.families[:3], lambda: self._new_name("fuzz-f"))
            body["containerDefinitions"] = [container(r, n) for n in ("app", "side")[: r.randint(1, 2)]]
            if body.get("networkMode") == "none":
                for c in body["containerDefinitions"]:
                    c.pop("portMappings", None)
            for k in ("volumes", "proxyConfiguration", "inferenceAccelerators", "placementConstraints"):
                if r.random() < 0.7:
                    body.pop(k, None)
        elif op in ("RunTask", "StartTask"):
            for k in ("networkConfiguration", "capacityProviderStrategy", "volumeConfigurations", "launchType", "platformVersion",
                      "overrides", "placementStrategy", "tags"):
                if r.random() < 0.7:
                    body.pop(k, None)
        elif op in ("CreateService", "UpdateService"):
            for k in ("loadBalancers", "serviceRegistries", "serviceConnectConfiguration", "volumeConfigurations",
                      "vpcLatticeConfigurations", "capacityProviderStrategy", "networkConfiguration", "launchType",
                      "platformVersion", "role", "deploymentController"):
                if r.random() < 0.8:
                    body.pop(k, None)
            if op == "CreateService" and "taskDefinition" not in body and r.random() < 0.8:
                body["taskDefinition"] = self._pick(self.pool.taskdefs)
        elif op == "RegisterContainerInstance" and r.random() < 0.7:
            body.pop("platformDevices", None)
            body.pop("containerInstanceArn", None)
        elif op in ("SubmitTaskStateChange", "SubmitContainerStateChange"):
            body["task"] = self.hints["task"]()
            body["status"] = r.choice(TASK_STATUSES)
            for c in body.get("containers") or []:
                if isinstance(c, dict):
                    c["containerName"] = r.choice(["app", "side"])
                    c["status"] = r.choice(TASK_STATUSES)
        elif op in ("CreateTaskSet", "UpdateTaskSet", "DeleteTaskSet", "DescribeTaskSets", "UpdateServicePrimaryTaskSet") \
                and r.random() < 0.8:
            # The EXTERNAL service of the setup, where task sets live.
            body["cluster"], body["service"] = "fuzz-a", "fuzz-ext"
            if op == "CreateTaskSet":
                body["taskDefinition"] = self._pick(self.pool.taskdefs[:2])
                for k in ("loadBalancers", "serviceRegistries", "networkConfiguration", "launchType",
                          "capacityProviderStrategy", "platformVersion"):
                    body.pop(k, None)
        elif op == "CreateCapacityProvider" and r.random() < 0.8:
            body["name"] = self._new_name("fuzz-cp")
            body["autoScalingGroupProvider"] = {"autoScalingGroupArn": self._new_name("fuzz-group")}
        elif op in ("PutAccountSetting", "PutAccountSettingDefault") and r.random() < 0.8:
            body["value"] = {"fargateTaskRetirementWaitPeriod": r.choice(["0", "7", "14"]),
                             "defaultLogDriverMode": r.choice(["blocking", "non-blocking"])}.get(body.get("name"), r.choice(["enabled", "disabled"]))
        return body


def agent_request(rng: random.Random, pool: Pool, op: str) -> dict:
    """A well-formed body for flotilla's own targets. Never one that may long-poll:
    PollTasks gets no `knownDigest` (it answers at once), GetTaskLogs never names a task
    that exists (a log read of a task on a polling instance waits for its agent)."""
    pick = lambda lst, dflt: rng.choice(lst) if lst else dflt  # noqa: E731
    cluster = pick(pool.clusters, "fuzz-a")
    if op == "PollTasks":
        return {"cluster": cluster, "containerInstance": pick(pool.instances, "x"), "waitSeconds": rng.choice([0, 1, 20, 2**31])}
    if op == "ReportHealth":
        return {"cluster": cluster, "task": pick(pool.tasks, "x"),
                "containers": [{"containerName": "app", "healthStatus": rng.choice(["HEALTHY", "UNHEALTHY", "UNKNOWN"])}]}
    if op == "ReportNetwork":
        return {"cluster": cluster, "task": pick(pool.tasks, "x"), "privateIpv4Address": rng.choice(["172.31.0.5", "::1", "999.1.1.1", ""]),
                "macAddress": "02:00:00:00:00:01", "subnet": "172.31.0.0/16", "gateway": "172.31.0.1"}
    if op == "PutLogs":
        return {"cluster": cluster, "containerInstance": pick(pool.instances, "x"), "requestId": rng.choice(["logs-1", "", "x" * 100]),
                "events": [{"containerName": "app", "timestamp": "2026-01-01T00:00:00Z", "stream": "stdout", "message": "hi"}],
                "cursors": {"app": {"file": 1, "head": 0, "offset": 2}}, "hasMore": False, "containers": ["app"]}
    if op == "PutHostAnswer":
        return {"cluster": cluster, "containerInstance": pick(pool.instances, "x"), "requestId": rng.choice(["req-1", "", "x" * 100]),
                "answer": rng.choice([{"status": 200, "body": {"version_id": "1.0.0"}}, {"status": 404, "body": "none"}, None]),
                "error": rng.choice([None, "no host layer"])}
    if op == "CallHostApi":
        # An instance id of the right form that names no instance (a call to a polling
        # instance waits for its agent).
        return {"cluster": cluster, "containerInstance": f"{rng.getrandbits(128):032x}",
                "call": rng.choice([{"action": "GetOs"}, {"action": "Reboot"}, {"action": "GetSettings", "prefix": "ecs"},
                                    {"action": "SetSettings", "settings": {"motd": "hi"}}, {"action": "RunShell"}])}
    if op == "RegisterExternalInstance":
        # ECS Anywhere's bootstrap: an activation that does not exist (answered
        # InvalidActivation / InvalidActivationId; the fuzzer creates none).
        return {"activationId": rng.choice([f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}", "x", ""]),
                "activationCode": rng.choice(["A" * 20, "", "x" * 300]), "hostname": rng.choice(["node-1", "x" * 300])}
    if op == "RotateNodeCredentials":
        # Only a node's own key may rotate it: the fuzzer's requests are refused.
        return {}
    if op == "GetUpdaterState":
        return {"cluster": cluster}
    if op == "PutUpdaterState":
        return {"cluster": cluster, "document": rng.choice(["{}", '{"state":{"halt":null},"events":[]}', "not json", ""]),
                "expectedRevision": rng.choice([0, 1, 2**64 - 1]), "holder": rng.choice([None, "fuzz", "", "x" * 300]),
                "leaseSeconds": rng.choice([0, 30, 301, 2**32 - 1])}
    # GetTaskLogs: a task id of the right form that names no task.
    return {"cluster": cluster, "task": f"{rng.getrandbits(128):032x}", "tail": rng.choice([1, 10, 2**31]),
            "waitSeconds": rng.choice([0, 1, 21, 2**32 - 1])}


# --------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------

def _paths(v, prefix=()):
    """Every path into a JSON value (the root included), down to 40 levels."""
    yield prefix
    if len(prefix) >= 40:
        return
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, prefix + (i,))


def _set(root, path, value):
    if not path:
        return value
    node = root
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return root


def _get(root, path):
    for p in path:
        root = root[p]
    return root


def mutate_value(rng: random.Random, body: dict) -> tuple[object, str]:
    """One structural mutation of a JSON body; returns (body, what was done)."""
    body = json.loads(json.dumps(body))
    paths = [p for p in _paths(body) if p]
    kind = rng.choice(["evil", "evil", "evil", "drop", "unknown", "deep", "huge", "unicode", "empty", "long-list", "dup-item", "type"])
    if not paths and kind not in ("unknown",):
        kind = "unknown"
    if kind == "evil":
        p = rng.choice(paths)
        v = evil_value(rng)
        return _set(body, p, v), f"evil {'.'.join(map(str, p))}"
    if kind == "drop":
        p = rng.choice(paths)
        parent = _get(body, p[:-1])
        del parent[p[-1]]
        return body, f"drop {'.'.join(map(str, p))}"
    if kind == "unknown":
        body[rng.choice(["unknownMember", "__proto__", "", "clusterName ", "CLUSTER", "\u0000"])] = evil_value(rng)
        return body, "unknown member"
    if kind == "deep":
        p = rng.choice(paths)
        return _set(body, p, deep(rng)), f"deep {'.'.join(map(str, p))}"
    if kind == "huge":
        strs = [p for p in paths if isinstance(_get(body, p), str)] or paths
        p = rng.choice(strs)
        return _set(body, p, huge_string(rng)), f"huge {'.'.join(map(str, p))}"
    if kind == "unicode":
        strs = [p for p in paths if isinstance(_get(body, p), str)] or paths
        p = rng.choice(strs)
        return _set(body, p, unicode_string(rng)), f"unicode {'.'.join(map(str, p))}"
    if kind == "empty":
        p = rng.choice(paths)
        return _set(body, p, rng.choice([[], {}, ""])), f"empty {'.'.join(map(str, p))}"
    if kind == "long-list":
        lists = [p for p in paths if isinstance(_get(body, p), list) and _get(body, p)]
        if lists:
            p = rng.choice(lists)
            item = _get(body, p)[0]
            n = rng.choice([11, 51, 101, 1001, 10000])
            if len(json.dumps(item)) * n > BODY_LIMIT:
                n = max(2, BODY_LIMIT // (len(json.dumps(item)) + 2) // 2)
            return _set(body, p, [json.loads(json.dumps(item)) for _ in range(n)]), f"long-list {'.'.join(map(str, p))} x{n}"
        kind = "type"
    if kind == "dup-item":
        lists = [p for p in paths if isinstance(_get(body, p), list) and _get(body, p)]
        if lists:
            p = rng.choice(lists)
            lst = _get(body, p)
            lst.append(json.loads(json.dumps(lst[0])))
            return body, f"dup-item {'.'.join(map(str, p))}"
    p = rng.choice(paths)
    return _set(body, p, rng.choice(WRONG_TYPES)), f"type {'.'.join(map(str, p))}"


def _dumps(v) -> bytes:
    # ensure_ascii keeps lone surrogates ("\ud800") encodable; they go out as \u escapes.
    return json.dumps(v, ensure_ascii=True, allow_nan=True).encode()


def duplicate_key_body(rng: random.Random, body: dict) -> bytes:
    """The body with one member given twice (the second value evil)."""
    if not body:
        return b'{"cluster": "fuzz-a", "cluster": ["x"]}'
    k = rng.choice(list(body))
    inner = _dumps(body)[1:-1]
    extra = _dumps({k: evil_value(rng)})[1:-1]
    first = _dumps({k: evil_value(rng)})[1:-1]
    return b"{" + first + b", " + inner + b", " + extra + b"}"


RAW_JUNK = [
    b"", b" ", b"null", b"true", b"0", b"-0", b"[]", b"[{}]", b'"x"', b"{", b"}", b"{}}", b"{]",
    b'{"cluster": }', b'{"cluster": "fuzz-a",}', b"{'cluster': 'x'}", b'{"cluster": NaN}',
    b'{"maxResults": Infinity}', b'{"maxResults": 1e999}', b'{"maxResults": -1e999}',
    b'{"count": 123456789012345678901234567890}', b'{"count": 1.0}', b'{"count": 1e2}', b'{"count": -0}',
    b'{"desiredCount": 2147483648}', b'{"desiredCount": 9223372036854775808}',
    b'{"cluster": "\\ud800"}', b'{"cluster": "\\udc00\\ud800"}', b'{"cluster": "\\u0000"}', b'{"cluster": "\xff"}',
    b'{"cluster": "\xed\xa0\x80"}', b'\xef\xbb\xbf{"cluster": "fuzz-a"}', b'{"cluster": "fuzz-a"}\x00',
    b'{"cluster": "fuzz-a"} {"cluster": "x"}', b'{"cluster": "fuzz-a"}garbage',
    b"\x00" * 64, b"\xff\xfe{\x00}\x00", b"\x1f\x8b\x08\x00" + b"\x00" * 16,
    b'{"a":' * 10000 + b"1" + b"}" * 10000, b"[" * 100000, b'{"tags": [' + b"{}," * 50000 + b"{}]}",
    b" " * 100000 + b"{}", b'{"' + b"k" * 100000 + b'": 1}',
]

ODD_TARGETS = [
    None, "", TARGET_PREFIX, f"{TARGET_PREFIX}.", f"{TARGET_PREFIX}..", f"{TARGET_PREFIX}.listClusters",
    f"{TARGET_PREFIX}.ListClusters ", f"{TARGET_PREFIX}.ListClusters.ListClusters", f"{TARGET_PREFIX}.{'A' * 8000}",
    f"{TARGET_PREFIX}./", f"{TARGET_PREFIX}.\u00e9", "DynamoDB_20120810.ListTables", "ListClusters",
    f"{AGENT_PREFIX}.ListClusters", f"{AGENT_PREFIX}.", f"{USER_PREFIX}.PollTasks", f"{USER_PREFIX}.GetTaskLogs.x",
    f"{TARGET_PREFIX.lower()}.ListClusters", ".ListClusters", f"{TARGET_PREFIX}.ListClusters\t",
]

ODD_AUTH = [
    "", "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=", "Bearer x", "AWS4-HMAC-SHA256 Credential=K/20260101/us-east-1/ecs",
    "AWS4-HMAC-SHA256 Credential=K/20260101/EVIL REGION/ecs/aws4_request, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=K/20260101/us-east-1:x/ecs/aws4_request, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=K/20260101/" + "r" * 5000 + "/ecs/aws4_request, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=K/20260101/eu-west-1/ecs/aws4_request, SignedHeaders=" + ";".join(["x"] * 2000) + ", Signature=zz",
    "AWS4-HMAC-SHA256 Credential=////, SignedHeaders=, Signature=",
    "AWS4-HMAC-SHA256 Credential=K/20260101/ap-south-1/ecs/aws4_request, SignedHeaders=host, Signature=00",
]


# --------------------------------------------------------------------------------------
# Sending and checking
# --------------------------------------------------------------------------------------

@dataclass
class Request:
    """One request as sent: everything needed to replay it."""

    label: str  # operation (or "raw") and what was done to it
    target: str | None
    body: bytes
    headers: dict = field(default_factory=dict)
    op: str | None = None  # the ECS operation whose model the answer is checked against

    def reproducer(self, endpoint: str = "$ENDPOINT", limit: int = 300) -> str:
        body = self.body if len(self.body) <= limit else self.body[:limit] + b"...(%d bytes)" % len(self.body)
        h = {"Content-Type": JSON_CT, **({"X-Amz-Target": self.target} if self.target is not None else {}), **self.headers}
        return f"POST {endpoint}/ headers={h!r} body={body!r}"


@dataclass
class Answer:
    status: int | None
    headers: dict
    body: bytes
    seconds: float
    error: str | None = None  # the connection failed or timed out


class Client:
    """A keep-alive HTTP/1.1 client of one loopback endpoint (reconnects when needed)."""

    def __init__(self, endpoint: str, timeout: float = REQUEST_TIMEOUT):
        u = urllib.parse.urlsplit(endpoint)
        if u.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the fuzzer only talks to a loopback endpoint, not {endpoint}")
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def send(self, req: Request, timeout: float | None = None) -> Answer:
        headers = {"Content-Type": JSON_CT}
        if req.target is not None:
            headers["X-Amz-Target"] = req.target
        headers.update(req.headers)
        start = time.monotonic()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
            try:
                self.conn.request("POST", "/", body=req.body, headers=_encodable(headers))
                r = self.conn.getresponse()
                body = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, body, time.monotonic() - start)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                # A keep-alive connection the server closed between requests: retry once
                # on a new one. A second failure is a dropped request.
                self.close()
                if attempt == 1:
                    return Answer(None, {}, b"", time.monotonic() - start, f"connection dropped: {e!r}")
            except (OSError, http.client.HTTPException) as e:
                self.close()
                return Answer(None, {}, b"", time.monotonic() - start, f"no answer: {e!r}")
        raise AssertionError("unreachable")


def _encodable(headers: dict) -> dict:
    """http.client sends header values as latin-1; anything else goes out UTF-8 encoded."""
    out = {}
    for k, v in headers.items():
        try:
            v.encode("latin-1")
            out[k] = v
        except UnicodeEncodeError:
            out[k] = v.encode("utf-8")
    return out


class ModelCheck:
    """Checks a 200 answer against botocore's output shape (as e2e_support.ModelValidator,
    without pytest: the tool uses it too)."""

    def __init__(self, model):
        self.model = model

    def value(self, shape, v, path: str, errors: list) -> None:
        shape_errors(shape, v, path, errors)

    def check(self, op: str, status: int, doc: dict) -> list:
        errors: list = []
        o = self.model.operation_model(op)
        if status == 200:
            if o.output_shape is not None:
                self.value(o.output_shape, doc, op + "Response", errors)
        else:
            code = doc.get("__type")
            declared = {s.name for s in o.error_shapes}
            if code not in declared and code not in PROTOCOL_ERRORS:
                errors.append(f"error {code} is not an error {op} declares")
        return errors


def check_answer(req: Request, ans: Answer, model_check: ModelCheck | None) -> list:
    """The invariants one answer must hold; returns what it broke (empty: all held)."""
    if ans.error:
        return [ans.error]
    problems = []
    if ans.status is None or ans.status >= 500:
        problems.append(f"HTTP {ans.status} (server error)")
    elif ans.status != 200 and not 400 <= ans.status < 500:
        problems.append(f"HTTP {ans.status}: neither 200 nor 4xx")
    if not ans.headers.get("x-amzn-requestid"):
        problems.append("no x-amzn-RequestId header")
    try:
        doc = json.loads(ans.body)
    except ValueError:
        return problems + [f"body is not JSON: {ans.body[:200]!r}"]
    if not isinstance(doc, dict):
        return problems + [f"body is not a JSON object: {ans.body[:200]!r}"]
    if ans.status != 200:
        if not isinstance(doc.get("__type"), str) or not doc["__type"]:
            problems.append(f"error without __type: {ans.body[:200]!r}")
        if not isinstance(doc.get("message"), str) or not doc["message"]:
            problems.append(f"error without message: {ans.body[:200]!r}")
    if model_check is not None and req.op is not None and ans.status is not None and ans.status < 500:
        problems += model_check.check(req.op, ans.status, doc)[:5]
    return problems


# --------------------------------------------------------------------------------------
# The fuzzer
# --------------------------------------------------------------------------------------

@dataclass
class Finding:
    request: Request
    problems: list
    status: int | None

    def __str__(self) -> str:
        return f"[{self.request.label}] {'; '.join(self.problems)}\n    reproducer: {self.request.reproducer()}"


@dataclass
class Report:
    seed: int
    sent: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_code: Counter = field(default_factory=Counter)
    ok_ops: Counter = field(default_factory=Counter)  # operations that answered 200
    sent_ops: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)  # well-formed / mutated / raw / target
    refused: Counter = field(default_factory=Counter)  # (operation, code) of refused well-formed requests
    refused_sample: dict = field(default_factory=dict)  # (operation, code) -> a message
    findings: list = field(default_factory=list)
    control_max: float = 0.0
    slowest: tuple = (0.0, "")
    seconds: float = 0.0
    crashed: str | None = None  # the request after which the server died (the first time)
    crashes: list = field(default_factory=list)  # every such request (runs that restart it)
    crash_context: list = field(default_factory=list)  # per crash, the requests sent just before

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items(), key=lambda kv: str(kv[0])))
        codes = ", ".join(f"{k} {v}" for k, v in self.by_code.most_common())
        return (
            f"seed {self.seed}: {self.sent} requests in {self.seconds:.1f} s ({', '.join(f'{k} {v}' for k, v in sorted(self.kinds.items()))})\n"
            f"  answers by status: {statuses}\n"
            f"  error codes: {codes}\n"
            f"  operations answering 200: {len(self.ok_ops)} of {len(self.sent_ops)} sent\n"
            f"  slowest request {self.slowest[0]:.2f} s ({self.slowest[1]}); slowest control request {self.control_max:.3f} s\n"
            f"  findings: {len(self.findings)}" + (f"; SERVER DIED {len(self.crashes)} time(s), first {self.crashed}" if self.crashed else "")
        )


class Fuzzer:
    """Sends generated, mutated and raw requests to one server and checks every answer.

    `alive()` says whether the server process still runs (the test passes its Popen's
    poll; the tool, which does not own the server, checks /healthz). `reset()`, when
    given, wipes the server between phases (only servers run with --allow-reset)."""

    def __init__(self, endpoint: str, seed: int, alive: Callable[[], bool] | None = None,
                 reset: Callable[[], None] | None = None, log: Callable[[str], None] = lambda s: None,
                 batch: int = 100, max_findings: int = 50, skip: Callable[[Request], bool] | None = None,
                 restart: Callable[[], str] | None = None):
        self.endpoint = endpoint
        self.rng = random.Random(seed)
        self.model = botocore.session.get_session().get_service_model("ecs")
        self.ops = sorted(self.model.operation_names)
        self.pool = Pool()
        self.gen = Generator(self.rng, self.model, self.pool)
        self.client = Client(endpoint)
        self.model_check = ModelCheck(self.model)
        self.report = Report(seed)
        self.process_alive = alive or (lambda: True)
        self.reset_fn = reset
        self.log = log
        self.batch = batch
        self.max_findings = max_findings
        self.skip = skip
        self.restart_fn = restart
        self.last_label = "(nothing yet)"
        # The last requests sent: a crash in the background (the service controller acting
        # on a service a request created) shows only at a later request.
        self.recent: deque = deque(maxlen=20)
        self.unsupported: set[str] = set()  # operations answered UnsupportedFeatureException

    # -- plumbing ----------------------------------------------------------------------

    def alive(self) -> bool:
        """The process runs (as far as the caller can tell) and answers /healthz (a
        process that is still aborting may not have exited yet)."""
        return self.process_alive() and healthz(self.endpoint)

    def send(self, req: Request, kind: str = "well-formed") -> Answer:
        rep = self.report
        if self.skip is not None and self.skip(req):
            rep.kinds["skipped"] += 1
            return Answer(None, {}, b"", 0.0)
        self.last_label = req.label
        self.recent.append(req)
        ans = self.client.send(req)
        rep.sent += 1
        rep.kinds[kind] += 1
        rep.by_status[ans.status if ans.status is not None else "no answer"] += 1
        if req.op:
            rep.sent_ops[req.op] += 1
        if ans.seconds > rep.slowest[0]:
            rep.slowest = (ans.seconds, req.label)
        problems = check_answer(req, ans, self.model_check)
        if ans.status == 200:
            if req.op:
                rep.ok_ops[req.op] += 1
            self.pool.harvest(ans.body, req.op)
        elif ans.status is not None:
            try:
                code = json.loads(ans.body).get("__type", "?")
            except (ValueError, AttributeError):
                code = "?"
            rep.by_code[code] += 1
            if kind == "well-formed" and req.op:
                rep.refused[(req.op, code)] += 1
                rep.refused_sample.setdefault((req.op, code), (ans.body[:300], req.body[:300]))
                # The operation itself is not implemented (not just one of its options,
                # such as RunTask's FARGATE launch type).
                if code == "UnsupportedFeatureException" and f"{req.op} is not supported".encode() in ans.body:
                    self.unsupported.add(req.op)
        if problems:
            rep.findings.append(Finding(req, problems, ans.status))
            self.log(f"FINDING {rep.findings[-1]}")
            if ans.error and not self.alive():
                raise ServerDied(req.label)
        return ans

    def ecs(self, op: str, body, label: str | None = None, kind: str = "well-formed", headers: dict | None = None) -> Answer:
        raw = body if isinstance(body, bytes) else _dumps(body)
        return self.send(Request(label or op, f"{TARGET_PREFIX}.{op}", raw, headers or {}, op), kind)

    def control(self) -> None:
        """The server must still be alive and answer a DescribeClusters within the deadline."""
        after = self.last_label
        if not self.alive():
            raise ServerDied(after)
        req = Request(f"control DescribeClusters after [{after}]", f"{TARGET_PREFIX}.DescribeClusters",
                      b'{"clusters": ["fuzz-a"]}', {}, "DescribeClusters")
        ans = self.client.send(req, timeout=CONTROL_DEADLINE + 5)
        self.report.control_max = max(self.report.control_max, ans.seconds)
        problems = check_answer(req, ans, self.model_check)
        if ans.status != 200 and not ans.error:
            problems.append(f"the control request answered {ans.status}")
        if ans.seconds > CONTROL_DEADLINE:
            problems.append(f"the control request took {ans.seconds:.2f} s (> {CONTROL_DEADLINE} s)")
        if problems:
            self.report.findings.append(Finding(req, problems, ans.status))
            self.log(f"FINDING {self.report.findings[-1]}")
        if not self.alive():
            raise ServerDied(after)

    def phase_reset(self) -> None:
        if self.reset_fn is not None:
            self.reset_fn()
            self.pool.__init__()

    # -- setup: things for the generated requests to refer to -------------------------

    def setup(self) -> None:
        """Creates what generated requests name: clusters, task definitions, container
        instances, tasks, a service, a protected task. Every answer is checked too."""
        r = self.rng
        for name in ("fuzz-a", "fuzz-b", "default"):
            self.ecs("CreateCluster", {"clusterName": name, "tags": [{"key": "team", "value": "fuzz"}]}, "setup CreateCluster")
        self.ecs("RegisterTaskDefinition", {"family": "fuzz-web", "containerDefinitions": [
            {"name": "app", "image": "busybox:latest", "memory": 32, "cpu": 10, "essential": True,
             "portMappings": [{"containerPort": 80, "hostPort": 0}]},
            {"name": "side", "image": "busybox:latest", "memory": 16, "essential": False}]}, "setup RegisterTaskDefinition")
        self.ecs("RegisterTaskDefinition", {"family": "fuzz-vpc", "networkMode": "awsvpc", "cpu": "256", "memory": "512",
                                            "requiresCompatibilities": ["FARGATE"],
                                            "containerDefinitions": [{"name": "app", "image": "busybox:latest", "essential": True}]},
                 "setup RegisterTaskDefinition")
        self.ecs("RegisterTaskDefinition", {"family": "fuzz-host", "networkMode": "host", "containerDefinitions": [
            {"name": "app", "image": "busybox:latest", "memory": 16, "portMappings": [{"containerPort": 9000}]}]},
                 "setup RegisterTaskDefinition")
        for cluster in ("fuzz-a", "fuzz-a", "fuzz-b"):
            self.ecs("RegisterContainerInstance", {"cluster": cluster, "instanceIdentityDocument": identity_document(r),
                                                   "totalResources": resources(r, 8192, 65536),
                                                   "attributes": [{"name": "fuzz", "value": "yes"}]}, "setup RegisterContainerInstance")
        self.ecs("RunTask", {"cluster": "fuzz-a", "taskDefinition": "fuzz-web", "count": 3, "group": "fuzz"}, "setup RunTask")
        self.ecs("CreateService", {"cluster": "fuzz-a", "serviceName": "fuzz-svc", "taskDefinition": "fuzz-web", "desiredCount": 1},
                 "setup CreateService")
        self.ecs("CreateService", {"cluster": "fuzz-a", "serviceName": "fuzz-ext", "desiredCount": 2,
                                   "deploymentController": {"type": "EXTERNAL"}}, "setup CreateService EXTERNAL")
        self.ecs("CreateTaskSet", {"cluster": "fuzz-a", "service": "fuzz-ext", "taskDefinition": "fuzz-web",
                                   "scale": {"value": 50.0, "unit": "PERCENT"}}, "setup CreateTaskSet")
        self.ecs("CreateCapacityProvider", {"name": "fuzz-cp", "autoScalingGroupProvider": {"autoScalingGroupArn": "fuzz-group"}},
                 "setup CreateCapacityProvider")
        self.ecs("PutAccountSetting", {"name": "containerInsights", "value": "enabled"}, "setup PutAccountSetting")
        self.ecs("ListClusters", {"maxResults": 1}, "setup ListClusters")

    # -- one request of each kind ------------------------------------------------------

    def pick_op(self) -> str:
        """Any operation of the model; those that answered UnsupportedFeatureException
        (a check of the name and nothing else) get a tenth of the requests."""
        op = self.rng.choice(self.ops)
        if op in self.unsupported and self.rng.random() < 0.9:
            op = self.rng.choice(self.ops)
        return op

    def well_formed(self, op: str) -> Request:
        return Request(op, f"{TARGET_PREFIX}.{op}", _dumps(self.gen.request(op)), {}, op)

    def mutated(self, op: str) -> Request:
        body = self.gen.request(op)
        what = []
        for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
            body, w = mutate_value(self.rng, body if isinstance(body, dict) else {"x": body})
            what.append(w)
        if not isinstance(body, dict):
            body = {"x": body}
        if self.rng.random() < 0.08:
            raw, what = duplicate_key_body(self.rng, body), what + ["duplicate key"]
        else:
            raw = _dumps(body)
        if len(raw) > BODY_LIMIT:  # keep most in bounds; 413s are tested in the corpus
            raw = _dumps(self.gen.request(op))
            what = ["(mutation over the body limit dropped)"]
        return Request(f"{op}: {', '.join(what)}", f"{TARGET_PREFIX}.{op}", raw, {}, op)

    def raw(self, op: str) -> Request:
        r = self.rng
        choice = r.randrange(5)
        if choice == 0:
            body = r.choice(RAW_JUNK)
            return Request(f"{op}: raw junk", f"{TARGET_PREFIX}.{op}", body, {}, op)
        if choice == 1:
            body = bytes(r.getrandbits(8) for _ in range(r.choice([1, 16, 256, 4096])))
            return Request(f"{op}: random bytes", f"{TARGET_PREFIX}.{op}", body, {}, op)
        if choice == 2:
            good = _dumps(self.gen.request(op))
            cut = r.randrange(len(good)) if len(good) > 1 else 0
            return Request(f"{op}: truncated at {cut}", f"{TARGET_PREFIX}.{op}", good[:cut], {}, op)
        if choice == 3:
            target = r.choice(ODD_TARGETS)
            return Request(f"odd target {target!r:.60}", target, _dumps(self.gen.request(op)), {}, None)
        headers = {}
        which = r.randrange(3)
        if which == 0:
            headers["Authorization"] = r.choice(ODD_AUTH)
        elif which == 1:
            headers["Content-Type"] = r.choice(["", "text/plain", "application/json", "application/x-amz-json-1.0", "multipart/form-data; boundary=x"])
        else:
            headers["Content-Encoding"] = r.choice(["gzip", "br", "identity", "x"])
        return Request(f"{op}: odd header {headers}", f"{TARGET_PREFIX}.{op}", _dumps(self.gen.request(op)), headers, op)

    def own_target(self) -> Request:
        r = self.rng
        if r.random() < 0.8:
            op = r.choice(AGENT_OPS)
            prefix = AGENT_PREFIX
        else:
            op = r.choice(USER_OPS)
            prefix = USER_PREFIX
        body = agent_request(r, self.pool, op)
        label = f"{prefix}.{op}"
        if r.random() < 0.6:
            body, what = mutate_value(r, body)
            label += f": {what}"
            if isinstance(body, dict) and op == "PollTasks":
                body.pop("knownDigest", None)  # never a long poll
            if isinstance(body, dict) and op == "GetTaskLogs" and body.get("task") in self.pool.tasks:
                body["task"] = "0" * 32
            if isinstance(body, dict) and op == "CallHostApi" and body.get("containerInstance") in self.pool.instances:
                body["containerInstance"] = "0" * 32
        raw = _dumps(body)
        if len(raw) > BODY_LIMIT:
            raw = _dumps(agent_request(r, self.pool, op))
        return Request(label, f"{prefix}.{op}", raw, {}, None)

    # -- runs --------------------------------------------------------------------------

    def one(self) -> None:
        op = self.pick_op()
        x = self.rng.random()
        if x < 0.40:
            self.send(self.well_formed(op), "well-formed")
        elif x < 0.82:
            self.send(self.mutated(op), "mutated")
        elif x < 0.92:
            req = self.raw(op)
            self.send(req, "target" if req.op is None else "raw")
        else:
            self.send(self.own_target(), "agent")

    def _died(self, label: str) -> bool:
        """Records a crash; restarts the server when the caller can (then True)."""
        self.report.crashes.append(label)
        self.report.crash_context.append([r.reproducer(limit=400) for r in self.recent])
        self.recent.clear()
        self.report.crashed = self.report.crashed or f"after [{label}]"
        self.log(f"SERVER DIED after [{label}]")
        if self.restart_fn is None:
            return False
        self.client.close()
        self.endpoint = self.restart_fn()
        self.client = Client(self.endpoint)
        self.pool.__init__()
        return True

    def run(self, requests: int | None = None, seconds: float | None = None, phases: int = 2) -> Report:
        """Sends `requests` requests (or runs for `seconds`), in `phases` phases, each from
        a fresh state when a reset is available; a control request after every batch.
        Stops at the first crash unless it can restart the server."""
        start = time.monotonic()
        per_phase = None if requests is None else max(1, requests // phases)
        phase = 0
        try:
            while phase < phases:
                try:
                    self.phase_reset()
                    self.setup()
                    self.control()
                    sent_in_phase = 0
                    while True:
                        if per_phase is not None and sent_in_phase >= per_phase:
                            break
                        if seconds is not None and time.monotonic() - start >= seconds * (phase + 1) / phases:
                            break
                        for _ in range(self.batch):
                            self.one()
                            sent_in_phase += 1
                            if per_phase is not None and sent_in_phase >= per_phase:
                                break
                        self.control()
                        if len(self.report.findings) >= self.max_findings:
                            raise TooManyFindings()
                except ServerDied as e:
                    if not self._died(str(e)):
                        break
                    continue  # the phase again, on the new server (counts go on)
                phase += 1
        except TooManyFindings:
            pass
        finally:
            self.report.seconds = time.monotonic() - start
            self.client.close()
        return self.report

    def run_cases(self, build: Callable[[Pool], list[Request]]) -> Report:
        """Runs the setup, then sends the cases `build` makes from what it created,
        checking each answer, and liveness after each. After a crash the server is
        restarted (when possible) and the remaining cases go on, so one run reports every
        case that crashes it."""
        start = time.monotonic()
        done = 0
        try:
            while True:
                try:
                    self.phase_reset()
                    self.setup()
                    cases = build(self.pool)
                    while done < len(cases):
                        case = cases[done]
                        done += 1
                        self.send(case, "corpus")
                        if case.op in SETTLE_AFTER:
                            time.sleep(0.2)  # the service controller acts on the change
                        if not self.alive():
                            raise ServerDied(case.label)
                        if case.label.startswith("!"):  # cases after which a control request must pass
                            self.control()
                    self.control()
                    break
                except ServerDied as e:
                    if not self._died(str(e)):
                        break
        finally:
            self.report.seconds = time.monotonic() - start
            self.client.close()
        return self.report


# Operations whose effects the service controller acts on in the background: a corpus
# case of these waits a moment before the liveness check, so a crash in the controller is
# blamed on the right case.
SETTLE_AFTER = {"CreateService", "UpdateService", "DeleteService", "RunTask", "StopTask", "SubmitTaskStateChange"}


class ServerDied(Exception):
    pass


class TooManyFindings(Exception):
    pass


def healthz(endpoint: str) -> bool:
    u = urllib.parse.urlsplit(endpoint)
    try:
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
        c.request("GET", "/healthz")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def seed_from_env(default: int | None = None) -> int:
    v = os.environ.get(SEED_ENV)
    if v:
        return int(v, 0)
    return default if default is not None else random.SystemRandom().randrange(2**32)


# --------------------------------------------------------------------------------------
# The fixed corpus: regression cases for what the fuzzer found, and hand-picked extremes
# --------------------------------------------------------------------------------------

def _req(op: str, body, label: str = "", headers: dict | None = None) -> Request:
    raw = body if isinstance(body, bytes) else _dumps(body)
    return Request(f"!{op}: {label}" if label else f"!{op}", f"{TARGET_PREFIX}.{op}", raw, headers or {}, op)


def fixed_corpus(pool: Pool) -> list[Request]:
    """Cases sent after the setup (names refer to what `Fuzzer.setup` made, ids to what
    it harvested). Labels starting with "!" are followed by a control request."""
    big = 2**31 - 1
    task = next((t for t in pool.tasks if "/fuzz-a/" in t), "0" * 32)
    inst = next((i for i in pool.instances if "/fuzz-a/" in i), "0" * 32)
    cases: list[Request] = [
        # A log read of a task whose instance never polled: refused at once (no agent).
        Request("!GetTaskLogs of a task without an agent", f"{USER_PREFIX}.GetTaskLogs",
                _dumps({"cluster": "fuzz-a", "task": task, "tail": 2**32 - 1, "waitSeconds": 20})),
        _req("SubmitTaskStateChange", {"cluster": "fuzz-a", "task": task, "status": "RUNNING", "pullStartedAt": 1e308,
                                       "pullStoppedAt": -1e308, "containers": [{"containerName": "app", "status": "RUNNING",
                                       "exitCode": big, "networkBindings": [{"hostPort": big, "containerPort": -(2**31)}]}]},
             "real task, extremes"),
        _req("SubmitContainerStateChange", {"cluster": "fuzz-a", "task": task, "containerName": "side", "status": "STOPPED",
                                            "exitCode": -(2**31), "reason": "r" * 1_000_000}, "real task, 1 MB reason"),
        _req("StartTask", {"cluster": "fuzz-a", "taskDefinition": "fuzz-web", "containerInstances": [inst] * 10,
                           "overrides": {"containerOverrides": [{"name": "app", "memory": big, "cpu": big}]}}, "overrides 2**31-1"),
        _req("PutAttributes", {"cluster": "fuzz-a", "attributes": [{"name": f"a{i}", "value": "b" * 128, "targetId": inst}
                                                                   for i in range(9)]}, "9 more attributes on a real instance"),
        _req("ListContainerInstances", {"cluster": "fuzz-a", "filter": "attribute:a1 == " + "b" * 128}, "filter on them"),
        _req("UpdateContainerInstancesState", {"cluster": "fuzz-a", "containerInstances": [inst] * 10, "status": "DRAINING"}, "same instance x10"),
        _req("UpdateContainerInstancesState", {"cluster": "fuzz-a", "containerInstances": [inst], "status": "ACTIVE"}, "back to ACTIVE"),
        Request("!ReportNetwork real task", f"{AGENT_PREFIX}.ReportNetwork",
                _dumps({"cluster": "fuzz-a", "task": task, "privateIpv4Address": "x" * 100_000})),
        Request("!ReportHealth real task", f"{AGENT_PREFIX}.ReportHealth",
                _dumps({"cluster": "fuzz-a", "task": task, "containers": [{"containerName": "app", "healthStatus": "HEALTHY"}] * 10_000})),
        Request("!PollTasks real instance", f"{AGENT_PREFIX}.PollTasks",
                _dumps({"cluster": "fuzz-a", "containerInstance": inst, "waitSeconds": 2**32 - 1})),
        _req("StopTask", {"cluster": "fuzz-a", "task": task, "reason": "é" * 300_000}, "real task, long reason"),
    ]
    # Huge numbers where the type is right: they get past parsing into the logic.
    for n in (big, -1, 2**31 - 2, 1_000_000, 5000):
        cases.append(_req("CreateService", {"cluster": "fuzz-a", "serviceName": f"fuzz-big-{n & 0xffff}", "taskDefinition": "fuzz-web", "desiredCount": n}, f"desiredCount {n}"))
        cases.append(_req("UpdateService", {"cluster": "fuzz-a", "service": "fuzz-svc", "desiredCount": n}, f"desiredCount {n}"))
        cases.append(_req("RunTask", {"cluster": "fuzz-a", "taskDefinition": "fuzz-web", "count": n}, f"count {n}"))
    cases.append(_req("DescribeClusters", {"clusters": ["fuzz-a"], "include": ["STATISTICS"]}, "while services scale to 5000"))
    for svc in ("fuzz-svc", "fuzz-big-5000"):
        cases.append(_req("UpdateService", {"cluster": "fuzz-a", "service": svc, "desiredCount": 0}, "desiredCount back to 0"))
    cases.append(_req("CreateService", {"cluster": "fuzz-a", "serviceName": "fuzz-pct", "taskDefinition": "fuzz-web", "desiredCount": 1,
                                        "deploymentConfiguration": {"maximumPercent": big, "minimumHealthyPercent": big}}, "percent 2**31-1"))
    cases.append(_req("CreateService", {"cluster": "fuzz-a", "serviceName": "fuzz-grace", "taskDefinition": "fuzz-web", "desiredCount": 0,
                                        "healthCheckGracePeriodSeconds": big}, "grace 2**31-1"))
    cases.append(_req("UpdateTaskProtection", {"cluster": "fuzz-a", "tasks": ["00000000000000000000000000000000"], "protectionEnabled": True,
                                               "expiresInMinutes": big}, "expiresInMinutes 2**31-1"))
    cases.append(_req("RegisterTaskDefinition", {"family": "fuzz-big", "cpu": "196608", "memory": str(2**32 - 1),
                                                 "containerDefinitions": [{"name": "a", "image": "busybox", "memory": big, "cpu": 196608,
                                                                           "memoryReservation": big}]}, "memory 2**31-1"))
    cases.append(_req("RegisterTaskDefinition", {"family": "fuzz-big", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 6,
                                                 "portMappings": [{"containerPort": 65535, "hostPort": 65535}],
                                                 "ulimits": [{"name": "nofile", "softLimit": big, "hardLimit": big}],
                                                 "healthCheck": {"command": ["CMD", "x"], "interval": big, "retries": -(2**31)}}]}, "ulimits/healthCheck extremes"))
    cases.append(_req("RegisterTaskDefinition", {"family": "fuzz-big", "cpu": "1e308 vcpu", "memory": "NaN",
                                                 "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 6}]}, "cpu 1e308 vcpu"))
    cases.append(_req("RegisterTaskDefinition", {"family": "fuzz-big", "cpu": "99999999999999999999", "memory": "0.000001 GB",
                                                 "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 6}]}, "cpu 1e20"))
    cases.append(_req("RegisterContainerInstance", {"cluster": "fuzz-b", "totalResources": [
        {"name": "CPU", "type": "LONG", "longValue": 2**63 - 1}, {"name": "MEMORY", "type": "LONG", "longValue": 2**63 - 1},
        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": [str(p) for p in range(0, 65536, 7)]}]}, "resources 2**63-1"))
    cases.append(_req("RunTask", {"cluster": "fuzz-b", "taskDefinition": "fuzz-web", "count": 10,
                                  "placementStrategy": [{"type": "binpack", "field": "memory"}, {"type": "spread", "field": "instanceId"}]},
                      "placement on 2**63-1 resources"))
    cases.append(_req("DescribeClusters", {"clusters": ["fuzz-b"], "include": ["STATISTICS", "TAGS", "SETTINGS", "CONFIGURATIONS", "ATTACHMENTS"]}, "after 2**63-1"))
    cases.append(_req("ListContainerInstances", {"cluster": "fuzz-b", "filter": "runningTasksCount > 9223372036854775807"}, "filter with i64 overflow"))
    # Cluster queries nested hundreds of levels deep within the 2000-byte limit: the
    # recursive query parser overflowed its thread's stack (the server aborted).
    core = "agentConnected == true"
    for label, deep_q in (("900 (", "(" * 900 + core + ")" * 900), ("1970 !", "!" * 1970 + core),
                          ("490 not", "not " * 490 + core), ("650 !(", "!(" * 650 + core + ")" * 650)):
        cases.append(_req("ListContainerInstances", {"cluster": "fuzz-a", "filter": deep_q}, f"filter nested {label}"))
        cases.append(_req("RegisterTaskDefinition", {"family": "fuzz-deep", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 6}],
                                                     "placementConstraints": [{"type": "memberOf", "expression": deep_q}]}, f"expression nested {label}"))
        cases.append(_req("RunTask", {"cluster": "fuzz-a", "taskDefinition": "fuzz-deep"}, f"definition nested {label}"))
        constraint = [{"type": "memberOf", "expression": deep_q}]
        cases.append(_req("RunTask", {"cluster": "fuzz-a", "taskDefinition": "fuzz-web", "placementConstraints": constraint}, f"expression nested {label}"))
        cases.append(_req("StartTask", {"cluster": "fuzz-a", "taskDefinition": "fuzz-deep", "containerInstances": [inst]},
                          f"definition nested {label}"))
        cases.append(_req("CreateService", {"cluster": "fuzz-a", "serviceName": "fuzz-deep", "taskDefinition": "fuzz-web", "desiredCount": 1,
                                            "placementConstraints": constraint}, f"expression nested {label}"))
        cases.append(_req("UpdateService", {"cluster": "fuzz-a", "service": "fuzz-svc", "placementConstraints": constraint}, f"expression nested {label}"))
    cases.append(_req("ListContainerInstances", {"cluster": "fuzz-a", "filter": "(" * 5000 + "agentConnected == true" + ")" * 5000}, "filter over 2000 bytes"))
    # Error codes an operation does not declare (botocore's clients cannot map them).
    cases.append(_req("RegisterContainerInstance", {"cluster": "fuzz-a", "attributes": [{"name": f"a{i}", "value": "v"} for i in range(11)]},
                      "11 custom attributes"))
    cases.append(_req("CreateService", {"cluster": "fuzz-a", "serviceName": "fuzz-del", "taskDefinition": "fuzz-web", "desiredCount": 0}, "to delete"))
    cases.append(_req("DeleteService", {"cluster": "fuzz-a", "service": "fuzz-del"}, "once"))
    cases.append(_req("DeleteService", {"cluster": "fuzz-a", "service": "fuzz-del"}, "a deleted service"))
    cases.append(_req("ListContainerInstances", {"cluster": "fuzz-a", "filter": "not " * 20000 + "agentConnected == true"}, "long not-chain filter"))
    cases.append(_req("ListContainerInstances", {"cluster": "fuzz-a", "filter": "registeredAt > 99999-99-99T99:99:99Z"}, "bad date filter"))
    cases.append(_req("RunTask", {"cluster": "fuzz-a", "taskDefinition": "fuzz-web",
                                  "placementConstraints": [{"type": "memberOf", "expression": "(" * 3000}]}, "deep placement expression"))
    cases.append(_req("ListTasks", {"cluster": "fuzz-a", "maxResults": big}, "maxResults 2**31-1"))
    cases.append(_req("ListClusters", {"maxResults": 0}, "maxResults 0"))
    cases.append(_req("ListServices", {"cluster": "fuzz-a", "nextToken": "A" * 100_000}, "100 kB nextToken"))
    cases.append(_req("DescribeTaskDefinition", {"taskDefinition": f"fuzz-web:{big}"}, "revision 2**31-1"))
    cases.append(_req("DescribeTaskDefinition", {"taskDefinition": "fuzz-web:99999999999999999999"}, "revision overflow"))
    cases.append(_req("DeregisterTaskDefinition", {"taskDefinition": f"fuzz-web:{-(2**31)}"}, "revision i32::MIN"))
    cases.append(_req("SubmitTaskStateChange", {"cluster": "fuzz-a", "task": "0" * 32, "status": "RUNNING", "pullStartedAt": 1e308,
                                                "executionStoppedAt": -1e308}, "timestamps 1e308"))
    cases.append(_req("SubmitContainerStateChange", {"cluster": "fuzz-a", "task": "0" * 32, "containerName": "app", "exitCode": big,
                                                     "networkBindings": [{"hostPort": big, "containerPort": -1}]}, "exitCode 2**31-1"))
    cases.append(_req("PutAttributes", {"cluster": "fuzz-a", "attributes": [{"name": "a" * 128, "value": "b" * 128,
                                                                             "targetId": "0" * 32}] * 10}, "10 attributes at the limits"))
    cases.append(_req("TagResource", {"resourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/fuzz-a", "tags": [{"key": f"k{i}", "value": "v" * 256} for i in range(50)]}, "50 tags"))
    cases.append(_req("TagResource", {"resourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/fuzz-a", "tags": [{"key": "k", "value": "v"}] * 100_000}, "100k duplicate tags"))
    cases.append(_req("UntagResource", {"resourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/fuzz-a", "tagKeys": ["k"] * 200_000}, "200k tag keys"))
    cases.append(_req("DescribeClusters", {"clusters": ["fuzz-a"] * 100_000}, "100k clusters"))
    cases.append(_req("DescribeTasks", {"cluster": "fuzz-a", "tasks": ["x" * 60] * 20_000}, "20k tasks"))
    cases.append(_req("CreateCluster", {"clusterName": "x" * 255, "tags": [{"key": "😀" * 128, "value": "é" * 256}]}, "unicode tags at the limits"))
    cases.append(_req("CreateCluster", {"clusterName": "a\u0000b"}, "NUL in a name"))
    cases.append(_req("PutAccountSetting", {"name": "containerInsights", "value": "enabled", "principalArn": f"arn:aws:iam::{ACCOUNT}:user/" + "u" * 1_000_000}, "1 MB principal"))
    cases.append(_req("RegisterTaskDefinition", {"family": "fuzz-huge", "containerDefinitions": [{"name": "a", "image": "busybox", "memory": 6,
                                                 "environment": [{"name": "BIG", "value": "v" * 1_500_000}]}]}, "1.5 MB environment value"))
    cases.append(_req("ListTaskDefinitions", {"familyPrefix": "fuzz-huge"}, "after the 1.5 MB definition"))
    cases.append(_req("CreateCluster", b'{"clusterName": "dup", "clusterName": 5}', "duplicate key, second of the wrong type"))
    cases.append(_req("CreateCluster", b'{"clusterName": 5, "clusterName": "dup"}', "duplicate key, first of the wrong type"))
    cases.append(_req("CreateCluster", b'{"clusterName": "' + b"a" * (3 << 20) + b'"}', "3 MiB body"))
    cases.append(_req("ListClusters", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nesting 100000"))
    cases.append(_req("ListClusters", b"{}", "odd region", headers={"Authorization": ODD_AUTH[7]}))
    # flotilla's own targets with extremes.
    cases.append(Request("!PollTasks waitSeconds 2**32-1", f"{AGENT_PREFIX}.PollTasks", b'{"cluster": "fuzz-a", "containerInstance": "x", "waitSeconds": 4294967295}'))
    cases.append(Request("!GetTaskLogs tail 2**32-1", f"{USER_PREFIX}.GetTaskLogs", b'{"cluster": "fuzz-a", "task": "00000000000000000000000000000000", "tail": 4294967295, "waitSeconds": 20}'))
    cases.append(Request("!GetTaskLogs bad token", f"{USER_PREFIX}.GetTaskLogs", b'{"cluster": "fuzz-a", "task": "x", "nextToken": "' + b"A" * 10000 + b'"}'))
    cases.append(Request("!PutLogs unknown request", f"{AGENT_PREFIX}.PutLogs", b'{"cluster": "fuzz-a", "containerInstance": "x", "requestId": "logs-999999", "events": []}'))
    return cases
