#!/usr/bin/env bash
# Bundle export / import against Nix 2.8 (not part of the tests).
# Fills a private store (NIX_STORE_DIR etc. under $FERRY_BENCH_DIR) with PATHS
# store paths holding ~SIZE_MB of real files from /usr (binaries, libraries), then
# times, REPS times each, the runs interleaved (ferry, ferry 1-thread, nix, ferry,
# ...) so that other load on the machine hits all of them alike; medians reported:
#   export to /dev/null:  ferry (bench/store_bundle_speed.cpp) vs nix-store --export
#   restore + register into a fresh store: ferry vs nix-store --import, with peak RSS
# "ferry1" is ferry with FERRY_HASH_THREADS=0 (everything on one thread), to show
# what the hash workers add. CPU = user + system seconds. The load average before
# and after is printed: on a busy machine extra threads get no extra CPU (with
# autogroup scheduling a session's share is fixed), and wall ratios fall toward
# the CPU ratios.
# FERRY_BENCH_DIR=/dev/shm/... keeps the store in tmpfs: on ext4 here, creating the
# files costs seconds of kernel inode-allocation time (same for both tools).
#   bench/store_bundle_speed.sh [BUILD_DIR]   (env: SIZE_MB=1000 PATHS=300 REPS=5)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-/tmp/build-store-bench}
work=${FERRY_BENCH_DIR:-/tmp/ferry-bundle-bench}
size_mb=${SIZE_MB:-1000} npaths=${PATHS:-300} reps=${REPS:-5}

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$src" -B "$build" -DFERRY_LAYERS="util;protocol;store" -DFERRY_PURE_ONLY=ON \
        -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --target ferry_pure -j2 >/dev/null   # no-op when up to date
g++ -std=c++20 -O2 -Wall -Wextra -I"$src/headers" "$src/bench/store_bundle_speed.cpp" "$build/libferry_pure.a" \
    -lfmt -lcrypto -lsqlite3 -o "$build/store_bundle_speed"
bin=$build/store_bundle_speed

use_store() {  # root
  export NIX_STORE_DIR=$work/store NIX_STATE_DIR=$1/var NIX_LOG_DIR=$1/log NIX_CONF_DIR=$work/etc NIX_REMOTE=local
}
fresh_store() {
  chmod -R u+w "$work/store" "$work/var" 2>/dev/null || true; rm -rf "$work/store" "$work/var" "$work/log"
  use_store "$work"; nix-store --init
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
timed() {  # label cmd... ; appends "wall_s maxrss_kb cpu_s" to $work/<label>
  local label=$1; shift
  /usr/bin/time -f '%e %M %U %S' -o "$work/time.out" "$@"
  awk '{ print $1, $2, $3 + $4 }' "$work/time.out" >> "$work/$label"
}

mkdir -p "$work/etc"
printf 'build-users-group =\nsandbox = false\nsubstitute = false\n' > "$work/etc/nix.conf"
if [[ ! -f $work/paths ]]; then
  rm -rf "$work/data"; mkdir -p "$work/data"
  # regular files of /usr/lib and /usr/bin (sorted, deterministic) up to size_mb, dealt
  # round-robin into npaths directories
  find /usr/lib/x86_64-linux-gnu /usr/bin /usr/libexec -type f -size +0 -printf '%s\t%p\n' 2>/dev/null | sort -k2 |
    awk -F'\t' -v max=$((size_mb * 1000000)) -v n="$npaths" -v d="$work/data" \
      '{ t += $1; if (t > max) exit; i = NR % n; printf "%s/p%03d\t%s\n", d, i, $2 }' > "$work/plan" || true
  while IFS=$'\t' read -r dir f; do
    mkdir -p "$dir"; cp -p "$f" "$dir/$(basename "$f")" 2>/dev/null || true
  done < "$work/plan"
  fresh_store
  nix-store --add "$work"/data/p* > "$work/paths"
  rm -rf "$work/data"
fi
use_store "$work"
mapfile -t paths < "$work/paths"
echo "closure: ${#paths[@]} paths, $(du -sm "$work/store" | cut -f1) MB on disk"
echo "before: $(uptime)"
rm -f "$work"/t.*
cat "$work/store"/*/* "$work/store"/*/*/* > /dev/null 2>&1 || true   # warm the page cache
for ((r = 0; r < reps; r++)); do
  timed t.ferry_export sh -c '"$0" export "$@" > /dev/null' "$bin" "${paths[@]}" 2>/dev/null
  FERRY_HASH_THREADS=0 timed t.ferry1_export sh -c '"$0" export "$@" > /dev/null' "$bin" "${paths[@]}" 2>/dev/null
  timed t.nix_export sh -c 'nix-store --export "$@" > /dev/null' "${paths[@]}"
done
nix-store --export "${paths[@]}" > "$work/bundle"
cmp <("$bin" export "${paths[@]}" 2>/dev/null) "$work/bundle" && echo "ferry export == nix-store --export ($(stat -c %s "$work/bundle") bytes)"
for ((r = 0; r < reps; r++)); do
  fresh_store; sync
  timed t.ferry_import "$bin" import < "$work/bundle" 2>/dev/null
  [[ $r == 0 ]] && nix-store --verify --check-contents 2>&1 | tail -1
  fresh_store; sync
  FERRY_HASH_THREADS=0 timed t.ferry1_import "$bin" import < "$work/bundle" 2>/dev/null
  fresh_store; sync
  timed t.nix_import sh -c 'nix-store --import > /dev/null' < "$work/bundle"
done
echo "after: $(uptime)"
# CPU per thread (main first): with idle cores wall time approaches the largest.
"$bin" export "${paths[@]}" 2>&1 > /dev/null | sed 's/^/profile: /'
fresh_store; "$bin" import < "$work/bundle" 2>&1 | sed 's/^/profile: /'
med() { cut -d' ' -f"$2" "$work/t.$1" | median; }
for t in ferry_export ferry1_export nix_export ferry_import ferry1_import nix_import; do
  printf '%-14s wall median %6.2f s (runs %s)  CPU median %5.2f s (runs %s)  peak RSS (max) %d MB\n' "$t" \
    "$(med "$t" 1)" "$(cut -d' ' -f1 "$work/t.$t" | tr '\n' ' ')" \
    "$(med "$t" 3)" "$(cut -d' ' -f3 "$work/t.$t" | tr '\n' ' ')" \
    "$(( $(cut -d' ' -f2 "$work/t.$t" | sort -n | tail -1) / 1024 ))"
done
for op in export import; do
  awk -v op=$op -v f="$(med ferry_$op 1)" -v f1="$(med ferry1_$op 1)" -v n="$(med nix_$op 1)" \
      -v fc="$(med ferry_$op 3)" -v nc="$(med nix_$op 3)" \
      'BEGIN { printf "%s: nix/ferry wall %.2fx (1-thread ferry %.2fx), CPU %.2fx\n", op, n / f, n / f1, nc / fc }'
done
