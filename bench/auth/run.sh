#!/usr/bin/env bash
# bench/auth/run.sh - `./estore bench auth`: logins/s against raw argon2id
# hashes/s with the same parameters, token validations/s and refreshes/s
# with p50/p99, CPU per operation, and each service's RSS at rest and
# under load.
#
#   bench/auth/run.sh [--rounds N] [--duration S] [--keep]
#
# Builds the services and auth_bench (Release, bench/.build/stack), starts a
# private stack (PostgreSQL, Redis, token, account, auth) with
# scripts/stack.sh on free loopback ports in a temporary state folder,
# runs the workloads interleaved for N rounds (default 3) of S seconds
# (default 10) after a 2 s warm-up each, stops the stack and prints the
# medians. The speed of a shared VM drifts by a third within minutes, so
# only workloads measured side by side are compared, and CPU time per
# operation (all processes of the stack plus the load generator) is given
# beside the rates. --keep keeps the state folder (logs).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$root/bench/.build/stack
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
duration=10
rounds=3
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--duration) duration=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench auth: unknown option $1" >&2; exit 2 ;;
	esac
done
case $duration in '' | *[!0-9]*) echo "bench auth: --duration wants whole seconds" >&2; exit 2 ;; esac
case $rounds in '' | 0 | *[!0-9]*) echo "bench auth: --rounds wants a positive number" >&2; exit 2 ;; esac

log() { echo "bench auth: $*" >&2; }

# What the auth service runs with; the raw hashing uses the same.
m_kib=19456 t_cost=2 p_cost=1 hashes_at_once=2
login_threads=4 validate_threads=8 refresh_threads=8

