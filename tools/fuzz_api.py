#!/usr/bin/env python3
"""Fuzz flotilla's ECS API for a while: the fuzzer of tests/e2e/test_fuzz.py, for as long
as you like.

    tools/fuzz_api.py --seconds 600 --seed 1 --bin target/release/flotilla
    tools/fuzz_api.py --seconds 600 --seed 1 --endpoint http://127.0.0.1:8080 [--reset]

With `--bin` the tool runs the server itself (`server --allow-reset`, a fresh data dir,
a free loopback port), wipes it between phases, and restarts it after a crash: the run
goes on and reports every request that killed it, with the server's last output. With
`--endpoint` it fuzzes a server you started (loopback only; the fuzzer creates clusters,
services and tasks there, so use a throwaway one); `--reset` wipes it between phases
(`POST /admin/reset`, the server must run with `--allow-reset`); a crash ends the run.

Prints a summary (requests sent, answers by status and error code, findings with
reproducers) and exits 1 when anything broke an invariant; `--out FILE` writes it all as
JSON. `--skip REGEX` leaves out requests whose label or body matches (a known defect
being fixed, so the run can look past it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import fuzz_support as fs  # noqa: E402


class OwnServer:
    """`flotilla server --allow-reset` on a free loopback port, restartable."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.started = 0
        self.proc: subprocess.Popen | None = None
        self.log: Path | None = None
        self.crash_logs: list[str] = []
        self.endpoint = self.start()

    def start(self) -> str:
        self.started += 1
        for _ in range(3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            data = self.workdir / f"data-{self.started}"
            self.log = self.workdir / f"server-{self.started}.log"
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen(
                    [self.binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data), "--allow-reset"],
                    stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
                )
            endpoint = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                if fs.healthz(endpoint):
                    return endpoint
                time.sleep(0.05)
            self.stop()
        raise SystemExit(f"the server did not start; its output:\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:] if self.log else ""
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/admin/reset", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=30).read()

    def restart(self) -> str:
        self.crash_logs.append(self.log_text())
        self.stop()
        self.endpoint = self.start()
        return self.endpoint

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, required=True, help="how long to run")
    ap.add_argument("--seed", type=lambda v: int(v, 0), default=None, help=f"RNG seed (default ${fs.SEED_ENV} or random; printed)")
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="a running server (loopback only)")
    where.add_argument("--bin", help="a flotilla binary: the tool runs (and restarts) the server itself")
    ap.add_argument("--reset", action="store_true", help="with --endpoint: POST /admin/reset between phases")
    ap.add_argument("--phase-seconds", type=float, default=120, help="a fresh state every this many seconds (when it can reset)")
    ap.add_argument("--batch", type=int, default=100, help="requests between control requests")
    ap.add_argument("--skip", help="regex: do not send requests whose label or body matches")
    ap.add_argument("--out", help="write the report as JSON here")
    ap.add_argument("--max-findings", type=int, default=200)
    ap.add_argument("--quiet", action="store_true", help="do not print findings as they happen")
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else fs.seed_from_env()
    skip = None
    if args.skip:
        pattern = re.compile(args.skip.encode())
        skip = lambda r: bool(pattern.search(r.label.encode() + b" " + r.body[:20000]))  # noqa: E731

    own = None
    workdir = None
    if args.bin:
        workdir = Path(tempfile.mkdtemp(prefix="flotilla-fuzz-"))
        own = OwnServer(args.bin, workdir)
        endpoint, alive, reset, restart = own.endpoint, own.alive, own.reset, own.restart
    else:
        endpoint, alive, restart = args.endpoint.rstrip("/"), (lambda: True), None
        reset = None
        if args.reset:
            def reset():
                req = urllib.request.Request(endpoint + "/admin/reset", data=b"", method="POST")
                urllib.request.urlopen(req, timeout=30).read()

    phases = max(1, round(args.seconds / args.phase_seconds)) if reset else 1
    print(f"fuzzing {endpoint} for {args.seconds:.0f} s, seed {seed} ({phases} phase(s); replay: --seed {seed})", flush=True)
    log = (lambda s: None) if args.quiet else (lambda s: print(s[:2000], flush=True))
    f = fs.Fuzzer(endpoint, seed, alive=alive, reset=reset, restart=restart, log=log, batch=args.batch,
                  max_findings=args.max_findings, skip=skip)
    try:
        rep = f.run(seconds=args.seconds, phases=phases)
    finally:
        if own is not None:
            own.stop()
    print(rep.summary())
    print(f"  operations sent: {len(rep.sent_ops)}; answered 200: {len(rep.ok_ops)}; "
          f"unsupported: {len(f.unsupported)}; rate {rep.sent / max(rep.seconds, 1e-9):.0f} requests/s")
    for x in rep.findings:
        print(x)
    crash_logs = own.crash_logs if own is not None else []
    for label, text in zip(rep.crashes, crash_logs):
        print(f"--- the server died after [{label}]; the end of its output:\n{text[-1500:]}")
    if args.out:
        doc = {
            "seed": seed, "seconds": rep.seconds, "sent": rep.sent, "endpoint": endpoint,
            "by_status": {str(k): v for k, v in rep.by_status.items()}, "by_code": dict(rep.by_code),
            "kinds": dict(rep.kinds), "operations_sent": len(rep.sent_ops), "operations_ok": sorted(rep.ok_ops),
            "control_max_seconds": rep.control_max, "slowest": list(rep.slowest),
            "findings": [{"label": x.request.label, "problems": x.problems, "status": x.status,
                          "reproducer": x.request.reproducer(endpoint, limit=4000)} for x in rep.findings],
            "crashes": [{"after": label, "server_output": text[-3000:], "requests_before": before}
                        for label, text, before in zip(rep.crashes, crash_logs + [""] * len(rep.crashes), rep.crash_context)],
        }
        Path(args.out).write_text(json.dumps(doc, indent=1))
    if workdir is not None and not rep.findings and not rep.crashes:
        shutil.rmtree(workdir, ignore_errors=True)
    elif workdir is not None:
        print(f"server data and logs kept in {workdir}")
    return 1 if rep.findings or rep.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
