#!/bin/sh
# ferry-build-hook vs Nix 2.8's own build-remote: the same derivation shape, same run, two fresh test hosts
# (host1: ferry, host2: Nix), one fresh local store (a private mount namespace). As root.
#
#   MODE=closure  ~100 MB input closure: 10 paths of /usr/lib binaries (default); CLOSURE_MB=1000 for 1 GB
#   LINK=1gbit|100mbit runs everything in a private network namespace whose lo is shaped (tc tbf)
#   MODE=small    3000 small input paths (builtins.toFile), tiny output: per-path overhead
#   MODE=big      300 MB in (one path of random bytes) / 300 MB out (the builder copies it)
#
# RUNS=N runs each tool N times, interleaved (ferry first on odd runs, Nix first on even ones), with fresh
# inputs per run (a nonce in every path) and a fresh remote store (the host's store and database emptied
# before each build), and prints each time, the load average before it, and the medians.
# Only the build of the already-instantiated .drv is timed (`nix-store --realise`): evaluation and adding
# the inputs to the local store are not.
# FERRY_ARGS=-v (or -vv) adds ferry's step lines to $B/ferry.err, each prefixed with the seconds since the
# build started (a timeline of one offload).
# FERRY_CONF_EXTRA='parallel-import-streams = 4' appends lines to ferry's ferry.conf.
# HOST_STORE_TMPFS_MB=6000 puts each host's /nix/store on a tmpfs of that size: the hosts' own file
# writes (ext4 here: ~2.5 s of CPU per GB, on the same 2 cores as everything else) leave the comparison.
# Usage: [FERRY=path/to/ferry] [MODE=closure|small|big] [RUNS=3] [CODEC=auto|none|zstd:1] [FERRY_ARGS=-v]
#        bench/nix_hook_vs_build_remote.sh
set -e
if [ -n "$LINK" ] && [ -z "$FERRY_BENCH_IN_NETNS" ]; then
  case $LINK in
    1gbit) shape='rate 1gbit burst 256k' ;;
    100mbit) shape='rate 100mbit burst 32k' ;;
    *) echo "LINK must be 1gbit or 100mbit" >&2; exit 2 ;;
  esac
  self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
  exec env FERRY_BENCH_IN_NETNS=1 unshare -n sh -c "ip link set lo mtu 1500 && ip link set lo up &&
    tc qdisc add dev lo root tbf $shape latency 200ms && exec sh '$self'"
fi
FERRY=${FERRY:-$(cd "$(dirname "$0")/.." && pwd)/build/ferry}
HOOK=$(dirname $FERRY)/ferry-build-hook
MODE=${MODE:-closure}; RUNS=${RUNS:-1}
B=/tmp/fh-bench-$MODE
rm -rf $B; mkdir -p $B/local/nix $B/local/etc/nix $B/in
$FERRY hosts up 2 $B/hosts ${HOST_STORE_TMPFS_MB:+--store-tmpfs $HOST_STORE_TMPFS_MB} > $B/hosts.out 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null; wait $UP 2>/dev/null || true' EXIT
for i in $(seq 50); do [ -f $B/hosts/machines ] && break; sleep 0.2; done
sleep 0.5
printf 'substituters =\nsandbox = false\nbuild-users-group =\n' > $B/local/etc/nix/nix.conf
printf 'state-dir = %s\ncodec = %s\n' $B/state ${CODEC:-auto} > $B/ferry.conf
[ -z "$FERRY_CONF_EXTRA" ] || printf '%s\n' "$FERRY_CONF_EXTRA" >> $B/ferry.conf

