"""The load balancers' data plane inside `flotilla server --lb-listen`: a load balancer
made with the real `aws elbv2` CLI carries HTTP traffic to two real backends (Python
http.server threads on loopback), the health its checks observe shows in
describe-target-health, a stopped backend turns `unhealthy` and gets no more traffic, and
a deregistered target drains; and the load balancer's CloudWatch metrics
(`AWS/ApplicationELB`) as `aws cloudwatch` sees them, an alarm on them included."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from e2e_support import cli_env, start_server
from support import free_port, wait_for


class Backend:
    """An HTTP/1.0 server on a free loopback port answering `200 <name>` to every GET
    (one connection per request, so a stopped backend answers nothing at all)."""

    def __init__(self, name: str):
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.name = name
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lb_server(tmp_path):
    # Metrics published every second (not ELB's 60 s) so that a test sees them at once.
    server = start_server(tmp_path, ["--lb-listen", "127.0.0.1", "--lb-metrics-interval", "1"], name="lb")
    yield server
    server.stop()


@pytest.fixture
def backends():
    started = [Backend("one"), Backend("two")]
    yield started
    for b in started:
        try:
            b.stop()
        except OSError:
            pass


def test_traffic_flows_health_comes_back_and_deregistered_targets_drain(lb_server, backends, tmp_path):
    if shutil.which("aws") is None:
        pytest.fail("the AWS CLI (`aws`) is not installed: pip install awscli", pytrace=False)
    env = cli_env(AWS_ENDPOINT_URL=lb_server.endpoint)

    def aws(*args: str):
        r = subprocess.run(["aws", "elbv2", *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 0, f"aws elbv2 {' '.join(args)} failed:\n{r.stderr[-2000:]}\nserver:\n{lb_server.log_text()}"
        return json.loads(r.stdout) if r.stdout.strip() else None

    one, two = backends
    lb = aws("create-load-balancer", "--name", "dataplane")["LoadBalancers"][0]["LoadBalancerArn"]
    tg = aws(
        "create-target-group", "--name", "backends", "--protocol", "HTTP", "--port", "80", "--target-type", "ip",
        "--health-check-path", "/", "--health-check-interval-seconds", "5", "--health-check-timeout-seconds", "2",
        "--healthy-threshold-count", "2", "--unhealthy-threshold-count", "2",
    )["TargetGroups"][0]["TargetGroupArn"]
    aws("modify-target-group-attributes", "--target-group-arn", tg, "--attributes", "Key=deregistration_delay.timeout_seconds,Value=60")
    port = free_port()
    aws("create-listener", "--load-balancer-arn", lb, "--protocol", "HTTP", "--port", str(port), "--default-actions", f"Type=forward,TargetGroupArn={tg}")
    aws("register-targets", "--target-group-arn", tg, "--targets", f"Id=127.0.0.1,Port={one.port}", f"Id=127.0.0.1,Port={two.port}")

    def health() -> dict[int, tuple[str, str | None]]:
        described = aws("describe-target-health", "--target-group-arn", tg)["TargetHealthDescriptions"]
        return {h["Target"]["Port"]: (h["TargetHealth"]["State"], h["TargetHealth"].get("Reason")) for h in described}

    wait_for(
        lambda: health() == {one.port: ("healthy", None), two.port: ("healthy", None)},
        "both targets to be reported healthy", deadline=40, interval=0.5,
    )

    def get() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    answers = [get() for _ in range(50)]
    assert all(status == 200 for status, _ in answers), answers
    bodies = [body for _, body in answers]
    assert set(bodies) == {"one", "two"}, bodies

    one.stop()
    wait_for(
        lambda: health()[one.port][0] == "unhealthy",
        "the stopped backend to be reported unhealthy", deadline=40, interval=0.5,
    )
    assert health() == {one.port: ("unhealthy", "Target.FailedHealthChecks"), two.port: ("healthy", None)}
    answers = [get() for _ in range(20)]
    assert answers == [(200, "two")] * 20, answers

    aws("deregister-targets", "--target-group-arn", tg, "--targets", f"Id=127.0.0.1,Port={one.port}")
    assert health() == {one.port: ("draining", "Target.DeregistrationInProgress"), two.port: ("healthy", None)}
    # Deregistering a draining target again is no error.
    aws("deregister-targets", "--target-group-arn", tg, "--targets", f"Id=127.0.0.1,Port={one.port}")
    assert [get() for _ in range(5)] == [(200, "two")] * 5
    assert lb_server.proc.poll() is None, lb_server.log_text()


def test_load_balancer_metrics_reach_cloudwatch(lb_server, backends, tmp_path):
    """docs/load-balancers.md's alarm on a load balancer's metrics, with the real CLI."""
    if shutil.which("aws") is None:
        pytest.fail("the AWS CLI (`aws`) is not installed: pip install awscli", pytrace=False)
    env = cli_env(AWS_ENDPOINT_URL=lb_server.endpoint)

    def aws(*args: str):
        r = subprocess.run(["aws", *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 0, f"aws {' '.join(args)} failed:\n{r.stderr[-2000:]}\nserver:\n{lb_server.log_text()}"
        return json.loads(r.stdout) if r.stdout.strip() else None

    one = backends[0]
    lb = aws("elbv2", "create-load-balancer", "--name", "metered")["LoadBalancers"][0]["LoadBalancerArn"]
    tg = aws(
        "elbv2", "create-target-group", "--name", "metered", "--protocol", "HTTP", "--port", "80", "--target-type", "ip",
        "--health-check-interval-seconds", "5", "--health-check-timeout-seconds", "2", "--healthy-threshold-count", "2",
    )["TargetGroups"][0]["TargetGroupArn"]
    port = free_port()
    aws("elbv2", "create-listener", "--load-balancer-arn", lb, "--protocol", "HTTP", "--port", str(port),
        "--default-actions", f"Type=forward,TargetGroupArn={tg}")
    aws("elbv2", "register-targets", "--target-group-arn", tg, "--targets", f"Id=127.0.0.1,Port={one.port}")
    lb_dim = lb.split(":loadbalancer/")[1]
    tg_dim = tg.split(":")[-1]
    aws("cloudwatch", "put-metric-alarm", "--alarm-name", "metered-traffic", "--namespace", "AWS/ApplicationELB",
        "--metric-name", "RequestCount", "--dimensions", f"Name=LoadBalancer,Value={lb_dim}",
        "--statistic", "Sum", "--period", "60", "--evaluation-periods", "1", "--threshold", "0",
        "--comparison-operator", "GreaterThanThreshold")
    wait_for(
        lambda: aws("elbv2", "describe-target-health", "--target-group-arn", tg)
        ["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "healthy",
        "the target to be healthy", deadline=40, interval=0.5,
    )
    for _ in range(5):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200

    def state() -> str:
        return aws("cloudwatch", "describe-alarms", "--alarm-names", "metered-traffic")["MetricAlarms"][0]["StateValue"]

    wait_for(lambda: state() == "ALARM", "the RequestCount alarm to go into ALARM", deadline=30, interval=0.5)
    listed = aws("cloudwatch", "list-metrics", "--namespace", "AWS/ApplicationELB",
                 "--dimensions", f"Name=LoadBalancer,Value={lb_dim}", f"Name=TargetGroup,Value={tg_dim}")["Metrics"]
    assert sorted(m["MetricName"] for m in listed) == [
        "HTTPCode_Target_5XX_Count", "HealthyHostCount", "RequestCount", "TargetResponseTime", "UnHealthyHostCount",
    ], listed


def _openssl(cwd, *args: str) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)} failed:\n{r.stderr[-2000:]}"


def test_https_listener_with_an_imported_acm_certificate(lb_server, backends, tmp_path):
    """docs/load-balancers.md's "HTTPS listeners and ACM certificates", with the real CLI:
    openssl makes a CA and a certificate, `aws acm import-certificate` imports it, an
    HTTPS listener serves it, curl trusting the CA reaches the backend, and the
    certificate cannot be deleted while the listener uses it."""
    for tool in ("aws", "curl", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is not installed", pytrace=False)
    env = cli_env(AWS_ENDPOINT_URL=lb_server.endpoint)

    def aws(*args: str, ok: bool = True):
        r = subprocess.run(["aws", *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        if not ok:
            return r
        assert r.returncode == 0, f"aws {' '.join(args)} failed:\n{r.stderr[-2000:]}\nserver:\n{lb_server.log_text()}"
        return json.loads(r.stdout) if r.stdout.strip() else None

    name = "shop.flotilla.test"
    _openssl(tmp_path, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "30", "-subj", "/CN=flotilla e2e CA")
    (tmp_path / "ext").write_text(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
    _openssl(tmp_path, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.csr", "-subj", f"/CN={name}")
    _openssl(tmp_path, "x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "cert.pem", "-days", "30", "-extfile", "ext")

    cert = aws("acm", "import-certificate", "--certificate", "fileb://cert.pem", "--private-key", "fileb://key.pem",
               "--certificate-chain", "fileb://ca.pem")["CertificateArn"]
    described = aws("acm", "describe-certificate", "--certificate-arn", cert)["Certificate"]
    assert described["DomainName"] == name and described["Status"] == "ISSUED" and described["Type"] == "IMPORTED", described

    one, _two = backends
    lb = aws("elbv2", "create-load-balancer", "--name", "secure")["LoadBalancers"][0]["LoadBalancerArn"]
    tg = aws("elbv2", "create-target-group", "--name", "secure-backends", "--protocol", "HTTP", "--port", "80",
             "--target-type", "ip", "--health-check-interval-seconds", "5",
             "--health-check-timeout-seconds", "2")["TargetGroups"][0]["TargetGroupArn"]
    aws("elbv2", "register-targets", "--target-group-arn", tg, "--targets", f"Id=127.0.0.1,Port={one.port}")
    port = free_port()
    listener = aws("elbv2", "create-listener", "--load-balancer-arn", lb, "--protocol", "HTTPS", "--port", str(port),
                   "--certificates", f"CertificateArn={cert}", "--ssl-policy", "ELBSecurityPolicy-TLS13-1-2-2021-06",
                   "--default-actions", f"Type=forward,TargetGroupArn={tg}")["Listeners"][0]
    assert listener["Protocol"] == "HTTPS" and listener["Certificates"] == [{"CertificateArn": cert}], listener
    assert listener["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"

    def curl() -> str:
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(tmp_path / "ca.pem"),
                            "--resolve", f"{name}:{port}:127.0.0.1", f"https://{name}:{port}/"],
                           capture_output=True, text=True, timeout=30)
        return r.stdout if r.returncode == 0 else f"curl failed ({r.returncode}): {r.stderr}"

    wait_for(lambda: curl() == "one", "the HTTPS listener to answer from the backend", deadline=40, interval=0.5)

    refused = aws("acm", "delete-certificate", "--certificate-arn", cert, ok=False)
    assert refused.returncode != 0 and "ResourceInUseException" in refused.stderr, refused.stderr
    in_use = aws("acm", "describe-certificate", "--certificate-arn", cert)["Certificate"]["InUseBy"]
    assert in_use == [listener["ListenerArn"]]

    aws("elbv2", "delete-listener", "--listener-arn", listener["ListenerArn"])
    aws("acm", "delete-certificate", "--certificate-arn", cert)
    assert aws("acm", "list-certificates")["CertificateSummaryList"] == []
    assert lb_server.proc.poll() is None, lb_server.log_text()
