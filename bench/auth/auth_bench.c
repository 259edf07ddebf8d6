/*
 * auth_bench - load for `./estore bench auth`: one workload per run, from
 * N threads making blocking calls for a fixed time after a warm-up, and
 * one line of results:
 *
 *   workload=login threads=4 ops=812 failed=0 seconds=10.01 per_s=81.1
 *     p50_ms=48.90 p99_ms=71.20 client_cpu_s=0.41
 *
 * client_cpu_s is this process's user+system time over the measured
 * window (for `hash`, all of the work); with --stack-pids P,Q,... also
 * stack_cpu_s, the same for those processes and their children (the
 * services, Redis, PostgreSQL's postmaster and backends), and
 * stack_ms_per_op, that CPU per operation by process name.
 *
 * Workloads:
 *   hash      argon2id_verify of one stored hash, in-process: the raw
 *             hashing rate logins are measured against (--m-kib, --t, --p
 *             as the auth service's AUTH_ARGON2_*; no network at all)
 *   login     AuthService.Login of --users accounts registered first
 *   validate  TokenService.ValidateToken of one access token
 *   refresh   AuthService.Refresh, each thread rotating its own session
 *
 * Usage: auth_bench WORKLOAD [--auth HOST:PORT] [--token HOST:PORT]
 *                   [--threads N] [--duration S] [--warmup S] [--users N]
 *                   [--m-kib N] [--t N] [--p N] [--stack-pids P,Q,...]
 */
#include <argon2.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "estore/auth/v1/auth.rpc.h"
#include "estore/token/v1/token.rpc.h"
#include "rpc/channel.h"

enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

typedef struct options {
	const char *workload;
	const char *auth_target;
	const char *token_target;
	int threads;
	double duration_s;
	double warmup_s;
	int users;
	uint32_t m_kib, t, p;
	long stack_pids[16];
	int n_stack_pids;
} options;

typedef struct account {
	char email[96];
	char password[40];
	char *access_token;
	char *refresh_token;
} account;

typedef struct bench bench;

/* One operation of the workload by thread `idx`; returns true on success. */
typedef bool (*op_fn)(bench *b, int idx);

typedef struct samples {
	uint32_t *us;
	size_t n, cap;
} samples;

struct bench {
	options opt;
	rpc_channel *auth;
	rpc_channel *token;
	account *accounts;     /* opt.users for login; one per thread for refresh */
	int n_accounts;
	char *hash;            /* for the hash workload */
	atomic_int phase;
	atomic_long ops;
	atomic_long failed;
	atomic_uint next_account;
	samples *per_thread;
	op_fn op;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "auth_bench: %s\n", what);
	exit(1);
}

static void samples_add(samples *s, uint32_t us)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		uint32_t *p = realloc(s->us, cap * sizeof(*p));

		if (p == NULL)
			die("out of memory");
		s->us = p;
		s->cap = cap;
	}
	s->us[s->n++] = us;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static void report_failure(const char *what, const rpc_status *st)
{
	/* The first few failures say why; a flood of them only counts. */
	static atomic_int shown;

	if (atomic_fetch_add(&shown, 1) < 3)
		fprintf(stderr, "auth_bench: %s: %s: %s\n", what,
			rpc_code_name(st->code),
			st->message ? st->message : "");
}

/* ---- the workloads ------------------------------------------------------- */

static bool op_hash(bench *b, int idx)
{
	static const char password[] = "correct horse battery staple";

	(void)idx;
	return argon2id_verify(b->hash, password, sizeof(password) - 1) ==
	       ARGON2_OK;
}

