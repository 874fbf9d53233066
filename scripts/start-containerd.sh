#!/usr/bin/env bash
# Start a private containerd (own root, state dir and socket) for flotilla's
# runtime integration tests and the multi-node dev cluster.
#
# Usage: scripts/start-containerd.sh [BASE_DIR]
#   BASE_DIR defaults to $FLOTILLA_CONTAINERD_DIR or /tmp/flotilla-containerd.
#   Layout:  BASE_DIR/config.toml  BASE_DIR/root  BASE_DIR/state
#            BASE_DIR/containerd.sock  BASE_DIR/containerd.log  BASE_DIR/containerd.pid
#
# Idempotent: if a containerd already answers on BASE_DIR/containerd.sock it
# does nothing. Prints the socket path on stdout as its last line.
# Needs (Debian 12): containerd runc (apt-get install -y containerd runc). Run as root.
# The system containerd at /run/containerd/containerd.sock is neither used nor touched.
set -euo pipefail

BASE="${1:-${FLOTILLA_CONTAINERD_DIR:-/tmp/flotilla-containerd}}"
SOCK="$BASE/containerd.sock"
mkdir -p "$BASE/root" "$BASE/state"

answers() { ctr --address "$SOCK" version >/dev/null 2>&1; }

if answers; then
    echo "$SOCK"
    exit 0
fi

for bin in containerd ctr runc containerd-shim-runc-v2; do
    command -v "$bin" >/dev/null || { echo "missing $bin: apt-get install -y containerd runc" >&2; exit 1; }
done

# A stale pid file whose process is gone, or a stale socket, must not block a restart.
if [[ -f "$BASE/containerd.pid" ]] && kill -0 "$(cat "$BASE/containerd.pid")" 2>/dev/null; then
    echo "containerd pid $(cat "$BASE/containerd.pid") is running but $SOCK does not answer yet" >&2
else
    rm -f "$SOCK" "$SOCK.ttrpc"
    cat > "$BASE/config.toml" <<CFG
version = 2
root = "$BASE/root"
state = "$BASE/state"
# CRI is Kubernetes' business, not ours; it also wants CNI config we do not have.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = "$BASE/debug.sock"
  level = "info"

[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
CFG
    # setsid: the daemon must outlive the shell (and the test process) that started it.
    setsid containerd --config "$BASE/config.toml" >>"$BASE/containerd.log" 2>&1 < /dev/null &
    echo $! > "$BASE/containerd.pid"
fi

for _ in $(seq 1 100); do
    if answers; then
        echo "$SOCK"
        exit 0
    fi
    sleep 0.1
done
echo "containerd did not answer on $SOCK within 10s; see $BASE/containerd.log" >&2
tail -20 "$BASE/containerd.log" >&2 || true
exit 1
