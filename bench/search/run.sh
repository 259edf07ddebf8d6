#!/usr/bin/env bash
# bench/search/run.sh - `./estore bench search`: the catalog's search engine
# on a generated catalog, in process (no service, no network).
#
#   bench/search/run.sh [--products N] [--duration S] [--threads T]
#                       [--seed X] [--only K]
#
# Builds search_bench (Release, bench/.build/search) and runs it: builds an
# index of N generated products (default 1,000,000), prints the build time
# and the index's memory, then requests/s and p50/p99 per query type from
# T threads (default 16) for S seconds each (default 5) and from one thread.
# See search_bench.c for the catalog and the query mixes.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$root/bench/.build/search
case ${1:-} in -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

mkdir -p "$build"
echo "bench search: building (Release, $build)" >&2
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$root/bench/.build/search-configure.log" 2>&1 ||
	{ cat "$root/bench/.build/search-configure.log" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" --target search_bench >"$root/bench/.build/search-build.log" 2>&1 ||
	{ tail -40 "$root/bench/.build/search-build.log" >&2; exit 1; }
echo "bench search: load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
exec "$build/bench/search_bench" "$@"