# Inputs for run $1 (a nonce in every path) and the expression of derivation $2 needing them.
make_inputs() {
  case $MODE in
  closure)
    if [ ! -d $B/in/p0 ]; then
      n=0; total=0
      # Shared libraries first (the default 100 MB), then whatever else /usr holds
      # in binaries for bigger closures (CLOSURE_MB=1000: the issue's 1 GB).
      for f in $( (find /usr/lib/x86_64-linux-gnu -maxdepth 1 -name '*.so*' -type f -size +100k -size -4M | sort
                   find /usr/lib/llvm-14 /usr/lib/gcc /usr/bin /usr/libexec -type f -size +100k | sort) | awk '!seen[$0]++'); do
        d=$B/in/p$((n % 10)); mkdir -p $d; cp $f $d/$n-$(basename $f); n=$((n+1))
        total=$((total + $(stat -c %s $f))); [ $total -gt $((${CLOSURE_MB:-100} * 1000000)) ] && break
      done
      echo "inputs: $n files, $total bytes in 10 paths"
    fi
    for i in 0 1 2 3 4 5 6 7 8 9; do echo "$1" > $B/in/p$i/nonce; done ;;
  big)
    rm -rf $B/in/big; mkdir -p $B/in/big
    { echo "$1"; head -c 300000000 /dev/urandom; } > $B/in/big/blob ;;
  small) ;;
  *) echo "MODE must be closure, small or big" >&2; exit 2 ;;
  esac
}
make_expr() { # $1 nonce, $2 derivation name
  case $MODE in
  closure)
    echo 'let p = i: builtins.path { path = '$B'/in/p${toString i}; name = "bench-in-${toString i}-'$1'"; };'
    echo 'in derivation { name = "'$2'-'$1'"; system = "x86_64-linux"; builder = "/bin/sh";'
    echo '  inputs = map p [0 1 2 3 4 5 6 7 8 9];'
    echo '  args = [ "-c" "for i in $inputs; do /bin/cat $i/*; done | /usr/bin/wc -c > $out" ]; }' ;;
  small)
    # 3000 paths: one env string would pass the kernel's 128 KiB limit, hence passAsFile.
    echo 'let s = i: builtins.toFile "bench-s${toString i}" "'$1' ${toString i}\n";'
    echo 'in derivation { name = "'$2'-'$1'"; system = "x86_64-linux"; builder = "/bin/sh";'
    echo '  inputs = builtins.concatStringsSep "\n" (builtins.genList s 3000); passAsFile = [ "inputs" ];'
    echo '  args = [ "-c" "/usr/bin/xargs /bin/cat < $inputsPath | /usr/bin/wc -l > $out" ]; }' ;;
  big)
    echo 'let big = builtins.path { path = '$B'/in/big; name = "bench-big-'$1'"; };'
    echo 'in derivation { name = "'$2'-'$1'"; system = "x86_64-linux"; builder = "/bin/sh";'
    echo '  inherit big; args = [ "-c" "/bin/cp $big/blob $out" ]; }' ;;
  esac
}

L1=$(sed -n 1p $B/hosts/machines)
cat > $B/run.sh <<EOF
set -e
mount --bind $B/local/nix /nix && mount --bind $B/local/etc/nix /etc/nix
# A fresh remote store before every timed build, as the issue asks: the host's store and database are
# emptied and the database made anew (outside the timing). Left in place, the earlier runs' paths made
# later 1 GB imports ~1.5 s slower than the first here, for both tools (collecting them with --gc
# instead cost the next 3000-path import as much).
fresh_host() {
  ssh -F $B/hosts/ssh_config \$1 'rm -rf /nix/store/* /nix/store/.links /nix/var/nix && nix-store --init' >/dev/null 2>&1
}
ferry() {
  fresh_host host1
  sync  # the inputs just added (and the other tool's remote import) are written back before, not during
  s=\$(date +%s.%N)
  FERRY_CONFIG=$B/ferry.conf nix-store --realise \$1 --max-jobs 0 --option build-hook $HOOK --builders '$L1' \$FERRY_ARGS 2>&1 >$B/ferry.out |
    grep --line-buffered -v '^@nix {\"action\":\"result\"' | while IFS= read -r l; do echo "\$(echo "\$(date +%s.%N) - \$s" | bc) \$l"; done > $B/ferry.err
  e=\$(date +%s.%N); echo "\$e - \$s" | bc >> $B/ferry.times
}
nix() {
  fresh_host host2
  sync
  s=\$(date +%s.%N)
  NIX_SSHOPTS='-F $B/hosts/ssh_config' nix-store --realise \$1 --max-jobs 0 --builders 'ssh://host2 x86_64-linux' > $B/nix.out 2>$B/nix.err
  e=\$(date +%s.%N); echo "\$e - \$s" | bc >> $B/nix.times
}
for r in \$(seq $RUNS); do
  nonce=\$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
  . $B/functions.sh; make_inputs \$nonce
  make_expr \$nonce ferry > $B/ferry.nix; make_expr \$nonce nix > $B/nix.nix
  fd=\$(nix-instantiate $B/ferry.nix 2>/dev/null); nd=\$(nix-instantiate $B/nix.nix 2>/dev/null)
  load=\$(cut -d' ' -f1-3 /proc/loadavg)
  if [ \$((r % 2)) = 1 ]; then ferry \$fd; nix \$nd; else nix \$nd; ferry \$fd; fi
  echo "run \$r (load before: \$load): ferry-build-hook \$(tail -1 $B/ferry.times) s, nix build-remote \$(tail -1 $B/nix.times) s"
  [ -s $B/ferry.out ] || { echo "ferry's build failed:"; tail -5 $B/ferry.err; exit 1; }
  [ -s $B/nix.out ] || { echo "Nix's build failed:"; tail -5 $B/nix.err; exit 1; }
done
EOF
# The inner script (in the mount namespace) needs the two functions above.
sed -n '/^make_inputs() {/,/^}/p;/^make_expr() {/,/^}/p' "$0" > $B/functions.sh
sed -i "1i B=$B; MODE=$MODE" $B/functions.sh
FERRY_ARGS="$FERRY_ARGS" unshare -m --propagation private sh $B/run.sh
median() { sort -n $1 | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mf=$(median $B/ferry.times); mn=$(median $B/nix.times)
echo "MODE=$MODE RUNS=$RUNS: median ferry-build-hook $mf s, nix build-remote $mn s, ratio $(echo "scale=2; $mf / $mn" | bc)"
