"""A bounded fuzz/property test of the whole API surface (see `fuzz_support.py`).

Every operation of botocore's ECS model (and flotilla's own `FlotillaAgentV1.*` and
`FlotillaV1.*` targets) is sent well-formed requests generated from its shapes, mutated
ones (boundary numbers, ~1 MB strings, unicode, wrong types, deep nesting, empty and long
lists, duplicate keys) and raw junk (random bytes, wrong or missing targets). The
properties: the server never dies, never answers 5xx, never drops a request; every answer
is 200 or a 4xx JSON error with `__type`; 200s match botocore's model; and a control
request answers within 2 s after every batch.

Bounded: one seeded RNG (printed; set `FLOTILLA_FUZZ_SEED` to replay a run),
`FLOTILLA_FUZZ_REQUESTS` requests (3000 by default; well under a minute on 2 cores with
a debug build), loopback only, on a server of the test's own (so a crash costs no other
test its server). `tools/fuzz_api.py` runs the same fuzzer for as long as you like.
"""

from __future__ import annotations

import os
import random
import re

import pytest

from e2e_support import start_server
from fuzz_support import (
    CONTROL_DEADLINE,
    SEED_ENV,
    Answer,
    Fuzzer,
    Generator,
    ModelCheck,
    Pool,
    Request,
    TARGET_PREFIX,
    check_answer,
    fixed_corpus,
    seed_from_env,
)

REQUESTS = int(os.environ.get("FLOTILLA_FUZZ_REQUESTS", "6000"))


