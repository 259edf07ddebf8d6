#!/usr/bin/env bash
# bench/catalog/run.sh - `./estore bench catalog`: catalog search and
# product reads on a seeded catalog, against PostgreSQL's own full-text
# search in the same run.
#
#   bench/catalog/run.sh [--products N] [--seed S] [--duration S]
#                        [--warmup S] [--clients N] [--queries N]
#                        [--types T,...] [--reseed] [--keep]
#
# Builds the services, estore-seed and catalog_bench (Release, build-bench/);
# starts PostgreSQL (tuned to hold the catalog in memory), Redis, token,
# account, catalog, auth and the edge with scripts/stack.sh on free loopback
# ports; seeds N products (default 1,000,000; seed S, default 1) and builds
# PostgreSQL's weighted tsvector + GIN and pg_trgm indexes beside them
# (fts.sql). The seeded state is kept in bench/.build/catalog/n<N>-s<S>/
# and reused by the next run with the same N and S (--reseed starts over).
# Prints the seed time, the catalog's index build time and memory, then
# picks queries from the data (pick.py) and measures each query type with
# N clients (default 16) for S seconds (default 5, after a warm-up of
# default 2 s): SearchProducts over gRPC (catalog_bench, our channel),
# GET /v1/products:search through the edge (wrk), the equivalent SQL in
# PostgreSQL (pgbench); then GET /v1/products/{id} through the edge.
# --queries sets the distinct queries per type (default 8); --types measures
# only those (common, word, two, typo, prefix, filtered, facets, reads).
# Everything it started is stopped on exit or Ctrl-C; results and the
# report stay in bench/.build/catalog/results/<date-time>/ (--keep also
# keeps the logs).
set -euo pipefail

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$bench_dir/../.." && pwd)
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"
build=$root/build-bench
cache=$root/bench/.build/catalog
pg_bin=/usr/lib/postgresql/15/bin
types=(common word two typo prefix filtered facets)

products=1000000
seed=1
duration=5
warmup=2
clients=16
nqueries=8
reseed=0
keep=0
only=

usage() {
	sed -n '2,28s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit "${1:-2}"
}
log() { printf '[%s] bench catalog: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'bench catalog: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case $1 in
	--products) products=${2:?}; shift 2 ;;
	--seed) seed=${2:?}; shift 2 ;;
	--duration) duration=${2:?}; shift 2 ;;
	--warmup) warmup=${2:?}; shift 2 ;;
	--clients) clients=${2:?}; shift 2 ;;
	--queries) nqueries=${2:?}; shift 2 ;;
	--types) only=${2:?}; shift 2 ;;
	--reseed) reseed=1; shift ;;
	--keep) keep=1; shift ;;
	-h | --help) usage 0 ;;
	*) printf 'bench catalog: unknown argument %s\n' "$1" >&2; usage ;;
	esac
