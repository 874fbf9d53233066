"""Fixtures for the black-box end-to-end tests of `flotilla server`.

The tests never build anything: they run the binary at `$FLOTILLA_BIN` (default
`target/debug/flotilla` in the repository), one server per session on a free loopback
port with a temporary data dir and `--allow-reset`, plus a second one with
`--credentials` for the SigV4 tests. Every test starts from an empty state
(`POST /admin/reset`).

Every response a boto3 client of these fixtures receives is validated against
botocore's ECS model (`ModelValidator`): unknown members, wrong JSON types, values
outside an enum, `null`s, error codes the model does not know and 5xx answers all fail
the test, like firecracker's tests validate against its swagger.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_support import (
    AUTH_KEY,
    AUTH_SECRET,
    OTHER_ACCOUNT,
    OTHER_KEY,
    OTHER_SECRET,
    ModelValidator,
    Server,
    make_client,
    start_server,
)


@pytest.fixture(scope="session")
def server_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("flotilla")


@pytest.fixture(scope="session")
def server(server_tmp) -> Server:
    s = start_server(server_tmp)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def endpoint(server) -> str:
    return server.endpoint


@pytest.fixture(scope="session")
def auth_server(server_tmp) -> Server:
    creds = server_tmp / "credentials.toml"
    creds.write_text(
        f'[keys.{AUTH_KEY}]\nsecret = "{AUTH_SECRET}"\n\n'
        f'[keys.{OTHER_KEY}]\nsecret = "{OTHER_SECRET}"\naccount = "{OTHER_ACCOUNT}"\n'
    )
    s = start_server(server_tmp, ["--credentials", str(creds)], name="auth-server")
    yield s
    s.stop()


@pytest.fixture
def reset(server) -> None:
    """Wipes the main server's state before the test."""
    assert server.proc.poll() is None, f"the server died; its output:\n{server.log_text()}"
    server.reset()


@pytest.fixture(scope="session")
def validator() -> ModelValidator:
    return ModelValidator()


@pytest.fixture(autouse=True)
def _no_model_violations(validator):
    """Fails a test whose responses violated the model even if it swallowed the error."""
    before = len(validator.violations)
    yield
    new = validator.violations[before:]
    assert not new, f"responses violated the botocore ECS model: {new}"


@pytest.fixture
def client_factory(server, validator, reset):
    """`client_factory(region="us-east-1")`: a validated boto3 ECS client of the main server."""

    def factory(region: str = "us-east-1", **kw):
        return make_client(server.endpoint, validator, region=region, **kw)

    return factory


@pytest.fixture
def ecs(client_factory):
    """A validated boto3 ECS client (us-east-1) against a freshly reset server."""
    return client_factory()


@pytest.fixture
def auth_client_factory(auth_server, validator):
    """`auth_client_factory(key, secret, region=...)`: clients of the --credentials server."""
    auth_server.reset()

    def factory(key: str = AUTH_KEY, secret: str = AUTH_SECRET, region: str = "us-east-1"):
        return make_client(auth_server.endpoint, validator, region=region, key=key, secret=secret)

    return factory
