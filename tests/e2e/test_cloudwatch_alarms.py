"""CloudWatch alarms against the real server: the real AWS CLI (`aws cloudwatch …`, which
speaks AWS JSON 1.0 to CloudWatch), boto3 in both protocols of botocore's model (JSON 1.0,
and Smithy RPC v2 CBOR through a copy of the model that names only that one, so
botocore's own CBOR serializer and parser check the wire format), every JSON answer
checked against the CloudWatch model; metrics read back with GetMetricStatistics and
GetMetricData (the CLI, and boto3 in both protocols, its paginator included); and an ECS
service whose deployment an alarm rolls back (`deploymentConfiguration.alarms`), watched
with `aws ecs describe-service-deployments`.
"""

from __future__ import annotations

import datetime
import gzip
import json
from pathlib import Path

import boto3
import botocore.exceptions
import botocore.session
import pytest
import requests
from botocore.config import Config

from e2e_support import aws_cli, cli_env, identity_document, resources
from shape_check import shape_errors
from support import wait_for


@pytest.fixture
def aws(server, reset):
    """`aws(service, *args)`: the real AWS CLI against the test server; JSON output."""
    return aws_cli(cli_env(), server.endpoint)


ALARM_ARGS = [
    "--alarm-name", "web-5xx", "--namespace", "App", "--metric-name", "Errors",
    "--dimensions", "Name=Service,Value=web", "--statistic", "Sum", "--period", "60",
    "--evaluation-periods", "1", "--threshold", "5",
    "--comparison-operator", "GreaterThanThreshold",
]


def test_cli_alarm_lifecycle(aws):
    aws("cloudwatch", "put-metric-alarm", *ALARM_ARGS, "--alarm-description", "5xx from web")
    [a] = aws("cloudwatch", "describe-alarms", "--alarm-names", "web-5xx")["MetricAlarms"]
    assert a["StateValue"] == "INSUFFICIENT_DATA"
    assert a["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:000000000000:alarm:web-5xx"
    assert a["Dimensions"] == [{"Name": "Service", "Value": "web"}]
    assert (a["Period"], a["Threshold"], a["Statistic"]) == (60, 5.0, "Sum")
    # A datapoint over the threshold puts it in ALARM at once.
    aws("cloudwatch", "put-metric-data", "--namespace", "App", "--metric-name", "Errors",
        "--dimensions", "Service=web", "--value", "9")
    [a] = aws("cloudwatch", "describe-alarms", "--state-value", "ALARM")["MetricAlarms"]
    assert a["AlarmName"] == "web-5xx"
    assert a["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints"), a
    json.loads(a["StateReasonData"])
    # SetAlarmState: AWS's way to test an alarm.
    aws("cloudwatch", "set-alarm-state", "--alarm-name", "web-5xx", "--state-value", "OK",
        "--state-reason", "testing by hand")
    [a] = aws("cloudwatch", "describe-alarms", "--alarm-name-prefix", "web")["MetricAlarms"]
    assert (a["StateValue"], a["StateReason"]) == ("OK", "testing by hand")
    assert aws("cloudwatch", "describe-alarms", "--state-value", "ALARM")["MetricAlarms"] == []
    # Errors carry CloudWatch's codes.
    err = aws("cloudwatch", "set-alarm-state", "--alarm-name", "nope", "--state-value", "OK",
              "--state-reason", "x", ok=False)
    assert "(ResourceNotFound)" in err, err
    err = aws("cloudwatch", "put-metric-alarm", *ALARM_ARGS[:-2], "--comparison-operator",
              "GreaterThanThreshold", "--period", "30", ok=False)
    assert "(InvalidParameterValue)" in err, err
    err = aws("cloudwatch", "list-dashboards", ok=False)
    assert "(UnsupportedOperation)" in err and "not supported by flotilla" in err, err
    [m] = aws("cloudwatch", "list-metrics", "--namespace", "App")["Metrics"]
    assert m == {"Namespace": "App", "MetricName": "Errors", "Dimensions": [{"Name": "Service", "Value": "web"}]}
    # Read back: the one datapoint (9, now) in the past ten minutes.
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
    window = ["--start-time", (end - datetime.timedelta(minutes=10)).isoformat(), "--end-time", end.isoformat()]
    r = aws("cloudwatch", "get-metric-statistics", "--namespace", "App", "--metric-name", "Errors",
            "--dimensions", "Name=Service,Value=web", "--period", "600", "--statistics", "Sum", "SampleCount",
            *window)
    assert r["Label"] == "Errors"
    [d] = r["Datapoints"]
    assert (d["Sum"], d["SampleCount"], d["Unit"]) == (9.0, 1.0, "None"), d
    queries = json.dumps([
        {"Id": "errors", "MetricStat": {"Metric": m, "Period": 600, "Stat": "Maximum"}},
        {"Id": "half", "Expression": "errors / 2", "Label": "half the errors"},
    ])
    r = aws("cloudwatch", "get-metric-data", "--metric-data-queries", queries, *window)
    assert [(x["Id"], x["Label"], x["Values"], x["StatusCode"]) for x in r["MetricDataResults"]] == [
        ("errors", "Errors", [9.0], "Complete"), ("half", "half the errors", [4.5], "Complete")]
    err = aws("cloudwatch", "get-metric-statistics", "--namespace", "App", "--metric-name", "Errors",
              "--period", "60", "--extended-statistics", "p99", *window, ok=False)
    assert "(InvalidParameterValue)" in err and "percentiles" in err, err
    aws("cloudwatch", "delete-alarms", "--alarm-names", "web-5xx")
    assert aws("cloudwatch", "describe-alarms")["MetricAlarms"] == []


SERVED = {"PutMetricAlarm", "DescribeAlarms", "DeleteAlarms", "SetAlarmState", "PutMetricData", "ListMetrics",
          "GetMetricStatistics", "GetMetricData"}


def test_every_cloudwatch_operation_is_served_or_unsupported(server, reset):
    """Every operation of botocore's CloudWatch model is either served or answered
    UnsupportedOperation (never as unknown), as docs/ecs-api.md says: 8 served, 38 not."""
    ops = botocore.session.get_session().get_service_model("cloudwatch").operation_names
    assert SERVED <= set(ops)
    assert len(ops) - len(SERVED) == 38, "docs/ecs-api.md counts 38 unsupported operations"
    for op in ops:
        r = requests.post(server.endpoint + "/", data=b"{}", timeout=10, headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"GraniteServiceVersion20100801.{op}",
        })
        code = r.json().get("__type") if r.status_code != 200 else None
        if op in SERVED:
            assert code not in ("UnsupportedOperation", "UnknownOperationException"), (op, r.text)
        else:
            assert (r.status_code, code) == (400, "UnsupportedOperation"), (op, r.text)
            assert r.headers["x-amzn-query-error"] == "UnsupportedOperation;Sender"
    r = requests.post(server.endpoint + "/", data=b"{}", timeout=10, headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "GraniteServiceVersion20100801.NoSuchThing",
    })
    assert r.json()["__type"] == "UnknownOperationException"


