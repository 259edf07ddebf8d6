#!/usr/bin/env bash
# bench/rpc/run.sh - RPC benchmark: estore-echo against grpc-go, gRPC C++
# and nghttpd (the HTTP/2 ceiling), plus our client channel against
# grpc-go's client and the cost of one service-to-service hop.
#
#   bench/rpc/run.sh [--rounds N] [--duration S] [--client-concurrency N]
#                    [--no-client] [--no-hop] [--with-no-inline]
#
# Builds everything it runs (estore-echo from the repo in build-bench/, the
# bench programs and the peers under bench/.build/), then runs N interleaved
# rounds (estore, grpc-go, C++, nghttpd, hop, clients) and prints medians.
# --with-no-inline adds a row for estore-echo --no-inline (UnaryEcho on the
# worker pool instead of inline on the I/O threads).
# Every server listens on 127.0.0.1 on a free port, is restarted every
# round, and only the processes this script started are ever killed.
# Raw h2load output and results.tsv stay in bench/.build/results/<time>/.
# Missed targets are reported as FAIL; they do not fail the script.
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench_dir/../.." && pwd)
build=$root/bench/.build
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
build_estore_dir=$root/build-bench

rounds=5
duration=10
client_concurrency=64
do_client=1
do_hop=1
do_no_inline=0
jobs=$(nproc 2>/dev/null || echo 2)
clk_tck=$(getconf CLK_TCK)

# h2load: one client thread, 16 connections x 16 streams (the issue's load).
h2_threads=1
h2_conns=16
h2_streams=16
grpc_path=/estore.testing.v1.Echo/UnaryEcho
grpc_reply_bytes=12    # 5-byte prefix + EchoReply{message:"hello"}
nghttpd_reply_bytes=100

usage() {
	sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-2}"
}

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--rounds) rounds=${2:?}; shift 2 ;;
		--duration) duration=${2:?}; shift 2 ;;
		--client-concurrency) client_concurrency=${2:?}; shift 2 ;;
		--no-client) do_client=0; shift ;;
		--no-hop) do_hop=0; shift ;;
		--with-no-inline) do_no_inline=1; shift ;;
		-h|--help) usage 0 ;;
		*) printf 'run.sh: unknown argument %s\n' "$1" >&2; usage ;;
		esac
	done
	[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds expects a positive integer"
	[[ $duration =~ ^[1-9][0-9]*$ ]] || die "--duration expects whole seconds > 0"
	[[ $client_concurrency =~ ^[1-9][0-9]*$ ]] ||
		die "--client-concurrency expects a positive integer"
}

# ---- prerequisites ------------------------------------------------------

