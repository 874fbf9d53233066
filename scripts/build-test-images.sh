#!/usr/bin/env bash
# Build flotilla's test images from busybox-static (no Docker Hub needed) and
# push them to a local registry (docker-registry) on 127.0.0.1:5000.
#
# Images (all linux/amd64, single-manifest OCI images, one layer):
#   127.0.0.1:5000/busybox:latest        busybox-static + applet symlinks in /bin (sh, sleep,
#                                        httpd, dd, ...); Cmd ["sh"]; PATH set.
#   127.0.0.1:5000/httpd:latest          same rootfs + /www/index.html ("flotilla httpd ok");
#                                        Entrypoint ["httpd","-f","-v","-p","8080","-h","/www"]
#   127.0.0.1:5000/bad-entrypoint:latest busybox rootfs; Entrypoint ["/no/such/entrypoint"]
#   127.0.0.1:5000/memhog:latest         busybox rootfs; Entrypoint ["dd","if=/dev/zero",
#                                        "of=/dev/null","bs=256M","count=1"] (allocates and
#                                        touches 256 MiB: OOM-killed under a small limit)
#   127.0.0.1:5000/multi:latest          an OCI image index (multi-platform): a linux/arm64
#                                        entry first (the memhog manifest stands in for it),
#                                        then linux/amd64 = the busybox manifest
#                                        (also tagged multi:amd64 / multi:arm64)
#   127.0.0.1:5001/private/busybox:latest the busybox image again, on a second registry that
#                                        requires basic auth user "flotilla" / password "s3cret"
#
# Usage: scripts/build-test-images.sh [WORK_DIR]   (default $FLOTILLA_IMAGES_DIR or
#        /tmp/flotilla-test-images). Idempotent: registries already answering are reused and
#        images already present in the registry are not rebuilt. Set FORCE=1 to rebuild.
# Needs (Debian 12): docker-registry umoci skopeo busybox-static python3 (for the bcrypt
# htpasswd line) curl. Run as root (umoci unpack keeps ownership).
set -euo pipefail

WORK="${1:-${FLOTILLA_IMAGES_DIR:-/tmp/flotilla-test-images}}"
REG=127.0.0.1:5000
PREG=127.0.0.1:5001
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock 9   # concurrent test processes call this script; build once

for bin in docker-registry umoci skopeo busybox curl python3; do
    command -v "$bin" >/dev/null || { echo "missing $bin (apt-get install -y docker-registry umoci skopeo busybox-static curl python3)" >&2; exit 1; }
done

start_registry() { # name addr [htpasswd]
    local name=$1 addr=$2 htpasswd=${3:-}
    local dir="$WORK/registry-$name"
    if curl -s -o /dev/null "http://$addr/v2/"; then return 0; fi
    mkdir -p "$dir/storage"
    {
        echo "version: 0.1"
        echo "log: {level: warn}"
        echo "storage:"
        echo "  filesystem: {rootdirectory: $dir/storage}"
        echo "  delete: {enabled: true}"
        echo "http: {addr: $addr}"
        if [[ -n "$htpasswd" ]]; then
            echo "auth:"
            echo "  htpasswd: {realm: flotilla-test, path: $htpasswd}"
        fi
    } > "$dir/config.yml"
    setsid docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$dir/registry.pid"
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://$addr/v2/"; then return 0; fi
        sleep 0.1
    done
    echo "registry $name did not start on $addr; see $dir/registry.log" >&2
    exit 1
}

if [[ ! -f "$WORK/htpasswd" ]]; then
    python3 -W ignore -c 'import crypt; print("flotilla:" + crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH)))' > "$WORK/htpasswd"
fi
start_registry public "$REG"
start_registry private "$PREG" "$WORK/htpasswd"

present() { # HOST/v2/REPO [user:password]
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' ${2:+-u "$2"} \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' "http://$1/manifests/latest")
    [[ "$code" == 200 ]]
}
repo_url() { local host=${1%%/*} path=${1#*/}; echo "$host/v2/$path"; }

ALL=(busybox httpd bad-entrypoint memhog multi)
if [[ -z "${FORCE:-}" ]] && present "$(repo_url "$PREG/private/busybox")" flotilla:s3cret; then
    missing=0
    for img in "${ALL[@]}"; do present "$(repo_url "$REG/$img")" || missing=1; done
    if [[ $missing == 0 ]]; then echo "test images present in $REG and $PREG"; exit 0; fi
fi

LAYOUT="$WORK/oci"
rm -rf "$LAYOUT" "$WORK/bundle"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:base"
umoci unpack --image "$LAYOUT:base" "$WORK/bundle"
ROOT="$WORK/bundle/rootfs"
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/www" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
chmod 1777 "$ROOT/tmp"
cp "$(command -v busybox)" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$ROOT/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOT/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"
echo 'flotilla httpd ok' > "$ROOT/www/index.html"
umoci repack --image "$LAYOUT:base" "$WORK/bundle"
umoci config --image "$LAYOUT:base" --tag busybox \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.cmd sh --config.workingdir / \
    --architecture amd64 --os linux
umoci config --image "$LAYOUT:busybox" --tag httpd \
    --config.entrypoint httpd --config.entrypoint -f --config.entrypoint -v \
    --config.entrypoint -p --config.entrypoint 8080 --config.entrypoint -h --config.entrypoint /www \
    --clear config.cmd --config.exposedports 8080/tcp
umoci config --image "$LAYOUT:busybox" --tag bad-entrypoint \
    --config.entrypoint /no/such/entrypoint --clear config.cmd
umoci config --image "$LAYOUT:busybox" --tag memhog \
    --config.entrypoint dd --config.entrypoint if=/dev/zero --config.entrypoint of=/dev/null \
    --config.entrypoint bs=256M --config.entrypoint count=1 --clear config.cmd

for img in busybox httpd bad-entrypoint memhog; do
    skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:$img" "docker://$REG/$img:latest"
done

# multi:latest — an index. Push the amd64 manifest (and the memhog one, standing in for
# arm64) under their own tags first: the registry only accepts an index whose manifests
# exist in the repository.
skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:busybox" "docker://$REG/multi:amd64"
skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:memhog" "docker://$REG/multi:arm64"
desc() { # tag arch -> descriptor JSON (digest and size as the registry stores them)
    local headers digest size
    headers=$(curl -sfI -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/multi/manifests/$1" | tr -d '\r')
    digest=$(echo "$headers" | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
    size=$(echo "$headers" | awk -F': ' 'tolower($1)=="content-length"{print $2}')
    printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"%s","os":"linux"}}' \
        "$digest" "$size" "$2"
}
index=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s,%s]}' \
    "$(desc arm64 arm64)" "$(desc amd64 amd64)")
curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
    --data-binary "$index" "http://$REG/v2/multi/manifests/latest" >/dev/null
skopeo copy --quiet --dest-tls-verify=false --dest-creds flotilla:s3cret \
    "oci:$LAYOUT:busybox" "docker://$PREG/private/busybox:latest"
echo "test images pushed to $REG (${ALL[*]}) and $PREG (private/busybox)"
