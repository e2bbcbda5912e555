#!/usr/bin/env bash
# The bench table of docs/bench.md: every codec on loopback and on a 100 Mbit/s link
# (tc tbf inside a private network namespace, test-hosts.md), ferry against
# nix-copy-closure in the same run, fresh target store before each run.
#   bench/measure.sh [SIZE:COUNT | @PATHS_FILE] [RUNS] [OUT_DIR] [LINKS...]
#   LINKS: loopback, 100mbit, 10mbit, 1gbit (default: loopback 100mbit)
#   @PATHS_FILE: a closure already in the local store, one store path a line, e.g.
#   the 1 GB of real binaries: bench/real_closure.sh 1000 > /tmp/real-closure.txt
# Needs root (namespaces, tc) and build/ferry (or FERRY=path). Writes OUT_DIR/<link>.json and .txt.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
ferry=${FERRY:-$src/build/ferry}
closure=${1:-1G:600}
runs=${2:-3}
out=${3:-/tmp/ferry-bench-measure}
shift $(( $# < 3 ? $# : 3 ))
links=("$@")
[[ ${#links[@]} -gt 0 ]] || links=(loopback 100mbit)
codecs=${FERRY_BENCH_CODECS:-none,zstd:1,zstd:3,xz:0,auto}
mkdir -p "$out"
if [[ $closure == @* ]]; then
  source_args="--closure $(tr '\n' ' ' < "${closure#@}")"
else
  source_args="--synthetic '$closure'"
fi

for link in "${links[@]}"; do
  case $link in
    loopback) shaping= ;;
    100mbit)  shaping='tc qdisc add dev lo root tbf rate 100mbit burst 32k latency 200ms &&' ;;
    10mbit)   shaping='tc qdisc add dev lo root tbf rate 10mbit burst 32k latency 200ms &&' ;;
    1gbit)    shaping='tc qdisc add dev lo root tbf rate 1gbit burst 256k latency 200ms &&' ;;
    *) echo "unknown link $link" >&2; exit 2 ;;
  esac
  echo "== $link: $closure, $codecs, $runs runs" >&2
  unshare -n sh -c "ip link set lo mtu 1500 && ip link set lo up && $shaping \
      '$ferry' bench --local-host $source_args --codec '$codecs' --runs '$runs' --fresh \
      --compare nix-copy-closure --json '$out/$link.json'" | tee "$out/$link.txt"
done
