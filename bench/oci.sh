#!/usr/bin/env bash
# OCI path start latency, side by side in one run: wall-clock ms of one full
# `ctr run --rm` cycle (create container + task, start, run, exit, delete) per runtime.
#
# Workloads: true = /bin/true (busybox rootfs)   node = node -e 0 (node rootfs)
#            python = python3 -c pass (python rootfs; add with WORKLOADS='true node python')
# Runtimes:  spore  ctr run --runtime io.containerd.spore.v2 (bin/containerd-shim-spore-v2 + spored)
#            runc   io.containerd.runc.v2 + runc
#            crun   io.containerd.runc.v2 + crun (--runc-binary /usr/bin/crun)
#            runsc  io.containerd.runc.v2 + a runsc wrapper (--platform=ptrace --network=none)
# Method: per runtime/workload one verification run (must exit 0 within RUN_TIMEOUT, else the
# row is reported as FAILED with the reason), WARMUP warm-ups, then RUNS interleaved rounds
# (each round runs every row once). Timer: bash $EPOCHREALTIME around the client command, which
# is `timeout RUN_TIMEOUT ctr ...` for every row alike. Percentiles are nearest-rank.
# Also: "spore shim path" = per measured spore container, the sum of the `ms` of spored's
# Create and Start rpc log lines ({"msg":"rpc","method":...,"id":...,"ms":...}).
#
# It starts its own containerd (temp dir under /tmp, PATH=<repo>/bin first, private
# SPORE_RUN_DIR and SPORE_LOG), in a private mount namespace without /sys/fs/cgroup/unified
# when the host is hybrid with controllers on cgroup2 (crun 1.8.1 refuses that layout;
# HIDE_UNIFIED=0 disables, =1 forces). Everything it started is stopped on exit.
#
# Usage: bench/oci.sh          (as root; scripts/install-deps.sh + scripts/build-rootfs.sh first,
#                               the rootfs are built here if missing)
#   env: RUNS=20 WARMUP=3 ONLY='regex' SKIP='regex' (matched against "runtime/workload",
#        e.g. ONLY=crun, SKIP=runsc, ONLY='/node') WORKLOADS='true node' RUN_TIMEOUT=60
#        RESULTS_DIR=bench/results  KEEP=1 keeps the temp dir (logs) for inspection
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

needs_hide_unified() { # same rule as shared/bench-baselines/env.sh
  [ "${HIDE_UNIFIED:-auto}" = 0 ] && return 1
  [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] || return 1
  [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] || return 1
  [ "${HIDE_UNIFIED:-auto}" = 1 ] && return 0
  [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]
}

# ------------------------------------------------------------------ clean env + mount namespace
if [ -z "${OCI_BENCH_INNER:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "[oci-bench] run as root" >&2; exit 1; }
  pass=(OCI_BENCH_INNER=1 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
  for v in RUNS WARMUP ONLY SKIP WORKLOADS RUN_TIMEOUT RESULTS_DIR KEEP HIDE_UNIFIED SPORE_ROOTFS_DIR $(compgen -v SPORE_); do
    [ -n "${!v+x}" ] && pass+=("$v=${!v}")
  done
  if needs_hide_unified; then
    exec env -i "${pass[@]}" OCI_BENCH_HID_UNIFIED=1 unshare --mount --propagation slave \
      sh -c 'umount /sys/fs/cgroup/unified || exit 1; exec "$@"' sh bash "$0" "$@"
  else
    exec env -i "${pass[@]}" OCI_BENCH_HID_UNIFIED=0 bash "$0" "$@"
  fi
fi

RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
ONLY=${ONLY:-.}
SKIP=${SKIP:-}
WORKLOADS=${WORKLOADS:-true node}
RUN_TIMEOUT=${RUN_TIMEOUT:-60}
RESULTS_DIR=${RESULTS_DIR:-$HERE/results}
RUNTIMES="spore runc crun runsc"
ROOTFS_DIR=${SPORE_ROOTFS_DIR:-/var/lib/spore/rootfs}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
log() { echo "[oci-bench] $*" >&2; }

"$REPO/scripts/build-rootfs.sh" busybox node $([[ " $WORKLOADS " == *" python "* ]] && echo python) || exit 1

D=$(mktemp -d /tmp/spore-bench-XXXXXX)
SOCK=$D/containerd.sock
NS=sporebench
RUN_DIR=$D/spore-run
SPORE_LOG=$D/spored.log
ERRLOG=$D/errors.log
RAW=$D/raw.csv
CTRD_PID=
HAD_RUN_CONTAINERD=0; [ -d /run/containerd ] && HAD_RUN_CONTAINERD=1
mkdir -p "$D/root" "$D/state" "$D/fifo" "$D/roots" "$D/bin" "$D/opt" "$RUN_DIR" "$RESULTS_DIR"
: >"$ERRLOG"

ctr_() { ctr -a "$SOCK" -n "$NS" "$@"; }
shim_socket() { printf '/run/containerd/s/%s' "$(printf '%s' "$SOCK/$NS/$1" | sha256sum | cut -d' ' -f1)"; }

# pids of processes that belong to this bench: shims of our containerd, anything whose
# cmdline/cwd names our temp dir, anything with our SPORE_RUN_DIR in its environment
our_pids() {
  local d pid cmd cwd
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ] || [ "$pid" = "$CTRD_PID" ] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
    [ -n "$cmd" ] || continue
    cwd=$(readlink "$d/cwd" 2>/dev/null)
    case "$cmd $cwd" in *"$D"*) echo "$pid"; continue ;; esac
    tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qxF "SPORE_RUN_DIR=$RUN_DIR" && echo "$pid"
  done
}

