/*
 * pg.c - PostgreSQL connection pool, statements with SQLSTATE mapping,
 * and migrations under an advisory lock.
 */
#include "services/common/pg.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-events.h>

#include "rpc/log.h"

/* A migration file larger than this is a mistake (a data dump?), not a
 * schema change. */
#define MIGRATION_MAX_BYTES (4 * 1024 * 1024)
/* How long a replica waits for another one's migrations before giving up
 * (the caller retries; a shorter wait also bounds how long a stop waits
 * for a watcher thread stuck here). */
#define MIGRATION_LOCK_TIMEOUT "'60s'"

struct pg_pool {
	char *conninfo;
	char *schema;
	int max_conns;

	pthread_mutex_t lock;
	pthread_cond_t freed;   /* a connection was released or dropped */
	PGconn **idle;          /* stack of idle connections, max_conns long */
	int n_idle;
	int n_open;             /* idle + borrowed + being opened */
	bool down;              /* last connect attempt failed */
	bool trying;            /* a thread is connecting while down */

	/* The watcher's own connection: a busy pool must not look like a
	 * dead database. */
	pthread_mutex_t ping_lock;
	PGconn *ping_conn;
};

static void set_msg(char *msg, size_t msglen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_msg(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (!msg || msglen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
}

/* libpq prints notices (e.g. "schema already exists, skipping") on
 * stderr by default; our logs are JSON lines on stdout. */
static void notice_to_log(void *arg, const char *message)
{
	size_t n = strlen(message);

	(void)arg;
	if (n > 0 && message[n - 1] == '\n')
		n--;
	rpc_log(RPC_LOG_DEBUG, "postgres", "%.*s", (int)n, message);
}

/* The first line of libpq's error text: enough for an operator, and it
 * never contains the password. */
static void first_line(const char *s, char *out, size_t cap)
{
	size_t n = strcspn(s ? s : "", "\n");

	if (n >= cap)
		n = cap - 1;
	memcpy(out, s ? s : "", n);
	out[n] = '\0';
}

static rpc_code set_search_path(PGconn *conn, const char *schema)
{
	char *ident, *sql;
	PGresult *res;
	rpc_code code = RPC_OK;

	ident = PQescapeIdentifier(conn, schema, strlen(schema));
	if (!ident)
		return RPC_INTERNAL;
	if (asprintf(&sql, "SET search_path TO %s", ident) < 0) {
		PQfreemem(ident);
		return RPC_INTERNAL;
	}
	PQfreemem(ident);
	res = PQexec(conn, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		char line[256];

		first_line(PQerrorMessage(conn), line, sizeof(line));
		rpc_log(RPC_LOG_ERROR, "postgres", "cannot set search_path: %s",
			line);
		code = PQstatus(conn) == CONNECTION_OK ? RPC_INTERNAL
						       : RPC_UNAVAILABLE;
	}
	PQclear(res);
	return code;
}

/*
 * Prepared statements, per connection and invisible to callers: the first
 * pg_exec of a statement text on a pooled connection prepares it under a
 * name, later ones only bind and execute. PostgreSQL then parses and plans
 * a query once per connection instead of on every call (a primary-key
 * SELECT: 40 instead of 138 µs of server CPU). The cache hangs on the
 * connection as libpq instance data, so it dies with it (and is emptied if
 * the connection is ever reset, which drops the server's statements).
 * Texts beyond STMT_CACHE_MAX (queries built per call) simply run
 * unprepared.
 */
#define STMT_CACHE_MAX 64

struct stmt_cache {
	size_t n;
	struct {
		uint64_t hash;
		char *sql;
	} e[STMT_CACHE_MAX];
};

static void stmt_cache_clear(struct stmt_cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->e[i].sql);
	c->n = 0;
}

static int stmt_cache_event(PGEventId id, void *info, void *pass)
{
	(void)pass;
	switch (id) {
	case PGEVT_REGISTER: {
		PGEventRegister *r = info;
		struct stmt_cache *c = calloc(1, sizeof(*c));

		return c != NULL && PQsetInstanceData(r->conn, stmt_cache_event, c);
	}
	case PGEVT_CONNRESET: {
		PGEventConnReset *e = info;
		struct stmt_cache *c = PQinstanceData(e->conn, stmt_cache_event);

		if (c)
			stmt_cache_clear(c);
		return 1;
	}
	case PGEVT_CONNDESTROY: {
		PGEventConnDestroy *e = info;
		struct stmt_cache *c = PQinstanceData(e->conn, stmt_cache_event);

		if (c) {
			stmt_cache_clear(c);
			free(c);
		}
		return 1;
	}
	default:
		return 1;
	}
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Runs sql prepared when the connection has a cache (pooled connections
 * do), else as a one-off; returns what PQexecParams would. */
static PGresult *exec_cached(PGconn *conn, const char *sql, int nparams,
			     const char *const *params)
{
	struct stmt_cache *c = PQinstanceData(conn, stmt_cache_event);
	uint64_t h;
	char name[32];
	size_t i;

	if (c == NULL)
		return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	h = fnv1a(sql);
	for (i = 0; i < c->n; i++)
		if (c->e[i].hash == h && strcmp(c->e[i].sql, sql) == 0)
			break;
	if (i == c->n) {
		PGresult *prep;
		char *copy;

		if (c->n == STMT_CACHE_MAX || (copy = strdup(sql)) == NULL)
			return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
		snprintf(name, sizeof(name), "estore_%zu", i);
		prep = PQprepare(conn, name, sql, nparams, NULL);
		if (PQresultStatus(prep) != PGRES_COMMAND_OK) {
			/* Not preparable here (an aborted transaction, a
			 * statement with an error): run it as it is, which
			 * reports the same error the caller must see. */
			PQclear(prep);
			free(copy);
			return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
		}
		PQclear(prep);
		c->e[i].hash = h;
		c->e[i].sql = copy;
		c->n++;
	}
	snprintf(name, sizeof(name), "estore_%zu", i);
	return PQexecPrepared(conn, name, nparams, params, NULL, NULL, 0);
}

/* Opens one connection; NULL when the database cannot be reached. */
static PGconn *open_conn(const char *conninfo, const char *schema)
{
	PGconn *conn = PQconnectdb(conninfo);

	if (!conn)
		return NULL;
	if (PQstatus(conn) != CONNECTION_OK) {
		char line[256];

		first_line(PQerrorMessage(conn), line, sizeof(line));
		rpc_log(RPC_LOG_DEBUG, "postgres", "connect failed: %s", line);
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, notice_to_log, NULL);
	if (schema && set_search_path(conn, schema) != RPC_OK) {
		PQfinish(conn);
		return NULL;
	}
	/* Without the cache the connection still works, unprepared. */
	if (!PQregisterEventProc(conn, stmt_cache_event, "estore statements", NULL))
		rpc_log(RPC_LOG_DEBUG, "postgres", "no statement cache on a connection");
	return conn;
}

/* An idle connection has nothing to say: if its socket is readable the
 * server closed it (restart, idle timeout, admin kill) and the bytes are
 * its FATAL message and the EOF. Such a connection is dropped here rather
 * than failing the caller's first query. (We never LISTEN, so no NOTIFY
 * can be the reason; a rare unsolicited parameter report only costs a
 * reconnect.) */
static bool idle_conn_alive(PGconn *conn)
{
	struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };

	if (pfd.fd < 0 || PQstatus(conn) != CONNECTION_OK)
		return false;
	return poll(&pfd, 1, 0) == 0;
}

pg_pool *pg_pool_new(const char *conninfo, const char *schema, int max_conns)
{
	pg_pool *p;
	pthread_condattr_t ca;

	if (!conninfo || max_conns < 1)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->conninfo = strdup(conninfo);
	p->schema = schema ? strdup(schema) : NULL;
	p->idle = calloc((size_t)max_conns, sizeof(*p->idle));
	if (!p->conninfo || (schema && !p->schema) || !p->idle) {
		free(p->conninfo);
		free(p->schema);
		free(p->idle);
		free(p);
		return NULL;
	}
	p->max_conns = max_conns;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->ping_lock, NULL);
	/* Waits are measured on the monotonic clock: a wall-clock step must
	 * not stretch or cut a timeout. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->freed, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

void pg_pool_free(pg_pool *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_idle; i++)
		PQfinish(p->idle[i]);
	if (p->ping_conn)
		PQfinish(p->ping_conn);
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->ping_lock);
	free(p->idle);
	free(p->conninfo);
	free(p->schema);
	free(p);
}

/* Appends " key='value'" with libpq's quoting rules (backslash before
 * ' and \). */
static int append_kv(char **buf, size_t *len, size_t *cap, const char *key,
		     const char *value)
{
	size_t need = strlen(key) + 2 * strlen(value) + 5;
	char *o;

	if (*len + need + 1 > *cap) {
		size_t ncap = (*cap + need + 1) * 2;
		char *nb = realloc(*buf, ncap);

		if (!nb)
			return -1;
		*buf = nb;
		*cap = ncap;
	}
	o = *buf + *len;
	if (*len > 0)
		*o++ = ' ';
	o += sprintf(o, "%s='", key);
	for (const char *s = value; *s; s++) {
		if (*s == '\'' || *s == '\\')
			*o++ = '\\';
		*o++ = *s;
	}
	*o++ = '\'';
	*o = '\0';
	*len = (size_t)(o - *buf);
	return 0;
}

char *pg_conninfo(const char *host, int port, const char *user,
		  const char *password, const char *dbname)
{
	char *buf = NULL, portbuf[16];
	size_t len = 0, cap = 0;
	int rc = 0;

	snprintf(portbuf, sizeof(portbuf), "%d", port);
	rc |= append_kv(&buf, &len, &cap, "host", host ? host : "");
	rc |= append_kv(&buf, &len, &cap, "port", portbuf);
	rc |= append_kv(&buf, &len, &cap, "user", user ? user : "");
	if (password && *password)
		rc |= append_kv(&buf, &len, &cap, "password", password);
	rc |= append_kv(&buf, &len, &cap, "dbname", dbname ? dbname : "");
	/* Bounded connect, and TCP keepalives so a database that vanished
	 * without a FIN (host down, network cut) is noticed in about a
	 * minute rather than after the kernel's two hours. */
	rc |= append_kv(&buf, &len, &cap, "connect_timeout", "5");
	rc |= append_kv(&buf, &len, &cap, "keepalives", "1");
	rc |= append_kv(&buf, &len, &cap, "keepalives_idle", "30");
	rc |= append_kv(&buf, &len, &cap, "keepalives_interval", "10");
	rc |= append_kv(&buf, &len, &cap, "keepalives_count", "3");
	rc |= append_kv(&buf, &len, &cap, "client_encoding", "UTF8");
	if (rc != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

PGconn *pg_acquire(pg_pool *p, int timeout_ms, rpc_code *code, char *msg,
		   size_t msglen)
{
	struct timespec deadline;
	PGconn *conn = NULL;
	bool i_try;

	deadline_after(&deadline, timeout_ms > 0 ? timeout_ms : 0);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->n_idle > 0) {
			conn = p->idle[--p->n_idle];
			if (idle_conn_alive(conn)) {
				pthread_mutex_unlock(&p->lock);
				return conn;
			}
			PQfinish(conn);
			conn = NULL;
			p->n_open--;
		}
		if (p->n_open < p->max_conns) {
			/* While the server is down one thread at a time tries
			 * to reconnect; the others fail at once instead of each
			 * waiting out a connect timeout (a black-holed host) and
			 * missing their deadlines. */
			if (p->down && p->trying) {
				pthread_mutex_unlock(&p->lock);
				if (code)
					*code = RPC_UNAVAILABLE;
				set_msg(msg, msglen, "database unavailable");
				return NULL;
			}
			break;
		}
		if (pthread_cond_timedwait(&p->freed, &p->lock, &deadline) ==
		    ETIMEDOUT && p->n_idle == 0 && p->n_open >= p->max_conns) {
			pthread_mutex_unlock(&p->lock);
			if (code)
				*code = RPC_RESOURCE_EXHAUSTED;
			set_msg(msg, msglen, "database busy, try again");
			return NULL;
		}
	}
	/* Reserve the slot, then connect without holding the lock: a slow
	 * or unreachable server must not stall the other threads. */
	p->n_open++;
	i_try = p->down;
	if (i_try)
		p->trying = true;
	pthread_mutex_unlock(&p->lock);

	conn = open_conn(p->conninfo, p->schema);

	pthread_mutex_lock(&p->lock);
	if (i_try)
		p->trying = false;
	if (!conn) {
		p->n_open--;
		pthread_cond_signal(&p->freed);
		if (!p->down)
			rpc_log(RPC_LOG_WARN, "postgres",
				"cannot connect to the database");
		p->down = true;
	} else if (p->down) {
		rpc_log(RPC_LOG_INFO, "postgres", "connected to the database");
		p->down = false;
	}
	pthread_mutex_unlock(&p->lock);
	if (!conn) {
		if (code)
			*code = RPC_UNAVAILABLE;
		set_msg(msg, msglen, "database unavailable");
	}
	return conn;
}

void pg_release(pg_pool *p, PGconn *conn)
{
	bool reuse;

	if (!conn)
		return;
	/* A connection left inside a transaction (a handler that returned
	 * early) would leak its locks and snapshot into the next borrower. */
	reuse = PQstatus(conn) == CONNECTION_OK &&
		PQtransactionStatus(conn) == PQTRANS_IDLE;
	pthread_mutex_lock(&p->lock);
	if (reuse && p->n_idle < p->max_conns) {
		p->idle[p->n_idle++] = conn;
		conn = NULL;
	} else {
		p->n_open--;
	}
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->lock);
	if (conn)
		PQfinish(conn);
}

