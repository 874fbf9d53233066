#!/usr/bin/env bash
# `flotilla bench api` on a 3-member etcd side by side with the embedded store
# (docs/performance.md, "Store on etcd"). Starts three etcd members and two servers on
# loopback — one on the etcd cluster, one on its own redb file — measures both with the
# same bench, and removes everything it started. Needs Debian's etcd-server
# (scripts/setup.sh) and a built flotilla (release: FLOTILLA=target/release/flotilla).
#
#   scripts/bench-etcd.sh [bench api options…]      e.g. --clients 1,32 --writes 3000
set -euo pipefail
cd "$(dirname "$0")/.."
FLOTILLA=${FLOTILLA:-target/release/flotilla}
ETCD=${FLOTILLA_ETCD:-/usr/bin/etcd}
[[ -x $FLOTILLA ]] || { echo "bench-etcd: $FLOTILLA is missing (cargo build --release -p flotilla)" >&2; exit 1; }
[[ -x $ETCD ]] || { echo "bench-etcd: $ETCD is missing (scripts/setup.sh installs etcd-server)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/flotilla-bench-etcd.XXXX)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cluster=""
for m in 1 2 3; do cluster+="${cluster:+,}b$m=http://127.0.0.1:$((23800 + 2 * m))"; done
for m in 1 2 3; do
    client=$((23799 + 2 * m)); peer=$((23800 + 2 * m))
    "$ETCD" --name "b$m" --data-dir "$WORK/etcd-$m" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --max-txn-ops 16384 --max-request-bytes 33554432 >"$WORK/etcd-$m.log" 2>&1 &
    PIDS+=($!)
done
"$FLOTILLA" server --listen 127.0.0.1:28081 --data-dir "$WORK/etcd-server" --allow-reset \
    --lb-listen off --store etcd://127.0.0.1:23801,127.0.0.1:23803,127.0.0.1:23805 >"$WORK/server-etcd.log" 2>&1 &
PIDS+=($!)
"$FLOTILLA" server --listen 127.0.0.1:28082 --data-dir "$WORK/redb-server" --allow-reset \
    --lb-listen off >"$WORK/server-redb.log" 2>&1 &
PIDS+=($!)
for port in 28081 28082; do
    for _ in $(seq 1 300); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "bench-etcd: server on $port did not start" >&2; tail "$WORK"/server-*.log >&2; exit 1; }
done
echo "== etcd (3 members on loopback): $("$FLOTILLA" --version 2>/dev/null || echo flotilla)"
"$FLOTILLA" bench api --endpoint http://127.0.0.1:28081 "$@"
echo "== embedded store (redb)"
"$FLOTILLA" bench api --endpoint http://127.0.0.1:28082 "$@"