mkdir -p "$build"
log "building (Release, $build)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$root/bench/.build/auth-configure.log" 2>&1 ||
	{ cat "$root/bench/.build/auth-configure.log" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" --target estore-token estore-account \
	estore-catalog estore-auth estore-edge estore-health auth_bench >"$root/bench/.build/auth-build.log" 2>&1 ||
	{ tail -40 "$root/bench/.build/auth-build.log" >&2; exit 1; }
bench_bin=$build/bench/auth_bench

state=$(mktemp -d "${TMPDIR:-/tmp}/estore-bench-auth.XXXXXX")
cleanup() {
	stack_stop
	if [ "$keep" = 1 ]; then log "state and logs kept in $state"; else rm -rf "$state"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r db_port redis_port token_port account_port auth_port edge_port < <(free_ports 6)
log "starting the stack in $state"
export DB_HOST=127.0.0.1 DB_PORT=$db_port REDIS_HOST=127.0.0.1 REDIS_PORT=$redis_port
export TOKEN_SERVICE_PORT=$token_port ACCOUNT_API_PORT=$account_port AUTH_SERVICE_PORT=$auth_port
export EDGE_PORT=$edge_port
export LOG_LEVEL=warn AUTH_MAX_CONCURRENT_HASHES=$hashes_at_once
export AUTH_ARGON2_MEMORY_KIB=$m_kib AUTH_ARGON2_ITERATIONS=$t_cost AUTH_ARGON2_PARALLELISM=$p_cost
stack_start "$state" "$build"

services=(token account auth)
declare -A pid rest peak after
for s in "${services[@]}"; do pid[$s]=${stack_pid[$s]}; done

kib() { # pid field -> KiB
	sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"
}
for s in "${services[@]}"; do rest[$s]=$(kib "${pid[$s]}" VmRSS); done

stack_pids=$(cat "$state"/pids/{postgres,redis,token,account,auth}.pid | paste -sd, -)
run() { # name, auth_bench args...
	local name=$1; shift
	log "round $r: $name"
	"$bench_bin" "$@" --duration "$duration" --warmup 2 --stack-pids "$stack_pids" |
		tee -a "$state/results.txt" >&2
}
common=(--auth "127.0.0.1:$auth_port" --token "127.0.0.1:$token_port")
for ((r = 1; r <= rounds; r++)); do
	run hash hash --threads "$hashes_at_once" --m-kib "$m_kib" --t "$t_cost" --p "$p_cost"
	run login login "${common[@]}" --threads "$login_threads" --users 32
	run validate validate "${common[@]}" --threads "$validate_threads"
	run refresh refresh "${common[@]}" --threads "$refresh_threads"
done

for s in "${services[@]}"; do peak[$s]=$(kib "${pid[$s]}" VmHWM); done
# estore-auth gives argon2's memory back after 2 s without hashing.
sleep 4
for s in "${services[@]}"; do after[$s]=$(kib "${pid[$s]}" VmRSS); done

/usr/bin/python3 - "$state/results.txt" "$m_kib" "$t_cost" "$p_cost" "$hashes_at_once" \
	"${rest[token]}" "${peak[token]}" "${after[token]}" \
	"${rest[account]}" "${peak[account]}" "${after[account]}" \
	"${rest[auth]}" "${peak[auth]}" "${after[auth]}" <<'EOF'
import sys
import statistics
results, m_kib, t, p, at_once = sys.argv[1:6]
rss = [int(x) for x in sys.argv[6:]]
runs = {}
for line in open(results):
    kv = dict(f.split("=", 1) for f in line.split())
    runs.setdefault(kv["workload"], []).append(kv)

def med(w, key):
    return statistics.median(float(r[key]) for r in runs[w])

def cpu_ms_per_op(w):
    # Median over rounds of (client + stack CPU) / operations.
    return statistics.median(
        1000 * (float(r["client_cpu_s"]) + float(r["stack_cpu_s"])) / max(1, int(r["ops"]))
        for r in runs[w])

n_rounds = len(runs["hash"])
print()
print("argon2id m=%s KiB, t=%s, p=%s; %s hashes at once (AUTH_MAX_CONCURRENT_HASHES); "
      "medians of %d interleaved rounds" % (m_kib, t, p, at_once, n_rounds))
print()
print("| workload | threads | ops/s | p50 | p99 | CPU per op | failed |")
print("|---|---:|---:|---:|---:|---:|---:|")
names = {"hash": "raw argon2id verify (in-process)", "login": "AuthService.Login",
         "validate": "TokenService.ValidateToken", "refresh": "AuthService.Refresh"}
for w in ("hash", "login", "validate", "refresh"):
    print("| %s | %s | %s | %.2f ms | %.2f ms | %.3f ms | %d |" % (
        names[w], runs[w][0]["threads"], "{:,.1f}".format(med(w, "per_s")),
        med(w, "p50_ms"), med(w, "p99_ms"), cpu_ms_per_op(w),
        sum(int(r["failed"]) for r in runs[w])))
ratios = sorted(float(l["per_s"]) / float(h["per_s"]) for h, l in zip(runs["hash"], runs["login"]))
ratio = statistics.median(ratios)
cpu_ratio = cpu_ms_per_op("hash") / cpu_ms_per_op("login")
print()
print("logins/s / raw hashes/s, same round: median %.1f %% (rounds: %s; target >= 90 %%: %s)" % (
    100 * ratio, ", ".join("%.0f %%" % (100 * x) for x in ratios),
    "met" if ratio >= 0.9 else "NOT met"))
print("CPU per raw hash / CPU per login (whole stack and client): %.1f %%" % (100 * cpu_ratio))
for w, label in (("login", "login"), ("refresh", "refresh"), ("validate", "validation")):
    by = {}
    for r in runs[w]:
        for item in r.get("stack_ms_per_op", "-").split(","):
            if ":" in item:
                name, ms = item.split(":")
                by.setdefault(name, []).append(float(ms))
    parts = ["%s %.2f ms" % (n, statistics.median(v)) for n, v in sorted(by.items(), key=lambda kv: -statistics.median(kv[1]))]
    parts.append("load generator %.2f ms" % statistics.median(
        1000 * float(r["client_cpu_s"]) / max(1, int(r["ops"])) for r in runs[w]))
    print("CPU per %s by process: %s" % (label, ", ".join(parts)))
print()
print("| service | RSS at rest | peak RSS under load | RSS after load |")
print("|---|---:|---:|---:|")
for i, s in enumerate(("estore-token", "estore-account", "estore-auth")):
    r, pk, a = rss[3 * i:3 * i + 3]
    print("| %s | %.1f MiB | %.1f MiB | %.1f MiB |" % (s, r / 1024, pk / 1024, a / 1024))
print()
print("(estore-auth's peak includes argon2's working memory: %s KiB per hash in flight)" % m_kib)
EOF