cleanup() {
  trap - EXIT INT TERM
  local pids p t
  log "stopping everything this bench started"
  if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
    for t in $(timeout 10 ctr -a "$SOCK" -n "$NS" tasks ls -q 2>/dev/null); do
      timeout 10 ctr -a "$SOCK" -n "$NS" tasks kill -a -s KILL "$t" >/dev/null 2>&1
      timeout 10 ctr -a "$SOCK" -n "$NS" tasks rm -f "$t" >/dev/null 2>&1
    done
    for t in $(timeout 10 ctr -a "$SOCK" -n "$NS" containers ls -q 2>/dev/null); do
      timeout 10 ctr -a "$SOCK" -n "$NS" containers rm "$t" >/dev/null 2>&1
      rm -f "$(shim_socket "$t")"
    done
    kill -TERM -- "-$CTRD_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$CTRD_PID" 2>/dev/null
    wait "$CTRD_PID" 2>/dev/null
  fi
  if [ -f "$RUN_DIR/spored.pid" ]; then
    p=$(cat "$RUN_DIR/spored.pid")
    if [ -n "$p" ] && tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qxF "SPORE_RUN_DIR=$RUN_DIR"; then
      kill -TERM "$p" 2>/dev/null
      for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$p" 2>/dev/null
    fi
  fi
  pids=$(our_pids)
  if [ -n "$pids" ]; then
    log "killing leftover pids: $(echo $pids)"
    kill -TERM $pids 2>/dev/null; sleep 1
    pids=$(our_pids); [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  fi
  # mounts under the temp dir (none expected), then the temp dir
  awk -v d="$D" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  for p in /sys/fs/cgroup/*/"$NS"; do
    [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ]; then log "kept $D"; else rm -rf "$D"; fi
  if [ "$HAD_RUN_CONTAINERD" = 0 ]; then rmdir /run/containerd/s /run/containerd/fifo /run/containerd/runc /run/containerd 2>/dev/null; fi
  true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ containerd
cat >"$D/runsc-ptrace" <<'EOF'
#!/bin/sh
exec /usr/bin/runsc --platform=ptrace --network=none "$@"
EOF
chmod 755 "$D/runsc-ptrace"
cat >"$D/config.toml" <<EOF
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  level = "info"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$D/opt"
EOF
# own process group (setsid); PATH with <repo>/bin first so containerd finds the spore shim
setsid env PATH="$REPO/bin:$PATH" SPORE_RUN_DIR="$RUN_DIR" SPORE_LOG="$SPORE_LOG" \
  containerd --config "$D/config.toml" </dev/null >"$D/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 1 200); do ctr_ version >/dev/null 2>&1 && break; kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
ctr_ version >/dev/null 2>&1 || { log "containerd did not come up:"; tail -20 "$D/containerd.log" >&2; exit 1; }
log "containerd pid $CTRD_PID, dir $D, hidden unified: $OCI_BENCH_HID_UNIFIED"

# ------------------------------------------------------------------ runs
SEQ=0
build_cmd() { # runtime workload phase
  local rt=$1 w=$2 rootfs args
  SEQ=$((SEQ + 1))
  ID="$rt-$w-$3$SEQ"
  case $w in
    true)   rootfs=$ROOTFS_DIR/busybox; args=(/bin/true) ;;
    node)   rootfs=$ROOTFS_DIR/node;    args=(/usr/bin/node -e 0) ;;
    python) rootfs=$ROOTFS_DIR/python;  args=(/usr/bin/python3 -c pass) ;;
  esac
  local base=(timeout -k 5 "$RUN_TIMEOUT" ctr -a "$SOCK" -n "$NS" run --rm --rootfs --fifo-dir "$D/fifo")
  case $rt in
    spore) CMD=("${base[@]}" --runtime io.containerd.spore.v2 "$rootfs" "$ID" "${args[@]}") ;;
    runc)  CMD=("${base[@]}" --runc-root "$D/roots/runc" "$rootfs" "$ID" "${args[@]}") ;;
    crun)  CMD=("${base[@]}" --runc-root "$D/roots/crun" --runc-binary /usr/bin/crun "$rootfs" "$ID" "${args[@]}") ;;
    runsc) CMD=("${base[@]}" --runc-root "$D/roots/runsc" --runc-binary "$D/runsc-ptrace" "$rootfs" "$ID" "${args[@]}") ;;
  esac
}
timed() { # runtime workload phase -> T_US T_RC ID
  local t0 t1
  build_cmd "$@"
  printf -- '--- %s\n' "$ID" >>"$ERRLOG"
  t0=$EPOCHREALTIME
  "${CMD[@]}" </dev/null >/dev/null 2>>"$ERRLOG"
  T_RC=$?
  t1=$EPOCHREALTIME
  T_US=$(( ${t1/./} - ${t0/./} ))
}
cleanup_failed() { # id: remove what a failed cycle left (only that container)
  local id=$1 d pid cmd
  timeout 20 ctr -a "$SOCK" -n "$NS" tasks kill -a -s KILL "$id" >/dev/null 2>&1
  timeout 20 ctr -a "$SOCK" -n "$NS" tasks rm -f "$id" >/dev/null 2>&1
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}; [ "$pid" = $$ ] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
    case "$cmd" in *" $id "*|*" -id $id "*|*"/$id "*) kill -KILL "$pid" 2>/dev/null ;; esac
  done
  for _ in 1 2 3 4 5; do
    timeout 20 ctr -a "$SOCK" -n "$NS" tasks rm -f "$id" >/dev/null 2>&1
    timeout 20 ctr -a "$SOCK" -n "$NS" containers rm "$id" >/dev/null 2>&1
    ctr_ containers info "$id" >/dev/null 2>&1 || break
    sleep 0.5
  done
  rm -f "$(shim_socket "$id")"
}

declare -A STATUS
ACTIVE=()
for w in $WORKLOADS; do
  for rt in $RUNTIMES; do
    key="$rt/$w"
    [[ $key =~ $ONLY ]] || continue
    [ -n "$SKIP" ] && [[ $key =~ $SKIP ]] && continue
    timed "$rt" "$w" v
    if [ "$T_RC" = 0 ]; then
      STATUS[$key]=ok; ACTIVE+=("$key"); log "verify ok   $key ($((T_US / 1000)) ms)"
    else
      msg=$(awk -v id="$ID" '$0 == "--- " id {on=1; next} /^--- /{on=0} on' "$ERRLOG" | grep -v '^\s*$' | tail -n 3 | tr '\n' ' ' | tr -d '|' | cut -c1-240)
      [ "$T_RC" = 124 ] && msg="no exit within ${RUN_TIMEOUT}s. $msg"
      STATUS[$key]="FAILED (rc=$T_RC): ${msg:-no output}"
      log "verify FAIL $key: ${STATUS[$key]}"
      cleanup_failed "$ID"
    fi
  done
done

for key in "${ACTIVE[@]}"; do
  for _ in $(seq 1 "$WARMUP"); do
    timed "${key%/*}" "${key#*/}" w
    [ "$T_RC" = 0 ] || cleanup_failed "$ID"
  done
done
log "warm-up done ($WARMUP per row); measuring $RUNS rounds of ${#ACTIVE[@]} rows"

echo "runtime,workload,round,ms,rc,id" >"$RAW"
for r in $(seq 1 "$RUNS"); do
  for key in "${ACTIVE[@]}"; do
    timed "${key%/*}" "${key#*/}" m
    printf '%s,%s,%d,%d.%03d,%d,%s\n' "${key%/*}" "${key#*/}" "$r" $((T_US / 1000)) $((T_US % 1000)) "$T_RC" "$ID" >>"$RAW"
    [ "$T_RC" = 0 ] || cleanup_failed "$ID"
  done
  [ $((r % 5)) = 0 ] && log "round $r/$RUNS"
done

# ------------------------------------------------------------------ stats + table
pct() { # stdin: numbers -> "n min p50 p90 max" (nearest rank)
  sort -g | awk '{v[n++]=$1+0} END {
    if (n==0) { print "0 - - - -"; exit }
    i50=int((50*n+99)/100); i90=int((90*n+99)/100)
    printf "%d %.1f %.1f %.1f %.1f\n", n, v[0], v[i50-1], v[i90-1], v[n-1] }'
}
stats() { awk -F, -v rt="$1" -v w="$2" 'NR>1 && $1==rt && $2==w && $5==0 {print $4}' "$RAW" | pct; }
fails() { awk -F, -v rt="$1" -v w="$2" 'NR>1 && $1==rt && $2==w && $5!=0 {f++} END {print f+0}' "$RAW"; }

