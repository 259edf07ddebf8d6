/*
 * pgcall.c - see pgcall.h.
 */
#include "services/common/pgcall.h"

#include <stdio.h>
#include <string.h>

#include "rpc/log.h"
#include "rpc/loop.h"

/* Longest we wait for a pooled connection when the caller set no deadline:
 * long enough to ride out a burst, short enough that a stuck pool turns
 * into an answer rather than a hung call. */
#define ACQUIRE_DEFAULT_MS 5000

static int acquire_timeout_ms(rpc_ctx *ctx)
{
	long long deadline = rpc_ctx_deadline(ctx), left;

	if (deadline == 0)
		return ACQUIRE_DEFAULT_MS;
	left = (deadline - rpc_now_ns()) / 1000000;
	if (left < 1)
		return 1;
	return left > ACQUIRE_DEFAULT_MS ? ACQUIRE_DEFAULT_MS : (int)left;
}

PGconn *pgcall_acquire(pg_pool *pool, rpc_ctx *ctx, const char *store,
		       rpc_code *code)
{
	char msg[160];
	PGconn *c = pg_acquire(pool, acquire_timeout_ms(ctx), code, msg,
			       sizeof(msg));

	if (!c) {
		if (*code == RPC_OK)
			*code = RPC_UNAVAILABLE;
		rpc_ctx_error(ctx, *code, "%s: %s", store, msg);
	}
	return c;
}

PGresult *pgcall_exec(PGconn *conn, rpc_ctx *ctx, const char *store,
		      const char *what, const char *sql, int n,
		      const char *const *params, const pgcall_violations *v,
		      rpc_code *code)
{
	char msg[256], state[6] = "";
	PGresult *r = pg_exec(conn, sql, n, params, code, msg, sizeof(msg),
			      state);

	if (r)
		return r;
	if (strncmp(state, "57P", 3) == 0 || PQstatus(conn) == CONNECTION_BAD)
		*code = RPC_UNAVAILABLE;
	if (*code == RPC_ALREADY_EXISTS && v && v->unique) {
		rpc_ctx_error(ctx, *code, "%s", v->unique);
		return NULL;
	}
	if (strcmp(state, "23503") == 0 && v && v->foreign) {
		*code = RPC_INVALID_ARGUMENT;
		rpc_ctx_error(ctx, *code, "%s", v->foreign);
		return NULL;
	}
	switch (*code) {
	case RPC_UNAVAILABLE:
		rpc_ctx_error(ctx, *code, "%s unavailable", store);
		break;
	case RPC_INVALID_ARGUMENT:
	case RPC_DEADLINE_EXCEEDED:
	case RPC_ABORTED:
		rpc_ctx_error(ctx, *code, "%s: %s", store, msg);
		break;
	default:
		rpc_log(RPC_LOG_ERROR, "store", "%s failed: sqlstate %s: %s",
			what, state[0] ? state : "-", msg);
		if (*code == RPC_OK)
			*code = RPC_INTERNAL;
		rpc_ctx_error(ctx, *code, "%s error", store);
		break;
	}
	return NULL;
}
