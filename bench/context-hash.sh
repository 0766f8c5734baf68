#!/usr/bin/env bash
# Context hashing and planning speed on the shared `bigctx` workload (about
# 450 MB in 10,030 files), measured against sha256sum on the same files.
#
#   RBUILD=target/release/rbuild bench/context-hash.sh [RUNS]
#
# Prints the median of RUNS (default 5) for:
#   sha256sum     find | xargs sha256sum over the context (both cores)
#   cold          rbuild graph --offline with an empty metadata cache (hashes everything)
#   warm          the same with the metadata cache warm (the whole plan, process start included)
# The page cache is warm in all three (the files are read once first), so
# "cold" means "no rbuild metadata cache", not "cold disk".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RBUILD=${RBUILD:-$here/../target/release/rbuild}
RUNS=${1:-5}
# The workloads are shared with ../shared/bench/run.sh (same state dir).
STATE=${BENCH_STATE:-/tmp/rbuild-bench}
shared=$here/../../shared/bench
mkdir -p "$STATE"
[[ -d $STATE/workloads/bigctx ]] || python3 "$shared/workloads.py" "$STATE/workloads" >/dev/null
ctx=$STATE/workloads/bigctx

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { local s e; s=$(now); "$@" >/dev/null 2>&1; e=$(now); echo "$e - $s" | bc; }

find "$ctx" -type f -print0 | xargs -0 cat >/dev/null   # warm the page cache
sums=(); cold=(); warm=()
for _ in $(seq "$RUNS"); do
  sums+=("$(timeit bash -c "find '$ctx' -type f -print0 | xargs -0 -P2 -n500 sha256sum")")
  rm -rf "$STATE/ctxbench-root"
  cold+=("$(timeit "$RBUILD" --root "$STATE/ctxbench-root" graph --offline --format json "$ctx")")
  "$RBUILD" --root "$STATE/ctxbench-root" graph --offline --format json "$ctx" >/dev/null
  warm+=("$(timeit "$RBUILD" --root "$STATE/ctxbench-root" graph --offline --format json "$ctx")")
done
printf 'sha256sum  %8.3f s\n' "$(printf '%s\n' "${sums[@]}" | median)"
printf 'cold       %8.3f s\n' "$(printf '%s\n' "${cold[@]}" | median)"
printf 'warm       %8.3f s\n' "$(printf '%s\n' "${warm[@]}" | median)"
