"""flotilla node updates from a TUF repository written by python-tuf (an independent producer).

python-tuf writes the keys, root, targets, snapshot and timestamp metadata and the
``manifest.json``; flotilla only builds the node images (``flotilla os build-image``) and plays
the node (``flotilla host install/boot``, ``flotilla apiclient``). A good update must go A -> B;
metadata signed by an unauthorised key, expired metadata and rolled-back metadata must be
refused with the node left as it was.

Run: ``pip install -r tests/host/requirements.txt && pytest tests/host`` after
``cargo build -p flotilla`` (``FLOTILLA_BIN`` overrides the binary path).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from support import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def flotilla_bin() -> str:
    env = os.environ.get("FLOTILLA_BIN")
    if env:
        return env
    for target in (os.environ.get("CARGO_TARGET_DIR"), REPO_ROOT / "target", REPO_ROOT / "target-host"):
        if target and (Path(target) / "debug" / "flotilla").exists():
            return str(Path(target) / "debug" / "flotilla")
    raise RuntimeError("flotilla binary not found: run `cargo build -p flotilla` or set FLOTILLA_BIN")


BIN = flotilla_bin()

GOOD_AGENT = """#!/bin/sh
RUN=$1; shift
echo "$@" > "$RUN/agent-args"
touch "$RUN/agent-registered"
exec sleep 1000
"""

META = """[agent]
command = ["sh", "{slot}/bin/fake-agent", "{run}"]

[health]
command = ["test", "-f", "{run}/agent-registered"]
timeout-secs = 10
"""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, FLOTILLA_LOG="warn")
    p = subprocess.run([BIN, *args], capture_output=True, text=True, env=env, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"flotilla {args} failed ({p.returncode}): {p.stderr}\n{p.stdout}")
    return p


def whole_seconds(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


class PyTufRepo:
    """A consistent-snapshot TUF repository maintained with python-tuf's Metadata API."""

    def __init__(self, root_dir: Path, expires_in: timedelta = timedelta(days=7)):
        self.dir = root_dir
        (self.dir / "metadata").mkdir(parents=True)
        (self.dir / "targets").mkdir(parents=True)
        self.signers = {r: CryptoSigner.generate_ed25519() for r in ("root", "targets", "snapshot", "timestamp")}
        now = datetime.now(timezone.utc)
        self.expires = whole_seconds(now + expires_in)
        root = Root(expires=whole_seconds(now + timedelta(days=365)), consistent_snapshot=True)
        for role, signer in self.signers.items():
            root.add_key(signer.public_key, role)
        self.root = Metadata(root)
        self.root.sign(self.signers["root"])
        self.targets = Metadata(Targets(expires=self.expires))
        self.snapshot = Metadata(Snapshot(expires=self.expires))
        self.timestamp = Metadata(Timestamp(expires=self.expires))
        self.manifest = {"updates": [], "migrations": {}}
        self.version = 0
        self.write_root()

    @property
    def root_json(self) -> Path:
        return self.dir / "root.json"

    def write_root(self) -> None:
        data = self.root.to_bytes(JSONSerializer(compact=False))
        self.root_json.write_bytes(data)
        (self.dir / "metadata" / f"{self.root.signed.version}.root.json").write_bytes(data)

    def add_target(self, name: str, data: bytes) -> None:
        tf = TargetFile.from_data(name, data, ["sha256"])
        self.targets.signed.targets[name] = tf
        sha = tf.hashes["sha256"]
        (self.dir / "targets" / f"{sha}.{name}").write_bytes(data)

    def add_image(self, image: Path, version: str) -> None:
        name = f"flotilla-node-{version}-x86_64.tar.gz"
        self.add_target(name, image.read_bytes())
        for u in self.manifest["updates"]:
            u["max_version"] = max(u["max_version"], version, key=lambda v: tuple(map(int, v.split("."))))
        self.manifest["updates"].append(
            {
                "variant": "flotilla-node",
                "arch": "x86_64",
                "version": version,
                "max_version": version,
                "waves": {},
                "images": {"root": name},
            }
        )

    def publish(self, targets_signer=None, expires: datetime | None = None) -> None:
        """Writes manifest.json and signs targets -> snapshot -> timestamp at the next version."""
        self.version += 1
        self.add_target("manifest.json", json.dumps(self.manifest, indent=2).encode())
        exp = whole_seconds(expires) if expires else self.expires
        ser = JSONSerializer(compact=False)
        t = self.targets
        t.signed.version = self.version
        t.signed.expires = exp
        t.signatures.clear()
        t.sign(targets_signer or self.signers["targets"])
        tbytes = t.to_bytes(ser)
        (self.dir / "metadata" / f"{self.version}.targets.json").write_bytes(tbytes)
        s = self.snapshot
        s.signed.version = self.version
        s.signed.expires = exp
        s.signed.meta["targets.json"] = MetaFile(version=self.version)
        s.signatures.clear()
        s.sign(self.signers["snapshot"])
        sbytes = s.to_bytes(ser)
        (self.dir / "metadata" / f"{self.version}.snapshot.json").write_bytes(sbytes)
        ts = self.timestamp
        ts.signed.version = self.version
        ts.signed.expires = exp
        ts.signed.snapshot_meta = MetaFile(
            version=self.version,
            length=len(sbytes),
            hashes={"sha256": hashlib.sha256(sbytes).hexdigest()},
        )
        ts.signatures.clear()
        ts.sign(self.signers["timestamp"])
        (self.dir / "metadata" / "timestamp.json").write_bytes(ts.to_bytes(ser))


