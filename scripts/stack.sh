# shellcheck shell=bash
# scripts/stack.sh - the local stack behind `./estore up|down|status`.
# Sourced by ./estore (which runs under `set -euo pipefail`); defines
#
#   stack_up      start private PostgreSQL 15 and Redis on loopback, then
#                 every built service in dependency order; wait for SERVING;
#                 print what listens where; stay in the foreground until
#                 Ctrl-C / SIGTERM / `./estore down`, then stop everything
#                 in reverse order.
#   stack_down    stop a stack started from another terminal.
#   stack_status  list what runs: name, pid, address, health.
#
# State lives in ${ESTORE_STATE:-<repo>/.estore} and is kept between runs:
#   pg/data/            PostgreSQL cluster (initdb on the first run)
#   redis/              Redis config (0600) and its dump.rdb
#   keys/               ES256 signing keys, <kid>.pem (generated once)
#   secrets.env         generated secrets, mode 0600 (never printed)
#   logs/<name>.log     service logs, one JSON object a line
#   logs/postgres/      PostgreSQL's own log (postgres.json, JSON lines)
#   logs/redis.log      Redis's log, turned into JSON lines by jq
#   pids/<name>.pid     what we started; stop/down signal only PIDs whose
#                       /proc/PID/cmdline matches what we started
#   py/                 Python gRPC health stubs (probe fallback)
#
# Configuration: the environment, then ${ESTORE_ENV_FILE:-<repo>/.env}
# (the environment wins), then secrets.env, then the defaults below. The
# variable names are the services' own (see .env.example).

_stack_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_stack_pg_bin=/usr/lib/postgresql/15/bin
# Dependency order: account, auth and catalog validate tokens through
# token; auth calls account; the edge proxy fronts them all.
_stack_services=(token account catalog auth edge)
declare -gA _stack_port_var=([token]=TOKEN_SERVICE_PORT [account]=ACCOUNT_API_PORT [catalog]=CATALOG_SERVICE_PORT [auth]=AUTH_SERVICE_PORT [edge]=EDGE_PORT)
declare -gA _stack_host_var=([token]=TOKEN_SERVICE_HOST [account]=ACCOUNT_API_HOST [catalog]=CATALOG_SERVICE_HOST [auth]=AUTH_SERVICE_HOST [edge]=EDGE_HOST)
declare -gA _stack_port_def=([token]=50052 [account]=50051 [catalog]=50054 [auth]=50053 [edge]=8080)

_stack_say() { echo "estore: $*"; }
_stack_err() { echo "estore: $*" >&2; }

# ---- configuration ---------------------------------------------------------

# Reads KEY=VALUE lines like services/common/config.c does ('#' comments,
# optional "export ", optional single or double quotes) and exports the
# keys that are not already set. Values are never echoed.
_stack_load_env_file() { # file
	local file=$1 line key value n=0
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		line=${line%$'\r'}
		line=${line#"${line%%[![:space:]]*}"}
		case $line in '' | '#'*) continue ;; esac
		if [[ $line =~ ^export[[:space:]]+(.*)$ ]]; then line=${BASH_REMATCH[1]}; fi
		if ! [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=(.*)$ ]]; then
			_stack_err "$file:$n: expected KEY=VALUE"
			return 1
		fi
		key=${BASH_REMATCH[1]}
		value=${BASH_REMATCH[2]}
		value=${value#"${value%%[![:space:]]*}"}
		value=${value%"${value##*[![:space:]]}"}
		if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
			value=${BASH_REMATCH[1]}
		fi
		if [ -z "${!key+x}" ]; then
			export "$key=$value"
		fi
	done <"$file"
}

# Appends KEY=VALUE to secrets.env (0600) and exports it.
_stack_add_secret() { # key value
	(umask 077 && printf '%s=%s\n' "$1" "$2" >>"$_stack_state/secrets.env")
	export "$1=$2"
}