done
for v in products duration clients nqueries; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v expects a positive integer"
done
[[ $seed =~ ^[0-9]+$ ]] || die "--seed expects a non-negative integer"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup expects a non-negative integer"
for t in ${only//,/ }; do
	[[ " ${types[*]} reads " == *" $t "* ]] || die "--types: unknown type $t"
done
wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
((duration <= 600 && warmup <= 60 && clients <= 1024 && nqueries <= 64)) ||
	die "at most --duration 600, --warmup 60, --clients 1024, --queries 64"

require_tools() {
	local missing=() pair cmd pkg
	for pair in wrk:wrk curl:curl jq:jq cmake:cmake pgrep:procps flock:util-linux; do
		cmd=${pair%%:*} pkg=${pair#*:}
		command -v "$cmd" >/dev/null || missing+=("$pkg")
	done
	[ -x "$pg_bin/pgbench" ] && [ -x "$pg_bin/psql" ] || missing+=(postgresql-15)
	[ -x /usr/bin/python3 ] || missing+=(python3)
	if [ ${#missing[@]} -gt 0 ]; then
		die "missing tools; install them with:
  apt-get install -y $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
	fi
}

build_all() {
	log "building (Release, $build)"
	mkdir -p "$cache"
	cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$cache/configure.log" 2>&1 ||
		{ cat "$cache/configure.log" >&2; die "cmake configure failed"; }
	cmake --build "$build" -j "$(nproc)" --target estore-token estore-account \
		estore-catalog estore-auth estore-edge estore-health estore-seed \
		catalog_bench >"$cache/build.log" 2>&1 ||
		{ tail -40 "$cache/build.log" >&2; die "build failed"; }
}

# ---- PostgreSQL --------------------------------------------------------------

# psql and pgbench reach the stack's PostgreSQL with the password in a 0600
# file (never on a command line); the services keep their own DB_*.
pg_env=()
pg_connect() {
	local pw
	pw=$(sed -n 's/^DB_PASSWORD=//p' "$state/secrets.env" | tail -1)
	[ -n "$pw" ] || die "no DB_PASSWORD in $state/secrets.env"
	(umask 077 && printf '127.0.0.1:%s:*:%s:%s\n' "$DB_PORT" "$DB_USER" \
		"$(sed -e 's/\\/\\\\/g' -e 's/:/\\:/g' <<<"$pw")" >"$state/pgpass")
	pg_env=(env PGHOST=127.0.0.1 PGPORT="$DB_PORT" PGUSER="$DB_USER"
		PGDATABASE="$DB_NAME" PGPASSFILE="$state/pgpass" PGCONNECT_TIMEOUT=10)
	export DB_PASSWORD=$pw
}

bpsql() { "${pg_env[@]}" "$pg_bin/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# Bytes of every table and index the measured queries read.
data_bytes() {
	bpsql -c "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname IN ('bench', 'catalog') AND c.relkind = 'r'"
}

# Room for all of it in shared buffers (with a quarter to spare, rounded
# up to 256 MB); no JIT and no parallel workers, which only add latency
# when 16 clients already keep both cores busy; sorts and hashes in
# memory; random reads priced as the memory reads they are. Returns 0
# when PostgreSQL must restart for them to apply.
tune_pg() {
	local mb
	mb=$(($(data_bytes) * 5 / 4 / 1048576))
	mb=$(((mb / 256 + 1) * 256))
	bpsql <<-EOF
		ALTER SYSTEM SET shared_buffers = '${mb}MB';
		ALTER SYSTEM SET effective_cache_size = '$((mb * 2))MB';
		ALTER SYSTEM SET work_mem = '64MB';
		ALTER SYSTEM SET jit = off;
		ALTER SYSTEM SET max_parallel_workers_per_gather = 0;
		ALTER SYSTEM SET random_page_cost = 1.1;
		SELECT pg_reload_conf() \g /dev/null
	EOF
	[ "$(bpsql -c 'SELECT count(*) FROM pg_settings WHERE pending_restart')" != 0 ]
}

prewarm() {
	bpsql -c "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname IN ('bench', 'catalog') AND c.relkind IN ('r', 'i')" >/dev/null
}

# ---- the stack ---------------------------------------------------------------

catalog_log_from=1
start_stack() {
	local clog=$state/logs/catalog.log
	catalog_log_from=$(($( [ -f "$clog" ] && stat -c %s "$clog" || echo 0) + 1))
	stack_start "$state" "$build"
	pg_connect
}

# Waits (up to 15 min) for the catalog's log to report a search index of
# DOCS products built since the last start; sets index_docs, index_ms,
# index_bytes.
wait_index() {
	local docs=$1 i line
	for ((i = 0; i < 1800; i++)); do
		line=$(tail -c "+$catalog_log_from" "$state/logs/catalog.log" |
			grep -o 'search index built: [0-9]* products in [0-9]* ms ([0-9]* bytes)' |
			tail -1 || true)
		if [[ $line =~ ([0-9]+)\ products\ in\ ([0-9]+)\ ms\ \(([0-9]+) ]]; then
			index_docs=${BASH_REMATCH[1]} index_ms=${BASH_REMATCH[2]}
			index_bytes=${BASH_REMATCH[3]}
			[ "$index_docs" = "$docs" ] && return 0
		fi
		kill -0 "${stack_pid[catalog]}" 2>/dev/null || die "estore-catalog exited"
		sleep 0.5
	done
	die "no search index of $docs products after 15 min (last: ${line:-none})"
}

seed_catalog() {
	local t0 t1
	log "seeding $products products (seed $seed) with estore-seed"
	t0=$(date +%s.%N)
	timeout --foreground 3600 "$build/services/catalog/seed/estore-seed" --products "$products" --seed "$seed" \
		>"$state/seed.log" 2>&1 || { tail -20 "$state/seed.log" >&2; die "estore-seed failed"; }
	t1=$(date +%s.%N)
	seed_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	rm -f "$state/fts.done"
	printf '%s %s\n' "$seed_s" "$(date -u +%FT%TZ)" >"$state/seeded"
	log "seeded in $seed_s s"
}

# fts.sql again whenever it changed since it last ran on this data.
fts_sum=$(cat "$bench_dir/fts.sql" "$bench_dir/pick.py" | sha256sum | cut -c1-12)
build_fts() {
	local t0 t1 sum=
	[ ! -f "$state/fts.done" ] || read -r sum fts_s fts_at <"$state/fts.done"
	if [ "$sum" = "$fts_sum" ]; then
		fts_note="cached: built $fts_at in $fts_s s"
		return 0
	fi
	log "building PostgreSQL's FTS tables and indexes (fts.sql)"
	t0=$(date +%s.%N)
	bpsql -f "$bench_dir/fts.sql" >"$state/fts.log" 2>&1 ||
		{ tail -20 "$state/fts.log" >&2; die "fts.sql failed"; }
	t1=$(date +%s.%N)
	fts_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	printf '%s %s %s\n' "$fts_sum" "$fts_s" "$(date -u +%FT%TZ)" >"$state/fts.done"
	fts_note="$fts_s s"
	log "PostgreSQL FTS built in $fts_s s"
}

# ---- measurements ------------------------------------------------------------

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }

# Load generators run under `timeout --foreground`: in the terminal's
# process group, so that Ctrl-C stops them at once too.

run_grpc() { # type
	local t=$1 out=$res/$1.grpc.out
	timeout --foreground $((warmup + duration + 60)) "$build/bench/catalog_bench" \
		--target "127.0.0.1:$CATALOG_SERVICE_PORT" --queries "$qdir/$t.tsv" \
		--concurrency "$clients" --duration "$duration" --warmup "$warmup" \
		>"$out" 2>&1 || log "WARNING: $t via gRPC: $(tail -1 "$out")"
	/usr/bin/python3 "$bench_dir/report.py" grpc "$out" "$t/grpc" >>"$results"
	log "  $t, engine via gRPC: $(grep -o 'rps=[0-9.]*.*p99_ms=[0-9.]*' "$out" || echo failed)"
}

run_wrk() { # subject paths-file
	local subject=$1 paths=$2 out=$res/${1//\//.}.wrk
	# A slow answer is measured, not counted as a socket timeout (wrk's
	# default gives up after 2 s).
	local -a args=(-t 1 -c "$clients" --latency --timeout 30s -s "$bench_dir/paths.lua"
		"http://127.0.0.1:$EDGE_PORT")
	if ((warmup > 0)); then
		BENCH_PATHS=$paths timeout --foreground $((warmup + 30)) wrk -d "$warmup" "${args[@]}" \
			>"$out.warmup" 2>&1 || log "WARNING: $subject: warm-up wrk failed"
	fi
	BENCH_PATHS=$paths timeout --foreground $((duration + 30)) wrk -d "$duration" "${args[@]}" \
		>"$out" 2>&1 || log "WARNING: $subject: wrk failed: $(tail -1 "$out")"
	/usr/bin/python3 "$root/bench/edge/report.py" wrk "$out" "$subject" >>"$results"
	/usr/bin/python3 "$bench_dir/report.py" wrkbytes "$out" "$subject" >>"$results"
	log "  $subject: $(grep -E '^Requests/sec' "$out" | tr -s ' '), p99 $(awk '$1 == "99%" { print $2 }' "$out")"
}

run_pg() { # type
	local t=$1 out=$res/$1.pgbench f
	local logs=$res/pglog-$1
	local -a scripts=()
	for f in "$qdir"/pg/"$t"-*.sql; do scripts+=(-f "$f"); done
	local -a args=(-n -c "$clients" -j 2 "${scripts[@]}")
	mkdir -p "$logs"
	if ((warmup > 0)); then
		timeout --foreground $((warmup + 120)) "${pg_env[@]}" "$pg_bin/pgbench" "${args[@]}" -T "$warmup" \
			>"$out.warmup" 2>&1 || log "WARNING: $t: warm-up pgbench failed"
	fi
	# pgbench waits for the transactions in flight when time is up: a
	# slow query at most adds its own latency.
	(cd "$logs" && timeout --foreground $((duration + 120)) "${pg_env[@]}" "$pg_bin/pgbench" "${args[@]}" \
		-T "$duration" --log) >"$out" 2>&1 || log "WARNING: $t: pgbench failed: $(tail -1 "$out")"
	/usr/bin/python3 "$bench_dir/report.py" pgbench "$out" "$logs" "$t/pg" >>"$results"
	log "  $t, PostgreSQL: $(grep -E '^tps' "$out" || echo failed)"
}

# ---- main --------------------------------------------------------------------

cleanup() {
	stack_stop
	rm -f "${state:-/nonexistent}/pgpass"
	if [ "$keep" = 1 ]; then
		log "logs kept in $state/logs"
	elif [ -n "${state:-}" ]; then
		# The edge's access log grows by a line a request.
		rm -f "$state/logs/edge.log"
	fi
}

main() {
	require_tools
	build_all

	state=$cache/n$products-s$seed
	if ((reseed)) && [ -d "$state" ]; then
		log "--reseed: removing $state"
		rm -rf "$state"
	fi
	mkdir -p "$state"
	exec {lock_fd}>"$state.lock"
	flock -n "$lock_fd" || die "another run uses $state"
	res=$cache/results/$(date +%Y%m%d-%H%M%S)
	qdir=$res/queries
	results=$res/results.tsv
	mkdir -p "$qdir"
	: >"$results"
	rm -rf "$state/logs" "$state/pids"
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	local db redis token account catalog auth edge
	read -r db redis token account catalog auth edge < <(free_ports 7)
	export DB_HOST=127.0.0.1 DB_PORT=$db DB_USER=estore DB_NAME=estore
	export REDIS_HOST=127.0.0.1 REDIS_PORT=$redis
	export TOKEN_SERVICE_PORT=$token ACCOUNT_API_PORT=$account
	export CATALOG_SERVICE_PORT=$catalog AUTH_SERVICE_PORT=$auth EDGE_PORT=$edge
	# info: the catalog reports its index build at that level (the edge
	# then writes its access log line a request, as it would in service).
	export LOG_LEVEL=info
	# The anonymous rate limit stays on (every request takes from the
	# bucket of 127.0.0.1 in Redis) but at its highest.
	export EDGE_RATE_ANON_PER_MIN=1000000
	# The catalog serves once its search index is built: a minute or so
	# for a million products on a busy machine.
	export ESTORE_START_TIMEOUT=600
	log "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores; starting the stack in $state"
	start_stack

	local seeded_note seeded_at
	if [ -f "$state/seeded" ]; then
		read -r seed_s seeded_at <"$state/seeded"
		seeded_note="cached: seeded $seeded_at in $seed_s s (--reseed to seed again)"
		log "seed: $seeded_note"
	else
		seed_catalog
		seeded_note="$seed_s s"
	fi
	# The index is timed while nothing else runs: before PostgreSQL's FTS
	# is built, and again after a restart.
	local want
	want=$(bpsql -c "SELECT count(*) FROM catalog.products p JOIN catalog.stores s
		ON s.id = p.store_id WHERE p.status = 'active' AND s.status = 'active'")
	log "waiting for the catalog's search index of $want products"
	wait_index "$want"
	build_fts
	record env seed_s "$seed_s"
	record env fts_s "$fts_s"
	if tune_pg; then
		log "restarting the stack for PostgreSQL's new settings"
		stack_stop
		start_stack
		wait_index "$want"
	fi
	record env index_docs "$index_docs"
	record env index_ms "$index_ms"
	record env index_bytes "$index_bytes"
	record env catalog_rss_kb "$(status_kb "${stack_pid[catalog]}" VmRSS)"
	record env clients "$clients"
	log "index: $index_docs products in $index_ms ms, $index_bytes bytes"
	log "loading the catalog into PostgreSQL's shared buffers (pg_prewarm)"
	prewarm

	# The picks depend on the data alone: kept with it, like the seed.
	local picked=$state/queries-$nqueries-$fts_sum
	if [ ! -f "$picked/queries.txt" ]; then
		log "picking queries from the data"
		rm -rf "$picked" "$picked.tmp"
		"${pg_env[@]}" /usr/bin/python3 "$bench_dir/pick.py" "$picked.tmp" --queries "$nqueries" ||
			die "pick.py failed"
		mv "$picked.tmp" "$picked"
	else
		log "queries: cached, picked from this data by an earlier run"
	fi
	cp -r "$picked/." "$qdir/"
	local t engine pgc
	{
		cat "$qdir/queries.txt"
		echo
		echo "matches of the first query of each type: engine (total_size) / PostgreSQL (count)"
		for t in "${types[@]}"; do
			engine=$("$build/bench/catalog_bench" --check --target "127.0.0.1:$CATALOG_SERVICE_PORT" \
				--queries "$qdir/$t.tsv" | awk -F'\t' 'NR == 1 { print $2 }') ||
				die "$t: a query failed (catalog_bench --check)"
			pgc=$(bpsql -f "$qdir/$t.count.sql")
			printf '  %-9s %10s / %s\n' "$t" "$engine" "$pgc"
		done
	} >"$res/queries.report"

	log "measuring: $clients clients, ${duration} s a run after ${warmup} s of warm-up"
	for t in "${types[@]}"; do
		wanted "$t" || continue
		log "$t"
		run_grpc "$t"
		run_wrk "$t/edge" "$qdir/$t.paths"
		run_pg "$t"
	done
	if wanted reads; then
		log "product reads by id"
		run_wrk reads/edge "$qdir/reads.paths"
	fi

	local sizes settings
	sizes=$(bpsql -F ' ' -c "SELECT string_agg(format('%s %s', c.relname,
		pg_size_pretty(pg_relation_size(c.oid))), ', ' ORDER BY c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE (n.nspname = 'bench' AND c.relname IN ('fts', 'fts_tsv_idx', 'fts_title_trgm_idx'))
		   OR (n.nspname = 'catalog' AND c.relname IN ('products', 'products_pkey'))")
	settings=$(bpsql -c "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name)
		FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', 'jit',
		'max_parallel_workers_per_gather', 'random_page_cost')")
	{
		echo "estore $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') |" \
			"$(nproc) CPUs: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |" \
			"$(uname -r) | $(wrk --version 2>&1 | awk 'NR == 1 { print $1, $2 }') |" \
			"$("$pg_bin/postgres" --version) | load average now $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "catalog: $index_docs searchable products of $products seeded (seed $seed)"
		echo "seed: $seeded_note; PostgreSQL FTS tables and indexes: $fts_note"
		echo "PostgreSQL: $settings; $sizes"
		echo "$clients clients, $duration s per run after $warmup s of warm-up;" \
			"gRPC: catalog_bench (our channel, one connection); edge: wrk -t1 over HTTP/1.1;" \
			"PostgreSQL: pgbench -j 2"
		echo
		cat "$res/queries.report"
		echo
		/usr/bin/python3 "$bench_dir/report.py" table "$results"
	} | tee "$res/report.txt"
	log "results, queries and the SQL in $res"
}

main
