"""Puts `tests/` on `sys.path`, so that every test directory imports the helpers they
share from `support` (tests/support.py). pytest loads this file for `pytest tests` and for
`pytest tests/<dir>` run from the repository root."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