require_tools() {
	local missing=() pair cmd pkg
	# command:Debian package
	for pair in h2load:nghttp2-client nghttp:nghttp2-client \
		nghttpd:nghttp2-server go:golang-go protoc:protobuf-compiler \
		protoc-gen-go:golang-goprotobuf-dev \
		grpc_cpp_plugin:protobuf-compiler-grpc g++:g++ gcc:gcc \
		cmake:cmake pkg-config:pkg-config python3:python3 ss:iproute2 \
		timeout:coreutils; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null || missing+=("$pkg")
	done
	[ -d /usr/share/gocode/src/google.golang.org/grpc ] ||
		missing+=(golang-google-grpc-dev)
	pkg-config --exists grpc++ protobuf 2>/dev/null || missing+=(libgrpc++-dev)
	if [ ${#missing[@]} -gt 0 ]; then
		die "missing tools; install them with:
  apt-get install -y $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
	fi
}

# ---- builds --------------------------------------------------------------

build_estore() {
	log "building estore-echo (Release, $build_estore_dir)"
	cmake -S "$root" -B "$build_estore_dir" -DCMAKE_BUILD_TYPE=Release \
		>"$build/cmake-configure.log" 2>&1 ||
		{ cat "$build/cmake-configure.log" >&2; die "cmake configure failed"; }
	cmake --build "$build_estore_dir" --target estore-echo -j "$jobs" \
		>"$build/cmake-build.log" 2>&1 ||
		{ tail -40 "$build/cmake-build.log" >&2; die "estore-echo build failed"; }
	estore_echo=$build_estore_dir/tests/estore-echo
	estore_lib=$build_estore_dir/rpc/libestore_rpc.a
	if [ ! -x "$estore_echo" ] || [ ! -f "$estore_lib" ]; then
		die "estore-echo or libestore_rpc.a not where expected"
	fi
}

build_c_programs() {
	local gen=$root/generated/estore/testing/v1 prog
	local -a libs
	read -r -a libs <<<"$(pkg-config --libs libnghttp2 libprotobuf-c libevent libevent_pthreads)"
	mkdir -p "$build/bin"
	for prog in client_bench hop_server; do
		if stale "$build/bin/$prog" "$bench_dir/$prog.c" "$estore_lib" \
			"$gen/echo.pb-c.c" "$gen/echo.rpc.c" "$root/rpc/channel.h" \
			"$root/rpc/server.h"; then
			log "building $prog"
			gcc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra \
				-I"$root" -I"$root/generated" \
				"$bench_dir/$prog.c" "$gen/echo.pb-c.c" "$gen/echo.rpc.c" \
				"$estore_lib" "${libs[@]}" -pthread -o "$build/bin/$prog"
		fi
	done
}

# grpc-go 1.33 from Debian, offline, in GOPATH mode; protoc-gen-go 1.3.5
# writes the old-style code (plugins=grpc) it expects.
build_go_peers() {
	local gopath=$build/go inc proto
	local prog
	go_env "$gopath"
	mkdir -p "$gopath/src/estorebench/goserver" "$gopath/src/estorebench/goclient"
	inc=$build/peer-proto
	peer_proto "$inc" estore/testing/v1/echo.proto
	proto=$inc/estore/testing/v1/echo.proto
	if stale "$gopath/src/estore/testing/v1/echo.pb.go" "$proto"; then
		log "generating Go code for echo.proto"
		protoc -I"$inc" --go_out=plugins=grpc:"$gopath/src" \
			estore/testing/v1/echo.proto
	fi
	for prog in goserver goclient; do
		cp -p "$bench_dir/go/${prog#go}/main.go" "$gopath/src/estorebench/$prog/main.go"
		if stale "$build/bin/$prog" "$gopath/src/estorebench/$prog/main.go" \
			"$gopath/src/estore/testing/v1/echo.pb.go"; then
			log "building $prog (grpc-go)"
			"${go_env_cmd[@]}" go build -o "$build/bin/$prog" "estorebench/$prog"
		fi
	done
}

build_cpp_peer() {
	local dir=$build/cpp inc proto
	local -a flags
	mkdir -p "$dir/gen"
	inc=$build/peer-proto
	peer_proto "$inc" estore/testing/v1/echo.proto
	proto=$inc/estore/testing/v1/echo.proto
	if stale "$dir/gen/estore/testing/v1/echo.grpc.pb.cc" "$proto"; then
		log "generating C++ code for echo.proto"
		protoc -I"$inc" --cpp_out="$dir/gen" --grpc_out="$dir/gen" \
			--plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" \
			estore/testing/v1/echo.proto
	fi
	if stale "$build/bin/cpp_echo_server" "$bench_dir/cpp/echo_server.cc" \
		"$dir/gen/estore/testing/v1/echo.grpc.pb.cc"; then
		log "building cpp_echo_server (gRPC C++ callback API; ~15 s)"
		read -r -a flags <<<"$(pkg-config --cflags --libs grpc++ protobuf)"
		g++ -O2 -std=c++17 -I"$dir/gen" "$bench_dir/cpp/echo_server.cc" \
			"$dir/gen/estore/testing/v1/echo.pb.cc" \
			"$dir/gen/estore/testing/v1/echo.grpc.pb.cc" \
			"${flags[@]}" -pthread -o "$build/bin/cpp_echo_server"
	fi
}

# The request body: gRPC prefix (uncompressed, big-endian length) +
# EchoRequest{message: "hello"}; and nghttpd's 100-byte answer, served at
# the same path so every h2load command line is the same.
prepare_inputs() {
	printf '\x00\x00\x00\x00\x07\x0a\x05hello' >"$build/request.bin"
	[ "$(wc -c <"$build/request.bin")" -eq 12 ] || die "bad request.bin"
	mkdir -p "$build/htdocs/estore.testing.v1.Echo"
	head -c "$nghttpd_reply_bytes" /dev/zero | tr '\0' 'x' \
		>"$build/htdocs/estore.testing.v1.Echo/UnaryEcho"
}

# ---- processes -----------------------------------------------------------

started_pids=()

cleanup() {
	local pid
	for pid in "${started_pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${started_pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
}

# start_server NAME CMD... : starts CMD in the background, waits (10 s at
# most) for its "listening on HOST:PORT" line; sets server_pid/server_port.
start_server() {
	local name=$1 out=$run_dir/$1.stdout err=$run_dir/$1.stderr i
	shift
	"$@" >"$out" 2>"$err" &
	server_pid=$!
	started_pids+=("$server_pid")
	server_port=
	for ((i = 0; i < 100; i++)); do
		server_port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$out" | head -1)
		[ -n "$server_port" ] && return 0
		kill -0 "$server_pid" 2>/dev/null ||
			{ cat "$err" >&2; die "$name exited before listening"; }
		sleep 0.1
	done
	die "$name did not print 'listening on' within 10 s"
}

# nghttpd prints nothing useful: let it bind port 0, then ask ss which port
# our pid holds.
start_nghttpd() {
	local i
	nghttpd --no-tls -a 127.0.0.1 -d "$build/htdocs" 0 \
		>"$run_dir/nghttpd.stdout" 2>"$run_dir/nghttpd.stderr" &
	server_pid=$!
	started_pids+=("$server_pid")
	server_port=
	for ((i = 0; i < 100; i++)); do
		server_port=$(ss -Hltnp 2>/dev/null |
			sed -n "s/.*127\.0\.0\.1:\([0-9][0-9]*\) .*pid=$server_pid,.*/\1/p" | head -1)
		[ -n "$server_port" ] && return 0
		kill -0 "$server_pid" 2>/dev/null ||
			{ cat "$run_dir/nghttpd.stderr" >&2; die "nghttpd exited"; }
		sleep 0.1
	done
	die "nghttpd is not listening after 10 s"
}

# stop_server PID: SIGTERM, up to 5 s of grace, then SIGKILL.
stop_server() {
	local pid=$1 i p
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local keep=()
	for p in "${started_pids[@]}"; do
		[ "$p" = "$pid" ] || keep+=("$p")
	done
	started_pids=("${keep[@]}")
}

# Busy time of the whole machine (user, nice, system, irq, softirq), ticks.
machine_ticks() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

# CPU time of this shell's waited-for children so far, in us, into the
# variable named $1. `times` must run in this very shell (not in a $(...)
# subshell, whose children are not ours), hence the file.
children_us() {
	times >"$run_dir/.times"
	printf -v "$1" '%s' "$(awk 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) {
			split($i, p, "m"); sub(/s$/, "", p[2])
			t += p[1] * 60 + p[2]
		}
		printf "%.0f", t * 1e6 }' "$run_dir/.times")"
}

