#!/usr/bin/env bash
# Store-layer benchmark: builds bench/store_speed.cpp against a ferry_pure build,
# makes a tree (copies of /usr/lib, /usr/share files up to ~SIZE_MB, plus one large
# file of BIG_MB) and compares with nix-store --dump / --restore. Not part of tests.
#   bench/store_speed.sh [BUILD_DIR]   (env: SIZE_MB=300 BIG_MB=1024)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-/tmp/build-store-bench}
work=${FERRY_BENCH_DIR:-/tmp/ferry-store-bench}
size_mb=${SIZE_MB:-300} big_mb=${BIG_MB:-1024}

if [[ ! -f $build/libferry_pure.a ]]; then
  cmake -S "$src" -B "$build" -DFERRY_LAYERS="util;protocol;store" -DFERRY_PURE_ONLY=ON \
        -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" --target ferry_pure -j2 >/dev/null
fi
g++ -std=c++20 -O2 -Wall -Wextra -I"$src/headers" "$src/bench/store_speed.cpp" "$build/libferry_pure.a" \
    -lfmt -lcrypto -lsqlite3 -o "$build/store_speed"

run_case() {  # name tree
  local name=$1 tree=$2
  echo "== $name: $(find "$tree" | wc -l) entries"
  nix-store --dump "$tree" > "$work/$name.nar"
  "$build/store_speed" "$tree" "$work/$name.nar" "$work/out"
  local t0 t1
  t0=$(date +%s.%N); nix-store --dump "$tree" | sha256sum >/dev/null; t1=$(date +%s.%N)
  echo "nix-store --dump | sha256sum: $(echo "$t1 - $t0" | bc) s"
  rm -rf "$work/out"; t0=$(date +%s.%N); nix-store --restore "$work/out" < "$work/$name.nar"; t1=$(date +%s.%N)
  echo "nix-store --restore:          $(echo "$t1 - $t0" | bc) s"
  echo "nix-hash --base32:            $(nix-hash --type sha256 --base32 "$tree")"
  chmod -R u+w "$work/out" 2>/dev/null; rm -rf "$work/out" "$work/$name.nar"
}

mkdir -p "$work"
if [[ ! -d $work/tree ]]; then
  mkdir -p "$work/tree"
  # the first files of /usr/lib, /usr/share (sorted) up to size_mb, with their tree shape
  find /usr/lib /usr/share -type f -size +0 -printf '%s\t%p\n' 2>/dev/null | sort -k2 |
    awk -F'\t' -v max=$((size_mb * 1000000)) '{ t += $1; if (t > max) exit; printf "%s%c", $2, 0 }' |
    tar --null -cf - -T - 2>/dev/null | tar -xf - -C "$work/tree" 2>/dev/null || true
fi
if [[ ! -f $work/big/one ]]; then
  mkdir -p "$work/big"; head -c $((big_mb * 1024 * 1024)) /dev/urandom > "$work/big/one"
fi
run_case many-files "$work/tree"
run_case one-big-file "$work/big"
