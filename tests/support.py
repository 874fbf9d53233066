"""Helpers every Python test directory shares: polling with a deadline, a free loopback
port, the flotilla binary, `/healthz`, the preconditions of the tests that run real
containers.

Imported as `support`: `tests/conftest.py` puts `tests/` on `sys.path`, for `pytest tests`
as for `pytest tests/e2e` (run from the repository root). Each directory's own helpers
stay in its `*_support.py` (or `conftest.py`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]


def _flotilla_bin() -> Path:
    """`$FLOTILLA_BIN` (relative to the repository if relative), else `target/debug/flotilla`."""
    path = Path(os.environ.get("FLOTILLA_BIN", REPO / "target" / "debug" / "flotilla"))
    return path if path.is_absolute() else REPO / path


BIN = _flotilla_bin()


def run_checked(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Runs a command to completion, output captured as text; when it fails, the assertion
    names the command, its exit status, the end of its stderr and the free space in /tmp
    (a full disk is the usual reason an image or repository write fails)."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        free_mib = shutil.disk_usage("/tmp").free // (1 << 20)
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {done.returncode} ({free_mib} MiB free in /tmp): "
            f"{done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:]}")
    return done


def wait_for(
    predicate: Callable[[], T],
    what: str = "condition",
    deadline: float = 30.0,
    interval: float = 0.1,
    retry_errors: bool = False,
) -> T:
    """Calls `predicate` every `interval` s until it returns something truthy, and returns
    that; fails the test after `deadline` s naming `what`.

    With `retry_errors`, an exception from `predicate` counts as "not yet" (the last one is
    reported on timeout); without, it propagates at once.
    """
    end = time.monotonic() + deadline
    last: Exception | None = None
    while True:
        try:
            value = predicate()
        except Exception as e:  # noqa: BLE001 - a failed probe is "not yet"
            if not retry_errors:
                raise
            value, last = None, e
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {deadline:g}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (another process may take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(endpoint: str, timeout: float = 1.0) -> bool:
    """Whether `GET <endpoint>/healthz` answers 200."""
    try:
        with urllib.request.urlopen(endpoint + "/healthz", timeout=timeout) as r:
            return r.status == 200
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def need_root_and_binaries(why: str) -> None:
    """Skips the test unless run as root (`why`: what needs it); fails it unless the
    flotilla binary and `flotilla-runtime-logger` beside it are built."""
    if os.geteuid() != 0:
        pytest.skip(why)
    if not BIN.exists() or not BIN.with_name("flotilla-runtime-logger").exists():
        pytest.fail(f"{BIN} (and flotilla-runtime-logger beside it) must be built first: cargo build --workspace")
