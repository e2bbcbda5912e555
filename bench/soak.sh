#!/bin/bash
# Soak (issue 10; a measurement, not a test): N (default 200) small independent derivations through
# ferry-build-hook on 2 local test hosts at once (`ferry hosts up 2`), nix-build --max-jobs 0 --keep-going;
# then the same set with a new nonce through Nix 2.8's own build-remote on the same hosts (the way
# test/hosts/nix_offload_test.cpp drives it: NIX_SSHOPTS='-F ssh_config', ssh://hostN). One fresh local
# store (bound over /nix in a private mount namespace). While each run goes, every hook process
# (ferry-build-hook, resp. Nix's /usr/libexec/nix/build-remote) is sampled from /proc every 0.2 s: VmHWM (peak RSS)
# and the number of open descriptors; the run is cut in 4 time quarters to show whether they stay flat.
# Prints a table and JSON (also in $OUT/soak.json). As root.
#
# Usage: [FERRY=build/ferry] [N=200] [JOBS=4] [POLL=5] [OUT=/tmp/ferry-soak] bench/soak.sh
#   JOBS: max-jobs of each host in both machine lists (slots per host).
#   POLL: nix-build's build-poll-interval for both runs. Nix 2.8 retries a goal whose hook said
#   `postpone` (all slots busy) only every POLL seconds (worker.cc waitingForAWhile; default 5), which
#   dominates both totals with the default; POLL=1 shows more of the hooks' own cost.
set -eu
FERRY=$(readlink -f "${FERRY:-$(cd "$(dirname "$0")/.." && pwd)/build/ferry}")
HOOK=$(dirname "$FERRY")/ferry-build-hook
N=${N:-200}
JOBS=${JOBS:-4}
POLL=${POLL:-5}
B=${OUT:-/tmp/ferry-soak}
[ -x "$HOOK" ] || { echo "soak: $HOOK missing (build target ferry)" >&2; exit 2; }

rm -rf "$B"
mkdir -p "$B/local/nix" "$B/local/etc/nix"
"$FERRY" hosts up 2 "$B/hosts" > "$B/hosts.out" 2>&1 &
UP=$!
# The hosts' sshd logs are kept (DIR goes with the hosts): they explain a failed offload.
trap 'for h in host1 host2; do cp "$B/hosts/$h/sshd.log" "$B/$h-sshd.log" 2>/dev/null; done
      kill $UP 2>/dev/null; wait $UP 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$B/hosts/machines" ] && break; sleep 0.2; done
[ -s "$B/hosts/machines" ] || { cat "$B/hosts.out" >&2; exit 1; }
sleep 0.5

printf 'substituters =\nsandbox = false\nbuild-users-group =\n' > "$B/local/etc/nix/nix.conf"
printf 'state-dir = %s\n' "$B/state" > "$B/ferry.conf"
awk -v j="$JOBS" '{ $4 = j; print }' "$B/hosts/machines" > "$B/ferry-machines"
NIX_BUILDERS="ssh://host1 x86_64-linux - $JOBS 1; ssh://host2 x86_64-linux - $JOBS 1"

mkexpr() { # $1: label; a list of N independent derivations
  local nonce
  nonce=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
  cat <<EOF
builtins.genList (i: derivation {
  name = "soak-$1-\${toString i}-$nonce"; system = "x86_64-linux"; builder = "/bin/sh";
  args = [ "-c" "echo \${toString i} $nonce > \$out" ];
}) $N
EOF
}
mkexpr ferry > "$B/ferry.nix"
mkexpr nix > "$B/nix.nix"

# Samples "seconds pid vmhwm_kB fds" of every process named $1 until $B/stop exists.
sample() {
  local t p hwm fds
  while [ ! -e "$B/stop" ]; do
    t=$(date +%s.%N)
    for p in $(pgrep -x "$1" || true); do
      hwm=$(awk '/^VmHWM/ { print $2 }' /proc/$p/status 2>/dev/null || true)
      fds=$(ls /proc/$p/fd 2>/dev/null | wc -l)
      [ -n "$hwm" ] && echo "$t $p $hwm $fds"
    done
    sleep 0.2
  done
}