/* Maps a SQLSTATE to a status and a message safe for any caller: the
 * class of problem and at most a constraint name, never SQL or values. */
static rpc_code map_sqlstate(const char *st, PGconn *conn, const PGresult *res,
			     char *msg, size_t msglen)
{
	const char *cons = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME)
			       : NULL;

	if (PQstatus(conn) != CONNECTION_OK) {
		set_msg(msg, msglen, "database unavailable");
		return RPC_UNAVAILABLE;
	}
	if (!st || strlen(st) != 5) {
		set_msg(msg, msglen, "database error");
		return RPC_INTERNAL;
	}
	if (strcmp(st, "23505") == 0) {
		if (cons)
			set_msg(msg, msglen, "already exists (%s)", cons);
		else
			set_msg(msg, msglen, "already exists");
		return RPC_ALREADY_EXISTS;
	}
	if (strcmp(st, "23503") == 0 || strcmp(st, "23514") == 0 ||
	    strcmp(st, "23P01") == 0) {
		if (cons)
			set_msg(msg, msglen, "violates constraint %s", cons);
		else
			set_msg(msg, msglen, "violates a constraint");
		return RPC_FAILED_PRECONDITION;
	}
	if (strncmp(st, "22", 2) == 0) {
		set_msg(msg, msglen, "invalid value");
		return RPC_INVALID_ARGUMENT;
	}
	if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0) {
		set_msg(msg, msglen, "conflict with a concurrent change, retry");
		return RPC_ABORTED;
	}
	if (strcmp(st, "57014") == 0) {
		set_msg(msg, msglen, "database statement timed out");
		return RPC_DEADLINE_EXCEEDED;
	}
	/* 08: connection exceptions; 57P01-57P03: the server is shutting
	 * down or restarting, which is connection loss too. */
	if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
	    strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0) {
		set_msg(msg, msglen, "database unavailable");
		return RPC_UNAVAILABLE;
	}
	set_msg(msg, msglen, "database error");
	return RPC_INTERNAL;
}