_stack_config() {
	_stack_state=${ESTORE_STATE:-$_stack_repo/.estore}
	mkdir -p "$_stack_state"
	_stack_state=$(cd "$_stack_state" && pwd)
	local envfile=${ESTORE_ENV_FILE:-$_stack_repo/.env}
	if [ -n "${ESTORE_ENV_FILE:-}" ] && [ ! -f "$envfile" ]; then
		_stack_err "ESTORE_ENV_FILE: $envfile does not exist"
		return 1
	fi
	if [ -f "$envfile" ]; then
		_stack_load_env_file "$envfile"
		# The services read the same file themselves; point them at it
		# whatever their working directory.
		export ESTORE_ENV_FILE=$envfile
	fi
	if [ -f "$_stack_state/secrets.env" ]; then
		_stack_load_env_file "$_stack_state/secrets.env"
	fi

	# Ports that do not clash with a system PostgreSQL or Redis.
	export DB_HOST=${DB_HOST:-127.0.0.1} DB_PORT=${DB_PORT:-15432}
	export DB_USER=${DB_USER:-estore} DB_NAME=${DB_NAME:-estore}
	export REDIS_HOST=${REDIS_HOST:-127.0.0.1} REDIS_PORT=${REDIS_PORT:-16379}
	export LISTEN_HOST=${LISTEN_HOST:-127.0.0.1}
	export LOG_LEVEL=${LOG_LEVEL:-info}
	# Everything runs on this machine: auth believes the edge (a local
	# caller) about who the client is, for its per-address throttle.
	export AUTH_TRUSTED_PROXIES=${AUTH_TRUSTED_PROXIES:-127.0.0.1/32,::1/128}
	export TOKEN_KEY_DIR=${TOKEN_KEY_DIR:-$_stack_state/keys}
	local s
	for s in "${_stack_services[@]}"; do
		export "${_stack_port_var[$s]}=${!_stack_port_var[$s]:-${_stack_port_def[$s]}}"
		export "${_stack_host_var[$s]}=${!_stack_host_var[$s]:-127.0.0.1}"
	done
	_stack_build=${ESTORE_BUILD_DIR:-$_stack_repo/build}
	_stack_stop_timeout=${ESTORE_STOP_TIMEOUT:-15}
	_stack_start_timeout=${ESTORE_START_TIMEOUT:-30}
	_stack_pids=$_stack_state/pids
	_stack_logs=$_stack_state/logs
}

# Our private instances only make sense on this machine; another DB_HOST
# or REDIS_HOST means an external server the user runs.
_stack_is_local() { case $1 in 127.0.0.1 | localhost | ::1) return 0 ;; esac; return 1; }

# ---- processes ---------------------------------------------------------------

# True while the process exists and is not a zombie. (A process in the
# middle of an exec can show an empty cmdline for a moment, so liveness
# never goes by argv[0].)
_stack_alive() { # pid
	local line
	{
		while IFS= read -r line; do
			if [[ $line == State:* ]]; then
				[[ $line =~ ^State:[[:space:]]*Z ]] && return 1
				return 0
			fi
		done <"/proc/$1/status"
	} 2>/dev/null
	return 1
}

# argv[0] of a live, non-zombie process, or nothing. Builtins only: the
# foreground loop of stack_up runs this for every component every second,
# and forking sed/tr/head there cost a tenth of a 2-core machine.
_stack_argv0() { # pid
	local pid=$1 line a0=
	{
		while IFS= read -r line; do
			if [[ $line == State:* ]]; then
				[[ $line =~ ^State:[[:space:]]*Z ]] && return 0
				break
			fi
		done <"/proc/$pid/status"
		IFS= read -r -d '' a0 <"/proc/$pid/cmdline" || true
	} 2>/dev/null || return 0
	[ -z "$a0" ] || printf '%s\n' "$a0"
}

# The PID from pids/<name>.pid when that process is alive and still runs
# what we started there (a stale file may name a recycled PID): the
# basename of its argv[0] is postgres, redis-server, bash (./estore up
# itself, with "estore" in its arguments) or estore-<name>.
_stack_live_pid() { # name
	local f=$_stack_pids/$1.pid pid= a0 expected
	local -a args
	[ -f "$f" ] || return 1
	{ IFS= read -r pid <"$f"; } 2>/dev/null || true
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	a0=$(_stack_argv0 "$pid")
	a0=${a0%% *}
	a0=${a0##*/}
	case $1 in
	postgres) expected=postgres ;;
	redis) expected=redis-server ;;
	up) expected=bash ;;
	*) expected=estore-$1 ;;
	esac
	[ -n "$a0" ] && [ "$a0" = "$expected" ] || return 1
	if [ "$1" = up ]; then
		{ mapfile -d '' args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
		[[ ${args[*]} == *estore* ]] || return 1
	fi
	echo "$pid"
}

