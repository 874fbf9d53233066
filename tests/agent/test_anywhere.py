"""ECS Anywhere end to end with real processes: `flotilla server --credentials`, an SSM
activation made with boto3's `ssm` client (`aws ssm create-activation`), and
`flotilla agent --activation-id … --activation-code …` running real containers through
containerd. The node joins as an EXTERNAL instance (`mi-…`) with its own key (saved
0600) beside the server's `--credentials` keys, runs an EXTERNAL task, and once its
instance is deregistered its key is refused and the agent exits non-zero with a
one-line reason. Needs root, like every test here.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess

import boto3
import botocore.config
import botocore.exceptions
import pytest

from support import BIN, free_port, healthz, wait_for

BUSYBOX = "127.0.0.1:5000/busybox:latest"
KEY, SECRET = "AKIDANYWHERE", "anywhere-secret"


@pytest.fixture(scope="module")
def anywhere_server(tmp_path_factory, containerd):
    tmp = tmp_path_factory.mktemp("anywhere-server")
    creds = tmp / "credentials.toml"
    creds.write_text(f'[keys.{KEY}]\nsecret = "{SECRET}"\n')
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(BIN), "server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp / "data"), "--credentials", str(creds)],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "ab"),
    )
    wait_for(lambda: healthz(endpoint), "the server")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


def client(service, endpoint, key=KEY, secret=SECRET):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret,
                        config=botocore.config.Config(retries={"total_max_attempts": 1}))


def test_an_external_node_joins_runs_an_external_task_and_is_refused_after_deregistration(anywhere_server, containerd, tmp_path):
    ecs, ssm = client("ecs", anywhere_server), client("ssm", anywhere_server)
    ecs.create_cluster(clusterName="anywhere")
    act = ssm.create_activation(IamRole="ecsAnywhereRole", DefaultInstanceName="rack-1", RegistrationLimit=1)
    listed = ssm.describe_activations(Filters=[{"FilterKey": "ActivationIds", "FilterValues": [act["ActivationId"]]}])
    assert [a["IamRole"] for a in listed["ActivationList"]] == ["ecsAnywhereRole"]

    data = tmp_path / "agent"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["FLOTILLA_ACTIVATION_CODE"] = act["ActivationCode"]  # kept out of the process list
    log = tmp_path / "agent.log"
    agent = subprocess.Popen(
        [str(BIN), "agent", "--endpoint", anywhere_server, "--cluster", "anywhere", "--data-dir", str(data),
         "--containerd-socket", containerd, "--activation-id", act["ActivationId"],
         "--runc-root", str(tmp_path / "runc"), "--cgroup-parent", "/flotilla-anywhere"],
        stdout=subprocess.DEVNULL, stderr=open(log, "ab"), env=env,
    )
    try:
        arns = wait_for(lambda: ecs.list_container_instances(cluster="anywhere")["containerInstanceArns"], "the node to register")
        ci = ecs.describe_container_instances(cluster="anywhere", containerInstances=arns)["containerInstances"][0]
        assert ci["ec2InstanceId"].startswith("mi-") and len(ci["ec2InstanceId"]) == 20, ci
        assert "ecs.capability.external" in {a["name"] for a in ci["attributes"]}, ci["attributes"]
        saved = data / "node-credentials.json"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        node = json.loads(saved.read_text())
        assert node["managedInstanceId"] == ci["ec2InstanceId"]
        assert ssm.describe_activations()["ActivationList"][0]["RegistrationsCount"] == 1

        ecs.register_task_definition(family="edge", requiresCompatibilities=["EXTERNAL"], networkMode="host",
                                     containerDefinitions=[{"name": "main", "image": BUSYBOX, "memory": 32, "command": ["sleep", "1000"]}])
        r = ecs.run_task(cluster="anywhere", taskDefinition="edge", launchType="EXTERNAL")
        assert r["failures"] == [] and r["tasks"][0]["launchType"] == "EXTERNAL", r
        assert r["tasks"][0]["containerInstanceArn"] == ci["containerInstanceArn"]
        task = r["tasks"][0]["taskArn"]
        ecs.get_waiter("tasks_running").wait(cluster="anywhere", tasks=[task], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        # EC2 tasks never go to an external instance.
        r = ecs.run_task(cluster="anywhere", taskDefinition="edge", launchType="EC2")
        assert r["tasks"] == [] and len(r["failures"]) == 1, r

        # The node's key acts only for the agent.
        node_ecs = client("ecs", anywhere_server, node["accessKeyId"], node["secretAccessKey"])
        with pytest.raises(botocore.exceptions.ClientError) as e:
            node_ecs.list_clusters()
        assert e.value.response["Error"]["Code"] == "AccessDeniedException"

        ecs.deregister_container_instance(cluster="anywhere", containerInstance=ci["containerInstanceArn"], force=True)
        wait_for(lambda: agent.poll() is not None, "the agent to exit once refused", deadline=40)
        assert agent.returncode != 0
        last = log.read_text().strip().splitlines()[-1]
        assert "refused the credentials of external node" in last and ci["ec2InstanceId"] in last, last
        with pytest.raises(botocore.exceptions.ClientError) as e:
            node_ecs.submit_task_state_change(cluster="anywhere", task=task, status="STOPPED")
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    finally:
        if agent.poll() is None:
            agent.terminate()
            agent.wait(timeout=10)
        # The task's container outlives its agent (tasks keep running); stop it here.
        if "task" in locals():
            cid = f"{task.rsplit('/', 1)[-1]}-0"
            subprocess.run(["ctr", "--address", containerd, "-n", "flotilla", "tasks", "kill", "-s", "SIGKILL", cid], capture_output=True)
