/*
 * auth.h - access tokens checked at the edge, before a request reaches a
 * service.
 *
 * Two steps, both required:
 *  1. Local verification (services/token/jwt.h, atok_verify) against the
 *     token service's public keys, fetched from TokenService.GetJwks: at
 *     start, every `jwks_refresh_ms`, and when a token names a kid we do
 *     not know (a key rotated in), at most once per `jwks_min_refresh_ms`
 *     so that tokens with made-up kids cannot make us hammer the token
 *     service. Forged, malformed, expired or otherwise invalid tokens are
 *     refused here without a call.
 *  2. Revocation: TokenService.ValidateToken, whose positive answer is
 *     cached for `revocation_cache_ms` under the token's SHA-256. That
 *     cache bounds how long a revoked token still passes the edge (1 s by
 *     default). A token whose revocation state is unknown (the token
 *     service unreachable, an unexpected error) is refused with
 *     UNAVAILABLE: the edge fails closed.
 *
 * The edge only decides whether a token gets through; the services still
 * get the token and authorize for themselves.
 *
 * Thread-safe: edge_auth_check may be called from any thread at once.
 */
#ifndef ESTORE_EDGE_AUTH_H
#define ESTORE_EDGE_AUTH_H

#include <stddef.h>

#include "rpc/channel.h"
#include "rpc/status.h"

typedef struct edge_auth edge_auth;

typedef struct edge_auth_config {
	rpc_channel *token_channel;     /* borrowed; outlives the edge_auth */
	const char *issuer;             /* "iss" tokens must carry (copied) */
	const char *audience;           /* "aud" tokens must carry (copied) */
	long long skew_s;               /* clock difference forgiven */
	long long jwks_refresh_ms;      /* periodic JWKS refetch */
	long long jwks_min_refresh_ms;  /* refetches at most this often */
	long long revocation_cache_ms;  /* 0 = ask the token service every time */
	size_t revocation_cache_max;    /* entries; the oldest go first */
	long long call_timeout_ms;      /* deadline of each token-service call */
} edge_auth_config;

/* Sensible defaults for everything but the channel: issuer and audience
 * "estore", skew 60 s, refresh 300000 ms, min refresh 5000 ms, cache
 * 1000 ms and 10000 entries, calls 5000 ms. */
void edge_auth_config_defaults(edge_auth_config *cfg);

/* Starts the first JWKS fetch (its failure is not an error: tokens get
 * UNAVAILABLE until one succeeds) and the refresh thread. NULL with a
 * message in err on no memory or a thread that does not start. */
edge_auth *edge_auth_new(const edge_auth_config *cfg, char *err,
			 size_t errlen);

/* Stops the refresh thread and waits for calls in flight (their checks
 * complete first). Call once no edge_auth_check can start any more, and
 * before freeing the token channel. NULL is a no-op. */
void edge_auth_free(edge_auth *a);

/*
 * The verdict on one token: RPC_OK, RPC_UNAUTHENTICATED (reason: what is
 * wrong with the token, safe to show the client) or RPC_UNAVAILABLE (the
 * verdict could not be reached: no keys yet, the token service
 * unreachable; reason is for the log). On RPC_OK `subject` is the token's
 * verified "sub" claim (the account id, or "service:<name>"), so the
 * caller can key per-account decisions (rate limits) without decoding
 * the token again; NULL otherwise. `reason` and `subject` are valid only
 * during the callback.
 */
typedef void (*edge_auth_done)(void *user, rpc_code code, const char *reason,
			       const char *subject);

/*
 * Checks `token` (len bytes; the part after "Bearer "; copied, so it need
 * not outlive the call). `done` runs exactly once: before this returns
 * (the token is refused locally, or its verdict is cached) or later on the
 * token channel's thread, so it must not block.
 */
void edge_auth_check(edge_auth *a, const char *token, size_t len,
		     edge_auth_done done, void *user);

#endif