class OwnServer:
    """A `flotilla server --allow-reset` of the test's own, restarted after a crash so a
    run can report every request that kills it."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.started = 0
        self.crash_logs: list[str] = []
        self.server = self._start()

    def _start(self):
        self.started += 1
        return start_server(self.tmp, name=f"fuzz-{self.started}")

    def alive(self) -> bool:
        return self.server.proc.poll() is None

    def reset(self) -> None:
        self.server.reset()

    def restart(self) -> str:
        log = re.sub(r"\x1b\[[0-9;]*m", "", self.server.log_text())  # no colours
        self.crash_logs.append("\n".join(log.splitlines()[-6:]))
        self.server.stop()
        self.server = self._start()
        return self.server.endpoint

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def own_server(tmp_path):
    s = OwnServer(tmp_path)
    yield s
    s.stop()


def fuzzer(own: OwnServer, seed: int) -> Fuzzer:
    return Fuzzer(own.server.endpoint, seed, alive=own.alive, reset=own.reset, restart=own.restart, log=print)


# Operations that answer 200 only in a state random ECS requests never build, each
# covered by its own tests (they still get every random request, without a 5xx):
UNREACHABLE_BY_RANDOM_REQUESTS = {
    # a blue/green deployment paused at a PAUSE hook (controlplane/tests/lifecycle_hooks.rs)
    "ContinueServiceDeployment",
    # an IN_PROGRESS deployment's ARN, random ones never match (controlplane/tests/service_deployments.rs)
    "StopServiceDeployment",
    # a Cloud Map namespace, made through the servicediscovery API the fuzzer does not call
    # (controlplane/tests/service_connect.rs)
    "ListServicesByNamespace",
}


def verdict(f: Fuzzer, own: OwnServer, seed: int) -> str:
    rep = f.report
    lines = [rep.summary(), f"replay with {SEED_ENV}={seed}"]
    lines += [str(x) for x in rep.findings[:25]]
    if len(rep.findings) > 25:
        lines.append(f"... and {len(rep.findings) - 25} more")
    for label, log, before in zip(rep.crashes, own.crash_logs, rep.crash_context):
        lines.append(f"--- the server died after [{label}]; the requests just before it:")
        lines += [f"    {r}" for r in before[-5:]]
        lines.append(f"  the end of its output:\n{log}")
    return "\n".join(lines)


def test_fixed_corpus_never_crashes_the_server_or_answers_5xx(own_server):
    """The hand-picked extremes and every reproducer the fuzzer found so far (see
    `fixed_corpus` and docs/security.md), each followed by a control request."""
    f = fuzzer(own_server, 0)
    rep = f.run_cases(fixed_corpus)
    print(rep.summary())
    assert rep.kinds["corpus"] >= 90
    assert not rep.findings and not rep.crashes, verdict(f, own_server, 0)
    assert rep.control_max <= CONTROL_DEADLINE


def test_random_requests_over_every_operation(own_server):
    seed = seed_from_env()
    print(f"fuzz seed {seed} (replay: {SEED_ENV}={seed})")
    f = fuzzer(own_server, seed)
    rep = f.run(requests=REQUESTS, phases=2)
    print(rep.summary())
    assert not rep.findings and not rep.crashes, verdict(f, own_server, seed)
    assert rep.sent >= REQUESTS
    # The run covered the surface: every operation of the model was sent, and (a
    # sign that generated requests get past parsing into the logic) most operations
    # flotilla implements answered 200 at least once.
    ops = set(f.model.operation_names)
    assert ops <= set(rep.sent_ops), f"never sent: {sorted(ops - set(rep.sent_ops))}"
    implemented = ops - f.unsupported - UNREACHABLE_BY_RANDOM_REQUESTS
    assert len(implemented) >= 40, sorted(implemented)
    missed = implemented - set(rep.ok_ops)
    print(f"{len(missed)} of {len(implemented)} implemented operations never answered 200: {sorted(missed)}")
    assert len(missed) <= len(implemented) // 10, f"seed {seed}: never answered 200: {sorted(missed)}"
    for kind in ("well-formed", "mutated", "raw", "target", "agent"):
        assert rep.kinds[kind] > 0, rep.kinds


# --------------------------------------------------------------------------------------
# The fuzzer itself: deterministic, and its oracle catches what it must
# --------------------------------------------------------------------------------------


def test_the_same_seed_generates_the_same_requests():
    """Replaying a seed replays the run (given the same answers from the server)."""

    def bodies(seed):
        import botocore.session

        model = botocore.session.get_session().get_service_model("ecs")
        rng = random.Random(seed)
        gen = Generator(rng, model, Pool(instances=["i-1"], tasks=["t-1"]), now=1_764_000_000.0)
        return [gen.request(rng.choice(sorted(model.operation_names))) for _ in range(300)]

    assert bodies(7) == bodies(7)
    assert bodies(7) != bodies(8)


@pytest.mark.parametrize(
    "answer, needle",
    [
        (Answer(None, {}, b"", 0.1, "connection dropped: reset"), "connection dropped"),
        (Answer(500, {"x-amzn-requestid": "r"}, b'{"__type": "ServerException", "message": "m"}', 0.1), "server error"),
        (Answer(302, {"x-amzn-requestid": "r"}, b"{}", 0.1), "neither 200 nor 4xx"),
        (Answer(400, {"x-amzn-requestid": "r"}, b"<html>no</html>", 0.1), "not JSON"),
        (Answer(400, {"x-amzn-requestid": "r"}, b"[1]", 0.1), "not a JSON object"),
        (Answer(400, {"x-amzn-requestid": "r"}, b'{"message": "m"}', 0.1), "without __type"),
        (Answer(400, {"x-amzn-requestid": "r"}, b'{"__type": "ClientException"}', 0.1), "without message"),
        (Answer(400, {}, b'{"__type": "ClientException", "message": "m"}', 0.1), "RequestId"),
        (Answer(400, {"x-amzn-requestid": "r"}, b'{"__type": "ClusterNotFoundException", "message": "m"}', 0.1), "declares"),
        (Answer(200, {"x-amzn-requestid": "r"}, b'{"clusterArns": [1]}', 0.1), "expected a string"),
        (Answer(200, {"x-amzn-requestid": "r"}, b'{"bogus": true}', 0.1), "not a member"),
    ],
)
def test_the_oracle_refuses_bad_answers(answer, needle):
    import botocore.session

    check = ModelCheck(botocore.session.get_session().get_service_model("ecs"))
    req = Request("ListClusters", f"{TARGET_PREFIX}.ListClusters", b"{}", {}, "ListClusters")
    problems = check_answer(req, answer, check)
    assert any(needle in p for p in problems), problems
    ok = Answer(400, {"x-amzn-requestid": "r"}, b'{"__type": "InvalidParameterException", "message": "m"}', 0.1)
    assert check_answer(req, ok, check) == []