# ---- measurements --------------------------------------------------------

record() { # subject key value
	printf '%s\t%s\t%s\t%s\n' "$round" "$1" "$2" "$3" >>"$results"
}

# Sets h2args to the flags every h2load run shares: port conns streams.
h2load_args() {
	h2args=(-t "$h2_threads" -c "$2" -m "$3" -d "$build/request.bin"
		-H "content-type: application/grpc" -H "te: trailers"
		"http://127.0.0.1:$1$grpc_path")
}

# One gRPC call by nghttp: the server must answer grpc-status 0.
check_grpc() { # subject port
	local out
	out=$(timeout 10 nghttp -v -d "$build/request.bin" \
		-H "content-type: application/grpc" -H "te: trailers" \
		"http://127.0.0.1:$2$grpc_path" 2>&1 | tr -d '\0' || true)
	if ! grep -aq 'grpc-status: 0' <<<"$out"; then
		warn "$1: the probe call did not end with grpc-status 0"
		printf '%s\n' "$out" >"$run_dir/r$round-$1.probe"
		record "$1" check_failed 1
	fi
}

# h2load_summary FILE: "rps succeeded errors" from h2load's summary.
h2load_summary() {
	awk '
		/^finished in/ { rps = $4 }
		/^requests:/ { ok = $8; bad = $10 + $12 + $14 }
		/^status codes:/ { bad += $5 + $7 + $9 }
		END { printf "%s %s %s\n", rps, ok, bad }' "$1"
}