PGresult *pg_exec(PGconn *conn, const char *sql, int nparams,
		  const char *const *params, rpc_code *code, char *msg,
		  size_t msglen, char sqlstate[6])
{
	PGresult *res;
	ExecStatusType est;
	const char *st = NULL;
	rpc_code c;

	if (sqlstate)
		sqlstate[0] = '\0';
	res = exec_cached(conn, sql, nparams, params);
	est = PQresultStatus(res);
	if (res && (est == PGRES_TUPLES_OK || est == PGRES_COMMAND_OK)) {
		if (code)
			*code = RPC_OK;
		return res;
	}
	if (res)
		st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (sqlstate && st)
		snprintf(sqlstate, 6, "%s", st);
	c = map_sqlstate(st, conn, res, msg, msglen);
	if (c == RPC_INTERNAL) {
		/* A bug or a broken schema: the operator needs the server's
		 * words (which may quote a value, hence the log, not the
		 * caller). */
		char line[256];

		first_line(res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
			       : PQerrorMessage(conn), line, sizeof(line));
		rpc_log(RPC_LOG_ERROR, "postgres", "statement failed: %s %s",
			st ? st : "-----", line);
	} else {
		rpc_log(RPC_LOG_DEBUG, "postgres", "statement failed: %s -> %s",
			st ? st : "-----", rpc_code_name(c));
	}
	PQclear(res);
	if (code)
		*code = c;
	return NULL;
}

