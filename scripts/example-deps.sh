#!/usr/bin/env bash
# Install the dependencies of the example *packages* (functions deployed as a directory that
# becomes /var/task in a sandbox with only node 20 or python3.11 + stdlib, no network).
# Idempotent and fast when done already:
#  - Debian packages python3-jinja2 python3-markupsafe: only if missing (one `apt-get update`)
#  - examples/py-template/vendor/{jinja2,markupsafe}: copied from Debian's dist-packages when
#    missing, or when the Debian versions changed / are newer than the copy (vendor/.stamp)
#  - examples/nunjucks/node_modules: `npm ci --omit=dev` when missing or older than
#    package-lock.json
# Works non-interactively (CI=true, no stdin) as root. Called by scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[example-deps] $*" >&2; }

# --- Debian packages (PyPI is not reachable from these machines; Debian's mirror is) -------
PKGS=(python3-jinja2 python3-markupsafe)
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
  log "apt packages present (${PKGS[*]})"
fi

# --- examples/py-template: vendored jinja2 + markupsafe -------------------------------------
# Pure Python plus markupsafe's optional C speedups (built for CPython 3.11, like the python
# rootfs). Copied with their __pycache__ (Debian compiles them for python3.11 at install) and
# mtimes preserved, so the .pyc files stay valid: /var/task is read-only in the sandbox.
DIST=/usr/lib/python3/dist-packages
VENDOR=examples/py-template/vendor
want="jinja2=$(dpkg-query -W -f='${Version}' python3-jinja2) markupsafe=$(dpkg-query -W -f='${Version}' python3-markupsafe)"
stale=
if [ ! -f "$VENDOR/.stamp" ] || [ "$(cat "$VENDOR/.stamp")" != "$want" ]; then
  stale=1
else
  for m in jinja2 markupsafe; do
    if [ ! -f "$VENDOR/$m/__init__.py" ] || [ "$DIST/$m/__init__.py" -nt "$VENDOR/.stamp" ]; then
      stale=1
    fi
  done
fi
if [ -n "$stale" ]; then
  log "vendoring into $VENDOR: $want"
  for m in jinja2 markupsafe; do
    [ -f "$DIST/$m/__init__.py" ] || { log "missing $DIST/$m after install"; exit 1; }
  done
  tmp="$VENDOR.tmp.$$"
  trap 'rm -rf "$tmp"' EXIT
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp -a "$DIST/jinja2" "$DIST/markupsafe" "$tmp/"
  echo "$want" >"$tmp/.stamp"
  rm -rf "$VENDOR"
  mv "$tmp" "$VENDOR"
  trap - EXIT
else
  log "$VENDOR up to date ($want)"
fi

# --- examples/nunjucks: node_modules from package-lock.json ---------------------------------
# node_modules/.package-lock.json is written by npm at the end of every install
NJ=examples/nunjucks
if [ ! -f "$NJ/node_modules/.package-lock.json" ] || [ "$NJ/package-lock.json" -nt "$NJ/node_modules/.package-lock.json" ]; then
  command -v npm >/dev/null || { log "npm is not installed (Node 20 expected on this machine kind)"; exit 1; }
  log "npm ci --omit=dev in $NJ"
  (cd "$NJ" && npm ci --omit=dev --no-audit --no-fund </dev/null >&2)
else
  log "$NJ/node_modules up to date"
fi
