/*
 * throttle.h - failed-login throttling in Redis (OWASP Authentication
 * Cheat Sheet: exponential back-off, never a permanent lock-out).
 *
 * Failures are counted under two keys, each a hash {n, last}:
 *   auth:fail:acct:<email, ASCII lower-cased>   per account (known or not)
 *   auth:fail:ip:<client address, no port>      per client address
 * Once a key holds `max_failures` failures, the next attempt must come at
 * least base_ms * 2^(n - max_failures) after the last failure (capped at
 * max_delay_ms); earlier attempts are refused before any password work.
 * A key expires window_ms plus its current delay after its last failure,
 * so failures count when they come within the window of each other and a
 * throttled key is never forgotten while its delay runs. A successful
 * login clears the account key (not the address key: an attacker must not
 * reset it by signing in to an account of their own).
 *
 * Thread-safe (the Redis pool is). Redis trouble is UNAVAILABLE: logins
 * then fail closed rather than run unthrottled.
 */
#ifndef ESTORE_AUTH_THROTTLE_H
#define ESTORE_AUTH_THROTTLE_H

#include <stddef.h>

#include "rpc/status.h"

typedef struct rds_pool rds_pool;
typedef struct throttle throttle;

typedef struct throttle_config {
	long long acct_max_failures;  /* AUTH_LOGIN_MAX_FAILURES, default 5 */
	long long ip_max_failures;    /* AUTH_LOGIN_IP_MAX_FAILURES */
	long long base_ms;            /* AUTH_LOGIN_BACKOFF_BASE_MS, default 1000 */
	long long max_delay_ms;       /* 15 min */
	long long window_ms;          /* 15 min */
	int redis_wait_ms;            /* bound on waiting for a pool connection */
} throttle_config;

/* `pool` is borrowed and must outlive the throttle. NULL on no memory. */
throttle *throttle_new(rds_pool *pool, const throttle_config *cfg);

/* throttle_free(NULL) is a no-op. */
void throttle_free(throttle *t);

/*
 * May an attempt for `email` from `ip` go ahead now? RPC_OK when yes;
 * RPC_RESOURCE_EXHAUSTED with *retry_after_s (>= 1) when either key is in
 * its back-off; RPC_UNAVAILABLE when Redis cannot answer. `ip` may be NULL
 * or "" (no address key). *acct_failures (may be NULL) receives the
 * account's current failure count, so a success with none to forget
 * skips throttle_clear.
 */
rpc_code throttle_check(throttle *t, const char *email, const char *ip,
			long long *retry_after_s, long long *acct_failures);

/* Records one failure under both keys. RPC_OK or RPC_UNAVAILABLE. */
rpc_code throttle_fail(throttle *t, const char *email, const char *ip);

/* Forgets the account key after a success. RPC_OK or RPC_UNAVAILABLE. */
rpc_code throttle_clear(throttle *t, const char *email);

/* The delay owed after `n` failures (0 below max_failures): exposed for
 * tests. */
long long throttle_delay_ms(long long n, long long max_failures,
			    long long base_ms, long long max_delay_ms);

/* Writes the address part of an rpc_ctx_peer() string into out
 * ("ipv4:10.0.0.1:5000" → "10.0.0.1", "ipv6:[::1]:5000" → "::1"); ""
 * when the form is unknown. */
void throttle_peer_address(const char *peer, char *out, size_t cap);

#endif