# measure SUBJECT PORT "PIDS" CONNS STREAMS REPLY_BYTES
# Warm-up (and correctness check: every reply carried REPLY_BYTES of
# DATA), then the measured -D run with per-request latencies; the servers'
# CPU time is read around the measured run only.
measure() {
	local subject=$1 port=$2 pids=$3 conns=$4 streams=$5 reply_bytes=$6
	local warm=$((conns * streams >= 16 ? 50000 : 5000))
	local wout=$run_dir/r$round-$subject.warmup lout=$run_dir/r$round-$subject.log
	local out=$run_dir/r$round-$subject.h2load
	local c0 c1 m0 m1 k0 k1 rps ok bad count mean p50 p99 data
	local -a h2args
	h2load_args "$port" "$conns" "$streams"
	timeout 120 h2load -n "$warm" "${h2args[@]}" >"$wout" 2>&1 ||
		warn "$subject: warm-up h2load exited with $?"
	read -r rps ok bad <<<"$(h2load_summary "$wout")"
	data=$(sed -n 's/^traffic:.*(\([0-9][0-9]*\)) data$/\1/p' "$wout")
	if [ "${ok:-0}" != "$warm" ] || [ "${bad:-1}" != 0 ] ||
		[ "${data:-0}" != $((warm * reply_bytes)) ]; then
		warn "$subject: warm-up check: $ok/$warm succeeded, $bad errors," \
			"$data DATA bytes (want $((warm * reply_bytes)))"
		record "$subject" check_failed 1
	fi

	# Besides the servers' CPU, note what everything else on the machine
	# (not the servers, not h2load) burnt meanwhile: other processes make
	# a run noisy, and the table shows it.
	m0=$(machine_ticks)
	children_us k0
	c0=$(cpu_ticks "$pids")
	timeout $((duration + 60)) h2load -D "$duration" --log-file="$lout" \
		"${h2args[@]}" >"$out" 2>&1 || warn "$subject: h2load exited with $?"
	c1=$(cpu_ticks "$pids")
	m1=$(machine_ticks)
	children_us k1
	read -r rps ok bad <<<"$(h2load_summary "$out")"
	count=0 mean=nan p50=nan p99=nan
	[ -f "$lout" ] &&
		read -r count mean p50 p99 <<<"$(python3 "$bench_dir/report.py" latency "$lout")"
	rm -f "$lout"
	[ "${count:-0}" -gt 0 ] || warn "$subject: h2load logged no latencies"
	if [ -z "$ok" ] || [ "$ok" -eq 0 ]; then
		warn "$subject: no successful request (see $out)"
		record "$subject" errors "${bad:-1}"
		return 0
	fi
	[ "$bad" -eq 0 ] || warn "$subject: $bad failed/errored/non-2xx requests (see $out)"
	record "$subject" rps "$rps"
	record "$subject" mean_us "$mean"
	record "$subject" p50_us "$p50"
	record "$subject" p99_us "$p99"
	record "$subject" errors "$bad"
	record "$subject" cpu_us_per_req \
		"$(awk -v t=$((c1 - c0)) -v hz="$clk_tck" -v n="$ok" 'BEGIN { printf "%.3f", t * 1e6 / hz / n }')"
	record "$subject" other_cpu_pct "$(awk -v m=$((m1 - m0)) -v s=$((c1 - c0)) \
		-v hz="$clk_tck" -v k=$((k1 - k0)) -v d="$duration" -v n="$(nproc)" \
		'BEGIN { o = ((m - s) / hz * 1e6 - k) / (d * n * 1e4); printf "%.1f", o < 0 ? 0 : o }')"
	log "  $subject: $rps req/s, mean $mean us, p99 $p99 us, $bad errors"
}

bench_estore() { # subject [estore-echo flags...]
	local subject=$1 rss0 rss1
	shift
	start_server "$subject" "$estore_echo" --listen 127.0.0.1:0 "$@"
	sleep 0.3
	rss0=$(status_kb "$server_pid" VmRSS)
	check_grpc "$subject" "$server_port"
	measure "$subject" "$server_port" "$server_pid" "$h2_conns" "$h2_streams" "$grpc_reply_bytes"
	record "$subject" hwm_kb "$(status_kb "$server_pid" VmHWM)"
	sleep 1
	rss1=$(status_kb "$server_pid" VmRSS)
	record "$subject" idle_rss_start_kb "$rss0"
	record "$subject" idle_rss_after_kb "$rss1"
	stop_server "$server_pid"
}

bench_peer() { # subject reply_bytes cmd...
	local subject=$1 bytes=$2
	shift 2
	if [ "$subject" = nghttpd ]; then
		start_nghttpd
	else
		start_server "$subject" "$@"
		check_grpc "$subject" "$server_port"
	fi
	measure "$subject" "$server_port" "$server_pid" "$h2_conns" "$h2_streams" "$bytes"
	record "$subject" hwm_kb "$(status_kb "$server_pid" VmHWM)"
	stop_server "$server_pid"
}