def cloudwatch_client(endpoint: str, data_path: str | None = None):
    session = botocore.session.Session()
    session.set_config_variable("config_file", "/dev/null")
    session.set_config_variable("credentials_file", "/dev/null")
    if data_path:
        session.set_config_variable("data_path", data_path)
    return boto3.Session(botocore_session=session).client(
        "cloudwatch", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="dev", aws_secret_access_key="dev",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def cbor_only_model(tmp_path: Path) -> str:
    """A data path whose CloudWatch model names Smithy RPC v2 CBOR as its only protocol."""
    model = botocore.session.get_session().get_component("data_loader").load_service_model(
        "cloudwatch", "service-2")
    assert "smithy-rpc-v2-cbor" in model["metadata"]["protocols"]
    model["metadata"]["protocols"] = ["smithy-rpc-v2-cbor"]
    target = tmp_path / "cloudwatch" / "2010-08-01"
    target.mkdir(parents=True)
    with gzip.open(target / "service-2.json.gz", "wt") as f:
        json.dump(model, f)
    return str(tmp_path)


@pytest.mark.parametrize("protocol", ["json", "smithy-rpc-v2-cbor"])
def test_boto3_speaks_both_protocols(server, reset, tmp_path, protocol):
    data_path = cbor_only_model(tmp_path) if protocol != "json" else None
    cw = cloudwatch_client(server.endpoint, data_path)
    assert cw.meta.service_model.resolved_protocol == protocol
    requests_seen = []
    cw.meta.events.register("before-send.cloudwatch", lambda request, **_: requests_seen.append(request.url))
    problems = []

    def check(http_response, parsed, model, **_):
        if protocol == "json" and http_response.status_code == 200 and model.output_shape is not None:
            shape_errors(model.output_shape, json.loads(http_response.content or b"{}"), model.name, problems)

    cw.meta.events.register("after-call.cloudwatch", check)
    for name in ["b-alarm", "a-alarm", "c-alarm"]:
        cw.put_metric_alarm(
            AlarmName=name, Namespace="App", MetricName="Latency", Statistic="Average",
            Period=60, EvaluationPeriods=2, DatapointsToAlarm=1, Threshold=0.5,
            ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
        )
    now = datetime.datetime.now(datetime.timezone.utc)
    cw.put_metric_data(Namespace="App", MetricData=[
        {"MetricName": "Latency", "Timestamp": now, "Values": [0.2, 0.9], "Counts": [3, 1]},
    ])
    # Average (3 × 0.2 + 0.9) / 4 = 0.375: below 0.5, so OK (missing data is not breaching).
    page = cw.describe_alarms(MaxRecords=2)
    assert [a["AlarmName"] for a in page["MetricAlarms"]] == ["a-alarm", "b-alarm"]
    a = page["MetricAlarms"][0]
    assert a["StateValue"] == "OK", a
    assert isinstance(a["StateUpdatedTimestamp"], datetime.datetime)
    assert abs((a["StateUpdatedTimestamp"] - now).total_seconds()) < 60
    rest = cw.describe_alarms(MaxRecords=2, NextToken=page["NextToken"])
    assert [a["AlarmName"] for a in rest["MetricAlarms"]] == ["c-alarm"]
    assert "NextToken" not in rest
    paged = [a["AlarmName"] for p in cw.get_paginator("describe_alarms").paginate(PaginationConfig={"PageSize": 1})
             for a in p["MetricAlarms"]]
    assert paged == ["a-alarm", "b-alarm", "c-alarm"]
    cw.put_metric_data(Namespace="App", MetricData=[{"MetricName": "Latency", "Value": 4.0, "Timestamp": now}])
    assert {a["StateValue"] for a in cw.describe_alarms()["MetricAlarms"]} == {"ALARM"}
    cw.put_metric_data(Namespace="App", MetricData=[
        {"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": s}], "Value": 1.0} for s in ["a", "b"]
    ])
    metrics = cw.list_metrics(Namespace="App")["Metrics"]
    assert sorted(m["MetricName"] + "".join(d["Value"] for d in m["Dimensions"]) for m in metrics) == [
        "Latency", "Latencya", "Latencyb"]
    [m] = cw.list_metrics(Dimensions=[{"Name": "Service", "Value": "b"}], RecentlyActive="PT3H")["Metrics"]
    assert m == {"Namespace": "App", "MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "b"}]}
    assert cw.list_metrics(Namespace="Other")["Metrics"] == []
    # Read back: Latency (no dimensions) had 0.2 ×3, 0.9 and 4.0 in this minute.
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(minutes=1)
    r = cw.get_metric_statistics(Namespace="App", MetricName="Latency", StartTime=start, EndTime=end,
                                 Period=360, Statistics=["SampleCount", "Sum", "Minimum", "Maximum", "Average"])
    assert r["Label"] == "Latency"
    [d] = r["Datapoints"]
    assert (d["SampleCount"], d["Minimum"], d["Maximum"]) == (5.0, 0.2, 4.0), d
    assert d["Sum"] == pytest.approx(5.5) and d["Average"] == pytest.approx(1.1), d
    assert isinstance(d["Timestamp"], datetime.datetime)
    assert cw.get_metric_statistics(Namespace="App", MetricName="Latency", StartTime=start, EndTime=end, Period=360,
                                    Statistics=["Sum"], Dimensions=[{"Name": "Service", "Value": "a"}]
                                    )["Datapoints"][0]["Sum"] == 1.0
    with pytest.raises(cw.exceptions.InvalidParameterCombinationException):
        cw.get_metric_statistics(Namespace="App", MetricName="Latency", StartTime=start,
                                 EndTime=start + datetime.timedelta(days=2), Period=60, Statistics=["Sum"])
    queries = [
        {"Id": f"m{s}", "MetricStat": {"Period": 60, "Stat": "Sum", "Metric": {
            "Namespace": "App", "MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": s}]}}}
        for s in ["a", "b"]
    ] + [{"Id": "total", "Expression": "SUM([ma, mb]) * 10"}]
    r = cw.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending")
    assert [(x["Id"], x["Values"], x["StatusCode"]) for x in r["MetricDataResults"]] == [
        ("ma", [1.0], "Complete"), ("mb", [1.0], "Complete"), ("total", [20.0], "Complete")]
    assert all(isinstance(t, datetime.datetime) for x in r["MetricDataResults"] for t in x["Timestamps"])
    # botocore's paginator follows NextToken: one datapoint a page.
    pages = list(cw.get_paginator("get_metric_data").paginate(
        MetricDataQueries=queries, StartTime=start, EndTime=end, PaginationConfig={"PageSize": 1}))
    assert len(pages) == 3
    values = {}
    for p in pages:
        for x in p["MetricDataResults"]:
            values.setdefault(x["Id"], []).extend(x["Values"])
    assert values == {"ma": [1.0], "mb": [1.0], "total": [20.0]}
    with pytest.raises(botocore.exceptions.ClientError) as e:
        cw.get_metric_data(MetricDataQueries=[{"Id": "e1", "Expression": "FILL(ma, 0)"}], StartTime=start, EndTime=end)
    assert "FILL is not supported" in str(e.value)
    with pytest.raises(cw.exceptions.ResourceNotFound):
        cw.delete_alarms(AlarmNames=["a-alarm", "missing"])
    with pytest.raises(cw.exceptions.InvalidParameterValueException):
        cw.put_metric_data(Namespace="AWS/ECS", MetricData=[{"MetricName": "x", "Value": 1.0}])
    cw.delete_alarms(AlarmNames=["a-alarm", "b-alarm", "c-alarm"])
    assert cw.describe_alarms()["MetricAlarms"] == []
    assert not problems, problems
    if protocol == "json":
        assert all(u.rstrip("/") == server.endpoint for u in requests_seen), requests_seen
    else:
        assert all("/service/GraniteServiceVersion20100801/operation/" in u for u in requests_seen), requests_seen


