#!/usr/bin/env bash
# The main job: sets up this machine and runs flotilla on it.
#
#   scripts/up.sh            build, install what is missing, start everything, print usage
#   scripts/up.sh --stop     stop what it started
#
# It installs the Debian packages flotilla needs (scripts/setup.sh), builds the release
# binary, starts a private containerd and a local OCI registry holding demo images
# (no internet needed), then the control plane on its embedded store, and leaves them
# running in the background. State and logs live under $FLOTILLA_HOME (default
# /var/lib/flotilla-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HOME_DIR=${FLOTILLA_HOME:-/var/lib/flotilla-dev}
PORT=${FLOTILLA_PORT:-8080}
ENDPOINT=http://127.0.0.1:$PORT
mkdir -p "$HOME_DIR"

stop() {
    for svc in agent server; do
        if [[ -f "$HOME_DIR/$svc.pid" ]] && kill -0 "$(cat "$HOME_DIR/$svc.pid")" 2>/dev/null; then
            kill "$(cat "$HOME_DIR/$svc.pid")" && echo "stopped $svc"
        fi
        rm -f "$HOME_DIR/$svc.pid"
    done
}
if [[ "${1:-}" == "--stop" ]]; then stop; exit 0; fi

echo "==> installing what is missing"
scripts/setup.sh

echo "==> building flotilla (release)"
cargo build --release --locked -p flotilla -p runtime --bins
BIN=$ROOT/target/release/flotilla

echo "==> starting containerd (private instance) and the local registry with demo images"
SOCK=$(scripts/start-containerd.sh "$HOME_DIR/containerd" | tail -1)
scripts/build-test-images.sh "$HOME_DIR/images" >/dev/null

echo "==> starting the control plane on $ENDPOINT"
stop >/dev/null
nohup "$BIN" server --listen "127.0.0.1:$PORT" --data-dir "$HOME_DIR/server" --allow-reset \
    >"$HOME_DIR/server.log" 2>&1 &
echo $! >"$HOME_DIR/server.pid"
for _ in $(seq 100); do
    curl -fs "$ENDPOINT/healthz" >/dev/null && break
    sleep 0.1
done
curl -fs "$ENDPOINT/healthz" >/dev/null || { echo "server did not start; see $HOME_DIR/server.log" >&2; exit 1; }

echo "==> starting a local agent (cluster default)"
AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev aws ecs create-cluster --cluster-name default \
    --endpoint-url "$ENDPOINT" --region us-east-1 >/dev/null
nohup "$BIN" agent --endpoint "$ENDPOINT" --cluster default --data-dir "$HOME_DIR/agent" \
    --containerd-socket "$SOCK" >"$HOME_DIR/agent.log" 2>&1 &
echo $! >"$HOME_DIR/agent.pid"
for _ in $(seq 100); do
    AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev aws ecs list-container-instances --cluster default \
        --endpoint-url "$ENDPOINT" --region us-east-1 --query 'length(containerInstanceArns)' 2>/dev/null | grep -q 1 && break
    sleep 0.2
done

cat <<USAGE

flotilla is running.
  ECS API      $ENDPOINT   (embedded store in $HOME_DIR/server, log $HOME_DIR/server.log)
  containerd   $SOCK
  agent        cluster "default" on this machine (log $HOME_DIR/agent.log)
  registry     127.0.0.1:5000  (demo images: busybox, httpd)

Use it with the AWS CLI (any credentials; the region comes from your AWS config):
  export AWS_ACCESS_KEY_ID=dev AWS_SECRET_ACCESS_KEY=dev AWS_DEFAULT_REGION=us-east-1
  aws ecs create-cluster --cluster-name demo --endpoint-url $ENDPOINT
  aws ecs list-clusters --endpoint-url $ENDPOINT
or set AWS_ENDPOINT_URL_ECS=$ENDPOINT once and drop --endpoint-url.
Run a real container on this node:
  aws ecs register-task-definition --family hello --endpoint-url $ENDPOINT \\
      --container-definitions '[{"name":"hello","image":"127.0.0.1:5000/busybox:latest","memory":32,"command":["sh","-c","echo hello from flotilla; sleep 5"]}]'
  aws ecs run-task --task-definition hello --endpoint-url $ENDPOINT
  aws ecs list-tasks --endpoint-url $ENDPOINT
A whole first session: tests/e2e/cli_session.sh $ENDPOINT

Stop it with: scripts/up.sh --stop
USAGE
