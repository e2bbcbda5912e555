#!/usr/bin/env bash
# Reproducible codec benchmark: builds bench/codec_speed.cpp against a ferry_pure
# build, makes ~256 MB of realistic input (files of /usr/lib and /usr/share in
# sorted order, concatenated) and prints a table. Not part of `make test`.
#   bench/codec_speed.sh [BUILD_DIR] [SPEC:THREADS[@MiB] ...]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-/tmp/build-codec-bench}; shift || true
data=${FERRY_BENCH_DATA:-/tmp/ferry-codec-bench.data}
size=$((256 * 1024 * 1024))

if [[ ! -f $build/libferry_pure.a ]]; then
  cmake -S "$src" -B "$build" -DFERRY_LAYERS="util;codec" -DFERRY_PURE_ONLY=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" --target ferry_pure -j2 >/dev/null
fi
g++ -std=c++20 -O2 -Wall -Wextra -I"$src/headers" "$src/bench/codec_speed.cpp" "$build/libferry_pure.a" \
    -lfmt -lzstd -llzma -pthread -o "$build/codec_speed"

if [[ ! -f $data || $(stat -c %s "$data") -ne $size ]]; then
  find /usr/lib /usr/share -type f -size +0 -print0 2>/dev/null | sort -z |
    xargs -0 cat 2>/dev/null | head -c "$size" > "$data" || true
fi
"$build/codec_speed" "$data" "$@"
