#!/usr/bin/env bash
# bench/edge/run.sh - `./estore bench edge`: the edge proxy against
# grpc-gateway in front of the same estore-account.
#
#   bench/edge/run.sh [--rounds N] [--duration S] [--connections N]
#                     [--threads N] [--idle-connections N] [--profile] [--keep]
#
# Builds the services (Release, bench/.build/stack) and a grpc-gateway 1.x
# reverse proxy generated from proto/estore/account/v1/account.proto
# (bench/.build/gateway, offline against Debian's Go packages); starts
# PostgreSQL, Redis, token, account, auth and the edge with scripts/stack.sh
# on free loopback ports in a temporary state folder, and the gateway in
# front of the same account service; registers and logs in one account
# through the edge. Then, for N rounds (default 3), wrk (N connections,
# default 64; S seconds, default 10, after a 2 s warm-up) against: the
# edge's GET /healthz, the edge's GET /v1/accounts/me and the gateway's
# GET /v1/accounts/me with the token (the last two in alternating order).
# Prints the medians of requests/s, p50/p99, CPU per request by process
# and the ratios edge/gateway against the targets; then the RSS of both proxies
# holding --idle-connections (default 1,000) idle keep-alive connections,
# and of the edge under wrk with as many busy ones. Everything it started
# is stopped on exit; --keep keeps the state folder (logs, raw output).
# --profile (needs perf, root) adds, for both GET /v1/accounts/me paths,
# syscalls, context switches and CPU per request of every process (perf
# stat) and a perf record of each, summarised into profile.txt.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench_dir/../.." && pwd)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
build=$root/bench/.build/stack
gw_build=$root/bench/.build/gateway

rounds=3
duration=10
connections=64
threads=1
idle_conns=1000
keep=0
profile=0
warmup=2
clk_tck=$(getconf CLK_TCK)

usage() {
	sed -n '2,25s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-2}"
}
log() { printf '[%s] bench edge: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench edge: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=${2:?}; shift 2 ;;
	--duration) duration=${2:?}; shift 2 ;;
	--connections) connections=${2:?}; shift 2 ;;
	--threads) threads=${2:?}; shift 2 ;;
	--idle-connections) idle_conns=${2:?}; shift 2 ;;
	--keep) keep=1; shift ;;
	--profile) profile=1; shift ;;
	-h | --help) usage 0 ;;
	*) printf 'bench edge: unknown argument %s\n' "$1" >&2; usage ;;
	esac
done
for v in rounds duration connections threads idle_conns; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v//_/-} expects a positive integer"
done

# ---- prerequisites and builds ---------------------------------------------