# $1 label, $2 process name to sample, rest: the nix-build command inside the private store.
run_one() {
  local label=$1 comm=$2; shift 2
  rm -f "$B/stop"
  sample "$comm" > "$B/$label.samples" &
  local sampler=$!
  local s e
  s=$(date +%s.%N)
  set +e
  unshare -m --propagation private sh -c "mount --bind $B/local/nix /nix && mount --bind $B/local/etc/nix /etc/nix && $*" \
    > "$B/$label.out" 2> "$B/$label.err"
  echo $? > "$B/$label.status"
  set -e
  e=$(date +%s.%N)
  touch "$B/stop"
  wait $sampler || true
  echo "$s $e" > "$B/$label.time"
  # Outputs that are not valid afterwards = failed builds.
  unshare -m --propagation private sh -c "mount --bind $B/local/nix /nix && mount --bind $B/local/etc/nix /etc/nix &&
    nix-store -q --outputs \$(nix-instantiate $B/$label.nix 2>/dev/null) | xargs nix-store --check-validity --print-invalid" \
    > "$B/$label.invalid" 2>/dev/null || true
}

echo "load before: $(uptime)"
# Instantiate first so both runs time builds only.
unshare -m --propagation private sh -c "mount --bind $B/local/nix /nix && mount --bind $B/local/etc/nix /etc/nix &&
  nix-instantiate $B/ferry.nix $B/nix.nix > /dev/null"

run_one ferry ferry-build-hoo \
  "FERRY_CONFIG=$B/ferry.conf nix-build $B/ferry.nix --no-out-link --keep-going --max-jobs 0 --option build-poll-interval $POLL --option build-hook $HOOK --builders @$B/ferry-machines"
run_one nix build-remote \
  "NIX_SSHOPTS='-F $B/hosts/ssh_config' nix-build $B/nix.nix --no-out-link --keep-going --max-jobs 0 --option build-poll-interval $POLL --builders '$NIX_BUILDERS'"
echo "load after:  $(uptime)"

# Per run: wall, failures, and per hook process its peak VmHWM and descriptor count; processes are
# grouped by the quarter of the run they started in (median and max per quarter: flat = no growth).
python3 - "$B" "$N" "$JOBS" "$POLL" "$(uptime | sed 's/.*load average: //')" <<'EOF'
import json, statistics, sys
b, n, jobs, poll, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
runs = []
for label in ("ferry", "nix"):
    s, e = map(float, open(f"{b}/{label}.time").read().split())
    procs = {}
    for line in open(f"{b}/{label}.samples"):
        t, pid, hwm, fds = line.split()
        p = procs.setdefault(pid, [float(t), 0, 0])
        p[1], p[2] = max(p[1], int(hwm)), max(p[2], int(fds))
    quarters = [[] for _ in range(4)]
    for t, hwm, fds in procs.values():
        quarters[min(3, max(0, int(4 * (t - s) / (e - s))))].append((hwm, fds))
    def stat(i, f):
        v = [x[i] for x in quarters[f]]
        return [statistics.median(v), max(v)] if v else None
    invalid = [l for l in open(f"{b}/{label}.invalid") if l.strip()]
    runs.append({"run": label, "derivations": n, "failures": len(invalid),
                 "nix_build_status": int(open(f"{b}/{label}.status").read()), "seconds": round(e - s, 2),
                 "hook_processes_sampled": len(procs),
                 "peak_rss_kb": max((p[1] for p in procs.values()), default=0),
                 "peak_fds": max((p[2] for p in procs.values()), default=0),
                 "rss_kb_median_max_by_quarter": [stat(0, f) for f in range(4)],
                 "fds_median_max_by_quarter": [stat(1, f) for f in range(4)]})
d = {"hosts": 2, "slots_per_host": jobs, "build_poll_interval": poll, "load_after": load, "runs": runs}
json.dump(d, open(f"{b}/soak.json", "w"))
print(f"{'run':<6} {'drvs':>5} {'fail':>5} {'status':>6} {'seconds':>8} {'procs':>6} {'peak RSS kB':>12} {'peak fds':>9}")
for r in runs:
    print(f"{r['run']:<6} {r['derivations']:>5} {r['failures']:>5} {r['nix_build_status']:>6} {r['seconds']:>8.2f} "
          f"{r['hook_processes_sampled']:>6} {r['peak_rss_kb']:>12} {r['peak_fds']:>9}")
print("per hook process, by the quarter of the run it started in: [median, max] (None: no process sampled)")
for r in runs:
    print(f"{r['run']:<6} RSS kB {r['rss_kb_median_max_by_quarter']}  fds {r['fds_median_max_by_quarter']}")
print(json.dumps(d))
EOF
