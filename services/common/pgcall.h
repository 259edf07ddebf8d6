/*
 * pgcall.h - PostgreSQL inside an RPC handler: a pooled connection within
 * the call's deadline, and a statement's failure turned into the call's
 * status with a message fit for the caller (the details go to the log).
 * `store` names the service's store in those messages ("account store").
 */
#ifndef ESTORE_SVC_PGCALL_H
#define ESTORE_SVC_PGCALL_H

#include <libpq-fe.h>

#include "rpc/server.h"
#include "services/common/pg.h"

/* A pooled connection, waiting at most until the call's deadline (5 s
 * when it has none). NULL with the call's status set: UNAVAILABLE (the
 * database is unreachable) or RESOURCE_EXHAUSTED (every connection busy). */
PGconn *pgcall_acquire(pg_pool *pool, rpc_ctx *ctx, const char *store,
		       rpc_code *code);

/* What a statement's constraint violations mean to the caller. */
typedef struct pgcall_violations {
	const char *unique;   /* 23505 → ALREADY_EXISTS with this message */
	const char *foreign;  /* 23503 → INVALID_ARGUMENT with this message */
} pgcall_violations;

/*
 * pg_exec, and on failure the call's status: a server shutting down
 * (57P01..03) or a dead connection is UNAVAILABLE (retry once the database
 * is back); the violations `v` (may be NULL) name; INVALID_ARGUMENT,
 * DEADLINE_EXCEEDED and ABORTED with pg's short description; anything
 * else INTERNAL, logged with `what` and the SQLSTATE.
 */
PGresult *pgcall_exec(PGconn *conn, rpc_ctx *ctx, const char *store,
		      const char *what, const char *sql, int n,
		      const char *const *params, const pgcall_violations *v,
		      rpc_code *code);

#endif
