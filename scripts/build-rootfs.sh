#!/usr/bin/env bash
# Build minimal root filesystems (plain directories) used by integration tests and benches:
#   $SPORE_ROOTFS_DIR/busybox  busybox-static + applet symlinks
#   $SPORE_ROOTFS_DIR/node     the host's node binary (symlinks resolved) + its ldd libraries
#   $SPORE_ROOTFS_DIR/python   /usr/bin/python3.11 + libraries + stdlib (no test/tk/idle/...)
# node and python also get the CA bundle (etc/ssl/certs/ca-certificates.crt): they are the
# language runtimes function sandboxes are made of (functions/sandbox.ts).
# SPORE_ROOTFS_DIR defaults to /var/lib/spore/rootfs. A rootfs is rebuilt only when its stamp
# (source binary size/mtime + this script's recipe version) changed; FORCE=1 rebuilds all.
# Arguments select rootfs names (default: busybox node python). Each rootfs is checked with
# chroot. Concurrent callers are serialized with flock. Builds into <name>.tmp, then renames.
set -euo pipefail
ROOTFS_DIR=${SPORE_ROOTFS_DIR:-/var/lib/spore/rootfs}
BUSYBOX_BIN=${BUSYBOX_BIN:-/bin/busybox}
NODE_BIN=$(readlink -f "${NODE_BIN:-/usr/bin/node}")
PYTHON_BIN=$(readlink -f "${PYTHON_BIN:-/usr/bin/python3.11}")
RECIPE=3   # bump when the recipe below changes
APPLETS="sh true false echo cat ls env sleep id mkdir rm mount umount grep head tail wc hostname ps kill yes dd printf test [ cp mv ln touch stat uname pwd readlink seq tr cut"
log() { echo "[build-rootfs] $*" >&2; }

[ $# -gt 0 ] && NAMES=("$@") || NAMES=(busybox node python)
mkdir -p "$ROOTFS_DIR"
exec 9>"$ROOTFS_DIR/.lock"
flock 9

put() { # root src [dst]: copy a file to the same absolute path inside root, dereferencing symlinks
  local root=$1 src=$2 dst=${3:-$2}
  mkdir -p "$root$(dirname "$dst")"
  cp -L --preserve=mode "$src" "$root$dst"
}
put_libs() { # root files...: copy the ELF dependencies ldd reports
  local root=$1 lib; shift
  for f in "$@"; do
    ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^[ \t]*\/[^ ]+ \(/{print $1}'
  done | sort -u | while read -r lib; do
    [ -e "$root$lib" ] || put "$root" "$lib"
  done
}
skeleton() {
  local root=$1
  mkdir -p "$root"/{proc,sys,dev,tmp,run,etc,root}
  chmod 1777 "$root/tmp"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >>"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  echo 'nogroup:x:65534:' >>"$root/etc/group"
  : >"$root/etc/hostname"; : >"$root/etc/hosts"; : >"$root/etc/resolv.conf"
}
put_certs() { # root: the system CA bundle, for TLS clients in function code
  local root=$1 bundle=/etc/ssl/certs/ca-certificates.crt
  [ -r "$bundle" ] || { log "no $bundle (install ca-certificates)"; return 1; }
  mkdir -p "$root/etc/ssl/certs"
  cp -L "$bundle" "$root/etc/ssl/certs/ca-certificates.crt"
}
stamp_of() { { echo "recipe=$RECIPE applets=$APPLETS"; stat -L -c '%s %Y %n' "$@"; } | md5sum | cut -d' ' -f1; }
up_to_date() { # dir stamp
  [ "${FORCE:-0}" != 1 ] && [ -f "$1/.spore-stamp" ] && [ "$(cat "$1/.spore-stamp")" = "$2" ]
}
check() { # root cmd...
  local root=$1; shift
  if env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$root" "$@" </dev/null >/dev/null; then
    log "ok: chroot $root $*"
  else
    log "FAILED: chroot $root $*"; return 1
  fi
}

build_busybox() { # tmpdir
  local R=$1 a
  skeleton "$R"; mkdir -p "$R/bin" "$R/usr/bin" "$R/sbin"
  cp "$BUSYBOX_BIN" "$R/bin/busybox"
  for a in $APPLETS; do ln -sf busybox "$R/bin/$a"; done
}
build_node() {
  local R=$1
  skeleton "$R"
  put "$R" "$NODE_BIN" /usr/bin/node
  put_libs "$R" "$NODE_BIN"
  put_certs "$R"
}
build_python() {
  local R=$1 ver stdlib
  ver=$("$PYTHON_BIN" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  stdlib=$("$PYTHON_BIN" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
  skeleton "$R"
  put "$R" "$PYTHON_BIN" "$PYTHON_BIN"
  ln -sf "$(basename "$PYTHON_BIN")" "$R$(dirname "$PYTHON_BIN")/python3"
  mkdir -p "$R$stdlib"
  tar -C "$stdlib" \
      --exclude="./config-$ver-*" --exclude=./test --exclude=./idlelib --exclude=./tkinter \
      --exclude=./turtledemo --exclude=./ensurepip --exclude=./lib2to3 --exclude=./pydoc_data \
      --exclude='./lib-dynload/_tkinter*' --exclude='./lib-dynload/_test*' --exclude='__pycache__' \
      -cf - . | tar -C "$R$stdlib" -xf -
  put_libs "$R" "$PYTHON_BIN" "$R$stdlib"/lib-dynload/*.so
  put_certs "$R"
}

for name in "${NAMES[@]}"; do
  case $name in
    busybox) src=$BUSYBOX_BIN; chk=(/bin/sh -c 'echo hi | grep -q hi && id -u >/dev/null') ;;
    node)    src=$NODE_BIN;    chk=(/usr/bin/node -e 'require("fs"); require("crypto")') ;;
    python)  src=$PYTHON_BIN;  chk=(/usr/bin/python3 -c 'import json, ssl, hashlib, sqlite3, ctypes, subprocess') ;;
    *) log "unknown rootfs: $name"; exit 2 ;;
  esac
  [ -x "$src" ] || { log "$name: source binary $src missing"; exit 1; }
  D=$ROOTFS_DIR/$name; st=$(stamp_of "$src")
  if up_to_date "$D" "$st"; then log "$name up to date: $D"; continue; fi
  log "building $D from $src"
  rm -rf "$D.tmp"; mkdir -p "$D.tmp"
  "build_$name" "$D.tmp"
  check "$D.tmp" "${chk[@]}"
  echo "$st" >"$D.tmp/.spore-stamp"
  rm -rf "$D"; mv "$D.tmp" "$D"
  log "$name: $(du -sh "$D" | cut -f1)"
done
