#!/usr/bin/env bash
# Builds the Jazzer.js native addon (libFuzzer inside a Node-API module) for machines where
# the one that @jazzer.js/fuzzer 4.0.0 ships cannot be loaded: that prebuilt links against
# glibc 2.38 (__isoc23_strtol), Debian 12 has 2.36. fuzz/jazzer/load-addon.cjs loads the
# result instead of the prebuilt when the prebuilt fails to load.
#
# Inputs, all from the package registries this project uses:
#  - the addon's C++ sources: @jazzer.js/fuzzer 2.1.0 from npm (the last release that ships
#    them; its own install step downloads a prebuilt from a release page or LLVM sources,
#    neither reachable here), integrity-checked;
#  - libFuzzer: Debian's libclang-rt-16-dev (libclang_rt.fuzzer_no_main-x86_64.a);
#  - node-addon-api (a dependency of @jazzer.js/fuzzer 4.0.0) and Node's own headers;
#  - fuzz/jazzer/compat.cpp: what Jazzer's libFuzzer fork and 4.0.0's API add (see there).
# Idempotent: does nothing when the output's stamp matches its inputs. Output:
# fuzz/.build/jazzer/fuzzer-linux-x64.node (not committed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out_dir="$root/fuzz/.build/jazzer"
out="$out_dir/fuzzer-linux-x64.node"
log() { echo "[build-jazzer-addon] $*" >&2; }

SRC_PKG="@jazzer.js/fuzzer@2.1.0"
SRC_INTEGRITY="sha512-WroUAGH1+AFoI+5kRGOjvh9+1GsYEmCinvEt9yF0E0pBTeadssCG6Y8adeYh6W0rum2LjPsjVfLEWMunRLt/Ew=="
LIBFUZZER_PKG="libclang-rt-16-dev"
LIBFUZZER="/usr/lib/llvm-16/lib/clang/16/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a"

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || { log "only linux x86_64 is supported"; exit 1; }

prebuilt="$root/node_modules/@jazzer.js/fuzzer/prebuilds/fuzzer-linux-x64.node"
[ -f "$prebuilt" ] || { log "@jazzer.js/fuzzer is not installed: run npm ci first"; exit 1; }
if [ "${SPORE_JAZZER_ADDON:-}" != local ] && node -e 'require(process.argv[1])' "$prebuilt" 2>/dev/null; then
  log "the prebuilt addon loads on this machine; nothing to build"
  exit 0
fi

node_inc="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node"
[ -f "$node_inc/node_api.h" ] || { log "Node headers not found at $node_inc"; exit 1; }
napi_inc=$(cd "$root/node_modules/@jazzer.js/fuzzer" && node -p 'require("node-addon-api").include_dir' 2>/dev/null) \
  || { log "node-addon-api not found: run npm ci first"; exit 1; }
case "$napi_inc" in /*) ;; *) napi_inc="$root/node_modules/@jazzer.js/fuzzer/$napi_inc" ;; esac
[ -f "$napi_inc/napi.h" ] || napi_inc="$root/node_modules/node-addon-api"

stamp_text="$SRC_INTEGRITY $(sha256sum "$here/compat.cpp" "$here/include/fuzzer/FuzzerDefs.h" "$0" | awk '{print $1}' | tr '\n' ' ') $(node -p process.versions.node) $(grep -m1 '"version"' "$napi_inc/package.json" 2>/dev/null || echo napi)"
if [ -f "$out" ] && [ -f "$out.stamp" ] && [ "$(cat "$out.stamp")" = "$stamp_text" ]; then
  log "up to date: $out"
  exit 0
fi

missing=()
[ -f "$LIBFUZZER" ] || missing+=("$LIBFUZZER_PKG")
command -v g++ >/dev/null || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing ${missing[*]} and not root"; exit 1; }
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null \
    || { apt-get update -qq </dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null; }
fi

work=$(mktemp -d /tmp/spore-jazzer-XXXXXX)
trap 'rm -rf "$work"' EXIT
log "fetching $SRC_PKG sources"
(cd "$work" && npm pack --silent "$SRC_PKG" --json >pack.json </dev/null)
got=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"))[0].integrity)' "$work/pack.json")
[ "$got" = "$SRC_INTEGRITY" ] || { log "integrity mismatch for $SRC_PKG: $got"; exit 1; }
tar -xzf "$work"/jazzer.js-fuzzer-2.1.0.tgz -C "$work"
src="$work/package"

log "compiling"
CXXFLAGS=(-std=c++17 -O2 -fPIC -fvisibility=hidden -fexceptions -DNAPI_VERSION=4 -DNAPI_CPP_EXCEPTIONS
          -DBUILDING_NODE_EXTENSION -I"$here/include" -I"$src" -I"$node_inc" -I"$napi_inc")
objs=()
for f in addon.cpp fuzzing_async.cpp fuzzing_sync.cpp utils.cpp shared/callbacks.cpp shared/coverage.cpp \
         shared/sanitizer_symbols.cpp shared/tracing.cpp "$here/compat.cpp"; do
  extra=()
  case "$f" in
    addon.cpp) extra=(-DRegisterCallbackExports=SporeRegisterCallbackExports) ;;
    utils.cpp) extra=(-DFuzzerDriver=SporeFuzzerDriver) ;;
  esac
  case "$f" in /*) path="$f" ;; *) path="$src/$f" ;; esac
  obj="$work/$(echo "$f" | tr '/' '_' | sed 's/^_*//').o"
  g++ "${CXXFLAGS[@]}" "${extra[@]}" -c "$path" -o "$obj"
  objs+=("$obj")
done
mkdir -p "$out_dir"
g++ -shared -o "$out.tmp" "${objs[@]}" -Wl,--whole-archive "$LIBFUZZER" -Wl,--no-whole-archive \
    -Wl,--exclude-libs,ALL -lpthread -ldl
mv "$out.tmp" "$out"
echo "$stamp_text" >"$out.stamp"
log "built $out"