# h2load -> hop_server -> estore-echo, against h2load -> estore-echo.
bench_hop() {
	local echo_pid echo_port hop_pid hop_port
	start_server hop-downstream "$estore_echo" --listen 127.0.0.1:0
	echo_pid=$server_pid echo_port=$server_port
	start_server hop "$build/bin/hop_server" --downstream "127.0.0.1:$echo_port"
	hop_pid=$server_pid hop_port=$server_port
	check_grpc hop_c1 "$hop_port"
	measure direct_c1 "$echo_port" "$echo_pid" 1 1 "$grpc_reply_bytes"
	measure hop_c1 "$hop_port" "$hop_pid $echo_pid" 1 1 "$grpc_reply_bytes"
	measure hop_c16 "$hop_port" "$hop_pid $echo_pid" "$h2_conns" "$h2_streams" "$grpc_reply_bytes"
	stop_server "$hop_pid"
	stop_server "$echo_pid"
}

# client_run SUBJECT CMD...: parses "calls=.. failed=.. calls_per_s=..
# cpu_us_per_call=.." from the client's output.
client_run() {
	local subject=$1 out=$run_dir/r$round-$1.out line kv k v
	shift
	if ! timeout $((duration + 30)) "$@" >"$out" 2>&1; then
		warn "$subject: client failed (see $out)"
		record "$subject" run_failed 1
	fi
	line=$(grep '^calls=' "$out" | tail -1 || true)
	[ -n "$line" ] || return 0
	for kv in $line; do
		k=${kv%%=*} v=${kv#*=}
		case "$k" in
		calls_per_s|cpu_us_per_call|failed) record "$subject" "$k" "$v" ;;
		esac
	done
	log "  $subject: $line"
}

# Our channel and grpc-go's client against the same grpc-go server; the
# order alternates between rounds.
bench_clients() {
	local target
	start_server goserver-for-clients "$build/bin/goserver" --listen 127.0.0.1:0
	target=127.0.0.1:$server_port
	local -a ours=(client_estore "$build/bin/client_bench" --target "$target"
		--concurrency "$client_concurrency" --duration "$duration" --warmup 1)
	local -a theirs=(client_go "$build/bin/goclient" -target "$target"
		-concurrency "$client_concurrency" -duration "$duration" -warmup 1)
	if ((round % 2)); then
		client_run "${ours[@]}"
		client_run "${theirs[@]}"
	else
		client_run "${theirs[@]}"
		client_run "${ours[@]}"
	fi
	stop_server "$server_pid"
}

print_environment() {
	local cpu
	cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	echo "estore $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" \
		"| $(nproc) CPUs: ${cpu:-unknown} | $(uname -r)"
	echo "h2load $(h2load --version | awk '{ print $NF }')" \
		"| grpc-go $(dpkg-query -W -f='${Version}' golang-google-grpc-dev 2>/dev/null || echo '?')" \
		"| $(go version | awk '{ print $3 }')" \
		"| gRPC C++ $(pkg-config --modversion grpc++)" \
		"| nghttpd $(dpkg-query -W -f='${Version}' nghttp2-server 2>/dev/null || echo '?')"
}

main() {
	parse_args "$@"
	require_tools
	mkdir -p "$build"
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	build_estore
	build_c_programs
	build_go_peers
	build_cpp_peer
	prepare_inputs

	run_dir=$build/results/$(date +%Y%m%d-%H%M%S)
	mkdir -p "$run_dir"
	results=$run_dir/results.tsv
	: >"$results"

	local title
	title="UnaryEcho \"hello\": h2load -t $h2_threads -c $h2_conns -m $h2_streams -D $duration (after a warm-up), $rounds round(s), interleaved"
	for ((round = 1; round <= rounds; round++)); do
		log "round $round/$rounds"
		bench_estore estore
		((do_no_inline == 0)) || bench_estore estore_noinline --no-inline
		bench_peer go "$grpc_reply_bytes" "$build/bin/goserver" --listen 127.0.0.1:0
		bench_peer cpp "$grpc_reply_bytes" "$build/bin/cpp_echo_server" --listen 127.0.0.1:0
		bench_peer nghttpd "$nghttpd_reply_bytes"
		((do_hop == 0)) || bench_hop
		((do_client == 0)) || bench_clients
	done

	{
		print_environment
		python3 "$bench_dir/report.py" table "$results" "$title"
		if ((do_client)); then
			echo "(clients: $client_concurrency calls outstanding, ${duration} s after 1 s of warm-up," \
				"CPU = whole client process, getrusage)"
		fi
		echo "raw output: $run_dir"
	} | tee "$run_dir/report.txt"
}

main "$@"