static bool op_login(bench *b, int idx)
{
	unsigned i = atomic_fetch_add(&b->next_account, 1) %
		     (unsigned)b->n_accounts;
	Estore__Auth__V1__LoginRequest req = ESTORE__AUTH__V1__LOGIN_REQUEST__INIT;
	Estore__Token__V1__TokenPair *pair = NULL;
	rpc_status st = { 0 };
	rpc_code code;

	(void)idx;
	req.email = b->accounts[i].email;
	req.password = b->accounts[i].password;
	code = estore_auth_v1_AuthService_login(b->auth, NULL, &req, &pair, &st);
	if (code != RPC_OK)
		report_failure("Login", &st);
	else
		protobuf_c_message_free_unpacked(&pair->base, NULL);
	rpc_status_dispose(&st);
	return code == RPC_OK;
}

static bool op_validate(bench *b, int idx)
{
	Estore__Token__V1__ValidateTokenRequest req =
		ESTORE__TOKEN__V1__VALIDATE_TOKEN_REQUEST__INIT;
	Estore__Token__V1__TokenClaims *claims = NULL;
	rpc_status st = { 0 };
	rpc_code code;

	(void)idx;
	req.access_token = b->accounts[0].access_token;
	code = estore_token_v1_TokenService_validate_token(b->token, NULL, &req,
							   &claims, &st);
	if (code != RPC_OK)
		report_failure("ValidateToken", &st);
	else
		protobuf_c_message_free_unpacked(&claims->base, NULL);
	rpc_status_dispose(&st);
	return code == RPC_OK;
}

static bool op_refresh(bench *b, int idx)
{
	account *a = &b->accounts[idx];
	Estore__Auth__V1__RefreshRequest req = ESTORE__AUTH__V1__REFRESH_REQUEST__INIT;
	Estore__Token__V1__TokenPair *pair = NULL;
	rpc_status st = { 0 };
	rpc_code code;

	req.refresh_token = a->refresh_token;
	code = estore_auth_v1_AuthService_refresh(b->auth, NULL, &req, &pair, &st);
	if (code == RPC_OK) {
		/* Rotation: only the new refresh token works from now on. */
		free(a->refresh_token);
		a->refresh_token = strdup(pair->refresh_token);
		protobuf_c_message_free_unpacked(&pair->base, NULL);
		if (a->refresh_token == NULL)
			die("out of memory");
	} else {
		report_failure("Refresh", &st);
	}
	rpc_status_dispose(&st);
	return code == RPC_OK;
}

/* ---- setup ----------------------------------------------------------------- */

static void register_accounts(bench *b, int n)
{
	unsigned char rnd[8];
	char run[17];

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		die("getrandom failed");
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(run + 2 * i, 3, "%02x", rnd[i]);

	b->accounts = calloc((size_t)n, sizeof(*b->accounts));
	if (b->accounts == NULL)
		die("out of memory");
	b->n_accounts = n;
	for (int i = 0; i < n; i++) {
		account *a = &b->accounts[i];
		Estore__Auth__V1__RegisterRequest req =
			ESTORE__AUTH__V1__REGISTER_REQUEST__INIT;
		Estore__Token__V1__TokenPair *pair = NULL;
		rpc_status st = { 0 };

		snprintf(a->email, sizeof(a->email), "bench-%s-%d@example.com", run, i);
		snprintf(a->password, sizeof(a->password), "bench-pw-%s-%d", run, i);
		req.email = a->email;
		req.password = a->password;
		req.display_name = "Bench";
		if (estore_auth_v1_AuthService_register_(b->auth, NULL, &req, &pair,
							 &st) != RPC_OK) {
			fprintf(stderr, "auth_bench: Register: %s: %s\n",
				rpc_code_name(st.code), st.message ? st.message : "");
			exit(1);
		}
		a->access_token = strdup(pair->access_token);
		a->refresh_token = strdup(pair->refresh_token);
		protobuf_c_message_free_unpacked(&pair->base, NULL);
		rpc_status_dispose(&st);
		if (a->access_token == NULL || a->refresh_token == NULL)
			die("out of memory");
	}
}

