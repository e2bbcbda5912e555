#!/bin/sh
# Offload of a ~100 MB input closure (10 paths of /usr/lib binaries): ferry-build-hook vs Nix 2.8's own
# build-remote, same run, two fresh test hosts (host1: ferry, host2: Nix), one fresh local store. As root.
# Usage: [FERRY=path/to/ferry] [CODEC=auto|none|zstd:1] [FERRY_ARGS=-v] bench/nix_hook_vs_build_remote.sh
set -e
FERRY=${FERRY:-$(cd "$(dirname "$0")/.." && pwd)/build/ferry}
HOOK=$(dirname $FERRY)/ferry-build-hook
B=/tmp/fh-bench; export FERRY_ARGS
rm -rf $B; mkdir -p $B/local/nix $B/local/etc/nix $B/in
$FERRY hosts up 2 $B/hosts > $B/hosts.out 2>&1 &
UP=$!
for i in $(seq 50); do [ -f $B/hosts/machines ] && break; sleep 0.2; done
sleep 0.5
printf 'substituters =\nsandbox = false\nbuild-users-group =\n' > $B/local/etc/nix/nix.conf
printf 'state-dir = %s\ncodec = %s\n' $B/state ${CODEC:-auto} > $B/ferry.conf
# ~100 MB of real binaries in 10 input paths
n=0; total=0
for f in $(find /usr/lib/x86_64-linux-gnu -maxdepth 1 -name '*.so*' -type f -size +100k -size -4M | sort); do
  d=$B/in/p$((n % 10)); mkdir -p $d; cp $f $d/; n=$((n+1))
  total=$((total + $(stat -c %s $f))); [ $total -gt 100000000 ] && break
done
echo "inputs: $n files, $total bytes in 10 paths"
NONCE=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
mkexpr() { # $1 name
  echo 'let p = i: builtins.path { path = '$B'/in/p${toString i}; name = "bench-in-${toString i}"; };'
  echo 'in derivation { name = "'$1'-'$NONCE'"; system = "x86_64-linux"; builder = "/bin/sh";'
  echo '  inputs = map p [0 1 2 3 4 5 6 7 8 9];'
  echo '  args = [ "-c" "for i in $inputs; do /bin/cat $i/*; done | /usr/bin/wc -c > $out" ]; }'
}
mkexpr ferry > $B/ferry.nix; mkexpr nix > $B/nix.nix
L1=$(sed -n 1p $B/hosts/machines)
unshare -m --propagation private sh -c "
 mount --bind $B/local/nix /nix && mount --bind $B/local/etc/nix /etc/nix
 nix-instantiate $B/ferry.nix >/dev/null; nix-instantiate $B/nix.nix > /dev/null
 nix-store -r \$(nix-instantiate $B/ferry.nix) --dry-run 2>/dev/null || true
 s=\$(date +%s.%N)
 FERRY_CONFIG=$B/ferry.conf nix-build $B/ferry.nix --no-out-link --max-jobs 0 --option build-hook $HOOK --builders '$L1' $FERRY_ARGS 2>&1 >$B/ferry.out | cat > $B/ferry.err
 e=\$(date +%s.%N); echo ferry-build-hook: \$(echo \"\$e - \$s\" | bc) s
 s=\$(date +%s.%N)
 NIX_SSHOPTS='-F $B/hosts/ssh_config' nix-build $B/nix.nix --no-out-link --max-jobs 0 --builders 'ssh://host2 x86_64-linux' > $B/nix.out 2>$B/nix.err
 e=\$(date +%s.%N); echo nix build-remote: \$(echo \"\$e - \$s\" | bc) s
"
cat $B/ferry.out $B/nix.out
kill $UP; wait $UP || true
