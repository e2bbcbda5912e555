#!/usr/bin/env bash
# A closure of REAL binaries in the local Nix store, for the 1 GB figures of the
# transfer, bench and hook issues: the machine's own toolchain and shared
# libraries added with `nix-store --add` (content-addressed, so re-running adds
# nothing new and prints the same paths). Prints the store paths, one a line.
#   bench/real_closure.sh [SIZE_MB]    (default 1000)
# Sources, in this order, until SIZE_MB is reached: every entry of
# /usr/lib/x86_64-linux-gnu (ELF .so files and directories, symlinks skipped), then of
# /usr/lib/llvm-14 and /usr/lib/gcc, then /usr/bin whole — each a path of its own: a
# mix of a few big paths and many small ones, as real closures are (the reference
# figures used 1.0 GB in 687 paths of /usr). The paths reference nothing.
# Everything named here is present after `make deps` on Debian 12.
set -euo pipefail
target=$(( ${1:-1000} * 1000 * 1000 ))
total=0
add() {
  local src=$1 name
  name=$(basename "$src")
  [[ $name =~ ^[A-Za-z0-9+._?=-]+$ && ! $name =~ ^\. ]] || return 0
  [[ -L $src ]] && return 0
  local size path
  size=$(du -sb "$src" | cut -f1)  # a first guess; the NAR size below is what counts
  (( total + size <= target + target / 20 )) || return 0  # stay within 5% of the size asked for
  path=$(nix-store --add "$src")
  size=$(nix-store -q --size "$path")
  (( total + size <= target + target / 20 )) || return 0
  echo "$path"
  total=$(( total + size ))
}
for s in /usr/lib/x86_64-linux-gnu/* /usr/lib/llvm-14/* /usr/lib/gcc /usr/bin; do
  [[ -e $s ]] && add "$s"
  (( total >= target )) && exit 0
done
echo "real_closure.sh: only $(( total / 1000000 )) MB of real binaries found (wanted $(( target / 1000000 )))" >&2
exit 1
