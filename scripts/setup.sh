#!/usr/bin/env bash
# Installs everything flotilla needs on a fresh Debian 12 machine (idempotent):
# Debian packages (containerd, runc, protoc, a local OCI registry, image tools, dig),
# and the Python packages the end-to-end tests use. Run as root.
#
# Usage: scripts/setup.sh            (quiet when everything is already there)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    containerd runc tini       # the container runtime the agent drives (tini: optional init)
    protobuf-compiler          # protoc, for containerd-client's build script
    libprotobuf-dev            # google/protobuf/*.proto, which etcd-client's protos import
    docker-registry            # local OCI registry for demo and test images
    umoci skopeo busybox-static  # build images locally (no Docker Hub here)
    dnsutils                   # dig, for service-discovery tests
    haproxy nsd dnsperf        # the baselines `flotilla bench lb` / `bench dns` compare against
    iproute2 iptables nftables # network namespaces, veth pairs, task port DNAT, dev-cluster NAT
    zlib1g-dev                 # fast image compression in the host layer
    etcd-server                # /usr/bin/etcd: the store tests' etcd backend (`--store etcd://`)
    curl ca-certificates
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nsd package starts a system DNS server on :53; the DNS bench runs its own.
if systemctl is-active --quiet nsd 2>/dev/null; then
    systemctl stop nsd || true
    systemctl disable nsd >/dev/null 2>&1 || true
fi
# Debian's docker-registry package starts a system registry on :5000; flotilla runs its
# own (scripts/build-test-images.sh), so the packaged one must not hold the port.
if systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl stop docker-registry || true
    systemctl disable docker-registry >/dev/null 2>&1 || true
fi
# Debian's etcd-server package starts a system etcd on :2379; the store tests start their
# own on free ports, and `flotilla server --store etcd://…` names the cluster it uses.
if systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
    systemctl disable etcd >/dev/null 2>&1 || true
fi

if [[ -f tests/requirements.txt ]]; then
    python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt
fi
for req in tests/*/requirements.txt; do
    [[ -f "$req" ]] && python3 -m pip install -q --disable-pip-version-check -r "$req"
done
command -v protoc >/dev/null && command -v containerd >/dev/null && command -v aws >/dev/null || {
    command -v aws >/dev/null || python3 -m pip install -q --disable-pip-version-check awscli
}
echo "setup: ok"
