"""Concurrent writers never overcommit or duplicate; state and page tokens survive a restart."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from e2e_support import make_client, register_instance, register_taskdef, start_server


def test_concurrent_run_tasks_never_overcommit_an_instance(ecs, client_factory):
    ecs.create_cluster(clusterName="c1")
    ci = register_instance(ecs, "c1", "i-00000000000000001", cpu=4096, memory=4096)
    register_taskdef(ecs, "big", memory=1000, cpu=10)
    clients = [client_factory() for _ in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda c: c.run_task(cluster="c1", taskDefinition="big"), clients))
    placed = [t for r in results for t in r["tasks"]]
    failed = [f for r in results for f in r["failures"]]
    assert len(placed) == 4, "4096 MiB holds exactly four 1000 MiB tasks"
    assert len(failed) == 8 and {f["reason"] for f in failed} == {"RESOURCE:MEMORY"}
    [desc] = ecs.describe_container_instances(cluster="c1", containerInstances=[ci["containerInstanceArn"]])["containerInstances"]
    remaining = {r["name"]: r.get("integerValue") for r in desc["remainingResources"]}
    assert remaining["MEMORY"] == 96
    assert desc["pendingTasksCount"] == 4


def test_concurrent_idempotent_writes(ecs, client_factory):
    clients = [client_factory() for _ in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        arns = set(pool.map(lambda c: c.create_cluster(clusterName="same")["cluster"]["clusterArn"], clients))
    assert len(arns) == 1
    assert ecs.list_clusters()["clusterArns"] == list(arns)
    register_instance(ecs, "same", "i-00000000000000001")
    register_taskdef(ecs, "web")
    with ThreadPoolExecutor(max_workers=10) as pool:
        runs = list(pool.map(lambda c: c.run_task(cluster="same", taskDefinition="web", clientToken="once"), clients))
    assert len({r["tasks"][0]["taskArn"] for r in runs}) == 1
    assert len(ecs.list_tasks(cluster="same")["taskArns"]) == 1
    # Revisions of one family registered concurrently are numbered without gaps or repeats.
    with ThreadPoolExecutor(max_workers=10) as pool:
        revs = sorted(pool.map(lambda c: register_taskdef(c, "race")["revision"], clients))
    assert revs == list(range(1, 11))


def test_state_and_page_tokens_survive_a_restart(server_tmp, validator):
    first = start_server(server_tmp, name="restart")
    try:
        ecs = make_client(first.endpoint, validator)
        for i in range(5):
            ecs.create_cluster(clusterName=f"keep{i}")
        page = ecs.list_clusters(maxResults=2)
        token = page["nextToken"]
    finally:
        first.stop()
    assert first.proc.returncode == 0, f"SIGTERM should stop the server cleanly; its output:\n{first.log_text()}"
    second = start_server(server_tmp, name="restart", data_dir=first.data_dir)
    try:
        ecs = make_client(second.endpoint, validator)
        rest = ecs.list_clusters(nextToken=token)["clusterArns"]
        assert page["clusterArns"] + rest == [f"arn:aws:ecs:us-east-1:000000000000:cluster/keep{i}" for i in range(5)]
    finally:
        second.stop()
