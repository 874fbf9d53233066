"""Cloud Map's private DNS namespaces answered over DNS by `flotilla server --dns-listen`:
the real `dig` against the server's DNS port sees exactly the healthy instances (A and
SRV), and a change through the Cloud Map API (health, deregistration) is answered on the
next query."""

from __future__ import annotations

import shutil
import subprocess

import boto3
import pytest
from botocore.config import Config

from e2e_support import _botocore_session, start_server
from support import free_port, wait_for


def dig(port: int, name: str, qtype: str = "A") -> list[str]:
    r = subprocess.run(
        ["dig", "+short", "+tries=1", "+time=2", "-p", str(port), "@127.0.0.1", name, qtype],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode == 0, r.stderr
    return sorted(line for line in r.stdout.splitlines() if line and not line.startswith(";"))


@pytest.fixture
def dns_server(tmp_path):
    if shutil.which("dig") is None:
        pytest.fail("dig is not installed (Debian package dnsutils; scripts/setup.sh installs it)", pytrace=False)
    port = free_port()
    server = start_server(tmp_path, ["--dns-listen", f"127.0.0.1:{port}"], name="dns")
    yield server, port
    server.stop()


def test_dig_sees_the_healthy_instances_and_follows_changes(dns_server):
    server, port = dns_server
    sd = boto3.Session(botocore_session=_botocore_session()).client(
        "servicediscovery", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="dummy-secret",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, inject_host_prefix=False),
    )
    op = sd.create_private_dns_namespace(Name="corp.local", Vpc="vpc-1")["OperationId"]
    ns = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
    srv = sd.create_service(
        Name="web", NamespaceId=ns,
        DnsConfig={"RoutingPolicy": "MULTIVALUE", "DnsRecords": [{"Type": "A", "TTL": 5}, {"Type": "SRV", "TTL": 5}]},
        HealthCheckCustomConfig={},
    )["Service"]["Id"]
    for i in (1, 2, 3):
        sd.register_instance(ServiceId=srv, InstanceId=f"task-{i}",
                             Attributes={"AWS_INSTANCE_IPV4": f"10.9.0.{i}", "AWS_INSTANCE_PORT": str(8080 + i)})
    everyone = ["10.9.0.1", "10.9.0.2", "10.9.0.3"]
    wait_for(lambda: dig(port, "web.corp.local") == everyone, "dig to see the three instances", deadline=10)
    srv_records = dig(port, "web.corp.local", "SRV")
    assert srv_records == [f"1 1 {8080 + i} task-{i}.web.corp.local." for i in (1, 2, 3)], srv_records
    assert dig(port, "task-2.web.corp.local") == ["10.9.0.2"]

    sd.update_instance_custom_health_status(ServiceId=srv, InstanceId="task-2", Status="UNHEALTHY")
    wait_for(lambda: dig(port, "web.corp.local") == ["10.9.0.1", "10.9.0.3"], "the unhealthy instance to go", deadline=10)

    sd.deregister_instance(ServiceId=srv, InstanceId="task-3")
    wait_for(lambda: dig(port, "web.corp.local") == ["10.9.0.1"], "the deregistered instance to go", deadline=10)

    # A name inside the namespace that is not a service: NXDOMAIN (empty +short answer),
    # and names outside every namespace are refused without an upstream.
    assert dig(port, "nothing.corp.local") == []
    r = subprocess.run(["dig", "-p", str(port), "@127.0.0.1", "example.com", "A", "+tries=1", "+time=2"],
                       capture_output=True, text=True, timeout=10)
    assert "status: REFUSED" in r.stdout, r.stdout