static void make_hash(bench *b)
{
	static const char password[] = "correct horse battery staple";
	unsigned char salt[16];
	size_t len = argon2_encodedlen(b->opt.t, b->opt.m_kib, b->opt.p,
				       sizeof(salt), 32, Argon2_id);

	if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt))
		die("getrandom failed");
	b->hash = malloc(len);
	if (b->hash == NULL)
		die("out of memory");
	if (argon2id_hash_encoded(b->opt.t, b->opt.m_kib, b->opt.p, password,
				  sizeof(password) - 1, salt, sizeof(salt), 32,
				  b->hash, len) != ARGON2_OK)
		die("argon2id_hash_encoded failed");
}

/* ---- running ----------------------------------------------------------------- */

typedef struct worker_arg {
	bench *b;
	int idx;
} worker_arg;

static void *worker(void *p)
{
	worker_arg *w = p;
	bench *b = w->b;
	samples *s = &b->per_thread[w->idx];
	int phase;

	while ((phase = atomic_load(&b->phase)) != PHASE_STOP) {
		double t0 = now_s();
		bool ok = b->op(b, w->idx);
		double t1 = now_s();

		/* An operation that straddles the start or the end of the
		 * measured window is not counted. */
		if (phase != PHASE_MEASURE || atomic_load(&b->phase) != PHASE_MEASURE)
			continue;
		if (ok) {
			atomic_fetch_add(&b->ops, 1);
			samples_add(s, (uint32_t)((t1 - t0) * 1e6));
		} else {
			atomic_fetch_add(&b->failed, 1);
		}
	}
	return NULL;
}

static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- CPU time of the stack under test ------------------------------------- */

enum { MAX_TRACKED = 512 };

typedef struct cpu_snapshot {
	long pid[MAX_TRACKED];
	unsigned long long ticks[MAX_TRACKED];
	char comm[MAX_TRACKED][20];
	int n;
} cpu_snapshot;

static bool tracked(const options *o, long pid, long ppid)
{
	for (int i = 0; i < o->n_stack_pids; i++)
		if (o->stack_pids[i] == pid || o->stack_pids[i] == ppid)
			return true;
	return false;
}

/* utime + stime of every process that is, or is a child of, one of the
 * --stack-pids. */
static void snapshot(const options *o, cpu_snapshot *snap)
{
	DIR *d = opendir("/proc");
	struct dirent *de;

	snap->n = 0;
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL && snap->n < MAX_TRACKED) {
		char path[300], buf[1024], *p;
		unsigned long long ut, st;
		long pid, ppid;
		FILE *f;
		size_t n;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* The command name may hold spaces: fields restart after ')'. */
		p = strrchr(buf, ')');
		pid = strtol(buf, NULL, 10);
		if (p == NULL || sscanf(p + 2, "%*c %ld %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu",
					&ppid, &ut, &st) != 3)
			continue;
		if (!tracked(o, pid, ppid))
			continue;
		snap->pid[snap->n] = pid;
		snap->ticks[snap->n] = ut + st;
		/* "pid (comm) ...": the name between the parentheses. */
		{
			char *open = strchr(buf, '(');
			size_t len = open != NULL ? (size_t)(p - open - 1) : 0;

			if (len >= sizeof(snap->comm[0]))
				len = sizeof(snap->comm[0]) - 1;
			memcpy(snap->comm[snap->n], open != NULL ? open + 1 : "", len);
			snap->comm[snap->n][len] = '\0';
		}
		snap->n++;
	}
	closedir(d);
}

/* Total CPU seconds between the snapshots; per process name into `by`
 * as "name:ms_per_op,..." ("-" when there is nothing to say). */