static rpc_code simple(PGconn *conn, const char *sql, PGresult **keep)
{
	rpc_code code;
	PGresult *res = pg_exec(conn, sql, 0, NULL, &code, NULL, 0, NULL);

	if (keep)
		*keep = res;
	else
		PQclear(res);
	return code;
}

rpc_code pg_begin(PGconn *conn)
{
	return simple(conn, "BEGIN", NULL);
}

rpc_code pg_commit(PGconn *conn)
{
	PGresult *res = NULL;
	rpc_code code = simple(conn, "COMMIT", &res);

	/* COMMIT of a transaction that already failed "succeeds" with the
	 * tag ROLLBACK: nothing was written. */
	if (code == RPC_OK && strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
		code = RPC_ABORTED;
	PQclear(res);
	return code;
}

void pg_rollback(PGconn *conn)
{
	/* When this fails the connection is broken or still in a
	 * transaction, and pg_release closes it. */
	(void)simple(conn, "ROLLBACK", NULL);
}

bool pg_ping(pg_pool *p)
{
	PGresult *res;
	bool ok;

	pthread_mutex_lock(&p->ping_lock);
	if (p->ping_conn && PQstatus(p->ping_conn) != CONNECTION_OK) {
		PQfinish(p->ping_conn);
		p->ping_conn = NULL;
	}
	if (!p->ping_conn)
		p->ping_conn = open_conn(p->conninfo, p->schema);
	if (!p->ping_conn) {
		pthread_mutex_unlock(&p->ping_lock);
		return false;
	}
	res = PQexec(p->ping_conn, "SELECT 1");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	if (!ok) {
		PQfinish(p->ping_conn);
		p->ping_conn = NULL;
	}
	pthread_mutex_unlock(&p->ping_lock);
	return ok;
}

/* ---- migrations ------------------------------------------------------ */

struct migration {
	long version;
	char *name;
};

static int cmp_migration(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;

	return (x->version > y->version) - (x->version < y->version);
}

static void free_migrations(struct migration *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].name);
	free(m);
}

