#!/usr/bin/env bash
# CRI path start latency, spore vs runc (see bench/cri.ts for method and env: RUNS WARMUP ONLY).
# Builds the TypeScript (tsc) and runs dist/bench/cri.js as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "[cri-bench] run as root" >&2; exit 1; }
npm run -s build || echo "[cri-bench] tsc reported errors (above); running the emitted JS" >&2
exec node dist/bench/cri.js "$@"
