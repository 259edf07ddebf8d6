/*
 * ratelimit.h - request rate limits at the edge: a token bucket per key in
 * Redis, shared by every edge replica.
 *
 * A bucket holds up to `burst` tokens and gains `per_min` of them a
 * minute; each request takes one, or is refused with the time until the
 * next one. The refill and the take are one Lua script, so concurrent
 * edges never both spend the last token. The state (tokens, last refill
 * time in wall-clock ms) is a hash under "edge:rl:<key>" that expires
 * after about two full refills of idleness.
 *
 * Redis calls block, so they never run on the caller's thread: a small
 * fixed pool of worker threads takes them from a bounded queue. A busy
 * key's take carries away a few tokens at once (up to 16, a twentieth of
 * the burst; one for small limits) and keeps the rest here for the key's
 * next requests, for as long as they take to refill: those requests are
 * answered at once without Redis, and the shared bucket still bounds all
 * edges together (ratelimit.c explains why a client under its rate never
 * runs dry).
 *
 * Fail open: when Redis is unreachable or answers with an error, or the
 * queue is full, the request is allowed and a warning is logged (at most
 * once every few seconds). A limit protects capacity; it is not worth
 * refusing every client while Redis is away. (Token revocation, by
 * contrast, fails closed: see auth.h.)
 *
 * Thread-safe: edge_rl_take may be called from any thread at once.
 */
#ifndef ESTORE_EDGE_RATELIMIT_H
#define ESTORE_EDGE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct edge_rl edge_rl;

typedef struct edge_rl_config {
	const char *redis_host;      /* copied by the pool */
	int redis_port;
	const char *redis_password;  /* NULL or "" = none */
	int timeout_ms;              /* connect and each command */
	int workers;                 /* threads (and Redis connections) */
	size_t queue_max;            /* takes waiting; more are allowed unchecked */
} edge_rl_config;

/* Defaults for everything but the Redis address: timeout 250 ms, 2
 * workers, a queue of 4096. */
void edge_rl_config_defaults(edge_rl_config *cfg);

/* Starts the workers. Redis need not be up (takes fail open until it is).
 * NULL with a message in err on no memory or a thread that does not
 * start. */
edge_rl *edge_rl_new(const edge_rl_config *cfg, char *err, size_t errlen);

/* Completes the takes still queued (their callbacks run), stops the
 * workers and frees. NULL is a no-op. Call once no edge_rl_take can start
 * any more. */
void edge_rl_free(edge_rl *rl);

/*
 * The verdict on one request: allowed, or not with `retry_after_ms` (> 0)
 * until the bucket has a token again.
 */
typedef void (*edge_rl_done)(void *user, bool allowed, long long retry_after_ms);

/*
 * Takes one token from the bucket of `key` (NUL-terminated, copied; the
 * caller names the kind, e.g. "login:127.0.0.1" or "acct:<id>") holding
 * `burst` tokens refilled at `per_min` a minute. `done` runs exactly
 * once: before this returns when per_min <= 0 (no limit: allowed), when
 * the key is too long (allowed: a key is ours, never the client's bytes
 * unchecked) or when the queue is full or memory short (allowed, fail
 * open); otherwise later on a worker thread, so it must not block for
 * long.
 */
void edge_rl_take(edge_rl *rl, const char *key, long long per_min,
		  long long burst, edge_rl_done done, void *user);

/* Whole seconds a client should wait for retry_after_ms: rounded up, at
 * least 1 (the Retry-After header). */
long long edge_rl_retry_after_s(long long retry_after_ms);

#endif