/* "NNN_name.sql" → version NNN; -1 for any other file name. */
static long migration_version(const char *name)
{
	size_t len = strlen(name);
	long v = 0;
	const char *p = name;

	if (len < 6 || strcmp(name + len - 4, ".sql") != 0)
		return -1;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	return *p == '_' ? v : -1;
}

/* Reads the migration directory, sorted by version. */
static int list_migrations(const char *dir, struct migration **out,
			   size_t *n_out, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	struct migration *m = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		set_msg(err, errlen, "migrations: cannot open %s: %s", dir,
			strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		long v = migration_version(de->d_name);

		if (v < 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct migration *nm = realloc(m, ncap * sizeof(*m));

			if (!nm)
				goto nomem;
			m = nm;
			cap = ncap;
		}
		m[n].version = v;
		m[n].name = strdup(de->d_name);
		if (!m[n].name)
			goto nomem;
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(m, n, sizeof(*m), cmp_migration);
	for (size_t i = 1; i < n; i++) {
		if (m[i].version == m[i - 1].version) {
			set_msg(err, errlen,
				"migrations: %s and %s have the same number",
				m[i - 1].name, m[i].name);
			free_migrations(m, n);
			return -1;
		}
	}
	*out = m;
	*n_out = n;
	return 0;
nomem:
	closedir(d);
	free_migrations(m, n);
	set_msg(err, errlen, "migrations: out of memory");
	return -1;
}

static char *read_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	if (!f) {
		set_msg(err, errlen, "migrations: cannot open %s: %s", path,
			strerror(errno));
		return NULL;
	}
	buf = malloc(MIGRATION_MAX_BYTES + 1);
	if (!buf) {
		fclose(f);
		set_msg(err, errlen, "migrations: out of memory");
		return NULL;
	}
	n = fread(buf, 1, MIGRATION_MAX_BYTES + 1, f);
	if (ferror(f) || n > MIGRATION_MAX_BYTES) {
		set_msg(err, errlen, "migrations: %s: %s", path,
			ferror(f) ? "read error" : "file too large");
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* Runs a statement for pg_migrate; on failure the server's full message
 * goes to err (migrations are operator business, not a caller's). */
static bool mig_exec(PGconn *conn, const char *what, const char *sql,
		     int nparams, const char *const *params, PGresult **keep,
		     char *err, size_t errlen)
{
	PGresult *res;
	ExecStatusType st;
	char line[512];

	if (nparams > 0)
		res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	else
		res = PQexec(conn, sql);
	st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		if (keep)
			*keep = res;
		else
			PQclear(res);
		return true;
	}
	first_line(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), line,
		   sizeof(line));
	set_msg(err, errlen, "migrations: %s: %s", what, line);
	PQclear(res);
	return false;
}

static bool apply_one(PGconn *conn, const char *dir, const struct migration *m,
		      const char *qschema, char *err, size_t errlen)
{
	char *path = NULL, *sql = NULL, *insert = NULL;
	char vbuf[24];
	const char *params[2];
	bool ok = false;

	if (asprintf(&path, "%s/%s", dir, m->name) < 0) {
		path = NULL;
		set_msg(err, errlen, "migrations: out of memory");
		goto out;
	}
	sql = read_file(path, err, errlen);
	if (!sql)
		goto out;
	if (asprintf(&insert, "INSERT INTO %s.schema_migrations (version, name) "
		     "VALUES ($1, $2)", qschema) < 0) {
		insert = NULL;
		set_msg(err, errlen, "migrations: out of memory");
		goto out;
	}
	snprintf(vbuf, sizeof(vbuf), "%ld", m->version);
	params[0] = vbuf;
	params[1] = m->name;
	/* The file and its bookkeeping row commit together: a crash in the
	 * middle leaves neither, and the next start tries again. */
	if (!mig_exec(conn, "BEGIN", "BEGIN", 0, NULL, NULL, err, errlen))
		goto out;
	if (!mig_exec(conn, m->name, sql, 0, NULL, NULL, err, errlen) ||
	    !mig_exec(conn, m->name, insert, 2, params, NULL, err, errlen)) {
		PQclear(PQexec(conn, "ROLLBACK"));
		goto out;
	}
	if (!mig_exec(conn, m->name, "COMMIT", 0, NULL, NULL, err, errlen))
		goto out;
	ok = true;
	rpc_log(RPC_LOG_INFO, "migrate", "applied %s", m->name);
out:
	free(insert);
	free(sql);
	free(path);
	return ok;
}

int pg_migrate(const char *conninfo, const char *schema, const char *dir,
	       char *err, size_t errlen)
{
	struct migration *m = NULL;
	size_t n = 0;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	char *qschema = NULL, *sql = NULL, *lockkey = NULL;
	const char *params[1];
	bool locked = false;
	unsigned char *applied = NULL;   /* by index into m */
	int rc = -1, n_applied = 0;

	if (list_migrations(dir, &m, &n, err, errlen) != 0)
		return -1;
	conn = open_conn(conninfo, NULL);
	if (!conn) {
		set_msg(err, errlen, "migrations: cannot connect to the database");
		goto out;
	}
	qschema = PQescapeIdentifier(conn, schema, strlen(schema));
	if (!qschema) {
		set_msg(err, errlen, "migrations: bad schema name");
		goto out;
	}
	/* The lock comes first: even CREATE SCHEMA IF NOT EXISTS fails with
	 * a unique violation when two sessions race on it. The key is
	 * derived from the schema, so services never wait for each other;
	 * lock_timeout bounds the wait for a replica that hangs. */
	if (asprintf(&lockkey, "estore.migrate.%s", schema) < 0) {
		lockkey = NULL;
		set_msg(err, errlen, "migrations: out of memory");
		goto out;
	}
	params[0] = lockkey;
	if (!mig_exec(conn, "lock", "SET lock_timeout = " MIGRATION_LOCK_TIMEOUT,
		      0, NULL, NULL, err, errlen) ||
	    !mig_exec(conn, "lock", "SELECT pg_advisory_lock(hashtext($1))", 1,
		      params, NULL, err, errlen) ||
	    !mig_exec(conn, "lock", "SET lock_timeout = DEFAULT", 0, NULL, NULL,
		      err, errlen))
		goto out;
	locked = true;

	if (asprintf(&sql,
		     "CREATE SCHEMA IF NOT EXISTS %s;"
		     "CREATE TABLE IF NOT EXISTS %s.schema_migrations ("
		     " version integer PRIMARY KEY,"
		     " name text NOT NULL,"
		     " applied_at timestamptz NOT NULL DEFAULT now());"
		     "SET search_path TO %s",
		     qschema, qschema, qschema) < 0) {
		sql = NULL;
		set_msg(err, errlen, "migrations: out of memory");
		goto out;
	}
	if (!mig_exec(conn, "schema", sql, 0, NULL, NULL, err, errlen))
		goto out;
	free(sql);
	if (asprintf(&sql, "SELECT version FROM %s.schema_migrations", qschema) < 0) {
		sql = NULL;
		set_msg(err, errlen, "migrations: out of memory");
		goto out;
	}
	if (!mig_exec(conn, "schema_migrations", sql, 0, NULL, &res, err, errlen))
		goto out;

	applied = calloc(n ? n : 1, 1);
	if (!applied) {
		set_msg(err, errlen, "migrations: out of memory");
		goto out;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		long v = strtol(PQgetvalue(res, r, 0), NULL, 10);

		for (size_t i = 0; i < n; i++)
			if (m[i].version == v)
				applied[i] = 1;
	}
	for (size_t i = 0; i < n; i++) {
		if (applied[i])
			continue;
		if (!apply_one(conn, dir, &m[i], qschema, err, errlen))
			goto out;
		n_applied++;
	}
	if (n_applied == 0)
		rpc_log(RPC_LOG_INFO, "migrate", "schema %s is up to date (%zu "
			"migrations)", schema, n);
	rc = 0;
out:
	if (locked) {
		char e2[8];

		/* Closing the session releases it too; unlocking explicitly
		 * lets the next replica go without waiting for the close. */
		mig_exec(conn, "unlock", "SELECT pg_advisory_unlock(hashtext($1))",
			 1, params, NULL, e2, sizeof(e2));
	}
	PQclear(res);
	free(applied);
	free(sql);
	free(lockkey);
	if (qschema)
		PQfreemem(qschema);
	if (conn)
		PQfinish(conn);
	free_migrations(m, n);
	return rc;
}

bool pg_schema_probe_run(void *probe)
{
	pg_schema_probe *p = probe;
	char err[512];

	if (!atomic_load(p->ready)) {
		if (pg_migrate(p->conninfo, p->schema, p->migrations_dir, err,
			       sizeof(err)) != 0) {
			if (!p->reported)
				rpc_log(RPC_LOG_WARN, "migrate", "%s (retrying)", err);
			p->reported = true;
			return false;
		}
		atomic_store(p->ready, true);
		rpc_log(RPC_LOG_INFO, "migrate", "schema %s ready", p->schema);
	}
	return pg_ping(p->pool);
}