def test_an_alarm_rolls_back_an_ecs_deployment(aws, tmp_path):
    aws("ecs", "create-cluster", "--cluster-name", "demo")
    # An instance without an agent: tasks stay PENDING, so the rollout stays IN_PROGRESS.
    aws("ecs", "register-container-instance", "--cluster", "demo",
        "--instance-identity-document", identity_document("i-0123456789abcdef0"),
        "--total-resources", json.dumps(resources()))
    container = [{"name": "app", "image": "busybox", "memory": 64, "essential": True}]
    v1 = aws("ecs", "register-task-definition", "--family", "web", "--container-definitions",
             json.dumps(container))["taskDefinition"]["taskDefinitionArn"]
    v2 = aws("ecs", "register-task-definition", "--family", "web", "--container-definitions",
             json.dumps(container))["taskDefinition"]["taskDefinitionArn"]
    aws("cloudwatch", "put-metric-alarm", *ALARM_ARGS)
    aws("ecs", "create-service", "--cluster", "demo", "--service-name", "web",
        "--task-definition", v1, "--desired-count", "1",
        "--deployment-configuration", "alarms={alarmNames=[web-5xx],enable=true,rollback=true}")
    s = aws("ecs", "update-service", "--cluster", "demo", "--service", "web",
            "--task-definition", v2)["service"]
    assert s["deploymentConfiguration"]["alarms"] == {
        "alarmNames": ["web-5xx"], "enable": True, "rollback": True}
    failed_id = s["deployments"][0]["id"]

    def newest_deployment():
        arns = aws("ecs", "list-service-deployments", "--cluster", "demo", "--service", "web")
        arn = arns["serviceDeployments"][0]["serviceDeploymentArn"]
        return aws("ecs", "describe-service-deployments", "--service-deployment-arns",
                   arn)["serviceDeployments"][0]

    d = wait_for(lambda: (d := newest_deployment())["status"] == "IN_PROGRESS" and d,
                 "the deployment to start")
    assert d["alarms"] == {"status": "MONITORING", "alarmNames": ["web-5xx"]}
    aws("cloudwatch", "set-alarm-state", "--alarm-name", "web-5xx", "--state-value", "ALARM",
        "--state-reason", "5xx storm")
    d = wait_for(lambda: (d := newest_deployment())["status"] == "ROLLBACK_IN_PROGRESS" and d,
                 "the alarm to roll the deployment back")
    assert d["alarms"]["status"] == "TRIGGERED", d
    assert d["alarms"]["triggeredAlarmNames"] == ["web-5xx"], d
    assert d["deploymentCircuitBreaker"]["status"] == "DISABLED", d
    assert "web-5xx" in d["rollback"]["reason"], d
    s = aws("ecs", "describe-services", "--cluster", "demo", "--services", "web")["services"][0]
    assert s["taskDefinition"] == v1
    failed = next(x for x in s["deployments"] if x["id"] == failed_id)
    assert failed["rolloutState"] == "FAILED"
    assert any("deployment failed: alarm(s) web-5xx in ALARM state" in e["message"] for e in s["events"]), s["events"]
