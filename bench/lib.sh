# shellcheck shell=bash
# bench/lib.sh - shell shared by the bench scripts (sourced; they run under
# `set -euo pipefail`):
#
#   stale OUT IN...          true when OUT is missing or older than an IN
#   cpu_ticks "PID..."       utime+stime of every thread of those PIDs
#   status_kb PID KEY        a kB line of /proc/PID/status (VmRSS, VmHWM)
#   go_env GOPATH_DIR        sets go_env_cmd: `env ...` for an offline
#                            GOPATH-mode build against Debian's Go packages
#   peer_proto OUT PROTO...  copies of our protos without the access options
#   free_ports N             N ports the kernel hands out now
#   stack_start STATE BUILD  a private stack (scripts/stack.sh) on the ports
#   stack_stop               stops it (call from the EXIT trap)

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

stale() {
	local out=$1 f
	shift
	[ -e "$out" ] || return 0
	for f in "$@"; do
		[ "$f" -nt "$out" ] && return 0
	done
	return 1
}

# In clock ticks (getconf CLK_TCK); threads are included in a process's
# own figures.
cpu_ticks() {
	local pid sum=0 rest
	local -a f
	for pid in $1; do
		rest=$(<"/proc/$pid/stat")
		rest=${rest##*) }           # skip "pid (comm) ", comm may hold spaces
		read -r -a f <<<"$rest"
		sum=$((sum + f[11] + f[12])) # fields 14 and 15 of proc(5)
	done
	echo "$sum"
}

status_kb() {
	awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

# Debian packages its Go libraries for GOPATH mode under /usr/share/gocode;
# with modules off and no proxy the build never reaches the network.
# shellcheck disable=SC2034 # go_env_cmd is what the caller runs
go_env() {
	go_env_cmd=(env GO111MODULE=off GOPATH="$1:/usr/share/gocode"
		GOCACHE="$1/cache" GOFLAGS= GOPROXY=off)
}

# The peers get our protos without the access-rule options: they change
# nothing on the wire, and would need Go and C++ code for
# estore/api/v1/options.proto (and, in Go, the newer protobuf API that
# Debian's protoc-gen-go 1.3.5 maps descriptor.proto to). PROTO paths are
# relative to proto/; the copies go under OUT, the include root.
peer_proto() {
	local out=$1 p
	shift
	for p in "$@"; do
		mkdir -p "$out/$(dirname "$p")"
		if stale "$out/$p" "$bench_root/proto/$p"; then
			sed -e '/^import "estore\/api\/v1\/options.proto";/d' \
				-e '/option (estore\.api\.v1\.[a-z_]*)/d' \
				"$bench_root/proto/$p" >"$out/$p"
		fi
	done
}

free_ports() {
	/usr/bin/python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# stack_start STATE BUILD: PostgreSQL, Redis, token, account, auth and the
# edge through scripts/stack.sh, in the foreground loop of `./estore up`
# run in the background, with the state folder STATE and the services
# built in BUILD. Ports and settings come from the caller's environment
# (DB_PORT, REDIS_PORT, TOKEN_SERVICE_PORT, ...; free_ports gives fresh
# ones, stack_up refuses any taken since). Waits up to 90 s more than
# ESTORE_START_TIMEOUT (stack_up's wait for each component, default 30 s)
# for everything to be up; sets stack_up_pid and stack_pid[NAME] (postgres,
# redis, token, account, catalog, auth, edge).
stack_up_pid=
declare -gA stack_pid=()
stack_start() {
	local state=$1 build=$2 i n
	local wait_s=$((${ESTORE_START_TIMEOUT:-30} + 90))
	: >"$state/bench.env"
	(
		export ESTORE_STATE=$state ESTORE_BUILD_DIR=$build ESTORE_ENV_FILE=$state/bench.env
		# shellcheck source=scripts/stack.sh
		source "$bench_root/scripts/stack.sh"
		stack_up
	) >"$state/up.log" 2>&1 &
	stack_up_pid=$!
	for ((i = 0; i < wait_s * 2; i++)); do
		grep -q '^estore: up:' "$state/up.log" && break
		if ! kill -0 "$stack_up_pid" 2>/dev/null; then
			cat "$state/up.log" >&2
			echo "bench: the stack did not start" >&2
			return 1
		fi
		sleep 0.5
	done
	if ! grep -q '^estore: up:' "$state/up.log"; then
		cat "$state/up.log" >&2
		echo "bench: the stack did not come up in $wait_s s" >&2
		return 1
	fi
	for n in postgres redis token account catalog auth edge; do
		stack_pid[$n]=$(cat "$state/pids/$n.pid")
	done
}

# SIGTERM to the foreground loop, which stops every component in order;
# then whatever of the PIDs taken at start still runs what was started
# there is stopped here (once, a stack of a bench run outlived its loop).
stack_stop() {
	local n pid i
	if [ -n "$stack_up_pid" ] && kill -0 "$stack_up_pid" 2>/dev/null; then
		kill -TERM "$stack_up_pid" 2>/dev/null || true
		wait "$stack_up_pid" 2>/dev/null || true
	fi
	stack_up_pid=
	for n in "${!stack_pid[@]}"; do
		pid=${stack_pid[$n]}
		_stack_still_ours "$n" "$pid" || continue
		echo "bench: $n (pid $pid) is still running; stopping it" >&2
		if [ "$n" = postgres ]; then kill -INT "$pid"; else kill -TERM "$pid"; fi 2>/dev/null || true
		for ((i = 0; i < 150; i++)); do
			_stack_still_ours "$n" "$pid" || break
			sleep 0.1
		done
		! _stack_still_ours "$n" "$pid" || kill -KILL "$pid" 2>/dev/null || true
	done
	stack_pid=()
}

# PID alive and running the program stack_start started as NAME.
_stack_still_ours() { # name pid
	local a0=
	{ IFS= read -r -d '' a0 <"/proc/$2/cmdline"; } 2>/dev/null || true
	a0=${a0%% *}
	a0=${a0##*/}
	case $1 in
	postgres) [ "$a0" = postgres ] ;;
	redis) [ "$a0" = redis-server ] ;;
	*) [ "$a0" = "estore-$1" ] ;;
	esac
}
