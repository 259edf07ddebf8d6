/*
 * pg.h - PostgreSQL for handler threads: a bounded connection pool that
 * reconnects by itself, parameterised statements with SQLSTATE → gRPC
 * status mapping, transactions, and migrations under an advisory lock.
 *
 * Handlers run on worker threads and block here; the pool never holds
 * more than `max_conns` connections. A connection that fails is dropped
 * and re-opened on next use, so a database that restarts needs no service
 * restart: calls fail with UNAVAILABLE meanwhile.
 */
#ifndef ESTORE_SVC_PG_H
#define ESTORE_SVC_PG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <libpq-fe.h>

#include "rpc/status.h"

typedef struct pg_pool pg_pool;

/* conninfo: a libpq connection string (secrets never logged); schema: set
 * as search_path on every connection. NULL on no memory; connecting is
 * lazy. */
pg_pool *pg_pool_new(const char *conninfo, const char *schema, int max_conns);
void pg_pool_free(pg_pool *p);

/* Builds "host=... port=... user=... password=... dbname=...
 * connect_timeout=5" with proper quoting. Returns a malloc'd string. */
char *pg_conninfo(const char *host, int port, const char *user,
		  const char *password, const char *dbname);

/* Borrows a connection, waiting up to timeout_ms for a free one. NULL with
 * *code = RPC_UNAVAILABLE (database unreachable) or RPC_RESOURCE_EXHAUSTED
 * (pool busy) and a message in msg. */
PGconn *pg_acquire(pg_pool *p, int timeout_ms, rpc_code *code, char *msg,
		   size_t msglen);

/* Returns a connection. A connection in a failed state, or with an open
 * transaction, is closed instead of reused. */
void pg_release(pg_pool *p, PGconn *conn);

/*
 * Runs one parameterised statement (text parameters, NULL = SQL NULL).
 * Returns the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK; PQclear it) or
 * NULL with *code mapped from SQLSTATE: 23505 → ALREADY_EXISTS,
 * 23503/23514/23P01 → FAILED_PRECONDITION, 22xxx → INVALID_ARGUMENT,
 * 40001/40P01 → ABORTED, 57014 (statement timeout) → DEADLINE_EXCEEDED,
 * connection loss (08xxx, bad connection) → UNAVAILABLE, else INTERNAL.
 * msg receives a short description safe to return to callers (no SQL, no
 * parameter values); *sqlstate (may be NULL) the 5-char code.
 * On a pooled connection the text is prepared the first time and executed
 * by name after that (up to 64 texts a connection): pass the same text
 * for the same statement, and build no values into it.
 */
PGresult *pg_exec(PGconn *conn, const char *sql, int nparams,
		  const char *const *params, rpc_code *code, char *msg,
		  size_t msglen, char sqlstate[6]);

/* BEGIN / COMMIT / ROLLBACK; return RPC_OK or the mapped code. */
rpc_code pg_begin(PGconn *conn);
rpc_code pg_commit(PGconn *conn);
void pg_rollback(PGconn *conn);

/* True when a fresh "SELECT 1" succeeds within the pool's timeouts (used
 * by the dependency watcher). */
bool pg_ping(pg_pool *p);

/*
 * Applies the numbered migrations NNN_name.sql found in `dir` that are
 * not yet recorded in <schema>.schema_migrations, each in its own
 * transaction, in order, while holding pg_advisory_lock(hash(schema)):
 * several replicas starting at once apply each file exactly once. Creates
 * the schema when missing; the files run with search_path = schema, so
 * they name tables without it, and must not contain BEGIN/COMMIT. Other
 * file names are ignored. Returns 0, or -1 with a message in err (the
 * server's error text: for the operator, not for callers).
 */
int pg_migrate(const char *conninfo, const char *schema, const char *dir,
	       char *err, size_t errlen);

/*
 * The dependency probe (deps.h) of a service with a schema: migrates once
 * (retried on every round until it succeeds; pg_migrate's advisory lock
 * makes replicas starting together apply each file once), sets *ready,
 * then pings. Runs on the watcher thread only.
 */
typedef struct pg_schema_probe {
	pg_pool *pool;
	const char *conninfo;
	const char *schema;
	const char *migrations_dir;
	atomic_bool *ready;     /* set once the schema is migrated */
	bool reported;          /* a migration failure was logged already */
} pg_schema_probe;

bool pg_schema_probe_run(void *probe);

#endif