static double stack_cpu_s(const cpu_snapshot *a, const cpu_snapshot *b,
			  long ops, char *by, size_t cap)
{
	size_t at = 0;

	unsigned long long total = 0, by_name[MAX_TRACKED] = { 0 };
	const char *names[MAX_TRACKED];
	int n_names = 0;
	double hz = (double)sysconf(_SC_CLK_TCK);

	for (int i = 0; i < b->n; i++) {
		unsigned long long before = 0, d;
		int k;

		for (k = 0; k < a->n; k++)
			if (a->pid[k] == b->pid[i])
				before = a->ticks[k];
		d = b->ticks[i] > before ? b->ticks[i] - before : 0;
		total += d;
		for (k = 0; k < n_names; k++)
			if (strcmp(names[k], b->comm[i]) == 0)
				break;
		if (k == n_names)
			names[n_names++] = b->comm[i];
		by_name[k] += d;
	}
	snprintf(by, cap, "-");
	for (int k = 0; ops > 0 && k < n_names && at < cap; k++) {
		int n = snprintf(by + at, cap - at, "%s%s:%.3f", k ? "," : "",
				 names[k], 1000.0 * (double)by_name[k] / hz / (double)ops);

		if (n < 0)
			break;
		at += (size_t)n;
	}
	return (double)total / hz;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void run(bench *b)
{
	int n = b->opt.threads;
	pthread_t *tid = calloc((size_t)n, sizeof(*tid));
	worker_arg *args = calloc((size_t)n, sizeof(*args));
	samples all = { 0 };
	double t0, t1, c0, c1;
	static cpu_snapshot s0, s1;
	char by_process[1024];
	double stack_s;

	b->per_thread = calloc((size_t)n, sizeof(*b->per_thread));
	if (tid == NULL || args == NULL || b->per_thread == NULL)
		die("out of memory");
	atomic_store(&b->phase, PHASE_WARMUP);
	for (int i = 0; i < n; i++) {
		args[i] = (worker_arg){ b, i };
		if (pthread_create(&tid[i], NULL, worker, &args[i]) != 0)
			die("pthread_create failed");
	}
	sleep_s(b->opt.warmup_s);
	t0 = now_s();
	c0 = cpu_s();
	snapshot(&b->opt, &s0);
	atomic_store(&b->phase, PHASE_MEASURE);
	sleep_s(b->opt.duration_s);
	atomic_store(&b->phase, PHASE_STOP);
	t1 = now_s();
	c1 = cpu_s();
	snapshot(&b->opt, &s1);
	for (int i = 0; i < n; i++)
		pthread_join(tid[i], NULL);

	for (int i = 0; i < n; i++) {
		for (size_t k = 0; k < b->per_thread[i].n; k++)
			samples_add(&all, b->per_thread[i].us[k]);
		free(b->per_thread[i].us);
	}
	qsort(all.us, all.n, sizeof(*all.us), cmp_u32);
	double secs = t1 - t0;
	double p50 = all.n ? all.us[(all.n - 1) / 2] / 1e3 : 0;
	double p99 = all.n ? all.us[(all.n - 1) * 99 / 100] / 1e3 : 0;

	stack_s = stack_cpu_s(&s0, &s1, atomic_load(&b->ops), by_process,
			      sizeof(by_process));
	printf("workload=%s threads=%d ops=%ld failed=%ld seconds=%.2f "
	       "per_s=%.1f p50_ms=%.3f p99_ms=%.3f client_cpu_s=%.3f "
	       "stack_cpu_s=%.3f stack_ms_per_op=%s\n",
	       b->opt.workload, n, atomic_load(&b->ops), atomic_load(&b->failed),
	       secs, (double)atomic_load(&b->ops) / secs, p50, p99, c1 - c0,
	       stack_s, by_process);
	fflush(stdout);
	free(all.us);
	free(b->per_thread);
	free(args);
	free(tid);
}

/* ---- command line ------------------------------------------------------------ */

static long parse_long(const char *flag, const char *v, long min, long max)
{
	char *end;
	long x;

	errno = 0;
	x = strtol(v, &end, 10);
	if (errno != 0 || *end != '\0' || x < min || x > max) {
		fprintf(stderr, "auth_bench: %s: '%s' is not a number between %ld and %ld\n",
			flag, v, min, max);
		exit(2);
	}
	return x;
}

static void parse_pids(const char *v, options *o)
{
	char *copy = strdup(v), *save = NULL;

	if (copy == NULL)
		die("out of memory");
	for (char *t = strtok_r(copy, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		if (o->n_stack_pids == (int)(sizeof(o->stack_pids) / sizeof(*o->stack_pids)))
			die("--stack-pids: too many");
		o->stack_pids[o->n_stack_pids++] = parse_long("--stack-pids", t, 1, 1L << 30);
	}
	free(copy);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: auth_bench hash|login|validate|refresh [--auth HOST:PORT]\n"
		"       [--token HOST:PORT] [--threads N] [--duration S] [--warmup S]\n"
		"       [--users N] [--m-kib N] [--t N] [--p N] [--stack-pids P,Q,...]\n");
	exit(2);
}

static void parse_args(int argc, char **argv, options *o)
{
	*o = (options){
		.auth_target = "127.0.0.1:50053",
		.token_target = "127.0.0.1:50052",
		.threads = 4, .duration_s = 10, .warmup_s = 2, .users = 32,
		.m_kib = 19456, .t = 2, .p = 1,
	};
	if (argc < 2)
		usage();
	o->workload = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *f = argv[i];

		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];

		if (strcmp(f, "--auth") == 0)
			o->auth_target = v;
		else if (strcmp(f, "--token") == 0)
			o->token_target = v;
		else if (strcmp(f, "--threads") == 0)
			o->threads = (int)parse_long(f, v, 1, 256);
		else if (strcmp(f, "--duration") == 0)
			o->duration_s = (double)parse_long(f, v, 1, 600);
		else if (strcmp(f, "--warmup") == 0)
			o->warmup_s = (double)parse_long(f, v, 0, 600);
		else if (strcmp(f, "--users") == 0)
			o->users = (int)parse_long(f, v, 1, 10000);
		else if (strcmp(f, "--m-kib") == 0)
			o->m_kib = (uint32_t)parse_long(f, v, 8, 1 << 22);
		else if (strcmp(f, "--t") == 0)
			o->t = (uint32_t)parse_long(f, v, 1, 64);
		else if (strcmp(f, "--p") == 0)
			o->p = (uint32_t)parse_long(f, v, 1, 16);
		else if (strcmp(f, "--stack-pids") == 0)
			parse_pids(v, o);
		else
			usage();
	}
}

