#!/usr/bin/env bash
# A first session with flotilla and the stock AWS CLI: create a cluster, register a
# task definition and a (hand-made) container instance, run a task, look at it, stop
# it, list, and page through a listing.
#
# Usage: tests/e2e/cli_session.sh [ENDPOINT]   (default: $ECS_ENDPOINT, http://127.0.0.1:8080)
set -euo pipefail
ENDPOINT="${1:-${ECS_ENDPOINT:-http://127.0.0.1:8080}}"
HERE="$(cd "$(dirname "$0")" && pwd)"
# Any key works unless the server was started with --credentials; the region is yours.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-flotilla}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-flotilla}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

ecs() { aws ecs --endpoint-url "$ENDPOINT" --output json "$@"; }
step() { printf '### %s\n' "$*"; }

step create-cluster
ecs create-cluster --cluster-name demo

step register-task-definition
ecs register-task-definition --cli-input-json "file://$HERE/data/taskdef.json"

step register-container-instance
ecs register-container-instance --cluster demo \
    --instance-identity-document '{"instanceId": "i-0123456789abcdef0", "availabilityZone": "us-east-1a", "instanceType": "t3.large"}' \
    --total-resources '[{"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]'

step run-task
TASK=$(ecs run-task --cluster demo --task-definition web --started-by first-session --query 'tasks[0].taskArn' --output text)
echo "\"$TASK\""

step describe-tasks   # PENDING: no agent has picked it up yet
ecs describe-tasks --cluster demo --tasks "$TASK"

step list-tasks
ecs list-tasks --cluster demo --family web

step stop-task
ecs stop-task --cluster demo --task "$TASK" --reason "first session over"

step describe-tasks-after-stop
ecs describe-tasks --cluster demo --tasks "$TASK"

step list-tasks-stopped
ecs list-tasks --cluster demo --desired-status STOPPED

step create-more-clusters
for i in 1 2 3 4 5 6; do ecs create-cluster --cluster-name "extra-$i" --query 'cluster.clusterName'; done

step list-clusters-page-size   # the CLI fetches every page, 2 clusters per request
ecs list-clusters --page-size 2

step list-clusters-max-items   # 3 clusters at a time; NextToken continues the listing
token=""
while :; do
    page=$(ecs list-clusters --max-items 3 --page-size 2 ${token:+--starting-token "$token"})
    echo "$page"
    token=$(python3 -c 'import json, sys; print(json.load(sys.stdin).get("NextToken", ""))' <<<"$page")
    [[ -n "$token" ]] || break
done