googleapis=/usr/share/gocode/src/github.com/gogo/googleapis
require_tools() {
	local missing=() pair cmd pkg
	for pair in wrk:wrk go:golang-go protoc:protobuf-compiler \
		protoc-gen-go:golang-goprotobuf-dev \
		protoc-gen-grpc-gateway:golang-grpc-gateway curl:curl jq:jq \
		pgrep:procps cmake:cmake; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null || missing+=("$pkg")
	done
	[ -d /usr/share/gocode/src/github.com/grpc-ecosystem/grpc-gateway/runtime ] ||
		missing+=(golang-github-grpc-ecosystem-grpc-gateway-dev)
	[ -d /usr/share/gocode/src/google.golang.org/grpc ] || missing+=(golang-google-grpc-dev)
	[ -d /usr/share/gocode/src/google.golang.org/genproto/googleapis/api/annotations ] ||
		missing+=(golang-google-genproto-dev)
	[ -f "$googleapis/google/api/annotations.proto" ] ||
		missing+=(golang-github-gogo-googleapis-dev)
	if [ ${#missing[@]} -gt 0 ]; then
		die "missing tools; install them with:
  apt-get install -y $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
	fi
}

build_services() {
	log "building the services (Release, $build)"
	mkdir -p "$build"
	cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$build/../stack-configure.log" 2>&1 ||
		{ cat "$build/../stack-configure.log" >&2; die "cmake configure failed"; }
	cmake --build "$build" -j "$(nproc)" --target estore-token estore-account \
		estore-catalog estore-auth estore-edge estore-health >"$build/../stack-build.log" 2>&1 ||
		{ tail -40 "$build/../stack-build.log" >&2; die "build failed"; }
}

# protoc-gen-go 1.3.5 takes each import's go_package, and protoc's
# well-known types name the newer protobuf module Debian does not ship for
# GOPATH builds: map them to the packages grpc-gateway 1.6 itself uses.
build_gateway() {
	local inc=$gw_build/proto src=$gw_build/go/src gen m
	local proto=estore/account/v1/account.proto
	gen=$src/estore/account/v1
	m=Mgoogle/protobuf/empty.proto=github.com/golang/protobuf/ptypes/empty
	m+=,Mgoogle/protobuf/timestamp.proto=github.com/golang/protobuf/ptypes/timestamp
	m+=,Mgoogle/protobuf/field_mask.proto=google.golang.org/genproto/protobuf/field_mask
	m+=,Mgoogle/api/annotations.proto=google.golang.org/genproto/googleapis/api/annotations
	peer_proto "$inc" "$proto"
	mkdir -p "$src/estorebench/gateway"
	if stale "$gen/account.pb.gw.go" "$inc/$proto"; then
		log "generating the gateway from $proto (protoc-gen-go, protoc-gen-grpc-gateway)"
		rm -rf "$gen"
		protoc -I"$inc" -I"$googleapis" --go_out=plugins=grpc,"$m":"$src" \
			--grpc-gateway_out=logtostderr=true,"$m":"$src" "$proto"
	fi
	cp -p "$bench_dir/gateway/main.go" "$src/estorebench/gateway/main.go"
	go_env "$gw_build/go"
	if stale "$gw_build/gateway" "$src/estorebench/gateway/main.go" "$gen/account.pb.gw.go"; then
		log "building the gateway (grpc-gateway $(dpkg-query -W -f='${Version}' \
			golang-github-grpc-ecosystem-grpc-gateway-dev 2>/dev/null || echo '?'), offline)"
		"${go_env_cmd[@]}" go build -o "$gw_build/gateway" estorebench/gateway
	fi
}

# ---- processes -------------------------------------------------------------

gw_pid=
hold_pid=
cleanup() {
	local pid
	for pid in $hold_pid $gw_pid; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	stack_stop
	if [ "$keep" = 1 ]; then log "state, logs and raw output kept in $state"; else rm -rf "$state"; fi
}

start_gateway() {
	local i
	"$gw_build/gateway" -listen 127.0.0.1:0 -backend "127.0.0.1:$ACCOUNT_API_PORT" \
		>"$state/gateway.stdout" 2>"$state/gateway.stderr" &
	gw_pid=$!
	for ((i = 0; i < 100; i++)); do
		gw_port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$state/gateway.stdout")
		[ -n "$gw_port" ] && return 0
		kill -0 "$gw_pid" 2>/dev/null || { cat "$state/gateway.stderr" >&2; die "the gateway exited"; }
		sleep 0.1
	done
	die "the gateway did not print 'listening on' within 10 s"
}

# One account, registered and logged in through the edge; its access
# token goes to wrk through the environment.
sign_in() {
	local edge=http://127.0.0.1:$EDGE_PORT json='Content-Type: application/json' pair
	local who='{"email": "bench@example.com", "password": "correct horse battery staple"'
	curl -sf -m 10 "$edge/v1/auth/register" -H "$json" -d "$who, \"displayName\": \"Bench\"}" \
		>/dev/null || die "register through the edge failed"
	pair=$(curl -sf -m 10 "$edge/v1/auth/login" -H "$json" -d "$who}") ||
		die "login through the edge failed"
	BENCH_TOKEN=$(jq -er .accessToken <<<"$pair") || die "no accessToken in the login reply"
	export BENCH_TOKEN
}

# Both proxies must answer the same document before anything is measured.
check_same_answer() {
	local a b
	a=$(curl -sf -m 10 "http://127.0.0.1:$EDGE_PORT/v1/accounts/me" \
		-H "Authorization: Bearer $BENCH_TOKEN" | jq -S .) || die "edge GET /v1/accounts/me failed"
	b=$(curl -sf -m 10 "http://127.0.0.1:$gw_port/v1/accounts/me" \
		-H "Authorization: Bearer $BENCH_TOKEN" | jq -S .) || die "gateway GET /v1/accounts/me failed"
	printf '%s\n' "$a" >"$state/me.edge.json"
	printf '%s\n' "$b" >"$state/me.gateway.json"
	if [ "$a" != "$b" ]; then
		log "WARNING: the edge and the gateway answer differently:"
		diff "$state/me.edge.json" "$state/me.gateway.json" >&2 || true
	fi
}

# ---- measurements ----------------------------------------------------------

# CPU ticks of one group of processes: a service, or PostgreSQL's
# postmaster with its backends (the account service's pooled connections
# live as long as the run, so the sum over the children present at the end
# minus that at the start is their work in between).
group_ticks() { # name
	case $1 in
	postgres) cpu_ticks "${stack_pid[postgres]} $(pgrep -P "${stack_pid[postgres]}" | tr '\n' ' ')" ;;
	gateway) cpu_ticks "$gw_pid" ;;
	*) cpu_ticks "${stack_pid[$1]}" ;;
	esac
}