int main(int argc, char **argv)
{
	bench b = { 0 };
	rpc_channel_config cc;

	parse_args(argc, argv, &b.opt);
	rpc_channel_config_defaults(&cc);
	cc.default_timeout_ms = 30000;

	if (strcmp(b.opt.workload, "hash") == 0) {
		make_hash(&b);
		b.op = op_hash;
	} else {
		b.auth = rpc_channel_new(b.opt.auth_target, &cc);
		b.token = rpc_channel_new(b.opt.token_target, &cc);
		if (b.auth == NULL || b.token == NULL)
			die("bad --auth or --token address");
		if (strcmp(b.opt.workload, "login") == 0) {
			register_accounts(&b, b.opt.users);
			b.op = op_login;
		} else if (strcmp(b.opt.workload, "validate") == 0) {
			register_accounts(&b, 1);
			b.op = op_validate;
		} else if (strcmp(b.opt.workload, "refresh") == 0) {
			register_accounts(&b, b.opt.threads);
			b.op = op_refresh;
		} else {
			usage();
		}
	}
	run(&b);

	for (int i = 0; i < b.n_accounts; i++) {
		free(b.accounts[i].access_token);
		free(b.accounts[i].refresh_token);
	}
	free(b.accounts);
	free(b.hash);
	rpc_channel_free(b.auth);
	rpc_channel_free(b.token);
	return 0;
}
