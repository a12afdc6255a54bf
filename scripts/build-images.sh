#!/usr/bin/env bash
# Build OCI image tarballs LOCALLY (no registry here) from Debian binaries, for `ctr image import`:
#   $SPORE_IMAGES_DIR/busybox.tar  docker.io/spore/busybox:latest  busybox-static, every applet
#                                  (sh, nc, httpd, wget, ...); Cmd ["/bin/sh"]
#   $SPORE_IMAGES_DIR/pause.tar    docker.io/spore/pause:latest    busybox-static only;
#                                  Entrypoint ["/bin/sleep","infinity"] (the pod sandbox process)
#   $SPORE_IMAGES_DIR/node.tar     docker.io/spore/node:latest     node + its libraries (build-rootfs.sh node)
#   $SPORE_IMAGES_DIR/python.tar   docker.io/spore/python:latest   python3.11 + stdlib (build-rootfs.sh python)
# Each tarball is an OCI image layout (oci-layout, index.json, blobs/sha256/...) with one
# gzip layer; index.json names the image with `io.containerd.image.name` (full reference, what
# ctr import uses) and `org.opencontainers.image.ref.name`. Layers are reproducible (sorted,
# mtime 0, uid/gid 0, gzip -n). Rebuilt only when the source changed (stamp) or FORCE=1.
# Usage: scripts/build-images.sh [busybox|pause|node|python ...]   (default: busybox pause)
#        then: ctr -n k8s.io images import $SPORE_IMAGES_DIR/busybox.tar
# env: SPORE_IMAGES_DIR (default /var/lib/spore/images), SPORE_ROOTFS_DIR (see build-rootfs.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
IMAGES_DIR=${SPORE_IMAGES_DIR:-/var/lib/spore/images}
ROOTFS_DIR=${SPORE_ROOTFS_DIR:-/var/lib/spore/rootfs}
BUSYBOX_BIN=${BUSYBOX_BIN:-/bin/busybox}
RECIPE=1   # bump when the recipe below changes
log() { echo "[build-images] $*" >&2; }
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac

[ $# -gt 0 ] && NAMES=("$@") || NAMES=(busybox pause)
mkdir -p "$IMAGES_DIR"
exec 9>"$IMAGES_DIR/.lock"
flock 9

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

skeleton() {
  local root=$1
  mkdir -p "$root"/{proc,sys,dev,tmp,run,etc,root,bin}
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  : >"$root/etc/hostname"; : >"$root/etc/hosts"; : >"$root/etc/resolv.conf"
}

stage_busybox() { # dir: busybox with all applets as symlinks in /bin
  local R=$1 a
  skeleton "$R"
  cp "$BUSYBOX_BIN" "$R/bin/busybox"
  for a in $("$BUSYBOX_BIN" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
}
stage_pause() {
  local R=$1
  skeleton "$R"
  cp "$BUSYBOX_BIN" "$R/bin/busybox"
  ln -sf busybox "$R/bin/sleep"
}
stage_rootfs() { # dir name: copy of a build-rootfs.sh rootfs
  "$HERE/build-rootfs.sh" "$2" >&2
  cp -a "$ROOTFS_DIR/$2/." "$1/"
  rm -f "$1/.spore-stamp"
}

# name -> image config "config" object
config_of() {
  local env='"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"'
  case $1 in
    busybox) echo "{\"Env\":[$env],\"Cmd\":[\"/bin/sh\"],\"WorkingDir\":\"/\"}" ;;
    pause)   echo "{\"Env\":[$env],\"Entrypoint\":[\"/bin/sleep\",\"infinity\"],\"WorkingDir\":\"/\"}" ;;
    node)    echo "{\"Env\":[$env],\"Cmd\":[\"/usr/bin/node\"],\"WorkingDir\":\"/\"}" ;;
    python)  echo "{\"Env\":[$env],\"Cmd\":[\"/usr/bin/python3\"],\"WorkingDir\":\"/\"}" ;;
  esac
}
source_of() {
  case $1 in
    busybox|pause) echo "$BUSYBOX_BIN" ;;
    node) readlink -f /usr/bin/node ;;
    python) readlink -f /usr/bin/python3.11 ;;
  esac
}

build() { # name
  local name=$1 ref="docker.io/spore/$1:latest" out="$IMAGES_DIR/$1.tar" st W
  st=$({ echo "recipe=$RECIPE arch=$ARCH"; stat -L -c '%s %Y %n' "$(source_of "$name")" "$0"; } | md5sum | cut -d' ' -f1)
  if [ "${FORCE:-0}" != 1 ] && [ -f "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$st" ]; then
    log "$name up to date: $out"; return 0
  fi
  W=$(mktemp -d "$IMAGES_DIR/.build-$name-XXXXXX")
  trap 'rm -rf "$W"' RETURN
  mkdir -p "$W/root" "$W/oci/blobs/sha256"
  case $name in
    busybox) stage_busybox "$W/root" ;;
    pause) stage_pause "$W/root" ;;
    node|python) stage_rootfs "$W/root" "$name" ;;
    *) log "unknown image: $name"; return 2 ;;
  esac
  tar -C "$W/root" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$W/layer.tar" .
  local diff_id; diff_id=$(sha "$W/layer.tar")
  gzip -n -1 "$W/layer.tar"
  local layer; layer=$(sha "$W/layer.tar.gz")
  mv "$W/layer.tar.gz" "$W/oci/blobs/sha256/$layer"
  printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"spore scripts/build-images.sh %s"}]}' \
    "$ARCH" "$(config_of "$name")" "$diff_id" "$name" >"$W/config.json"
  local cfg; cfg=$(sha "$W/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cfg" "$(size "$W/config.json")" "$layer" "$(size "$W/oci/blobs/sha256/$layer")" >"$W/manifest.json"
  local man; man=$(sha "$W/manifest.json")
  mv "$W/config.json" "$W/oci/blobs/sha256/$cfg"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}]}' \
    "$man" "$(size "$W/manifest.json")" "$ARCH" "$ref" >"$W/oci/index.json"
  mv "$W/manifest.json" "$W/oci/blobs/sha256/$man"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$W/oci/oci-layout"
  tar -C "$W/oci" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
  echo "$st" >"$out.stamp"
  log "$name: $out ($ref, $(du -h "$out" | cut -f1))"
}

for n in "${NAMES[@]}"; do build "$n"; done