machine_ticks() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

groups=(edge gateway account token redis postgres auth)

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

# measure SUBJECT URL [wrk args...]: a warm-up, then the measured run with
# the CPU of every group read around it; recorded as SUBJECT@round.
measure() {
	local name=$1 subject=$1@$round url=$2 out=$state/r$round-$1.wrk g m0 m1 load
	shift 2
	local -a args=(-t "$threads" -c "$connections" --latency "$@" "$url")
	local -A t0=() t1=()
	timeout $((warmup + 30)) wrk -d "$warmup" "${args[@]}" >"$state/r$round-$name.warmup" 2>&1 ||
		die "$subject: warm-up wrk failed: $(cat "$state/r$round-$name.warmup")"
	for g in "${groups[@]}"; do t0[$g]=$(group_ticks "$g"); done
	m0=$(machine_ticks)
	local TIMEFORMAT='%U %S'
	{ time timeout $((duration + 30)) wrk -d "$duration" "${args[@]}" >"$out" 2>&1; } 2>"$state/r$round-$name.time" ||
		die "$subject: wrk failed: $(cat "$out")"
	m1=$(machine_ticks)
	for g in "${groups[@]}"; do t1[$g]=$(group_ticks "$g"); done
	read -r load _ </proc/loadavg
	record "$subject" load1 "$load"
	for g in "${groups[@]}"; do
		record "$subject" "ticks_$g" $((t1[$g] - t0[$g]))
	done
	record "$subject" ticks_machine $((m1 - m0))
	record "$subject" wrk_cpu_s "$(awk '{ print $1 + $2 }' "$state/r$round-$name.time")"
	/usr/bin/python3 "$bench_dir/report.py" wrk "$out" "$subject" >>"$results"
	log "  $subject: $(grep -E '^Requests/sec' "$out" | tr -s ' ')"
}