_stack_wait_gone() { # pid seconds
	local i n=$(($2 * 10))
	for ((i = 0; i < n; i++)); do
		_stack_alive "$1" || return 0
		sleep 0.1
	done
	! _stack_alive "$1"
}

# Stops one component by its verified PID: the polite signal, then harder
# ones after the timeout. Removes its pid file.
_stack_stop_one() { # name
	local name=$1 pid sig
	pid=$(_stack_live_pid "$name") || { rm -f "$_stack_pids/$name.pid" "$_stack_pids/$name.addr"; return 0; }
	case $name in
	postgres) sig=INT ;; # fast shutdown: clients disconnected, clean checkpoint
	*) sig=TERM ;;
	esac
	_stack_say "stopping $name (pid $pid)"
	kill -s "$sig" "$pid" 2>/dev/null || true
	if ! _stack_wait_gone "$pid" "$_stack_stop_timeout"; then
		if [ "$name" = postgres ]; then
			_stack_err "postgres did not stop in ${_stack_stop_timeout}s; immediate shutdown"
			kill -s QUIT "$pid" 2>/dev/null || true
			_stack_wait_gone "$pid" 5 || true
		fi
		if _stack_alive "$pid"; then
			_stack_err "$name (pid $pid) did not stop in ${_stack_stop_timeout}s; killing it"
			kill -s KILL "$pid" 2>/dev/null || true
			_stack_wait_gone "$pid" 5 || true
		fi
	fi
	wait "$pid" 2>/dev/null || true # reap when it is our child
	rm -f "$_stack_pids/$name.pid" "$_stack_pids/$name.addr"
}