class Node:
    def __init__(self, tmp: Path, root_json: Path):
        self.tmp = tmp
        self.root = tmp / "node"
        self.socket = tmp / "api.sock"
        self.proc_sys = tmp / "proc-sys"
        self.proc_sys.mkdir()
        self.root_json = root_json
        self.proc: subprocess.Popen | None = None

    def image(self, version: str) -> Path:
        overlay = self.tmp / f"overlay-{version}"
        (overlay / "bin").mkdir(parents=True)
        (overlay / "bin" / "fake-agent").write_text(GOOD_AGENT)
        meta = self.tmp / "meta.toml"
        meta.write_text(META)
        out = self.tmp / f"node-{version}.tar.gz"
        run(
            "os", "build-image", "--version", version, "--out", str(out), "--no-binary",
            "--root-json", str(self.root_json), "--overlay", str(overlay), "--meta", str(meta),
        )
        return out

    def install(self, image: Path) -> None:
        run("host", "install", "--node-root", str(self.root), "--image", str(image))

    def boot(self) -> None:
        marker = self.root / "run" / "boot-successful"
        if marker.exists():
            marker.unlink()
        self.proc = subprocess.Popen(
            [BIN, "host", "boot", "--node-root", str(self.root), "--socket", str(self.socket),
             "--proc-sys", str(self.proc_sys)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        wait_for(lambda: marker.exists() or self.proc.poll() is not None, "boot", interval=0.025)
        assert self.proc.poll() is None, f"boot failed: {self.proc.communicate()[1]}"

    def reboot(self) -> None:
        self.api("reboot")
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        self.boot()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.communicate(timeout=60)

    def api(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("apiclient", "--socket", str(self.socket), *args, check=check)

    def api_json(self, *args: str):
        return json.loads(self.api(*args).stdout)

    def use_repo(self, repo: Path) -> None:
        self.api(
            "set",
            f"updates.metadata-base-url={repo / 'metadata'}",
            f"updates.targets-base-url={repo / 'targets'}",
            "updates.ignore-waves=true",
        )

    def flags(self) -> dict:
        return json.loads(run("host", "flags", "--node-root", str(self.root)).stdout)


@pytest.fixture
def setup(tmp_path: Path):
    repo = PyTufRepo(tmp_path / "repo")
    node = Node(tmp_path, repo.root_json)
    node.install(node.image("1.0.0"))
    repo.add_image(node.image("1.1.0"), "1.1.0")
    yield repo, node
    node.stop()


def test_python_tuf_repository_updates_node_a_to_b(setup):
    repo, node = setup
    repo.publish()
    node.boot()
    assert node.api_json("-u", "/os")["version_id"] == "1.0.0"
    node.use_repo(repo.dir)
    status = node.api_json("update", "check")
    assert status["update_state"] == "Available"
    assert status["chosen_update"]["version"] == "1.1.0"
    status = node.api_json("update", "apply")
    assert status["update_state"] == "Ready"
    node.reboot()
    assert node.api_json("-u", "/os")["version_id"] == "1.1.0"
    flags = node.flags()
    assert flags["active"] == "b" and flags["b"]["successful"] is True


def assert_refused(node: Node, words: list[str]) -> None:
    before = node.flags()
    p = node.api("update", "check", check=False)
    assert p.returncode != 0, p.stdout
    msg = p.stderr.lower()
    for w in words:
        assert w in msg, p.stderr
    status = node.api_json("-u", "/updates/status")
    assert status["update_state"] == "Idle"
    assert status["most_recent_command"]["cmd_status"] == "Failed"
    assert node.flags() == before
    assert node.api_json("-u", "/os")["version_id"] == "1.0.0"


def test_targets_signed_by_unauthorised_key_is_refused(setup):
    repo, node = setup
    repo.publish(targets_signer=CryptoSigner.generate_ed25519())
    node.boot()
    node.use_repo(repo.dir)
    assert_refused(node, ["tuf repository refused", "targets"])


def test_expired_metadata_is_refused(setup):
    repo, node = setup
    repo.publish(expires=datetime.now(timezone.utc) - timedelta(hours=1))
    node.boot()
    node.use_repo(repo.dir)
    assert_refused(node, ["tuf repository refused", "expired"])


def test_rolled_back_metadata_is_refused(setup, tmp_path: Path):
    repo, node = setup
    repo.publish()
    old = tmp_path / "old-repo"
    shutil.copytree(repo.dir, old)
    repo.publish()
    node.boot()
    node.use_repo(repo.dir)
    assert node.api_json("update", "check")["update_state"] == "Available"
    # a mirror serves the older, still valid and correctly signed metadata
    node.use_repo(old)
    assert_refused(node, ["tuf repository refused", "version"])


def test_update_over_http(setup):
    """Same python-tuf repository, served over HTTP (tough's HTTP transport)."""
    import urllib.request

    repo, node = setup
    repo.publish()
    port = free_port()
    server = subprocess.Popen(
        ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(repo.dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def up():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metadata/timestamp.json", timeout=1)
            return True
        except OSError:
            return False

    try:
        wait_for(up, "http server", interval=0.025)
        node.boot()
        node.api(
            "set",
            f"updates.metadata-base-url=http://127.0.0.1:{port}/metadata/",
            f"updates.targets-base-url=http://127.0.0.1:{port}/targets/",
            "updates.ignore-waves=true",
        )
        assert node.api_json("update", "apply", "--check")["update_state"] == "Ready"
        node.reboot()
        assert node.api_json("-u", "/os")["version_id"] == "1.1.0"
    finally:
        server.terminate()
        server.wait()


def test_tampered_image_is_refused_at_apply(setup):
    """Arbitrary software: the image bytes differ from what targets.json signed."""
    repo, node = setup
    repo.publish()
    [target] = [p for p in (repo.dir / "targets").iterdir() if p.name.endswith("flotilla-node-1.1.0-x86_64.tar.gz")]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    node.boot()
    node.use_repo(repo.dir)
    assert node.api_json("update", "check")["update_state"] == "Available"
    before = node.flags()
    p = node.api("update", "apply", check=False)
    assert p.returncode != 0
    assert "tuf target" in p.stderr.lower() and "flotilla-node-1.1.0" in p.stderr, p.stderr
    assert node.flags()["b"]["tries_left"] == 0 and node.flags()["a"] == before["a"]
    assert node.api_json("-u", "/os")["version_id"] == "1.0.0"


def test_mix_and_match_metadata_is_refused(setup):
    """New timestamp/snapshot served with an older targets.json under the new name."""
    repo, node = setup
    repo.publish()
    old_targets = (repo.dir / "metadata" / "1.targets.json").read_bytes()
    repo.publish()
    (repo.dir / "metadata" / "2.targets.json").write_bytes(old_targets)
    node.boot()
    node.use_repo(repo.dir)
    assert_refused(node, ["tuf repository refused"])


def test_endless_timestamp_is_refused(setup):
    repo, node = setup
    repo.publish()
    ts = repo.dir / "metadata" / "timestamp.json"
    ts.write_bytes(ts.read_bytes() + b" " * (2 << 20))
    node.boot()
    node.use_repo(repo.dir)
    assert_refused(node, ["tuf repository refused"])
