"""docs/ecs-api.md stays true: its table names every operation of botocore's ECS model
exactly once, and its UnsupportedFeatureException rows are exactly the operations that
`crates/ecs-api/src/dispatch.rs` routes to `unsupported(op)` and that a running server
answers with UnsupportedFeatureException.

Adding an operation to the model or moving one in or out of dispatch's unsupported arm
without updating the table fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
import pytest
import requests

from e2e_support import JSON_CT, TARGET_PREFIX

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "ecs-api.md"
DISPATCH = ROOT / "crates" / "ecs-api" / "src" / "dispatch.rs"
STATUSES = {"supported", "partial", "UnsupportedFeatureException"}
ROW = re.compile(r"^\|\s*`([A-Za-z]+)`\s*\|\s*([A-Za-z]+)\s*\|(.*)\|\s*$")


def ecs_operations() -> list[str]:
    return list(botocore.session.get_session().get_service_model("ecs").operation_names)


def table_rows() -> list[tuple[str, str, str]]:
    """(operation, status, notes) of every row of the ECS table (up to the next heading)."""
    text = TABLE.read_text()
    section = text.split("\n## ECS\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            rows.append((m.group(1), m.group(2), m.group(3).strip()))
    return rows


def dispatch_arms() -> tuple[set[str], set[str]]:
    """(every operation dispatch.rs's match names, those of its `unsupported(op)` arm)."""
    src = DISPATCH.read_text()
    body = src.split("pub async fn dispatch(", 1)[1].split("#[cfg(test)]", 1)[0]
    routed = set(re.findall(r"Operation::([A-Za-z]+)", body))
    arms = re.findall(r"((?:\|?\s*Operation::[A-Za-z]+\s*)+)=>\s*unsupported\(op\)", body)
    assert len(arms) == 1, f"expected one `=> unsupported(op)` arm in {DISPATCH}, found {len(arms)}"
    return routed, set(re.findall(r"Operation::([A-Za-z]+)", arms[0]))


def documented_unsupported() -> set[str]:
    return {op for op, status, _ in table_rows() if status == "UnsupportedFeatureException"}


def test_every_botocore_operation_appears_exactly_once():
    rows = table_rows()
    names = [op for op, _, _ in rows]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, f"listed more than once in {TABLE.name}: {dupes}"
    ops = set(ecs_operations())
    assert not ops - set(names), f"missing from {TABLE.name}: {sorted(ops - set(names))}"
    assert not set(names) - ops, f"not ECS operations: {sorted(set(names) - ops)}"
    bad = [(op, s) for op, s, _ in rows if s not in STATUSES]
    assert not bad, f"status must be one of {sorted(STATUSES)}: {bad}"
    # An unsupported operation says why; a partial one says what is left out.
    terse = [op for op, s, notes in rows if s != "supported" and not notes]
    assert not terse, f"rows without a reason: {terse}"


def test_unsupported_rows_match_dispatch():
    routed, unsupported = dispatch_arms()
    ops = set(ecs_operations())
    assert routed == ops, (
        f"dispatch.rs and botocore disagree: only in dispatch {sorted(routed - ops)}, "
        f"only in botocore {sorted(ops - routed)}"
    )
    documented = documented_unsupported()
    assert unsupported == documented, (
        f"dispatch answers UnsupportedFeatureException for {sorted(unsupported - documented)} "
        f"but {TABLE.name} does not say so; {TABLE.name} says it for "
        f"{sorted(documented - unsupported)} but dispatch implements them"
    )


@pytest.mark.parametrize("op", ecs_operations())
def test_the_server_answers_as_the_table_says(endpoint, reset, op):
    r = requests.post(
        endpoint + "/",
        data=b"{}",
        headers={"Content-Type": JSON_CT, "X-Amz-Target": f"{TARGET_PREFIX}.{op}"},
        timeout=10,
    )
    assert r.status_code < 500, (op, r.status_code, r.text[:300])
    code = r.json().get("__type") if r.status_code != 200 else None
    if op in documented_unsupported():
        assert (r.status_code, code) == (400, "UnsupportedFeatureException"), (op, r.text[:300])
        assert op in r.json()["message"]
    else:
        assert code != "UnsupportedFeatureException", (op, r.text[:300])
        assert code != "UnknownOperationException", (op, r.text[:300])