_stack_stop_all() {
	local i s
	for ((i = ${#_stack_services[@]} - 1; i >= 0; i--)); do
		s=${_stack_services[$i]}
		_stack_stop_one "$s"
	done
	_stack_stop_one redis
	_stack_stop_one postgres
}

_stack_port_in_use() { # port
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_stack_record() { # name pid address
	echo "$2" >"$_stack_pids/$1.pid"
	echo "$3" >"$_stack_pids/$1.addr"
}

_stack_log_tail() { # file
	if [ -f "$1" ]; then tail -n 25 -- "$1" | sed 's/^/    /' >&2; fi
}

# ---- PostgreSQL --------------------------------------------------------------

# initdb refuses root: when root, PostgreSQL runs as `nobody`. If nobody
# cannot traverse the path to the state folder (a repo under /root), it
# gets CAP_DAC_READ_SEARCH (read and traverse, no write) as an ambient
# capability instead of us changing anyone's permissions.
_stack_pg_user=()
_stack_pg_setup_user() {
	_stack_pg_user=()
	[ "$(id -u)" -eq 0 ] || return 0
	_stack_pg_user=(setpriv --reuid nobody --regid nogroup --clear-groups)
	if ! "${_stack_pg_user[@]}" stat -- "$_stack_state/." >/dev/null 2>&1; then
		_stack_pg_user+=(--inh-caps +dac_read_search --ambient-caps +dac_read_search)
		if ! "${_stack_pg_user[@]}" stat -- "$_stack_state/." >/dev/null 2>&1; then
			_stack_err "PostgreSQL runs as 'nobody' and cannot reach $_stack_state;"
			_stack_err "set ESTORE_STATE to a directory under /var/tmp, or run as a normal user"
			return 1
		fi
	fi
}

_stack_pg_chown() { # paths...
	[ "$(id -u)" -eq 0 ] || return 0
	chown nobody:nogroup "$@"
}

_stack_pg_init() {
	local pg=$_stack_state/pg data=$_stack_state/pg/data
	# Marked only after initdb succeeded: an interrupted first run starts
	# over instead of leaving half a cluster behind.
	[ -f "$pg/initialised" ] && [ -f "$data/PG_VERSION" ] && return 0
	if [ -z "${DB_PASSWORD:-}" ]; then
		_stack_add_secret DB_PASSWORD "$(openssl rand -hex 24)"
		_stack_say "generated DB_PASSWORD into $_stack_state/secrets.env"
	fi
	_stack_say "initialising PostgreSQL in $data (first run)"
	rm -rf "$pg"
	mkdir -m 700 "$pg" || return 1
	_stack_pg_chown "$pg" || return 1
	local pw=$pg/pwfile
	(umask 077 && printf '%s\n' "$DB_PASSWORD" >"$pw") || return 1
	_stack_pg_chown "$pw" || return 1
	local locale=C.UTF-8
	locale -a 2>/dev/null | grep -qix 'c.utf-\?8' || locale=C
	# Password auth (SCRAM) on TCP; no Unix socket at all (see start).
	if ! (cd "$pg" && "${_stack_pg_user[@]}" "$_stack_pg_bin/initdb" -D "$data" \
		-U "$DB_USER" --pwfile="$pw" --auth-host=scram-sha-256 --auth-local=peer \
		-E UTF8 --locale="$locale" >"$_stack_logs/initdb.log" 2>&1); then
		rm -f "$pw"
		_stack_err "initdb failed; $_stack_logs/initdb.log:"
		_stack_log_tail "$_stack_logs/initdb.log"
		rm -rf "$data"
		return 1
	fi
	rm -f "$pw"
	touch "$pg/initialised"
}

# Runs psql over TCP with the password from a 0600 passfile (never on a
# command line or in the environment of other processes).
_stack_psql() { # db, psql args...
	local db=$1; shift
	local pass=$_stack_state/pg/pgpass esc=${DB_PASSWORD//\\/\\\\}
	esc=${esc//:/\\:}
	(umask 077 && printf '127.0.0.1:%s:*:%s:%s\n' "$DB_PORT" "$DB_USER" "$esc" >"$pass")
	local rc=0
	PGPASSFILE=$pass PGCONNECT_TIMEOUT=5 "$_stack_pg_bin/psql" -X -q -At -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$DB_PORT" -U "$DB_USER" -d "$db" "$@" || rc=$?
	rm -f "$pass"
	return $rc
}

_stack_pg_ready() { # pid
	local data=$_stack_state/pg/data
	_stack_alive "$1" || return 2
	[ "$(sed -n 8p "$data/postmaster.pid" 2>/dev/null | tr -d ' ')" = ready ] || return 1
	_stack_port_in_use "$DB_PORT"
}

_stack_pg_start() {
	local data=$_stack_state/pg/data pid i rc
	if ! _stack_is_local "$DB_HOST"; then
		_stack_say "DB_HOST=$DB_HOST: using that PostgreSQL, not starting one"
		return 0
	fi
	_stack_pg_setup_user || return 1
	_stack_pg_init || return 1
	mkdir -p "$_stack_logs/postgres"
	_stack_pg_chown "$_stack_logs/postgres" || return 1
	# JSON lines through the logging collector (PostgreSQL 15 jsonlog);
	# stderr.log only holds what is said before the collector runs.
	setsid "${_stack_pg_user[@]}" "$_stack_pg_bin/postgres" -D "$data" \
		-p "$DB_PORT" -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
		-c logging_collector=on -c log_destination=jsonlog \
		-c log_directory="$_stack_logs/postgres" -c log_filename=postgres.log \
		-c log_rotation_age=0 -c log_rotation_size=0 \
		</dev/null >>"$_stack_logs/postgres/stderr.log" 2>&1 &
	pid=$!
	_stack_record postgres "$pid" "127.0.0.1:$DB_PORT"
	for ((i = 0; i < _stack_start_timeout * 10; i++)); do
		rc=0
		_stack_pg_ready "$pid" || rc=$?
		[ $rc -eq 1 ] || break
		sleep 0.1
	done
	if [ $rc -ne 0 ]; then
		_stack_err "PostgreSQL did not start on 127.0.0.1:$DB_PORT:"
		_stack_log_tail "$_stack_logs/postgres/stderr.log"
		_stack_log_tail "$_stack_logs/postgres/postgres.json"
		return 1
	fi
	# The database the services migrate into; they create their schemas.
	local have
	have=$(_stack_psql postgres -v db="$DB_NAME" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'") || {
		_stack_err "cannot connect to PostgreSQL as $DB_USER (DB_PASSWORD changed since the first run? it is fixed at initdb)"
		return 1
	}
	if [ -z "$have" ]; then
		_stack_psql postgres -v db="$DB_NAME" <<<'CREATE DATABASE :"db"' || return 1
		_stack_say "created database $DB_NAME"
	fi
}

# ---- Redis -------------------------------------------------------------------

_stack_redis_cli() { # args...
	REDISCLI_AUTH=${REDIS_PASSWORD:-} redis-cli --no-auth-warning -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}

_stack_redis_start() {
	local dir=$_stack_state/redis conf pid i ok=
	if ! _stack_is_local "$REDIS_HOST"; then
		_stack_say "REDIS_HOST=$REDIS_HOST: using that Redis, not starting one"
		return 0
	fi
	[ -d "$dir" ] || mkdir -m 700 "$dir" || return 1
	if [ -z "${REDIS_PASSWORD:-}" ]; then
		_stack_add_secret REDIS_PASSWORD "$(openssl rand -hex 24)"
		_stack_say "generated REDIS_PASSWORD into $_stack_state/secrets.env"
	fi
	# The password goes in a 0600 config file, not on the command line
	# (visible in ps to every user).
	conf=$dir/redis.conf
	# Redis config strings: backslash and double quote escaped.
	local qpw=${REDIS_PASSWORD//\\/\\\\} qdir=${dir//\\/\\\\}
	qpw=${qpw//\"/\\\"}
	qdir=${qdir//\"/\\\"}
	(umask 077 && cat >"$conf" <<EOF
port $REDIS_PORT
bind 127.0.0.1
protected-mode yes
daemonize no
dir "$qdir"
logfile ""
save 3600 1 300 100 60 10000
appendonly no
requirepass "$qpw"
EOF
	) || return 1
	# Redis writes its own line format; jq turns each line into the JSON
	# object every other log here is ("pid:role date level-char text").
	setsid redis-server "$conf" </dev/null > >(jq -Rc --unbuffered '
		(capture("^[0-9]+:[A-Z] [0-9]+ [A-Za-z]+ [0-9]+ [0-9:.]+ (?<lvl>[-.*#]) (?<msg>.*)$")
		 // {lvl: "*", msg: .}) as $l
		| {ts: (now | todate), level: ({".": "debug", "-": "debug", "*": "info", "#": "warn"}[$l.lvl]),
		   service: "redis", msg: $l.msg}' >>"$_stack_logs/redis.log" 2>&1) 2>&1 &
	pid=$!
	_stack_record redis "$pid" "127.0.0.1:$REDIS_PORT"
	for ((i = 0; i < _stack_start_timeout * 10; i++)); do
		_stack_alive "$pid" || break
		if [ "$(_stack_redis_cli ping 2>/dev/null || true)" = PONG ]; then ok=1; break; fi
		sleep 0.1
	done
	if [ -z "$ok" ]; then
		_stack_err "Redis did not start on 127.0.0.1:$REDIS_PORT:"
		_stack_log_tail "$_stack_logs/redis.log"
		return 1
	fi
}

# ---- keys and secrets --------------------------------------------------------

_stack_keys() {
	if [ ! -d "$TOKEN_KEY_DIR" ]; then
		mkdir -p "$(dirname -- "$TOKEN_KEY_DIR")" && mkdir -m 700 "$TOKEN_KEY_DIR" || return 1
	fi
	if ! compgen -G "$TOKEN_KEY_DIR/*.pem" >/dev/null; then
		local kid
		kid=dev-$(date -u +%Y%m%d%H%M%S)
		(umask 077 && openssl ecparam -name prime256v1 -genkey -noout |
			openssl pkcs8 -topk8 -nocrypt -out "$TOKEN_KEY_DIR/$kid.pem") || return 1
		_stack_say "generated the dev ES256 signing key $TOKEN_KEY_DIR/$kid.pem (kid $kid)"
	fi
	if [ -z "${AUTH_SERVICE_SECRET:-}" ]; then
		_stack_add_secret AUTH_SERVICE_SECRET "$(openssl rand -hex 32)"
		_stack_say "generated AUTH_SERVICE_SECRET into $_stack_state/secrets.env"
	fi
}

# ---- health ------------------------------------------------------------------

_stack_probe_bin() { echo "$_stack_build/services/health-probe/estore-health"; }

# Where a component's program is built.
_stack_bin() { # name
	case $1 in
	edge) echo "$_stack_build/edge-proxy/estore-edge" ;;
	*) echo "$_stack_build/services/$1/estore-$1" ;;
	esac
}

# The edge speaks HTTP: READY when GET /readyz answers 200 (every service
# behind it SERVING), polled like _stack_health.
_stack_http_health() { # addr [wait_s]
	local i n=$((${2:-0} * 4)) code
	for ((i = 0; ; i++)); do
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$1/readyz" 2>/dev/null || true)
		if [ "$code" = 200 ]; then
			echo READY
			return 0
		fi
		[ "$i" -lt "$n" ] || break
		sleep 0.25
	done
	case $code in 000 | '') echo UNREACHABLE ;; *) echo "NOT_READY" ;; esac
	return 1
}

_stack_health_of() { # name addr [wait_s]
	local name=$1
	shift
	if [ "$name" = edge ]; then _stack_http_health "$@"; else _stack_health "$@"; fi
}

# Python fallback: grpc.health.v1 stubs generated once into state/py.
_stack_py_probe() {
	local py=$_stack_state/py
	if [ ! -f "$py/probe.py" ]; then
		mkdir -p "$py"
		protoc -I/usr/share/grpc-proto --python_out="$py" --grpc_python_out="$py" \
			--plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin || echo /usr/bin/grpc_python_plugin)" \
			grpc/health/v1/health.proto
		cat >"$py/probe.py" <<'EOF'
# probe.py ADDR [WAIT_S]: prints the grpc.health.v1 status of service "";
# exit 0 when SERVING. With WAIT_S, polls until SERVING or the time is up.
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import grpc
grpc.__path__.append(os.path.join(here, "grpc"))
from grpc.health.v1 import health_pb2 as h, health_pb2_grpc as hg
addr, wait = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0
deadline = time.monotonic() + wait
while True:
    with grpc.insecure_channel(addr) as ch:
        try:
            st = h.HealthCheckResponse.ServingStatus.Name(
                hg.HealthStub(ch).Check(h.HealthCheckRequest(), timeout=1).status)
        except grpc.RpcError:
            st = "UNREACHABLE"
    if st == "SERVING" or time.monotonic() >= deadline:
        break
    time.sleep(0.2)
print(st)
sys.exit(0 if st == "SERVING" else 1)
EOF
	fi
	echo "$py/probe.py"
}

# Prints the health status of addr; returns 0 when SERVING. With a wait,
# polls until SERVING or the time is up.
_stack_health() { # addr [wait_s]
	local bin
	bin=$(_stack_probe_bin)
	if [ -x "$bin" ]; then
		# estore-health ADDR: exit 0 when SERVING, else one line on
		# stderr, "estore-health: ADDR: NOT_SERVING" or
		# "estore-health: ADDR: UNAVAILABLE: why".
		local i n=$((${2:-0} * 4)) err st
		for ((i = 0; ; i++)); do
			if err=$("$bin" --timeout-ms 1000 "$1" 2>&1 >/dev/null); then
				echo SERVING
				return 0
			fi
			[ "$i" -lt "$n" ] || break
			sleep 0.25
		done
		st=${err#"estore-health: $1"}
		st=${st#: }
		st=${st%%:*}
		case $st in UNAVAILABLE | DEADLINE_EXCEEDED) st=UNREACHABLE ;; esac
		echo "${st:-UNKNOWN}"
		return 1
	fi
	/usr/bin/python3 "$(_stack_py_probe)" "$@"
}

# 127.0.0.1 when the service listens on every address.
_stack_probe_addr() { # port
	case $LISTEN_HOST in
	0.0.0.0 | '' | '*') echo "127.0.0.1:$1" ;;
	::) echo "[::1]:$1" ;;
	*:*) echo "[$LISTEN_HOST]:$1" ;;
	*) echo "$LISTEN_HOST:$1" ;;
	esac
}

# ---- services ----------------------------------------------------------------

_stack_service_start() { # name
	local name=$1 bin port addr pid st
	bin=$(_stack_bin "$name")
	port=${!_stack_port_var[$name]}
	addr=$(_stack_probe_addr "$port")
	if _stack_port_in_use "$port"; then
		_stack_err "port $port (${_stack_port_var[$name]}) is already in use"
		return 1
	fi
	# A marker between runs, in the services' own log format.
	printf '{"ts":"%s","level":"info","service":"estore-%s","component":"estore-up","msg":"starting %s"}\n' \
		"$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" "$name" "$bin" >>"$_stack_logs/$name.log"
	(cd "$_stack_repo" && exec setsid "$bin") </dev/null >>"$_stack_logs/$name.log" 2>&1 &
	pid=$!
	_stack_record "$name" "$pid" "$addr"
	# The catalog serves once its search index is built from the
	# database: about 30 s for a million products (./estore seed).
	local wait=$_stack_start_timeout
	if [ "$name" = catalog ] && [ "$wait" -lt 180 ]; then
		wait=180
	fi
	if ! st=$(_stack_health_of "$name" "$addr" "$wait"); then
		if ! _stack_alive "$pid"; then
			_stack_err "estore-$name exited while starting; $_stack_logs/$name.log:"
		else
			_stack_err "estore-$name is $st after ${wait}s; $_stack_logs/$name.log:"
		fi
		_stack_log_tail "$_stack_logs/$name.log"
		return 1
	fi
}

# ---- commands ----------------------------------------------------------------

_stack_table() { # header?
	local name pid addr log h
	printf '  %-9s %-22s %-8s %-12s %s\n' NAME ADDRESS PID HEALTH LOG
	for name in postgres redis "${_stack_services[@]}"; do
		pid=$(_stack_live_pid "$name") || continue
		addr=$(cat "$_stack_pids/$name.addr" 2>/dev/null || echo '?')
		case $name in
		postgres)
			log=$_stack_logs/postgres/postgres.json
			h=$("$_stack_pg_bin/pg_isready" -q -h 127.0.0.1 -p "${addr##*:}" -t 2 && echo ACCEPTING || echo NOT_READY) ;;
		redis)
			log=$_stack_logs/redis.log
			h=$(_stack_redis_cli ping 2>/dev/null || true)
			[ "$h" = PONG ] || h=NO_ANSWER ;;
		*)
			log=$_stack_logs/$name.log
			h=$(_stack_health_of "$name" "$addr" || true) ;;
		esac
		printf '  %-9s %-22s %-8s %-12s %s\n' "$name" "$addr" "$pid" "$h" "${log#"$PWD"/}"
	done
}

