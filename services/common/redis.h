/*
 * redis.h - Redis for handler threads: a bounded pool of hiredis
 * connections with connect/command timeouts that reconnect by
 * themselves, and Lua scripts by SHA with automatic loading.
 */
#ifndef ESTORE_SVC_REDIS_H
#define ESTORE_SVC_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <hiredis/hiredis.h>

#include "rpc/status.h"

typedef struct rds_pool rds_pool;

/* password may be NULL or "". timeout_ms bounds connect and each command. */
rds_pool *rds_pool_new(const char *host, int port, const char *password,
		       int max_conns, int timeout_ms);
void rds_pool_free(rds_pool *p);

/* Borrows a connection (waiting up to timeout_ms). NULL with *code
 * RPC_UNAVAILABLE or RPC_RESOURCE_EXHAUSTED. */
redisContext *rds_acquire(rds_pool *p, int timeout_ms, rpc_code *code);

/* Returns a connection; one that saw an I/O or protocol error is closed. */
void rds_release(rds_pool *p, redisContext *c);

/* Runs a command (argv form: binary safe). Returns the reply (free with
 * freeReplyObject) or NULL with *code = RPC_UNAVAILABLE (connection
 * problem; the connection is marked for closing). A Redis error reply is
 * returned as a reply of type REDIS_REPLY_ERROR. */
redisReply *rds_command(redisContext *c, int argc, const char **argv,
			const size_t *argvlen, rpc_code *code);

/* A Lua script: EVALSHA, loading it on NOSCRIPT. The struct is static
 * per script; sha is filled on first use. */
typedef struct rds_script {
	const char *source;
	char sha[41];
} rds_script;

redisReply *rds_eval(redisContext *c, rds_script *s, int nkeys, int argc,
		     const char **argv, const size_t *argvlen, rpc_code *code);

/* PING within the pool's timeout. */
bool rds_ping(rds_pool *p);

#endif