# RSS of a proxy holding idle_conns idle keep-alive connections, each
# after one request to PATH with the token.
measure_idle_rss() { # subject pid port path
	local subject=$1 pid=$2 port=$3 path=$4 fifo=$state/hold.in line i
	rm -f "$fifo"
	mkfifo "$fifo"
	/usr/bin/python3 "$bench_dir/hold.py" 127.0.0.1 "$port" "$idle_conns" "$path" 60 \
		<"$fifo" >"$state/$subject.hold" 2>&1 &
	hold_pid=$!
	exec {hold_fd}>"$fifo"
	for ((i = 0; i < 600; i++)); do
		line=$(head -1 "$state/$subject.hold" 2>/dev/null || true)
		[ -n "$line" ] && break
		kill -0 "$hold_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ "$line" = "open $idle_conns" ]; then
		sleep 1
		record "$subject" idle_rss_kb "$(status_kb "$pid" VmRSS)"
	else
		log "WARNING: $subject: $(cat "$state/$subject.hold")"
	fi
	exec {hold_fd}>&-
	wait "$hold_pid" 2>/dev/null || log "WARNING: $subject: hold.py: $(tail -1 "$state/$subject.hold")"
	hold_pid=
	record "$subject" closed_by_server "$(sed -n 's/^closed_by_server //p' "$state/$subject.hold")"
}

# The PIDs of a group, comma-separated (perf -p).
group_pids() { # name
	case $1 in
	postgres) echo "${stack_pid[postgres]} $(pgrep -P "${stack_pid[postgres]}")" | tr -s ' \n' ',' | sed 's/,$//' ;;
	gateway) echo "$gw_pid" ;;
	*) echo "${stack_pid[$1]}" ;;
	esac
}

# profile_path SUBJECT URL PROXY: two more wrk runs of `duration` seconds;
# during the first, perf stat counts syscalls, context switches and CPU of
# each process; during the second, perf record samples each one (call
# graphs by DWARF unwinding: Debian's libraries keep no frame pointers).
profile_path() {
	local subject=$1 url=$2 proxy=$3 g n
	local -a gs=("$proxy" account token redis postgres) perfs=()
	log "profiling $subject"
	for g in "${gs[@]}"; do
		perf stat -x, -o "$state/prof-$subject-$g.stat" \
			-e raw_syscalls:sys_enter,context-switches,task-clock \
			-p "$(group_pids "$g")" -- sleep "$duration" 2>/dev/null &
		perfs+=($!)
	done
	timeout $((duration + 30)) wrk -t "$threads" -c "$connections" -d "$duration" \
		-s "$bench_dir/bearer.lua" "$url" >"$state/prof-$subject.wrk" 2>&1 ||
		log "WARNING: $subject: wrk failed under perf stat"
	for n in "${perfs[@]}"; do wait "$n" || log "WARNING: perf stat exited with $?"; done
	perfs=()
	for g in "${gs[@]}"; do
		perf record -q -F 999 --call-graph dwarf,8192 -o "$state/prof-$subject-$g.data" \
			-p "$(group_pids "$g")" -- sleep "$duration" >/dev/null 2>&1 &
		perfs+=($!)
	done
	timeout $((duration + 30)) wrk -t "$threads" -c "$connections" -d "$duration" \
		-s "$bench_dir/bearer.lua" "$url" >"$state/prof-$subject.record.wrk" 2>&1 ||
		log "WARNING: $subject: wrk failed under perf record"
	for n in "${perfs[@]}"; do wait "$n" || log "WARNING: perf record exited with $?"; done
	{
		/usr/bin/python3 "$bench_dir/report.py" profile "$state" "$subject" "${gs[@]}"
		for g in "${gs[@]}"; do
			echo
			echo "$subject, $g: share of its samples by library, then functions with their callees"
			perf report -i "$state/prof-$subject-$g.data" --no-children --sort dso \
				--stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -8 || true
			perf report -i "$state/prof-$subject-$g.data" --children --sort sym \
				--stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30 || true
		done
	} >"$state/prof-$subject.txt"
	/usr/bin/python3 "$bench_dir/report.py" profile "$state" "$subject" "${gs[@]}" >>"$state/profile.txt"
}