_stack_anything_running() {
	local n
	for n in up postgres redis "${_stack_services[@]}"; do
		if _stack_live_pid "$n" >/dev/null; then return 0; fi
	done
	return 1
}

_stack_on_signal() { # signal name
	trap '' INT TERM
	echo
	_stack_say "$1: stopping"
	_stack_stop_all
	rm -f "$_stack_pids/up.pid"
	trap - EXIT INT TERM
	_stack_say "stopped"
	exit 0
}

_stack_on_exit() {
	local rc=$?
	trap '' INT TERM
	_stack_stop_all
	rm -f "$_stack_pids/up.pid"
	exit "$rc"
}

stack_up() {
	_stack_config || return 1
	if _stack_anything_running; then
		_stack_err "a stack is already running from $_stack_state:"
		_stack_table >&2
		_stack_err "stop it with ./estore down (or Ctrl-C in its terminal)"
		return 1
	fi
	mkdir -p "$_stack_pids" "$_stack_logs"
	rm -f "$_stack_pids"/*.pid "$_stack_pids"/*.addr
	# Every port we are about to listen on, before starting anything.
	local p want=()
	_stack_is_local "$DB_HOST" && want+=(DB_PORT)
	_stack_is_local "$REDIS_HOST" && want+=(REDIS_PORT)
	for p in "${_stack_services[@]}"; do
		if [ ! -x "$(_stack_bin "$p")" ]; then
			_stack_err "estore-$p is not built in $_stack_build (./estore build)"
			return 1
		fi
		want+=("${_stack_port_var[$p]}")
	done
	for p in "${want[@]}"; do
		if _stack_port_in_use "${!p}"; then
			_stack_err "port ${!p} ($p) is already in use; set $p to a free port (environment or .env)"
			return 1
		fi
	done

	echo $$ >"$_stack_pids/up.pid"
	# Whatever happens from here (a failed start, set -e, a signal), what
	# we started is stopped.
	trap _stack_on_exit EXIT
	trap '_stack_on_signal INT' INT
	trap '_stack_on_signal TERM' TERM

	_stack_say "state folder $_stack_state (DB_PORT=$DB_PORT, REDIS_PORT=$REDIS_PORT)"
	_stack_keys || return 1
	_stack_pg_start || return 1
	_stack_redis_start || return 1
	local s
	for s in "${_stack_services[@]}"; do
		_stack_service_start "$s" || return 1
	done
	echo
	_stack_say "up:"
	_stack_table
	echo
	_stack_say "try: curl http://$(_stack_probe_addr "$EDGE_PORT")/openapi.json   (JSON over HTTP)"
	_stack_say "     grpcurl -plaintext $(_stack_probe_addr "$AUTH_SERVICE_PORT") list   (gRPC)"
	_stack_say "Ctrl-C here or ./estore down stops everything; ./estore status lists it"

	# Foreground: report components that die; leave when nothing is left.
	# They are our children, so a dead one stays a zombie (its PID not
	# reused) until we reap it: checking the PIDs taken now is enough, and
	# costs no fork per second.
	local name
	local -A gone=() watched=()
	for name in postgres redis "${_stack_services[@]}"; do
		watched[$name]=$(_stack_live_pid "$name") || watched[$name]=
	done
	while true; do
		sleep 1 &
		wait $! || true
		local alive=0
		for name in postgres redis "${_stack_services[@]}"; do
			[ -n "${watched[$name]}" ] && [ -f "$_stack_pids/$name.pid" ] || continue
			if _stack_alive "${watched[$name]}"; then
				alive=1
			elif [ -z "${gone[$name]:-}" ]; then
				gone[$name]=1
				_stack_err "$name exited unexpectedly; the end of its log:"
				case $name in
				postgres) _stack_log_tail "$_stack_logs/postgres/postgres.json" ;;
				*) _stack_log_tail "$_stack_logs/$name.log" ;;
				esac
			fi
		done
		if [ $alive -eq 0 ]; then
			_stack_err "nothing is running any more"
			return 1
		fi
	done
}

stack_down() {
	_stack_config
	local pid
	if pid=$(_stack_live_pid up); then
		# The foreground `./estore up` stops everything in order itself.
		_stack_say "stopping the stack of ./estore up (pid $pid)"
		kill -s TERM "$pid" 2>/dev/null || true
		_stack_wait_gone "$pid" $((_stack_stop_timeout * 5 + 10)) ||
			_stack_err "./estore up (pid $pid) is still stopping; stopping what is left"
	fi
	mkdir -p "$_stack_pids"
	_stack_stop_all
	rm -f "$_stack_pids/up.pid"
	_stack_say "down"
}

stack_status() {
	_stack_config
	mkdir -p "$_stack_pids"
	if ! _stack_anything_running; then
		_stack_say "nothing runs from $_stack_state"
		return 3
	fi
	local pid
	if pid=$(_stack_live_pid up); then
		_stack_say "./estore up runs as pid $pid (state $_stack_state)"
	fi
	_stack_table
}

# Writes a generated catalog (estore-seed) into the stack's database:
# the one ./estore up started, or the external DB_HOST. Running catalog
# replicas rebuild their search index when it commits.
stack_seed() { # estore-seed arguments...
	_stack_config || return 1
	local bin=$_stack_build/services/catalog/seed/estore-seed
	if [ ! -x "$bin" ]; then
		_stack_err "estore-seed is not built in $_stack_build (./estore build)"
		return 1
	fi
	if _stack_is_local "$DB_HOST" && ! _stack_live_pid postgres >/dev/null; then
		_stack_err "PostgreSQL of $_stack_state is not running: start the stack with ./estore up first"
		return 1
	fi
	"$bin" "$@"
}
