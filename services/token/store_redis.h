/*
 * store_redis.h - everything the token service keeps, in Redis. Every key
 * starts with "token:" and expires:
 *
 *   token:rt:<sha256 hex>          hash {a: account id, f: family, s: state,
 *                                  r: roles "customer,admin"}
 *                                  one refresh token, stored only as the
 *                                  SHA-256 of its text; s is "active" or
 *                                  "rotated" (kept until its TTL so a reuse
 *                                  is recognised); TTL = refresh TTL
 *   token:fam:<family>             "active" | "revoked": one login session
 *                                  (the refresh family, the "sid" of its
 *                                  access tokens); TTL renewed on every
 *                                  rotation, so it outlives every token of
 *                                  the family; revoking keeps the TTL
 *   token:acct:<account>:families  set of the account's families (revoking
 *                                  every session); TTL = refresh TTL
 *   token:acct:<account>:nbf       "<unix seconds>|<kept session>": access
 *                                  tokens of the account issued before
 *                                  that time are refused, except those of
 *                                  the kept session; TTL = access TTL +
 *                                  skew (by then they have expired anyway)
 *   token:deny:<jti>               a revoked access token, until its exp
 *
 * Multi-key changes are Lua scripts, so each is atomic (a refresh rotates
 * exactly once however many callers race). The scripts build the family
 * and account keys they touch from stored values, which a single Redis
 * instance allows; Redis Cluster would need hash tags.
 *
 * Every function returns RPC_OK, RPC_UNAVAILABLE (Redis unreachable or
 * timed out; nothing is assumed), RPC_RESOURCE_EXHAUSTED (pool busy) or
 * RPC_INTERNAL (an unexpected reply, logged).
 */
#ifndef ESTORE_TOKEN_STORE_REDIS_H
#define ESTORE_TOKEN_STORE_REDIS_H

#include <stdbool.h>

#include "rpc/status.h"
#include "services/common/redis.h"

/* 64 hex characters of SHA-256 + NUL. */
#define TSTORE_HASH_LEN 65
#define TSTORE_ID_MAX 64
/* Comma-separated role names, as stored with a refresh token. */
#define TSTORE_ROLES_MAX 256

typedef struct tstore tstore;

/* The pool is borrowed (must outlive the store). NULL on no memory. */
tstore *tstore_new(rds_pool *pool, long long refresh_ttl_s);
void tstore_free(tstore *st);

/* A new family (login) with its first refresh token, remembering the
 * roles (comma-separated) it was issued with. */
rpc_code tstore_create_family(tstore *st, const char *account_id,
			      const char *family, const char *rt_hash,
			      const char *roles);

typedef enum tstore_rotation {
	TSTORE_ROTATED,   /* old marked rotated, new stored */
	TSTORE_UNKNOWN,   /* no such refresh token (never issued or expired) */
	TSTORE_REVOKED,   /* its family was revoked (logout, reuse...) */
	TSTORE_REUSED,    /* already rotated: the family is now revoked */
} tstore_rotation;

/*
 * Rotates refresh token old_hash to new_hash in one script. The new token
 * is stored with roles_in (comma-separated), or, when roles_in is "", with
 * the old token's roles. With TSTORE_ROTATED, account_id and family
 * (TSTORE_ID_MAX bytes each) and roles_out (TSTORE_ROLES_MAX bytes: the
 * roles now stored) are filled; account_id and family with TSTORE_REUSED
 * too (for the log).
 */
rpc_code tstore_rotate(tstore *st, const char *old_hash, const char *new_hash,
		       const char *roles_in, tstore_rotation *res,
		       char *account_id, char *family, char *roles_out);

typedef enum tstore_verdict {
	TSTORE_VALID,
	TSTORE_DENIED,           /* the jti was revoked */
	TSTORE_SESSION_REVOKED,  /* the family is revoked or gone */
	TSTORE_ACCOUNT_REVOKED,  /* issued before the account's not-before */
} tstore_verdict;

/*
 * The revocation state of an access token, in one round trip. account_id
 * and sid are NULL for service tokens (only the jti is checked).
 */
rpc_code tstore_check_access(tstore *st, const char *jti,
			     const char *account_id, const char *sid,
			     long long iat, tstore_verdict *v);

/* Denies an access token id for ttl_s seconds (>= 1). */
rpc_code tstore_deny(tstore *st, const char *jti, long long ttl_s);

/* Revokes the family of a refresh token; *found is false (and nothing
 * changes) when the token is unknown. */
rpc_code tstore_revoke_refresh(tstore *st, const char *rt_hash, bool *found);

/*
 * Revokes every family of the account except `keep_sid` ("" for none) and
 * sets the account's not-before to `now` (kept session exempt) for
 * nbf_ttl_s seconds. *n_revoked (may be NULL) gets the number of
 * families revoked.
 */
rpc_code tstore_revoke_account(tstore *st, const char *account_id,
			       const char *keep_sid, long long now,
			       long long nbf_ttl_s, int *n_revoked);

/* True when Redis answers PING (for the dependency watcher). */
bool tstore_ping(void *st);

#endif