main() {
	require_tools
	if ((profile)); then
		command -v perf >/dev/null || die "--profile needs perf (apt-get install linux-perf)"
	fi
	build_services
	build_gateway

	state=$(mktemp -d "${TMPDIR:-/tmp}/estore-bench-edge.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	results=$state/results.tsv
	: >"$results"

	local db redis token account auth edge
	read -r db redis token account auth edge < <(free_ports 6)
	export DB_HOST=127.0.0.1 DB_PORT=$db REDIS_HOST=127.0.0.1 REDIS_PORT=$redis
	export TOKEN_SERVICE_PORT=$token ACCOUNT_API_PORT=$account AUTH_SERVICE_PORT=$auth
	export EDGE_PORT=$edge LOG_LEVEL=warn
	# Rate limits stay on (each request still takes from its account's
	# bucket in Redis) but high enough never to refuse one here.
	export EDGE_RATE_ACCOUNT_PER_MIN=1000000 EDGE_RATE_LOGIN_PER_MIN=1000
	log "starting the stack in $state"
	stack_start "$state" "$build"
	start_gateway
	sign_in
	check_same_answer
	log "edge pid ${stack_pid[edge]} on :$EDGE_PORT, gateway pid $gw_pid on :$gw_port," \
		"estore-account pid ${stack_pid[account]}; load $(cut -d' ' -f1-3 /proc/loadavg)"
	record env load_before "$(cut -d' ' -f1 /proc/loadavg)"
	record edge rss_start_kb "$(status_kb "${stack_pid[edge]}" VmRSS)"

	local me=/v1/accounts/me lua=$bench_dir/bearer.lua
	for ((round = 1; round <= rounds; round++)); do
		log "round $round/$rounds"
		measure edge_healthz "http://127.0.0.1:$EDGE_PORT/healthz"
		if ((round % 2)); then
			measure edge_me "http://127.0.0.1:$EDGE_PORT$me" -s "$lua"
			measure gateway_me "http://127.0.0.1:$gw_port$me" -s "$lua"
		else
			measure gateway_me "http://127.0.0.1:$gw_port$me" -s "$lua"
			measure edge_me "http://127.0.0.1:$EDGE_PORT$me" -s "$lua"
		fi
	done

	if ((profile)); then
		profile_path edge_me "http://127.0.0.1:$EDGE_PORT$me" edge
		profile_path gateway_me "http://127.0.0.1:$gw_port$me" gateway
	fi

	log "RSS with $idle_conns idle keep-alive connections"
	measure_idle_rss edge_idle "${stack_pid[edge]}" "$EDGE_PORT" "$me"
	measure_idle_rss gateway_idle "$gw_pid" "$gw_port" "$me"
	log "RSS under wrk -c $idle_conns (3 s on /healthz)"
	timeout 60 wrk -t "$threads" -c "$idle_conns" -d 3 "http://127.0.0.1:$EDGE_PORT/healthz" \
		>"$state/edge_busy.wrk" 2>&1 || log "WARNING: wrk -c $idle_conns failed"
	/usr/bin/python3 "$bench_dir/report.py" wrk "$state/edge_busy.wrk" edge_busy >>"$results"
	record edge hwm_kb "$(status_kb "${stack_pid[edge]}" VmHWM)"
	record gateway hwm_kb "$(status_kb "$gw_pid" VmHWM)"

	{
		echo "estore $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') |" \
			"$(nproc) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |" \
			"$(uname -r) | $(wrk --version 2>&1 | awk 'NR == 1 { print $1, $2 }') |" \
			"grpc-gateway $(dpkg-query -W -f='${Version}' golang-github-grpc-ecosystem-grpc-gateway-dev 2>/dev/null || echo '?')," \
			"grpc-go $(dpkg-query -W -f='${Version}' golang-google-grpc-dev 2>/dev/null || echo '?'), $(go version | awk '{ print $3 }')"
		/usr/bin/python3 "$bench_dir/report.py" table "$results" "$clk_tck" \
			"wrk -t $threads -c $connections -d $duration (after $warmup s of warm-up); medians of $rounds round(s)" "$idle_conns"
		((profile == 0)) || cat "$state/profile.txt"
	} | tee "$state/report.txt"
}

main
