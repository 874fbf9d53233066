#!/usr/bin/env bash
# The README's Cloud Map and ELBv2 sessions with the stock AWS CLI, verbatim (the test
# checks that every `aws` command of those README blocks is here): a private DNS
# namespace with a service and three instances, one marked unhealthy, discovered; then a
# load balancer with a target group, a listener, a rule, targets and their health.
# Calls the README shows failing must fail with the error it names.
#
# Usage: tests/e2e/traffic_session.sh [ENDPOINT]   (default: $ECS_ENDPOINT, http://127.0.0.1:8080)
set -euo pipefail
ENDPOINT="${1:-${ECS_ENDPOINT:-http://127.0.0.1:8080}}"
step() { printf '### %s\n' "$*"; }
# Runs a call the session expects to fail with error code $1.
fails_with() {
    local code="$1"; shift
    if "$@" 2>err.txt; then echo "expected $code from: $*" >&2; exit 1; fi
    grep -q "$code" err.txt || { cat err.txt >&2; exit 1; }
    printf '{"Error": "%s"}\n' "$code"
}

export AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_DEFAULT_REGION=us-east-1
export AWS_DISABLE_HOST_PREFIX_INJECTION=true
E="--endpoint-url $ENDPOINT"

step cloud-map
OP=$(aws servicediscovery create-private-dns-namespace --name corp.local --vpc vpc-1 \
      --query OperationId --output text $E)
NS=$(aws servicediscovery get-operation --operation-id "$OP" \
      --query Operation.Targets.NAMESPACE --output text $E)
SRV=$(aws servicediscovery create-service --name web --namespace-id "$NS" \
      --dns-config 'RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=60},{Type=SRV,TTL=60}]' \
      --health-check-custom-config '{}' --query Service.Id --output text $E)
printf '{"namespace": "%s", "service": "%s"}\n' "$NS" "$SRV"
step register-instances
for i in 1 2 3; do
  aws servicediscovery register-instance --service-id "$SRV" --instance-id "task-$i" \
      --attributes "AWS_INSTANCE_IPV4=10.0.0.$i,AWS_INSTANCE_PORT=8080" $E
done
step mark-unhealthy
aws servicediscovery update-instance-custom-health-status --service-id "$SRV" \
    --instance-id task-2 --status UNHEALTHY $E
echo '{}'
step discover-instances
aws servicediscovery discover-instances --namespace-name corp.local --service-name web $E
step delete-service-in-use
fails_with ResourceInUse aws servicediscovery delete-service --id "$SRV" $E

export AWS_ENDPOINT_URL="$ENDPOINT"
step elbv2
LB=$(aws elbv2 create-load-balancer --name web --tags Key=team,Value=blue \
      --query 'LoadBalancers[0].LoadBalancerArn' --output text)
TG=$(aws elbv2 create-target-group --name api --protocol HTTP --port 8080 --vpc-id vpc-1 \
      --query 'TargetGroups[0].TargetGroupArn' --output text)
L=$(aws elbv2 create-listener --load-balancer-arn "$LB" --protocol HTTP --port 80 \
      --default-actions Type=forward,TargetGroupArn="$TG" --query 'Listeners[0].ListenerArn' --output text)
printf '{"lb": "%s", "tg": "%s", "listener": "%s"}\n' "$LB" "$TG" "$L"
step create-rule
aws elbv2 create-rule --listener-arn "$L" --priority 10 --conditions Field=path-pattern,Values='/api/*' \
    --actions 'Type=fixed-response,FixedResponseConfig={StatusCode=503,ContentType=text/plain,MessageBody=down}'
step register-targets
aws elbv2 register-targets --target-group-arn "$TG" --targets Id=i-0123456789abcdef0 Id=i-0123456789abcdef1,Port=9000
echo '{}'
step describe-target-health
aws elbv2 describe-target-health --target-group-arn "$TG"
step describe-rules
aws elbv2 describe-rules --listener-arn "$L"
step delete-target-group-in-use
fails_with ResourceInUse aws elbv2 delete-target-group --target-group-arn "$TG"
step delete-load-balancer
aws elbv2 delete-load-balancer --load-balancer-arn "$LB"
echo '{}'
step list-clusters
aws ecs list-clusters