# spored rpc lines -> per measured spore container: Create ms + Start ms
shim_path() {
  [ -s "$SPORE_LOG" ] || { echo "n/a"; return; }
  awk '
    function str(k,   m) { if (match($0, "\"" k "\":\"[^\"]*\"")) { m = substr($0, RSTART, RLENGTH); sub("^\"" k "\":\"", "", m); sub("\"$", "", m); return m } return "" }
    function num(k,   m) { if (match($0, "\"" k "\":[-0-9.eE+]+")) { m = substr($0, RSTART, RLENGTH); sub("^\"" k "\":", "", m); return m + 0 } return "" }
    /"msg":"rpc"/ {
      meth = str("method"); id = str("id"); ms = num("ms")
      if (id !~ /^spore-.*-m[0-9]+$/ || ms == "") next
      if (meth == "Create") { c[id] = ms; hc[id] = 1 } else if (meth == "Start") { s[id] = ms; hs[id] = 1 }
    }
    END { for (id in hc) if (id in hs) print c[id] + s[id] }' "$SPORE_LOG" | pct
}

{
  echo "## OCI start latency: \`ctr run --rm\`, wall-clock ms (${RUNS} measured rounds after ${WARMUP} warm-ups, interleaved)"
  echo
  echo "- date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S'); host: $(uname -sr), $(nproc) CPUs, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- containerd $(containerd --version | awk '{print $3}'); runc $(runc --version | awk 'NR==1{print $3}'); crun $(crun --version | awk 'NR==1{print $3}'); runsc $(runsc --version | awk 'NR==1{print $3}') (ptrace, --network=none); node $(node --version); spore $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo '+dirty')"
  echo "- containerd in a mount namespace without /sys/fs/cgroup/unified: $([ "$OCI_BENCH_HID_UNIFIED" = 1 ] && echo yes || echo no); timer covers \`timeout ${RUN_TIMEOUT} ctr run --rm --rootfs ...\` for every row"
  echo "- ratio = spore p50 / row p50 (same workload; < 1 means spore is faster)"
  echo
  echo "| workload | runtime | n | min | p50 | p90 | max | spore/p50 |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  for w in $WORKLOADS; do
    sp=; [ "${STATUS[spore/$w]:-}" = ok ] && sp=$(stats spore "$w" | cut -d' ' -f3)
    for rt in $RUNTIMES; do
      key="$rt/$w"; [ -n "${STATUS[$key]+x}" ] || continue
      if [ "${STATUS[$key]}" = ok ]; then
        read -r n mn p50 p90 mx < <(stats "$rt" "$w")
        f=$(fails "$rt" "$w"); [ "$f" != 0 ] && n="$n ($f failed)"
        ratio=n/a; [ -n "$sp" ] && [ "$sp" != - ] && [ "$p50" != - ] && ratio=$(awk -v a="$sp" -v b="$p50" 'BEGIN{printf "%.2f", a/b}')
        echo "| $w | $rt | $n | $mn | $p50 | $p90 | $mx | $ratio |"
      else
        echo "| $w | $rt | 0 | ${STATUS[$key]} | | | | |"
      fi
    done
  done
  echo
  read -r n _ p50 p90 _ < <(shim_path)
  if [ "${n:-n/a}" = n/a ] || [ "${n:-0}" = 0 ]; then
    echo "spore shim path (Create+Start RPC ms) p50/p90: n/a"
  else
    echo "spore shim path (Create+Start RPC ms) p50/p90: $p50 / $p90 (n=$n)"
  fi
} >"$D/table.md"
OUT=$RESULTS_DIR/oci-$STAMP.md
cp "$D/table.md" "$OUT"
cat "$OUT"
log "table: $OUT"
