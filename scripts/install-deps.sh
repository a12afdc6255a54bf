#!/usr/bin/env bash
# Install what spore's build and tests need. Idempotent and fast when done already:
#  - Debian packages: only the missing ones (one `apt-get update`, then install)
#  - npm: `npm ci` only when node_modules is missing or older than package-lock.json
#    (`npm ci` runs the `prepare` script = tsc build)
# Works non-interactively (CI=true, no stdin) as root.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[install-deps] $*" >&2; }

# containerd + the runtimes we compare against, busybox for the rootfs, libseccomp for
# spore's seccomp (koffi), iproute2 for netns/veth pools, wrk for gateway benches,
# psmisc (fuser/killall for debugging), util-linux (unshare/nsenter/mount), procps (ps),
# python3.11 for the python rootfs and python seeds; gcc + libc6-dev build the red-team
# tests' static attackers.
PKGS=(containerd runc crun runsc busybox-static libseccomp2 iproute2 wrk psmisc
      util-linux procps python3.11 ca-certificates containernetworking-plugins gcc binutils libc6-dev)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing packages (${missing[*]}) and not root"; exit 1; }
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
else
  log "apt packages present"
fi
for b in containerd ctr containerd-shim-runc-v2 runc crun runsc unshare; do
  command -v "$b" >/dev/null || { log "missing binary after install: $b"; exit 1; }
done
command -v node >/dev/null || { log "node is not installed (Node 20 expected on this machine kind)"; exit 1; }

# npm: node_modules/.package-lock.json is written by npm at the end of every install
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund </dev/null >&2  # (stdout is the caller's: the demo's table)
else
  log "node_modules up to date"
fi
# The fuzzer's native addon (Jazzer.js/libFuzzer) when its prebuilt does not load here (glibc);
# only tests fuzz, so the demo skips it (SPORE_NO_FUZZER=1).
[ "${SPORE_NO_FUZZER:-}" = 1 ] || fuzz/jazzer/build-addon.sh
scripts/example-deps.sh  # example packages: examples/nunjucks (npm ci), examples/py-template (vendored jinja2)
